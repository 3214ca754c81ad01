"""A test plugin with a sweep: it records each sweep (the thread it ran in and the names it was
handed) and reports ``found`` as the number of objects and ``deleted`` as ``sweep_deletes``.
``sweep_fail_times``: the first that many sweeps raise."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

lock = threading.Lock()
handled: list[str] = []
sweeps: list[tuple[str, list[str], int]] = []  # (thread name, object names, calls handled before it)
failures = 0


def handle_event(watcher: Any, event: Mapping[str, Any], config: Mapping[str, str]) -> None:
    with lock:
        handled.append(event["object"]["metadata"]["name"])


def sweep(watcher: Any, objects: list[dict[str, Any]], config: Mapping[str, str]) -> dict[str, int]:
    global failures
    with lock:
        if failures < int(config.get("sweep_fail_times", "0")):
            failures += 1
            raise RuntimeError("asked to fail the sweep")
        names = sorted(o["metadata"]["name"] for o in objects)
        sweeps.append((threading.current_thread().name, names, len(handled)))
    return {"found": len(objects), "deleted": int(config.get("sweep_deletes", "0"))}
