"""The object store: one global resourceVersion counter, current objects, and the change history.

It behaves like etcd behind the watch cache: every write gets the next revision (shared by all
resources), the history of changes is kept up to ``history_limit`` entries (older revisions are
"compacted" and answer 410), and a list can be served as of any retained revision, which is how
paginated lists stay consistent while objects change between pages.

Stored objects are never mutated after they are stored: readers may hold them without copying, and the
rendered watch line of each change is computed once and shared by every watcher.
"""

from __future__ import annotations

import bisect
import datetime
import threading
import uuid
from collections.abc import Callable
from typing import Any, Optional

import orjson

from watcher.localapi import managed, status
from watcher.localapi.resources import RESOURCES, ResourceType

Obj = dict[str, Any]

# Physically drop forgotten history only in large steps, so trimming stays O(1) amortised per write.
_TRIM_STEP = 4096


class Change:
    """One write: the revision it got, the object after (for DELETED: the last state with the new
    revision) and before, and its watch line rendered once."""

    __slots__ = ("key", "line", "namespace", "obj", "prev", "rtype", "rv", "type")

    def __init__(
        self,
        rv: int,
        rtype: ResourceType,
        key: str,
        namespace: str,
        type_: str,
        obj: Obj,
        prev: Optional[Obj],
    ) -> None:
        self.rv = rv
        self.rtype = rtype
        self.key = key
        self.namespace = namespace
        self.type = type_
        self.obj = obj
        self.prev = prev
        self.line = event_line(type_, obj)


def event_line(type_: str, obj: Obj) -> bytes:
    return orjson.dumps({"type": type_, "object": obj}, option=orjson.OPT_APPEND_NEWLINE)


def clone(obj: Any) -> Any:
    """A deep copy through JSON: faster than copy.deepcopy and rejects what JSON cannot carry."""
    try:
        return orjson.loads(orjson.dumps(obj))
    except TypeError as exc:
        raise status.bad_request(f"the object is not valid JSON: {exc}") from None


def clone_object(obj: Any) -> Obj:
    copied = clone(obj)
    if not isinstance(copied, dict):
        raise status.bad_request("the body of the request must be a JSON object")
    return copied


def metadata(obj: Obj) -> Obj:
    """``obj["metadata"]``, made a dict when it is missing or not one."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = obj["metadata"] = {}
    return meta


def object_key(rtype: ResourceType, namespace: str, name: str) -> str:
    """The etcd-like key; lists are ordered by it, as the real server orders them."""
    return f"{namespace}/{name}" if rtype.namespaced else name


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _body(obj: Obj) -> Obj:
    """What ``metadata.generation`` tracks: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


