# ruff: noqa: F811  (the server fixtures are imported by name and then requested as arguments)
"""The alert plugin against a real Alertmanager and a real webhook receiver on 127.0.0.1.

The first part drives the plugin's own ``init``/``handle_event`` with a stand-in for the watcher facade
(what the dispatcher passes); the last part runs the whole watcher against the local API server.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import pytest

import plugins.alert as plugin
from plugins.alert import engine, rules, settings, sinks
from tests.harness import SECRETS, running_watcher, wait_until
from tests.servers import free_port
from tests.servers.alertmanager import Alertmanager, alertmanager  # noqa: F401
from tests.servers.webhook import WebhookReceiver, webhook, webhook_factory  # noqa: F401
from watcher import errors
from watcher.client import ResourceInfo

EVENTS = ResourceInfo(group="", version="v1", plural="events", kind="Event", namespaced=True)
ROUTES = ResourceInfo(
    group="route.openshift.io", version="v1", plural="routes", kind="Route", namespaced=True
)
ENDPOINT = "https://api.example.test:6443"
CRASH = "Back-off restarting failed container app in pod {pod}_shop(0b1c)"


def stand_in(resource: ResourceInfo = EVENTS) -> Any:
    """The ``watcher`` argument as the dispatcher builds it: ``.config``, ``.logger``, ``.api``."""
    return SimpleNamespace(
        name="alert",
        config=SimpleNamespace(k8s_endpoint=ENDPOINT),
        logger=logging.getLogger("plugins.alert"),
        api=SimpleNamespace(resource=resource),
    )


def k8s_event(
    pod: str = "web-1",
    *,
    reason: str = "BackOff",
    message: Optional[str] = None,
    count: int = 1,
    namespace: str = "shop",
    kind: str = "Pod",
) -> dict[str, Any]:
    """A core v1 Event as kubelet writes it about a pod."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": {
            "name": f"{pod}.17c3a{reason.lower()}",
            "namespace": namespace,
            "uid": f"uid-{pod}-{reason}",
        },
        "involvedObject": {"kind": kind, "namespace": namespace, "name": pod, "apiVersion": "v1"},
        "reason": reason,
        "message": message if message is not None else CRASH.format(pod=pod),
        "source": {"component": "kubelet", "host": "node-1"},
        "type": "Warning",
        "count": count,
        "firstTimestamp": now,
        "lastTimestamp": now,
    }


def bumped(event: dict[str, Any], count: int) -> dict[str, Any]:
    return {**event, "count": count}


@pytest.fixture
def started() -> Iterator[Any]:
    """``started(config)`` runs the plugin's init with a stand-in watcher; close() at the end."""

    def start(config: Mapping[str, str], resource: ResourceInfo = EVENTS) -> engine.AlertEngine:
        plugin.init(stand_in(resource), config)
        assert plugin.state is not None
        return plugin.state

    yield start
    plugin.close()


def handle(event_type: str, obj: Mapping[str, Any]) -> Optional[tuple[str, str]]:
    return settle(lambda: plugin.handle_event(stand_in(), {"type": event_type, "object": obj}, {}))


def settle(call: Callable[[], Optional[tuple[str, str]]]) -> Optional[tuple[str, str]]:
    """The call's result; a failed send logged as the work queue would log it (one ERROR line), and
    None, so that a test reads the failure where the daemon's log shows it."""
    try:
        return call()
    except engine.SendFailed as e:
        logging.getLogger("plugins.alert").error("%s", e)
        return None


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# --- Alertmanager -------------------------------------------------------------------------------------


def test_a_warning_event_becomes_an_alert_in_alertmanager(alertmanager: Alertmanager, started: Any) -> None:
    started({"alertmanager_url": alertmanager.url})
    event = k8s_event("web-1")
    result = handle("ADDED", event)
    assert result == (
        f"Sent alert PodCrashLooping for Pod shop/web-1 (new) to Alertmanager at {alertmanager.url}.",
        "INFO",
    )
    (alert,) = wait_until(lambda: alertmanager.alerts(alertname="PodCrashLooping"), what="the alert")
    assert alert["labels"] == {
        "alertname": "PodCrashLooping",
        "severity": "warning",
        "namespace": "shop",
        "kind": "Pod",
        "name": "web-1",
    }
    assert alert["annotations"] == {
        "summary": "Pod shop/web-1 is crash-looping (CrashLoopBackOff)",
        "description": f"{CRASH.format(pod='web-1')} (seen 1 times, last at {event['lastTimestamp']})",
    }
    assert alert["status"]["state"] == "active"
    assert alert["generatorURL"] == f"{ENDPOINT}/api/v1/namespaces/shop/events/{event['metadata']['name']}"
    assert alert["startsAt"].startswith(event["firstTimestamp"][:-1])
    assert handle("ADDED", k8s_event("web-2", reason="Pulled", message="Successfully pulled image")) is None


