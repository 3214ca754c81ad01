#!/usr/bin/env python3
"""Chaos run: prove that the watcher brings its plugins to the server's state, whatever breaks.

A driver makes random creates, updates and deletes of routes across a few namespaces of the local API
(real HTTPS, real resourceVersion semantics) while an injector fires faults at random: connections
dropped mid-line, clean stream ends, malformed lines, 410 in-stream and as HTTP, real compaction while
the watcher is disconnected, 401 with the token rotated through the token file, 429 with Retry-After,
500/503 bursts, connection refused for a few seconds, silent and trickling streams, empty streams, and
the watcher process restarted with SIGTERM. The watcher is the real daemon in a subprocess (watch.py's
``main``, configured by environment and ini file, watching all namespaces) with the ``chaos_record``
plugin, which writes one line per event it receives. At the end the record is replayed against the
server's change log (``bench/_chaos_check.py`` defines every figure precisely) and the figures are
printed; the last line is a ``key=value`` summary. Exit status 1 when anything was lost, mismatched,
out of order or duplicated, or a watcher process crashed.

``--seed`` fixes the changes and the fault plan (kinds, order, parameters); thread timing is not
reproducible, so two runs with one seed interleave differently. Defaults: 10,000 changes at 100/s,
at least 500 faults, about two minutes on two cores. Longer: ``--changes 100000 --faults 5000``.
"""

from __future__ import annotations

import argparse
import bisect
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import _chaos_check as check
from bench._chaos_proc import WatcherProcess, base_env, free_port, write_ini
from bench._common import BENCH_PLUGINS
from watcher.localapi import Fault, LocalAPI, sample_route
from watcher.localapi.faults import MALFORMED_LINE

SEQ = "chaos.bench/seq"
RESTART_REASONS = ("timeout", "dropped", "expired", "unauthorized", "throttled", "server_error", "forbidden")


# --- the server side: changes ----------------------------------------------------------------------------


