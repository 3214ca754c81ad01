#!/usr/bin/env bash
# Install what the whole test suite needs on a fresh Debian/Ubuntu machine: the real servers the
# integration tests start on loopback (apt), and the package with its test extras in ./.venv (pip).
# Idempotent, and quick when everything is already there. Run as root or with sudo available.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

# binary -> Debian package: BIND9 (DNS), Pebble (ACME), Alertmanager (alerts), promtool (/metrics lint)
declare -A NEED=(
  [/usr/sbin/named]=bind9
  [/usr/bin/dig]=bind9-dnsutils
  [/usr/bin/pebble]=pebble
  [/usr/bin/prometheus-alertmanager]=prometheus-alertmanager
  [/usr/bin/promtool]=prometheus
)
missing=()
for cmd in "${!NEED[@]}"; do
  [ -x "$cmd" ] || missing+=("${NEED[$cmd]}")
done
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/setup.sh: installing ${missing[*]}" >&2
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
