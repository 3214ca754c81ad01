"""A test plugin for subprocess runs: writes ``watcher.dry_run``, then each event's name, to a file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def init(watcher: Any, config: Mapping[str, str]) -> None:
    with open(config["file"], "a", encoding="utf-8") as f:
        f.write(f"dry_run={watcher.dry_run}\n")


def handle_event(watcher: Any, event: Mapping[str, Any], config: Mapping[str, str]) -> None:
    with open(config["file"], "a", encoding="utf-8") as f:
        f.write(f"{event['object']['metadata']['name']}\n")