class Driver:
    """Makes the changes and keeps the log the verdict is computed from (only it writes to the API)."""

    def __init__(self, api: LocalAPI, rng: random.Random, namespaces: int, objects: int) -> None:
        self.api = api
        self.rng = rng
        self.namespaces = [f"chaos-{i}" for i in range(namespaces)]
        self.low, self.high = objects * 2 // 3, objects * 4 // 3
        self.pool = max(8, objects * 2 // namespaces)  # names per namespace: deleted names come back
        self.live: dict[str, tuple[str, str, str]] = {}  # key -> (uid, seq, namespace)
        self.keys: list[str] = []  # the live keys, for O(1) random choice
        self.log: list[check.Change] = []
        self.made_at: list[float] = []  # monotonic time of each change, parallel to ``log``
        self.ops: Counter[str] = Counter()
        self.seq = 0

    def _record(self, obj: dict[str, Any], type_: str, key: str) -> None:
        meta = obj["metadata"]
        seq = (meta.get("annotations") or {}).get(SEQ, "-")
        self.log.append(check.Change(int(meta["resourceVersion"]), type_, key, meta["uid"], seq))
        self.made_at.append(time.monotonic())
        self.ops[type_] += 1

    def _next_seq(self) -> str:
        self.seq += 1
        return str(self.seq)

    def create(self) -> None:
        for _ in range(50):
            ns = self.rng.choice(self.namespaces)
            name = f"r-{self.rng.randrange(self.pool):05d}"
            key = f"{ns}/{name}"
            if key not in self.live:
                break
        else:
            return self.update()
        obj = sample_route(name, ns, f"{name}.{ns}.apps.example.test")
        obj["metadata"]["annotations"] = {SEQ: self._next_seq()}
        stored = self.api.create("routes", obj)
        self.live[key] = (stored["metadata"]["uid"], stored["metadata"]["annotations"][SEQ], ns)
        self.keys.append(key)
        self._record(stored, "ADDED", key)

    def update(self) -> None:
        key = self.rng.choice(self.keys)
        ns, name = key.split("/")
        seq = self._next_seq()
        what = self.rng.random()
        patch: dict[str, Any] = {"metadata": {"annotations": {SEQ: seq}}}
        if what < 0.5:
            patch["spec"] = {"host": f"{name}-{seq}.{ns}.apps.example.test"}
        elif what < 0.75:
            patch["metadata"]["labels"] = {"version": seq}
        else:
            patch["status"] = {"ingress": [{"host": f"{name}.{ns}.apps.example.test", "routerName": seq}]}
        stored = self.api.patch("routes", ns, name, patch)
        self._record(stored, "MODIFIED", key)

    def delete(self) -> None:
        i = self.rng.randrange(len(self.keys))
        key = self.keys[i]
        self.keys[i] = self.keys[-1]
        self.keys.pop()
        ns, name = key.split("/")
        gone = self.api.delete("routes", ns, name)
        del self.live[key]
        self._record(gone, "DELETED", key)

    def step(self) -> None:
        n = len(self.keys)
        if n < self.low:
            self.create()
        elif n > self.high:
            self.delete()
        else:
            roll = self.rng.random()
            if roll < 0.25:
                self.create()
            elif roll < 0.8:
                self.update()
            else:
                self.delete()

    def populate(self, count: int) -> None:
        while len(self.keys) < count:
            self.create()


# --- the client side: what the plugin wrote --------------------------------------------------------------


class Tail:
    """Follows the record file: keeps every line, and the watcher's position over time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []
        self.times: list[float] = []  # when the position changed...
        self.positions: list[int] = []  # ...and to what (max resourceVersion delivered in this run)
        self.position = 0
        self.starts = 0
        self._offset = 0
        self._rest = ""
        self._lock = threading.Lock()

    def poll(self) -> None:
        with self._lock:
            try:
                with open(self.path, encoding="utf-8") as f:
                    f.seek(self._offset)
                    data = f.read()
                    self._offset = f.tell()
            except FileNotFoundError:
                return
            if not data:
                return
            now = time.monotonic()
            chunks = (self._rest + data).split("\n")
            self._rest = chunks.pop()
            before = self.position
            for line in chunks:
                self.lines.append(line)
                tag = line[:1]
                if tag == "S":
                    self.starts += 1
                    self.position = 0
                elif tag == "E":
                    self.position = max(self.position, int(line.rsplit(" ", 2)[1]))
                elif tag == "L":
                    self.position = max(self.position, int(line.split()[1]))
            if self.position != before:
                self.times.append(now)
                self.positions.append(self.position)

    def lists_in_current_run(self) -> int:
        with self._lock:
            count = 0
            for line in reversed(self.lines):
                if line.startswith("S"):
                    break
                count += line.startswith("L")
            return count


# --- faults ----------------------------------------------------------------------------------------------


@dataclass
class Fired:
    kind: str
    at: float  # monotonic time it took effect
    uses: int  # failed requests / broken streams it caused


class Injector:
    """Fires one fault scenario at a time, at random, and keeps the watcher restarting on schedule."""

    # Cheap stream faults dominate so that hundreds fire in two minutes; the ones that make the watcher
    # wait (status codes, refusals, empty streams: backoff) are rarer but each fires dozens of times.
    WEIGHTS: ClassVar[dict[str, int]] = {
        "drop_mid_line": 25,
        "close": 18,
        "malformed_line": 10,
        "expired_event": 10,
        "expired_http": 9,
        "silent": 4,
        "trickle": 1,
        "compaction": 2,
        "token_rotation_401": 2,
        "status_401": 1,
        "status_429": 2,
        "status_5xx": 2,
        "refuse": 1,
        "empty_close": 1,
        "dead_stream": 0,
    }

    def __init__(
        self,
        api: LocalAPI,
        rng: random.Random,
        watcher: WatcherProcess,
        token_file: Path,
        *,
        target: int,
        duration: float,
        restarts: int,
        dead_streams: int,
        dead_stream_seconds: float,
        heal: bool,
        log: Callable[[str], None],
    ) -> None:
        self.heal = heal
        self.dead_stream_seconds = dead_stream_seconds
        self.dead_until = 0.0
        self.scenarios = 0
        self.api = api
        self.rng = rng
        self.watcher = watcher
        self.token_file = token_file
        self.target = target
        self.duration = duration
        self.restart_at = [duration * (i + 0.5) / restarts for i in range(restarts)] if restarts else []
        self.dead_at = (
            [duration * (i + 0.3) / dead_streams for i in range(dead_streams)] if dead_streams else []
        )
        self.log = log
        self.fired: list[Fired] = []
        self.inflight: list[tuple[str, Fault]] = []  # queued on the server, not used up yet
        self.journal: list[str] = []  # "seconds rv kind xuses", kept with the record for post-mortems
        self.counts: Counter[str] = Counter()
        self.metrics: Counter[str] = Counter()  # summed over watcher processes
        self.unclean_exits = 0
        self.stop = threading.Event()
        self.started = 0.0
        self.kinds = list(self.WEIGHTS)
        self.weights = [self.WEIGHTS[k] for k in self.kinds]

    # --- bookkeeping -------------------------------------------------------------------------------------

    def _fired(self, kind: str, uses: int = 1) -> None:
        self.fired.append(Fired(kind, time.monotonic(), uses))
        self.counts[kind] += uses
        self.journal.append(
            f"{time.monotonic() - self.started:9.3f} rv {self.api.resource_version} {kind} x{uses}"
        )

    def _reap(self) -> list[Fault]:
        """Count the queued faults the watcher's requests have used up; the ones still queued."""
        pending = self.api.pending_faults()
        still = []
        for kind, fault in self.inflight:
            if any(p is fault for p in pending):
                still.append((kind, fault))
            else:
                self._fired(kind, fault.count)
        self.inflight = still
        return pending

    def _wait_taken(self, faults: list[Fault], timeout: float = 20.0) -> bool:
        """Until every one of ``faults`` has been used up by the watcher's requests."""
        deadline = time.monotonic() + timeout
        while not self.stop.is_set():
            pending = self._reap()
            if not any(p is f for p in pending for f in faults):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.003)
        return False

    def _queue(self, kind: str, *faults: Fault) -> None:
        """Queue behind what is already queued: the watcher's next requests take them in order, so a
        fault is always waiting when a stream ends (no unfaulted stream sits out its timeout)."""
        for f in faults:
            self.api.inject(f)
            self.inflight.append((kind, f))

    def scrape(self) -> None:
        for name, value in self.watcher.metrics().items():
            if name.startswith(("event_watcher_watch_restarts_total", "event_watcher_relists_total")) or (
                name.startswith("event_watcher_events_received_total")
            ):
                self.metrics[name] += int(value)

    def write_token(self, token: str) -> None:
        tmp = self.token_file.with_suffix(".new")
        tmp.write_text(token, encoding="utf-8")
        os.replace(tmp, self.token_file)

    # --- the loop -----------------------------------------------------------------------------------------

    def run(self) -> None:
        self.started = time.monotonic()
        while not self.stop.is_set():
            self._reap()
            now = time.monotonic()
            elapsed = now - self.started
            # A restart is due even while queued faults wait, except during a dead stream: that one
            # must end by the watcher's own read timeout, not by SIGTERM.
            if self.restart_at and elapsed >= self.restart_at[0] and now >= self.dead_until:
                self.restart_at.pop(0)
                self.sigterm()
                continue
            if len(self.inflight) > 1:  # two scenarios ahead is enough
                time.sleep(0.003)
                continue
            if self.dead_at and elapsed >= self.dead_at[0]:
                self.dead_at.pop(0)
                self.dead_until = now + self.dead_stream_seconds + 5
                self.scenario("dead_stream")
                continue
            self.scenarios += 1
            if self.scenarios % 20 == 0:  # now and then the rarest kind, so that every kind fires in a run
                kind = min((k for k, w in self.WEIGHTS.items() if w), key=lambda k: self.counts[k])
            else:
                kind = self.rng.choices(self.kinds, self.weights)[0]
            self.scenario(kind)
            done = sum(self.counts.values())
            due = self.target * min(1.0, elapsed / self.duration) if self.duration else self.target
            if done >= due + 10:  # well ahead of schedule: a random pause
                self.stop.wait(self.rng.uniform(0, 0.4))

    # Faults after which the watcher backs off. The informer resets its backoff after a stream that
    # delivered events, so with ``heal`` each of these is followed by one (a clean end after a few
    # events), as a working server gives between incidents. Without it, backoff faults with no event
    # in between add up towards the 30 s cap (``--no-heal``).
    BACKOFF_KINDS = frozenset(
        {
            "status_401",
            "status_429",
            "status_5xx",
            "refuse",
            "compaction",
            "token_rotation_401",
            "empty_close",
        }
    )

    def scenario(self, kind: str) -> None:
        self._scenario(kind)
        if self.heal and kind in self.BACKOFF_KINDS and not self.stop.is_set():
            # After a compaction the first watch meets the 410 (and uses up the first close): two.
            for _ in range(2 if kind == "compaction" else 1):
                self._queue("close", Fault("close", after_events=self.rng.randint(1, 4)))

    def _scenario(self, kind: str) -> None:
        r = self.rng
        if kind == "drop_mid_line":
            self._queue(kind, Fault("drop_mid_line", after_events=r.randint(0, 4)))
        elif kind == "close":
            self._queue(kind, Fault("close", after_events=r.randint(1, 4)))
        elif kind == "malformed_line":
            if r.random() < 0.1:  # the stream goes on after the bad line (until the watch times out)
                self._queue(kind, Fault("malformed_line", after_events=r.randint(0, 5)))
            else:  # a bad line, then the stream ends
                self._queue(kind, Fault("close", after_events=r.randint(0, 4), payload=MALFORMED_LINE))
        elif kind == "expired_event":
            self._queue(kind, Fault("expired_event"))
        elif kind == "expired_http":
            self._queue(kind, Fault("expired_http"))
        elif kind == "compaction":
            self.compaction()
        elif kind == "token_rotation_401":
            self.rotation()
        elif kind == "status_401":
            self._queue(kind, Fault("status", status=401))
        elif kind == "status_429":
            self._queue(kind, Fault("status", status=429, retry_after=r.choice([0.2, 0.5, 1.0])))
        elif kind == "status_5xx":
            match = r.choice(["watch", "watch", "any"])
            burst = [
                Fault("status", status=r.choice([500, 503]), match=match) for _ in range(r.randint(1, 2))
            ]
            self._queue(kind, *burst)
        elif kind == "refuse":
            self.api.refuse(r.uniform(1.0, 3.0))
            self._fired(kind)
        elif kind == "silent":  # nothing for a while, then the connection drops
            self._queue(kind, Fault("silent", seconds=r.uniform(0.2, 0.8)))
        elif kind == "trickle":  # the stream arrives five bytes at a time until it times out
            self._queue(kind, Fault("trickle", seconds=0.0))
        elif kind == "empty_close":
            self._queue(kind, *[Fault("empty_close") for _ in range(r.randint(1, 3))])
        elif kind == "dead_stream":  # silent for good: only the watcher's read timeout ends it
            self._queue(kind, Fault("silent", seconds=0.0))

    def compaction(self) -> None:
        """The watcher is cut off; changes go on; history is compacted; it comes back to a real 410.

        Queued faults are let drain first: one taken by the request that meets the 410 would do nothing.
        """
        r = self.rng
        if not self._wait_taken([f for _, f in self.inflight]):
            return
        self.api.expired_as = r.choice(["event", "http"])
        if r.random() < 0.5:
            self.api.refuse(r.uniform(0.5, 1.5))
            self.stop.wait(0.3)
        else:
            first, second = Fault("status", status=503), Fault("status", status=503)
            self._queue("status_5xx", first, second)
            if not self._wait_taken([first]):
                return
        self.api.compact()
        self._fired("compaction")

    def rotation(self) -> None:
        """The server accepts only a new token; the token file follows now or a little later."""
        new = self.api.rotate_token()
        self._fired("token_rotation_401")
        if self.rng.random() < 0.5:
            self.stop.wait(self.rng.uniform(0.2, 1.5))
        self.write_token(new)

    def sigterm(self) -> None:
        self.scrape()
        code = self.watcher.stop()
        self._fired("sigterm_restart")
        if code != 0:
            self.unclean_exits += 1
            self.log(f"the watcher exited with {code} after SIGTERM")
        self.watcher.start()
        # The next SIGTERM goes to a watcher that has started (one that is still importing has no
        # handler yet, and dies of the signal: a test of Python, not of the watcher).
        self.watcher.wait_ready(timeout=30)


