"""A real HTTP(S) receiver on 127.0.0.1 that records every request, for tests of webhook senders.

Usage in a test module (the import registers the fixtures)::

    from tests.servers.webhook import webhook, webhook_factory  # noqa: F401

    def test_something(webhook):
        ...                                   # make the code under test POST to webhook.url + "/hook"
        (request,) = webhook.wait_for(1)      # method, path, headers, parsed JSON body
        webhook.status = 503                  # from now on, answer 503 (a receiver that is failing)
        webhook.delay = 3.0                   # answer only after 3 s (a receiver that hangs)

``webhook_factory(tls=True)`` serves HTTPS with a certificate from a throw-away CA whose file is
``receiver.ca_file``.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from tests.servers.testca import TestCA


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw) if self.raw else None


class WebhookReceiver:
    """Records requests; answers ``status`` (200 by default) after ``delay`` seconds, with ``{}``."""

    def __init__(self, *, tls_directory: Optional[Path] = None) -> None:
        self.status = 200
        self.delay = 0.0
        self._requests: list[Received] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.ca_file: Optional[str] = None
        scheme = "http"
        if tls_directory is not None:
            tls_directory.mkdir(parents=True, exist_ok=True)
            ca = TestCA.create("Webhook test CA")
            self.ca_file = str(ca.write(tls_directory)[0])
            key, cert = ca.server_cert(tls_directory, "webhook")
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(cert), str(key))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._requests)

    def wait_for(
        self, count: int, timeout: float = 15.0, where: Optional[Callable[[Received], bool]] = None
    ) -> list[Received]:
        """The first ``count`` requests (that satisfy ``where``), once they have arrived."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.requests if where is None or where(r)]
            if len(found) >= count:
                return found[:count]
            if time.monotonic() > deadline:
                raise AssertionError(f"the webhook got {len(found)} of {count} requests within {timeout} s")
            time.sleep(0.02)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                with receiver._lock:
                    receiver._requests.append(Received("POST", self.path, headers, raw))
                    status, delay = receiver.status, receiver.delay
                if delay:
                    time.sleep(delay)
                body = b"{}"
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                try:
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a test of timeouts): nothing to answer

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test reads ``requests``; stderr noise helps nobody

        return Handler


@pytest.fixture
def webhook_factory(tmp_path: Path) -> Iterator[Callable[..., WebhookReceiver]]:
    started: list[WebhookReceiver] = []

    def factory(tls: bool = False) -> WebhookReceiver:
        receiver = WebhookReceiver(tls_directory=tmp_path / f"webhook-tls-{len(started)}" if tls else None)
        started.append(receiver.start())
        return receiver

    try:
        yield factory
    finally:
        for receiver in started:
            receiver.stop()


@pytest.fixture
def webhook(webhook_factory: Callable[..., WebhookReceiver]) -> WebhookReceiver:
    return webhook_factory()
