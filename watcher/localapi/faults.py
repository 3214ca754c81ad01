"""Faults a test queues on the local API server, and the record of what the server saw.

A fault applies to the next ``count`` requests it matches, then disappears. ``refuse`` fires on the
request that matches it: that connection and every other open one drop, and the port refuses
connections for ``seconds``. Kinds that shape a watch
stream (``drop_mid_line``, ``close``, ``malformed_line``, ``silent``, ``trickle``, ``empty_close``) also
apply to other requests, where they act on the response body.

``payload`` puts arbitrary bytes into a watch stream (fuzzing, chaos): with ``malformed_line`` they
replace the built-in malformed line and the stream goes on; with ``close`` they are written after
``after_events`` events, just before the clean end. End each line with ``\n`` to keep the next event
whole (a payload without one is an unfinished line, as a cut connection leaves).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Optional

KINDS = frozenset(
    {
        "status",
        "drop_mid_line",
        "close",
        "malformed_line",
        "expired_event",
        "expired_http",
        "silent",
        "empty_close",
        "trickle",
        "refuse",
    }
)
# "watch" / "list" / "any" as documented; the other verbs are accepted too for finer aim.
MATCHES = frozenset({"any", "watch", "list", "get", "create", "update", "patch", "delete", "discovery"})

MALFORMED_LINE = b'{"type":"MODIFIED","object":{"metadata":\xff garbage\n'


@dataclass(frozen=True)
class Fault:
    kind: str
    count: int = 1
    match: str = "watch"
    status: int = 0
    retry_after: Optional[float] = None
    after_events: int = 0
    seconds: float = 0.0
    payload: bytes = b""  # raw bytes for malformed_line / close on a watch (see the module docstring)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(KINDS)}")
        if self.match not in MATCHES:
            raise ValueError(f"unknown fault match {self.match!r}; expected one of {sorted(MATCHES)}")
        if self.kind == "status" and not 400 <= self.status <= 599:
            raise ValueError("a status fault needs status between 400 and 599")
        if self.count < 1:
            raise ValueError("count must be at least 1")


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it. ``headers`` never holds the Authorization value."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    auth_ok: bool
    status: int  # 0: no answer (the connection was dropped by a refuse fault)
    verb: str  # list, watch, get, create, update, patch, delete, discovery, unknown
    fault: Optional[str] = None


@dataclass
class Stats:
    """Counters for benchmarks and tests; read them, do not write them."""

    requests: int = 0
    unauthorized: int = 0
    watches_opened: int = 0
    lists_served: int = 0
    faults_fired: int = 0
    events_sent: int = 0
    bookmarks_sent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)


class _Queued:
    __slots__ = ("fault", "remaining")

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.remaining = fault.count


class FaultQueue:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[_Queued] = []

    def put(self, fault: Fault) -> None:
        with self._lock:
            self._queue.append(_Queued(fault))

    def take(self, verb: str) -> Optional[Fault]:
        """The first queued fault matching ``verb``, consuming one of its uses."""
        with self._lock:
            for entry in self._queue:
                if entry.fault.match in ("any", verb):
                    entry.remaining -= 1
                    if entry.remaining <= 0:
                        self._queue.remove(entry)
                    return entry.fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return [entry.fault for entry in self._queue]
