"""Kubernetes Events on the objects the plugins act on, so that ``oc describe route shop`` says what the
watcher did to it and why it failed.

Plugins call ``watcher.record(obj, type, reason, message)`` (``dispatch.PluginContext.record``). That
call only appends to a bounded backlog and returns: posting happens in this module's own thread, so an
API server that is slow or refuses Events never blocks or fails the plugin's work. A full backlog
drops the oldest Event (and counts it); Events are best-effort by design, as in Kubernetes itself.

What client-go's ``EventRecorder`` does against Event storms, done the same way here:

* **Aggregation**: an Event identical to one posted for the same object within ``aggregate_for``
  (same type, reason and message) is not posted again: the existing Event's ``count`` grows and its
  ``lastTimestamp`` moves (a JSON merge patch), as ``EventCorrelator``'s logger does. An Event that
  expired meanwhile (the API server keeps them an hour) is created afresh.
* **Rate limit per object**: a token bucket per involved object, 25 at once and one more every five
  minutes (client-go's ``EventSourceObjectSpamFilter`` defaults); what goes over is dropped.

Events go through the core v1 API with ``source.component`` and ``reportingComponent`` set to
``event-watcher`` and no ``eventTime``, which kube-apiserver validates by its legacy rules (the
Event's namespace must be the object's). The alert plugin skips Events whose source is
``event-watcher``, so what the watcher posts never feeds back into a watch of Events.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional

from prometheus_client import CollectorRegistry, Counter

from watcher import errors
from watcher.client import Client

logger = logging.getLogger(__name__)

COMPONENT = "event-watcher"
TYPES = ("Normal", "Warning")
REASON_LIMIT = 128  # kube-apiserver's ReasonLengthLimit
MESSAGE_LIMIT = 1024  # its NoteLengthLimit, which client-go applies to core v1 messages too
RESULTS = ("posted", "aggregated", "rate_limited", "dropped", "failed")


@dataclass(frozen=True)
class Limits:
    """How many Events, how fast; the defaults are client-go's."""

    burst: int = 25  # Events at once per object
    refill_every: float = 300.0  # seconds for one more
    aggregate_for: float = 600.0  # an identical Event within this long grows the count instead
    backlog: int = 1000  # Events waiting to be posted; beyond, the oldest is dropped
    remembered: int = 4096  # posted Events kept for aggregation (least recently used first out)
    attempts: int = 3  # tries per Event before it is given up


@dataclass
class _Posted:
    name: str
    namespace: str
    count: int
    last: float


class _Bucket:
    """One object's token bucket."""

    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.updated = now


def posted_by_us(event: Mapping[str, Any]) -> bool:
    """Whether a Kubernetes Event was posted by an Event Watcher (``watcher.record``): the alert
    plugin skips those, so that what the watcher says never feeds back into a watch of Events."""
    source = event.get("source")
    component = source.get("component") if isinstance(source, Mapping) else None
    return COMPONENT in (component, event.get("reportingComponent"), event.get("reportingController"))


def reference(obj: Mapping[str, Any]) -> dict[str, str]:
    """The ``involvedObject`` for ``obj``: kind, apiVersion, namespace, name, uid, resourceVersion."""
    meta = obj.get("metadata") or {}
    ref = {
        "kind": obj.get("kind"),
        "apiVersion": obj.get("apiVersion"),
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "resourceVersion": meta.get("resourceVersion"),
    }
    return {k: v for k, v in ref.items() if isinstance(v, str) and v}


