"""The certificates plugin's own logic: keys and CSRs, the issue/renew decision, the patch, settings, the
local CA issuer (with real X.509 path validation), and the permission warnings.

Issuer-specific end-to-end tests live in test_plugin_certs_local.py (local CA through the real watcher),
test_plugin_certs_ipa.py (the FreeIPA stand-in) and test_plugin_certs_acme.py (Pebble + BIND9).
"""

from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from plugins.certs import certificates, local, routes
from plugins.certs import settings as cert_settings
from plugins.certs.issuer import Signed
from tests.servers.testca import TestCA

HOST = "web.apps.example.test"
NOW = datetime.datetime.now(datetime.timezone.utc)


def verify_chain(
    leaf: x509.Certificate, chain: list[x509.Certificate], root: x509.Certificate, host: str
) -> list:
    """Real RFC 5280 path validation for a TLS server name, as a client of the router would do it."""
    verifier = PolicyBuilder().store(Store([root])).build_server_verifier(x509.DNSName(host))
    return verifier.verify(leaf, chain)


@pytest.fixture
def local_ca(tmp_path: Path) -> tuple[TestCA, Path, Path]:
    ca = TestCA.create("Local Test CA", rsa_key=True)
    cert_path, key_path = ca.write(tmp_path, "local-ca")
    return ca, cert_path, key_path


def our_route(signed: Signed, key_pem: str, host: str = HOST, **tls: str) -> dict:
    """A route as it looks after our patch."""
    settings = cert_settings.CertSettings(issuer="local")
    route = {
        "metadata": {"namespace": "demo", "name": "web", "annotations": {settings.annotation: "true"}},
        "spec": {"host": host, **({"tls": dict(tls)} if tls else {})},
    }
    patch = routes.tls_patch(route, signed, key_pem, "local", settings)
    route["metadata"]["annotations"].update(patch["metadata"]["annotations"])
    route["spec"]["tls"] = {**route["spec"].get("tls", {}), **patch["spec"]["tls"]}
    return route


# --- certificates -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_type", "kind"), [("rsa", rsa.RSAPrivateKey), ("ecdsa", ec.EllipticCurvePrivateKey)]
)
def test_keys_and_csr(key_type: str, kind: type) -> None:
    key = certificates.generate_key(key_type)
    assert isinstance(key, kind)
    if key_type == "rsa":
        assert key.key_size == 2048
    else:
        assert isinstance(key.curve, ec.SECP256R1)
    pem = certificates.key_to_pem(key)
    header = "-----BEGIN RSA PRIVATE KEY-----" if key_type == "rsa" else "-----BEGIN EC PRIVATE KEY-----"
    assert pem.startswith(header)
    assert certificates.public_key_bytes(certificates.load_key(pem)) == certificates.public_key_bytes(key)
    csr = x509.load_pem_x509_csr(certificates.build_csr(key, HOST))
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == HOST
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [HOST]


