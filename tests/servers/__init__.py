"""Real third-party servers started on loopback by the tests (BIND9, Pebble, Alertmanager).

When ``CI=true`` a missing server binary fails the test instead of skipping it: CI installs every
server, so a skip there would hide a broken install step.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Optional

import pytest


def require_binary(path: str, package: str) -> str:
    """Return ``path`` if it is executable; otherwise skip (locally) or fail (in CI)."""
    found = shutil.which(path)
    if found:
        return found
    message = f"{path} not found: install the Debian package {package!r}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port(udp_too: bool = False) -> int:
    """A port that is free on 127.0.0.1 for TCP (and UDP when ``udp_too``), for a server to bind next."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            if not udp_too:
                return port
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


READY_TIMEOUT = 20.0


def log_tail(path: Path, lines: int = 30) -> str:
    """The end of a server's log, for failure messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_process(process: Optional[subprocess.Popen[bytes]]) -> None:
    """SIGTERM, as an operator would (every server here exits in milliseconds); kill as a last resort."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def start_process(
    name: str,
    command: Sequence[str],
    log_file: Path,
    ready: Callable[[], bool],
    *,
    env: Optional[Mapping[str, str]] = None,
    timeout: float = READY_TIMEOUT,
) -> subprocess.Popen[bytes]:
    """Start a server in the foreground, its output appended to ``log_file``, and poll ``ready()``.

    A server that exits, or is not ready in time, is a RuntimeError carrying the end of its log.
    """
    with open(log_file, "ab") as log:
        process = subprocess.Popen(
            list(command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log_tail(log_file)}")
        if time.monotonic() > deadline:
            stop_process(process)
            raise RuntimeError(f"{name} was not ready within {timeout} s:\n{log_tail(log_file)}")
        time.sleep(0.05)
    return process
