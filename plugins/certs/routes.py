"""Reading a Route's TLS state, deciding whether it needs a certificate, and building the merge patch.

Pure functions over the Route dict, so the decision that matters most — "the MODIFIED event caused by
our own patch must not issue again" — is testable without any server.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from . import certificates
from .issuer import Signed
from .settings import CertSettings

STATE_CREATED = "created"
"""The seed's value for ``<annotation>.state`` once the route carries our certificate."""

ISSUE, CURRENT, SKIP = "issue", "current", "skip"


@dataclass(frozen=True)
class Decision:
    action: str  # ISSUE, CURRENT or SKIP
    reason: str = ""


def meta(route: Mapping[str, Any]) -> Mapping[str, Any]:
    return route.get("metadata") or {}


def notes(route: Mapping[str, Any]) -> Mapping[str, str]:
    """The route's annotations (never None)."""
    return meta(route).get("annotations") or {}


def identity(route: Mapping[str, Any]) -> str:
    """``demo/web``: how every log line names a route (never the object itself: it carries a key)."""
    m = meta(route)
    return f"{m.get('namespace', '')}/{m.get('name', '?')}"


def host(route: Mapping[str, Any]) -> str:
    return str((route.get("spec") or {}).get("host") or "").strip().lower()


def tls(route: Mapping[str, Any]) -> Mapping[str, Any]:
    return (route.get("spec") or {}).get("tls") or {}


def opted_in(route: Mapping[str, Any], settings: CertSettings) -> bool:
    return str(notes(route).get(settings.annotation, "")).strip().lower() == "true"


def ours(route: Mapping[str, Any], settings: CertSettings) -> bool:
    """The route says we put a certificate there (it may since have been replaced; see ``decide``)."""
    return notes(route).get(settings.annotation_key("state")) == STATE_CREATED


def current_certificate(route: Mapping[str, Any]) -> Optional[Any]:
    """The leaf in ``spec.tls.certificate`` or None when there is none or it cannot be read."""
    pem = tls(route).get("certificate")
    if not pem:
        return None
    try:
        certs = certificates.load_certificates(str(pem))
    except certificates.CertificateError:
        return None
    return certs[0] if certs else None


def decide(route: Mapping[str, Any], settings: CertSettings, now: datetime.datetime) -> Decision:
    """Whether this opted-in route needs a certificate now, and why (the reason ends up in the log)."""
    name = host(route)
    if not name:
        return Decision(SKIP, "it has no spec.host")
    termination = str(tls(route).get("termination") or "").lower()
    if termination == "passthrough":
        return Decision(SKIP, "its TLS termination is passthrough, where the router holds no certificate")
    pem = tls(route).get("certificate")
    if not pem:
        return Decision(ISSUE, "it has no certificate")
    cert = current_certificate(route)
    if cert is None:
        return Decision(ISSUE, "its certificate cannot be read")
    serial = notes(route).get(settings.annotation_key("serial"))
    if not ours(route, settings) or serial != certificates.serial_hex(cert):
        return Decision(ISSUE, "its certificate was not issued by this plugin")
    if not certificates.covers(cert, name):
        return Decision(ISSUE, f"its certificate does not cover {name}")
    public = certificates.public_key_of_pem(str(tls(route).get("key") or ""))
    if public is None:
        return Decision(ISSUE, "its private key is missing or cannot be read")
    if public != certificates.public_key_bytes(cert):
        return Decision(ISSUE, "its private key does not match its certificate")
    expires = certificates.not_after(cert)
    window = settings.renew_before.window(certificates.lifetime(cert))
    if expires - now <= window:
        return Decision(
            ISSUE,
            f"its certificate expires at {certificates.rfc3339(expires)}, "
            f"within renew_before ({settings.renew_before})",
        )
    return Decision(CURRENT, f"its certificate is valid until {certificates.rfc3339(expires)}")


def tls_patch(
    route: Mapping[str, Any], signed: Signed, key_pem: str, issuer: str, settings: CertSettings
) -> dict[str, Any]:
    """The merge patch that installs the certificate and records it in the annotations.

    ``termination`` is kept when set (edge or reencrypt); a route without TLS becomes edge with
    HTTP redirected to HTTPS. A chain-less CA removes any stale ``caCertificate`` (null deletes it).
    """
    new_tls: dict[str, Any] = {
        "certificate": certificates.to_pem(signed.leaf),
        "key": key_pem,
        "caCertificate": certificates.to_pem(list(signed.chain)) if signed.chain else None,
    }
    if not tls(route).get("termination"):
        new_tls["termination"] = "edge"
        new_tls["insecureEdgeTerminationPolicy"] = "Redirect"
    return {
        "metadata": {
            "annotations": {
                settings.annotation_key("state"): STATE_CREATED,
                settings.annotation_key("serial"): certificates.serial_hex(signed.leaf),
                settings.annotation_key("not-after"): certificates.rfc3339(
                    certificates.not_after(signed.leaf)
                ),
                settings.annotation_key("issuer"): issuer,
            }
        },
        "spec": {"tls": new_tls},
    }
