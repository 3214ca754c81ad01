"""The ``acme`` issuer: RFC 8555 with the ``acme`` library, DNS-01 answered through RFC 2136 updates.

DNS-01 works for routes whose hosts the CA cannot reach over HTTP (internal routers, wildcard DNS) and
needs nothing from the router: the TXT record ``_acme-challenge.<host>`` goes to the same authoritative
server, with the same keys, as the DNS plugin's records (``watcher.rfc2136``), and is removed afterwards
whatever happened.
"""

from __future__ import annotations

import datetime
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

import requests
from acme import challenges, client, messages
from acme import errors as acme_errors
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy import errors as jose_errors
from josepy import jwa, jwk

from watcher import rfc2136

from . import certificates, settings
from .issuer import Deleted, IssuanceError, Signed

logger = logging.getLogger(__name__)

USER_AGENT = "event-watcher-certs"
# RFC 5280 reason 5, cessationOfOperation: the route is gone, nothing was compromised.
REVOKE_REASON = 5
# ACME problem types where asking again at once cannot help (or makes things worse: rate limits).
_FINAL_PROBLEMS = {
    "rateLimited",
    "rejectedIdentifier",
    "unauthorized",
    "caa",
    "dns",
    "badCSR",
    "invalidContact",
    "unsupportedIdentifier",
    "externalAccountRequired",
    "userActionRequired",
}


@dataclass(frozen=True)
class ACMESettings:
    directory: str
    account_key_file: str
    email: Optional[str] = None
    ca_bundle: Optional[str] = None
    # Polling the authorizations and the finalization together; the library polls once a second.
    timeout: datetime.timedelta = datetime.timedelta(seconds=90)
    # Wait after the TXT record is visible on the primary, for secondaries to catch up (0 = none).
    propagation: datetime.timedelta = datetime.timedelta(0)
    txt_ttl: int = 60

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> ACMESettings:
        problems = []
        directory = config.get("acme_directory", "").strip()
        if not directory:
            problems.append("acme_directory is required with issuer = acme")
        elif not directory.startswith(("https://", "http://")):
            problems.append(f"acme_directory = {directory!r} must be an https:// URL")
        key_file = config.get("acme_account_key_file", "").strip()
        if not key_file:
            problems.append("acme_account_key_file is required with issuer = acme (it is created if missing)")
        values: dict[str, Any] = {}
        for key, field_name in (("acme_timeout", "timeout"), ("acme_dns_propagation", "propagation")):
            raw = config.get(key, "").strip()
            if raw:
                try:
                    values[field_name] = settings.parse_duration(raw, key)
                except ValueError as e:
                    problems.append(str(e))
        raw_ttl = config.get("acme_txt_ttl", "").strip()
        if raw_ttl:
            try:
                values["txt_ttl"] = settings.parse_int(raw_ttl, "acme_txt_ttl", minimum=1)
            except ValueError as e:
                problems.append(str(e))
        ca_bundle = config.get("acme_ca_bundle", "").strip() or None
        if ca_bundle and not os.path.isfile(ca_bundle):
            problems.append(f"acme_ca_bundle = {ca_bundle!r} is not a file")
        if problems:
            raise ValueError("; ".join(problems))
        return cls(directory, key_file, config.get("acme_email", "").strip() or None, ca_bundle, **values)


