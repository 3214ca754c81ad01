"""Real third-party servers started on loopback by the tests (BIND9, Pebble, Alertmanager).

When ``CI=true`` a missing server binary fails the test instead of skipping it: CI installs every
server, so a skip there would hide a broken install step.
"""

from __future__ import annotations

import os
import shutil
import socket

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
