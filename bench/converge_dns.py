#!/usr/bin/env python3
"""The dns plugin through faults: does the zone end up equal to what the routes ask for?

The real daemon (``watch.py`` as a subprocess, routes in every namespace, the ``dns`` plugin with its
defaults: ``resync_period = 0``, a sweep after each start) against the local API over HTTPS and a real
BIND9 on 127.0.0.1. Routes churn at ``--rate`` changes/s over ``--namespaces`` namespaces (new routes,
deleted routes, hosts renamed) while, in turn, named is frozen with SIGSTOP (its connections hang),
named is killed with SIGKILL and started again on the same port, and the watcher is killed with SIGKILL
and started again (the churn goes on while it is down: routes are deleted and renamed that it never
sees go). Each fault lasts 5 to 30 s (``--min-fault``/``--max-fault``). The zone also holds names that
are not ours: a hand-made record, and a record with another owner id's ownership TXT.

After each fault the churn stops and the zone is listed (AXFR, independently of the plugin's code) until
it equals what the routes ask for: every route's host has the router's A record and this owner's TXT
(missing = 0), no name of this owner is left without its route (stale = 0), the foreign names are as
they were. Per fault it prints the seconds that took (or that it did not within ``--converge``); the
last line sums up: ``faults=… converged=… max_converge_s=… missing=… stale=… foreign_intact=…``.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import dns.query
import dns.zone

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._chaos_proc import WatcherProcess, base_env, free_port, write_ini
from bench._common import say
from plugins.dns import ownership
from tests.harness import route
from tests.servers.bind import BindServer, start_bind
from watcher import rfc2136
from watcher.localapi import LocalAPI

ZONE = "apps.example.test"
ROUTER_IP = "192.0.2.10"
OWNER = "converge"
FAULTS = ("named SIGSTOP", "named SIGKILL", "watcher SIGKILL")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--routes", type=int, default=200, help="routes at the start")
    parser.add_argument("--namespaces", type=int, default=4)
    parser.add_argument("--rate", type=float, default=50.0, help="route changes per second")
    parser.add_argument("--faults", type=int, default=6, help="faults, taking the three kinds in turn")
    parser.add_argument("--min-fault", type=float, default=5.0, help="shortest fault, seconds")
    parser.add_argument("--max-fault", type=float, default=30.0, help="longest fault, seconds")
    parser.add_argument("--between", type=float, default=10.0, help="churn before each fault, seconds")
    parser.add_argument("--converge", type=float, default=30.0, help="seconds the zone may take")
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


class Churn:
    """Route changes at a steady rate from a thread: create, delete, rename; ``pause`` stops them."""

    def __init__(self, api: LocalAPI, namespaces: list[str], rate: float, seed: int) -> None:
        self.api = api
        self.namespaces = namespaces
        self.rate = rate
        self.random = random.Random(seed)
        self.routes: dict[tuple[str, str], str] = {}  # (namespace, name) -> host
        self.serial = 0
        self.changes = 0
        self.running = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="churn", daemon=True)

    def host(self, namespace: str, name: str) -> str:
        self.serial += 1
        return f"{name}-{self.serial}-{namespace}.{ZONE}"

    def create(self) -> None:
        namespace = self.random.choice(self.namespaces)
        name = f"r{self.serial}"
        host = self.host(namespace, name)
        self.api.create("routes", route(name, namespace, host=host))
        self.routes[(namespace, name)] = host

    def change(self) -> None:
        roll = self.random.random()
        if roll < 0.3 or not self.routes:
            self.create()
            return
        key = self.random.choice(sorted(self.routes))
        if roll < 0.6:
            self.api.delete("routes", key[0], key[1])
            del self.routes[key]
        else:
            host = self.host(*key)
            self.api.patch("routes", key[0], key[1], {"spec": {"host": host}})
            self.routes[key] = host

    def start(self) -> None:
        self.running.set()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        interval = 1.0 / self.rate
        while not self._stop.is_set():
            if not self.running.wait(0.1):
                continue
            self.change()
            self.changes += 1
            time.sleep(interval)


@dataclass(frozen=True)
class Judgement:
    missing: int  # routes' hosts without the right A record and our TXT
    stale: int  # names of ours whose route is gone or has another host
    foreign_intact: bool

    @property
    def converged(self) -> bool:
        return self.missing == 0 and self.stale == 0 and self.foreign_intact


def listing(bind: BindServer) -> dict[str, dict[str, list[str]]]:
    """The zone as named holds it, by AXFR: name -> type -> values (TXT joined)."""
    key = bind.key
    zone = dns.zone.from_xfr(
        dns.query.xfr(
            bind.host,
            ZONE,
            port=bind.port,
            keyring=key.keyring,
            keyname=key.name,
            keyalgorithm=rfc2136.ALGORITHMS[key.algorithm],
            lifetime=10,
            relativize=False,
        ),
        relativize=False,
    )
    data: dict[str, dict[str, list[str]]] = {}
    for name, rdataset in zone.iterate_rdatasets():
        types = data.setdefault(name.to_text(omit_final_dot=True).lower(), {})
        types[str(rdataset.rdtype.name)] = sorted(rfc2136.rdata_text(r) for r in rdataset)
    return data


def judge(
    bind: BindServer, wanted: dict[tuple[str, str], str], foreign: dict[str, dict[str, list[str]]]
) -> Judgement:
    data = listing(bind)
    missing = sum(
        1
        for (namespace, name), host in wanted.items()
        if data.get(host, {}).get("A") != [ROUTER_IP]
        or data.get(f"_event-watcher.{host}", {}).get("TXT")
        != [ownership.claim_for(OWNER, namespace, name).value]
    )
    hosts = set(wanted.values())
    ours = set()
    for name, types in data.items():
        for value in types.get("TXT", []):
            claim = ownership.parse(value)
            if claim is not None and claim.owner == OWNER:
                ours.add(name.removeprefix("_event-watcher."))
    stale = len(ours - hosts)
    intact = all(data.get(name) == types for name, types in foreign.items())
    return Judgement(missing, stale, intact)


def plant_foreign(bind: BindServer) -> dict[str, dict[str, list[str]]]:
    """A hand-made record and another owner's record with its TXT: neither may ever change."""
    updater = rfc2136.Updater(rfc2136.DNSServer(bind.host, bind.port, bind.key), ZONE)
    update = updater.new_update()
    update.add(updater.name(f"manual.{ZONE}"), 300, "A", "198.51.100.7")
    update.add(updater.name(f"theirs.{ZONE}"), 300, "A", "198.51.100.8")
    theirs = ownership.claim_for("another-cluster", "shop", "theirs").value
    update.add(updater.name(f"_event-watcher.theirs.{ZONE}"), 300, rfc2136.txt_rdata(theirs))
    updater.send(update)
    data = listing(bind)
    return {
        name: data[name] for name in (f"manual.{ZONE}", f"theirs.{ZONE}", f"_event-watcher.theirs.{ZONE}")
    }