def test_unknown_key_type_and_bad_pem_are_one_line_errors() -> None:
    with pytest.raises(certificates.CertificateError, match="Unknown key type 'dsa'"):
        certificates.generate_key("dsa")
    with pytest.raises(certificates.CertificateError, match="not a readable unencrypted PEM key"):
        certificates.load_key("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(certificates.CertificateError, match="not valid base64 DER"):
        certificates.der_base64_to_pem("not base64 at all!")


def test_public_key_of_a_private_key_pem_is_cached_by_digest() -> None:
    key = certificates.generate_key("rsa")
    pem = certificates.key_to_pem(key)
    assert certificates.public_key_of_pem(pem) == certificates.public_key_bytes(key)
    assert certificates.public_key_of_pem(pem) == certificates.public_key_bytes(key)  # from the cache
    assert certificates.public_key_of_pem("") is None
    assert (
        certificates.public_key_of_pem("-----BEGIN RSA PRIVATE KEY-----\nAA==\n-----END RSA PRIVATE KEY-----")
        is None
    )
    cache = certificates._PublicKeyCache(size=2)
    pems = [certificates.key_to_pem(certificates.generate_key("ecdsa")) for _ in range(3)]
    for item in pems:
        cache.get(item)
    assert len(cache._entries) == 2
    assert all(pem not in str(cache._entries) for pem in pems)  # digests only, no key material


def test_covers_exact_and_wildcard_names(local_ca) -> None:
    ca, _, _ = local_ca
    key = ec.generate_private_key(ec.SECP256R1())
    names = ("WEB.apps.example.test", "*.shop.example.test")
    cert = ca.sign(key.public_key(), common_name="x", dns_names=names)
    assert certificates.covers(cert, HOST)
    assert certificates.covers(cert, "web.apps.example.test.")
    assert certificates.covers(cert, "cart.shop.example.test")
    assert not certificates.covers(cert, "a.cart.shop.example.test")  # a wildcard is one label
    assert not certificates.covers(cert, "shop.example.test")
    assert not certificates.covers(cert, "other.apps.example.test")
    no_san = ca.sign(key.public_key(), common_name=HOST)
    assert not certificates.covers(no_san, HOST)  # the CN alone is not enough, as for browsers


def test_der_base64_to_pem_round_trip(local_ca) -> None:
    import base64

    from cryptography.hazmat.primitives import serialization

    ca, _, _ = local_ca
    der = ca.cert.public_bytes(serialization.Encoding.DER)
    pem = certificates.der_base64_to_pem(base64.b64encode(der).decode())
    assert certificates.load_certificates(pem) == [ca.cert]
    assert all(len(line) <= 64 for line in pem.splitlines())


# --- settings -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("45s", 45), ("30m", 1800), ("720h", 720 * 3600), ("30d", 30 * 86400)]
)
def test_durations(text: str, seconds: int) -> None:
    assert cert_settings.parse_duration(text, "renew_before").total_seconds() == seconds


def test_renew_before_defaults_to_a_third_and_takes_a_percentage() -> None:
    lifetime = datetime.timedelta(days=90)
    assert cert_settings.RenewBefore().window(lifetime) == datetime.timedelta(days=30)
    assert cert_settings.parse_renew_before("50%").window(lifetime) == datetime.timedelta(days=45)
    assert cert_settings.parse_renew_before("720h").window(lifetime) == datetime.timedelta(days=30)
    for bad in ("soon", "150%", "0%", "-3d"):
        with pytest.raises(ValueError, match="renew_before"):
            cert_settings.parse_renew_before(bad)


def test_settings_defaults_and_every_problem_at_once() -> None:
    s = cert_settings.load({"issuer": "local"})
    assert (s.annotation, s.key_type, s.issue_attempts, s.revoke_on_delete) == (
        "openshift.io/managed.cert",
        "rsa",
        3,
        False,
    )
    assert s.annotation_key("state") == "openshift.io/managed.cert.state"
    with pytest.raises(ValueError) as caught:
        cert_settings.load(
            {"issuer": "vault", "key_type": "dsa", "issue_attempts": "0", "revoke_on_delete": "perhaps"}
        )
    message = str(caught.value)
    for key in ("issuer", "key_type", "issue_attempts", "revoke_on_delete"):
        assert key in message


def test_secret_file_readable_by_others_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret-password\n")
    secret.chmod(0o600)
    assert cert_settings.read_secret_file(str(secret), "ipa_password_file") == "s3cret-password"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    secret.chmod(0o644)
    cert_settings.read_secret_file(str(secret), "ipa_password_file")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(secret) in warnings[0] and "0o644" in warnings[0]
    assert "s3cret-password" not in caplog.text


# --- the decision ------------------------------------------------------------------------------------


@pytest.fixture
def issued(local_ca) -> tuple[Signed, str]:
    _, cert_path, key_path = local_ca
    issuer = local.LocalIssuer.from_config({"local_ca_cert": str(cert_path), "local_ca_key": str(key_path)})
    key = certificates.generate_key("ecdsa")
    return issuer.issue(HOST, certificates.build_csr(key, HOST)), certificates.key_to_pem(key)


def decide(route: dict, now: datetime.datetime = NOW, **settings: object) -> routes.Decision:
    return routes.decide(route, cert_settings.CertSettings(issuer="local", **settings), now)  # type: ignore[arg-type]


