"""Checks made before the daemon is imported: the Python version and the third-party packages.

Run from a fresh clone with a Python that lacks the dependencies, ``python3 watch.py`` (even with
``--version``) would end in a traceback at the first import; this says in one line what to install.
Only the standard library is imported here.
"""

from __future__ import annotations

import sys
from typing import NoReturn

MINIMUM_PYTHON = (3, 9)
# import name -> the distribution that provides it (setup.py's install_requires).
DISTRIBUTIONS = {
    "requests": "requests",
    "urllib3": "requests",
    "cryptography": "cryptography",
    "dns": "dnspython",
    "acme": "acme",
    "josepy": "acme",
    "OpenSSL": "acme",
    "prometheus_client": "prometheus-client",
    "yaml": "PyYAML",
    "orjson": "orjson",
    "httptools": "httptools",
    "certifi": "certifi",
}
EXIT_USAGE = 2  # errors.EXIT_USAGE; the check runs before anything else of the package is imported


def fail(message: str) -> NoReturn:
    print(f"event-watcher: error: {message}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def check_python() -> None:
    if sys.version_info < MINIMUM_PYTHON:
        wanted = ".".join(map(str, MINIMUM_PYTHON))
        fail(f"Python {wanted} or newer is needed; this is {sys.version.split()[0]} ({sys.executable})")


def missing_dependency(exc: ModuleNotFoundError) -> NoReturn:
    """One line naming the package to install; a missing module of the project itself is a bug and
    keeps its traceback."""
    top = (exc.name or "").split(".")[0]
    if top not in DISTRIBUTIONS:
        raise exc
    fail(
        f"the Python package {DISTRIBUTIONS[top]} (module {top}) is not installed for {sys.executable}: "
        "install the dependencies with `python3 -m pip install .` (or `pip install -e .` in a venv, "
        "as the README's first command does)"
    )
