"""Security: secrets never reach a log, TLS is never skipped unless asked, a bad CA is an error.

Real processes at DEBUG: ``python3 watch.py`` against the local API with 401s and token rotations, and
with the certificates plugin issuing from a local CA and from the FreeIPA stand-in; their whole stderr
(every logger, warnings, tracebacks) is searched for the tokens, the IPA password and the private keys.
(The in-process tests already check caplog after every test: ``tests/conftest.py``.)

TLS: with no CA configured the system trust store is used, so the local API's own CA is refused; a CA
that did not sign the server keeps failing with a TLS error that says so, and no request is ever sent
unverified; an unreadable, missing or garbage CA file is a configuration error (exit 2). Skipping
verification takes ``K8S_INSECURE_SKIP_TLS_VERIFY=true`` and then a WARNING says so at every start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.harness import FAST, SECRETS, TEST_PLUGINS, route, wait_until
from tests.servers.freeipa import FreeIPAStandIn, freeipa  # noqa: F401
from tests.servers.testca import TestCA
from watcher import cli, config, errors
from watcher.localapi import Fault, LocalAPI

ROOT = Path(__file__).resolve().parent.parent
NS = "demo"
HOST = "web.apps.example.test"
OPT_IN = {"openshift.io/managed.cert": "true"}


# --- real processes ---------------------------------------------------------------------------------------


class Watcher:
    """``python3 watch.py`` with stderr collected; stopped with SIGTERM."""

    def __init__(self, env: Mapping[str, str], home: Path) -> None:
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("K8S_", "KUBECONFIG", "WATCHER_", "LOG_"))
        }
        base.update({"HOME": str(home), "PYTHONUNBUFFERED": "1", "WATCHER_METRICS_PORT": "0", **env})
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "watch.py")],
            env=base,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.lines.append(raw.decode("utf-8", "replace"))

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(20)

    def wait(self, timeout: float = 60) -> int:
        """The exit code, once the process has ended by itself (killed after ``timeout``)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        return code


@pytest.fixture
def processes() -> Iterator[list[Watcher]]:
    started: list[Watcher] = []
    yield started
    for w in started:
        w.stop()


def watcher_env(api: LocalAPI, token_file: Path, **extra: str) -> dict[str, str]:
    return {
        "K8S_API_ENDPOINT": api.url,
        "K8S_TOKEN_FILE": str(token_file),
        "K8S_CA": api.ca_file,
        "K8S_RESOURCE": "routes",
        "K8S_NAMESPACE": NS,
        "WATCHER_PLUGIN_PATH": TEST_PLUGINS,
        "WATCHER_WATCH_TIMEOUT": "2",
        "LOG_LEVEL": "DEBUG",
        **extra,
    }


def write_token(path: Path, token: str) -> None:
    SECRETS.add(token)
    tmp = path.with_suffix(".new")
    tmp.write_text(token, encoding="utf-8")
    os.replace(tmp, path)


def pem_body_lines(pem: str) -> list[str]:
    """The base64 lines of a PEM block: any one of them in a log would be a leak."""
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def assert_absent(text: str, secrets: list[str]) -> None:
    leaked = [s[:12] + "..." for s in secrets if s and s in text]
    assert not leaked, f"secrets in the log: {leaked}"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_tokens_never_reach_the_log_of_a_real_process(
    local_api: LocalAPI, tmp_path: Path, processes: list[Watcher], log_format: str
) -> None:
    tokens = [local_api.token]
    token_file = tmp_path / "token"
    write_token(token_file, local_api.token)
    local_api.inject(Fault("close", after_events=1))
    env = watcher_env(local_api, token_file, WATCHER_PLUGIN="simple", LOG_FORMAT=log_format)
    w = Watcher(env, tmp_path)
    processes.append(w)
    local_api.create("routes", route("first", NS))
    wait_until(lambda: "first" in w.text, what="the first event")
    # Rotation on the server first: the watcher meets 401s (logged at DEBUG each time) until the
    # kubelet, here the test, writes the new token.
    tokens.append(local_api.rotate_token())
    SECRETS.add(tokens[-1])
    local_api.create("routes", route("second", NS))  # the open stream delivers it, then ends
    wait_until(lambda: local_api.stats.unauthorized >= 2, what="401s with the old token")
    write_token(token_file, tokens[-1])
    local_api.create("routes", route("third", NS))
    wait_until(lambda: "third" in w.text, timeout=30, what="the event after the rotation")
    # And a 401 for a token that is still current (nothing to re-read).
    local_api.inject(Fault("status", status=401))
    local_api.inject(Fault("close", after_events=1))
    local_api.create("routes", route("fourth", NS))
    local_api.create("routes", route("fifth", NS))
    wait_until(lambda: "fifth" in w.text, timeout=30, what="the event after the 401")
    assert w.stop() == 0
    text = w.text
    assert "Unauthorized" in text and "DEBUG" in text  # the paths were taken, at DEBUG
    assert_absent(text, tokens)


