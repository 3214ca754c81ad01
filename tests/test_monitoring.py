"""deploy/components/monitoring: the alerts and the dashboard for the watcher itself.

The component is rendered on top of deploy/openshift with the real ``kubectl kustomize``; the rules go
through ``promtool check rules`` and ``promtool test rules`` (deploy/components/monitoring/rules.test.yaml,
with a firing case for every alert); every metric a rule or a dashboard query names is one that the real
daemon, started against the local API, lists on its own ``/metrics``.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import yaml

from tests.harness import SECRETS, route, wait_until
from tests.servers import free_port, require_binary
from watcher.localapi import LocalAPI

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMPONENT = ROOT / "deploy" / "components" / "monitoring"
DEPLOY_README = (ROOT / "deploy" / "README.md").read_text(encoding="utf-8")
METRIC = re.compile(r"\bevent_watcher_[a-z_]+")
SERIES_SUFFIXES = ("_total", "_created", "_bucket", "_sum", "_count")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """deploy/openshift with the component, as an operator's overlay would combine them."""
    kubectl = require_binary("kubectl", "kubectl (kustomize v4 or newer)")
    overlay = tmp_path_factory.mktemp("overlay")
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": "event-watcher",
                "resources": [os.path.relpath(ROOT / "deploy" / "openshift", overlay)],
                "components": [os.path.relpath(COMPONENT, overlay)],
            }
        ),
        encoding="utf-8",
    )
    out = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    spec = one(docs, "PrometheusRule", "event-watcher")["spec"]
    return [rule for group in spec["groups"] for rule in group["rules"]]


def dashboard(docs: list[dict[str, Any]]) -> dict[str, Any]:
    config_map = one(docs, "ConfigMap", "event-watcher-dashboard")
    assert config_map["metadata"]["labels"] == {"grafana_dashboard": "1"}  # the sidecar's default label
    return json.loads(config_map["data"]["event-watcher.json"])


@pytest.fixture(scope="module")
def promtool_dir(rendered: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The PrometheusRule's spec as a plain rules file, beside a copy of the unit tests."""
    spec = one(rendered, "PrometheusRule", "event-watcher")["spec"]
    work = tmp_path_factory.mktemp("promtool")
    (work / "rules.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    (work / "rules.test.yaml").write_text((COMPONENT / "rules.test.yaml").read_text(encoding="utf-8"))
    return work


def promtool(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    binary = require_binary("promtool", "prometheus")
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_rules_are_valid_prometheus_rules(promtool_dir: pathlib.Path) -> None:
    result = promtool("check", "rules", "rules.yaml", cwd=promtool_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_passes_its_unit_tests(promtool_dir: pathlib.Path) -> None:
    result = promtool("test", "rules", "rules.test.yaml", cwd=promtool_dir)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_really_checks(promtool_dir: pathlib.Path) -> None:
    """Guard against unit tests that pass anything: a rule made stricter must fail its case."""
    spec = yaml.safe_load((promtool_dir / "rules.yaml").read_text(encoding="utf-8"))
    for rule in spec["groups"][0]["rules"]:
        rule["for"] = "10h"
    broken = promtool_dir / "broken"
    broken.mkdir()
    (broken / "rules.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    (broken / "rules.test.yaml").write_text((promtool_dir / "rules.test.yaml").read_text())
    result = promtool("test", "rules", "rules.test.yaml", cwd=broken)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_every_alert_fires_in_a_test_and_has_its_runbook(rendered: list[dict[str, Any]]) -> None:
    cases = yaml.safe_load((COMPONENT / "rules.test.yaml").read_text(encoding="utf-8"))["tests"]
    firing = {
        check["alertname"] for case in cases for check in case["alert_rule_test"] if check["exp_alerts"]
    }
    quiet = {
        check["alertname"] for case in cases for check in case["alert_rule_test"] if not check["exp_alerts"]
    }
    alerts = [rule for rule in rules(rendered) if "alert" in rule]
    assert alerts
    for rule in alerts:
        name = rule["alert"]
        assert name in firing and name in quiet, f"{name}: needs a case where it fires and one where not"
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        anchor = annotations["runbook"].removeprefix("deploy/README.md#")
        assert anchor == name.lower(), name
        assert re.search(rf"^### {name}$", DEPLOY_README, re.M), f"deploy/README.md has no runbook for {name}"
        assert rule["labels"]["severity"] in ("warning", "critical"), name


def test_the_service_monitor_scrapes_the_metrics_service(rendered: list[dict[str, Any]]) -> None:
    monitor = one(rendered, "ServiceMonitor", "event-watcher")
    service = one(rendered, "Service", "event-watcher-metrics")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    ports = {port["name"] for port in service["spec"]["ports"]}
    assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= ports
    # The Prometheus Operator names the job after the Service; the rules select on it.
    for rule in rules(rendered):
        assert f'job="{service["metadata"]["name"]}"' in rule["expr"], rule.get("alert")


def test_the_dashboard_queries_every_panel(rendered: list[dict[str, Any]]) -> None:
    board = dashboard(rendered)
    assert board["uid"] == "event-watcher"
    titles = {panel["title"] for panel in board["panels"]}
    wanted = {"Leader", "Watch events received", "Plugin calls", "Queue depth", "Watch restarts and relists"}
    assert wanted <= titles
    for panel in board["panels"]:
        assert panel["targets"] and all(METRIC.search(t["expr"]) for t in panel["targets"]), panel["title"]


@pytest.fixture
def live_metrics(local_api: LocalAPI, tmp_path: pathlib.Path) -> Iterator[str]:
    """The text of a running daemon's /metrics, after it handled one route."""
    token_file = tmp_path / "token"
    token_file.write_text(local_api.token)
    SECRETS.add(local_api.token)
    local_api.create("routes", route("shop"))
    port = free_port()
    ours = ("K8S_", "KUBECONFIG", "WATCHER_", "LOG_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    env.update(
        HOME=str(tmp_path),
        K8S_API_ENDPOINT=local_api.url,
        K8S_TOKEN_FILE=str(token_file),
        K8S_CA=local_api.ca_file,
        K8S_RESOURCE="routes",
        K8S_NAMESPACE="default",
        WATCHER_PLUGIN="simple",
        WATCHER_METRICS_PORT=str(port),
    )
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "watch.py")],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/metrics"

    def scrape() -> str:
        try:
            return requests.get(url, timeout=5).text
        except requests.ConnectionError:
            return ""

    try:
        wait_until(lambda: "event_watcher_events_handled_total{" in scrape(), timeout=30, what="/metrics")
        yield scrape()
    finally:
        proc.terminate()
        proc.wait(20)


def test_every_metric_in_the_rules_and_the_dashboard_is_exported(
    rendered: list[dict[str, Any]], live_metrics: str
) -> None:
    families = set(re.findall(r"^# TYPE (\S+) ", live_metrics, re.M))
    exported = families | {family + suffix for family in families for suffix in SERIES_SUFFIXES}
    used = set()
    for rule in rules(rendered):
        used |= set(METRIC.findall(rule["expr"]))
    for panel in dashboard(rendered)["panels"]:
        for target in panel["targets"]:
            used |= set(METRIC.findall(target["expr"]))
    for variable in dashboard(rendered)["templating"]["list"]:
        used |= set(METRIC.findall(json.dumps(variable.get("query", ""))))
    assert len(used) >= 10
    assert used <= exported, f"not exported by the daemon: {sorted(used - exported)}"
