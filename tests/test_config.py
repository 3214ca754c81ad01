"""watcher.config: precedence of the layers, validation with exit codes, redaction, the seed's names.

Every test builds its own layers in a tmp dir (a fake serviceaccount dir, kubeconfig files, an ini
file) and calls the pure ``config.load``; nothing reads the real environment or ~/.kube.
"""

from __future__ import annotations

import base64
import os
import string
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from watcher import config, errors

TOKEN = "sha256~T0k3nThatMustNeverBeShown"
OTHER_TOKEN = "sha256~AnotherSecretValue42"
BASE_ENV = {"K8S_RESOURCE": "routes", "K8S_NAMESPACE": "demo", "K8S_API_ENDPOINT": "api.example.test:6443"}


class Layers:
    """Builds the files one test needs and calls config.load with them only."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir()
        self.sa_dir = root / "serviceaccount"

    def serviceaccount(
        self, token: Optional[str] = OTHER_TOKEN, ca: bool = True, namespace: str = "sa-ns"
    ) -> Path:
        self.sa_dir.mkdir(exist_ok=True)
        if token is not None:
            (self.sa_dir / "token").write_text(token)
        if ca:
            (self.sa_dir / "ca.crt").write_text(
                "-----BEGIN CERTIFICATE-----\nsa\n-----END CERTIFICATE-----\n"
            )
        if namespace:
            (self.sa_dir / "namespace").write_text(namespace)
        return self.sa_dir

    def ini(self, text: str, name: str = "config.ini") -> str:
        path = self.root / name
        path.write_text(textwrap.dedent(text))
        return str(path)

    def kubeconfig(self, document: Any, name: str = "kubeconfig", where: Optional[Path] = None) -> str:
        directory = where or self.root
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / name
        path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
        return str(path)

    def load(self, env: Mapping[str, str], ini: Optional[str] = None) -> config.Settings:
        return config.load(env, ini, serviceaccount_dir=str(self.sa_dir), home=str(self.home))

    def fail(self, env: Mapping[str, str], ini: Optional[str] = None) -> errors.ConfigError:
        with pytest.raises(errors.ConfigError) as caught:
            self.load(env, ini)
        error = caught.value
        assert "\n" not in str(error)
        assert TOKEN not in str(error) and OTHER_TOKEN not in str(error)
        return error


@pytest.fixture
def layers(tmp_path: Path) -> Layers:
    return Layers(tmp_path)


def kubeconfig_doc(
    *,
    server: Optional[str] = "https://kube.example.test:6443",
    user: Optional[dict[str, Any]] = None,
    cluster_extra: Optional[dict[str, Any]] = None,
    namespace: Optional[str] = "kube-ns",
    context: str = "dev",
) -> dict[str, Any]:
    cluster: dict[str, Any] = {"server": server} if server else {}
    cluster.update(cluster_extra or {})
    ctx: dict[str, Any] = {"cluster": "c1", "user": "u1"}
    if namespace:
        ctx["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": context,
        "clusters": [{"name": "c1", "cluster": cluster}],
        "users": [{"name": "u1", "user": user if user is not None else {"token": TOKEN}}],
        "contexts": [{"name": "dev", "context": ctx}],
    }


def codes(error: errors.ConfigError) -> list[int]:
    return [code for code, _ in error.problems]


# --- precedence: env > ini > serviceaccount > kubeconfig > default ------------------------------------


def test_env_beats_ini_beats_serviceaccount_beats_kubeconfig_for_the_endpoint(layers: Layers) -> None:
    layers.serviceaccount()
    layers.kubeconfig(kubeconfig_doc(), where=layers.home / ".kube", name="config")
    ini = layers.ini("[global]\nk8s_api_endpoint = ini.example.test:8443\n")
    env = {"K8S_RESOURCE": "routes", "KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}

    s = layers.load({**env, "K8S_API_ENDPOINT": "env.example.test:6443"}, ini)
    assert (s.endpoint, s.sources["endpoint"]) == ("https://env.example.test:6443", "env")
    s = layers.load(env, ini)
    assert (s.endpoint, s.sources["endpoint"]) == ("https://ini.example.test:8443", "ini")
    s = layers.load(env)
    assert (s.endpoint, s.sources["endpoint"]) == ("https://10.0.0.1:443", "serviceaccount")
    s = layers.load({"K8S_RESOURCE": "routes"})  # in the SA dir but not a pod's environment
    assert (s.endpoint, s.sources["endpoint"]) == ("https://kube.example.test:6443", "kubeconfig")


def test_namespace_from_each_layer(layers: Layers) -> None:
    layers.kubeconfig(kubeconfig_doc(), where=layers.home / ".kube", name="config")
    env = {"K8S_RESOURCE": "routes"}
    assert layers.load(env).namespace == "kube-ns"
    assert layers.load(env).sources["namespace"] == "kubeconfig"
    layers.serviceaccount(namespace="sa-ns\n")
    s = layers.load(env)
    assert (s.namespace, s.sources["namespace"]) == ("sa-ns", "serviceaccount")
    ini = layers.ini("[global]\nk8s_namespace = ini-ns\n")
    assert layers.load(env, ini).namespace == "ini-ns"
    assert layers.load({**env, "K8S_NAMESPACE": "env-ns"}, ini).namespace == "env-ns"


def test_token_from_each_layer_and_the_token_file_wins_only_from_its_own_layer(layers: Layers) -> None:
    layers.kubeconfig(kubeconfig_doc(), where=layers.home / ".kube", name="config")
    env = {"K8S_RESOURCE": "routes"}
    s = layers.load(env)
    assert (s.token, s.token_file, s.sources["token"]) == (TOKEN, None, "kubeconfig")

    sa = layers.serviceaccount(token=OTHER_TOKEN)
    s = layers.load(env)
    assert (s.token, s.token_file, s.sources["token_file"]) == (None, str(sa / "token"), "serviceaccount")
    assert s.sources["token"] == "default"

    ini = layers.ini("[global]\nk8s_token = ini-token\n")
    s = layers.load(env, ini)
    assert (s.token, s.token_file, s.sources["token"]) == ("ini-token", None, "ini")

    s = layers.load({**env, "K8S_TOKEN": "env-token"}, ini)
    assert (s.token, s.sources["token"]) == ("env-token", "env")

    token_file = layers.root / "rotating-token"
    token_file.write_text("file-token\n")
    s = layers.load({**env, "K8S_TOKEN_FILE": str(token_file)}, ini)
    assert (s.token, s.token_file, s.sources["token_file"]) == (None, str(token_file), "env")


def test_ca_from_each_layer(layers: Layers) -> None:
    pem = b"-----BEGIN CERTIFICATE-----\nkube\n-----END CERTIFICATE-----\n"
    doc = kubeconfig_doc(cluster_extra={"certificate-authority-data": base64.b64encode(pem).decode()})
    layers.kubeconfig(doc, where=layers.home / ".kube", name="config")
    env = {"K8S_RESOURCE": "routes"}
    s = layers.load(env)
    assert (s.ca_file, s.ca_data, s.sources["ca_data"]) == (None, pem, "kubeconfig")

    sa = layers.serviceaccount()
    s = layers.load(env)
    # The CA moves as one: the serviceaccount's file, and no kubeconfig data beside it.
    assert (s.ca_file, s.ca_data, s.sources["ca_file"]) == (str(sa / "ca.crt"), None, "serviceaccount")

    ini_ca = layers.root / "ini-ca.crt"
    ini_ca.write_text("ini")
    env_ca = layers.root / "env-ca.crt"
    env_ca.write_text("env")
    ini = layers.ini(f"[global]\nk8s_ca = {ini_ca}\n")
    assert layers.load(env, ini).ca_file == str(ini_ca)
    s = layers.load({**env, "K8S_CA": str(env_ca)}, ini)
    assert (s.ca_file, s.sources["ca_file"]) == (str(env_ca), "env")


def test_defaults_and_their_sources(layers: Layers) -> None:
    s = layers.load({**BASE_ENV, "K8S_TOKEN": TOKEN})
    assert s.plugins == ("simple",)
    assert s.plugin_path == ()
    assert s.resync_period == 0
    assert (s.log_level, s.log_format) == ("INFO", "text")
    assert (s.metrics_port, s.leader_election, s.leader_election_name) == (8080, False, "event-watcher")
    assert s.insecure_skip_tls_verify is False
    assert (s.namespaced, s.api_group, s.api_version, s.api_path, s.legacy_oapi) == (
        None,
        None,
        None,
        None,
        False,
    )
    assert (s.label_selector, s.field_selector) == (None, None)
    assert s.sources["plugins"] == s.sources["log_level"] == "default"
    assert set(s.sources.values()) <= set(config.SOURCES)
    assert {key.name for key in config.KEYS} <= set(s.sources)


def test_every_key_is_read_from_env_and_from_ini(layers: Layers, tmp_path: Path) -> None:
    """The table drives both layers: each key's env var and ini key really set the field."""
    ca = tmp_path / "ca.crt"
    ca.write_text("ca")
    token_file = tmp_path / "token"
    token_file.write_text("t")
    raw = {
        "endpoint": ("h.example.test:1234", "https://h.example.test:1234"),
        "token": (TOKEN, TOKEN),
        "ca_file": (str(ca), str(ca)),
        "namespace": ("ns-x", "ns-x"),
        "namespaced": ("no", False),
        "resource": ("services", "services"),
        "api_group": ("route.openshift.io", "route.openshift.io"),
        "api_version": ("v1beta1", "v1beta1"),
        "api_path": ("apis/route.openshift.io/v1/", "/apis/route.openshift.io/v1"),
        "label_selector": ("app=web", "app=web"),
        "field_selector": ("metadata.name=x", "metadata.name=x"),
        "insecure_skip_tls_verify": ("YES", True),
        "plugins": (" simple , dns ", ("simple", "dns")),
        "plugin_path": (f"{tmp_path}{os.pathsep}{os.pathsep}/", (str(tmp_path), "/")),
        "resync_period": ("2.5", 2.5),
        "keep_managed_fields": ("true", True),
        "watch_timeout": ("60", 60.0),
        "log_level": ("warn", "WARNING"),
        "log_format": ("JSON", "json"),
        "metrics_port": ("0", 0),
        "metrics_address": ("[::1]", "::1"),
        "leader_election": ("on", True),
        "leader_election_name": ("my-lease", "my-lease"),
        "shutdown_grace": ("12.5", 12.5),
        "record_events": ("off", False),
    }
    keys = {key.name: key for key in config.KEYS}
    assert set(raw) | {"token_file"} == set(keys)
    env = {keys[name].env: value for name, (value, _) in raw.items()}
    s = layers.load(env)
    ini_text = "[global]\n" + "".join(f"{keys[name].ini} = {value}\n" for name, (value, _) in raw.items())
    s_ini = layers.load({}, layers.ini(ini_text))
    for name, (_, expected) in raw.items():
        assert getattr(s, name) == expected, name
        assert s.sources[name] == "env", name
        assert getattr(s_ini, name) == expected, name
        assert s_ini.sources[name] == "ini", name
    s = layers.load({**BASE_ENV, "K8S_TOKEN_FILE": str(token_file)})
    assert s.token_file == str(token_file)


