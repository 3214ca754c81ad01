#!/usr/bin/env python3
"""The work queue where it matters: a slow plugin, a failing one, and a burst of updates to one object.

Each situation runs the real daemon (``python3 watch.py --config …``, all namespaces,
``resync_period = 0``) against the local API over HTTPS, with the ``probe`` plugin (``bench/plugins``),
which writes down when it handled which state of which route; changes carry the monotonic time they
were made (an annotation), so a figure is "change made → plugin done with it".

1. **Head-of-line blocking**: ``probe`` takes 2 s for each of 5 routes in namespace ``slow``
   (``workers = 8``), followed in the chain by ``count``; then 200 routes are created in ``web``. The
   p99 latency of those 200 at ``probe`` and at ``count`` (before the work queue: 10 s at ``count``).
2. **Retry**: ``probe`` raises 3 times for one route, then succeeds: seconds from its creation to the
   success (before: never, without a resync).
3. **Coalescing**: 500 updates to one route in 5 s with a 20 ms plugin: seconds from the last update
   to the plugin handling that state, and how many calls it took (before: 500 calls, 5.2 s).

The last line: ``hol_p99_probe_s=… hol_p99_next_s=… retry_s=… burst_final_s=… burst_calls=…``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
from _common import STAMP, say

from watcher.localapi import LocalAPI


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--routes", type=int, default=200, help="unrelated routes in situation 1")
    parser.add_argument("--updates", type=int, default=500, help="updates to one route in situation 3")
    parser.add_argument("--seconds", type=float, default=5.0, help="over how long (situation 3)")
    return parser.parse_args(argv)


class Watcher:
    """The daemon on its own ini file, with ``chain`` as its plugins; stopped with SIGTERM."""

    def __init__(self, workdir: str, api: LocalAPI, chain: Mapping[str, Mapping[str, str]]) -> None:
        token_file = os.path.join(workdir, "token")
        Path(token_file).write_text(api.token, encoding="utf-8")
        lines = [
            "[global]",
            f"k8s_api_endpoint = {api.url}",
            f"k8s_token_file = {token_file}",
            f"k8s_ca = {api.ca_file}",
            "k8s_resource = routes",
            "k8s_namespaced = false",
            f"watcher_plugin = {', '.join(chain)}",
            f"plugin_path = {_common.BENCH_PLUGINS}",
            "metrics_port = 0",
            "log_level = WARNING",
        ]
        for name, section in chain.items():
            lines += [f"[plugin_{name}]", *(f"{k} = {v}" for k, v in section.items())]
        self.config = os.path.join(workdir, "config.ini")
        Path(self.config).write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.log = os.path.join(workdir, "watcher.log")
        self.api = api
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def __enter__(self) -> Watcher:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                _common.watcher_argv(self.config),
                env=_common.clean_environ(os.path.dirname(self.config)),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=_common.ROOT,
            )
        _common.wait_for_watch(self.api, self.proc)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def handled(path: str) -> list[tuple[int, str, str, int, str]]:
    """The probe's record: (monotonic ns, type, namespace/name, resourceVersion, stamp)."""
    if not os.path.exists(path):
        return []
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        t, kind, key, rv, stamp = line.split()
        out.append((int(t), kind, key, int(rv), stamp))
    return out


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def stamped(i: int, namespace: str) -> dict[str, Any]:
    route = _common.bench_route(i, namespace)
    route["metadata"].setdefault("annotations", {})[STAMP] = str(time.monotonic_ns())
    return route


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))]


