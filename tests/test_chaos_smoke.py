"""The reliability benches run, and their verdict can fail.

``bench/chaos.py`` and ``bench/soak.py`` run once each with tiny numbers (no figures are judged here:
the benches print them). The chaos verdict (``bench/_chaos_check.py``) is then fed records with an
object left short of its final state, an event duplicated, out of order or with content the server
never had, and must catch each one, while changes merged by the work queue pass.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import _chaos_check as check
from tests.harness import route, running_watcher, wait_until
from watcher.localapi import Fault, LocalAPI

ROOT = Path(__file__).resolve().parent.parent


def run_bench(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )


def summary(stdout: str) -> dict[str, str]:
    last = stdout.strip().splitlines()[-1]
    return dict(pair.split("=", 1) for pair in last.split())


def test_chaos_bench_runs_and_finds_nothing_lost() -> None:
    result = run_bench(
        "chaos.py",
        *("--seed", "7", "--changes", "300", "--faults", "25", "--objects", "60", "--restarts", "1"),
        *("--max-extra", "60", "--quiet"),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = summary(result.stdout)
    assert figures["lost"] == "0" and figures["mismatched"] == "0" and figures["ok"] == "yes"
    assert int(figures["changes"]) >= 300 and int(figures["events"]) > 0
    assert int(figures["restarts"]) == 1
    assert "faults injected:" in result.stdout and "sigterm_restart" in result.stdout


def test_soak_bench_runs_and_samples_memory() -> None:
    result = run_bench(
        "soak.py", "--objects", "2000", "--events", "20000", "--every", "5000", "--max-growth", "1000"
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = summary(result.stdout)
    assert float(figures["first_mib"]) > 0 and float(figures["last_mib"]) > 0
    samples = [line for line in result.stdout.splitlines() if "MiB" in line and line.strip()[0].isdigit()]
    assert len(samples) == 4


# --- the verdict on hand-made records ---------------------------------------------------------------------

A, B = "default/a", "default/b"
CHANGES = [
    check.Change(2, "ADDED", A, "ua", "1"),
    check.Change(3, "ADDED", B, "ub", "2"),
    check.Change(4, "MODIFIED", A, "ua", "3"),
    check.Change(5, "DELETED", B, "ub", "2"),
    check.Change(6, "MODIFIED", A, "ua", "4"),
    check.Change(7, "ADDED", B, "ub2", "5"),
]


def e(c: check.Change) -> str:
    return f"E {c.type} {c.key} {c.uid} {c.rv} {c.seq}"


WATCHED = ["S 1", "L 1 0", *[e(c) for c in CHANGES], "X"]


def verdict(lines: list[str]) -> check.Report:
    return check.check(CHANGES, lines, final_rv=7)


def test_a_complete_record_passes() -> None:
    report = verdict(WATCHED)
    assert report.ok and report.lost == report.mismatched == 0
    assert report.events == 6 and report.merged == 0 and report.runs == 1 and report.clean_stops == 1


def test_a_change_merged_into_a_newer_one_is_allowed() -> None:
    report = verdict([line for line in WATCHED if " 4 3" not in line])  # a's rv 4 merged into rv 6
    assert report.ok and report.merged == 1


def test_an_object_left_short_of_its_final_state_is_lost() -> None:
    report = verdict([line for line in WATCHED if " 6 4" not in line])  # a never got its last version
    assert report.lost == 1 and not report.ok
    report = verdict([*WATCHED[:-2], "X"])  # b's re-creation never arrived
    assert report.lost == 1


def test_a_repeated_event_is_a_duplicate() -> None:
    lines = [*WATCHED[:4], WATCHED[3], *WATCHED[4:]]
    assert verdict(lines).duplicates == 1


def test_an_older_version_after_a_newer_one_is_out_of_order() -> None:
    lines = ["S 1", "L 1 0", e(CHANGES[0]), e(CHANGES[1]), e(CHANGES[2]), "E MODIFIED default/a ua 2 1"]
    report = check.check(CHANGES[:3], lines, final_rv=4)
    assert report.out_of_order == 1 and not report.ok


def test_an_event_with_the_wrong_content_is_mismatched() -> None:
    lines = [line.replace("ua 4 3", "ua 4 99") for line in WATCHED]
    assert verdict(lines).mismatched >= 1
    lines = [*WATCHED[:-1], "E ADDED default/b ub 5 2", "X"]  # the deletion's version as a live object
    assert verdict(lines).mismatched >= 1


def test_a_relist_may_skip_what_it_could_not_see_but_must_land_on_the_server_state() -> None:
    # Position lost after rv 2; a LIST at rv 6 delivers the difference; the watch goes on at 7.
    relisted = ["S 1", "L 1 0", e(CHANGES[0]), "E MODIFIED default/a ua 6 4", "L 6 1", e(CHANGES[5]), "X"]
    report = verdict(relisted)
    assert report.ok and report.relists == 1 and report.merged == 3  # rv 3, 4 and 5
    # A LIST whose difference forgets a deletion, and so the re-creation's DELETED of the old uid.
    gone = ["S 1", "L 1 0", e(CHANGES[0]), e(CHANGES[1]), "E MODIFIED default/a ua 6 4", "L 6 1", "X"]
    assert verdict(gone).lost >= 1
    # A deletion a LIST found carries the last state known: allowed.
    found = ["S 1", "L 1 0", *[e(c) for c in CHANGES[:3]], "E DELETED default/b ub 3 2", "L 5 1"]
    assert verdict([*found, e(CHANGES[4]), e(CHANGES[5]), "X"]).ok


def test_a_restart_delivers_everything_again_and_that_is_not_a_duplicate() -> None:
    first = ["S 1", "L 1 0", e(CHANGES[0]), e(CHANGES[1]), "X"]
    second = ["S 2", "E ADDED default/a ua 4 3", "L 5 1", *[e(c) for c in CHANGES[4:]], "X"]
    report = verdict(first + second)
    assert report.ok and report.runs == 2 and report.duplicates == 0
    assert report.redelivered_on_restart == 0  # a's version 4 is new to the second run; b was deleted
    again = ["S 3", "E ADDED default/a ua 6 4", "E ADDED default/b ub2 7 5", "L 7 2", "X"]
    report = verdict(first + second + again)
    assert report.ok and report.redelivered_on_restart == 2


# --- what the chaos runs found in the hot path (fixed there; these tests keep it fixed) ----------------


def test_a_stream_that_delivered_events_and_then_broke_resets_the_backoff(local_api: LocalAPI) -> None:
    local_api.inject(Fault("close", after_events=1))
    local_api.inject(Fault("status", status=503, count=3))  # three failures in a row: the backoff grows
    local_api.inject(Fault("drop_mid_line", after_events=2))  # then a stream that works, until it breaks
    with running_watcher(local_api) as w:
        for name in ("a", "b", "c", "d"):
            local_api.create("routes", route(name))
        wait_until(lambda: w.restarts("dropped") >= 1, what="the drop")
        assert w.informer._backoff.attempt == 0
