"""The reconciler: what each plugin is handed per object, retries, parallel workers, stop and stuck.

The merge rules are pure functions, tested directly; the workers run real threads calling small
in-test plugins. The end-to-end behaviour with the real daemon is at the bottom.
"""

from __future__ import annotations

import logging
import threading
import time
import types
from collections.abc import Mapping
from typing import Any, Callable, Optional

import orjson
import pytest

import watcher
from tests.harness import route, running_watcher, wait_until
from watcher import dispatch
from watcher.informer import Item
from watcher.localapi import LocalAPI
from watcher.metrics import Metrics
from watcher.reconciler import Pending, Reconciler, combine, merge
from watcher.workqueue import RetryPolicy

# --- the merge rules -------------------------------------------------------------------------------


def item(uid: str, rv: str) -> Item:
    return Item(uid, orjson.dumps({"metadata": {"uid": uid, "resourceVersion": rv}}), None)


def fold(*changes: tuple[str, Item], start: Optional[Pending] = None) -> Optional[Pending]:
    pending = start
    for c in changes:
        pending = merge(pending, c)
    return pending


def calls(pending: Optional[Pending]) -> list[tuple[str, str]]:
    """What the plugin would be handed, as (type, resourceVersion of the object)."""
    if pending is None:
        return []

    def rv(i: Item) -> str:
        return str(orjson.loads(i.data)["metadata"]["resourceVersion"])

    out = [("DELETED", rv(t)) for t in pending.tombs]
    if pending.current is not None:
        out.append(("ADDED" if pending.new else "MODIFIED", rv(pending.current)))
    return out


def test_updates_to_a_new_object_are_one_added_with_the_latest_state() -> None:
    assert calls(
        fold(("ADDED", item("a", "1")), ("MODIFIED", item("a", "2")), ("MODIFIED", item("a", "3")))
    ) == [("ADDED", "3")]


def test_updates_to_a_known_object_are_one_modified() -> None:
    assert calls(fold(("MODIFIED", item("a", "2")), ("MODIFIED", item("a", "3")))) == [("MODIFIED", "3")]


def test_an_object_created_and_deleted_before_the_plugin_saw_it_costs_nothing() -> None:
    assert fold(("ADDED", item("a", "1")), ("MODIFIED", item("a", "2")), ("DELETED", item("a", "3"))) is None


def test_a_deleted_known_object_is_deleted_with_its_last_state() -> None:
    assert calls(fold(("MODIFIED", item("a", "2")), ("DELETED", item("a", "3")))) == [("DELETED", "3")]


def test_delete_and_recreate_are_two_calls_never_one_modified() -> None:
    assert calls(
        fold(("DELETED", item("a", "3")), ("ADDED", item("b", "4")), ("MODIFIED", item("b", "5")))
    ) == [
        ("DELETED", "3"),
        ("ADDED", "5"),
    ]


def test_a_recreate_without_its_delete_still_undoes_the_old_incarnation() -> None:
    assert calls(fold(("MODIFIED", item("a", "2")), ("ADDED", item("b", "4")))) == [
        ("DELETED", "2"),
        ("ADDED", "4"),
    ]


def test_a_resync_adds_nothing_to_waiting_work_and_is_a_modified_alone() -> None:
    waiting = fold(("ADDED", item("a", "1")))
    assert merge(waiting, ("SYNC", item("a", "1"))) is waiting
    assert calls(fold(("SYNC", item("a", "1")))) == [("MODIFIED", "1")]


def test_an_added_that_failed_then_deleted_delivers_the_delete() -> None:
    tried = Pending((), item("a", "1"), True, True)  # what a failed ADDED leaves
    assert calls(combine(tried, Pending((item("a", "2"),), None, False, False))) == [("DELETED", "2")]


def test_a_failed_added_followed_by_an_update_is_retried_as_added_with_it() -> None:
    tried = Pending((), item("a", "1"), True, True)
    assert calls(combine(tried, Pending((), item("a", "2"), False, False))) == [("ADDED", "2")]


def test_a_failed_delete_then_a_recreate_keeps_the_delete_first() -> None:
    tried = Pending((item("a", "3"),), None, False, False)
    assert calls(combine(tried, Pending((), item("b", "4"), True, False))) == [
        ("DELETED", "3"),
        ("ADDED", "4"),
    ]


