#!/usr/bin/env python3
"""Delivery latency at a trickle: how long an event waits between the API server and ``handle_event``.

A watcher that reads ``n`` bytes at a time holds a lone event back until more arrive; one that reads
what is there (``read1``) hands it on at once. This runs the real watcher (``python3 watch.py`` with
the ``count`` plugin) against the local API over HTTPS and changes one Route every ``1/--rate``
seconds. Each change carries, in an annotation, the ``CLOCK_MONOTONIC`` time just before the local API
commits it (and writes its line to the open watch); the plugin subtracts that from the same clock when
the event reaches it. So a figure is commit + write + TLS + read + parse + cache + the plugin's work
queue and worker thread, at least
what "from the server's write to ``handle_event``" asks.

Prints p50, p90, p99 and the maximum, then ``p50_ms=… p99_ms=… max_ms=… events=N``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

from watcher.localapi import LocalAPI


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="changes per second (default 100)")
    parser.add_argument("--events", type=int, default=3000, help="changes to time (default 3000: 30 s)")
    parser.add_argument("--routes", type=int, default=50, help="routes the changes cycle over (default 50)")
    parser.add_argument("--workdir", help="keep the config, report and log here (default: a temp dir)")
    return parser.parse_args(argv)


def trickle(api: LocalAPI, routes: int, events: int, rate: float) -> None:
    """``events`` changes at ``rate`` per second, on a fixed schedule (a late one does not shift the rest)."""
    interval = 1.0 / rate
    start = time.monotonic()
    for n in range(events):
        pause = start + n * interval - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        name = f"app-{n % routes:06d}"
        stamp = {_common.STAMP: str(time.monotonic_ns())}
        api.patch("routes", _common.NAMESPACE, name, {"metadata": {"annotations": stamp}})


def percentile(sorted_values: Sequence[int], fraction: float) -> float:
    """Nearest-rank percentile, in milliseconds."""
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index] / 1e6


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    _common.say(f"Machine: {os.cpu_count()} CPUs, load average {_common.load_average()}")
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        workdir = args.workdir or tmp
        os.makedirs(workdir, exist_ok=True)
        api = _common.start_api(args.routes + args.events)
        try:
            base = api.resource_version
            for i in range(args.routes):
                api.create("routes", _common.bench_route(i))
            report = os.path.join(workdir, "report.json")
            plugin = {"events": str(args.routes + args.events), "report": report, "base_rv": str(base)}
            config = _common.write_config(workdir, api, {**plugin, "stamp_annotation": _common.STAMP})

            def drive(proc: subprocess.Popen[bytes]) -> None:
                _common.wait_for_watch(api, proc)
                _common.say(f"Watching; {args.events} changes at {args.rate:g}/s ...")
                trickle(api, args.routes, args.events, args.rate)

            run = _common.run_process(
                _common.watcher_argv(config),
                report,
                env=_common.clean_environ(workdir),
                timeout=60.0,
                log=os.path.join(workdir, "watcher.log"),
                while_waiting=drive,
            )
        finally:
            api.stop()
    latencies = sorted(run.latencies_ns)
    # A change that waited in the work queue behind a newer one to the same route is merged into it:
    # the newer one's latency is the figure. At a trickle that is rare; when it is not, say so.
    if len(latencies) < 0.9 * args.events:
        raise SystemExit(f"expected {args.events} timed events, the plugin saw {len(latencies)}")
    if len(latencies) < args.events:
        _common.say(f"{args.events - len(latencies)} changes were merged into a newer one on the way.")
    p50, p90, p99 = (percentile(latencies, f) for f in (0.50, 0.90, 0.99))
    worst = latencies[-1] / 1e6
    _common.say(f"Delivery latency over {len(latencies)} events at {args.rate:g}/s:")
    _common.say(f"  p50 {p50:.2f} ms   p90 {p90:.2f} ms   p99 {p99:.2f} ms   max {worst:.2f} ms")
    _common.say(f"Load average at the end: {_common.load_average()}")
    _common.say(f"p50_ms={p50:.2f} p99_ms={p99:.2f} max_ms={worst:.2f} events={len(latencies)}")


if __name__ == "__main__":
    main()
