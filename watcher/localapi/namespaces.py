"""Namespaces that exist because objects live in them, as they would on a real cluster.

A real API server refuses to store an object in a namespace that does not exist, so every namespace
holding objects has a Namespace object. The local API lets a test create ``demo/app1`` without first
creating ``demo``; these functions make GET and LIST of namespaces answer as if it had been created:
kubectl reads ``/api/v1/namespaces/<ns>`` after a 404 to tell "no such object" from "no such namespace",
and ``kubectl get ns`` should list them. A WATCH on namespaces sees only the stored ones.
"""

from __future__ import annotations

import uuid
from typing import Any, Optional

from watcher import errors
from watcher.localapi import resources, selectors, status, store

NAMESPACES = resources.find("namespaces")
_UID_SPACE = uuid.UUID("6f1d9c52-2b1a-4d7e-9a35-0c2f8e7b4a10")  # stable uids across calls


def implied(data: store.Store) -> dict[str, store.Obj]:
    """Namespace objects for the namespaces that hold objects but have none stored (caller holds cond)."""
    assert NAMESPACES is not None
    stored = {key for key, _ in data.items(NAMESPACES)}
    found: dict[str, str] = {}  # namespace -> the earliest creationTimestamp in it
    for rtype in resources.RESOURCES:
        if not rtype.namespaced:
            continue
        for _, obj in data.items(rtype):
            meta = obj.get("metadata") or {}
            namespace, created = meta.get("namespace"), str(meta.get("creationTimestamp") or "")
            if namespace and namespace not in stored:
                found[namespace] = min(found.get(namespace, created), created)
    return {name: _namespace(name, created) for name, created in sorted(found.items())}


def _namespace(name: str, created: str) -> store.Obj:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "uid": str(uuid.uuid5(_UID_SPACE, name)),
            "resourceVersion": "1",
            "creationTimestamp": created,
            "labels": {"kubernetes.io/metadata.name": name},
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def get(data: store.Store, name: str) -> store.Obj:
    """The stored Namespace, else the implied one, else 404 as the real server words it."""
    assert NAMESPACES is not None
    with data.cond:
        try:
            return data.get(NAMESPACES, "", name)
        except errors.NotFound:
            found = implied(data).get(name)
    if found is None:
        raise status.not_found(NAMESPACES, name)
    return found


def add_implied(data: store.Store, payload: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
    """A first page of namespaces with the implied ones merged in, in name order (later pages, cut by
    a continue token, hold stored namespaces only)."""
    assert NAMESPACES is not None
    if query.get("continue"):
        return payload
    predicate: Optional[selectors.Predicate] = selectors.combined(
        query.get("labelSelector", ""), query.get("fieldSelector", ""), NAMESPACES
    )
    with data.cond:
        extra = [obj for obj in implied(data).values() if predicate is None or predicate(obj)]
    items = payload["items"] + [
        {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")} for obj in extra
    ]
    payload["items"] = sorted(items, key=lambda obj: obj["metadata"]["name"])
    return payload
