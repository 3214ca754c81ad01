"""The command line as users run it: ``python3 watch.py`` in a subprocess, exit codes, signals, demo."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
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


def test_check_config_on_an_incomplete_configuration_shows_what_resolved_then_the_problems(
    tmp_path: Path,
) -> None:
    ini = tmp_path / "config.ini"
    ini.write_text(
        "[global]\nk8s_resourse = routes\nk8s_namespace = from-ini\nwatch_timeout = soon\n"
        "[plugin_simple]\nmessage_log_levl = DEBUG\n"
    )
    token = "sha256~IncompleteButSecret0123456789"
    SECRETS.add(token)
    result = run(["--config", str(ini), "--check-config"], clean_env(tmp_path, K8S_TOKEN=token))
    assert result.returncode == errors.EXIT_RESOURCE, result.stderr
    assert token not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for expected in (
        "k8s_namespace = from-ini  (ini)",
        "k8s_token = <redacted>  (env)",
        "k8s_resource = <unset>  (default)",
        "k8s_api_endpoint = <unset>  (default)",
        "watch_timeout = <invalid>  (invalid, ini)",
        "message_log_levl = DEBUG  (ini)",
    ):
        assert expected in lines, result.stdout
    errors_line = result.stderr.strip().splitlines()[-1]
    assert errors_line.startswith("event-watcher: error: unknown key k8s_resourse"), result.stderr
    assert "no resource to watch" in errors_line and "no API endpoint" in errors_line
    assert "watch_timeout in [global]" in errors_line and "got 'soon'" in errors_line
    assert (
        "unknown key message_log_levl in [plugin_simple] (did you mean message_log_level?)" in result.stderr
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "case",
    ["wrong CA", "http against TLS", "unresolvable host"],
)
def test_a_connection_mistake_is_said_in_plain_words_repeated_and_shown_in_readyz(
    local_api: LocalAPI, tmp_path: Path, proc_cleanup: list[subprocess.Popen[str]], case: str
) -> None:
    other = LocalAPI().start()  # its CA did not sign local_api's certificate
    try:
        extra = {
            "wrong CA": {"K8S_CA": other.ca_file},
            "http against TLS": {"K8S_API_ENDPOINT": f"http://{local_api.host_port}"},
            "unresolvable host": {"K8S_API_ENDPOINT": "https://master.example.invalid:6443"},
        }[case]
        expected = {
            "wrong CA": f"the server's certificate is not signed by the CA in {other.ca_file}",
            "http against TLS": "the server speaks TLS: use https://",
            "unresolvable host": "cannot resolve master.example.invalid",
        }[case]
        port = _free_port()
        env = watcher_env(
            local_api, tmp_path, K8S_NAMESPACE="default", WATCHER_METRICS_PORT=str(port), **extra
        )
        p = subprocess.Popen(
            [sys.executable, str(ROOT / "watch.py")], env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True
        )
        proc_cleanup.append(p)
        bodies: list[str] = []

        def readyz_after_four_attempts() -> bool:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
                raise AssertionError("ready although it cannot connect")
            except urllib.error.HTTPError as e:
                assert e.code == 503
                bodies.append(e.read().decode())
            except urllib.error.URLError:
                return False  # not listening yet
            return bool(re.search(r"\(attempt ([4-9]|\d\d+)\)", bodies[-1]))

        wait_until(readyz_after_four_attempts, timeout=30)
        assert expected in bodies[-1], bodies[-1]
        p.send_signal(signal.SIGTERM)
        _, stderr = p.communicate(timeout=20)
    finally:
        other.stop()
    warnings = [line for line in stderr.splitlines() if expected in line]
    attempts = [int(re.findall(r"\(attempt (\d+)\)", line)[0]) for line in warnings]
    # The same line again at a slowing rate: attempts 1, 2, 4, 8, ...
    assert attempts[:3] == [1, 2, 4] and all(n & (n - 1) == 0 for n in attempts), stderr
    for line in warnings:
        quotes = re.sub(r"(?<=\w)'(?=\w)", "", line)  # an apostrophe (server's) is no quote
        assert quotes.count("'") % 2 == 0 and quotes.count('"') % 2 == 0, line
        assert line.count("(") == line.count(")"), line


def test_insecure_skip_tls_verify_warns_once_and_json_stays_json(
    local_api: LocalAPI, tmp_path: Path, proc_cleanup: list[subprocess.Popen[str]]
) -> None:
    local_api.create("routes", route("web"))
    env = watcher_env(
        local_api, tmp_path, K8S_NAMESPACE="default", K8S_INSECURE_SKIP_TLS_VERIFY="true", LOG_FORMAT="json"
    )
    del env["K8S_CA"]
    p = subprocess.Popen(
        [sys.executable, str(ROOT / "watch.py")], env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    proc_cleanup.append(p)
    wait_until(lambda: len(local_api.requests_seen()) >= 4, timeout=20, what="a few requests")
    time.sleep(3)  # a watch or two more, each of which used to print an InsecureRequestWarning block
    p.send_signal(signal.SIGTERM)
    _, stderr = p.communicate(timeout=20)
    lines = stderr.splitlines()
    assert lines, "nothing logged"
    records = [json.loads(line) for line in lines]  # every line is JSON
    assert sum("DISABLED" in r["message"] for r in records) == 1, stderr
    assert not any("InsecureRequestWarning" in line or "Unverified HTTPS" in line for line in lines), stderr
    assert p.returncode == 0, stderr


def test_print_sample_config_works_from_the_installed_layout(tmp_path: Path) -> None:
    """What `pip install .` puts in site-packages (setuptools' build_py), without the checkout's conf/."""
    build = tmp_path / "build"
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "-d", str(build)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    sample = (ROOT / "conf" / "config.ini.sample").read_text(encoding="utf-8")
    assert (build / "watcher" / "conf" / "config.ini.sample").read_text(encoding="utf-8") == sample
    code = f"import watcher.cli as c; assert c.__file__.startswith({str(build)!r}); c.main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "--print-sample-config"],
        env={**clean_env(tmp_path), "PYTHONPATH": str(build)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == sample
    assert "--print-sample-config" in run(["--help"], clean_env(tmp_path)).stdout


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
