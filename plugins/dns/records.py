"""Make one host's record right, or remove it, with conditional RFC 2136 updates.

Every change is one message whose prerequisites state what the zone must look like for the change to
be right: "this TXT says the name is ours" before a repair or a removal, "the name is unused" before a
creation. The server applies all or nothing, so a replay (every route is ADDED again at start) or two
watchers racing can never duplicate a record or take a name that someone else holds. Reading the zone
with prerequisites instead of queries also sees the zone's real data: a query for a name that does not
exist is answered from a covering wildcard record.

Nothing here retries DNS failures (``watcher.rfc2136`` does, in one place) or logs: the plugin decides
what to say about each :class:`Result`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import dns.name
import dns.rdata
import dns.update

from watcher import rfc2136

from . import names, ownership
from .target import Record

ADDRESS_TYPES = ("A", "AAAA", "CNAME")


class Outcome(enum.Enum):
    UNCHANGED = "unchanged"  # already right
    CREATED = "created"  # the name was free; record and ownership TXT written
    UPDATED = "updated"  # ours, but pointed elsewhere or had another TTL
    TAKEN_OVER = "taken over"  # held by a route of ours that no longer exists or moved to another host
    CLAIMED = "claimed"  # held by another route of ours: first come, first served
    FOREIGN = "foreign"  # the name exists without our ownership TXT, or another owner's
    CONFLICT = "conflict"  # the zone kept changing under us; the next event or resync decides
    REMOVED = "removed"  # ours, and now gone
    NOT_OURS = "not ours"  # nothing of ours to remove (absent, foreign or another route's)


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    claim: ownership.Claim | None = None  # who holds the name, for CLAIMED/FOREIGN/TAKEN_OVER
    foreign_values: tuple[str, ...] = ()  # the TXT values found when they are not a claim of ours


# Given the claim of another route of ours on a host, True when that claim is stale and may be taken.
StaleCheck = Callable[[ownership.Claim], bool]

_ATTEMPTS = 3  # rounds of "decide, then apply" when the zone changes between our steps


def ensure(
    updater: rfc2136.Updater,
    host: str,
    record: Record,
    ttl: int,
    claim: ownership.Claim,
    is_stale: StaleCheck,
) -> Result:
    """Make ``host`` resolve as ``record`` with our ownership TXT, unless someone else holds the name."""
    owner_name = updater.name(names.owner_name(host))
    name = updater.name(host)
    ours = rfc2136.txt_rdata(claim.value)
    wanted = dns.rdata.from_text("IN", record.rdtype, record.value)
    for _ in range(_ATTEMPTS):
        check = updater.new_update()
        check.present(owner_name, ours)
        check.present(name, wanted)
        for rdtype in ADDRESS_TYPES:
            if rdtype != record.rdtype:
                check.absent(name, rdtype)
        if _applied(updater, check):
            current_ttl, _ = updater.lookup(host, record.rdtype)
            if current_ttl == ttl:
                return Result(Outcome.UNCHANGED)

        repair = updater.new_update()
        repair.present(owner_name, ours)
        _replace_address(repair, name, ttl, wanted)
        if _applied(updater, repair):
            return Result(Outcome.UPDATED)

        create = updater.new_update()
        create.absent(name)
        create.absent(owner_name)
        create.add(name, ttl, wanted)
        create.add(owner_name, ttl, ours)
        if _applied(updater, create):
            return Result(Outcome.CREATED)

        # The name is in use: find out by whom.
        values = updater.query(names.owner_name(host), "TXT")
        if values == [claim.value]:
            continue  # it became ours between two steps: decide again
        holder = ownership.parse(values[0]) if len(values) == 1 else None
        if holder is None or holder.owner != claim.owner:
            return Result(Outcome.FOREIGN, holder, tuple(values))
        if not is_stale(holder):
            return Result(Outcome.CLAIMED, holder)
        takeover = updater.new_update()
        takeover.present(owner_name, rfc2136.txt_rdata(holder.value))
        _replace_address(takeover, name, ttl, wanted)
        takeover.delete(owner_name, "TXT")
        takeover.add(owner_name, ttl, ours)
        if _applied(updater, takeover):
            return Result(Outcome.TAKEN_OVER, holder)
    return Result(Outcome.CONFLICT)


def remove(updater: rfc2136.Updater, host: str, claim: ownership.Claim) -> Result:
    """Remove the record of ``host`` and its ownership TXT, only if the TXT names this very route."""
    owner_name = updater.name(names.owner_name(host))
    removal = updater.new_update()
    removal.present(owner_name, rfc2136.txt_rdata(claim.value))
    name = updater.name(host)
    for rdtype in ADDRESS_TYPES:
        removal.delete(name, rdtype)
    removal.delete(owner_name, "TXT")
    if _applied(updater, removal):
        return Result(Outcome.REMOVED)
    return Result(Outcome.NOT_OURS)


def _replace_address(
    update: dns.update.UpdateMessage, name: dns.name.Name, ttl: int, wanted: dns.rdata.Rdata
) -> None:
    # Delete every address type first: a CNAME tolerates nothing else at its name, so switching from an
    # A (router_ip) to a CNAME (router_hostname) must clear the A in the same message.
    for rdtype in ADDRESS_TYPES:
        update.delete(name, rdtype)
    update.add(name, ttl, wanted)


def _applied(updater: rfc2136.Updater, update: dns.update.UpdateMessage) -> bool:
    """Send; False when a prerequisite did not hold (nothing was changed), DNSUpdateError otherwise."""
    try:
        updater.send(update)
    except rfc2136.PrerequisiteFailed:
        return False
    return True