def one_line(text: str, limit: int) -> str:
    """``text`` on one line and within ``limit`` characters (cut with an ellipsis)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _timestamp(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    """Posts Events from a thread of its own; see the module docstring."""

    def __init__(
        self,
        client: Client,
        instance: str,
        registry: CollectorRegistry,
        *,
        limits: Limits = Limits(),
        clock: Callable[[], float] = time.time,
        dry_run: bool = False,
    ) -> None:
        self._client = client
        self._dry_run = dry_run  # --dry-run: say what would be posted, post nothing
        self._instance = one_line(instance, 128) or COMPONENT
        self._limits = limits
        self._clock = clock
        self._backlog: deque[tuple[dict[str, str], str, str, str, float]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._forbidden = False  # the Role does not allow Events: say so once, then stop trying
        self._thread: Optional[threading.Thread] = None
        self._posted: OrderedDict[tuple[str, ...], _Posted] = OrderedDict()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        counter = Counter(
            "event_watcher_kubernetes_events_total",
            "Kubernetes Events the plugins asked for, by what became of them.",
            ["result"],
            registry=registry,
        )
        self._results = {result: counter.labels(result) for result in RESULTS}

    # --- what plugins call --------------------------------------------------------------------------

    def record(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Queue an Event on ``obj``; never blocks, never raises for a bad argument (it logs it)."""
        ref = reference(obj)
        if type_ not in TYPES or not reason or "name" not in ref or "kind" not in ref:
            logger.warning(
                "Not recording an Event %r (type %r) on %s: needs type Normal or Warning, a reason, "
                "and an object with kind and name.",
                reason,
                type_,
                ref.get("name", "an object without a name"),
            )
            return
        if self._dry_run:
            logger.info(
                "dry-run: would record a %s Event %s on %s %s/%s: %s",
                type_,
                reason,
                ref["kind"],
                ref.get("namespace", ""),
                ref["name"],
                one_line(message, MESSAGE_LIMIT),
            )
            return
        # The time it happened, not when the thread gets to post it.
        item = (ref, type_, one_line(reason, REASON_LIMIT), one_line(message, MESSAGE_LIMIT), self._clock())
        with self._cond:
            if len(self._backlog) >= self._limits.backlog:
                self._backlog.popleft()
                self._results["dropped"].inc()
            self._backlog.append(item)
            self._cond.notify()

    # --- the thread ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="event-recorder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Post what is waiting, for up to ``timeout`` seconds, then stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._backlog and not self._stopping:
                    self._cond.wait()
                if not self._backlog:
                    return
                item = self._backlog.popleft()
            self._results[self._post(*item)].inc()

    def _post(self, ref: dict[str, str], type_: str, reason: str, message: str, now: float) -> str:
        if self._forbidden:
            return "failed"
        obj_key = ref.get("uid") or f"{ref['kind']}/{ref.get('namespace', '')}/{ref['name']}"
        key = (obj_key, type_, reason, message)
        seen = self._posted.get(key)
        if (
            seen is not None
            and now - seen.last < self._limits.aggregate_for
            and self._try(functools.partial(self._bump, seen, now))
        ):
            self._posted.move_to_end(key)
            return "aggregated"
        if not self._allowed(obj_key, now):
            return "rate_limited"
        created = self._try(lambda: self._create(ref, type_, reason, message, now))
        if created is None:
            return "failed"
        self._posted[key] = created
        while len(self._posted) > self._limits.remembered:
            self._posted.popitem(last=False)
        return "posted"

    def _try(self, call: Callable[[], Any]) -> Any:
        """``call()``'s result, or None once it has failed ``attempts`` times (or the Event is gone)."""
        for attempt in range(1, self._limits.attempts + 1):
            try:
                return call()
            except errors.NotFound:
                return None
            except errors.Forbidden as e:
                if not self._forbidden:
                    logger.warning(
                        "Cannot post Kubernetes Events (%s): give the Role create and patch on events, "
                        "or set record_events = false. Not asking again until the next start.",
                        e,
                    )
                self._forbidden = True
                return None
            except Exception as e:  # best-effort: whatever goes wrong, the thread goes on
                if attempt == self._limits.attempts:
                    logger.warning("Could not post a Kubernetes Event: %s", e)
                    return None
                time.sleep(0.2 * attempt)
        return None

    def _allowed(self, obj_key: str, now: float) -> bool:
        limits = self._limits
        bucket = self._buckets.get(obj_key)
        if bucket is None:
            bucket = self._buckets[obj_key] = _Bucket(limits.burst, now)
            while len(self._buckets) > limits.remembered:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(obj_key)
            bucket.tokens = min(limits.burst, bucket.tokens + (now - bucket.updated) / limits.refill_every)
            bucket.updated = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def _create(self, ref: dict[str, str], type_: str, reason: str, message: str, now: float) -> _Posted:
        # The Event lives in its object's namespace; a cluster-scoped object's Events go to default.
        namespace = ref.get("namespace") or "default"
        name = f"{ref['name']}.{time.time_ns():x}"  # client-go's naming: object name, then a unique suffix
        stamp = _timestamp(now)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": ref,
            "type": type_,
            "reason": reason,
            "message": message,
            "source": {"component": COMPONENT, "host": self._instance},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        self._client.request("POST", f"/api/v1/namespaces/{namespace}/events", json=body)
        return _Posted(name, namespace, 1, now)

    def _bump(self, seen: _Posted, now: float) -> bool:
        patch = {"count": seen.count + 1, "lastTimestamp": _timestamp(now)}
        self._client.request(
            "PATCH",
            f"/api/v1/namespaces/{seen.namespace}/events/{seen.name}",
            json=patch,
            content_type="application/merge-patch+json",
        )
        seen.count += 1
        seen.last = now
        return True
