"""The command line as users run it: ``python3 watch.py`` in a subprocess, exit codes, signals, demo."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

import watcher
from tests.harness import SECRETS, TEST_PLUGINS, route, wait_until
from watcher import errors
from watcher.localapi import LocalAPI

ROOT = Path(__file__).resolve().parent.parent


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The machine's environment without any cluster settings, and a HOME without a kubeconfig."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("K8S_", "KUBECONFIG", "WATCHER_", "LOG_"))
    }
    env.update(HOME=str(tmp_path), PYTHONUNBUFFERED="1", WATCHER_METRICS_PORT="0")
    env.update(extra)
    return env


def run(args: list[str], env: Mapping[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "watch.py"), *args],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    errors_ = [line for line in result.stderr.splitlines() if line.startswith("event-watcher: error:")]
    assert len(errors_) == 1, result.stderr
    for needle in needles:
        assert needle in errors_[0]


def test_version_and_help(tmp_path: Path) -> None:
    result = run(["--version"], clean_env(tmp_path))
    assert result.returncode == 0 and result.stdout.strip() == f"event-watcher {watcher.__version__}"
    help_text = run(["--help"], clean_env(tmp_path)).stdout
    for option in ("--config", "--check-config", "--demo", "--dry-run", "--log-level", "--version"):
        assert option in help_text
    assert "31 resource" in help_text and "34 token" in help_text


def test_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    result = run(["--frobnicate"], clean_env(tmp_path))
    assert result.returncode == errors.EXIT_USAGE and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("env", "code", "needle"),
    [
        (
            {"K8S_API_ENDPOINT": "127.0.0.1:1", "K8S_TOKEN": "x" * 20, "K8S_NAMESPACE": "n"},
            errors.EXIT_RESOURCE,
            "K8S_RESOURCE",
        ),
        (
            {"K8S_TOKEN": "x" * 20, "K8S_NAMESPACE": "n", "K8S_RESOURCE": "routes"},
            errors.EXIT_ENDPOINT,
            "K8S_API_ENDPOINT",
        ),
        (
            {"K8S_API_ENDPOINT": "ftp://x", "K8S_TOKEN": "x" * 20, "K8S_RESOURCE": "routes"},
            errors.EXIT_ENDPOINT,
            "ftp://x",
        ),
        (
            {"K8S_API_ENDPOINT": "127.0.0.1:1", "K8S_NAMESPACE": "n", "K8S_RESOURCE": "routes"},
            errors.EXIT_TOKEN,
            "token",
        ),
        (
            {
                "K8S_API_ENDPOINT": "127.0.0.1:1",
                "K8S_TOKEN": "x" * 20,
                "K8S_RESOURCE": "routes",
                "K8S_NAMESPACE": "n",
                "K8S_INSECURE_SKIP_TLS_VERIFY": "perhaps",
            },
            errors.EXIT_USAGE,
            "K8S_INSECURE_SKIP_TLS_VERIFY",
        ),
    ],
)
def test_bad_configuration_exits_with_its_code(
    tmp_path: Path, env: dict[str, str], code: int, needle: str
) -> None:
    assert_one_line_error(run([], clean_env(tmp_path, **env)), code, needle)


def test_a_typo_in_a_key_is_named_before_the_missing_key_it_causes(tmp_path: Path) -> None:
    ini = tmp_path / "config.ini"
    ini.write_text("[global]\nk8s_resourse = routes\nk8s_api_endpoint = https://127.0.0.1:1\nk8s_token = x\n")
    result = run(["--config", str(ini), "--check-config"], clean_env(tmp_path))
    assert result.returncode == errors.EXIT_RESOURCE, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.index("unknown key k8s_resourse") < line.index("no resource to watch")
    assert "did you mean k8s_resource?" in line


def test_unreadable_config_file_exits_2(tmp_path: Path) -> None:
    assert_one_line_error(
        run(["--config", str(tmp_path / "missing.ini")], clean_env(tmp_path)),
        errors.EXIT_USAGE,
        "missing.ini",
    )


def test_check_config_shows_sources_and_hides_the_token(tmp_path: Path) -> None:
    ini = tmp_path / "config.ini"
    ini.write_text("[global]\nk8s_resource = routes\nk8s_namespace = from-ini\n")
    token = "sha256~VerySecretTokenValue0123456789"
    SECRETS.add(token)
    result = run(
        ["--config", str(ini), "--check-config"],
        clean_env(tmp_path, K8S_API_ENDPOINT="api.example.test:6443", K8S_TOKEN=token),
    )
    assert result.returncode == 0, result.stderr
    assert token not in result.stdout + result.stderr
    assert "from-ini" in result.stdout and "(ini)" in result.stdout and "(env)" in result.stdout
    assert "https://api.example.test:6443" in result.stdout


def test_check_config_redacts_what_the_plugins_declare_secret_and_urls_with_userinfo(tmp_path: Path) -> None:
    password = "IpaPasswordValue0123456789"
    SECRETS.add(password)
    ini = tmp_path / "config.ini"
    ini.write_text(
        "[global]\nk8s_resource = routes\nk8s_namespace = ns\nwatcher_plugin = simple, certs\n"
        f"[plugin_certs]\nkey_type = ec\nipa_password = {password}\n"
        f"sentry_dsn = https://public:{password}@sentry.example.test/1\n"
    )
    result = run(
        ["--config", str(ini), "--check-config"],
        clean_env(tmp_path, K8S_API_ENDPOINT="api.example.test:6443", K8S_TOKEN="t" * 20),
    )
    assert result.returncode == 0, result.stderr
    assert password not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "key_type = ec  (ini)" in lines  # certs declares its secrets: no guessing from the name
    assert "ipa_password = <redacted>  (ini)" in lines and "sentry_dsn = <redacted>  (ini)" in lines


def watcher_env(api: LocalAPI, tmp_path: Path, **extra: str) -> dict[str, str]:
    token_file = tmp_path / "token"
    token_file.write_text(api.token)
    SECRETS.add(api.token)
    settings = {
        "K8S_API_ENDPOINT": api.host_port,
        "K8S_TOKEN_FILE": str(token_file),
        "K8S_CA": api.ca_file,
        "K8S_RESOURCE": "routes",
        "WATCHER_PLUGIN_PATH": TEST_PLUGINS,
    }
    return clean_env(tmp_path, **{**settings, **extra})


@pytest.fixture
def proc_cleanup() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_missing_namespace_is_found_by_discovery(local_api: LocalAPI, tmp_path: Path) -> None:
    assert_one_line_error(run([], watcher_env(local_api, tmp_path)), errors.EXIT_NAMESPACE, "namespaced")


def test_unknown_resource_exits_31(local_api: LocalAPI, tmp_path: Path) -> None:
    result = run([], watcher_env(local_api, tmp_path, K8S_NAMESPACE="default", K8S_RESOURCE="widgets"))
    assert_one_line_error(result, errors.EXIT_RESOURCE, "'widgets'")


def test_missing_plugin_exits_35(local_api: LocalAPI, tmp_path: Path) -> None:
    result = run([], watcher_env(local_api, tmp_path, K8S_NAMESPACE="default", WATCHER_PLUGIN="nosuch"))
    assert_one_line_error(result, errors.EXIT_PLUGIN, "'nosuch' not found")


def test_sigterm_finishes_closes_plugins_and_exits_0(
    local_api: LocalAPI, tmp_path: Path, proc_cleanup: list[subprocess.Popen[str]]
) -> None:
    out = tmp_path / "events.txt"
    ini = tmp_path / "config.ini"
    ini.write_text(f"[global]\nwatcher_plugin = marker,simple\n\n[plugin_marker]\nfile = {out}\n")
    local_api.create("routes", route("before"))
    env = watcher_env(local_api, tmp_path, K8S_NAMESPACE="default", LOG_LEVEL="DEBUG")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "watch.py"), "--config", str(ini)],
        env=env,
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    proc_cleanup.append(proc)
    wait_until(lambda: out.exists() and "before" in out.read_text(), timeout=30, what="the first event")
    local_api.create("routes", route("after"))
    wait_until(lambda: "after" in out.read_text(), what="a watch event")
    proc.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert time.monotonic() - stopped < 15  # generous: "within a couple of seconds" on an idle machine
    assert out.read_text().splitlines()[-1] == "closed"
    assert "Kind: Route; Name: after; Event Type: ADDED" in stderr
    assert local_api.token not in stderr
    assert "Traceback" not in stderr


def test_demo_shows_plugin_output(tmp_path: Path, proc_cleanup: list[subprocess.Popen[str]]) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "watch.py"), "--demo"],
        env=clean_env(tmp_path),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    proc_cleanup.append(proc)
    lines: list[str] = []
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if (
            "Event Type: MODIFIED" in line
            or "Event Type: DELETED" in line
            or (line.count("Event Type: ADDED") and len([x for x in lines if "Event Type" in x]) > 3)
        ):
            break
    assert any("Kind: Route; Name: app1; Event Type: ADDED" in x for x in lines), "".join(lines)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=20)
    assert proc.returncode == 0


@pytest.mark.parametrize("args", [["--version"], ["--demo"], []])
def test_a_python_without_the_dependencies_gets_one_line_saying_what_to_install(
    tmp_path: Path, args: list[str]
) -> None:
    # -S: no site-packages, as with a fresh clone run by a system Python that has none of them.
    result = subprocess.run(
        [sys.executable, "-S", str(ROOT / "watch.py"), *args],
        env=clean_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_one_line_error(result, errors.EXIT_USAGE, "is not installed", "pip install")
    assert result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize("flag", [True, False])
def test_dry_run_reaches_plugins_as_watcher_dry_run(
    local_api: LocalAPI, tmp_path: Path, proc_cleanup: list[subprocess.Popen[str]], flag: bool
) -> None:
    out = tmp_path / "probe.txt"
    ini = tmp_path / "config.ini"
    ini.write_text(f"[global]\nwatcher_plugin = dryprobe\n\n[plugin_dryprobe]\nfile = {out}\n")
    local_api.create("routes", route("probe"))
    env = watcher_env(local_api, tmp_path, K8S_NAMESPACE="default", WATCHER_PLUGIN_PATH=TEST_PLUGINS)
    args = [sys.executable, str(ROOT / "watch.py"), "--config", str(ini), *(["--dry-run"] if flag else [])]
    proc = subprocess.Popen(
        args, env=env, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    proc_cleanup.append(proc)
    wait_until(lambda: out.exists() and "probe" in out.read_text(), timeout=30, what="the first event")
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert out.read_text().splitlines()[0] == f"dry_run={flag}"
