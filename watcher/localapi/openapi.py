"""Just enough of ``/openapi/v3`` for ``kubectl apply`` and ``kubectl create`` to work without
``--validate=false``.

kubectl validates by default (``--validate=strict``). Before it validates on the client it asks the
server's OpenAPI v3 document of the object's group/version whether the PATCH operation for that kind
takes the ``fieldValidation`` query parameter; when it does, kubectl leaves validation to the server
and sends ``fieldValidation=Strict`` along. So each group/version document lists, per resource, the
object paths with a PATCH operation tagged with its group/version/kind and carrying that parameter.
The local API accepts every field (it does not check objects against schemas), and the documents
carry no schemas: kubectl's ``apply`` then computes a JSON merge patch, which the local API applies.
"""

from __future__ import annotations

import hashlib
from typing import Any, Optional

import orjson

from watcher.localapi import resources
from watcher.localapi.resources import ResourceType

ROOT = "/openapi/v3"

_QUERY_PARAMETERS = (
    ("dryRun", "When present, indicates that modifications should not be persisted."),
    (
        "fieldManager",
        "fieldManager is a name associated with the actor or entity that is making these changes.",
    ),
    (
        "fieldValidation",
        "fieldValidation instructs the server on how to handle objects in the request "
        "containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict.",
    ),
    ("force", 'Force is going to "force" Apply requests.'),
)


def _group_versions() -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    for rtype in resources.RESOURCES:
        if (rtype.group, rtype.version) not in seen:
            seen.append((rtype.group, rtype.version))
    return seen


def _key(group: str, version: str) -> str:
    """The discovery key kube-apiserver uses: ``api/v1``, ``apis/route.openshift.io/v1``."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _object_path(rtype: ResourceType) -> str:
    namespace = "/namespaces/{namespace}" if rtype.namespaced else ""
    return f"{rtype.prefix}{namespace}/{rtype.plural}/{{name}}"


def _operation(rtype: ResourceType, action: str) -> dict[str, Any]:
    parameters = [
        {
            "name": name,
            "in": "query",
            "description": description,
            "schema": {"type": "string", "uniqueItems": True},
        }
        for name, description in _QUERY_PARAMETERS
    ]
    return {
        "description": f"{action} the specified {rtype.kind}",
        "operationId": f"{action}{rtype.kind}",
        "parameters": parameters if action == "patch" else [],
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {
            "group": rtype.group,
            "version": rtype.version,
            "kind": rtype.kind,
        },
    }


def document(group: str, version: str) -> Optional[dict[str, Any]]:
    """The OpenAPI v3 document of one group/version, or None when it is not served."""
    members = [r for r in resources.RESOURCES if (r.group, r.version) == (group, version)]
    if not members:
        return None
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": resources.VERSION["gitVersion"]},
        "paths": {
            _object_path(rtype): {"get": _operation(rtype, "get"), "patch": _operation(rtype, "patch")}
            for rtype in members
        },
        "components": {"schemas": {}},
    }


def _hash(group: str, version: str) -> str:
    return hashlib.sha512(orjson.dumps(document(group, version))).hexdigest()[:128].upper()


def root() -> dict[str, Any]:
    """``/openapi/v3``: where each group/version's document is, with the hash clients cache it by."""
    return {
        "paths": {
            _key(g, v): {"serverRelativeURL": f"{ROOT}/{_key(g, v)}?hash={_hash(g, v)}"}
            for g, v in _group_versions()
        }
    }


def lookup(parts: list[str]) -> Optional[dict[str, Any]]:
    """The document for a path under ``/openapi/v3`` split into its parts, or None (404)."""
    if parts == ["openapi", "v3"]:
        return root()
    rest = parts[2:] if parts[:2] == ["openapi", "v3"] else []
    if rest[:1] == ["api"] and len(rest) == 2:
        return document("", rest[1])
    if rest[:1] == ["apis"] and len(rest) == 3:
        return document(rest[1], rest[2])
    return None
