"""The ``ipa`` issuer against the FreeIPA JSON-RPC stand-in (tests/servers/freeipa.py).

FreeIPA itself cannot run here; the stand-in enforces what FreeIPA enforces (Referer, form-encoded login,
session cookie, principal and CN checks) and answers with FreeIPA's documented shapes and error codes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

import plugins.certs as certs_plugin
from plugins.certs import certificates, ipa
from plugins.certs.issuer import Deleted, IssuanceError
from tests.certs_support import OPT_IN, log_text, patches, plugin_watcher, route_certificate, verify_chain
from tests.harness import SECRETS, route, running_watcher, wait_until
from tests.servers.freeipa import FreeIPAStandIn, freeipa  # noqa: F401
from watcher import TemporaryError

HOST = "web.apps.example.test"
NS = "demo"


def ipa_config(server: FreeIPAStandIn, **extra: str) -> dict[str, str]:
    SECRETS.add(server.users["admin"])
    return {
        "issuer": "ipa",
        "ipa_url": server.url,
        "ipa_user": "admin",
        "ipa_password": server.users["admin"],
        "ipa_realm": server.realm,
        "ipa_ca_cert": str(server.ca_file),
        **extra,
    }


def make_issuer(
    server: FreeIPAStandIn, resolvable: frozenset[str] = frozenset(), **extra: str
) -> ipa.IPAIssuer:
    return ipa.IPAIssuer(
        ipa.IPASettings.from_config(ipa_config(server, **extra)), resolver=resolvable.__contains__
    )


def request(issuer: ipa.IPAIssuer, host: str = HOST, route: tuple[str, str] = ("demo", "web")):
    key = certificates.generate_key("rsa")
    return issuer.issue(host, certificates.build_csr(key, host), route), key


def claim(name: str = "web", owner: str = "event-watcher") -> str:
    return f"heritage=event-watcher,event-watcher/owner={owner},event-watcher/resource=route/demo/{name}"


def assert_no_secrets(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in secrets:
        assert secret not in text


def test_issue_adds_the_host_with_force_and_returns_a_verified_chain(freeipa, caplog) -> None:  # noqa: F811
    issuer = make_issuer(freeipa)
    signed, key = request(issuer)
    assert freeipa.methods() == ["host_add", "cert_request"]
    _, args, options = freeipa.calls[0]
    # the name does not resolve: force; the description claims the host for this owner and route
    assert args == [HOST] and options == {"force": True, "description": claim(), "version": "2.230"}
    assert freeipa.hosts[HOST]["description"] == [claim()]
    _, args, options = freeipa.calls[1]
    assert options["principal"] == f"host/{HOST}@EXAMPLE.TEST"
    assert x509.load_pem_x509_csr(args[0].encode()).subject.rfc4514_string() == f"CN={HOST}"
    assert freeipa.logins == [("admin", True)]
    # base64 DER from FreeIPA became a real certificate that chains to the IPA CA for the host
    assert certificates.key_matches(signed.leaf, key)
    assert signed.chain == (freeipa.ca.cert,)
    verifier = PolicyBuilder().store(Store([freeipa.ca.cert])).build_server_verifier(x509.DNSName(HOST))
    verifier.verify(signed.leaf, list(signed.chain))
    assert freeipa.certificates[signed.leaf.serial_number].host == HOST
    assert_no_secrets(caplog, freeipa.users["admin"], certificates.key_to_pem(key))


def test_an_existing_host_is_fine_and_a_resolving_name_is_added_without_force(freeipa) -> None:  # noqa: F811
    issuer = make_issuer(freeipa, resolvable=frozenset({HOST}))
    freeipa.resolvable.add(HOST)
    request(issuer)
    assert "force" not in freeipa.calls[0][2]  # FreeIPA checks the name itself
    request(issuer)  # the second time host_add answers DuplicateEntry 4002: host_show says it is ours
    assert freeipa.methods() == ["host_add", "cert_request", "host_add", "host_show", "cert_request"]
    assert len(freeipa.certificates) == 2


def test_dns_not_a_record_is_reported_with_name_code_and_message(freeipa) -> None:  # noqa: F811
    # Our resolver thinks the name resolves, FreeIPA's does not: FreeIPA answers 4019.
    issuer = make_issuer(freeipa, resolvable=frozenset({HOST}))
    with pytest.raises(ipa.IPAError) as caught:
        request(issuer)
    error = caught.value
    assert (error.name, error.code) == ("DNSNotARecordError", 4019)
    assert str(error) == (
        f"FreeIPA host_add failed: DNSNotARecordError (4019): "
        f"Host '{HOST}' does not have corresponding DNS A/AAAA record"
    )
    assert not error.retry
    assert freeipa.methods() == ["host_add"]


def test_not_found_for_an_unknown_principal(freeipa) -> None:  # noqa: F811
    issuer = make_issuer(freeipa)
    key = certificates.generate_key("ecdsa")
    with pytest.raises(ipa.IPAError) as caught:
        issuer.client.call(
            "cert_request",
            [certificates.build_csr(key, HOST).decode()],
            {"principal": issuer.principal(HOST)},
        )
    assert (caught.value.name, caught.value.code) == ("NotFound", 4001)
    assert "The principal for this request doesn't exist." in str(caught.value)


def test_an_expired_session_logs_in_again_once(freeipa) -> None:  # noqa: F811
    issuer = make_issuer(freeipa)
    request(issuer)
    freeipa.expire_sessions()
    request(issuer, "shop.apps.example.test")
    assert freeipa.logins == [("admin", True), ("admin", True)]
    assert freeipa.methods() == ["host_add", "cert_request", "host_add", "cert_request"]


def test_bad_credentials_are_final_and_never_logged(freeipa, caplog) -> None:  # noqa: F811
    wrong = "Wrong-" + os.urandom(6).hex()
    SECRETS.add(wrong)
    issuer = ipa.IPAIssuer(ipa.IPASettings.from_config({**ipa_config(freeipa), "ipa_password": wrong}))
    with pytest.raises(IssuanceError) as caught:
        request(issuer)
    assert not caught.value.retry
    assert "refused the login of user 'admin': invalid-password (HTTP 401)" in str(caught.value)
    assert wrong not in str(caught.value)
    assert freeipa.logins == [("admin", False)]
    assert freeipa.calls == []
    assert_no_secrets(caplog, wrong, freeipa.users["admin"])


def test_deleted_route_removes_the_host_which_revokes_its_certificates(freeipa) -> None:  # noqa: F811
    issuer = make_issuer(freeipa)
    signed, _ = request(issuer)
    serial = certificates.serial_hex(signed.leaf)
    gone = Deleted("demo", "web", HOST, signed.leaf, serial)
    assert issuer.deleted(gone, revoke=False) == (
        f"Removed host {HOST} of deleted route demo/web from FreeIPA (which revokes its certificates)."
    )
    assert HOST not in freeipa.hosts
    assert freeipa.certificates[signed.leaf.serial_number].revoked == 4  # superseded, as host_del does
    # a second DELETED (at-least-once delivery after a restart): NotFound 4001 is fine
    assert "already gone" in (issuer.deleted(gone, revoke=False) or "")
    assert freeipa.calls[-1][:2] == ("host_show", [HOST])


def test_keep_the_host_but_revoke_when_asked(freeipa) -> None:  # noqa: F811
    issuer = make_issuer(freeipa, ipa_delete_host="false")
    signed, _ = request(issuer)
    gone = Deleted("demo", "web", HOST, signed.leaf, certificates.serial_hex(signed.leaf))
    assert issuer.deleted(gone, revoke=False) is None
    assert "Revoked certificate" in (issuer.deleted(gone, revoke=True) or "")
    assert HOST in freeipa.hosts
    assert freeipa.certificates[signed.leaf.serial_number].revoked == 5
    assert freeipa.calls[-1] == (
        "cert_revoke",
        [signed.leaf.serial_number],
        {"revocation_reason": 5, "version": "2.230"},
    )


def test_settings_problems_are_reported_together() -> None:
    with pytest.raises(ValueError) as caught:
        ipa.IPASettings.from_config({"ipa_url": "http://ipa.example.test"})
    message = str(caught.value)
    for needed in ("must start with https://", "ipa_user", "ipa_realm", "ipa_password or ipa_password_file"):
        assert needed in message
    config = ipa.IPASettings.from_config(
        {"ipa_url": "https://ipa.example.test/", "ipa_user": "u", "ipa_password": "pw-42", "ipa_realm": "R"}
    )
    assert config.url == "https://ipa.example.test/ipa"
    assert config.password == "pw-42" and "pw-42" not in repr(config)


def test_password_file_and_permission_warnings(freeipa, tmp_path: Path, caplog) -> None:  # noqa: F811
    password_file = tmp_path / "ipa-password"
    password_file.write_text(freeipa.users["admin"] + "\n")
    password_file.chmod(0o644)
    config = {**ipa_config(freeipa), "ipa_password_file": str(password_file)}
    del config["ipa_password"]
    issuer = ipa.IPAIssuer.from_config(config)
    request(issuer)  # the password from the file logs in
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(password_file) in w and "readable by every user" in w for w in warnings)

    # an inline password in a config file others can read: a startup warning naming the file
    caplog.clear()
    ini = tmp_path / "config.ini"
    ini.write_text("[plugin_certs]\n")
    ini.chmod(0o644)
    watcher = SimpleNamespace(api=object(), config=SimpleNamespace(config_file=str(ini)))
    certs_plugin.init(watcher, ipa_config(freeipa))
    try:
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(str(ini) in w for w in warnings)
        caplog.clear()
        ini.chmod(0o600)
        certs_plugin.init(watcher, ipa_config(freeipa))
        assert not [r for r in caplog.records if r.levelno == logging.WARNING]
        # "ipa_password = $env:IPA_PASSWORD" keeps the password out of the file: no warning either
        ini.chmod(0o644)
        references = (("plugin_certs", "ipa_password", "IPA_PASSWORD"),)
        from_env = SimpleNamespace(
            api=object(), config=SimpleNamespace(config_file=str(ini), env_references=references)
        )
        certs_plugin.init(from_env, ipa_config(freeipa))
        assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    finally:
        certs_plugin.close()
    assert_no_secrets(caplog, freeipa.users["admin"])


# --- through the plugin: retries, cooldown, other routes, end to end ------------------------------------


def test_retries_with_backoff_ride_out_a_busy_server(local_api, freeipa, tmp_path, caplog) -> None:  # noqa: F811
    config = ipa_config(freeipa, issue_attempts="3", issue_backoff="0.05s")
    obj = local_api.create("routes", route("web", NS, HOST, annotations=OPT_IN))
    freeipa.fail_next(2)
    with plugin_watcher(local_api, tmp_path, NS) as watcher:
        certs_plugin.init(watcher, config)
        try:
            message, level = certs_plugin.handle_event(watcher, {"type": "ADDED", "object": obj}, config)
        finally:
            certs_plugin.close()
    assert level == "INFO" and "Issued a certificate for route demo/web from issuer ipa" in message
    attempts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Attempt")]
    assert len(attempts) == 2 and "HTTP 503" in attempts[0]
    signed = local_api.get("routes", NS, "web")
    leaf, chain, key = route_certificate(signed)
    verify_chain(leaf, chain, freeipa.ca.cert, HOST)
    assert certificates.key_matches(leaf, key)
    assert patches(local_api, "web") == 1


def test_a_failing_route_waits_for_the_cooldown_and_does_not_hold_up_others(
    local_api,
    freeipa,  # noqa: F811
    tmp_path,
) -> None:
    config = ipa_config(freeipa, failure_cooldown="1h", issue_attempts="3")
    # "localhost" is not a fully qualified name: FreeIPA's own ValidationError, which a retry repeats
    stuck = local_api.create("routes", route("stuck", NS, "localhost", annotations=OPT_IN))
    other = local_api.create("routes", route("other", NS, "other.apps.example.test", annotations=OPT_IN))
    with plugin_watcher(local_api, tmp_path, NS) as watcher:
        certs_plugin.init(watcher, config)

        def handle(kind: str, obj: dict):
            return certs_plugin.handle_event(watcher, {"type": kind, "object": obj}, config)

        try:
            with pytest.raises(TemporaryError) as raised:
                handle("ADDED", stuck)
            message = str(raised.value)
            assert (
                "FreeIPA host_add failed: ValidationError (3009): "
                "invalid 'hostname': invalid domain-name: not fully qualified"
            ) in message
            assert "Not retried before" in message
            assert raised.value.delay is not None and 3590 < raised.value.delay <= 3600  # the 1 h cooldown
            assert freeipa.methods() == ["host_add"]  # not retried: FreeIPA would say the same
            # a resync inside the cooldown does not call FreeIPA again
            with pytest.raises(TemporaryError, match="waiting until"):
                handle("MODIFIED", stuck)
            assert freeipa.methods() == ["host_add"]
            # other routes are served meanwhile
            message, level = handle("ADDED", other)
            assert level == "INFO"
            # a change of host is a new request: tried at once
            moved = local_api.patch("routes", NS, "stuck", {"spec": {"host": "fixed.apps.example.test"}})
            message, level = handle("MODIFIED", moved)
            assert level == "INFO" and "fixed.apps.example.test" in message
        finally:
            certs_plugin.close()
    assert patches(local_api, "stuck") == 1 and patches(local_api, "other") == 1


def test_ipa_end_to_end(local_api, freeipa, tmp_path, caplog) -> None:  # noqa: F811
    ini = {"plugin_certs": ipa_config(freeipa)}
    with running_watcher(
        local_api, namespace=NS, plugins="certs", ini=ini, env={"WATCHER_RESYNC_PERIOD": "1"}
    ) as w:
        local_api.create("routes", route("web", NS, HOST, annotations=OPT_IN))
        web = wait_until(
            lambda: (r := local_api.get("routes", NS, "web"))["spec"].get("tls") and r,
            what="web's certificate",
        )
        leaf, chain, key = route_certificate(web)
        assert verify_chain(leaf, chain, freeipa.ca.cert, HOST)[-1] == freeipa.ca.cert
        assert certificates.key_matches(leaf, key)
        wait_until(lambda: "host_find" in freeipa.methods(), what="the sweep after the initial list")
        assert [m for m in freeipa.methods() if m != "host_find"] == ["host_add", "cert_request"]
        # the ini file holds ipa_password: a startup warning when others can read it (umask decides)
        readable = bool(os.stat(w.settings.config_file).st_mode & 0o004)
        warned = [
            r for r in caplog.records if "config file" in r.getMessage() and r.levelno == logging.WARNING
        ]
        assert bool(warned) == readable
        freeipa.expire_sessions()
        local_api.delete("routes", NS, "web")
        wait_until(lambda: HOST not in freeipa.hosts, what="host_del")
        assert freeipa.certificates[leaf.serial_number].revoked is not None
        assert w.errors == 0
    assert [m for m in freeipa.methods() if m != "host_find"] == [
        "host_add",
        "cert_request",
        "host_show",
        "host_del",
    ]
    assert len(freeipa.logins) == 2  # the expired session was renewed for host_del
    text = log_text(caplog.records)
    assert "Removed host web.apps.example.test of deleted route demo/web from FreeIPA" in text
    assert freeipa.users["admin"] not in text
    assert web["spec"]["tls"]["key"].splitlines()[1] not in text


def test_check_config_redacts_the_certs_secrets(tmp_path: Path) -> None:
    from watcher import config

    ini = tmp_path / "config.ini"
    ini.write_text(
        "[global]\nk8s_api_endpoint = https://127.0.0.1:6443\nk8s_token = t0ken-abc\nk8s_resource = routes\n"
        "[plugin_certs]\nissuer = ipa\nipa_user = admin\nipa_password = Pa55-word-xyz\n"
        "dns_key_secret = c2VjcmV0LXNlY3JldA==\n"
    )
    SECRETS.update({"t0ken-abc", "Pa55-word-xyz"})
    rendered = config.render(
        config.load({}, str(ini), serviceaccount_dir=str(tmp_path / "sa"), home=str(tmp_path))
    )
    assert "ipa_user = admin" in rendered
    assert "Pa55-word-xyz" not in rendered and "c2VjcmV0LXNlY3JldA==" not in rendered
    assert "ipa_password = <redacted>" in rendered


def test_an_outage_pauses_every_route_then_issuance_resumes(local_api, freeipa, tmp_path) -> None:  # noqa: F811
    config = ipa_config(
        freeipa, issue_attempts="5", issue_backoff="0.2s", issue_timeout="0.1s", failure_cooldown="0.5s"
    )
    web = local_api.create("routes", route("web", NS, HOST, annotations=OPT_IN))
    shop = local_api.create("routes", route("shop", NS, "shop.apps.example.test", annotations=OPT_IN))
    freeipa.fail_next(1, status=502)
    with plugin_watcher(local_api, tmp_path, NS) as watcher:
        certs_plugin.init(watcher, config)

        def handle(kind: str, obj: dict):
            return certs_plugin.handle_event(watcher, {"type": kind, "object": obj}, config)

        try:
            with pytest.raises(TemporaryError) as raised:
                handle("ADDED", web)
            message = str(raised.value)
            # issue_timeout spent: no second attempt although issue_attempts allows five
            assert "HTTP 502" in message and "pauses" in message
            assert "after" not in message.split("HTTP 502")[1].split("Not retried before")[0]
            calls = len(freeipa.calls)
            with pytest.raises(TemporaryError, match="paused until"):  # paused: FreeIPA is not asked
                handle("ADDED", shop)
            assert len(freeipa.calls) == calls
            # after the cooldown, the retry issues again

            def retried(obj: dict):
                try:
                    return handle("MODIFIED", obj)
                except TemporaryError:
                    return None  # still inside the pause: the work queue would wait this long

            result = wait_until(lambda: retried(shop), what="issuance after the pause")
            assert result[1] == "INFO"
            assert handle("MODIFIED", web)[1] == "INFO"
        finally:
            certs_plugin.close()
    assert patches(local_api, "web") == 1 and patches(local_api, "shop") == 1
