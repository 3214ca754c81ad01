"""A faithful local Kubernetes API server, for the tests, the benchmarks and ``watch.py --demo``.

HTTPS on 127.0.0.1 with a CA it generates, bearer-token auth (rotatable), discovery for core v1,
route.openshift.io/v1 and coordination.k8s.io/v1, LIST with pagination over consistent snapshots,
WATCH with real resourceVersion semantics (one global counter, bookmarks, timeoutSeconds, compaction
answered with 410 in-stream or as HTTP), GET/POST/PUT/PATCH/DELETE, RBAC denials and fault injection;
and what ``kubectl`` needs of a server: Table output, implied namespaces, an OpenAPI v3 index.

Modules: ``api`` (the ``LocalAPI`` facade), ``server`` (HTTP and the REST verbs), ``watch`` (the
streaming hot path), ``store`` (revisions and history), ``selectors``, ``patch``, ``status``,
``listing`` (pages and continue tokens), ``resources`` (discovery), ``managed`` (managedFields as the
field manager records them), ``faults``, ``tls``; for kubectl: ``table`` (server-side printing),
``namespaces`` (implied by the objects in them), ``openapi``, ``clientconfig`` (a kubeconfig for the
server).
"""

from __future__ import annotations

from typing import Any

from watcher.localapi.api import LocalAPI
from watcher.localapi.faults import Fault, RequestRecord, Stats

__all__ = ["ROUTER", "Fault", "LocalAPI", "RequestRecord", "Stats", "apply_route", "sample_route"]

ROUTER = "openshift-router"  # the manager of a Route's status.ingress on OpenShift


def sample_route(name: str, namespace: str, host: str) -> dict[str, Any]:
    """A realistic Route as the OpenShift router leaves it: pointing at a Service, admitted by the
    ``default`` router."""
    return {
        "apiVersion": "route.openshift.io/v1",
        "kind": "Route",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "host": host,
            "to": {"kind": "Service", "name": name, "weight": 100},
            "port": {"targetPort": "http"},
            "tls": {"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"},
            "wildcardPolicy": "None",
        },
        "status": {
            "ingress": [
                {
                    "host": host,
                    "routerName": "default",
                    "routerCanonicalHostname": "router-default.apps.example.test",
                    "wildcardPolicy": "None",
                    "conditions": [
                        {"type": "Admitted", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                    ],
                }
            ]
        },
    }


def apply_route(api: LocalAPI, route: dict[str, Any]) -> dict[str, Any]:
    """Make ``route`` as it comes about on OpenShift: ``oc apply`` of the manifest without its status,
    then the router admitting it through the status subresource. Two changes; the route then carries
    two managedFields entries and the last-applied annotation, as on a cluster. Returns it."""
    manifest = {k: v for k, v in route.items() if k != "status"}
    applied = api.apply("routes", manifest)
    if "status" not in route:
        return applied
    meta = applied["metadata"]
    return api.patch(
        "routes",
        meta.get("namespace"),
        meta["name"],
        {"status": route["status"]},
        manager=ROUTER,
        subresource="status",
    )
