"""The workers' shared rate-limit counters (engine/sharedrate.py): pure, no server."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from engine import sharedrate
from engine.sharedrate import WINDOW_S, SharedCounters, count

MINUTE = 1_000 * WINDOW_S  # the start of some minute


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def path() -> Iterator[str]:
    with sharedrate.shared_file() as made:
        yield made
    assert not os.path.exists(made)


def test_the_file_is_a_table_of_unused_slots(path: str) -> None:
    assert os.path.getsize(path) == sharedrate.SIZE
    with open(path, "rb") as table:
        assert table.read() == bytes(sharedrate.SIZE)


def test_two_processes_mapping_the_file_count_against_one_limit(path: str) -> None:
    clock = Clock(MINUTE + 1)
    one, two = SharedCounters(path, clock), SharedCounters(path, clock)
    seen = [(c.hit("ep1/4/ip:1", 4)) for c in (one, two, one, two, one, two)]
    assert [c.allowed for c in seen] == [True, True, True, True, False, False]
    assert [c.remaining for c in seen] == [3, 2, 1, 0, 0, 0]
    assert [c.reset_s for c in seen[:4]] == [59] * 4  # allowed: until the minute ends
    assert two.hit("ep1/4/ip:2", 4).allowed  # another caller: its own counter
    assert one.hit("ep2/4/ip:1", 4).allowed  # another endpoint: its own counter
    one.close()
    two.close()


def test_the_previous_minute_weighs_less_as_this_one_runs() -> None:
    # 10 calls in the last minute, a limit of 10: a quarter into this one they weigh 7.5
    counted, current, previous = count(10, 999, 10, 0, MINUTE + WINDOW_S / 4)
    assert (counted.allowed, counted.remaining, current, previous) == (True, 1, 1, 10)
    counted, current, previous = count(10, 1_000, current, previous, MINUTE + WINDOW_S / 4)
    assert (counted.allowed, current) == (True, 2)  # 7.5 + 2 = 9.5 <= 10
    counted, current, previous = count(10, 1_000, current, previous, MINUTE + WINDOW_S / 4)
    assert not counted.allowed and current == 2  # 7.5 + 2 + 1 > 10: refused, not counted
    # the next call fits once the previous minute weighs 7: 30 % into this minute, 3 s on
    assert counted.reset_s == 3


def test_a_counter_two_minutes_old_starts_again() -> None:
    counted, current, previous = count(3, 998, 3, 3, MINUTE + 1)
    assert (counted.allowed, counted.remaining, current, previous) == (True, 2, 1, 0)


def test_a_caller_over_the_limit_this_minute_waits_into_the_next() -> None:
    # 4 calls this minute, 30 s in, a limit of 4: refused until 4 x (1 - t/60) <= 3, 15 s
    # into the next minute: 30 + 15 s
    counted, _, _ = count(4, 1_000, 4, 0, MINUTE + 30)
    assert not counted.allowed
    assert counted.reset_s == 45


def test_the_limit_holds_over_a_minute_boundary(path: str) -> None:
    clock = Clock(MINUTE + WINDOW_S - 1)
    counters = SharedCounters(path, clock)
    assert all(counters.hit("k", 5).allowed for _ in range(5))
    clock.now = MINUTE + WINDOW_S + 1  # the next minute: the 5 calls still weigh ~4.9
    assert not counters.hit("k", 5).allowed
    clock.now = MINUTE + 2 * WINDOW_S - 1  # near its end they weigh ~0.1
    assert [counters.hit("k", 5).allowed for _ in range(5)] == [True] * 4 + [False]


def test_a_full_table_gives_up_a_least_recent_counter(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sharedrate, "SLOTS", 4)  # every key probes the same 4 slots
    monkeypatch.setattr(sharedrate, "PROBES", 4)
    clock = Clock(MINUTE + 1)
    counters = SharedCounters(path, clock)
    for key in "abcd":
        assert counters.hit(key, 1).allowed
        assert not counters.hit(key, 1).allowed
        clock.now += WINDOW_S  # each key a minute later than the one before
    clock.now -= WINDOW_S  # within d's minute: a, b are stale, c, d live
    assert counters.hit("e", 1).allowed  # a stale slot (a's or b's)
    assert counters.hit("f", 1).allowed  # the other one
    assert counters.hit("g", 1).allowed  # none free: the least recent, c's, given up
    assert not counters.hit("d", 1).allowed  # d keeps its count
    assert counters.hit("c", 1).allowed  # c starts again from zero
