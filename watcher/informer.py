"""List-then-watch with client-go reflector semantics: nothing lost, nothing out of order.

Three nested loops, each with one job:

* ``run``          – forever: retry with backoff until stopped; relist when the position is lost.
* ``_relist``      – LIST every page, diff against the cache, deliver only the difference.
* ``_watch_once``  – one WATCH request from the last resourceVersion, until it ends or breaks.

What it delivers goes to a ``Sink`` (the reconciler's work queues), a block of changes at a time,
never to a plugin: the informer never waits for plugin work. Delivery happens under one lock so that
the periodic resync (every cached object handed over again, for plugins to repair drift) never
interleaves with a watch event: what a resync hands over is never older than what went before it.
The cache keeps each
object's JSON bytes, not a tree of dicts: enough for the relist diff (resourceVersion) and for the
DELETED event of an object that vanished while we were blind, at a fraction of the memory. From a
WATCH it keeps the very line that arrived, so an event costs one parse and no copy; a line carrying
managedFields or the last-applied annotation is re-encoded once without them (``watcher.transform``,
unless the watch keeps them). ``bench/watch_throughput.py`` measures the whole path;
``bench/cache_memory.py`` the cache and the daemon's memory.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional, Protocol

import orjson

from watcher import errors, stream, transform
from watcher.client import Client, ResourceInfo, WatchResponse
from watcher.metrics import Metrics

logger = logging.getLogger(__name__)

RESYNC_SLICE = 1000  # objects a resync hands over per turn of the lock
_MANAGED_FIELDS, _LAST_APPLIED = transform.MANAGED_FIELDS_KEY, transform.LAST_APPLIED_KEY


class Item(NamedTuple):
    """One state of one object, as delivered: cheap to make per event, parsed only where needed."""

    uid: str  # which incarnation: a delete and re-create under the same name are two objects
    data: bytes  # the object's JSON or the watch line that carried it (``cached_object`` reads both)
    obj: Optional[dict[str, Any]]  # the object, when the informer parsed it anyway (a watch event)


# NamedTuple's constructor is Python code; this builds the same tuple at C speed, once per event.
new_item = functools.partial(tuple.__new__, Item)

# (type, key, item): ADDED, MODIFIED or DELETED as the watch says, or SYNC for a resync's "still so";
# the key is namespace/name (name alone when cluster-scoped), the identity work is queued under.
Change = tuple[str, str, Item]


class Sink(Protocol):
    """Where the informer hands its changes (``watcher.reconciler.Reconciler``), with its lock held."""

    def __call__(self, changes: list[Change], *, resync: bool = False) -> None: ...


@dataclass(frozen=True)
class Tuning:
    """Timing of the watch loop; the defaults are client-go's where it has one."""

    watch_timeout: float = 300.0  # timeoutSeconds asked of the server (jittered +-10 %), as client-go's 5 min
    read_margin: float = 30.0  # a stream silent this much longer than timeoutSeconds is dead
    backoff_initial: float = 0.8  # client-go's reflector starts at 800 ms
    backoff_cap: float = 30.0  # and caps at 30 s
    healthy_after: float = 10.0  # a stream this old (or with events) resets the backoff
    empty_watch: float = 1.0  # a watch that ends sooner with no event at all is suspicious...
    empty_watch_limit: int = 3  # ...and this many in a row mean an expired resourceVersion
    page_size: int = 500


class Backoff:
    """Exponential backoff with full jitter, capped; reset after a healthy stream."""

    def __init__(self, initial: float, cap: float) -> None:
        self.initial = initial
        self.cap = cap
        self.attempt = 0

    def next(self) -> float:
        delay = min(self.cap, self.initial * (2**self.attempt))
        self.attempt += 1
        return random.uniform(delay / 2, delay)

    def reset(self) -> None:
        self.attempt = 0


