"""Leader election against the local API's Leases (409 on a stale resourceVersion).

Three levels: the ``Elector`` alone (fake clocks decide expiry, so nothing sleeps), two watchers in one
process (graceful hand-over), and two real ``watch.py`` processes: ``kill -9`` the leader and the other
takes over and delivers what changed; freeze the leader with SIGSTOP and it never dispatches again once
its lease is gone. Every dispatch is written by the ``ledger`` test plugin with a timestamp and the
watcher's name, so "never both at once" is checked on what the plugins really received.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

from tests.harness import TEST_PLUGINS, route, running_watcher, wait_until
from tests.servers import free_port
from watcher import config, errors, health, leader
from watcher.client import Client
from watcher.localapi import LocalAPI

ROOT = Path(__file__).resolve().parent.parent
NS = "demo"
LEASE = "event-watcher"
# Short periods for the tests, in the same proportions as client-go's 15/10/2.
FAST = leader.Timing(lease_duration=3.0, renew_deadline=2.0, retry_period=0.4)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client(local_api: LocalAPI, tmp_path: Path) -> Iterator[Client]:
    env = {
        "K8S_API_ENDPOINT": local_api.url,
        "K8S_TOKEN": local_api.token,
        "K8S_CA": local_api.ca_file,
        "K8S_RESOURCE": "routes",
        "K8S_NAMESPACE": NS,
    }
    settings = config.load(env, None, serviceaccount_dir=str(tmp_path / "no-sa"), home=str(tmp_path))
    c = Client(settings)
    try:
        yield c
    finally:
        c.close()


def lease(api: LocalAPI) -> dict[str, Any]:
    return api.get("leases", NS, LEASE)["spec"]


def elector(client: Client, name: str, clock: Optional[FakeClock] = None) -> leader.Elector:
    return leader.Elector(
        client, NS, LEASE, identity=name, timing=leader.Timing(), clock=clock or FakeClock()
    )


# --- the Elector against the local API ---------------------------------------------------------------


def test_first_candidate_creates_the_lease_and_the_other_waits(local_api: LocalAPI, client: Client) -> None:
    a, b = elector(client, "a"), elector(client, "b")
    assert a.try_acquire_or_renew() and a.leading
    spec = lease(local_api)
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 15 and spec["leaseTransitions"] == 0
    assert spec["renewTime"].endswith("Z") and "." in spec["renewTime"]  # a MicroTime
    assert not b.try_acquire_or_renew() and not b.leading
    assert b.holder == "a" and b.lease_seen
    first_renew = spec["renewTime"]
    assert a.try_acquire_or_renew()
    assert lease(local_api)["renewTime"] != first_renew
    assert lease(local_api)["acquireTime"] == spec["acquireTime"]


def test_a_standby_takes_the_lease_only_after_it_stopped_changing_for_lease_duration(
    local_api: LocalAPI, client: Client
) -> None:
    a = elector(client, "a")
    b_clock = FakeClock()
    b = elector(client, "b", b_clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()  # b sees the record for the first time now
    b_clock.now += 14.9
    assert not b.try_acquire_or_renew()
    b_clock.now += 0.2
    assert b.try_acquire_or_renew() and b.leading
    spec = lease(local_api)
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
    # The old leader, on its next renew, sees a valid lease held by b and does not take it back.
    assert not a.try_acquire_or_renew() and a.holder == "b"


def test_a_renewing_leader_keeps_the_lease_however_long_the_standby_waits(
    local_api: LocalAPI, client: Client
) -> None:
    a = elector(client, "a")
    b_clock = FakeClock()
    b = elector(client, "b", b_clock)
    for _ in range(5):
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
        b_clock.now += 10  # each renew changes the record, so b's observation restarts
    assert lease(local_api)["holderIdentity"] == "a"


class Interleaving:
    """A client that runs ``before_put`` once, just before the next PUT: a race made deterministic."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.before_put: Optional[Any] = None
        self.conflicts = 0

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if method == "PUT" and self.before_put is not None:
            hook, self.before_put = self.before_put, None
            hook()
        try:
            return self.client.request(method, path, **kwargs)
        except errors.Conflict:
            self.conflicts += 1
            raise


