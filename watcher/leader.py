"""Lease-based leader election (``coordination.k8s.io/v1``), and running the watch only while leading.

The API server is the whole consensus engine: a Lease object names its holder, and every update is a
PUT carrying the resourceVersion we read, so of two replicas racing for it exactly one wins and the
other gets 409 Conflict. This is client-go's ``leaderelection`` package, with its defaults:

* ``lease_duration`` 15 s - a standby takes a lease whose record has not changed for this long, as
  measured on the standby's own monotonic clock from the moment it *saw* the record change (no
  comparison of timestamps written by another machine's clock).
* ``renew_deadline`` 10 s - the leader gives up when it has not renewed for this long, counted from
  the start of its last successful renew request. Because 10 < 15, it stops calling plugins before any
  standby can acquire: never two leaders at once, even when the leader is cut off from the API server.
* ``retry_period`` 2 s - how often the leader renews and a standby tries to acquire (standbys add up to
  20 % jitter so that they do not retry in lockstep).

On SIGTERM the leader stops its watch, lets the plugin calls in flight finish, and releases the Lease
(empty holder, ``leaseDurationSeconds`` 1, as client-go's ``ReleaseOnCancel``), so a standby takes over
at its next try instead of after 15 s.

Only the leader runs the informer and the plugins' workers. Every plugin call first checks the lease on
the local clock, so a leader that was frozen (SIGSTOP, a long GC pause, a hung renew request) leaves
the work it has after its deadline in its queues instead of handing it to plugins; losing the Lease
pauses the queues. What waits there is still owed to the plugins when this replica leads again, and
what changed meanwhile comes from that term's relist diff, deletions included. A replica's first term
starts from an empty cache, so it delivers every object as ADDED, as after a restart.
"""

from __future__ import annotations

import datetime
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional, Protocol

from watcher import errors, health

logger = logging.getLogger(__name__)

LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
JITTER = 1.2  # client-go's JitterFactor for the acquire loop


@dataclass(frozen=True)
class Timing:
    """client-go's defaults; tests pass shorter ones."""

    lease_duration: float = 15.0  # a standby may take a lease unchanged for this long
    renew_deadline: float = 10.0  # the leader gives up when it could not renew for this long
    retry_period: float = 2.0  # renew / try-to-acquire interval

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs 0 < retry_period < renew_deadline < lease_duration")


# The timing the daemon uses; a module attribute so that a test can launch the real CLI with shorter
# periods (tests/test_leader.py) without a setting nobody should change in production.
DEFAULT_TIMING = Timing()


class RawClient(Protocol):
    def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        content_type: Optional[str] = None,
    ) -> dict[str, Any]: ...


def default_identity() -> str:
    """Unique per process: the hostname (the pod name in Kubernetes), the PID and a random suffix."""
    return f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


