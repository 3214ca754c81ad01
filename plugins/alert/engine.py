"""One watch event in, alerts out: match the rules, resolve what went away, let each sink's tracker
decide what is news, send, and account for every failure.

A send that failed raises ``SendFailed`` once every sink had its turn: the watcher's work queue
retries the event with backoff, and the sinks that took it already do not get it again (their
trackers know it was sent)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional

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
        self._clock = clock
        self._wall = wall

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()

    def handle(self, event: Mapping[str, Any]) -> Optional[tuple[str, str]]:
        event_type, obj = event.get("type"), event.get("object")
        if event_type not in WATCH_TYPES or not isinstance(obj, Mapping):
            return None
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
        for sink in self.sinks:
            batch: list[alerts.Alert] = []
            reasons: list[str] = []
            if sink.tracker.knows(source) and (event_type == "DELETED" or stale):
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
            if batch:
                self._send(sink, batch, reasons, now, done, failed)
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
    ) -> None:
        described = [f"alert {_describe(alert)} ({reason})" for alert, reason in zip(batch, reasons)]
        try:
            sink.send(batch)
        except sinks.SinkError as error:
            self.failures += 1
            failed.append(f"Could not send {', '.join(described)} to {sink}: {error}.")
            return
        for alert in batch:
            sink.tracker.sent(alert, now)
        done.append(f"Sent {', '.join(described)} to {sink}")


def _describe(alert: alerts.Alert) -> str:
    namespace = alert.label("namespace")
    where = f"{namespace}/" if namespace else ""
    return f"{alert.label('alertname')} for {alert.label('kind')} {where}{alert.label('name')}"
