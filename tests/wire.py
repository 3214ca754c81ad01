"""A WATCH response exactly as it comes off the TLS socket, for tests that check its framing.

``requests`` and ``http.client`` hide where chunks and TLS records begin and end; here one raw
``SSLSocket.recv`` is one TLS record (OpenSSL hands out at most one record per read), and the chunked
body is taken apart by hand, keeping every chunk's size and where its size line lies on the wire.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from watcher.localapi import LocalAPI, sample_route


@dataclass
class Wire:
    reads: list[bytes] = field(default_factory=list)  # one per recv, in order, after the headers
    chunks: list[bytes] = field(default_factory=list)  # each chunk's data, the terminating one left out
    size_lines: list[tuple[int, int]] = field(default_factory=list)  # (start, end) in the body's bytes
    ended: bool = False  # the terminating zero-size chunk arrived

    @property
    def sizes(self) -> list[int]:
        return [len(c) for c in self.chunks]

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def size_lines_cut_by_reads(self) -> int:
        """How many chunk-size lines (with their CRLF) were split between two reads."""
        bounds, offset = set(), 0
        for read in self.reads:
            offset += len(read)
            bounds.add(offset)
        return sum(any(b in bounds for b in range(start + 1, end)) for start, end in self.size_lines)

    def events_cut_by_chunks(self) -> int:
        """How many chunks end inside an event line."""
        return sum(not c.endswith(b"\n") for c in self.chunks)


def read_wire(api: LocalAPI, path: str, **params: str) -> Wire:
    """GET ``path?watch=true&…`` on a raw TLS socket, read until the stream ends, and parse the framing."""
    context = ssl.create_default_context(cafile=api.ca_file)
    query = urlencode({"watch": "true", **params})
    request = (
        f"GET {path}?{query} HTTP/1.1\r\nHost: {api.host_port}\r\n"
        f"Authorization: Bearer {api.token}\r\nAccept: application/json\r\n\r\n"
    ).encode()
    wire = Wire()
    raw = socket.create_connection(("127.0.0.1", api.port), timeout=30)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        sock.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        head, first = received.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200") and b"Transfer-Encoding: chunked" in head, head
        if first:
            wire.reads.append(first)
        body = first
        while not body.endswith(b"\r\n0\r\n\r\n") and body != b"0\r\n\r\n":
            read = sock.recv(65536)
            if not read:
                break
            wire.reads.append(read)
            body += read
    pos = 0
    while pos < len(body):
        end = body.index(b"\r\n", pos) + 2
        size = int(body[pos : end - 2], 16)
        if size == 0:
            wire.ended = True
            break
        wire.size_lines.append((pos, end))
        wire.chunks.append(body[end : end + size])
        assert body[end + size : end + size + 2] == b"\r\n", "no CRLF after a chunk's data"
        pos = end + size + 2
    return wire


# A backlog long enough for every framing case: 2,048-byte chunks framed as 2,055 bytes on the wire
# against 4,096-byte TLS records put the first chunk-size line across two records at chunk 1,170,
# whatever the events (a busy stream's chunking depends on its length only).
BUSY_EVENTS = 1400
BUSY_PAD = "x" * 600  # ~1.9 KB per event with its managedFields: under the 2 KiB chunking buffer


def load_backlog(api: LocalAPI, namespace: str, count: int = BUSY_EVENTS) -> list[dict[str, Any]]:
    """``count`` ADDED routes in ``namespace``, made before anyone watches: a watcher from before
    them finds them all pending, as one that fell behind does."""
    made = []
    for i in range(count):
        obj = sample_route(f"busy-{i:05d}", namespace, f"busy-{i:05d}.apps.example.test")
        obj["metadata"]["annotations"] = {"example.test/pad": BUSY_PAD}
        made.append(api.create("routes", obj))
    return made
