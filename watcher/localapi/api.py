"""``LocalAPI``: start/stop the local API server, and drive it from Python (objects, tokens, faults).

The Python methods act on the same store the HTTP side serves, so a test creates a route with
``api.create(...)`` and the watcher under test sees it arrive as a watch event, with the same
resourceVersion semantics a real cluster has.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import shutil
import socket
import tempfile
import threading
from types import TracebackType
from typing import Any, Optional

from watcher import errors
from watcher.localapi import faults, managed, patch, resources, server, store, tls, watch
from watcher.localapi.resources import ResourceType

logger = logging.getLogger(__name__)

_MAX_RECORDS = 50_000
MANAGER = "localapi"  # the field manager of writes made through these methods, unless they name one


class LocalAPI:
    """A faithful local Kubernetes API server over HTTPS on 127.0.0.1.

    ``history_limit`` is how many changes are kept for watch resume and paginated lists; older
    resourceVersions answer 410. ``expired_as`` says how a WATCH from a too-old resourceVersion is
    answered: ``"event"`` (HTTP 200 and one in-stream ERROR Status 410, what the real server does) or
    ``"http"`` (HTTP 410).
    """

    def __init__(
        self,
        *,
        token: Optional[str] = None,
        port: int = 0,
        bookmark_interval: float = 60.0,
        history_limit: int = 100_000,
        expired_as: str = "event",
        user: Optional[str] = None,
    ) -> None:
        if expired_as not in ("event", "http"):
            raise ValueError(f"expired_as must be 'event' or 'http', not {expired_as!r}")
        self.token = token or secrets.token_urlsafe(32)
        self.bookmark_interval = bookmark_interval
        self.expired_as = expired_as
        self.user = user
        self.stale_lists_at: Optional[int] = None  # see serve_stale_lists
        self.stats = faults.Stats()
        self.url = ""
        self.host_port = ""
        self.ca_file = ""
        self.port = port
        self._store = store.Store(history_limit)
        self._faults = faults.FaultQueue()
        self._forbidden: set[tuple[str, str]] = set()
        self._records: list[faults.RequestRecord] = []
        self._records_lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: Optional[server.TLSServer] = None
        self._serving = threading.Lock()  # start, stop and refuse never overlap
        self._listening = False
        self._refusals = 0
        self._tmp: Optional[str] = None

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> LocalAPI:
        with self._serving:
            if self._server is not None:
                raise RuntimeError("the local API server is already started")
            self._tmp = tempfile.mkdtemp(prefix="localapi-")
            certs = tls.generate(self._tmp)
            self.ca_file = certs.ca_file
            self._server = server.TLSServer(self, self.port, tls.server_context(certs))
            self.port = self._server.server_port
            self.host_port = f"127.0.0.1:{self.port}"
            self.url = f"https://{self.host_port}"
            self._serve()
        logger.info("Local API: serving at %s", self.url)
        return self

    def _serve(self) -> None:
        assert self._server is not None
        self._listening = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="localapi", daemon=True
        ).start()

    def stop(self) -> None:
        with self._serving:
            if self._stopping.is_set():
                return
            self._stopping.set()
            if self._server is not None:
                if self._listening:
                    self._server.shutdown()
                self._server.server_close()
            self._drop_connections()
            with self._store.cond:
                self._store.cond.notify_all()
            if self._tmp:
                shutil.rmtree(self._tmp, ignore_errors=True)
        logger.info("Local API: stopped.")

    def __enter__(self) -> LocalAPI:
        return self.start() if self._server is None else self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    def _drop_connections(self) -> None:
        for conn in list(self._connections):
            watch.abort(conn)

    def _refuse(self, seconds: float) -> None:
        """Stop listening for ``seconds`` and drop every connection, as an API server restart does.

        The same port is bound again afterwards, so clients reconnect to the address they know.
        """
        with self._serving:
            if self._server is None or self._stopping.is_set():
                return
            if self._listening:
                self._server.shutdown()
                self._server.socket.close()
                self._listening = False
            self._drop_connections()
            self._refusals += 1
            generation = self._refusals
        logger.info("Local API: refusing connections on port %d for %.1f s.", self.port, seconds)
        threading.Thread(
            target=self._relisten, args=(seconds, generation), name="localapi-relisten", daemon=True
        ).start()

    def _relisten(self, seconds: float, generation: int) -> None:
        if self._stopping.wait(seconds):
            return
        with self._serving:
            if self._stopping.is_set() or generation != self._refusals or self._server is None:
                return
            srv = self._server
            srv.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            srv.server_bind()  # SO_REUSEADDR: the same port, despite connections in TIME_WAIT
            srv.server_activate()
            self._serve()
        logger.info("Local API: listening again on port %d.", self.port)

    # --- auth, RBAC, records -------------------------------------------------------------------------

    def rotate_token(self, new: Optional[str] = None) -> str:
        """From now on only ``new`` (generated when None) is accepted; returns it."""
        self.token = new or secrets.token_urlsafe(32)
        return self.token

    def _authorized(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode())

    def forbid(self, verb: str, resource: str) -> None:
        """Deny ``verb`` (``list``, ``watch``, ``get``, ``patch``, ... or ``*``) on ``resource``: 403."""
        self._forbidden.add((verb, self._rtype(resource).plural))

    def allow(self, verb: str, resource: str) -> None:
        self._forbidden.discard((verb, self._rtype(resource).plural))

    def _is_forbidden(self, verb: str, rtype: ResourceType) -> bool:
        return (verb, rtype.plural) in self._forbidden or ("*", rtype.plural) in self._forbidden

    def _user(self, namespace: Optional[str]) -> str:
        return self.user or f"system:serviceaccount:{namespace or 'default'}:event-watcher"

    def requests_seen(self) -> list[faults.RequestRecord]:
        with self._records_lock:
            return list(self._records)

    def clear_requests(self) -> None:
        with self._records_lock:
            self._records.clear()

    def _record(self, record: faults.RequestRecord) -> None:
        with self._records_lock:
            self._records.append(record)
            if len(self._records) > _MAX_RECORDS:
                del self._records[: _MAX_RECORDS // 2]

    def _count_sent(self, events: int, bookmarks: int) -> None:
        if events:
            self.stats.add("events_sent", events)
        if bookmarks:
            self.stats.add("bookmarks_sent", bookmarks)

    # --- faults --------------------------------------------------------------------------------------

    def inject(self, fault: faults.Fault) -> None:
        """Queue ``fault`` for the next matching request(s)."""
        self._faults.put(fault)

    def refuse(self, seconds: float) -> None:
        """Refuse connections for ``seconds`` from now on, dropping open ones (what a ``refuse`` fault
        does when it fires, without waiting for a request)."""
        self.stats.add("faults_fired")
        self._refuse(seconds)

    def serve_stale_lists(self, rv: Optional[int]) -> None:
        """From now on a LIST asking for the latest state is answered as of revision ``rv`` (None: the
        latest again), as a watch cache lagging behind etcd answers after an API server restart.

        The informer then watches from ``rv`` and receives every retained change after it: the
        benchmarks use this to replay one pre-created, pre-rendered history to every client they run.
        """
        self.stale_lists_at = rv

    def clear_faults(self) -> None:
        self._faults.clear()

    def pending_faults(self) -> list[faults.Fault]:
        return self._faults.pending()

    # --- objects -------------------------------------------------------------------------------------

    @staticmethod
    def _rtype(resource: str) -> ResourceType:
        rtype = resources.find(resource)
        if rtype is None:
            raise ValueError(f"the local API does not serve resource {resource!r}")
        return rtype

    @staticmethod
    def _namespace(rtype: ResourceType, namespace: Optional[str]) -> str:
        return (namespace or "default") if rtype.namespaced else ""

    @property
    def resource_version(self) -> int:
        return self._store.rv

    def create(self, resource: str, obj: dict[str, Any], *, manager: str = MANAGER) -> dict[str, Any]:
        """Store a new object (namespace from its metadata, default ``default``); 409 AlreadyExists as
        ``errors.Conflict`` on a duplicate."""
        rtype, new = self._rtype(resource), store.clone_object(obj)
        with self._store.cond:
            stored = self._store.create(rtype, new, manager)
        return store.clone_object(stored)

    def apply(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """What ``kubectl apply`` (client side) does with a manifest: the manifest goes into the
        last-applied annotation, and the object is created, or merge-patched to the manifest, as
        manager ``kubectl-client-side-apply``. (kubectl's three-way patch also removes what an older
        manifest had and this one lacks; a merge patch keeps it.)"""
        applied = store.clone_object(obj)
        meta = store.metadata(applied)
        annotations = meta["annotations"] = dict(meta.get("annotations") or {})
        annotations[managed.LAST_APPLIED] = managed.last_applied(applied)
        rtype = self._rtype(resource)
        with self._store.cond:
            namespace, name = self._namespace(rtype, meta.get("namespace")), str(meta.get("name", ""))
            try:
                self._store.get(rtype, namespace, name)
            except errors.NotFound:
                stored = self._store.create(rtype, applied, managed.CLIENT_SIDE_APPLY)
            else:
                stored = self._store.modify(
                    rtype,
                    namespace,
                    name,
                    lambda current: patch.merge(current, applied),
                    manager=managed.CLIENT_SIDE_APPLY,
                )
        return store.clone_object(stored)

    def update(self, resource: str, obj: dict[str, Any], *, manager: str = MANAGER) -> dict[str, Any]:
        """Full replace; a stale ``metadata.resourceVersion`` raises ``errors.Conflict``."""
        rtype, new = self._rtype(resource), store.clone_object(obj)
        meta = new.get("metadata") or {}
        with self._store.cond:
            stored = self._store.replace(
                rtype,
                self._namespace(rtype, meta.get("namespace")),
                str(meta.get("name", "")),
                new,
                manager=manager,
            )
        return store.clone_object(stored)

    def patch(
        self,
        resource: str,
        namespace: Optional[str],
        name: str,
        merge_patch: dict[str, Any],
        *,
        manager: str = MANAGER,
        subresource: str = "",
    ) -> dict[str, Any]:
        """RFC 7386 JSON merge patch; ``subresource="status"`` patches only the status, as a
        controller does (the OpenShift router writes a Route's ``status.ingress`` so)."""
        if subresource not in ("", "status"):
            raise ValueError(f"the local API has no subresource {subresource!r}")
        rtype, document = self._rtype(resource), store.clone(merge_patch)
        with self._store.cond:
            stored = self._store.modify(
                rtype,
                self._namespace(rtype, namespace),
                name,
                lambda obj: patch.merge(obj, document),
                subresource == "status",
                manager,
            )
        return store.clone_object(stored)

    def delete(self, resource: str, namespace: Optional[str], name: str) -> dict[str, Any]:
        """Remove the object; returns it as the DELETED event carries it (with the new resourceVersion)."""
        rtype = self._rtype(resource)
        with self._store.cond:
            gone = self._store.delete(rtype, self._namespace(rtype, namespace), name)
        return store.clone_object(gone)

    def get(self, resource: str, namespace: Optional[str], name: str) -> dict[str, Any]:
        rtype = self._rtype(resource)
        with self._store.cond:
            obj = self._store.get(rtype, self._namespace(rtype, namespace), name)
        return store.clone_object(obj)

    def list(self, resource: str, namespace: Optional[str] = None) -> list[dict[str, Any]]:
        """Current objects in key order, across all namespaces when ``namespace`` is None."""
        rtype = self._rtype(resource)
        with self._store.cond:
            items = self._store.items(rtype)
        prefix = f"{namespace}/" if namespace and rtype.namespaced else ""
        return [store.clone_object(obj) for key, obj in items if key.startswith(prefix)]

    def compact(self) -> None:
        """Forget all history up to now: a WATCH or a continue token from any older version gets 410."""
        with self._store.cond:
            self._store.compact()
