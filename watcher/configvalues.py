"""Setting values: one raw string in, a typed value out, or a ValueError whose text is the whole message.

Each parser takes the raw text and a label naming where it came from (``K8S_NAMESPACE``, or
``k8s_namespace in [global] of /etc/watcher/config.ini``), so the message tells the user exactly
what to fix. Bad values are quoted (repr'd, cut short) except for secrets, which never are.
``watcher.config`` maps each setting to one of these in its ``KEYS`` table.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from typing import Optional
from urllib.parse import urlsplit

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")

_TRUE = frozenset({"true", "yes", "1", "on"})
_FALSE = frozenset({"false", "no", "0", "off"})
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_HOSTNAME = re.compile(
    r"^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$"
)
_PLUGIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_MAX_SHOWN = 80  # a bad value is quoted in its error message, cut to this many characters


def parse_bool(value: str, key: str) -> bool:
    """true/false/yes/no/1/0/on/off in any case; anything else is a ValueError naming ``key``."""
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{key}: expected true or false, got {shown(value)}")


def shown(value: str) -> str:
    """A bad (non-secret) value as quoted in a message: repr'd so it stays on one line, and cut short."""
    if len(value) > _MAX_SHOWN:
        return repr(value[:_MAX_SHOWN]) + "..."
    return repr(value)


# --- parsers: (raw string, label for messages) -> value; ValueError carries the whole message -------


def has_userinfo(value: str) -> bool:
    """``https://user:pw@host/...`` (a Sentry DSN, a proxy URL): the value carries its own credential."""
    text = value.strip()
    if "://" not in text:
        return False
    try:
        parts = urlsplit(text)
    except ValueError:
        return True  # cannot tell: treat as secret
    return "@" in parts.netloc


def text(value: str, label: str) -> str:
    return value.strip()


def token(value: str, label: str) -> str:
    secret = value.strip()
    # The value itself is never quoted: it is a secret.
    if any(c.isspace() or not c.isprintable() for c in secret):
        raise ValueError(f"{label}: the token contains whitespace or control characters")
    return secret


def path(value: str, label: str) -> str:
    cleaned = value.strip()
    if "\0" in cleaned:
        raise ValueError(f"{label}: a path cannot contain a NUL character")
    return cleaned


