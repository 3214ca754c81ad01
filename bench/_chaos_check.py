"""The chaos bench's verdict: does what reached the plugins add up to what happened on the server?

Inputs: the server's change log (every write the driver made, in resourceVersion order) and the lines the
``chaos_record`` plugin wrote (see its docstring). Between the informer and the plugin sits the work
queue, which is level-based: per object, the plugin gets the changes in order, but changes that waited
behind a newer one to the same object are merged into it, and a LIST after a lost position brings
only the difference. What is promised, within one process run:

* every event the plugin gets is a state the object really had (or, for DELETED, the last state the
  watcher knew of an object that is gone);
* per object, versions never go back;
* the plugin ends in the server's final state: every object's last change reached it.

What counts, precisely:

* **lost** — an object whose final state (its last version, or its deletion) never reached the plugins
  of the last process run: the plugins end up believing something the server no longer says.
* **mismatched** — an event that matches no state the server ever had (a version that never existed,
  or wrong content for its resourceVersion).
* **out_of_order** — within one process run, an event whose resourceVersion is lower than the last one
  delivered for the same object (equal is allowed only for a DELETED: it carries the last state known).
* **duplicates** — the same (type, uid, resourceVersion) delivered twice within one process run.
  Re-delivery as ADDED by a restarted process is expected and reported separately
  (``redelivered_on_restart``); ``merged`` counts the changes no event carried (allowed).
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
    lists: int = 0
    relists: int = 0  # LISTs after the first of each run
    lost: int = 0
    mismatched: int = 0
    out_of_order: int = 0
    duplicates: int = 0
    merged: int = 0  # changes no event carried: merged into a newer one, or skipped by a LIST (allowed)
    redelivered_on_restart: int = 0
    problems: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(text)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.mismatched or self.out_of_order or self.duplicates)


class ServerLog:
    """The change log, with the states each object went through."""

    def __init__(self, changes: Iterable[Change]) -> None:
        self.changes = sorted(changes)
        self.rvs = [c.rv for c in self.changes]
        self.by_rv = {c.rv: c for c in self.changes}
        self.states = {(c.uid, c.rv, c.seq) for c in self.changes if c.type != "DELETED"}

    def state_at(self, rv: int) -> dict[str, Obj]:
        state: dict[str, Obj] = {}
        for c in self.changes[: bisect.bisect_right(self.rvs, rv)]:
            if c.type == "DELETED":
                state.pop(c.key, None)
            else:
                state[c.key] = (c.uid, c.rv, c.seq)
        return state

    def real(self, e: Event) -> bool:
        """Whether the event carries a state the object had (a DELETED: the deletion itself, or the
        last state known of an object found gone)."""
        change = self.by_rv.get(e.rv)
        if change is not None and (change.key, change.uid, change.seq) == (e.key, e.uid, e.seq):
            return (change.type == "DELETED") == (e.type == "DELETED") or e.type == "DELETED"
        return False


def _apply(state: dict[str, Obj], e: Event) -> None:
    if e.type == "DELETED":
        held = state.get(e.key)
        if held is not None and held[0] == e.uid:
            del state[e.key]
    else:
        state[e.key] = (e.uid, e.rv, e.seq)


def _differences(state: dict[str, Obj], target: dict[str, Obj]) -> list[str]:
    return sorted(k for k in state.keys() | target.keys() if state.get(k) != target.get(k))


class _Run:
    """One process run: the state its plugins were brought to, and what was wrong on the way."""

    def __init__(self, server: ServerLog, report: Report, earlier: set[tuple[str, int]]) -> None:
        self.server = server
        self.report = report
        self.state: dict[str, Obj] = {}
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
        if not self.server.real(e):
            r.mismatched += 1
            r.note(f"an event that matches no state the server had: {e}")
        self.seen.add(ident)
        self.last[e.uid] = (e.rv, e.type)
        if (e.uid, e.rv) in self.earlier:
            r.redelivered_on_restart += 1
        _apply(self.state, e)

    def listed(self) -> None:
        self.lists += 1
        self.report.lists += 1
        if self.lists > 1:
            self.report.relists += 1


def check(changes: Iterable[Change], lines: Iterable[str], final_rv: Optional[int] = None) -> Report:
    """Replay the recorded lines against the change log; the last run must end in the state at
    ``final_rv``."""
    server = ServerLog(changes)
    if final_rv is None:
        final_rv = server.rvs[-1] if server.rvs else 0
    report = Report()
    earlier: set[tuple[str, int]] = set()
    carried: set[int] = set()
    run: Optional[_Run] = None
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        tag = parts[0]
        if tag == "S":
            if run is not None:
                earlier |= {(uid, rv) for _, uid, rv in run.seen}
            report.runs += 1
            run = _Run(server, report, earlier)
        elif run is None:
            report.note(f"a line before the first start mark: {line.strip()[:80]}")
        elif tag == "E" and len(parts) == 6:
            event = Event(parts[1], parts[2], parts[3], int(parts[4]), parts[5])
            carried.add(event.rv)
            run.event(event)
        elif tag == "L" and len(parts) >= 2:
            run.listed()
        elif tag == "X":
            report.clean_stops += 1
        else:
            report.note(f"an unreadable line: {line.strip()[:80]}")
    report.merged = sum(1 for rv in server.rvs if rv <= final_rv and rv not in carried)
    if run is None:
        report.lost += len(server.state_at(final_rv)) or len(server.changes)
        report.note("the plugin recorded nothing")
        return report
    wrong = _differences(run.state, server.state_at(final_rv))
    if wrong:
        report.lost += len(wrong)
        report.note(f"at the end: {len(wrong)} objects not in their final state, e.g. {wrong[:3]}")
    return report
