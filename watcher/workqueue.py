"""A keyed work queue with client-go's guarantees: one worker per key, latest work wins, retries back off.

What client-go's ``util/workqueue`` gives a controller, with the pending work kept beside its key:

* **Coalescing.** A key is queued at most once. Work for a key that already waits is merged into what
  waits (``merge``), so a burst of changes to one object costs one call, not one per change, and the
  queue never holds more than one item per key: memory stays flat however far the workers fall behind.
* **One at a time per key.** A key being processed is never handed to a second worker; work that
  arrives meanwhile waits beside it and is handed out as soon as the first worker is done.
* **Retries per key.** A failed item goes back with what is left of it (``combine``-d with anything
  newer) after an exponential backoff with jitter that only that key pays. Newer work for a key in
  backoff is handed out at once, as client-go's queue does (an ``Add`` is immediate whatever a
  pending ``AddAfter`` says), but the key keeps its failure count: it fails again, it waits longer.
  Success forgets the count.
* **Pause and shut down.** ``pause`` keeps everything but hands nothing out (a replica that lost its
  Lease); ``shutdown`` hands nothing out ever again, and every ``get`` returns None.

Everything is guarded by one lock; the clock is injectable so that tests drive backoff without sleeping.
"""

from __future__ import annotations

import heapq
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, Optional, TypeVar

K = TypeVar("K", bound=Hashable)
C = TypeVar("C")  # one change, as the producer sees it
P = TypeVar("P")  # the pending work of a key: changes merged


@dataclass(frozen=True)
class RetryPolicy:
    """Per-key exponential backoff: the first retry within ``initial``, doubling up to ``cap``."""

    # The first retry within half a second, then 1 s, 2 s, ...: three failures in a row cost at most
    # 3.5 s, so an API or DNS hiccup is repaired before anyone notices.
    initial: float = 0.5
    cap: float = 300.0  # retry_max: a key that keeps failing is tried at least every five minutes

    def delay(self, failures: int) -> float:
        """Jittered between half and all of ``initial * 2**(failures-1)``, capped: keys failing together
        (a DNS outage) do not retry in lockstep."""
        ceiling = min(self.cap, self.initial * 2 ** min(failures - 1, 62))
        return random.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class Taken(Generic[K, P]):
    """A key handed to a worker, with its work and how many times that work has failed before."""

    key: K
    work: P
    failures: int


