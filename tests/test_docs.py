"""The front door stays true: every setting, exit code and command the code has is in the README."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from watcher import cli, config, errors

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_readme_table() -> None:
    for key in config.KEYS:
        assert f"| `{key.env}` | `{key.ini}` |" in README, f"{key.env} / {key.ini} is missing from README.md"


def test_every_exit_code_is_documented_in_readme_and_help() -> None:
    codes = {value for name, value in vars(errors).items() if name.startswith("EXIT_")}
    help_text = " ".join(cli.build_parser().format_help().split())
    for code in codes:
        assert re.search(rf"^\| {code} \|", README, re.MULTILINE), f"exit code {code} is not in README.md"
        assert f"{code} " in help_text, f"exit code {code} is not in --help"


def test_the_readme_commands_are_the_ones_that_work() -> None:
    blocks = re.findall(r"```\n(.*?)```", README, re.DOTALL)
    first, second = blocks[0].strip(), blocks[1].strip()
    assert first.endswith("watch.py --demo")
    assert second == "bash tests/run.sh"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.strip().splitlines()[-1] == second, ".ci/run must run exactly the README's test command"


def test_every_builtin_plugin_has_a_readme_section() -> None:
    for plugin in sorted(p.name for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").is_file()):
        assert f"`{plugin}`" in README, f"plugin {plugin} is not described in README.md"


def test_the_readme_plugin_example_runs_as_its_comment_says(tmp_path: Path) -> None:
    """The block is the plugin, the comment under its first line the command, both used as written."""
    block = next(b for b in re.findall(r"```python\n(.*?)```", README, re.DOTALL) if "myplugins/hello" in b)
    command = block.splitlines()[1].lstrip("#").strip()
    assert command.endswith("python3 watch.py --demo"), command
    plugin = tmp_path / "myplugins" / "hello"
    plugin.mkdir(parents=True)
    (plugin / "__init__.py").write_text(block, encoding="utf-8")
    (tmp_path / "watch.py").symlink_to(ROOT / "watch.py")
    bin_dir = Path(sys.executable).parent  # its python3 is the one with the project installed
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("K8S_", "KUBECONFIG", "WATCHER_", "LOG_"))
    }
    env.update(HOME=str(tmp_path), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        ["bash", "-c", f"exec env {command}"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("Hello demo/app1" in x for x in lines):
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
        assert any("Hello demo/app1" in x for x in lines), "".join(lines)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    assert proc.returncode == 0, "".join(lines)


def test_the_python_claimed_is_the_python_tested() -> None:
    """README and setup.py promise the same minimum, and CI (this interpreter) runs exactly it."""
    (readme,) = re.findall(r"Python ≥ 3\.(\d+)", (ROOT / "README.md").read_text(encoding="utf-8"))
    (setup,) = re.findall(r'python_requires=">=3\.(\d+)"', (ROOT / "setup.py").read_text(encoding="utf-8"))
    assert readme == setup
    assert sys.version_info[:2] == (3, int(setup)), "CI must run the oldest Python the README claims"
