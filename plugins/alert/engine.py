"""One watch event in, alerts out: match the rules, resolve what went away, let each sink's tracker
decide what is news, send, and account for every failure.

A send that failed raises ``SendFailed`` once every sink had its turn: the watcher's work queue
retries the event with backoff, and the sinks that took it already do not get it again (their
trackers know it was sent)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional

from watcher import recorder

from . import alerts, rules, sinks

logger = logging.getLogger(__name__)

WATCH_TYPES = ("ADDED", "MODIFIED", "DELETED")


class SendFailed(Exception):
    """At least one sink did not take what it was sent; the message names each failure."""


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class AlertEngine:
    """The plugin's state: rules, sinks (each with its tracker) and ``failures``, the sends that failed."""

    def __init__(
        self,
        rule_set: Sequence[rules.Rule],
        sink_list: Sequence[sinks.Sink],
        generator_url: Callable[[Mapping[str, Any]], str],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        self.rules = list(rule_set)
        self.sinks = list(sink_list)
        self.generator_url = generator_url
        self.failures = 0
        self.changes = 0  # bumped whenever what the trackers hold may have changed (memory.Writer)
        self._clock = clock
        self._wall = wall
        # The plugin's worker changes the trackers, the state writer reads them.
        self._lock = threading.Lock()

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()

    # --- across restarts ----------------------------------------------------------------------------

    def export(self) -> dict[str, list[dict[str, Any]]]:
        """What each sink was sent and still fires, by sink (``str(sink)``: its kind and address)."""
        with self._lock:
            now, wall = self._clock(), self._wall()
            return {str(sink): sink.tracker.export(now, wall) for sink in self.sinks}

    def restore(self, state: Mapping[str, Any]) -> int:
        """Take back what ``export`` gave before a restart. A webhook is not re-sent what it got within
        ``repeat_interval``; Alertmanager is (it de-duplicates), so its alerts are refreshed at start
        instead of lapsing."""
        with self._lock:
            now, wall = self._clock(), self._wall()
            taken = 0
            for sink in self.sinks:
                records = state.get(str(sink))
                if isinstance(records, list):
                    taken += sink.tracker.restore(records, now, wall, due=sink.deduplicates)
            return taken

    def sweep(self, objects: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        """Resolve the alerts kept up only by objects that are gone without a DELETED we saw: Events
        that expired while the watcher was down. A failed send is put back and raises ``SendFailed``."""
        present = {alerts.source_of(obj) for obj in objects}
        with self._lock:
            now, wall = self._clock(), self._wall()
            found = resolved = 0
            done: list[str] = []
            failed: list[str] = []
            for sink in self.sinks:
                before = sink.tracker.export(now, wall)
                found += len(before)
                batch = [
                    alert
                    for source in sorted(sink.tracker.sources() - present)
                    for alert in sink.tracker.release(source, wall)
                ]
                if not batch:
                    continue
                self.changes += 1
                if self._send(sink, batch, ["resolved: its object is gone"] * len(batch), now, done, failed):
                    resolved += len(batch)
                else:
                    _put_back(sink, before, now, wall)
            if done:
                logger.info("%s.", "; ".join(done))
            if failed:
                raise SendFailed(" ".join(failed))
            return {"found": found, "resolved": resolved}

    def handle(self, event: Mapping[str, Any]) -> Optional[tuple[str, str]]:
        with self._lock:
            return self._handle(event)

    def _handle(self, event: Mapping[str, Any]) -> Optional[tuple[str, str]]:
        event_type, obj = event.get("type"), event.get("object")
        if event_type not in WATCH_TYPES or not isinstance(obj, Mapping) or recorder.posted_by_us(obj):
            return None  # an Event the watcher posted itself must not come back as an alert
        now, wall = self._clock(), self._wall()
        source = alerts.source_of(obj)
        subject = alerts.subject_of(obj)
        candidates = [
            self._candidate(rule, event, obj, subject, source) for rule in self.rules if rule.matches(event)
        ]
        # Deleted: everything this object kept up is resolved. Still there: only what it no longer matches.
        stale: Optional[list[str]] = None
        if event_type != "DELETED" and any(sink.tracker.knows(source) for sink in self.sinks):
            stale = [rule.name for rule in self.rules if not rule.matches_object(event)]
        done: list[str] = []
        failed: list[str] = []
        if candidates or event_type == "DELETED" or stale:
            self.changes += 1
        for sink in self.sinks:
            batch: list[alerts.Alert] = []
            reasons: list[str] = []
            before: Optional[list[dict[str, Any]]] = None
            if sink.tracker.knows(source) and (event_type == "DELETED" or stale):
                before = sink.tracker.export(now, wall)
                for alert in sink.tracker.release(source, wall, stale):
                    batch.append(alert)
                    reasons.append("resolved")
            for candidate in candidates:
                decision = sink.tracker.observe(candidate, now, wall)
                if decision is None:
                    last = sink.tracker.last_sent(candidate.labels)
                    logger.debug(
                        "Alert %s for %s not re-sent to %s: sent %.0f s ago, repeat_interval is %g s.",
                        candidate.rule,
                        candidate.subject,
                        sink,
                        now - (last or now),
                        sink.tracker.repeat_interval,
                    )
                    continue
                batch.append(decision[0])
                reasons.append(decision[1])
            if batch and not self._send(sink, batch, reasons, now, done, failed) and before is not None:
                _put_back(sink, before, now, wall)
        if failed:
            if done:  # said now: the result is lost when the event fails
                logger.info("%s.", "; ".join(done))
            raise SendFailed(" ".join(failed))
        return ("; ".join(done) + ".", "INFO") if done else None

    def _candidate(
        self,
        rule: rules.Rule,
        event: Mapping[str, Any],
        obj: Mapping[str, Any],
        subject: alerts.Subject,
        source: str,
    ) -> alerts.Candidate:
        return alerts.Candidate(
            rule=rule.name,
            subject=subject,
            labels=alerts.subject_labels(rule.name, rule.severity, subject, rule.labels),
            annotations=tuple(sorted(rule.annotations(event).items())),
            source=source,
            count=alerts.count_of(obj),
            first_seen=alerts.first_seen_of(obj),
            generator_url=self.generator_url(event),
        )

    def _send(
        self,
        sink: sinks.Sink,
        batch: list[alerts.Alert],
        reasons: list[str],
        now: float,
        done: list[str],
        failed: list[str],
    ) -> bool:
        """Send ``batch``; what happened goes to ``done`` or ``failed``. True when the sink took it."""
        described = [f"alert {_describe(alert)} ({reason})" for alert, reason in zip(batch, reasons)]
        try:
            sink.send(batch)
        except sinks.SinkError as error:
            self.failures += 1
            failed.append(f"Could not send {', '.join(described)} to {sink}: {error}.")
            return False
        for alert in batch:
            sink.tracker.sent(alert, now)
        done.append(f"Sent {', '.join(described)} to {sink}")
        return True


def _put_back(sink: sinks.Sink, before: list[dict[str, Any]], now: float, wall: dt.datetime) -> None:
    """A resolution that did not get through: the sink's tracker as it was before, so that the retry
    of the event (or the next sweep) still knows what to resolve."""
    sink.tracker = alerts.Tracker(sink.tracker.repeat_interval)
    sink.tracker.restore(before, now, wall)


def _describe(alert: alerts.Alert) -> str:
    namespace = alert.label("namespace")
    where = f"{namespace}/" if namespace else ""
    return f"{alert.label('alertname')} for {alert.label('kind')} {where}{alert.label('name')}"
