"""The real watcher as a subprocess, for ``bench/chaos.py`` and ``bench/soak.py``.

It is ``watch.py`` exactly (``watcher.cli.main`` with the environment and ini file given), except that the
/metrics endpoint binds 127.0.0.1 instead of every interface: benchmarks keep their servers on loopback.
SIGTERM stops it as a kubelet would; /metrics and ``/proc/<pid>/status`` are read from outside.
"""

from __future__ import annotations

import configparser
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Optional

from bench._common import ROOT
from bench.plugins.count import status_kb

# watch.py's three lines (off a pod, /metrics listens on 127.0.0.1 by default).
LAUNCHER = "from watcher.cli import main\nmain()\n"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_ini(path: Path, sections: Mapping[str, Mapping[str, str]]) -> Path:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_dict(sections)
    with open(path, "w", encoding="utf-8") as f:
        parser.write(f)
    return path


def base_env(home: Path) -> dict[str, str]:
    """Only what a container would have: no KUBECONFIG, no proxies, HOME without a ~/.kube/config."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def watcher_env(api: Any, work: Path, plugin: str, plugin_path: Path) -> dict[str, str]:
    """The environment of a watcher on ``api`` (a ``LocalAPI``) across all namespaces, with the token
    in a file under ``work``, running ``plugin`` from ``plugin_path``, logging warnings only."""
    token_file = work / "token"
    token_file.write_text(api.token, encoding="utf-8")
    return {
        **base_env(work),
        "K8S_API_ENDPOINT": api.url,
        "K8S_TOKEN_FILE": str(token_file),
        "K8S_CA": api.ca_file,
        "K8S_RESOURCE": "routes",
        "K8S_NAMESPACED": "false",
        "WATCHER_PLUGIN": plugin,
        "WATCHER_PLUGIN_PATH": str(plugin_path),
        "LOG_LEVEL": "WARNING",
    }


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format → {"name{labels}": value}, comments skipped."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            values[name] = float(value)
        except ValueError:
            continue
    return values


class WatcherProcess:
    """One ``watch.py`` process; ``start`` again after ``stop`` for a restart (same port, same config)."""

    def __init__(
        self, env: Mapping[str, str], metrics_port: int, log_dir: Path, name: str = "watcher"
    ) -> None:
        self.env = dict(env)
        self.metrics_port = metrics_port
        self.log_dir = log_dir
        self.name = name
        self.runs = 0
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self._log: Optional[IO[bytes]] = None

    @property
    def log_files(self) -> list[Path]:
        return [self.log_dir / f"{self.name}-{i}.log" for i in range(1, self.runs + 1)]

    def start(self) -> None:
        self.runs += 1
        self._log = open(self.log_dir / f"{self.name}-{self.runs}.log", "wb")  # noqa: SIM115 -- closed in stop
        env = {**self.env, "WATCHER_METRICS_PORT": str(self.metrics_port)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER],
            cwd=str(ROOT),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> Optional[int]:
        """SIGTERM and wait; the exit code, or None if it had to be killed."""
        if self.proc is None:
            return 0
        code: Optional[int]
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = None
        if self._log is not None:
            self._log.close()
            self._log = None
        self.proc = None
        return code

    def get(self, path: str, timeout: float = 5.0) -> Optional[str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=timeout) as r:
                return str(r.read().decode())
        except (urllib.error.URLError, OSError):
            return None

    def metrics(self) -> dict[str, float]:
        text = self.get("/metrics")
        return parse_metrics(text) if text else {}

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """/readyz answers 200: the first LIST is delivered and a WATCH is open."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return False
            if self.get("/readyz", timeout=2) is not None:
                return True
            time.sleep(0.05)
        return False

    def rss_kib(self) -> int:
        return status_kb("VmRSS", str(self.pid)) if self.pid else 0
