"""Prometheus metrics for the watch loop and the plugin chain.

Everything hangs off an injectable ``CollectorRegistry`` so that every test (and every watcher in one
process) has its own. Children with fixed label values are bound once here, because ``.labels()`` on
the hot path costs more than the increment itself.
"""

from __future__ import annotations

import platform
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

import watcher

EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR")
RESTART_REASONS = ("timeout", "dropped", "expired", "unauthorized", "throttled", "server_error", "forbidden")


class Metrics:
    """The daemon's metrics; one instance per watcher, shared by informer, dispatcher and probes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        received = Counter(
            "event_watcher_events_received_total", "Watch events received, by type.", ["type"], registry=r
        )
        self.received = {t: received.labels(t) for t in EVENT_TYPES}
        self._handled = Counter(
            "event_watcher_events_handled_total",
            "Events a plugin handled without raising.",
            ["plugin"],
            registry=r,
        )
        self._failed = Counter(
            "event_watcher_events_failed_total", "Events on which a plugin raised.", ["plugin"], registry=r
        )
        self._duration = Histogram(
            "event_watcher_plugin_duration_seconds",
            "Time a plugin spent in handle_event.",
            ["plugin"],
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0),
            registry=r,
        )
        restarts = Counter(
            "event_watcher_watch_restarts_total",
            "Watch requests restarted, by reason.",
            ["reason"],
            registry=r,
        )
        self.restarts = {reason: restarts.labels(reason) for reason in RESTART_REASONS}
        self.relists = Counter("event_watcher_relists_total", "Full LISTs after the first one.", registry=r)
        self.last_event = Gauge(
            "event_watcher_last_event_timestamp_seconds", "Unix time of the last watch event.", registry=r
        )
        self.cached_objects = Gauge(
            "event_watcher_cached_objects", "Objects in the informer cache.", registry=r
        )
        # 0 until the run loop starts dispatching (leader.Runner sets it): during start-up, and on a
        # leader-election standby, this replica hands nothing to the plugins.
        self.leader = Gauge(
            "event_watcher_leader",
            "1 while this replica dispatches: it holds the lease, or runs without leader election.",
            registry=r,
        )
        build = Gauge(
            "event_watcher_build_info",
            "Version of the watcher and of Python.",
            ["version", "python"],
            registry=r,
        )
        build.labels(watcher.__version__, platform.python_version()).set(1)

    def plugin(self, name: str) -> PluginMetrics:
        """Children bound to one plugin, for the dispatcher to keep."""
        return PluginMetrics(
            self._handled.labels(name), self._failed.labels(name), self._duration.labels(name)
        )

    def event_received(self, event_type: str) -> None:
        child = self.received.get(event_type)
        if child is not None:
            child.inc()
        self.last_event.set(time.time())


class PluginMetrics:
    """Pre-bound counters and histogram for one plugin."""

    __slots__ = ("duration", "failed", "handled")

    def __init__(self, handled: Counter, failed: Counter, duration: Histogram) -> None:
        self.handled = handled
        self.failed = failed
        self.duration = duration
