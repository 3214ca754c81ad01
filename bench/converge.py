#!/usr/bin/env python3
"""The alert plugin across restarts: no webhook message twice, resolutions for what vanished meanwhile.

The real daemon (``watch.py`` as a subprocess, Events in namespace ``shop``, the ``alert`` plugin) against
the local API over HTTPS, a real Alertmanager (``prometheus-alertmanager``) and a webhook receiver on
127.0.0.1. ``--events`` Warning Events fire; then ``--restarts`` times: 6 s after the last send (the
state is written at most every 5 s) the watcher is killed with SIGKILL, a quarter of the Events still
firing is deleted while it is down, and it is started again. Per restart it measures the webhook
messages that repeat an alert already sent (should be 0), the resolutions the webhook got for the
deleted Events and how long after the restart the last one came (within ``--converge``, 30 s), and whether
Alertmanager lists exactly the alerts still firing (refreshed, none lapsed, the vanished ones resolved).

Baseline, in the same run: the same with ``state_configmap = none`` (the plugin's memory only, as
before this change). The last line compares the two:
``repeats_state=… repeats_memory=… resolved_state=…/… resolved_memory=…/… converge_s=…``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._chaos_proc import WatcherProcess, base_env, free_port, write_ini
from bench._common import say
from tests.servers.alertmanager import start_alertmanager
from tests.servers.webhook import WebhookReceiver
from watcher.localapi import LocalAPI

NAMESPACE = "shop"
SETTLE = 6.0  # after the last send, before the kill: the state is written at most every 5 s


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=40, help="Warning Events firing at the start")
    parser.add_argument("--restarts", type=int, default=3, help="SIGKILL and restart this many times")
    parser.add_argument(
        "--converge", type=float, default=30.0, help="seconds the resolutions may take after a restart"
    )
    return parser.parse_args(argv)


def warning(pod: str) -> dict[str, Any]:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": {"name": f"{pod}.backoff", "namespace": NAMESPACE},
        "involvedObject": {"kind": "Pod", "namespace": NAMESPACE, "name": pod, "apiVersion": "v1"},
        "reason": "BackOff",
        "message": f"Back-off restarting failed container app in pod {pod}_{NAMESPACE}(0b1c)",
        "source": {"component": "kubelet", "host": "node-1"},
        "type": "Warning",
        "count": 1,
        "firstTimestamp": now,
        "lastTimestamp": now,
    }


@dataclass
class Restart:
    repeats: int  # firing messages for alerts the webhook had already been sent
    resolved: int  # resolutions of the Events deleted while the watcher was down
    deleted: int
    seconds: Optional[float]  # restart to the last of those resolutions; None: not all within CONVERGE
    alertmanager_ok: bool  # Alertmanager lists exactly the alerts still firing


def messages(hook: WebhookReceiver, status: str) -> list[str]:
    return [a["labels"]["name"] for r in hook.requests for a in r.body["alerts"] if a["status"] == status]


def run_mode(work: Path, args: argparse.Namespace, keep_state: bool) -> list[Restart]:
    api = LocalAPI().start()
    hook = WebhookReceiver().start()
    manager = start_alertmanager(work / "alertmanager")
    token = work / "token"
    token.write_text(api.token, encoding="utf-8")
    section = {"alertmanager_url": manager.url, "webhook_url": hook.url, "repeat_interval": "1h"}
    if not keep_state:
        section["state_configmap"] = "none"
    env = {
        **base_env(work),
        "CONFIG_FILE": str(write_ini(work / "config.ini", {"plugin_alert": section})),
        "K8S_API_ENDPOINT": api.url,
        "K8S_TOKEN_FILE": str(token),
        "K8S_CA": api.ca_file,
        "K8S_RESOURCE": "events",
        "K8S_NAMESPACE": NAMESPACE,
        "WATCHER_PLUGIN": "alert",
        "LOG_LEVEL": "INFO",
    }
    watcher = WatcherProcess(env, free_port(), work)
    pods = [f"web-{i}" for i in range(args.events)]
    firing = set(pods)
    results = []
    try:
        for pod in pods:
            api.create("events", warning(pod))
        watcher.start()
        wait(lambda: set(messages(hook, "firing")) >= firing, 60, "every alert at the webhook")
        for _ in range(args.restarts):
            time.sleep(SETTLE)
            assert watcher.proc is not None
            watcher.proc.kill()
            watcher.stop()
            sent = set(messages(hook, "firing"))
            before = len(hook.requests)
            gone = sorted(firing)[: max(1, len(firing) // 4)]
            for pod in gone:
                api.delete("events", NAMESPACE, f"{pod}.backoff")
            firing -= set(gone)
            started = time.monotonic()
            watcher.start()
            seconds = wait_for_resolutions(hook, before, set(gone), started, args.converge)
            time.sleep(1.0)  # anything the restart would repeat has come by now (it comes at once)
            new = [a for r in hook.requests[before:] for a in r.body["alerts"] if a["status"] == "firing"]
            listed = {a["labels"]["name"] for a in manager.alerts(alertname="PodCrashLooping")}
            resolved = {
                a["labels"]["name"]
                for r in hook.requests[before:]
                for a in r.body["alerts"]
                if a["status"] == "resolved"
            }
            results.append(
                Restart(
                    repeats=sum(1 for a in new if a["labels"]["name"] in sent),
                    resolved=len(resolved & set(gone)),
                    deleted=len(gone),
                    seconds=seconds,
                    alertmanager_ok=listed == firing,
                )
            )
    finally:
        watcher.stop()
        manager.stop()
        hook.stop()
        api.stop()
    return results


def wait_for_resolutions(
    hook: WebhookReceiver, before: int, gone: set[str], started: float, limit: float
) -> Optional[float]:
    """Seconds from ``started`` to the last resolution of ``gone``; None if not all within ``limit``."""
    while time.monotonic() - started < limit:
        resolved = {
            a["labels"]["name"]
            for r in hook.requests[before:]
            for a in r.body["alerts"]
            if a["status"] == "resolved"
        }
        if gone <= resolved:
            return time.monotonic() - started
        time.sleep(0.05)
    return None


def wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"converge: timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    say(
        f"{args.events} firing Events, {args.restarts} SIGKILL restarts, a quarter of the firing Events "
        "deleted during each downtime; Alertmanager and a json webhook as sinks."
    )
    figures: dict[bool, list[Restart]] = {}
    for keep_state in (False, True):
        label = "state in ConfigMap" if keep_state else "memory only (baseline)"
        with tempfile.TemporaryDirectory(prefix="ew-converge-") as tmp:
            figures[keep_state] = run_mode(Path(tmp), args, keep_state)
        for n, r in enumerate(figures[keep_state], 1):
            took = (
                f"{r.seconds:.2f} s after the restart"
                if r.seconds is not None
                else f"not within {args.converge:g} s"
            )
            say(
                f"{label}, restart {n}: {r.repeats} repeated webhook messages; {r.resolved}/{r.deleted} "
                f"vanished alerts resolved at the webhook ({took}); Alertmanager lists exactly the "
                f"alerts still firing: {'yes' if r.alertmanager_ok else 'no'}"
            )
    state, memory = figures[True], figures[False]
    times = [r.seconds for r in state if r.seconds is not None]
    say(
        f"repeats_state={sum(r.repeats for r in state)} repeats_memory={sum(r.repeats for r in memory)} "
        f"resolved_state={sum(r.resolved for r in state)}/{sum(r.deleted for r in state)} "
        f"resolved_memory={sum(r.resolved for r in memory)}/{sum(r.deleted for r in memory)} "
        f"converge_s={f'{max(times):.2f}' if times and len(times) == len(state) else 'none'} "
        f"alertmanager_exact_state={sum(r.alertmanager_ok for r in state)}/{len(state)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
