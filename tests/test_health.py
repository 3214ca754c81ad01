"""Probes and /metrics: the verdicts, the HTTP endpoint, and the exposition linted by promtool.

The verdicts are checked with a fake clock (no sleeping); the endpoint runs on 127.0.0.1 on a free
port, alone and wired to a real watcher against the local API.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import urllib.error
import urllib.request
from typing import Any, Optional

import pytest
from prometheus_client import CollectorRegistry, Counter

from tests.harness import route, running_watcher, wait_until
from tests.servers import require_binary
from watcher import errors, health
from watcher.localapi import LocalAPI
from watcher.metrics import Metrics, QueueStats


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeInformer:
    def __init__(self, clock: FakeClock) -> None:
        self.ready = threading.Event()
        self.last_activity = clock.now


def get(url: str, method: str = "GET") -> tuple[int, str, str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    promtool = require_binary("promtool", "prometheus")
    return subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )


# --- verdicts -------------------------------------------------------------------------------------


def test_starting_is_alive_but_not_ready() -> None:
    clock = FakeClock()
    probes = health.Probes(60, clock=clock)
    clock.now += 10_000  # discovery may wait a long time for the API server: that is not a hang
    assert probes.liveness().ok
    verdict = probes.readiness()
    assert not verdict.ok and "not watching" in verdict.detail


def test_ready_only_after_the_first_list_and_watch() -> None:
    clock = FakeClock()
    probes = health.Probes(60, clock=clock)
    informer = FakeInformer(clock)
    probes.watching(informer)
    assert not probes.readiness().ok
    informer.ready.set()
    assert probes.readiness().ok
    assert probes.readiness().detail == "single: watching"


def test_a_stale_heartbeat_fails_liveness_and_any_progress_revives_it() -> None:
    clock = FakeClock()
    probes = health.Probes(60, clock=clock)
    informer = FakeInformer(clock)
    probes.watching(informer)
    clock.now += 59
    assert probes.liveness().ok
    clock.now += 2
    verdict = probes.liveness()
    assert not verdict.ok and "no progress for 61 s" in verdict.detail
    informer.last_activity = clock.now  # the informer read a block
    assert probes.liveness().ok
    clock.now += 61
    assert not probes.liveness().ok
    probes.beat()  # the leader elector finished a try
    assert probes.liveness().ok


def test_a_stuck_plugin_call_fails_liveness_naming_it() -> None:
    """The informer never waits for plugins, so its heartbeat says nothing about them: a call that
    never returns is reported by the reconciler's check, read when a probe asks."""
    clock = FakeClock()
    probes = health.Probes(60, clock=clock)
    problem: list[Optional[str]] = [None]
    probes.check(lambda: problem[0])
    probes.watching(FakeInformer(clock))
    assert probes.liveness().ok
    problem[0] = "plugin dns has been handling MODIFIED demo/web for 601 s (stuck_after 600 s)"
    verdict = probes.liveness()
    assert not verdict.ok
    assert (
        verdict.detail
        == "single: plugin dns has been handling MODIFIED demo/web for 601 s (stuck_after 600 s)"
    )


def test_standby_is_ready_once_it_has_read_the_lease() -> None:
    clock = FakeClock()
    probes = health.Probes(60, clock=clock)
    probes.standby(lease_seen=False)
    assert not probes.readiness().ok
    probes.standby(lease_seen=True)
    verdict = probes.readiness()
    assert verdict.ok and verdict.detail.startswith("standby")
    clock.now += 61  # a standby whose election loop stopped moving is wedged too
    assert not probes.liveness().ok


def test_stale_after_outlasts_an_idle_watch() -> None:
    # A watch with no events ends after timeoutSeconds (+10 % jitter) or the read timeout; twice that
    # must pass before the loop counts as stuck.
    assert health.stale_after(300, 30) == pytest.approx(720)
    assert health.stale_after(300, 30) > 300 * 1.1 + 30


# --- the endpoint -----------------------------------------------------------------------------------


@pytest.fixture
def server() -> Any:
    clock = FakeClock()
    probes = health.Probes(60, clock=clock)
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    srv = health.HealthServer(probes, registry, host="127.0.0.1", port=0).start()
    try:
        yield srv, probes, clock, metrics
    finally:
        srv.stop()


