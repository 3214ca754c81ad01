"""The ``ipa`` issuer: FreeIPA's JSON-RPC API, as the seed's ``plugin_ipa`` used it, with its bugs fixed.

Per route: ``host_add`` (an existing host is fine; ``force`` unless the name resolves, else FreeIPA
answers DNSNotARecordError 4019), then ``cert_request`` for ``host/<fqdn>@<realm>`` with a CSR whose CN
is the host; on DELETED ``host_del`` (which revokes the host's certificates itself).

The session: ``POST <ipa_url>/session/login_password`` form-encoded ``user``/``password`` with the
``Referer`` FreeIPA insists on sets the ``ipa_session`` cookie; ``POST <ipa_url>/session/json`` carries
``{"method", "params": [args, options], "id"}`` and answers ``{"result", "error", "id", "principal",
"version"}``. An expired session answers HTTP 401: log in again once and repeat the call.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import requests
from cryptography import x509

from . import certificates, settings
from .issuer import Deleted, IssuanceError, Signed

logger = logging.getLogger(__name__)

# FreeIPA's public error numbers (ipalib/errors.py) that the plugin treats specially.
NOT_FOUND = 4001
DUPLICATE_ENTRY = 4002
DNS_NOT_A_RECORD = 4019

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
        if problems:
            raise ValueError("; ".join(problems))
        return cls(url, user, password, realm, config.get("ipa_ca_cert", "").strip() or None, delete_host)


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
        self.session.headers.update({"Referer": config.url, "Accept": "application/json"})
        self._logged_in = False
        self._next_id = 0

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
        return body["result"]

    def _rpc(self, method: str, args: list[Any], options: dict[str, Any]) -> requests.Response:
        self._next_id += 1
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

    def issue(self, host: str, csr_pem: bytes) -> Signed:
        self.ensure_host(host)
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

    def ensure_host(self, host: str) -> None:
        options = {} if self.resolves(host) else {"force": True}
        try:
            self.client.call("host_add", [host], options)
            logger.info("Added host %s to FreeIPA.", host)
        except IPAError as e:
            if e.code != DUPLICATE_ENTRY:
                raise
            logger.debug("Host %s already exists in FreeIPA.", host)

    def deleted(self, route: Deleted, revoke: bool) -> Optional[str]:
        if self.config.delete_host:
            try:
                self.client.call("host_del", [route.host], {})
            except IPAError as e:
                if e.code != NOT_FOUND:
                    raise
                return f"Host {route.host} of deleted route {route.ident} was already gone from FreeIPA."
            return (
                f"Removed host {route.host} of deleted route {route.ident} from FreeIPA "
                "(which revokes its certificates)."
            )
        if revoke and route.certificate is not None:
            # 5 = cessationOfOperation: the route is gone, nothing was compromised.
            self.client.call("cert_revoke", [route.certificate.serial_number], {"revocation_reason": 5})
            return f"Revoked certificate {route.serial} of deleted route {route.ident} in FreeIPA."
        return None

    def close(self) -> None:
        self.client.close()


def _base64(value: Union[str, Mapping[str, str]]) -> str:
    """FreeIPA sends DER as a base64 string, or as ``{"__base64__": ...}`` for binary values."""
    if isinstance(value, Mapping):
        value = value.get("__base64__", "")
    return str(value)