# --- the workers -------------------------------------------------------------------------------------


def plugin(
    name: str,
    handle: Callable[[Any, Mapping[str, Any], Mapping[str, str]], Any],
    *,
    workers: int = 1,
    **work: float,
) -> dispatch.Plugin:
    module = types.ModuleType(f"test_plugin_{name}")
    module.handle_event = handle  # type: ignore[attr-defined]
    return dispatch.Plugin(name, module, "test", {}, dispatch.WorkSettings(workers=workers, **work))


def obj(name: str, rv: int, uid: Optional[str] = None, namespace: str = "ns") -> dict[str, Any]:
    return {
        "kind": "Route",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid or f"uid-{name}",
            "resourceVersion": str(rv),
        },
    }


def changed(event_type: str, o: dict[str, Any]) -> tuple[str, str, Item]:
    meta = o["metadata"]
    return (event_type, f"{meta['namespace']}/{meta['name']}", Item(meta["uid"], orjson.dumps(o), o))


class Running:
    """A started reconciler with fast retries; stopped by the fixture."""

    def __init__(self, plugins: list[dispatch.Plugin]) -> None:
        self.metrics = Metrics()
        contexts = [
            dispatch.PluginContext(p.name, None, logging.getLogger(f"plugins.{p.name}"), None)
            for p in plugins
        ]  # type: ignore[arg-type]
        self.reconciler = Reconciler(list(zip(plugins, contexts)), self.metrics)
        for p in self.reconciler.plugins:
            p.queue.policy = RetryPolicy(initial=0.05, cap=0.2)
        self.reconciler.start()
        self.reconciler.resume()

    def sample(self, name: str, plugin: str) -> float:
        return self.metrics.registry.get_sample_value(name, {"plugin": plugin}) or 0.0

    def settled(self) -> bool:
        return all(p.queue.idle() for p in self.reconciler.plugins)


@pytest.fixture
def run() -> Any:
    started: list[Running] = []

    def start(*plugins: dispatch.Plugin) -> Running:
        started.append(Running(list(plugins)))
        return started[-1]

    yield start
    for r in started:
        r.reconciler.stop(2.0)


def test_a_slow_plugin_holds_up_neither_other_objects_nor_other_plugins(run: Any) -> None:
    release = threading.Event()
    seen_fast: list[str] = []
    seen_slow: list[str] = []

    def slow(w: Any, event: Mapping[str, Any], c: Mapping[str, str]) -> None:
        name = event["object"]["metadata"]["name"]
        if name.startswith("stuck"):
            release.wait(10)
        seen_slow.append(name)

    r = run(
        plugin("slow", slow, workers=3),
        plugin("fast", lambda w, e, c: seen_fast.append(e["object"]["metadata"]["name"])),
    )
    r.reconciler([changed("ADDED", obj(n, 1)) for n in ("stuck1", "stuck2", *[f"r{i}" for i in range(50)])])
    wait_until(lambda: len(seen_fast) == 52 and len(seen_slow) == 50, what="every unrelated object handled")
    assert r.sample("event_watcher_workers_busy", "slow") == 2
    assert r.sample("event_watcher_queue_depth", "slow") == 0
    release.set()
    wait_until(r.settled, what="the stuck objects to finish")


def test_one_object_is_never_handled_by_two_workers_at_once_and_ends_in_its_latest_state(run: Any) -> None:
    inside: dict[str, int] = {}
    overlap: list[str] = []
    concurrent: list[int] = []
    last: dict[str, str] = {}
    lock = threading.Lock()

    def handle(w: Any, event: Mapping[str, Any], c: Mapping[str, str]) -> None:
        meta = event["object"]["metadata"]
        with lock:
            inside[meta["name"]] = inside.get(meta["name"], 0) + 1
            if inside[meta["name"]] > 1:
                overlap.append(meta["name"])
            concurrent.append(sum(inside.values()))
        time.sleep(0.002)
        with lock:
            inside[meta["name"]] -= 1
            last[meta["name"]] = meta["resourceVersion"]

    r = run(plugin("p", handle, workers=4))
    for rv in range(1, 200):
        r.reconciler([changed("MODIFIED", obj(f"o{rv % 5}", rv))])
    wait_until(r.settled, what="the queue to drain")
    assert overlap == []
    assert max(concurrent) > 1  # the workers did run objects in parallel
    assert last == {f"o{i}": str(max(rv for rv in range(1, 200) if rv % 5 == i)) for i in range(5)}


