"""bench/report.py's verdicts (pure: no database, no server)."""

from __future__ import annotations

from bench import report
from bench.scenarios import ENGINE, TUNED


def _median(rounds: tuple[float, ...]) -> report.Median:
    ordered = sorted(rounds)
    return report.Median(ordered[len(ordered) // 2], 1.0, 2.0, 0, rounds)


def _s1_check(engine: tuple[float, ...], tuned: tuple[float, ...]) -> report.Check:
    m = {"S1": {ENGINE: _median(engine), TUNED: _median(tuned)}}
    return next(c for c in report.checks(m, None) if c.name == "S1 engine / S1 starlette tuned")


def test_a_ratio_passes_when_its_medians_and_its_rounds_both_reach_the_target() -> None:
    check = _s1_check((110, 120, 115), (100, 100, 100))
    assert check.rounds == (1.1, 1.2, 1.15)
    assert check.passed


def test_a_ratio_of_medians_that_pairs_a_fast_round_with_a_slow_one_does_not_pass() -> None:
    # the machine's speed drifted between rounds: the medians come from different rounds
    # (1.2x), while within the rounds the engine was at 0.92x, 1.21x and 1.09x
    check = _s1_check((120, 121, 60), (130, 100, 55))
    assert round(check.value, 2) == 1.2
    assert check.rounds == (0.92, 1.21, 1.09)
    assert not check.passed
