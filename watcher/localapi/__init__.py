"""A faithful local Kubernetes API server, for the tests, the benchmarks and ``watch.py --demo``.

HTTPS on 127.0.0.1 with a CA it generates, bearer-token auth (rotatable), discovery for core v1,
route.openshift.io/v1 and coordination.k8s.io/v1, LIST with pagination over consistent snapshots,
WATCH with real resourceVersion semantics (one global counter, bookmarks, timeoutSeconds, compaction
answered with 410 in-stream or as HTTP), GET/POST/PUT/PATCH/DELETE, RBAC denials and fault injection;
and what ``kubectl`` needs of a server: Table output, implied namespaces, an OpenAPI v3 index.

Modules: ``api`` (the ``LocalAPI`` facade), ``server`` (HTTP and the REST verbs), ``watch`` (the
streaming hot path), ``store`` (revisions and history), ``selectors``, ``patch``, ``status``,
``listing`` (pages and continue tokens), ``resources`` (discovery), ``faults``, ``tls``; for kubectl:
``table`` (server-side printing), ``namespaces`` (implied by the objects in them), ``openapi``,
``clientconfig`` (a kubeconfig for the server).
"""

from __future__ import annotations

from typing import Any

from watcher.localapi.api import LocalAPI
from watcher.localapi.faults import Fault, RequestRecord, Stats

__all__ = ["Fault", "LocalAPI", "RequestRecord", "Stats", "sample_route"]


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