def test_decision_on_our_own_patch_is_current(issued) -> None:
    signed, key_pem = issued
    decision = decide(our_route(signed, key_pem))
    assert decision.action == routes.CURRENT, decision.reason


def test_decision_issues_for_each_documented_reason(issued, local_ca) -> None:
    signed, key_pem = issued
    route = {"metadata": {"annotations": {}}, "spec": {"host": HOST}}
    assert decide(route) == routes.Decision(routes.ISSUE, "it has no certificate")

    moved = our_route(signed, key_pem, host="other.apps.example.test")
    moved["spec"]["host"] = "other.apps.example.test"
    moved["spec"]["tls"]["certificate"] = certificates.to_pem(signed.leaf)
    assert decide(moved).reason == "its certificate does not cover other.apps.example.test"

    wrong_key = our_route(signed, key_pem)
    wrong_key["spec"]["tls"]["key"] = certificates.key_to_pem(certificates.generate_key("ecdsa"))
    assert decide(wrong_key).reason == "its private key does not match its certificate"

    no_key = our_route(signed, key_pem)
    del no_key["spec"]["tls"]["key"]
    assert decide(no_key).reason == "its private key is missing or cannot be read"

    theirs = our_route(signed, key_pem)
    theirs["metadata"]["annotations"]["openshift.io/managed.cert.serial"] = "abc"
    assert decide(theirs).reason == "its certificate was not issued by this plugin"

    garbage = our_route(signed, key_pem)
    garbage["spec"]["tls"]["certificate"] = "-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n"
    assert decide(garbage).reason == "its certificate cannot be read"


def test_decision_renews_inside_the_window(issued) -> None:
    signed, key_pem = issued  # 90 days: the default window is the last 30
    route = our_route(signed, key_pem)
    expires = certificates.not_after(signed.leaf)
    assert decide(route, now=expires - datetime.timedelta(days=31)).action == routes.CURRENT
    late = decide(route, now=expires - datetime.timedelta(days=29))
    assert late.action == routes.ISSUE and "within renew_before (33.3333% of the lifetime)" in late.reason
    fixed = cert_settings.parse_renew_before("60d")
    day = datetime.timedelta(days=1)
    assert decide(route, now=expires - 59 * day, renew_before=fixed).action == routes.ISSUE
    assert decide(route, now=expires - 61 * day, renew_before=fixed).action == routes.CURRENT


def test_decision_skips_what_cannot_get_a_certificate() -> None:
    passthrough = {"metadata": {}, "spec": {"host": HOST, "tls": {"termination": "passthrough"}}}
    assert decide(passthrough).action == routes.SKIP
    assert decide({"metadata": {}, "spec": {}}).action == routes.SKIP


def test_opt_in_is_exactly_the_annotation() -> None:
    s = cert_settings.CertSettings(issuer="local")
    assert routes.opted_in({"metadata": {"annotations": {"openshift.io/managed.cert": "true"}}}, s)
    assert routes.opted_in({"metadata": {"annotations": {"openshift.io/managed.cert": "True"}}}, s)
    assert not routes.opted_in({"metadata": {"annotations": {"openshift.io/managed.cert": "false"}}}, s)
    assert not routes.opted_in({"metadata": {}}, s)


def test_patch_keeps_termination_or_makes_edge_with_redirect(issued) -> None:
    signed, key_pem = issued
    s = cert_settings.CertSettings(issuer="local")
    plain = {"metadata": {}, "spec": {"host": HOST}}
    patch = routes.tls_patch(plain, signed, key_pem, "local", s)
    tls = patch["spec"]["tls"]
    assert tls["termination"] == "edge" and tls["insecureEdgeTerminationPolicy"] == "Redirect"
    assert certificates.load_certificates(tls["certificate"]) == [signed.leaf]
    assert certificates.load_certificates(tls["caCertificate"]) == list(signed.chain)
    assert tls["key"] == key_pem
    notes = patch["metadata"]["annotations"]
    assert notes["openshift.io/managed.cert.state"] == "created"
    assert notes["openshift.io/managed.cert.serial"] == format(signed.leaf.serial_number, "x")
    not_after = certificates.rfc3339(signed.leaf.not_valid_after_utc)
    assert notes["openshift.io/managed.cert.not-after"] == not_after

    reencrypt = {"metadata": {}, "spec": {"host": HOST, "tls": {"termination": "reencrypt"}}}
    tls = routes.tls_patch(reencrypt, signed, key_pem, "local", s)["spec"]["tls"]
    assert "termination" not in tls and "insecureEdgeTerminationPolicy" not in tls

    chainless = routes.tls_patch(plain, Signed(signed.leaf), key_pem, "local", s)
    assert chainless["spec"]["tls"]["caCertificate"] is None  # merge patch: remove a stale chain