# --- the run ---------------------------------------------------------------------------------------------


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=1, help="fixes the changes and the fault plan (default 1)")
    p.add_argument("--changes", type=int, default=10_000, help="changes to make (default 10000)")
    p.add_argument("--faults", type=int, default=500, help="faults to fire at least (default 500)")
    p.add_argument("--rate", type=float, default=100.0, help="changes per second (default 100)")
    p.add_argument("--namespaces", type=int, default=4)
    p.add_argument("--objects", type=int, default=600, help="routes alive at a time, about (default 600)")
    p.add_argument("--restarts", type=int, default=6, help="SIGTERM restarts (default 6)")
    p.add_argument(
        "--dead-streams",
        type=int,
        default=0,
        help="streams that go silent for good, ended only by the watcher's read timeout "
        "(watch timeout + 30 s each; default 0)",
    )
    p.add_argument(
        "--no-heal",
        action="store_true",
        help="do not follow the faults that make the watcher back off with a healthy stream",
    )
    p.add_argument("--watch-timeout", type=float, default=2.0, help="WATCHER_WATCH_TIMEOUT (default 2 s)")
    p.add_argument(
        "--max-extra", type=float, default=120.0, help="seconds to keep going for the fault target"
    )
    p.add_argument("--keep", metavar="DIR", help="keep the record, the change log and the watcher logs here")
    p.add_argument("--quiet", action="store_true", help="only the figures")
    return p.parse_args(argv)


