"""Prometheus metrics for the watch loop and the plugin chain.

Everything hangs off an injectable ``CollectorRegistry`` so that every test (and every watcher in one
process) has its own.

The metrics touched for every event (events received, last event time, per-plugin handled, failed,
retried and duration) are plain numbers bumped without a lock, turned into samples by a collector
when ``/metrics`` is scraped. A ``prometheus_client`` counter takes a lock and walks a few layers per
``inc()``, a histogram more per ``observe()``; at 150,000 events/s those were a sixth of the
watcher's CPU. Each number has one writer: the informer's counters are written under its lock, and
every plugin worker thread has its own ``WorkerMetrics``, summed at scrape time. The queue gauges
(depth, oldest, busy workers) are read from the work queues when scraped. Rare metrics (restarts,
relists, other gauges) stay ordinary ``prometheus_client`` objects.
"""

from __future__ import annotations

import bisect
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Optional

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


class WorkerMetrics:
    """What one plugin worker thread counts; only that thread writes it."""

    __slots__ = ("duration", "failed", "handled", "retries")

    def __init__(self) -> None:
        self.handled = LocalCounter()
        self.failed = LocalCounter()
        self.retries = LocalCounter()
        self.duration = LocalHistogram()

    def succeeded(self, seconds: float) -> None:
        """One handled event that took ``seconds``: ``handled.inc()`` and ``duration.observe()`` in one
        call, for the worker's loop."""
        self.handled.value += 1
        duration = self.duration
        duration.counts[bisect.bisect_left(duration.bounds, seconds)] += 1
        duration.sum += seconds


@dataclass(frozen=True)
class QueueStats:
    """A plugin's work queue as a scrape sees it."""

    depth: int  # keys with work waiting, ready or in backoff
    oldest: float  # seconds the oldest waiting work has waited
    busy: int  # workers inside handle_event now


class PluginMetrics:
    """One plugin's numbers: a ``WorkerMetrics`` per worker thread, and its queue's gauges."""

    def __init__(self) -> None:
        self.workers: list[WorkerMetrics] = []
        self.queue: Optional[Callable[[], QueueStats]] = None  # set by the plugin's work queue
        # What the plugin's sweeps changed, by action (created, deleted, ...). Written by the worker
        # running the sweep; a plugin's sweeps never run at the same time.
        self.sweep_changes: dict[str, LocalCounter] = {}

    def swept(self, changes: dict[str, int]) -> None:
        for action, count in changes.items():
            counter = self.sweep_changes.get(action)
            if counter is None:
                counter = self.sweep_changes[action] = LocalCounter()
            counter.inc(count)

    def worker(self) -> WorkerMetrics:
        """The numbers of a new worker thread, which alone writes them."""
        counts = WorkerMetrics()
        self.workers = [*self.workers, counts]  # a new list: a scrape may be iterating the old one
        return counts

    def total(self, counter: str) -> float:
        """``handled``, ``failed`` or ``retries`` summed over the workers."""
        return float(sum(getattr(w, counter).get() for w in self.workers))

    def duration(self) -> tuple[list[tuple[str, float]], float]:
        """The workers' call durations as one histogram: cumulative buckets and the sum."""
        merged = LocalHistogram()
        for w in self.workers:
            merged.counts = [a + b for a, b in zip(merged.counts, w.duration.counts)]
            merged.sum += w.duration.sum
        return merged.buckets(), merged.sum


class Metrics:
    """The daemon's metrics; one instance per watcher, shared by informer, reconciler and probes."""

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
        # 0 until the run loop starts the plugins' work (leader.Runner sets it): during start-up, and
        # on a leader-election standby, this replica hands nothing to the plugins.
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
        """The numbers of one plugin, for its work queue to keep; the same object for the same name."""
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
            "event_watcher_events_failed",
            "Calls of a plugin that raised: every failed attempt, retried or not.",
            labels=["plugin"],
        )
        retries = CounterMetricFamily(
            "event_watcher_retries",
            "Failed objects put back in a plugin's queue to retry.",
            labels=["plugin"],
        )
        duration = HistogramMetricFamily(
            "event_watcher_plugin_duration_seconds", "Time a plugin spent in handle_event.", labels=["plugin"]
        )
        depth = GaugeMetricFamily(
            "event_watcher_queue_depth", "Objects waiting in a plugin's work queue.", labels=["plugin"]
        )
        oldest = GaugeMetricFamily(
            "event_watcher_queue_oldest_seconds",
            "How long the oldest work waiting in a plugin's queue has waited.",
            labels=["plugin"],
        )
        busy = GaugeMetricFamily(
            "event_watcher_workers_busy", "A plugin's workers inside handle_event now.", labels=["plugin"]
        )
        sweep_changes = CounterMetricFamily(
            "event_watcher_sweep_changes",
            "What a plugin's sweeps changed outside (leftovers removed, missing entries made), by action.",
            labels=["plugin", "action"],
        )
        for name, plugin in list(m._plugins.items()):
            for action, counter in list(plugin.sweep_changes.items()):
                sweep_changes.add_metric([name, action], counter.get())
            handled.add_metric([name], plugin.total("handled"))
            failed.add_metric([name], plugin.total("failed"))
            retries.add_metric([name], plugin.total("retries"))
            duration.add_metric([name], *plugin.duration())
            if plugin.queue is not None:
                stats = plugin.queue()
                depth.add_metric([name], stats.depth)
                oldest.add_metric([name], stats.oldest)
                busy.add_metric([name], stats.busy)
        yield from (handled, failed, retries, duration, depth, oldest, busy, sweep_changes)
        yield GaugeMetricFamily(
            "event_watcher_last_event_timestamp_seconds",
            "Unix time of the last watch event.",
            value=m.last_event.get(),
        )