def test_metrics_listen_on_loopback_off_a_pod_and_on_every_interface_in_one(layers: Layers) -> None:
    env = {**BASE_ENV, "K8S_TOKEN": TOKEN}
    s = layers.load(env)
    assert (s.metrics_address, s.sources["metrics_address"]) == ("127.0.0.1", "default")
    s = layers.load({**env, "KUBERNETES_SERVICE_HOST": "172.30.0.1"})
    assert (s.metrics_address, s.sources["metrics_address"]) == ("0.0.0.0", "serviceaccount")
    s = layers.load({**env, "KUBERNETES_SERVICE_HOST": "172.30.0.1", "WATCHER_METRICS_ADDRESS": "10.0.0.5"})
    assert (s.metrics_address, s.sources["metrics_address"]) == ("10.0.0.5", "env")
    with pytest.raises(errors.ConfigError, match="WATCHER_METRICS_ADDRESS: expected an IP address"):
        layers.load({**env, "WATCHER_METRICS_ADDRESS": "everywhere"})


def test_empty_env_value_counts_as_unset(layers: Layers) -> None:
    ini = layers.ini("[global]\nk8s_namespace = from-ini\nlog_level = DEBUG\n")
    s = layers.load({**BASE_ENV, "K8S_TOKEN": TOKEN, "K8S_NAMESPACE": "", "LOG_LEVEL": "  "}, ini)
    assert (s.namespace, s.log_level) == ("from-ini", "DEBUG")


