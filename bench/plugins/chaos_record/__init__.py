"""Recording plugin for ``bench/chaos.py``: one compact line per event the plugin chain receives.

The chaos bench checks, after the run, that what reached the plugins adds up to exactly what happened on
the server. It needs two things from inside the watcher process: every event as handed over, in order,
and where each completed LIST put the watcher (after a LIST the watcher may legitimately have skipped the
intermediate versions it could not see; the bench checks that the state it delivered matches the server
at that LIST's resourceVersion). The second comes from the informer's own INFO line ("Listed N ... at
resourceVersion R"), caught by a logging handler in this process: plugins are never told about LISTs.

Lines, space-separated, appended to ``out`` and flushed one by one (a SIGTERM loses nothing):

* ``S <pid>`` — a watcher process started (``init``);
* ``E <type> <namespace>/<name> <uid> <resourceVersion> <seq>`` — an event, ``seq`` being the
  ``chaos.bench/seq`` annotation the driver writes with every change (``-`` when absent);
* ``L <resourceVersion> <items>`` — the informer finished a LIST and delivered its difference;
* ``X`` — the plugin was closed (a clean stop).

``[plugin_chaos_record]`` keys: ``out`` (required), the file to append to.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from typing import IO, Any, Optional

from watcher import errors

SEQ_ANNOTATION = "chaos.bench/seq"
_LISTED = re.compile(r"^Listed (\d+) .* at resourceVersion (\d+)")
_INFORMER_LOGGER = "watcher.informer"

_lock = threading.Lock()
_out: Optional[IO[str]] = None
_handler: Optional[logging.Handler] = None


class _ListMarks(logging.Handler):
    """Turns the informer's "Listed ..." line into an ``L`` mark, in the informer's own thread, so the
    mark lands in the file after the LIST's events and before the first event of the next WATCH."""

    def emit(self, record: logging.LogRecord) -> None:
        match = _LISTED.match(record.getMessage())
        if match:
            _write(f"L {match.group(2)} {match.group(1)}\n")


def _write(line: str) -> None:
    with _lock:
        if _out is not None:
            _out.write(line)


def init(watcher: Any, config: Mapping[str, str]) -> None:
    global _out, _handler
    path = config.get("out", "").strip()
    if not path:
        raise errors.PluginError("plugin chaos_record needs out = <file to append to>")
    close()
    with _lock:
        # Line-buffered: one write per event. Kept open for the process's life; closed in close().
        _out = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
    _write(f"S {os.getpid()}\n")
    _handler = _ListMarks(logging.INFO)
    informer = logging.getLogger(_INFORMER_LOGGER)
    informer.addHandler(_handler)
    if informer.getEffectiveLevel() > logging.INFO:
        informer.setLevel(logging.INFO)  # the marks need the INFO line even at LOG_LEVEL=WARNING


def handle_event(watcher: Any, event: Mapping[str, Any], config: Mapping[str, str]) -> None:
    meta = event["object"]["metadata"]
    seq = (meta.get("annotations") or {}).get(SEQ_ANNOTATION, "-")
    _write(
        f"E {event['type']} {meta.get('namespace', '')}/{meta.get('name', '')} {meta.get('uid', '-')} "
        f"{meta['resourceVersion']} {seq}\n"
    )


def close() -> None:
    global _out, _handler
    if _handler is not None:
        logging.getLogger(_INFORMER_LOGGER).removeHandler(_handler)
        _handler = None
    with _lock:
        if _out is not None:
            _out.write("X\n")
            _out.close()
            _out = None