def test_a_growing_count_updates_the_alert_and_deletion_resolves_it(
    alertmanager: Alertmanager, webhook: WebhookReceiver, started: Any
) -> None:
    started(
        {"alertmanager_url": alertmanager.url, "webhook_url": webhook.url + "/hook", "repeat_interval": "1h"}
    )
    event = k8s_event("web-1")
    handle("ADDED", event)
    wait_until(lambda: alertmanager.alerts(alertname="PodCrashLooping"), what="the alert")
    assert len(webhook.requests) == 1

    # A resync or an unrelated change re-delivers the same Event: nothing new, nothing sent.
    assert handle("MODIFIED", event) is None
    assert handle("MODIFIED", k8s_event("web-1", reason="BackOff")) is None
    assert len(webhook.requests) == 1

    # kubelet saw it again: same alert (same labels), new description.
    result = handle("MODIFIED", bumped(event, 4))
    assert result is not None and "(update)" in result[0]
    webhook.wait_for(2)
    updated = wait_until(
        lambda: [
            a
            for a in alertmanager.alerts(alertname="PodCrashLooping")
            if "seen 4 times" in a["annotations"]["description"]
        ],
        what="the updated description",
    )
    assert len(updated) == 1 and len(alertmanager.alerts(alertname="PodCrashLooping")) == 1

    # The Event expires (event-ttl) or is deleted: the alert is resolved everywhere.
    result = handle("DELETED", bumped(event, 4))
    assert result is not None and "(resolved)" in result[0]
    wait_until(lambda: not alertmanager.alerts(alertname="PodCrashLooping"), what="the alert to be resolved")
    resolved = webhook.wait_for(3)[2].body
    assert resolved["status"] == "resolved"
    assert resolved["alerts"][0]["labels"]["name"] == "web-1"
    ends = dt.datetime.fromisoformat(resolved["alerts"][0]["endsAt"].replace("Z", "+00:00"))
    assert ends <= dt.datetime.now(dt.timezone.utc)
    assert handle("DELETED", event) is None  # nothing left to resolve


def test_an_alertmanager_that_is_down_is_an_error_and_the_next_delivery_sends(
    alertmanager: Alertmanager, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1000.0]
    clock = lambda: now[0]  # noqa: E731 - a fake monotonic clock the test moves past the cool-down
    options = settings.load({"alertmanager_url": alertmanager.url, "retries": "1"})
    rule_set = rules.load_file(options.rules_file, kind="Event")
    state = engine.AlertEngine(rule_set, sinks.build(options, clock=clock), lambda event: "", clock=clock)
    try:
        alertmanager.stop()
        event = {"type": "ADDED", "object": k8s_event("web-1")}
        with pytest.raises(engine.SendFailed) as raised:
            state.handle(event)
        logging.getLogger("plugins.alert").error("%s", raised.value)
        assert state.failures == 1 and state.sinks[0].failures == 1
        (line,) = errors_logged(caplog)
        assert line == (
            "Could not send alert PodCrashLooping for Pod shop/web-1 (new) to Alertmanager at "
            f"{alertmanager.url}: cannot connect (Connection refused) after 2 attempts."
        )
        alertmanager.start()
        # Within the cool-down the sink is not even tried: at once an error, counted.
        assert settle(lambda: state.handle({"type": "MODIFIED", "object": event["object"]})) is None
        assert state.failures == 2 and "cool-down" in errors_logged(caplog)[1]
        now[0] += sinks.COOLDOWN_INITIAL + 1
        result = state.handle({"type": "MODIFIED", "object": event["object"]})
        assert result is not None and "(new)" in result[0]  # never delivered, so still news
        wait_until(lambda: alertmanager.alerts(alertname="PodCrashLooping", name="web-1"), what="the alert")
    finally:
        state.close()


