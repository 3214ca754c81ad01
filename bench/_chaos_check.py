"""The chaos bench's verdict: does what reached the plugins add up to what happened on the server?

Inputs: the server's change log (every write the driver made, in resourceVersion order) and the lines the
``chaos_record`` plugin wrote (see its docstring). The informer promises, within one process run:

* while it holds a valid position, every change arrives, once, in resourceVersion order;
* when its position is lost (a 410, or a new process), one LIST replaces it: the LIST's difference
  brings the plugins to exactly the server's state at the LIST's resourceVersion, and the intermediate
  versions it could not see are legitimately skipped ("coalesced");
* across a process restart everything arrives again as ADDED (at least once).

What counts, precisely:

* **lost** — a change the plugins should have received and did not: a gap between two delivered watch
  events (the watcher held a valid position, so nothing in between may be skipped), or a change made
  before the end of the run that the last process never caught up to.
* **mismatched** — an object whose (uid, resourceVersion, content) in the plugins' reconstructed state
  differs from the server's, checked after every LIST (against the server at that LIST's
  resourceVersion) and at the end (against the final state); plus any event that matches no change
  the server made (wrong content for its resourceVersion, or a version that never existed).
* **out_of_order** — within one process run, an event whose resourceVersion is lower than the last one
  delivered for the same object (equal is allowed only for a DELETED that a LIST discovered: it carries
  the last state the watcher knew).
* **duplicates** — the same (type, uid, resourceVersion) delivered twice within one process run
  (relists included: the informer delivers only what changed). Re-delivery as ADDED by a restarted
  process is expected and reported separately (``redelivered_on_restart``).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

Obj = tuple[str, int, str]  # uid, resourceVersion, seq


class Change(NamedTuple):
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    key: str  # namespace/name
    uid: str
    seq: str  # the content marker (chaos.bench/seq annotation)


class Event(NamedTuple):
    type: str
    key: str
    uid: str
    rv: int
    seq: str


@dataclass
class Report:
    runs: int = 0
    clean_stops: int = 0
    events: int = 0
    watch_events: int = 0
    list_events: int = 0
    lists: int = 0
    relists: int = 0  # LISTs after the first of each run
    lost: int = 0
    mismatched: int = 0
    out_of_order: int = 0
    duplicates: int = 0
    coalesced: int = 0  # intermediate versions skipped while the position was lost (allowed)
    redelivered_on_restart: int = 0
    problems: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(text)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.mismatched or self.out_of_order or self.duplicates)


class ServerLog:
    """The change log, replayed forward to answer "what was the state at revision S"."""

    def __init__(self, changes: Iterable[Change]) -> None:
        self.changes = sorted(changes)
        self.rvs = [c.rv for c in self.changes]
        self.by_rv = {c.rv: c for c in self.changes}
        self._i = 0
        self._state: dict[str, Obj] = {}

    def state_at(self, rv: int) -> dict[str, Obj]:
        """The objects at revision ``rv`` (a live view: copy it to keep it)."""
        if self._i and self.changes[self._i - 1].rv > rv:
            self._i, self._state = 0, {}
        while self._i < len(self.changes) and self.changes[self._i].rv <= rv:
            c = self.changes[self._i]
            if c.type == "DELETED":
                self._state.pop(c.key, None)
            else:
                self._state[c.key] = (c.uid, c.rv, c.seq)
            self._i += 1
        return self._state

    def next_after(self, rv: int) -> Optional[Change]:
        i = bisect.bisect_right(self.rvs, rv)
        return self.changes[i] if i < len(self.changes) else None

    def count_between(self, low: int, high: int) -> int:
        """Changes with low < rv < high."""
        return max(0, bisect.bisect_left(self.rvs, high) - bisect.bisect_right(self.rvs, low))

    def matches(self, e: Event, change: Optional[Change]) -> bool:
        return change is not None and change == Change(e.rv, e.type, e.key, e.uid, e.seq)


def _apply(state: dict[str, Obj], e: Event) -> None:
    if e.type == "DELETED":
        held = state.get(e.key)
        if held is not None and held[0] == e.uid:
            del state[e.key]
    else:
        state[e.key] = (e.uid, e.rv, e.seq)


def _expected_diff(base: dict[str, Obj], target: dict[str, Obj]) -> set[Event]:
    """What a LIST must deliver to take a cache from ``base`` to ``target`` (objects are keyed by uid in
    the informer: a name deleted and created again is a DELETED and an ADDED)."""
    out: set[Event] = set()
    for key, (uid, rv, seq) in base.items():
        now = target.get(key)
        if now is None or now[0] != uid:
            out.add(Event("DELETED", key, uid, rv, seq))
    for key, (uid, rv, seq) in target.items():
        before = base.get(key)
        if before is None or before[0] != uid:
            out.add(Event("ADDED", key, uid, rv, seq))
        elif before[1] != rv:
            out.add(Event("MODIFIED", key, uid, rv, seq))
    return out


def _differences(state: dict[str, Obj], target: dict[str, Obj]) -> list[str]:
    return sorted(k for k in state.keys() | target.keys() if state.get(k) != target.get(k))


class _Run:
    """One process run: its reconstructed state and where its position is."""

    def __init__(self, server: ServerLog, report: Report, earlier: set[tuple[str, int]]) -> None:
        self.server = server
        self.report = report
        self.state: dict[str, Obj] = {}
        self.position: Optional[int] = None  # None until the first LIST completes
        self.pending: list[Event] = []  # events not (yet) explained as consecutive watch events
        self.base: dict[str, Obj] = {}  # the state before ``pending``
        self.last: dict[str, tuple[int, str]] = {}  # uid -> (rv, type) last delivered
        self.seen: set[tuple[str, str, int]] = set()
        self.earlier = earlier  # (uid, rv) delivered by earlier runs
        self.lists = 0

    def event(self, e: Event) -> None:
        r = self.report
        r.events += 1
        ident = (e.type, e.uid, e.rv)
        if ident in self.seen:
            r.duplicates += 1
            r.note(f"duplicate within one run: {e.type} {e.key} rv {e.rv}")
        else:
            prev = self.last.get(e.uid)
            if prev is not None and (e.rv < prev[0] or (e.rv == prev[0] and e.type != "DELETED")):
                r.out_of_order += 1
                r.note(f"out of order: {e.type} {e.key} rv {e.rv} after rv {prev[0]}")
        self.seen.add(ident)
        self.last[e.uid] = (e.rv, e.type)
        if (e.uid, e.rv) in self.earlier:
            r.redelivered_on_restart += 1
        if (
            self.position is not None
            and not self.pending
            and self.server.matches(e, self.server.next_after(self.position))
        ):
            self.position = e.rv
            r.watch_events += 1
            _apply(self.state, e)
            return
        if not self.pending:
            self.base = dict(self.state)
        self.pending.append(e)
        _apply(self.state, e)

    def listed(self, rv: int) -> None:
        r = self.report
        self.lists += 1
        r.lists += 1
        if self.lists > 1:
            r.relists += 1
        target = self.server.state_at(rv)
        start = self.position
        if self.pending:
            split = self._split(target)
            if split is None:
                r.note(f"the events before the LIST at rv {rv} are not the difference a LIST makes")
                self._sequential(self.pending)
            else:
                watch, diff = self.pending[:split], self.pending[split:]
                r.watch_events += len(watch)
                r.list_events += len(diff)
                if watch:
                    start = watch[-1].rv
                if start is not None:
                    window = self.server.count_between(start, rv + 1)
                    r.coalesced += max(0, window - sum(1 for e in diff if e.rv > start) - self._deletes(diff))
        wrong = _differences(self.state, target)
        if wrong:
            r.mismatched += len(wrong)
            r.note(
                f"after the LIST at rv {rv}: {len(wrong)} objects differ from the server, e.g. {wrong[:3]}"
            )
        self.position = rv
        self.pending = []

    @staticmethod
    def _deletes(diff: list[Event]) -> int:
        return sum(1 for e in diff if e.type == "DELETED")

    def _split(self, target: dict[str, Obj]) -> Optional[int]:
        """How many of the pending events are watch events before the LIST's difference (None: no split
        explains them). The longest consecutive prefix first; a diff may begin with an event that
        happens to be the next change, so shorter prefixes are tried too."""
        longest = 0
        position = self.position
        if position is not None:
            for e in self.pending:
                if not self.server.matches(e, self.server.next_after(position)):
                    break
                position = e.rv
                longest += 1
        for split in range(longest, -1, -1):
            base = dict(self.base)
            for e in self.pending[:split]:
                _apply(base, e)
            diff = self.pending[split:]
            if len(set(diff)) == len(diff) and set(diff) == _expected_diff(base, target):
                return split
        return None

    def _sequential(self, events: list[Event]) -> None:
        """Events that must all be watch events: every gap is a loss."""
        r = self.report
        for e in events:
            if not self.server.matches(e, self.server.by_rv.get(e.rv)):
                r.mismatched += 1
                r.note(f"an event that matches no change on the server: {e}")
                continue
            if self.position is not None and e.rv > self.position:
                gap = self.server.count_between(self.position, e.rv)
                if gap:
                    r.lost += gap
                    r.note(f"lost {gap} changes between rv {self.position} and rv {e.rv}")
                self.position = e.rv
            r.watch_events += 1
        self.pending = []

    def end(self) -> None:
        if self.pending and self.position is not None:
            self._sequential(self.pending)


def check(changes: Iterable[Change], lines: Iterable[str], final_rv: Optional[int] = None) -> Report:
    """Replay the recorded lines against the change log; the last run must end at ``final_rv``."""
    server = ServerLog(changes)
    if final_rv is None:
        final_rv = server.rvs[-1] if server.rvs else 0
    report = Report()
    earlier: set[tuple[str, int]] = set()
    run: Optional[_Run] = None
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        tag = parts[0]
        if tag == "S":
            if run is not None:
                run.end()
                earlier |= {(uid, rv) for _, uid, rv in run.seen}
            report.runs += 1
            run = _Run(server, report, earlier)
        elif run is None:
            report.note(f"a line before the first start mark: {line.strip()[:80]}")
        elif tag == "E" and len(parts) == 6:
            run.event(Event(parts[1], parts[2], parts[3], int(parts[4]), parts[5]))
        elif tag == "L" and len(parts) >= 2:
            run.listed(int(parts[1]))
        elif tag == "X":
            report.clean_stops += 1
        else:
            report.note(f"an unreadable line: {line.strip()[:80]}")
    if run is None:
        report.lost += len(server.changes)
        report.note("the plugin recorded nothing")
        return report
    run.end()
    final = server.state_at(final_rv)
    wrong = _differences(run.state, final)
    if wrong:
        report.mismatched += len(wrong)
        report.note(f"at the end: {len(wrong)} objects differ from the server, e.g. {wrong[:3]}")
    position = run.position or 0
    if position < final_rv:
        tail = server.count_between(position, final_rv + 1)
        report.lost += tail
        report.note(f"the watcher never caught up: {tail} changes after rv {position} never arrived")
    return report
