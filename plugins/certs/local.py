"""The ``local`` issuer: sign with a CA certificate and key from files (a lab, or a private internal CA).

Settings: ``local_ca_cert`` (PEM: the signing CA first, then any chain above it), ``local_ca_key``
(its unencrypted PEM key), ``local_validity_days`` (default 90, like the public ACME CAs).
"""

from __future__ import annotations

import datetime
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from . import certificates, settings
from .issuer import Deleted, IssuanceError, Signed

logger = logging.getLogger(__name__)

# Clocks on routers and clients drift; a certificate valid from "now" is rejected by one a minute behind.
_BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class LocalIssuer:
    ca_chain: tuple[x509.Certificate, ...]
    ca_key: certificates.PrivateKey = field(repr=False)
    validity: datetime.timedelta = datetime.timedelta(days=90)
    name: str = "local"

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> LocalIssuer:
        problems = []
        cert_path = config.get("local_ca_cert", "").strip()
        key_path = config.get("local_ca_key", "").strip()
        if not cert_path:
            problems.append("local_ca_cert is required with issuer = local")
        if not key_path:
            problems.append("local_ca_key is required with issuer = local")
        days = 90
        raw_days = config.get("local_validity_days", "").strip()
        if raw_days:
            try:
                days = settings.parse_int(raw_days, "local_validity_days", minimum=1)
            except ValueError as e:
                problems.append(str(e))
        if problems:
            raise ValueError("; ".join(problems))
        chain = tuple(certificates.load_certificates(_read(cert_path, "local_ca_cert")))
        if not chain:
            raise ValueError(f"local_ca_cert = {cert_path!r} holds no PEM certificate")
        settings.warn_if_readable_by_others(key_path, "local_ca_key file")
        try:
            key = certificates.load_key(_read(key_path, "local_ca_key"))
        except certificates.CertificateError as e:
            raise ValueError(f"local_ca_key = {key_path!r}: {e}") from None
        if not certificates.key_matches(chain[0], key):
            raise ValueError(
                f"local_ca_key = {key_path!r} is not the key of the first certificate in {cert_path!r}"
            )
        if not _is_ca(chain[0]):
            raise ValueError(
                f"local_ca_cert = {cert_path!r} is not a CA certificate (basicConstraints CA:TRUE)"
            )
        return cls(chain, key, datetime.timedelta(days=days))

    def issue(self, host: str, csr_pem: bytes, route: tuple[str, str] = ("", "")) -> Signed:
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as e:
            raise IssuanceError("The certificate request is not readable PEM.", retry=False) from e
        if not csr.is_signature_valid:
            raise IssuanceError("The certificate request's signature does not verify.", retry=False)
        ca = self.ca_chain[0]
        now = datetime.datetime.now(datetime.timezone.utc)
        not_after = min(now + self.validity, ca.not_valid_after_utc)
        public_key = csr.public_key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(ca.subject)
            .public_key(public_key)
            .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(isinstance(public_key, rsa.RSAPublicKey)), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()), critical=False
            )
        )
        leaf = builder.sign(self.ca_key, hashes.SHA256())
        return Signed(leaf, self.ca_chain)

    def deleted(self, route: Deleted, revoke: bool) -> Optional[str]:
        # A file-based CA keeps no record of what it signed, so there is nothing to clean up or revoke.
        return None

    def close(self) -> None:
        pass


def _read(path: str, key: str) -> str:
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{key} = {path!r} cannot be read: {getattr(e, 'strerror', None) or e}") from None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _key_usage(rsa_key: bool) -> x509.KeyUsage:
    """digitalSignature for every key; keyEncipherment only where RSA key transport is possible."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=rsa_key,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
