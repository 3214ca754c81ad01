"""The seed's example plugin: log the kind, name and event type of every change.

``[plugin_simple] message_log_level`` sets the level (default INFO), e.g. DEBUG to keep it quiet.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# What the core reads: its only key (any other is named as a typo), none of them secret.
KEYS = ("message_log_level",)
SECRET_KEYS: tuple[str, ...] = ()


def init(watcher: Any, config: Mapping[str, str]) -> None:
    level = config.get("message_log_level", "INFO").upper()
    if level not in LEVELS:
        raise ValueError(f"message_log_level: expected one of {', '.join(LEVELS)}, got {level!r}")


def handle_event(
    watcher: Any, event: Mapping[str, Any], config: Mapping[str, str]
) -> Optional[tuple[str, str]]:
    obj = event["object"]
    meta = obj.get("metadata") or {}
    message = f"Kind: {obj.get('kind')}; Name: {meta.get('name')}; Event Type: {event['type']}"
    return message, config.get("message_log_level", "INFO").upper()
