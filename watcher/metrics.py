"""Prometheus metrics for the watch loop and the plugin chain.

Everything hangs off an injectable ``CollectorRegistry`` so that every test (and every watcher in one
process) has its own.

The metrics touched for every event (events received, last event time, per-plugin handled, failed
and duration) are plain numbers the delivering thread bumps without a lock, turned into samples by a
collector when ``/metrics`` is scraped. A ``prometheus_client`` counter takes a lock and walks a few
layers per ``inc()``, a histogram more per ``observe()``; at 150,000 events/s those were a sixth of
the watcher's CPU. The numbers are written by one thread at a time: the informer's, or its resync
thread, which delivers under the same lock. Rare metrics (restarts, relists, gauges) stay ordinary
``prometheus_client`` objects.
"""

from __future__ import annotations

import bisect
import platform
import time
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

import watcher

EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR")
RESTART_REASONS = ("timeout", "dropped", "expired", "unauthorized", "throttled", "server_error", "forbidden")
DURATION_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)


class LocalCounter:
    """A counter bumped without a lock by the one thread delivering events; read at scrape time."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float = 0  # an int while only whole increments come: int addition is cheaper

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def get(self) -> float:
        return float(self.value)


class LocalGauge(LocalCounter):
    __slots__ = ()

    def set(self, value: float) -> None:
        self.value = float(value)


class LocalHistogram:
    """Bucket counts and a sum, as ``prometheus_client``'s Histogram keeps them, without its lock."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = DURATION_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (``le`` is <=).
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs, +Inf last, as the exposition format wants them."""
        out, total = [], 0
        for bound, count in zip([*map(floatToGoString, self.bounds), "+Inf"], self.counts):
            total += count
            out.append((bound, float(total)))
        return out


class PluginMetrics:
    """Handled and failed counts and call durations of one plugin, kept by the dispatcher."""

    __slots__ = ("duration", "failed", "handled")

    def __init__(self) -> None:
        self.handled = LocalCounter()
        self.failed = LocalCounter()
        self.duration = LocalHistogram()

    def succeeded(self, seconds: float) -> None:
        """One handled event that took ``seconds``: ``handled.inc()`` and ``duration.observe()`` in one
        call, for the dispatcher's loop."""
        self.handled.value += 1
        duration = self.duration
        duration.counts[bisect.bisect_left(duration.bounds, seconds)] += 1
        duration.sum += seconds


class Metrics:
    """The daemon's metrics; one instance per watcher, shared by informer, dispatcher and probes."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.received = {t: LocalCounter() for t in EVENT_TYPES}
        self.last_event = LocalGauge()
        self._plugins: dict[str, PluginMetrics] = {}
        r.register(_HotPathCollector(self))
        restarts = Counter(
            "event_watcher_watch_restarts_total",
            "Watch requests restarted, by reason.",
            ["reason"],
            registry=r,
        )
        self.restarts = {reason: restarts.labels(reason) for reason in RESTART_REASONS}
        self.relists = Counter("event_watcher_relists_total", "Full LISTs after the first one.", registry=r)
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
        """The numbers of one plugin, for the dispatcher to keep; the same object for the same name."""
        found = self._plugins.get(name)
        if found is None:
            found = self._plugins[name] = PluginMetrics()
        return found

    def event_received(self, event_type: str) -> None:
        """One event; the informer counts per event but reads the clock only once per block."""
        child = self.received.get(event_type)
        if child is not None:
            child.inc()
        self.last_event.set(time.time())


class _HotPathCollector(Collector):
    """Turns the lock-free numbers into samples when the registry is collected (a scrape)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        m = self._metrics
        received = CounterMetricFamily(
            "event_watcher_events_received", "Watch events received, by type.", labels=["type"]
        )
        for event_type, counter in m.received.items():
            received.add_metric([event_type], counter.get())
        yield received
        handled = CounterMetricFamily(
            "event_watcher_events_handled", "Events a plugin handled without raising.", labels=["plugin"]
        )
        failed = CounterMetricFamily(
            "event_watcher_events_failed", "Events on which a plugin raised.", labels=["plugin"]
        )
        duration = HistogramMetricFamily(
            "event_watcher_plugin_duration_seconds", "Time a plugin spent in handle_event.", labels=["plugin"]
        )
        for name, plugin in list(m._plugins.items()):
            handled.add_metric([name], plugin.handled.get())
            failed.add_metric([name], plugin.failed.get())
            duration.add_metric([name], plugin.duration.buckets(), plugin.duration.sum)
        yield handled
        yield failed
        yield duration
        yield GaugeMetricFamily(
            "event_watcher_last_event_timestamp_seconds",
            "Unix time of the last watch event.",
            value=m.last_event.get(),
        )