def test_endpoint_serves_probes_and_metrics(server: Any) -> None:
    srv, probes, clock, metrics = server
    base = f"http://127.0.0.1:{srv.port}"
    assert get(base + "/healthz")[0] == 200
    status, _, body = get(base + "/readyz")
    assert status == 503 and body.startswith("not ok:")
    informer = FakeInformer(clock)
    informer.ready.set()
    probes.watching(informer)
    assert get(base + "/readyz")[:1] == (200,)
    clock.now += 120
    status, _, body = get(base + "/healthz")
    assert status == 503 and "no progress" in body
    metrics.event_received("ADDED")
    status, content_type, body = get(base + "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    assert 'event_watcher_events_received_total{type="ADDED"} 1.0' in body
    assert get(base + "/nothing")[0] == 404
    assert get(base + "/healthz", method="HEAD")[0] == 503


def test_metrics_port_zero_disables_the_endpoint() -> None:
    probes = health.Probes(60)
    assert health.start(0, probes, CollectorRegistry(), host="127.0.0.1") is None


def test_a_busy_port_is_a_clean_startup_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(errors.ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            health.start(port, health.Probes(60), CollectorRegistry(), host="127.0.0.1")


# --- promtool -----------------------------------------------------------------------------------------


def test_promtool_accepts_every_metric_with_samples() -> None:
    metrics = Metrics(CollectorRegistry())
    for event_type in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
        metrics.event_received(event_type)
    plugin = metrics.plugin("simple")
    counts = plugin.worker()
    counts.handled.inc()
    counts.failed.inc()
    counts.retries.inc()
    counts.duration.observe(0.003)
    plugin.queue = lambda: QueueStats(depth=2, oldest=1.5, busy=1)
    for counter in metrics.restarts.values():
        counter.inc()
    metrics.relists.inc()
    metrics.cached_objects.set(3)
    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    result = promtool_check(text)
    assert result.returncode == 0, result.stderr
    for name in (
        "event_watcher_events_received_total",
        "event_watcher_events_handled_total",
        "event_watcher_events_failed_total",
        "event_watcher_retries_total",
        "event_watcher_queue_depth",
        "event_watcher_queue_oldest_seconds",
        "event_watcher_workers_busy",
        "event_watcher_plugin_duration_seconds_bucket",
        "event_watcher_watch_restarts_total",
        "event_watcher_relists_total",
        "event_watcher_last_event_timestamp_seconds",
        "event_watcher_leader",
        "event_watcher_build_info",
    ):
        assert f"\n{name}" in text, name
    for reason in ("timeout", "dropped", "expired", "unauthorized", "throttled", "server_error"):
        assert f'event_watcher_watch_restarts_total{{reason="{reason}"}} 1.0' in text


def test_promtool_really_lints() -> None:
    """Guard against a promtool that passes anything: a counter without _total must be reported."""
    registry = CollectorRegistry()
    Counter("event_watcher_things", "Things.", registry=registry)
    from prometheus_client.exposition import generate_latest

    bad = generate_latest(registry).decode().replace("event_watcher_things_total", "event_watcher_things")
    result = promtool_check(bad)
    assert result.returncode != 0
    assert "_total" in result.stderr


def test_live_watcher_metrics_and_probes(local_api: LocalAPI) -> None:
    """The endpoint wired to a real watcher: ready after the first list, counts what it saw, lints clean."""
    local_api.create("routes", route("web", "demo"))
    with running_watcher(local_api, namespace="demo", plugins="simple,record") as w:
        srv = health.HealthServer(w.app.probes, w.app.metrics.registry, host="127.0.0.1", port=0).start()
        try:
            base = f"http://127.0.0.1:{srv.port}"
            status, _, body = get(base + "/readyz")
            assert status == 200, body
            assert get(base + "/healthz")[0] == 200
            local_api.create("routes", route("api", "demo"))
            local_api.delete("routes", "demo", "web")

            def metrics() -> str:
                return get(base + "/metrics")[2]

            wait_until(
                lambda: 'event_watcher_events_received_total{type="DELETED"} 1.0' in metrics(),
                what="the DELETED event to be counted",
            )
            text = metrics()
            assert 'event_watcher_events_received_total{type="ADDED"} 1.0' in text  # from the watch
            assert 'event_watcher_events_handled_total{plugin="record"} 3.0' in text  # list + 2 watch
            assert "event_watcher_leader 1.0" in text
            result = promtool_check(text)
            assert result.returncode == 0, result.stderr
        finally:
            srv.stop()


def test_a_new_watcher_does_not_claim_to_dispatch_before_it_does() -> None:
    """Before the run loop starts (and on a standby) the leader gauge must read 0, or alerts on
    ``sum(event_watcher_leader) > 1`` fire during every rolling update."""
    from watcher.metrics import Metrics

    assert Metrics().registry.get_sample_value("event_watcher_leader") == 0