def watcher_env(
    args: argparse.Namespace, api: LocalAPI, work: Path, record: Path, token_file: Path
) -> dict[str, str]:
    """watch.py's configuration, as a Deployment would give it: environment plus an ini file."""
    ini = write_ini(work / "config.ini", {"plugin_chaos_record": {"out": str(record)}})
    return {
        **base_env(work),
        "CONFIG_FILE": str(ini),
        "K8S_API_ENDPOINT": api.url,
        "K8S_TOKEN_FILE": str(token_file),
        "K8S_CA": api.ca_file,
        "K8S_RESOURCE": "routes",
        "K8S_NAMESPACED": "false",
        "WATCHER_PLUGIN": "chaos_record",
        "WATCHER_PLUGIN_PATH": str(BENCH_PLUGINS),
        "WATCHER_WATCH_TIMEOUT": f"{args.watch_timeout:g}",
        "LOG_LEVEL": "INFO",
    }


def drive(
    args: argparse.Namespace, driver: Driver, injector: Injector, tail: Tail, say: Callable[[str], None]
) -> int:
    """Changes at ``--rate`` until ``--changes`` are made and ``--faults`` have fired (or time is up)."""
    start = time.monotonic()
    duration = args.changes / args.rate
    made = 0
    next_report = start + 10
    while True:
        due = start + made / args.rate
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        driver.step()
        made += 1
        fired = sum(injector.counts.values())
        if made >= args.changes and (fired >= args.faults or now - start > duration + args.max_extra):
            return made
        if now >= next_report:
            next_report += 10
            server = driver.api.resource_version
            say(f"{made} changes, {fired} faults, watcher at rv {tail.position} of {server}")


