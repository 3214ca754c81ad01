"""A test plugin that records what it is handed, for assertions on exact sequences.

It keeps a light summary per event (type, namespace, name, uid, resourceVersion) and the state the
plugin chain believes in (objects by namespace/name), which is what DNS or certificate plugins act on.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, NamedTuple

lock = threading.Lock()
events: list[Seen] = []
state: dict[str, dict[str, Any]] = {}
closed = threading.Event()


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
    with lock:
        events.append(seen)
        if seen.type == "DELETED":
            state.pop(key, None)
        else:
            state[key] = obj
    if config.get("fail_on") == seen.name:
        raise RuntimeError(f"asked to fail on {seen.name}")


def close() -> None:
    closed.set()