# --- the local issuer ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["rsa", "ecdsa"])
def test_local_issuer_signs_a_certificate_that_validates(local_ca, key_type: str) -> None:
    ca, cert_path, key_path = local_ca
    issuer = local.LocalIssuer.from_config(
        {"local_ca_cert": str(cert_path), "local_ca_key": str(key_path), "local_validity_days": "30"}
    )
    key = certificates.generate_key(key_type)
    signed = issuer.issue(HOST, certificates.build_csr(key, HOST))
    assert signed.chain == (ca.cert,)
    path = verify_chain(signed.leaf, list(signed.chain), ca.cert, HOST)
    assert path[0] == signed.leaf and path[-1] == ca.cert
    assert certificates.key_matches(signed.leaf, key)
    assert certificates.dns_names(signed.leaf) == [HOST]
    lifetime = signed.leaf.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(days=29) < lifetime <= datetime.timedelta(days=30)
    assert signed.leaf.not_valid_before_utc <= datetime.datetime.now(datetime.timezone.utc)
    with pytest.raises(VerificationError):  # the path does not validate for another name
        verify_chain(signed.leaf, list(signed.chain), ca.cert, "other.apps.example.test")


def test_local_issuer_refuses_bad_settings(local_ca, tmp_path: Path) -> None:
    ca, cert_path, key_path = local_ca
    with pytest.raises(ValueError, match=r"local_ca_cert is required.*local_ca_key is required"):
        local.LocalIssuer.from_config({})
    other = TestCA.create("Other CA")
    _, other_key = other.write(tmp_path, "other")
    with pytest.raises(ValueError, match="is not the key of the first certificate"):
        local.LocalIssuer.from_config({"local_ca_cert": str(cert_path), "local_ca_key": str(other_key)})
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = ca.sign(leaf_key.public_key(), common_name="not a ca")
    (tmp_path / "leaf.pem").write_bytes(certificates.to_pem(leaf).encode())
    (tmp_path / "leaf-key.pem").write_text(certificates.key_to_pem(leaf_key))
    with pytest.raises(ValueError, match="is not a CA certificate"):
        local.LocalIssuer.from_config(
            {"local_ca_cert": str(tmp_path / "leaf.pem"), "local_ca_key": str(tmp_path / "leaf-key.pem")}
        )
    with pytest.raises(ValueError, match="local_validity_days"):
        local.LocalIssuer.from_config(
            {"local_ca_cert": str(cert_path), "local_ca_key": str(key_path), "local_validity_days": "soon"}
        )


def test_local_ca_key_readable_by_others_warns(local_ca, caplog: pytest.LogCaptureFixture) -> None:
    _, cert_path, key_path = local_ca
    os.chmod(key_path, 0o440)  # group-readable: a Secret volume read through fsGroup, fine
    local.LocalIssuer.from_config({"local_ca_cert": str(cert_path), "local_ca_key": str(key_path)})
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    os.chmod(key_path, 0o644)  # a Secret volume's default mode: every user can read the CA key
    local.LocalIssuer.from_config({"local_ca_cert": str(cert_path), "local_ca_key": str(key_path)})
    assert any(str(key_path) in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_every_key_is_documented() -> None:
    readme = (Path(certs_plugin_dir()) / "README.md").read_text()
    table_rows = [line for line in readme.splitlines() if line.startswith("| `")]
    for key in sorted(cert_settings.KNOWN_KEYS):
        assert any(f"`{key}`" in row for row in table_rows), f"{key} is missing from plugins/certs/README.md"


def certs_plugin_dir() -> str:
    return os.path.dirname(cert_settings.__file__)
