"""The ``[plugin_certs]`` settings every issuer shares, parsed once from the ini section's strings.

Issuer-specific keys (``ipa_*``, ``acme_*``, ``local_*``) are parsed by each issuer module; this module
also holds the small parsers they share (durations, booleans, secret files) and the permission check
that warns when a password sits in a file others can read.
"""

from __future__ import annotations

import datetime
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

from watcher import config as watcher_config
from watcher import configvalues

from . import certificates

logger = logging.getLogger(__name__)

ISSUERS = ("ipa", "acme", "local")

# Every key the section may hold, by who reads it; the core names anything else as a likely typo.
COMMON_KEYS = (
    "issuer",
    "need_cert_annotation",
    "key_type",
    "renew_before",
    "issue_attempts",
    "issue_backoff",
    "issue_timeout",
    "failure_cooldown",
    "revoke_on_delete",
)
ISSUER_KEYS = {
    "ipa": (
        "ipa_url",
        "ipa_user",
        "ipa_password",
        "ipa_password_file",
        "ipa_realm",
        "ipa_ca_cert",
        "ipa_delete_host",
        "owner_id",
    ),
    "acme": (
        "acme_directory",
        "acme_email",
        "acme_account_key_file",
        "acme_ca_bundle",
        "acme_timeout",
        "acme_dns_propagation",
        "acme_txt_ttl",
        # the DNS plugin's keys (watcher.rfc2136), for the DNS-01 TXT records
        "dns_server",
        "dns_port",
        "dns_zone",
        "dns_key_file",
        "dns_key_name",
        "dns_key_secret",
        "dns_key_algorithm",
        "resolv_conf",
        "timeout",
    ),
    "local": ("local_ca_cert", "local_ca_key", "local_validity_days"),
}
KNOWN_KEYS = frozenset(COMMON_KEYS).union(*ISSUER_KEYS.values())


def unused_keys(config: Mapping[str, str], issuer: str) -> list[str]:
    """Keys of another issuer: harmless, but a sign the section says something other than meant."""
    other = KNOWN_KEYS - set(COMMON_KEYS) - set(ISSUER_KEYS.get(issuer, ()))
    return sorted(key for key in config if key in other)


def parse_duration(value: str, key: str) -> datetime.timedelta:
    """``90``, ``45s``, ``30m``, ``720h`` or ``30d``; ValueError names the key."""
    return datetime.timedelta(seconds=configvalues.duration(value, key))


