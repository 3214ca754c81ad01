"""The fast path's own parts: chunk framing, the raw-reader WATCH and its fallback, the lock-free
metrics and their exposition, and the cache's JSON. The watch loop as a whole is tested in
``test_informer.py``; its speed is measured by ``bench/``, never asserted here."""

from __future__ import annotations

import gzip
import socketserver
import ssl
import sys
import threading
import tracemalloc
from collections.abc import Iterator

import orjson
import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from tests.harness import route
from tests.wire import load_backlog, read_wire
from watcher import errors, stream, tlswatch
from watcher.client import RequestsWatch
from watcher.informer import cached_object, compact_json
from watcher.localapi import Fault, LocalAPI
from watcher.metrics import Metrics


def chunked(pieces: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def decode_all(raw: bytes, cuts: list[int]) -> tuple[bytes, bool]:
    decoder = stream.ChunkDecoder()
    out = []
    for a, b in zip([0, *cuts], [*cuts, len(raw)]):
        out.append(decoder.feed(raw[a:b]))
    return b"".join(out), decoder.done


# --- chunk framing ---------------------------------------------------------------------------------------


def test_chunks_are_decoded_whatever_the_block_boundaries() -> None:
    pieces = [b'{"type":"ADDED"}\n', b"x" * 5000, b"\n", b"tail\n"]
    raw = chunked(pieces)
    for cut in range(len(raw) + 1):
        assert decode_all(raw, [cut]) == (b"".join(pieces), True)


@given(
    st.lists(st.binary(min_size=1, max_size=300), max_size=12),
    st.data(),
)
def test_any_framing_and_any_cuts_give_the_body(pieces: list[bytes], data: st.DataObject) -> None:
    raw = chunked(pieces)
    cuts = sorted(data.draw(st.lists(st.integers(min_value=0, max_value=len(raw)), max_size=15)))
    assert decode_all(raw, cuts) == (b"".join(pieces), True)


def test_chunk_extensions_and_upper_case_sizes_are_accepted() -> None:
    raw = b"5;name=value\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\n"
    assert decode_all(raw, []) == (b"hello0123456789", True)


def test_nothing_after_the_last_chunk_is_body() -> None:
    decoder = stream.ChunkDecoder()
    assert decoder.feed(b"3\r\nabc\r\n0\r\n\r\n") == b"abc"
    assert decoder.done
    assert decoder.feed(b"3\r\nxyz\r\n") == b""


def test_an_unfinished_stream_is_not_done() -> None:
    assert decode_all(chunked([b"abc"])[:-5], []) == (b"abc", False)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"zz\r\nabc", "bad chunk-size line"),
        (b"-3\r\nabc\r\n", "bad chunk-size line"),
        (b"3\r\nabcXY4\r\n", "no CRLF"),
        (b"f" * 5000, "longer than 4 KiB"),
    ],
)
def test_bad_framing_is_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(stream.ChunkedFramingError, match=reason):
        stream.ChunkDecoder().feed(raw)


# --- WATCH over the raw reader, against the local API ---------------------------------------------------


PATH = "/apis/route.openshift.io/v1/namespaces/default/routes"


def open_watch(api: LocalAPI, rv: str, timeout: int = 2) -> RequestsWatch:
    response = requests.get(
        f"{api.url}{PATH}",
        params={"watch": "true", "resourceVersion": rv, "timeoutSeconds": str(timeout)},
        headers={"Authorization": f"Bearer {api.token}"},
        verify=api.ca_file,
        stream=True,
        timeout=(10, 30),
    )
    response.raise_for_status()
    return RequestsWatch(response)


def test_watch_reads_the_raw_chunks_and_ends_cleanly(local_api: LocalAPI) -> None:
    start = str(local_api.resource_version)
    made = [local_api.create("routes", route(f"r{i}")) for i in range(300)]
    watch = open_watch(local_api, start)
    assert watch._chunked_reader() is not None  # the fast path, not urllib3's read1
    lines = list(stream.iter_lines(watch.chunks()))  # returns at timeoutSeconds, no exception
    watch.close()
    events = [stream.parse_event(line) for line in lines]
    assert [e["object"]["metadata"]["name"] for e in events] == [o["metadata"]["name"] for o in made]


def test_a_dropped_watch_is_an_error_not_an_end(local_api: LocalAPI) -> None:
    start = str(local_api.resource_version)
    local_api.inject(Fault("drop_mid_line", after_events=2))
    for i in range(3):
        local_api.create("routes", route(f"d{i}"))
    watch = open_watch(local_api, start, timeout=30)
    splitter = stream.LineSplitter()
    lines: list[bytes] = []
    with pytest.raises(errors.TransportError, match="closed before the end"):
        for block in watch.chunks():
            lines.extend(splitter.feed(block))
    watch.close()
    assert len(lines) == 2 and splitter.pending > 0


def test_both_readers_take_apart_a_stream_cut_across_chunks_and_tls_records(local_api: LocalAPI) -> None:
    """The realistic framing, against the real local API over HTTPS: events cut by chunk boundaries
    and chunk-size lines cut by TLS records (checked on the raw wire first), read by the direct TLS
    reader (llhttp) and by the requests fallback (``stream.ChunkDecoder``)."""
    start = str(local_api.resource_version)
    made = load_backlog(local_api, "default")
    wire = read_wire(local_api, PATH, resourceVersion=start, timeoutSeconds="1")
    assert wire.events_cut_by_chunks() and wire.size_lines_cut_by_reads()
    names = [o["metadata"]["name"] for o in made]
    context = ssl.create_default_context(cafile=local_api.ca_file)
    direct = tlswatch.open_watch(
        "127.0.0.1",
        local_api.port,
        f"{PATH}?watch=true&resourceVersion={start}&timeoutSeconds=1",
        {"Authorization": f"Bearer {local_api.token}"},
        context,
        connect_timeout=10,
        read_timeout=30,
    )
    for reader in (direct, open_watch(local_api, start, timeout=1)):
        lines = list(stream.iter_lines(reader.chunks()))  # returns at the terminating chunk
        reader.close()
        assert [stream.parse_event(line)["object"]["metadata"]["name"] for line in lines] == names


