"""The checks a reviewer would run, as tests: lint, format, types, and the one-way import layers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.servers import require_binary

ROOT = Path(__file__).resolve().parent.parent


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("check", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff(check: list[str]) -> None:
    result = run(require_binary("ruff", "ruff (pip)"), *check)
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_layers() -> None:
    """cli → config → client → stream → informer → dispatch, never backwards (pyproject.toml)."""
    result = run(require_binary("lint-imports", "import-linter (pip)"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_types() -> None:
    """mypy --strict over the package and the built-in plugins (pyproject.toml)."""
    result = run(require_binary("mypy", "mypy (pip)"))
    assert result.returncode == 0, result.stdout + result.stderr
