"""Alerts and the memory that keeps them from turning into spam.

An alert is identified by its labels: the rule's name and severity, the involved object's namespace,
kind and name (for a Kubernetes Event; any other object stands for itself), and the rule's static
labels. Alertmanager identifies alerts the same way, so one key here is one alert there.

Each sink has its own :class:`Tracker`, so an alert a sink failed to take is retried for that sink only
when the event comes again, and a sink that took it is not sent a copy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Subject:
    """What an alert is about: the Event's involved object, or the watched object itself."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"


@dataclass(frozen=True)
class Candidate:
    """A rule matched an event: what the alert would say, before a tracker decides whether to send it."""

    rule: str
    subject: Subject
    labels: Labels
    annotations: Labels
    source: str  # the watched object's identity; its deletion resolves the alert
    count: Optional[int]  # an Event's occurrence count; growing, it updates the alert
    first_seen: Optional[dt.datetime]
    generator_url: str


@dataclass(frozen=True)
class Alert:
    labels: Labels
    annotations: Labels
    starts_at: dt.datetime
    ends_at: dt.datetime
    generator_url: str
    resolved: bool = False

    @property
    def status(self) -> str:
        return "resolved" if self.resolved else "firing"

    def label(self, name: str) -> str:
        return dict(self.labels).get(name, "")

    def annotation(self, name: str) -> str:
        return dict(self.annotations).get(name, "")

    def to_json(self) -> dict[str, Any]:
        """The Alertmanager API v2 ``postableAlert``; webhooks get the same fields plus ``status``."""
        body: dict[str, Any] = {
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": timestamp(self.starts_at),
            "endsAt": timestamp(self.ends_at),
        }
        if self.generator_url:
            body["generatorURL"] = self.generator_url
        return body


def timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(value: Any) -> Optional[dt.datetime]:
    """RFC 3339 as the API writes it (``2024-05-01T10:00:00Z``, ``…00.123456Z``); None when absent or odd."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


# --- reading the watched object ---------------------------------------------------------------------


def is_event(obj: Mapping[str, Any]) -> bool:
    """A core v1 Event (``involvedObject``) or an events.k8s.io/v1 Event (``regarding``)."""
    return obj.get("kind") in ("Event", None) and ("involvedObject" in obj or "regarding" in obj)


def subject_of(obj: Mapping[str, Any]) -> Subject:
    meta = obj.get("metadata") or {}
    if is_event(obj):
        ref = obj.get("involvedObject") or obj.get("regarding") or {}
        # A Node's events live in the "default" namespace; the Node itself has none, and says so.
        return Subject(
            str(ref.get("kind") or "?"), str(ref.get("namespace") or ""), str(ref.get("name") or "?")
        )
    return Subject(
        str(obj.get("kind") or "?"), str(meta.get("namespace") or ""), str(meta.get("name") or "?")
    )


def source_of(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    uid = meta.get("uid")
    if uid:
        return str(uid)
    return f"{obj.get('kind')}/{meta.get('namespace') or ''}/{meta.get('name')}"


def count_of(obj: Mapping[str, Any]) -> Optional[int]:
    """How often an Event happened: ``count`` in core v1, ``series.count`` for newer recorders."""
    if not is_event(obj):
        return None
    series = obj.get("series") or {}
    for value in (obj.get("count"), series.get("count"), obj.get("deprecatedCount")):
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def first_seen_of(obj: Mapping[str, Any]) -> Optional[dt.datetime]:
    if not is_event(obj):
        return None
    return parse_timestamp(obj.get("firstTimestamp")) or parse_timestamp(obj.get("eventTime"))


def subject_labels(rule: str, severity: str, subject: Subject, extra: Labels = ()) -> Labels:
    labels = {"alertname": rule, "severity": severity, "kind": subject.kind, "name": subject.name}
    if subject.namespace:
        labels["namespace"] = subject.namespace
    labels.update(extra)
    return tuple(sorted(labels.items()))


# --- de-duplication ---------------------------------------------------------------------------------


@dataclass
class _Entry:
    rule: str
    starts_at: dt.datetime
    touched: float
    sources: dict[str, Optional[int]] = field(default_factory=dict)
    sent: Optional[Alert] = None
    sent_at: float = 0.0


class Tracker:
    """Decides, per sink, whether a matching event is news: new, a repeat that is due, or an update.

    Firing alerts carry ``endsAt`` = now + 2 * ``repeat_interval``: every delivery of the event after
    ``repeat_interval`` refreshes it, and if the watcher goes away the alert lapses on its own instead
    of staying active forever. Entries older than that are forgotten, so memory stays bounded.
    """

    def __init__(self, repeat_interval: float) -> None:
        self.repeat_interval = repeat_interval
        self.lifetime = 2 * repeat_interval
        self._entries: dict[Labels, _Entry] = {}
        self._by_source: dict[str, set[Labels]] = {}
        self._pruned_at = 0.0

    def __len__(self) -> int:
        return len(self._entries)

    def observe(self, candidate: Candidate, now: float, wall: dt.datetime) -> Optional[tuple[Alert, str]]:
        """Record the match; return the alert to send and why (new, repeat, update), or None."""
        self._prune(now)
        key = candidate.labels
        entry = self._entries.get(key)
        if entry is None:
            starts = min(candidate.first_seen or wall, wall)
            entry = self._entries[key] = _Entry(candidate.rule, starts, now)
        previous = entry.sources.get(candidate.source)
        if candidate.count is not None and (previous is None or candidate.count > previous):
            entry.sources[candidate.source] = candidate.count
        else:
            entry.sources.setdefault(candidate.source, previous)
        self._by_source.setdefault(candidate.source, set()).add(key)
        entry.touched = now
        if entry.sent is None:
            reason = "new"
        elif now - entry.sent_at >= self.repeat_interval:
            reason = "repeat"
        elif (
            candidate.count is not None
            and previous is not None
            and candidate.count > previous
            and candidate.annotations != entry.sent.annotations
        ):
            reason = "update"
        else:
            return None
        wall_ends = wall + dt.timedelta(seconds=self.lifetime)
        return Alert(key, candidate.annotations, entry.starts_at, wall_ends, candidate.generator_url), reason

    def knows(self, source: str) -> bool:
        """Whether any alert rests on ``source``: if not, its changes cannot resolve anything."""
        return source in self._by_source

    def last_sent(self, key: Labels) -> Optional[float]:
        entry = self._entries.get(key)
        return entry.sent_at if entry is not None and entry.sent is not None else None

    def sent(self, alert: Alert, now: float) -> None:
        entry = self._entries.get(alert.labels)
        if entry is not None and not alert.resolved:
            entry.sent, entry.sent_at = alert, now

    def release(self, source: str, wall: dt.datetime, rules: Optional[Collection[str]] = None) -> list[Alert]:
        """``source`` is gone (or no longer matches ``rules``): resolve alerts nothing else keeps up.

        Returns the resolutions to send: alerts this sink had sent, with ``endsAt`` = now. Entries
        never sent are simply forgotten.
        """
        resolved = []
        for key in list(self._by_source.get(source, ())):
            entry = self._entries.get(key)
            if entry is None or (rules is not None and entry.rule not in rules):
                continue
            entry.sources.pop(source, None)
            self._by_source[source].discard(key)
            if entry.sources:
                continue
            del self._entries[key]
            if entry.sent is not None:
                sent = entry.sent
                resolved.append(
                    Alert(sent.labels, sent.annotations, sent.starts_at, wall, sent.generator_url, True)
                )
        if not self._by_source.get(source):
            self._by_source.pop(source, None)
        return resolved

    # --- across restarts (plugins/alert/memory.py keeps these records in a ConfigMap) ----------------

    def export(self, now: float, wall: dt.datetime) -> list[dict[str, Any]]:
        """Every alert this sink was sent and that still fires: labels, what it said, when it was
        last sent (wall clock), and the watched objects keeping it up."""
        records = []
        for key, entry in self._entries.items():
            sent = entry.sent
            if sent is None:
                continue
            records.append(
                {
                    "labels": dict(key),
                    "annotations": dict(sent.annotations),
                    "rule": entry.rule,
                    "startsAt": timestamp(entry.starts_at),
                    "generatorURL": sent.generator_url,
                    "status": sent.status,
                    "lastSent": timestamp(wall - dt.timedelta(seconds=max(0.0, now - entry.sent_at))),
                    "sources": dict(entry.sources),
                }
            )
        return records

    def restore(self, records: list[Any], now: float, wall: dt.datetime, *, due: bool = False) -> int:
        """Take back what ``export`` wrote before a restart; how many alerts were taken. Alerts last sent
        longer than their lifetime ago have lapsed and are dropped; ``due``: treat each as sent long
        ago, so that the first match sends it again (Alertmanager: refresh, it de-duplicates)."""
        taken = 0
        for record in records:
            try:
                key: Labels = tuple(sorted((str(k), str(v)) for k, v in record["labels"].items()))
                annotations: Labels = tuple(
                    sorted((str(k), str(v)) for k, v in record["annotations"].items())
                )
                starts = parse_timestamp(record["startsAt"])
                last = parse_timestamp(record["lastSent"])
                sources = {str(k): (v if isinstance(v, int) else None) for k, v in record["sources"].items()}
                rule, url = str(record["rule"]), str(record.get("generatorURL") or "")
            except (KeyError, TypeError, AttributeError):
                continue
            if starts is None or last is None or not sources or record.get("status") != "firing":
                continue
            age = max(0.0, (wall - last).total_seconds())
            if age > self.lifetime:
                continue
            sent_at = now - (self.lifetime + self.repeat_interval if due else age)
            ends = last + dt.timedelta(seconds=self.lifetime)
            entry = _Entry(
                rule, starts, now - age, sources, Alert(key, annotations, starts, ends, url), sent_at
            )
            self._entries[key] = entry
            for source in sources:
                self._by_source.setdefault(source, set()).add(key)
            taken += 1
        return taken

    def sources(self) -> set[str]:
        return set(self._by_source)

    def _prune(self, now: float) -> None:
        """Forget alerts whose ``endsAt`` has passed; at most once a minute, it walks every entry."""
        if now - self._pruned_at < 60:
            return
        self._pruned_at = now
        for key, entry in list(self._entries.items()):
            if now - max(entry.touched, entry.sent_at) > self.lifetime:
                del self._entries[key]
                for source in entry.sources:
                    keys = self._by_source.get(source)
                    if keys is not None:
                        keys.discard(key)
                        if not keys:
                            del self._by_source[source]