def test_a_failing_object_is_retried_until_it_succeeds_and_every_attempt_is_logged(
    run: Any, caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[str] = []

    def flaky(w: Any, event: Mapping[str, Any], c: Mapping[str, str]) -> None:
        attempts.append(event["type"])
        if len(attempts) <= 3:
            raise ConnectionError("server down")

    caplog.set_level(logging.DEBUG)
    r = run(plugin("flaky", flaky))
    r.reconciler([changed("ADDED", obj("web", 1))])
    wait_until(
        lambda: r.sample("event_watcher_events_handled_total", "flaky") == 1, what="the fourth attempt"
    )
    assert attempts == ["ADDED"] * 4
    assert r.sample("event_watcher_events_failed_total", "flaky") == 3
    assert r.sample("event_watcher_retries_total", "flaky") == 3
    errors_logged = [rec for rec in caplog.records if rec.levelno == logging.ERROR]
    assert [rec.getMessage() for rec in errors_logged] == [
        f"Plugin flaky failed on ADDED Route ns/web (resourceVersion 1), attempt {n}: "
        "ConnectionError: server down; retrying with backoff."
        for n in (1, 2, 3)
    ]
    assert [bool(rec.exc_info) for rec in errors_logged] == [True, False, False]  # the traceback once


def test_temporary_and_permanent_errors(run: Any, caplog: pytest.LogCaptureFixture) -> None:
    times: list[float] = []

    def handle(w: Any, event: Mapping[str, Any], c: Mapping[str, str]) -> None:
        name = event["object"]["metadata"]["name"]
        if name == "later":
            times.append(time.monotonic())
            if len(times) == 1:
                raise watcher.TemporaryError("order pending", delay=0.3)
        if name == "never":
            raise watcher.PermanentError("host name is not valid")

    r = run(plugin("p", handle))
    r.reconciler([changed("ADDED", obj("later", 1)), changed("ADDED", obj("never", 1))])
    wait_until(lambda: len(times) == 2 and r.settled(), what="the temporary failure's retry")
    assert times[1] - times[0] >= 0.29
    assert r.sample("event_watcher_events_failed_total", "p") == 2
    assert r.sample("event_watcher_retries_total", "p") == 1  # the permanent one is not retried...
    messages = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.ERROR]
    assert any(
        m.endswith("PermanentError: host name is not valid; not retried until the object changes.")
        for m in messages
    )
    assert any(m.endswith("TemporaryError: order pending; retrying after 0.3 s.") for m in messages)
    r.reconciler([changed("MODIFIED", obj("never", 2))])  # ...until it changes
    wait_until(
        lambda: r.sample("event_watcher_events_failed_total", "p") == 3, what="the changed object's attempt"
    )


def test_a_newer_change_is_handled_at_once_even_during_a_long_backoff(run: Any) -> None:
    handled: list[str] = []

    def handle(w: Any, event: Mapping[str, Any], c: Mapping[str, str]) -> None:
        rv = event["object"]["metadata"]["resourceVersion"]
        if rv == "1":
            raise RuntimeError("bad version")
        handled.append(rv)

    r = run(plugin("p", handle))
    r.reconciler.plugins[0].queue.policy = RetryPolicy(initial=60.0, cap=60.0)
    r.reconciler([changed("ADDED", obj("web", 1))])
    wait_until(lambda: r.sample("event_watcher_events_failed_total", "p") == 1, what="the first failure")
    r.reconciler([changed("MODIFIED", obj("web", 2))])
    wait_until(lambda: handled == ["2"], timeout=5, what="the newer change, without waiting out 60 s")


def test_stop_lets_calls_in_flight_finish_within_the_grace_and_names_the_rest(run: Any) -> None:
    release = threading.Event()
    finished: list[str] = []

    def handle(w: Any, event: Mapping[str, Any], c: Mapping[str, str]) -> None:
        name = event["object"]["metadata"]["name"]
        if name == "hang":
            release.wait(10)
        else:
            time.sleep(0.2)
        finished.append(name)

    hangs, quick = run(plugin("hangs", handle)), run(plugin("quick", handle))
    hangs.reconciler([changed("ADDED", obj("hang", 1))])
    quick.reconciler([changed("ADDED", obj("short", 1)), changed("ADDED", obj("queued", 1))])
    wait_until(lambda: hangs.sample("event_watcher_workers_busy", "hangs") == 1, what="the hanging call")
    wait_until(lambda: quick.sample("event_watcher_workers_busy", "quick") == 1, what="the short call")
    assert quick.reconciler.stop(2.0) == []  # the call in flight finished; "queued" was not started
    assert finished == ["short"]
    assert hangs.reconciler.stop(0.2) == ["hangs"]
    release.set()


