"""A test plugin for subprocess runs: appends one line per event, and 'closed' at shutdown, to a file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_path: list[str] = []


def init(watcher: Any, config: Mapping[str, str]) -> None:
    if not config.get("file"):
        raise ValueError("file: required")
    _path[:] = [config["file"]]


def handle_event(watcher: Any, event: Mapping[str, Any], config: Mapping[str, str]) -> None:
    meta = event["object"]["metadata"]
    with open(config["file"], "a", encoding="utf-8") as f:
        f.write(f"{event['type']} {meta.get('namespace', '')}/{meta['name']} {meta['resourceVersion']}\n")


def close() -> None:
    with open(_path[0], "a", encoding="utf-8") as f:
        f.write("closed\n")