def load_or_create_account_key(path: str) -> jwk.JWK:
    """The account key from ``path``; a new RSA 2048 key written there (mode 0600) when it is missing.

    Losing this key means losing the account (and the ability to revoke what it ordered), so it is
    created once and never overwritten.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        settings.warn_if_readable_by_others(path, "acme_account_key_file")
        try:
            with open(path, "rb") as f:
                key = serialization.load_pem_private_key(f.read(), password=None)
        except (OSError, ValueError, TypeError) as e:
            raise ValueError(
                f"acme_account_key_file = {path!r} is not a readable unencrypted PEM key: "
                f"{getattr(e, 'strerror', None) or type(e).__name__}"
            ) from None
    except OSError as e:
        raise ValueError(f"acme_account_key_file = {path!r} cannot be created: {e.strerror}") from None
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with os.fdopen(fd, "wb") as f:
            f.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        logger.info("Created the ACME account key %s.", path)
    if isinstance(key, rsa.RSAPrivateKey):
        return jwk.JWKRSA(key=key)
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return jwk.JWKEC(key=key)
    raise ValueError(f"acme_account_key_file = {path!r} must hold an RSA or ECDSA P-256 key")


class ACMEIssuer:
    name = "acme"

    def __init__(
        self,
        config: ACMESettings,
        dns_server: rfc2136.DNSServer,
        zone: Optional[str],
        resolv_conf: Optional[str] = None,
    ) -> None:
        self.config = config
        self.dns_server = dns_server
        self.zone = zone
        self.resolv_conf = resolv_conf
        self.account_key = load_or_create_account_key(config.account_key_file)
        self._acme: Optional[client.ClientV2] = None

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> ACMEIssuer:
        acme_settings = ACMESettings.from_config(config)
        server, zone = rfc2136.server_from_config(config)
        return cls(acme_settings, server, zone, config.get("resolv_conf", "").strip() or None)

    # --- the account -------------------------------------------------------------------------------

    def _client(self) -> client.ClientV2:
        """Directory and account, fetched on first use and again after any failure (the CA may restart)."""
        if self._acme is not None:
            return self._acme
        alg = jwa.RS256 if isinstance(self.account_key, jwk.JWKRSA) else jwa.ES256
        # verify_ssl goes to requests' verify=, so a CA file path works (the library's hint says bool).
        verify: Any = self.config.ca_bundle or True
        net = client.ClientNetwork(self.account_key, alg=alg, verify_ssl=verify, user_agent=USER_AGENT)
        directory = client.ClientV2.get_directory(self.config.directory, net)
        acme = client.ClientV2(directory, net)
        registration = messages.NewRegistration.from_data(
            email=self.config.email, terms_of_service_agreed=True
        )
        try:
            account = acme.new_account(registration)
            logger.info("Registered ACME account %s at %s.", account.uri, self.config.directory)
        except acme_errors.ConflictError as e:
            # The key already has an account: use it.
            net.account = messages.RegistrationResource(uri=e.location, body=messages.Registration())
            logger.info("Using the existing ACME account %s at %s.", e.location, self.config.directory)
        self._acme = acme
        return acme

    # --- issuing -------------------------------------------------------------------------------------

    def issue(self, host: str, csr_pem: bytes, route: tuple[str, str] = ("", "")) -> Signed:
        records: list[tuple[rfc2136.Updater, str, str]] = []
        try:
            acme = self._client()
            order = acme.new_order(csr_pem)
            answers = []
            for authz in order.authorizations:
                if authz.body.status == messages.STATUS_VALID:
                    continue
                challenge = next(
                    (c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01)), None
                )
                if challenge is None:
                    raise IssuanceError(f"The ACME CA offers no dns-01 challenge for {host}.", retry=False)
                fqdn = challenge.chall.validation_domain_name(authz.body.identifier.value)
                value = challenge.chall.validation(self.account_key)
                updater = self._updater(fqdn)
                updater.set_txt(fqdn, value, self.config.txt_ttl)
                records.append((updater, fqdn, value))
                answers.append(challenge)
            for updater, fqdn, value in records:
                self._wait_visible(updater, fqdn, value)
            if records and self.config.propagation:
                time.sleep(self.config.propagation.total_seconds())
            for challenge in answers:
                acme.answer_challenge(challenge, challenge.chall.response(self.account_key))
            # The library compares with naive local time.
            deadline = datetime.datetime.now() + self.config.timeout
            order = acme.poll_and_finalize(order, deadline)
        except IssuanceError:
            raise
        except Exception as e:
            raise self._error(host, e) from None
        finally:
            for updater, fqdn, value in records:
                try:
                    updater.delete_txt(fqdn, value)
                except rfc2136.DNSUpdateError as e:
                    logger.warning("Could not remove the ACME challenge record %s: %s", fqdn, e)
        try:
            chain = certificates.load_certificates(order.fullchain_pem)
        except certificates.CertificateError as e:
            raise IssuanceError(f"The ACME CA returned an unreadable certificate for {host}: {e}") from None
        if not chain:
            raise IssuanceError(f"The ACME CA returned no certificate for {host}.")
        return Signed(chain[0], tuple(chain[1:]))

    def _updater(self, fqdn: str) -> rfc2136.Updater:
        zone = self.zone
        if zone is None or not rfc2136.in_zone(fqdn, zone):
            zone = rfc2136.find_zone(fqdn, self.dns_server, self.resolv_conf)
        return rfc2136.Updater(self.dns_server, zone)

    def _wait_visible(self, updater: rfc2136.Updater, fqdn: str, value: str) -> None:
        """The primary answers with the new record before the CA is told to look (a few ms normally)."""
        deadline = time.monotonic() + 10
        while value not in updater.query(fqdn, "TXT"):
            if time.monotonic() > deadline:
                raise IssuanceError(f"The challenge record {fqdn} did not appear on {self.dns_server}.")
            time.sleep(0.2)

    def _error(self, host: str, e: BaseException) -> IssuanceError:
        """One sentence per failure, and whether a quick retry may help; the client is rebuilt next time."""
        self._acme = None
        if isinstance(e, rfc2136.DNSUpdateError):
            return IssuanceError(
                f"The ACME challenge record for {host} could not be written: {e}", retry=e.transient
            )
        if isinstance(e, acme_errors.ValidationError):
            details = "; ".join(
                str(c.error)
                for authz in e.failed_authzrs
                for c in authz.body.challenges
                if c.error is not None
            )
            return IssuanceError(
                f"The ACME CA could not validate {host}: {details or 'no detail given'}.", retry=False
            )
        if isinstance(e, acme_errors.TimeoutError):
            return IssuanceError(
                f"The ACME order for {host} was not done within {self.config.timeout.total_seconds():g}s.",
                retry=False,
            )
        if isinstance(e, messages.Error):
            return IssuanceError(
                f"The ACME CA refused the order for {host}: {e}", retry=e.code not in _FINAL_PROBLEMS
            )
        if isinstance(e, requests.RequestException):
            return IssuanceError(
                f"The ACME CA at {self.config.directory} cannot be reached: {type(e).__name__}.", retry=True
            )
        if isinstance(e, (acme_errors.Error, jose_errors.Error)):
            return IssuanceError(f"The ACME exchange for {host} failed: {type(e).__name__}: {e}", retry=True)
        raise e

    # --- route deleted -------------------------------------------------------------------------------

    def deleted(self, route: Deleted, revoke: bool) -> Optional[str]:
        if not revoke or route.certificate is None:
            return None
        try:
            self._client().revoke(route.certificate, REVOKE_REASON)
        except Exception as e:
            raise self._error(route.host, e) from None
        return f"Revoked certificate {route.serial} of deleted route {route.ident} at the ACME CA."

    def close(self) -> None:
        self._acme = None
