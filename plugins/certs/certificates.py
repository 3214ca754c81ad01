"""Keys, CSRs and the checks the plugin runs on certificates, all with ``cryptography``.

The seed used ``pkiutils`` (which cannot install on Python >= 3.10) and pyOpenSSL; everything here is
plain ``cryptography`` so that the checks (does this certificate cover the host, does this key belong to
it, how long is left) are the same for every issuer.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import textwrap
import threading
from collections import OrderedDict
from typing import Optional, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]

KEY_TYPES = ("rsa", "ecdsa")
"""``rsa`` is RSA 2048 (what the seed made and what every router accepts); ``ecdsa`` is P-256."""


class CertificateError(ValueError):
    """PEM that cannot be read, or a certificate that does not fit its key; the message is one line."""


def generate_key(key_type: str = "rsa") -> PrivateKey:
    """A fresh private key for one route; a new one on every issuance so a leaked key dies with its cert."""
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    raise CertificateError(f"Unknown key type {key_type!r}: use one of {', '.join(KEY_TYPES)}.")


def key_to_pem(key: PrivateKey) -> str:
    """PKCS#1 / SEC1 PEM (``RSA PRIVATE KEY`` / ``EC PRIVATE KEY``), which every OpenShift router reads."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode("ascii")


def load_key(pem: str) -> PrivateKey:
    """Parse an unencrypted private key; the error never quotes the PEM."""
    try:
        key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError) as e:
        raise CertificateError("The private key is not a readable unencrypted PEM key.") from e
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise CertificateError(f"Unsupported private key type {type(key).__name__}.")
    return key


def build_csr(key: PrivateKey, host: str) -> bytes:
    """A PEM CSR with ``host`` as the subject CN (FreeIPA insists on it) and as the only DNS SAN."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def load_certificates(pem: str) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, in order (a route's ``certificate`` may hold leaf + chain)."""
    try:
        certs = x509.load_pem_x509_certificates(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as e:
        raise CertificateError("The certificate is not readable PEM.") from e
    return certs


def to_pem(certs: Union[x509.Certificate, list[x509.Certificate], tuple[x509.Certificate, ...]]) -> str:
    """PEM text of one certificate or of a chain (concatenated, in the given order)."""
    if isinstance(certs, x509.Certificate):
        certs = [certs]
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certs)


def der_base64_to_pem(der_b64: str) -> str:
    """Add the PEM armour to base64 DER, as FreeIPA's ``cert_request`` returns it."""
    body = "".join(der_b64.split())
    try:
        base64.b64decode(body, validate=True)
    except ValueError as e:
        raise CertificateError("The certificate is not valid base64 DER.") from e
    return (
        "-----BEGIN CERTIFICATE-----\n" + "\n".join(textwrap.wrap(body, 64)) + "\n-----END CERTIFICATE-----\n"
    )


def public_key_bytes(key: Union[PrivateKey, x509.Certificate]) -> bytes:
    """The DER SubjectPublicKeyInfo of a private key or certificate: equal bytes mean the same key pair."""
    public = key.public_key()
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class _PublicKeyCache:
    """Public key of a private key PEM, by the PEM's SHA-256, for the most recent few thousand keys.

    Loading an RSA key checks it thoroughly and takes tens of milliseconds; every resync re-checks every
    route's key, so without this a few thousand routes would cost a core for a minute per resync. The
    digest, not the PEM, is the cache key: the cache holds no secret.
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._entries: OrderedDict[bytes, Optional[bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, pem: str) -> Optional[bytes]:
        digest = hashlib.sha256(pem.encode("utf-8", "replace")).digest()
        with self._lock:
            if digest in self._entries:
                self._entries.move_to_end(digest)
                return self._entries[digest]
        try:
            public: Optional[bytes] = public_key_bytes(load_key(pem))
        except CertificateError:
            public = None
        with self._lock:
            self._entries[digest] = public
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return public


_PUBLIC_KEYS = _PublicKeyCache()


def public_key_of_pem(pem: str) -> Optional[bytes]:
    """DER SubjectPublicKeyInfo of a private key PEM; None when it is missing or unreadable."""
    if not pem:
        return None
    return _PUBLIC_KEYS.get(pem)


def key_matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    """Whether ``key`` is the private half of ``cert``'s public key."""
    return public_key_bytes(cert) == public_key_bytes(key)


def dns_names(cert: x509.Certificate) -> list[str]:
    """The certificate's DNS SANs (empty when it has none)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [name.lower() for name in san.get_values_for_type(x509.DNSName)]


def covers(cert: x509.Certificate, host: str) -> bool:
    """RFC 6125 matching on the DNS SANs: exact, or a wildcard standing for exactly one left-most label.

    The CN is not consulted: browsers ignore it, and every certificate we issue carries the SAN.
    """
    host = host.lower().rstrip(".")
    for name in dns_names(cert):
        name = name.rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def serial_hex(cert: x509.Certificate) -> str:
    """Lower-case hex serial without separators (what ``openssl x509 -serial`` prints, lower-cased)."""
    return format(cert.serial_number, "x")


def not_before(cert: x509.Certificate) -> datetime.datetime:
    return cert.not_valid_before_utc


def not_after(cert: x509.Certificate) -> datetime.datetime:
    return cert.not_valid_after_utc


def lifetime(cert: x509.Certificate) -> datetime.timedelta:
    return not_after(cert) - not_before(cert)


def rfc3339(moment: datetime.datetime) -> str:
    """``2030-01-31T12:00:00Z``: the timestamp form Kubernetes uses in annotations and status."""
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
