"""A small stand-in for FreeIPA's JSON-RPC endpoint (FreeIPA itself cannot run here).

Follows upstream's code where the certs plugin depends on it (freeipa/freeipa: ipaserver/rpcserver.py,
ipalib/frontend.py, ipalib/errors.py, ipalib/messages.py, ipalib/util.py, ipaserver/plugins/{host,cert,
baseldap}.py):

- Every request first passes ``check_referer``: a ``Referer`` that is present, holds one ``://``, is
  ``https``, names the server's host (``hostname``, so a port does not matter here) and has the path
  ``/ipa`` or ``/ipa/...``; else HTTP 400 ``denied`` before any session is looked at.
- ``POST /ipa/session/login_password``: ``application/x-www-form-urlencoded`` ``user``/``password``.
  Success: 200 and the ``ipa_session`` cookie; bad credentials: 401 with
  ``X-IPA-Rejection-Reason: invalid-password``.
- ``POST /ipa/session/json``: without a valid session 401 with an empty body (``need_login``); then
  ``wsgi_execute``'s own check: the Referer must start with exactly ``https://<host>/ipa`` (no port),
  else RefererError 911. ``{"method", "params": [args, options], "id"}``; answers ``{"result",
  "error", "id", "principal", "version"}``; errors are ``{"code", "message", "name", "data"}``.
- ``version`` in the options: a major other than 2 is VersionError 901; missing, the command runs with
  the server's API version and its result carries the VersionMissing warning (13001) in ``messages``.
- ``host_add``: the FQDN is validated as ``hostname_validator`` does (ValidationError 3009 ``invalid
  'hostname': invalid domain-name: ...``), DuplicateEntry 4002, DNSNotARecordError 4019 without
  ``force`` for a name that does not resolve; ``description`` is kept. ``host_show`` (NotFound 4001),
  ``host_find`` (criteria: a case-insensitive substring of fqdn or description; ``sizelimit``, default
  100 like ``ipasearchrecordslimit``, sets ``truncated``), ``host_del`` (NotFound 4001; revokes the
  host's certificates with reason 4, superseded, as ``revoke_certs`` does).
- ``cert_request`` (RealmMismatch 4005 for another realm, NotFound 4001 for an unknown principal,
  ValidationError 3009 when the CSR's CN is not the host; ``certificate`` is base64 DER; ``chain`` adds
  ``certificate_chain`` as ``{"__base64__": DER}`` items, leaf first), ``cert_find`` (``host``),
  ``cert_revoke`` (``revocation_reason`` 0-10, default 0; 7 is CertificateOperationError 4301).
  Anything else: CommandError 905.

One CA (like ``/etc/ipa/ca.crt``) signs both the HTTPS certificate and the issued certificates.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import secrets
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, urlparse

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from tests.servers.testca import TestCA

VERSION = "4.12.2"
API_VERSION = "2.254"
SEARCH_LIMIT = 100  # ipasearchrecordslimit's default
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$", re.IGNORECASE)


def hostname_problem(hostname: str) -> Optional[str]:
    """What ``ipalib.util.validate_hostname`` says about a host name, or None when it is valid."""
    if len(hostname) > 255:
        return "cannot be longer that 255 characters"
    name = hostname[:-1] if hostname.endswith(".") else hostname
    if ".." in name:
        return "hostname contains empty label (consecutive dots)"
    if "." not in name:
        return "not fully qualified"
    for label in name.split("."):
        if not label:
            return "empty DNS label"
        if len(label) > 63:
            return "DNS label cannot be longer that 63 characters"
        if not _LABEL.match(label):
            return "only letters, numbers, '-' are allowed. DNS label may not start or end with '-'"
    return None


class PublicError(Exception):
    """An error as ``ipalib.errors.PublicError`` sends it: its class name, errno, text and keywords."""

    def __init__(self, name: str, code: int, message: str, /, **data: Any) -> None:
        super().__init__(message)
        self.name = name
        self.code = code
        self.message = message
        self.data = data


@dataclass
class Issued:
    serial: int
    host: str
    cert: x509.Certificate
    revoked: Optional[int] = None


def _one(args: list[Any], what: str) -> str:
    if len(args) != 1:
        raise PublicError("RequirementError", 3007, f"'{what}' is required", name=what)
    return str(args[0])


@dataclass
class FreeIPAStandIn:
    realm: str
    url: str
    ca_file: Path
    ca: TestCA = field(repr=False)
    users: dict[str, str] = field(default_factory=dict, repr=False)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    resolvable: set[str] = field(default_factory=set)
    certificates: dict[int, Issued] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict, repr=False)
    calls: list[tuple[str, list[Any], dict[str, Any]]] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)
    denied: int = 0  # requests refused with 400 for their Referer
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    validity: datetime.timedelta = datetime.timedelta(days=730)

    failures: list[int] = field(default_factory=list)

    def fail_next(self, count: int, status: int = 503) -> None:
        """The next ``count`` JSON-RPC calls get HTTP ``status`` (Apache in front of a busy or restarting
        IPA answers 503), to test retries."""
        with self.lock:
            self.failures.extend([status] * count)

    def expire_sessions(self) -> None:
        """What FreeIPA does when a session's lifetime runs out: the cookie no longer works."""
        with self.lock:
            self.sessions.clear()

    def methods(self) -> list[str]:
        with self.lock:
            return [method for method, _, _ in self.calls]

    # --- login --------------------------------------------------------------------------------------

    def login(self, user: str, password: str) -> Optional[str]:
        with self.lock:
            ok = user in self.users and secrets.compare_digest(self.users[user], password)
            self.logins.append((user, ok))
            if not ok:
                return None
            token = secrets.token_urlsafe(24)
            self.sessions[token] = user
            return token

    # --- commands -----------------------------------------------------------------------------------

    def execute(self, user: str, method: str, args: list[Any], options: dict[str, Any]) -> Any:
        with self.lock:
            self.calls.append((method, list(args), dict(options)))
            handler = getattr(self, f"_cmd_{method.split('/')[0]}", None)
            if handler is None:
                raise PublicError("CommandError", 905, f"unknown command '{method}'", name=method)
            options = dict(options)
            version = options.pop("version", None)
            if version is not None and str(version).split(".")[0] != API_VERSION.split(".")[0]:
                raise PublicError(
                    "VersionError",
                    901,
                    f"{version} client incompatible with {API_VERSION} server at '{self.url}/xml'",
                    cver=str(version),
                    sver=API_VERSION,
                    server=f"{self.url}/xml",
                )
            result = handler(args, options)
            if version is None and isinstance(result, dict):
                message = (
                    "API Version number was not sent, forward compatibility not guaranteed. "
                    f"Assuming server's API version, {API_VERSION}"
                )
                result.setdefault("messages", []).append(
                    {
                        "type": "warning",
                        "name": "VersionMissing",
                        "message": message,
                        "code": 13001,
                        "data": {"server_version": API_VERSION},
                    }
                )
            return result

    def _cmd_host_add(self, args: list[Any], options: dict[str, Any]) -> Any:
        fqdn = _one(args, "hostname")
        problem = hostname_problem(fqdn)
        if problem is not None:
            raise PublicError(
                "ValidationError",
                3009,
                f"invalid 'hostname': invalid domain-name: {problem}",
                name="hostname",
                error=f"invalid domain-name: {problem}",
            )
        fqdn = fqdn.rstrip(".").lower()
        if fqdn in self.hosts:
            raise PublicError("DuplicateEntry", 4002, f'host with name "{fqdn}" already exists')
        if not options.get("force") and fqdn not in self.resolvable:
            raise PublicError(
                "DNSNotARecordError",
                4019,
                f"Host '{fqdn}' does not have corresponding DNS A/AAAA record",
                hostname=fqdn,
            )
        entry = {
            "fqdn": [fqdn],
            "krbprincipalname": [f"host/{fqdn}@{self.realm}"],
            "krbcanonicalname": [f"host/{fqdn}@{self.realm}"],
            "managedby_host": [fqdn],
            "has_keytab": False,
            "has_password": False,
            "dn": f"fqdn={fqdn},cn=computers,cn=accounts,dc=example,dc=test",
        }
        if options.get("description"):
            entry["description"] = [str(options["description"])]
        self.hosts[fqdn] = entry
        return {"result": entry, "value": fqdn, "summary": f'Added host "{fqdn}"'}

    def _host(self, args: list[Any]) -> tuple[str, dict[str, Any]]:
        fqdn = _one(args, "hostname").rstrip(".").lower()
        entry = self.hosts.get(fqdn)
        if entry is None:
            raise PublicError("NotFound", 4001, f"{fqdn}: host not found", reason=f"{fqdn}: host not found")
        return fqdn, entry

    def _cmd_host_show(self, args: list[Any], options: dict[str, Any]) -> Any:
        fqdn, entry = self._host(args)
        return {"result": entry, "value": fqdn, "summary": None}

    def _cmd_host_find(self, args: list[Any], options: dict[str, Any]) -> Any:
        term = str(args[0]).lower() if args and args[0] is not None else ""
        limit = int(options.get("sizelimit", SEARCH_LIMIT))
        found = [
            entry
            for fqdn, entry in sorted(self.hosts.items())
            if term in fqdn or any(term in d.lower() for d in entry.get("description", []))
        ]
        truncated = bool(limit) and len(found) > limit
        if truncated:
            found = found[:limit]
        return {"result": found, "count": len(found), "truncated": truncated, "summary": None}

    def _cmd_host_del(self, args: list[Any], options: dict[str, Any]) -> Any:
        fqdn, _ = self._host(args)
        del self.hosts[fqdn]
        for issued in self.certificates.values():
            if issued.host == fqdn and issued.revoked is None:
                issued.revoked = 4  # superseded, what host_del uses
        return {"result": {"failed": []}, "value": [fqdn], "summary": f'Deleted host "{fqdn}"'}

    def _cmd_cert_request(self, args: list[Any], options: dict[str, Any]) -> Any:
        (csr_pem,) = args
        principal = str(options.get("principal", ""))
        service, _, rest = principal.partition("/")
        fqdn, _, realm = rest.partition("@")
        if service != "host" or not fqdn:
            raise PublicError("ValidationError", 3009, "invalid 'principal': only host principals here")
        if realm and realm != self.realm:
            raise PublicError(
                "RealmMismatch",
                4005,
                "The realm for the principal does not match the realm for this IPA server",
            )
        if fqdn.lower() not in self.hosts:
            raise PublicError(
                "NotFound",
                4001,
                "The principal for this request doesn't exist.",
                reason="The principal for this request doesn't exist.",
            )
        try:
            csr = x509.load_pem_x509_csr(str(csr_pem).encode())
        except ValueError:
            raise PublicError(
                "CertificateOperationError",
                4301,
                "Certificate operation cannot be completed: Failure decoding Certificate Signing Request",
            ) from None
        cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not cns or str(cns[-1].value).lower() != fqdn.lower():
            cn = cns[-1].value if cns else ""
            raise PublicError(
                "ValidationError",
                3009,
                f"invalid 'csr': hostname in subject of request '{cn}' does not match "
                f"name or aliases of principal '{principal}'",
            )
        now = datetime.datetime.now(datetime.timezone.utc)
        serial = x509.random_serial_number()
        cert = self.ca.sign(
            csr.public_key(),
            common_name=fqdn,
            dns_names=(fqdn,),
            not_before=now - datetime.timedelta(minutes=1),
            not_after=now + self.validity,
            serial=serial,
        )
        self.certificates[serial] = Issued(serial, fqdn.lower(), cert)
        der = cert.public_bytes(serialization.Encoding.DER)
        result: dict[str, Any] = {
            "certificate": base64.b64encode(der).decode(),
            "serial_number": serial,
            "serial_number_hex": hex(serial),
            "subject": f"CN={fqdn},O={self.realm}",
            "issuer": f"CN=Certificate Authority,O={self.realm}",
            "valid_not_before": cert.not_valid_before_utc.strftime("%a %b %d %H:%M:%S %Y UTC"),
            "valid_not_after": cert.not_valid_after_utc.strftime("%a %b %d %H:%M:%S %Y UTC"),
            "request_id": len(self.certificates),
            "cacn": "ipa",
        }
        if options.get("chain"):
            ca_der = self.ca.cert.public_bytes(serialization.Encoding.DER)
            result["certificate_chain"] = [
                {"__base64__": base64.b64encode(der).decode()},
                {"__base64__": base64.b64encode(ca_der).decode()},
            ]
        return {"result": result, "value": str(result["request_id"])}

    def _cmd_cert_find(self, args: list[Any], options: dict[str, Any]) -> Any:
        hosts = {str(h).lower() for h in options.get("host", [])}
        found = [
            {
                "serial_number": issued.serial,
                "subject": f"CN={issued.host},O={self.realm}",
                "status": "VALID" if issued.revoked is None else "REVOKED",
                "revoked": issued.revoked is not None,
                **({} if issued.revoked is None else {"revocation_reason": issued.revoked}),
            }
            for issued in self.certificates.values()
            if not hosts or issued.host in hosts
        ]
        return {"result": found, "count": len(found), "truncated": False, "summary": None}

    def _cmd_cert_revoke(self, args: list[Any], options: dict[str, Any]) -> Any:
        serial = args[0] if len(args) == 1 else _one(args, "serial_number")
        number = int(str(serial), 0) if isinstance(serial, str) else int(serial)
        reason = options.get("revocation_reason", 0)
        if not isinstance(reason, int) or isinstance(reason, bool):
            raise PublicError(
                "ConversionError",
                3008,
                "invalid 'revocation_reason': must be an integer",
                name="revocation_reason",
            )
        for bad, bound in ((reason < 0, "must be at least 0"), (reason > 10, "must be at most 10")):
            if bad:
                raise PublicError(
                    "ValidationError", 3009, f"invalid 'revocation_reason': {bound}", name="revocation_reason"
                )
        issued = self.certificates.get(number)
        if issued is None:
            raise PublicError("NotFound", 4001, f"Certificate serial number {hex(number)} not found")
        if reason == 7:
            raise PublicError(
                "CertificateOperationError",
                4301,
                "Certificate operation cannot be completed: 7 is not a valid revocation reason",
            )
        issued.revoked = reason
        return {"result": {"revoked": True}, "value": ""}


