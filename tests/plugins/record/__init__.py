"""A test plugin that records what it is handed, for assertions on exact sequences.

It keeps a light summary per event (type, namespace, name, uid, resourceVersion) and the state the
plugin chain believes in (objects by namespace/name), which is what DNS or certificate plugins act on.
Settings: ``fail_on`` (a name it raises on, after recording the event), ``fail_times`` (only the first
that many times; default: always), ``sleep_on`` and ``sleep`` (seconds spent on that name first).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

lock = threading.Lock()
events: list[Seen] = []
state: dict[str, dict[str, Any]] = {}
handed: list[tuple[str, dict[str, Any]]] = []  # every (type, object) handed over, DELETED included
closed = threading.Event()
failed: dict[str, int] = {}  # name -> times raised


class Seen(NamedTuple):
    type: str
    namespace: str
    name: str
    uid: str
    resource_version: str


def handle_event(watcher: Any, event: Mapping[str, Any], config: Mapping[str, str]) -> None:
    obj = event["object"]
    meta = obj["metadata"]
    seen = Seen(
        event["type"], meta.get("namespace", ""), meta["name"], meta.get("uid", ""), meta["resourceVersion"]
    )
    key = f"{seen.namespace}/{seen.name}"
    if config.get("sleep_on") == seen.name:
        time.sleep(float(config.get("sleep", "1")))
    with lock:
        events.append(seen)
        handed.append((seen.type, obj))
        if config.get("fail_on") == seen.name:
            times = failed.get(seen.name, 0)
            if times < int(config.get("fail_times", "1000000000")):
                failed[seen.name] = times + 1
                raise RuntimeError(f"asked to fail on {seen.name}")
        if seen.type == "DELETED":
            state.pop(key, None)
        else:
            state[key] = obj


def close() -> None:
    closed.set()
