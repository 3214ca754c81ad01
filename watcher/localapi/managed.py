"""``metadata.managedFields`` as kube-apiserver's field manager records them on every write.

A real server adds to each object one entry per (manager, operation, subresource): who wrote which
fields, when, through which API version. Objects from a cluster therefore carry them, and an informer
that caches objects as they come pays for them (issue 20); the local API records them too, so the
tests, ``--demo`` and the benchmarks see objects of the size and shape a cluster sends.

What is kept from the real field manager (``k8s.io/apimachinery/pkg/util/managedfields``):

* the manager is the request's ``fieldManager``, else the User-Agent up to its first ``/`` (non-
  printable characters dropped, at most 128 characters), else ``unknown``;
* every write here is an ``Update`` (the local API takes no server-side apply); a write through the
  ``status`` subresource is its own entry with ``subresource: status``;
* the writer's entry owns what it added or changed; another manager's entry loses what this write
  changed or removed, and an entry left with nothing disappears; its ``time`` is the write's;
* ``apiVersion``, ``kind`` and the server-set metadata (name, namespace, uid, resourceVersion, ...)
  are never owned (the field manager's strip set);
* entries are sorted by operation, time, manager, API version and subresource.

``fieldsV1`` is encoded as structured-merge-diff serialises a field set: ``f:<name>`` for a field,
``k:<json>`` for an item of an associative list, ``.`` for a node that is itself in the set, ``{}``
for a leaf. Without the OpenAPI schema the list types are guessed: a list of objects that all have a
``name`` (or all a ``type``) is associative by that key, every other list is atomic (owned whole, as
a Route's ``status.ingress``), and every object below the top-level sections counts as a node of its
own (``.``), as maps such as labels and optional structs do on a real server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Optional

import orjson

from watcher import transform

Obj = dict[str, Any]
Path = tuple[str, ...]

UPDATE = "Update"
FIELDS_V1 = "FieldsV1"
UNKNOWN = "unknown"
MAX_MANAGER_LENGTH = 128  # validation.FieldManagerMaxLength
SELF = "."
LAST_APPLIED = transform.LAST_APPLIED
CLIENT_SIDE_APPLY = "kubectl-client-side-apply"  # the manager ``kubectl apply`` sends

# Never owned by anyone: set by the server, or the object's type (the field manager's strip set).
_STRIPPED_META = frozenset(
    (
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    )
)
_LIST_KEYS = ("name", "type")


def manager_for(field_manager: Optional[str], user_agent: Optional[str]) -> str:
    """The manager a request writes as: ``fieldManager``, else the User-Agent's product name."""
    if field_manager:
        return field_manager
    name, size = "", 0
    for char in (user_agent or "").split("/", 1)[0]:
        if not char.isprintable():  # as Go's unicode.IsPrint: of the spaces, only U+0020 is printable
            continue
        size += len(char.encode())
        if size > MAX_MANAGER_LENGTH:  # the limit is in bytes of UTF-8
            break
        name += char
    return name or UNKNOWN


def last_applied(obj: Obj) -> str:
    """The annotation ``kubectl apply`` writes: the applied object without the annotation itself,
    as Go's encoding/json renders a map (keys sorted, compact), with a trailing newline."""
    meta = obj.get("metadata") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED}
    applied_meta = {k: v for k, v in meta.items() if k != "annotations"}
    if annotations:
        applied_meta["annotations"] = annotations
    applied = {**obj, "metadata": applied_meta}
    return orjson.dumps(applied, option=orjson.OPT_SORT_KEYS).decode() + "\n"


# --- field sets: {path: value at it}; a path ends at a leaf, or in "." for a node of its own ---------


def _leaves(obj: Obj) -> dict[Path, Any]:
    """Every path a writer of ``obj`` could own, with the value there (to see what a write changed)."""
    out: dict[Path, Any] = {}
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if key == "metadata" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in _STRIPPED_META}
            if not value:
                continue
        _walk(value, (f"f:{key}",), out, top=True)
    return out


