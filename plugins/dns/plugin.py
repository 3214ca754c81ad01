"""From route events to DNS changes: which hosts to ensure or remove, and what to say about it.

One :class:`DNSPlugin` lives for the whole run. It remembers the host it last saw for each route, so
that a MODIFIED with a new ``spec.host`` removes the old name; everything else it needs is in DNS (the
ownership TXT records), so a restart loses nothing but that memory.

A DNS failure raises (``rfc2136.DNSUpdateError``, naming the rcode): the work queue retries that
route with backoff until the server takes the change, and counts every failed attempt. A DELETED that
fails is retried with the same object, so no removal waits only in memory. What this plugin will not
change (a name that belongs to someone else) is a warning, not a failure: retrying would not help.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from watcher import TemporaryError, errors, rfc2136

from . import names, ownership, records, sweep, target
from .settings import Settings
from .sweep import Plan
from .zones import Zones


@dataclass
class Report:
    """The parts of one event's outcome, logged as one line at the level of the worst part."""

    subject: str
    parts: list[tuple[int, str]] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message) to post

    def add(self, level: int, text: str, reason: str | None = None, type_: str = "Normal") -> None:
        """One part of the line; with ``reason``, also a Kubernetes Event on the route."""
        self.parts.append((level, text))
        if reason is not None:
            self.events.append((type_, reason, text[0].upper() + text[1:] + "."))

    def result(self) -> tuple[str, str] | None:
        if not self.parts:
            return None
        level = max(level for level, _ in self.parts)
        return f"{self.subject}: {'; '.join(text for _, text in self.parts)}.", logging.getLevelName(level)


