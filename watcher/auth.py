"""Where the bearer token comes from.

Bound serviceaccount tokens rotate (about hourly, kubelet rewrites the projected file), so a token read
once at start — what the 2017 original did — stops working after a while. ``FileToken`` re-reads its file
at least every ``max_age`` seconds and whenever the API answers 401.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Optional, Protocol

from watcher import errors

logger = logging.getLogger(__name__)


class TokenSource(Protocol):
    def token(self) -> Optional[str]:
        """The token to send now, or None for no Authorization header."""

    def refresh(self) -> bool:
        """Re-read after a 401; True if the token changed, so one retry is worth it."""


class NoToken:
    """Client-certificate authentication: no bearer token at all."""

    def token(self) -> Optional[str]:
        return None

    def refresh(self) -> bool:
        return False


class StaticToken:
    """A token given literally (env, ini or kubeconfig); it cannot change."""

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "StaticToken(<redacted>)"

    def token(self) -> Optional[str]:
        return self._value

    def refresh(self) -> bool:
        return False


class FileToken:
    """A token file, re-read when older than ``max_age`` seconds and on every 401."""

    def __init__(self, path: str, max_age: float = 60.0) -> None:
        self.path = path
        self.max_age = max_age
        self._lock = threading.Lock()
        self._value = self._read()
        self._read_at = time.monotonic()

    def __repr__(self) -> str:
        return f"FileToken({self.path!r})"

    def _read(self) -> str:
        try:
            with open(self.path, encoding="utf-8") as f:
                value = f.read().strip()
        except OSError as e:
            raise errors.ConfigError(
                f"cannot read token file {self.path}: {e.strerror}", exit_code=errors.EXIT_TOKEN
            ) from None
        if not value:
            raise errors.ConfigError(f"token file {self.path} is empty", exit_code=errors.EXIT_TOKEN)
        return value

    def token(self) -> Optional[str]:
        if time.monotonic() - self._read_at >= self.max_age:
            self._reload()
        return self._value

    def refresh(self) -> bool:
        return self._reload()

    def _reload(self) -> bool:
        with self._lock:
            self._read_at = time.monotonic()
            try:
                value = self._read()
            except errors.ConfigError as e:
                # Mid-rotation the file can be briefly missing; keep the old token and say so once.
                logger.warning("Keeping the current token: %s.", e)
                return False
            changed = value != self._value
            if changed:
                logger.info("Token file %s changed; using the new token.", self.path)
            self._value = value
            return changed
