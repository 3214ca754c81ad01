"""LIST: pages over a consistent snapshot, continue tokens, and the resourceVersion a list is served at.

A first page is served at the newest revision (or the exact one asked for); its continue token carries
that revision and the last key, so the following pages are cut from the same snapshot even while objects
change, until the revision is compacted away (then 410, with the real server's message).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Optional

import orjson

from watcher.localapi import selectors, status, store
from watcher.localapi.resources import ResourceType


def encode_continue(rv: int, last_key: str) -> str:
    """The real server's format: base64url of {"v","rv","start"}, start being the next key to read."""
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": last_key + "\x00"})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_continue(token: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
        if data.get("v") != "meta.k8s.io/v1":
            raise ValueError("unsupported version")
        return int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise status.bad_request(f"continue key is not valid: {exc}") from None


def list_payload(
    data: store.Store, rtype: ResourceType, namespace: Optional[str], query: dict[str, str]
) -> dict[str, Any]:
    predicate = selectors.combined(query.get("labelSelector", ""), query.get("fieldSelector", ""), rtype)
    try:
        limit = max(0, int(query.get("limit") or 0))
    except ValueError:
        raise status.bad_request(f"invalid limit: {query.get('limit')!r}") from None
    token = query.get("continue", "")
    prefix = f"{namespace}/" if namespace else ""
    start = ""
    with data.cond:
        if token:
            snapshot, start = decode_continue(token)
            if snapshot < data.floor:
                raise status.continue_expired()
        else:
            snapshot = _list_version(data, query)
        page, more, remaining = data.page(rtype, snapshot, prefix, start, limit, predicate)
    meta: dict[str, Any] = {"resourceVersion": str(snapshot)}
    if limit and more:
        last = page[-1]["metadata"]
        meta["continue"] = encode_continue(
            snapshot, store.object_key(rtype, last.get("namespace", ""), last["name"])
        )
        if remaining is not None:
            meta["remainingItemCount"] = remaining
    return {
        "kind": rtype.list_kind,
        "apiVersion": rtype.api_version,
        "metadata": meta,
        # Like the real server, list items carry no kind/apiVersion: clients take them from the list.
        "items": [{k: v for k, v in obj.items() if k not in ("kind", "apiVersion")} for obj in page],
    }


def _list_version(data: store.Store, query: dict[str, str]) -> int:
    """The revision a first page is served at: now, or exactly the one asked for (resourceVersionMatch)."""
    rv_param = query.get("resourceVersion", "")
    if rv_param in ("", "0"):
        return data.rv
    try:
        requested = int(rv_param)
    except ValueError:
        raise status.bad_request(f"invalid resource version: {rv_param!r}") from None
    if requested > data.rv:
        raise status.too_large(requested, data.rv)
    if query.get("resourceVersionMatch") != "Exact":
        return data.rv  # NotOlderThan (or unset): the newest is not older than anything
    if requested < data.floor:
        raise status.error(410, "The resourceVersion for the provided list is too old.", "Expired")
    return requested
