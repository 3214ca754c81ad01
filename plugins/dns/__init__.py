"""DNS plugin: an A, AAAA or CNAME record per route, kept in sync with RFC 2136 updates signed with TSIG.

See README.md beside this file for the configuration and a worked example with BIND9. The plugin
contract is the seed's: ``init`` checks ``[plugin_dns]`` once (a bad key stops the start with a message
naming it), ``handle_event`` acts on Route events and returns ``(message, level)`` or raises when the
DNS server did not take a change (the work queue retries it), ``close`` forgets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from . import settings as settings_module
from .plugin import DNSPlugin

__all__ = ["close", "handle_event", "init", "sweep"]

# What the core reads: every key of [plugin_dns] (any other is named as a typo), and the secret ones
# (--check-config shows them as <redacted>).
KEYS = settings_module.KEYS
SECRET_KEYS = ("dns_key_secret",)

_plugin: Optional[DNSPlugin] = None


def init(watcher: Any, config: Mapping[str, str]) -> None:
    """Parse and check the section; raises ValueError naming the key on bad input. Sends nothing."""
    global _plugin
    parsed = settings_module.parse(config)
    settings = getattr(watcher, "config", None)
    namespace = getattr(settings, "namespace", None) or None
    _plugin = DNSPlugin(
        parsed,
        watcher.logger,
        getattr(watcher, "api", None),
        namespace,
        getattr(watcher, "record", None),
        dry_run=bool(getattr(watcher, "dry_run", False)),
    )
    watcher.logger.info("%s", _plugin.describe())


def handle_event(
    watcher: Any, event: Mapping[str, Any], config: Mapping[str, str]
) -> Optional[tuple[str, str]]:
    """Ensure, move or remove the record of the route in ``event``; other kinds are ignored (None)."""
    if _plugin is None:
        init(watcher, config)
    assert _plugin is not None
    return _plugin.handle(event)


def sweep(watcher: Any, objects: list[dict[str, Any]], config: Mapping[str, str]) -> Optional[dict[str, int]]:
    """Records of ours whose route is gone or has another host are removed, missing ones written
    (after the initial list and every ``sweep_period``; needs the key to be allowed to transfer the zone)."""
    if _plugin is None:
        init(watcher, config)
    assert _plugin is not None
    return _plugin.sweep(objects)


def close() -> None:
    global _plugin
    _plugin = None