def test_a_literal_token_rejected_at_start_is_not_shown(local_api: LocalAPI, tmp_path: Path) -> None:
    wrong = "wrong-token-" + "x" * 30
    SECRETS.add(wrong)
    env = watcher_env(local_api, tmp_path / "unused", K8S_TOKEN=wrong, WATCHER_PLUGIN="simple")
    del env["K8S_TOKEN_FILE"]
    w = Watcher(env, tmp_path)
    code = w.wait()
    assert code == errors.EXIT_TOKEN
    assert "Traceback" not in w.text
    assert_absent(w.text, [wrong, local_api.token])


def local_ca_section(tmp_path: Path) -> tuple[dict[str, str], TestCA]:
    ca = TestCA.create("Security test CA")
    cert, key = ca.write(tmp_path)
    return {"issuer": "local", "local_ca_cert": str(cert), "local_ca_key": str(key)}, ca


def write_ini(path: Path, sections: Mapping[str, Mapping[str, str]]) -> Path:
    text = "".join(
        f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
        for name, values in sections.items()
    )
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def issue_through_a_real_process(
    api: LocalAPI, tmp_path: Path, processes: list[Watcher], section: Mapping[str, str]
) -> tuple[Watcher, dict]:
    token_file = tmp_path / "token"
    write_token(token_file, api.token)
    ini = write_ini(tmp_path / "config.ini", {"plugin_certs": section})
    w = Watcher(watcher_env(api, token_file, WATCHER_PLUGIN="certs", CONFIG_FILE=str(ini)), tmp_path)
    processes.append(w)
    api.create("routes", route("web", NS, HOST, annotations=OPT_IN))
    issued = wait_until(
        lambda: (r := api.get("routes", NS, "web"))["spec"].get("tls", {}).get("key") and r,
        timeout=60,
        what="a certificate on the route",
    )
    # A resync-free run: renewals are not due, so one more event proves the plugin saw its own patch.
    api.patch("routes", NS, "web", {"metadata": {"labels": {"touched": "yes"}}})
    wait_until(lambda: "touched" in w.text or w.text.count("web") >= 3, timeout=30, what="the next event")
    assert w.stop() == 0
    return w, issued


def test_private_keys_never_reach_the_log_of_a_real_process(
    local_api: LocalAPI, tmp_path: Path, processes: list[Watcher]
) -> None:
    section, _ = local_ca_section(tmp_path)
    w, issued = issue_through_a_real_process(local_api, tmp_path, processes, section)
    assert "Issued a certificate" in w.text
    ca_key = (tmp_path / "ca-key.pem").read_text()
    assert_absent(w.text, pem_body_lines(issued["spec"]["tls"]["key"]) + pem_body_lines(ca_key))


def test_the_ipa_password_never_reaches_the_log_of_a_real_process(
    local_api: LocalAPI,
    freeipa: FreeIPAStandIn,  # noqa: F811
    tmp_path: Path,
    processes: list[Watcher],
) -> None:
    password = freeipa.users["admin"]
    SECRETS.add(password)
    section = {
        "issuer": "ipa",
        "ipa_url": freeipa.url,
        "ipa_user": "admin",
        "ipa_password": password,
        "ipa_realm": freeipa.realm,
        "ipa_ca_cert": str(freeipa.ca_file),
    }
    w, issued = issue_through_a_real_process(local_api, tmp_path, processes, section)
    assert freeipa.methods()[:2] == ["host_add", "cert_request"]
    assert_absent(w.text, [password, *pem_body_lines(issued["spec"]["tls"]["key"])])


def test_a_wrong_ipa_password_is_refused_without_being_shown(
    local_api: LocalAPI,
    freeipa: FreeIPAStandIn,  # noqa: F811
    tmp_path: Path,
    processes: list[Watcher],
) -> None:
    wrong = "Wrong-" + "p" * 20
    SECRETS.update({wrong, freeipa.users["admin"]})
    token_file = tmp_path / "token"
    write_token(token_file, local_api.token)
    section = {
        "issuer": "ipa",
        "ipa_url": freeipa.url,
        "ipa_user": "admin",
        "ipa_password": wrong,
        "ipa_realm": freeipa.realm,
        "ipa_ca_cert": str(freeipa.ca_file),
        "issue_attempts": "1",
    }
    ini = write_ini(tmp_path / "config.ini", {"plugin_certs": section})
    w = Watcher(watcher_env(local_api, token_file, WATCHER_PLUGIN="certs", CONFIG_FILE=str(ini)), tmp_path)
    processes.append(w)
    local_api.create("routes", route("web", NS, HOST, annotations=OPT_IN))
    wait_until(lambda: freeipa.logins, timeout=60, what="a login attempt")
    wait_until(lambda: "web" in w.text and "admin" in w.text, timeout=30, what="the refusal in the log")
    w.stop()
    assert_absent(w.text, [wrong, freeipa.users["admin"]])


# --- TLS verification -------------------------------------------------------------------------------------


@pytest.fixture
def no_ca_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests trusts REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE when no CA is configured: not here."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)