def test_config_file_env_is_used_when_no_path_is_given(layers: Layers) -> None:
    ini = layers.ini("[global]\nk8s_resource = services\n")
    s = layers.load({**BASE_ENV, "K8S_RESOURCE": "", "K8S_TOKEN": TOKEN, "CONFIG_FILE": ini})
    assert (s.resource, s.config_file) == ("services", ini)


def test_ini_values_can_come_from_the_environment(layers: Layers) -> None:
    ini = layers.ini(
        """
        [global]
        k8s_token = $env:MY_TOKEN
        [plugin_ipa]
        ipa_password = $env:IPA_PASSWORD
        """
    )
    s = layers.load({**BASE_ENV, "MY_TOKEN": TOKEN, "IPA_PASSWORD": "hunter2"}, ini)
    assert (s.token, s.sources["token"]) == (TOKEN, "ini")
    assert s.plugin_config("ipa")["ipa_password"] == "hunter2"

    error = layers.fail(BASE_ENV, ini)
    messages = [message for _, message in error.problems]
    assert any("MY_TOKEN" in m and "k8s_token" in m for m in messages)
    assert any("IPA_PASSWORD" in m and "ipa_password" in m for m in messages)


def test_a_value_from_an_env_reference_is_never_quoted(layers: Layers) -> None:
    """A token pulled into the wrong key with $env: must not be echoed by the error about that key."""
    ini = layers.ini("[global]\nk8s_namespace = $env:MY_TOKEN\n[plugin_x]\nendpoint = $env:MY_TOKEN\n")
    error = layers.fail({**BASE_ENV, "K8S_TOKEN": "t", "K8S_NAMESPACE": "", "MY_TOKEN": TOKEN}, ini)
    assert str(error) == f"k8s_namespace in [global] of {ini} ($env:MY_TOKEN): the value is not a valid " + (
        "namespace (lower-case letters, digits and '-', at most 63 characters)"
    )
    s = layers.load({**BASE_ENV, "K8S_TOKEN": "t", "MY_TOKEN": TOKEN}, ini)
    assert s.plugin_config("x")["endpoint"] == TOKEN
    assert "endpoint = <from $MY_TOKEN>  (ini)" in config.render(s).splitlines()
    assert TOKEN not in config.render(s)
    ini = layers.ini("[global]\nk8s_api_path = $env:MY_TOKEN\n")
    s = layers.load({**BASE_ENV, "K8S_TOKEN": "t", "MY_TOKEN": "x" + TOKEN}, ini)
    assert s.api_path == "/x" + TOKEN
    assert "k8s_api_path = <from $MY_TOKEN>  (ini)" in config.render(s).splitlines()
    assert TOKEN not in config.render(s) and TOKEN not in repr(s)
    ini = layers.ini("[global]\nk8s_ca = $env:MY_TOKEN\n")
    error = layers.fail({**BASE_ENV, "K8S_TOKEN": "t", "MY_TOKEN": TOKEN}, ini)
    assert (
        str(error)
        == f"k8s_ca in [global] of {ini} ($env:MY_TOKEN): cannot read the CA file: No such file or directory"
    )


def test_inline_comments_as_in_the_2017_sample(layers: Layers) -> None:
    ini = layers.ini(
        "[global]\nk8s_resource = routes    # what to watch\n[plugin_dns]\ndns_server=  # none\n"
    )
    s = layers.load({**BASE_ENV, "K8S_RESOURCE": "", "K8S_TOKEN": TOKEN}, ini)
    assert s.resource == "routes"
    assert "dns_server" not in s.plugin_config("dns")


# --- credential and TLS groups ----------------------------------------------------------------------


