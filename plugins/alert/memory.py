"""What the alert plugin has sent, kept in a ConfigMap so that a restart neither repeats nor forgets it.

One key, ``alerts.json``, in the ConfigMap ``state_configmap`` (default ``event-watcher-alert-state``)
in the watcher's namespace: per sink, every firing alert it was sent (labels, annotations, when it was
last sent, the objects keeping it up). Read once at start; written by a thread of its own when
something changed, at most every ``WRITE_INTERVAL`` seconds, and once more at a clean stop. Bounded:
at most ``MAX_ALERTS`` alerts (the most recently sent win), well under a ConfigMap's 1 MiB.

The Role needs ``get``/``update`` on that one ConfigMap and ``create`` on configmaps (a name cannot
limit a create); deploy/components/alert grants exactly that.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any, Optional

from watcher import errors

logger = logging.getLogger(__name__)

KEY = "alerts.json"
FORMAT = 1
WRITE_INTERVAL = 5.0  # a burst of alerts is one write; a crash loses at most this much
MAX_ALERTS = 2000  # a record is ~400 bytes: 2000 stay under 1 MiB with room to spare
MAX_BYTES = 900_000

State = dict[str, list[dict[str, Any]]]


def bounded(state: State, limit: int = MAX_ALERTS, max_bytes: int = MAX_BYTES) -> State:
    """At most ``limit`` records and ``max_bytes`` of JSON, keeping the most recently sent."""
    records = sorted(
        ((sink, record) for sink, records in state.items() for record in records),
        key=lambda pair: str(pair[1].get("lastSent", "")),
        reverse=True,
    )
    while True:
        kept: State = {sink: [] for sink in state}
        for sink, record in records[:limit]:
            kept[sink].append(record)
        if limit == 0 or len(encode(kept)) <= max_bytes:
            return kept
        limit //= 2


def encode(state: State) -> str:
    return json.dumps({"format": FORMAT, "sinks": state}, separators=(",", ":"), sort_keys=True)


class ConfigMapState:
    """GET, create and update of the one ConfigMap, through the watcher's own API session."""

    def __init__(self, api: Any, namespace: str, name: str) -> None:
        self.api = api
        self.where = f"{namespace}/{name}"
        self._collection = f"/api/v1/namespaces/{namespace}/configmaps"
        self._path = f"{self._collection}/{name}"
        self._name, self._namespace = name, namespace
        self._resource_version: Optional[str] = None  # None: not there (yet)

    def load(self) -> State:
        """What the last run wrote; empty when there is none or it cannot be read (said once)."""
        try:
            found = self.api.request("GET", self._path)
        except errors.NotFound:
            return {}
        except errors.WatcherError as e:
            logger.warning(
                "Cannot read the alert state from ConfigMap %s (%s): webhooks may get again, after "
                "this restart, alerts they were sent before it.",
                self.where,
                e,
            )
            return {}
        self._resource_version = str((found.get("metadata") or {}).get("resourceVersion") or "") or None
        try:
            body = json.loads((found.get("data") or {}).get(KEY) or "{}")
            sinks = body.get("sinks") if body.get("format") == FORMAT else None
        except (ValueError, AttributeError):
            sinks = None
        if not isinstance(sinks, dict):
            logger.warning(
                "The alert state in ConfigMap %s is not in a format this version reads; ignored.", self.where
            )
            return {}
        return {str(k): v for k, v in sinks.items() if isinstance(v, list)}

    def save(self, state: State) -> None:
        """Create or replace the ConfigMap; raises ``errors.WatcherError`` when the API refuses. One
        more try when it was made, changed or deleted by someone else meanwhile: ours is the truth."""
        data = {KEY: encode(bounded(state))}
        for last in (False, True):
            metadata: dict[str, Any] = {"name": self._name, "namespace": self._namespace}
            body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}
            try:
                if self._resource_version is None:
                    written = self.api.request("POST", self._collection, json=body)
                else:
                    metadata["resourceVersion"] = self._resource_version
                    written = self.api.request("PUT", self._path, json=body)
            except (errors.Conflict, errors.NotFound):
                if last:
                    raise
                self._resource_version = self._current()
                continue
            self._resource_version = str((written.get("metadata") or {}).get("resourceVersion") or "") or None
            return

    def _current(self) -> Optional[str]:
        try:
            found = self.api.request("GET", self._path)
        except errors.NotFound:
            return None
        return str((found.get("metadata") or {}).get("resourceVersion") or "") or None


class Writer:
    """Writes ``snapshot()`` whenever ``changes()`` moved, at most every ``interval`` seconds."""

    def __init__(
        self,
        store: ConfigMapState,
        snapshot: Callable[[], State],
        changes: Callable[[], int],
        interval: float = WRITE_INTERVAL,
    ) -> None:
        self.store = store
        self._snapshot = snapshot
        self._changes = changes
        self._interval = interval
        self._written = changes()
        self._failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-state", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def flush(self) -> None:
        changes = self._changes()
        if changes == self._written:
            return
        try:
            self.store.save(self._snapshot())
        except errors.WatcherError as e:
            if not self._failing:
                logger.warning(
                    "Cannot write the alert state to ConfigMap %s: %s; retrying.", self.store.where, e
                )
            self._failing = True
            return
        if self._failing:
            logger.info("The alert state is written to ConfigMap %s again.", self.store.where)
        self._failing = False
        self._written = changes

    def close(self) -> None:
        """Stop the thread and write what is left (a clean stop loses nothing)."""
        self._stop.set()
        self._thread.join(10)
        self.flush()
