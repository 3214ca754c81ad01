"""``watch.py --demo`` as a newcomer runs it: it starts even when 8080 is taken, and every line it
prints to show the way on (KUBECONFIG, kubectl, /metrics) works when copied as it is."""

from __future__ import annotations

import contextlib
import errno
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_cli import ROOT, clean_env

KUBECTL = shutil.which("kubectl")


@contextlib.contextmanager
def port_taken(port: int) -> Iterator[None]:
    """Hold ``port`` on 127.0.0.1; when something else already holds it, it is taken all the same."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError as e:
            assert e.errno == errno.EADDRINUSE, e
        yield
    finally:
        sock.close()


def read_until(proc: subprocess.Popen[str], needle: str, lines: list[str], timeout: float = 30) -> None:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return
    raise AssertionError(f"{needle!r} never appeared:\n" + "".join(lines))


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    env = clean_env(tmp_path)
    del env["WATCHER_METRICS_PORT"]  # the default, 8080, as a newcomer has it
    with port_taken(8080):
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "watch.py"), "--demo"],
            env=env,
            cwd=ROOT,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        lines: list[str] = []
        try:
            read_until(proc, "Ctrl-C to stop", lines)
            yield proc, lines
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.communicate(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def test_demo_takes_a_free_port_when_8080_is_taken_and_says_which(
    demo: tuple[subprocess.Popen[str], list[str]],
) -> None:
    proc, lines = demo
    text = "".join(lines)
    assert "Port 8080 is taken" in text, text
    urls = re.findall(r"metrics at (\S+) ", text)
    assert urls and urls[0].endswith("/metrics") and ":8080/" not in urls[0], text
    assert urls[0].startswith("http://127.0.0.1:"), "a laptop run listens on loopback only"
    with urllib.request.urlopen(urls[0], timeout=5) as response:  # copyable: used exactly as printed
        assert b"event_watcher_build_info" in response.read()
    readyz = re.findall(r"readiness at (\S+)", text)[0]
    deadline = time.monotonic() + 15
    while True:
        try:
            with urllib.request.urlopen(readyz, timeout=5) as response:
                assert response.read().startswith(b"ok")
                break
        except OSError:
            assert time.monotonic() < deadline, "the demo never became ready"
            time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=20)
    assert proc.returncode == 0


def test_demo_prints_a_kubeconfig_and_a_kubectl_line_that_work(
    demo: tuple[subprocess.Popen[str], list[str]],
) -> None:
    assert KUBECTL, "kubectl is installed by tests/setup.sh (.venv) or Debian's kubernetes-client"
    _, lines = demo
    text = "".join(lines)
    exports = re.findall(r"export KUBECONFIG=(\S+)$", text, re.MULTILINE)
    assert exports and Path(exports[0]).is_file(), text
    assert re.search(r"^.*    kubectl get routes -A -w$", text, re.MULTILINE), text
    api_url = re.findall(r"local API server runs at (\S+) ", text)[0]
    assert not api_url.endswith("."), "a URL with a full stop glued to it is not copyable"
    result = subprocess.run(
        [KUBECTL, "get", "routes", "-A"],
        env={"KUBECONFIG": exports[0], "HOME": str(Path(exports[0]).parent), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^demo\s+app1\s", result.stdout, re.MULTILINE), result.stdout


def test_a_taken_port_chosen_by_the_user_is_an_error_naming_the_setting(tmp_path: Path) -> None:
    env = clean_env(tmp_path, WATCHER_METRICS_PORT="8080")
    with port_taken(8080):
        result = subprocess.run(
            [sys.executable, str(ROOT / "watch.py"), "--demo"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("event-watcher: error:")]
    assert "Address already in use" in line and "WATCHER_METRICS_PORT" in line and "metrics_port" in line