def test_an_explicit_token_is_not_mixed_with_kubeconfig_client_certificates(layers: Layers) -> None:
    cert, key = layers.root / "client.crt", layers.root / "client.key"
    cert.write_text("cert")
    key.write_text("key")
    user = {"client-certificate": str(cert), "client-key": str(key)}
    layers.kubeconfig(kubeconfig_doc(user=user), where=layers.home / ".kube", name="config")
    s = layers.load({"K8S_RESOURCE": "routes", "K8S_TOKEN": TOKEN})
    assert s.token == TOKEN
    assert (s.client_cert_file, s.client_key_file) == (None, None)
    s = layers.load({"K8S_RESOURCE": "routes"})
    assert (s.client_cert_file, s.client_key_file, s.token) == (str(cert), str(key), None)
    assert s.sources["client_cert_file"] == "kubeconfig"


def test_kubeconfig_insecure_flag_only_applies_to_its_own_server(layers: Layers) -> None:
    doc = kubeconfig_doc(cluster_extra={"insecure-skip-tls-verify": True})
    layers.kubeconfig(doc, where=layers.home / ".kube", name="config")
    s = layers.load({"K8S_RESOURCE": "routes"})
    assert (s.insecure_skip_tls_verify, s.sources["insecure_skip_tls_verify"]) == (True, "kubeconfig")
    s = layers.load({"K8S_RESOURCE": "routes", "K8S_API_ENDPOINT": "other.example.test:6443"})
    assert s.insecure_skip_tls_verify is False
    s = layers.load(
        {"K8S_RESOURCE": "routes", "K8S_API_ENDPOINT": "other:1", "K8S_INSECURE_SKIP_TLS_VERIFY": "true"}
    )
    assert (s.insecure_skip_tls_verify, s.sources["insecure_skip_tls_verify"]) == (True, "env")


def test_token_and_token_file_in_the_same_layer_is_an_error(layers: Layers) -> None:
    token_file = layers.root / "token"
    token_file.write_text("x")
    error = layers.fail({**BASE_ENV, "K8S_TOKEN": TOKEN, "K8S_TOKEN_FILE": str(token_file)})
    assert error.exit_code == errors.EXIT_USAGE
    assert "K8S_TOKEN and K8S_TOKEN_FILE are both set: set only one of them" in str(error)
    # In different layers the higher one simply wins.
    ini = layers.ini(f"[global]\nk8s_token_file = {token_file}\n")
    assert layers.load({**BASE_ENV, "K8S_TOKEN": TOKEN}, ini).token_file is None


# --- exit codes ---------------------------------------------------------------------------------------


def test_31_resource_missing(layers: Layers) -> None:
    error = layers.fail({**BASE_ENV, "K8S_RESOURCE": "", "K8S_TOKEN": TOKEN})
    assert error.exit_code == errors.EXIT_RESOURCE == 31
    assert error.problems == [(31, error.problems[0][1])]
    assert "K8S_RESOURCE" in str(error) and "k8s_resource" in str(error)


def test_31_resource_invalid(layers: Layers) -> None:
    error = layers.fail({**BASE_ENV, "K8S_RESOURCE": "Routes/status", "K8S_TOKEN": TOKEN})
    assert codes(error) == [31]
    assert "K8S_RESOURCE: 'Routes/status' is not a resource name" in str(error)


def test_32_namespace_missing_when_declared_namespaced(layers: Layers) -> None:
    env = {**BASE_ENV, "K8S_NAMESPACE": "", "K8S_TOKEN": TOKEN}
    error = layers.fail({**env, "K8S_NAMESPACED": "true"})
    assert codes(error) == [32]
    assert "no namespace" in str(error) and "K8S_NAMESPACED=false" in str(error)
    # Unset: discovery decides (a cluster-scoped resource needs no namespace); false: all namespaces.
    assert layers.load(env).namespace is None
    s = layers.load({**env, "K8S_NAMESPACED": "false"})
    assert (s.namespace, s.namespaced) == (None, False)


def test_32_namespace_invalid(layers: Layers) -> None:
    error = layers.fail({**BASE_ENV, "K8S_NAMESPACE": "Bad_NS", "K8S_TOKEN": TOKEN})
    assert codes(error) == [32]
    assert "K8S_NAMESPACE: 'Bad_NS' is not a valid namespace" in str(error)


def test_33_endpoint_missing(layers: Layers) -> None:
    error = layers.fail({**BASE_ENV, "K8S_API_ENDPOINT": "", "K8S_TOKEN": TOKEN})
    assert codes(error) == [33]
    assert "no API endpoint" in str(error) and "K8S_API_ENDPOINT" in str(error)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("http://", "has no host name"),
        ("host:notaport", "port must be a number"),
        ("ftp://x", "scheme must be https or http, not ftp"),
        ("https://h:0", "port must be a number"),
        ("https://h:70000", "port must be a number"),
        ("https://user:pw@h:1", "credentials do not belong"),
        ("https://h:1/?watch=true", "query"),
        ("https://bad host:1", "not a host name"),
        ("[::g]:6443", "not an IPv6 address"),
        ("https://[fd00::1:6443", "not an IPv6 address"),
    ],
)
def test_33_endpoint_invalid(layers: Layers, value: str, reason: str) -> None:
    error = layers.fail({**BASE_ENV, "K8S_API_ENDPOINT": value, "K8S_TOKEN": TOKEN})
    assert codes(error) == [33]
    assert str(error).startswith(f"K8S_API_ENDPOINT: {value!r} is not a valid API endpoint")
    assert reason in str(error)


