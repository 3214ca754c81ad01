"""The ``ipa`` issuer: FreeIPA's JSON-RPC API, as the seed's ``plugin_ipa`` used it, with its bugs fixed.

Per route: ``host_add`` with a ``description`` that claims the host for this watcher's ``owner_id`` and
the route (``force`` unless the name resolves, else FreeIPA answers DNSNotARecordError 4019), then
``cert_request`` for ``host/<fqdn>@<realm>`` with a CSR whose CN is the host; on DELETED ``host_del``
(which revokes the host's certificates itself). **Only hosts whose description is our claim are ever
deleted** or have certificates revoked: a route named like an enrolled machine gets no certificate,
and the machine is left alone. The sweep (``host_find`` on the claim) removes our hosts that no route
wants any more: routes deleted while the watcher was down.

The session: ``POST <ipa_url>/session/login_password`` form-encoded ``user``/``password``, then ``POST
<ipa_url>/session/json`` with ``{"method", "params": [args, options], "id"}``, answered by ``{"result",
"error", "id", "principal", "version"}``. The ``Referer`` must be ``https://<host>/ipa`` exactly,
without a port (``ipaserver/rpcserver.py`` checks the prefix ``https://%s/ipa`` % host), and every call
sends ``version`` (without it, FreeIPA assumes its own API version and warns). An expired session
answers HTTP 401: log in again once and repeat the call.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union
from urllib.parse import urlparse

import requests
from cryptography import x509

from . import certificates, settings
from .issuer import Deleted, IssuanceError, Signed

logger = logging.getLogger(__name__)

# FreeIPA's public error numbers (ipalib/errors.py) that the plugin treats specially.
NOT_FOUND = 4001
DUPLICATE_ENTRY = 4002
DNS_NOT_A_RECORD = 4019
# The API version this client speaks: FreeIPA accepts any 2.x (``Command.verify_client_version``
# checks the major only) and answers in the shapes of the version asked for.
API_VERSION = "2.230"
# 5 = cessationOfOperation (RFC 5280): the route is gone, nothing was compromised.
CESSATION_OF_OPERATION = 5

# What a host's description says when this watcher made it, in the DNS plugin's ownership format.
HERITAGE = "event-watcher"
DEFAULT_OWNER_ID = "event-watcher"
_OWNER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,62}$")


@dataclass(frozen=True)
class Claim:
    """Whose host it is: this program (heritage), which deployment of it (owner), for which route."""

    owner: str
    namespace: str
    name: str

    @property
    def description(self) -> str:
        resource = f"route/{self.namespace}/{self.name}"
        return f"heritage={HERITAGE},{HERITAGE}/owner={self.owner},{HERITAGE}/resource={resource}"

    @classmethod
    def parse(cls, description: str) -> Optional[Claim]:
        fields = dict(part.partition("=")[::2] for part in description.strip().split(","))
        kind, _, rest = fields.get(f"{HERITAGE}/resource", "").partition("/")
        namespace, _, name = rest.partition("/")
        owner = fields.get(f"{HERITAGE}/owner", "")
        if fields.get("heritage") != HERITAGE or not owner or kind != "route" or not name:
            return None
        return cls(owner, namespace, name)

    @property
    def route(self) -> str:
        return f"{self.namespace}/{self.name}"


def owner_search(owner: str) -> str:
    """``host_find``'s criteria (a substring of fqdn or description) for every host of ``owner``: the
    comma after the owner keeps ``owner=a`` from matching ``owner=ab``."""
    return f"{HERITAGE}/owner={owner},"


_TIMEOUT = (10.0, 30.0)  # connect, read: Dogtag signs in seconds; a hung server costs one attempt


class IPAError(IssuanceError):
    """An error object from FreeIPA, reported with its name, code and message as FreeIPA sent them."""

    def __init__(self, method: str, name: str, code: int, message: str) -> None:
        self.method = method
        self.name = name
        self.code = code
        self.message = message
        # FreeIPA's own errors describe the request (no such host, not allowed, bad CSR): repeating the
        # same call within seconds gives the same answer.
        super().__init__(f"FreeIPA {method} failed: {name} ({code}): {message}", retry=False)


@dataclass(frozen=True)
class IPASettings:
    url: str  # ends with /ipa
    user: str
    password: str = field(repr=False)
    realm: str = ""
    ca_cert: Optional[str] = None
    delete_host: bool = True
    owner_id: str = DEFAULT_OWNER_ID

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> IPASettings:
        problems = []
        url = config.get("ipa_url", "").strip().rstrip("/")
        if not url:
            problems.append("ipa_url is required with issuer = ipa")
        elif not url.startswith("https://"):
            problems.append(f"ipa_url = {url!r} must start with https://")
        elif not url.endswith("/ipa"):
            url += "/ipa"
        user = config.get("ipa_user", "").strip()
        if not user:
            problems.append("ipa_user is required with issuer = ipa")
        realm = config.get("ipa_realm", "").strip()
        if not realm:
            problems.append("ipa_realm is required with issuer = ipa")
        password = config.get("ipa_password", "")
        password_file = config.get("ipa_password_file", "").strip()
        if password and password_file:
            problems.append("set ipa_password or ipa_password_file, not both")
        elif password_file:
            try:
                password = settings.read_secret_file(password_file, "ipa_password_file")
            except ValueError as e:
                problems.append(str(e))
        elif not password:
            problems.append("ipa_password or ipa_password_file is required with issuer = ipa")
        delete_host = True
        raw = config.get("ipa_delete_host", "").strip()
        if raw:
            try:
                delete_host = settings.parse_bool(raw, "ipa_delete_host")
            except ValueError as e:
                problems.append(str(e))
        owner_id = config.get("owner_id", "").strip() or DEFAULT_OWNER_ID
        if not _OWNER_ID.match(owner_id):
            problems.append(
                f"owner_id {owner_id!r} must be 1-63 letters, digits, '.', '_', ':' or '-', "
                "starting with a letter or digit"
            )
        if problems:
            raise ValueError("; ".join(problems))
        ca_cert = config.get("ipa_ca_cert", "").strip() or None
        return cls(url, user, password, realm, ca_cert, delete_host, owner_id)

    @property
    def referer(self) -> str:
        """What FreeIPA accepts: ``https://<host>/ipa``, never with the port of ``ipa_url``."""
        host = urlparse(self.url).hostname or ""
        return f"https://{'[' + host + ']' if ':' in host else host}/ipa"


