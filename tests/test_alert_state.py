# ruff: noqa: F811  (the server fixtures are imported by name and then requested as arguments)
"""The alert plugin's state across restarts: a ConfigMap on the local API, a real Alertmanager and a
real webhook receiver (plugins/alert/memory.py)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from plugins.alert import alerts, engine, memory, rules, settings, sinks
from tests.certs_support import plugin_watcher
from tests.harness import running_watcher, wait_until
from tests.servers.alertmanager import Alertmanager, alertmanager  # noqa: F401
from tests.servers.webhook import WebhookReceiver, webhook, webhook_factory  # noqa: F401
from tests.test_plugin_alert import k8s_event

NOW = dt.datetime(2026, 5, 1, 10, 0, tzinfo=dt.timezone.utc)


def candidate(pod: str, source: str = "") -> alerts.Candidate:
    subject = alerts.Subject("Pod", "shop", pod)
    return alerts.Candidate(
        rule="PodCrashLooping",
        subject=subject,
        labels=alerts.subject_labels("PodCrashLooping", "warning", subject),
        annotations=(("summary", f"{pod} crashes"),),
        source=source or f"uid-{pod}",
        count=1,
        first_seen=NOW,
        generator_url="",
    )


def sent_tracker(*pods: str, at: float = 1000.0) -> alerts.Tracker:
    tracker = alerts.Tracker(3600)
    for pod in pods:
        alert, _ = tracker.observe(candidate(pod), at, NOW)
        tracker.sent(alert, at)
    return tracker


def test_a_restored_webhook_tracker_does_not_repeat_within_repeat_interval_but_alertmanager_does() -> None:
    records = sent_tracker("web-1").export(1000.0 + 600, NOW + dt.timedelta(seconds=600))
    (record,) = records
    assert record["lastSent"] == "2026-05-01T10:00:00.000Z" and record["sources"] == {"uid-web-1": 1}
    later = NOW + dt.timedelta(seconds=1200)  # 20 minutes after the send, in a new process
    webhook_side = alerts.Tracker(3600)
    assert webhook_side.restore(records, 5.0, later) == 1
    assert webhook_side.observe(candidate("web-1"), 5.0, later) is None  # sent 20 min ago: not again
    assert webhook_side.observe(candidate("web-1"), 5.0 + 2400, later) is not None  # 1 h after: repeat
    refreshed = alerts.Tracker(3600)
    refreshed.restore(records, 5.0, later, due=True)
    decision = refreshed.observe(candidate("web-1"), 5.0, later)
    assert decision is not None and decision[1] == "repeat"
    # an alert sent longer than its lifetime (2 x repeat_interval) ago has lapsed: not taken back
    assert alerts.Tracker(3600).restore(records, 5.0, NOW + dt.timedelta(hours=3)) == 0
    assert alerts.Tracker(3600).restore([{"labels": "junk"}, {}], 5.0, later) == 0


def test_the_state_is_bounded_keeping_the_most_recently_sent() -> None:
    records = sent_tracker(*[f"p{i}" for i in range(30)]).export(1000.0, NOW)
    for i, record in enumerate(records):
        record["lastSent"] = f"2026-05-01T10:{i:02d}:00.000Z"
    kept = memory.bounded({"hook": records}, limit=10)
    assert [r["labels"]["name"] for r in kept["hook"]] == [f"p{i}" for i in range(29, 19, -1)]
    small = memory.bounded({"hook": records}, limit=30, max_bytes=2000)
    assert 0 < len(small["hook"]) < 30 and len(memory.encode(small)) <= 2000


def test_the_configmap_is_created_updated_and_survives_a_change_by_hand(
    local_api: Any, tmp_path: Path
) -> None:
    with plugin_watcher(local_api, tmp_path, "shop") as w:
        store = memory.ConfigMapState(w.api, "shop", "alert-state")
        assert store.load() == {}
        store.save({"hook": [{"a": 1}]})
        cm = local_api.get("configmaps", "shop", "alert-state")
        assert json.loads(cm["data"]["alerts.json"]) == {"format": 1, "sinks": {"hook": [{"a": 1}]}}
        store.save({"hook": [{"a": 2}]})
        edited = local_api.get("configmaps", "shop", "alert-state")
        local_api.update("configmaps", {**edited, "data": {"alerts.json": "{}"}})  # by hand: a 409 next
        store.save({"hook": [{"a": 3}]})
        assert memory.ConfigMapState(w.api, "shop", "alert-state").load() == {"hook": [{"a": 3}]}
        local_api.delete("configmaps", "shop", "alert-state")
        store.save({"hook": [{"a": 4}]})  # deleted by hand: made again
        assert memory.ConfigMapState(w.api, "shop", "alert-state").load() == {"hook": [{"a": 4}]}


def test_a_restart_repeats_no_webhook_message_resolves_what_vanished_and_refreshes_alertmanager(
    local_api: Any, alertmanager: Alertmanager, webhook: WebhookReceiver
) -> None:
    ini = {"plugin_alert": {"alertmanager_url": alertmanager.url, "webhook_url": webhook.url}}
    stays, goes = k8s_event("stays"), k8s_event("goes")
    local_api.create("events", stays)
    local_api.create("events", goes)

    def fired(name: str) -> list[Any]:
        return [
            a
            for r in webhook.requests
            for a in r.body["alerts"]
            if a["labels"]["name"] == name and a["status"] == "firing"
        ]

    with running_watcher(local_api, resource="events", namespace="shop", plugins="alert", ini=ini):
        wait_until(lambda: fired("stays") and fired("goes"), what="both alerts at the webhook")
        wait_until(lambda: len(alertmanager.alerts(alertname="PodCrashLooping")) == 2, what="Alertmanager")
        # written within a few seconds, not only at a clean stop
        wait_until(
            lambda: (
                _stored(local_api) == {"Alertmanager": ["goes", "stays"], "json webhook": ["goes", "stays"]}
            ),
            timeout=15,
            what="the state written",
        )
    first_ends = {a["labels"]["name"]: a["endsAt"] for a in alertmanager.alerts(alertname="PodCrashLooping")}
    posted = len(webhook.requests)
    local_api.delete("events", "shop", goes["metadata"]["name"])  # expires while the watcher is down

    with running_watcher(local_api, resource="events", namespace="shop", plugins="alert", ini=ini) as w:
        resolved = webhook.wait_for(posted + 1)[posted].body
        assert resolved["status"] == "resolved"
        assert [a["labels"]["name"] for a in resolved["alerts"]] == ["goes"]
        wait_until(
            lambda: (
                [a["labels"]["name"] for a in alertmanager.alerts(alertname="PodCrashLooping")] == ["stays"]
            ),
            what="the vanished alert resolved in Alertmanager",
        )
        (refreshed,) = alertmanager.alerts(alertname="PodCrashLooping")
        assert refreshed["endsAt"] > first_ends["stays"]  # sent again at start: it does not lapse
        wait_until(
            lambda: w.metric("event_watcher_sweep_changes_total", plugin="alert", action="resolved") == 2
        )
        assert w.errors == 0
    assert len(webhook.requests) == posted + 1  # the resolution, and no repeat of "stays"
    assert len(fired("stays")) == 1 and len(fired("goes")) == 1
    assert _stored(local_api) == {"Alertmanager": ["stays"], "json webhook": ["stays"]}


def _stored(local_api: Any) -> dict[str, list[str]]:
    """The alerts in the state ConfigMap, by sink kind, as their pods' names."""
    for cm in local_api.list("configmaps", "shop"):
        if cm["metadata"]["name"] == "event-watcher-alert-state":
            sinks = json.loads(cm["data"]["alerts.json"])["sinks"]
            return {
                sink.split(" at ")[0]: sorted(r["labels"]["name"] for r in records)
                for sink, records in sinks.items()
            }
    return {}


def test_a_resolution_that_failed_is_sent_when_the_deletion_is_retried(webhook: WebhookReceiver) -> None:
    now = [1000.0]
    clock = lambda: now[0]  # noqa: E731 - a fake monotonic clock the test moves past the cool-down
    options = settings.load({"webhook_url": webhook.url, "retries": "0"})
    rule_set = rules.load_file(options.rules_file, kind="Event")
    state = engine.AlertEngine(rule_set, sinks.build(options, clock=clock), lambda event: "", clock=clock)
    try:
        event = k8s_event("web-1")
        state.handle({"type": "ADDED", "object": event})
        webhook.status = 503
        with pytest.raises(engine.SendFailed):
            state.handle({"type": "DELETED", "object": event})
        webhook.status = 200
        now[0] += sinks.COOLDOWN_INITIAL + 1
        result = state.handle({"type": "DELETED", "object": event})  # the work queue's retry
        assert result is not None and "(resolved)" in result[0]
        assert [r.body["status"] for r in webhook.requests] == ["firing", "resolved", "resolved"]
        assert webhook.status == 200 and webhook.requests[-1].body["alerts"][0]["labels"]["name"] == "web-1"
    finally:
        state.close()