def test_a_write_on_a_stale_resource_version_loses_with_409(local_api: LocalAPI, client: Client) -> None:
    a = elector(client, "a")
    assert a.try_acquire_or_renew()
    racing = Interleaving(client)
    b_clock = FakeClock()
    b = leader.Elector(racing, NS, LEASE, identity="b", clock=b_clock)
    assert not b.try_acquire_or_renew()
    b_clock.now += 16  # b believes the lease expired...
    racing.before_put = a.try_acquire_or_renew  # ...but a renews between b's GET and b's PUT
    assert not b.try_acquire_or_renew()
    assert racing.conflicts == 1
    assert not b.leading and a.leading
    assert lease(local_api)["holderIdentity"] == "a"


def test_two_candidates_creating_at_once_one_wins(local_api: LocalAPI, client: Client) -> None:
    racing = Interleaving(client)
    a = elector(client, "a")
    b = leader.Elector(racing, NS, LEASE, identity="b", clock=FakeClock())
    # b found no lease (GET 404) and tries to create it; a creates it first.
    original = racing.request

    def request(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if method == "POST":
            assert a.try_acquire_or_renew()
        return original(method, path, **kwargs)

    racing.request = request  # type: ignore[method-assign]
    assert not b.try_acquire_or_renew()
    assert lease(local_api)["holderIdentity"] == "a"


def test_the_leader_gives_up_at_its_renew_deadline_on_its_own_clock(client: Client) -> None:
    clock = FakeClock()
    a = elector(client, "a", clock)
    assert a.try_acquire_or_renew()
    clock.now += 9.9
    assert a.leading
    clock.now += 0.2
    assert not a.leading  # no request needed: a frozen or cut-off leader stops by itself


def test_release_hands_the_lease_over_at_once(local_api: LocalAPI, client: Client) -> None:
    a, b = elector(client, "a"), elector(client, "b")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    assert a.release() and not a.leading
    spec = lease(local_api)
    assert spec["holderIdentity"] == "" and spec["leaseDurationSeconds"] == 1
    assert b.try_acquire_or_renew()  # no waiting: the holder is empty
    assert lease(local_api)["holderIdentity"] == "b"
    assert not a.release(), "a replica that does not hold the lease has nothing to release"
    assert lease(local_api)["holderIdentity"] == "b"


def test_identity_is_unique_per_candidate() -> None:
    first, second = leader.default_identity(), leader.default_identity()
    assert first != second
    assert first.startswith(f"{__import__('socket').gethostname()}_{os.getpid()}_")


def test_timing_must_leave_the_leader_time_to_stop() -> None:
    assert leader.Timing() == leader.Timing(15.0, 10.0, 2.0)  # client-go's defaults
    with pytest.raises(ValueError):
        leader.Timing(lease_duration=10, renew_deadline=10, retry_period=2)


def test_leader_election_needs_a_namespace(local_api: LocalAPI, client: Client) -> None:
    settings = config.Settings(
        endpoint=local_api.url, resource="routes", leader_election=True, namespace=None
    )
    with pytest.raises(errors.ConfigError, match="leader election needs a namespace"):
        leader.Runner.for_settings(
            settings, client, FakeWatch(), FakeDeliveries(), threading.Event(), health.Probes(60), None
        )


# --- the plugins' queues under the lease -----------------------------------------------------------------


class FakeWatch:
    def __init__(self) -> None:
        self.ready = threading.Event()
        self.last_activity = 0.0
        self.interrupted = 0

    def run(self, stop: threading.Event) -> None:
        stop.wait()

    def interrupt(self) -> None:
        self.interrupted += 1


class FakeDeliveries:
    """Records what the runner asks of the work queues."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.permit: Any = None

    def guard(self, permit: Any, on_refused: Any) -> None:
        self.permit = permit
        self.calls.append("guard")

    def resume(self) -> None:
        self.calls.append("resume")

    def quiesce(self, timeout: float) -> bool:
        self.calls.append(f"quiesce {timeout:g}")
        return True


def test_without_election_the_queues_run_from_the_start() -> None:
    deliveries, stop = FakeDeliveries(), threading.Event()
    runner = leader.Runner(FakeWatch(), stop, health.Probes(60), deliveries=deliveries)
    thread = threading.Thread(target=runner.run)
    thread.start()
    wait_until(lambda: deliveries.calls == ["resume"], what="the queues to resume")
    stop.set()
    thread.join(5)
    assert deliveries.permit is None  # nothing to check before each call


# --- two watchers in one process ------------------------------------------------------------------------


def read_ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def names(entries: list[dict[str, Any]], who: str) -> set[str]:
    return {e["name"] for e in entries if e["who"] == who}


def test_two_watchers_in_process_one_dispatches_and_a_clean_stop_hands_over(
    local_api: LocalAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leader, "DEFAULT_TIMING", FAST)
    ledger = tmp_path / "ledger.jsonl"
    local_api.create("routes", route("r0", NS))
    env = {"WATCHER_LEADER_ELECTION": "true"}
    common = {"resource": "routes", "namespace": NS, "plugins": "ledger", "env": env, "wait_ready": False}
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(
            running_watcher(local_api, ini={"plugin_ledger": {"path": str(ledger), "name": "a"}}, **common)
        )  # type: ignore[arg-type]
        wait_until(lambda: read_ledger(ledger), what="the first watcher to lead and deliver r0")
        b = stack.enter_context(
            running_watcher(local_api, ini={"plugin_ledger": {"path": str(ledger), "name": "b"}}, **common)
        )  # type: ignore[arg-type]
        wait_until(lambda: b.app.probes.readiness().ok, what="the second watcher to be a ready standby")
        assert b.app.probes.role == "standby"
        local_api.create("routes", route("r1", NS))
        wait_until(lambda: "r1" in names(read_ledger(ledger), "a"), what="the leader to deliver r1")
        assert names(read_ledger(ledger), "b") == set()
        a.stop()  # releases the lease: b takes over at its next try, far sooner than the lease duration
        assert local_api.get("leases", NS, LEASE)["spec"]["holderIdentity"] in (
            "",
            b.app.runner.elector.identity,
        )  # type: ignore[union-attr]
        local_api.create("routes", route("r2", NS))
        wait_until(lambda: {"r0", "r1", "r2"} <= names(read_ledger(ledger), "b"), what="b to take over")
    entries = read_ledger(ledger)
    assert max(e["t"] for e in entries if e["who"] == "a") < min(e["t"] for e in entries if e["who"] == "b")


# --- two real processes ---------------------------------------------------------------------------------

LAUNCHER = (
    "import sys\n"
    "from watcher import leader\n"
    "leader.DEFAULT_TIMING = leader.Timing({lease}, {renew}, {retry})\n"
    "from watcher.cli import main\n"
    "main(sys.argv[1:])\n"
)


class Proc:
    def __init__(self, who: str, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.who = who
        self.proc = proc
        self.port = port
        self.log = log

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def is_leader(self) -> bool:
        status, body = self.get("/readyz")
        return status == 200 and body.startswith("ok: leader")

    def is_standby(self) -> bool:
        status, body = self.get("/readyz")
        return status == 200 and "standby" in body


@pytest.fixture
def processes(local_api: LocalAPI, tmp_path: Path) -> Iterator[Any]:
    token = tmp_path / "token"
    token.write_text(local_api.token, encoding="utf-8")
    started: list[Proc] = []

    def start(who: str, ledger: Path) -> Proc:
        ini = tmp_path / f"{who}.ini"
        ini.write_text(f"[plugin_ledger]\npath = {ledger}\nname = {who}\n", encoding="utf-8")
        port = free_port()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "PYTHONUNBUFFERED": "1",
            "K8S_API_ENDPOINT": local_api.url,
            "K8S_TOKEN_FILE": str(token),
            "K8S_CA": local_api.ca_file,
            "K8S_RESOURCE": "routes",
            "K8S_NAMESPACE": NS,
            "WATCHER_PLUGIN": "ledger",
            "WATCHER_PLUGIN_PATH": TEST_PLUGINS,
            "WATCHER_LEADER_ELECTION": "true",
            "WATCHER_METRICS_PORT": str(port),
            "LOG_LEVEL": "DEBUG",
        }
        code = LAUNCHER.format(lease=FAST.lease_duration, renew=FAST.renew_deadline, retry=FAST.retry_period)
        log = tmp_path / f"{who}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-c", code, "--config", str(ini)], env=env, cwd=ROOT, stdout=out, stderr=out
            )
        p = Proc(who, proc, port, log)
        started.append(p)
        return p

    try:
        yield start
    finally:
        for p in started:
            if p.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.proc.send_signal(signal.SIGCONT)
                p.proc.terminate()
                try:
                    p.proc.wait(10)
                except subprocess.TimeoutExpired:
                    p.proc.kill()
                    p.proc.wait(10)


def leader_of(procs: list[Proc]) -> Optional[Proc]:
    leading = [p for p in procs if p.is_leader()]
    assert len(leading) <= 1, "two replicas report leadership at once"
    return leading[0] if leading else None


@pytest.mark.slow
def test_kill_9_the_leader_and_the_standby_takes_over_without_losing_events(
    local_api: LocalAPI, tmp_path: Path, processes: Any
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    for i in range(3):
        local_api.create("routes", route(f"before-{i}", NS))
    procs = [processes("a", ledger), processes("b", ledger)]
    first = wait_until(lambda: leader_of(procs), timeout=30, what="one of two watchers to lead")
    other = next(p for p in procs if p is not first)
    wait_until(other.is_standby, timeout=30, what="the other to be a ready standby")
    wait_until(
        lambda: {"before-0", "before-1", "before-2"} <= names(read_ledger(ledger), first.who),
        timeout=20,
        what="the leader to deliver the existing routes",
    )
    assert names(read_ledger(ledger), other.who) == set(), "the standby dispatched"
    assert "event_watcher_leader 1.0" in first.get("/metrics")[1]
    assert "event_watcher_leader 0.0" in other.get("/metrics")[1]

    first.proc.kill()  # SIGKILL: no release, the lease has to expire
    first.proc.wait(10)
    local_api.create("routes", route("during", NS))
    local_api.patch("routes", NS, "before-0", {"metadata": {"labels": {"changed": "yes"}}})
    changed_rv = local_api.get("routes", NS, "before-0")["metadata"]["resourceVersion"]

    wait_until(other.is_leader, timeout=FAST.lease_duration * 5, what="the standby to take over")
    local_api.create("routes", route("after", NS))
    wait_until(
        lambda: {"during", "after"} <= names(read_ledger(ledger), other.who),
        timeout=20,
        what="the new leader to deliver what changed while nobody led",
    )
    entries = read_ledger(ledger)
    assert any(e["name"] == "before-0" and e["rv"] == changed_rv and e["who"] == other.who for e in entries)
    assert max(e["t"] for e in entries if e["who"] == first.who) < min(
        e["t"] for e in entries if e["who"] == other.who
    )
    spec = local_api.get("leases", NS, LEASE)["spec"]
    assert spec["leaseTransitions"] >= 1 and f"_{other.proc.pid}_" in spec["holderIdentity"]


@pytest.mark.slow
def test_a_frozen_leader_never_dispatches_after_its_lease_is_gone(
    local_api: LocalAPI, tmp_path: Path, processes: Any
) -> None:
    ledger = tmp_path / "ledger.jsonl"
    local_api.create("routes", route("r0", NS))
    local_api.create("routes", route("doomed", NS))
    procs = [processes("a", ledger), processes("b", ledger)]
    first = wait_until(lambda: leader_of(procs), timeout=30, what="one of two watchers to lead")
    other = next(p for p in procs if p is not first)
    wait_until(
        lambda: {"r0", "doomed"} <= names(read_ledger(ledger), first.who), timeout=20, what="r0 delivered"
    )

    first.proc.send_signal(signal.SIGSTOP)  # a long GC pause, a frozen VM: it cannot renew
    try:
        wait_until(other.is_leader, timeout=FAST.lease_duration * 5, what="the standby to take over")
        local_api.create("routes", route("while-frozen", NS))  # the frozen leader's watch gets this too
        wait_until(
            lambda: "while-frozen" in names(read_ledger(ledger), other.who), timeout=20, what="delivery"
        )
    finally:
        first.proc.send_signal(signal.SIGCONT)
    wait_until(first.is_standby, timeout=30, what="the old leader to notice and become a standby")
    local_api.create("routes", route("after-thaw", NS))
    local_api.delete("routes", NS, "doomed")
    wait_until(
        lambda: (
            any(
                e["who"] == other.who and e["name"] == "doomed" and e["type"] == "DELETED"
                for e in read_ledger(ledger)
            )
            and "after-thaw" in names(read_ledger(ledger), other.who)
        ),
        timeout=20,
        what="the new leader to deliver after the thaw",
    )
    entries = read_ledger(ledger)
    first_of_other = min(e["t"] for e in entries if e["who"] == other.who)
    late = [e for e in entries if e["who"] == first.who and e["t"] >= first_of_other]
    assert late == [], f"the old leader dispatched after the new one started: {late}"

    # Hand the lease back cleanly: the old leader leads again, and its relist diff delivers exactly
    # what changed since its own last dispatch, the deletion of "doomed" included.
    other.proc.send_signal(signal.SIGTERM)
    assert other.proc.wait(20) == 0
    wait_until(first.is_leader, timeout=FAST.lease_duration * 5, what="the old leader to lead again")
    wait_until(
        lambda: any(
            e["who"] == first.who and e["name"] == "doomed" and e["type"] == "DELETED"
            for e in read_ledger(ledger)
        ),
        timeout=20,
        what="the missed deletion",
    )
    second_term = [e for e in read_ledger(ledger) if e["who"] == first.who and e["t"] > first_of_other]
    assert {e["name"] for e in second_term} == {"doomed", "while-frozen", "after-thaw"}
    assert {e["name"]: e["type"] for e in second_term}["doomed"] == "DELETED"


def test_a_forbidden_lease_is_logged_once_and_keeps_the_replica_unready(
    local_api: LocalAPI, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    local_api.forbid("get", "leases")
    watch = FakeWatch()
    stop = threading.Event()
    probes = health.Probes(60)
    elector = leader.Elector(client, NS, LEASE, identity="a", timing=FAST)
    runner = leader.Runner(watch, stop, probes, elector=elector)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(local_api.requests_seen()) >= 4, what="a few tries")
        warnings = [r for r in caplog.records if "Could not read or write the lease" in r.getMessage()]
        assert [r.levelname for r in warnings].count("WARNING") == 1
        assert "Forbidden" in warnings[0].getMessage()
        assert not probes.readiness().ok
        local_api.allow("get", "leases")
        wait_until(lambda: probes.role == "leader", what="leadership once the Role allows it")
        assert probes.readiness().ok is False  # leading, but the (fake) watch has not listed yet
        watch.ready.set()
        assert probes.readiness().ok
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert lease(local_api)["holderIdentity"] == "", "released on stop"
