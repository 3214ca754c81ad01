"""Helpers shared by the certificates plugin's tests (test_plugin_certs*.py)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from plugins.certs import certificates
from watcher import config
from watcher.client import Client
from watcher.dispatch import PluginAPI
from watcher.localapi import LocalAPI

ANNOTATION = "openshift.io/managed.cert"
OPT_IN = {ANNOTATION: "true"}


@contextlib.contextmanager
def plugin_watcher(api: LocalAPI, tmp_path: Path, namespace: str = "demo") -> Iterator[SimpleNamespace]:
    """The ``watcher`` argument a plugin gets, with the real client and PluginAPI on the local API.

    For tests that call ``handle_event`` themselves, to control exactly which event arrives when.
    """
    env = {
        "K8S_API_ENDPOINT": api.url,
        "K8S_TOKEN": api.token,
        "K8S_CA": api.ca_file,
        "K8S_RESOURCE": "routes",
        "K8S_NAMESPACE": namespace,
    }
    settings = config.load(env, None, serviceaccount_dir=str(tmp_path / "no-sa"), home=str(tmp_path))
    client = Client(settings)
    try:
        info = client.discover("routes", None, None)
        yield SimpleNamespace(
            api=PluginAPI(client, info), config=settings, logger=logging.getLogger("plugins.certs")
        )
    finally:
        client.close()


def verify_chain(
    leaf: x509.Certificate, chain: list[x509.Certificate], root: x509.Certificate, host: str
) -> list[x509.Certificate]:
    """Real RFC 5280 path validation for a TLS server name, as a client of the router would do it."""
    verifier = PolicyBuilder().store(Store([root])).build_server_verifier(x509.DNSName(host))
    return verifier.verify(leaf, chain)


def route_certificate(route: dict[str, Any]) -> tuple[x509.Certificate, list[x509.Certificate], Any]:
    """Leaf, chain and private key as the route carries them."""
    tls = route["spec"]["tls"]
    leaf = certificates.load_certificates(tls["certificate"])
    assert len(leaf) == 1, "spec.tls.certificate holds the leaf only"
    chain = certificates.load_certificates(tls["caCertificate"]) if tls.get("caCertificate") else []
    return leaf[0], chain, certificates.load_key(tls["key"])


def serial_of(route: dict[str, Any]) -> str:
    return str(route["metadata"]["annotations"].get(f"{ANNOTATION}.serial", ""))


def patches(api: LocalAPI, name: str) -> int:
    """PATCH requests the local API answered for one route (every write the plugin made)."""
    return sum(
        1
        for r in api.requests_seen()
        if r.verb == "patch" and r.path.endswith(f"/routes/{name}") and r.status == 200
    )


def log_text(records: list[logging.LogRecord]) -> str:
    """Every captured message and traceback, to check that no secret reached the log."""
    parts = []
    for record in records:
        parts.append(record.getMessage())
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)
