"""watcher.rfc2136 against a real BIND9: key files, settings, zone discovery, signed updates, failures."""

# ruff: noqa: F811  (the BIND fixtures are imported by name and then requested as arguments)
from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import require_binary
from tests.servers.bind import (  # noqa: F401  (fixtures)
    TSIG_KEYGEN,
    BindServer,
    bind_factory,
    bind_server,
)
from watcher import errors, rfc2136

SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="


def server_for(
    bind: BindServer, key: rfc2136.TSIGKey | None = None, timeout: float = 2.0
) -> rfc2136.DNSServer:
    return rfc2136.DNSServer(host=bind.host, port=bind.port, key=key or bind.key, timeout=timeout)


# --- key files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", sorted(rfc2136.ALGORITHMS))
def test_parse_key_file_reads_what_tsig_keygen_writes(algorithm: str) -> None:
    keygen = require_binary(TSIG_KEYGEN, "bind9-utils")
    text = subprocess.run(
        [keygen, "-a", algorithm, "my-key.example"], check=True, capture_output=True, text=True
    )
    key = rfc2136.parse_key_file(text.stdout)
    assert key.name == "my-key.example"
    assert key.algorithm == algorithm
    assert key.secret in text.stdout
    assert key.keyring  # dnspython accepts it


@pytest.mark.parametrize(
    "text",
    [
        'key "k1" { algorithm hmac-sha512; secret "' + SECRET + '"; };',
        'key k1 {algorithm HMAC-SHA512;secret "' + SECRET + '";};',
        '# made by hand\nkey "k1"\n{\n  secret\n "' + SECRET + '" ;  // the secret\n'
        "  /* multi\n line */ algorithm hmac-sha512;\n}\n;\n",
        '// first\n/* second */ key "k1" { algorithm "hmac-sha512"; secret "' + SECRET + '"; }; # end\n',
    ],
    ids=["one-line", "unquoted-name", "comments-and-newlines", "quoted-algorithm"],
)
def test_parse_key_file_accepts_any_layout_and_comments(text: str) -> None:
    key = rfc2136.parse_key_file(text)
    assert (key.name, key.secret, key.algorithm) == ("k1", SECRET, "hmac-sha512")