# --- webhooks -----------------------------------------------------------------------------------------


def test_json_webhook_payload(webhook: WebhookReceiver, started: Any) -> None:
    started({"webhook_url": webhook.url + "/alerts?source=watcher"})
    handle("ADDED", k8s_event("web-1", reason="FailedScheduling", message="0/3 nodes are available."))
    (request,) = webhook.wait_for(1)
    assert request.path == "/alerts?source=watcher"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    body = request.body
    assert body["version"] == "1" and body["status"] == "firing" and body["receiver"] == "event-watcher-alert"
    (alert,) = body["alerts"]
    assert alert["status"] == "firing"
    assert alert["labels"] == {
        "alertname": "PodUnschedulable",
        "severity": "warning",
        "namespace": "shop",
        "kind": "Pod",
        "name": "web-1",
    }
    assert alert["annotations"]["summary"] == "Pod shop/web-1 cannot be scheduled"
    assert set(alert) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL"}


def test_an_event_the_watcher_posted_itself_is_never_an_alert(webhook: WebhookReceiver, started: Any) -> None:
    """watcher.record's Warning Events (e.g. IssuanceFailed on a route) must not feed back as alerts."""
    started({"webhook_url": webhook.url})
    ours = k8s_event("web-1", reason="FailedScheduling", message="0/3 nodes are available.")
    ours["source"] = {"component": "event-watcher", "host": "event-watcher-5d9c"}
    ours["reportingComponent"] = "event-watcher"
    assert handle("ADDED", ours) is None
    handle("ADDED", k8s_event("web-2", reason="FailedScheduling", message="0/3 nodes are available."))
    (request,) = webhook.wait_for(1)  # only the scheduler's Event
    assert [a["labels"]["name"] for a in request.body["alerts"]] == ["web-2"]


def test_slack_webhook_payload(webhook: WebhookReceiver, started: Any) -> None:
    started({"webhook_url": webhook.url + "/services/T0/B0/x", "webhook_format": "slack"})
    handle(
        "ADDED", k8s_event("web-1", reason="Failed", message='Failed to pull image "shop:nope": not found')
    )
    (request,) = webhook.wait_for(1)
    assert request.body == {
        "text": "[FIRING:warning] PodImagePullFailing: Pod shop/web-1 cannot pull its image\n"
        '>Failed to pull image "shop:nope": not found (seen 1 times)'
    }


