# ruff: noqa: F811  (the server fixtures are imported by name and then requested as arguments)
"""The ``acme`` issuer against a real Pebble that validates DNS-01 through a real BIND9.

Pebble runs without ALWAYS_VALID and resolves ``_acme-challenge.<host>`` through the BIND the tests
start, so a certificate only comes back when the plugin really published the TXT record with a signed
RFC 2136 update (watcher.rfc2136, the DNS plugin's code and settings). Orders are counted in Pebble's
own log ("Issued certificate serial ...").
"""

from __future__ import annotations

import datetime
import logging
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import plugins.certs as certs_plugin
from plugins.certs import acme_issuer, certificates
from plugins.certs.issuer import Deleted, IssuanceError
from tests.certs_support import (
    ANNOTATION,
    OPT_IN,
    log_text,
    patches,
    plugin_watcher,
    route_certificate,
    serial_of,
    verify_chain,
)
from tests.harness import route, running_watcher, wait_until
from tests.servers.bind import BindServer, bind_factory, bind_server  # noqa: F401
from tests.servers.pebble import PebbleServer, pebble, start_pebble  # noqa: F401
from tests.servers.testca import TestCA
from watcher import TemporaryError

NS = "demo"
HOST = "web.apps.example.test"


def section(server: PebbleServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A [plugin_certs] section for Pebble, with the DNS plugin's keys for the BIND it validates with."""
    bind = server.bind
    return {
        "issuer": "acme",
        "acme_directory": server.directory,
        "acme_ca_bundle": str(server.tls_ca_file),
        "acme_account_key_file": str(tmp_path / "acme-account.pem"),
        "acme_email": "platform@example.test",
        "dns_server": bind.host,
        "dns_port": str(bind.port),
        "dns_key_file": str(bind.key_file),
        **extra,
    }


def check_acme_certificate(obj: dict, server: PebbleServer, host: str) -> None:
    leaf, chain, key = route_certificate(obj)
    (root,) = server.roots()
    path = verify_chain(leaf, chain, root, host)
    assert path[0] == leaf and path[-1] == root and len(path) == 3  # leaf, Pebble intermediate, root
    assert certificates.dns_names(leaf) == [host]
    assert certificates.key_matches(leaf, key)
    assert obj["metadata"]["annotations"][f"{ANNOTATION}.serial"] == certificates.serial_hex(leaf)
    assert server.cert_status(certificates.serial_hex(leaf))["Status"] == "Valid"


def no_challenge_left(bind: BindServer, *hosts: str) -> bool:
    return all(bind.query(f"_acme-challenge.{host}", "TXT") == [] for host in hosts)


def test_acme_end_to_end(local_api, pebble, tmp_path, caplog) -> None:
    ini = {"plugin_certs": section(pebble, tmp_path, revoke_on_delete="true")}
    with running_watcher(
        local_api, namespace=NS, plugins="certs", ini=ini, env={"WATCHER_RESYNC_PERIOD": "1"}
    ) as w:
        # annotated route -> certificate for its host from Pebble -> route patched
        local_api.create("routes", route("web", NS, HOST, annotations=OPT_IN))
        web = wait_until(
            lambda: (r := local_api.get("routes", NS, "web"))["spec"].get("tls") and r,
            timeout=60,
            what="web's certificate from Pebble",
        )
        check_acme_certificate(web, pebble, HOST)
        assert pebble.orders_finalized() == 1

        # our own patch (and resyncs) order nothing more: once a later route has its certificate, every
        # event before it was handled, and Pebble has issued exactly one more certificate
        local_api.create("routes", route("later", NS, "later.apps.example.test", annotations=OPT_IN))
        wait_until(lambda: local_api.get("routes", NS, "later")["spec"].get("tls"), timeout=60, what="later")
        assert pebble.orders_finalized() == 2
        assert patches(local_api, "web") == 1

        # host change -> a new certificate for the new host
        local_api.patch("routes", NS, "web", {"spec": {"host": "shop.apps.example.test"}})
        moved = wait_until(
            lambda: (r := local_api.get("routes", NS, "web")) and serial_of(r) != serial_of(web) and r,
            timeout=60,
            what="a certificate for shop.apps.example.test",
        )
        check_acme_certificate(moved, pebble, "shop.apps.example.test")
        assert pebble.orders_finalized() == 3

        # near expiry -> renewed: a certificate of ours with one day left of thirty
        old_ca = TestCA.create("An issuer we used before")
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        old = old_ca.sign(
            key.public_key(),
            common_name="old.apps.example.test",
            dns_names=("old.apps.example.test",),
            not_before=now - datetime.timedelta(days=29),
            not_after=now + datetime.timedelta(days=1),
        )
        notes = {
            **OPT_IN,
            f"{ANNOTATION}.state": "created",
            f"{ANNOTATION}.serial": certificates.serial_hex(old),
        }
        tls = {
            "termination": "edge",
            "certificate": certificates.to_pem(old),
            "key": certificates.key_to_pem(key),
        }
        local_api.create("routes", route("old", NS, "old.apps.example.test", annotations=notes, tls=tls))
        renewed = wait_until(
            lambda: (
                (r := local_api.get("routes", NS, "old"))
                and serial_of(r) != certificates.serial_hex(old)
                and r
            ),
            timeout=60,
            what="the renewal of old",
        )
        check_acme_certificate(renewed, pebble, "old.apps.example.test")
        assert pebble.orders_finalized() == 4

        # deleted -> revoked at the CA (revoke_on_delete = true)
        serial = serial_of(moved)
        local_api.delete("routes", NS, "web")
        wait_until(
            lambda: pebble.cert_status(serial)["Status"] == "Revoked", timeout=30, what="the revocation"
        )
        assert w.errors == 0

    assert no_challenge_left(pebble.bind, HOST, "later.apps.example.test", "shop.apps.example.test")
    assert pebble.orders_finalized() == 4
    text = log_text(caplog.records)
    for obj in (web, moved, renewed):
        assert obj["spec"]["tls"]["key"] not in text
        assert obj["spec"]["tls"]["key"].splitlines()[1] not in text
    account_key = Path(ini["plugin_certs"]["acme_account_key_file"]).read_text()
    assert account_key.splitlines()[1] not in text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_account_key_is_created_private_and_reused(pebble, tmp_path, caplog) -> None:
    config = section(pebble, tmp_path)
    key_file = Path(config["acme_account_key_file"])
    first = acme_issuer.ACMEIssuer.from_config(config)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    content = key_file.read_bytes()
    key = certificates.generate_key("rsa")
    signed = first.issue(HOST, certificates.build_csr(key, HOST))
    # a restart reads the same key and finds the same account (revocation needs that account)
    second = acme_issuer.ACMEIssuer.from_config(config)
    assert key_file.read_bytes() == content
    gone = Deleted(NS, "web", HOST, signed.leaf, certificates.serial_hex(signed.leaf))
    assert "Revoked certificate" in (second.deleted(gone, revoke=True) or "")
    assert pebble.cert_status(certificates.serial_hex(signed.leaf))["Status"] == "Revoked"
    assert "Using the existing ACME account" in caplog.text
    assert no_challenge_left(pebble.bind, HOST)

    key_file.chmod(0o644)
    caplog.clear()
    acme_issuer.ACMEIssuer.from_config(config)
    assert any(str(key_file) in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_a_zone_the_dns_server_does_not_serve_fails_cleanly(pebble, tmp_path) -> None:
    issuer = acme_issuer.ACMEIssuer.from_config(section(pebble, tmp_path))
    key = certificates.generate_key("rsa")
    with pytest.raises(IssuanceError) as caught:
        issuer.issue("web.elsewhere.test", certificates.build_csr(key, "web.elsewhere.test"))
    assert "The ACME challenge record for web.elsewhere.test could not be written" in str(caught.value)
    assert not caught.value.retry
    assert pebble.orders_finalized() == 0


def test_an_update_the_server_refuses_is_reported_and_nothing_is_left(bind_factory, tmp_path) -> None:
    bind = bind_factory(zones=("apps.example.test",), readonly_zones=("locked.example.test",))
    server = start_pebble(tmp_path / "pebble", bind)
    try:
        issuer = acme_issuer.ACMEIssuer.from_config(section(server, tmp_path))
        key = certificates.generate_key("rsa")
        with pytest.raises(IssuanceError, match="REFUSED"):
            issuer.issue("web.locked.example.test", certificates.build_csr(key, "web.locked.example.test"))
        # the next order, for a name in the updatable zone, works: a failure leaves no broken state
        signed = issuer.issue(HOST, certificates.build_csr(key, HOST))
        assert certificates.dns_names(signed.leaf) == [HOST]
        assert no_challenge_left(bind, HOST)
    finally:
        server.stop()


def test_an_unreachable_ca_is_retried_then_reported(local_api, pebble, tmp_path, caplog) -> None:
    config = section(pebble, tmp_path, issue_attempts="3", issue_backoff="0.1s")
    pebble.stop()
    obj = local_api.create("routes", route("web", NS, HOST, annotations=OPT_IN))
    with plugin_watcher(local_api, tmp_path, NS) as watcher:
        certs_plugin.init(
            watcher, config
        )  # the directory is fetched on first use: a CA outage is no startup error
        try:
            with pytest.raises(TemporaryError) as raised:
                certs_plugin.handle_event(watcher, {"type": "ADDED", "object": obj}, config)
            message = str(raised.value)
            assert "cannot be reached" in message and "after 3 attempts" in message
            assert len([r for r in caplog.records if "Attempt" in r.getMessage()]) == 2
            assert "Issuance for every route pauses until then." in message
            assert raised.value.delay is not None and raised.value.delay > 0  # retried after the cooldown
            # within the cooldown, resyncs leave the route (and the CA) alone, and so do other routes:
            # an outage costs one route's attempts, not one round per route
            with pytest.raises(TemporaryError, match="waiting until"):
                certs_plugin.handle_event(watcher, {"type": "MODIFIED", "object": obj}, config)
            other = local_api.create(
                "routes", route("other", NS, "other.apps.example.test", annotations=OPT_IN)
            )
            caplog.clear()
            with pytest.raises(TemporaryError, match="issuer acme is paused until"):
                certs_plugin.handle_event(watcher, {"type": "ADDED", "object": other}, config)
            assert not [r for r in caplog.records if "Attempt" in r.getMessage()]
        finally:
            certs_plugin.close()
    assert patches(local_api, "web") == 0


def test_settings_problems_are_reported_together(tmp_path) -> None:
    with pytest.raises(ValueError) as caught:
        acme_issuer.ACMESettings.from_config(
            {"acme_timeout": "soon", "acme_ca_bundle": str(tmp_path / "none")}
        )
    message = str(caught.value)
    for needed in (
        "acme_directory is required",
        "acme_account_key_file is required",
        "acme_timeout",
        "acme_ca_bundle",
    ):
        assert needed in message
