"""watcher.kubeconfig: the current context as kubectl reads it, and how config.load uses it."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml

from watcher import config, errors, kubeconfig

TOKEN = "sha256~KubeconfigTokenNeverShown"


def write(path: Path, document: Any) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    return str(path)


def doc(
    current: Optional[str] = "dev",
    clusters: Optional[dict[str, dict[str, Any]]] = None,
    users: Optional[dict[str, dict[str, Any]]] = None,
    contexts: Optional[dict[str, dict[str, Any]]] = None,
) -> dict[str, Any]:
    document: dict[str, Any] = {"apiVersion": "v1", "kind": "Config"}
    if current is not None:
        document["current-context"] = current
    document["clusters"] = [{"name": n, "cluster": c} for n, c in (clusters or {}).items()]
    document["users"] = [{"name": n, "user": u} for n, u in (users or {}).items()]
    document["contexts"] = [{"name": n, "context": c} for n, c in (contexts or {}).items()]
    return document


def oc_login_doc(user: Optional[dict[str, Any]] = None, **cluster: Any) -> dict[str, Any]:
    """What `oc login` writes: one cluster, one user with a token, one context with a namespace."""
    return doc(
        "demo/api-crc-testing:6443/developer",
        clusters={"api-crc-testing:6443": {"server": "https://api.crc.testing:6443", **cluster}},
        users={"developer/api-crc-testing:6443": user if user is not None else {"token": TOKEN}},
        contexts={
            "demo/api-crc-testing:6443/developer": {
                "cluster": "api-crc-testing:6443",
                "user": "developer/api-crc-testing:6443",
                "namespace": "demo",
            }
        },
    )


def load_settings(tmp_path: Path, env: dict[str, str]) -> config.Settings:
    return config.load(
        {"K8S_RESOURCE": "routes", **env},
        None,
        serviceaccount_dir=str(tmp_path / "no-sa"),
        home=str(tmp_path),
    )


def load_error(tmp_path: Path, env: dict[str, str]) -> errors.ConfigError:
    with pytest.raises(errors.ConfigError) as caught:
        load_settings(tmp_path, env)
    assert TOKEN not in str(caught.value)
    assert "\n" not in str(caught.value)
    return caught.value


# --- what oc login writes ----------------------------------------------------------------------------


def test_oc_login_kubeconfig_in_the_home_directory(tmp_path: Path) -> None:
    write(tmp_path / ".kube" / "config", oc_login_doc())
    s = load_settings(tmp_path, {})
    assert s.endpoint == "https://api.crc.testing:6443"
    assert s.token == TOKEN
    assert s.namespace == "demo"
    assert (s.ca_file, s.ca_data, s.insecure_skip_tls_verify) == (None, None, False)
    assert {s.sources[n] for n in ("endpoint", "token", "namespace")} == {"kubeconfig"}
    assert s.kubeconfig_context == f"demo/api-crc-testing:6443/developer in {tmp_path / '.kube' / 'config'}"


def test_token_file_and_ca_file_relative_to_the_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "conf" / "certs").mkdir(parents=True)
    (tmp_path / "conf" / "certs" / "ca.crt").write_text("ca")
    (tmp_path / "conf" / "token").write_text("t0ken\n")
    path = write(
        tmp_path / "conf" / "kubeconfig",
        oc_login_doc(user={"tokenFile": "token"}, **{"certificate-authority": "certs/ca.crt"}),
    )
    s = load_settings(tmp_path, {"KUBECONFIG": path})
    assert s.token is None
    assert s.token_file == str(tmp_path / "conf" / "token")
    assert s.ca_file == str(tmp_path / "conf" / "certs" / "ca.crt")
    assert s.k8s_token == "t0ken"


def test_inline_ca_and_client_certificate_data(tmp_path: Path) -> None:
    ca, cert, key = b"CA PEM\n", b"CERT PEM\n", b"KEY PEM\n"
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    user = {"client-certificate-data": b64(cert), "client-key-data": b64(key)}
    path = write(tmp_path / "kc", oc_login_doc(user=user, **{"certificate-authority-data": b64(ca)}))
    s = load_settings(tmp_path, {"KUBECONFIG": path})
    assert (s.ca_data, s.client_cert_data, s.client_key_data) == (ca, cert, key)
    assert (s.ca_file, s.client_cert_file, s.client_key_file, s.token) == (None, None, None, None)


def test_client_certificate_files_relative_to_the_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "admin.crt").write_text("cert")
    (tmp_path / "pki" / "admin.key").write_text("key")
    user = {"client-certificate": "pki/admin.crt", "client-key": "pki/admin.key"}
    path = write(tmp_path / "admin.kubeconfig", oc_login_doc(user=user))
    s = load_settings(tmp_path, {"KUBECONFIG": path})
    assert s.client_cert_file == str(tmp_path / "pki" / "admin.crt")
    assert s.client_key_file == str(tmp_path / "pki" / "admin.key")


def test_inline_data_wins_over_files_and_token_over_token_file(tmp_path: Path) -> None:
    user = {"token": TOKEN, "tokenFile": "missing-token"}
    cluster = {
        "certificate-authority": "missing.crt",
        "certificate-authority-data": base64.b64encode(b"CA").decode(),
    }
    path = write(tmp_path / "kc", oc_login_doc(user=user, **cluster))
    s = load_settings(tmp_path, {"KUBECONFIG": path})
    assert (s.token, s.token_file, s.ca_data, s.ca_file) == (TOKEN, None, b"CA", None)


def test_insecure_skip_tls_verify_from_the_cluster(tmp_path: Path) -> None:
    path = write(tmp_path / "kc", oc_login_doc(**{"insecure-skip-tls-verify": "true"}))
    assert load_settings(tmp_path, {"KUBECONFIG": path}).insecure_skip_tls_verify is True


# --- KUBECONFIG with several files ------------------------------------------------------------------


def test_kubeconfig_list_merges_as_kubectl_first_wins(tmp_path: Path) -> None:
    (tmp_path / "b" / "ca.crt").parent.mkdir(parents=True)
    (tmp_path / "b" / "ca.crt").write_text("ca")
    first = write(
        tmp_path / "a" / "config",
        doc(
            "prod",
            clusters={"shared": {"server": "https://first.example.test:6443"}},
            contexts={"prod": {"cluster": "prod-cluster", "user": "prod-user", "namespace": "prod-ns"}},
        ),
    )
    second = write(
        tmp_path / "b" / "config",
        doc(
            "other",  # ignored: the first file already set current-context
            clusters={
                "shared": {"server": "https://second.example.test:6443"},
                "prod-cluster": {
                    "server": "https://prod.example.test:6443",
                    "certificate-authority": "ca.crt",
                },
            },
            users={"prod-user": {"token": TOKEN}},
            contexts={"prod": {"cluster": "shared", "user": "nobody"}, "other": {"cluster": "shared"}},
        ),
    )
    missing = str(tmp_path / "does-not-exist")
    s = load_settings(tmp_path, {"KUBECONFIG": os.pathsep.join([missing, first, "", second])})
    # current-context and the context come from the first file; the cluster and user from the second,
    # with the CA path resolved against the second file's directory.
    assert s.endpoint == "https://prod.example.test:6443"
    assert s.namespace == "prod-ns"
    assert s.token == TOKEN
    assert s.ca_file == str(tmp_path / "b" / "ca.crt")
    assert s.kubeconfig_context == f"prod in {first}"


def test_paths_follow_kubectl(tmp_path: Path) -> None:
    assert kubeconfig.paths({}, "/home/u") == [os.path.join("/home/u", ".kube", "config")]
    assert kubeconfig.paths({}, None) == []
    listed = os.pathsep.join(["/a", "", " /b ", "/a"])
    assert kubeconfig.paths({"KUBECONFIG": listed}, "/home/u") == ["/a", "/b"]
    assert kubeconfig.paths({"KUBECONFIG": ""}, "/home/u") == [os.path.join("/home/u", ".kube", "config")]


def test_home_defaults_to_the_environment(tmp_path: Path) -> None:
    write(tmp_path / "h" / ".kube" / "config", oc_login_doc())
    s = config.load(
        {"K8S_RESOURCE": "routes", "HOME": str(tmp_path / "h")}, None, serviceaccount_dir=str(tmp_path / "no")
    )
    assert s.token == TOKEN


# --- no context, broken files ----------------------------------------------------------------------


def test_no_kubeconfig_and_no_current_context_mean_no_layer(tmp_path: Path) -> None:
    assert kubeconfig.load([str(tmp_path / "absent")]) is None
    assert kubeconfig.load([write(tmp_path / "empty", "")]) is None
    path = write(tmp_path / "kc", {**oc_login_doc(), "current-context": ""})
    assert kubeconfig.load([path]) is None
    error = load_error(tmp_path, {"KUBECONFIG": path})
    assert [code for code, _ in error.problems] == [33, 34]


def test_current_context_that_names_no_context(tmp_path: Path) -> None:
    path = write(tmp_path / "kc", {**oc_login_doc(), "current-context": "gone"})
    error = load_error(tmp_path, {"KUBECONFIG": path, "K8S_TOKEN": "x"})
    assert isinstance(error, errors.UsageError)
    assert error.exit_code == 2
    assert str(error).startswith(f"kubeconfig {path}: current-context 'gone' names no context")
    assert "demo/api-crc-testing:6443/developer" in str(error)


def test_context_that_names_an_undefined_cluster_or_user(tmp_path: Path) -> None:
    document = doc("dev", contexts={"dev": {"cluster": "nowhere", "user": "nobody"}})
    path = write(tmp_path / "kc", document)
    error = load_error(tmp_path, {"KUBECONFIG": path})
    assert error.exit_code == 2
    assert "names cluster 'nowhere', which is not defined" in str(error)
    assert "names user 'nobody', which is not defined" in str(error)


def test_bad_yaml_names_the_file_and_line_but_never_its_content(tmp_path: Path) -> None:
    path = write(tmp_path / "kc", f"users:\n- name: u\n  user:\n    token: {TOKEN}\n\t bad: [\n")
    error = load_error(tmp_path, {"KUBECONFIG": path})
    assert isinstance(error, errors.UsageError)
    assert str(error).startswith(f"cannot parse kubeconfig {path}: ")
    assert "line 5" in str(error)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- just\n- a list\n", "is not a YAML mapping"),
        ({"clusters": {"not": "a list"}}, "clusters must be a list"),
        ({"users": [{"user": {}}]}, "users[0] has no name"),
        ({"contexts": [{"name": "x", "context": "text"}]}, "context 'x' is not a mapping"),
    ],
)
def test_malformed_kubeconfig(tmp_path: Path, content: Any, message: str) -> None:
    path = write(tmp_path / "kc", content)
    error = load_error(tmp_path, {"KUBECONFIG": path})
    assert error.exit_code == 2
    assert path in str(error) and message in str(error)


def test_wrong_types_and_bad_base64_name_the_field(tmp_path: Path) -> None:
    user = {"token": 12345, "client-key-data": "!!not base64!!"}
    path = write(tmp_path / "kc", oc_login_doc(user=user, **{"insecure-skip-tls-verify": "maybe"}))
    error = load_error(tmp_path, {"KUBECONFIG": path})
    text = str(error)
    assert "token of user 'developer/api-crc-testing:6443' must be a string" in text
    assert "client-key-data of user 'developer/api-crc-testing:6443' must be base64" in text
    assert "insecure-skip-tls-verify of cluster 'api-crc-testing:6443' must be true or false" in text
    assert "!!not base64!!" not in text


def test_unreadable_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    error = load_error(tmp_path, {"KUBECONFIG": str(tmp_path / "dir")})
    assert str(error) == f"cannot read kubeconfig {tmp_path / 'dir'}: it is a directory"


# --- credentials we cannot use -----------------------------------------------------------------------


def test_exec_plugin_user_explains_how_to_hand_over_a_token(tmp_path: Path) -> None:
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "/usr/local/bin/kubelogin"}}
    path = write(tmp_path / "kc", oc_login_doc(user=user))
    error = load_error(tmp_path, {"KUBECONFIG": path})
    assert [code for code, _ in error.problems] == [34]
    assert "exec credential plugin (kubelogin)" in str(error)
    assert "oc whoami -t" in str(error) and "K8S_TOKEN" in str(error)
    # Only an error when nothing else gives a token.
    s = load_settings(tmp_path, {"KUBECONFIG": path, "K8S_TOKEN": TOKEN})
    assert s.token == TOKEN and s.endpoint == "https://api.crc.testing:6443"


def test_auth_provider_user(tmp_path: Path) -> None:
    user = {"auth-provider": {"name": "oidc", "config": {"id-token": TOKEN}}}
    path = write(tmp_path / "kc", oc_login_doc(user=user))
    error = load_error(tmp_path, {"KUBECONFIG": path})
    assert "the 'oidc' auth-provider" in str(error) and "oc whoami -t" in str(error)


def test_client_certificate_without_key(tmp_path: Path) -> None:
    user = {"client-certificate-data": base64.b64encode(b"CERT").decode()}
    path = write(tmp_path / "kc", oc_login_doc(user=user))
    error = load_error(tmp_path, {"KUBECONFIG": path})
    assert [code for code, _ in error.problems] == [34]
    assert "no client-key" in str(error)


def test_client_certificate_file_missing(tmp_path: Path) -> None:
    user = {"client-certificate": "gone.crt", "client-key": "gone.key"}
    path = write(tmp_path / "kc", oc_login_doc(user=user))
    error = load_error(tmp_path, {"KUBECONFIG": path})
    assert [code for code, _ in error.problems] == [34, 34]
    assert str(tmp_path / "gone.crt") in str(error)


def test_kube_context_repr_hides_secrets(tmp_path: Path) -> None:
    user = {"token": TOKEN, "client-key-data": base64.b64encode(b"PRIVATE-KEY-BYTES").decode()}
    context = kubeconfig.load([write(tmp_path / "kc", oc_login_doc(user=user))])
    assert context is not None
    assert TOKEN not in repr(context) and "PRIVATE-KEY-BYTES" not in repr(context)


def test_a_missing_kubeconfig_file_or_empty_current_context_is_named(tmp_path: Path) -> None:
    gone = str(tmp_path / "gone" / "config")
    error = load_error(tmp_path, {"KUBECONFIG": gone, "K8S_TOKEN": "x"})
    assert error.exit_code == errors.EXIT_ENDPOINT
    assert str(error).startswith(f"no API endpoint: $KUBECONFIG names {gone}, which does not exist. ")
    path = write(tmp_path / "kc", {**oc_login_doc(), "current-context": ""})
    error = load_error(tmp_path, {"KUBECONFIG": path, "K8S_TOKEN": "x"})
    assert str(error).startswith(f"no API endpoint: the kubeconfig {path} has no current-context ")
    # Nothing pointed at a kubeconfig: the generic advice alone.
    assert str(load_error(tmp_path, {"K8S_TOKEN": "x"})).startswith("no API endpoint: set K8S_API_ENDPOINT")


def test_a_rejected_credential_is_named_as_what_was_used(tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "admin.crt").write_text("cert")
    (tmp_path / "pki" / "admin.key").write_text("key")
    user = {"client-certificate": "pki/admin.crt", "client-key": "pki/admin.key"}
    path = write(tmp_path / "admin.kubeconfig", oc_login_doc(user=user))
    said = load_settings(tmp_path, {"KUBECONFIG": path}).credentials()
    assert "K8S_TOKEN" not in said
    assert said.startswith(f"the client certificate {tmp_path / 'pki' / 'admin.crt'} of kubeconfig context ")
    assert path in said
    token_user = load_settings(tmp_path, {"KUBECONFIG": write(tmp_path / "kc", oc_login_doc())})
    assert token_user.credentials().startswith("the token of kubeconfig context demo/api-crc-testing")
    assert load_settings(tmp_path, {"K8S_API_ENDPOINT": "h:1", "K8S_TOKEN": "x"}).credentials() == (
        "the token from K8S_TOKEN"
    )
