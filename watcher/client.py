"""The one HTTP client for the API server: TLS, bearer auth, discovery, LIST, WATCH, GET/PATCH.

Every failure leaves this module as a typed ``errors.APIError`` or ``errors.TransportError`` so that the
informer decides what to do by type, not by parsing messages. Nothing here retries except the single
re-read of the token file after a 401: backoff policy belongs to the informer.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import os
import socket
import ssl
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Optional, Union
from urllib.parse import urlencode, urlsplit

import certifi
import orjson
import requests
import urllib3
from requests.adapters import HTTPAdapter

import watcher
from watcher import auth, errors, stream, tlswatch
from watcher.config import Settings

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0
READ_SIZE = 65536
USER_AGENT = f"event-watcher/{watcher.__version__}"

# Keepalive probes find a peer that vanished without a reset (NAT and load balancers drop idle streams
# silently); the read timeout on the watch catches the rest.
_KEEPALIVE = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)] + [
    (socket.IPPROTO_TCP, getattr(socket, name), value)
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3))
    if hasattr(socket, name)
]


class _KeepaliveAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["socket_options"] = list(urllib3.connection.HTTPConnection.default_socket_options) + _KEEPALIVE
        super().init_poolmanager(*args, **kwargs)


@dataclass(frozen=True)
class ResourceInfo:
    """What discovery tells about the watched resource."""

    group: str  # "" for the core API
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def display(self) -> str:
        """``routes.route.openshift.io``, as kubectl and RBAC messages name resources."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def collection_path(self, namespace: Optional[str]) -> str:
        if self.namespaced and namespace:
            return f"{self.prefix}/namespaces/{namespace}/{self.plural}"
        return f"{self.prefix}/{self.plural}"

    def object_path(self, namespace: Optional[str], name: str) -> str:
        return f"{self.collection_path(namespace)}/{name}"


@dataclass(frozen=True)
class ListResult:
    items: list[dict[str, Any]]
    resource_version: str


