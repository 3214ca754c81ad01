#!/usr/bin/env python3
"""Informer cache memory: what 100,000 cached Routes cost, against the size of their JSON.

The local API (HTTPS on loopback, in this process) holds ``--routes`` Routes of about 1.7 KB. A child
process (so that the server's memory is not counted) builds the watcher's real ``Client`` and
``Informer`` and, under ``tracemalloc``:

* lists them all, as at start-up or after a 410 (paginated, 500 per page), and
* receives them all as ADDED events through a WATCH (the local API answers the LIST as of an empty
  revision, ``serve_stale_lists``), as when they are created while the watcher runs.

For each it prints the cache's bytes per object (traced memory kept after the run, and the deep size
of the cache's own objects) against the objects' JSON size, and the peak while filling it. The last
line: ``bytes_per_object=X json_bytes_per_object=Y ratio=Z peak_mb=W`` for the LIST (the larger).
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
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import orjson

from watcher import config
from watcher.client import Client
from watcher.informer import Change, Informer, Tuning, cached_object
from watcher.metrics import Metrics


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--routes", type=int, default=100_000, help="routes to cache (default 100000)")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)  # internal: the measured process
    return parser.parse_args(argv)


def deep_size(cache: dict[str, tuple[str, bytes]]) -> int:
    """The cache's own objects: the dict, and each key, tuple, resourceVersion and JSON bytes."""
    size = sys.getsizeof(cache)
    for key, entry in cache.items():
        size += sys.getsizeof(key) + sys.getsizeof(entry) + sys.getsizeof(entry[0]) + sys.getsizeof(entry[1])
    return size


def measure(mode: str, url: str, token: str, ca: str, expected: int) -> dict[str, Any]:
    """In the child: fill an informer's cache by LIST or WATCH, under tracemalloc."""
    environ = {
        "K8S_API_ENDPOINT": url,
        "K8S_TOKEN": token,
        "K8S_CA": ca,
        "K8S_RESOURCE": "routes",
        "K8S_NAMESPACE": _common.NAMESPACE,
    }
    settings = config.load(environ, None, serviceaccount_dir="/nonexistent", home="/nonexistent")
    client = Client(settings)
    info = client.discover("routes", None, None)
    delivered = 0

    def sink(changes: list[Change], *, resync: bool = False) -> None:
        nonlocal delivered
        delivered += len(changes)

    informer = Informer(
        client, info, _common.NAMESPACE, sink, metrics=Metrics(), tuning=Tuning(watch_timeout=600)
    )
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    started = time.monotonic()
    if mode == "list":
        informer._relist()
    else:
        stop = threading.Event()
        informer._relist()  # as of the empty revision: nothing, then the WATCH brings every route
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
    objects = [orjson.dumps(cached_object(data)) for _, data in cache.values()]
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
    }


def child(argv: Sequence[str]) -> None:
    mode, url, token, ca, expected, out = argv
    result = measure(mode, url, token, ca, int(expected))
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f)


def run_child(mode: str, api: Any, routes: int, workdir: str) -> dict[str, Any]:
    out = os.path.join(workdir, f"{mode}.json")
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", mode, api.url, api.token, api.ca_file]
    subprocess.run(
        [*argv, str(routes), out], check=True, env=_common.clean_environ(workdir), cwd=_common.ROOT
    )
    with open(out, encoding="utf-8") as f:
        return json.load(f)  # type: ignore[no-any-return]


def report(result: dict[str, Any]) -> str:
    n = result["objects"]
    return (
        f"  {result['mode']:<5} {n:,} objects in {result['seconds']:.1f} s: "
        f"{result['kept'] / n:,.0f} bytes/object kept (traced), {result['deep'] / n:,.0f} deep size, "
        f"JSON {result['json'] / n:,.0f} bytes/object -> {result['kept'] / result['json']:.2f}x; "
        f"peak while filling {result['peak'] / 2**20:,.0f} MB"
    )


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if args.child:
        child(args.child)
        return
    _common.say(f"Machine: {os.cpu_count()} CPUs, load average {_common.load_average()}")
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as workdir:
        api = _common.start_api(args.routes + 10)
        try:
            _common.say(f"Creating {args.routes:,} routes in the local API:")
            base = _common.load_history(api, args.routes, args.routes)
            listed = run_child("list", api, args.routes, workdir)
            _common.say(report(listed))
            api.serve_stale_lists(base)
            watched = run_child("watch", api, args.routes, workdir)
            _common.say(report(watched))
        finally:
            api.stop()
    n = listed["objects"]
    _common.say(
        f"bytes_per_object={listed['kept'] / n:.0f} json_bytes_per_object={listed['json'] / n:.0f} "
        f"ratio={listed['kept'] / listed['json']:.2f} peak_mb={listed['peak'] / 2**20:.0f}"
    )


if __name__ == "__main__":
    main()