def resolves(host: str) -> bool:
    """Whether the name has an address, which is what FreeIPA checks before adding a host without force."""
    try:
        return bool(socket.getaddrinfo(host, None))
    except (OSError, UnicodeError):
        return False


class IPAClient:
    """A password session with FreeIPA's JSON-RPC endpoint."""

    def __init__(self, config: IPASettings) -> None:
        self.config = config
        self.session = requests.Session()
        # Passed with every request: a session-wide verify loses to REQUESTS_CA_BUNDLE in the environment.
        self.verify: Union[str, bool] = config.ca_cert or True
        self.session.headers.update({"Referer": config.referer, "Accept": "application/json"})
        self._logged_in = False
        self._next_id = 0
        self._warned: set[str] = set()  # FreeIPA's warnings (``messages``), each said once

    def close(self) -> None:
        self.session.close()

    def login(self) -> None:
        url = f"{self.config.url}/session/login_password"
        # A dict body makes requests send application/x-www-form-urlencoded, which FreeIPA requires.
        response = self._post(url, "login", data={"user": self.config.user, "password": self.config.password})
        if response.status_code == 401:
            reason = response.headers.get("X-IPA-Rejection-Reason", "denied")
            raise IssuanceError(
                f"FreeIPA at {self.config.url} refused the login of user {self.config.user!r}: "
                f"{reason} (HTTP 401).",
                retry=False,
            )
        if response.status_code != 200:
            raise IssuanceError(
                f"FreeIPA at {self.config.url} answered HTTP {response.status_code} to the login of user "
                f"{self.config.user!r}.",
                retry=response.status_code >= 500,
            )
        self._logged_in = True
        logger.debug("Logged in to FreeIPA at %s as %s.", self.config.url, self.config.user)

    def call(self, method: str, args: list[Any], options: Optional[dict[str, Any]] = None) -> Any:
        """The command's ``result``; IPAError carrying FreeIPA's error, IssuanceError for HTTP trouble."""
        if not self._logged_in:
            self.login()
        response = self._rpc(method, args, options or {})
        if response.status_code == 401:
            logger.info("The FreeIPA session at %s expired; logging in again.", self.config.url)
            self._logged_in = False
            self.login()
            response = self._rpc(method, args, options or {})
        if response.status_code != 200:
            raise IssuanceError(
                f"FreeIPA at {self.config.url} answered HTTP {response.status_code} to {method}.",
                retry=response.status_code >= 500 or response.status_code == 401,
            )
        try:
            body = response.json()
        except ValueError:
            raise IssuanceError(
                f"FreeIPA at {self.config.url} answered {method} with something other than JSON."
            ) from None
        error = body.get("error") if isinstance(body, dict) else None
        if error:
            raise IPAError(
                method, str(error.get("name", "?")), int(error.get("code", 0)), str(error.get("message", ""))
            )
        if not isinstance(body, dict) or not isinstance(body.get("result"), dict):
            raise IssuanceError(f"FreeIPA at {self.config.url} answered {method} without a result.")
        self._warn(method, body["result"].get("messages") or ())
        return body["result"]

    def _warn(self, method: str, messages: Iterable[Any]) -> None:
        for message in messages:
            if isinstance(message, Mapping) and message.get("type") == "warning":
                name = str(message.get("name", "?"))
                if name not in self._warned:
                    self._warned.add(name)
                    logger.warning(
                        "FreeIPA warns about %s: %s (%s).", method, message.get("message", ""), name
                    )

    def _rpc(self, method: str, args: list[Any], options: dict[str, Any]) -> requests.Response:
        self._next_id += 1
        options = {**options, "version": API_VERSION}
        payload = {"method": method, "params": [args, options], "id": self._next_id}
        return self._post(f"{self.config.url}/session/json", method, json=payload)

    def _post(self, url: str, what: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.post(url, timeout=_TIMEOUT, verify=self.verify, **kwargs)
        except requests.RequestException as e:
            # The exception text names the URL and the cause, never the body (which may hold the password).
            raise IssuanceError(
                f"FreeIPA at {self.config.url} cannot be reached for {what}: {type(e).__name__}."
            ) from None


class IPAIssuer:
    name = "ipa"

    def __init__(self, config: IPASettings, resolver: Callable[[str], bool] = resolves) -> None:
        self.config = config
        self.client = IPAClient(config)
        self.resolves = resolver
        self.ca_chain: tuple[x509.Certificate, ...] = ()
        if config.ca_cert:
            try:
                with open(config.ca_cert, encoding="ascii") as f:
                    self.ca_chain = tuple(certificates.load_certificates(f.read()))
            except (OSError, UnicodeDecodeError, certificates.CertificateError) as e:
                raise ValueError(f"ipa_ca_cert = {config.ca_cert!r} cannot be read as PEM: {e}") from None

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> IPAIssuer:
        return cls(IPASettings.from_config(config))

    def principal(self, host: str) -> str:
        return f"host/{host}@{self.config.realm}"

    def issue(self, host: str, csr_pem: bytes, route: tuple[str, str] = ("", "")) -> Signed:
        self.ensure_host(host, route)
        result = self.client.call(
            "cert_request", [csr_pem.decode("ascii")], {"principal": self.principal(host), "chain": True}
        )
        result = result.get("result", result)
        certificate = result.get("certificate")
        if not certificate:
            raise IssuanceError(f"FreeIPA cert_request for {host} returned no certificate.", retry=False)
        try:
            leaf = certificates.load_certificates(certificates.der_base64_to_pem(_base64(certificate)))[0]
            chain = tuple(
                certificates.load_certificates(certificates.der_base64_to_pem(_base64(item)))[0]
                for item in result.get("certificate_chain") or []
            )
        except certificates.CertificateError as e:
            raise IssuanceError(
                f"FreeIPA cert_request for {host} returned an unreadable certificate: {e}"
            ) from None
        # certificate_chain, when FreeIPA sends it, starts with the leaf itself.
        chain = tuple(c for c in chain if c != leaf) or self.ca_chain
        return Signed(leaf, chain)

    def ensure_host(self, host: str, route: tuple[str, str]) -> None:
        """The host exists and is ours; a host someone else made is refused, never taken over."""
        claim = Claim(self.config.owner_id, *route)
        options: dict[str, Any] = {"description": claim.description}
        if not self.resolves(host):
            options["force"] = True
        try:
            self.client.call("host_add", [host], options)
            logger.info("Added host %s to FreeIPA for route %s (owner %s).", host, claim.route, claim.owner)
            return
        except IPAError as e:
            if e.code != DUPLICATE_ENTRY:
                raise
        found = self.owner_of(host)
        if found is None or found.owner != self.config.owner_id:
            origin = (
                "was not made by this watcher"
                if found is None
                else f"was made by owner {found.owner!r}, not {self.config.owner_id!r}"
            )
            raise IssuanceError(
                f"Host {host} already exists in FreeIPA and {origin}: no certificate is requested for "
                "it, and the host is left alone. Give the route another host, or mark the host as this "
                f"watcher's with ipa host-mod {host} --desc='{claim.description}'",
                retry=False,
            )
        logger.debug("Host %s already exists in FreeIPA for route %s of ours.", host, found.route)

    def owner_of(self, host: str) -> Optional[Claim]:
        """The claim in the host's description, None when it has none (or the host is gone)."""
        try:
            entry = self.client.call("host_show", [host], {})
        except IPAError as e:
            if e.code != NOT_FOUND:
                raise
            return None
        return _claim(entry.get("result", entry))

    def deleted(self, route: Deleted, revoke: bool) -> Optional[str]:
        if self.config.delete_host:
            try:
                entry = self.client.call("host_show", [route.host], {})
            except IPAError as e:
                if e.code != NOT_FOUND:
                    raise
                return f"Host {route.host} of deleted route {route.ident} was already gone from FreeIPA."
            claim = _claim(entry.get("result", entry))
            if claim is None or claim.owner != self.config.owner_id or claim.route != route.ident:
                whose = (
                    "not made by this watcher"
                    if claim is None
                    else f"claimed for {claim.owner}'s route {claim.route}"
                )
                return f"Host {route.host} of deleted route {route.ident} is {whose}; left alone in FreeIPA."
            self.client.call("host_del", [route.host], {})
            return (
                f"Removed host {route.host} of deleted route {route.ident} from FreeIPA "
                "(which revokes its certificates)."
            )
        if revoke and route.certificate is not None:
            # The route carried our serial annotation on this very certificate: we issued it.
            self.client.call(
                "cert_revoke",
                [route.certificate.serial_number],
                {"revocation_reason": CESSATION_OF_OPERATION},
            )
            return f"Revoked certificate {route.serial} of deleted route {route.ident} in FreeIPA."
        return None

    def sweep(self, wanted: set[str], revoke: bool) -> dict[str, int]:
        """Remove our hosts that no route wants (``wanted``: the hosts of opted-in routes), as a
        delete would: ``host_del``, or with ``ipa_delete_host = false`` and ``revoke``, revoke their
        certificates that are still valid. Hosts of other owners are never looked at twice."""
        found = self.client.call("host_find", [owner_search(self.config.owner_id)], {"sizelimit": 0})
        entries = [e for e in found.get("result") or [] if isinstance(e, Mapping)]
        if found.get("truncated"):
            logger.warning(
                "FreeIPA's host_find returned only %d hosts of owner %s (a search limit): the sweep "
                "repairs those, the rest at a later sweep once some are gone.",
                len(entries),
                self.config.owner_id,
            )
        ours = [
            (_fqdn(e), claim) for e in entries if (claim := _claim(e)) and claim.owner == self.config.owner_id
        ]
        counts = {"found": len(ours), "deleted": 0, "revoked": 0}
        for fqdn, claim in ours:
            if not fqdn or fqdn in wanted:
                continue
            if self.config.delete_host:
                try:
                    self.client.call("host_del", [fqdn], {})
                except IPAError as e:
                    if e.code != NOT_FOUND:
                        raise
                    continue
                counts["deleted"] += 1
                logger.info(
                    "Removed host %s of route %s, which is gone, from FreeIPA (revoking its certificates).",
                    fqdn,
                    claim.route,
                )
            elif revoke:
                counts["revoked"] += self._revoke_all(fqdn, claim)
        return counts

    def _revoke_all(self, fqdn: str, claim: Claim) -> int:
        listed = self.client.call("cert_find", [], {"host": [fqdn]})
        revoked = 0
        for cert in listed.get("result") or []:
            if not isinstance(cert, Mapping) or cert.get("revoked"):
                continue
            self.client.call(
                "cert_revoke", [cert.get("serial_number")], {"revocation_reason": CESSATION_OF_OPERATION}
            )
            revoked += 1
            logger.info(
                "Revoked certificate %s of host %s (route %s, which is gone) in FreeIPA.",
                cert.get("serial_number"),
                fqdn,
                claim.route,
            )
        return revoked

    def close(self) -> None:
        self.client.close()


def _first(entry: Mapping[str, Any], attribute: str) -> str:
    """FreeIPA's entries hold attributes as lists of values."""
    value = entry.get(attribute)
    if isinstance(value, list):
        value = value[0] if value else ""
    return str(value or "")


def _fqdn(entry: Mapping[str, Any]) -> str:
    return _first(entry, "fqdn").lower()


def _claim(entry: Mapping[str, Any]) -> Optional[Claim]:
    return Claim.parse(_first(entry, "description"))


def _base64(value: Union[str, Mapping[str, str]]) -> str:
    """FreeIPA sends DER as a base64 string, or as ``{"__base64__": ...}`` for binary values."""
    if isinstance(value, Mapping):
        value = value.get("__base64__", "")
    return str(value)
