"""The keyed work queue's guarantees, driven by a fake clock: nothing here sleeps for backoff."""

from __future__ import annotations

import threading
from typing import Optional

from tests.harness import wait_until
from watcher.workqueue import RetryPolicy, Taken, WorkQueue

Work = tuple[str, ...]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def merge(old: Optional[Work], change: str) -> Optional[Work]:
    """Changes pile up in order; "cancel" undoes everything waiting; "same" adds nothing."""
    if change == "cancel":
        return None
    if change == "same" and old is not None:
        return old
    return (*(old or ()), change)


def combine(left: Work, newer: Work) -> Optional[Work]:
    return (*left, *newer)


def queue(clock: Clock, cap: float = 300.0) -> WorkQueue[str, str, Work]:
    return WorkQueue(merge, combine, policy=RetryPolicy(initial=1.0, cap=cap), clock=clock)


def take(q: WorkQueue[str, str, Work]) -> Optional[Taken[str, Work]]:
    return q.get(timeout=0)


def test_changes_to_a_waiting_key_are_merged_into_one_item() -> None:
    q = queue(Clock())
    q.put([("a", "1"), ("b", "1"), ("a", "2")])
    q.put([("a", "3")])
    assert q.depth() == 2
    assert take(q) == Taken("a", ("1", "2", "3"), 0)
    assert take(q) == Taken("b", ("1",), 0)
    assert take(q) is None


def test_keys_are_handed_out_oldest_first() -> None:
    q = queue(Clock())
    q.put([(key, "x") for key in "cab"])
    assert [t.key for t in (take(q), take(q), take(q)) if t] == ["c", "a", "b"]


def test_a_key_in_hand_is_never_handed_out_twice() -> None:
    q = queue(Clock())
    q.put([("a", "1")])
    first = take(q)
    assert first is not None
    q.put([("a", "2"), ("b", "1")])
    second = take(q)
    assert second is not None and second.key == "b"
    assert take(q) is None  # a's new work waits for the worker holding a
    q.done("a")
    assert take(q) == Taken("a", ("2",), 0)


def test_a_cancelled_key_is_not_handed_out() -> None:
    q = queue(Clock())
    q.put([("a", "1"), ("a", "cancel")])
    assert q.depth() == 0 and q.idle()
    assert take(q) is None


def test_a_change_that_adds_nothing_keeps_the_keys_place_and_backoff() -> None:
    clock = Clock()
    q = queue(clock)
    q.put([("a", "1")])
    taken = take(q)
    assert taken is not None
    delay = q.retry("a", taken.work)
    q.put([("a", "same")])
    assert take(q) is None  # still in backoff
    clock.now += delay
    assert take(q) == Taken("a", ("1",), 1)


def test_failures_back_off_per_key_doubling_up_to_the_cap() -> None:
    clock = Clock()
    q = queue(clock, cap=5.0)
    q.put([("a", "1"), ("b", "1")])
    delays = []
    for attempt in range(1, 6):
        taken = take(q)
        assert taken is not None and taken.key == "a" and taken.failures == attempt - 1
        delay = q.retry("a", taken.work)
        delays.append(delay)
        if attempt == 1:
            assert take(q) == Taken("b", ("1",), 0)  # b does not wait for a's backoff
        assert take(q) is None
        clock.now += delay
    ceilings = [1, 2, 4, 5, 5]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings)), delays


def test_success_forgets_the_failures() -> None:
    clock = Clock()
    q = queue(clock)
    q.put([("a", "1")])
    for _ in range(3):
        taken = take(q)
        assert taken is not None
        clock.now += q.retry("a", taken.work)
    taken = take(q)
    assert taken is not None and taken.failures == 3
    q.done("a")
    q.put([("a", "2")])
    taken = take(q)
    assert taken == Taken("a", ("2",), 0)
    assert q.retry("a", taken.work) <= 1.0


def test_newer_work_is_handed_out_at_once_but_keeps_the_failure_count() -> None:
    clock = Clock()
    q = queue(clock)
    q.put([("a", "1")])
    taken = take(q)
    assert taken is not None
    assert q.retry("a", ("left",)) > 0
    assert take(q) is None
    q.put([("a", "2")])
    assert take(q) == Taken("a", ("left", "2"), 1)  # no waiting out the backoff


def test_work_that_arrives_while_the_key_fails_goes_out_at_once_with_what_is_left() -> None:
    q = queue(Clock())
    q.put([("a", "1")])
    assert take(q) is not None
    q.put([("a", "2")])
    assert q.retry("a", ("1",)) == 0.0
    assert take(q) == Taken("a", ("1", "2"), 1)


def test_the_plugin_can_say_when_to_retry() -> None:
    clock = Clock()
    q = queue(clock)
    q.put([("a", "1")])
    taken = take(q)
    assert taken is not None
    assert q.retry("a", taken.work, after=42.0) == 42.0
    clock.now += 41.9
    assert take(q) is None
    clock.now += 0.2
    assert take(q) is not None


def test_given_back_work_is_ready_at_once_without_a_failure() -> None:
    q = queue(Clock())
    q.put([("a", "1")])
    taken = take(q)
    assert taken is not None
    q.put([("a", "2")])
    q.give_back("a", taken.work)
    assert take(q) == Taken("a", ("1", "2"), 0)


def test_a_resync_skips_keys_with_work_waiting_or_in_hand() -> None:
    q = queue(Clock())
    q.put([("a", "1"), ("b", "1")])
    assert take(q) is not None  # a in hand, b waiting
    q.put([("a", "sync"), ("b", "sync"), ("c", "sync")], only_idle=True)
    assert take(q) == Taken("b", ("1",), 0)
    assert take(q) == Taken("c", ("sync",), 0)
    q.done("a")
    assert take(q) is None


def test_pause_holds_everything_and_resume_hands_it_out() -> None:
    q = queue(Clock())
    q.pause()
    q.put([("a", "1")])
    assert take(q) is None and q.depth() == 1
    q.resume()
    assert take(q) == Taken("a", ("1",), 0)


def test_shutdown_hands_out_nothing_ever_again() -> None:
    q = queue(Clock())
    q.put([("a", "1")])
    q.shutdown()
    assert q.get() is None  # would block for ever if it waited


def test_oldest_is_the_wait_of_the_oldest_work_and_a_failing_key_keeps_its_arrival() -> None:
    clock = Clock()
    q = queue(clock)
    assert q.oldest() == 0.0
    q.put([("a", "1")])
    clock.now += 10
    q.put([("b", "1")])
    assert q.oldest() == 10
    taken = take(q)
    assert taken is not None and taken.key == "a"
    assert q.oldest() == 0  # b arrived just now; a is in hand
    clock.now += 5
    q.retry("a", taken.work)
    assert q.oldest() == 15  # a has waited since it first arrived


def test_a_blocked_worker_wakes_for_new_work_and_for_shutdown() -> None:
    q: WorkQueue[str, str, Work] = WorkQueue(merge, combine)
    got: list[Optional[Taken[str, Work]]] = []
    worker = threading.Thread(target=lambda: [got.append(q.get()) for _ in range(2)])
    worker.start()
    q.put([("a", "1")])
    wait_until(lambda: len(got) == 1, timeout=5, what="the worker to wake for work")
    q.shutdown()
    worker.join(5)
    assert not worker.is_alive() and got == [Taken("a", ("1",), 0), None]
