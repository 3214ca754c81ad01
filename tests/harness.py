"""Run the real watcher in-process against the local API, for end-to-end tests.

The watcher is wired exactly as ``watch.py`` wires it (``cli.App``), with short watch timeouts and
backoff so that resumes and relists happen within a test's time. Plugins under ``tests/plugins`` are on
the plugin path.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Optional

import orjson

from watcher import cli, config, dispatch
from watcher.informer import Change, Item, Tuning
from watcher.metrics import Metrics
from watcher.reconciler import Reconciler

if TYPE_CHECKING:
    from watcher.localapi import LocalAPI

TEST_PLUGINS = str(Path(__file__).parent / "plugins")
FAST = Tuning(
    watch_timeout=5,
    read_margin=2,
    backoff_initial=0.05,
    backoff_cap=0.5,
    healthy_after=1.0,
    empty_watch=0.3,
)

# Every token a test hands out; conftest checks that none of them reaches a log record.
SECRETS: set[str] = set()


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll until ``predicate()`` is truthy; a deadline, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def route(
    name: str,
    namespace: str = "default",
    host: Optional[str] = None,
    *,
    annotations: Optional[Mapping[str, str]] = None,
    labels: Optional[Mapping[str, str]] = None,
    admitted: bool = True,
    router_canonical_hostname: str = "router-default.apps.example.test",
    tls: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    """A Route as OpenShift returns it, with an Admitted ingress condition when ``admitted``."""
    host = host or f"{name}.apps.example.test"
    spec: dict[str, Any] = {
        "host": host,
        "to": {"kind": "Service", "name": name, "weight": 100},
        "port": {"targetPort": 8080},
    }
    if tls is not None:
        spec["tls"] = dict(tls)
    status: dict[str, Any] = {"ingress": []}
    if admitted:
        status["ingress"].append(
            {
                "host": host,
                "routerName": "default",
                "routerCanonicalHostname": router_canonical_hostname,
                "conditions": [
                    {"type": "Admitted", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                ],
                "wildcardPolicy": "None",
            }
        )
    return {
        "apiVersion": "route.openshift.io/v1",
        "kind": "Route",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": dict(annotations or {}),
            "labels": dict(labels or {}),
        },
        "spec": spec,
        "status": status,
    }


def change(event_type: str, obj: Mapping[str, Any]) -> Change:
    """One change as the informer hands it over, from an event's type and object."""
    meta = obj["metadata"]
    key = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]
    uid = meta.get("uid") or key
    return (event_type, key, Item(uid, orjson.dumps(obj), None))


def handle_all(
    plugins: list[dispatch.Plugin], settings: config.Settings, changes: list[Change], metrics: Metrics
) -> None:
    """Start the plugins, hand ``changes`` to them through the real reconciler, wait until every
    plugin's queue is empty and no call is in flight, then stop the workers and close the plugins."""
    contexts = dispatch.start(plugins, settings, None)
    reconciler = Reconciler(list(zip(plugins, contexts)), metrics)
    reconciler.start()
    reconciler.resume()
    try:
        reconciler(changes)
        wait_until(lambda: all(p.queue.idle() for p in reconciler.plugins), what="the plugins to catch up")
    finally:
        reconciler.stop(5.0)
        dispatch.close_all(plugins)


class RunningWatcher:
    def __init__(self, app: cli.App, thread: threading.Thread, token_file: str) -> None:
        self.app = app
        self.thread = thread
        self.token_file = token_file

    @property
    def settings(self) -> config.Settings:
        return self.app.settings

    @property
    def informer(self) -> Any:
        return self.app.informer

    @property
    def errors(self) -> int:
        """Failed plugin calls, every attempt, as ``event_watcher_events_failed_total`` counts them."""
        return int(
            sum(
                self.metric("event_watcher_events_failed_total", plugin=name)
                for name in self.settings.plugins
            )
        )

    def metric(self, name: str, **labels: str) -> float:
        """A sample from the watcher's own Prometheus registry, as a scrape would read it."""
        value = self.app.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def restarts(self, reason: str) -> float:
        return self.metric("event_watcher_watch_restarts_total", reason=reason)

    @property
    def relists(self) -> float:
        return self.metric("event_watcher_relists_total")

    def plugin(self, name: str) -> ModuleType:
        for plugin in self.app.plugins:
            if plugin.name == name:
                return plugin.module
        raise KeyError(name)

    def settled(self) -> bool:
        """Every plugin's queue is empty and no call is in flight: the plugins have caught up."""
        reconciler = self.app.reconciler
        return reconciler is not None and all(p.queue.idle() for p in reconciler.plugins)

    def write_token(self, token: str) -> None:
        """What kubelet does when it rotates a projected serviceaccount token."""
        SECRETS.add(token)
        tmp = self.token_file + ".new"
        Path(tmp).write_text(token, encoding="utf-8")
        os.replace(tmp, self.token_file)

    def stop(self) -> None:
        self.app.stop()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the watcher did not stop within 10 s"
        self.app.close()


@contextlib.contextmanager
def running_watcher(
    api: LocalAPI,
    *,
    resource: str = "routes",
    namespace: Optional[str] = "default",
    plugins: str = "record",
    ini: Optional[Mapping[str, Mapping[str, str]]] = None,
    env: Optional[Mapping[str, str]] = None,
    tuning: Tuning = FAST,
    wait_ready: bool = True,
) -> Iterator[RunningWatcher]:
    SECRETS.add(api.token)
    with tempfile.TemporaryDirectory(prefix="ew-test-") as tmp:
        token_file = os.path.join(tmp, "token")
        Path(token_file).write_text(api.token, encoding="utf-8")
        environ = {
            "K8S_API_ENDPOINT": api.url,
            "K8S_TOKEN_FILE": token_file,
            "K8S_CA": api.ca_file,
            "K8S_RESOURCE": resource,
            "WATCHER_PLUGIN": plugins,
            "WATCHER_PLUGIN_PATH": TEST_PLUGINS,
            "WATCHER_METRICS_PORT": "0",
            "LOG_LEVEL": "DEBUG",
        }
        if namespace:
            environ["K8S_NAMESPACE"] = namespace
        environ.update(env or {})
        ini_path = None
        if ini:
            parser = configparser.ConfigParser(interpolation=None)
            parser.read_dict(ini)
            ini_path = os.path.join(tmp, "config.ini")
            with open(ini_path, "w", encoding="utf-8") as f:
                parser.write(f)
        settings = config.load(environ, ini_path, serviceaccount_dir=os.path.join(tmp, "no-sa"), home=tmp)
        app = cli.App(settings, tuning=tuning)
        app.start()
        thread = threading.Thread(target=app.run, name="informer", daemon=True)
        thread.start()
        running = RunningWatcher(app, thread, token_file)
        try:
            if wait_ready:
                assert app.informer is not None
                wait_until(app.informer.ready.is_set, what="the watcher to list and start watching")
            yield running
        finally:
            running.stop()