def test_a_call_running_longer_than_stuck_after_is_reported(run: Any) -> None:
    release = threading.Event()
    r = run(plugin("wedged", lambda w, e, c: release.wait(10), stuck_after=0.2))
    assert r.reconciler.stuck() is None
    r.reconciler([changed("MODIFIED", obj("web", 7))])
    problem = wait_until(r.reconciler.stuck, timeout=5, what="the stuck report")
    assert problem.startswith("plugin wedged has been handling MODIFIED ns/web for ")
    assert problem.endswith(" s (stuck_after 0 s)")
    release.set()
    wait_until(lambda: r.reconciler.stuck() is None, what="the report to clear")


def test_without_permission_nothing_is_called_and_the_work_waits(run: Any) -> None:
    handled: list[str] = []
    refused: list[int] = []
    r = run(plugin("p", lambda w, e, c: handled.append(e["object"]["metadata"]["resourceVersion"])))
    leading = [False]
    r.reconciler.guard(lambda: leading[0], lambda: refused.append(1))
    r.reconciler([changed("ADDED", obj("web", 1))])
    wait_until(lambda: refused, what="the refusal")
    r.reconciler.pause()
    r.reconciler([changed("MODIFIED", obj("web", 2))])
    time.sleep(0.1)
    assert handled == [] and r.sample("event_watcher_queue_depth", "p") == 1
    leading[0] = True
    r.reconciler.resume()
    wait_until(lambda: handled == ["2"], what="the waiting work, as one ADDED with the latest state")


def test_each_plugin_gets_its_own_copy_of_the_object(run: Any) -> None:
    seen: list[dict[str, Any]] = []

    def mutate(w: Any, event: Mapping[str, Any], c: Mapping[str, str]) -> None:
        event["object"]["metadata"]["name"] = "changed"

    r = run(plugin("mutates", mutate), plugin("reads", lambda w, e, c: seen.append(e["object"])))
    r.reconciler([changed("ADDED", obj("web", 1))])
    wait_until(lambda: seen, what="the second plugin's call")
    assert seen[0]["metadata"]["name"] == "web"


# --- with the real daemon ------------------------------------------------------------------------------


def test_a_failure_is_retried_without_any_resync(local_api: LocalAPI) -> None:
    local_api.create("routes", route("flaky"))
    local_api.create("routes", route("calm"))
    ini = {"plugin_record": {"fail_on": "flaky", "fail_times": "2"}}
    with running_watcher(local_api, ini=ini) as w:
        assert w.settings.resync_period == 0
        rec = w.plugin("record")
        wait_until(lambda: "default/flaky" in rec.state, what="the third attempt to succeed")
        assert [e.type for e in rec.events if e.name == "flaky"] == ["ADDED"] * 3
        assert [e.type for e in rec.events if e.name == "calm"] == ["ADDED"]
        assert w.errors == 2
        assert w.metric("event_watcher_retries_total", plugin="record") == 2


def test_a_burst_of_updates_is_coalesced_and_ends_in_the_final_state(local_api: LocalAPI) -> None:
    local_api.create("routes", route("busy"))
    ini = {"plugin_record": {"sleep_on": "busy", "sleep": "0.05"}}
    with running_watcher(local_api, ini=ini) as w:
        rec = w.plugin("record")
        for i in range(100):
            local_api.patch("routes", "default", "busy", {"metadata": {"labels": {"n": str(i)}}})
        final = local_api.get("routes", "default", "busy")["metadata"]["resourceVersion"]
        wait_until(lambda: any(e.resource_version == final for e in rec.events), what="the final state")
        calls = [e for e in rec.events if e.name == "busy"]
        assert len(calls) < 50  # 100 updates, at 50 ms a call: most of them were merged
        assert [e.resource_version for e in calls] == sorted((e.resource_version for e in calls), key=int)
