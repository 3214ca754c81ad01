#!/usr/bin/env python3
"""Soak: a million watch events through the real watcher with 100,000 objects cached; is memory flat?

The local API (HTTPS, in this process) is loaded with ``--objects`` routes; the watcher (``watch.py``'s
``main`` in a subprocess, no-op plugin, watching all namespaces) lists them, then receives ``--events``
MODIFIED events, each object changed in turn. Its resident set size (``VmRSS`` from /proc) is printed
every ``--every`` events, and at the end the growth from the first sample to the last. The first sample
is taken after the first ``--every`` events, when the cache and the allocator have warmed up; a leak
shows as growth from there on. Exit status 1 when the growth is over ``--max-growth`` percent.

The driver keeps at most ``--lag`` changes ahead of the watcher (read from its /metrics), so the
watcher is never sent to relist by a history that ran out: this measures steady watching.
Defaults (1,000,000 events, 100,000 objects) take about five minutes on two cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._chaos_proc import WatcherProcess, free_port, watcher_env
from bench._common import BENCH_PLUGINS
from bench.plugins.count import status_kb
from watcher.localapi import LocalAPI, sample_route

GENERATION = "soak.bench/generation"
NAMESPACES = 10


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000, help="watch events after the LIST (default 1e6)")
    p.add_argument("--objects", type=int, default=100_000, help="objects in the cache (default 100000)")
    p.add_argument("--every", type=int, default=100_000, help="events between RSS samples (default 100000)")
    p.add_argument("--lag", type=int, default=20_000, help="changes the driver may be ahead (default 20000)")
    p.add_argument("--max-growth", type=float, default=5.0, help="percent; more fails the run (default 5)")
    return p.parse_args(argv)


class Progress:
    """The watcher's MODIFIED count from /metrics, polled on a thread."""

    def __init__(self, watcher: WatcherProcess) -> None:
        self.watcher = watcher
        self.received = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, name="progress", daemon=True)

    def _poll(self) -> None:
        key = 'event_watcher_events_received_total{type="MODIFIED"}'
        while not self.stop.wait(0.1):
            value = self.watcher.metrics().get(key)
            if value is not None:
                self.received = int(value)


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    api = LocalAPI(bookmark_interval=60.0, history_limit=max(2 * args.lag, 10_000)).start()
    watcher: Optional[WatcherProcess] = None
    try:
        names = [(f"soak-{i % NAMESPACES}", f"r-{i:06d}") for i in range(args.objects)]
        for ns, name in names:
            api.create("routes", sample_route(name, ns, f"{name}.{ns}.apps.example.test"))
        print(f"soak: {args.objects:,} routes created in {time.monotonic() - began:.0f} s", flush=True)
        env = watcher_env(api, work, "soak_noop", BENCH_PLUGINS)
        watcher = WatcherProcess(env, free_port(), work, name="soak-watcher")
        watcher.start()
        if not watcher.wait_ready(timeout=600):
            print(f"soak: the watcher did not become ready; see {watcher.log_files[-1]}")
            return 2
        listed = time.monotonic()
        at_start = mib(watcher.rss_kib())
        print(
            f"soak: the watcher listed them {listed - began:.0f} s after the start; RSS {at_start}",
            flush=True,
        )
        progress = Progress(watcher)
        progress.thread.start()
        samples: list[tuple[int, int]] = []
        next_sample = args.every
        made = 0
        start = time.monotonic()
        print(f"{'events':>10}  {'RSS':>10}  {'seconds':>7}  {'events/s':>8}", flush=True)
        wanted = args.events // args.every
        while len(samples) < wanted or made < args.events:
            if progress.received >= next_sample:
                rss = watcher.rss_kib()
                samples.append((progress.received, rss))
                elapsed = time.monotonic() - start
                rate = progress.received / elapsed
                print(f"{progress.received:>10,}  {mib(rss):>10}  {elapsed:>7.0f}  {rate:>8,.0f}", flush=True)
                next_sample += args.every
            if made < args.events and made - progress.received < args.lag:
                ns, name = names[made % len(names)]
                api.patch("routes", ns, name, {"metadata": {"annotations": {GENERATION: str(made)}}})
                made += 1
                continue
            if not watcher.alive():
                print(f"soak: the watcher died; see {watcher.log_files[-1]}")
                return 2
            time.sleep(0.02)
        progress.stop.set()
        first, last = samples[0][1], samples[-1][1]
        growth = (last - first) / first * 100 if first else 0.0
        peak = status_kb("VmHWM", str(watcher.pid))
        verdict = "flat" if growth < args.max_growth else "GREW"
        print(
            f"soak: {args.events:,} events with {args.objects:,} objects cached in "
            f"{time.monotonic() - start:.0f} s ({time.monotonic() - began:.0f} s in all); RSS first "
            f"{mib(first)}, last {mib(last)}, growth {growth:+.1f} % "
            f"({verdict}, target < {args.max_growth:g} %); peak {mib(peak)}"
        )
        figures = f"growth_percent={growth:.1f} first_mib={first / 1024:.1f} last_mib={last / 1024:.1f}"
        print(f"{figures} verdict={verdict}")
        return 0 if growth < args.max_growth else 1
    finally:
        if watcher is not None:
            watcher.stop()
        api.stop()


if __name__ == "__main__":
    sys.exit(main())
