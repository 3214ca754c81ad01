"""Server-side printing: the ``meta.k8s.io`` Table kubectl asks for, with the columns ``oc`` shows.

``kubectl get`` sends ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io, ...`` and prints the
columns the server chooses; without a Table it falls back to NAME and AGE. Routes get the columns
OpenShift's API server prints (NAME, HOST/PORT, PATH, SERVICES, PORT, TERMINATION, WILDCARD),
namespaces NAME, STATUS, AGE, everything else NAME and AGE (what a CustomResourceDefinition without
printer columns gets). A WATCH asked for as a Table carries a one-row Table in each event.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any, Optional

import orjson

from watcher.localapi import status, store
from watcher.localapi.resources import ResourceType

Obj = dict[str, Any]
Cells = Callable[[Obj], list[Any]]

INCLUDE_OBJECT = ("None", "Metadata", "Object")  # ?includeObject=, Metadata by default


def wanted(accept: str) -> Optional[str]:
    """The Table version the Accept header asks for first (``v1`` or ``v1beta1``), else None."""
    for offer in accept.split(","):
        params = dict(part.strip().split("=", 1) for part in offer.split(";")[1:] if "=" in part)
        if (
            params.get("as") == "Table"
            and params.get("g") == "meta.k8s.io"
            and params.get("v") in ("v1", "v1beta1")
        ):
            return params["v"]
    return None


def include_object(query: dict[str, str]) -> str:
    value = query.get("includeObject") or "Metadata"
    if value not in INCLUDE_OBJECT:
        raise status.bad_request(
            f'includeObject: Unsupported value: "{value}": supported values: "Metadata", "None", "Object"'
        )
    return value


# --- cells -----------------------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """apimachinery's ``duration.HumanDuration``: how kubectl's AGE column reads."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def age(obj: Obj) -> str:
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return "<unknown>"
    try:
        then = datetime.datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    return human_duration((datetime.datetime.now(datetime.timezone.utc) - then).total_seconds())


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _route_host(route: Obj) -> str:
    """The host, or why no router admitted it, as ``oc get routes`` shows it."""
    host = str((route.get("spec") or {}).get("host", ""))
    ingresses = (route.get("status") or {}).get("ingress")
    if not ingresses:
        return host
    admitted, rejected, reason = 0, 0, ""
    for ingress in ingresses:
        for condition in ingress.get("conditions") or []:
            if condition.get("type") != "Admitted":
                continue
            if condition.get("status") == "True":
                admitted += 1
            elif condition.get("status") == "False":
                rejected += 1
                reason = str(condition.get("reason") or "")
    if admitted == 0 and rejected:
        return reason
    if rejected:
        return f"{host} ... {rejected} rejected"
    return host


def _route_services(route: Obj) -> str:
    spec = route.get("spec") or {}
    backends = [spec.get("to") or {}, *(spec.get("alternateBackends") or [])]
    backends = [b for b in backends if b.get("name")]
    if len(backends) <= 1:
        return ",".join(str(b["name"]) for b in backends)
    total = sum(int(b.get("weight", 100) or 0) for b in backends) or 1
    return ",".join(f"{b['name']}({round(100 * int(b.get('weight', 100) or 0) / total)}%)" for b in backends)


def _route_cells(route: Obj) -> list[Any]:
    spec = route.get("spec") or {}
    tls = spec.get("tls") or {}
    termination = str(tls.get("termination", ""))
    if termination and tls.get("insecureEdgeTerminationPolicy"):
        termination += f"/{tls['insecureEdgeTerminationPolicy']}"
    port = (spec.get("port") or {}).get("targetPort")
    return [
        _name(route),
        _route_host(route),
        str(spec.get("path", "")),
        _route_services(route),
        "<all>" if port in (None, "") else str(port),
        termination,
        str(spec.get("wildcardPolicy") or "None"),
    ]


def _column(name: str, description: str, type_: str = "string", fmt: str = "") -> Obj:
    return {"name": name, "type": type_, "format": fmt, "description": description, "priority": 0}


_NAME = _column("Name", "Name must be unique within a namespace.", fmt="name")
_AGE = _column("Age", "CreationTimestamp is the time the object was created.", type_="date")

_PRINTERS: dict[str, tuple[list[Obj], Cells]] = {
    "routes": (
        [
            _NAME,
            _column("Host/Port", "Host is an alias/DNS that points to the service."),
            _column("Path", "Path that the router watches to route traffic to the service."),
            _column("Services", "The services the route points at, with their weights."),
            _column("Port", "The target port on pods selected by the service."),
            _column("Termination", "Indicates termination type."),
            _column("Wildcard", "Wildcard policy for the route."),
        ],
        _route_cells,
    ),
    "namespaces": (
        [_NAME, _column("Status", "The status of the namespace."), _AGE],
        lambda ns: [_name(ns), str((ns.get("status") or {}).get("phase", "")), age(ns)],
    ),
}
_DEFAULT: tuple[list[Obj], Cells] = ([_NAME, _AGE], lambda obj: [_name(obj), age(obj)])


# --- tables ----------------------------------------------------------------------------------------


def _row(rtype: ResourceType, obj: Obj, include: str, version: str) -> Obj:
    _, cells = _PRINTERS.get(rtype.plural, _DEFAULT)
    row: Obj = {"cells": cells(obj)}
    if include == "Object":
        row["object"] = {"apiVersion": rtype.api_version, "kind": rtype.kind, **obj}
    elif include == "Metadata":
        row["object"] = {
            "kind": "PartialObjectMetadata",
            "apiVersion": f"meta.k8s.io/{version}",
            "metadata": obj.get("metadata") or {},
        }
    return row


def table(rtype: ResourceType, objects: list[Obj], metadata: Obj, include: str, version: str = "v1") -> Obj:
    columns, _ = _PRINTERS.get(rtype.plural, _DEFAULT)
    return {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": [_row(rtype, obj, include, version) for obj in objects],
    }


def from_payload(rtype: ResourceType, payload: Obj, include: str, version: str) -> Obj:
    """A LIST answer (``items``) or a single object as the Table kubectl asked for."""
    if "items" in payload and payload.get("kind") == rtype.list_kind:
        return table(rtype, payload["items"], payload.get("metadata") or {}, include, version)
    meta = payload.get("metadata") or {}
    return table(rtype, [payload], {"resourceVersion": meta.get("resourceVersion", "")}, include, version)


class TableWatchWriter:
    """Wraps a watch's ``ChunkWriter``: each event line leaves with its object turned into a one-row
    Table (kubectl's ``get -w``); ERROR and BOOKMARK events pass as they are, as on the real server."""

    def __init__(self, writer: Any, rtype: ResourceType, include: str, version: str) -> None:
        self._writer = writer
        self._rtype = rtype
        self._include = include
        self._version = version

    def write(self, data: bytes) -> None:
        """One event line per call, as ``WatchStream`` writes them; anything else (a fault's half
        line or garbage) goes out untouched."""
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._writer.write(data)
            return
        if isinstance(event, dict) and event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
            event["object"] = from_payload(self._rtype, event["object"], self._include, self._version)
            data = store.event_line(event["type"], event["object"])
        self._writer.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)