@pytest.mark.parametrize(
    ("value", "normalized"),
    [
        ("master.example.com:8443", "https://master.example.com:8443"),
        ("https://master.example.com:8443/", "https://master.example.com:8443"),
        ("HTTPS://API.Example.com", "https://api.example.com:443"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost", "http://localhost:80"),
        ("[::1]:6443", "https://[::1]:6443"),
        ("https://[fd00::10]", "https://[fd00::10]:443"),
        ("  10.0.0.1:443  ", "https://10.0.0.1:443"),
        ("https://rancher.example.com/k8s/clusters/c-1/", "https://rancher.example.com:443/k8s/clusters/c-1"),
    ],
)
def test_endpoint_normalization(value: str, normalized: str) -> None:
    assert config.normalize_endpoint(value) == normalized


def test_serviceaccount_endpoint_with_ipv6_host(layers: Layers) -> None:
    layers.serviceaccount()
    s = layers.load(
        {"K8S_RESOURCE": "routes", "KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    )
    assert s.endpoint == "https://[fd00::1]:443"


def test_34_no_credentials(layers: Layers) -> None:
    error = layers.fail(BASE_ENV)
    assert codes(error) == [34]
    assert "no credentials" in str(error) and "K8S_TOKEN" in str(error)


def test_34_token_file_that_does_not_exist_yet(layers: Layers) -> None:
    missing = layers.root / "not-yet" / "token"
    error = layers.fail({**BASE_ENV, "K8S_TOKEN_FILE": str(missing)})
    assert codes(error) == [34]
    assert f"K8S_TOKEN_FILE: cannot use the token file {missing}: No such file or directory" in str(error)


def test_34_token_file_that_is_empty(layers: Layers) -> None:
    empty = layers.root / "token"
    empty.write_text("\n")
    error = layers.fail({**BASE_ENV, "K8S_TOKEN_FILE": str(empty)})
    assert codes(error) == [34]
    assert "it is empty" in str(error)


def test_34_token_with_whitespace_is_refused_without_showing_it(layers: Layers) -> None:
    error = layers.fail({**BASE_ENV, "K8S_TOKEN": TOKEN + " " + TOKEN})
    assert codes(error) == [34]
    assert "K8S_TOKEN: the token contains whitespace" in str(error)


def test_2_config_file_missing(layers: Layers) -> None:
    missing = str(layers.root / "nope.ini")
    error = layers.fail({**BASE_ENV, "K8S_TOKEN": TOKEN}, missing)
    assert isinstance(error, errors.UsageError)
    assert error.exit_code == 2
    assert str(error) == f"cannot read config file {missing}: No such file or directory"


def test_2_config_file_unparsable_without_quoting_its_lines(layers: Layers) -> None:
    ini = layers.ini(f"k8s_token = {TOKEN}\n[global]\n")
    error = layers.fail(BASE_ENV, ini)
    assert isinstance(error, errors.UsageError)
    assert str(error) == (
        f"cannot parse config file {ini}: line 1 comes before any [section] header "
        "(start the file with [global])"
    )
    ini = layers.ini(f"[global]\nk8s_resource = routes\nthis line {TOKEN}\n")
    error = layers.fail(BASE_ENV, ini)
    assert "cannot understand line 3" in str(error)
    ini = layers.ini("[global]\nlog_level = INFO\nlog_level = DEBUG\n")
    assert "key 'log_level' appears twice in [global]" in str(layers.fail(BASE_ENV, ini))


def test_2_config_file_not_utf8(layers: Layers) -> None:
    path = layers.root / "latin1.ini"
    path.write_bytes("[global]\nk8s_namespace = caf\xe9\n".encode("latin-1"))
    assert "not UTF-8" in str(layers.fail(BASE_ENV, str(path)))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"K8S_NAMESPACED": "maybe"}, "K8S_NAMESPACED: expected true or false, got 'maybe'"),
        (
            {"WATCHER_RESYNC_PERIOD": "soon"},
            "WATCHER_RESYNC_PERIOD: expected a number of seconds, got 'soon'",
        ),
        (
            {"WATCHER_RESYNC_PERIOD": "-1"},
            "WATCHER_RESYNC_PERIOD: expected a number of seconds >= 0, got '-1'",
        ),
        ({"WATCHER_RESYNC_PERIOD": "nan"}, "expected a number of seconds >= 0"),
        (
            {"LOG_LEVEL": "LOUD"},
            "LOG_LEVEL: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'",
        ),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT: expected text or json, got 'xml'"),
        ({"WATCHER_METRICS_PORT": "70000"}, "WATCHER_METRICS_PORT: expected a port number from 0 to 65535"),
        ({"WATCHER_METRICS_PORT": "http"}, "WATCHER_METRICS_PORT: expected a port number"),
        ({"WATCHER_LEADER_ELECTION": "sure"}, "WATCHER_LEADER_ELECTION: expected true or false, got 'sure'"),
        ({"WATCHER_LEADER_ELECTION_NAME": "My Lease"}, "is not a valid Lease name"),
        ({"WATCHER_PLUGIN": " , "}, "WATCHER_PLUGIN: no plugin named"),
        ({"WATCHER_PLUGIN": "simple,simple"}, "plugin 'simple' is listed twice"),
        ({"WATCHER_PLUGIN": "sim ple"}, "'sim ple' is not a plugin name"),
        ({"K8S_API_GROUP": "Route_OpenShift"}, "K8S_API_GROUP: 'Route_OpenShift' is not an API group"),
        ({"K8S_API_VERSION": "V1"}, "K8S_API_VERSION: 'V1' is not an API version"),
        ({"K8S_API_PATH": "/apis/x?watch=1"}, "K8S_API_PATH: '/apis/x?watch=1' is not a URL path"),
    ],
)
def test_2_bad_values_name_their_key(layers: Layers, env: dict[str, str], message: str) -> None:
    error = layers.fail({**BASE_ENV, "K8S_TOKEN": TOKEN, **env})
    assert codes(error) == [2]
    assert message in str(error)


