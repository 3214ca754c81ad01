"""A test plugin that appends one JSON line per event to a file: when, who, what.

Used by the leader-election tests, where two watcher processes must never dispatch at the same time.
It keeps no state in the module (two in-process watchers may share it) and opens the file per event, so
a ``kill -9`` loses nothing that was reported as handled.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any


def handle_event(watcher: Any, event: Mapping[str, Any], config: Mapping[str, str]) -> None:
    meta = event["object"]["metadata"]
    line = {
        "t": time.time(),
        "who": config.get("name", ""),
        "pid": os.getpid(),
        "type": event["type"],
        "name": meta["name"],
        "rv": meta["resourceVersion"],
    }
    with open(config["path"], "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")
