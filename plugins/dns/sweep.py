"""The sweep's comparison: what a zone holds of ours against what the routes ask for now.

Events repair what happens while the watcher runs. What happened while it was down (a route deleted or
given another host) leaves records no event will ever name, and a record removed by hand stays missing
until its route changes. So, after the initial list and then every ``sweep_period``, the plugin lists
each zone by AXFR (``rfc2136.Updater.transfer``) and this module says what to do about it: which of the
names carrying this ``owner_id``'s ownership TXT to remove, and which routes' records to write again.
Names without our TXT, or with another owner's, are never in the plan: they are not ours to judge.

Pure: it reads the listing and the routes, and the plugin carries the plan out through the same
conditional updates as events (``records.ensure``/``records.remove``), whose prerequisites still guard
every change against a zone that moved since it was listed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from watcher import rfc2136

from . import names, ownership, records, target
from .settings import Target

# One zone's data as rfc2136.Updater.transfer gives it: name -> type -> (TTL, values).
Listing = Mapping[str, Mapping[str, tuple[int, list[str]]]]


@dataclass(frozen=True)
class Want:
    """A route asking for a host: the record it should have, or None (not admitted: no record)."""

    route: tuple[str, str]
    record: target.Record | None


@dataclass(frozen=True)
class Repair:
    """Write ``record`` for ``route`` at ``host``: missing, wrong, or held by a stale claim."""

    host: str
    route: tuple[str, str]
    record: target.Record


@dataclass(frozen=True)
class Leftover:
    """Our claim at ``host`` that no route stands behind any more, and why (for the log line)."""

    host: str
    claim: ownership.Claim
    why: str


@dataclass(frozen=True)
class Plan:
    """What one zone needs."""

    found: int  # names carrying our ownership TXT
    repairs: tuple[Repair, ...]
    leftovers: tuple[Leftover, ...]


def wanted(objects: Iterable[Mapping[str, Any]], target_settings: Target) -> dict[str, list[Want]]:
    """Host -> the routes asking for it, oldest first (the first of them holds the name in DNS)."""
    wants: dict[str, list[Want]] = {}
    for obj in sorted(objects, key=_age):
        if obj.get("kind") not in (None, "Route"):
            continue
        raw_host = target.record_name(obj)
        if not isinstance(raw_host, str) or names.problem(raw_host):
            continue
        meta = obj.get("metadata") or {}
        route = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        record, _ = target.record_for(obj, target_settings)
        wants.setdefault(names.normalize(raw_host), []).append(Want(route, record))
    return wants


def plan(
    zone: str,
    listing: Listing,
    wants: Mapping[str, list[Want]],
    owner_id: str,
    ttl: int,
    namespace: str | None = None,
) -> Plan:
    """Compare ``zone``'s ``listing`` with ``wants`` (hosts of every zone; those outside ``zone`` are
    ignored). With ``namespace``, claims of routes in other namespaces are left alone: that watch
    cannot see those routes, so it cannot know they are gone."""
    claims: dict[str, ownership.Claim] = {}
    prefix = names.OWNER_LABEL + "."
    for name, types in listing.items():
        if not name.startswith(prefix) or "TXT" not in types:
            continue
        values = types["TXT"][1]
        claim = ownership.parse(values[0]) if len(values) == 1 else None
        if claim is None or claim.owner != owner_id or claim.route is None:
            continue
        if namespace is not None and claim.route[0] != namespace:
            continue
        claims[name[len(prefix) :]] = claim

    repairs: list[Repair] = []
    leftovers: list[Leftover] = []
    for host, claim in sorted(claims.items()):
        holder = next((w for w in wants.get(host, ()) if w.route == claim.route), None)
        claimant = _first_with_record(wants.get(host, ()))
        if holder is not None and holder.record is not None:
            if not _holds(listing.get(host, {}), holder.record, ttl):
                repairs.append(Repair(host, holder.route, holder.record))
        elif holder is not None:
            leftovers.append(Leftover(host, claim, "no router admits its route now"))
        elif claimant is not None and claimant.record is not None:
            # Another route wants the name: taking it over (the stale claim checked) is ensure's job.
            repairs.append(Repair(host, claimant.route, claimant.record))
        else:
            leftovers.append(Leftover(host, claim, _why_stale(claim, wants)))
    for host, host_wants in sorted(wants.items()):
        if host in claims or not rfc2136.in_zone(host, zone) or _addresses(listing.get(host, {})):
            continue  # ours and compared above, another zone's, or someone else's name
        first = _first_with_record(host_wants)
        if first is not None and first.record is not None:
            repairs.append(Repair(host, first.route, first.record))  # missing
    return Plan(len(claims), tuple(repairs), tuple(leftovers))


def _first_with_record(wants: Iterable[Want]) -> Want | None:
    return next((w for w in wants if w.record is not None), None)


def _addresses(types: Mapping[str, tuple[int, list[str]]]) -> dict[str, tuple[int, list[str]]]:
    return {t: v for t, v in types.items() if t in records.ADDRESS_TYPES}


def _holds(types: Mapping[str, tuple[int, list[str]]], record: target.Record, ttl: int) -> bool:
    """True when the name has exactly ``record`` with ``ttl`` and no other address type."""
    present = _addresses(types)
    if set(present) != {record.rdtype}:
        return False
    found_ttl, values = present[record.rdtype]
    return found_ttl == ttl and [v.lower() for v in values] == [record.value.lower()]


def _why_stale(claim: ownership.Claim, wants: Mapping[str, list[Want]]) -> str:
    assert claim.route is not None
    namespace, name = claim.route
    for host, host_wants in wants.items():
        if any(w.route == claim.route for w in host_wants):
            return f"route {namespace}/{name} now has host {host}"
    return f"route {namespace}/{name} is gone"


def _age(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return (
        str(meta.get("creationTimestamp") or ""),
        str(meta.get("namespace") or ""),
        str(meta.get("name") or ""),
    )
