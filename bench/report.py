"""The benchmark's figures: medians per scenario and server, the ratios and their targets.

Printed as Markdown tables and written to ``bench/results/bench.md`` and
``bench/results/bench.json``, with the date, the git commit and the machine.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.sample import Sample
from bench.scenarios import (
    BARE,
    ENGINE,
    ENGINE_W2,
    FASTAPI,
    LABELS,
    PGBENCH,
    SCENARIOS,
    TUNED,
    TYPICAL,
)

Results = dict[str, dict[str, list[Sample]]]  # scenario -> server -> one sample a round


@dataclass(frozen=True)
class Median:
    req_s: float
    p50_ms: float
    p99_ms: float
    errors: int  # over every round
    rounds: tuple[float, ...]


@dataclass(frozen=True)
class Check:
    name: str
    target: str
    value: float | None  # None: not measured in this run
    passed: bool | None
    note: str = ""
    rounds: tuple[float, ...] = ()  # the same ratio within each round (paired by round)

    def verdict(self) -> str:
        if self.passed is None:
            return self.note or "n/a"
        return "pass" if self.passed else "FAIL"


def medians(results: Results) -> dict[str, dict[str, Median]]:
    return {
        scenario: {
            server: Median(
                req_s=statistics.median(s.req_s for s in samples),
                p50_ms=statistics.median(s.p50_ms for s in samples),
                p99_ms=statistics.median(s.p99_ms for s in samples),
                errors=sum(s.errors for s in samples),
                rounds=tuple(round(s.req_s) for s in samples),
            )
            for server, samples in by_server.items()
            if samples
        }
        for scenario, by_server in results.items()
    }


def _rate(m: dict[str, dict[str, Median]], scenario: str, server: str) -> float | None:
    found = m.get(scenario, {}).get(server)
    return found.req_s if found else None


def _at_least(
    name: str,
    value: float | None,
    target: float,
    note: str = "",
    rounds: tuple[float, ...] = (),
) -> Check:
    """Passed when the ratio of the medians reaches ``target`` and so does the median of
    the ratios within each round: on a machine whose speed drifts between rounds, a ratio
    of medians can pair one server's fast round with another's slow one."""
    if value is None:
        return Check(name, f">= {target:g}x", None, None, note or "not measured")
    paired = statistics.median(rounds) if rounds else value
    return Check(name, f">= {target:g}x", value, value >= target and paired >= target, "", rounds)


def _round_rates(m: dict[str, dict[str, Median]], scenario: str, server: str) -> tuple[float, ...]:
    found = m.get(scenario, {}).get(server)
    return tuple(float(r) for r in found.rounds) if found else ()


def checks(m: dict[str, dict[str, Median]], workers: str | None) -> list[Check]:
    """The targets of the issue, each pass, FAIL or not measured."""

    def ratio(a: tuple[str, str], b: tuple[str, str] | float | None) -> float | None:
        top = _rate(m, *a)
        bottom = _rate(m, *b) if isinstance(b, tuple) else b
        return top / bottom if top is not None and bottom else None

    def paired(a: tuple[str, str], b: tuple[str, str] | tuple[float, ...]) -> tuple[float, ...]:
        tops = _round_rates(m, *a)
        bottoms = _round_rates(m, *b) if isinstance(b[0], str) else b
        return tuple(round(t / u, 2) for t, u in zip(tops, bottoms, strict=False) if u)

    pg, s0 = _rate(m, "S1", PGBENCH), _rate(m, "S0", BARE)
    shared = 1 / (1 / pg + 1 / s0) if pg and s0 else None
    shared_rounds = tuple(
        1 / (1 / p + 1 / z)
        for p, z in zip(_round_rates(m, "S1", PGBENCH), _round_rates(m, "S0", BARE), strict=False)
        if p and z
    )
    s1 = ("S1", ENGINE)

    def check(name: str, a: tuple[str, str], b: tuple[str, str], target: float) -> Check:
        return _at_least(name, ratio(a, b), target, rounds=paired(a, b))

    out = [
        check("S1 engine / S1 starlette tuned", s1, ("S1", TUNED), 1.1),
        check("S1 engine / S1 fastapi", s1, ("S1", FASTAPI), 2.5),
        _at_least(
            "S1 engine / shared-core limit 1/(1/pgbench + 1/S0)",
            ratio(s1, shared),
            0.6,
            rounds=paired(s1, shared_rounds) if shared_rounds else (),
        ),
        check("S1a engine / S1 engine", ("S1a", ENGINE), s1, 0.95),
        check("S1j engine / S1 engine", ("S1j", ENGINE), s1, 0.95),
        check("S1c engine / S0 bare", ("S1c", ENGINE), ("S0", BARE), 0.8),
        check("S2 engine / S2 starlette tuned", ("S2", ENGINE), ("S2", TUNED), 1.0),
        _at_least(
            "every core: S1 engine 2 workers / 1 worker",
            ratio(("S1", ENGINE_W2), s1),
            1.3,
            workers or "",
            rounds=paired(("S1", ENGINE_W2), s1),
        ),
    ]
    errors = sum(x.errors for by_server in m.values() for x in by_server.values())
    out.append(Check("errors, every scenario and server", "0", errors, errors == 0))
    return out


def open_loop_check(sample: Sample | None, note: str) -> Check:
    if sample is None:
        return Check("many connections: 0 errors, p99 < 100 ms", "p99 < 100 ms", None, None, note)
    ok = sample.errors == 0 and sample.p99_ms < 100
    return Check("many connections: 0 errors, p99 < 100 ms", "p99 < 100 ms", sample.p99_ms, ok)


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _ratios_to_engine(by_server: dict[str, Median]) -> str:
    engine = by_server.get(ENGINE)
    if engine is None:
        return ""
    parts = [
        f"{engine.req_s / by_server[b].req_s:.2f}x {LABELS[b]}"
        for b in (TYPICAL, TUNED, FASTAPI)
        if b in by_server and by_server[b].req_s
    ]
    return ("engine = " + ", ".join(parts)) if parts else ""


def markdown(
    m: dict[str, dict[str, Median]],
    found: list[Check],
    open_loop: dict[str, Any] | None,
    facts: dict[str, Any],
) -> str:
    out = [
        "# make bench",
        "",
        f"{facts['date']}, commit {facts['commit']}, {facts['nproc']} cores ({facts['cpu']}), "
        f"{facts['postgres']}, Python {facts['python']}.",
        f"wrk -t1 -c{facts['connections']} -d{facts['seconds']:g}s, median of "
        f"{facts['rounds']} interleaved rounds; pgbench -c{facts['pgbench_clients']} -j1.",
        "",
    ]
    titles = {s.name: s.what for s in SCENARIOS}
    for scenario, by_server in m.items():
        out += [f"## {scenario}: {titles[scenario]}", ""]
        rows = [
            [LABELS[server], f"{x.req_s:,.0f}", f"{x.p50_ms:.2f}", f"{x.p99_ms:.2f}",
             str(x.errors), " ".join(f"{r:,}" for r in x.rounds)]
            for server, x in by_server.items()
        ]  # fmt: skip
        out += _table(["server", "req/s", "p50 ms", "p99 ms", "errors", "rounds req/s"], rows)
        ratios = _ratios_to_engine(by_server)
        out += [*(["", ratios] if ratios else []), ""]
    if open_loop is not None:
        out += [f"## many connections: {open_loop['what']}", ""]
        out += _table(
            ["rate asked", "rate done", "p50 ms", "p99 ms", "errors", "tool"],
            [[f"{open_loop['rate']:,.0f}/s", f"{open_loop['req_s']:,.0f}/s",
              f"{open_loop['p50_ms']:.2f}", f"{open_loop['p99_ms']:.2f}",
              str(open_loop["errors"]), open_loop["tool"]]],
        )  # fmt: skip
        out.append("")
    out += [
        "## targets",
        "",
        "value: the ratio of the medians; per round: the same ratio within each round (a",
        "pass needs both the value and the median of the rounds at the target).",
        "",
    ]
    out += _table(
        ["check", "target", "value", "per round", "result"],
        [
            [c.name, c.target, _value(c), " ".join(f"{r:.2f}" for r in c.rounds), c.verdict()]
            for c in found
        ],
    )
    return "\n".join(out) + "\n"


def _value(check: Check) -> str:
    if check.value is None:
        return "-"
    if check.target.startswith(">="):
        return f"{check.value:.2f}x"
    if "ms" in check.target:
        return f"{check.value:.2f} ms"
    return f"{check.value:g}"


def write(
    folder: Path,
    results: Results,
    found: list[Check],
    open_loop: dict[str, Any] | None,
    facts: dict[str, Any],
    text: str,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    body = {
        **facts,
        "scenarios": {
            scenario: {server: [s.as_dict() for s in samples] for server, samples in by.items()}
            for scenario, by in results.items()
        },
        "medians": {
            scenario: {server: vars(x) | {"rounds": list(x.rounds)} for server, x in by.items()}
            for scenario, by in medians(results).items()
        },
        "many_connections": open_loop,
        "checks": [vars(c) | {"result": c.verdict()} for c in found],
    }
    (folder / "bench.json").write_text(json.dumps(body, indent=2) + "\n")
    (folder / "bench.md").write_text(text)
