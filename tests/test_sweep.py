# ruff: noqa: F811  (the run fixture is imported by name and then requested as an argument)
"""Plugin sweeps: when they run, where, alone, retried, logged and counted (watcher.reconciler)."""

from __future__ import annotations

import logging
import threading
import time
import types
from collections.abc import Mapping
from typing import Any, Callable, Optional

import pytest

from tests.harness import route, running_watcher, wait_until
from tests.test_reconciler import (
    Running,
    changed,
    obj,
    run,  # noqa: F401  (the fixture)
)
from watcher import dispatch, errors
from watcher.localapi import LocalAPI


def sweeping_plugin(
    name: str,
    sweep: Callable[[Any, list[dict[str, Any]], Mapping[str, str]], Any],
    handle: Optional[Callable[[Any, Mapping[str, Any], Mapping[str, str]], Any]] = None,
    **work: float,
) -> dispatch.Plugin:
    module = types.ModuleType(f"test_plugin_{name}")
    module.handle_event = handle or (lambda w, e, c: None)  # type: ignore[attr-defined]
    module.sweep = sweep  # type: ignore[attr-defined]
    return dispatch.Plugin(name, module, "test", {}, dispatch.WorkSettings(**work))  # type: ignore[arg-type]


def sweep_changes(r: Running, plugin: str, action: str) -> float:
    labels = {"plugin": plugin, "action": action}
    return r.metrics.registry.get_sample_value("event_watcher_sweep_changes_total", labels) or 0.0


def test_the_sweep_comes_after_the_initial_list_in_a_worker_and_is_logged_and_counted(
    run: Any, caplog: pytest.LogCaptureFixture
) -> None:
    handled: list[str] = []
    swept: list[tuple[str, list[str], list[str]]] = []

    def handle(w: Any, event: Mapping[str, Any], c: Mapping[str, str]) -> None:
        time.sleep(0.01)
        handled.append(event["object"]["metadata"]["name"])

    def sweep(w: Any, objects: list[dict[str, Any]], c: Mapping[str, str]) -> dict[str, int]:
        swept.append(
            (threading.current_thread().name, [o["metadata"]["name"] for o in objects], list(handled))
        )
        return {"found": 7, "deleted": 2, "created": 1, "kept": 0}

    r = run(sweeping_plugin("sw", sweep, handle))
    cache = [obj(f"o{i}", i) for i in range(5)]
    listed = threading.Event()
    caplog.set_level(logging.INFO)
    r.reconciler(list(changed("ADDED", o) for o in cache))
    r.reconciler.sweep_over(lambda: list(cache), listed)
    time.sleep(0.3)
    assert not swept  # the initial list is not over yet
    listed.set()
    wait_until(lambda: swept, what="the sweep")
    thread, names, before = swept[0]
    assert thread == "sw-0"  # the plugin's own worker, not the informer or the scheduler
    assert names == [f"o{i}" for i in range(5)]
    assert before == names  # every object of the list was handled first
    # the line comes once the sweep has returned, just after it recorded itself
    line = wait_until(
        lambda: next((rec.getMessage() for rec in caplog.records if "swept" in rec.getMessage()), None),
        what="the sweep's line",
    )
    assert line.startswith("Plugin sw swept 5 objects in ")
    assert line.endswith(": found 7, created 1, deleted 2.")
    assert sweep_changes(r, "sw", "deleted") == 2 and sweep_changes(r, "sw", "created") == 1
    assert (
        r.metrics.registry.get_sample_value(
            "event_watcher_sweep_changes_total", {"plugin": "sw", "action": "kept"}
        )
        is None
    )
    time.sleep(0.5)
    assert len(swept) == 1  # sweep_period (600 s) has not come round again


def test_sweeps_repeat_every_period_and_again_after_a_new_list(run: Any) -> None:
    count = []
    r = run(sweeping_plugin("sw", lambda w, o, c: count.append(1), sweep_period=0.3))
    listed = threading.Event()
    listed.set()
    r.reconciler.sweep_over(list, listed)
    wait_until(lambda: len(count) >= 3, what="three sweeps")
    listed.clear()
    time.sleep(0.5)
    stopped = len(count)
    time.sleep(0.5)
    assert len(count) == stopped  # no watch, no sweep
    listed.set()
    wait_until(lambda: len(count) > stopped, what="a sweep after the new list")


def test_sweep_period_zero_disables_it(run: Any) -> None:
    count = []
    p = sweeping_plugin("sw", lambda w, o, c: count.append(1), sweep_period=0)
    assert p.sweep is None
    r = run(p)
    listed = threading.Event()
    listed.set()
    r.reconciler.sweep_over(list, listed)
    time.sleep(0.6)
    assert count == []