def drain(
    watcher: WatcherProcess,
    tail: Tail,
    injector: Injector,
    converged: Callable[[], bool],
    say: Callable[[str], None],
) -> None:
    """Give the watcher time to bring its plugins to the server's final state (it may be in a
    backoff, and its work queue behind its watch)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not converged():
        if not watcher.alive():
            say("the watcher died; starting it again to finish")
            injector.unclean_exits += 1
            watcher.start()
        time.sleep(0.5)


def keep(work: Path, driver: Driver, tail: Tail, injector: Injector) -> None:
    """The change log, the watcher's position over time and the fault journal, for a post-mortem."""
    (work / "changes.txt").write_text(
        "".join(f"{c.rv} {c.type} {c.key} {c.uid} {c.seq}\n" for c in driver.log), encoding="utf-8"
    )
    (work / "timeline.txt").write_text(
        "".join(f"{t - injector.started:9.3f} {p}\n" for t, p in zip(tail.times, tail.positions)),
        encoding="utf-8",
    )
    (work / "faults.txt").write_text("".join(f"{line}\n" for line in injector.journal), encoding="utf-8")


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)

    def say(text: str) -> None:
        if not args.quiet:
            print(f"[chaos] {text}", file=sys.stderr, flush=True)

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    record = work / "record.txt"
    record.unlink(missing_ok=True)
    rng = random.Random(args.seed)
    began = time.monotonic()
    api = LocalAPI(bookmark_interval=1.0, history_limit=1_000_000).start()
    watcher: Optional[WatcherProcess] = None
    try:
        token_file = work / "token"
        token_file.write_text(api.token, encoding="utf-8")
        driver = Driver(api, random.Random(rng.random()), args.namespaces, args.objects)
        driver.populate(args.objects)
        initial = len(driver.log)
        watcher = WatcherProcess(watcher_env(args, api, work, record, token_file), free_port(), work)
        watcher.start()
        tail = Tail(record)
        deadline = time.monotonic() + 60
        while tail.lists_in_current_run() == 0:
            tail.poll()
            if time.monotonic() > deadline or not watcher.alive():
                say(f"the watcher did not start; see {watcher.log_files[-1]}")
                return 2
            time.sleep(0.05)
        say(f"watching: {initial} routes listed; {args.changes} changes at {args.rate:g}/s with faults")
        injector = Injector(
            api,
            random.Random(rng.random()),
            watcher,
            token_file,
            target=args.faults,
            duration=args.changes / args.rate,
            restarts=args.restarts,
            dead_streams=args.dead_streams,
            dead_stream_seconds=args.watch_timeout * 1.1 + 30,  # the informer's read timeout
            heal=not args.no_heal,
            log=say,
        )
        stop_tail = threading.Event()

        def follow() -> None:
            while not stop_tail.wait(0.02):
                tail.poll()

        follower = threading.Thread(target=follow, name="tail", daemon=True)
        follower.start()
        inject_thread = threading.Thread(target=injector.run, name="injector", daemon=True)
        inject_thread.start()
        start = time.monotonic()
        made = drive(args, driver, injector, tail, say)
        injector.stop.set()
        inject_thread.join(30)
        injector._reap()
        api.clear_faults()
        time.sleep(3.1)  # a refusal in progress ends (they last at most 3 s)
        final_rv = api.resource_version
        drain(
            watcher,
            tail,
            injector,
            lambda: check.check(driver.log, list(tail.lines), final_rv).lost == 0,
            say,
        )
        drained = time.monotonic()
        injector.scrape()
        if watcher.stop() != 0:
            injector.unclean_exits += 1
        stop_tail.set()
        follower.join(5)
        tail.poll()
        report = check.check(driver.log, tail.lines, final_rv)
        keep(work, driver, tail, injector)
        logs = "".join(p.read_text(encoding="utf-8", errors="replace") for p in watcher.log_files)
        figures = Figures(args, driver, initial, made, injector, tail, report, logs, api)
        figures.print(time.monotonic() - began, drained - start)
        if not args.keep and report.ok and figures.healthy:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"record, change log and watcher logs kept in {work}")
        return 0 if report.ok and figures.healthy else 1
    finally:
        if watcher is not None and watcher.alive():
            watcher.stop()
        api.stop()