def _retry_after(value: Optional[str]) -> Optional[float]:
    """A Retry-After header's seconds, given as a number or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


_STATUS_ERRORS: Mapping[int, type[errors.APIError]] = {
    401: errors.Unauthorized,
    403: errors.Forbidden,
    404: errors.NotFound,
    409: errors.Conflict,
    410: errors.Gone,
    429: errors.Throttled,
}


def error_from_response(response: requests.Response, action: str) -> errors.APIError:
    """A typed error for a non-2xx answer; ``action`` says what we tried, e.g. ``list routes in demo``."""
    try:
        content = response.content
    except requests.RequestException:
        content = b""
    return error_from(
        response.status_code, response.reason, content, response.headers.get("Retry-After"), action
    )


def error_from(
    status: int, phrase: Optional[str], content: bytes, retry_after: Optional[str], action: str
) -> errors.APIError:
    """A typed error for a non-2xx answer from its parts, whichever HTTP client read it."""
    body = content[:2000].decode("utf-8", "replace")
    try:
        payload = orjson.loads(content) if content else {}
    except orjson.JSONDecodeError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    message = payload.get("message")
    reason = payload.get("reason", "")
    details = payload.get("details")
    found = details.get("causes") if isinstance(details, dict) else None
    causes = (
        tuple(str(c.get("reason")) for c in found if isinstance(c, dict)) if isinstance(found, list) else ()
    )
    detail = message or phrase or "no message"
    if status == 403:
        text = f"Forbidden: the API server refused to {action}: {detail}"
    elif status == 401:
        text = f"Unauthorized: the API server rejected the token while trying to {action}"
    else:
        text = f"HTTP {status} while trying to {action}: {detail}"
    cls = _STATUS_ERRORS.get(status, errors.ServerError if status >= 500 else errors.APIError)
    return cls(
        status, text, reason=str(reason), body=body, retry_after=_retry_after(retry_after), causes=causes
    )


class RequestsWatch:
    """An open WATCH through ``requests`` (a proxy, or plain http; otherwise ``tlswatch.TLSWatch``):
    decoded body bytes in large blocks, and a way to abort it from another thread."""

    def __init__(self, response: requests.Response) -> None:
        self._response = response
        self._raw = response.raw

    def chunks(self) -> Iterator[bytes]:
        """Body blocks as they arrive. ``read1`` returns what is there, so a trickle is not held back.

        A chunked, unencoded body (what the API server sends for a WATCH) is read straight from the
        connection's buffered reader and de-chunked by ``stream.ChunkDecoder``: one call per TLS
        record instead of four layers of Python per chunk. Anything else (gzip, a Content-Length or
        close-delimited body) goes through urllib3, which decodes it.
        """
        reader = self._chunked_reader()
        if reader is None:
            read1 = self._raw.read1
            while True:
                # requests leaves decoding off on the raw response; a gzip body must still be undone.
                block = read1(READ_SIZE, decode_content=True)
                if not block:
                    return
                yield block
        read1 = reader.read1
        decoder = stream.ChunkDecoder()
        feed = decoder.feed
        while True:
            raw = read1(READ_SIZE)
            if not raw:
                raise errors.TransportError("the connection closed before the end of the watch stream")
            block = feed(raw)
            if block:
                yield block
            if decoder.done:
                return

    def _chunked_reader(self) -> Any:
        """The connection's buffered reader when the body is chunked and not content-encoded."""
        encoding = self._response.headers.get("Content-Encoding", "identity").strip().lower()
        inner = getattr(self._raw, "_fp", None)  # urllib3 → http.client.HTTPResponse
        if encoding != "identity" or not getattr(inner, "chunked", False):
            return None
        if getattr(inner, "chunk_left", None) is not None:  # http.client already began de-chunking
            return None
        reader = getattr(inner, "fp", None)
        return reader if hasattr(reader, "read1") else None

    def abort(self) -> None:
        """Shut the socket down so a blocked read returns at once (used on SIGTERM and lease loss)."""
        connection = getattr(self._raw, "connection", None)
        sock = getattr(connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.close()

    def close(self) -> None:
        # Closing a broken stream can raise anything urllib3 can; it is gone either way.
        with contextlib.suppress(Exception):
            self._response.close()


# What ``Client.watch`` hands out: both read the same way (``chunks``, ``abort``, ``close``).
WatchResponse = Union[RequestsWatch, tlswatch.TLSWatch]


class Client:
    """The authenticated session. Thread-safe enough for one watch plus plugin GET/PATCH calls."""

    def __init__(self, settings: Settings, token_source: Optional[auth.TokenSource] = None) -> None:
        self.settings = settings
        self.base = settings.endpoint.rstrip("/")
        self.tokens = token_source if token_source is not None else token_source_for(settings)
        self._tempdir: Optional[tempfile.TemporaryDirectory[str]] = None
        self.verify = self._verify()
        self.cert = self._client_cert()
        self.session = requests.Session()
        adapter = _KeepaliveAdapter(pool_connections=4, pool_maxsize=8)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.headers["Accept"] = "application/json"
        self._tls_contexts: dict[Any, ssl.SSLContext] = {}

    # --- TLS material -------------------------------------------------------------------------------

    def _material_file(self, name: str, data: bytes) -> str:
        """kubeconfig carries CA and client certificates inline; requests wants files (0600, ours)."""
        if self._tempdir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="event-watcher-")
        path = os.path.join(self._tempdir.name, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return path

    def _verify(self) -> str | bool:
        s = self.settings
        if s.insecure_skip_tls_verify:
            logger.warning(
                "TLS verification of %s is DISABLED (k8s_insecure_skip_tls_verify=true): anyone on the path "
                "can read the token and forge events. Use k8s_ca instead.",
                self.base,
            )
            # Said once, just above: urllib3 would repeat it as a multi-line warning on every request.
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
            return False
        if s.ca_file:
            return _usable_ca(s.ca_file, s.sources.get("ca_file", ""))
        if s.ca_data:
            path = self._material_file("ca.crt", s.ca_data)
            try:
                return _usable_ca(path, s.sources.get("ca_data", ""))
            except errors.ConfigError:
                if self._tempdir is not None:
                    self._tempdir.cleanup()
                    self._tempdir = None
                raise
        return True

    def _client_cert(self) -> tuple[str, str] | None:
        s = self.settings
        cert = s.client_cert_file or (
            s.client_cert_data and self._material_file("client.crt", s.client_cert_data)
        )
        key = s.client_key_file or (
            s.client_key_data and self._material_file("client.key", s.client_key_data)
        )
        return (cert, key) if cert and key else None

    # --- requests -----------------------------------------------------------------------------------

    def _transport_error(self, e: BaseException, action: str) -> errors.TransportError:
        """The mistake a failed connection most likely comes from, in plain words, before what the
        library said: these never fix themselves, and urllib3's nested reprs hide them."""
        mistake = self._likely_mistake(_chain_text(e))
        if mistake:
            return errors.TransportError(f"{mistake} ({self.base}, trying to {action})")
        detail = _short(e)
        if isinstance(e, (ssl.SSLError, requests.exceptions.SSLError)):
            return errors.TransportError(f"TLS error talking to {self.base} trying to {action}: {detail}")
        return errors.TransportError(f"cannot reach {self.base} to {action}: {detail}")

    def _likely_mistake(self, text: str) -> Optional[str]:
        parts = urlsplit(self.base)
        host = parts.hostname or ""
        if any(marker in text for marker in _UNRESOLVED):
            return f"cannot resolve {host}"
        if "CERTIFICATE_VERIFY_FAILED" in text:
            if "mismatch" in text:  # "Hostname mismatch" or "IP address mismatch"
                return f"the server's certificate is not valid for the name {host}"
            if isinstance(self.verify, str):
                inline = "the kubeconfig's certificate-authority-data"
                where = self.verify if self.settings.ca_file else inline
                return f"the server's certificate is not signed by the CA in {where}"
            return "the server's certificate is not signed by a CA this machine trusts: set K8S_CA (k8s_ca)"
        if "WRONG_VERSION_NUMBER" in text and parts.scheme == "https":
            return "the server does not speak TLS: use http://"
        if parts.scheme == "http" and _speaks_tls(host, parts.port or 80):
            return "the server speaks TLS: use https://"
        return None

    def _send(
        self,
        method: str,
        path: str,
        action: str,
        *,
        params: Optional[Mapping[str, str]] = None,
        data: Optional[bytes] = None,
        content_type: Optional[str] = None,
        stream: bool = False,
        read_timeout: float = REQUEST_TIMEOUT,
    ) -> requests.Response:
        """One request with the current token; after a 401 re-read the token once and retry."""
        for attempt in (1, 2):
            headers = {}
            token = self.tokens.token()
            if token:
                headers["Authorization"] = f"Bearer {token}"
            if content_type:
                headers["Content-Type"] = content_type
            try:
                # verify= on every call: requests lets REQUESTS_CA_BUNDLE override Session.verify.
                response = self.session.request(
                    method,
                    self.base + path,
                    params=params,
                    data=data,
                    headers=headers,
                    stream=stream,
                    verify=self.verify,
                    cert=self.cert,
                    timeout=(CONNECT_TIMEOUT, read_timeout),
                )
            except requests.RequestException as e:
                raise self._transport_error(e, action) from None
            if response.status_code == 401 and attempt == 1 and self.tokens.refresh():
                response.close()
                continue
            if response.status_code >= 400:
                try:
                    raise error_from_response(response, action)
                finally:
                    response.close()
            return response
        raise AssertionError("unreachable")

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Mapping[str, str]] = None,
        json: Any = None,
        content_type: Optional[str] = None,
    ) -> dict[str, Any]:
        """Any API call that answers one JSON object (leases, other resources); raises typed errors."""
        data = orjson.dumps(json) if json is not None else None
        if data is not None and content_type is None:
            content_type = "application/json"
        response = self._send(
            method, path, f"{method} {path}", params=params, data=data, content_type=content_type
        )
        if not response.content:
            return {}
        try:
            result = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise errors.APIError(
                response.status_code, f"{method} {path} answered something that is not JSON"
            ) from None
        return result if isinstance(result, dict) else {"items": result}

    # --- discovery ----------------------------------------------------------------------------------

    def discover(
        self, resource: str, group: Optional[str], version: Optional[str], *, openshift_only: bool = False
    ) -> ResourceInfo:
        """Find the group, version, kind and scope of a plural resource name (``routes``).

        The core API is searched first, so ``events`` means core ``v1`` events, as with kubectl.
        """
        for g, v in self._candidates(group, version, openshift_only):
            prefix = f"/apis/{g}/{v}" if g else f"/api/{v}"
            try:
                listing = self.request("GET", prefix)
            except errors.NotFound:
                continue
            for r in listing.get("resources", []):
                if r.get("name") == resource:
                    return ResourceInfo(g, v, resource, str(r.get("kind", "")), bool(r.get("namespaced")))
        where = f"API group {group!r}" if group else "the core API" if group == "" else "any API group"
        raise errors.ResourceError(f"resource {resource!r} is not served by {self.base} (looked in {where})")

    def _candidates(
        self, group: Optional[str], version: Optional[str], openshift_only: bool
    ) -> list[tuple[str, str]]:
        """(group, version) pairs to look in, in order; only the preferred version unless one is given."""
        if group is not None and version:
            return [(group, version)]
        found: list[tuple[str, str]] = []
        if group in (None, "") and not openshift_only:
            core_versions = self.request("GET", "/api").get("versions") or []
            core = version or (core_versions[0] if core_versions else None)
            if core:
                found.append(("", core))
        if group != "":
            for g in self.request("GET", "/apis").get("groups") or []:
                name = str(g.get("name", ""))
                if (group is not None and name != group) or (
                    openshift_only and not name.endswith(".openshift.io")
                ):
                    continue
                versions = [str(v.get("version")) for v in g.get("versions") or []]
                preferred = (g.get("preferredVersion") or {}).get("version")
                chosen = version if version else preferred
                if chosen and (chosen in versions or not version):
                    found.append((name, str(chosen)))
        return found

    # --- list / watch / get / patch -----------------------------------------------------------------

    def pages(
        self,
        info: ResourceInfo,
        namespace: Optional[str],
        *,
        label_selector: Optional[str] = None,
        field_selector: Optional[str] = None,
        limit: int = 500,
    ) -> Iterator[ListResult]:
        """The pages of a LIST one by one, each with the list's resourceVersion, so that a caller can
        keep something smaller than 100,000 objects as dicts; an expired continue token raises
        ``errors.Gone``."""
        path = info.collection_path(namespace)
        action = f"list {info.display}" + (
            f" in namespace {namespace}" if info.namespaced and namespace else ""
        )
        params = _selectors(label_selector, field_selector)
        params["limit"] = str(limit)
        while True:
            response = self._send("GET", path, action, params=params)
            try:
                page = orjson.loads(response.content)
            except orjson.JSONDecodeError:
                raise errors.APIError(response.status_code, f"the answer to {action} is not JSON") from None
            meta = page.get("metadata") or {}
            yield ListResult(page.get("items") or [], str(meta.get("resourceVersion", "")))
            token = meta.get("continue")
            if not token:
                return
            params["continue"] = token

    def watch(
        self,
        info: ResourceInfo,
        namespace: Optional[str],
        resource_version: str,
        *,
        timeout_seconds: int,
        read_timeout: float,
        label_selector: Optional[str] = None,
        field_selector: Optional[str] = None,
    ) -> WatchResponse:
        """Open a WATCH from ``resource_version``; the body is read by the caller as a byte stream."""
        params = _selectors(label_selector, field_selector)
        params.update(
            watch="true",
            allowWatchBookmarks="true",
            timeoutSeconds=str(timeout_seconds),
            resourceVersion=resource_version,
        )
        action = f"watch {info.display}" + (
            f" in namespace {namespace}" if info.namespaced and namespace else ""
        )
        path = info.collection_path(namespace)
        context = self._direct_tls(path)
        if context is None:
            response = self._send("GET", path, action, params=params, stream=True, read_timeout=read_timeout)
            return RequestsWatch(response)
        return self._watch_direct(path, params, action, context, read_timeout)

    def _direct_tls(self, path: str) -> Optional[ssl.SSLContext]:
        """The TLS context for a WATCH on a connection of its own (``tlswatch``), or None when
        ``requests`` must do it: plain http, or a proxy from the environment. Verification is what
        ``requests`` would do for this URL (``REQUESTS_CA_BUNDLE`` included)."""
        url = self.base + path
        if urlsplit(url).scheme != "https":
            return None
        merged = self.session.merge_environment_settings(url, {}, True, self.verify, self.cert)
        if requests.utils.select_proxy(url, merged["proxies"]):
            return None
        verify, cert = merged["verify"], merged["cert"]
        key = (verify, cert)
        context = self._tls_contexts.get(key)
        if context is None:
            if verify is False:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:
                # verify=True in requests means certifi's bundle, not the system's.
                context = ssl.create_default_context(cafile=certifi.where() if verify is True else verify)
            if isinstance(cert, tuple):
                context.load_cert_chain(cert[0], cert[1])
            elif cert:
                context.load_cert_chain(cert)
            self._tls_contexts[key] = context
        return context

    def _watch_direct(
        self, path: str, params: Mapping[str, str], action: str, context: ssl.SSLContext, read_timeout: float
    ) -> tlswatch.TLSWatch:
        """``_send`` for a WATCH through ``tlswatch``: the same token retry and typed errors."""
        parts = urlsplit(self.base + path)
        host = parts.hostname or ""
        target = f"{parts.path}?{urlencode(params)}"
        for attempt in (1, 2):
            headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
            token = self.tokens.token()
            if token:
                headers["Authorization"] = f"Bearer {token}"
            try:
                watch = tlswatch.open_watch(
                    host,
                    parts.port or 443,
                    target,
                    headers,
                    context,
                    connect_timeout=CONNECT_TIMEOUT,
                    read_timeout=read_timeout,
                    socket_options=_KEEPALIVE,
                )
            except (OSError, errors.TransportError, stream.ChunkedFramingError) as e:  # ssl.SSLError too
                raise self._transport_error(e, action) from None
            if watch.status < 400:
                return watch
            try:
                if watch.status == 401 and attempt == 1 and self.tokens.refresh():
                    continue
                try:
                    content = watch.read_body()
                except (OSError, ssl.SSLError, errors.TransportError, stream.ChunkedFramingError):
                    content = b""
                raise error_from(
                    watch.status, watch.reason, content, watch.headers.get("retry-after"), action
                )
            finally:
                watch.close()
        raise AssertionError("unreachable")

    def get(self, info: ResourceInfo, namespace: Optional[str], name: str) -> dict[str, Any]:
        return self.request("GET", info.object_path(namespace, name))

    def patch(
        self, info: ResourceInfo, namespace: Optional[str], name: str, merge_patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        return self.request(
            "PATCH",
            info.object_path(namespace, name),
            json=merge_patch,
            content_type="application/merge-patch+json",
        )

    def close(self) -> None:
        self.session.close()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None


_PRECEDENCE = ("env", "ini", "serviceaccount", "kubeconfig", "default")


def api_path_target(path: str) -> tuple[Optional[str], Optional[str], bool]:
    """The seed's K8S_API_PATH → (group, version, openshift_only) for discovery.

    ``/api/v1`` and ``/apis/<group>/<version>`` name the API directly (anything after it, such as
    ``/namespaces/x/routes``, is ignored: the resource and namespace have their own settings); the removed
    ``/oapi/v1`` of OpenShift 3 means "whichever ``*.openshift.io`` group serves the resource now".
    """
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["oapi"]:
        return None, None, True
    if parts[:1] == ["api"] and len(parts) >= 2:
        return "", parts[1], False
    if parts[:1] == ["apis"] and len(parts) >= 3:
        return parts[1], parts[2], False
    raise errors.ResourceError(
        f"k8s_api_path {path!r} is not /api/<version>, /apis/<group>/<version> or /oapi/v1"
    )


def token_source_for(settings: Settings) -> auth.TokenSource:
    """The token file when it comes from a source at least as strong as the literal token's."""

    def rank(key: str) -> int:
        source = settings.sources.get(key, "default")
        return _PRECEDENCE.index(source) if source in _PRECEDENCE else len(_PRECEDENCE)

    if settings.token_file and (not settings.token or rank("token_file") <= rank("token")):
        return auth.FileToken(settings.token_file)
    if settings.token:
        return auth.StaticToken(settings.token)
    return auth.NoToken()


_CA_SOURCES = {
    "env": "K8S_CA",
    "ini": "k8s_ca",
    "serviceaccount": "the serviceaccount",
    "kubeconfig": "kubeconfig",
}


def _usable_ca(path: str, source: str) -> str:
    """``path`` when OpenSSL finds certificates in it. Otherwise every connection would fail with a
    "PEM lib" error that names neither the file nor the setting: a configuration error instead."""
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, ValueError):
        where = _CA_SOURCES.get(source, "the CA setting")
        raise errors.ConfigError(f"{where}: the CA file {path} holds no PEM certificate") from None
    return path


