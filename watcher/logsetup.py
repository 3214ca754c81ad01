"""Logging: timestamped text or one JSON object per line, with a last line of defence for secrets.

Code never logs a token on purpose; ``RedactSecrets`` makes sure a token that slips into a message
anyway (an exception text, a plugin's careless f-string) still reaches no log line.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Optional

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "<redacted>"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


class RedactSecrets(logging.Filter):
    """Replace known secrets in the final message; the list is refreshed every few seconds."""

    def __init__(self, secrets: Callable[[], Sequence[str]], refresh: float = 5.0) -> None:
        super().__init__()
        self._source = secrets
        self._refresh = refresh
        self._secrets: Sequence[str] = ()
        self._read_at = float("-inf")

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self._read_at > self._refresh:
            self._secrets = [s for s in self._source() if len(s) >= 8]
            self._read_at = now
        if not self._secrets:
            return True
        message = record.getMessage()
        text = message + (self.formatter_text(record) if record.exc_info else "")
        if any(secret in text for secret in self._secrets):
            for secret in self._secrets:
                message = message.replace(secret, REDACTED)
            record.msg, record.args = message, None
            if record.exc_info:
                exc_text = self.formatter_text(record)
                for secret in self._secrets:
                    exc_text = exc_text.replace(secret, REDACTED)
                record.exc_text, record.exc_info = exc_text, None
        return True

    @staticmethod
    def formatter_text(record: logging.LogRecord) -> str:
        if record.exc_text is None and record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        return record.exc_text or ""


def configure(level: str, fmt: str, secrets: Optional[Callable[[], Sequence[str]]] = None) -> None:
    """(Re)configure the root logger once settings are known; safe to call twice."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_event_watcher", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._event_watcher = True  # type: ignore[attr-defined]
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter(TEXT_FORMAT)
        formatter.converter = time.gmtime
        formatter.default_msec_format = "%s.%03dZ"
        handler.setFormatter(formatter)
    if secrets is not None:
        handler.addFilter(RedactSecrets(secrets))
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # A library's warnings.warn is a log record too, so that with LOG_FORMAT=json every stderr line is JSON.
    logging.captureWarnings(True)
    # urllib3 logs every request line at DEBUG; nothing secret, but it drowns the watcher's own lines.
    logging.getLogger("urllib3").setLevel(max(logging.INFO, root.level))