def test_2_bad_value_in_the_ini_names_key_and_file(layers: Layers) -> None:
    ini = layers.ini("[global]\nk8s_namespaced = perhaps\n")
    error = layers.fail({**BASE_ENV, "K8S_TOKEN": TOKEN}, ini)
    assert str(error) == f"k8s_namespaced in [global] of {ini}: expected true or false, got 'perhaps'"


def test_2_ca_file_that_cannot_be_read(layers: Layers) -> None:
    missing = layers.root / "ca.crt"
    error = layers.fail({**BASE_ENV, "K8S_TOKEN": TOKEN, "K8S_CA": str(missing)})
    assert codes(error) == [2]
    assert f"K8S_CA: cannot read the CA file {missing}" in str(error)


def test_every_problem_is_reported_at_once_most_specific_first(layers: Layers) -> None:
    env = {
        "K8S_API_ENDPOINT": "ftp://x",
        "K8S_NAMESPACED": "yes",
        "LOG_LEVEL": "LOUD",
        "WATCHER_METRICS_PORT": "-1",
        "WATCHER_RESYNC_PERIOD": "x",
    }
    error = layers.fail(env)
    assert codes(error) == [31, 32, 33, 34, 2, 2, 2]
    assert error.exit_code == 31
    assert str(error).count("; ") == 6
    for text in (
        "K8S_RESOURCE",
        "no namespace",
        "ftp",
        "no credentials",
        "LOG_LEVEL",
        "METRICS_PORT",
        "RESYNC",
    ):
        assert text in str(error)


def test_a_bad_namespaced_flag_is_not_also_reported_as_a_missing_namespace(layers: Layers) -> None:
    error = layers.fail({**BASE_ENV, "K8S_NAMESPACE": "", "K8S_TOKEN": TOKEN, "K8S_NAMESPACED": "maybe"})
    assert codes(error) == [2]


# --- booleans -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("word", ["true", "True", "TRUE", " yes ", "Yes", "1", "on", "ON"])
def test_parse_bool_true(word: str) -> None:
    assert config.parse_bool(word, "k") is True


@pytest.mark.parametrize("word", ["false", "False", "FALSE", "no", "NO", " 0", "off", "Off"])
def test_parse_bool_false(word: str) -> None:
    assert config.parse_bool(word, "k") is False


@pytest.mark.parametrize("word", ["", "y", "n", "2", "tru", "enable", "none"])
def test_parse_bool_refuses_and_names_the_key(word: str) -> None:
    with pytest.raises(ValueError) as caught:
        config.parse_bool(word, "dns_enabled")
    assert str(caught.value) == f"dns_enabled: expected true or false, got {word!r}"


# --- legacy values and resource forms -----------------------------------------------------------------


def test_legacy_api_means_the_core_group(layers: Layers) -> None:
    s = layers.load({**BASE_ENV, "K8S_TOKEN": TOKEN, "K8S_API_GROUP": "api"})
    assert (s.api_group, s.legacy_oapi) == ("", False)


def test_legacy_oapi_means_discover_among_openshift_groups(layers: Layers) -> None:
    s = layers.load({**BASE_ENV, "K8S_TOKEN": TOKEN, "K8S_API_GROUP": "oapi"})
    assert (s.api_group, s.legacy_oapi) == (None, True)
    assert "legacy oapi" in config.render(s)


def test_resource_with_group_as_kubectl_writes_it(layers: Layers) -> None:
    s = layers.load({**BASE_ENV, "K8S_TOKEN": TOKEN, "K8S_RESOURCE": "routes.route.openshift.io"})
    assert (s.resource, s.api_group, s.sources["api_group"]) == ("routes", "route.openshift.io", "env")
    error = layers.fail(
        {**BASE_ENV, "K8S_TOKEN": TOKEN, "K8S_RESOURCE": "routes.route.openshift.io", "K8S_API_GROUP": "apps"}
    )
    assert codes(error) == [31]


# --- redaction --------------------------------------------------------------------------------------------


def test_render_shows_sources_and_redacts_every_secret(layers: Layers) -> None:
    ini = layers.ini(
        f"""
        [global]
        k8s_token = {TOKEN}
        log_level = DEBUG
        [plugin_ipa]
        ipa_user = admin
        ipa_password = {OTHER_TOKEN}
        dns_key_secret = {OTHER_TOKEN}
        [plugin_simple]
        message_log_level = WARNING
        [plugin_alert]
        webhook_url = https://hooks.example.test/services/{OTHER_TOKEN}
        webhook_url_file = /etc/watcher/slack-url
        """
    )
    s = layers.load(BASE_ENV, ini)
    text = config.render(s)
    for secret in (TOKEN, OTHER_TOKEN):
        assert secret not in text
        assert secret not in repr(s)
        assert secret not in str(s)
    lines = text.splitlines()
    assert "k8s_token = <redacted>  (ini)" in lines
    assert "k8s_api_endpoint = https://api.example.test:6443  (env)" in lines
    assert "log_level = DEBUG  (ini)" in lines
    assert "watcher_plugin = simple  (default)" in lines
    assert "[plugin_ipa]" in lines and "ipa_user = admin  (ini)" in lines
    assert "ipa_password = <redacted>  (ini)" in lines
    assert "webhook_url = <redacted>  (ini)" in lines  # a Slack-style URL is its own credential
    assert "webhook_url_file = /etc/watcher/slack-url  (ini)" in lines
    assert "[plugin_simple]" in lines and "message_log_level = WARNING  (ini)" in lines
    for key in config.KEYS:
        assert any(line.startswith(f"{key.ini} = ") for line in lines), key.ini