def fault(kind: str, seconds: float, bind: BindServer, watcher: WatcherProcess) -> None:
    if kind == "named SIGSTOP":
        assert bind.process is not None
        os.kill(bind.process.pid, signal.SIGSTOP)
        time.sleep(seconds)
        os.kill(bind.process.pid, signal.SIGCONT)
    elif kind == "named SIGKILL":
        assert bind.process is not None
        bind.process.kill()
        bind.process.wait()
        time.sleep(seconds)
        bind.start()
    else:
        assert watcher.proc is not None
        watcher.proc.kill()
        watcher.stop()
        time.sleep(seconds)
        watcher.start()


@dataclass(frozen=True)
class Outcome:
    kind: str
    seconds: float  # how long the fault lasted
    changes: int  # route changes made during it
    converge_s: Optional[float]  # from the end of the fault to an equal zone; None: not within the limit
    last: Judgement


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    rng = random.Random(args.seed)
    namespaces = [f"team-{i}" for i in range(args.namespaces)]
    say(
        f"{args.routes} routes over {len(namespaces)} namespaces, {args.rate:g} changes/s, {args.faults} "
        f"faults of {args.min_fault:g}-{args.max_fault:g} s ({', '.join(FAULTS)} in turn); BIND9 and the "
        "dns plugin at its defaults (resync_period 0)."
    )
    with tempfile.TemporaryDirectory(prefix="ew-converge-dns-") as tmp:
        work = Path(tmp)
        api = LocalAPI().start()
        bind = start_bind(work / "bind", zones=(ZONE,))
        token = work / "token"
        token.write_text(api.token, encoding="utf-8")
        section = {
            "dns_server": bind.host,
            "dns_port": str(bind.port),
            "dns_key_file": str(bind.key_file),
            "dns_zone": ZONE,
            "application_router_ip": ROUTER_IP,
            "owner_id": OWNER,
        }
        env = {
            **base_env(work),
            "CONFIG_FILE": str(write_ini(work / "config.ini", {"plugin_dns": section})),
            "K8S_API_ENDPOINT": api.url,
            "K8S_TOKEN_FILE": str(token),
            "K8S_CA": api.ca_file,
            "K8S_RESOURCE": "routes",
            "K8S_NAMESPACED": "false",
            "WATCHER_PLUGIN": "dns",
            "LOG_LEVEL": "WARNING",
        }
        watcher = WatcherProcess(env, free_port(), work)
        churn = Churn(api, namespaces, args.rate, args.seed)
        outcomes: list[Outcome] = []
        try:
            foreign = plant_foreign(bind)
            for _ in range(args.routes):
                churn.create()
            watcher.start()
            if not watcher.wait_ready(60):
                raise SystemExit("converge_dns: the watcher did not become ready")
            first = converge(bind, churn, foreign, 60)
            say(f"initial sync: {_took(first[0], 60)}")
            churn.start()
            for n in range(args.faults):
                kind = FAULTS[n % len(FAULTS)]
                churn.running.set()
                time.sleep(args.between)
                seconds = rng.uniform(args.min_fault, args.max_fault)
                before = churn.changes
                fault(kind, seconds, bind, watcher)
                churn.running.clear()
                time.sleep(1.5 / args.rate)  # the change in flight lands
                took, last = converge(bind, churn, foreign, args.converge)
                outcomes.append(Outcome(kind, seconds, churn.changes - before, took, last))
                say(
                    f"fault {n + 1}: {kind} for {seconds:.1f} s ({churn.changes - before} route changes "
                    f"meanwhile): zone equal to the routes {_took(took, args.converge)}"
                    + ("" if took is not None else f" (missing {last.missing}, stale {last.stale})")
                )
        finally:
            churn.stop()
            watcher.stop()
            bind.stop()
            api.stop()
    times = [o.converge_s for o in outcomes if o.converge_s is not None]
    say(
        f"faults={len(outcomes)} converged={len(times)} "
        f"max_converge_s={f'{max(times):.2f}' if times else 'none'} "
        f"missing={sum(o.last.missing for o in outcomes)} stale={sum(o.last.stale for o in outcomes)} "
        f"foreign_intact={sum(o.last.foreign_intact for o in outcomes)}/{len(outcomes)} "
        f"changes={churn.changes}"
    )
    return 0


def converge(
    bind: BindServer, churn: Churn, foreign: dict[str, dict[str, list[str]]], limit: float
) -> tuple[Optional[float], Judgement]:
    """Seconds until the zone equals what the routes ask for (None: not within ``limit``), and the
    last judgement."""
    started = time.monotonic()
    while True:
        last = judge(bind, dict(churn.routes), foreign)
        if last.converged:
            return time.monotonic() - started, last
        if time.monotonic() - started > limit:
            return None, last
        time.sleep(0.25)


def _took(seconds: Optional[float], limit: float) -> str:
    return f"after {seconds:.2f} s" if seconds is not None else f"not within {limit:g} s"


if __name__ == "__main__":
    sys.exit(main())
