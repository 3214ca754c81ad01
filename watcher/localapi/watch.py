"""One WATCH response: chunked newline-delimited JSON events, bookmarks, timeout, and stream faults.

This is the server's hot path, framed the way kube-apiserver frames a watch on the wire (HTTP/1.1):

* its watch handler (``staging/src/k8s.io/apiserver/pkg/endpoints/handlers/watch.go``,
  ``WatchServer.HandleHTTP``) encodes each event on its own, writes it with one ``Write``, and calls
  ``Flush`` only when no further event is pending (``len(ch) == 0``);
* Go's ``net/http`` (``server.go``) puts a 2,048-byte ``bufio.Writer`` (``bufferBeforeChunkingSize``)
  in front of the ``chunkWriter``, so every flush of that buffer is one chunk: a busy watch is a run of
  2,048-byte chunks with events cut across them, a caught-up watch one chunk per event, and an event
  larger than the buffer goes out as one chunk of its own size (``bufio.Writer.Write`` hands a write
  that does not fit an *empty* buffer straight through, after topping up a non-empty one);
* the chunks go into the connection's own 4,096-byte ``bufio.Writer``, whose flushes are the writes
  to the TLS connection: 4 KiB TLS records, so chunk-size lines are cut across records and reads.

Each change's line is rendered once in the store and shared by all watchers.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Optional

import orjson

from watcher.localapi import faults, store
from watcher.localapi.resources import ResourceType

BATCH = 1024  # changes taken from the store under its lock at a time
CHUNKING_BUFFER = 2048  # net/http's bufferBeforeChunkingSize: each flush of it is one chunk
CONN_BUFFER = 4096  # net/http's per-connection bufio.Writer (4 << 10): each flush is one TLS write
IDLE_CHECK = 1.0  # how often an idle watch checks that its client is still there
TRICKLE_PIECE = 5  # bytes per write in a trickle fault
Predicate = Callable[[Mapping[str, Any]], bool]


class ClientGone(Exception):
    """The peer closed or reset the connection; nothing more to write."""


class GoBufferedWriter:
    """Go's ``bufio.Writer``, byte for byte: where its flushes fall is what shapes a Go server's stream.

    A write that fits is copied in; one that does not first tops up a non-empty buffer and flushes it,
    and whatever still does not fit an empty buffer goes to ``sink`` whole, uncut.
    """

    __slots__ = ("_n", "_pieces", "sink", "size")

    def __init__(self, size: int, sink: Callable[[bytes], None]) -> None:
        self.size = size
        self.sink = sink
        self._pieces: list[bytes] = []
        self._n = 0  # bytes in _pieces

    def write(self, data: bytes) -> None:
        size = self.size
        while len(data) > size - self._n:
            if not self._n:
                self.sink(data)
                return
            room = size - self._n
            self._pieces.append(data[:room])
            self._n = size
            self.flush()
            data = data[room:]
        if data:
            self._pieces.append(data)
            self._n += len(data)

    def flush(self) -> None:
        if self._n:
            pieces = self._pieces
            data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            pieces.clear()
            self._n = 0
            self.sink(data)


class ChunkWriter:
    """HTTP/1.1 chunked transfer encoding as Go's ``net/http`` writes it (see the module docstring).

    ``write`` is one handler ``Write`` (one event), ``flush`` is ``http.Flusher.Flush``, ``end`` is the
    end of the handler. A trickle fault bypasses the buffers: a few bytes per chunk, each sent at once.
    """

    def __init__(
        self, sock: socket.socket, stopping: threading.Event, trickle: Optional[float] = None
    ) -> None:
        self.sock = sock
        self.stopping = stopping
        self.trickle = trickle
        self.ended = False
        self._conn = GoBufferedWriter(CONN_BUFFER, self._send)
        self._body = GoBufferedWriter(CHUNKING_BUFFER, self._chunk)

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self.trickle is not None:
            for i in range(0, len(data), TRICKLE_PIECE):
                self._send(b"%x\r\n%s\r\n" % (len(data[i : i + TRICKLE_PIECE]), data[i : i + TRICKLE_PIECE]))
                if self.stopping.wait(self.trickle):
                    raise ClientGone("the server is stopping")
            return
        self._body.write(data)

    def flush(self) -> None:
        self._body.flush()
        self._conn.flush()

    def end(self) -> None:
        """The terminating chunk: a clean end of the stream, as when timeoutSeconds runs out."""
        self._body.flush()
        self._conn.write(b"0\r\n\r\n")
        self._conn.flush()
        self.ended = True

    def _chunk(self, data: bytes) -> None:
        """net/http's ``chunkWriter.Write``: size line, data and CRLF into the connection's buffer."""
        if len(data) <= CHUNKING_BUFFER:
            # Three writes this small can never bypass the 4 KiB buffer, so one write of the three
            # together leaves the same bytes in the same places, for a third of the calls.
            self._conn.write(b"%x\r\n%s\r\n" % (len(data), data))
            return
        self._conn.write(b"%x\r\n" % len(data))
        self._conn.write(data)
        self._conn.write(b"\r\n")

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise ClientGone(str(exc)) from None


def abort(sock: socket.socket) -> None:
    """Close the TCP connection abruptly: no terminating chunk, no TLS close_notify."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def client_gone(sock: socket.socket) -> bool:
    """A watch client never sends anything, so a readable socket means EOF or a reset."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    if not readable:
        return False
    timeout = sock.gettimeout()
    try:
        sock.settimeout(0.01)
        return sock.recv(1) == b""
    except (socket.timeout, BlockingIOError, ssl.SSLWantReadError):  # socket.timeout: Python 3.9
        return False
    except OSError:
        return True
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(timeout)


def bookmark_line(rtype: ResourceType, rv: int, initial_events_end: bool = False) -> bytes:
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_events_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return orjson.dumps(
        {
            "type": "BOOKMARK",
            "object": {"kind": rtype.kind, "apiVersion": rtype.api_version, "metadata": meta},
        },
        option=orjson.OPT_APPEND_NEWLINE,
    )


def error_line(status_body: Mapping[str, Any]) -> bytes:
    return orjson.dumps({"type": "ERROR", "object": status_body}, option=orjson.OPT_APPEND_NEWLINE)


def with_rv(obj: store.Obj, rv: int) -> store.Obj:
    return {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(rv)}}


class WatchStream:
    """Streams the changes after ``position`` that match, until timeout, a fault, or stop."""

    def __init__(
        self,
        *,
        data: store.Store,
        sock: socket.socket,
        writer: ChunkWriter,
        rtype: ResourceType,
        namespace: Optional[str],
        predicate: Optional[Predicate],
        timeout: float,
        bookmark_interval: Optional[float],
        fault: Optional[faults.Fault],
        stopping: threading.Event,
        on_sent: Callable[[int, int], None],
    ) -> None:
        self.store = data
        self.sock = sock
        self.writer = writer
        self.rtype = rtype
        self.namespace = namespace
        self.predicate = predicate
        now = time.monotonic()
        self.deadline = now + timeout
        self.bookmark_interval = bookmark_interval
        self.next_bookmark = now + bookmark_interval if bookmark_interval else float("inf")
        self.fault = fault if fault and fault.kind in ("drop_mid_line", "close", "malformed_line") else None
        self.stopping = stopping
        self.on_sent = on_sent
        self.sent = 0

    def select(self, changes: list[store.Change]) -> list[bytes]:
        """The lines this watcher sees, turning selector transitions into ADDED/DELETED as the real
        watch cache does."""
        rtype, namespace, predicate = self.rtype, self.namespace, self.predicate
        out: list[bytes] = []
        for c in changes:
            if c.rtype is not rtype or (namespace and c.namespace != namespace):
                continue
            if predicate is None:
                out.append(c.line)
                continue
            new_ok = c.type != "DELETED" and predicate(c.obj)
            old_ok = c.prev is not None and predicate(c.prev)
            if c.type == "MODIFIED" and new_ok != old_ok:
                if new_ok:
                    out.append(store.event_line("ADDED", c.obj))
                else:
                    out.append(store.event_line("DELETED", with_rv(c.prev, c.rv)))  # type: ignore[arg-type]
            elif new_ok or (c.type == "DELETED" and old_ok):
                out.append(c.line)
        return out

    def emit(self, lines: list[bytes]) -> bool:
        """Write ``lines``, one write each, firing a pending stream fault at its event count; False
        ends the stream. Flushing is the caller's: only when nothing more is pending."""
        write = self.writer.write
        fault = self.fault
        if fault is not None:
            k = fault.after_events - self.sent
            if fault.kind == "drop_mid_line":
                if k < len(lines):
                    for line in lines[:k]:
                        write(line)
                    write(lines[k][: len(lines[k]) // 2])
                    self.writer.flush()  # the half line must reach the wire before the cut
                    self._count(k)
                    abort(self.sock)
                    return False
            elif 0 <= k <= len(lines):
                for line in lines[:k]:
                    write(line)
                if fault.kind == "close":
                    write(fault.payload)
                    self._count(k)
                    self.writer.end()
                    return False
                write(fault.payload or faults.MALFORMED_LINE)
                for line in lines[k:]:
                    write(line)
                self._count(len(lines))
                self.fault = None
                return True
        for line in lines:
            write(line)
        if lines:
            self._count(len(lines))
        return True

    def _count(self, n: int) -> None:
        self.sent += n
        if n:
            self.on_sent(n, 0)

    def run(self, initial: list[bytes], position: int) -> None:
        with contextlib.suppress(ClientGone):
            self._run(initial, position)

    def _run(self, initial: list[bytes], position: int) -> None:
        if not self.emit(initial):
            return
        cond = self.store.cond
        last_check = time.monotonic()
        while True:
            if self.stopping.is_set():
                abort(self.sock)
                return
            with cond:
                changes = self.store.changes_after(position, BATCH)
            if changes == []:
                # Caught up: kube-apiserver's watch handler flushes when its channel is empty. Not
                # under the store's lock, so the store is asked again before waiting.
                self.writer.flush()
                with cond:
                    changes = self.store.changes_after(position, BATCH)
                    if changes == []:
                        now = time.monotonic()
                        wait = min(self.deadline, self.next_bookmark, now + IDLE_CHECK) - now
                        if wait > 0:
                            cond.wait(wait)
                        changes = self.store.changes_after(position, BATCH)
            if changes is None:
                # This watcher fell behind the retained history; the real watch cache closes such
                # watchers and the client's resume then gets 410.
                self.writer.end()
                return
            if changes:
                position = changes[-1].rv
            if not self.emit(self.select(changes) if changes else []):
                return
            now = time.monotonic()
            if now >= self.next_bookmark and len(changes) < BATCH:
                self.writer.write(bookmark_line(self.rtype, position))
                self.on_sent(0, 1)
                self.next_bookmark = now + (self.bookmark_interval or 0)
            if now >= self.deadline:
                self.writer.end()
                return
            if changes:
                last_check = now
            elif now - last_check >= IDLE_CHECK:
                last_check = now
                if client_gone(self.sock):
                    return
