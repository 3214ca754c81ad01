"""Which zone a host belongs to, and one updater per zone.

With ``dns_zone`` set the answer is arithmetic. Without it, each host's zone is found by an SOA query
(to ``dns_server``, or to the name servers of ``resolv_conf``) and remembered for a while, so a resync
does not cost an extra query per route, yet a zone added on the server later is noticed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from watcher import rfc2136

CACHE_SECONDS = 300.0


class Zones:
    def __init__(
        self,
        server: rfc2136.DNSServer,
        zone: str | None,
        resolv_conf: str | None,
        clock: Callable[[], float] = time.monotonic,
        *,
        dry_run: bool = False,
    ) -> None:
        self.server = server
        self.zone = zone
        self.resolv_conf = resolv_conf
        self._clock = clock
        self.dry_run = dry_run  # updaters send only prerequisites and log what they would have sent
        self._found: dict[str, tuple[str | None, float]] = {}
        self._updaters: dict[str, rfc2136.Updater] = {}

    def zone_for(self, host: str) -> str | None:
        """The zone holding ``host``, or None when the server serves none; DNSUpdateError when it is down."""
        if self.zone is not None:
            return self.zone if rfc2136.in_zone(host, self.zone) else None
        now = self._clock()
        cached = self._found.get(host)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            zone: str | None = rfc2136.find_zone(host, self.server, self.resolv_conf)
        except rfc2136.ZoneNotFound:
            zone = None
        self._found[host] = (zone, now + CACHE_SECONDS)
        return zone

    def known(self) -> set[str]:
        """Every zone found so far (for the sweep, which also lists zones no route uses any more)."""
        return {zone for zone, _ in self._found.values() if zone is not None} | set(self._updaters)

    def updater(self, zone: str) -> rfc2136.Updater:
        if zone not in self._updaters:
            self._updaters[zone] = rfc2136.Updater(self.server, zone, dry_run=self.dry_run)
        return self._updaters[zone]

    def describe(self) -> str:
        """For the start-up line: where zones come from."""
        if self.zone is not None:
            return f"zone {self.zone}"
        if self.resolv_conf is not None:
            return f"zones found through the name servers in {self.resolv_conf}"
        return f"zones found by SOA queries to {self.server}"
