"""A real Pebble ACME server on 127.0.0.1 that validates DNS-01 against a real BIND9.

Pebble runs *without* ``PEBBLE_VA_ALWAYS_VALID`` and with ``-dnsserver 127.0.0.1:<bind port>``, so an
order only succeeds when the client really published ``_acme-challenge.<host>`` in BIND. The other
variables make it deterministic: no random validation delay (``PEBBLE_VA_NOSLEEP``), no deliberately
rejected nonces (``PEBBLE_WFE_NONCEREJECT=0``) and no reused authorizations (``PEBBLE_AUTHZREUSE=0``).
Recipe: /work/shared/notes/REAL_SERVERS.md section 2.

Usage::

    from tests.servers.bind import bind_factory, bind_server  # noqa: F401
    from tests.servers.pebble import pebble  # noqa: F401

    def test_order(pebble):  # pebble.directory, pebble.tls_ca_file, pebble.roots(), pebble.bind
        ...
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from cryptography import x509

from tests.servers import free_port, log_tail, require_binary, start_process, stop_process
from tests.servers.bind import BindServer
from tests.servers.testca import TestCA

PEBBLE = "/usr/bin/pebble"


@dataclass
class PebbleServer:
    port: int
    management_port: int
    tls_ca_file: Path
    directory_path: Path
    bind: BindServer
    process: subprocess.Popen[bytes] = field(repr=False)
    log_file: Path = field(repr=False)

    @property
    def directory(self) -> str:
        """The ACME directory URL."""
        return f"https://127.0.0.1:{self.port}/dir"

    def _management(self, path: str) -> str:
        response = requests.get(
            f"https://127.0.0.1:{self.management_port}{path}", verify=str(self.tls_ca_file), timeout=10
        )
        response.raise_for_status()
        return response.text

    def roots(self) -> list[x509.Certificate]:
        """The issuing root(s); a new one on every Pebble start."""
        return x509.load_pem_x509_certificates(self._management("/roots/0").encode())

    def intermediates(self) -> list[x509.Certificate]:
        return x509.load_pem_x509_certificates(self._management("/intermediates/0").encode())

    def cert_status(self, serial_hex: str) -> dict[str, object]:
        """Pebble's view of one certificate (``Status``: Valid or Revoked), by hex serial."""
        return json.loads(self._management(f"/cert-status-by-serial/{serial_hex}"))  # type: ignore[no-any-return]

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_file, lines)

    def orders_finalized(self) -> int:
        """How many orders Pebble issued a certificate for, read from its log ("Issued certificate ...")."""
        return self.log_file.read_text(errors="replace").count("Issued certificate serial")

    def stop(self) -> None:
        stop_process(self.process)


def start_pebble(directory: Path, bind: BindServer) -> PebbleServer:
    binary = require_binary(PEBBLE, "pebble")
    directory.mkdir(parents=True, exist_ok=True)
    ca = TestCA.create("Pebble TLS test CA")
    ca_file, _ = ca.write(directory, "tls-ca")
    key_file, cert_file = ca.server_cert(directory, "pebble-tls")
    port, management_port = free_port(), free_port()
    config = {
        "pebble": {
            "listenAddress": f"127.0.0.1:{port}",
            "managementListenAddress": f"127.0.0.1:{management_port}",
            "certificate": str(cert_file),
            "privateKey": str(key_file),
            # Ports the validator would connect to for http-01/tls-alpn-01; these tests use dns-01 only.
            "httpPort": free_port(),
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    config_file = directory / "pebble-config.json"
    config_file.write_text(json.dumps(config))
    # A clean environment: a PEBBLE_VA_ALWAYS_VALID=1 left in the caller's shell would make every
    # challenge pass without looking at DNS, and the tests would prove nothing.
    env = {
        key: value
        for key, value in os.environ.items()
        if key.startswith(("PATH", "HOME", "LANG", "LC_", "TMPDIR"))
    }
    env.update({"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"})
    directory_url = f"https://127.0.0.1:{port}/dir"

    def ready() -> bool:
        try:
            return requests.get(directory_url, verify=str(ca_file), timeout=1).status_code == 200
        except requests.RequestException:
            return False

    log_file = directory / "pebble.log"
    command = [binary, "-config", str(config_file), "-dnsserver", f"{bind.host}:{bind.port}"]
    process = start_process("pebble", command, log_file, ready, env=env)
    return PebbleServer(port, management_port, ca_file, directory, bind, process, log_file)


@pytest.fixture
def pebble(tmp_path: Path, bind_server: BindServer) -> Iterator[PebbleServer]:
    """Pebble validating DNS-01 through the ``bind_server`` fixture's BIND (zone apps.example.test)."""
    server = start_pebble(tmp_path / "pebble", bind_server)
    try:
        yield server
    finally:
        server.stop()