class WorkQueue(Generic[K, C, P]):
    """Keys with pending work, handed to workers one key at a time; see the module docstring."""

    def __init__(
        self,
        merge: Callable[[Optional[P], C], Optional[P]],
        combine: Callable[[P, P], Optional[P]],
        *,
        policy: RetryPolicy = RetryPolicy(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._merge = merge  # (what waits or None, a change) -> what waits now, None: nothing to do
        self._combine = combine  # (what a failed attempt left, what came meanwhile) -> the next work
        self.policy = policy
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._work: dict[K, P] = {}  # pending work by key, for keys waiting or being processed
        self._since: dict[K, float] = {}  # when each key's oldest un-handled work arrived
        self._ready: deque[K] = deque()  # keys to hand out now, oldest first (may hold stale keys)
        self._queued: set[K] = set()  # keys in _ready
        self._delayed: dict[K, float] = {}  # keys in backoff -> when they are due
        self._heap: list[tuple[float, int, K]] = []  # (due, tie-break, key); stale entries skipped
        self._seq = 0
        self._processing: set[K] = set()
        self._in_hand_since: dict[K, float] = {}  # _since of the work in a worker's hands
        self._failures: dict[K, int] = {}
        self._paused = False
        self._closed = False

    # --- producers ----------------------------------------------------------------------------------

    def put(self, changes: Iterable[tuple[K, C]], *, only_idle: bool = False) -> None:
        """Merge each change into its key's work; keys not being processed become ready at once.

        ``merge`` returning the very work that waited means the change added nothing: the key keeps
        its place (and its backoff). ``only_idle`` skips keys that have work waiting or in hand (a
        resync: what waits or runs is at least as new as the cache it was read from).
        """
        merge, work, since, processing = self._merge, self._work, self._since, self._processing
        queued, ready, delayed = self._queued, self._ready, self._delayed
        now = self._clock()
        with self._cond:
            woke = 0
            for key, change in changes:
                old = work.get(key)
                if old is None:
                    if only_idle and key in processing:
                        continue
                    since[key] = now
                elif only_idle:
                    continue
                merged = merge(old, change)
                if merged is old:
                    continue
                if merged is None:
                    del work[key]
                    since.pop(key, None)
                    continue
                work[key] = merged
                if key not in queued and key not in processing:
                    if delayed:
                        delayed.pop(key, None)  # newer work does not wait out a backoff
                    queued.add(key)
                    ready.append(key)
                    woke += 1
            if woke:
                self._cond.notify(woke)  # a worker per key made ready, no thundering herd

    # --- workers ------------------------------------------------------------------------------------

    def get(self, timeout: Optional[float] = None) -> Optional[Taken[K, P]]:
        """The next key with its work, marked as processing; None when shut down, or after ``timeout``
        (0: don't wait) with nothing ready."""
        taken = self.take(1, timeout)
        return taken[0] if taken else None

    def take(self, limit: int, timeout: Optional[float] = None) -> Optional[list[Taken[K, P]]]:
        """Up to ``limit`` ready keys with their work, oldest first, all marked as processing: a single
        worker takes a run of keys for one turn of the lock instead of one each. None when shut down;
        an empty list after ``timeout`` (0: don't wait) with nothing ready."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                if self._closed:
                    return None
                if not self._paused:
                    self._promote_due()
                    if self._ready:
                        return self._hand_out(limit)
                now = self._clock()
                if deadline is not None and now >= deadline:
                    return []
                wait = self._next_due(now)
                if deadline is not None:
                    wait = deadline - now if wait is None else min(wait, deadline - now)
                self._cond.wait(wait)

    def _hand_out(self, limit: int) -> list[Taken[K, P]]:
        ready, queued, work, since, failures = (
            self._ready,
            self._queued,
            self._work,
            self._since,
            self._failures,
        )
        processing, in_hand = self._processing, self._in_hand_since
        now = self._clock()
        out: list[Taken[K, P]] = []
        while ready and len(out) < limit:
            key = ready.popleft()
            queued.discard(key)
            pending = work.pop(key, None)
            if pending is None:  # everything for it cancelled out while it waited
                continue
            processing.add(key)
            in_hand[key] = since.pop(key, now)
            out.append(Taken(key, pending, failures.get(key, 0)))
        return out

    def done(self, *keys: K) -> None:
        """The work handed out for ``keys`` is over (it succeeded, or failed for good): forget their
        failures; work that came meanwhile is handed out next."""
        with self._cond:
            for key in keys:
                if self._failures:
                    self._failures.pop(key, None)
                self._processing.discard(key)
                self._in_hand_since.pop(key, None)
                if key in self._work:
                    self._make_ready(key)

    def retry(self, key: K, left: P, after: Optional[float] = None) -> float:
        """The work failed; ``left`` is what remains of it. Returns the delay before it is handed out
        again: ``after`` if given (the plugin asked for it), else the key's backoff; 0 when newer work
        has arrived meanwhile, which goes out at once, together with ``left``."""
        with self._cond:
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
            if not self._put_back(key, left):
                return 0.0
            delay = self.policy.delay(failures) if after is None else max(0.0, after)
            due = self._clock() + delay
            self._delayed[key] = due
            self._seq += 1
            heapq.heappush(self._heap, (due, self._seq, key))
            self._cond.notify()
            return delay

    def give_back(self, key: K, left: P) -> None:
        """The work was not attempted (this replica stopped leading, or is stopping): ``left`` waits
        again, ready at once, as if it had never been handed out; its failures are unchanged."""
        with self._cond:
            if self._put_back(key, left):
                self._make_ready(key)

    def _put_back(self, key: K, left: P) -> bool:
        """Return ``left`` to the key, combined with newer work; True when it waits for its caller to
        say when it is due (no newer work, which would have made it ready at once)."""
        newer = self._work.get(key)
        merged = left if newer is None else self._combine(left, newer)
        self._processing.discard(key)
        arrived = self._in_hand_since.pop(key, self._clock())
        if merged is None:
            self._work.pop(key, None)
            self._since.pop(key, None)
            return False
        self._work[key] = merged
        # The work still waits since it first arrived: a key that keeps failing looks old.
        self._since[key] = min(arrived, self._since.get(key, arrived))
        if newer is not None:
            self._make_ready(key)
            return False
        return True

    def _make_ready(self, key: K) -> None:
        self._delayed.pop(key, None)
        if key not in self._queued:
            self._queued.add(key)
            self._ready.append(key)
            self._cond.notify()

    def _promote_due(self) -> None:
        """Move keys whose backoff is over to the ready queue."""
        heap = self._heap
        if not heap:
            return
        now = self._clock()
        while heap and heap[0][0] <= now:
            due, _, key = heapq.heappop(heap)
            if self._delayed.get(key) == due:
                del self._delayed[key]
                if key not in self._queued and key not in self._processing:
                    self._queued.add(key)
                    self._ready.append(key)

    def _next_due(self, now: float) -> Optional[float]:
        """Seconds until the next backoff ends (stale heap entries are dropped), None if none waits."""
        heap = self._heap
        while heap and self._delayed.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        if not heap or self._paused:
            return None
        return max(0.0, heap[0][0] - now)

    # --- control ------------------------------------------------------------------------------------

    def pause(self) -> None:
        """Hand nothing out until ``resume``; what waits keeps waiting, what is in hand finishes."""
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def shutdown(self) -> None:
        """Never hand anything out again; every ``get`` returns None (in-hand work may still finish)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wake(self) -> None:
        """Make every waiting ``get`` look again (its caller's circumstances changed)."""
        with self._cond:
            self._cond.notify_all()

    # --- what /metrics shows --------------------------------------------------------------------------

    def depth(self) -> int:
        """Keys with work waiting (ready or in backoff), not counting work in a worker's hands."""
        with self._cond:
            return len(self._work)

    def oldest(self) -> float:
        """Seconds the oldest waiting work has waited since it arrived (0 when none waits); work that
        failed keeps its first arrival, so a key that keeps failing shows here."""
        with self._cond:
            if not self._since:
                return 0.0
            return max(0.0, self._clock() - min(self._since.values()))

    def idle(self) -> bool:
        """Nothing waits and nothing is in a worker's hands."""
        with self._cond:
            return not self._work and not self._processing
