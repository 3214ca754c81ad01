"""Every watch-loop behaviour of issue 2 §4, against the local API over real HTTPS.

Each test asserts the exact sequence the plugin chain received (the ``record`` test plugin). Faults are
queued before the watcher starts: the local API applies each to the next matching request.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
import pytest

from tests.harness import FAST, route, running_watcher, wait_until
from watcher.informer import Tuning, same_version
from watcher.localapi import Fault, LocalAPI, apply_route
from watcher.transform import LAST_APPLIED


def seen(w: Any) -> list[tuple[str, str, str]]:
    rec = w.plugin("record")
    with rec.lock:
        return [(e.type, e.name, e.resource_version) for e in rec.events]


def names(w: Any, kind: str | None = None) -> list[str]:
    return [name for t, name, _ in seen(w) if kind is None or t == kind]


def state(w: Any) -> dict[str, str]:
    rec = w.plugin("record")
    with rec.lock:
        return {key: obj["metadata"]["resourceVersion"] for key, obj in rec.state.items()}


def server_state(api: LocalAPI, namespace: str = "default") -> dict[str, str]:
    return {
        f"{namespace}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
        for o in api.list("routes", namespace)
    }


def rv(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["resourceVersion"])


def test_start_lists_every_page_as_added_then_watches_from_the_list(local_api: LocalAPI) -> None:
    created = [local_api.create("routes", route(f"r{i:02d}")) for i in range(7)]
    tuning = Tuning(**{**FAST.__dict__, "page_size": 3})
    with running_watcher(local_api, tuning=tuning) as w:
        assert seen(w) == [("ADDED", o["metadata"]["name"], rv(o)) for o in created]
        # Every item has the kind and apiVersion a watch event would carry.
        assert all(obj["kind"] == "Route" for obj in w.plugin("record").state.values())
        later = local_api.create("routes", route("late"))
        wait_until(lambda: len(seen(w)) == 8, what="the watch event")
        assert seen(w)[-1] == ("ADDED", "late", rv(later))
    lists = [
        r
        for r in local_api.requests_seen()
        if r.method == "GET" and "watch" not in r.query and r.path.endswith("/routes")
    ]
    assert len(lists) == 3  # 7 items in pages of 3
    watch = next(r for r in local_api.requests_seen() if r.query.get("watch") == "true")
    assert watch.query["allowWatchBookmarks"] == "true"
    assert watch.query["resourceVersion"] == rv(created[-1])
    assert 1 <= int(watch.query["timeoutSeconds"]) <= 6


def test_a_clean_end_resumes_from_the_last_event(local_api: LocalAPI) -> None:
    local_api.inject(Fault("close", after_events=1))
    with running_watcher(local_api) as w:
        a = local_api.create("routes", route("a"))  # delivered, then the stream ends cleanly
        b = local_api.create("routes", route("b"))  # only on the next watch
        wait_until(lambda: len(seen(w)) == 2)
        time.sleep(0.3)
        assert seen(w) == [("ADDED", "a", rv(a)), ("ADDED", "b", rv(b))]
    watches = [
        r.query["resourceVersion"] for r in local_api.requests_seen() if r.query.get("watch") == "true"
    ]
    assert watches[1] == rv(a)


def test_bookmarks_move_the_position_and_never_reach_plugins(local_api: LocalAPI) -> None:
    local_api.create("routes", route("a"))
    with running_watcher(local_api) as w:
        other = local_api.create("services", {"metadata": {"name": "svc", "namespace": "default"}})
        # A bookmark (every second here) carries the newer resourceVersion of the other resource...
        wait_until(lambda: w.informer.resource_version == rv(other), what="a bookmark")
        local_api.inject(Fault("close"))
        # ...and the next watch starts there.
        wait_until(
            lambda: any(
                r.query.get("resourceVersion") == rv(other)
                for r in local_api.requests_seen()
                if r.query.get("watch")
            ),
            what="a watch from the bookmark's resourceVersion",
        )
        assert names(w) == ["a"]
        assert w.metric("event_watcher_events_received_total", type="BOOKMARK") >= 1


def test_a_connection_dropped_mid_line_resumes_from_the_last_complete_event(local_api: LocalAPI) -> None:
    local_api.inject(Fault("drop_mid_line", after_events=2))
    with running_watcher(local_api) as w:
        made = [local_api.create("routes", route(f"d{i}")) for i in range(5)]
        wait_until(lambda: len(seen(w)) == 5, what="all five events")
        time.sleep(0.3)
        assert seen(w) == [("ADDED", o["metadata"]["name"], rv(o)) for o in made]
        assert w.restarts("dropped") >= 1


@pytest.mark.parametrize("expired_as", ["http", "event"])
def test_expired_resource_version_relists_and_delivers_only_the_difference(expired_as: str) -> None:
    with LocalAPI(bookmark_interval=60, expired_as=expired_as) as api:
        keep = api.create("routes", route("keep"))
        change = api.create("routes", route("change"))
        drop = api.create("routes", route("drop"))
        # Blind: the first watch sends nothing for a while, and meanwhile the history is compacted away.
        api.inject(Fault("silent", seconds=1.5))
        with running_watcher(api) as w:
            assert sorted(names(w)) == ["change", "drop", "keep"]
            changed = api.patch("routes", "default", "change", {"spec": {"host": "new.apps.example.test"}})
            api.delete("routes", "default", "drop")
            added = api.create("routes", route("new"))
            api.compact()
            wait_until(lambda: len(seen(w)) == 6, what="the relist diff")
            time.sleep(0.3)
            assert sorted(seen(w)[3:]) == sorted(
                [
                    ("MODIFIED", "change", rv(changed)),
                    ("DELETED", "drop", rv(drop)),
                    ("ADDED", "new", rv(added)),
                ]
            )
            assert state(w) == server_state(api)
            assert ("keep", rv(keep)) not in [(n, r) for _, n, r in seen(w)[3:]]
            assert w.relists == 1
            assert rv(change) != rv(changed)


def test_token_rotation_401_rereads_the_token_file(local_api: LocalAPI) -> None:
    local_api.inject(Fault("close", after_events=1))
    with running_watcher(local_api) as w:
        new = local_api.rotate_token()
        w.write_token(new)
        a = local_api.create("routes", route("a"))  # the old stream delivers it, then ends
        b = local_api.create("routes", route("b"))  # the next watch gets a 401, re-reads the file
        wait_until(lambda: len(seen(w)) == 2, what="the event after rotation")
        assert seen(w) == [("ADDED", "a", rv(a)), ("ADDED", "b", rv(b))]
    assert any(r.status == 401 for r in local_api.requests_seen())


def test_401_before_the_file_rotates_backs_off_then_recovers(
    local_api: LocalAPI, caplog: pytest.LogCaptureFixture
) -> None:
    local_api.inject(Fault("close", after_events=1))
    with running_watcher(local_api) as w:
        new = local_api.rotate_token()
        local_api.create("routes", route("first"))
        a = local_api.create("routes", route("a"))
        wait_until(lambda: w.restarts("unauthorized") >= 2, what="401s")
        w.write_token(new)
        wait_until(lambda: len(seen(w)) == 2, what="recovery after the token file changed")
        assert seen(w)[1] == ("ADDED", "a", rv(a))
    warnings = [
        r for r in caplog.records if r.levelno >= logging.WARNING and "Unauthorized" in r.getMessage()
    ]
    assert len(warnings) == 1  # once per streak, not once per try


def test_429_honours_retry_after(local_api: LocalAPI) -> None:
    local_api.inject(Fault("close", after_events=1))
    local_api.inject(Fault("status", status=429, retry_after=1.0))
    with running_watcher(local_api) as w:
        local_api.create("routes", route("a"))
        wait_until(lambda: any(r.status == 429 for r in local_api.requests_seen()), what="the 429")
        throttled_at = time.monotonic()
        count = len(local_api.requests_seen())
        wait_until(
            lambda: any(r.query.get("watch") for r in local_api.requests_seen()[count:]), what="the retry"
        )
        assert time.monotonic() - throttled_at >= 0.8  # Retry-After: 1, not the 50 ms backoff
        b = local_api.create("routes", route("b"))
        wait_until(lambda: names(w) == ["a", "b"], what="recovery after 429")
        assert rv(b)
        assert w.restarts("throttled") == 1


def test_server_errors_back_off_and_recover(local_api: LocalAPI) -> None:
    local_api.inject(Fault("close", after_events=1))
    local_api.inject(Fault("status", status=503, count=3))
    local_api.inject(Fault("status", status=500, count=2))
    with running_watcher(local_api) as w:
        made = [local_api.create("routes", route(f"s{i}")) for i in range(3)]
        wait_until(lambda: len(seen(w)) == 3, what="recovery after 5xx")
        assert seen(w) == [("ADDED", o["metadata"]["name"], rv(o)) for o in made]
        assert w.restarts("server_error") == 5


def test_connection_refused_is_logged_once_per_streak(
    local_api: LocalAPI, caplog: pytest.LogCaptureFixture
) -> None:
    local_api.inject(Fault("close", after_events=1))
    local_api.inject(Fault("refuse", seconds=1.5))
    with running_watcher(local_api) as w:
        made = [local_api.create("routes", route(f"c{i}")) for i in range(3)]
        wait_until(lambda: len(seen(w)) == 3, timeout=20, what="recovery after connection refused")
        assert seen(w) == [("ADDED", o["metadata"]["name"], rv(o)) for o in made]
    unreachable = [
        r for r in caplog.records if r.levelno >= logging.WARNING and "cannot reach" in r.getMessage()
    ]
    assert len(unreachable) == 1


def test_a_malformed_line_is_logged_and_skipped(
    local_api: LocalAPI, caplog: pytest.LogCaptureFixture
) -> None:
    local_api.inject(Fault("malformed_line", after_events=1))
    with running_watcher(local_api) as w:
        made = [local_api.create("routes", route(f"m{i}")) for i in range(3)]
        wait_until(lambda: len(seen(w)) == 3)
        assert seen(w) == [("ADDED", o["metadata"]["name"], rv(o)) for o in made]
    malformed = [
        r.getMessage()
        for r in caplog.records
        if r.name == "watcher.informer" and "malformed" in r.getMessage()
    ]
    assert len(malformed) == 1 and "bytes" in malformed[0]


def test_a_silent_stream_is_abandoned_and_resumed(local_api: LocalAPI) -> None:
    tuning = Tuning(**{**FAST.__dict__, "watch_timeout": 2, "read_margin": 1})
    local_api.inject(Fault("silent", seconds=60))
    with running_watcher(local_api, tuning=tuning) as w:
        a = local_api.create("routes", route("a"))
        wait_until(lambda: len(seen(w)) == 1, timeout=20, what="resume after a silent stream")
        assert seen(w) == [("ADDED", "a", rv(a))]
        assert w.restarts("dropped") >= 1


def test_repeated_empty_watches_count_as_expired(local_api: LocalAPI) -> None:
    local_api.create("routes", route("a"))
    local_api.inject(Fault("empty_close", count=3))
    with running_watcher(local_api) as w:
        wait_until(lambda: w.relists == 1, what="a relist after three empty watches")
        b = local_api.create("routes", route("b"))
        wait_until(lambda: names(w) == ["a", "b"])
        assert seen(w)[-1] == ("ADDED", "b", rv(b))  # the relist re-delivered nothing unchanged


def test_resync_redelivers_the_cache_as_modified(local_api: LocalAPI) -> None:
    a = local_api.create("routes", route("a"))
    with running_watcher(local_api, env={"WATCHER_RESYNC_PERIOD": "0.5"}) as w:
        wait_until(lambda: ("MODIFIED", "a", rv(a)) in seen(w), what="a resync")
        assert seen(w)[0] == ("ADDED", "a", rv(a))


def test_a_failing_plugin_does_not_stop_the_chain(
    local_api: LocalAPI, caplog: pytest.LogCaptureFixture
) -> None:
    with running_watcher(local_api, plugins="record,simple", ini={"plugin_record": {"fail_on": "bad"}}) as w:
        local_api.create("routes", route("bad"))
        local_api.create("routes", route("good"))
        wait_until(lambda: names(w) == ["bad", "good"])
        wait_until(lambda: any("Name: good" in r.getMessage() for r in caplog.records))
        assert w.errors == 1
    failure = next(r for r in caplog.records if "failed on" in r.getMessage())
    assert "ADDED Route default/bad" in failure.getMessage() and failure.exc_info


def test_watching_all_namespaces(local_api: LocalAPI) -> None:
    local_api.create("routes", route("a", "one"))
    local_api.create("routes", route("b", "two"))
    with running_watcher(local_api, namespace=None, env={"K8S_NAMESPACED": "false"}) as w:
        assert sorted(names(w)) == ["a", "b"]
        local_api.create("routes", route("c", "three"))
        wait_until(lambda: "c" in names(w))


def test_a_position_the_server_has_not_reached_relists(local_api: LocalAPI) -> None:
    """After an etcd restore (or a bogus bookmark) the server answers 504 ResourceVersionTooLarge:
    waiting never helps, a relist does."""
    future = orjson.dumps(
        {"type": "BOOKMARK", "object": {"kind": "Route", "metadata": {"resourceVersion": "99999999"}}}
    )
    local_api.inject(Fault("close", after_events=1, payload=future + b"\n"))
    with running_watcher(local_api) as w:
        a = local_api.create("routes", route("a"))
        wait_until(lambda: w.relists >= 1, timeout=30, what="a relist after ResourceVersionTooLarge")
        b = local_api.create("routes", route("b"))
        wait_until(lambda: ("ADDED", "b", rv(b)) in seen(w), timeout=20, what="the watch to go on")
        assert seen(w) == [("ADDED", "a", rv(a)), ("ADDED", "b", rv(b))]
    assert any(r.status == 504 for r in local_api.requests_seen())


# --- what the informer keeps of an object (issue 20) ----------------------------------------------------


def applied(api: LocalAPI, name: str) -> dict[str, Any]:
    """A route made as on a cluster: ``oc apply``, then the router's status write."""
    return apply_route(api, route(name))


