"""One exception hierarchy for the whole daemon.

Fatal errors carry the process exit code they map to; ``cli`` is the only place that turns them into
``sys.exit``. The codes 31–34 keep the meaning they had in the 2017 original so that existing
Deployments and scripts that look at them keep working.
"""

from __future__ import annotations

from typing import Any, Optional

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_RESOURCE = 31
EXIT_NAMESPACE = 32
EXIT_ENDPOINT = 33
EXIT_TOKEN = 34
EXIT_PLUGIN = 35


class WatcherError(Exception):
    """Base of every error the daemon raises on purpose; ``str()`` is a whole one-line sentence."""

    exit_code: int = EXIT_FAILURE


# --- configuration: fatal at start-up --------------------------------------------------------------


class ConfigError(WatcherError):
    """The settings cannot be used. Carries every problem found, so the user fixes them in one go."""

    exit_code = EXIT_USAGE

    def __init__(
        self, problems: list[tuple[int, str]] | str, exit_code: Optional[int] = None, partial: Any = None
    ):
        if isinstance(problems, str):
            problems = [(exit_code if exit_code is not None else type(self).exit_code, problems)]
        self.problems = list(problems)
        # What could be resolved despite the problems (a config.Settings with gaps), for --check-config:
        # an incomplete configuration is exactly when a user asks where each value came from.
        self.partial = partial
        # The first problem decides the exit code: callers put the most specific one first.
        self.exit_code = self.problems[0][0]
        super().__init__("; ".join(message for _, message in self.problems))


class UsageError(ConfigError):
    """Bad command line or unreadable config file."""

    exit_code = EXIT_USAGE


class ResourceError(ConfigError):
    """The watched resource is missing from the settings or unknown to the API server."""

    exit_code = EXIT_RESOURCE


class PluginError(ConfigError):
    """A plugin cannot be found, does not honour the contract, or refused its configuration."""

    exit_code = EXIT_PLUGIN


# --- talking to the API server ---------------------------------------------------------------------


class APIError(WatcherError):
    """An HTTP answer from the API server that is not a success.

    Named for what the caller does next: the informer retries, relists or re-reads the token
    depending on the subclass. ``body`` is a truncated excerpt, never a whole object (routes carry
    private keys).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        reason: str = "",
        body: str = "",
        retry_after: Optional[float] = None,
        causes: tuple[str, ...] = (),
    ):
        self.status = status
        self.reason = reason
        self.body = body[:200]
        self.retry_after = retry_after
        self.causes = causes  # the Status's details.causes[].reason, e.g. ResourceVersionTooLarge
        super().__init__(message)


class Unauthorized(APIError):
    """401: the token is missing, wrong or expired; re-read it and try again."""


class Forbidden(APIError):
    """403: the serviceaccount lacks a permission; the message names the verb and resource."""


class NotFound(APIError):
    """404: the object or the resource does not exist."""


class Conflict(APIError):
    """409: optimistic concurrency lost (a stale resourceVersion on update)."""


class Gone(APIError):
    """410: the resourceVersion we asked for was compacted away; relist."""


class Throttled(APIError):
    """429: too many requests; wait ``retry_after`` seconds."""


class ServerError(APIError):
    """5xx: the API server or something in front of it failed; back off and retry."""


class TransportError(WatcherError):
    """No HTTP answer at all: connection refused, DNS, TLS, reset or timeout."""


# --- raised by plugins, never fatal: they tell the work queue what to do with a failed object ---------


class TemporaryError(Exception):
    """The object could not be handled now; retry it after ``delay`` seconds (None: the usual backoff).

    Any other exception from ``handle_event`` is retried with the usual per-object backoff too; this one
    lets a plugin that knows better (a server's Retry-After, an ACME order still pending) say when.
    """

    def __init__(self, message: str = "", delay: Optional[float] = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(Exception):
    """The object cannot be handled as it is (an invalid host name, a refused request): log it, count
    it, and do not retry until the object changes."""