def _micro_time(now: float) -> str:
    """A ``MicroTime`` as the API server writes it."""
    return datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    """One candidate for one Lease. One thread drives it; ``leading`` may be read from any thread."""

    def __init__(
        self,
        client: RawClient,
        namespace: str,
        name: str,
        *,
        identity: Optional[str] = None,
        timing: Optional[Timing] = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.timing = timing if timing is not None else DEFAULT_TIMING
        self._clock = clock
        self._wall = wall
        self._collection = LEASES.format(namespace=namespace)
        self._path = f"{self._collection}/{name}"
        self._observed: Optional[dict[str, Any]] = None  # the last spec we saw
        self._observed_at = 0.0  # our clock when it last changed
        self._resource_version = ""
        self._valid_until = 0.0  # our clock: leader until then unless renewed
        self.holder = ""  # who holds the lease, as last seen
        self.lease_seen = False  # the Lease was read or written at least once

    def __repr__(self) -> str:
        return f"Elector({self.namespace}/{self.name}, identity={self.identity!r})"

    @property
    def leading(self) -> bool:
        """True until our renew deadline passes; read on every dispatch, so it must be cheap."""
        return self._clock() < self._valid_until

    def try_acquire_or_renew(self) -> bool:
        """One attempt, client-go's ``tryAcquireOrRenew``; True when we hold the lease afterwards."""
        started = self._clock()
        try:
            lease = self.client.request("GET", self._path)
        except errors.NotFound:
            return self._create(started)
        self.lease_seen = True
        spec = dict(lease.get("spec") or {})
        self._observe(spec, str((lease.get("metadata") or {}).get("resourceVersion", "")))
        holder = str(spec.get("holderIdentity") or "")
        if holder and holder != self.identity:
            duration = float(spec.get("leaseDurationSeconds") or self.timing.lease_duration)
            if self._observed_at + duration > self._clock():
                self._valid_until = 0.0
                return False
            logger.info(
                "The lease %s/%s held by %s expired; trying to take it.", self.namespace, self.name, holder
            )
        now = _micro_time(self._wall())
        mine = holder == self.identity
        new_spec = {
            **spec,
            "holderIdentity": self.identity,
            "leaseDurationSeconds": round(self.timing.lease_duration),
            "renewTime": now,
            "acquireTime": spec.get("acquireTime") if mine and spec.get("acquireTime") else now,
            "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (0 if mine else 1),
        }
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {**(lease.get("metadata") or {}), "resourceVersion": self._resource_version},
            "spec": new_spec,
        }
        try:
            written = self.client.request("PUT", self._path, json=body)
        except errors.Conflict:
            # Someone wrote the lease after our GET: they won this round (or renewed it).
            self._valid_until = 0.0
            return False
        self._succeeded(written, started)
        return True

    def _create(self, started: float) -> bool:
        now = _micro_time(self._wall())
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": round(self.timing.lease_duration),
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }
        try:
            written = self.client.request("POST", self._collection, json=body)
        except errors.Conflict:  # AlreadyExists: another replica created it first
            return False
        self._succeeded(written, started)
        return True

    def _succeeded(self, written: dict[str, Any], started: float) -> None:
        self.lease_seen = True
        self._observe(
            dict(written.get("spec") or {}), str((written.get("metadata") or {}).get("resourceVersion", ""))
        )
        self._valid_until = started + self.timing.renew_deadline

    def _observe(self, spec: dict[str, Any], resource_version: str) -> None:
        self._resource_version = resource_version
        self.holder = str(spec.get("holderIdentity") or "")
        if spec != self._observed:
            self._observed = spec
            self._observed_at = self._clock()

    def release(self) -> bool:
        """Give the lease up now (only if we still hold it); True when the standby can take it at once."""
        if not self.leading or self.holder != self.identity or self._observed is None:
            return False
        self._valid_until = 0.0
        now = _micro_time(self._wall())
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "resourceVersion": self._resource_version,
            },
            "spec": {
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": int(self._observed.get("leaseTransitions") or 0),
            },
        }
        try:
            self.client.request("PUT", self._path, json=body)
        except (errors.APIError, errors.TransportError) as e:
            logger.warning(
                "Could not release the lease %s/%s (%s); it expires on its own.", self.namespace, self.name, e
            )
            return False
        self.holder = ""
        logger.info("Released the lease %s/%s.", self.namespace, self.name)
        return True


class Watch(Protocol):
    """What the runner needs from the informer (``watcher.informer.Informer``)."""

    ready: threading.Event
    last_activity: float

    def run(self, stop: threading.Event) -> None: ...

    def interrupt(self) -> None: ...


class Deliveries(Protocol):
    """What the runner needs from the plugins' work queues (``watcher.reconciler.Reconciler``)."""

    def guard(self, permit: Callable[[], bool], on_refused: Callable[[], None]) -> None: ...

    def resume(self) -> None: ...

    def quiesce(self, timeout: float) -> bool: ...


