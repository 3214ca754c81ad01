"""watcher.recorder against the local API: Events land on the right object, aggregate on repeats, are
rate-limited per object, and never hold up the caller; a plugin posts them through ``watcher.record``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tests.harness import route, running_watcher, wait_until
from watcher import config
from watcher.client import Client
from watcher.localapi import LocalAPI
from watcher.recorder import COMPONENT, EventRecorder, Limits

NS = "shop"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client(local_api: LocalAPI, tmp_path: Path) -> Iterator[Client]:
    env = {
        "K8S_API_ENDPOINT": local_api.url,
        "K8S_TOKEN": local_api.token,
        "K8S_CA": local_api.ca_file,
        "K8S_RESOURCE": "routes",
        "K8S_NAMESPACE": NS,
    }
    c = Client(config.load(env, None, serviceaccount_dir=str(tmp_path / "no-sa"), home=str(tmp_path)))
    yield c
    c.close()


def recorder(client: Client, clock: Clock, **limits: Any) -> tuple[EventRecorder, CollectorRegistry]:
    registry = CollectorRegistry()
    r = EventRecorder(client, "pod-1", registry, limits=Limits(**limits), clock=clock)
    r.start()
    return r, registry


def events_on(api: LocalAPI, name: str) -> list[dict[str, Any]]:
    return [e for e in api.list("events", NS) if e["involvedObject"]["name"] == name]


def result(registry: CollectorRegistry, what: str) -> float:
    value = registry.get_sample_value("event_watcher_kubernetes_events_total", {"result": what})
    return value or 0.0


def test_an_event_lands_on_its_object_with_the_source_set(local_api: LocalAPI, client: Client) -> None:
    shop = local_api.create("routes", route("web", namespace=NS))
    r, registry = recorder(client, Clock())
    r.record(shop, "Normal", "DNSRecordCreated", "A web.apps.example.com -> 10.0.0.1\nsecond line")
    r.stop()
    [event] = events_on(local_api, "web")
    assert event["involvedObject"] == {
        "kind": "Route",
        "apiVersion": "route.openshift.io/v1",
        "namespace": NS,
        "name": "web",
        "uid": shop["metadata"]["uid"],
        "resourceVersion": shop["metadata"]["resourceVersion"],
    }
    assert event["metadata"]["namespace"] == NS and event["metadata"]["name"].startswith("web.")
    assert (event["type"], event["reason"], event["count"]) == ("Normal", "DNSRecordCreated", 1)
    assert event["message"] == "A web.apps.example.com -> 10.0.0.1 second line"  # one line
    assert event["source"] == {"component": COMPONENT, "host": "pod-1"}
    assert event["reportingComponent"] == COMPONENT and event["reportingInstance"] == "pod-1"
    assert event["firstTimestamp"] == event["lastTimestamp"]
    assert result(registry, "posted") == 1


def test_repeats_grow_the_count_of_one_event(local_api: LocalAPI, client: Client) -> None:
    shop = local_api.create("routes", route("web", namespace=NS))
    clock = Clock()
    r, registry = recorder(client, clock)
    for _ in range(3):
        r.record(shop, "Warning", "DNSUpdateFailed", "REFUSED by 127.0.0.1")
        clock.now += 30
    r.record(shop, "Warning", "DNSUpdateFailed", "timed out")  # another message: another Event
    r.stop()
    by_message = {e["message"]: e for e in events_on(local_api, "web")}
    assert set(by_message) == {"REFUSED by 127.0.0.1", "timed out"}
    repeated = by_message["REFUSED by 127.0.0.1"]
    assert repeated["count"] == 3
    assert repeated["lastTimestamp"] > repeated["firstTimestamp"]
    assert (result(registry, "posted"), result(registry, "aggregated")) == (2, 2)


def test_after_the_aggregation_window_a_new_event_starts(local_api: LocalAPI, client: Client) -> None:
    shop = local_api.create("routes", route("web", namespace=NS))
    clock = Clock()
    r, _ = recorder(client, clock, aggregate_for=60.0)
    r.record(shop, "Normal", "CertificateIssued", "by the local CA")
    clock.now += 61
    r.record(shop, "Normal", "CertificateIssued", "by the local CA")
    r.stop()
    assert [e["count"] for e in events_on(local_api, "web")] == [1, 1]


def test_an_expired_event_is_created_again(local_api: LocalAPI, client: Client) -> None:
    shop = local_api.create("routes", route("web", namespace=NS))
    r, _ = recorder(client, Clock())
    r.record(shop, "Normal", "CertificateIssued", "by the local CA")
    wait_until(lambda: events_on(local_api, "web"), what="the first Event")
    [first] = events_on(local_api, "web")
    local_api.delete("events", NS, first["metadata"]["name"])  # the API server's TTL
    r.record(shop, "Normal", "CertificateIssued", "by the local CA")
    r.stop()
    [again] = events_on(local_api, "web")
    assert again["count"] == 1 and again["metadata"]["name"] != first["metadata"]["name"]


def test_each_object_has_its_own_rate_limit(local_api: LocalAPI, client: Client) -> None:
    web = local_api.create("routes", route("web", namespace=NS))
    api_route = local_api.create("routes", route("api", namespace=NS))
    clock = Clock()
    r, registry = recorder(client, clock, burst=2, refill_every=300.0)
    for i in range(4):
        r.record(web, "Warning", "IssuanceFailed", f"attempt {i}")
    r.record(api_route, "Warning", "IssuanceFailed", "attempt 0")  # another object: its own bucket
    r.stop()
    assert sorted(e["message"] for e in events_on(local_api, "web")) == ["attempt 0", "attempt 1"]
    assert len(events_on(local_api, "api")) == 1
    assert result(registry, "rate_limited") == 2
    clock.now += 300  # one token back
    r2, _ = recorder(client, clock, burst=2, refill_every=300.0)
    r2.record(web, "Warning", "IssuanceFailed", "later")
    r2.stop()
    assert "later" in {e["message"] for e in events_on(local_api, "web")}


def test_recording_never_waits_for_the_api_server(local_api: LocalAPI, client: Client) -> None:
    shop = local_api.create("routes", route("web", namespace=NS))
    r, registry = recorder(client, Clock(), backlog=5, attempts=1)
    local_api.stop()
    started = time.monotonic()
    for i in range(50):
        r.record(shop, "Normal", "DNSRecordUpdated", f"change {i}")
    assert time.monotonic() - started < 0.5  # 50 calls, none of them a request
    r.stop(timeout=60)
    assert result(registry, "dropped") >= 40  # the backlog keeps the newest five
    assert result(registry, "failed") >= 1


def test_bad_arguments_are_logged_not_raised(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    r, _ = recorder(client, Clock())
    r.record({"metadata": {"name": "x"}}, "Normal", "Reason", "no kind")
    r.record(route("web"), "Info", "Reason", "not a type")
    r.stop()
    assert caplog.text.count("Not recording an Event") == 2


def test_a_plugin_records_through_its_watcher_argument(local_api: LocalAPI, tmp_path: Path) -> None:
    plugin_dir = tmp_path / "plugins" / "recorder_test"
    plugin_dir.mkdir(parents=True)
    (plugin_dir / "__init__.py").write_text(
        "def handle_event(watcher, event, config):\n"
        "    watcher.record(event['object'], 'Normal', 'Seen', event['type'] + ' seen by the test plugin')\n"
    )
    env = {"WATCHER_PLUGIN_PATH": str(tmp_path / "plugins")}
    with running_watcher(local_api, namespace=NS, plugins="recorder_test", env=env):
        local_api.create("routes", route("web", namespace=NS))
        event = wait_until(lambda: events_on(local_api, "web"), what="the plugin's Event")[0]
    assert (event["reason"], event["message"]) == ("Seen", "ADDED seen by the test plugin")
    assert event["source"]["component"] == COMPONENT


def test_record_events_off_posts_nothing(local_api: LocalAPI, tmp_path: Path) -> None:
    plugin_dir = tmp_path / "plugins" / "recorder_test"
    plugin_dir.mkdir(parents=True)
    (plugin_dir / "__init__.py").write_text(
        "seen = []\n"
        "def handle_event(watcher, event, config):\n"
        "    watcher.record(event['object'], 'Normal', 'Seen', 'x')\n"
        "    seen.append(event)\n"
    )
    env = {"WATCHER_PLUGIN_PATH": str(tmp_path / "plugins"), "WATCHER_RECORD_EVENTS": "false"}
    with running_watcher(local_api, namespace=NS, plugins="recorder_test", env=env) as running:
        local_api.create("routes", route("web", namespace=NS))
        wait_until(lambda: running.plugin("recorder_test").seen, what="a call")
    assert events_on(local_api, "web") == []


def test_without_rbac_it_says_so_once_and_stops_asking(
    local_api: LocalAPI, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    shop = local_api.create("routes", route("web", namespace=NS))
    local_api.forbid("create", "events")
    r, registry = recorder(client, Clock())
    for i in range(3):
        r.record(shop, "Normal", "DNSRecordUpdated", f"change {i}")
    r.stop()
    assert caplog.text.count("Cannot post Kubernetes Events") == 1
    assert "record_events = false" in caplog.text
    assert result(registry, "failed") == 3


def test_in_dry_run_no_event_is_posted_but_each_is_logged(
    local_api: LocalAPI, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    shop = local_api.create("routes", route("dry", namespace=NS))
    registry = CollectorRegistry()
    r = EventRecorder(client, "pod-1", registry, clock=Clock(), dry_run=True)
    r.start()
    with caplog.at_level("INFO", logger="watcher.recorder"):
        r.record(shop, "Warning", "IssuanceFailed", "ACME said no")
        r.stop()
    assert events_on(local_api, "dry") == []
    assert result(registry, "posted") == 0
    assert any(
        "IssuanceFailed" in m and "Route shop/dry" in m and "ACME said no" in m for m in caplog.messages
    )
