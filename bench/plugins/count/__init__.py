"""A no-op plugin for the benchmarks: counts events and reports the process's own clocks.

It does no work per event beyond a counter, so a benchmark measures the watcher, not a plugin. When
the ``events``-th event arrives it writes one JSON report (atomically: written beside, then renamed)
and keeps counting; the benchmark waits for the file, reads it, and stops the process. Timing runs
from the first event to the last, so process start-up, imports and discovery are not in the figures.

With ``base_rv``, an event's number is its object's resourceVersion minus ``base_rv``, not how many
calls came before it: the watcher's work queue merges changes to one object that wait (only the
latest state is handed over), so the run is over when the last change made has reached the plugin,
whatever number of calls that took. Every change bumps the local API's revision by one, so that
number is the count of changes the stream carried up to it, for the official client as for us.

``[plugin_count]`` keys:

* ``events`` (required): how many events (changes, with ``base_rv``) make a run.
* ``report`` (required): path of the JSON report.
* ``base_rv``: the local API's revision before the first change of the run.
* ``stamp_annotation``: an annotation holding the writer's ``CLOCK_MONOTONIC`` time in ns when the
  change was made; with it, every event's delivery latency (write → ``handle_event``) is reported too.

The same ``Tally`` serves the official-client runner in ``bench/watch_throughput.py``, so both sides
are measured by identical code.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any, Optional

MARKS = 10  # resident set size is sampled at every tenth of the run, to show whether memory grows
DONE = 1 << 62


def status_kb(field: str, pid: str = "self") -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``); 0 where there is no /proc."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds() -> float:
    """User plus system time of the whole process, every thread included (as /proc/self/stat)."""
    t = os.times()
    return t.user + t.system


class Tally:
    """Counts events; notes wall and CPU clocks at the first and the last, and RSS at every tenth."""

    def __init__(
        self,
        target: int,
        report: str,
        stamp_annotation: Optional[str] = None,
        base_rv: Optional[int] = None,
    ) -> None:
        if target < 2:
            raise ValueError(f"events: need at least 2 to time a run, got {target}")
        self.target = target
        self.report = report
        self.stamp_annotation = stamp_annotation
        self.base_rv = base_rv
        self.count = 0  # the number of the latest event (see the module docstring)
        self.calls = 0
        self.next_mark = 1
        self.marks: list[tuple[int, float, float, int]] = []  # (events, wall, cpu, rss kB)
        self.latencies_ns: list[int] = []

    def __call__(self, event: Mapping[str, Any]) -> None:
        if self.stamp_annotation is not None:
            self.stamp(event)
        self.advance(event)
        if self.count >= self.next_mark:
            self.mark()

    def advance(self, event: Mapping[str, Any]) -> None:
        self.calls += 1
        if self.base_rv is None:
            self.count += 1
        else:
            number = int(event["object"]["metadata"]["resourceVersion"]) - self.base_rv
            if number > self.count:
                self.count = number

    def stamp(self, event: Mapping[str, Any]) -> None:
        now = time.monotonic_ns()
        annotations = event["object"].get("metadata", {}).get("annotations") or {}
        stamp = annotations.get(self.stamp_annotation)
        if stamp is not None:
            self.latencies_ns.append(now - int(stamp))

    def mark(self) -> None:
        # A number may jump past a mark, or past the target, when changes were merged on the way.
        self.marks.append(
            (min(self.count, self.target), time.perf_counter(), cpu_seconds(), status_kb("VmRSS"))
        )
        if self.count >= self.target:
            self._write()
            self.next_mark = DONE  # the report is written; count on quietly until stopped
            return
        step = max(1, self.target // MARKS)
        self.next_mark = min(self.target, (self.count // step + 1) * step)

    def _write(self) -> None:
        first, last = self.marks[0], self.marks[-1]
        result = {
            "events": self.target,
            "calls": self.calls,
            "seconds": last[1] - first[1],
            "cpu_seconds": last[2] - first[2],
            "peak_rss_kb": status_kb("VmHWM"),
            "rss_kb": [(n, rss) for n, _, _, rss in self.marks],
            "latencies_ns": self.latencies_ns,
            "pid": os.getpid(),
        }
        partial = f"{self.report}.partial"
        with open(partial, "w", encoding="utf-8") as f:
            json.dump(result, f)
        os.replace(partial, self.report)


_tally: Optional[Tally] = None


def init(watcher: Any, config: Mapping[str, str]) -> None:
    global _tally
    try:
        target = int(config.get("events", ""))
    except ValueError:
        raise ValueError(f"events: expected a whole number, got {config.get('events')!r}") from None
    report = config.get("report", "")
    if not report:
        raise ValueError("report: a path for the JSON report is required")
    base = config.get("base_rv")
    _tally = Tally(target, report, config.get("stamp_annotation") or None, int(base) if base else None)


def handle_event(watcher: Any, event: Mapping[str, Any], config: Mapping[str, str]) -> None:
    # Tally.__call__ inlined: this plugin's cost is part of what the benchmark reports.
    tally = _tally
    assert tally is not None  # init() always runs first
    if tally.stamp_annotation is not None:
        tally.stamp(event)
    tally.advance(event)
    if tally.count >= tally.next_mark:
        tally.mark()