class _Streak:
    """Log a failure once per streak, not once per try; say when it is over."""

    def __init__(self) -> None:
        self.kind: Optional[str] = None
        self.count = 0

    def failed(self, kind: str, message: str, level: int = logging.WARNING) -> None:
        if kind != self.kind:
            logger.log(level, "%s Retrying with backoff.", message)
            self.kind = kind
            self.count = 0
        else:
            logger.debug("Still failing (%d): %s", self.count, message)
        self.count += 1

    def ok(self) -> None:
        if self.kind is not None:
            logger.info("The API server answers again after %d failed tries.", self.count)
        self.kind = None
        self.count = 0


class Informer:
    """Keeps a cache of the watched objects in sync and hands every change to ``sink`` in order."""

    def __init__(
        self,
        client: Client,
        info: ResourceInfo,
        namespace: Optional[str],
        sink: Sink,
        *,
        metrics: Metrics,
        label_selector: Optional[str] = None,
        field_selector: Optional[str] = None,
        resync_period: float = 0.0,
        keep_managed_fields: bool = False,
        tuning: Tuning = Tuning(),
    ) -> None:
        self.client = client
        self.info = info
        self.namespace = namespace if info.namespaced else None
        self.sink = sink
        self.metrics = metrics
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = resync_period
        # Unless kept, managedFields and the last-applied annotation never enter the cache, the
        # queues or an event (``watcher.transform``): most of a typical object, read by no plugin.
        self.strip = not keep_managed_fields
        self.tuning = tuning
        self.resource_version = ""
        # uid -> JSON: what the relist diff and a DELETED for an object that vanished unseen need, at
        # about the size of the JSON (a tree of dicts costs ~5x more). The JSON is the watch line
        # that carried the object, or the object's own (see cached_object); the relist finds the
        # resourceVersion in it (same_version), so an entry costs no tuple and no second string.
        self.cache: dict[str, bytes] = {}
        self._received = metrics.received
        self.ready = threading.Event()  # first LIST delivered and a WATCH connected
        self.last_activity = time.monotonic()  # for /healthz: the loop is not wedged
        self._lock = threading.Lock()
        self._backoff = Backoff(tuning.backoff_initial, tuning.backoff_cap)
        self._streak = _Streak()
        self._empty_watches = 0
        self._response: Optional[WatchResponse] = None
        self._where = f"{info.display}" + (f" in namespace {self.namespace}" if self.namespace else "")

    # --- the outer loop -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set: list, then watch and resume for ever. Returns only when stopped."""
        resync = None
        if self.resync_period > 0:
            resync = threading.Thread(target=self._resync_loop, args=(stop,), name="resync", daemon=True)
            resync.start()
        need_list = True
        lists = 0
        while not stop.is_set():
            self.last_activity = time.monotonic()
            delay = 0.0
            try:
                if need_list:
                    self._relist()
                    if lists:
                        self.metrics.relists.inc()
                    lists += 1
                    need_list = False
                need_list = self._watch_once(stop)
                self._streak.ok()
            except errors.Gone:
                self._restart(
                    "expired", f"The resourceVersion of {self._where} expired; relisting.", logging.INFO
                )
                need_list = True
            except errors.Unauthorized as e:
                delay = self._fail("unauthorized", str(e))
            except (errors.Throttled, errors.ServerError) as e:
                reason = "throttled" if isinstance(e, errors.Throttled) else "server_error"
                delay = self._fail(reason, str(e), retry_after=e.retry_after)
                # A position the server has not reached (etcd restored from a backup, a bogus
                # bookmark) never becomes valid by waiting: relist, as client-go's reflector does.
                need_list = need_list or "ResourceVersionTooLarge" in e.causes
            except errors.Forbidden as e:
                delay = self._fail("forbidden", str(e), level=logging.ERROR)
            except errors.TransportError as e:
                delay = self._fail("dropped", str(e))
            except errors.APIError as e:
                # Anything else (400 for a resourceVersion the server cannot parse, 404, ...) will not
                # change by retrying the same request: start again from a LIST.
                delay = self._fail("server_error", str(e), level=logging.ERROR)
                need_list = True
            if delay and not stop.is_set():
                stop.wait(delay)
        self.ready.clear()

    def objects(self) -> list[dict[str, Any]]:
        """Every cached object, parsed: what a plugin's sweep compares the outside world with. The
        entries are copied under the lock and parsed outside it, so the watch waits for a copy only."""
        with self._lock:
            entries = list(self.cache.values())
        return [cached_object(data) for data in entries]

    def interrupt(self) -> None:
        """Abort the current WATCH from another thread (signal handler, lost lease)."""
        response = self._response
        if response is not None:
            response.abort()

    def _fail(
        self, reason: str, message: str, *, level: int = logging.WARNING, retry_after: Optional[float] = None
    ) -> float:
        self.metrics.restarts[reason].inc()
        self._streak.failed(reason, message, level)
        delay = self._backoff.next()
        return retry_after if retry_after is not None else delay

    def _restart(self, reason: str, message: str, level: int = logging.DEBUG) -> None:
        self.metrics.restarts[reason].inc()
        logger.log(level, message)

    # --- LIST and diff ------------------------------------------------------------------------------

    def _relist(self) -> None:
        """LIST page by page, then deliver DELETED for what vanished and ADDED/MODIFIED for what changed.

        Deletions go first so that a plugin keyed by name sees a delete-and-recreate in its real
        order. Changed items stay JSON bytes, not dicts, all the way to the plugin's worker, which
        parses one when it gets to it: a page of dicts at a time, never 100,000 of them (a Route as
        dicts is ~5x its JSON). Only this thread writes the cache, so comparing against it while
        paging is safe.
        """
        kind, api_version, strip = self.info.kind, self.info.api_version, self.strip
        # key -> (JSON if changed, namespace/name)
        fresh: dict[str, tuple[Optional[bytes], str]] = {}
        resource_version = ""
        for page in self.client.pages(
            self.info,
            self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            limit=self.tuning.page_size,
        ):
            for item in page.items:
                meta = item.get("metadata") or {}
                key, rv = _key(meta), str(meta.get("resourceVersion", ""))
                old = self.cache.get(key)
                if old is not None and same_version(old, rv):
                    fresh[key] = (None, "")
                    continue
                # LIST items come without kind/apiVersion; plugins expect what a watch event carries.
                item.setdefault("kind", kind)
                item.setdefault("apiVersion", api_version)
                if strip:
                    transform.strip(item)
                fresh[key] = (compact_json(item), _object_key(meta))
            resource_version = page.resource_version
        with self._lock:
            changes: list[Change] = []
            gone = [key for key in self.cache if key not in fresh]
            for key in gone:
                changes.append(("DELETED", *_identify(key, self.cache.pop(key))))
            for key, (changed, object_key) in fresh.items():
                if changed is None:
                    continue
                old = self.cache.get(key)
                self.cache[key] = changed
                changes.append(("ADDED" if old is None else "MODIFIED", object_key, Item(key, changed, None)))
            if changes:
                self.sink(changes)
            self.resource_version = resource_version
            self.metrics.cached_objects.set(len(self.cache))
        logger.info(
            "Listed %d %s at resourceVersion %s%s.",
            len(fresh),
            self._where,
            resource_version,
            f"; {len(gone)} vanished while we were not watching" if gone else "",
        )

    # --- one WATCH ----------------------------------------------------------------------------------

    def _watch_once(self, stop: threading.Event) -> bool:
        """One WATCH until it ends; True when the position is lost and a relist is needed."""
        timeout = max(1, round(self.tuning.watch_timeout * random.uniform(0.9, 1.1)))
        response = self.client.watch(
            self.info,
            self.namespace,
            self.resource_version,
            timeout_seconds=timeout,
            read_timeout=timeout + self.tuning.read_margin,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        self._response = response
        self.ready.set()
        started = time.monotonic()
        events = 0
        splitter = stream.LineSplitter()
        feed, handle, last_event, lock = splitter.feed, self._handle_line, self.metrics.last_event, self._lock
        sink = self.sink
        try:
            # Per block (up to a TLS record, ~10 events of a typical Route): the clocks, the lock (a
            # resync waits for one block at most), one hand-over to the sink and the stop check. Per
            # line: only what it needs.
            for block in response.chunks():
                self.last_activity = time.monotonic()
                lines = feed(block)
                if lines:
                    changes: list[Change] = []
                    with lock:
                        try:
                            for line in lines:
                                if line:
                                    events += 1
                                    if handle(line, changes):
                                        return True
                        finally:
                            if changes:  # what came before an expiry is delivered all the same
                                sink(changes)
                    last_event.set(time.time())
                if stop.is_set():
                    return False
        except Exception as e:  # urllib3/http.client/ssl/OS errors: the stream broke, wherever it was
            if stop.is_set():
                return False
            self._restart(
                "dropped",
                f"The watch on {self._where} broke ({_describe(e)}); resuming at "
                f"resourceVersion {self.resource_version}.",
                logging.INFO,
            )
            if splitter.pending:
                logger.debug("Discarded %d bytes of an unfinished line.", splitter.pending)
            return False
        finally:
            self._response = None
            response.close()
            # A stream that delivered, or lived long, was healthy however it ended (a drop, a 410):
            # the next failure starts the backoff afresh instead of escalating towards the cap.
            lasted = time.monotonic() - started
            if events or lasted >= self.tuning.healthy_after:
                self._backoff.reset()
        if splitter.pending:
            logger.warning(
                "The watch on %s ended inside a line; discarded %d bytes.", self._where, splitter.pending
            )
        if events == 0 and lasted < self.tuning.empty_watch:
            # Some servers answer a stale resourceVersion with an empty stream instead of a 410.
            self._empty_watches += 1
            if self._empty_watches >= self.tuning.empty_watch_limit:
                self._empty_watches = 0
                self._restart(
                    "expired",
                    f"The watch on {self._where} keeps ending at once with no events; "
                    f"treating resourceVersion {self.resource_version} as expired.",
                    logging.WARNING,
                )
                return True
            stop.wait(self._backoff.next())
        else:
            self._empty_watches = 0
        self._restart("timeout", f"The watch on {self._where} ended; resuming at {self.resource_version}.")
        return False

    def _handle_line(self, line: bytes, changes: list[Change]) -> bool:
        """Take in one line, adding its change to ``changes``; True when it says our resourceVersion
        expired. Runs with the lock held."""
        try:
            event = stream.parse_event(line)
        except stream.MalformedEvent as e:
            logger.warning("Skipped a malformed line in the watch on %s: %s", self._where, e)
            return False
        kind = event["type"]
        self._received[kind].inc()
        obj = event["object"]
        if kind == "BOOKMARK":
            self.resource_version = obj["metadata"]["resourceVersion"]
            return False
        if kind == "ERROR":
            return self._error_event(obj)
        meta = obj["metadata"]
        rv = meta["resourceVersion"]
        uid = meta.get("uid")
        key = uid if uid and type(uid) is str else _key(meta)
        # Only a line that carries them pays: the object without them, encoded once, replaces the
        # line as what is cached and queued; the parsed object loses them in place.
        if self.strip and (_MANAGED_FIELDS in line or _LAST_APPLIED in line) and transform.strip(obj):
            line = compact_json(obj)
        if kind == "DELETED":
            self.cache.pop(key, None)
        else:
            self.cache[key] = line  # the line as it came (unless stripped): no copy, no second encoding
        self.resource_version = rv
        changes.append((kind, _object_key(meta), new_item((key, line, obj))))
        return False

    def _error_event(self, status: dict[str, Any]) -> bool:
        """An in-stream ERROR Status; True when it is the 410 that means our position expired."""
        code = status.get("code")
        if code == 410:
            self._restart(
                "expired",
                f"The watch on {self._where} says: {status.get('message')}; relisting.",
                logging.INFO,
            )
            return True
        logger.warning(
            "The watch on %s sent an error: %s (code %s).", self._where, status.get("message"), code
        )
        return False

    # --- resync -------------------------------------------------------------------------------------

    def _resync_loop(self, stop: threading.Event) -> None:
        """Every ``resync_period``, every cached object as SYNC: the plugins' queues take it for the
        objects that have no work waiting, as the state a plugin should already have."""
        while not stop.wait(self.resync_period):
            if not self.ready.is_set():
                continue
            with self._lock:
                keys = list(self.cache)
            logger.debug("Resync: handing over %d cached %s.", len(keys), self._where)
            # In slices, each under the lock (read and handed over atomically against the watch, so
            # nothing older than what the watch delivered is handed over) but releasing it between
            # slices: the watch waits for a slice, not for 100,000 objects.
            for start in range(0, len(keys), RESYNC_SLICE):
                if stop.is_set():
                    return
                with self._lock:
                    cache = self.cache
                    changes: list[Change] = [
                        ("SYNC", *_identify(key, cache[key]))
                        for key in keys[start : start + RESYNC_SLICE]
                        if key in cache
                    ]
                    if changes:
                        self.sink(changes, resync=True)


def compact_json(obj: Any) -> bytes:
    """``orjson.dumps`` in bytes of its own size: orjson returns its output in the buffer it grew,
    8 KB for a 1.5 KB Route (tracemalloc), and a cache of 100,000 of those would cost 5x the JSON."""
    return bytes(memoryview(orjson.dumps(obj)))


def same_version(data: bytes, rv: str) -> bool:
    """Whether the cache entry ``data`` holds the object at resourceVersion ``rv``.

    First a search of the bytes for ``"resourceVersion":"<rv>"``, as the API server (Go's
    encoding/json) and orjson write it: resourceVersions are etcd revisions, one per write, so no
    other field of the object (an Event's ``involvedObject``, say) carries the one this object's own
    last write got. Only when that fails (the object changed, or JSON written with other spacing)
    is the entry parsed to be sure: a relist parses only what changed.
    """
    if b'"resourceVersion":' + orjson.dumps(rv) in data:
        return True
    return str((cached_object(data).get("metadata") or {}).get("resourceVersion", "")) == rv


def cached_object(data: bytes) -> dict[str, Any]:
    """The object of a cache entry. An entry holds the object's JSON (from a LIST) or the whole watch
    line that carried it, kept as it came: cutting the object out would cost a copy per event. A
    Kubernetes object always has ``metadata``; a watch event never has it at the top."""
    value: dict[str, Any] = orjson.loads(data)
    if "metadata" not in value and "object" in value:
        return value["object"]  # type: ignore[no-any-return]
    return value


def _identify(key: str, data: bytes) -> tuple[str, Item]:
    """The namespace/name and the item of a cache entry (the object is parsed, then dropped: the
    work queue keeps the bytes, and the plugin's worker parses them when it gets to the object)."""
    return _object_key(cached_object(data).get("metadata") or {}), Item(key, data, None)


def _object_key(meta: dict[str, Any]) -> str:
    """What work is queued under: namespace/name, or the name of a cluster-scoped object."""
    namespace = meta.get("namespace")
    return f"{namespace}/{meta.get('name')}" if namespace else str(meta.get("name"))


def _key(meta: dict[str, Any]) -> str:
    """The cache key: the uid (a delete-and-recreate is two objects), else namespace/name."""
    uid = meta.get("uid")
    if uid:
        return str(uid)
    return f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"


def _describe(exc: BaseException) -> str:
    text = str(exc).split("\n", 1)[0]
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