def test_the_direct_reader_reports_an_error_answer(local_api: LocalAPI) -> None:
    context = ssl.create_default_context(cafile=local_api.ca_file)
    answer = tlswatch.open_watch(
        "127.0.0.1", local_api.port, f"{PATH}?watch=true", {}, context, connect_timeout=10, read_timeout=30
    )
    assert answer.status == 401
    assert orjson.loads(answer.read_body())["reason"] == "Unauthorized"
    answer.close()


class _GzipChunked(socketserver.BaseRequestHandler):
    """A server that gzips a chunked body: the case the raw reader must leave to urllib3."""

    body = b"".join(orjson.dumps({"type": "ADDED", "object": {"n": i}}) + b"\n" for i in range(50))

    def handle(self) -> None:
        self.request.recv(65536)
        packed = gzip.compress(self.body)
        head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
        self.request.sendall(head + chunked([packed[:100], packed[100:]]))


@pytest.fixture
def gzip_server() -> Iterator[str]:
    server = socketserver.TCPServer(("127.0.0.1", 0), _GzipChunked)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_an_encoded_body_goes_through_urllib3(gzip_server: str) -> None:
    watch = RequestsWatch(requests.get(gzip_server, stream=True, timeout=10))
    assert watch._chunked_reader() is None
    assert b"".join(watch.chunks()) == _GzipChunked.body
    watch.close()


# --- metrics ------------------------------------------------------------------------------------------


def test_hot_path_metrics_are_exposed_as_prometheus_counters_and_histograms() -> None:
    metrics = Metrics(CollectorRegistry())
    for kind in ("ADDED", "ADDED", "MODIFIED"):
        metrics.received[kind].inc()
    metrics.last_event.set(1234.5)
    plugin = metrics.plugin("dns")
    assert metrics.plugin("dns") is plugin
    one, two = plugin.worker(), plugin.worker()  # two worker threads: summed when scraped
    one.succeeded(0.0003)
    two.succeeded(0.001)  # on a bound: counted in that bound's bucket (le is <=)
    two.failed.inc()
    one.duration.observe(7.0)
    one.retries.inc()
    get = metrics.registry.get_sample_value
    assert get("event_watcher_events_received_total", {"type": "ADDED"}) == 2
    assert get("event_watcher_events_received_total", {"type": "DELETED"}) == 0
    assert get("event_watcher_events_received_total", {"type": "MODIFIED"}) == 1
    assert get("event_watcher_last_event_timestamp_seconds") == 1234.5
    assert get("event_watcher_events_handled_total", {"plugin": "dns"}) == 2
    assert get("event_watcher_events_failed_total", {"plugin": "dns"}) == 1
    assert get("event_watcher_retries_total", {"plugin": "dns"}) == 1
    bucket = "event_watcher_plugin_duration_seconds_bucket"
    assert get(bucket, {"plugin": "dns", "le": "0.0001"}) == 0
    assert get(bucket, {"plugin": "dns", "le": "0.0005"}) == 1
    assert get(bucket, {"plugin": "dns", "le": "0.001"}) == 2
    assert get(bucket, {"plugin": "dns", "le": "5.0"}) == 2
    assert get(bucket, {"plugin": "dns", "le": "30.0"}) == 3
    assert get(bucket, {"plugin": "dns", "le": "+Inf"}) == 3
    assert get("event_watcher_plugin_duration_seconds_count", {"plugin": "dns"}) == 3
    assert get("event_watcher_plugin_duration_seconds_sum", {"plugin": "dns"}) == pytest.approx(7.0013)
    text = generate_latest(metrics.registry).decode()
    assert "# TYPE event_watcher_events_received_total counter" in text
    assert "# TYPE event_watcher_plugin_duration_seconds histogram" in text


# --- the cache's JSON ---------------------------------------------------------------------------------


def test_a_cache_entry_gives_back_the_object_from_either_form() -> None:
    obj = route("web")
    assert cached_object(orjson.dumps({"type": "MODIFIED", "object": obj})) == obj
    assert cached_object(orjson.dumps(obj)) == obj
    assert cached_object(compact_json(obj)) == obj


def test_compact_json_costs_its_length_not_orjsons_buffer() -> None:
    obj = route("web", tls={"termination": "edge", "key": "k" * 700, "certificate": "c" * 700})
    size = len(orjson.dumps(obj))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [compact_json(obj) for _ in range(100)]
        per_object = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert kept[0] == orjson.dumps(obj)
    assert per_object < size + 200, (per_object, size)


def test_lines_do_not_pin_their_block() -> None:
    """A cached line must be bytes of its own, not a view keeping a 16 KB block alive."""
    block = b"".join(orjson.dumps({"type": "ADDED", "object": {"n": i}}) + b"\n" for i in range(100))
    (first, *_) = stream.LineSplitter().feed(block)
    assert type(first) is bytes
    assert sys.getsizeof(first) < 100
