"""The certificates plugin with the ``local`` issuer against the local Kubernetes API.

The first part calls ``handle_event`` with the real client and PluginAPI (tests.certs_support) so that
each case controls exactly which event arrives; the second part runs the real watcher end to end. Every
certificate is checked with real X.509 path validation, its SAN, its key and its validity.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import plugins.certs as certs_plugin
from plugins.certs import certificates
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
from tests.servers.testca import TestCA
from watcher import errors
from watcher.localapi import LocalAPI

NS = "demo"
HOST = "web.apps.example.test"


@pytest.fixture
def ca(tmp_path: Path) -> tuple[TestCA, dict[str, str]]:
    authority = TestCA.create("Local Test CA", rsa_key=True)
    cert_path, key_path = authority.write(tmp_path, "local-ca")
    section = {
        "issuer": "local",
        "local_ca_cert": str(cert_path),
        "local_ca_key": str(key_path),
        "local_validity_days": "30",
    }
    return authority, section


@pytest.fixture
def direct(local_api: LocalAPI, tmp_path: Path, ca) -> Iterator:
    """handle_event(watcher, event, config) with the plugin initialised on the real PluginAPI."""
    _, section = ca
    with plugin_watcher(local_api, tmp_path, NS) as watcher:
        certs_plugin.init(watcher, section)
        try:
            yield lambda kind, obj: certs_plugin.handle_event(watcher, {"type": kind, "object": obj}, section)
        finally:
            certs_plugin.close()


def check_certificate(obj: dict, authority: TestCA, host: str, days: int = 30) -> None:
    """The route carries a leaf for ``host`` that validates to the CA, with its key, valid for ``days``."""
    leaf, chain, key = route_certificate(obj)
    assert verify_chain(leaf, chain, authority.cert, host)[-1] == authority.cert
    assert certificates.dns_names(leaf) == [host]
    assert certificates.key_matches(leaf, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    assert leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc
    assert datetime.timedelta(days=days - 1) < leaf.not_valid_after_utc - now <= datetime.timedelta(days=days)
    notes = obj["metadata"]["annotations"]
    assert notes[f"{ANNOTATION}.state"] == "created"
    assert notes[f"{ANNOTATION}.serial"] == certificates.serial_hex(leaf)
    assert notes[f"{ANNOTATION}.not-after"] == certificates.rfc3339(leaf.not_valid_after_utc)
    assert notes[f"{ANNOTATION}.issuer"] == "local"


# --- event by event ----------------------------------------------------------------------------------


def test_issue_patch_and_no_second_issuance_for_our_own_or_stale_events(
    local_api, direct, ca, caplog
) -> None:
    authority, _ = ca
    created = local_api.create("routes", route("web", NS, HOST, annotations=OPT_IN))
    message, level = direct("ADDED", created)
    assert (
        level == "INFO"
        and "Issued a certificate for route demo/web" in message
        and "it has no certificate" in message
    )
    patched = local_api.get("routes", NS, "web")
    check_certificate(patched, authority, HOST)
    assert patched["spec"]["tls"]["termination"] == "edge"
    assert patched["spec"]["tls"]["insecureEdgeTerminationPolicy"] == "Redirect"
    assert patches(local_api, "web") == 1

    assert direct("MODIFIED", patched) is None  # the event our own patch caused
    assert direct("MODIFIED", created) is None  # an event queued before our patch: the fresh GET says done
    assert direct("MODIFIED", local_api.get("routes", NS, "web")) is None
    assert patches(local_api, "web") == 1
    assert certificates.key_to_pem(route_certificate(patched)[2]) not in log_text(caplog.records)


def test_routes_without_the_annotation_are_never_touched(local_api, direct) -> None:
    for notes in ({}, {ANNOTATION: "false"}):
        local_api.clear_requests()
        obj = local_api.create("routes", route(f"plain{len(notes)}", NS, annotations=notes))
        assert direct("ADDED", obj) is None
        assert direct("DELETED", obj) is None
        assert local_api.requests_seen() == []  # not even a GET


def test_host_change_gets_a_new_certificate(local_api, direct, ca) -> None:
    authority, _ = ca
    direct("ADDED", local_api.create("routes", route("web", NS, HOST, annotations=OPT_IN)))
    first = serial_of(local_api.get("routes", NS, "web"))
    moved = local_api.patch("routes", NS, "web", {"spec": {"host": "shop.apps.example.test"}})
    message, _ = direct("MODIFIED", moved)
    assert "its certificate does not cover shop.apps.example.test" in message
    now = local_api.get("routes", NS, "web")
    check_certificate(now, authority, "shop.apps.example.test")
    assert serial_of(now) != first
    assert patches(local_api, "web") == 2


def test_near_expiry_is_renewed_and_termination_is_kept(local_api, direct, ca) -> None:
    authority, _ = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    old = authority.sign(
        key.public_key(),
        common_name=HOST,
        dns_names=(HOST,),
        not_before=now - datetime.timedelta(days=29),
        not_after=now + datetime.timedelta(days=1),
    )
    tls = {
        "termination": "reencrypt",
        "certificate": certificates.to_pem(old),
        "key": certificates.key_to_pem(key),
        "destinationCACertificate": certificates.to_pem(authority.cert),
    }
    notes = {**OPT_IN, f"{ANNOTATION}.state": "created", f"{ANNOTATION}.serial": certificates.serial_hex(old)}
    message, _ = direct(
        "ADDED", local_api.create("routes", route("web", NS, HOST, annotations=notes, tls=tls))
    )
    assert "within renew_before" in message
    renewed = local_api.get("routes", NS, "web")
    check_certificate(renewed, authority, HOST)
    assert serial_of(renewed) != certificates.serial_hex(old)
    assert renewed["spec"]["tls"]["termination"] == "reencrypt"
    assert "insecureEdgeTerminationPolicy" not in renewed["spec"]["tls"]
    assert renewed["spec"]["tls"]["destinationCACertificate"] == tls["destinationCACertificate"]


def test_a_key_that_does_not_match_or_a_foreign_certificate_is_replaced(local_api, direct, ca) -> None:
    authority, _ = ca
    direct("ADDED", local_api.create("routes", route("web", NS, HOST, annotations=OPT_IN)))
    stranger = certificates.key_to_pem(certificates.generate_key("rsa"))
    broken = local_api.patch("routes", NS, "web", {"spec": {"tls": {"key": stranger}}})
    message, _ = direct("MODIFIED", broken)
    assert "its private key does not match its certificate" in message
    check_certificate(local_api.get("routes", NS, "web"), authority, HOST)

    other = TestCA.create("Someone else's CA")
    key = ec.generate_private_key(ec.SECP256R1())
    theirs = other.sign(key.public_key(), common_name=HOST, dns_names=(HOST,))
    replaced = local_api.patch(
        "routes",
        NS,
        "web",
        {"spec": {"tls": {"certificate": certificates.to_pem(theirs), "key": certificates.key_to_pem(key)}}},
    )
    message, _ = direct("MODIFIED", replaced)
    assert "its certificate was not issued by this plugin" in message
    check_certificate(local_api.get("routes", NS, "web"), authority, HOST)


def test_passthrough_is_reported_once_and_left_alone(local_api, direct) -> None:
    obj = local_api.create(
        "routes", route("pass", NS, annotations=OPT_IN, tls={"termination": "passthrough"})
    )
    message, level = direct("ADDED", obj)
    assert level == "WARNING" and "passthrough" in message
    assert direct("MODIFIED", obj) is None  # not again on every resync
    assert patches(local_api, "pass") == 0


def test_a_route_deleted_before_issuance_is_skipped(local_api, direct) -> None:
    obj = local_api.create("routes", route("web", NS, HOST, annotations=OPT_IN))
    local_api.delete("routes", NS, "web")
    assert direct("ADDED", obj) is None
    assert patches(local_api, "web") == 0


def test_bad_settings_stop_the_plugin_at_start(local_api, tmp_path) -> None:
    with plugin_watcher(local_api, tmp_path, NS) as watcher, pytest.raises(ValueError) as caught:
        certs_plugin.init(watcher, {"issuer": "local", "key_type": "dsa"})
    assert "key_type" in str(caught.value)
    with plugin_watcher(local_api, tmp_path, NS) as watcher, pytest.raises(ValueError, match="local_ca_cert"):
        certs_plugin.init(watcher, {"issuer": "local"})
    services = SimpleNamespace(api=object(), config=SimpleNamespace(resource="services"))
    with pytest.raises(errors.PluginError, match="k8s_resource = services"):
        certs_plugin.init(services, {"issuer": "local"})


# --- end to end through the real watcher ----------------------------------------------------------------


def test_local_issuer_end_to_end(local_api, ca, caplog) -> None:
    authority, section = ca
    ini = {"plugin_certs": {**section, "key_type": "ecdsa"}}
    with running_watcher(
        local_api, namespace=NS, plugins="certs", ini=ini, env={"WATCHER_RESYNC_PERIOD": "1"}
    ) as w:
        local_api.create("routes", route("web", NS, HOST, annotations=OPT_IN))
        local_api.create("routes", route("plain", NS, "plain.apps.example.test"))
        web = wait_until(
            lambda: (r := local_api.get("routes", NS, "web"))["spec"].get("tls") and r,
            what="web's certificate",
        )
        check_certificate(web, authority, HOST)
        assert route_certificate(web)[2].curve.name == "secp256r1"

        # Our own patch, an unrelated change and resyncs issue nothing more. Events arrive in order, so
        # once a route created afterwards has its certificate, every earlier event has been handled.
        local_api.patch("routes", NS, "web", {"metadata": {"labels": {"tier": "front"}}})
        local_api.create("routes", route("later", NS, "later.apps.example.test", annotations=OPT_IN))
        wait_until(
            lambda: local_api.get("routes", NS, "later")["spec"].get("tls"), what="later's certificate"
        )
        assert patches(local_api, "web") == 1
        assert "tls" not in local_api.get("routes", NS, "plain")["spec"]
        assert patches(local_api, "plain") == 0

        first = serial_of(web)
        local_api.patch("routes", NS, "web", {"spec": {"host": "shop.apps.example.test"}})
        moved = wait_until(
            lambda: (r := local_api.get("routes", NS, "web")) and serial_of(r) != first and r,
            what="a certificate for the new host",
        )
        check_certificate(moved, authority, "shop.apps.example.test")
        local_api.delete("routes", NS, "web")
        assert w.errors == 0
    assert patches(local_api, "web") == 2
    text = log_text(caplog.records)
    assert "Issued a certificate for route demo/web" in text
    for obj in (web, moved):
        assert obj["spec"]["tls"]["key"] not in text
        assert obj["spec"]["tls"]["key"].splitlines()[1] not in text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
