"""The FreeIPA stand-in answers as upstream's rpcserver.py and plugins do, where the certs plugin
depends on it; and the plugin's client passes those checks (tests/servers/freeipa.py names the files)."""

from __future__ import annotations

import requests

from plugins.certs import certificates, ipa
from tests.servers.freeipa import API_VERSION, FreeIPAStandIn, freeipa  # noqa: F401
from tests.test_plugin_certs_ipa import make_issuer

HOST = "web.apps.example.test"


class Raw:
    """A hand-made session, to send what the plugin never would."""

    def __init__(self, server: FreeIPAStandIn, referer: str = "https://127.0.0.1/ipa") -> None:
        self.server = server
        self.session = requests.Session()
        self.verify = str(server.ca_file)  # per request: a session-wide one loses to REQUESTS_CA_BUNDLE
        self.session.headers["Referer"] = referer

    def login(self) -> requests.Response:
        return self.session.post(
            f"{self.server.url}/session/login_password",
            data={"user": "admin", "password": self.server.users["admin"]},
            verify=self.verify,
        )

    def call(self, method: str, args: list, options: dict) -> dict:
        answer = self.session.post(
            f"{self.server.url}/session/json",
            json={"method": method, "params": [args, options], "id": 1},
            verify=self.verify,
        )
        assert answer.status_code == 200, answer.status_code
        return answer.json()


def test_the_referer_is_checked_before_the_session_and_needs_the_exact_prefix(freeipa) -> None:  # noqa: F811
    for bad in (None, "https://evil.example/ipa", "http://127.0.0.1/ipa", "https://127.0.0.1/other"):
        raw = Raw(freeipa, bad or "")
        if bad is None:
            del raw.session.headers["Referer"]
        assert raw.login().status_code == 400
        # before the session: no cookie, yet 400 and not 401
        answer = raw.session.post(
            f"{freeipa.url}/session/json", json={"method": "ping", "params": [[], {}]}, verify=raw.verify
        )
        assert answer.status_code == 400 and b"denied" in answer.content
    assert freeipa.logins == []
    # a port passes check_referer (it compares the host name) but not wsgi_execute's prefix
    with_port = Raw(freeipa, freeipa.url)
    assert with_port.login().status_code == 200
    error = with_port.call("host_show", [HOST], {"version": API_VERSION})["error"]
    assert (error["name"], error["code"]) == ("RefererError", 911)
    assert error["message"] == f"Missing or invalid HTTP Referer, {freeipa.url}"
    assert freeipa.calls == []


def test_the_plugin_sends_the_referer_without_a_port_and_a_version_in_every_call(freeipa) -> None:  # noqa: F811
    issuer = make_issuer(freeipa)
    assert issuer.client.session.headers["Referer"] == "https://127.0.0.1/ipa"
    key = certificates.generate_key("ecdsa")
    issuer.issue(HOST, certificates.build_csr(key, HOST), ("demo", "web"))
    assert freeipa.calls and all(options.get("version") == ipa.API_VERSION for _, _, options in freeipa.calls)


def test_a_call_without_version_runs_and_warns_and_another_major_is_refused(freeipa) -> None:  # noqa: F811
    raw = Raw(freeipa)
    raw.login()
    body = raw.call("host_add", [HOST], {"force": True})
    assert body["error"] is None
    (message,) = body["result"]["messages"]
    assert (message["type"], message["name"], message["code"]) == ("warning", "VersionMissing", 13001)
    assert message["message"] == (
        "API Version number was not sent, forward compatibility not guaranteed. "
        f"Assuming server's API version, {API_VERSION}"
    )
    assert "messages" not in raw.call("host_show", [HOST], {"version": "2.230"})["result"]
    error = raw.call("host_show", [HOST], {"version": "3.0"})["error"]
    assert (error["name"], error["code"]) == ("VersionError", 901)


def test_host_add_validates_the_fqdn_as_hostname_validator_does(freeipa) -> None:  # noqa: F811
    raw = Raw(freeipa)
    raw.login()
    for name, problem in (
        ("web", "not fully qualified"),
        ("web..apps.example.test", "hostname contains empty label (consecutive dots)"),
        (
            "web_1.apps.example.test",
            "only letters, numbers, '-' are allowed. DNS label may not start or end with '-'",
        ),
        (
            "-web.apps.example.test",
            "only letters, numbers, '-' are allowed. DNS label may not start or end with '-'",
        ),
        ("x" * 64 + ".example.test", "DNS label cannot be longer that 63 characters"),
    ):
        error = raw.call("host_add", [name], {"force": True, "version": "2.230"})["error"]
        assert (error["name"], error["code"]) == ("ValidationError", 3009), name
        assert error["message"] == f"invalid 'hostname': invalid domain-name: {problem}"
    assert freeipa.hosts == {}
    assert (
        raw.call("host_add", ["Web.Apps.Example.Test."], {"force": True, "version": "2.230"})["error"] is None
    )
    assert list(freeipa.hosts) == [HOST]  # normalized as normalize_hostname does


def test_realm_mismatch_and_revocation_reasons(freeipa) -> None:  # noqa: F811
    issuer = make_issuer(freeipa)
    key = certificates.generate_key("ecdsa")
    signed = issuer.issue(HOST, certificates.build_csr(key, HOST), ("demo", "web"))
    raw = Raw(freeipa)
    raw.login()
    csr = certificates.build_csr(key, HOST).decode()
    error = raw.call("cert_request", [csr], {"principal": f"host/{HOST}@OTHER.TEST", "version": "2.230"})[
        "error"
    ]
    assert (error["name"], error["code"]) == ("RealmMismatch", 4005)
    assert error["message"] == "The realm for the principal does not match the realm for this IPA server"
    serial = signed.leaf.serial_number
    for reason, name, code, message in (
        (11, "ValidationError", 3009, "invalid 'revocation_reason': must be at most 10"),
        (-1, "ValidationError", 3009, "invalid 'revocation_reason': must be at least 0"),
        (
            7,
            "CertificateOperationError",
            4301,
            "Certificate operation cannot be completed: 7 is not a valid revocation reason",
        ),
    ):
        error = raw.call("cert_revoke", [serial], {"revocation_reason": reason, "version": "2.230"})["error"]
        assert (error["name"], error["code"], error["message"]) == (name, code, message)
    assert freeipa.certificates[serial].revoked is None
    assert raw.call("cert_revoke", [serial], {"version": "2.230"})["error"] is None
    assert freeipa.certificates[serial].revoked == 0  # unspecified, cert_revoke's default
