"""The resource types the local API serves, and the discovery documents that describe them.

The shapes follow what a real OpenShift 4 API server returns from ``/api``, ``/api/v1``, ``/apis`` and
``/apis/{group}/{version}``, including the ``*/status`` subresource entries a client must skip.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")


@dataclass(frozen=True, eq=False)  # singletons: identity hashing keeps the store's dict lookups cheap
class ResourceType:
    plural: str
    singular: str
    kind: str
    group: str  # "" for the core API
    version: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    # Field selector labels beyond metadata.name/metadata.namespace, as the real server registers them.
    fields: tuple[str, ...] = ()
    status: bool = True  # has a status subresource

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``routes.route.openshift.io``: how RBAC and error messages name a resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("namespaces", "namespace", "Namespace", "", "v1", False, ("ns",), ("status.phase",)),
    ResourceType(
        "pods",
        "pod",
        "Pod",
        "",
        "v1",
        True,
        ("po",),
        (
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ),
    ),
    ResourceType("services", "service", "Service", "", "v1", True, ("svc",)),
    ResourceType(
        "events",
        "event",
        "Event",
        "",
        "v1",
        True,
        ("ev",),
        (
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ),
        status=False,
    ),
    ResourceType("configmaps", "configmap", "ConfigMap", "", "v1", True, ("cm",), status=False),
    ResourceType("secrets", "secret", "Secret", "", "v1", True, (), ("type",), status=False),
    ResourceType("endpoints", "endpoints", "Endpoints", "", "v1", True, ("ep",), status=False),
    ResourceType(
        "routes",
        "route",
        "Route",
        "route.openshift.io",
        "v1",
        True,
        (),
        ("spec.host", "spec.path", "spec.to.name"),
    ),
    ResourceType("leases", "lease", "Lease", "coordination.k8s.io", "v1", True, (), status=False),
)

GROUPS: tuple[tuple[str, str], ...] = (("route.openshift.io", "v1"), ("coordination.k8s.io", "v1"))


_BY_NAME = {name: r for r in RESOURCES for name in (r.plural, r.qualified)}


def find(name: str) -> Optional[ResourceType]:
    """A resource by plural (``routes``) or qualified name (``routes.route.openshift.io``)."""
    return _BY_NAME.get(name)


def lookup(group: str, version: str, plural: str) -> Optional[ResourceType]:
    for rtype in RESOURCES:
        if (rtype.group, rtype.version, rtype.plural) == (group, version, plural):
            return rtype
    return None


def _api_resource(rtype: ResourceType) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": rtype.plural,
        "singularName": rtype.singular,
        "namespaced": rtype.namespaced,
        "kind": rtype.kind,
        "verbs": list(
            ALL_VERBS if rtype.namespaced else tuple(v for v in ALL_VERBS if v != "deletecollection")
        ),
    }
    if rtype.short_names:
        entry["shortNames"] = list(rtype.short_names)
    return entry


def resource_list(group: str, version: str) -> Optional[dict[str, Any]]:
    """``/api/v1`` or ``/apis/{group}/{version}``; None when the group/version is not served."""
    members = [r for r in RESOURCES if (r.group, r.version) == (group, version)]
    if not members:
        return None
    resources: list[dict[str, Any]] = []
    for rtype in members:
        resources.append(_api_resource(rtype))
        if rtype.status:
            resources.append(
                {
                    "name": f"{rtype.plural}/status",
                    "singularName": "",
                    "namespaced": rtype.namespaced,
                    "kind": rtype.kind,
                    "verbs": list(STATUS_VERBS),
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group(name: str, version: str) -> dict[str, Any]:
    gv = {"groupVersion": f"{name}/{version}", "version": version}
    return {"name": name, "versions": [gv], "preferredVersion": gv}


def group_list() -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(n, v) for n, v in GROUPS]}


def group(name: str) -> Optional[dict[str, Any]]:
    for n, v in GROUPS:
        if n == name:
            return {"kind": "APIGroup", "apiVersion": "v1", **_group(n, v)}
    return None


VERSION: Mapping[str, str] = {
    "major": "1",
    "minor": "29",
    "gitVersion": "v1.29.0+localapi",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.21.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}