def test_parse_key_file_keeps_slashes_and_hashes_inside_the_secret() -> None:
    secret = "ab//cd#ef/*gh*/ij+k="  # base64 may hold "//"; '#' and '*' are caught by validation below
    with pytest.raises(ValueError, match="not valid base64"):
        rfc2136.parse_key_file(f'key "k" {{ algorithm hmac-sha256; secret "{secret}"; }};')
    good = "ab//cd+/ef=="
    key = rfc2136.parse_key_file(f'key "k" {{ algorithm hmac-sha256; secret "{good}"; }}; // ok')
    assert key.secret == good


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "exactly one key statement, found 0"),
        ("# only a comment\n", "exactly one key statement, found 0"),
        ('key "k" { algorithm hmac-sha256; };', "has no 'secret'"),
        (f'key "k" {{ secret "{SECRET}"; }};', "has no 'algorithm'"),
        (f'key "k" {{ algorithm hmac-sha999; secret "{SECRET}"; }};', "unknown TSIG algorithm 'hmac-sha999'"),
        ('key "k" { algorithm hmac-sha256; secret "not base64!"; };', "not valid base64"),
        ('key "k" { algorithm hmac-sha256; secret ""; };', "empty"),
        (f'key "k" {{ algorithm hmac-sha256; secret "{SECRET}"; }}', "unexpected end of file"),
        (f'key "k" {{ algorithm hmac-sha256; secret "{SECRET}" }};', "expected ';'"),
        (f'key "k" {{ algorithm hmac-sha256; secret "{SECRET}"; owner x; }};', "unknown clause 'owner'"),
        (f'zone "k" {{ algorithm hmac-sha256; secret "{SECRET}"; }};', "expected a 'key' statement"),
        (
            f'key "a" {{ algorithm hmac-sha256; secret "{SECRET}"; }};\n'
            f'key "b" {{ algorithm hmac-sha256; secret "{SECRET}"; }};',
            "exactly one key statement, found 2",
        ),
        ('key "k" { algorithm hmac-sha256; secret "abc', "cannot parse line 1"),
        (f'key "k" {{ algorithm hmac-sha256; algorithm hmac-md5; secret "{SECRET}"; }};', "more than one"),
    ],
)
def test_parse_key_file_rejects_bad_files_naming_the_source(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        rfc2136.parse_key_file(text, "dns_key_file '/etc/k.key'")
    message = str(caught.value)
    assert message.startswith("dns_key_file '/etc/k.key': ")
    assert problem in message
    assert SECRET not in message


def test_key_repr_never_shows_the_secret() -> None:
    key = rfc2136.TSIGKey(name="k", secret=SECRET, algorithm="hmac-sha256")
    server = rfc2136.DNSServer(host="127.0.0.1", key=key)
    assert SECRET not in repr(key)
    assert SECRET not in repr(server)
    assert SECRET not in str(server)


# --- settings --------------------------------------------------------------------------------------


def test_server_from_config_defaults() -> None:
    server, zone = rfc2136.server_from_config({"dns_server": "ns1.example.test"})
    assert server == rfc2136.DNSServer(host="ns1.example.test", port=53, key=None, timeout=5.0)
    assert zone is None


def test_server_from_config_reads_the_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "ddns.key"
    key_file.write_text(f'key "ddns-key" {{\n\talgorithm hmac-sha384;\n\tsecret "{SECRET}";\n}};\n')
    server, zone = rfc2136.server_from_config(
        {
            "dns_server": "192.0.2.53",
            "dns_port": "5353",
            "dns_key_file": str(key_file),
            "dns_zone": "Apps.Example.Test.",
            "timeout": "2.5",
        }
    )
    assert server == rfc2136.DNSServer(
        host="192.0.2.53", port=5353, key=rfc2136.TSIGKey("ddns-key", SECRET, "hmac-sha384"), timeout=2.5
    )
    assert zone == "apps.example.test"


def test_server_from_config_inline_key_with_default_algorithm() -> None:
    server, _ = rfc2136.server_from_config(
        {"dns_server": "::1", "dns_key_name": "k", "dns_key_secret": SECRET, "dns_key_algorithm": ""}
    )
    assert server.key == rfc2136.TSIGKey("k", SECRET, "hmac-sha256")


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({}, "dns_server"),
        ({"dns_server": "bad host!"}, "dns_server"),
        ({"dns_server": "ns", "dns_port": "fifty"}, "dns_port"),
        ({"dns_server": "ns", "dns_port": "70000"}, "dns_port"),
        ({"dns_server": "ns", "timeout": "0"}, "timeout"),
        ({"dns_server": "ns", "timeout": "soon"}, "timeout"),
        ({"dns_server": "ns", "dns_zone": "bad..zone"}, "dns_zone"),
        ({"dns_server": "ns", "dns_key_file": "/nonexistent/k.key"}, "dns_key_file"),
        ({"dns_server": "ns", "dns_key_name": "k"}, "dns_key_secret"),
        ({"dns_server": "ns", "dns_key_secret": SECRET}, "dns_key_name"),
        ({"dns_server": "ns", "dns_key_name": "k", "dns_key_secret": "!!"}, "dns_key_secret"),
        (
            {"dns_server": "ns", "dns_key_name": "k", "dns_key_secret": SECRET, "dns_key_algorithm": "rot13"},
            "dns_key_algorithm",
        ),
        ({"dns_server": "ns", "dns_key_algorithm": "hmac-sha256"}, "dns_key_algorithm"),
    ],
)
def test_server_from_config_names_the_bad_key(config: dict[str, str], key: str) -> None:
    with pytest.raises(ValueError) as caught:
        rfc2136.server_from_config(config)
    assert key in str(caught.value)
    assert SECRET not in str(caught.value)


def test_server_from_config_refuses_two_ways_of_giving_the_key(tmp_path: Path) -> None:
    key_file = tmp_path / "k.key"
    key_file.write_text(f'key "k" {{ algorithm hmac-sha256; secret "{SECRET}"; }};')
    with pytest.raises(ValueError, match="dns_key_file and dns_key_name are both set"):
        rfc2136.server_from_config({"dns_server": "ns", "dns_key_file": str(key_file), "dns_key_name": "k"})