class Figures:
    def __init__(
        self,
        args: argparse.Namespace,
        driver: Driver,
        initial: int,
        made: int,
        injector: Injector,
        tail: Tail,
        report: check.Report,
        logs: str,
        api: LocalAPI,
    ) -> None:
        self.args = args
        self.driver = driver
        self.initial = initial
        self.made = made
        self.injector = injector
        self.tail = tail
        self.report = report
        self.tracebacks = logs.count("Traceback (most recent call last)")
        self.errors = sum(1 for line in logs.splitlines() if " ERROR " in line or " CRITICAL " in line)
        self.unauthorized = api.stats.unauthorized
        self.healthy = self.tracebacks == 0 and injector.unclean_exits == 0

    def metric(self, prefix: str) -> int:
        return sum(v for k, v in self.injector.metrics.items() if k.startswith(prefix))

    def delays(self) -> tuple[list[float], list[tuple[float, int, str]]]:
        """How long each change waited until the plugins had it (or a later state of its object), and
        the worst few with the fault fired last before each."""
        times, positions = self.tail.times, self.tail.positions
        fired = sorted(self.injector.fired, key=lambda f: f.at)
        fired_at = [f.at for f in fired]
        delays: list[float] = []
        worst: list[tuple[float, int, str]] = []
        for change, made_at in zip(self.driver.log[self.initial :], self.driver.made_at[self.initial :]):
            i = bisect.bisect_left(times, made_at)
            while i < len(times) and positions[i] < change.rv:
                i += 1
            if i == len(times):
                continue  # never covered: counted as lost by the check
            delay = times[i] - made_at
            delays.append(delay)
            j = bisect.bisect_right(fired_at, made_at) - 1
            cause = fired[j].kind if j >= 0 else "-"
            worst.append((delay, change.rv, cause))
        worst.sort(reverse=True)
        return delays, worst[:3]

    def print(self, total: float, active: float) -> None:
        a, r, d, inj = self.args, self.report, self.driver, self.injector
        faults = sum(inj.counts.values())
        ops = d.ops

        def line(label: str, text: str) -> None:
            print(f"{label + ':':<21}{text}")

        print(f"chaos run, seed {a.seed}: {total:.0f} s in all, {active:.0f} s of changes and faults")
        line(
            "changes made",
            f"{self.made:,} (creates {ops['ADDED'] - self.initial:,}, updates {ops['MODIFIED']:,}, "
            f"deletes {ops['DELETED']:,}) across {a.namespaces} namespaces, "
            f"after {self.initial} initial routes",
        )
        line("faults injected", f"{faults:,}")
        for kind, count in sorted(inj.counts.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"  {kind:<22} {count:>6,}")
        line(
            "events delivered",
            f"{r.events:,} over {r.runs} watcher processes ({r.redelivered_on_restart:,} re-delivered "
            "by a restarted process, as expected)",
        )
        line(
            "merged",
            f"{r.merged:,} changes merged into a newer one by the work queue, or skipped by a LIST (allowed)",
        )
        restarts = {
            reason: self.metric(f'event_watcher_watch_restarts_total{{reason="{reason}"}}')
            for reason in RESTART_REASONS
        }
        reconnects = sum(restarts.values())
        detail = ", ".join(f"{k} {v:,}" for k, v in restarts.items() if v)
        line("reconnects", f"{reconnects:,} ({detail}) per /metrics; {self.unauthorized:,} requests got 401")
        relists = self.metric("event_watcher_relists_total")
        line("relists", f"{relists:,} per /metrics; {r.relists:,} LISTs after the first in the record")
        delays, worst = self.delays()
        delays.sort()
        longest = delays[-1] if delays else 0.0
        if delays:
            p50, p99 = delays[len(delays) // 2], delays[min(len(delays) - 1, int(len(delays) * 0.99))]
            causes = "; ".join(f"{w[0]:.2f} s for rv {w[1]} after {w[2]}" for w in worst)
            line(
                "recovery",
                f"longest {longest:.2f} s ({causes}); "
                f"change to plugin p50 {p50 * 1000:.0f} ms, p99 {p99:.2f} s",
            )
        line(
            "watcher processes",
            f"{r.runs} started, {r.clean_stops} stopped cleanly, {inj.unclean_exits} unclean exits, "
            f"{self.tracebacks} tracebacks, {self.errors} ERROR lines in the logs",
        )
        line("lost", f"{r.lost:,} objects whose final state never reached the plugins")
        line("mismatched objects", f"{r.mismatched:,}")
        line("out of order", f"{r.out_of_order:,}")
        line("duplicates", f"{r.duplicates:,} (within one process run)")
        for problem in r.problems:
            print(f"  ! {problem}")
        if self.made < a.changes or faults < a.faults:
            print(
                f"  note: fewer changes or faults than asked ({self.made}/{a.changes}, {faults}/{a.faults})"
            )
        summary = {
            "lost": r.lost,
            "out_of_order": r.out_of_order,
            "mismatched": r.mismatched,
            "duplicates": r.duplicates,
            "changes": self.made,
            "faults": faults,
            "events": r.events,
            "reconnects": reconnects,
            "relists": relists,
            "restarts": inj.counts["sigterm_restart"],
            "max_recovery_s": f"{longest:.2f}",
            "tracebacks": self.tracebacks,
            "ok": "yes" if r.ok and self.healthy else "no",
        }
        print(" ".join(f"{k}={v}" for k, v in summary.items()))


if __name__ == "__main__":
    sys.exit(main())