def _walk(value: Any, path: Path, out: dict[Path, Any], *, top: bool = False) -> None:
    if isinstance(value, dict) and value:
        if not top:
            out[(*path, SELF)] = None
        for key, child in value.items():
            _walk(child, (*path, f"f:{key}"), out)
        return
    if isinstance(value, list) and value:
        key = _list_key(value)
        if key is not None:
            for item in value:
                item_path = (*path, "k:" + orjson.dumps({key: item[key]}).decode())
                out[(*item_path, SELF)] = None
                for field, child in item.items():
                    _walk(child, (*item_path, f"f:{field}"), out)
            return
    out[path] = value  # a scalar, an empty object or list, or an atomic list: owned whole


def _list_key(items: list[Any]) -> Optional[str]:
    """The key a list of objects is associative by: one that every item has, unique among them."""
    for key in _LIST_KEYS:
        values = [item.get(key) if isinstance(item, dict) else None for item in items]
        if all(isinstance(v, (str, int)) for v in values) and len(set(values)) == len(values):
            return key
    return None


def _paths(tree: Any, prefix: Path = ()) -> Iterator[Path]:
    """The paths of a ``fieldsV1`` tree (the inverse of ``_tree``)."""
    if not isinstance(tree, dict) or not tree:
        if prefix:
            yield prefix
        return
    for key, child in tree.items():
        yield from _paths(child, (*prefix, key))


def _tree(paths: set[Path]) -> Obj:
    root: Obj = {}
    for path in paths:
        node = root
        for part in path:
            node = node.setdefault(part, {})
    return _sorted(root)


def _sorted(node: Obj) -> Obj:
    return {key: _sorted(node[key]) for key in sorted(node)}


# --- recording a write -------------------------------------------------------------------------------


def record(new: Obj, old: Optional[Obj], manager: str, subresource: str, when: str) -> None:
    """Set ``new``'s managedFields after a write by ``manager`` that turned ``old`` (None: a create)
    into ``new``. The entries ``new`` brings are kept when the client left them as they were (a GET,
    change, PUT) or left them out; entries a client sets to something else are taken as given, as
    the real server does."""
    meta = new["metadata"]
    before = old["metadata"].get("managedFields") if old is not None else None
    given = meta.get("managedFields")
    entries = [e for e in (before if given is None or given == before else given) or [] if _valid(e)]
    old_leaves = _leaves(old) if old is not None else {}
    new_leaves = _leaves(new)
    changed = {
        path for path, value in new_leaves.items() if path not in old_leaves or old_leaves[path] != value
    }
    removed = old_leaves.keys() - new_leaves.keys()
    identity = (manager, UPDATE, subresource)
    result: list[Obj] = []
    mine: set[Path] = set(changed)
    for entry in entries:
        paths = set(_paths(entry.get("fieldsV1"))) - removed
        if (entry.get("manager"), entry.get("operation"), entry.get("subresource", "")) == identity:
            mine |= paths
            continue
        kept = paths - changed
        if kept == paths:
            result.append(entry)
        elif kept:
            result.append({**entry, "fieldsV1": _tree(kept)})
    if mine:
        entry = {
            "manager": manager,
            "operation": UPDATE,
            "apiVersion": new.get("apiVersion", ""),
            "time": when,
            "fieldsType": FIELDS_V1,
            "fieldsV1": _tree(mine),
        }
        if subresource:
            entry["subresource"] = subresource
        result.append(entry)
    result.sort(key=_order)
    if result:
        meta["managedFields"] = result
    else:
        meta.pop("managedFields", None)


def _valid(entry: Any) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("manager"), str)


def _order(entry: Obj) -> tuple[str, str, str, str, str]:
    return (
        str(entry.get("operation", "")),
        str(entry.get("time", "")),
        str(entry.get("manager", "")),
        str(entry.get("apiVersion", "")),
        str(entry.get("subresource", "")),
    )