def _handler(ipa: FreeIPAStandIn, host: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
            pass

        def _send(
            self, status: int, body: bytes, content_type: str, headers: Optional[dict[str, str]] = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _referer_ok(self) -> bool:
            """``HTTP_Status.check_referer``, which every endpoint runs first."""
            referer = self.headers.get("Referer")
            if referer is None or referer.count("://") > 1:
                return False
            parsed = urlparse(referer)
            return (
                parsed.scheme == "https"
                and parsed.hostname == host
                and (parsed.path == "/ipa" or parsed.path.startswith("/ipa/"))
            )

        def _denied(self) -> None:
            body = b"<html><head><title>400 Bad Request</title></head><body><h1>Bad Request</h1>"
            self._send(
                400, body + b"<p><strong>denied</strong></p></body></html>", "text/html; charset=utf-8"
            )

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_POST(self) -> None:
            body = self._body()
            if self.path in ("/ipa/session/login_password", "/ipa/session/json") and not self._referer_ok():
                with ipa.lock:
                    ipa.denied += 1
                self._denied()
            elif self.path == "/ipa/session/login_password":
                self._login(body)
            elif self.path == "/ipa/session/json":
                self._json(body)
            else:
                self._send(404, b"<html><h1>Not Found</h1></html>", "text/html; charset=utf-8")

        def _login(self, body: bytes) -> None:
            content_type = self.headers.get("Content-Type", "").lower()
            if not content_type.startswith("application/x-www-form-urlencoded"):
                self._send(
                    400,
                    b"<html><p>Content-Type must be application/x-www-form-urlencoded</p></html>",
                    "text/html; charset=utf-8",
                )
                return
            form = parse_qs(body.decode())
            user = (form.get("user") or [""])[0]
            password = (form.get("password") or [""])[0]
            token = ipa.login(user, password)
            if token is None:
                self._send(
                    401,
                    b"<html><h1>Invalid Authentication</h1></html>",
                    "text/html; charset=utf-8",
                    {"X-IPA-Rejection-Reason": "invalid-password"},
                )
                return
            cookie = f"ipa_session=MagBearerToken={token};path=/ipa;httponly;secure"
            self._send(200, b"", "text/plain; charset=utf-8", {"Set-Cookie": cookie})

        def _session_user(self) -> Optional[str]:
            for part in self.headers.get("Cookie", "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == "ipa_session" and value.startswith("MagBearerToken="):
                    with ipa.lock:
                        return ipa.sessions.get(value[len("MagBearerToken=") :])
            return None

        def _json(self, body: bytes) -> None:
            with ipa.lock:
                status = ipa.failures.pop(0) if ipa.failures else None
            if status is not None:
                self._send(status, b"<html><h1>Service Unavailable</h1></html>", "text/html; charset=utf-8")
                return
            user = self._session_user()
            if user is None:
                self._send(401, b"", "text/html; charset=utf-8")
                return
            request_id = None
            result: Any = None
            error: Optional[dict[str, Any]] = None
            try:
                # wsgi_execute's own check, after the session: an exact prefix, so a Referer with a
                # port (which check_referer let through) ends here.
                referer = self.headers["Referer"]
                if not referer.startswith(f"https://{host}/ipa"):
                    raise PublicError(
                        "RefererError", 911, f"Missing or invalid HTTP Referer, {referer}", referer=referer
                    )
                try:
                    request = json.loads(body)
                except ValueError as e:
                    raise PublicError("JSONError", 909, f"Invalid JSON-RPC request: {e}") from None
                request_id = request.get("id")
                params = request.get("params")
                if not isinstance(params, list) or len(params) != 2:
                    raise PublicError(
                        "JSONError", 909, "Invalid JSON-RPC request: params must contain [args, options]"
                    )
                result = ipa.execute(user, str(request.get("method")), params[0], params[1])
            except PublicError as e:
                error = {"code": e.code, "message": e.message, "name": e.name, "data": e.data}
                result = None
            answer = {
                "result": result,
                "error": error,
                "id": request_id,
                "principal": f"{user}@{ipa.realm}",
                "version": VERSION,
            }
            self._send(200, json.dumps(answer).encode(), "application/json; charset=utf-8")

    return Handler


@pytest.fixture
def freeipa(tmp_path: Path) -> Iterator[FreeIPAStandIn]:
    """A started stand-in with user ``admin`` (password in ``.users``) and realm ``EXAMPLE.TEST``."""
    directory = tmp_path / "freeipa"
    directory.mkdir()
    ca = TestCA.create("Certificate Authority EXAMPLE.TEST", rsa_key=True)
    ca_file, _ = ca.write(directory)
    key_file, cert_file = ca.server_cert(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    stand_in = FreeIPAStandIn(realm="EXAMPLE.TEST", url="", ca_file=ca_file, ca=ca)
    stand_in.users["admin"] = "Secret-" + secrets.token_hex(8)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stand_in, "127.0.0.1"))
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    stand_in.url = f"https://127.0.0.1:{server.server_address[1]}/ipa"
    thread = threading.Thread(target=server.serve_forever, name="freeipa-stand-in", daemon=True)
    thread.start()
    try:
        yield stand_in
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