def test_render_redacts_what_plugins_declare_and_every_url_with_userinfo(layers: Layers) -> None:
    ini = layers.ini(
        f"""
        [plugin_certs]
        key_type = ec
        ipa_password = {OTHER_TOKEN}
        sentry_dsn = https://public:{OTHER_TOKEN}@sentry.example.test/1
        [plugin_mine]
        api_key = {OTHER_TOKEN}
        proxy = http://me:{OTHER_TOKEN}@proxy.example.test:3128
        endpoint = https://api.example.test/v1
        """
    )
    s = layers.load({**BASE_ENV, "K8S_TOKEN": TOKEN}, ini)
    declared = {"certs": frozenset({"ipa_password"}), "mine": None}
    lines = config.render(s, declared).splitlines()
    assert OTHER_TOKEN not in "\n".join(lines)
    assert "key_type = ec  (ini)" in lines, "declared: a key that only looks like a secret is shown"
    assert "ipa_password = <redacted>  (ini)" in lines
    assert "sentry_dsn = <redacted>  (ini)" in lines, "a URL with userinfo, whatever its key"
    assert "api_key = <redacted>  (ini)" in lines, "undeclared: guessed from the name"
    assert "proxy = <redacted>  (ini)" in lines
    assert OTHER_TOKEN in " ".join(config.plugin_secret_values(s)), "the log filter hides them too"


def test_kubeconfig_secrets_stay_out_of_render_and_repr(layers: Layers) -> None:
    key_pem = b"-----BEGIN PRIVATE KEY-----\nPRIVATEKEYMATERIAL\n-----END PRIVATE KEY-----\n"
    user = {
        "client-certificate-data": base64.b64encode(b"CERT").decode(),
        "client-key-data": base64.b64encode(key_pem).decode(),
    }
    layers.kubeconfig(kubeconfig_doc(user=user), where=layers.home / ".kube", name="config")
    s = layers.load({"K8S_RESOURCE": "routes"})
    assert s.client_key_data == key_pem
    for text in (config.render(s), repr(s)):
        assert "PRIVATEKEYMATERIAL" not in text
    assert "client_key = <redacted>  (kubeconfig)" in config.render(s).splitlines()
    assert f"# kubeconfig context: dev in {layers.home / '.kube' / 'config'}" in config.render(s)


# --- unknown keys, plugin sections, the seed's names -----------------------------------------------------


def test_unknown_keys_and_sections_are_returned_not_fatal(layers: Layers) -> None:
    ini = layers.ini(
        "[global]\nk8s_resourse = routes\nwatcher_plugins = dns\n[plugins_dns]\nx = 1\n[plugin_]\n"
    )
    s = layers.load({**BASE_ENV, "K8S_TOKEN": TOKEN}, ini)
    assert s.unknown_keys == ("k8s_resourse", "watcher_plugins")
    assert s.unknown_sections == ("plugins_dns", "plugin_")