def without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in obj["metadata"].items() if k != "managedFields"}
    meta["annotations"] = {k: v for k, v in meta["annotations"].items() if k != LAST_APPLIED}
    return {**obj, "metadata": meta}


def reached(w: Any, obj: dict[str, Any]) -> None:
    """Until the plugin has had ``obj``'s version (a change waiting behind it may be merged in)."""
    target = (obj["metadata"]["name"], rv(obj))
    wait_until(lambda: target in [(n, r) for _, n, r in seen(w)], what=f"{target}")


def test_plugins_and_the_cache_get_objects_without_managed_fields_or_last_applied(
    local_api: LocalAPI,
) -> None:
    listed = applied(local_api, "listed")
    assert listed["metadata"]["managedFields"] and LAST_APPLIED in listed["metadata"]["annotations"]
    with running_watcher(local_api, env={"WATCHER_RESYNC_PERIOD": "0.3"}) as w:
        watched = applied(local_api, "watched")
        reached(w, watched)
        changed = local_api.patch("routes", "default", "listed", {"metadata": {"labels": {"x": "1"}}})
        gone = local_api.delete("routes", "default", "watched")
        wait_until(lambda: ("DELETED", "watched", rv(gone)) in seen(w), what="the delete")
        wait_until(lambda: ("MODIFIED", "listed", rv(changed)) in seen(w), what="the change")
        count = len(seen(w))
        wait_until(lambda: len(seen(w)) > count, what="a resync")  # SYNC reaches the plugin as MODIFIED
        rec = w.plugin("record")
        with rec.lock:
            handed = list(rec.handed)
        by_rv = {o["metadata"]["resourceVersion"]: o for o in (listed, watched, changed, gone)}
        for kind, obj in handed:
            assert "managedFields" not in obj["metadata"], kind
            assert obj["metadata"]["annotations"] == {}, kind  # the mapping stays, emptied
            if obj["metadata"]["resourceVersion"] in by_rv:  # nothing else of the object changed
                assert obj == without_managed_fields(by_rv[obj["metadata"]["resourceVersion"]]), kind
        for data in w.informer.cache.values():
            assert b"managedFields" not in data and b"last-applied" not in data
        kinds = [t for t, name, _ in seen(w) if name == "watched"]  # the status write may be merged in
        assert kinds[0] == "ADDED" and kinds[-1] == "DELETED"


