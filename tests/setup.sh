#!/usr/bin/env bash
# Install what the whole test suite needs on a fresh Debian/Ubuntu machine, then nothing else:
# the real servers the integration tests start on loopback, and the Python packages.
# Idempotent and quick when everything is already there. Run as root or with sudo available.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

# command -> Debian package (the servers the tests start; promtool lints /metrics; kubectl renders kustomize)
declare -A NEED=(
  [/usr/sbin/named]=bind9
  [/usr/bin/dig]=bind9-dnsutils
  [/usr/bin/pebble]=pebble
  [/usr/bin/prometheus-alertmanager]=prometheus-alertmanager
  [/usr/bin/promtool]=prometheus
  [/usr/bin/kubectl]=kubernetes-client
)
missing=()
for cmd in "${!NEED[@]}"; do
  [ -x "$cmd" ] || missing+=("${NEED[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/setup.sh: installing ${missing[*]}" >&2
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
