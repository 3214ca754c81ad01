"""A plugin for ``bench/reconcile.py``: slow, failing or busy on purpose, and writing down when it
handled what.

Each successful call appends ``<CLOCK_MONOTONIC ns> <type> <namespace>/<name> <resourceVersion>
<stamp>`` to ``out`` (``stamp``: the ``bench.example.test/written-at`` annotation, ``-`` when absent),
so the bench can tell when each change reached the plugin and in which state.

``[plugin_probe]`` keys: ``out`` (required); ``slow_namespace`` and ``slow_seconds`` (calls for routes
in that namespace take that long); ``delay`` (seconds every call takes); ``fail_name`` and
``fail_times`` (a route of that name raises that many times, then succeeds).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

STAMP = "bench.example.test/written-at"

_lock = threading.Lock()
_failed: dict[str, int] = {}


def init(watcher: Any, config: Mapping[str, str]) -> None:
    if not config.get("out"):
        raise ValueError("out: a path for the record is required")


def handle_event(watcher: Any, event: Mapping[str, Any], config: Mapping[str, str]) -> None:
    meta = event["object"]["metadata"]
    namespace, name = meta.get("namespace", ""), meta["name"]
    if namespace == config.get("slow_namespace"):
        time.sleep(float(config.get("slow_seconds", "2")))
    time.sleep(float(config.get("delay", "0")))
    if name == config.get("fail_name"):
        with _lock:
            failed = _failed.get(name, 0)
            if failed < int(config.get("fail_times", "3")):
                _failed[name] = failed + 1
                raise ConnectionError(f"failing on purpose ({failed + 1})")
    stamp = (meta.get("annotations") or {}).get(STAMP, "-")
    line = f"{time.monotonic_ns()} {event['type']} {namespace}/{name} {meta['resourceVersion']} {stamp}\n"
    with _lock, open(config["out"], "a", encoding="utf-8") as f:
        f.write(line)
