# ruff: noqa: F811  (the BIND fixtures are imported by name and then requested as arguments)
"""The DNS plugin against a real BIND9.

The first part calls the plugin with a small stand-in for the ``watcher`` argument (the plugin only uses
``.logger``, ``.config`` and, to hand a name over, ``.api.get``) to go through every case in detail; the
second part runs the real watcher against the local API, end to end. Records are checked by querying
BIND: counts, not only presence.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import plugins.dns as dns_plugin
from plugins.dns import names, ownership, plugin, settings
from tests.harness import route, running_watcher, wait_until
from tests.servers.bind import BindServer, bind_factory, bind_server  # noqa: F401
from watcher import errors, rfc2136
from watcher.localapi import LocalAPI

ZONE = "apps.example.test"
ROUTER_IP = "192.0.2.10"


# --- helpers ---------------------------------------------------------------------------------------


@dataclass
class RoutesStandIn:
    """Only ``get``: what the plugin asks when another route of ours holds a host it wants."""

    routes: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def get(self, namespace: str | None, name: str) -> dict[str, Any]:
        try:
            return self.routes[(namespace or "", name)]
        except KeyError:
            raise errors.NotFound(404, f"routes {namespace}/{name} not found") from None


@dataclass
class WatcherStandIn:
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("plugins.dns.test"))
    config: Any = None
    api: Any = None
    dry_run: bool = False


def section(bind: BindServer, **extra: str) -> dict[str, str]:
    """A [plugin_dns] section for ``bind``, with the key file tsig-keygen wrote."""
    config = {
        "dns_server": bind.host,
        "dns_port": str(bind.port),
        "dns_key_file": str(bind.key_file),
        "dns_zone": bind.zone,
        "application_router_ip": ROUTER_IP,
        "timeout": "2",
    }
    config.update(extra)
    return {k: v for k, v in config.items() if v != ""}


def start(config: Mapping[str, str], api: Any = None) -> WatcherStandIn:
    watcher = WatcherStandIn(api=api)
    dns_plugin.close()
    dns_plugin.init(watcher, config)
    return watcher


def event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": obj}


def send(
    watcher: WatcherStandIn, kind: str, obj: dict[str, Any], config: Mapping[str, str]
) -> tuple[str, str]:
    result = dns_plugin.handle_event(watcher, event(kind, obj), config)
    assert result is not None
    return result


def owner_txt(namespace: str, name: str, owner: str = "event-watcher") -> str:
    return ownership.claim_for(owner, namespace, name).value


def zone_state(bind: BindServer, *hosts: str) -> dict[str, list[str]]:
    """Everything the plugin may write for ``hosts``: address records and ownership TXT."""
    state = {}
    for host in hosts:
        for rdtype in ("A", "AAAA", "CNAME"):
            values = bind.query(host, rdtype)
            if values:
                state[f"{host} {rdtype}"] = values
        txt = bind.query(names.owner_name(host), "TXT")
        if txt:
            state[f"{names.owner_name(host)} TXT"] = txt
    return state


def updater(bind: BindServer, zone: str | None = None) -> rfc2136.Updater:
    return rfc2136.Updater(rfc2136.DNSServer(bind.host, bind.port, bind.key, 2.0), zone or bind.zone)


@pytest.fixture(autouse=True)
def fresh_plugin() -> Iterator[None]:
    dns_plugin.close()
    yield
    dns_plugin.close()


# --- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"dns_server": ""}, "dns_server"),
        ({"dns_port": "dns"}, "dns_port"),
        ({"application_router_ip": "192.0.2"}, "application_router_ip"),
        ({"router_hostname": "router.example.test"}, "router_hostname"),  # both set
        ({"application_router_ip": "", "router_hostname": "bad_host.example"}, "router_hostname"),
        ({"ttl": "3 minutes"}, "ttl"),
        ({"ttl": "0"}, "ttl"),
        ({"owner_id": "a,b=c"}, "owner_id"),
        ({"resolv_conf": "/nonexistent/resolv.conf"}, "resolv_conf"),
        ({"dns_zone": "a..b"}, "dns_zone"),
        ({"dns_key_file": "/nonexistent/ddns.key"}, "dns_key_file"),
        ({"dns_key_name": "ddns-key"}, "dns_key_name"),  # with dns_key_file
        ({"message_log_level": "LOUD"}, "message_log_level"),
        ({"timeout": "-1"}, "timeout"),
    ],
)
def test_init_refuses_bad_settings_naming_the_key(
    bind_server: BindServer, extra: dict[str, str], key: str
) -> None:
    config = section(bind_server, **extra)
    with pytest.raises(ValueError) as caught:
        dns_plugin.init(WatcherStandIn(), config)
    assert key in str(caught.value)
    assert bind_server.key.secret not in str(caught.value)


def test_init_says_what_it_will_do(bind_server: BindServer, caplog: pytest.LogCaptureFixture) -> None:
    start(section(bind_server))
    messages = [r.getMessage() for r in caplog.records if r.name == "plugins.dns.test"]
    (summary,) = [m for m in messages if m.startswith("DNS updates go to")]
    assert f"{bind_server.host}:{bind_server.port}" in summary
    assert "TSIG key ddns-key (hmac-sha256)" in summary
    assert f"A {ROUTER_IP}" in summary
    assert bind_server.key.secret not in " ".join(messages)


def test_settings_defaults(bind_server: BindServer) -> None:
    parsed = settings.parse({"dns_server": "ns1.example.test"})
    assert parsed.ttl == 180
    assert parsed.owner_id == "event-watcher"
    assert parsed.target.from_ingress
    assert parsed.zone is None
    ipv6 = settings.parse({"dns_server": "ns", "application_router_ip": "2001:DB8:0::10"})
    assert (ipv6.target.rdtype, ipv6.target.value) == ("AAAA", "2001:db8::10")


@pytest.mark.parametrize(
    "host",
    ["web.apps.example.test", "*.apps.example.test", "a-b.c1.apps.example.test", "WEB.Apps.Example.Test"],
)
def test_valid_hosts(host: str) -> None:
    assert names.problem(host) is None


@pytest.mark.parametrize(
    "host",
    [
        "",
        "web..apps.example.test",
        "-web.apps.example.test",
        "web-.apps.example.test",
        "we_b.apps.example.test",
        "web.*.apps.example.test",
        "**.apps.example.test",
        "x" * 64 + ".apps.example.test",
        ("a" * 60 + ".") * 5 + "test",
        "web apps.example.test",
        " web.apps.example.test",
        "localhost",
    ],
)
def test_invalid_hosts(host: str) -> None:
    assert names.problem(host)


def test_ownership_values_round_trip() -> None:
    claim = ownership.claim_for("cluster-a", "demo", "web")
    assert (
        claim.value
        == "heritage=event-watcher,event-watcher/owner=cluster-a,event-watcher/resource=route/demo/web"
    )
    assert ownership.parse(claim.value) == claim
    assert claim.route == ("demo", "web")
    assert ownership.parse("heritage=external-dns,external-dns/owner=default") is None
    assert ownership.parse("v=spf1 -all") is None


# --- the plugin against BIND, called directly ------------------------------------------------------


def test_other_kinds_are_ignored(bind_server: BindServer) -> None:
    config = section(bind_server)
    watcher = start(config)
    serial = bind_server.serial()
    pod = {
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "demo"},
        "spec": {"host": "web.apps.example.test"},
    }
    assert dns_plugin.handle_event(watcher, event("ADDED", pod), config) is None
    assert bind_server.serial() == serial


def test_added_creates_one_a_record_and_one_ownership_txt(bind_server: BindServer) -> None:
    config = section(bind_server)
    watcher = start(config)
    message, level = send(watcher, "ADDED", route("web", "demo"), config)
    assert level == "INFO"
    assert message == (
        f"Route demo/web: created web.apps.example.test A {ROUTER_IP} (TTL 180) and its ownership record."
    )
    assert zone_state(bind_server, "web.apps.example.test") == {
        "web.apps.example.test A": [ROUTER_IP],
        "_event-watcher.web.apps.example.test TXT": [owner_txt("demo", "web")],
    }
    assert bind_server.ttl("web.apps.example.test", "A") == 180


def test_replaying_added_changes_nothing(bind_server: BindServer) -> None:
    config = section(bind_server)
    watcher = start(config)
    send(watcher, "ADDED", route("web", "demo"), config)
    before = zone_state(bind_server, "web.apps.example.test")
    serial = bind_server.serial()
    start(config)  # a restart: the plugin remembers nothing
    for kind in ("ADDED", "ADDED", "MODIFIED"):
        message, level = send(watcher, kind, route("web", "demo"), config)
        assert (message, level) == (
            f"Route demo/web: web.apps.example.test A {ROUTER_IP} is up to date.",
            "DEBUG",
        )
    assert zone_state(bind_server, "web.apps.example.test") == before
    assert bind_server.serial() == serial  # not even a no-op change reached the zone


def test_ipv6_router_address_makes_an_aaaa_record(bind_server: BindServer) -> None:
    config = section(bind_server, application_router_ip="2001:db8::10")
    watcher = start(config)
    send(watcher, "ADDED", route("web", "demo"), config)
    assert zone_state(bind_server, "web.apps.example.test") == {
        "web.apps.example.test AAAA": ["2001:db8::10"],
        "_event-watcher.web.apps.example.test TXT": [owner_txt("demo", "web")],
    }


def test_router_hostname_makes_a_cname(bind_server: BindServer) -> None:
    config = section(bind_server, application_router_ip="", router_hostname="lb.example.test", ttl="60")
    watcher = start(config)
    message, _ = send(watcher, "ADDED", route("web", "demo"), config)
    assert "created web.apps.example.test CNAME lb.example.test. (TTL 60)" in message
    assert zone_state(bind_server, "web.apps.example.test") == {
        "web.apps.example.test CNAME": ["lb.example.test."],
        "_event-watcher.web.apps.example.test TXT": [owner_txt("demo", "web")],
    }


def test_without_a_router_setting_the_admitting_routers_canonical_name_is_used(
    bind_server: BindServer,
) -> None:
    config = section(bind_server, application_router_ip="")
    watcher = start(config)
    pending = route("web", "demo", admitted=False)
    message, level = send(watcher, "ADDED", pending, config)
    assert level == "DEBUG"
    assert "no router has admitted it" in message
    assert zone_state(bind_server, "web.apps.example.test") == {}

    admitted = route("web", "demo", router_canonical_hostname="router-default.apps.example.test")
    message, level = send(watcher, "MODIFIED", admitted, config)
    assert level == "INFO"
    assert zone_state(bind_server, "web.apps.example.test") == {
        "web.apps.example.test CNAME": ["router-default.apps.example.test."],
        "_event-watcher.web.apps.example.test TXT": [owner_txt("demo", "web")],
    }

    sharded = route("web", "demo", router_canonical_hostname="router-shard2.apps.example.test")
    message, _ = send(watcher, "MODIFIED", sharded, config)
    assert "updated web.apps.example.test to CNAME router-shard2.apps.example.test." in message
    assert bind_server.query("web.apps.example.test", "CNAME") == ["router-shard2.apps.example.test."]

    # The router withdraws its admission: the record would lead nowhere, so it goes.
    rejected = route("web", "demo", admitted=False)
    message, _ = send(watcher, "MODIFIED", rejected, config)
    assert "removed the record of web.apps.example.test" in message
    assert zone_state(bind_server, "web.apps.example.test") == {}


def test_an_ingress_without_admission_is_not_used(bind_server: BindServer) -> None:
    config = section(bind_server, application_router_ip="")
    watcher = start(config)
    obj = route("web", "demo")
    obj["status"]["ingress"][0]["conditions"][0]["status"] = "False"
    send(watcher, "ADDED", obj, config)
    assert zone_state(bind_server, "web.apps.example.test") == {}


def test_host_change_moves_the_record(bind_server: BindServer) -> None:
    config = section(bind_server)
    watcher = start(config)
    send(watcher, "ADDED", route("web", "demo", host="old.apps.example.test"), config)
    message, level = send(watcher, "MODIFIED", route("web", "demo", host="new.apps.example.test"), config)
    assert level == "INFO"
    assert message == (
        "Route demo/web: removed the record of old.apps.example.test; "
        f"created new.apps.example.test A {ROUTER_IP} (TTL 180) and its ownership record."
    )
    assert zone_state(bind_server, "old.apps.example.test") == {}
    assert zone_state(bind_server, "new.apps.example.test") == {
        "new.apps.example.test A": [ROUTER_IP],
        "_event-watcher.new.apps.example.test TXT": [owner_txt("demo", "web")],
    }


def test_deleted_removes_the_record_and_its_txt(bind_server: BindServer) -> None:
    config = section(bind_server)
    watcher = start(config)
    send(watcher, "ADDED", route("web", "demo"), config)
    send(watcher, "ADDED", route("api", "demo"), config)
    message, level = send(watcher, "DELETED", route("web", "demo"), config)
    assert (message, level) == ("Route demo/web: removed the record of web.apps.example.test.", "INFO")
    assert zone_state(bind_server, "web.apps.example.test") == {}
    assert zone_state(bind_server, "api.apps.example.test")["api.apps.example.test A"] == [ROUTER_IP]
    # A DELETED replayed (or for a route that never had a record) removes nothing and says so quietly.
    message, level = send(watcher, "DELETED", route("web", "demo"), config)
    assert level == "DEBUG"


def test_deleted_after_a_restart_still_removes_the_record(bind_server: BindServer) -> None:
    config = section(bind_server)
    send(start(config), "ADDED", route("web", "demo"), config)
    watcher = start(config)  # the plugin's memory is gone; the ownership TXT is not
    send(watcher, "DELETED", route("web", "demo"), config)
    assert zone_state(bind_server, "web.apps.example.test") == {}


def test_a_foreign_record_is_left_alone_with_one_warning(bind_server: BindServer) -> None:
    foreign = updater(bind_server)
    update = foreign.new_update()
    update.add(foreign.name("web.apps.example.test"), 300, "A", "198.51.100.7")
    update.add(foreign.name("mail.apps.example.test"), 300, "MX", "10 mx.example.test.")
    foreign.send(update)
    config = section(bind_server)
    watcher = start(config)
    serial = bind_server.serial()

    message, level = send(watcher, "ADDED", route("web", "demo"), config)
    assert level == "WARNING"
    assert message == (
        "Route demo/web: web.apps.example.test exists in DNS without our ownership TXT at "
        "_event-watcher.web.apps.example.test; left alone."
    )
    _, level = send(watcher, "MODIFIED", route("web", "demo"), config)
    assert level == "DEBUG"  # said once, not on every resync
    message, level = send(watcher, "ADDED", route("mail", "demo"), config)
    assert level == "WARNING"
    assert "mail.apps.example.test exists in DNS without our ownership TXT" in message

    # Deleting the routes must not delete what is not ours either.
    send(watcher, "DELETED", route("web", "demo"), config)
    send(watcher, "DELETED", route("mail", "demo"), config)
    assert bind_server.query("web.apps.example.test", "A") == ["198.51.100.7"]
    assert bind_server.query("mail.apps.example.test", "MX") == ["10 mx.example.test."]
    assert bind_server.query("_event-watcher.web.apps.example.test", "TXT") == []
    assert bind_server.serial() == serial


def test_a_record_of_another_owner_is_left_alone(bind_server: BindServer) -> None:
    cluster_a = section(bind_server, owner_id="cluster-a")
    cluster_b = section(bind_server, owner_id="cluster-b", application_router_ip="192.0.2.20")
    send(start(cluster_a), "ADDED", route("web", "demo"), cluster_a)
    watcher_b = start(cluster_b)
    message, level = send(watcher_b, "ADDED", route("web", "demo"), cluster_b)
    assert level == "WARNING"
    assert "web.apps.example.test belongs to owner 'cluster-a' (route/demo/web); left alone" in message
    send(watcher_b, "DELETED", route("web", "demo"), cluster_b)
    assert zone_state(bind_server, "web.apps.example.test") == {
        "web.apps.example.test A": [ROUTER_IP],
        "_event-watcher.web.apps.example.test TXT": [owner_txt("demo", "web", "cluster-a")],
    }


def test_two_routes_on_one_host_first_come_first_served(bind_server: BindServer) -> None:
    config = section(bind_server)
    first, second = (
        route("first", "demo", host="shared.apps.example.test"),
        route("second", "demo", host="shared.apps.example.test"),
    )
    api = RoutesStandIn({("demo", "first"): first, ("demo", "second"): second})
    watcher = start(config, api)
    send(watcher, "ADDED", first, config)
    message, level = send(watcher, "ADDED", second, config)
    assert (message, level) == (
        "Route demo/second: shared.apps.example.test already belongs to route demo/first; "
        "left alone (first come, first served).",
        "WARNING",
    )
    expected = {
        "shared.apps.example.test A": [ROUTER_IP],
        "_event-watcher.shared.apps.example.test TXT": [owner_txt("demo", "first")],
    }
    assert zone_state(bind_server, "shared.apps.example.test") == expected
    assert send(watcher, "MODIFIED", second, config)[1] == "DEBUG"  # warned once

    # The second goes away: the first's record stays.
    del api.routes[("demo", "second")]
    send(watcher, "DELETED", second, config)
    assert zone_state(bind_server, "shared.apps.example.test") == expected

    # It comes back, then the first goes away: the name is freed, and the next event hands it over.
    api.routes[("demo", "second")] = second
    send(watcher, "ADDED", second, config)
    del api.routes[("demo", "first")]
    send(watcher, "DELETED", first, config)
    assert zone_state(bind_server, "shared.apps.example.test") == {}
    message, level = send(watcher, "MODIFIED", second, config)
    assert "created shared.apps.example.test" in message
    assert zone_state(bind_server, "shared.apps.example.test") == {
        "shared.apps.example.test A": [ROUTER_IP],
        "_event-watcher.shared.apps.example.test TXT": [owner_txt("demo", "second")],
    }


def test_a_host_held_by_a_route_that_is_gone_is_taken_over(bind_server: BindServer) -> None:
    config = section(bind_server)
    gone, moved, claimant = (
        route("gone", "demo", host="a.apps.example.test"),
        route("moved", "demo", host="b.apps.example.test"),
        route("claimant", "demo", host="a.apps.example.test"),
    )
    # Records written while both routes existed; then the watcher was down while "gone" was deleted and
    # "moved" got another host.
    send(start(config), "ADDED", gone, config)
    send(start(config), "ADDED", moved, config)
    api = RoutesStandIn({("demo", "moved"): route("moved", "demo", host="c.apps.example.test")})
    api.routes[("demo", "claimant")] = claimant
    watcher = start(config, api)
    message, level = send(watcher, "ADDED", claimant, config)
    assert level == "INFO"
    assert "took a.apps.example.test over from route demo/gone, which no longer uses it" in message
    other = route("claimant2", "demo", host="b.apps.example.test")
    message, _ = send(watcher, "ADDED", other, config)
    assert "took b.apps.example.test over from route demo/moved" in message
    assert zone_state(bind_server, "a.apps.example.test", "b.apps.example.test") == {
        "a.apps.example.test A": [ROUTER_IP],
        "_event-watcher.a.apps.example.test TXT": [owner_txt("demo", "claimant")],
        "b.apps.example.test A": [ROUTER_IP],
        "_event-watcher.b.apps.example.test TXT": [owner_txt("demo", "claimant2")],
    }


def test_drift_is_repaired(bind_server: BindServer) -> None:
    config = section(bind_server)
    watcher = start(config)
    send(watcher, "ADDED", route("web", "demo"), config)
    # Someone edits our record by hand (a wrong address and an extra AAAA).
    hand = updater(bind_server)
    update = hand.new_update()
    update.replace(hand.name("web.apps.example.test"), 30, "A", "203.0.113.1")
    update.add(hand.name("web.apps.example.test"), 30, "AAAA", "2001:db8::99")
    hand.send(update)
    message, level = send(watcher, "MODIFIED", route("web", "demo"), config)
    assert (message, level) == (
        f"Route demo/web: updated web.apps.example.test to A {ROUTER_IP} (TTL 180).",
        "INFO",
    )
    assert zone_state(bind_server, "web.apps.example.test") == {
        "web.apps.example.test A": [ROUTER_IP],
        "_event-watcher.web.apps.example.test TXT": [owner_txt("demo", "web")],
    }
    assert bind_server.ttl("web.apps.example.test", "A") == 180


def test_a_new_ttl_or_router_setting_is_applied(bind_server: BindServer) -> None:
    config = section(bind_server)
    send(start(config), "ADDED", route("web", "demo"), config)
    longer = section(bind_server, ttl="600")
    message, _ = send(start(longer), "ADDED", route("web", "demo"), longer)
    assert "updated web.apps.example.test to A 192.0.2.10 (TTL 600)" in message
    assert bind_server.ttl("web.apps.example.test", "A") == 600
    cname = section(bind_server, application_router_ip="", router_hostname="lb.example.test")
    send(start(cname), "ADDED", route("web", "demo"), cname)
    assert zone_state(bind_server, "web.apps.example.test") == {
        "web.apps.example.test CNAME": ["lb.example.test."],
        "_event-watcher.web.apps.example.test TXT": [owner_txt("demo", "web")],
    }


def test_hosts_outside_the_zone_are_skipped_with_one_info_line(bind_server: BindServer) -> None:
    config = section(bind_server)
    watcher = start(config)
    serial = bind_server.serial()
    message, level = send(watcher, "ADDED", route("ext", "demo", host="www.example.org"), config)
    assert (message, level) == (
        "Route demo/ext: www.example.org is outside apps.example.test, skipped (said once per host).",
        "INFO",
    )
    assert send(watcher, "MODIFIED", route("ext", "demo", host="www.example.org"), config)[1] == "DEBUG"
    assert send(watcher, "ADDED", route("ext2", "other", host="www.example.org"), config)[1] == "DEBUG"
    gone = event("DELETED", route("ext", "demo", host="www.example.org"))
    assert dns_plugin.handle_event(watcher, gone, config) is None  # nothing of ours could be there
    assert bind_server.serial() == serial


@pytest.mark.parametrize(
    "host", ["bad_name.apps.example.test", "web..apps.example.test", "a.*.apps.example.test"]
)
def test_invalid_hosts_are_rejected_before_anything_is_sent(bind_server: BindServer, host: str) -> None:
    config = section(bind_server)
    watcher = start(config)
    serial = bind_server.serial()
    message, level = send(watcher, "ADDED", route("web", "demo", host=host), config)
    assert level == "WARNING"
    assert message.startswith(f"Route demo/web: host {host!r} is not a valid DNS name (")
    assert message.endswith("); nothing sent.")
    assert bind_server.serial() == serial


def test_a_wildcard_host_gets_a_wildcard_record(bind_server: BindServer) -> None:
    config = section(bind_server)
    watcher = start(config)
    send(watcher, "ADDED", route("wild", "demo", host="*.shop.apps.example.test"), config)
    assert bind_server.query("*.shop.apps.example.test", "A") == [ROUTER_IP]
    assert bind_server.query("anything.shop.apps.example.test", "A") == [ROUTER_IP]
    assert bind_server.query("_event-watcher.*.shop.apps.example.test", "TXT") == [owner_txt("demo", "wild")]
    # A specific route under the wildcard is still free to get its own record.
    send(watcher, "ADDED", route("www", "demo", host="www.shop.apps.example.test"), config)
    assert zone_state(bind_server, "www.shop.apps.example.test")["www.shop.apps.example.test A"] == [
        ROUTER_IP
    ]
    send(watcher, "DELETED", route("wild", "demo", host="*.shop.apps.example.test"), config)
    assert bind_server.query("*.shop.apps.example.test", "A") == []
    assert bind_server.query("www.shop.apps.example.test", "A") == [ROUTER_IP]


def test_long_route_names_fit_in_the_ownership_txt(bind_server: BindServer) -> None:
    config = section(bind_server)
    watcher = start(config)
    name = "r" * 253
    namespace = "n" * 63
    send(watcher, "ADDED", route(name, namespace, host="long.apps.example.test"), config)
    assert bind_server.query("_event-watcher.long.apps.example.test", "TXT") == [owner_txt(namespace, name)]
    send(watcher, "DELETED", route(name, namespace, host="long.apps.example.test"), config)
    assert zone_state(bind_server, "long.apps.example.test") == {}


def test_zones_are_found_by_soa_query_when_dns_zone_is_unset(bind_factory) -> None:  # type: ignore[no-untyped-def]
    bind = bind_factory(zones=("apps.example.test", "apps.example.org"), policy="update-policy")
    config = section(bind, dns_zone="")
    watcher = start(config)
    send(watcher, "ADDED", route("a", "demo", host="a.apps.example.test"), config)
    send(watcher, "ADDED", route("b", "demo", host="b.apps.example.org"), config)
    message, level = send(watcher, "ADDED", route("c", "demo", host="c.example.net"), config)
    assert (message, level) == (
        f"Route demo/c: c.example.net is outside any zone {bind.host}:{bind.port} serves, "
        "skipped (said once per host).",
        "INFO",
    )
    assert bind.query("a.apps.example.test", "A") == [ROUTER_IP]
    assert bind.query("b.apps.example.org", "A") == [ROUTER_IP]


def test_inline_key_settings_work_too(bind_server: BindServer) -> None:
    config = section(
        bind_server,
        dns_key_file="",
        dns_key_name=bind_server.key.name,
        dns_key_secret=bind_server.key.secret,
        dns_key_algorithm=bind_server.key.algorithm,
    )
    watcher = start(config)
    send(watcher, "ADDED", route("web", "demo"), config)
    assert bind_server.query("web.apps.example.test", "A") == [ROUTER_IP]


def test_a_wrong_key_raises_naming_the_rcode_without_the_secret(bind_server: BindServer) -> None:
    wrong = rfc2136.TSIGKey(bind_server.key.name, "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==", "hmac-sha256")
    config = section(bind_server, dns_key_file="", dns_key_name=wrong.name, dns_key_secret=wrong.secret)
    watcher = start(config)
    with pytest.raises(rfc2136.DNSUpdateError) as raised:
        send(watcher, "ADDED", route("web", "demo"), config)
    assert raised.value.rcode == "BADSIG"
    assert str(raised.value).startswith("DNS update of zone apps.example.test")
    assert "rejected the TSIG signature" in str(raised.value)
    assert wrong.secret not in str(raised.value)
    assert zone_state(bind_server, "web.apps.example.test") == {}


def test_a_zone_the_key_may_not_update_raises(bind_factory) -> None:  # type: ignore[no-untyped-def]
    bind = bind_factory(readonly_zones=("ro.example.test",))
    config = section(bind, dns_zone="ro.example.test")
    watcher = start(config)
    with pytest.raises(rfc2136.DNSUpdateError) as raised:
        send(watcher, "ADDED", route("web", "demo", host="web.ro.example.test"), config)
    assert raised.value.rcode == "REFUSED"


def test_a_server_that_is_down_raises_and_the_same_event_succeeds_once_it_is_back(
    bind_server: BindServer,
) -> None:
    parsed = settings.parse(section(bind_server))
    subject = plugin.DNSPlugin(parsed, logging.getLogger("plugins.dns.test"), None)
    bind_server.stop()
    with pytest.raises(rfc2136.DNSUpdateError) as raised:
        subject.handle(event("ADDED", route("web", "demo")))
    assert (raised.value.rcode, raised.value.transient) == ("UNREACHABLE", True)
    bind_server.start()
    message, level = subject.handle(event("ADDED", route("web", "demo")))  # type: ignore[misc]
    assert level == "INFO" and "created web.apps.example.test" in message
    assert bind_server.query("web.apps.example.test", "A") == [ROUTER_IP]


def test_a_failed_removal_is_retried_with_the_same_deleted_event(bind_server: BindServer) -> None:
    parsed = settings.parse(section(bind_server))
    subject = plugin.DNSPlugin(parsed, logging.getLogger("plugins.dns.test"), None)
    subject.handle(event("ADDED", route("web", "demo", host="old.apps.example.test")))
    moved = route("web", "demo", host="new.apps.example.test")
    bind_server.stop()
    with pytest.raises(rfc2136.DNSUpdateError):
        subject.handle(event("DELETED", moved))  # the deletion of a route whose host had moved, unseen
    bind_server.start()
    message, _ = subject.handle(event("DELETED", moved))  # type: ignore[misc]
    assert "removed the record of old.apps.example.test" in message  # it still knows the old host
    assert zone_state(bind_server, "old.apps.example.test", "new.apps.example.test") == {}


def test_every_key_is_documented() -> None:
    readme = (Path(dns_plugin.__file__).parent / "README.md").read_text()
    for key in settings.KEYS:
        assert f"| `{key}` |" in readme, f"{key} is missing from the table in plugins/dns/README.md"


def test_a_route_without_host_or_metadata_does_not_break_anything(bind_server: BindServer) -> None:
    config = section(bind_server)
    watcher = start(config)
    bare = {"kind": "Route", "metadata": {"name": "x", "namespace": "demo"}, "spec": {}}
    assert send(watcher, "ADDED", bare, config)[1] == "DEBUG"
    assert dns_plugin.handle_event(watcher, {"type": "ADDED", "object": None}, config) is None


# --- end to end: local API -> watcher -> dns plugin -> BIND ---------------------------------------


def dns_lines(caplog: pytest.LogCaptureFixture, level: int, *fragments: str) -> list[str]:
    """Lines the running watcher logged for the dns plugin at ``level`` containing every fragment."""
    return [
        r.getMessage()
        for r in list(caplog.records)
        if r.name == "plugins.dns" and r.levelno == level and all(f in r.getMessage() for f in fragments)
    ]


def watching(
    local_api: LocalAPI, bind: BindServer, *, plugins: str = "dns", resync: str = "0", **extra: str
) -> Any:
    """The real watcher on namespace ``demo`` with the dns plugin configured for ``bind``."""
    config = {"plugin_dns": section(bind, **extra)}
    env = {"WATCHER_RESYNC_PERIOD": resync}
    return running_watcher(local_api, namespace="demo", plugins=plugins, ini=config, env=env)


def test_e2e_create_host_change_delete(local_api: LocalAPI, bind_server: BindServer) -> None:
    with watching(local_api, bind_server) as w:
        local_api.create("routes", route("web", "demo", host="web.apps.example.test"))
        wait_until(lambda: bind_server.query("web.apps.example.test", "A"), what="the A record of web")
        assert zone_state(bind_server, "web.apps.example.test") == {
            "web.apps.example.test A": [ROUTER_IP],
            "_event-watcher.web.apps.example.test TXT": [owner_txt("demo", "web")],
        }

        local_api.patch("routes", "demo", "web", {"spec": {"host": "shop.apps.example.test"}})
        wait_until(lambda: bind_server.query("shop.apps.example.test", "A"), what="the A record of shop")
        assert zone_state(bind_server, "web.apps.example.test") == {}
        assert zone_state(bind_server, "shop.apps.example.test") == {
            "shop.apps.example.test A": [ROUTER_IP],
            "_event-watcher.shop.apps.example.test TXT": [owner_txt("demo", "web")],
        }

        local_api.delete("routes", "demo", "web")
        wait_until(lambda: not zone_state(bind_server, "shop.apps.example.test"), what="the records to go")
        assert w.errors == 0


def test_e2e_cname_to_the_admitting_router(
    local_api: LocalAPI, bind_server: BindServer, caplog: pytest.LogCaptureFixture
) -> None:
    with watching(local_api, bind_server, application_router_ip=""):
        local_api.create("routes", route("web", "demo", admitted=False))
        wait_until(
            lambda: dns_lines(caplog, logging.DEBUG, "Route demo/web", "no router has admitted it"),
            what="the plugin to see the route before it is admitted",
        )
        assert zone_state(bind_server, "web.apps.example.test") == {}
        admitted = route("web", "demo", router_canonical_hostname="router-default.apps.example.test")
        local_api.patch("routes", "demo", "web", {"status": admitted["status"]})
        wait_until(lambda: bind_server.query("web.apps.example.test", "CNAME"), what="the CNAME of web")
        assert zone_state(bind_server, "web.apps.example.test") == {
            "web.apps.example.test CNAME": ["router-default.apps.example.test."],
            "_event-watcher.web.apps.example.test TXT": [owner_txt("demo", "web")],
        }


def test_e2e_a_foreign_record_is_left_alone(
    local_api: LocalAPI, bind_server: BindServer, caplog: pytest.LogCaptureFixture
) -> None:
    hand = updater(bind_server)
    update = hand.new_update()
    update.add(hand.name("web.apps.example.test"), 300, "A", "198.51.100.7")
    hand.send(update)
    with watching(local_api, bind_server) as w:
        local_api.create("routes", route("web", "demo"))
        local_api.create("routes", route("api", "demo"))
        wait_until(lambda: bind_server.query("api.apps.example.test", "A"), what="the record of api")
        wait_until(
            lambda: dns_lines(caplog, logging.WARNING, "Route demo/web", "without our ownership TXT"),
            what="the warning about web",
        )
        local_api.delete("routes", "demo", "web")
        local_api.delete("routes", "demo", "api")
        wait_until(lambda: not bind_server.query("api.apps.example.test", "A"), what="api's record to go")
        assert zone_state(bind_server, "web.apps.example.test") == {
            "web.apps.example.test A": ["198.51.100.7"]
        }
        assert w.errors == 0


def test_e2e_two_routes_on_one_host(
    local_api: LocalAPI, bind_server: BindServer, caplog: pytest.LogCaptureFixture
) -> None:
    host = "shared.apps.example.test"
    with watching(local_api, bind_server, resync="1"):
        local_api.create("routes", route("first", "demo", host=host))
        wait_until(lambda: bind_server.query(host, "A"), what="the first route's record")
        local_api.create("routes", route("second", "demo", host=host))
        wait_until(
            lambda: dns_lines(
                caplog, logging.WARNING, "Route demo/second", "already belongs to route demo/first"
            ),
            what="the warning about the second route",
        )
        assert zone_state(bind_server, host) == {
            f"{host} A": [ROUTER_IP],
            f"_event-watcher.{host} TXT": [owner_txt("demo", "first")],
        }
        # Said once, although the resync hands the second route over every second.
        wait_until(
            lambda: len(dns_lines(caplog, logging.DEBUG, "Route demo/second", "already belongs")) >= 2,
            what="two resyncs of the second route",
        )
        assert len(dns_lines(caplog, logging.WARNING, "Route demo/second", "already belongs")) == 1

        # The first goes away: its record goes, and a resync gives the name to the second.
        local_api.delete("routes", "demo", "first")
        wait_until(
            lambda: bind_server.query(f"_event-watcher.{host}", "TXT") == [owner_txt("demo", "second")],
            what="the second route to get the name",
        )
        assert zone_state(bind_server, host) == {
            f"{host} A": [ROUTER_IP],
            f"_event-watcher.{host} TXT": [owner_txt("demo", "second")],
        }


def test_e2e_restart_creates_no_duplicates(
    local_api: LocalAPI, bind_server: BindServer, caplog: pytest.LogCaptureFixture
) -> None:
    hosts = [f"app{i}.apps.example.test" for i in range(5)]
    with watching(local_api, bind_server):
        for i, host in enumerate(hosts):
            local_api.create("routes", route(f"app{i}", "demo", host=host))
        wait_until(lambda: all(bind_server.query(h, "A") for h in hosts), what="every record")
    before = zone_state(bind_server, *hosts)
    serial = bind_server.serial()
    assert len(before) == 2 * len(hosts)
    caplog.clear()
    with watching(local_api, bind_server):
        # Every route is ADDED again; each finds its record already right.
        wait_until(
            lambda: len(dns_lines(caplog, logging.DEBUG, "is up to date")) >= len(hosts),
            what="the replayed ADDED events",
        )
    assert zone_state(bind_server, *hosts) == before
    assert all(len(values) == 1 for values in before.values())
    assert bind_server.serial() == serial
    assert not dns_lines(caplog, logging.INFO, "created")


def test_e2e_a_wrong_key_is_retried_and_counted_and_the_other_plugins_go_on(
    local_api: LocalAPI, bind_server: BindServer, caplog: pytest.LogCaptureFixture
) -> None:
    wrong_key = {
        "dns_key_file": "",
        "dns_key_name": bind_server.key.name,
        "dns_key_secret": "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==",
    }
    with watching(local_api, bind_server, plugins="dns,record", **wrong_key) as w:
        local_api.create("routes", route("web", "demo"))
        lines = wait_until(
            lambda: dns_lines(caplog, logging.ERROR, "Route demo/web", "attempt 2"), what="the retry"
        )
        assert "DNSUpdateError: DNS update of zone apps.example.test" in lines[0]
        assert lines[0].endswith("; retrying with backoff.")
        assert "rejected the TSIG signature" in lines[0] and "\n" not in lines[0]
        wait_until(lambda: "demo/web" in w.plugin("record").state, what="the next plugin, not held up")
        assert w.metric("event_watcher_events_failed_total", plugin="dns") >= 2
        assert w.metric("event_watcher_events_failed_total", plugin="record") == 0
    assert zone_state(bind_server, "web.apps.example.test") == {}


def test_e2e_server_down_then_up_is_repaired_without_resync(
    local_api: LocalAPI, bind_server: BindServer, caplog: pytest.LogCaptureFixture
) -> None:
    with watching(local_api, bind_server) as w:
        local_api.create("routes", route("web", "demo"))
        wait_until(lambda: bind_server.query("web.apps.example.test", "A"), what="the first record")
        bind_server.stop()
        local_api.create("routes", route("api", "demo"))
        local_api.delete("routes", "demo", "web")
        wait_until(
            lambda: dns_lines(caplog, logging.ERROR, "Route demo/api", "UNREACHABLE"),
            what="the error about the unreachable server",
        )
        bind_server.start()
        wait_until(lambda: bind_server.query("api.apps.example.test", "A"), timeout=30, what="the repair")
        wait_until(
            lambda: not zone_state(bind_server, "web.apps.example.test"), timeout=30, what="the removal"
        )
        assert zone_state(bind_server, "api.apps.example.test") == {
            "api.apps.example.test A": [ROUTER_IP],
            "_event-watcher.api.apps.example.test TXT": [owner_txt("demo", "api")],
        }
        assert w.errors >= 1  # every failed attempt counted


def test_e2e_bad_settings_stop_the_start_naming_the_key(local_api: LocalAPI, bind_server: BindServer) -> None:
    with pytest.raises(errors.PluginError) as caught, watching(local_api, bind_server, dns_port="abc"):
        pass
    assert "plugin 'dns' refused to start: dns_port 'abc' is not a whole number." in str(caught.value)


def test_a_wildcard_route_gets_the_wildcard_name(bind_server: BindServer) -> None:
    config = section(bind_server)
    watcher = start(config)
    wild = route("wild", "demo", host="www.shop.apps.example.test")
    wild["spec"]["wildcardPolicy"] = "Subdomain"
    message, _ = send(watcher, "ADDED", wild, config)
    assert "created *.shop.apps.example.test A 192.0.2.10" in message
    assert bind_server.query("*.shop.apps.example.test", "A") == [ROUTER_IP]
    assert bind_server.query("www.shop.apps.example.test", "A") == [ROUTER_IP]  # through the wildcard
    assert bind_server.query("_event-watcher.*.shop.apps.example.test", "TXT") == [owner_txt("demo", "wild")]
    send(watcher, "DELETED", wild, config)
    assert zone_state(bind_server, "*.shop.apps.example.test") == {}


def test_e2e_a_name_left_by_a_route_deleted_while_the_watcher_was_down_is_taken_over(
    local_api: LocalAPI, bind_server: BindServer
) -> None:
    host = "shop.apps.example.test"
    with watching(local_api, bind_server):
        local_api.create("routes", route("shop-v1", "demo", host=host))
        wait_until(lambda: bind_server.query(host, "A"), what="the record of shop-v1")
    local_api.delete("routes", "demo", "shop-v1")
    local_api.create("routes", route("shop-v2", "demo", host=host))
    with watching(local_api, bind_server) as w:
        wait_until(
            lambda: bind_server.query(f"_event-watcher.{host}", "TXT") == [owner_txt("demo", "shop-v2")],
            what="shop-v2 to take the name over",
        )
        assert zone_state(bind_server, host) == {
            f"{host} A": [ROUTER_IP],
            f"_event-watcher.{host} TXT": [owner_txt("demo", "shop-v2")],
        }
        assert w.errors == 0


def dns_events(local_api: LocalAPI, name: str) -> list[tuple[str, str, str, int]]:
    """(type, reason, message, count) of the Events on route ``name`` in ``demo``, oldest first."""
    found = [e for e in local_api.list("events", "demo") if e["involvedObject"]["name"] == name]
    return [(e["type"], e["reason"], e["message"], e.get("count", 1)) for e in found]


def test_e2e_changes_and_failures_are_events_on_the_route(
    local_api: LocalAPI, bind_server: BindServer
) -> None:
    with watching(local_api, bind_server):
        local_api.create("routes", route("web", "demo"))
        wait_until(lambda: dns_events(local_api, "web"), what="an Event on the route")
        local_api.patch("routes", "demo", "web", {"spec": {"host": "shop.apps.example.test"}})
        wait_until(lambda: len(dns_events(local_api, "web")) >= 3, what="the Events of the move")
    reasons = [(t, r, m) for t, r, m, _ in dns_events(local_api, "web")]
    assert reasons[0] == (
        "Normal",
        "DNSRecordCreated",
        f"Created web.apps.example.test A {ROUTER_IP} (TTL 180) and its ownership record.",
    )
    assert ("Normal", "DNSRecordRemoved", "Removed the record of web.apps.example.test.") in reasons
    assert (
        "Normal",
        "DNSRecordCreated",
        "Created shop.apps.example.test A 192.0.2.10 (TTL 180) and its ownership record.",
    ) in reasons


def test_e2e_a_failing_update_is_one_warning_event_whose_count_grows(
    local_api: LocalAPI, bind_server: BindServer
) -> None:
    wrong_key = {
        "dns_key_file": "",
        "dns_key_name": bind_server.key.name,
        "dns_key_secret": "d3Jvbmctc2VjcmV0",
    }
    with watching(local_api, bind_server, **wrong_key):
        local_api.create("routes", route("web", "demo"))
        wait_until(
            lambda: any(c >= 2 for *_, c in dns_events(local_api, "web")),
            timeout=20,
            what="the count to grow",
        )
    (event,) = dns_events(local_api, "web")
    assert event[:2] == ("Warning", "DNSUpdateFailed")
    assert "rejected the TSIG signature" in event[2] and "d3Jvbmctc2VjcmV0" not in event[2]
    assert event[2].endswith("Retrying with backoff.")


def test_dry_run_writes_nothing_and_says_what_it_would_have_done(
    bind_server: BindServer, caplog: pytest.LogCaptureFixture
) -> None:
    """--dry-run: the plugin's updaters send only prerequisites, so the zone stays as it was."""
    config = section(bind_server)
    watcher = WatcherStandIn(dry_run=True)
    dns_plugin.init(watcher, config)
    with caplog.at_level(logging.INFO):
        message, _ = send(watcher, "ADDED", route("web", "demo"), config)
    assert message.startswith("Route demo/web (dry run: nothing written): created web.apps.example.test A")
    assert zone_state(bind_server, "web.apps.example.test") == {}
    would = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dry-run: would update")]
    assert would and "web.apps.example.test." in would[0] and ROUTER_IP in would[0], would
    assert any("Dry run: updates are only checked" in r.getMessage() for r in caplog.records)
    # A name someone else holds is still left alone (the plugin's reads are real), and nothing changed.
    foreign = updater(bind_server)
    update = foreign.new_update()
    update.add(foreign.name("mail.apps.example.test"), 300, "A", "198.51.100.7")
    foreign.send(update)
    serial = bind_server.serial()
    message, level = send(watcher, "ADDED", route("mail", "demo"), config)
    assert level == "WARNING" and "without our ownership TXT" in message, message
    send(watcher, "DELETED", route("web", "demo"), config)
    assert bind_server.serial() == serial