class Runner:
    """Runs the informer and lets the plugins' queues work, for ever (no election) or only while this
    replica holds the Lease.

    Built in the main thread, so that a missing namespace is a clean start-up error; ``run`` is the
    body of the worker thread and returns when ``stop`` is set.
    """

    def __init__(
        self,
        watch: Watch,
        stop: threading.Event,
        probes: health.Probes,
        *,
        deliveries: Optional[Deliveries] = None,
        elector: Optional[Elector] = None,
        leader_gauge: Any = None,
        grace: float = 20.0,
    ) -> None:
        self.watch = watch
        self.stop = stop
        self.probes = probes
        self.deliveries = deliveries
        self.elector = elector
        self.grace = grace  # how long calls in flight may take on SIGTERM before the Lease is left to expire
        self._gauge = leader_gauge
        self._term_stop = threading.Event()
        self._lost = threading.Event()
        self._failing = ""  # the last lease error logged, so that a streak is logged once
        if elector is not None and deliveries is not None:
            deliveries.guard(self._leading, self._lose)
        self._set_gauge(0 if elector else 1)

    @classmethod
    def for_settings(
        cls,
        settings: Any,
        client: RawClient,
        watch: Watch,
        deliveries: Deliveries,
        stop: threading.Event,
        probes: health.Probes,
        metrics: Any,
    ) -> Runner:
        """The runner ``Settings`` ask for; raises ``errors.ConfigError`` when the Lease has no namespace."""
        elector = None
        if settings.leader_election:
            if not settings.namespace:
                raise errors.ConfigError(
                    "leader election needs a namespace for its Lease: set K8S_NAMESPACE (k8s_namespace)",
                    exit_code=errors.EXIT_NAMESPACE,
                )
            elector = Elector(client, settings.namespace, settings.leader_election_name)
        return cls(
            watch,
            stop,
            probes,
            deliveries=deliveries,
            elector=elector,
            leader_gauge=getattr(metrics, "leader", None),
            grace=settings.shutdown_grace,
        )

    def _leading(self) -> bool:
        return self.elector is None or self.elector.leading

    def _set_gauge(self, value: int) -> None:
        if self._gauge is not None:
            self._gauge.set(value)

    def _lose(self) -> None:
        """From a plugin worker (a call due after the deadline) or the renew loop: stop the term."""
        if not self._lost.is_set():
            if self.elector is not None and not self.stop.is_set():
                logger.warning(
                    "The lease %s/%s was not renewed within %.0f s (this process was paused or cut off); "
                    "stopped calling plugins.",
                    self.elector.namespace,
                    self.elector.name,
                    self.elector.timing.renew_deadline,
                )
            self._lost.set()
            self._term_stop.set()
            self.watch.interrupt()

    def run(self) -> None:
        if self.elector is None:
            self.probes.watching(self.watch, "single")
            if self.deliveries is not None:
                self.deliveries.resume()
            self.watch.run(self.stop)
            return
        try:
            self._elect()
        finally:
            self._set_gauge(0)

    # --- with an election ---------------------------------------------------------------------------

    def _elect(self) -> None:
        elector = self.elector
        assert elector is not None
        timing = elector.timing
        logger.info(
            "Leader election on lease %s/%s as %s; waiting to lead.",
            elector.namespace,
            elector.name,
            elector.identity,
        )
        while not self.stop.is_set():
            if not self._attempt():
                self.probes.standby(elector.lease_seen)
                self.stop.wait(timing.retry_period * random.uniform(1.0, JITTER))
                continue
            self._lead()
        logger.debug("Leader election stopped for %s.", elector.identity)

    def _attempt(self) -> bool:
        elector = self.elector
        assert elector is not None
        try:
            won = elector.try_acquire_or_renew()
        except (errors.APIError, errors.TransportError) as e:
            # Once per kind of failure, not every retry period (a missing Role rule would flood the log).
            message = str(e)
            level = logging.DEBUG if message == self._failing else logging.WARNING
            logger.log(
                level, "Could not read or write the lease %s/%s: %s", elector.namespace, elector.name, message
            )
            self._failing = message
            return False
        if self._failing:
            logger.info("The lease %s/%s can be read and written again.", elector.namespace, elector.name)
            self._failing = ""
        return won

    def _lead(self) -> None:
        elector = self.elector
        assert elector is not None
        logger.info(
            "Became the leader (lease %s/%s, identity %s); starting the watch.",
            elector.namespace,
            elector.name,
            elector.identity,
        )
        self._term_stop.clear()
        self._lost.clear()
        self._set_gauge(1)
        self.probes.watching(self.watch, "leader")
        if self.deliveries is not None:
            self.deliveries.resume()
        term = threading.Thread(
            target=self.watch.run, args=(self._term_stop,), name="informer-term", daemon=True
        )
        term.start()
        while not self.stop.is_set() and not self._lost.is_set():
            self.stop.wait(elector.timing.retry_period)
            if self.stop.is_set() or self._lost.is_set():
                break
            if self._attempt():
                self.probes.beat()
                continue
            if elector.holder and elector.holder != elector.identity:
                logger.warning(
                    "Lost the lease %s/%s to %s; stopping the watch.",
                    elector.namespace,
                    elector.name,
                    elector.holder,
                )
                break
            if not elector.leading:
                logger.warning(
                    "Could not renew the lease %s/%s within %.0f s; stopping the watch.",
                    elector.namespace,
                    elector.name,
                    elector.timing.renew_deadline,
                )
                break
        self._set_gauge(0)
        self._lose_and_join(term)
        # Stopping: the calls in flight may finish before the Lease goes. Lost: pause at once; a call
        # in flight cannot be taken back (as with client-go), but nothing more starts.
        quiet = True
        if self.deliveries is not None:
            quiet = self.deliveries.quiesce(self.grace if self.stop.is_set() else 0.0)
        if self.stop.is_set():
            if term.is_alive() or not quiet:
                logger.warning("A plugin call is still in flight; not releasing the lease (it expires).")
            else:
                elector.release()
        else:
            logger.info("Now a standby for lease %s/%s.", elector.namespace, elector.name)
            self.probes.standby(elector.lease_seen)

    def _lose_and_join(self, term: threading.Thread) -> None:
        """Stop the term's informer; the watch can open just after an interrupt, so repeat it."""
        self._lost.set()
        self._term_stop.set()
        deadline = time.monotonic() + (1.5 if self.stop.is_set() else 30.0)
        while term.is_alive() and time.monotonic() < deadline:
            self.watch.interrupt()
            term.join(0.2)