def _selectors(label_selector: Optional[str], field_selector: Optional[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    return params


# What getaddrinfo says, through urllib3's NameResolutionError, on Linux (glibc, musl) and macOS.
_UNRESOLVED = (
    "Name or service not known",
    "nodename nor servname",
    "Temporary failure in name resolution",
    "No address associated with hostname",
    "Failed to resolve",
    "NameResolutionError",
)


def _chain_text(exc: BaseException) -> str:
    """Every message in the chain: requests wraps urllib3's MaxRetryError, whose ``reason`` holds the
    socket or SSL error that says what happened."""
    seen: list[str] = []
    todo: list[object] = [exc]
    while todo and len(seen) < 20:
        current = todo.pop()
        if not isinstance(current, BaseException):
            continue
        seen.append(f"{type(current).__name__}: {current}")
        todo += [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
    return " | ".join(seen)


def _speaks_tls(host: str, port: int) -> bool:
    """A TLS handshake succeeds on ``host:port``: the http:// endpoint is really an https:// one."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT) as sock:
            context.wrap_socket(sock, server_hostname=host or None).close()  # the handshake is the test
            return True
    except (OSError, ValueError):
        return False


def _short(exc: BaseException) -> str:
    """One line out of the nested reprs urllib3 builds (``HTTPSConnectionPool(...): Max retries ...``),
    with quotes and parentheses balanced again after the cut."""
    text = str(exc)
    for marker in ("Caused by ", "(Caused by"):
        if marker in text:
            text = text.split(marker, 1)[1]
    text = text.strip("()' ")[:300]
    for pair in ("()", "[]", "<>"):
        if text.count(pair[0]) != text.count(pair[1]):
            text = text.replace(pair[0], "").replace(pair[1], "")
    for quote in ("'", '"'):
        if text.count(quote) % 2:
            text = text.replace(quote, "")
    return text