def parse_int(value: str, key: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{key} = {value!r} is not a whole number") from None
    if number < minimum:
        raise ValueError(f"{key} = {number} must be at least {minimum}")
    return number


def parse_bool(value: str, key: str) -> bool:
    return watcher_config.parse_bool(value, key)


@dataclass(frozen=True)
class RenewBefore:
    """When to renew: a fixed time before notAfter, or a share of the certificate's lifetime.

    The default, a third of the lifetime, renews a 90-day ACME certificate 30 days early and a 2-year
    FreeIPA certificate 8 months early, without the operator having to know each CA's lifetime.
    """

    fixed: Optional[datetime.timedelta] = None
    fraction: float = 1 / 3

    def window(self, lifetime: datetime.timedelta) -> datetime.timedelta:
        return self.fixed if self.fixed is not None else lifetime * self.fraction

    def __str__(self) -> str:
        if self.fixed is not None:
            return f"{self.fixed.total_seconds():g}s"
        return f"{self.fraction * 100:g}% of the lifetime"


def parse_renew_before(value: str, key: str = "renew_before") -> RenewBefore:
    """A duration (``720h``, ``30d``) or a percentage of the lifetime (``33%``)."""
    text = value.strip()
    if text.endswith("%"):
        try:
            percent = float(text[:-1])
        except ValueError:
            raise ValueError(f"{key} = {value!r} is not a percentage such as 33%") from None
        if not 0 < percent < 100:
            raise ValueError(f"{key} = {value!r} must be a percentage between 0% and 100%")
        return RenewBefore(fraction=percent / 100)
    return RenewBefore(fixed=parse_duration(text, key))


@dataclass(frozen=True)
class CertSettings:
    """What the plugin itself needs, whatever the issuer."""

    issuer: str
    # The seed's annotation: routes opt in with "<annotation>: 'true'"; our bookkeeping annotations
    # are "<annotation>.state", ".serial", ".not-after" and ".issuer".
    annotation: str = "openshift.io/managed.cert"
    key_type: str = "rsa"
    renew_before: RenewBefore = RenewBefore()
    # A few quick attempts inside one event ride out a blip; more would hold up every other route.
    issue_attempts: int = 3
    issue_backoff: datetime.timedelta = datetime.timedelta(seconds=2)
    # No new attempt starts this long after the first: a CA that hangs costs one route a bounded time.
    issue_timeout: datetime.timedelta = datetime.timedelta(seconds=60)
    # After a route's attempts all failed, resyncs within this time leave it alone so a broken CA or
    # DNS setup is not hammered every few seconds (ACME CAs rate-limit failed validations). When the
    # failure was the CA's or the network's (not the route's), every route waits this long, so an
    # outage does not cost each of hundreds of routes its own round of attempts.
    failure_cooldown: datetime.timedelta = datetime.timedelta(seconds=60)
    revoke_on_delete: bool = False

    def annotation_key(self, suffix: str) -> str:
        return f"{self.annotation}.{suffix}"


def load(config: Mapping[str, str]) -> CertSettings:
    """Every problem at once, as one ValueError, so a bad section is fixed in one go."""
    problems: list[str] = []
    values: dict[str, object] = {}

    issuer = config.get("issuer", "").strip().lower()
    if issuer not in ISSUERS:
        problems.append(f"issuer = {issuer!r} must be one of {', '.join(ISSUERS)}")
    values["issuer"] = issuer

    annotation = config.get("need_cert_annotation", "").strip()
    if annotation:
        values["annotation"] = annotation
    key_type = config.get("key_type", "").strip().lower()
    if key_type:
        if key_type not in certificates.KEY_TYPES:
            problems.append(f"key_type = {key_type!r} must be one of {', '.join(certificates.KEY_TYPES)}")
        values["key_type"] = key_type

    parsers = {
        "renew_before": ("renew_before", parse_renew_before),
        "issue_attempts": ("issue_attempts", lambda v, k: parse_int(v, k, minimum=1)),
        "issue_backoff": ("issue_backoff", parse_duration),
        "issue_timeout": ("issue_timeout", parse_duration),
        "failure_cooldown": ("failure_cooldown", parse_duration),
        "revoke_on_delete": ("revoke_on_delete", parse_bool),
    }
    for key, (field_name, parse) in parsers.items():
        raw = config.get(key, "").strip()
        if not raw:
            continue
        try:
            values[field_name] = parse(raw, key)  # type: ignore[operator]
        except ValueError as e:
            problems.append(str(e))
    if problems:
        raise ValueError("; ".join(problems))
    return CertSettings(**values)  # type: ignore[arg-type]


def read_secret_file(path: str, key: str) -> str:
    """The first line of a secret file (trailing newline stripped), warning when others can read it."""
    warn_if_readable_by_others(path, f"{key} file")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip("\r\n")
    except OSError as e:
        raise ValueError(f"{key} = {path!r} cannot be read: {e.strerror}") from None


def warn_if_readable_by_others(path: Optional[str], what: str) -> bool:
    """Log a WARNING when every user on the machine can read ``path``; True when it warned.

    Group-readable is left alone: that is how a non-root pod reads its Secret volume (``fsGroup`` with
    ``defaultMode: 0440``). World-readable is what a Secret or ConfigMap gets by default (0644), and what
    a config file gets from a default umask.
    """
    if not path:
        return False
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    if mode & stat.S_IROTH:
        logger.warning(
            "The %s %s holds a secret and is readable by every user (mode %s); run chmod 600 on it "
            "(for a Kubernetes Secret volume, set defaultMode: 0400, or 0440 with fsGroup).",
            what,
            path,
            oct(stat.S_IMODE(mode)),
        )
        return True
    return False