def test_a_sweep_never_runs_beside_the_plugins_calls_with_several_workers(run: Any) -> None:
    lock = threading.Lock()
    active = [0]
    seen_beside: list[int] = []
    sweeps = []

    def handle(w: Any, event: Mapping[str, Any], c: Mapping[str, str]) -> None:
        with lock:
            active[0] += 1
        time.sleep(0.02)
        with lock:
            active[0] -= 1

    def sweep(w: Any, objects: list[dict[str, Any]], c: Mapping[str, str]) -> None:
        with lock:
            seen_beside.append(active[0])
        time.sleep(0.05)
        with lock:
            seen_beside.append(active[0])
        sweeps.append(1)

    r = run(sweeping_plugin("sw", sweep, handle, workers=4, sweep_period=0.1))
    listed = threading.Event()
    listed.set()
    r.reconciler.sweep_over(list, listed)
    deadline = time.monotonic() + 1.5
    n = 0
    while time.monotonic() < deadline:
        r.reconciler([changed("MODIFIED", obj(f"o{i % 20}", n + i)) for i in range(20)])
        n += 20
        time.sleep(0.01)
    wait_until(lambda: len(sweeps) >= 3, what="sweeps among the calls")
    assert seen_beside and set(seen_beside) == {0}


def test_a_failed_sweep_is_retried_with_backoff_and_counted(
    run: Any, caplog: pytest.LogCaptureFixture
) -> None:
    attempts = []

    def sweep(w: Any, objects: list[dict[str, Any]], c: Mapping[str, str]) -> dict[str, int]:
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise (
                errors.TemporaryError("the zone cannot be listed") if len(attempts) == 1 else OSError("boom")
            )
        return {"found": 0}

    r = run(sweeping_plugin("sw", sweep))
    listed = threading.Event()
    listed.set()
    r.reconciler.sweep_over(list, listed)
    wait_until(lambda: len(attempts) == 3, what="the third attempt")
    wait_until(lambda: r.sample("event_watcher_retries_total", "sw") == 2, what="the retries counted")
    assert r.sample("event_watcher_events_failed_total", "sw") == 2
    messages = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.ERROR]
    assert messages[0] == (
        "Plugin sw failed on its sweep of 0 objects, attempt 1: TemporaryError: the zone cannot be listed; "
        "retrying after the usual backoff."
    )
    assert messages[1].startswith("Plugin sw failed on its sweep of 0 objects, attempt 2: OSError: boom")


def test_no_sweep_while_this_replica_may_not_act(run: Any) -> None:
    count = []
    r = run(sweeping_plugin("sw", lambda w, o, c: count.append(1)))
    allowed = threading.Event()
    r.reconciler.guard(allowed.is_set, lambda: None)
    listed = threading.Event()
    listed.set()
    r.reconciler.sweep_over(list, listed)
    time.sleep(0.5)
    assert count == []
    allowed.set()
    r.reconciler.plugins[0].queue.wake()
    wait_until(lambda: count, what="the sweep once allowed")


def test_sweep_period_is_a_work_setting_and_sweep_must_take_three_arguments(tmp_path: Any) -> None:
    section = {"sweep_period": "90s"}
    module = types.ModuleType("m")
    assert dispatch.work_settings("x", module, section).sweep_period == 90.0
    assert dispatch.WorkSettings().sweep_period == 600.0
    with pytest.raises(errors.ConfigError, match=r"\[plugin_x\] sweep_period"):
        dispatch.work_settings("x", module, {"sweep_period": "-1"})
    module.handle_event = lambda w, e, c: None  # type: ignore[attr-defined]
    module.sweep = lambda w, o: None  # type: ignore[attr-defined]
    with pytest.raises(errors.PluginError, match=r"sweep\(\) must take 3 arguments"):
        dispatch._check_contract("x", module, "test")


def test_the_real_daemon_sweeps_its_cache_after_listing(
    local_api: LocalAPI, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("a", "b", "c"):
        local_api.create("routes", route(name))
    caplog.set_level(logging.INFO)
    ini = {"plugin_sweeper": {"sweep_deletes": "1"}}
    with running_watcher(local_api, plugins="sweeper", ini=ini) as w:
        sweeper = w.plugin("sweeper")
        wait_until(lambda: sweeper.sweeps, what="the sweep")
        thread, names, handled_before = sweeper.sweeps[0]
        assert thread.startswith("sweeper-") and names == ["a", "b", "c"] and handled_before == 3
        wait_until(  # counted once the sweep has returned
            lambda: w.metric("event_watcher_sweep_changes_total", plugin="sweeper", action="deleted") == 1,
            what="the sweep's changes counted",
        )
    assert any(
        rec.getMessage().startswith("Plugin sweeper swept 3 objects in ")
        and rec.getMessage().endswith(": found 3, deleted 1.")
        for rec in caplog.records
    )