def test_bad_key_file_content_names_the_file(tmp_path: Path) -> None:
    key_file = tmp_path / "k.key"
    key_file.write_text('key "k" { algorithm hmac-sha256; };')
    with pytest.raises(ValueError, match=r"dns_key_file '.*k\.key': key 'k' has no 'secret'"):
        rfc2136.server_from_config({"dns_server": "ns", "dns_key_file": str(key_file)})


# --- updates against BIND --------------------------------------------------------------------------


def test_txt_values_are_added_and_removed_one_by_one(bind_server: BindServer) -> None:
    updater = rfc2136.Updater(server_for(bind_server), bind_server.zone)
    name = "_acme-challenge.web.apps.example.test"
    updater.set_txt(name, "first-token", ttl=120)
    updater.set_txt(name, "second-token")
    updater.set_txt(name, "second-token")  # RRsets are sets: adding again changes nothing
    assert bind_server.query(name, "TXT") == ["first-token", "second-token"]
    assert sorted(updater.query(name, "TXT")) == ["first-token", "second-token"]
    updater.delete_txt(name, "first-token")
    assert bind_server.query(name, "TXT") == ["second-token"]
    updater.delete_txt(name, "second-token")
    assert bind_server.query(name, "TXT") == []
    assert updater.query(name, "TXT") == []


def test_long_txt_values_survive_the_255_byte_limit(bind_server: BindServer) -> None:
    updater = rfc2136.Updater(server_for(bind_server), bind_server.zone)
    value = "x" * 300 + "/end"
    updater.set_txt("long.apps.example.test", value)
    assert updater.query("long.apps.example.test", "TXT") == [value]
    assert bind_server.query("long.apps.example.test", "TXT") == [value]


def test_an_update_with_prerequisites_is_atomic(bind_server: BindServer) -> None:
    updater = rfc2136.Updater(server_for(bind_server), bind_server.zone)
    web = updater.name("web.apps.example.test")
    create = updater.new_update()
    create.absent(web)
    create.add(web, 60, "A", "192.0.2.10")
    updater.send(create)
    again = updater.new_update()
    again.absent(web)
    again.add(web, 60, "A", "192.0.2.99")
    with pytest.raises(rfc2136.PrerequisiteFailed) as caught:
        updater.send(again)
    assert caught.value.rcode == "YXDOMAIN"
    assert not caught.value.transient
    assert bind_server.query("web.apps.example.test", "A") == ["192.0.2.10"]
    assert updater.query("web.apps.example.test", "A") == ["192.0.2.10"]


def test_names_outside_the_zone_are_refused_before_sending(bind_server: BindServer) -> None:
    updater = rfc2136.Updater(server_for(bind_server), bind_server.zone)
    with pytest.raises(ValueError, match=r"outside the zone apps\.example\.test"):
        updater.set_txt("web.example.org", "x")


@pytest.mark.parametrize("policy", ["allow-update", "update-policy"])
@pytest.mark.parametrize("algorithm", ["hmac-sha512", "hmac-md5"])
def test_other_algorithms_and_policies(bind_factory, policy: str, algorithm: str) -> None:  # type: ignore[no-untyped-def]
    bind = bind_factory(zones=("example.org",), key_name="other-key", algorithm=algorithm, policy=policy)
    key = rfc2136.parse_key_file(bind.key_file.read_text(), str(bind.key_file))
    assert key.algorithm == algorithm
    rfc2136.Updater(server_for(bind, key), "example.org").set_txt("t.example.org", "v")
    assert bind.query("t.example.org", "TXT") == ["v"]


