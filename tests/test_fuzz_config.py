"""Fuzz: any configuration a user can write gives settings or one clean error with a documented code.

Hypothesis writes ini files as raw bytes (invalid UTF-8, a BOM, NUL bytes, CR line ends, duplicate
sections and keys, continuation lines, ``%`` interpolation, ``$env:`` references, megabyte values),
kubeconfig files (YAML with wrong types, or not YAML at all) and environment combinations. In process,
``watcher.config.load`` must return ``Settings`` or raise ``errors.ConfigError`` whose codes are the
documented ones (2, 31-35), whose message is one line and never contains the token. A few examples also
go through ``python3 watch.py --check-config`` in a subprocess: exit 0 or a documented code, exactly one
``event-watcher: error:`` line, never a traceback. ``FUZZ_EXAMPLES=5000`` runs a large budget.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness import SECRETS
from watcher import config, errors

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
SUBPROCESS_EXAMPLES = max(4, EXAMPLES // 50)
# Each example writes files and may start a process: no deadline, no example database, and the
# checks that assume fast, small, fixture-free examples are off.
FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
DOCUMENTED = {
    errors.EXIT_OK,
    errors.EXIT_USAGE,
    errors.EXIT_RESOURCE,
    errors.EXIT_NAMESPACE,
    errors.EXIT_ENDPOINT,
    errors.EXIT_TOKEN,
    errors.EXIT_PLUGIN,
}
TOKEN = "fuzz-token-0123456789abcdef0123456789"
SECRETS.add(TOKEN)

ENV_NAMES = [key.env for key in config.KEYS] + ["CONFIG_FILE", "KUBECONFIG"]
INI_KEYS = [key.ini for key in config.KEYS] + ["unknown_key", "k8s_token_file", "message_log_level"]
SECTIONS = ["global", "GLOBAL", "plugin_simple", "plugin_dns", "plugin_", "DEFAULT", "other", ""]

# Values users really write and values no parser expects. The token itself only ever goes into K8S_TOKEN,
# or into any key through ``$env:K8S_TOKEN``, which config promises never to quote (a path or a URL
# holding a token by mistake is shown as written: it is not where a token belongs).
VALUES = st.one_of(
    st.sampled_from(
        [
            "",
            "routes",
            "routes.route.openshift.io",
            "demo",
            "true",
            "no",
            "0",
            "-1",
            "65536",
            "1e309",
            "nan",
            "https://127.0.0.1:6443",
            "127.0.0.1:0",
            "https://[::1",
            "http://exa mple:80",
            "$env:K8S_TOKEN",
            "$env:NOT_SET_ANYWHERE",
            "$env:",
            "%(here)s",
            "%",
            "/dev/null",
            "/nonexistent/file",
            ".",
            "simple,,simple",
        ]
    ),
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
)


@st.composite
def ini_bytes(draw: st.DrawFn) -> bytes:
    lines: list[bytes] = []
    if draw(st.booleans()):
        lines.append(b"\xef\xbb\xbf[global]")  # a BOM, as Windows editors write it
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.integers(0, 12))
        if kind == 0:
            lines.append(f"[{draw(st.sampled_from(SECTIONS))}]".encode())
        elif kind == 1:
            lines.append(draw(st.binary(max_size=40)))
        elif kind == 2:
            lines.append(b"  continued " + draw(st.text(max_size=10)).encode())
        elif kind == 3:
            lines.append(b"k8s_resource = " + b"r" * draw(st.integers(10_000, 200_000)))
        else:
            key = draw(st.sampled_from(INI_KEYS))
            sep = draw(st.sampled_from([" = ", "=", ": ", " "]))
            lines.append(f"{key}{sep}{draw(VALUES)}".encode())
    end = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    return end.join(lines)


@st.composite
def kubeconfig_text(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    junk = st.one_of(st.none(), st.integers(), st.text(max_size=10), st.lists(st.integers(), max_size=2))
    cluster = draw(
        st.fixed_dictionaries({}, optional={"server": VALUES, "certificate-authority-data": VALUES})
    )
    user = draw(st.fixed_dictionaries({}, optional={"token": VALUES, "client-certificate": VALUES}))
    doc: Any = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": draw(st.one_of(st.just("c"), junk)),
        "clusters": draw(st.one_of(st.just([{"name": "k", "cluster": cluster}]), junk)),
        "users": draw(st.one_of(st.just([{"name": "u", "user": user}]), junk)),
        "contexts": draw(
            st.one_of(
                st.just([{"name": "c", "context": {"cluster": "k", "user": "u", "namespace": "ns"}}]), junk
            )
        ),
    }
    for key in draw(st.lists(st.sampled_from(list(doc)), max_size=2, unique=True)):
        del doc[key]
    return yaml.safe_dump(doc).encode()


@st.composite
def inputs(draw: st.DrawFn) -> tuple[dict[str, str], bytes, bytes]:
    env: dict[str, str] = {}
    if draw(st.integers(0, 3)):
        env.update(K8S_API_ENDPOINT="https://127.0.0.1:6443", K8S_RESOURCE="routes", K8S_NAMESPACE="demo")
    if draw(st.integers(0, 2)):
        env["K8S_TOKEN"] = TOKEN
    env.update(draw(st.dictionaries(st.sampled_from(ENV_NAMES), VALUES, max_size=4)))
    return env, draw(ini_bytes()), draw(kubeconfig_text())


def materialize(tmp: Path, data: tuple[dict[str, str], bytes, bytes]) -> tuple[dict[str, str], Path]:
    env, ini, kube = data
    tmp.mkdir(parents=True, exist_ok=True)
    ini_path = tmp / "config.ini"
    ini_path.write_bytes(ini)
    kube_path = tmp / "kubeconfig"
    kube_path.write_bytes(kube)
    env = {k: v.replace("\0", "") for k, v in env.items()}  # an environment cannot hold NUL bytes
    if env.get("KUBECONFIG") in (None, "kube"):
        env["KUBECONFIG"] = str(kube_path)
    return env, ini_path


def assert_clean(error: errors.ConfigError) -> None:
    assert error.problems, "a ConfigError carries its problems"
    assert {code for code, _ in error.problems} <= DOCUMENTED - {errors.EXIT_OK}
    assert error.exit_code == error.problems[0][0]
    text = str(error)
    assert text and "\n" not in text and "\r" not in text
    assert TOKEN not in text


@settings(FUZZ, max_examples=EXAMPLES)
@given(data=inputs())
def test_any_config_gives_settings_or_one_clean_error(
    tmp_path: Path, data: tuple[dict[str, str], bytes, bytes]
) -> None:
    env, ini_path = materialize(tmp_path / "case", data)
    try:
        s = config.load(env, str(ini_path), serviceaccount_dir=str(tmp_path / "no-sa"), home=str(tmp_path))
    except errors.ConfigError as e:
        assert_clean(e)
    else:
        assert s.resource and s.endpoint
        assert TOKEN not in config.render(s) and TOKEN not in repr(s)


def watch_py(args: list[str], env: dict[str, str], home: Path) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("K8S_", "KUBECONFIG", "WATCHER_", "LOG_"))
    }
    base.update({"HOME": str(home), "WATCHER_METRICS_PORT": "0", **env})
    return subprocess.run(
        [sys.executable, str(ROOT / "watch.py"), *args],
        env=base,
        cwd=ROOT,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=60,
    )


def assert_cli_clean(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode in DOCUMENTED, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert TOKEN not in result.stderr and TOKEN not in result.stdout
    if result.returncode:
        lines = [line for line in result.stderr.splitlines() if line.startswith("event-watcher: error:")]
        assert len(lines) == 1, result.stderr[-2000:]


@settings(FUZZ, max_examples=SUBPROCESS_EXAMPLES)
@given(data=inputs())
def test_check_config_in_a_subprocess_never_shows_a_traceback(
    tmp_path: Path, data: tuple[dict[str, str], bytes, bytes]
) -> None:
    env, ini_path = materialize(tmp_path / "case", data)
    assert_cli_clean(watch_py(["--config", str(ini_path), "--check-config"], env, tmp_path))


@pytest.mark.parametrize(
    "ini",
    [
        b"\xff\xfe[global]\nk8s_resource = routes\n",  # UTF-16 BOM: not UTF-8
        b"[global]\nk8s_resource = routes\n[global]\nk8s_resource = pods\n",  # duplicate section
        b"[global]\nk8s_resource = routes\nk8s_resource = pods\n",  # duplicate key
        b"k8s_resource = routes\n",  # no section header
        b"[global]\nk8s_resource = rou\0tes\n",  # NUL
        b"[global\nk8s_resource = routes\n",  # unclosed header
        b"[global]\nlog_level = %(nothing)s\n",  # interpolation syntax
    ],
    ids=[
        "utf16",
        "duplicate-section",
        "duplicate-key",
        "no-section",
        "nul",
        "unclosed-header",
        "interpolation",
    ],
)
def test_broken_ini_files_are_one_line_errors_in_the_cli(tmp_path: Path, ini: bytes) -> None:
    path = tmp_path / "config.ini"
    path.write_bytes(ini)
    env = {"K8S_API_ENDPOINT": "https://127.0.0.1:6443", "K8S_TOKEN": TOKEN, "K8S_NAMESPACE": "demo"}
    result = watch_py(["--config", str(path), "--check-config"], env, tmp_path)
    assert_cli_clean(result)


def test_a_config_file_that_is_a_directory_is_a_usage_error(tmp_path: Path) -> None:
    env = {"K8S_API_ENDPOINT": "https://127.0.0.1:6443", "K8S_TOKEN": TOKEN, "K8S_RESOURCE": "routes"}
    result = watch_py(["--config", str(tmp_path), "--check-config"], env, tmp_path)
    assert_cli_clean(result)
    assert result.returncode == errors.EXIT_USAGE


@pytest.mark.parametrize(
    ("args", "env"),
    [([], {"LOG_LEVEL": "routes"}), (["--log-level", "loud"], {}), ([], {"LOG_LEVEL": " debug x"})],
)
def test_a_bad_log_level_is_a_one_line_config_error(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> None:
    """Found by the fuzz above: the log level was applied before the settings were checked."""
    env = {"K8S_API_ENDPOINT": "https://127.0.0.1:6443", "K8S_TOKEN": TOKEN, "K8S_RESOURCE": "routes", **env}
    result = watch_py([*args, "--check-config"], env, tmp_path)
    assert_cli_clean(result)
    assert result.returncode == errors.EXIT_USAGE
    assert "log" in result.stderr.lower()
