#!/usr/bin/env python3
"""Watch throughput: the whole watcher against the official ``kubernetes`` client, on the same stream.

The local API (HTTPS on loopback) is loaded once with ``--events`` changes on ``--routes`` Routes of
about 1.7 KB each; every change's watch line is rendered once, when it is made, so serving costs the
server little CPU. Each run replays that history from its start to one client in a subprocess:

* A, the watcher: ``python3 watch.py --config …`` with the ``count`` plugin (``bench/plugins``). The
  local API answers its LIST as of the history's start (``serve_stale_lists``), so the informer lists
  nothing and then receives every change through its WATCH: cache, resourceVersion tracking, dispatch,
  metrics and the plugin's work queue, as in production. The count plugin numbers what it sees by
  resourceVersion, so the run ends when the last change has reached it, however many changes to one
  object the queue merged on the way.
* B, the official client: ``CustomObjectsApi.list_namespaced_custom_object`` under
  ``watch.Watch().stream`` from the same resourceVersion, counting with the same ``Tally``.

After a warm-up run of each, A and B alternate for ``--pairs`` pairs (so load from the rest of the
machine hits both alike). Each run prints events/s and CPU µs per event (first event to last, from the
process's own clocks) and peak RSS (VmHWM); the last line is the median of the per-pair ratios and the
watcher's medians::

    ratio=X.XX events_per_s=Y cpu_us_per_event=Z peak_rss_mb=W

For reference it also prints the parse-only limit: ``orjson.loads`` of the same lines, in memory.

``--soak 1000000`` instead runs the watcher once over that many events and prints its RSS at every
tenth, to show that memory stays flat.
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
import orjson
import requests
from _common import NAMESPACE, Run, say

from watcher.localapi import LocalAPI

SOAK_HISTORY = 50_000  # changes the local API keeps during a soak: bounded, unlike a pre-made history


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events per run (default 200000)")
    parser.add_argument("--routes", type=int, default=1000, help="distinct routes changed (default 1000)")
    parser.add_argument("--pairs", type=int, default=5, help="A/B pairs after the warm-up (default 5)")
    parser.add_argument(
        "--soak",
        type=int,
        default=0,
        metavar="N",
        help="only run the watcher once over N events; RSS per tenth",
    )
    parser.add_argument("--workdir", help="keep configs, reports and logs here (default: a temp dir)")
    parser.add_argument("--official-client", nargs=7, help=argparse.SUPPRESS)  # internal: runner B
    return parser.parse_args(argv)


# --- B: the official client, run as ``watch_throughput.py --official-client …`` -------------------------


def official_client(
    url: str, ca: str, token_file: str, namespace: str, rv: str, events: int, report: str
) -> None:
    sys.path.insert(0, str(_common.BENCH_PLUGINS))
    import count  # the count plugin's Tally: the same measuring code as in the watcher
    from kubernetes import client, watch

    with open(token_file, encoding="utf-8") as f:
        token = f.read().strip()
    configuration = client.Configuration(
        host=url, api_key={"authorization": token}, api_key_prefix={"authorization": "Bearer"}
    )
    configuration.ssl_ca_cert = ca
    api = client.CustomObjectsApi(client.ApiClient(configuration))
    tally = count.Tally(events, report, base_rv=int(rv))
    stream = watch.Watch()
    for event in stream.stream(
        api.list_namespaced_custom_object,
        "route.openshift.io",
        "v1",
        namespace,
        "routes",
        resource_version=rv,
        timeout_seconds=3600,
    ):
        tally(event)
        if tally.count >= events:
            stream.stop()
            break


# --- the parse-only limit ------------------------------------------------------------------------------


def fetch_lines(api: LocalAPI, rv: int, events: int) -> list[bytes]:
    """The stream's lines, as bytes in memory: one plain WATCH, read whole."""
    response = requests.get(
        f"{api.url}/apis/route.openshift.io/v1/namespaces/{NAMESPACE}/routes",
        params={"watch": "true", "resourceVersion": str(rv), "timeoutSeconds": "600"},
        headers={"Authorization": f"Bearer {api.token}"},
        verify=api.ca_file,
        stream=True,
        timeout=(10, 60),
    )
    lines: list[bytes] = []
    rest = b""
    with response:
        while len(lines) < events:
            block = response.raw.read1(1 << 20)
            if not block:
                break
            parts = (rest + block).split(b"\n")
            rest = parts.pop()
            lines.extend(parts)
    return lines[:events]


def parse_only(lines: list[bytes], repeats: int = 3) -> tuple[float, float]:
    """Median events/s and CPU µs per line of ``orjson.loads`` over ``lines`` already in memory."""
    rates, costs = [], []
    loads = orjson.loads
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        for line in lines:
            loads(line)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rates.append(len(lines) / wall)
        costs.append(cpu * 1e6 / len(lines))
    return _common.median(rates), _common.median(costs)


