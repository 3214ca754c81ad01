"""The ``[plugin_dns]`` section, parsed once at start into a frozen value; ValueError names the bad key."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from watcher import rfc2136

from . import names

DEFAULT_TTL = 180
DEFAULT_OWNER_ID = "event-watcher"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# Every key the plugin reads; the core names anything else in the section as a likely typo.
KEYS = (
    "application_router_ip",
    "router_hostname",
    "dns_server",
    "dns_port",
    "dns_key_file",
    "dns_key_name",
    "dns_key_secret",
    "dns_key_algorithm",
    "dns_zone",
    "resolv_conf",
    "ttl",
    "owner_id",
    "timeout",
    "message_log_level",
)

# The owner id ends up inside the ownership TXT value, whose fields are separated by ',' and '='.
_OWNER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,62}$")


@dataclass(frozen=True)
class Target:
    """Where every route's name points: a fixed A/AAAA/CNAME, or (``rdtype`` None) the admitting router."""

    rdtype: str | None
    value: str | None

    @property
    def from_ingress(self) -> bool:
        return self.rdtype is None


@dataclass(frozen=True)
class Settings:
    server: rfc2136.DNSServer
    zone: str | None  # None: find each host's zone with an SOA query
    resolv_conf: str | None  # name servers to ask for that SOA instead of dns_server
    target: Target
    ttl: int
    owner_id: str
    message_level: int  # the level of the lines that report a change (the seed's message_log_level)


def parse(config: Mapping[str, str]) -> Settings:
    server, zone = rfc2136.server_from_config(config)
    return Settings(
        server=server,
        zone=zone,
        resolv_conf=_resolv_conf(config.get("resolv_conf", "").strip()),
        target=_target(
            config.get("application_router_ip", "").strip(), config.get("router_hostname", "").strip()
        ),
        ttl=_ttl(config.get("ttl", "").strip()),
        owner_id=_owner_id(config.get("owner_id", "").strip()),
        message_level=_level(config.get("message_log_level", "").strip()),
    )


def _target(router_ip: str, router_hostname: str) -> Target:
    if router_ip and router_hostname:
        raise ValueError(
            "application_router_ip and router_hostname are both set: a name can point to an address (A/AAAA) "
            "or to a host name (CNAME), not both."
        )
    if router_ip:
        try:
            address = ipaddress.ip_address(router_ip)
        except ValueError:
            raise ValueError(f"application_router_ip {router_ip!r} is not an IPv4 or IPv6 address.") from None
        return Target("AAAA" if address.version == 6 else "A", address.compressed)
    if router_hostname:
        problem = names.problem(router_hostname, wildcard=False)
        if problem:
            raise ValueError(f"router_hostname {router_hostname!r} is not a valid host name: {problem}.")
        return Target("CNAME", names.normalize(router_hostname) + ".")
    return Target(None, None)


def _ttl(text: str) -> int:
    if not text:
        return DEFAULT_TTL
    try:
        ttl = int(text)
    except ValueError:
        raise ValueError(f"ttl {text!r} is not a whole number of seconds.") from None
    if not 1 <= ttl <= 2_147_483_647:
        raise ValueError(f"ttl {ttl} is out of range 1..2147483647 seconds.")
    return ttl


def _owner_id(text: str) -> str:
    if not text:
        return DEFAULT_OWNER_ID
    if not _OWNER_ID.match(text):
        raise ValueError(
            f"owner_id {text!r} must be 1-63 letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit."
        )
    return text


def _resolv_conf(path: str) -> str | None:
    if not path:
        return None
    if not os.path.isfile(path):
        raise ValueError(f"resolv_conf {path!r} does not exist.")
    return path


def _level(text: str) -> int:
    if not text:
        return logging.INFO
    if text.upper() not in LEVELS:
        raise ValueError(f"message_log_level {text!r} is not one of {', '.join(LEVELS)}.")
    return logging.getLevelName(text.upper())  # type: ignore[no-any-return]
