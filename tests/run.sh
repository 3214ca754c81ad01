#!/usr/bin/env bash
# The README's test command: set up a fresh machine (tests/setup.sh), then run the whole suite in
# ./.venv. Extra arguments go to pytest, e.g. `bash tests/run.sh -k informer -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
export PATH="$PWD/.venv/bin:$PATH"  # hadolint, kubectl and friends installed from PyPI live here
exec python -m pytest "$@"
