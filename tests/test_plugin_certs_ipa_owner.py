"""FreeIPA ownership: the plugin touches only hosts it made, and its sweep removes those no route wants."""

from __future__ import annotations

import logging

import pytest

from plugins.certs.issuer import Deleted, IssuanceError
from tests.certs_support import OPT_IN
from tests.harness import route, running_watcher, wait_until
from tests.servers.freeipa import FreeIPAStandIn, freeipa  # noqa: F401
from tests.test_plugin_certs_ipa import claim, ipa_config, make_issuer, request

HOST = "web.apps.example.test"
NS = "demo"


def enrolled(server: FreeIPAStandIn, fqdn: str, description: str = "") -> None:
    """A host someone else made: an enrolled machine, or another cluster's watcher's."""
    server.hosts[fqdn] = {"fqdn": [fqdn], **({"description": [description]} if description else {})}


def test_a_foreign_host_gets_no_certificate_and_is_never_deleted(freeipa) -> None:  # noqa: F811
    enrolled(freeipa, HOST)
    issuer = make_issuer(freeipa)
    with pytest.raises(IssuanceError) as caught:
        request(issuer)
    assert not caught.value.retry
    assert str(caught.value).startswith(
        f"Host {HOST} already exists in FreeIPA and was not made by this watcher: no certificate is "
        "requested for it, and the host is left alone."
    )
    assert f"ipa host-mod {HOST} --desc='{claim()}'" in str(caught.value)
    assert freeipa.methods() == ["host_add", "host_show"]
    gone = Deleted(NS, "web", HOST, None, "")
    assert issuer.deleted(gone, revoke=True) == (
        f"Host {HOST} of deleted route demo/web is not made by this watcher; left alone in FreeIPA."
    )
    assert HOST in freeipa.hosts and "host_del" not in freeipa.methods()


def test_another_owners_host_is_refused_and_so_is_another_routes_on_delete(freeipa) -> None:  # noqa: F811
    enrolled(freeipa, HOST, claim(owner="cluster-b"))
    issuer = make_issuer(freeipa)
    with pytest.raises(IssuanceError, match="was made by owner 'cluster-b', not 'event-watcher'"):
        request(issuer)
    # two routes of ours sharing a host: the claim names the first, deleting the second leaves it
    request(issuer, "shop.apps.example.test", ("demo", "shop"))
    request(issuer, "shop.apps.example.test", ("demo", "shop-v2"))
    message = issuer.deleted(Deleted(NS, "shop-v2", "shop.apps.example.test", None, ""), revoke=False)
    assert message == (
        "Host shop.apps.example.test of deleted route demo/shop-v2 is claimed for event-watcher's route "
        "demo/shop; left alone in FreeIPA."
    )
    assert "shop.apps.example.test" in freeipa.hosts
    assert issuer.deleted(Deleted(NS, "shop", "shop.apps.example.test", None, ""), revoke=False).startswith(
        "Removed host shop.apps.example.test"
    )
    assert HOST in freeipa.hosts  # cluster-b's


def test_the_sweep_deletes_only_our_hosts_that_no_route_wants(freeipa) -> None:  # noqa: F811
    issuer = make_issuer(freeipa)
    kept, _ = request(issuer, HOST, (NS, "web"))
    old, _ = request(issuer, "old.apps.example.test", (NS, "old"))
    enrolled(freeipa, "db1.example.test")
    enrolled(freeipa, "old2.apps.example.test", claim("old2", owner="cluster-b"))
    enrolled(freeipa, "x.apps.example.test", claim("x", owner="event-watcher-2"))  # owner=a vs owner=ab
    counts = issuer.sweep({HOST}, revoke=False)
    assert counts == {"found": 2, "deleted": 1, "revoked": 0}
    assert sorted(freeipa.hosts) == [
        "db1.example.test",
        "old2.apps.example.test",
        HOST,
        "x.apps.example.test",
    ]
    assert freeipa.certificates[old.leaf.serial_number].revoked == 4
    assert freeipa.certificates[kept.leaf.serial_number].revoked is None
    find = next(options for method, _, options in freeipa.calls if method == "host_find")
    assert find["sizelimit"] == 0
    assert issuer.sweep({HOST}, revoke=False) == {"found": 1, "deleted": 0, "revoked": 0}


def test_keeping_hosts_the_sweep_revokes_their_certificates_once(freeipa) -> None:  # noqa: F811
    issuer = make_issuer(freeipa, ipa_delete_host="false")
    old, _ = request(issuer, "old.apps.example.test", (NS, "old"))
    assert issuer.sweep(set(), revoke=False) == {"found": 1, "deleted": 0, "revoked": 0}
    assert freeipa.certificates[old.leaf.serial_number].revoked is None
    assert issuer.sweep(set(), revoke=True) == {"found": 1, "deleted": 0, "revoked": 1}
    assert freeipa.certificates[old.leaf.serial_number].revoked == 5  # cessationOfOperation
    assert issuer.sweep(set(), revoke=True)["revoked"] == 0
    assert "old.apps.example.test" in freeipa.hosts


def test_a_route_deleted_while_the_watcher_was_down_loses_its_host_at_the_next_start(
    local_api,
    freeipa,  # noqa: F811
    caplog,
) -> None:
    enrolled(freeipa, "db1.example.test")  # an enrolled machine, with a route named like it
    ini = {"plugin_certs": ipa_config(freeipa)}
    local_api.create("routes", route("web", NS, HOST, annotations=OPT_IN))
    local_api.create("routes", route("old", NS, "old.apps.example.test", annotations=OPT_IN))
    local_api.create("routes", route("db", NS, "db1.example.test", annotations=OPT_IN))
    with running_watcher(local_api, namespace=NS, plugins="certs", ini=ini) as w:
        wait_until(
            lambda: all(local_api.get("routes", NS, n)["spec"].get("tls") for n in ("web", "old")),
            what="both certificates",
        )
        wait_until(lambda: w.errors >= 1, what="the refusal for db1")
    assert sorted(freeipa.hosts) == ["db1.example.test", "old.apps.example.test", HOST]
    local_api.delete("routes", NS, "old")  # while the watcher is down
    local_api.delete("routes", NS, "db")
    caplog.clear()
    caplog.set_level(logging.INFO)
    with running_watcher(local_api, namespace=NS, plugins="certs", ini=ini) as w:
        wait_until(lambda: "old.apps.example.test" not in freeipa.hosts, what="the sweep to remove old")
        wait_until(
            lambda: w.metric("event_watcher_sweep_changes_total", plugin="certs", action="deleted") == 1,
            what="the sweep counted",
        )
    assert sorted(freeipa.hosts) == ["db1.example.test", HOST]
    assert any(
        r.getMessage().startswith("Plugin certs swept 1 objects in ")
        and r.getMessage().endswith(": found 2, deleted 1.")
        for r in caplog.records
    )
