"""Where alerts go: Alertmanager's API v2, or a webhook taking JSON or Slack-style ``{"text": ...}``.

Sending runs on the watch thread, so it is bounded: a few quick retries with backoff, never more than
twice ``timeout`` per send, and after a send that failed for a reason retrying could cure (no
connection, a timeout, 5xx, 408, 429) the sink is left alone for a cool-down (5 s, doubling to 5 min)
during which alerts for it fail at once. Other answers (400, 401, 403, a TLS verification failure)
fail that send at once, without retries or cool-down. Every failure is an ERROR line naming the
alert and the object, and is counted; nothing is dropped silently.

Messages name a sink by scheme, host and port only: a Slack webhook's path is its secret, and the
exception text of requests/urllib3 carries the path, so it is never logged as is.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Sequence
from typing import Any, Callable, Optional

import requests

from . import alerts, settings

logger = logging.getLogger(__name__)

BACKOFF_INITIAL = 0.25
COOLDOWN_INITIAL = 5.0
COOLDOWN_MAX = 300.0
USER_AGENT = "event-watcher-alert"
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
_TLS = re.compile(r"(certificate verify failed[^'\")\]]*|wrong version number|[A-Z_]+_ERROR)")


class SinkError(Exception):
    """A send that did not get through; ``str()`` is safe to log (no URL path, no secret)."""


def describe(error: requests.RequestException, timeout: float) -> str:
    """One short phrase for a transport failure, without the URL that requests puts in its messages."""
    text = str(error)
    if isinstance(error, requests.Timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(error, requests.exceptions.SSLError):
        found = _TLS.search(text)
        return f"TLS failed ({found.group(1).strip() if found else 'handshake error'})"
    if isinstance(error, requests.ConnectionError):
        found = _ERRNO.search(text)
        return f"cannot connect ({found.group(1).strip() if found else 'connection failed'})"
    return type(error).__name__


class Poster:
    """POSTs JSON to one endpoint with TLS, auth, timeouts, bounded retries and a cool-down."""

    def __init__(
        self,
        endpoint: settings.Endpoint,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.endpoint = endpoint
        self._clock = clock
        self._sleep = sleep
        self._session = requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT
        self._down_until = 0.0
        self._cooldown = 0.0
        self._last_error = ""

    def close(self) -> None:
        self._session.close()

    def _auth(self) -> tuple[dict[str, str], Optional[tuple[str, str]]]:
        """Read the secret files at each send: mounted Secrets and bound tokens rotate underneath us."""
        e = self.endpoint
        try:
            if e.bearer_token_file:
                return {"Authorization": f"Bearer {settings.read_secret(e.bearer_token_file)}"}, None
            if e.basic_auth_user and e.basic_auth_password_file:
                return {}, (e.basic_auth_user, settings.read_secret(e.basic_auth_password_file))
        except OSError as error:
            raise SinkError(
                f"cannot read its credentials file ({error.strerror or type(error).__name__})"
            ) from None
        return {}, None

    def post(self, body: Any) -> None:
        """Deliver ``body`` or raise :class:`SinkError` once retries or the time budget run out."""
        now = self._clock()
        if now < self._down_until:
            raise SinkError(
                f"it is in a {self._cooldown:g} s cool-down after failing ({self._last_error}); "
                f"next try in {self._down_until - now:.1f} s"
            )
        payload = json.dumps(body, separators=(",", ":")).encode()
        headers, auth = self._auth()
        headers["Content-Type"] = "application/json"
        # Passed on each request: requests lets REQUESTS_CA_BUNDLE override a session's verify.
        verify: Any = self.endpoint.ca_file or True
        deadline = now + 2 * self.endpoint.timeout
        attempt = 0
        while True:
            attempt += 1
            problem, retry = self._attempt(payload, headers, auth, verify, deadline)
            if problem is None:
                self._cooldown = 0.0
                return
            delay = BACKOFF_INITIAL * 2 ** (attempt - 1) * random.uniform(0.8, 1.2)
            if not retry or attempt > self.endpoint.retries or self._clock() + delay >= deadline:
                if retry:  # down or overloaded, not merely refusing this payload: leave it alone a while
                    self._cooldown = (
                        min(COOLDOWN_MAX, self._cooldown * 2) if self._cooldown else COOLDOWN_INITIAL
                    )
                    self._down_until = self._clock() + self._cooldown
                    self._last_error = problem
                tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
                raise SinkError(f"{problem} after {tries}")
            logger.debug("Retrying the POST to %s in %.2f s: %s.", self.endpoint.display, delay, problem)
            self._sleep(delay)

    def _attempt(
        self, payload: bytes, headers: dict[str, str], auth: Any, verify: Any, deadline: float
    ) -> tuple[Optional[str], bool]:
        """One POST: (None, _) on success, else (what went wrong, whether trying again may help)."""
        timeout = max(0.1, min(self.endpoint.timeout, deadline - self._clock()))
        try:
            response = self._session.post(
                self.endpoint.url, data=payload, headers=headers, auth=auth, verify=verify, timeout=timeout
            )
        except requests.RequestException as error:
            return describe(error, timeout), not isinstance(error, requests.exceptions.SSLError)
        with response:
            if response.status_code < 300:
                return None, False
            excerpt = " ".join(response.text[:160].split())
            problem = f"HTTP {response.status_code}" + (f" {excerpt!r}" if excerpt else "")
            return problem, response.status_code >= 500 or response.status_code in (408, 429)


# --- payloads ---------------------------------------------------------------------------------------


def alertmanager_body(batch: Sequence[alerts.Alert]) -> Any:
    return [alert.to_json() for alert in batch]


def json_body(batch: Sequence[alerts.Alert]) -> Any:
    """Shaped like Alertmanager's own webhook payload, so receivers written for it read this too."""
    status = "firing" if any(not alert.resolved for alert in batch) else "resolved"
    return {
        "version": "1",
        "receiver": USER_AGENT,
        "status": status,
        "alerts": [{"status": alert.status, **alert.to_json()} for alert in batch],
    }


