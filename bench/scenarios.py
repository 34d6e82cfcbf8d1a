"""The scenarios: what each sends, what it expects back, and which servers answer it.

Every request is one line ``METHOD PATH [BODY]`` for the wrk script, drawn at
random beforehand: ids over all 100,000 cameras (so no cache can answer S1),
a small fixed set of ids for the cached read S1c.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.dataset import CAMERAS, KEY_TENANT, TENANTS, tenant_of

# the servers (and pgbench) a scenario can be measured on
ENGINE = "engine"
ENGINE_W2 = "engine-w2"
TYPICAL = "typical"
TUNED = "tuned"
FASTAPI = "fastapi"
BARE = "bare"
PGBENCH = "pgbench"
LABELS = {
    ENGINE: "engine",
    ENGINE_W2: "engine, 2 workers",
    TYPICAL: "starlette, typical",
    TUNED: "starlette, tuned",
    FASTAPI: "fastapi + asyncpg",
    BARE: "bare starlette",
    PGBENCH: "pgbench -M prepared",
}
SAME_WORK = (ENGINE, TYPICAL, TUNED, FASTAPI)
REQUESTS_PER_FILE = 20_000
CACHED_IDS = tuple(1 + (i * 7919) % CAMERAS for i in range(100))


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    expect: int  # the status every answer should have
    targets: tuple[str, ...]
    request: Callable[[random.Random], str]
    credential: str | None = None  # "key" (X-API-Key) or "token" (bearer)

    def lines(self, seed: int) -> list[str]:
        rng = random.Random(seed)
        return [self.request(rng) for _ in range(REQUESTS_PER_FILE)]


def _any_camera(rng: random.Random) -> int:
    return rng.randint(1, CAMERAS)


def _camera(rng: random.Random) -> str:
    camera = _any_camera(rng)
    return f"GET /bench/cameras/{camera}?tenant_id={tenant_of(camera)}"


def _mine(rng: random.Random) -> str:
    camera = (KEY_TENANT - 1) + TENANTS * rng.randrange(CAMERAS // TENANTS)
    return f"GET /bench/mine/cameras/{camera}"


def _cached(rng: random.Random) -> str:
    camera = rng.choice(CACHED_IDS)
    return f"GET /bench/cached/cameras/{camera}?tenant_id={tenant_of(camera)}"


def _list(rng: random.Random) -> str:
    after = rng.randrange(CAMERAS - 50 * TENANTS * 2)
    return f"GET /bench/cameras?tenant_id={rng.randint(1, TENANTS)}&after={after}"


def _insert(rng: random.Random) -> str:
    camera = _any_camera(rng)
    body = {"camera_id": camera, "tenant_id": tenant_of(camera), "people_count": rng.randint(0, 40)}
    return f"POST /bench/readings {json.dumps(body, separators=(',', ':'))}"


def _function(rng: random.Random) -> str:
    camera = _any_camera(rng)
    return f"GET /bench/cameras/{camera}/status?tenant_id={tenant_of(camera)}"


def _bad_id(rng: random.Random) -> str:
    camera = _any_camera(rng)
    return f"GET /bench/cameras/cam-{camera}?tenant_id={tenant_of(camera)}"


def _other_tenant(rng: random.Random) -> str:
    camera = _any_camera(rng)  # the row exists, but belongs to another tenant
    return f"GET /bench/cameras/{camera}?tenant_id={tenant_of(camera) % TENANTS + 1}"


SCENARIOS = (
    Scenario("S0", "bare Starlette, constant JSON", 200, (BARE,), lambda rng: "GET /bench/constant"),
    Scenario("S1", "one camera by primary key, tenant as a query parameter", 200,
             (ENGINE, ENGINE_W2, TYPICAL, TUNED, FASTAPI, PGBENCH), _camera),
    Scenario("S1a", "S1, tenant from an API key", 200, (ENGINE,), _mine, "key"),
    Scenario("S1j", "S1, tenant from a bearer token", 200, (ENGINE,), _mine, "token"),
    Scenario("S1c", "S1 answered from the cache (100 ids)", 200, (ENGINE,), _cached),
    Scenario("S2", "a list of 50 cameras", 200, SAME_WORK, _list),
    Scenario("S3", "a validated INSERT", 201, SAME_WORK, _insert),
    Scenario("S4", "a plpgsql function call", 200, SAME_WORK, _function),
    Scenario("S6-400", "a malformed id: 400", 400, SAME_WORK, _bad_id),
    Scenario("S6-404", "another tenant's camera: 404", 404, SAME_WORK, _other_tenant),
)  # fmt: skip


def select(only: str | None) -> tuple[Scenario, ...]:
    """The scenarios named in ``only`` ("S1,S2"; "S6" is both S6-400 and S6-404), or all."""
    if not only:
        return SCENARIOS
    wanted = {w.strip() for w in only.split(",") if w.strip()}
    chosen = tuple(s for s in SCENARIOS if s.name in wanted or s.name.split("-")[0] in wanted)
    unknown = wanted - {s.name for s in chosen} - {s.name.split("-")[0] for s in chosen}
    if unknown:
        names = ", ".join(s.name for s in SCENARIOS)
        raise SystemExit(f"unknown scenario(s) {', '.join(sorted(unknown))}; known: {names}")
    return chosen


# measured back to back in every round: the ratios to S1 on the engine (S1a, S1j, two
# workers) pair samples seconds apart, not a scenario block apart (this machine's speed
# drifts between blocks: rounds of S1a / S1 read 0.77 to 1.08 apart, 1.01 side by side)
TOGETHER = (("S1", ENGINE), ("S1a", ENGINE), ("S1j", ENGINE), ("S1", ENGINE_W2))

Plan = list[tuple[Scenario, list[str]]]


def round_order(plan: Plan, r: int) -> list[tuple[Scenario, str]]:
    """Round ``r``'s measurements in order: scenario by scenario, each one's servers rotated
    by the round (so drift hits all alike), the ``TOGETHER`` ones that were chosen as one
    unit in the place of the first of them, rotated among themselves too."""
    chosen = {(s.name, t): s for s, targets in plan for t in targets}
    together = [key for key in TOGETHER if key in chosen]
    order: list[tuple[Scenario, str]] = []
    for scenario, targets in plan:
        units: list[list[tuple[str, str]]] = []
        for target in targets:
            key = (scenario.name, target)
            if key not in together:
                units.append([key])
            elif key == together[0]:
                units.append(together)
        for unit in _rotated(units, r):
            order += [(chosen[key], key[1]) for key in _rotated(unit, r)]
    return order


def _rotated(items: list[Any], r: int) -> list[Any]:
    shift = r % len(items) if items else 0
    return items[shift:] + items[:shift]
