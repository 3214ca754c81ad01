"""The OpenShift manifests in deploy/: every kustomization renders, validates and means what it says.

Each kustomization (not component) under deploy/ is rendered with ``kubectl kustomize``; every object is
validated offline against the Kubernetes 1.30 schemas with ``kubernetes-validate --strict`` (a kind
without a schema fails unless it is allow-listed here), and then checked for what a schema cannot see:
the restricted-v2 security context, least-privilege RBAC per overlay, probes on the port the watcher
really listens on, and a config.ini that the watcher's own config loader accepts inside the pod.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.servers import require_binary
from watcher import config

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.30.0"
# Kinds that kubernetes-validate has no schema for (OpenShift's Route, DeploymentConfig, ...); anything
# new must be added here on purpose, with checks of its own (the ImageStream: test_the_image_...).
ALLOWED_WITHOUT_SCHEMA: frozenset[str] = frozenset({"image.openshift.io/v1/ImageStream"})
NAMESPACED_KINDS = {
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "Secret",
    "Service",
    "Deployment",
    "ImageStream",
    "PodDisruptionBudget",
}
CREDENTIALS_DIR = "/var/run/secrets/event-watcher"

WATCH = {("route.openshift.io", "routes", verb, "*") for verb in ("get", "list", "watch")}
CERTS = {
    ("route.openshift.io", "routes", "patch", "*"),
    ("route.openshift.io", "routes/custom-host", "create", "*"),
}
LEASES = {
    ("coordination.k8s.io", "leases", "create", "*"),
    ("coordination.k8s.io", "leases", "get", "event-watcher"),
    ("coordination.k8s.io", "leases", "update", "event-watcher"),
}
EVENTS = {("", "events", verb, "*") for verb in ("get", "list", "watch")}
ALERT_STATE = {
    ("", "configmaps", "create", "*"),
    ("", "configmaps", "get", "event-watcher-alert-state"),
    ("", "configmaps", "update", "event-watcher-alert-state"),
}
# What each kustomization may do, exactly: anything more is a least-privilege failure.
# Posting Events on the objects the plugins act on (record_events, on by default): every variant.
RECORD = {("", "events", verb, "*") for verb in ("create", "patch")}
EXPECTED_GRANTS = {
    "base": WATCH | RECORD,
    "openshift": WATCH | RECORD,
    "overlays/certs": WATCH | CERTS | RECORD,
    "overlays/leader-election": WATCH | LEASES | RECORD,
    "overlays/alert": EVENTS | ALERT_STATE | RECORD,
}
GROUPS = {"routes": "route.openshift.io", "events": ""}  # of the resources an overlay watches


def kustomizations() -> list[str]:
    found = []
    for path in sorted(DEPLOY.rglob("kustomization.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        if doc.get("kind", "Kustomization") == "Kustomization":
            found.append(path.parent.relative_to(DEPLOY).as_posix())
    return found


KUSTOMIZATIONS = kustomizations()


def test_every_kustomization_has_expectations() -> None:
    assert set(KUSTOMIZATIONS) == set(EXPECTED_GRANTS), "add the new overlay's RBAC to EXPECTED_GRANTS"


@pytest.fixture(scope="module")
def kubectl() -> str:
    path = require_binary("kubectl", "kubectl (kustomize v4 or newer)")
    out = subprocess.run(
        [path, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=60
    )
    version = json.loads(out.stdout).get("kustomizeVersion", "") if out.returncode == 0 else ""
    match = re.match(r"v?(\d+)\.", version)
    # Components and `labels:` need kustomize v4+ (kubectl 1.21+, oc 4.8+); Debian bookworm's
    # kubernetes-client (1.20) embeds v2 and cannot render these manifests.
    assert match and int(match.group(1)) >= 4, (
        f"{path} embeds kustomize {version or 'unknown'}; need v4 or newer"
    )
    return path


@pytest.fixture(scope="module")
def rendered(kubectl: str) -> dict[str, list[dict[str, Any]]]:
    result = {}
    for name in KUSTOMIZATIONS:
        out = subprocess.run(
            [kubectl, "kustomize", str(DEPLOY / name)], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, f"kubectl kustomize deploy/{name} failed: {out.stderr}"
        result[name] = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    return result


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def grants(docs: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """Every (apiGroup, resource, verb, resourceName-or-*) the Role allows."""
    out = set()
    for rule in one(docs, "Role")["rules"]:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    for name in rule.get("resourceNames") or ["*"]:
                        out.add((group, resource, verb, name))
    return out


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_objects_validate_against_kubernetes_schemas(
    rendered: dict[str, list[dict[str, Any]]], name: str
) -> None:
    docs = rendered[name]
    kinds = {d["kind"] for d in docs}
    # base has no ImageStream (OpenShift's), and only leader election needs a PodDisruptionBudget.
    assert NAMESPACED_KINDS - {"ImageStream", "PodDisruptionBudget"} <= kinds <= NAMESPACED_KINDS
    for doc in docs:
        what = f"deploy/{name}: {doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.utils.SchemaNotFoundError:
            assert f"{doc['apiVersion']}/{doc['kind']}" in ALLOWED_WITHOUT_SCHEMA, (
                f"{what}: no schema to check it"
            )
        except kubernetes_validate.utils.ValidationError as e:
            path = ".".join(str(p) for p in e.absolute_path)
            pytest.fail(f"{what}: {path}: {e.message}")


def test_strict_validation_catches_a_typo() -> None:
    """Guard against a validator that passes everything: an unknown field must fail in strict mode."""
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 80, "protocl": "TCP"}]},
    }
    with pytest.raises(kubernetes_validate.utils.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_restricted_v2_security_context(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    pod = one(rendered[name], "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    c = container(rendered[name])
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    assert sc.get("privileged") is not True
    # OpenShift assigns the UID from the project's range: a fixed one would be refused by restricted-v2.
    assert "runAsUser" not in sc and "runAsUser" not in pod["securityContext"]
    # A read-only root needs a writable /tmp.
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    for volume in volumes.values():
        assert "hostPath" not in volume


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_rbac_is_least_privilege(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    docs = rendered[name]
    assert grants(docs) == EXPECTED_GRANTS[name]
    for rule in one(docs, "Role")["rules"]:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {field}"
    binding = one(docs, "RoleBinding")
    role = one(docs, "Role")
    account = one(docs, "ServiceAccount")
    deployment = one(docs, "Deployment")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    namespace = deployment["metadata"]["namespace"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": namespace}
    ]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]
    for doc in docs:
        assert doc["metadata"]["namespace"] == namespace, f"{doc['kind']} in another namespace"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_probes_resources_and_mounts(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    docs = rendered[name]
    c = container(docs)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in (c["livenessProbe"], c["readinessProbe"]):
        assert ports[probe["httpGet"]["port"]] == 8080
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind])
    service = one(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] in ports
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    # Generated names (with their content hash) are what the Deployment refers to.
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == one(docs, "ConfigMap")["metadata"]["name"]
    assert volumes["credentials"]["secret"]["secretName"] == one(docs, "Secret")["metadata"]["name"]


def pod_settings(docs: list[dict[str, Any]], tmp_path: pathlib.Path) -> config.Settings:
    """Load the rendered config.ini as the pod will: CONFIG_FILE, the Deployment's env, a serviceaccount."""
    c = container(docs)
    env = {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    config_file = env.pop("CONFIG_FILE")
    mount = mounts["config"]
    assert config_file.startswith(mount + "/")
    key = config_file[len(mount) + 1 :]
    data = one(docs, "ConfigMap")["data"]
    assert key in data, f"CONFIG_FILE names {key}, which the ConfigMap does not have"
    tmp_path.mkdir(parents=True, exist_ok=True)
    ini = tmp_path / key
    ini.write_text(data[key], encoding="utf-8")
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text("not-a-real-token\n", encoding="utf-8")
    (sa / "namespace").write_text(one(docs, "Deployment")["metadata"]["namespace"], encoding="utf-8")
    environ = {"KUBERNETES_SERVICE_HOST": "172.30.0.1", "KUBERNETES_SERVICE_PORT": "443", **env}
    return config.load(environ, str(ini), serviceaccount_dir=str(sa), home=str(tmp_path))


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_config_loads_as_the_pod_will_see_it(
    rendered: dict[str, list[dict[str, Any]]], name: str, tmp_path: pathlib.Path
) -> None:
    docs = rendered[name]
    settings = pod_settings(docs, tmp_path)
    assert settings.unknown_keys == () and settings.unknown_sections == ()
    assert settings.endpoint == "https://172.30.0.1:443"
    assert settings.metrics_port == 8080, "the probes and the Service expect the watcher on 8080"
    # The Role lets the watcher read exactly the resource it is configured to watch.
    assert (GROUPS[settings.resource], settings.resource, "watch", "*") in grants(docs)
    for plugin in settings.plugins:
        assert (ROOT / "plugins" / plugin / "__init__.py").is_file(), f"no built-in plugin {plugin!r}"
    if "certs" in settings.plugins:
        assert grants(docs) >= CERTS
    if "alert" in settings.plugins:
        from plugins.alert import settings as alert_settings

        # The credential files exist only in the pod; everything else parses here.
        section = {k: v for k, v in settings.plugin_config("alert").items() if not k.endswith("_file")}
        state = alert_settings.load(section).state_configmap
        assert {("", "configmaps", verb, state) for verb in ("get", "update")} <= grants(docs)
    replicas = one(docs, "Deployment")["spec"]["replicas"]
    strategy = one(docs, "Deployment")["spec"]["strategy"]["type"]
    if settings.leader_election:
        lease = settings.leader_election_name
        assert {("coordination.k8s.io", "leases", verb, lease) for verb in ("get", "update")} <= grants(docs)
        assert replicas == 2 and strategy == "RollingUpdate"
    else:
        # Two replicas without a Lease would both dispatch every event; so would a rolling update.
        assert replicas == 1 and strategy == "Recreate"


def plugin_files(settings: config.Settings) -> Iterator[tuple[str, str]]:
    for section, values in settings.plugin_configs.items():
        for key, value in values.items():
            if key.endswith("_file") and value.startswith(CREDENTIALS_DIR + "/"):
                yield f"{section}.{key}", value[len(CREDENTIALS_DIR) + 1 :]


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_credentials_are_a_secret_mounted_as_files(
    rendered: dict[str, list[dict[str, Any]]], name: str, tmp_path: pathlib.Path
) -> None:
    docs = rendered[name]
    secret = one(docs, "Secret")
    mounts = {m["name"]: m for m in container(docs)["volumeMounts"]}
    assert mounts["credentials"]["mountPath"] == CREDENTIALS_DIR
    assert mounts["credentials"]["readOnly"] is True
    # Secrets reach the watcher as files, never as env values or literal ini values.
    for e in container(docs).get("env", []):
        assert "secretKeyRef" not in e.get("valueFrom", {})
    for where, key in plugin_files(pod_settings(docs, tmp_path)):
        assert key in secret["data"], f"{where} names {key}, which the Secret does not have"


def test_dns_sections_parse_with_the_plugins_own_parser(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: pathlib.Path
) -> None:
    from plugins.dns import settings as dns_settings

    checked = []
    for name in KUSTOMIZATIONS:
        section = pod_settings(rendered[name], tmp_path / name).plugin_configs.get("dns")
        if section is None:
            continue
        assert set(section) <= set(dns_settings.KEYS), name
        # The key file is read at start in the pod; here it is enough that everything else parses.
        parsed = dns_settings.parse({k: v for k, v in section.items() if k != "dns_key_file"})
        assert parsed.zone == "apps.example.com"
        checked.append(name)
    assert {"openshift", "overlays/certs"} <= set(checked)


README = (DEPLOY / "README.md").read_text(encoding="utf-8")


def test_every_kustomization_the_readme_applies_exists() -> None:
    applied = set(re.findall(r"oc apply -k (deploy/\S+)", README))
    assert "deploy/openshift" in applied
    for path in applied:
        assert path.removeprefix("deploy/") in KUSTOMIZATIONS, path


def test_the_readme_overlay_combining_both_components_renders(kubectl: str, tmp_path: pathlib.Path) -> None:
    """The 'make your own overlay' example, rendered: certificates and leader election together."""
    example = re.search(r"# deploy/overlays/mine/kustomization.yaml\n(.*?)```", README, re.S)
    assert example, "the README's combined overlay example"
    tree = tmp_path / "deploy"
    shutil.copytree(DEPLOY, tree)
    mine = tree / "overlays" / "mine"
    (mine / "credentials").mkdir(parents=True)
    (mine / "kustomization.yaml").write_text(example.group(1), encoding="utf-8")
    shutil.copy(DEPLOY / "overlays" / "certs" / "config.ini", mine / "config.ini")
    shutil.copy(DEPLOY / "overlays" / "certs" / "credentials" / "acme-account.key", mine / "credentials")
    out = subprocess.run([kubectl, "kustomize", str(mine)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    docs = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    for doc in docs:
        if f"{doc['apiVersion']}/{doc['kind']}" not in ALLOWED_WITHOUT_SCHEMA:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert grants(docs) == WATCH | CERTS | LEASES | RECORD
    assert (
        one(docs, "PodDisruptionBudget")["metadata"].get("namespace")
        == one(docs, "Deployment")["metadata"]["namespace"]
    )
    assert one(docs, "Deployment")["spec"]["replicas"] == 2
    assert set(one(docs, "Secret")["data"]) == {"dns.key", "alertmanager-token", "acme-account.key"}


@pytest.mark.parametrize("name", [n for n in KUSTOMIZATIONS if n != "base"])
def test_the_image_reference_works_as_shipped_on_openshift(
    rendered: dict[str, list[dict[str, Any]]], name: str
) -> None:
    """The ImageStream resolves ``event-watcher:latest`` and its trigger sets the built digest."""
    docs = rendered[name]
    stream = one(docs, "ImageStream")
    assert stream["metadata"]["name"] == "event-watcher"
    assert stream["spec"]["lookupPolicy"] == {"local": True}
    assert set(stream) == {"apiVersion", "kind", "metadata", "spec"} and set(stream["spec"]) == {
        "lookupPolicy"
    }
    deployment = one(docs, "Deployment")
    (trigger,) = json.loads(deployment["metadata"]["annotations"]["image.openshift.io/triggers"])
    c = container(docs)
    assert trigger["from"] == {"kind": "ImageStreamTag", "name": f"{stream['metadata']['name']}:latest"}
    assert trigger["fieldPath"] == f'spec.template.spec.containers[?(@.name=="{c["name"]}")].image'
    assert c["image"] == trigger["from"]["name"]
    assert c["imagePullPolicy"] == "IfNotPresent"  # a digest names one image: no pull on every start


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_a_startup_probe_guards_the_liveness_probe(
    rendered: dict[str, list[dict[str, Any]]], name: str
) -> None:
    c = container(rendered[name])
    startup, liveness = c["startupProbe"], c["livenessProbe"]
    assert startup["httpGet"] == liveness["httpGet"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60  # a slow start is not a crash loop
    assert "initialDelaySeconds" not in liveness


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_leader_election_comes_with_a_pod_disruption_budget(
    rendered: dict[str, list[dict[str, Any]]], name: str
) -> None:
    docs = rendered[name]
    budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    deployment = one(docs, "Deployment")
    if deployment["spec"]["replicas"] == 1:
        assert budgets == []  # one replica: a budget would only block node drains
        return
    (budget,) = budgets
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["spec"]["maxUnavailable"] == 1 < deployment["spec"]["replicas"]
