"""A WATCH on a TLS connection of its own: records decrypted in memory, chunked framing parsed by llhttp.

kube-apiserver writes a busy watch as 2 KiB chunks in 4 KiB TLS records (``watcher/localapi/watch.py``
says why). Through ``requests`` every record is one ``SSL_read`` behind four layers of Python, OpenSSL
reads each record with two ``read`` syscalls (its header, then its body), and the chunks were taken
apart in Python: 9.2 of the 11 CPU µs per event the watcher spent on that stream (profiled in
``bench/README.md``). Here one ``recv`` takes whatever the socket holds, up to ``RAW_READ``, into a
``MemoryBIO``; the records in it are decrypted in one loop, and ``httptools`` (the Python binding of
llhttp, Node.js's HTTP parser) takes the chunked framing apart in C. The same work then costs ~5 µs,
and llhttp beat ``stream.ChunkDecoder`` fed the same blocks by ~1.3 µs per event (``bench/
watch_throughput.py`` measures both in every run), so it is worth its dependency.

``Client.watch`` uses it for a direct ``https`` connection; through a proxy, or over plain ``http``,
``requests`` still does the WATCH.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator, Mapping, Sequence
from typing import cast

import httptools

from watcher import errors, stream

# Bytes per recv at most (~40 Route events). Measured best: 32 KiB costs more calls per event, and
# 128 or 256 KiB more than 64 (the block no longer stays in cache between decrypting and parsing).
RAW_READ = 65536
PLAIN_SIZE = RAW_READ + (1 << 14)  # what one read decrypts at most before it is parsed: + one TLS record
MAX_ERROR_BODY = 1 << 20  # an error answer's Status is small; a bigger body is cut here


class _Message:
    """What llhttp reports about the response: status line, headers, body pieces, the end."""

    __slots__ = ("body", "done", "head_done", "headers", "reason")

    def __init__(self) -> None:
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.head_done = False
        self.done = False

    def on_status(self, reason: bytes) -> None:
        self.reason += reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


class TLSWatch:
    """An open WATCH: decoded body bytes in large blocks, and a way to abort it from another thread.

    Built by ``open_watch`` once the response head is in; ``status``, ``reason`` and ``headers``
    (names in lower case) describe it.
    """

    def __init__(self, sock: socket.socket, tls: ssl.SSLObject, incoming: ssl.MemoryBIO) -> None:
        self._sock = sock
        self._tls = tls
        self._incoming = incoming
        self._raw = bytearray(RAW_READ)
        self._raw_view = memoryview(self._raw)
        self._plain_view = memoryview(bytearray(PLAIN_SIZE))
        self._message = _Message()
        self._parser = httptools.HttpResponseParser(self._message)
        self.status = 0
        self.reason = ""
        self.headers: dict[str, str] = {}

    def _read(self) -> bool:
        """Take what the socket holds and feed its plaintext to the parser; False at end of file.

        Both reads go into buffers kept for the connection: a fresh ``bytes`` per call, allocated at
        full size and then shrunk, cost more than the TLS itself (above malloc's mmap threshold,
        a mapping and an unmapping each time).
        """
        n = self._sock.recv_into(self._raw)
        if not n:
            return False
        self._incoming.write(self._raw_view[:n])
        read, plain, pos = self._tls.read, self._plain_view, 0
        try:
            while True:
                if pos > RAW_READ:  # less room left than the largest record: parse what is in first
                    self._feed(plain[:pos])
                    pos = 0
                # With a buffer, SSLObject.read returns the byte count (typeshed says bytes).
                pos += cast(int, read(PLAIN_SIZE - pos, plain[pos:]))
        except ssl.SSLWantReadError:  # no whole record left in the BIO
            pass
        except ssl.SSLZeroReturnError:  # close_notify: the peer ends the connection
            return False
        if pos:
            self._feed(plain[:pos])
        return True

    def _feed(self, plain: memoryview) -> None:
        try:
            self._parser.feed_data(plain)
        except httptools.HttpParserError as e:
            raise stream.ChunkedFramingError(f"bad HTTP framing: {e}") from None

    def read_head(self) -> None:
        message = self._message
        while not message.head_done:
            if not self._read():
                raise errors.TransportError("the connection closed before the response head")
        self.status = self._parser.get_status_code()
        self.reason = message.reason
        self.headers = message.headers

    def read_body(self, limit: int = MAX_ERROR_BODY) -> bytes:
        """The whole (short) body of an answer that is not a stream, such as an error Status."""
        message = self._message
        size = sum(map(len, message.body))
        while not message.done and size < limit and self._read():
            size = sum(map(len, message.body))
        return b"".join(message.body)[:limit]

    def chunks(self) -> Iterator[bytes]:
        """Body blocks as they arrive, as much as each read brought; ends at the terminating chunk."""
        message, body, read = self._message, self._message.body, self._read
        while True:
            if body:
                block = body[0] if len(body) == 1 else b"".join(body)
                body.clear()
                yield block
            if message.done:
                return
            if not read():
                raise errors.TransportError("the connection closed before the end of the watch stream")

    def abort(self) -> None:
        """Shut the socket down so a blocked read returns at once (used on SIGTERM and lease loss)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


def open_watch(
    host: str,
    port: int,
    target: str,
    headers: Mapping[str, str],
    context: ssl.SSLContext,
    *,
    connect_timeout: float,
    read_timeout: float,
    socket_options: Sequence[tuple[int, int, int]] = (),
) -> TLSWatch:
    """Connect, shake hands (``context`` verifies the server for ``host``), send ``GET target`` and
    read the response head. TLS and socket errors propagate as ``ssl.SSLError`` and ``OSError``."""
    sock = socket.create_connection((host, port), timeout=connect_timeout)
    try:
        for option in socket_options:
            sock.setsockopt(*option)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_hostname=host)
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    sock.sendall(outgoing.read())
                data = sock.recv(RAW_READ)
                if not data:
                    raise errors.TransportError("the connection closed during the TLS handshake") from None
                incoming.write(data)
        netloc = host if ":" not in host else f"[{host}]"
        lines = [f"GET {target} HTTP/1.1", f"Host: {netloc}:{port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        tls.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        sock.sendall(outgoing.read())
        sock.settimeout(read_timeout)
        watch = TLSWatch(sock, tls, incoming)
        watch.read_head()
    except BaseException:
        sock.close()
        raise
    return watch
