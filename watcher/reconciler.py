"""The reconciler: a work queue per plugin between the informer and the plugins.

The informer hands every change here and goes back to its stream at once; each plugin's workers take
the work from that plugin's queue (``watcher.workqueue``), keyed by namespace/name. What a plugin can
rely on, and what the README's plugin section promises:

* **One call per object at a time, in order.** A key is never handled by two workers at once.
* **Latest state wins.** While a key waits, newer changes replace what waits: a burst of updates to
  one object costs one call, with the object as it is now. What the plugin is handed takes it from
  what it last handled to the object's current state: ADDED for an object it has not handled yet,
  MODIFIED with the current object, DELETED with the last known object. A delete and a re-create
  (a new uid under the same name) are two calls, DELETED then ADDED, never one MODIFIED; an object
  created and deleted before the plugin got to it costs no call at all.
* **Retries.** A call that raises is retried for that object only, with a backoff that doubles (with
  jitter) from under a second to ``retry_max``, for as long as the object needs it; a newer change is
  handled at once. ``TemporaryError(delay=...)`` says when to retry; ``PermanentError``: not until
  the object changes. Every failed attempt is one ERROR line and counts in ``events_failed_total``.
* **Objects in parallel**, up to ``workers`` of them (the plugin's ``WORKERS``, else 1): a plugin with
  more than one worker is called from several threads at once, for different objects.
* **Sweeps.** A plugin with ``sweep(watcher, objects, config)`` is handed every cached object once the
  initial list of a watch has gone through its queue, and then every ``sweep_period``, to compare what
  it owns outside with what the objects ask for. The sweep is work in the plugin's own queue, under a
  key no object can have: it runs in one of the plugin's workers, never beside another of its sweeps
  and never beside its ``handle_event`` (so nothing the plugin is doing for an object races with it),
  waits while this replica does not lead, and a failure is retried with backoff like any work. It
  returns what it found and changed (``{"found": 12, "deleted": 2}``): one INFO line, and the changes
  count in ``event_watcher_sweep_changes_total{plugin,action}``.

A plugin's slowness or failures delay only its own queue. Memory stays flat: a queue holds at most one
pending item per object, and the item is the informer's bytes, parsed by the worker that handles it
(only a watch event's already parsed object is passed along, while the queue is short).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Callable, NamedTuple, Optional

from watcher.dispatch import Plugin, PluginContext, identity, log_result
from watcher.errors import PermanentError, TemporaryError
from watcher.informer import Change, Item, cached_object, new_item
from watcher.metrics import Metrics, PluginMetrics, QueueStats, WorkerMetrics
from watcher.workqueue import RetryPolicy, Taken, WorkQueue

logger = logging.getLogger(__name__)

SYNC = "SYNC"  # a resync's "the object is still so": MODIFIED for the plugin, only if nothing waits
# Beyond this many waiting objects, queued work keeps only the informer's bytes, not a parsed object
# (a Route as dicts is ~5x its JSON): a backlog of 100,000 costs the JSON, not five times it.
KEEP_PARSED_BELOW = 1000


class Pending(NamedTuple):
    """What one plugin still has to do for one key: undo ``tombs`` (DELETED, oldest first), then
    bring it to ``current`` (ADDED when ``new``, else MODIFIED). ``touched``: ``current``'s object has
    been handed to the plugin before (so its deletion must be delivered, not just forgotten)."""

    tombs: tuple[Item, ...]
    current: Optional[Item]
    new: bool
    touched: bool


# NamedTuple's own constructor is Python code; this builds the same tuple at C speed, for the
# per-event path (one per change handed to a plugin's queue), as ``informer.new_item`` does.
_pending = functools.partial(tuple.__new__, Pending)


def merge(pending: Optional[Pending], change: tuple[str, Item]) -> Optional[Pending]:
    """``pending`` with one more change; None when nothing is left to do, ``pending`` itself when the
    change adds nothing (a resync of a key that has work waiting)."""
    kind, item = change
    if pending is None:
        if kind == "DELETED":
            return _pending(((item,), None, False, False))
        return _pending(((), item, kind == "ADDED", False))
    if kind == SYNC:
        return pending
    tombs, current, new, touched = pending
    if kind == "DELETED":
        if current is not None and current.uid == item.uid:
            if new and not touched:  # created and deleted before the plugin saw it: nothing to undo
                return _pending((tombs, None, False, False)) if tombs else None
            return _pending((_bury(tombs, item), None, False, False))
        return _pending((_bury(tombs, item), current, new, touched))
    if current is not None and current.uid == item.uid:
        return _pending((tombs, item, new, touched))
    if current is not None and (touched or not new):
        # Another incarnation without its DELETED in between (the informer always sends one first;
        # this keeps the plugin right even so): undo the one it has.
        tombs = _bury(tombs, current)
    return _pending((tombs, item, kind == "ADDED" or current is not None, False))


def combine(left: Pending, newer: Pending) -> Optional[Pending]:
    """What is left of a failed attempt, followed by what came meanwhile (built from nothing)."""
    result: Optional[Pending] = left
    for tomb in newer.tombs:
        result = merge(result, ("DELETED", tomb))
    if newer.current is not None:
        result = merge(result, ("ADDED" if newer.new else "MODIFIED", newer.current))
    return result


def _bury(tombs: tuple[Item, ...], item: Item) -> tuple[Item, ...]:
    """``tombs`` with ``item``'s incarnation to undo, as its latest known state."""
    kept = tuple(tomb for tomb in tombs if tomb.uid != item.uid)
    return (*kept, item)


