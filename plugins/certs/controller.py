"""One event in, at most one issuance out: decide, re-check against the live route, issue, verify, patch.

The decision is made twice: first on the event's object (cheap, and enough to ignore the MODIFIED our
own patch causes), then on a fresh GET, because events queued before our patch still carry the old
object and would otherwise issue a second certificate.

A route that needs a certificate and did not get one raises ``TemporaryError`` with the time it may
be tried again (its failure cooldown, or the issuer's pause after an outage): the watcher's work queue
retries it then, so a failed issuance is never forgotten, and resyncs inside the cooldown never reach
the CA. A failed cleanup after a delete raises too, and is retried the same way.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional

from watcher import PermanentError, TemporaryError, errors

from . import certificates, routes
from .issuer import Deleted, IssuanceError, Issuer, Signed
from .settings import CertSettings

logger = logging.getLogger(__name__)

Result = Optional[tuple[str, str]]


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


@dataclass(frozen=True)
class Failure:
    host: str
    count: int
    until: datetime.datetime


class Controller:
    def __init__(
        self,
        settings: CertSettings,
        issuer: Issuer,
        api: Any,
        now: Callable[[], datetime.datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.issuer = issuer
        self.api = api
        self.now = now
        self._failures: dict[tuple[str, str], Failure] = {}
        self._skipped: set[tuple[str, str]] = set()
        self._paused_until: Optional[datetime.datetime] = None
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def close(self) -> None:
        """Wake a backoff sleep so shutdown is not held up by a failing route."""
        self._stop.set()
        self.issuer.close()

    def handle(self, event: Mapping[str, Any]) -> Result:
        kind = event.get("type")
        route = event.get("object") or {}
        if not isinstance(route, Mapping):
            return None
        with self._lock:
            if kind == "DELETED":
                return self._deleted(route)
            if kind in ("ADDED", "MODIFIED"):
                return self._changed(route)
        return None

    # --- ADDED / MODIFIED ----------------------------------------------------------------------------

    def _changed(self, route: Mapping[str, Any]) -> Result:
        if not routes.opted_in(route, self.settings):
            return None
        ident = routes.identity(route)
        decision = routes.decide(route, self.settings, self.now())
        if decision.action == routes.CURRENT:
            self._failures.pop(_key(route), None)
            logger.debug("Route %s needs no certificate: %s.", ident, decision.reason)
            return None
        if decision.action == routes.SKIP:
            return self._skip(route, decision.reason)
        self._skipped.discard(_key(route))

        host = routes.host(route)
        failure = self._failures.get(_key(route))
        if failure and failure.host == host and self.now() < failure.until:
            raise self._later(
                failure.until,
                f"Route {ident} still needs a certificate; waiting until "
                f"{certificates.rfc3339(failure.until)} after {failure.count} failed round(s).",
            )

        if self._paused_until is not None and self.now() < self._paused_until:
            raise self._later(
                self._paused_until,
                f"Route {ident} needs a certificate; issuer {self.issuer.name} is paused until "
                f"{certificates.rfc3339(self._paused_until)} after an outage.",
            )

        meta = routes.meta(route)
        try:
            fresh = self.api.get(meta.get("namespace"), meta.get("name"))
        except errors.NotFound:
            logger.debug("Route %s is gone; nothing to issue.", ident)
            return None
        except errors.WatcherError as e:
            return self._failed(route, f"cannot read the route: {e}")
        if not routes.opted_in(fresh, self.settings):
            return None
        decision = routes.decide(fresh, self.settings, self.now())
        if decision.action != routes.ISSUE:
            logger.debug("Route %s no longer needs a certificate: %s.", ident, decision.reason)
            return None
        host = routes.host(fresh)
        logger.info("Route %s needs a certificate for %s: %s.", ident, host, decision.reason)

        try:
            signed, key_pem = self._issue(
                ident, host, (str(meta.get("namespace", "")), str(meta.get("name", "")))
            )
        except IssuanceError as e:
            return self._failed(fresh, str(e), outage=e.retry)
        self._paused_until = None

        patch = routes.tls_patch(fresh, signed, key_pem, self.issuer.name, self.settings)
        try:
            self.api.patch(meta.get("namespace"), meta.get("name"), patch)
        except errors.NotFound:
            return (f"Route {ident} was deleted before its new certificate could be written.", "WARNING")
        except errors.WatcherError as e:
            return self._failed(fresh, f"cannot patch the route: {e}")
        self._failures.pop(_key(fresh), None)
        return (
            f"Issued a certificate for route {ident} from issuer {self.issuer.name}: host {host}, "
            f"serial {certificates.serial_hex(signed.leaf)}, valid until "
            f"{certificates.rfc3339(certificates.not_after(signed.leaf))} ({decision.reason}).",
            "INFO",
        )

    def _issue(self, ident: str, host: str, route: tuple[str, str]) -> tuple[Signed, str]:
        """A fresh key and CSR, then a few attempts with doubling waits; IssuanceError when all failed."""
        key = certificates.generate_key(self.settings.key_type)
        key_pem = certificates.key_to_pem(key)
        csr = certificates.build_csr(key, host)
        delay = self.settings.issue_backoff.total_seconds()
        attempts = self.settings.issue_attempts
        budget = time.monotonic() + self.settings.issue_timeout.total_seconds()
        for attempt in range(1, attempts + 1):
            try:
                signed = self.issuer.issue(host, csr, route)
                self._verify(signed, key, host)
                return signed, key_pem
            except IssuanceError as e:
                out_of_time = time.monotonic() + delay > budget
                if not e.retry or attempt == attempts or out_of_time or self._stop.is_set():
                    if attempt > 1:
                        raise IssuanceError(f"{str(e).rstrip('.')} (after {attempt} attempts).") from e
                    raise
                logger.warning(
                    "Attempt %d of %d to issue a certificate for route %s failed: %s Retrying in %gs.",
                    attempt,
                    attempts,
                    ident,
                    _sentence(str(e)),
                    delay,
                )
                if self._stop.wait(delay):
                    raise
                delay *= 2
        raise AssertionError("unreachable")

    def _verify(self, signed: Signed, key: certificates.PrivateKey, host: str) -> None:
        """Never write a certificate the router would reject or that does not serve the host."""
        leaf = signed.leaf
        if not certificates.key_matches(leaf, key):
            raise IssuanceError(
                f"The certificate from issuer {self.issuer.name} does not match the key we sent."
            )
        if not certificates.covers(leaf, host):
            raise IssuanceError(
                f"The certificate from issuer {self.issuer.name} does not cover {host}.", retry=False
            )
        now = self.now()
        if (
            not certificates.not_before(leaf)
            <= now + datetime.timedelta(minutes=5)
            < certificates.not_after(leaf)
        ):
            raise IssuanceError(
                f"The certificate from issuer {self.issuer.name} is not valid now.", retry=False
            )

    def _later(self, until: datetime.datetime, message: str) -> TemporaryError:
        return TemporaryError(message, delay=max(0.0, (until - self.now()).total_seconds()))

    def _failed(self, route: Mapping[str, Any], why: str, outage: bool = False) -> Result:
        """Remember the failure so resyncs inside the cooldown leave the route (and the CA) alone, and
        raise for the work queue to retry it when the cooldown ends.

        An ``outage`` (the CA or the network failed, not this route's request) pauses every route.
        """
        key = _key(route)
        previous = self._failures.get(key)
        count = previous.count + 1 if previous else 1
        until = self.now() + self.settings.failure_cooldown
        self._failures[key] = Failure(routes.host(route), count, until)
        paused = ""
        if outage:
            self._paused_until = until
            paused = " Issuance for every route pauses until then."
        raise self._later(
            until,
            f"Could not issue a certificate for route {routes.identity(route)} (host {routes.host(route)}) "
            f"from issuer {self.issuer.name}: {_sentence(why)} "
            f"Not retried before {certificates.rfc3339(until)}.{paused}",
        )

    def _skip(self, route: Mapping[str, Any], reason: str) -> Result:
        """Say once (not on every resync) that an opted-in route cannot get a certificate."""
        if _key(route) in self._skipped:
            return None
        self._skipped.add(_key(route))
        return (
            f"Route {routes.identity(route)} asks for a certificate but {reason}; leaving it alone.",
            "WARNING",
        )

    # --- the sweep -----------------------------------------------------------------------------------

    def sweep(self, objects: Sequence[Mapping[str, Any]]) -> Optional[dict[str, int]]:
        """What the issuer keeps outside the routes (FreeIPA's hosts), against the hosts the opted-in
        routes ask for now; None for an issuer that keeps nothing (ACME, local: the certificate lives
        in the route)."""
        sweep = getattr(self.issuer, "sweep", None)
        if sweep is None:
            return None
        wanted = {
            routes.host(route).lower()
            for route in objects
            if routes.opted_in(route, self.settings) and routes.host(route)
        }
        with self._lock:
            try:
                counts: dict[str, int] = sweep(wanted, self.settings.revoke_on_delete)
            except IssuanceError as e:
                why = f"Could not sweep issuer {self.issuer.name} for leftovers of deleted routes: {e}"
                raise (TemporaryError(why) if e.retry else PermanentError(why)) from e
        return counts

    # --- DELETED -------------------------------------------------------------------------------------

    def _deleted(self, route: Mapping[str, Any]) -> Result:
        self._failures.pop(_key(route), None)
        self._skipped.discard(_key(route))
        if not routes.opted_in(route, self.settings) or not routes.ours(route, self.settings):
            return None
        cert = routes.current_certificate(route)
        serial = routes.notes(route).get(self.settings.annotation_key("serial"), "")
        if cert is not None and certificates.serial_hex(cert) != serial:
            cert = None  # someone replaced our certificate: never revoke theirs
        meta = routes.meta(route)
        gone = Deleted(
            str(meta.get("namespace", "")), str(meta.get("name", "")), routes.host(route), cert, serial
        )
        try:
            message = self.issuer.deleted(gone, self.settings.revoke_on_delete)
        except IssuanceError as e:
            why = (
                f"Could not clean up issuer {self.issuer.name} after route {routes.identity(route)} "
                f"was deleted: {e}"
            )
            raise (TemporaryError(why) if e.retry else PermanentError(why)) from e
        return (message, "INFO") if message else None


def _sentence(text: str) -> str:
    """Error texts end with or without a full stop; in our messages they always end with one."""
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _key(route: Mapping[str, Any]) -> tuple[str, str]:
    meta = routes.meta(route)
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))
