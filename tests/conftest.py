"""Shared fixtures: the local API server, and a check that no token ever reaches a log record."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.harness import SECRETS
from watcher.localapi import LocalAPI


@pytest.fixture
def local_api() -> Iterator[LocalAPI]:
    api = LocalAPI(bookmark_interval=1.0).start()
    SECRETS.add(api.token)
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every test runs with logging at DEBUG; afterwards no record may contain a token it handed out."""
    caplog.set_level(logging.DEBUG)
    yield
    secrets = [s for s in SECRETS if s]
    for record in caplog.records:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"a token reached the log: {record.name} {record.levelname} {text[:80]!r}"