# --- runs ----------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, api: LocalAPI, base: int, events: int, workdir: str) -> None:
        self.api = api
        self.base = base
        self.events = events
        self.workdir = workdir
        self.env = _common.clean_environ(workdir)
        self.report = os.path.join(workdir, "report.json")
        self.timeout = max(120.0, events / 2000)
        plugin = {"events": str(events), "report": self.report, "base_rv": str(base)}
        self.config = _common.write_config(workdir, api, plugin)
        self.runs = 0

    def watcher(self) -> Run:
        self.runs += 1
        return _common.run_process(
            _common.watcher_argv(self.config),
            self.report,
            env=self.env,
            timeout=self.timeout,
            log=os.path.join(self.workdir, "watcher.log"),
        )

    def official(self) -> Run:
        self.runs += 1
        argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--official-client",
            self.api.url,
            self.api.ca_file,
            os.path.join(self.workdir, "token"),
            NAMESPACE,
            str(self.base),
            str(self.events),
            self.report,
        ]
        return _common.run_process(
            argv,
            self.report,
            env=self.env,
            timeout=self.timeout,
            log=os.path.join(self.workdir, "official.log"),
        )


def describe(name: str, run: Run) -> str:
    return (
        f"  {name:<9} {run.events_per_s:>10,.0f} events/s  {run.cpu_us_per_event:6.1f} CPU µs/event  "
        f"peak RSS {run.peak_rss_mb:6.1f} MB  RSS growth {run.rss_growth * 100:+.1f} %"
    )


def compare(bench: Bench, pairs: int) -> None:
    say("Warm-up (not counted):")
    say(describe("watcher", bench.watcher()))
    say(describe("official", bench.official()))
    ratios: list[float] = []
    ours: list[Run] = []
    for i in range(1, pairs + 1):
        a = bench.watcher()
        b = bench.official()
        ours.append(a)
        ratios.append(a.events_per_s / b.events_per_s)
        say(f"Pair {i}:")
        say(describe("watcher", a))
        say(describe("official", b))
        say(f"  ratio {ratios[-1]:.2f}")
    say(f"Load average at the end: {_common.load_average()}")
    say(
        f"ratio={_common.median(ratios):.2f} "
        f"events_per_s={_common.median([r.events_per_s for r in ours]):.0f} "
        f"cpu_us_per_event={_common.median([r.cpu_us_per_event for r in ours]):.2f} "
        f"peak_rss_mb={_common.median([r.peak_rss_mb for r in ours]):.1f}"
    )


def soak(args: argparse.Namespace, workdir: str) -> None:
    """The watcher over ``args.soak`` events made while it runs (a history that large, pre-rendered,
    would not fit in memory); its RSS at every tenth shows whether anything grows with the count."""
    api = _common.start_api(SOAK_HISTORY)
    try:
        base = api.resource_version
        for i in range(args.routes):
            api.create("routes", _common.bench_route(i))
        report = os.path.join(workdir, "report.json")
        target = args.routes + args.soak
        plugin = {"events": str(target), "report": report, "base_rv": str(base)}
        config = _common.write_config(workdir, api, plugin)
        say(f"Soak: {args.soak:,} changes on {args.routes} routes, made while the watcher runs ...")

        def produce(proc: subprocess.Popen[bytes]) -> None:
            _common.wait_for_watch(api, proc)
            # Until the watcher reports: should it ever fall behind the retained history, it relists,
            # and the report comes with the change that reaches the target.
            for n in range(2 * args.soak):
                if n % 1000 == 0 and (proc.poll() is not None or os.path.exists(report)):
                    return
                _common.touch(api, n, args.routes)

        run = _common.run_process(
            _common.watcher_argv(config),
            report,
            env=_common.clean_environ(workdir),
            timeout=600.0,
            log=os.path.join(workdir, "watcher.log"),
            while_waiting=produce,
        )
    finally:
        api.stop()
    say(describe("watcher", run) + "  (throughput bound by the changes being made)")
    for n, kb in run.rss_kb:
        say(f"  after {n:>9,} events: RSS {kb / 1024:7.1f} MB")
    say(
        f"rss_growth={run.rss_growth * 100:.2f}% events={run.events} "
        f"cpu_us_per_event={run.cpu_us_per_event:.2f} peak_rss_mb={run.peak_rss_mb:.1f}"
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.official_client:
        url, ca, token_file, namespace, rv, events, report = args.official_client
        official_client(url, ca, token_file, namespace, rv, int(events), report)
        return
    say(f"Machine: {os.cpu_count()} CPUs, load average {_common.load_average()}")
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        workdir = args.workdir or tmp
        os.makedirs(workdir, exist_ok=True)
        if args.soak:
            soak(args, workdir)
            return
        api = _common.start_api(args.events + args.routes)
        try:
            say(f"Loading the local API at {api.url}:")
            base = _common.load_history(api, args.routes, args.events)
            api.serve_stale_lists(base)
            lines = fetch_lines(api, base, args.events)
            size = sum(len(line) + 1 for line in lines) / len(lines)
            rate, cost = parse_only(lines)
            del lines
            say(f"Stream: {args.events} events, {size:,.0f} bytes per line on average")
            say(
                "Parse-only limit (orjson.loads of the same lines in memory): "
                f"{rate:,.0f} events/s, {cost:.1f} CPU µs/event"
            )
            compare(Bench(api, base, args.events, workdir), args.pairs)
        finally:
            api.stop()


if __name__ == "__main__":
    main()
