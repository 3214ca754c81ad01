"""Shared pieces of the benchmarks: a realistic Route, the local API loaded with a history of changes,
the watcher's configuration, running it as a subprocess, and reading its report.

The benchmarks run the real daemon (``python3 watch.py --config …``) against the real local API over
HTTPS; the ``count`` plugin in ``bench/plugins`` times the run from inside the process (first event to
last), so start-up is never in the figures.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as ``python3 bench/x.py`` from anywhere
    sys.path.insert(0, str(ROOT))

from watcher.localapi import LocalAPI, apply_route  # noqa: E402

BENCH_PLUGINS = Path(__file__).resolve().parent / "plugins"
NAMESPACE = "bench"
DOMAIN = "apps.example.test"
STAMP = "bench.example.test/written-at"
CHANGES_PER_ROUTE = 2  # add_route: the `oc apply` that creates it, then the router's status write


def bench_route(i: int, namespace: str = NAMESPACE) -> dict[str, Any]:
    """A Route as most are on a busy OpenShift cluster: edge TLS with the router's default
    certificate, labels, router annotations, admitted by the default router. Made with ``add_route``
    it carries what a cluster adds (two managedFields entries and ``oc apply``'s last-applied
    annotation): about 2.0 KB as a watch event line, of which ~770 bytes are the object without them
    (issue 20 measured 1,850 and 620 bytes on a cluster)."""
    name = f"app-{i:06d}"
    host = f"{name}.{DOMAIN}"
    return {
        "apiVersion": "route.openshift.io/v1",
        "kind": "Route",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": name},
        },
        "spec": {
            "host": host,
            "to": {"kind": "Service", "name": name, "weight": 100},
            "port": {"targetPort": "http"},
            "tls": {"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"},
            "wildcardPolicy": "None",
        },
        "status": {
            "ingress": [
                {
                    "host": host,
                    "routerName": "default",
                    "routerCanonicalHostname": f"router-default.{DOMAIN}",
                    "wildcardPolicy": "None",
                    "conditions": [
                        {"type": "Admitted", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                    ],
                }
            ]
        },
    }


def add_route(api: LocalAPI, i: int, namespace: str = NAMESPACE) -> None:
    """``bench_route(i)`` the way a cluster gets it (``localapi.apply_route``: ``oc apply``, then the
    router's status write): ``CHANGES_PER_ROUTE`` changes."""
    apply_route(api, bench_route(i, namespace))


def start_api(history: int) -> LocalAPI:
    """The local API over HTTPS, keeping ``history`` changes so every run can replay all of them."""
    return LocalAPI(history_limit=max(history, 1000), bookmark_interval=3600.0).start()


def load_history(api: LocalAPI, routes: int, events: int, *, progress: bool = True) -> int:
    """``routes`` made with ``add_route``, then MODIFIED round-robin until there are ``events``
    changes after the returned revision (at least those the routes took). Each change is rendered to
    its watch line once, when it is made."""
    base = api.resource_version
    started = time.monotonic()
    routes = max(1, routes)
    for i in range(routes):
        add_route(api, i)
    for n in range(events - CHANGES_PER_ROUTE * routes):
        touch(api, n, routes)
        if progress and n and n % 100_000 == 0:
            say(f"  ... {n + routes} changes made")
    if progress:
        events = max(events, CHANGES_PER_ROUTE * routes)
        say(f"  {events} changes on {routes} routes made in {time.monotonic() - started:.1f} s")
    return base


def touch(api: LocalAPI, n: int, routes: int, namespace: str = NAMESPACE) -> None:
    """Change route ``n % routes`` (a new annotation value, as ``oc annotate`` writes it): one
    MODIFIED event."""
    annotations = {"bench/generation": str(n)}
    api.patch(
        "routes",
        namespace,
        f"app-{n % routes:06d}",
        {"metadata": {"annotations": annotations}},
        manager="kubectl-annotate",
    )


def say(text: str) -> None:
    print(text, flush=True)


# --- the watcher as a subprocess -----------------------------------------------------------------------


def clean_environ(home: str) -> dict[str, str]:
    """Our environment without anything that would point the watcher elsewhere (K8S_*, kubeconfig)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("K8S_", "KUBECONFIG", "KUBERNETES_", "WATCHER_", "LOG_", "CONFIG_FILE"))
    }
    env["HOME"] = home
    env["PYTHONPATH"] = str(ROOT)
    return env


def write_config(
    workdir: str, api: LocalAPI, plugin: Mapping[str, str], *, log_level: str = "WARNING"
) -> str:
    """An ini file for ``watch.py``: the local API, the ``count`` plugin, no metrics port."""
    token_file = os.path.join(workdir, "token")
    with open(token_file, "w", encoding="utf-8") as f:
        f.write(api.token)
    lines = [
        "[global]",
        f"k8s_api_endpoint = {api.url}",
        f"k8s_token_file = {token_file}",
        f"k8s_ca = {api.ca_file}",
        "k8s_resource = routes",
        f"k8s_namespace = {NAMESPACE}",
        "watcher_plugin = count",
        f"plugin_path = {BENCH_PLUGINS}",
        "metrics_port = 0",
        f"log_level = {log_level}",
        "",
        "[plugin_count]",
        *(f"{k} = {v}" for k, v in plugin.items()),
        "",
    ]
    path = os.path.join(workdir, "config.ini")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return path


@dataclass(frozen=True)
class Run:
    """What one client did with one stream: the count plugin's (or the same Tally's) report."""

    events: int
    seconds: float
    cpu_seconds: float
    peak_rss_kb: int
    rss_kb: list[tuple[int, int]]
    latencies_ns: list[int]

    @property
    def events_per_s(self) -> float:
        return (self.events - 1) / self.seconds if self.seconds > 0 else float("inf")

    @property
    def cpu_us_per_event(self) -> float:
        return self.cpu_seconds * 1e6 / (self.events - 1)

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss_kb / 1024

    @property
    def rss_growth(self) -> float:
        """RSS at the end against RSS at the first tenth (after warm-up of caches and buffers)."""
        if len(self.rss_kb) < 3:
            return 0.0
        start = self.rss_kb[1][1]
        return (self.rss_kb[-1][1] - start) / start if start else 0.0


def read_report(path: str) -> Run:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return Run(
        events=int(data["events"]),
        seconds=float(data["seconds"]),
        cpu_seconds=float(data["cpu_seconds"]),
        peak_rss_kb=int(data["peak_rss_kb"]),
        rss_kb=[(int(n), int(kb)) for n, kb in data["rss_kb"]],
        latencies_ns=[int(x) for x in data["latencies_ns"]],
    )


def run_process(
    argv: Sequence[str],
    report: str,
    *,
    env: Mapping[str, str],
    timeout: float,
    log: str,
    while_waiting: Optional[Any] = None,
) -> Run:
    """Start ``argv``, wait for its report (or its death, or ``timeout``), then stop it with SIGTERM.

    ``while_waiting`` is called once the process runs (the latency benchmark drives changes then).
    """
    if os.path.exists(report):
        os.unlink(report)
    with open(log, "ab") as out:
        proc = subprocess.Popen(list(argv), env=dict(env), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        if while_waiting is not None:
            while_waiting(proc)
        deadline = time.monotonic() + timeout
        while not os.path.exists(report):
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[1]} exited with {proc.returncode} before its report; see {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv[1]} gave no report within {timeout:.0f} s; see {log}")
            time.sleep(0.02)
        return read_report(report)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for_watch(api: LocalAPI, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Until the watcher has listed and opened its WATCH: changes made before would come by LIST."""
    deadline = time.monotonic() + timeout
    while api.stats.watches_opened < 1:
        if proc.poll() is not None:
            raise RuntimeError(f"the watcher exited with {proc.returncode} before watching")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the watcher opened no WATCH within {timeout:.0f} s")
        time.sleep(0.01)


def watcher_argv(config: str) -> list[str]:
    return [sys.executable, str(ROOT / "watch.py"), "--config", config]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: how busy the shared machine was."""
    try:
        return " ".join(f"{load:.2f}" for load in os.getloadavg())
    except OSError:
        return "?"
