# ruff: noqa: F811  (the BIND fixtures are imported by name and then requested as arguments)
"""The dns plugin's sweep against a real BIND9: leftovers of a downtime removed, missing records
written, names that are not ours (hand-made, another owner's, another namespace's) never touched."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import plugins.dns as dns_plugin
from tests.harness import route, wait_until
from tests.servers.bind import BindServer, bind_factory, bind_server  # noqa: F401
from tests.test_plugin_dns import (
    ROUTER_IP,
    fresh_plugin,  # noqa: F401  (autouse fixture)
    owner_txt,
    section,
    send,
    start,
    updater,
    watching,
    zone_state,
)
from watcher import rfc2136
from watcher.localapi import LocalAPI

ZONE = "apps.example.test"


def host(name: str) -> str:
    return f"{name}.{ZONE}"


def hand_made(bind: BindServer, name: str, rdtype: str, value: str) -> None:
    """A record someone made without the watcher (or with another owner id), straight to BIND."""
    u = updater(bind)
    update = u.new_update()
    update.add(u.name(name), 300, rdtype, value)
    u.send(update)


def test_the_sweep_removes_leftovers_writes_what_is_missing_and_leaves_foreign_names_alone(
    bind_server: BindServer, caplog: pytest.LogCaptureFixture
) -> None:
    config = section(bind_server)
    watcher = start(config)
    keep, moved, gone = route("keep", "demo"), route("moved", "demo"), route("gone", "demo")
    for r in (keep, moved, gone):
        send(watcher, "ADDED", r, config)
    hand_made(bind_server, host("manual"), "A", "198.51.100.7")
    hand_made(bind_server, host("theirs"), "A", "198.51.100.8")
    hand_made(
        bind_server, f"_event-watcher.{host('theirs')}", "TXT", owner_txt("demo", "theirs", owner="other")
    )
    foreign = zone_state(bind_server, host("manual"), host("theirs"))

    # While "the watcher was down": gone deleted, moved given another host, fresh created.
    dns_plugin.close()
    watcher = start(config)
    moved["spec"]["host"] = host("moved-v2")
    fresh = route("fresh", "demo")
    caplog.set_level(logging.INFO, logger="plugins.dns.test")
    counts = dns_plugin.sweep(watcher, [keep, moved, fresh], config)

    assert counts == {"found": 3, "created": 2, "updated": 0, "deleted": 2}
    assert zone_state(bind_server, host("gone"), host("moved")) == {}
    for name, r in ((host("keep"), "keep"), (host("moved-v2"), "moved"), (host("fresh"), "fresh")):
        assert zone_state(bind_server, name) == {
            f"{name} A": [ROUTER_IP],
            f"_event-watcher.{name} TXT": [owner_txt("demo", r)],
        }
    assert zone_state(bind_server, host("manual"), host("theirs")) == foreign
    said = [r.getMessage() for r in caplog.records if r.name == "plugins.dns.test"]
    assert f"Swept the record of {host('gone')}: route demo/gone is gone." in said
    assert f"Swept the record of {host('moved')}: route demo/moved now has host {host('moved-v2')}." in said

    # In sync now: the next sweep finds the same and writes nothing.
    serial = bind_server.serial()
    again = dns_plugin.sweep(watcher, [keep, moved, fresh], config)
    assert again == {"found": 3, "created": 0, "updated": 0, "deleted": 0}
    assert bind_server.serial() == serial


def test_the_sweep_repairs_records_changed_or_removed_by_hand(bind_server: BindServer) -> None:
    config = section(bind_server)
    watcher = start(config)
    a, b = route("a", "demo"), route("b", "demo")
    send(watcher, "ADDED", a, config)
    send(watcher, "ADDED", b, config)
    u = updater(bind_server)
    changed = u.new_update()
    changed.replace(u.name(host("a")), 180, "A", "203.0.113.99")
    u.send(changed)
    removed = u.new_update()
    removed.delete(u.name(host("b")), "A")
    u.send(removed)

    assert dns_plugin.sweep(watcher, [a, b], config) == {"found": 2, "created": 0, "updated": 2, "deleted": 0}
    assert bind_server.query(host("a"), "A") == [ROUTER_IP]
    assert bind_server.query(host("b"), "A") == [ROUTER_IP]


def test_a_route_that_no_router_admits_any_more_loses_its_record(bind_server: BindServer) -> None:
    config = section(bind_server, application_router_ip="")
    watcher = start(config)
    web = route("web", "demo")
    send(watcher, "ADDED", web, config)
    assert bind_server.query(host("web"), "CNAME")
    unadmitted = route("web", "demo", admitted=False)
    assert dns_plugin.sweep(watcher, [unadmitted], config)["deleted"] == 1
    assert zone_state(bind_server, host("web")) == {}


def test_a_watch_of_one_namespace_leaves_the_names_of_other_namespaces_alone(bind_server: BindServer) -> None:
    config = section(bind_server)
    watcher = start(config)
    send(watcher, "ADDED", route("web", "other"), config)
    scoped = start(config)
    dns_plugin.close()
    scoped.config = type("Scope", (), {"namespace": "demo"})()
    dns_plugin.init(scoped, config)
    assert dns_plugin.sweep(scoped, [], config) == {"found": 0, "created": 0, "updated": 0, "deleted": 0}
    assert bind_server.query(host("web"), "A") == [ROUTER_IP]


def test_a_zone_that_cannot_be_listed_is_said_once_and_changes_nothing(
    bind_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    bind = bind_factory(allow_transfer=False)
    config = section(bind)
    watcher = start(config)
    send(watcher, "ADDED", route("gone", "demo"), config)
    caplog.set_level(logging.WARNING, logger="plugins.dns.test")
    for _ in range(2):
        assert dns_plugin.sweep(watcher, [], config) == {"found": 0, "created": 0, "updated": 0, "deleted": 0}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"Cannot list zone {ZONE} to sweep it (REFUSED): records of routes deleted")
    assert f'allow-transfer {{ key "{bind.key.name}"; }}' in warnings[0]
    assert bind.query(host("gone"), "A") == [ROUTER_IP]


def test_a_server_that_is_down_fails_the_sweep_so_that_it_is_retried(bind_server: BindServer) -> None:
    config = section(bind_server)
    watcher = start(config)
    bind_server.stop()
    with pytest.raises(rfc2136.DNSUpdateError) as caught:
        dns_plugin.sweep(watcher, [], config)
    assert caught.value.rcode == "UNREACHABLE" and caught.value.transient


def test_zones_found_by_soa_are_swept_even_when_no_route_uses_them_now(bind_factory: Any) -> None:
    bind = bind_factory(zones=(ZONE, "shop.example.test"))
    config = section(bind, dns_zone="")
    watcher = start(config)
    send(watcher, "ADDED", route("cart", "demo", host="cart.shop.example.test"), config)
    assert dns_plugin.sweep(watcher, [], config)["deleted"] == 1
    assert zone_state(bind, "cart.shop.example.test") == {}


def test_e2e_leftovers_of_a_downtime_are_removed_at_start_and_counted(
    local_api: LocalAPI, bind_server: BindServer
) -> None:
    with watching(local_api, bind_server):
        for name in ("web", "api", "old"):
            local_api.create("routes", route(name, "demo"))
        wait_until(
            lambda: all(bind_server.query(host(n), "A") for n in ("web", "api", "old")), what="records"
        )
    local_api.delete("routes", "demo", "old")
    local_api.patch("routes", "demo", "api", {"spec": {"host": host("api-v2")}})
    with watching(local_api, bind_server) as w:
        wait_until(
            lambda: not zone_state(bind_server, host("old"), host("api")),
            timeout=20,
            what="the leftovers gone",
        )
        wait_until(lambda: bind_server.query(host("api-v2"), "A"), what="the new host")
        wait_until(
            lambda: w.metric("event_watcher_sweep_changes_total", plugin="dns", action="deleted") >= 1,
            what="the sweep's count",
        )
        assert bind_server.query(host("web"), "A") == [ROUTER_IP]