class Store:
    def __init__(self, history_limit: int) -> None:
        if history_limit < 1:
            raise ValueError("history_limit must be at least 1")
        self.cond = threading.Condition(threading.Lock())
        self.history_limit = history_limit
        self.rv = 1
        # A watch or a consistent read from revision N works while N >= floor: history holds every
        # change after floor.
        self.floor = 1
        self._objects: dict[ResourceType, dict[str, Obj]] = {r: {} for r in RESOURCES}
        self._history: list[Change] = []
        self._sorted: dict[ResourceType, list[str]] = {}  # keys in order, kept up to date once built
        self._start = 0  # index of the first retained change (the one with revision floor + 1)

    # --- reads (callers hold self.cond) --------------------------------------------------------------

    def get(self, rtype: ResourceType, namespace: str, name: str) -> Obj:
        obj = self._objects[rtype].get(object_key(rtype, namespace, name))
        if obj is None:
            raise status.not_found(rtype, name)
        return obj

    def items(self, rtype: ResourceType, at_rv: Optional[int] = None) -> list[tuple[str, Obj]]:
        """All objects of ``rtype`` in key order, now or as of revision ``at_rv``.

        Raises 410 when ``at_rv`` has been compacted away.
        """
        objects, keys = self._as_of(rtype, at_rv)
        return [(key, objects[key]) for key in keys]

    def page(
        self,
        rtype: ResourceType,
        at_rv: Optional[int],
        prefix: str,
        start: str,
        limit: int,
        predicate: Optional[Callable[[Obj], bool]],
    ) -> tuple[list[Obj], bool, Optional[int]]:
        """One page of a list: the matching objects with keys under ``prefix`` from ``start`` on, whether
        more follow, and how many more (only known without a predicate, as on the real server)."""
        objects, keys = self._as_of(rtype, at_rv)
        i = bisect.bisect_left(keys, max(prefix, start))
        # Keys under "ns/" are contiguous; "ns0" is the first key past them ("0" follows "/").
        end = bisect.bisect_left(keys, prefix[:-1] + "0") if prefix else len(keys)
        out: list[Obj] = []
        while i < end and not (limit and len(out) >= limit):
            obj = objects[keys[i]]
            i += 1
            if predicate is None or predicate(obj):
                out.append(obj)
        if predicate is None:
            return out, i < end, end - i
        return out, any(predicate(objects[keys[j]]) for j in range(i, end)), None

    def _as_of(self, rtype: ResourceType, at_rv: Optional[int]) -> tuple[dict[str, Obj], list[str]]:
        objects = self._objects[rtype]
        if at_rv is None or at_rv >= self.rv:
            keys = self._sorted.get(rtype)
            if keys is None:
                keys = self._sorted[rtype] = sorted(objects)
            return objects, keys
        if at_rv < self.floor:
            raise status.too_old(at_rv, self.floor + 1)
        objects = dict(objects)
        for change in reversed(self._history[self._index(at_rv + 1) :]):
            if change.rtype is rtype:
                if change.prev is None:
                    objects.pop(change.key, None)
                else:
                    objects[change.key] = change.prev
        return objects, sorted(objects)

    def changes_after(self, rv: int, limit: int) -> Optional[list[Change]]:
        """Up to ``limit`` changes with a revision above ``rv``; None when some were compacted away."""
        if rv < self.floor:
            return None
        start = self._index(rv + 1)
        return self._history[start : start + limit]

    def _index(self, rv: int) -> int:
        return self._start + (rv - self.floor - 1)

    # --- writes (callers hold self.cond; they notify) -------------------------------------------------

    def _commit(
        self, rtype: ResourceType, key: str, namespace: str, type_: str, obj: Obj, prev: Optional[Obj]
    ) -> None:
        try:
            change = Change(self.rv, rtype, key, namespace, type_, obj, prev)
        except TypeError as exc:
            self.rv -= 1  # nothing was stored: the revision is not used up
            raise status.bad_request(f"the object is not valid JSON: {exc}") from None
        keys = self._sorted.get(rtype)
        if type_ == "DELETED":
            del self._objects[rtype][key]
            if keys is not None:
                del keys[bisect.bisect_left(keys, key)]
        else:
            self._objects[rtype][key] = obj
            if keys is not None and type_ == "ADDED":
                bisect.insort(keys, key)
        self._history.append(change)
        if len(self._history) - self._start > self.history_limit:
            self._start += 1
            self.floor += 1
        if self._start >= _TRIM_STEP and self._start * 2 >= len(self._history):
            del self._history[: self._start]
            self._start = 0
        self.cond.notify_all()

    def _namespace_of(self, rtype: ResourceType, meta: Obj) -> str:
        if not rtype.namespaced:
            meta.pop("namespace", None)
            return ""
        namespace = meta.get("namespace") or "default"
        meta["namespace"] = namespace
        return str(namespace)

    def create(self, rtype: ResourceType, obj: Obj, manager: str = managed.UNKNOWN) -> Obj:
        """``obj`` must be a private copy; it becomes the stored object. ``manager`` is who writes it
        (``managed.manager_for``), recorded in its managedFields."""
        meta = metadata(obj)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        name = meta.get("name")
        if not name or not isinstance(name, str):
            raise status.invalid(rtype, "", "metadata.name: Required value: name or generateName is required")
        namespace = self._namespace_of(rtype, meta)
        key = object_key(rtype, namespace, name)
        if key in self._objects[rtype]:
            raise status.already_exists(rtype, name)
        self.rv += 1
        obj["kind"], obj["apiVersion"] = rtype.kind, rtype.api_version
        for field in ("resourceVersion", "deletionTimestamp", "selfLink"):
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = str(self.rv)
        meta["creationTimestamp"] = now()
        meta["generation"] = 1
        managed.record(obj, None, manager, "", meta["creationTimestamp"])
        self._commit(rtype, key, namespace, "ADDED", obj, None)
        return obj

    def replace(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        new: Obj,
        only_status: bool = False,
        manager: str = managed.UNKNOWN,
    ) -> Obj:
        """Full update with optimistic concurrency when ``new`` carries a resourceVersion.

        A write that changes nothing gets no new revision and no event, as on the real server: plugins
        that patch idempotently must not cause an endless MODIFIED loop. A body without managedFields
        keeps the object's (a client that sends none has not asked to reset them).
        """
        old = self.get(rtype, namespace, name)
        meta = new["metadata"] = dict(metadata(new))  # ``new`` may share untouched parts with ``old``
        if meta.get("name", name) != name:
            raise status.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        if rtype.namespaced and meta.get("namespace", namespace) != namespace:
            raise status.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        wanted = meta.get("resourceVersion")
        if wanted not in (None, "") and str(wanted) != old["metadata"]["resourceVersion"]:
            raise status.conflict(rtype, name)
        if only_status:
            new = (
                {**old, "status": new["status"]}
                if "status" in new
                else {k: v for k, v in old.items() if k != "status"}
            )
            meta = dict(old["metadata"])
            new["metadata"] = meta
        old_meta = old["metadata"]
        for field in ("name", "uid", "creationTimestamp", "generation", "resourceVersion"):
            meta[field] = old_meta[field]
        if rtype.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        new["kind"], new["apiVersion"] = rtype.kind, rtype.api_version
        if meta.get("managedFields") is None and "managedFields" in old_meta:
            meta["managedFields"] = old_meta["managedFields"]
        if new == old:
            return old
        if _body(new) != _body(old):
            meta["generation"] = int(old_meta.get("generation") or 1) + 1
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        managed.record(new, old, manager, "status" if only_status else "", now())
        self._commit(rtype, object_key(rtype, namespace, name), namespace, "MODIFIED", new, old)
        return new

    def modify(
        self,
        rtype: ResourceType,
        namespace: str,
        name: str,
        mutate: Callable[[Obj], Obj],
        only_status: bool = False,
        manager: str = managed.UNKNOWN,
    ) -> Obj:
        """Apply a patch function to the current object; a resourceVersion the patch sets is a
        precondition, as with the real server. ``mutate`` must return a new top-level dict and must not
        change ``old`` in place (merge patch rebuilds only the paths it touches)."""
        old = self.get(rtype, namespace, name)
        new = mutate(old)
        if not isinstance(new, dict):
            raise status.bad_request("the patched object is not a JSON object")
        return self.replace(rtype, namespace, name, new, only_status, manager)

    def delete(
        self, rtype: ResourceType, namespace: str, name: str, preconditions: Optional[Obj] = None
    ) -> Obj:
        old = self.get(rtype, namespace, name)
        preconditions = preconditions or {}
        if preconditions.get("uid") and preconditions["uid"] != old["metadata"]["uid"]:
            raise status.error(
                409,
                f"Precondition failed: UID in precondition: {preconditions['uid']}, UID in "
                f"object meta: {old['metadata']['uid']}",
                "Conflict",
            )
        wanted = preconditions.get("resourceVersion")
        if wanted and str(wanted) != old["metadata"]["resourceVersion"]:
            raise status.error(
                409,
                f"Precondition failed: ResourceVersion in precondition: {wanted}, "
                f"ResourceVersion in object meta: {old['metadata']['resourceVersion']}",
                "Conflict",
            )
        self.rv += 1
        gone = {**old, "metadata": {**old["metadata"], "resourceVersion": str(self.rv)}}
        self._commit(rtype, object_key(rtype, namespace, name), namespace, "DELETED", gone, old)
        return gone

    def compact(self) -> None:
        """Forget all history: every older revision now answers 410, as after an etcd compaction."""
        self.floor = self.rv
        self._start = len(self._history)
        del self._history[: self._start]
        self._start = 0
        self.cond.notify_all()
