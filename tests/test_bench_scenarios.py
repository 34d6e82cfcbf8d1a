"""bench/scenarios.py's order of measurement (pure: no database, no server)."""

from __future__ import annotations

from bench.scenarios import ENGINE_W2, Plan, round_order, select


def _plan(only: str) -> Plan:
    return [(s, list(s.targets)) for s in select(only)]


def _names(plan: Plan, r: int) -> list[str]:
    return [f"{s.name}/{t}" for s, t in round_order(plan, r)]


def test_the_ratios_to_s1_on_the_engine_are_measured_beside_it_in_every_round() -> None:
    plan = _plan("S1,S1a,S1j,S2")
    together = {"S1/engine", "S1a/engine", "S1j/engine", "S1/engine-w2"}
    for r in range(7):
        order = _names(plan, r)
        assert sorted(order) == sorted(f"{s.name}/{t}" for s, ts in plan for t in ts)
        at = [i for i, name in enumerate(order) if name in together]
        assert at == list(range(at[0], at[0] + 4)), (r, order)  # one unbroken run
        assert all(name.startswith("S2/") for name in order[-4:])  # scenario after scenario


def test_each_round_rotates_the_servers_and_the_ones_beside_s1() -> None:
    plan = _plan("S1,S1a,S1j")
    firsts = [_names(plan, r)[0] for r in range(5)]  # S1: the unit of four and four others
    assert len(set(firsts)) == 5, firsts
    leads = {next(n for n in _names(plan, r) if "engine" in n) for r in range(4)}
    assert leads == {"S1/engine", "S1a/engine", "S1j/engine", "S1/engine-w2"}


def test_without_s1_the_others_stay_together_and_nothing_is_lost() -> None:
    plan = _plan("S1a,S1j")
    for r in range(3):
        assert sorted(_names(plan, r)) == ["S1a/engine", "S1j/engine"]
    alone = [(s, [t for t in ts if t != ENGINE_W2]) for s, ts in _plan("S1")]
    assert sorted(_names(alone, 0)) == sorted(f"S1/{t}" for t in alone[0][1])
