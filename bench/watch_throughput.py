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
import httptools
import orjson
import requests
from _common import NAMESPACE, Run, say

from watcher import stream, tlswatch
from watcher.client import RequestsWatch
from watcher.localapi import LocalAPI, watch

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


def fetch_wire(api: LocalAPI, rv: int, events: int) -> bytes:
    """The stream's chunked body as it came out of TLS (chunk-size lines and all), for ``events``
    events: one plain WATCH, read through requests' connection without de-chunking."""
    response = requests.get(
        f"{api.url}/apis/route.openshift.io/v1/namespaces/{NAMESPACE}/routes",
        params={"watch": "true", "resourceVersion": str(rv), "timeoutSeconds": "600"},
        headers={"Authorization": f"Bearer {api.token}"},
        verify=api.ca_file,
        stream=True,
        timeout=(10, 60),
    )
    with response:
        reader = RequestsWatch(response)._chunked_reader()
        blocks: list[bytes] = []
        size = 0
        decoder = stream.ChunkDecoder()
        while True:
            block = reader.read1(1 << 20)
            blocks.append(block)
            size += decoder.feed(block).count(b"\n")
            if size >= events or not block:
                return b"".join(blocks)


def body_lines(wire: bytes, events: int) -> list[bytes]:
    return stream.ChunkDecoder().feed(wire).split(b"\n")[:events]


def chunk_sizes(wire: bytes) -> list[int]:
    """The size of every chunk in a chunked body (the last one may be cut)."""
    sizes, pos = [], 0
    while pos < len(wire):
        end = wire.find(b"\r\n", pos)
        if end < 0:
            break
        size = int(wire[pos:end], 16)
        sizes.append(size)
        pos = end + 2 + size + 2
    return sizes


def decoders(
    wire: bytes, events: int, block: int = tlswatch.RAW_READ, repeats: int = 3
) -> tuple[float, float]:
    """CPU µs per event of de-chunking the same wire bytes, fed in the blocks ``tlswatch`` reads:
    llhttp (``httptools``, what ``tlswatch`` uses) and the hand-written ``stream.ChunkDecoder``."""
    blocks = [wire[i : i + block] for i in range(0, len(wire), block)]

    class Body:
        def __init__(self) -> None:
            self.parts: list[bytes] = []

        def on_body(self, data: bytes) -> None:
            self.parts.append(data)

    def llhttp() -> None:
        body = Body()
        parser = httptools.HttpResponseParser(body)
        parser.feed_data(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        parts = body.parts
        for b in blocks:
            parser.feed_data(b)
            b"".join(parts)
            parts.clear()

    def own() -> None:
        feed = stream.ChunkDecoder().feed
        for b in blocks:
            feed(b)

    costs = []
    for fn in (llhttp, own):
        runs = []
        for _ in range(repeats):
            cpu = time.process_time()
            fn()
            runs.append((time.process_time() - cpu) * 1e6 / events)
        costs.append(_common.median(runs))
    return costs[0], costs[1]


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
            sample = min(args.events, 50_000)
            wire = fetch_wire(api, base, sample)
            sizes = chunk_sizes(wire)
            lines = body_lines(wire, sample)
            size = sum(len(line) + 1 for line in lines) / len(lines)
            full = sum(s == watch.CHUNKING_BUFFER for s in sizes)
            say(f"Stream: {args.events} events, {size:,.0f} bytes per line on average")
            say(
                f"Framing (kube-apiserver's: {watch.CHUNKING_BUFFER}-byte chunking buffer, flushed when "
                f"caught up; {watch.CONN_BUFFER}-byte TLS writes): first {sample} events in "
                f"{len(sizes)} chunks, {full} of them {watch.CHUNKING_BUFFER} bytes, largest {max(sizes)}"
            )
            llhttp, own = decoders(wire, sample)
            say(
                f"De-chunking the same bytes in {tlswatch.RAW_READ // 1024} KiB blocks: llhttp (httptools) "
                f"{llhttp:.2f} CPU µs/event, stream.ChunkDecoder {own:.2f}"
            )
            del wire
            rate, cost = parse_only(lines)
            del lines
            say(
                "Parse-only limit (orjson.loads of the same lines in memory): "
                f"{rate:,.0f} events/s, {cost:.1f} CPU µs/event"
            )
            compare(Bench(api, base, args.events, workdir), args.pairs)
        finally:
            api.stop()


if __name__ == "__main__":
    main()
