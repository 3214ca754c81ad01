"""A throw-away certificate authority for test servers' TLS (Pebble, the FreeIPA stand-in) and test CAs.

Written directly with ``cryptography`` and independent of the certificates plugin, so a test server
never signs with the code the test is checking.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Key = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def key_pem(key: Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class TestCA:
    __test__ = False  # not a pytest test class

    key: Key
    cert: x509.Certificate

    @classmethod
    def create(cls, common_name: str = "Test CA", *, rsa_key: bool = False) -> TestCA:
        key: Key = (
            rsa.generate_private_key(65537, 2048) if rsa_key else ec.generate_private_key(ec.SECP256R1())
        )
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(days=1))
            .not_valid_after(_now() + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def sign(
        self,
        public_key: object,
        *,
        common_name: str,
        dns_names: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
        not_before: Optional[datetime.datetime] = None,
        not_after: Optional[datetime.datetime] = None,
        serial: Optional[int] = None,
    ) -> x509.Certificate:
        """A serverAuth leaf for ``public_key`` with the given names and validity."""
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(serial or x509.random_serial_number())
            .not_valid_before(not_before or _now() - datetime.timedelta(minutes=5))
            .not_valid_after(not_after or _now() + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def server_cert(self, directory: Path, name: str = "server") -> tuple[Path, Path]:
        """Key and certificate files for a TLS server on localhost / 127.0.0.1 / ::1."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.sign(
            key.public_key(), common_name="localhost", dns_names=("localhost",), ips=("127.0.0.1", "::1")
        )
        key_path = directory / f"{name}-key.pem"
        cert_path = directory / f"{name}-cert.pem"
        key_path.write_bytes(key_pem(key))
        key_path.chmod(0o600)
        cert_path.write_bytes(cert_pem(cert))
        return key_path, cert_path

    def write(self, directory: Path, name: str = "ca") -> tuple[Path, Path]:
        """``<name>.pem`` (certificate) and ``<name>-key.pem`` (key, mode 0600) in ``directory``."""
        cert_path = directory / f"{name}.pem"
        key_path = directory / f"{name}-key.pem"
        cert_path.write_bytes(cert_pem(self.cert))
        key_path.write_bytes(key_pem(self.key))
        key_path.chmod(0o600)
        return cert_path, key_path