def settings_for(api: LocalAPI, tmp_path: Path, **env: str) -> config.Settings:
    base = {
        "K8S_API_ENDPOINT": api.url,
        "K8S_TOKEN": api.token,
        "K8S_RESOURCE": "routes",
        "K8S_NAMESPACE": NS,
        "WATCHER_METRICS_PORT": "0",
        **env,
    }
    return config.load(base, None, serviceaccount_dir=str(tmp_path / "no-sa"), home=str(tmp_path))


def start_for_a_while(settings: config.Settings, seconds: float = 2.0) -> None:
    """``App.start`` waits out an unreachable API server; let it try for ``seconds``, then stop it."""
    app = cli.App(settings, tuning=FAST)
    thread = threading.Thread(target=app.start, daemon=True)
    thread.start()
    time.sleep(seconds)
    app.stop()
    thread.join(10)
    assert not thread.is_alive()
    app.close()


def tls_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if "the server's certificate is not signed" in r.getMessage()
    ]


def test_no_ca_configured_uses_system_trust_and_refuses_the_local_ca(
    local_api: LocalAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture, no_ca_env: None
) -> None:
    start_for_a_while(settings_for(local_api, tmp_path))
    assert local_api.requests_seen() == [], "a request reached the server without verification"
    failures = tls_failures(caplog)
    assert failures and all("not signed by a CA this machine trusts: set K8S_CA" in m for m in failures)


def test_a_ca_that_did_not_sign_the_server_keeps_failing_and_never_falls_back(
    local_api: LocalAPI, tmp_path: Path, caplog: pytest.LogCaptureFixture, no_ca_env: None
) -> None:
    other, _ = TestCA.create("Some other CA").write(tmp_path)
    start_for_a_while(settings_for(local_api, tmp_path, K8S_CA=str(other)), seconds=3.0)
    assert local_api.requests_seen() == [], "a request reached the server without verification"
    refused = [
        r for r in caplog.records if "TLS handshake" in r.getMessage() and "unknown ca" in r.getMessage()
    ]
    assert len(refused) >= 3, "the watcher stopped trying"
    failures = tls_failures(caplog)
    # Said again at attempts 1, 2, 4, ... only, not once per try.
    attempts = [int(m.rsplit("(attempt ", 1)[1].rstrip(").")) for m in failures]
    assert attempts == [2**n for n in range(len(attempts))], attempts
    assert len(failures) < len(refused)
    assert f"not signed by the CA in {other}" in failures[0] and local_api.url in failures[0]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "No such file"),
        (b"this is not a certificate\n", "holds no PEM certificate"),
        (b"", "holds no PEM certificate"),
    ],
    ids=["missing", "garbage", "empty"],
)
def test_a_bad_ca_file_is_a_configuration_error(
    local_api: LocalAPI, tmp_path: Path, content: bytes | None, reason: str
) -> None:
    ca = tmp_path / "ca.crt"
    if content is not None:
        ca.write_bytes(content)
    with pytest.raises(errors.ConfigError) as caught:
        cli.App(
            settings_for(local_api, tmp_path, K8S_CA=str(ca))
        )  # loading checks the file, the client its content
    assert caught.value.exit_code == errors.EXIT_USAGE
    assert "K8S_CA" in str(caught.value) and reason in str(caught.value), str(caught.value)
    assert local_api.requests_seen() == []


def test_a_bad_ca_file_stops_watch_py_with_one_line(local_api: LocalAPI, tmp_path: Path) -> None:
    garbage = tmp_path / "ca.crt"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    token_file = tmp_path / "token"
    write_token(token_file, local_api.token)
    w = Watcher(
        {**watcher_env(local_api, token_file, WATCHER_PLUGIN="simple"), "K8S_CA": str(garbage)}, tmp_path
    )
    code = w.wait()
    assert code == errors.EXIT_USAGE, w.text
    errors_ = [line for line in w.lines if line.startswith("event-watcher: error:")]
    assert len(errors_) == 1 and "K8S_CA" in errors_[0] and "Traceback" not in w.text
    assert local_api.requests_seen() == []


def test_skipping_verification_is_explicit_and_warned_at_every_start(
    local_api: LocalAPI, tmp_path: Path, processes: list[Watcher]
) -> None:
    token_file = tmp_path / "token"
    write_token(token_file, local_api.token)
    env = watcher_env(local_api, token_file, WATCHER_PLUGIN="simple", K8S_INSECURE_SKIP_TLS_VERIFY="true")
    del env["K8S_CA"]
    for start in range(2):
        w = Watcher(env, tmp_path)
        processes.append(w)
        local_api.create("routes", route(f"insecure-{start}", NS))
        wait_until(
            lambda w=w, start=start: f"insecure-{start}" in w.text, what="an event over unverified TLS"
        )
        assert w.stop() == 0
        warnings = [line for line in w.lines if "WARNING" in line and "TLS verification" in line]
        assert len(warnings) == 1, w.text[-3000:]
        assert "DISABLED" in warnings[0] and local_api.url in warnings[0]
