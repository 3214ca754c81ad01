"""The hot path: body blocks → complete lines → watch events.

A watch body is newline-delimited JSON cut into arbitrary blocks by TCP, TLS and chunked encoding.
``iter_lines()`` in requests splits at its own 512-byte chunk boundaries and can hand out half a line
(psf/requests#3980), so lines are split here: only a line that ended with ``\\n`` is ever parsed, and
the unfinished tail of a dropped connection is thrown away with the connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"})
EXCERPT = 120


class MalformedEvent(ValueError):
    """A line that is not a watch event; carries a short excerpt for the log, never the whole line."""

    def __init__(self, reason: str, line: bytes) -> None:
        self.reason = reason
        self.excerpt = excerpt(line)
        self.size = len(line)
        super().__init__(f"{reason} ({self.size} bytes): {self.excerpt}")


def excerpt(line: bytes, limit: int = EXCERPT) -> str:
    """The start of a line, safe to log: watch lines begin with type, kind and metadata, not secrets."""
    text = line[:limit].decode("utf-8", "replace")
    return repr(text + ("…" if len(line) > limit else ""))


class LineSplitter:
    """Feeds on blocks, returns the complete lines; keeps the unfinished tail for the next block."""

    __slots__ = ("_rest",)

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, block: bytes) -> list[bytes]:
        if self._rest:
            block = self._rest + block
        lines = block.split(b"\n")
        self._rest = lines.pop()
        return lines

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line; non-zero when a stream ends means that line was cut."""
        return len(self._rest)


def iter_lines(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """Complete, non-empty lines out of a sequence of blocks; an unterminated last line is dropped."""
    splitter = LineSplitter()
    for block in blocks:
        for line in splitter.feed(block):
            if line:
                yield line


def parse_event(line: bytes) -> dict[str, Any]:
    """One watch line → the event dict exactly as the API sent it, or ``MalformedEvent``.

    Checks only what the informer relies on, so that a plugin is never handed something that is not
    ``{"type": <known>, "object": {"metadata": {"resourceVersion": "<str>", ...}, ...}}``.
    """
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise MalformedEvent("not JSON", line) from None
    if type(event) is not dict:
        raise MalformedEvent("not a JSON object", line)
    obj = event.get("object")
    if type(obj) is not dict:
        raise MalformedEvent("no object", line)
    kind = event.get("type")
    if type(kind) is not str or kind not in EVENT_TYPES:
        raise MalformedEvent(f"unknown event type {str(kind)[:20]!r}", line)
    if kind != "ERROR":
        meta = obj.get("metadata")
        if type(meta) is not dict or type(meta.get("resourceVersion")) is not str:
            raise MalformedEvent("no metadata.resourceVersion", line)
    return event  # type: ignore[no-any-return]