class DNSPlugin:
    def __init__(
        self,
        settings: Settings,
        logger: logging.Logger,
        api: Any = None,
        namespace: str | None = None,
        record: Callable[[Mapping[str, Any], str, str, str], None] | None = None,
        *,
        dry_run: bool = False,
    ) -> None:
        self.settings = settings
        self.logger = logger
        self.api = api
        self.record = record  # watcher.record: Events on the routes (None: a watcher without it)
        self.namespace = namespace  # the watch's one namespace: the sweep judges only its routes' names
        self.zones = Zones(settings.server, settings.zone, settings.resolv_conf, dry_run=dry_run)
        self._dry = " (dry run: nothing written)" if dry_run else ""  # said on every report
        self._hosts: dict[tuple[str, str], str] = {}  # route -> the host we last acted on
        self._warned: dict[tuple[str, str], str] = {}  # route -> the last warning, said once
        self._outside: set[str] = set()  # hosts already reported as outside every zone
        self._unlisted: set[str] = set()  # zones the sweep was refused a transfer of, said once each

    def describe(self) -> str:
        s = self.settings
        key = (
            f"TSIG key {s.server.key.name} ({s.server.key.algorithm})"
            if s.server.key
            else "no TSIG key (unsigned)"
        )
        if s.target.from_ingress:
            points = "the canonical hostname of the router that admitted each route (CNAME)"
        else:
            points = f"{s.target.rdtype} {s.target.value}"
        return (
            f"DNS updates go to {s.server} with {key}, {self.zones.describe()}; "
            f"route hosts point to {points} with TTL {s.ttl}; ownership records name owner {s.owner_id!r}."
            + (" Dry run: updates are only checked and logged, nothing is written." if self._dry else "")
        )

    # --- events ------------------------------------------------------------------------------------

    def handle(self, event: Mapping[str, Any]) -> tuple[str, str] | None:
        """Bring DNS to what the event's route asks for; raises ``rfc2136.DNSUpdateError`` when the
        server did not take it (what was done before the failure is simply found done on the retry)."""
        obj = event.get("object")
        if not isinstance(obj, Mapping) or obj.get("kind") != "Route":
            return None
        meta = obj.get("metadata") or {}
        route = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        report = Report(f"Route {route[0]}/{route[1]}{self._dry}")
        claim = ownership.claim_for(self.settings.owner_id, *route)
        try:
            if event.get("type") == "DELETED":
                for host in sorted(self._hosts_of_deleted(route, obj)):
                    self._remove(host, claim, report)
                self._hosts.pop(route, None)  # only once every removal went through
                self._warned.pop(route, None)
            else:
                self._changed(route, obj, claim, report)
        except rfc2136.DNSUpdateError as e:
            report.events.append(("Warning", "DNSUpdateFailed", f"{e} Retrying with backoff."))
            raise
        finally:
            if self.record is not None:
                for type_, reason, message in report.events:
                    self.record(obj, type_, reason, message)
        return report.result()

    def _hosts_of_deleted(self, route: tuple[str, str], obj: Mapping[str, Any]) -> set[str]:
        hosts = set()
        previous = self._hosts.get(route)
        if previous:
            hosts.add(previous)
        raw_host = target.record_name(obj)
        if raw_host and not names.problem(raw_host):
            hosts.add(names.normalize(raw_host))
        return hosts

    def _changed(
        self, route: tuple[str, str], obj: Mapping[str, Any], claim: ownership.Claim, report: Report
    ) -> None:
        raw_host = target.record_name(obj)
        previous = self._hosts.get(route)
        problem = names.problem(raw_host) if raw_host else None
        host = names.normalize(raw_host) if raw_host and not problem else None
        if previous is not None and previous != host:
            self._remove(previous, claim, report)
            del self._hosts[route]
        if not raw_host:
            report.add(logging.DEBUG, "it has no spec.host yet, so no DNS record")
            return
        if problem or host is None:
            report.add(
                logging.WARNING,
                f"host {str(raw_host)[:100]!r} is not a valid DNS name ({problem}); nothing sent",
            )
            return
        self._hosts[route] = host
        record, why_not = target.record_for(obj, self.settings.target)
        if record is None:
            # Not (or no longer) admitted: a record of ours would point nowhere useful.
            self._remove(host, claim, report)
            report.add(logging.DEBUG, f"no record for {host}: {why_not}")
            return
        self._ensure(route, host, record, claim, report)

    # --- the sweep ----------------------------------------------------------------------------------

    def sweep(self, objects: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """List every zone the routes use (and any found before), remove the records of ours whose
        route is gone or has another host, write what is missing or wrong; counts by action.

        A zone the server will not transfer is said once (WARNING) and skipped: its leftovers of a
        downtime cannot be found. A server that is down raises, and the work queue retries the sweep.
        """
        wants = sweep.wanted(objects, self.settings.target)
        counts = {"found": 0, "created": 0, "updated": 0, "deleted": 0}
        for zone in self._sweep_zones(wants):
            updater = self.zones.updater(zone)
            try:
                listing = updater.transfer()
            except rfc2136.DNSUpdateError as e:
                if e.transient:
                    raise
                if zone not in self._unlisted:
                    self._unlisted.add(zone)
                    self.logger.warning(
                        "Cannot list zone %s to sweep it (%s): records of routes deleted while the watcher "
                        "was down cannot be found and removed. Let the key transfer the zone (BIND: "
                        'allow-transfer { key "%s"; };).',
                        zone,
                        e.rcode,
                        self.settings.server.key.name if self.settings.server.key else "<key>",
                    )
                continue
            self._unlisted.discard(zone)
            self._sweep_zone(
                updater,
                sweep.plan(zone, listing, wants, self.settings.owner_id, self.settings.ttl, self.namespace),
                counts,
            )
        return counts

    def _sweep_zone(self, updater: rfc2136.Updater, plan: Plan, counts: dict[str, int]) -> None:
        """Carry out one zone's plan with the same conditional updates as events, counting."""
        counts["found"] += plan.found
        for leftover in plan.leftovers:
            if records.remove(updater, leftover.host, leftover.claim).outcome is records.Outcome.REMOVED:
                counts["deleted"] += 1
                route = leftover.claim.route
                if route is not None and self._hosts.get(route) == leftover.host:
                    del self._hosts[route]
                self.logger.log(
                    self.settings.message_level,
                    "Swept the record of %s%s: %s.",
                    leftover.host,
                    self._dry,
                    leftover.why,
                )
        for repair in plan.repairs:
            report = Report(f"Route {repair.route[0]}/{repair.route[1]} (sweep){self._dry}")
            claim = ownership.claim_for(self.settings.owner_id, *repair.route)
            outcome = self._ensure(repair.route, repair.host, repair.record, claim, report)
            self._hosts[repair.route] = repair.host
            if outcome is records.Outcome.CREATED:
                counts["created"] += 1
            elif outcome in (records.Outcome.UPDATED, records.Outcome.TAKEN_OVER):
                counts["updated"] += 1
            said = report.result()
            if said is not None:
                self.logger.log(logging.getLevelName(said[1]), "%s", said[0])

    def _sweep_zones(self, wants: Mapping[str, Any]) -> list[str]:
        """``dns_zone``, or every zone a wanted host is in and every zone found before (a zone whose
        routes are all gone still holds their records)."""
        if self.settings.zone is not None:
            return [self.settings.zone]
        zones = {zone for zone in map(self.zones.zone_for, wants) if zone is not None}
        return sorted(zones | self.zones.known())

    # --- one host ----------------------------------------------------------------------------------

    def _zone(self, host: str, report: Report) -> str | None:
        zone = self.zones.zone_for(host)
        if zone is None:
            if host in self._outside:
                report.add(logging.DEBUG, f"{host} is outside the zone, skipped")
            else:
                self._outside.add(host)
                where = self.settings.zone or f"any zone {self.settings.server} serves"
                report.add(logging.INFO, f"{host} is outside {where}, skipped (said once per host)")
        return zone

    def _ensure(
        self, route: tuple[str, str], host: str, record: target.Record, claim: ownership.Claim, report: Report
    ) -> records.Outcome | None:
        """What ``records.ensure`` did, None when the host is outside every zone."""
        zone = self._zone(host, report)
        if zone is None:
            return None
        ttl = self.settings.ttl
        result = records.ensure(self.zones.updater(zone), host, record, ttl, claim, self._stale_check(host))
        outcome = result.outcome
        level = self.settings.message_level
        if outcome is records.Outcome.UNCHANGED:
            report.add(logging.DEBUG, f"{host} {record} is up to date")
        elif outcome is records.Outcome.CREATED:
            report.add(
                level, f"created {host} {record} (TTL {ttl}) and its ownership record", "DNSRecordCreated"
            )
        elif outcome is records.Outcome.UPDATED:
            report.add(level, f"updated {host} to {record} (TTL {ttl})", "DNSRecordUpdated")
        elif outcome is records.Outcome.TAKEN_OVER:
            report.add(
                level,
                f"took {host} over from {_holder(result.claim)}, which no longer uses it; now {record}",
                "DNSRecordUpdated",
            )
        elif outcome is records.Outcome.CONFLICT:
            raise TemporaryError(f"{host} kept changing while being updated")
        else:
            self._warn_once(route, report, _refusal(host, result))
            return outcome
        self._warned.pop(route, None)
        return outcome

    def _remove(self, host: str, claim: ownership.Claim, report: Report) -> None:
        zone = self.zones.zone_for(host)
        if zone is None:
            return
        result = records.remove(self.zones.updater(zone), host, claim)
        if result.outcome is records.Outcome.REMOVED:
            report.add(self.settings.message_level, f"removed the record of {host}", "DNSRecordRemoved")
        else:
            report.add(logging.DEBUG, f"nothing of this route's at {host} to remove")

    def _stale_check(self, host: str) -> records.StaleCheck:
        """A claim by another route of ours is stale when that route is gone or now has another host."""

        def is_stale(holder: ownership.Claim) -> bool:
            route = holder.route
            if route is None or self.api is None:
                return False
            try:
                current = self.api.get(route[0] or None, route[1])
            except errors.NotFound:
                return True
            except (errors.WatcherError, OSError) as e:
                self.logger.debug("Cannot check route %s/%s, which holds %s: %s", route[0], route[1], host, e)
                return False
            current_host = (current.get("spec") or {}).get("host")
            return not current_host or names.normalize(str(current_host)) != host

        return is_stale

    def _warn_once(self, route: tuple[str, str], report: Report, text: str) -> None:
        """A name held by someone else stays so until a person acts: say it once, not on every resync."""
        if self._warned.get(route) == text:
            report.add(logging.DEBUG, text)
        else:
            self._warned[route] = text
            report.add(logging.WARNING, text, "DNSNameInUse", "Warning")


def _holder(claim: ownership.Claim | None) -> str:
    if claim is None:
        return "nobody"
    route = claim.route
    return f"route {route[0]}/{route[1]}" if route else claim.resource


def _refusal(host: str, result: records.Result) -> str:
    owner_name = names.owner_name(host)
    if result.outcome is records.Outcome.CLAIMED:
        return f"{host} already belongs to {_holder(result.claim)}; left alone (first come, first served)"
    if result.claim is not None:
        return f"{host} belongs to owner {result.claim.owner!r} ({result.claim.resource}); left alone"
    if result.foreign_values:
        return f"{host} has an ownership TXT at {owner_name} that is not ours; left alone"
    return f"{host} exists in DNS without our ownership TXT at {owner_name}; left alone"