@pytest.mark.parametrize(
    ("case", "rcode"),
    [
        ("wrong secret", "BADSIG"),
        ("unknown key", "BADKEY"),
        ("unsigned", "REFUSED"),
        ("read-only zone", "REFUSED"),
    ],
)
def test_refusals_are_clear_and_not_retried(bind_factory, case: str, rcode: str) -> None:  # type: ignore[no-untyped-def]
    bind = bind_factory(readonly_zones=("ro.example.test",))
    zone = bind.zone
    key: rfc2136.TSIGKey | None = bind.key
    if case == "wrong secret":
        key = rfc2136.TSIGKey(bind.key.name, SECRET, bind.key.algorithm)
    elif case == "unknown key":
        key = rfc2136.TSIGKey("nobody", bind.key.secret, bind.key.algorithm)
    elif case == "read-only zone":
        zone = "ro.example.test"
    server = rfc2136.DNSServer(host=bind.host, port=bind.port, key=key, timeout=2.0)
    if case == "unsigned":
        server = rfc2136.DNSServer(host=bind.host, port=bind.port, key=None, timeout=2.0)
    with pytest.raises(rfc2136.DNSUpdateError) as caught:
        rfc2136.Updater(server, zone).set_txt(f"x.{zone}", "v")
    error = caught.value
    assert isinstance(error, errors.WatcherError)
    assert (error.rcode, error.zone, error.transient) == (rcode, zone, False)
    assert str(error).startswith(f"DNS update of zone {zone} at {bind.host}:{bind.port} failed: {rcode}, ")
    assert "\n" not in str(error)
    assert bind.key.secret not in str(error)
    assert bind.query(f"x.{zone}", "TXT") == []
    assert (
        "update failed" in bind.log_tail(200)
        or "denied" in bind.log_tail(200)
        or "TSIG" in bind.log_tail(200)
    )


def test_a_zone_the_server_does_not_serve_is_notauth(bind_server: BindServer) -> None:
    with pytest.raises(rfc2136.DNSUpdateError) as caught:
        rfc2136.Updater(server_for(bind_server), "elsewhere.test").set_txt("x.elsewhere.test", "v")
    assert caught.value.rcode == "NOTAUTH"


def test_a_server_that_is_down_is_retried_then_reported(bind_server: BindServer, caplog) -> None:  # type: ignore[no-untyped-def]
    bind_server.stop()
    updater = rfc2136.Updater(server_for(bind_server), bind_server.zone)
    caplog.set_level("DEBUG", logger="watcher.rfc2136")
    with pytest.raises(rfc2136.DNSUpdateError) as caught:
        updater.set_txt("x.apps.example.test", "v")
    assert (caught.value.rcode, caught.value.transient) == ("UNREACHABLE", True)
    retries = [r for r in caplog.records if "try " in r.getMessage()]
    assert len(retries) == rfc2136.DEFAULT_RETRY.attempts - 1
    bind_server.start()
    updater.set_txt("x.apps.example.test", "v")
    assert bind_server.query("x.apps.example.test", "TXT") == ["v"]


