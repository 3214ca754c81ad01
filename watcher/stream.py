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


MAX_LINE = 64 * 1024 * 1024  # etcd refuses objects over ~1.5 MB; a longer "line" is a broken stream


class LineTooLong(ValueError):
    """An unfinished line outgrew ``MAX_LINE``: the stream is abandoned instead of memory."""


class LineSplitter:
    """Feeds on blocks, returns the complete lines; keeps the unfinished tail for the next block.

    Only the line that straddles two blocks is joined, once, from all its pieces: an object larger
    than a block (a 5 MB ConfigMap) is not re-copied with every block. (A ``find`` loop over the
    block measured faster than ``bytes.split`` plus re-joining the tail.)
    """

    __slots__ = ("_pieces", "_size", "max_line")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._pieces: list[bytes] = []
        self._size = 0  # bytes in _pieces, checked only when a block brings no newline
        self.max_line = max_line

    def feed(self, block: bytes) -> list[bytes]:
        find = block.find
        end = find(b"\n")
        if end < 0:  # no newline in the block: all of it belongs to the unfinished line
            if block:
                self._pieces.append(block)
                self._size += len(block)
                if self._size > self.max_line:
                    raise LineTooLong(f"a line grew past {self.max_line} bytes without ending")
            return []
        pieces = self._pieces
        if pieces:
            pieces.append(block[:end])
            lines = [b"".join(pieces)]
            pieces.clear()
        else:
            lines = [block[:end]]
        self._size = 0
        start = end + 1
        end = find(b"\n", start)
        while end >= 0:
            lines.append(block[start:end])
            start = end + 1
            end = find(b"\n", start)
        if start < len(block):
            pieces.append(block[start:])
            self._size = len(block) - start
        return lines

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line; non-zero when a stream ends means that line was cut."""
        return sum(map(len, self._pieces))


class ChunkedFramingError(ValueError):
    """The body is not valid HTTP/1.1 chunked transfer coding."""


class ChunkDecoder:
    """HTTP/1.1 chunked transfer coding → body bytes, fed raw blocks as they come off the socket.

    The decoder of a WATCH that goes through ``requests`` (a proxy, plain http; a direct https WATCH
    is parsed by llhttp in ``tlswatch``, which measured faster). ``http.client`` decodes chunks too,
    but returns at most one chunk per ``read1`` through four layers of Python (urllib3, http.client,
    the buffered reader, the socket); the API server writes 2 KiB chunks, or one per event, so that
    cost came about once per event. Here a TLS record is one call, whatever the chunks in it.
    ``done`` turns true at the terminating zero-size chunk (trailers, which the API server does not
    send, are ignored).
    """

    __slots__ = ("_crlf", "_head", "_left", "done")

    def __init__(self) -> None:
        self._left = 0  # data bytes of the current chunk still to come
        self._crlf = 0  # bytes of the CRLF after a chunk's data still to skip
        self._head = b""  # a chunk-size line cut by a block boundary
        self.done = False

    def feed(self, raw: bytes) -> bytes:
        """The body bytes in ``raw`` (possibly empty); raises ``ChunkedFramingError`` on bad framing."""
        if self.done:
            return b""
        left = self._left
        if left and left >= len(raw):  # all data, the usual case inside a large chunk: no copy at all
            self._left = left - len(raw)
            if not self._left:
                self._crlf = 2
            return raw
        out: list[bytes] = []
        pos, end = 0, len(raw)
        while pos < end:
            if left:
                take = min(left, end - pos)
                out.append(raw[pos : pos + take])
                pos += take
                left -= take
                if not left:
                    self._crlf = 2
            elif self._crlf:
                take = min(self._crlf, end - pos)
                if raw[pos : pos + take] != b"\r\n"[2 - self._crlf : 2 - self._crlf + take]:
                    raise ChunkedFramingError("no CRLF after a chunk's data")
                pos += take
                self._crlf -= take
            else:
                newline = raw.find(b"\n", pos)
                if newline < 0:
                    self._head += raw[pos:]
                    if len(self._head) > 4096:
                        raise ChunkedFramingError("a chunk-size line longer than 4 KiB")
                    break
                line = self._head + raw[pos:newline]
                self._head = b""
                pos = newline + 1
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise ChunkedFramingError(f"bad chunk-size line {line[:40]!r}") from None
                if size < 0:
                    raise ChunkedFramingError(f"bad chunk-size line {line[:40]!r}")
                if size == 0:
                    self.done = True
                    break
                left = size
        self._left = left
        return out[0] if len(out) == 1 else b"".join(out)


def iter_lines(blocks: Iterable[bytes]) -> Iterator[bytes]:
    """Complete, non-empty lines out of a sequence of blocks; an unterminated last line is dropped."""
    splitter = LineSplitter()
    for block in blocks:
        for line in splitter.feed(block):
            if line:
                yield line


_WITH_RESOURCE_VERSION = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK"})


def parse_event(line: bytes) -> dict[str, Any]:
    """One watch line → the event dict exactly as the API sent it, or ``MalformedEvent``.

    Checks only what the informer relies on, so that a plugin is never handed something that is not
    ``{"type": <known>, "object": {"metadata": {"resourceVersion": "<non-empty str>",
    "name": "<non-empty str>", ...}, ...}}`` (a BOOKMARK needs no name). An empty resourceVersion
    must never become our position: a WATCH from "" replays every object as ADDED. The usual event
    passes with a handful of lookups (only a dict answers a string key, so they also prove the types);
    anything else is examined again, slowly, to say what is wrong with it.
    """
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise MalformedEvent("not JSON", line) from None
    try:
        meta = event["object"]["metadata"]
        rv = meta["resourceVersion"]
        kind = event["type"]
        if (
            type(rv) is str
            and rv
            and kind in _WITH_RESOURCE_VERSION
            and (kind == "BOOKMARK" or (type(meta.get("name")) is str and meta["name"]))
        ):
            return event  # type: ignore[no-any-return]
    except (KeyError, TypeError, IndexError, AttributeError):
        pass
    return _check_event(event, line)


def _check_event(event: Any, line: bytes) -> dict[str, Any]:
    """The slow path of ``parse_event``: an ERROR event, or a precise reason for refusing the line."""
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
        if not meta["resourceVersion"]:
            raise MalformedEvent("empty metadata.resourceVersion", line)
        if kind != "BOOKMARK" and (type(meta.get("name")) is not str or not meta["name"]):
            raise MalformedEvent("no metadata.name", line)
    return event
