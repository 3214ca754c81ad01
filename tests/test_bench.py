"""The benchmarks keep working: each runs once with a tiny N and prints its summary line.

These are not performance tests: no figure is compared with a time or a rate. They check that every
benchmark runs end to end (the real watcher, the official client, the local API) and reports what it
says it reports, so that the numbers in bench/README.md can always be reproduced.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH / "plugins"))

import count  # noqa: E402  # the benchmarks' counting plugin

NUMBER = r"[0-9]+(?:\.[0-9]+)?"


def run_bench(script: str, *args: str, timeout: float = 240) -> str:
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def summary(output: str, keys: list[str]) -> Mapping[str, float]:
    """The last line's ``key=value`` pairs, checked to be exactly ``keys``."""
    last = output.strip().splitlines()[-1]
    pairs = dict(re.findall(rf"(\w+)=({NUMBER})%?", last))
    assert list(pairs) == keys, last
    return {k: float(v) for k, v in pairs.items()}


def test_watch_throughput_compares_the_watcher_with_the_official_client() -> None:
    out = run_bench("watch_throughput.py", "--events", "3000", "--routes", "50", "--pairs", "1")
    figures = summary(out, ["ratio", "events_per_s", "cpu_us_per_event", "peak_rss_mb"])
    assert all(value > 0 for value in figures.values()), figures
    assert "Parse-only limit" in out
    assert out.count("  watcher ") == 2 and out.count("  official ") == 2  # warm-up and one pair


def test_watch_throughput_soak_samples_memory_at_every_tenth() -> None:
    out = run_bench("watch_throughput.py", "--soak", "3000", "--routes", "50")
    figures = summary(out, ["rss_growth", "events", "cpu_us_per_event", "peak_rss_mb"])
    assert figures["events"] == 3050  # the 50 listed routes, then every change
    # A sample at the first event, at every tenth the count reached and at the last; merged changes
    # can carry the count past two tenths at once, so some tenths may share a sample.
    samples = [int(n.replace(",", "")) for n in re.findall(r"after +([0-9,]+) events: RSS", out)]
    assert samples[0] == 1 and samples[-1] == 3050, samples
    assert samples == sorted(set(samples)) and len(samples) >= 6, samples


def test_latency_times_every_trickled_event() -> None:
    out = run_bench("latency.py", "--events", "100", "--rate", "200", "--routes", "10")
    figures = summary(out, ["p50_ms", "p99_ms", "max_ms", "events"])
    assert figures["events"] == 100
    assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]


def test_reconcile_reports_the_three_situations() -> None:
    out = run_bench("reconcile.py", "--routes", "20", "--updates", "50", "--seconds", "1")
    figures = summary(out, ["hol_p99_probe_s", "hol_p99_next_s", "retry_s", "burst_final_s", "burst_calls"])
    assert all(value > 0 for value in figures.values()), figures
    assert figures["retry_s"] > 0.25  # three failures cost three backoffs, however short
    assert figures["burst_calls"] <= 50


def test_converge_reports_no_repeated_webhook_message_across_a_restart_and_the_resolutions() -> None:
    out = run_bench("converge.py", "--events", "4", "--restarts", "1", "--converge", "5")
    keys = ["repeats_state", "repeats_memory", "resolved_state", "resolved_memory", "converge_s"]
    figures = summary(out, [*keys, "alertmanager_exact_state"])
    assert figures["repeats_state"] == 0 and figures["repeats_memory"] > 0  # the baseline repeats
    assert figures["resolved_state"] == 1 and figures["resolved_memory"] == 0
    assert 0 < figures["converge_s"] < 5 and figures["alertmanager_exact_state"] == 1


def test_converge_dns_reports_the_zone_equal_to_the_routes_after_every_kind_of_fault() -> None:
    out = run_bench(
        "converge_dns.py",
        *("--routes", "30", "--rate", "20", "--faults", "3", "--min-fault", "2", "--max-fault", "3"),
        *("--between", "2", "--converge", "30"),
    )
    keys = ["faults", "converged", "max_converge_s", "missing", "stale", "foreign_intact", "changes"]
    figures = summary(out, keys)
    assert figures["faults"] == figures["converged"] == 3, out
    assert figures["missing"] == figures["stale"] == 0 and 0 < figures["max_converge_s"] < 30
    assert "foreign_intact=3/3" in out and figures["changes"] > 100
    for kind in ("named SIGSTOP", "named SIGKILL", "watcher SIGKILL"):
        assert f": {kind} for " in out


def test_cache_memory_reports_the_daemons_rss_and_the_cache_against_its_json() -> None:
    out = run_bench("cache_memory.py", "--routes", "300")
    keys = ["rss_listed_mib", "rss_changed_mib", "peak_mib", "keep_rss_changed_mib", "ratio_to_keep"]
    figures = summary(out, [*keys, "cache_ratio", "json_bytes_per_object"])
    assert all(value > 0 for value in figures.values()), figures
    assert 500 < figures["json_bytes_per_object"] < 1000  # a Route without managedFields: ~790 bytes
    assert figures["cache_ratio"] > 1  # the JSON is in there
    line = re.search(r"a route as a watch line: ([0-9,]+) bytes", out)
    assert line and 1800 < int(line.group(1).replace(",", "")) < 2600  # as a cluster sends them
    assert out.count("  daemon, ") == 2 and "managedFields left in" not in out
    assert re.search(r"cache, list +300 objects", out) and re.search(r"cache, watch +300 objects", out)


# --- the counting plugin ------------------------------------------------------------------------------


def test_count_plugin_reports_once_at_its_target(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    count.init(None, {"events": "20", "report": str(report), "stamp_annotation": "t"})
    event = {"type": "MODIFIED", "object": {"metadata": {"annotations": {"t": "0"}}}}
    for n in range(1, 26):
        count.handle_event(None, event, {})
        assert report.exists() == (n >= 20)
        if n == 20:
            first = report.read_text()
    assert report.read_text() == first  # counting on after the target does not rewrite it
    data = json.loads(first)
    assert data["events"] == 20 and data["peak_rss_kb"] > 0
    assert [n for n, _ in data["rss_kb"]] == [1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    assert len(data["latencies_ns"]) == 20 and min(data["latencies_ns"]) > 0


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"report": "x"}, "events: expected a whole number"),
        ({"events": "ten", "report": "x"}, "events: expected a whole number"),
        ({"events": "1", "report": "x"}, "events: need at least 2"),
        ({"events": "10"}, "report: a path"),
    ],
)
def test_count_plugin_refuses_bad_config(config: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        count.init(None, config)