def test_keep_managed_fields_hands_objects_over_as_the_api_sends_them(local_api: LocalAPI) -> None:
    listed = applied(local_api, "listed")
    with running_watcher(local_api, env={"WATCHER_KEEP_MANAGED_FIELDS": "true"}) as w:
        watched = applied(local_api, "watched")
        reached(w, watched)
        time.sleep(0.2)
        state = w.plugin("record").state
        assert state["default/listed"] == listed and state["default/watched"] == watched
        managers = [e["manager"] for e in state["default/watched"]["metadata"]["managedFields"]]
        assert managers == ["kubectl-client-side-apply", "openshift-router"]


def test_a_relist_diff_compares_the_stripped_objects(local_api: LocalAPI) -> None:
    keep = applied(local_api, "keep")
    applied(local_api, "change")
    local_api.inject(Fault("silent", seconds=1.5))
    with running_watcher(local_api) as w:
        assert sorted(names(w)) == ["change", "keep"]
        changed = local_api.patch("routes", "default", "change", {"spec": {"host": "new.apps.example.test"}})
        local_api.compact()
        wait_until(lambda: len(seen(w)) == 3, what="the relist diff")
        time.sleep(0.3)
        assert seen(w)[2] == ("MODIFIED", "change", rv(changed)) and w.relists == 1
        assert w.plugin("record").state["default/change"] == without_managed_fields(changed)
        assert w.plugin("record").state["default/keep"] == without_managed_fields(keep)


def test_same_version_finds_the_resource_version_in_a_cache_entry() -> None:
    obj = {"kind": "Event", "metadata": {"name": "e", "resourceVersion": "42"}, "x": {"resourceVersion": "7"}}
    line = orjson.dumps({"type": "ADDED", "object": obj})
    for data in (line, orjson.dumps(obj)):
        assert same_version(data, "42") and not same_version(data, "43") and not same_version(data, "4")
    # JSON with other spacing misses the fast search and is parsed: the answer is the same.
    spaced = b'{"metadata": {"name": "e", "resourceVersion": "42"}}'
    assert same_version(spaced, "42") and not same_version(spaced, "7")
