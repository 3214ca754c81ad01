#!/usr/bin/env python3
"""Memory for 100,000 Routes as a cluster sends them: the real daemon's RSS, and the cache's cost.

The local API (HTTPS on loopback, in this process) holds ``--routes`` Routes made as on a cluster
(``_common.add_route``: ``oc apply``, then the router's status write, so each carries two
managedFields entries and the last-applied annotation, ~2 KB as a watch line). Two measurements:

* **The daemon**: ``watch.py`` in a subprocess, all namespaces, the no-op plugin ``soak_noop``, default
  settings. Its RSS (``VmRSS``) once the list is delivered and the plugin's queue is empty, and again
  after ``--changed`` of the routes changed (an annotation written by ``kubectl annotate``, which adds
  a third managedFields entry) and were handled; its peak (``VmHWM``). The same run again with
  ``keep_managed_fields = true`` is the baseline: what the cache cost before issue 20.
* **The cache**: a child process builds the watcher's real ``Client`` and ``Informer`` and fills the
  cache under ``tracemalloc``, once by LIST (pages of 500, as at start-up or after a 410) and once by
  WATCH (the local API answers the LIST as of the empty revision, ``serve_stale_lists``, so every
  change arrives through the stream). It prints the memory the cache keeps per object against the
  JSON of what it keeps (the objects without managedFields and the annotation).

The last line: ``rss_listed_mib=A rss_changed_mib=B peak_mib=C keep_rss_changed_mib=D ratio_to_keep=E
cache_ratio=F json_bytes_per_object=G`` (E = B / D; F for the LIST, the larger of the two).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from bench import _common
from bench._chaos_proc import WatcherProcess, free_port, watcher_env
from bench.plugins.count import status_kb
from watcher import config
from watcher.client import Client
from watcher.informer import Change, Informer, Tuning, cached_object
from watcher.localapi import LocalAPI
from watcher.metrics import Metrics

PLUGIN = "soak_noop"
MIB = 1024  # kB per MiB: /proc reports kB


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--routes", type=int, default=100_000, help="routes to cache (default 100000)")
    parser.add_argument(
        "--changed", type=float, default=0.2, help="share of the routes changed after the list (default 0.2)"
    )
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)  # internal: the measured process
    return parser.parse_args(argv)


# --- the daemon ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Daemon:
    """What one run of ``watch.py`` took: RSS in kB after the list, after the changes, and at peak."""

    keep: bool
    listed_kb: int
    changed_kb: int
    peak_kb: int
    list_seconds: float


def settled(watcher: WatcherProcess, modified: int) -> bool:
    """The plugin has handled everything: ``modified`` changes arrived and its queue is empty."""
    m = watcher.metrics()
    arrived = m.get('event_watcher_events_received_total{type="MODIFIED"}', -1) >= modified
    queue = f'{{plugin="{PLUGIN}"}}'
    idle = (
        m.get(f"event_watcher_queue_depth{queue}") == 0 and m.get(f"event_watcher_workers_busy{queue}") == 0
    )
    return arrived and idle


def wait_settled(watcher: WatcherProcess, modified: int, timeout: float = 900.0) -> None:
    deadline = time.monotonic() + timeout
    while not settled(watcher, modified):
        if not watcher.alive():
            raise SystemExit(f"the watcher died; see {watcher.log_files[-1]}")
        if time.monotonic() > deadline:
            raise SystemExit(
                f"the watcher did not settle within {timeout:.0f} s; see {watcher.log_files[-1]}"
            )
        time.sleep(0.2)
    time.sleep(1.0)  # the last worker's batch returns its memory


def run_daemon(api: LocalAPI, routes: int, changes: range, keep: bool, workdir: Path) -> Daemon:
    """One daemon: list everything, then ``changes`` (touch numbers: each run changes other routes
    or writes other values, so every one is a real change)."""
    env = watcher_env(api, workdir, PLUGIN, _common.BENCH_PLUGINS)
    env["WATCHER_KEEP_MANAGED_FIELDS"] = "true" if keep else "false"
    watcher = WatcherProcess(env, free_port(), workdir, name="keep" if keep else "default")
    started = time.monotonic()
    watcher.start()
    try:
        if not watcher.wait_ready(timeout=900):
            raise SystemExit(f"the watcher did not become ready; see {watcher.log_files[-1]}")
        wait_settled(watcher, 0)
        list_seconds = time.monotonic() - started
        listed = watcher.rss_kib()
        for n in changes:
            _common.touch(api, n, routes)
        wait_settled(watcher, len(changes))
        return Daemon(keep, listed, watcher.rss_kib(), status_kb("VmHWM", str(watcher.pid)), list_seconds)
    finally:
        watcher.stop()


def describe(run: Daemon, routes: int, changes: int) -> str:
    what = "keep_managed_fields=true" if run.keep else "default (stripped)      "
    return (
        f"  daemon, {what}: RSS {run.listed_kb / MIB:6.1f} MiB after listing {routes:,} "
        f"({run.list_seconds:.0f} s), {run.changed_kb / MIB:6.1f} MiB after {changes:,} changes, "
        f"peak {run.peak_kb / MIB:6.1f} MiB"
    )


# --- the cache, under tracemalloc in a child -----------------------------------------------------------


def deep_size(cache: dict[str, bytes]) -> int:
    """The cache's own objects: the dict, and each key and JSON bytes."""
    return sys.getsizeof(cache) + sum(sys.getsizeof(key) + sys.getsizeof(data) for key, data in cache.items())


