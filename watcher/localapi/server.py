"""HTTP plumbing of the local API: TLS per connection, request routing, and the REST verbs.

``ThreadingHTTPServer`` with daemon threads; the TLS handshake runs in the connection's own thread (not
in the accept loop, which a slow client would otherwise stall). Every answer is written with a single
``sendall`` and carries Content-Length, so HTTP/1.1 keep-alive works as ``requests`` expects; watches
are chunked (see ``watch.py``).
"""

from __future__ import annotations

import contextlib
import email.utils
import http
import http.server
import logging
import random
import socketserver
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from watcher import errors
from watcher.localapi import (
    faults,
    listing,
    managed,
    namespaces,
    openapi,
    patch,
    resources,
    selectors,
    status,
    store,
    table,
    watch,
)
from watcher.localapi.resources import ResourceType

if TYPE_CHECKING:
    from watcher.localapi.api import LocalAPI

logger = logging.getLogger(__name__)

JSON = "application/json"
FUTURE_WAIT = 3.0  # seconds a WATCH waits for a resourceVersion not reached yet, as the watch cache does
IDLE_TIMEOUT = 120.0  # seconds a keep-alive connection may sit idle, like the real server's
MERGE_PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
JSON_PATCH_TYPE = "application/json-patch+json"


@dataclass(frozen=True)
class Target:
    """What a request addresses, as the real server's request-info resolver sees it."""

    verb: str  # discovery, list, watch, get, create, update, patch, delete, unknown
    rtype: Optional[ResourceType] = None
    namespace: Optional[str] = None  # None: all namespaces (or a cluster-scoped resource)
    name: str = ""
    subresource: str = ""
    document: Any = None
    error: Optional[errors.APIError] = None


_OBJECT_VERBS = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def resolve(method: str, path: str, query: dict[str, str]) -> Target:
    parts = [unquote(p) for p in path.split("/") if p]
    if method == "GET":
        document = _discovery(parts)
        if document is not None:
            return Target("discovery", document=document)
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return Target("unknown", error=status.generic(404))
    watching = truthy(query.get("watch"))
    if rest[:1] == ["watch"]:
        watching, rest = True, rest[1:]
    namespace: Optional[str] = None
    if (
        len(rest) >= 3
        and rest[0] == "namespaces"
        and not (group == "" and len(rest) == 3 and rest[2] in ("status", "finalize"))
    ):
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return Target("unknown", error=status.generic(404))
    rtype = resources.lookup(group, version, rest[0])
    if rtype is None or (namespace is not None and not rtype.namespaced):
        return Target("unknown", error=status.generic(404))
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if name and rtype.namespaced and namespace is None:
        return Target("unknown", error=status.generic(404))
    if subresource and (subresource != "status" or not rtype.status):
        return Target("unknown", error=status.generic(404))
    if not name:
        verb = {"GET": "watch" if watching else "list", "POST": "create"}.get(method, "unknown")
    elif method == "GET" and watching and not subresource:
        verb = "watch"
    else:
        verb = _OBJECT_VERBS.get(method, "unknown")
    error = (
        status.error(405, "the server does not allow this method on the requested resource")
        if verb == "unknown"
        else None
    )
    return Target(verb, rtype, namespace, name, subresource, error=error)


def truthy(value: Optional[str]) -> bool:
    """Go's strconv.ParseBool, which the real server uses for boolean query parameters."""
    return value in ("1", "t", "T", "true", "TRUE", "True")


def _discovery(parts: list[str]) -> Any:
    if parts == ["api"]:
        return "api"  # needs the server address; filled in by the handler
    if parts == ["api", "v1"]:
        return resources.resource_list("", "v1")
    if parts == ["apis"]:
        return resources.group_list()
    if len(parts) == 2 and parts[0] == "apis":
        return resources.group(parts[1])
    if len(parts) == 3 and parts[0] == "apis":
        return resources.resource_list(parts[1], parts[2])
    if parts == ["version"]:
        return dict(resources.VERSION)
    if parts in (["healthz"], ["readyz"], ["livez"]):
        return b"ok"
    if parts[:2] == ["openapi", "v3"]:
        return openapi.lookup(parts)
    if not parts:
        return {
            "paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v3", "/readyz", "/version"]
            + [f"/apis/{g}/{v}" for g, v in resources.GROUPS]
        }
    return None


# --- the server -----------------------------------------------------------------------------------------


class TLSServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, api: LocalAPI, port: int, context: ssl.SSLContext) -> None:
        self.api = api
        self.context = context
        super().__init__(("127.0.0.1", port), Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would call getfqdn(), a DNS lookup: slow and pointless on loopback.
        socketserver.TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = self.socket.getsockname()[1]

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            request.settimeout(10)
            conn = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            logger.debug("Local API: TLS handshake with %s failed: %s.", client_address, exc)
            request.close()
            return
        self.api._connections.add(conn)
        try:
            conn.settimeout(IDLE_TIMEOUT)
            Handler(conn, client_address, self)
        except OSError:
            pass
        finally:
            self.api._connections.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("Local API: a connection from %s ended with an error.", client_address, exc_info=True)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "local-kube-apiserver"
    sys_version = ""
    disable_nagle_algorithm = True
    server: TLSServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: requests are recorded and logged by ``_handle`` without headers."""

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    # --- one request ---------------------------------------------------------------------------------

    def _handle(self) -> None:
        api = self.server.api
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        body = self._read_body()
        auth_ok = api._authorized(self.headers.get("Authorization", ""))
        api.stats.add("requests")
        target = resolve(self.command, url.path, query)
        fault: Optional[faults.Fault] = None

        def record(code: int) -> None:
            headers = {
                k: ("<redacted>" if k.lower() == "authorization" else v) for k, v in self.headers.items()
            }
            api._record(
                faults.RequestRecord(
                    self.command,
                    url.path,
                    query,
                    headers,
                    auth_ok,
                    code,
                    target.verb,
                    fault.kind if fault else None,
                )
            )

        extra: list[tuple[str, str]] = []
        try:
            if not auth_ok:
                api.stats.add("unauthorized")
                raise status.generic(401)
            if target.rtype is not None and api._is_forbidden(target.verb, target.rtype):
                raise status.forbidden(
                    api._user(target.namespace),
                    target.verb,
                    target.rtype,
                    target.namespace,
                    target.name if target.verb != "watch" else "",
                )
            fault = api._faults.take(target.verb)
            if fault is not None:
                api.stats.add("faults_fired")
                logger.debug("Local API: fault %s fires on %s %s.", fault.kind, self.command, url.path)
                if fault.kind == "refuse":
                    # The request that triggers it gets no answer: its connection drops with the rest.
                    record(0)
                    self.close_connection = True
                    api._refuse(fault.seconds)
                    return
                self._raise_for(fault, target.verb, query)
            if target.error is not None:
                raise target.error
            if target.verb == "watch":
                self._watch(target, query, fault, record)
                return
            code, payload = self._execute(target, query, body)
            payload = self._as_table(target, query, payload)
        except errors.APIError as exc:
            code, payload = exc.status, status.body(exc)
            if exc.retry_after is not None:
                seconds = exc.retry_after
                extra.append(
                    ("Retry-After", str(int(seconds)) if float(seconds).is_integer() else str(seconds))
                )
        content_type = JSON
        if isinstance(payload, bytes):
            content_type, data = "text/plain; charset=utf-8", payload
        else:
            data = orjson.dumps(payload)
        record(code)
        logger.debug("Local API: %s %s answered %d.", self.command, url.path, code)
        self._respond(code, data, content_type, extra, fault)

    def _as_table(self, target: Target, query: dict[str, str], payload: Any) -> Any:
        """GET and LIST answered as the ``meta.k8s.io`` Table ``kubectl get`` asks for (see table.py)."""
        version = table.wanted(self.headers.get("Accept", ""))
        if (
            version is None
            or target.rtype is None
            or target.verb not in ("get", "list")
            or target.subresource
        ):
            return payload
        return table.from_payload(target.rtype, payload, table.include_object(query), version)

    def _raise_for(self, fault: faults.Fault, verb: str, query: dict[str, str]) -> None:
        if fault.kind == "status":
            raise status.generic(fault.status, retry_after=fault.retry_after)
        if fault.kind == "expired_http" or (fault.kind == "expired_event" and verb != "watch"):
            raise self._too_old(query)

    def _too_old(self, query: dict[str, str]) -> errors.APIError:
        api = self.server.api
        try:
            requested = int(query.get("resourceVersion") or 0)
        except ValueError:
            requested = 0
        return status.too_old(requested, api._store.floor + 1)

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            return self.rfile.read(int(length))
        except ValueError:
            return b""

    def _json_body(self, body: bytes) -> Any:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise status.bad_request(f"the body of the request is not valid JSON: {exc}") from None

    # --- writing ---------------------------------------------------------------------------------------

    def _head(self, code: int, headers: list[tuple[str, str]]) -> bytes:
        phrase = http.HTTPStatus(code).phrase if code in http.HTTPStatus._value2member_map_ else ""
        lines = [
            f"HTTP/1.1 {code} {phrase}",
            f"Date: {email.utils.formatdate(usegmt=True)}",
            "Cache-Control: no-cache, private",
        ]
        lines += [f"{k}: {v}" for k, v in headers]
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _respond(
        self,
        code: int,
        data: bytes,
        content_type: str,
        extra: list[tuple[str, str]],
        fault: Optional[faults.Fault],
    ) -> None:
        kind = fault.kind if fault else ""
        if kind == "malformed_line" and code < 400:
            data = faults.MALFORMED_LINE
        head = self._head(code, [("Content-Type", content_type), ("Content-Length", str(len(data))), *extra])
        conn = self.connection
        if kind in ("close", "empty_close") and code < 400:
            self.close_connection = True
            watch.abort(conn)
        elif kind == "drop_mid_line" and code < 400:
            conn.sendall(head + data[: len(data) // 2])
            self.close_connection = True
            watch.abort(conn)
        elif kind == "silent" and code < 400:
            conn.sendall(head)
            self._stay_silent(fault.seconds if fault else 0.0)
        elif kind == "trickle" and code < 400:
            assert fault is not None
            payload = head + data
            for i in range(0, len(payload), watch.TRICKLE_PIECE):
                conn.sendall(payload[i : i + watch.TRICKLE_PIECE])
                if self.server.api._stopping.wait(fault.seconds):
                    break
        else:
            conn.sendall(head + data)

    def _stay_silent(self, seconds: float) -> None:
        """Send nothing more for ``seconds`` (0: until stop or the client leaves), then drop the line."""
        api = self.server.api
        deadline = None if seconds <= 0 else seconds
        waited = 0.0
        while not api._stopping.wait(0.1):
            waited += 0.1
            if (deadline is not None and waited >= deadline) or watch.client_gone(self.connection):
                break
        self.close_connection = True
        watch.abort(self.connection)

    # --- verbs -----------------------------------------------------------------------------------------

    def _execute(self, target: Target, query: dict[str, str], body: bytes) -> tuple[int, Any]:
        api = self.server.api
        if target.verb == "discovery":
            if target.document == "api":
                return 200, resources.api_versions(f"127.0.0.1:{self.server.server_port}")
            if target.document is None:
                raise status.generic(404)
            return 200, target.document
        rtype = target.rtype
        assert rtype is not None
        namespace = target.namespace or ""
        data = api._store
        manager = managed.manager_for(query.get("fieldManager"), self.headers.get("User-Agent"))
        if target.verb == "list":
            api.stats.add("lists_served")
            stale = api.stale_lists_at
            if stale is not None and query.get("resourceVersion", "") in ("", "0"):
                query = {**query, "resourceVersion": str(stale), "resourceVersionMatch": "Exact"}
            payload = listing.list_payload(data, rtype, target.namespace, query)
            if rtype is namespaces.NAMESPACES:
                payload = namespaces.add_implied(data, payload, query)
            return 200, payload
        if target.verb == "get" and rtype is namespaces.NAMESPACES and not target.subresource:
            return 200, namespaces.get(data, target.name)
        if target.verb == "create":
            obj = self._json_body(body)
            if not isinstance(obj, dict):
                raise status.bad_request("the body of the request must be a JSON object")
            meta = obj.setdefault("metadata", {})
            if rtype.namespaced:
                if meta.get("namespace") and meta["namespace"] != namespace:
                    raise status.bad_request(
                        "the namespace of the provided object does not match the namespace "
                        "sent on the request"
                    )
                meta["namespace"] = namespace
            with data.cond:
                return 201, data.create(rtype, obj, manager)
        with data.cond:
            if target.verb == "get":
                return 200, data.get(rtype, namespace, target.name)
            if target.verb == "update":
                obj = self._json_body(body)
                if not isinstance(obj, dict):
                    raise status.bad_request("the body of the request must be a JSON object")
                return 200, data.replace(
                    rtype, namespace, target.name, obj, target.subresource == "status", manager
                )
            if target.verb == "patch":
                return 200, data.modify(
                    rtype,
                    namespace,
                    target.name,
                    self._patcher(body),
                    target.subresource == "status",
                    manager,
                )
            if target.verb == "delete":
                options = self._json_body(body) if body.strip() else {}
                preconditions = options.get("preconditions") if isinstance(options, dict) else None
                gone = data.delete(rtype, namespace, target.name, preconditions)
                return 200, {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": {
                        "name": target.name,
                        "group": rtype.group,
                        "kind": rtype.plural,
                        "uid": gone["metadata"]["uid"],
                    },
                }
        raise status.generic(405)

    def _patcher(self, body: bytes) -> Any:
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        document = self._json_body(body)
        if content_type in MERGE_PATCH_TYPES:
            return lambda obj: patch.merge(obj, document)
        if content_type == JSON_PATCH_TYPE:
            return lambda obj: patch.json_patch(obj, document)
        raise status.error(
            415,
            f"the body of the request was in an unknown format - accepted media types include: "
            f"{JSON_PATCH_TYPE}, application/merge-patch+json, application/apply-patch+yaml",
        )

    # --- watch -----------------------------------------------------------------------------------------

    def _watch(
        self,
        target: Target,
        query: dict[str, str],
        fault: Optional[faults.Fault],
        record: Callable[[int], None],
    ) -> None:
        api = self.server.api
        rtype = target.rtype
        assert rtype is not None
        predicate = selectors.combined(query.get("labelSelector", ""), query.get("fieldSelector", ""), rtype)
        if target.name:
            name_only = selectors.field_selector(f"metadata.name={target.name}", rtype)
            predicate = name_only if predicate is None else (lambda o, p=predicate: name_only(o) and p(o))
        timeout = _timeout(query.get("timeoutSeconds"))
        bookmarks = truthy(query.get("allowWatchBookmarks"))
        initial_events = truthy(query.get("sendInitialEvents"))
        if initial_events and not bookmarks:
            raise status.error(
                422, "sendInitialEvents is forbidden for watch unless allowWatchBookmarks=true", "Invalid"
            )
        rv_param = query.get("resourceVersion", "")
        data = api._store
        expired: Optional[errors.APIError] = None
        initial: list[bytes] = []
        with data.cond:
            if rv_param in ("", "0") or initial_events:
                # Synthetic ADDED for the current state, then live: "Get State and Start at Most Recent".
                position = data.rv
                prefix = f"{target.namespace}/" if target.namespace else ""
                initial = [
                    store.event_line("ADDED", obj)
                    for key, obj in data.items(rtype)
                    if key.startswith(prefix) and (predicate is None or predicate(obj))
                ]
            else:
                try:
                    position = int(rv_param)
                except ValueError:
                    raise status.bad_request(f"invalid resource version: {rv_param!r}") from None
                if position < data.floor:
                    expired = status.too_old(position, data.floor + 1)
                # Like the watch cache: wait a little for a version not reached yet, then refuse it.
                if not data.cond.wait_for(lambda: data.rv >= position, timeout=FUTURE_WAIT):
                    raise status.too_large(position, data.rv)
        if fault is not None and fault.kind == "expired_event":
            expired = self._too_old(query)
        if expired is not None and api.expired_as == "http" and not (fault and fault.kind == "expired_event"):
            raise expired
        if initial_events:
            initial.append(watch.bookmark_line(rtype, position, initial_events_end=True))
        head = self._head(200, [("Content-Type", JSON), ("Transfer-Encoding", "chunked")])
        record(200)
        api.stats.add("watches_opened")
        logger.debug("Local API: a watch on %s opened from resourceVersion %r.", rtype.qualified, rv_param)
        conn = self.connection
        kind = fault.kind if fault else ""
        writer: Any = watch.ChunkWriter(
            conn, api._stopping, fault.seconds if kind == "trickle" and fault else None
        )
        as_table = table.wanted(self.headers.get("Accept", ""))
        if as_table is not None:  # kubectl get -w
            writer = table.TableWatchWriter(writer, rtype, table.include_object(query), as_table)
        try:
            conn.sendall(head)
            if expired is not None:
                writer.write(watch.error_line(status.body(expired)))
                writer.end()
                return
            if kind == "empty_close":
                writer.end()
                return
            if kind == "silent":
                self._stay_silent(fault.seconds if fault else 0.0)
                return
        except (OSError, watch.ClientGone):
            self.close_connection = True
            return
        stream = watch.WatchStream(
            data=data,
            sock=conn,
            writer=writer,
            rtype=rtype,
            namespace=target.namespace,
            predicate=predicate,
            timeout=timeout,
            bookmark_interval=api.bookmark_interval if bookmarks else None,
            fault=fault,
            stopping=api._stopping,
            on_sent=api._count_sent,
        )
        stream.run(initial, position)
        if not writer.ended:
            self.close_connection = True


def _timeout(value: Optional[str]) -> float:
    if not value:
        # The real server picks a random duration between minRequestTimeout (1800 s) and twice that.
        return 1800.0 * (1 + random.random())
    try:
        seconds = int(value)
    except ValueError:
        raise status.bad_request(f"invalid timeoutSeconds: {value!r}") from None
    return float(seconds) if seconds > 0 else 1800.0 * (1 + random.random())