def _unparsed(item: Item) -> Item:
    """The item without its parsed object: a plugin may have changed the dict it was handed."""
    return item if item.obj is None else new_item((item.uid, item.data, None))


# What one call came to, besides None (done with it: it succeeded, or failed for good) and a number
# (retry after that many seconds, as the plugin asked): retry after the key's backoff.
_RETRY = object()
# What became of one key's work.
_DONE, _RETRIED, _GIVEN_BACK = object(), object(), object()
BATCH = 64  # keys a lone worker takes per turn of its queue's lock

# The sweep's place in a plugin's queue: an object's key is namespace/name, and names hold no NUL.
SWEEP_KEY = "\x00sweep"
SWEEP_CHANGE = ("SWEEP", new_item(("\x00sweep", b"", None)))  # merges with itself: one sweep waits at most
SCHEDULE_TICK = 0.25  # how often the sweep scheduler looks at the informer's readiness and the clock

Objects = Callable[[], list[dict[str, Any]]]


class _Gate:
    """Calls of a plugin with several workers share the gate; its sweep has it alone."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._calls = 0
        self._sweeping = False

    def enter(self) -> None:
        with self._cond:
            while self._sweeping:
                self._cond.wait()
            self._calls += 1

    def leave(self) -> None:
        with self._cond:
            self._calls -= 1
            if not self._calls:
                self._cond.notify_all()

    def close(self) -> None:
        """Wait until no call runs, and let none start until ``open``."""
        with self._cond:
            self._sweeping = True
            while self._calls:
                self._cond.wait()

    def open(self) -> None:
        with self._cond:
            self._sweeping = False
            self._cond.notify_all()


class PluginWorkers:
    """One plugin: its queue, its worker threads, and what they are doing (for /healthz, /metrics)."""

    def __init__(
        self, plugin: Plugin, context: PluginContext, metrics: PluginMetrics, permit: Callable[[], bool]
    ) -> None:
        self.plugin = plugin
        self.context = context
        self.metrics = metrics
        self.queue: WorkQueue[str, tuple[str, Item], Pending] = WorkQueue(
            merge, combine, policy=RetryPolicy(cap=plugin.work.retry_max)
        )
        self.queue.pause()  # until the run loop says this replica may act (leader.Runner)
        self._permit = permit
        self._stopping = False
        self.objects: Objects = list  # the informer's cached objects, for sweeps (Reconciler.sweep_over)
        self._gate = _Gate() if plugin.work.workers > 1 and plugin.sweep is not None else None
        # Per worker: (since when, event type, key) of the call in its hands, or None.
        self.busy: list[Optional[tuple[float, str, str]]] = [None] * plugin.work.workers
        self._threads = [
            threading.Thread(
                target=self._run, args=(slot, metrics.worker()), name=f"{plugin.name}-{slot}", daemon=True
            )
            for slot in range(plugin.work.workers)
        ]
        metrics.queue = self.stats

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stats(self) -> QueueStats:
        return QueueStats(self.queue.depth(), self.queue.oldest(), sum(1 for b in self.busy if b))

    def stop(self) -> None:
        """Hand out nothing more; calls in flight finish (``join`` waits for them)."""
        self._stopping = True
        self.queue.shutdown()

    def join(self, deadline: float) -> bool:
        """Wait until ``deadline`` (monotonic) for the workers to end; True when they all did."""
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def stuck(self, now: float) -> Optional[str]:
        """The oldest call running longer than ``stuck_after``, as a sentence, else None."""
        calls = [b for b in self.busy if b]
        if not calls:
            return None
        since, kind, key = min(calls)
        limit = self.plugin.work.stuck_after
        if now - since <= limit:
            return None
        return (
            f"plugin {self.plugin.name} has been handling {kind} {key} for {now - since:.0f} s "
            f"(stuck_after {limit:.0f} s)"
        )

    # --- the workers --------------------------------------------------------------------------------

    def _run(self, slot: int, counts: WorkerMetrics) -> None:
        # A lone worker takes a run of keys per turn of the queue's lock, and says which it finished
        # in one more: two lock turns per batch, not per object. Several workers take one key each, so
        # that a slow call never sits on keys another worker could have had.
        queue, limit = self.queue, BATCH if len(self.busy) == 1 else 1
        while True:
            taken = queue.take(limit)
            if taken is None:
                return
            finished: list[str] = []
            for index, one in enumerate(taken):
                outcome = self._process(slot, counts, one)
                if outcome is _GIVEN_BACK:  # stopping, or not leading: the rest goes back untouched
                    for rest in taken[index + 1 :]:
                        queue.give_back(rest.key, rest.work)
                    break
                if outcome is _DONE:
                    finished.append(one.key)
            queue.done(*finished)

    def _process(self, slot: int, counts: WorkerMetrics, taken: Taken[str, Pending]) -> object:
        """The tombs, then the current state; a failure puts back what is left, from where it failed.
        Returns ``_DONE``, ``_RETRIED`` (put back to retry) or ``_GIVEN_BACK`` (not attempted)."""
        key, failures = taken.key, taken.failures
        if key == SWEEP_KEY:
            return self._sweep(slot, counts, taken)
        tombs, current, new, touched = taken.work
        undone = len(tombs)
        for index in range(undone + (current is not None)):
            item = tombs[index] if index < undone else current
            assert item is not None  # the last step is there only with a current state
            kind = "DELETED" if index < undone else "ADDED" if new else "MODIFIED"
            if self._stopping or not self._permit():
                self.queue.give_back(key, Pending(tombs[index:], current, new, touched))
                return _GIVEN_BACK
            outcome = self._attempt(slot, counts, kind, key, item, failures)
            if outcome is not None:
                # What a retry gets: the plugin may have changed the dicts it was handed; once it has
                # been handed the current object, a deletion of it must reach it.
                retry = Pending(
                    tuple(map(_unparsed, tombs[index:])),
                    None if current is None else _unparsed(current),
                    new,
                    touched or index == undone,
                )
                counts.retries.inc()
                self.queue.retry(key, retry, None if outcome is _RETRY else outcome)
                return _RETRIED
        return _DONE

    def _attempt(
        self, slot: int, counts: WorkerMetrics, kind: str, key: str, item: Item, failures: int
    ) -> Any:
        """One ``handle_event``: None when done with it (success, or a permanent failure); else when to
        retry it (``_RETRY``: after the usual backoff; a number: after that many seconds)."""
        obj = item.obj if item.obj is not None else cached_object(item.data)
        event = {"type": kind, "object": obj}
        plugin, context, gate = self.plugin, self.context, self._gate
        if gate is not None:
            gate.enter()
        started = time.monotonic()
        self.busy[slot] = (started, kind, key)
        try:
            result = plugin.handle(context, event, plugin.config)
        except Exception as e:
            counts.duration.observe(time.monotonic() - started)
            counts.failed.inc()
            return self._failed(e, f"{kind} {identity(obj)}", failures + 1)
        finally:
            self.busy[slot] = None
            if gate is not None:
                gate.leave()
        counts.succeeded(time.monotonic() - started)
        if result is not None:
            log_result(context.logger, plugin.name, result)
        return None

    def _sweep(self, slot: int, counts: WorkerMetrics, taken: Taken[str, Pending]) -> object:
        """The plugin's sweep over the objects as cached now, with none of its calls beside it."""
        sweep = self.plugin.sweep
        if sweep is None:  # cannot happen: only a plugin with a sweep is handed one
            return _DONE
        if self._stopping or not self._permit():
            self.queue.give_back(taken.key, taken.work)
            return _GIVEN_BACK
        gate = self._gate
        if gate is not None:
            gate.close()
        try:
            # Read once nothing else of the plugin runs: what it did for an object before is in the
            # cache it compares with, and what it does next comes after the sweep.
            objects = self.objects()
            started = time.monotonic()
            self.busy[slot] = (started, "its sweep of", f"{len(objects)} objects")
            try:
                result = sweep(self.context, objects, self.plugin.config)
            except Exception as e:
                counts.failed.inc()
                outcome = self._failed(
                    e, f"its sweep of {len(objects)} objects", taken.failures + 1, "until the next sweep"
                )
                if outcome is None:  # PermanentError: the next period's sweep tries again
                    return _DONE
                counts.retries.inc()
                self.queue.retry(taken.key, taken.work, None if outcome is _RETRY else outcome)
                return _RETRIED
            finally:
                self.busy[slot] = None
        finally:
            if gate is not None:
                gate.open()
        self._swept(result, len(objects), time.monotonic() - started)
        return _DONE

    def _swept(self, result: Any, objects: int, seconds: float) -> None:
        """The sweep's one INFO line, and its changes counted by action."""
        log, name = self.context.logger, self.plugin.name
        if result is None:
            log.debug("Plugin %s swept %d objects in %.1f s.", name, objects, seconds)
            return
        counted = (
            {str(k): v for k, v in result.items() if isinstance(v, int) and not isinstance(v, bool)}
            if isinstance(result, Mapping)
            else {}
        )
        if not counted:
            log.warning(
                "Plugin %s's sweep returned %r, not a mapping of counts or None.", name, type(result).__name__
            )
            return
        found = counted.pop("found", None)
        changes = {action: count for action, count in counted.items() if count}
        self.metrics.swept(changes)
        said = [] if found is None else [f"found {found}"]
        said += [f"{action} {count}" for action, count in sorted(changes.items())] or ["nothing changed"]
        log.info("Plugin %s swept %d objects in %.1f s: %s.", name, objects, seconds, ", ".join(said))

    def _failed(
        self, e: Exception, what: str, attempt: int, permanent: str = "until the object changes"
    ) -> Any:
        """One ERROR line per failed attempt; the traceback too on an unexpected exception's first."""
        what = f"Plugin {self.plugin.name} failed on {what}, attempt {attempt}"
        reason = f"{type(e).__name__}: {str(e).rstrip('.')}" if str(e) else type(e).__name__
        log = self.context.logger
        if isinstance(e, PermanentError):
            log.error("%s: %s; not retried %s.", what, reason, permanent)
            return None
        if isinstance(e, TemporaryError):
            after = "the usual backoff" if e.delay is None else f"{e.delay:.1f} s"
            log.error("%s: %s; retrying after %s.", what, reason, after)
            return _RETRY if e.delay is None else e.delay
        log.error("%s: %s; retrying with backoff.", what, reason, exc_info=attempt == 1)
        return _RETRY


