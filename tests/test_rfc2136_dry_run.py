# ruff: noqa: F811  (the BIND fixtures are imported by name and then requested as arguments)
"""Updater in dry-run against real BIND9: prerequisites are checked, nothing changes, the update is logged."""

from __future__ import annotations

import logging

import dns.rdatatype
import pytest

from tests.servers.bind import BindServer, bind_factory, bind_server  # noqa: F401
from watcher import rfc2136


def dry_updater(bind: BindServer) -> rfc2136.Updater:
    return rfc2136.Updater(rfc2136.DNSServer(bind.host, bind.port, bind.key, 2.0), bind.zone, dry_run=True)


def test_dry_run_changes_nothing_and_logs_every_record(
    bind_server: BindServer, caplog: pytest.LogCaptureFixture
) -> None:
    up = dry_updater(bind_server)
    serial = bind_server.serial()
    host = f"shop.{bind_server.zone}"
    update = up.new_update()
    update.absent(up.name(host))
    update.add(up.name(host), 60, dns.rdatatype.A, "10.0.0.1")
    update.add(up.name(f"_owner.{host}"), 60, rfc2136.txt_rdata("owner=event-watcher"))
    with caplog.at_level(logging.INFO, logger="watcher.rfc2136"):
        up.send(update)
    assert bind_server.serial() == serial
    assert bind_server.query(host, "A") == []
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"{host}. 60 IN A 10.0.0.1" in logged
    assert "owner=event-watcher" in logged
    assert f"prerequisites: {host}. NONE ANY" in logged  # the prerequisite: the name must not exist


def test_dry_run_still_raises_when_prerequisites_fail(bind_server: BindServer) -> None:
    up = dry_updater(bind_server)
    serial = bind_server.serial()
    update = up.new_update()
    update.present(up.name(f"missing.{bind_server.zone}"))
    update.add(up.name(f"missing.{bind_server.zone}"), 60, dns.rdatatype.A, "10.0.0.2")
    with pytest.raises(rfc2136.PrerequisiteFailed):
        up.send(update)
    assert bind_server.serial() == serial