@pytest.fixture
def silent_server() -> Iterator[tuple[str, int]]:
    """A TCP port that accepts connections (kernel backlog) and never answers: a hung DNS server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()


def test_a_server_that_never_answers_times_out(silent_server: tuple[str, int]) -> None:
    host, port = silent_server
    server = rfc2136.DNSServer(host=host, port=port, key=None, timeout=0.2)
    policy = rfc2136.RetryPolicy(attempts=2, first_delay=0.01)
    with pytest.raises(rfc2136.DNSUpdateError) as caught:
        rfc2136.Updater(server, "apps.example.test", retry=policy).set_txt("x.apps.example.test", "v")
    assert (caught.value.rcode, caught.value.transient) == ("TIMEOUT", True)
    assert "no answer before the timeout" in str(caught.value)


def test_the_server_may_be_given_by_name(bind_server: BindServer) -> None:
    server = rfc2136.DNSServer(host="localhost", port=bind_server.port, key=bind_server.key, timeout=2.0)
    try:
        resolved = socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)[0][4][0]
    except OSError:
        pytest.skip("localhost does not resolve on this machine")
    if resolved != "127.0.0.1":
        pytest.skip(f"localhost resolves to {resolved} first; named listens on 127.0.0.1 only")
    rfc2136.Updater(server, bind_server.zone).set_txt("byname.apps.example.test", "v")
    assert bind_server.query("byname.apps.example.test", "TXT") == ["v"]


def test_an_unresolvable_server_name_is_reported() -> None:
    server = rfc2136.DNSServer(host="no-such-host.invalid", port=53, timeout=0.5)
    policy = rfc2136.RetryPolicy(attempts=1)
    with pytest.raises(rfc2136.DNSUpdateError) as caught:
        rfc2136.Updater(server, "apps.example.test", retry=policy).set_txt("x.apps.example.test", "v")
    assert caught.value.rcode == "UNRESOLVED"


# --- zone discovery --------------------------------------------------------------------------------


def test_find_zone_by_soa_query(bind_factory) -> None:  # type: ignore[no-untyped-def]
    bind = bind_factory(zones=("apps.example.test", "deep.apps.example.test"))
    server = server_for(bind)
    assert rfc2136.find_zone("web.apps.example.test", server) == "apps.example.test"
    assert rfc2136.find_zone("a.b.c.apps.example.test", server) == "apps.example.test"
    assert rfc2136.find_zone("APPS.example.test.", server) == "apps.example.test"
    assert rfc2136.find_zone("x.deep.apps.example.test", server) == "deep.apps.example.test"
    assert rfc2136.find_zone("*.apps.example.test", server) == "apps.example.test"


def test_find_zone_looks_past_an_alias(bind_server: BindServer) -> None:
    server = server_for(bind_server)
    updater = rfc2136.Updater(server, bind_server.zone)
    update = updater.new_update()
    update.add(updater.name("alias.apps.example.test"), 60, "CNAME", "router.elsewhere.test.")
    update.add(updater.name("local.apps.example.test"), 60, "CNAME", "ns1.apps.example.test.")
    updater.send(update)
    assert rfc2136.find_zone("alias.apps.example.test", server) == "apps.example.test"
    assert rfc2136.find_zone("local.apps.example.test", server) == "apps.example.test"


def test_find_zone_for_a_name_the_server_does_not_serve(bind_server: BindServer) -> None:
    with pytest.raises(rfc2136.ZoneNotFound) as caught:
        rfc2136.find_zone("web.example.org", server_for(bind_server))
    assert caught.value.rcode == "REFUSED"
    assert "web.example.org" in str(caught.value)


def test_find_zone_when_the_server_is_down(bind_server: BindServer) -> None:
    bind_server.stop()
    server = rfc2136.DNSServer(host=bind_server.host, port=bind_server.port, timeout=0.3)
    with pytest.raises(rfc2136.DNSUpdateError) as caught:
        rfc2136.find_zone("web.apps.example.test", server)
    assert not isinstance(caught.value, rfc2136.ZoneNotFound)
    assert caught.value.transient


def test_find_zone_through_resolv_conf(bind_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # resolv.conf has no port syntax: its name servers listen on 53, which only root may bind.
    if os.geteuid() != 0:
        pytest.skip("needs root to run named on port 53 (resolv.conf cannot name another port)")
    bind = bind_factory(port=53)
    resolv_conf = tmp_path / "resolv.conf"
    resolv_conf.write_text("# test\nsearch example.test\nnameserver 127.0.0.1\n")
    unused = rfc2136.DNSServer(host="192.0.2.1", port=1, timeout=1.0)  # the file's servers are asked instead
    assert rfc2136.find_zone("web.apps.example.test", unused, str(resolv_conf)) == bind.zone


def test_find_zone_with_a_bad_resolv_conf(tmp_path: Path) -> None:
    empty = tmp_path / "resolv.conf"
    empty.write_text("# nothing\n")
    server = rfc2136.DNSServer(host="127.0.0.1")
    with pytest.raises(ValueError, match=r"resolv_conf .* lists no nameserver"):
        rfc2136.find_zone("web.apps.example.test", server, str(empty))
    with pytest.raises(ValueError, match=r"resolv_conf .* does not exist"):
        rfc2136.find_zone("web.apps.example.test", server, str(tmp_path / "missing"))


def test_in_zone() -> None:
    assert rfc2136.in_zone("web.apps.example.test", "apps.example.test")
    assert rfc2136.in_zone("apps.example.test", "apps.example.test.")
    assert rfc2136.in_zone("*.apps.example.test", "apps.example.test")
    assert not rfc2136.in_zone("webapps.example.test", "apps.example.test")
    assert not rfc2136.in_zone("example.test", "apps.example.test")


def test_the_bind_fixture_restarts_on_the_same_port_with_its_data(bind_server: BindServer) -> None:
    updater = rfc2136.Updater(server_for(bind_server), bind_server.zone)
    updater.set_txt("kept.apps.example.test", "before the restart")
    serial = bind_server.serial()
    port = bind_server.port
    bind_server.stop()
    assert not bind_server.running
    bind_server.start()
    assert bind_server.port == port
    assert bind_server.query("kept.apps.example.test", "TXT") == ["before the restart"]
    assert bind_server.serial() == serial
    updater.set_txt("kept.apps.example.test", "after")
    assert bind_server.query("kept.apps.example.test", "TXT") == ["after", "before the restart"]
