"""What a route's host should resolve to: the configured router, or the router that admitted it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import names
from .settings import Target


@dataclass(frozen=True)
class Record:
    """One address record: ``A 192.0.2.10``, ``AAAA 2001:db8::1`` or ``CNAME router.example.test.``."""

    rdtype: str
    value: str

    def __str__(self) -> str:
        return f"{self.rdtype} {self.value}"


def record_name(route: Mapping[str, Any]) -> Any:
    """The name the route needs in DNS: ``spec.host``, or ``*.<parent>`` for a wildcard route.

    OpenShift serves a route with ``wildcardPolicy: Subdomain`` and host ``www.apps.example.com`` for
    every name under ``apps.example.com``. Returned unchecked: the caller validates it.
    """
    spec = route.get("spec") or {}
    host = spec.get("host")
    if isinstance(host, str) and spec.get("wildcardPolicy") == "Subdomain" and not host.startswith("*."):
        _, dot, parent = host.partition(".")
        if dot and parent:
            return f"*.{parent}"
    return host


def record_for(route: Mapping[str, Any], target: Target) -> tuple[Record | None, str]:
    """The record the route's host should have, or None and why not (a few words for the log)."""
    if not target.from_ingress:
        assert target.rdtype is not None and target.value is not None
        return Record(target.rdtype, target.value), ""
    # As external-dns does for OpenShift routes: point at the canonical name of a router that admitted it.
    status = route.get("status") or {}
    for ingress in status.get("ingress") or []:
        if not isinstance(ingress, Mapping) or not _admitted(ingress):
            continue
        canonical = ingress.get("routerCanonicalHostname")
        if not canonical:
            continue
        problem = names.problem(str(canonical), wildcard=False)
        if problem:
            return None, f"its router's canonical hostname {str(canonical)[:80]!r} is not valid ({problem})"
        return Record("CNAME", names.normalize(str(canonical)) + "."), ""
    return None, "no router has admitted it with a canonical hostname yet"


def _admitted(ingress: Mapping[str, Any]) -> bool:
    for condition in ingress.get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == "Admitted":
            return str(condition.get("status")) == "True"
    return False
