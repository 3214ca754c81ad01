#!/bin/sh
# Container entrypoint: the 2017 start.sh, kept compatible.
#
# With CONFIG_FILE set (the seed's `docker run ... -e CONFIG_FILE=/etc/config/config.ini`) the watcher
# reads that ini file; without it, it runs from environment variables alone (K8S_* and WATCHER_*), with
# the mounted serviceaccount (/var/run/secrets/kubernetes.io/serviceaccount) filling in the rest.
# Arguments given to `docker run IMAGE ...` are passed on, after --config.
#
# `exec` makes the watcher PID 1, so SIGTERM from `docker stop` or the kubelet reaches it directly and
# it can release its Lease and close its plugins before the grace period ends.
set -eu

if [ -n "${CONFIG_FILE:-}" ]; then
    exec event-watcher --config "$CONFIG_FILE" "$@"
fi
exec event-watcher "$@"