def measure(mode: str, url: str, token: str, ca: str, expected: int) -> dict[str, Any]:
    """In the child: fill an informer's cache by LIST or WATCH, under tracemalloc."""
    environ = {
        "K8S_API_ENDPOINT": url,
        "K8S_TOKEN": token,
        "K8S_CA": ca,
        "K8S_RESOURCE": "routes",
        "K8S_NAMESPACED": "false",
    }
    settings = config.load(environ, None, serviceaccount_dir="/nonexistent", home="/nonexistent")
    client = Client(settings)
    info = client.discover("routes", None, None)
    delivered = 0

    def sink(changes: list[Change], *, resync: bool = False) -> None:
        nonlocal delivered
        delivered += len(changes)

    informer = Informer(client, info, None, sink, metrics=Metrics(), tuning=Tuning(watch_timeout=600))
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    started = time.monotonic()
    if mode == "list":
        informer._relist()
    else:
        stop = threading.Event()
        informer._relist()  # as of the empty revision: nothing, then the WATCH brings every change
        worker = threading.Thread(target=informer._watch_once, args=(stop,), daemon=True)
        worker.start()
        while delivered < expected and worker.is_alive():
            time.sleep(0.05)
        stop.set()
        informer.interrupt()
        worker.join(30)
    seconds = time.monotonic() - started
    gc.collect()
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    cache = informer.cache
    objects = [orjson.dumps(cached_object(data)) for data in cache.values()]
    client.close()
    return {
        "mode": mode,
        "objects": len(cache),
        "delivered": delivered,
        "seconds": seconds,
        "kept": kept - base,
        "peak": peak - base,
        "deep": deep_size(cache),
        "json": sum(map(len, objects)),
        "stripped": not any(b"managedFields" in o for o in objects),
    }


def child(argv: Sequence[str]) -> None:
    mode, url, token, ca, expected, out = argv
    result = measure(mode, url, token, ca, int(expected))
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f)


def run_child(mode: str, api: LocalAPI, expected: int, workdir: str) -> dict[str, Any]:
    out = os.path.join(workdir, f"{mode}.json")
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", mode, api.url, api.token, api.ca_file]
    subprocess.run(
        [*argv, str(expected), out], check=True, env=_common.clean_environ(workdir), cwd=_common.ROOT
    )
    with open(out, encoding="utf-8") as f:
        return json.load(f)  # type: ignore[no-any-return]


def report(result: dict[str, Any]) -> str:
    n = result["objects"]
    return (
        f"  cache, {result['mode']:<5} {n:,} objects in {result['seconds']:.1f} s: "
        f"{result['kept'] / n:,.0f} bytes/object kept (traced), {result['deep'] / n:,.0f} deep size, "
        f"JSON of what it keeps {result['json'] / n:,.0f} bytes/object -> "
        f"{result['kept'] / result['json']:.2f}x; peak while filling {result['peak'] / 2**20:,.0f} MB"
        + ("" if result["stripped"] else "  (managedFields left in!)")
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.child:
        child(args.child)
        return
    _common.say(f"Machine: {os.cpu_count()} CPUs, load average {_common.load_average()}")
    changes = round(args.routes * args.changed)
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as workdir:
        # History for every change made here: the WATCH measurement replays all of them.
        api = _common.start_api(_common.CHANGES_PER_ROUTE * args.routes + 2 * changes + 10)
        try:
            _common.say(f"Creating {args.routes:,} routes in the local API as a cluster has them:")
            base = _common.load_history(api, args.routes, _common.CHANGES_PER_ROUTE * args.routes)
            sample = api.list("routes", _common.NAMESPACE)[0]
            line = len(orjson.dumps({"type": "ADDED", "object": sample}))
            _common.say(f"  a route as a watch line: {line:,} bytes; {len(orjson.dumps(sample)):,} as JSON")
            runs = []
            for keep in (False, True):  # the baseline second: it lists routes the first run changed
                made = range(len(runs) * changes, (len(runs) + 1) * changes)
                runs.append(run_daemon(api, args.routes, made, keep, Path(workdir)))
                _common.say(describe(runs[-1], args.routes, changes))
            listed = run_child("list", api, args.routes, workdir)
            _common.say(report(listed))
            api.serve_stale_lists(base)
            watched = run_child("watch", api, api.resource_version - base, workdir)
            _common.say(report(watched))
        finally:
            api.stop()
    stripped, kept = runs
    _common.say(
        f"rss_listed_mib={stripped.listed_kb / MIB:.1f} rss_changed_mib={stripped.changed_kb / MIB:.1f} "
        f"peak_mib={stripped.peak_kb / MIB:.1f} keep_rss_changed_mib={kept.changed_kb / MIB:.1f} "
        f"ratio_to_keep={stripped.changed_kb / kept.changed_kb:.2f} "
        f"cache_ratio={listed['kept'] / listed['json']:.2f} "
        f"json_bytes_per_object={listed['json'] / listed['objects']:.0f}"
    )


if __name__ == "__main__":
    main()
