"""Property: whatever the order of changes and faults, the plugins end up believing the server.

Random creates, updates and deletes are interleaved with random faults (dropped connections mid-line,
clean ends, expiry as HTTP 410 and in-stream, compaction, throttling, server errors, malformed lines,
empty streams). At the end the objects the plugin chain believes in equal the server's; per object,
resourceVersions only ever increase (a deletion found by a relist repeats the last version known);
nothing is delivered twice; and when nothing forced a relist, every delivery is a change that was
made, in the order made (changes merged on the way by the work queue are the only ones not seen).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness import FAST, route, running_watcher, wait_until
from watcher.informer import Tuning
from watcher.localapi import Fault, LocalAPI

NAMES = [f"r{i}" for i in range(5)]

faults = st.one_of(
    st.builds(lambda n: Fault("drop_mid_line", after_events=n), st.integers(0, 3)),
    st.builds(lambda n: Fault("close", after_events=n), st.integers(0, 3)),
    st.builds(lambda n: Fault("malformed_line", after_events=n), st.integers(0, 2)),
    st.just(Fault("expired_event")),
    st.just(Fault("expired_http")),
    st.just(Fault("empty_close")),
    st.sampled_from([Fault("status", status=s) for s in (500, 503)]),
    st.just(Fault("status", status=429, retry_after=0.1)),
)
# Every change step changes something: "touch" creates or updates, "delete" deletes or creates.
changes = st.tuples(st.sampled_from(["touch", "delete"]), st.sampled_from(NAMES))
disturbances = st.one_of(st.tuples(st.just("fault"), faults), st.tuples(st.just("compact"), st.none()))


@st.composite
def steps(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """10-30 changes with up to 6 faults or compactions spread among them."""
    plan: list[tuple[str, Any]] = draw(st.lists(changes, min_size=10, max_size=30))
    for disturbance in draw(st.lists(disturbances, max_size=6)):
        plan.insert(draw(st.integers(0, len(plan))), disturbance)
    return plan


# Faults fire on the next WATCH request: one-second watches make every queued fault fire soon.
SHORT = Tuning(**{**FAST.__dict__, "watch_timeout": 1, "read_margin": 2})


def apply(api: LocalAPI, op: str, arg: Any, made: list[tuple[str, str]]) -> None:
    exists = {o["metadata"]["name"] for o in api.list("routes", "default")}
    if op == "fault":
        api.inject(arg)
    elif op == "compact":
        api.compact()
    elif arg not in exists:
        obj = api.create("routes", route(arg))
        made.append((arg, obj["metadata"]["resourceVersion"]))
    elif op == "touch":
        obj = api.patch("routes", "default", arg, {"metadata": {"labels": {"rev": str(len(made))}}})
        made.append((arg, obj["metadata"]["resourceVersion"]))
    else:
        obj = api.delete("routes", "default", arg)
        made.append((arg, obj["metadata"]["resourceVersion"]))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps())
def test_plugins_end_up_with_the_servers_objects(plan: list[tuple[str, Any]]) -> None:
    with LocalAPI(bookmark_interval=0.5) as api, running_watcher(api, tuning=SHORT) as w:
        rec = w.plugin("record")
        made: list[tuple[str, str]] = []
        for op, arg in plan:
            apply(api, op, arg, made)

        def server() -> dict[str, str]:
            return {
                f"default/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
                for o in api.list("routes", "default")
            }

        def believed() -> dict[str, str]:
            with rec.lock:
                return {k: o["metadata"]["resourceVersion"] for k, o in rec.state.items()}

        wait_until(lambda: not api.pending_faults(), timeout=30, what="every fault to fire")
        final = api.resource_version
        wait_until(
            lambda: int(w.informer.resource_version or 0) >= final, timeout=30, what="the watcher to catch up"
        )
        wait_until(
            lambda: believed() == server(), timeout=30, what="the plugin's state to match the server's"
        )
        with rec.lock:
            events = list(rec.events)
        last: dict[str, int] = {}
        for e in events:
            # A deletion found by a relist carries the last object we knew, so its version repeats.
            relisted_delete = e.type == "DELETED" and int(e.resource_version) == last.get(e.name)
            assert int(e.resource_version) > last.get(e.name, 0) or relisted_delete, f"out of order: {e}"
            last[e.name] = int(e.resource_version)
        duplicates = [k for k, n in Counter(events).items() if n > 1]
        assert not duplicates
        if w.relists == 0:
            # Every delivery is a change that was made, per object in the order made; changes that
            # waited behind a newer one to the same object were merged into it (the work queue).
            for name in NAMES:
                versions = iter(rv for n, rv in made if n == name)
                delivered = [e.resource_version for e in events if e.name == name]
                assert all(rv in versions for rv in delivered), f"{name}: {delivered} not in the order made"
