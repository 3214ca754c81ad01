"""The probe and metrics endpoint: ``/healthz``, ``/readyz`` and ``/metrics`` on ``metrics_port``.

Liveness and readiness mean different things and restart different problems:

* ``/healthz`` (liveness) - the loop is alive and not wedged. The informer touches a heartbeat for every
  block it reads and every time round its loop, the leader elector on every try. No progress for
  ``stale_after`` - longer than a few watch read timeouts, so an idle but healthy watch never trips
  it - means something hangs (a socket that never times out). A plugin call running longer than its
  ``stuck_after`` fails it too, naming the plugin and the object (``check``): the kubelet restarts the
  wedged container. While the watcher still waits for the API server at start-up it is alive:
  restarting would not make the server answer.
* ``/readyz`` (readiness) - the first LIST is handed to the plugins' queues and the WATCH is
  connected; how far the plugins are behind is a metric (``event_watcher_queue_depth``), not
  readiness: a pod that is not ready never gets through a rolling update. A leader-election
  standby is ready too, once it has read the Lease: waiting is its job, and a standby that is never
  ready would block every rolling update (``maxUnavailable``) and hide the replica that takes over.
  ``event_watcher_leader`` tells the two apart.
* ``/metrics`` - the registry in Prometheus' classic text format (what ``promtool check metrics``
  lints cleanly; the OpenMetrics variant adds ``_created`` series it warns about).
"""

from __future__ import annotations

import errno
import http.server
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional, Protocol

from prometheus_client import CollectorRegistry, exposition, generate_latest

from watcher import errors

logger = logging.getLogger(__name__)

Clock = Callable[[], float]

# The classic text format. prometheus-client 0.22+ labels its output "version=1.0.0" by default; our
# metric names are all classic ones, so the body is the same, and 0.0.4 is what every scraper knows.
CONTENT_TYPE = getattr(exposition, "CONTENT_TYPE_PLAIN_0_0_4", exposition.CONTENT_TYPE_LATEST)


class Watching(Protocol):
    """What the probes read from the informer (``watcher.informer.Informer`` has both)."""

    ready: threading.Event
    last_activity: float


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detail: str  # one line for the probe's body and for the kubelet's event on failure