class Reconciler:
    """The informer's sink: every change into every plugin's queue; and the plugins' workers."""

    def __init__(self, plugins: Sequence[tuple[Plugin, PluginContext]], metrics: Metrics) -> None:
        self._permit: Callable[[], bool] = lambda: True
        self._on_refused: Callable[[], None] = lambda: None
        self.plugins = [
            PluginWorkers(plugin, context, metrics.plugin(plugin.name), self._may_act)
            for plugin, context in plugins
        ]
        self._queues = [p.queue for p in self.plugins]
        self._sweeps_stop = threading.Event()

    def __call__(self, changes: list[Change], *, resync: bool = False) -> None:
        """Called by the informer with its lock held: no plugin code, no waiting here."""
        first, *others = self._queues
        if first.depth() < KEEP_PARSED_BELOW:
            first.put([(key, (kind, item)) for kind, key, item in changes], only_idle=resync)
        else:
            others = self._queues
        if others:
            # Each plugin gets its own object: one parsed dict shared between threads that may
            # change it would be a race no plugin author expects.
            unparsed = [(key, (kind, _unparsed(item))) for kind, key, item in changes]
            for queue in others:
                queue.put(unparsed, only_idle=resync)

    def start(self) -> None:
        """Start the workers; they take work once ``resume`` says this replica may act."""
        for p in self.plugins:
            p.start()

    def sweep_over(self, objects: Objects, listed: threading.Event) -> None:
        """Sweep the plugins that have a sweep over ``objects`` (the informer's cache): each time
        ``listed`` becomes set (a watch's initial list is in the queues; the sweep queued behind it
        comes after it), then every plugin's ``sweep_period``. The scheduler only queues the sweep."""
        sweepers = [p for p in self.plugins if p.plugin.sweep is not None]
        for p in sweepers:
            p.objects = objects
        if sweepers:
            threading.Thread(
                target=self._schedule, args=(sweepers, listed), name="sweep-scheduler", daemon=True
            ).start()

    def _schedule(self, sweepers: list[PluginWorkers], listed: threading.Event) -> None:
        due: dict[str, float] = {}
        while not self._sweeps_stop.wait(SCHEDULE_TICK):
            if not listed.is_set():
                due = {}  # a new watch (a new term as leader) lists first, then sweeps again
                continue
            now = time.monotonic()
            for p in sweepers:
                if now >= due.setdefault(p.plugin.name, now):
                    p.queue.put([(SWEEP_KEY, SWEEP_CHANGE)])
                    due[p.plugin.name] = now + p.plugin.work.sweep_period

    def guard(self, permit: Callable[[], bool], on_refused: Callable[[], None]) -> None:
        """Check ``permit`` before every call (leader election: still holding the Lease); when it
        says no, the work waits and ``on_refused`` is told."""
        self._permit, self._on_refused = permit, on_refused

    def _may_act(self) -> bool:
        if self._permit():
            return True
        self._on_refused()
        return False

    def pause(self) -> None:
        """Hand out nothing more; what waits keeps waiting, calls in flight finish."""
        for queue in self._queues:
            queue.pause()

    def resume(self) -> None:
        for queue in self._queues:
            queue.resume()

    def quiesce(self, timeout: float) -> bool:
        """Pause, and wait up to ``timeout`` for the calls in flight; True when none is left."""
        self.pause()
        deadline = time.monotonic() + timeout
        while any(any(p.busy) for p in self.plugins):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self, grace: float) -> list[str]:
        """Stop handing out work and wait up to ``grace`` for the calls in flight; the plugins whose
        workers are still busy after it (what was still queued is listed again at the next start)."""
        self._sweeps_stop.set()
        for p in self.plugins:
            p.stop()
        deadline = time.monotonic() + grace
        return [p.plugin.name for p in self.plugins if not p.join(deadline)]

    def stuck(self) -> Optional[str]:
        """For /healthz: a call running longer than its plugin's ``stuck_after``, else None."""
        now = time.monotonic()
        for p in self.plugins:
            found = p.stuck(now)
            if found:
                return found
        return None