def test_bearer_token_is_sent_and_never_logged(
    webhook: WebhookReceiver, started: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = "s3cr3t-t0ken-" + base64.b32encode(tmp_path.name.encode()).decode()[:8]
    SECRETS.add(token)
    (tmp_path / "token").write_text(token + "\n")
    started({"webhook_url": webhook.url, "bearer_token_file": str(tmp_path / "token")})
    handle("ADDED", k8s_event("web-1"))
    assert webhook.wait_for(1)[0].headers["authorization"] == f"Bearer {token}"
    # The token file is read at each send: a rotated token is used without a restart.
    (tmp_path / "token").write_text("r0tated-" + token)
    SECRETS.add("r0tated-" + token)
    handle("ADDED", k8s_event("web-2"))
    assert webhook.wait_for(2)[1].headers["authorization"] == f"Bearer r0tated-{token}"
    assert token not in caplog.text


def test_basic_auth_is_sent_and_only_to_its_sink(
    webhook_factory: Any, started: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    protected, public = webhook_factory(), webhook_factory()
    (tmp_path / "password").write_text("pa55-w0rd-xyz\n")
    (tmp_path / "token").write_text("t0ken-for-alertmanager\n")
    SECRETS.update({"pa55-w0rd-xyz", "t0ken-for-alertmanager"})
    started(
        {
            "alertmanager_url": protected.url,
            "alertmanager_basic_auth_user": "watcher",
            "alertmanager_basic_auth_password_file": str(tmp_path / "password"),
            "webhook_url": public.url,
        }
    )
    handle("ADDED", k8s_event("web-1"))
    (request,) = protected.wait_for(1)
    assert request.path == "/api/v2/alerts"
    expected = base64.b64encode(b"watcher:pa55-w0rd-xyz").decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    assert "authorization" not in public.wait_for(1)[0].headers
    assert "pa55-w0rd-xyz" not in caplog.text


def test_tls_is_verified_with_the_ca_file(
    webhook_factory: Any, started: Any, caplog: pytest.LogCaptureFixture
) -> None:
    receiver = webhook_factory(tls=True)
    started({"webhook_url": receiver.url, "ca_file": receiver.ca_file})
    result = handle("ADDED", k8s_event("web-1"))
    assert result is not None and receiver.wait_for(1)
    plugin.close()
    # Without the CA file the system bundle (REQUESTS_CA_BUNDLE here) does not know the receiver's CA.
    started({"webhook_url": receiver.url})
    assert handle("ADDED", k8s_event("web-2")) is None
    (line,) = errors_logged(caplog)
    assert "TLS failed (certificate verify failed" in line and "after 1 attempt." in line  # no retry for TLS
    assert len(receiver.requests) == 1


def test_server_errors_are_retried_then_rested_and_client_errors_are_not(
    webhook: WebhookReceiver, started: Any, caplog: pytest.LogCaptureFixture
) -> None:
    webhook.status = 503
    state = started({"webhook_url": webhook.url, "retries": "2"})
    assert handle("ADDED", k8s_event("web-1")) is None
    assert len(webhook.requests) == 3
    assert errors_logged(caplog)[0].endswith("HTTP 503 '{}' after 3 attempts.")
    # A sink that is down is left alone for a while: the next alert fails at once, without a request.
    assert handle("ADDED", k8s_event("web-2")) is None
    assert len(webhook.requests) == 3 and state.failures == 2
    assert "cool-down after failing (HTTP 503 '{}')" in errors_logged(caplog)[1]
    plugin.close()

    webhook.status = 400
    state = started({"webhook_url": webhook.url, "retries": "2"})
    assert handle("ADDED", k8s_event("web-1")) is None
    assert len(webhook.requests) == 4 and state.failures == 1
    assert errors_logged(caplog)[2].endswith("HTTP 400 '{}' after 1 attempt.")
    # The receiver refused that payload but is not down: the next alert is tried.
    webhook.status = 200
    assert handle("ADDED", k8s_event("web-2")) is not None
    assert len(webhook.requests) == 5 and state.failures == 1


def test_a_hanging_sink_is_cut_short_by_the_time_budget(
    webhook: WebhookReceiver, started: Any, caplog: pytest.LogCaptureFixture
) -> None:
    webhook.delay = 3.0
    started({"webhook_url": webhook.url, "timeout": "0.3", "retries": "10"})
    assert handle("ADDED", k8s_event("web-1")) is None
    # Ten retries were allowed, but the budget (twice the timeout) leaves room for two attempts at most.
    assert 1 <= len(webhook.wait_for(1)) <= 2 and len(webhook.requests) <= 2
    (line,) = errors_logged(caplog)
    assert re.search(r"no answer within [0-9.]+ s after [12] attempts?\.$", line)


def test_a_dead_sink_does_not_stop_the_other_and_never_shows_a_webhook_path(
    webhook: WebhookReceiver, started: Any, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/services/T0/B0/very-secret-path"
    SECRETS.add("very-secret-path")
    state = started({"alertmanager_url": webhook.url, "webhook_url": dead, "retries": "0"})
    for pod in ("web-1", "web-2", "web-3"):
        handle("ADDED", k8s_event(pod))
    assert [r.body[0]["labels"]["name"] for r in webhook.wait_for(3)] == ["web-1", "web-2", "web-3"]
    assert state.failures == 3
    lines = errors_logged(caplog)
    assert len(lines) == 3
    assert (
        f"to json webhook at http://127.0.0.1:{dead.split(':')[2].split('/')[0]}: cannot connect" in lines[0]
    )
    assert "very-secret-path" not in caplog.text


# --- other resources, and init ------------------------------------------------------------------------

ROUTE_RULES = """
rules:
  - name: RouteNotAdmitted
    match:
      object.kind: Route
      object.status.ingress.*.conditions.*.status: "False"
    severity: info
    summary: "Route {object.metadata.namespace}/{object.metadata.name} is not admitted"
    labels: {team: web}
"""


def route(admitted: str) -> dict[str, Any]:
    return {
        "kind": "Route",
        "metadata": {"name": "web", "namespace": "demo", "uid": "route-uid-1"},
        "spec": {"host": "web.apps.example.test"},
        "status": {"ingress": [{"conditions": [{"type": "Admitted", "status": admitted}]}]},
    }


def test_any_resource_works_and_an_object_that_recovers_resolves(
    webhook: WebhookReceiver, started: Any, tmp_path: Path
) -> None:
    (tmp_path / "rules.yaml").write_text(ROUTE_RULES)
    started({"webhook_url": webhook.url, "rules_file": str(tmp_path / "rules.yaml")}, ROUTES)
    handle("ADDED", route("False"))
    firing = webhook.wait_for(1)[0].body["alerts"][0]
    assert firing["labels"] == {
        "alertname": "RouteNotAdmitted",
        "severity": "info",
        "namespace": "demo",
        "kind": "Route",
        "name": "web",
        "team": "web",
    }
    assert firing["generatorURL"] == f"{ENDPOINT}/apis/route.openshift.io/v1/namespaces/demo/routes/web"
    handle("MODIFIED", route("True"))  # admitted now: the condition is gone
    resolved = webhook.wait_for(2)[1].body
    assert resolved["status"] == "resolved" and resolved["alerts"][0]["labels"]["name"] == "web"


def test_init_refuses_bad_rules_naming_the_rule(started: Any, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(
        ROUTE_RULES.replace("object.kind: Route", "object.kind: Event|Route")
    )
    with pytest.raises(
        errors.PluginError, match=r"rule 'RouteNotAdmitted' \(#1\): match: .*has no field 'status'"
    ):
        started({"webhook_url": "http://127.0.0.1:9/", "rules_file": str(tmp_path / "rules.yaml")})


def test_init_refuses_rules_that_cannot_match_the_watched_kind(started: Any) -> None:
    with pytest.raises(
        errors.PluginError, match=r"none of the 12 rules in .*rules.yaml can match kind Route"
    ):
        started({"webhook_url": "http://127.0.0.1:9/"}, ROUTES)


def test_init_refuses_a_bad_generator_url(started: Any) -> None:
    # Unknown keys are the core's to name (tests/test_dispatch.py): the plugin declares KEYS.
    with pytest.raises(errors.PluginError, match=r"generator_url: .*'nothing' names nothing"):
        started({"webhook_url": "http://127.0.0.1:9/", "generator_url": "https://console/{nothing}"})


def test_a_generator_url_template(webhook: WebhookReceiver, started: Any) -> None:
    started(
        {
            "webhook_url": webhook.url,
            "generator_url": "https://console.example.test/k8s/ns/{object.metadata.namespace}/events",
        }
    )
    handle("ADDED", k8s_event("web-1"))
    assert (
        webhook.wait_for(1)[0].body["alerts"][0]["generatorURL"]
        == "https://console.example.test/k8s/ns/shop/events"
    )


# --- end to end: the real watcher, the local API, Alertmanager and a webhook -------------------------


def seen_by_record(w: Any, name: str, event_type: Optional[str] = None) -> int:
    """How many events for ``name`` the ``record`` plugin (after ``alert`` in the chain) has handled."""
    record = w.plugin("record")
    with record.lock:
        return sum(1 for e in record.events if e.name == name and event_type in (None, e.type))


def test_end_to_end_events_become_alerts_updates_and_resolutions(
    local_api: Any, alertmanager: Alertmanager, webhook: WebhookReceiver
) -> None:
    ini = {
        "plugin_alert": {
            "alertmanager_url": alertmanager.url,
            "webhook_url": webhook.url,
            "repeat_interval": "1h",
        }
    }
    env = {"WATCHER_RESYNC_PERIOD": "0.3"}
    with running_watcher(
        local_api, resource="events", namespace="shop", plugins="alert,record", ini=ini, env=env
    ) as w:
        event = k8s_event("e2e-web")
        name = event["metadata"]["name"]
        local_api.create("events", event)
        (alert,) = wait_until(
            lambda: alertmanager.alerts(alertname="PodCrashLooping", name="e2e-web"), what="alert"
        )
        assert alert["labels"] == {
            "alertname": "PodCrashLooping",
            "severity": "warning",
            "namespace": "shop",
            "kind": "Pod",
            "name": "e2e-web",
        }
        assert alert["annotations"]["summary"] == "Pod shop/e2e-web is crash-looping (CrashLoopBackOff)"
        assert alert["annotations"]["description"].startswith(CRASH.format(pod="e2e-web") + " (seen 1 times")
        assert alert["generatorURL"] == f"{local_api.url}/api/v1/namespaces/shop/events/{name}"

        # Resyncs re-deliver the Event every 0.3 s and a label change modifies it: no repeat is sent.
        wait_until(lambda: seen_by_record(w, name, "MODIFIED") >= 3, what="three resyncs")
        local_api.patch("events", "shop", name, {"metadata": {"labels": {"seen-by": "test"}}})
        # kubelet counts the event again: the alert is updated in place.
        local_api.patch("events", "shop", name, {"count": 2})
        wait_until(
            lambda: [
                a
                for a in alertmanager.alerts(alertname="PodCrashLooping", name="e2e-web")
                if "(seen 2 times" in a["annotations"]["description"]
            ],
            what="the updated description",
        )
        # Events reach plugins in order, so the label change and the resyncs were handled before this.
        posted = webhook.wait_for(2)
        assert len(webhook.requests) == 2
        assert "(seen 2 times" in posted[1].body["alerts"][0]["annotations"]["description"]
        assert len(alertmanager.alerts(alertname="PodCrashLooping")) == 1

        # The Event expires: the alert is resolved.
        local_api.delete("events", "shop", name)
        wait_until(lambda: not alertmanager.alerts(alertname="PodCrashLooping"), what="the alert to resolve")
        resolved = webhook.wait_for(3)[2].body
        assert resolved["status"] == "resolved" and resolved["alerts"][0]["labels"]["name"] == "e2e-web"
        assert w.errors == 0 and w.plugin("alert").state.failures == 0


def test_end_to_end_a_dead_sink_is_an_error_and_the_watch_goes_on(
    local_api: Any, webhook: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    ini = {
        "plugin_alert": {
            "alertmanager_url": f"http://127.0.0.1:{free_port()}",
            "webhook_url": webhook.url,
            "retries": "1",
        }
    }
    with running_watcher(local_api, resource="events", namespace="shop", plugins="alert", ini=ini) as w:
        local_api.create(
            "events", k8s_event("e2e-a", reason="FailedScheduling", message="0/3 nodes are available.")
        )
        local_api.create(
            "events", k8s_event("e2e-b", reason="FailedScheduling", message="0/3 nodes are available.")
        )
        assert [r.body["alerts"][0]["labels"]["name"] for r in webhook.wait_for(2)] == ["e2e-a", "e2e-b"]
        lines = wait_until(
            lambda: [
                r.getMessage()
                for r in caplog.records
                if r.levelno == logging.ERROR and "Could not send" in r.getMessage()
            ],
            what="the ERROR lines",
        )
        assert (
            "alert PodUnschedulable for Pod shop/e2e-a (new) to Alertmanager at http://127.0.0.1:" in lines[0]
        )
        assert "cannot connect (Connection refused) after 2 attempts" in lines[0]
        wait_until(lambda: w.plugin("alert").state.failures >= 2, what="two counted failures")
        wait_until(lambda: w.errors >= 2, what="the failures counted: raised, so counted and retried")
        assert "SendFailed: Could not send alert" in lines[0]
        assert [r.body["alerts"][0]["labels"]["name"] for r in webhook.requests] == [
            "e2e-a",
            "e2e-b",
        ]  # not re-sent


def test_end_to_end_bad_rules_stop_the_start(local_api: Any, tmp_path: Path) -> None:
    rule = {
        "name": "X",
        "match": {"object.reason": "BackOff"},
        "severity": "warning",
        "summary": "{object.reasn}",
    }
    (tmp_path / "rules.yaml").write_text(json.dumps({"rules": [rule]}))  # JSON is YAML too
    ini = {"plugin_alert": {"webhook_url": "http://127.0.0.1:9/", "rules_file": str(tmp_path / "rules.yaml")}}
    expected = r"refused to start: rules_file .*: rule 'X' \(#1\): summary: 'object.reasn' names nothing"
    with (
        pytest.raises(errors.PluginError, match=expected),
        running_watcher(local_api, resource="events", namespace="shop", plugins="alert", ini=ini),
    ):
        pass