def head_of_line(workdir: str, routes: int) -> tuple[float, float]:
    api = _common.start_api(1000 + routes)
    try:
        out = os.path.join(workdir, "probe.txt")
        report = os.path.join(workdir, "count.json")
        base = api.resource_version
        chain = {
            "probe": {"out": out, "slow_namespace": "slow", "slow_seconds": "2", "workers": "8"},
            "count": {
                "events": str(5 + routes),
                "report": report,
                "base_rv": str(base),
                "stamp_annotation": STAMP,
            },
        }
        with Watcher(workdir, api, chain):
            for i in range(5):
                api.create("routes", _common.bench_route(i, "slow"))
            for i in range(routes):
                api.create("routes", stamped(i, "web"))
            web = wait_for(
                "the unrelated routes at probe",
                lambda: (
                    (rows := [r for r in handled(out) if r[2].startswith("web/")])
                    and len(rows) >= routes
                    and rows
                ),
            )
            wait_for("count's report", lambda: os.path.exists(report))
        at_probe = [(t - int(stamp)) / 1e9 for t, _, _, _, stamp in web]
        with open(report, encoding="utf-8") as f:
            at_next = [ns / 1e9 for ns in json.load(f)["latencies_ns"]]
        return p99(at_probe), p99(at_next)
    finally:
        api.stop()


def retry(workdir: str) -> float:
    api = _common.start_api(1000)
    try:
        out = os.path.join(workdir, "probe.txt")
        with Watcher(workdir, api, {"probe": {"out": out, "fail_name": "flaky", "fail_times": "3"}}):
            made = time.monotonic_ns()
            api.create(
                "routes", _common.bench_route(0, "web") | {"metadata": {"name": "flaky", "namespace": "web"}}
            )
            (done, *_), *_ = wait_for("the fourth attempt", lambda: handled(out))
        return float(done - made) / 1e9
    finally:
        api.stop()


def burst(workdir: str, updates: int, seconds: float) -> tuple[float, int]:
    api = _common.start_api(1000 + updates)
    try:
        out = os.path.join(workdir, "probe.txt")
        with Watcher(workdir, api, {"probe": {"out": out, "delay": "0.02"}}):
            api.create("routes", _common.bench_route(0, "web"))
            name = _common.bench_route(0, "web")["metadata"]["name"]
            wait_for("the route's first call", lambda: handled(out))
            start = time.monotonic()
            for n in range(updates):
                time.sleep(max(0.0, start + n * seconds / updates - time.monotonic()))
                final = api.patch("routes", "web", name, {"metadata": {"annotations": {"n": str(n)}}})
            last_made = time.monotonic_ns()
            final_rv = int(final["metadata"]["resourceVersion"])
            rows = wait_for(
                "the final state", lambda: [r for r in handled(out) if r[3] == final_rv] and handled(out)
            )
        done = next(t for t, _, _, rv, _ in rows if rv == final_rv)
        return (done - last_made) / 1e9, len(rows) - 1
    finally:
        api.stop()


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    say(f"Machine: {os.cpu_count()} CPUs, load average {_common.load_average()}")
    with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as tmp:
        work = [os.path.join(tmp, str(i)) for i in range(3)]
        for path in work:
            os.makedirs(path)
        hol_probe, hol_next = head_of_line(work[0], args.routes)
        say(
            f"1. A plugin slow on 5 routes (2 s each, 8 workers): {args.routes} unrelated routes, p99 "
            f"{hol_probe:.3f} s at it and {hol_next:.3f} s at the next plugin (target < 0.5 s)"
        )
        retried = retry(work[1])
        say(
            f"2. A plugin failing 3 times on a route, no resync: it succeeded {retried:.2f} s after the "
            "create (target < 5 s)"
        )
        final, calls = burst(work[2], args.updates, args.seconds)
        say(
            f"3. {args.updates} updates to one route in {args.seconds:g} s, 20 ms plugin: {calls} calls; "
            f"the final state handled {final:.3f} s after the last update (target < 0.5 s)"
        )
    say(f"Load average at the end: {_common.load_average()}")
    say(
        f"hol_p99_probe_s={hol_probe:.3f} hol_p99_next_s={hol_next:.3f} retry_s={retried:.2f} "
        f"burst_final_s={final:.3f} burst_calls={calls}"
    )


if __name__ == "__main__":
    main()
