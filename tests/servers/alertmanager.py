"""A real Prometheus Alertmanager on 127.0.0.1, for the alert plugin's tests.

Usage in a test module (the import registers the fixture)::

    from tests.servers.alertmanager import alertmanager  # noqa: F401

    def test_something(alertmanager):
        alertmanager.alerts(alertname="PodCrashLooping")   # GET /api/v2/alerts?filter=alertname="..."

Config, storage and log live in the test's temporary directory; the gossip cluster listener is off
(``--cluster.listen-address=``); the server runs in the foreground and stops with SIGTERM. ``stop()``
then ``start()`` brings it back on the same port, for tests of a sink that goes away. See
/work/shared/notes/REAL_SERVERS.md section 3.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest
import requests

from tests.servers import free_port, log_tail, require_binary, start_process, stop_process

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
PACKAGE = "prometheus-alertmanager"

# group_wait 0s: notifications (when a receiver is configured) leave at once; nothing here waits on them.
_CONFIG = """\
route:
  receiver: default
  group_by: ['alertname']
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: default
"""


@dataclass
class Alertmanager:
    directory: Path
    port: int
    binary: str
    process: Optional[subprocess.Popen[bytes]] = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.directory / "alertmanager.log"

    def start(self) -> None:
        """Start (again, on the same port) and wait for ``/-/ready``."""
        if self.running:
            raise RuntimeError("alertmanager is already running")
        command = [
            self.binary,
            f"--config.file={self.directory / 'alertmanager.yml'}",
            f"--storage.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            "--log.level=info",
        ]
        self.process = start_process("alertmanager", command, self.log_file, self._ready)

    def stop(self) -> None:
        stop_process(self.process)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def alerts(self, **labels: str) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` filtered by label equality (resolved alerts are never listed)."""
        params = [("filter", f'{name}="{value}"') for name, value in sorted(labels.items())]
        response = requests.get(f"{self.url}/api/v2/alerts", params=params, timeout=5)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    def post(self, alerts: list[dict[str, Any]]) -> None:
        """Send alerts directly, as a test's reference for what Alertmanager accepts."""
        requests.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=5).raise_for_status()

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_file, lines)

    def _ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/-/ready", timeout=0.5).status_code == 200
        except requests.RequestException:
            return False


def start_alertmanager(directory: Path, *, config: str = _CONFIG, port: Optional[int] = None) -> Alertmanager:
    binary = require_binary(ALERTMANAGER, PACKAGE)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "alertmanager.yml").write_text(config)
    server = Alertmanager(directory=directory, port=port or free_port(), binary=binary)
    server.start()
    return server


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    server = start_alertmanager(tmp_path / "alertmanager")
    try:
        yield server
    finally:
        server.stop()
