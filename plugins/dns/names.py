"""Host names: what a route may ask for (RFC 1123, one leading ``*.``), and where its ownership TXT lives."""

from __future__ import annotations

import re

# Beside each record, at a name no route can claim (RFC 1123 host names have no '_'), so that the TXT
# can sit next to a CNAME (which tolerates nothing else at its own name) and never collides with a
# route's host or with ACME's _acme-challenge.
OWNER_LABEL = "_event-watcher"

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalize(host: str) -> str:
    """Lower case, no trailing dot: DNS names compare case-insensitively."""
    return host.strip().rstrip(".").lower()


def problem(host: str, wildcard: bool = True) -> str | None:
    """Why ``host`` is not an RFC 1123 host name (``*.`` first allowed when ``wildcard``), or None."""
    if not isinstance(host, str) or not host:
        return "it is empty"
    if host != host.strip():
        return "it has spaces around it"
    name = host.rstrip(".").lower()
    if len(name) > 253:
        return f"it is {len(name)} characters long (at most 253)"
    labels = name.split(".")
    if len(labels) < 2:
        return "it has a single label"
    for index, label in enumerate(labels):
        if label == "*" and index == 0 and wildcard:
            continue
        if label == "*":
            return "'*' is only allowed as the whole first label"
        if not label:
            return "it has an empty label"
        if len(label) > 63:
            return f"the label {label[:20]!r}... is longer than 63 characters"
        if not _LABEL.match(label):
            return f"the label {label!r} has characters other than a-z, 0-9 and '-' or starts/ends with '-'"
    return None


def owner_name(host: str) -> str:
    """Where the ownership TXT of ``host`` lives."""
    return f"{OWNER_LABEL}.{normalize(host)}"
