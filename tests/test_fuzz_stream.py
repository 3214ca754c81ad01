"""Fuzz: garbage in a real watch stream is logged and skipped; the watch goes on; plugins never see it.

Each example puts one generated line into a WATCH from the local API (``Fault.payload``) between two
real changes, through the real watcher (``tests.harness.running_watcher``): random bytes, truncated
event lines, nesting deeper than any parser allows, huge lines, JSON that is not an object, and events
whose ``type``, ``object``, ``metadata`` or ``metadata.resourceVersion`` has the wrong type. The plugin
chain must receive exactly the two real changes, in order, and nothing else; the watcher must keep
watching. The example budget is small in the normal suite; ``FUZZ_EXAMPLES=5000`` runs a large one.

Targeted cases follow for values of the right type that the server cannot use (an empty or unparsable
resourceVersion) and for an object without a name.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness import FAST, route, running_watcher, wait_until
from watcher.informer import Tuning
from watcher.localapi import Fault, LocalAPI

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
# One-second watches: a stream that goes on after the garbage ends soon, and the next fault is taken.
SHORT = Tuning(**{**FAST.__dict__, "watch_timeout": 1, "read_margin": 2})


def seen(w: Any) -> list[tuple[str, str, str]]:
    rec = w.plugin("record")
    with rec.lock:
        return [(e.type, e.name, e.resource_version) for e in rec.events]


def rv(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["resourceVersion"])


# --- what goes into the stream -------------------------------------------------------------------------

SAMPLE = orjson.dumps({"type": "MODIFIED", "object": route("sample")})
WRONG = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),  # what JSON encoders emit (orjson refuses wider on output)
    st.floats(allow_nan=False),
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(0, 9), max_size=2),
)


def event_with(**changes: Any) -> dict[str, Any]:
    """A well-formed MODIFIED event for a route that does not exist, with ``changes`` applied: a value
    of ``...`` removes the key. ``object``/``metadata``/``resourceVersion`` address the nested keys."""
    meta: Any = {"name": "ghost", "namespace": "default", "uid": "ghost-uid", "resourceVersion": "1"}
    for key in ("name", "resourceVersion"):
        if key in changes:
            meta[key] = changes.pop(key)
    obj: Any = {"kind": "Route", "apiVersion": "route.openshift.io/v1", "metadata": meta}
    if "metadata" in changes:
        obj["metadata"] = changes.pop("metadata")
    event: dict[str, Any] = {"type": "MODIFIED", "object": obj, **changes}
    for container in (event, event["object"] if isinstance(event["object"], dict) else {}, meta):
        for key in [k for k, v in container.items() if v is ...]:
            del container[key]
    return event


@st.composite
def wrong_types(draw: st.DrawFn) -> bytes:
    """An event whose type, object, metadata or resourceVersion has a type the API never sends."""
    field = draw(st.sampled_from(["type", "object", "metadata", "resourceVersion"]))
    value = draw(st.one_of(WRONG, st.just(...)))
    if field == "type":
        value = draw(st.one_of(WRONG, st.just(...), st.sampled_from(["", "added", "BOGUS", "DELETE"])))
    return orjson.dumps(event_with(**{field: value}))


@st.composite
def garbage(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "truncated", "deep", "huge", "not_object", "wrong_types"]))
    if kind == "bytes":
        body = draw(st.binary(min_size=1, max_size=400))
    elif kind == "truncated":
        body = SAMPLE[: draw(st.integers(1, len(SAMPLE) - 1))]
    elif kind == "deep":  # deeper than orjson's limit of 1024 levels, in a place the event needs
        depth = draw(st.integers(1025, 5000))
        where = draw(st.sampled_from(["top", "object", "metadata"]))
        nested = b"[" * depth + b"]" * depth
        body = {
            "top": nested,
            "object": b'{"type":"ADDED","object":' + nested + b"}",
            "metadata": b'{"type":"ADDED","object":{"metadata":' + nested + b"}}",
        }[where]
    elif kind == "huge":  # megabytes in one line: an unterminated string, or an event with a bad type
        size = draw(st.integers(1_000_000, 3_000_000))
        body = draw(st.sampled_from([b'{"type":"ADDED","object":"', b'{"type":42,"object":{"x":"']))
        body += b"x" * size + draw(st.sampled_from([b"", b'"}', b'"}}']))
    elif kind == "not_object":
        body = orjson.dumps(draw(st.one_of(WRONG, st.text(max_size=20), st.lists(st.text(max_size=5)))))
    else:
        body = draw(wrong_types())
    # Lines of their own: a real server never runs a line into the next event.
    return body.replace(b"\n", b" ") + b"\n"


# --- the fuzz ---------------------------------------------------------------------------------------------


def test_garbage_in_the_stream_is_skipped_and_the_watch_goes_on(
    local_api: LocalAPI, caplog: pytest.LogCaptureFixture
) -> None:
    # Between examples the open stream ends cleanly after its next event, so the garbage queued by an
    # example is taken by the next WATCH, right after the example's first change.
    local_api.inject(Fault("close", after_events=1))
    with running_watcher(local_api, tuning=SHORT) as w:
        count = [0]

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
                HealthCheck.large_base_example,
            ],
        )
        @given(line=garbage(), continues=st.integers(0, 3).map(lambda n: n == 0))
        def check(line: bytes, continues: bool) -> None:
            count[0] += 1
            before = len(seen(w))
            if continues:  # the garbage, then the stream goes on: the next change arrives on it
                local_api.inject(Fault("malformed_line", payload=line, after_events=1))
            else:  # one change, the garbage, then a clean end
                local_api.inject(Fault("close", payload=line, after_events=1))
            restore = Fault("close", after_events=1)
            local_api.inject(restore)
            made = [local_api.create("routes", route(f"f{count[0]}-{i}")) for i in range(3)]
            expected = [("ADDED", o["metadata"]["name"], rv(o)) for o in made]
            wait_until(lambda: len(seen(w)) >= before + 3, timeout=20, what="the changes around the garbage")
            assert seen(w)[before:] == expected
            assert w.errors == 0
            wait_until(
                lambda: not any(f is restore for f in local_api.pending_faults()),
                timeout=20,
                what="the watcher to watch again after the garbage",
            )

        check()
        time.sleep(0.3)
        assert not any(name == "ghost" for _, name, _ in seen(w))
        assert w.errors == 0
    skipped = [r for r in caplog.records if "malformed line" in r.getMessage()]
    assert skipped, "the watcher said nothing about the garbage"
    assert all(len(r.getMessage()) < 400 for r in skipped), "a log line quoted a whole malformed line"


# --- targeted: right types, unusable values -----------------------------------------------------------


def bookmark(resource_version: str) -> bytes:
    event = {
        "type": "BOOKMARK",
        "object": {"kind": "Route", "metadata": {"resourceVersion": resource_version}},
    }
    return orjson.dumps(event) + b"\n"


def test_a_resource_version_the_server_refuses_leads_to_a_relist_not_endless_retries(
    local_api: LocalAPI, caplog: pytest.LogCaptureFixture
) -> None:
    """A bookmark whose resourceVersion the API server cannot parse: the next WATCH from it gets 400.
    Retrying that WATCH can never succeed; the position must be replaced by a LIST."""
    local_api.inject(Fault("close", after_events=1, payload=bookmark("not-a-number")))
    with running_watcher(local_api) as w:
        a = local_api.create("routes", route("a"))
        wait_until(lambda: w.informer.resource_version == "not-a-number", what="the bogus bookmark")
        b = local_api.create("routes", route("b"))
        wait_until(lambda: ("ADDED", "b", rv(b)) in seen(w), timeout=20, what="recovery by a relist")
        assert seen(w) == [("ADDED", "a", rv(a)), ("ADDED", "b", rv(b))]
    refused = [r for r in local_api.requests_seen() if r.status == 400]
    assert len(refused) >= 1


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(bookmark(""), id="bookmark-with-empty-resourceVersion"),
        pytest.param(orjson.dumps(event_with(resourceVersion="")) + b"\n", id="event-empty-rv"),
        pytest.param(orjson.dumps(event_with(name=...)) + b"\n", id="event-without-name"),
    ],
)
def test_an_event_with_an_unusable_identity_is_skipped(local_api: LocalAPI, line: bytes) -> None:
    local_api.inject(Fault("close", after_events=1, payload=line))
    with running_watcher(local_api) as w:
        a = local_api.create("routes", route("a"))
        wait_until(lambda: len(seen(w)) >= 1)
        b = local_api.create("routes", route("b"))
        wait_until(lambda: ("ADDED", "b", rv(b)) in seen(w), timeout=15, what="the change after the line")
        time.sleep(0.3)
        assert seen(w) == [("ADDED", "a", rv(a)), ("ADDED", "b", rv(b))]
        assert w.errors == 0


def test_an_error_event_that_is_not_a_410_is_logged_and_the_watch_goes_on(
    local_api: LocalAPI, caplog: pytest.LogCaptureFixture
) -> None:
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": 500,
        "message": "etcd hiccup",
    }
    line = orjson.dumps({"type": "ERROR", "object": status}) + b"\n"
    local_api.inject(Fault("malformed_line", after_events=1, payload=line))
    with running_watcher(local_api) as w:
        made = [local_api.create("routes", route(f"e{i}")) for i in range(3)]
        wait_until(lambda: len(seen(w)) == 3)
        assert seen(w) == [("ADDED", o["metadata"]["name"], rv(o)) for o in made]
        assert w.relists == 0
    assert any(
        r.levelno == logging.WARNING and "etcd hiccup" in r.getMessage() and "500" in r.getMessage()
        for r in caplog.records
    )