def slack_text(alert: alerts.Alert) -> str:
    """``[FIRING:warning] PodCrashLooping: BackOff: pod shop/web-1`` with the description under it."""
    state = "RESOLVED" if alert.resolved else f"FIRING:{alert.label('severity')}"
    summary = alert.annotation("summary") or f"{alert.label('kind')} {alert.label('name')}"
    text = f"[{state}] {alert.label('alertname')}: {summary}"
    description = alert.annotation("description")
    return f"{text}\n>{description}" if description and not alert.resolved else text


def slack_body(batch: Sequence[alerts.Alert]) -> Any:
    return {"text": "\n".join(slack_text(alert) for alert in batch)}


class Sink:
    """One destination: how to encode a batch, where to post it, and what it has already been told."""

    def __init__(
        self,
        name: str,
        poster: Poster,
        encode: Callable[[Sequence[alerts.Alert]], Any],
        tracker: alerts.Tracker,
        *,
        deduplicates: bool = False,
    ) -> None:
        self.name = name
        self.poster = poster
        self.encode = encode
        self.tracker = tracker
        self.failures = 0
        # Alertmanager: sending an alert again only refreshes it there (its own repeat_interval decides
        # about notifications); a webhook turns every send into a message someone reads.
        self.deduplicates = deduplicates

    def __str__(self) -> str:
        return f"{self.name} at {self.poster.endpoint.display}"

    def send(self, batch: Sequence[alerts.Alert]) -> None:
        try:
            self.poster.post(self.encode(batch))
        except SinkError:
            self.failures += 1
            raise

    def close(self) -> None:
        self.poster.close()


def build(config: settings.AlertSettings, *, clock: Callable[[], float] = time.monotonic) -> list[Sink]:
    sinks = []
    if config.alertmanager is not None:
        poster = Poster(config.alertmanager, clock=clock)
        tracker = alerts.Tracker(config.repeat_interval)
        sinks.append(Sink("Alertmanager", poster, alertmanager_body, tracker, deduplicates=True))
    if config.webhook is not None:
        encode = slack_body if config.webhook_format == "slack" else json_body
        poster = Poster(config.webhook, clock=clock)
        sinks.append(
            Sink(f"{config.webhook_format} webhook", poster, encode, alerts.Tracker(config.repeat_interval))
        )
    return sinks