def normalize_endpoint(value: str) -> str:
    """``host:port``, ``https://host:port[/prefix]`` or ``http://...`` -> ``scheme://host:port[/prefix]``.

    Raises ValueError with the reason (not the value) when it is not a usable API server address.
    """
    text = value.strip()
    if not text:
        raise ValueError("it is empty")
    if "://" not in text:
        text = "https://" + text
    try:
        parts = urlsplit(text)
        parts.hostname  # noqa: B018 -- urlsplit validates a bracketed IPv6 host only here
    except ValueError:
        if "[" in text:
            raise ValueError("the address in brackets is not an IPv6 address") from None
        raise ValueError("it is not a URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise ValueError(f"the scheme must be https or http, not {scheme or 'empty'}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials do not belong in the endpoint")
    if parts.query or parts.fragment:
        raise ValueError("the endpoint cannot have a query or fragment")
    host = parts.hostname
    if not host:
        raise ValueError("it has no host name")
    try:
        number = parts.port
    except ValueError:
        raise ValueError("the port must be a number from 1 to 65535") from None
    if number == 0:
        raise ValueError("the port must be a number from 1 to 65535")
    if ":" in host or parts.netloc.startswith("["):
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
        host = f"[{host}]"
    elif not _HOSTNAME.match(host):
        raise ValueError(f"{host!r} is not a host name or address")
    if number is None:
        number = 443 if scheme == "https" else 80
    prefix = parts.path.rstrip("/")
    if any(c.isspace() for c in prefix):
        raise ValueError("the path cannot contain whitespace")
    return f"{scheme}://{host}:{number}{prefix}"


def endpoint(value: str, label: str) -> str:
    try:
        return normalize_endpoint(value)
    except ValueError as e:
        raise ValueError(f"{label}: {shown(value.strip())} is not a valid API endpoint: {e}") from None


def namespace(value: str, label: str) -> str:
    name = value.strip()
    if len(name) > 63 or not _DNS_LABEL.match(name):
        raise ValueError(
            f"{label}: {shown(name)} is not a valid namespace (lower-case letters, digits and '-', "
            "at most 63 characters)"
        )
    return name


def optional_flag(value: str, label: str) -> Optional[bool]:
    return parse_bool(value, label)


def flag(value: str, label: str) -> bool:
    return parse_bool(value, label)


def resource(value: str, label: str) -> str:
    name = value.strip()
    plural = name.split(".", 1)[0]
    group = name.split(".", 1)[1] if "." in name else ""
    if not _DNS_LABEL.match(plural) or (group and not _DNS_SUBDOMAIN.match(group)):
        raise ValueError(
            f"{label}: {shown(name)} is not a resource name: give the lower-case plural such as routes, "
            "optionally with its group as in routes.route.openshift.io"
        )
    return name


def api_group(value: str, label: str) -> str:
    group = value.strip()
    if group.lower() in ("api", "oapi", "core"):
        return group.lower()
    if not _DNS_SUBDOMAIN.match(group):
        raise ValueError(f"{label}: {shown(group)} is not an API group such as route.openshift.io")
    return group


def api_version(value: str, label: str) -> str:
    version = value.strip()
    if not _DNS_LABEL.match(version):
        raise ValueError(f"{label}: {shown(version)} is not an API version such as v1")
    return version


def api_path(value: str, label: str) -> str:
    cleaned = value.strip()
    if any(c.isspace() or not c.isprintable() for c in cleaned) or "?" in cleaned or "#" in cleaned:
        raise ValueError(f"{label}: {shown(cleaned)} is not a URL path such as /apis/route.openshift.io/v1")
    return "/" + cleaned.strip("/")


def plugins(value: str, label: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    if not names:
        raise ValueError(f"{label}: no plugin named in {shown(value)}")
    bad = [name for name in names if not _PLUGIN_NAME.match(name)]
    if bad:
        raise ValueError(f"{label}: {shown(bad[0])} is not a plugin name")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{label}: plugin {duplicates[0]!r} is listed twice")
    return names


def plugin_path(value: str, label: str) -> tuple[str, ...]:
    return tuple(path(entry, label) for entry in value.split(os.pathsep) if entry.strip())


def seconds(value: str, label: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise ValueError(f"{label}: expected a number of seconds, got {shown(value)}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{label}: expected a number of seconds >= 0, got {shown(value)}")
    return number


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration(value: str, label: str) -> float:
    """Seconds, from ``90``, ``1.5``, ``90s``, ``15m``, ``720h``, ``30d``, ``1h30m`` or ``500ms``.

    For plugins' settings (timeouts, intervals, renewal windows); zero is allowed, the caller
    decides whether it makes sense.
    """
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        if not text or _DURATION_PART.sub("", text):
            raise ValueError(
                f"{label}: expected a duration such as 90s, 15m, 1h, 30d or plain seconds, got {shown(value)}"
            ) from None
        number = sum(float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text))
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{label}: expected a duration of zero or more, got {shown(value)}")
    return number


def positive_seconds(value: str, label: str) -> float:
    number = seconds(value, label)
    if number < 1:
        raise ValueError(f"{label}: expected a number of seconds >= 1, got {shown(value)}")
    return number


def log_level(value: str, label: str) -> str:
    level = value.strip().upper()
    if level == "WARN":
        level = "WARNING"
    if level not in LOG_LEVELS:
        raise ValueError(f"{label}: expected one of {', '.join(LOG_LEVELS)}, got {shown(value)}")
    return level


def log_format(value: str, label: str) -> str:
    fmt = value.strip().lower()
    if fmt not in LOG_FORMATS:
        raise ValueError(f"{label}: expected text or json, got {shown(value)}")
    return fmt


def port(value: str, label: str) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise ValueError(f"{label}: expected a port number from 0 to 65535, got {shown(value)}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"{label}: expected a port number from 0 to 65535, got {shown(value)}")
    return number


def address(value: str, label: str) -> str:
    """An IP address to listen on (``0.0.0.0``: every interface, ``127.0.0.1``: this machine only)."""
    text = value.strip().strip("[]")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(
            f"{label}: expected an IP address to listen on such as 127.0.0.1 or 0.0.0.0, got {shown(value)}"
        ) from None


def lease_name(value: str, label: str) -> str:
    name = value.strip()
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise ValueError(f"{label}: {shown(name)} is not a valid Lease name (lower-case, digits, '-', '.')")
    return name


def positive_int(value: str, label: str) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise ValueError(f"{label}: expected a whole number >= 1, got {shown(value)}") from None
    if number < 1:
        raise ValueError(f"{label}: expected a whole number >= 1, got {shown(value)}")
    return number
