"""The line splitter and event parser: the part of the hot path that must never hand out half a line."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from watcher import stream


def event(kind: str = "ADDED", rv: str = "1", name: str = "web", **extra: object) -> bytes:
    obj = {"kind": "Route", "metadata": {"name": name, "resourceVersion": rv}, **extra}
    return orjson.dumps({"type": kind, "object": obj})


def test_lines_split_across_blocks_come_out_whole() -> None:
    body = event(rv="1") + b"\n" + event(rv="2") + b"\n"
    blocks = [body[:7], body[7:40], body[40:41], body[41:]]
    assert list(stream.iter_lines(blocks)) == [event(rv="1"), event(rv="2")]


def test_an_unterminated_last_line_is_dropped_not_parsed() -> None:
    body = event(rv="1") + b"\n" + event(rv="2")[:30]
    assert list(stream.iter_lines([body])) == [event(rv="1")]


def test_splitter_reports_the_pending_tail() -> None:
    splitter = stream.LineSplitter()
    assert splitter.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert splitter.pending == 4
    assert splitter.feed(b":2}\n") == [b'{"b":2}']
    assert splitter.pending == 0


def test_empty_lines_are_skipped() -> None:
    assert list(stream.iter_lines([b"\n\n" + event() + b"\n\n"])) == [event()]


def test_huge_object_split_in_many_blocks() -> None:
    line = event(rv="7", data={"blob": "x" * 5_000_000})
    blocks = [line[i : i + 65536] for i in range(0, len(line), 65536)] + [b"\n"]
    (out,) = list(stream.iter_lines(blocks))
    assert stream.parse_event(out)["object"]["data"]["blob"] == "x" * 5_000_000


@given(st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=30), st.data())
def test_any_block_boundaries_give_the_same_lines(sizes: list[int], data: st.DataObject) -> None:
    lines = [event(rv=str(i), name="n" * size) for i, size in enumerate(sizes)]
    body = b"".join(line + b"\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(min_value=0, max_value=len(body)), max_size=20)))
    blocks = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]
    assert list(stream.iter_lines(blocks)) == lines


def test_parse_returns_the_event_as_sent() -> None:
    parsed = stream.parse_event(event("MODIFIED", rv="42"))
    assert parsed == {
        "type": "MODIFIED",
        "object": {"kind": "Route", "metadata": {"name": "web", "resourceVersion": "42"}},
    }


def test_error_events_need_no_resource_version() -> None:
    line = orjson.dumps({"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}})
    assert stream.parse_event(line)["object"]["code"] == 410


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"type":"ADDED","object":{"metadata":', "not JSON"),
        (b"\xff\xfe garbage", "not JSON"),
        (b"[1,2,3]", "not a JSON object"),
        (b'{"type":"ADDED"}', "no object"),
        (b'{"type":"ADDED","object":[]}', "no object"),
        (b'{"type":"EXPLODED","object":{}}', "unknown event type"),
        (b'{"type":["ADDED"],"object":{}}', "unknown event type"),
        (b'{"type":null,"object":{}}', "unknown event type"),
        (b'{"type":"ADDED","object":{"metadata":{}}}', "no metadata.resourceVersion"),
        (b'{"type":"ADDED","object":{"metadata":{"resourceVersion":12}}}', "no metadata.resourceVersion"),
        (b'{"type":"DELETED","object":{"metadata":"x"}}', "no metadata.resourceVersion"),
    ],
)
def test_malformed_lines_are_refused_with_the_reason(line: bytes, reason: str) -> None:
    with pytest.raises(stream.MalformedEvent) as caught:
        stream.parse_event(line)
    assert caught.value.reason.startswith(reason)


def test_excerpt_is_truncated() -> None:
    line = event(data={"key": "-----BEGIN PRIVATE KEY-----" + "A" * 1000})
    err = stream.MalformedEvent("test", line)
    assert len(err.excerpt) < stream.EXCERPT + 10
    assert "PRIVATE KEY" not in err.excerpt
    assert err.size == len(line)


@given(st.binary(max_size=300))
def test_random_bytes_never_escape_as_another_exception(data: bytes) -> None:
    for line in stream.iter_lines([data, b"\n"]):
        try:
            parsed = stream.parse_event(line)
        except stream.MalformedEvent:
            continue
        assert parsed["type"] in stream.EVENT_TYPES


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (
            b'{"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":""}}}',
            "empty metadata.resourceVersion",
        ),
        (
            b'{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":""}}}',
            "empty metadata.resourceVersion",
        ),
        (b'{"type":"ADDED","object":{"metadata":{"resourceVersion":"5"}}}', "no metadata.name"),
        (b'{"type":"DELETED","object":{"metadata":{"name":"","resourceVersion":"5"}}}', "no metadata.name"),
        (b'{"type":"MODIFIED","object":{"metadata":{"name":7,"resourceVersion":"5"}}}', "no metadata.name"),
    ],
)
def test_events_without_a_usable_identity_are_refused(line: bytes, reason: str) -> None:
    with pytest.raises(stream.MalformedEvent) as caught:
        stream.parse_event(line)
    assert caught.value.reason == reason


def test_a_bookmark_needs_no_name() -> None:
    line = b'{"type":"BOOKMARK","object":{"kind":"Route","metadata":{"resourceVersion":"9"}}}'
    assert stream.parse_event(line)["object"]["metadata"]["resourceVersion"] == "9"


def test_a_line_that_never_ends_is_refused_before_it_eats_memory() -> None:
    splitter = stream.LineSplitter(max_line=1000)
    assert splitter.feed(b'{"a":1}\n' + b"x" * 600) == [b'{"a":1}']
    with pytest.raises(stream.LineTooLong):
        splitter.feed(b"y" * 500)


def test_the_line_limit_counts_only_the_unfinished_line() -> None:
    splitter = stream.LineSplitter(max_line=1000)
    for _ in range(10):
        assert splitter.feed(b"z" * 900) == []
        assert splitter.feed(b"\n") == [b"z" * 900]
