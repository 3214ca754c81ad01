"""What every issuer (FreeIPA, ACME, local CA) offers the plugin, and how one is chosen.

The plugin makes the key and the CSR, and checks what comes back; an issuer only turns a CSR for one
host into a signed leaf plus its chain, and cleans up when a route goes away.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional, Protocol

from cryptography import x509


@dataclass(frozen=True)
class Signed:
    """A signed leaf and the intermediates/root the route's ``caCertificate`` should carry."""

    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()


class IssuanceError(Exception):
    """The CA refused or could not be reached; ``str()`` is one sentence without secrets.

    ``retry`` says whether trying again within the same event can help: a timeout can, wrong
    credentials cannot (and retrying them could lock the account).
    """

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True)
class Deleted:
    """What the plugin knows about a route that went away and held one of our certificates."""

    namespace: str
    name: str
    host: str
    certificate: Optional[x509.Certificate]
    serial: str

    @property
    def ident(self) -> str:
        return f"{self.namespace}/{self.name}"


class Issuer(Protocol):
    @property
    def name(self) -> str:
        """``ipa``, ``acme`` or ``local``: recorded in ``<annotation>.issuer``."""
        ...

    def issue(self, host: str, csr_pem: bytes, route: tuple[str, str] = ("", "")) -> Signed:
        """Sign ``csr_pem`` (CN and SAN = ``host``) for ``route`` (namespace, name: what an issuer that
        keeps records names as their owner); raise ``IssuanceError`` on failure."""
        ...

    def deleted(self, route: Deleted, revoke: bool) -> Optional[str]:
        """Clean up after a deleted route; a sentence for the log, or None when nothing was done."""
        ...

    def close(self) -> None: ...


def create(name: str, config: Mapping[str, str]) -> Issuer:
    """Build the configured issuer; ValueError (naming the keys) when its settings are unusable."""
    if name == "local":
        from . import local

        return local.LocalIssuer.from_config(config)
    if name == "ipa":
        from . import ipa

        return ipa.IPAIssuer.from_config(config)
    if name == "acme":
        from . import acme_issuer

        return acme_issuer.ACMEIssuer.from_config(config)
    raise ValueError(f"issuer = {name!r} must be one of ipa, acme, local")
