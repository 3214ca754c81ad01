"""A plugin that does nothing, for ``bench/soak.py``: whatever memory the process gains is the watcher's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def handle_event(watcher: Any, event: Mapping[str, Any], config: Mapping[str, str]) -> None:
    return None