def test_plugin_sections_are_read_only_and_looked_up_by_either_name(layers: Layers) -> None:
    ini = layers.ini("[global]\n[plugin_dns]\nDNS_Server = 127.0.0.1\nempty =\n")
    s = layers.load({**BASE_ENV, "K8S_TOKEN": TOKEN}, ini)
    assert dict(s.plugin_config("dns")) == {"dns_server": "127.0.0.1"}
    assert s.plugin_config("plugin_dns") is s.plugin_config("dns")
    assert dict(s.plugin_config("absent")) == {}
    with pytest.raises(TypeError):
        s.plugin_config("dns")["dns_server"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        s.plugin_configs["new"] = {}  # type: ignore[index]


def test_seed_attribute_names(layers: Layers, tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("ca")
    s = layers.load({**BASE_ENV, "K8S_TOKEN": TOKEN, "K8S_CA": str(ca)})
    assert s.k8s_endpoint == s.endpoint == "https://api.example.test:6443"
    assert s.k8s_namespace == "demo"
    assert s.k8s_resource == "routes"
    assert s.k8s_ca == str(ca)
    assert s.k8s_token == TOKEN


def test_seed_k8s_token_reads_a_rotating_file_at_access_time(layers: Layers) -> None:
    token_file = layers.root / "token"
    token_file.write_text("first\n")
    s = layers.load({**BASE_ENV, "K8S_TOKEN_FILE": str(token_file)})
    assert s.k8s_token == "first"
    token_file.write_text("second")
    assert s.k8s_token == "second"


def test_settings_are_frozen(layers: Layers) -> None:
    s = layers.load({**BASE_ENV, "K8S_TOKEN": TOKEN})
    with pytest.raises(AttributeError):
        s.namespace = "other"  # type: ignore[misc]


# --- the table drives the docs -------------------------------------------------------------------------


def test_every_key_is_documented_in_the_sample_config() -> None:
    sample = (Path(__file__).resolve().parent.parent / "conf" / "config.ini.sample").read_text()
    for key in config.KEYS:
        assert key.env in sample, key.env
        assert f"{key.ini} = " in sample, key.ini
    assert "[global]" in sample and "[plugin_simple]" in sample and "message_log_level = INFO" in sample


def test_the_sample_config_loads(layers: Layers) -> None:
    sample = str(Path(__file__).resolve().parent.parent / "conf" / "config.ini.sample")
    s = layers.load({**BASE_ENV, "K8S_RESOURCE": "", "K8S_TOKEN": TOKEN}, sample)
    assert s.resource == "routes"
    assert s.unknown_keys == () and s.unknown_sections == ()
    assert s.plugin_config("simple")["message_log_level"] == "INFO"


# --- property: any input gives Settings or a clean ConfigError -------------------------------------------

_KNOWN_CODES = {
    errors.EXIT_USAGE,
    errors.EXIT_RESOURCE,
    errors.EXIT_NAMESPACE,
    errors.EXIT_ENDPOINT,
    errors.EXIT_TOKEN,
}
_ENV_NAMES = [key.env for key in config.KEYS] + ["CONFIG_FILE", "KUBECONFIG", "KUBERNETES_SERVICE_HOST"]
_INI_NAMES = [key.ini for key in config.KEYS] + ["unknown_key"]
_values = st.one_of(
    st.sampled_from(
        ["", "true", "no", "0", "-1", "routes", "demo", "h:1", "https://[::1]:1", "$env:K8S_TOKEN"]
    ),
    st.text(max_size=30),
    st.text(alphabet=string.printable, max_size=30),
)


def _ini_text(draw: Any) -> str:
    lines = ["[global]"] if draw(st.integers(0, 9)) else []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            lines.append(f"[{draw(st.sampled_from(['global', 'plugin_simple', 'other', 'DEFAULT']))}]")
        elif kind == 1:
            lines.append(draw(st.text(max_size=40)).replace("\r", ""))
        else:
            lines.append(f"{draw(st.sampled_from(_INI_NAMES))} = {draw(_values)}")
    return "\n".join(lines)


@st.composite
def _inputs(draw: Any) -> tuple[dict[str, str], str]:
    env = dict(BASE_ENV) if draw(st.integers(0, 4)) else {}
    env.update(draw(st.dictionaries(st.sampled_from(_ENV_NAMES), _values, max_size=3)))
    if draw(st.integers(0, 3)):
        env["K8S_TOKEN"] = TOKEN
    return env, _ini_text(draw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_inputs())
def test_any_input_gives_settings_or_a_clean_config_error(
    tmp_path: Path, data: tuple[dict[str, str], str]
) -> None:
    env, ini_text = data
    ini = tmp_path / "fuzz.ini"
    ini.write_text(ini_text, encoding="utf-8")
    sa = tmp_path / "no-serviceaccount"
    try:
        s = config.load(env, str(ini), serviceaccount_dir=str(sa), home=str(tmp_path))
    except errors.ConfigError as e:
        event(f"ConfigError exit {e.exit_code}")
        assert e.problems, "a ConfigError always carries its problems"
        assert {code for code, _ in e.problems} <= _KNOWN_CODES
        assert e.exit_code == e.problems[0][0]
        assert "\n" not in str(e) and "\r" not in str(e)
        assert TOKEN not in str(e)
    else:
        event("Settings")
        assert s.resource and s.endpoint
        text = config.render(s)
        assert TOKEN not in text and TOKEN not in repr(s)


def test_plugin_keys_come_from_the_environment_for_plugins_in_the_chain(layers: Layers) -> None:
    ini = layers.ini(
        "[global]\nwatcher_plugin = my_hook, plugin_simple\n\n[plugin_my_hook]\na = ini\nb = ini\n"
    )
    env = {
        **BASE_ENV,
        "K8S_TOKEN": TOKEN,
        "WATCHER_PLUGIN_MY_HOOK_B": "env",
        "WATCHER_PLUGIN_MY_HOOK_MAX_TRIES": "3",
        "WATCHER_PLUGIN_SIMPLE_MESSAGE_LOG_LEVEL": "DEBUG",
        "WATCHER_PLUGIN_OTHER_X": "not in the chain",
    }
    s = layers.load(env, ini)
    assert dict(s.plugin_config("my_hook")) == {"a": "ini", "b": "env", "max_tries": "3"}
    assert dict(s.plugin_config("plugin_simple")) == {"message_log_level": "DEBUG"}
    assert "other" not in s.plugin_configs
    shown = config.render(s)
    assert "b = env  (env WATCHER_PLUGIN_MY_HOOK_B)" in shown and "a = ini  (ini)" in shown


def test_a_plugin_directory_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "plugns"
    with pytest.raises(errors.ConfigError) as raised:
        config.load(
            {
                "K8S_API_ENDPOINT": "h:1",
                "K8S_TOKEN": "x",
                "K8S_RESOURCE": "routes",
                "WATCHER_PLUGIN_PATH": str(missing),
            },
            None,
            serviceaccount_dir=str(tmp_path / "no-sa"),
            home=str(tmp_path),
        )
    assert raised.value.exit_code == errors.EXIT_USAGE
    assert str(raised.value) == f"WATCHER_PLUGIN_PATH: the plugin directory {missing} does not exist"