class Probes:
    """The watcher's state as the kubelet sees it; fed by the run loop, read by the HTTP handler.

    Roles: ``starting`` (discovery, plugins), ``single`` (no leader election: always watching),
    ``leader`` and ``standby``.
    """

    def __init__(self, stale_after: float, *, clock: Clock = time.monotonic) -> None:
        self.stale_after = stale_after
        self._clock = clock
        self._lock = threading.Lock()
        self._role = "starting"
        self._informer: Optional[Watching] = None
        self._beat = clock()
        self._lease_seen = False
        self._check: Callable[[], Optional[str]] = lambda: None
        self._problem: Optional[str] = None  # why it is not watching yet, for /readyz

    # --- fed by the run loop ------------------------------------------------------------------------

    def beat(self) -> None:
        """Progress: the elector finished a try."""
        self._beat = self._clock()

    def check(self, problem: Callable[[], Optional[str]]) -> None:
        """What else makes the process unhealthy, as a sentence (a stuck plugin call), else None; read
        when a probe asks."""
        self._check = problem

    def failing(self, problem: str) -> None:
        """The last reason the start is still waiting (the API server unreachable, a wrong CA), with
        the attempt count: /readyz shows it, so ``oc describe pod`` says what is wrong."""
        with self._lock:
            self._problem = problem

    def watching(self, informer: Watching, role: str = "single") -> None:
        with self._lock:
            self._problem = None
            self._informer = informer
            self._role = role
            self._beat = self._clock()

    def standby(self, lease_seen: bool) -> None:
        """Not leading; ``lease_seen``: the Lease was read (the API server answers us)."""
        with self._lock:
            self._informer = None
            self._role = "standby"
            self._lease_seen = self._lease_seen or lease_seen
            self._beat = self._clock()

    @property
    def role(self) -> str:
        return self._role

    # --- read by the endpoint -----------------------------------------------------------------------

    def liveness(self) -> Verdict:
        with self._lock:
            informer, role = self._informer, self._role
        if role == "starting":
            return Verdict(True, "starting")
        problem = self._check()
        if problem:
            return Verdict(False, f"{role}: {problem}")
        now = self._clock()
        last = self._beat
        if informer is not None:
            last = max(last, informer.last_activity)
        age = now - last
        if age > self.stale_after:
            return Verdict(False, f"{role}: no progress for {age:.0f} s (limit {self.stale_after:.0f} s)")
        return Verdict(True, f"{role}: last progress {age:.0f} s ago")

    def readiness(self) -> Verdict:
        with self._lock:
            informer, role, lease_seen, problem = self._informer, self._role, self._lease_seen, self._problem
        if role == "standby":
            if lease_seen:
                return Verdict(True, "standby: another replica holds the lease")
            return Verdict(False, "standby: the lease has not been read yet")
        if informer is None:
            return Verdict(False, f"{role}: not watching yet" + (f": {problem}" if problem else ""))
        if not informer.ready.is_set():
            return Verdict(False, f"{role}: the first list or the watch is not done yet")
        return Verdict(True, f"{role}: watching")


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def _respond(self, send_body: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            status, body, content_type = 200, generate_latest(self.server.registry), CONTENT_TYPE
        elif path in ("/healthz", "/livez", "/readyz"):
            verdict = self.server.probes.readiness() if path == "/readyz" else self.server.probes.liveness()
            status = 200 if verdict.ok else 503
            body = (("ok: " if verdict.ok else "not ok: ") + verdict.detail + "\n").encode()
            content_type = "text/plain; charset=utf-8"
        else:
            status, body, content_type = 404, b"not found: try /healthz, /readyz or /metrics\n", "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # Probes every few seconds would drown the log; keep them for DEBUG.
        logger.debug("Health endpoint: %s %s", self.address_string(), format % args)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], probes: Probes, registry: CollectorRegistry) -> None:
        self.probes = probes
        self.registry = registry
        if ":" in address[0]:  # metrics_address = :: (every IPv6 interface) or another IPv6 address
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


class HealthServer:
    """The HTTP listener on a daemon thread; ``port`` 0 in the constructor picks a free one (tests)."""

    def __init__(
        self, probes: Probes, registry: CollectorRegistry, *, host: str = "127.0.0.1", port: int = 8080
    ):
        self._server = _Server((host, port), probes, registry)
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    @property
    def url(self) -> str:
        """Where to point a browser or curl; kept copyable (no punctuation glued to it in the log)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> HealthServer:
        self._thread.start()
        logger.info("Serving /healthz, /readyz and /metrics at %s", self.url)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def start(
    metrics_port: int,
    probes: Probes,
    registry: CollectorRegistry,
    *,
    host: str = "127.0.0.1",
    any_port_if_busy: bool = False,
) -> Optional[HealthServer]:
    """The server for ``Settings.metrics_port``; None when it is 0 (disabled).

    ``any_port_if_busy``: a port nobody chose (``--demo`` on the default) that is taken gives way to
    a free one, said in the log, instead of stopping a newcomer's first run."""
    if metrics_port == 0:
        logger.info("metrics_port is 0: no /healthz, /readyz or /metrics endpoint.")
        return None
    try:
        return HealthServer(probes, registry, host=host, port=metrics_port).start()
    except OSError as e:
        if any_port_if_busy and e.errno == errno.EADDRINUSE:
            server = HealthServer(probes, registry, host=host, port=0)
            logger.warning(
                "Port %d is taken; serving the probes and /metrics on port %d instead "
                "(WATCHER_METRICS_PORT chooses one).",
                metrics_port,
                server.port,
            )
            return server.start()
        raise errors.ConfigError(
            f"cannot listen on {host}:{metrics_port} for /metrics and the probes: {e.strerror or e} "
            "(set WATCHER_METRICS_PORT / metrics_port to another port, 0 to disable, or "
            "WATCHER_METRICS_ADDRESS / metrics_address)"
        ) from None


def stale_after(watch_timeout: float, read_margin: float) -> float:
    """Two full watch read timeouts (with the server's +10 % jitter): an idle watch never looks stale."""
    return 2 * (watch_timeout * 1.1 + read_margin)
