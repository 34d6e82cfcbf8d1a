"""Recovery from the rows: reads retried after a connection failure (writes never), and a
circuit breaker per pool that opens after its threshold and half-opens after its cool-down.

Faults are real: backends terminated with pg_terminate_backend, a PostgreSQL of the
test's own stopped and started again (tests/faults.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest

from engine.errors import ApiError
from engine.recovery import (
    DEFAULT_STRATEGIES,
    BreakerPolicy,
    CircuitBreaker,
    Outcome,
    RetryPolicy,
    load_strategies,
    outcome_of,
    retriable,
    strategies_from_rows,
)
from tests.engine_server import EngineClient
from tests.faults import OwnServer
from tests.helpers import add_endpoint, assert_problem, poll, serve
from tests.pg import DB

# ---------------------------------------------------------------------------
# Pure parts
# ---------------------------------------------------------------------------


def test_no_rows_give_the_built_in_defaults() -> None:
    assert strategies_from_rows([]) == DEFAULT_STRATEGIES
    assert DEFAULT_STRATEGIES.source == "built-in defaults"


def test_rows_set_retry_and_breaker_and_odd_values_are_clamped_and_reported() -> None:
    rows = [
        {"id": 1, "recovery_action": "retry", "retry_delay_ms": 50, "max_retry_attempts": 3,
         "recovery_config": '{"backoff": "constant"}'},
        {"id": 2, "recovery_action": "circuit_breaker", "circuit_breaker_threshold": 2,
         "retry_delay_ms": 1000, "recovery_config": {"cooldown_ms": 4000}},
        {"id": 3, "recovery_action": "retry", "max_retry_attempts": 9},
        {"id": 4, "recovery_action": "fallback"},
    ]  # fmt: skip
    got = strategies_from_rows(rows)
    assert got.source == "error_recovery_strategies"
    assert got.retry == RetryPolicy(attempts=3, delay_ms=50, backoff="constant", max_delay_ms=1000)
    assert got.breaker == BreakerPolicy(threshold=2, cooldown_ms=4000)
    assert any("id=3" in w and "second retry" in w for w in got.warnings)
    assert any("id=4" in w and "fallback" in w for w in got.warnings)
    # the cool-down falls back to retry_delay_ms; absurd values are bounded
    wild = strategies_from_rows(
        [
            {"id": 5, "recovery_action": "retry", "retry_delay_ms": 10**9,
             "max_retry_attempts": 500, "recovery_config": {"backoff": "sideways"}},
            {"id": 6, "recovery_action": "circuit_breaker", "circuit_breaker_threshold": 4,
             "retry_delay_ms": 3000, "recovery_config": None},
        ]
    )  # fmt: skip
    assert wild.retry.attempts == 10 and wild.retry.delay_ms == 10_000
    assert wild.retry.backoff == "exponential"
    assert wild.breaker == BreakerPolicy(threshold=4, cooldown_ms=3000)
    assert len(wild.warnings) == 3


def test_the_back_off_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(attempts=5, delay_ms=100, backoff="exponential", max_delay_ms=300)
    assert [policy.delay_s(n) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.3, 0.3]
    flat = RetryPolicy(attempts=5, delay_ms=100, backoff="constant", max_delay_ms=1000)
    assert [flat.delay_s(n) for n in (1, 2, 3)] == [0.1, 0.1, 0.1]


def _error(code: str, cause: BaseException | None = None) -> ApiError:
    error = ApiError(code)
    error.__cause__ = cause
    return error


def test_what_counts_as_a_connection_failure() -> None:
    assert outcome_of(None) is Outcome.SUCCESS
    assert outcome_of(_error("DATABASE_CONNECTION_ERROR", OSError())) is Outcome.FAILURE
    assert outcome_of(_error("COMMIT_OUTCOME_UNKNOWN", OSError())) is Outcome.FAILURE
    # a statement timeout and a busy pool say nothing about the connection
    timeout = asyncpg.QueryCanceledError("canceling statement due to statement timeout")
    assert outcome_of(_error("STATEMENT_TIMEOUT", timeout)) is Outcome.NEUTRAL
    assert outcome_of(_error("DATABASE_BUSY", TimeoutError())) is Outcome.NEUTRAL
    # the server answered: a client's error, or a function raising a connection code itself
    assert outcome_of(_error("DUPLICATE_RESOURCE")) is Outcome.SUCCESS
    raised = asyncpg.RaiseError("DATABASE_CONNECTION_ERROR")
    assert outcome_of(_error("DATABASE_CONNECTION_ERROR", raised)) is Outcome.SUCCESS
    assert not retriable(_error("DATABASE_CONNECTION_ERROR", raised))
    assert outcome_of(asyncio.CancelledError()) is Outcome.NEUTRAL
    assert retriable(_error("DATABASE_CONNECTION_ERROR", OSError()))
    assert not retriable(_error("COMMIT_OUTCOME_UNKNOWN", OSError()))
    assert not retriable(_error("INVALID_VALUE"))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_at_its_threshold_then_half_opens_for_one_trial() -> None:
    clock = Clock()
    breaker = CircuitBreaker("engine-read", lambda: BreakerPolicy(3, 2000), clock)
    for _ in range(2):
        assert breaker.enter() is False
        breaker.record(Outcome.FAILURE, False)
    breaker.enter()
    breaker.record(Outcome.SUCCESS, False)  # a success in between resets the count
    assert breaker.failures == 0
    for _ in range(3):
        breaker.enter()
        breaker.record(Outcome.FAILURE, False)
    assert breaker.state == "open" and breaker.opened == 1
    clock.now += 0.5
    with pytest.raises(ApiError) as refused:
        breaker.enter()
    assert refused.value.code == "DATABASE_CONNECTION_ERROR"
    assert refused.value.headers["Retry-After"] == "2"  # 1.5 s left, rounded up
    assert "circuit breaker is open" in (refused.value.detail or "")
    clock.now += 1.5
    assert breaker.enter() is True  # the trial
    assert breaker.state == "half_open"
    with pytest.raises(ApiError):  # only one trial at a time
        breaker.enter()
    breaker.record(Outcome.FAILURE, True)  # the trial failed: open again, a new cool-down
    assert breaker.state == "open" and breaker.opened == 2
    clock.now += 2
    trial = breaker.enter()
    breaker.record(Outcome.NEUTRAL, trial)  # a timeout decides nothing: still half-open
    assert breaker.state == "half_open"
    trial = breaker.enter()
    breaker.record(Outcome.SUCCESS, trial)
    assert breaker.state == "closed" and breaker.failures == 0
    assert breaker.refused == 2


def test_a_neutral_outcome_never_opens_the_breaker() -> None:
    breaker = CircuitBreaker("engine-write", lambda: BreakerPolicy(1, 1000), Clock())
    for _ in range(5):
        breaker.enter()
        breaker.record(Outcome.NEUTRAL, False)
    assert breaker.state == "closed"


# ---------------------------------------------------------------------------
# The rows
# ---------------------------------------------------------------------------


def _strategies(url: str) -> Any:
    async def go() -> Any:
        conn = await asyncpg.connect(url)
        try:
            return await load_strategies(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


def test_the_migration_inserts_default_rows_that_match_the_built_in_defaults(
    db: DB, db_url: str
) -> None:
    rows = db.fetch(
        "SELECT s.recovery_action FROM error_recovery_strategies s "
        "JOIN database_error_patterns p ON p.id = s.error_pattern_id "
        "WHERE p.error_type = 'connection_error' ORDER BY s.id"
    )
    assert [r["recovery_action"] for r in rows] == ["retry", "circuit_breaker"]
    loaded = _strategies(db_url)
    assert loaded.source == "error_recovery_strategies" and not loaded.warnings
    assert (loaded.retry, loaded.breaker) == (DEFAULT_STRATEGIES.retry, DEFAULT_STRATEGIES.breaker)
    db.execute(
        "UPDATE error_recovery_strategies SET circuit_breaker_threshold = 3, "
        "recovery_config = '{\"cooldown_ms\": 1500}' WHERE recovery_action = 'circuit_breaker'"
    )
    assert _strategies(db_url).breaker == BreakerPolicy(threshold=3, cooldown_ms=1500)
    db.execute("DELETE FROM error_recovery_strategies")
    assert _strategies(db_url) == DEFAULT_STRATEGIES


# ---------------------------------------------------------------------------
# Terminated backends
# ---------------------------------------------------------------------------


def terminate(db: DB, application_name: str) -> int:
    """Terminate this database's backends of ``application_name``; how many there were."""
    return db.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = $1",
        application_name,
    )


def test_a_get_is_retried_after_its_pooled_connections_were_terminated(
    db: DB, make_client: Callable[..., EngineClient]
) -> None:
    add_endpoint(db, "/rc/one", sql="SELECT 1 AS one", result={"shape": "scalar"})
    client = serve(make_client, pool_min_size=2)
    for _ in range(6):
        assert client.get("/rc/one").status_code == 200
        assert terminate(db, "engine-read") >= 1
        again = client.get("/rc/one")  # its connection is dead: tried again on a new one
        assert again.status_code == 200, again.text
    breaker = client.engine.services.db.recovery.breaker(client.engine.services.db.read)
    assert breaker.state == "closed"


def test_a_post_whose_connection_was_terminated_is_never_run_twice(
    db: DB, make_client: Callable[..., EngineClient]
) -> None:
    db.execute("CREATE TABLE rc_hits (id serial PRIMARY KEY, note text)")
    add_endpoint(
        db,
        "/rc/hits",
        "POST",
        sql="INSERT INTO rc_hits (note) VALUES ('x') RETURNING id",
        result={"shape": "object", "status": 201},
        target_table="rc_hits",
    )
    client = serve(make_client, pool_min_size=2)
    created = 0
    for _ in range(6):
        assert client.post("/rc/hits", json={}).status_code == 201
        created += 1
        assert terminate(db, "engine-write") >= 1
        answer = client.post("/rc/hits", json={})
        assert answer.status_code in (201, 503), answer.text
        if answer.status_code == 503:
            assert_problem(answer, 503, "DATABASE_CONNECTION_ERROR")
            assert answer.headers["Retry-After"]
        else:
            created += 1
        assert db.fetchval("SELECT count(*) FROM rc_hits") == created  # once or not at all


# ---------------------------------------------------------------------------
# A database that goes away
# ---------------------------------------------------------------------------


def _own_engine(
    own_server: OwnServer, make_client: Callable[..., EngineClient], **settings: Any
) -> tuple[EngineClient, DB]:
    own = DB(own_server.url)
    add_endpoint(own, "/rc/one", sql="SELECT 1 AS one", result={"shape": "scalar"})
    add_endpoint(
        own,
        "/rc/item",
        sql="SELECT $1::int AS id",
        params=[{"name": "id", "in": "query", "type": "integer", "required": True}],
        result={"shape": "scalar"},
    )
    return serve(make_client, url=own_server.url, **settings), own


@pytest.mark.slow
def test_the_breaker_opens_after_its_threshold_and_closes_once_the_database_is_back(
    own_server: OwnServer, make_client: Callable[..., EngineClient]
) -> None:
    own = DB(own_server.url)
    own.execute(
        "UPDATE error_recovery_strategies SET circuit_breaker_threshold = 3, "
        "recovery_config = '{\"cooldown_ms\": 1500}' WHERE recovery_action = 'circuit_breaker'"
    )
    own.execute("UPDATE error_recovery_strategies SET max_retry_attempts = 0 "
                "WHERE recovery_action = 'retry'")  # fmt: skip
    client, _ = _own_engine(own_server, make_client)
    db = client.engine.services.db
    assert client.get("/rc/one").status_code == 200  # the first statement reads the rows
    poll(
        lambda: db.recovery.strategies.breaker,
        lambda b: b == BreakerPolicy(threshold=3, cooldown_ms=1500),
        "the strategies read from the rows",
    )
    breaker = db.recovery.breaker(db.read)

    own_server.stop()
    for _ in range(3):
        failed = client.get("/rc/one")
        body = assert_problem(failed, 503, "DATABASE_CONNECTION_ERROR")
        assert "circuit breaker" not in body["detail"]
        assert failed.headers["Retry-After"]
    assert breaker.state == "open" and breaker.opened == 1
    refused = client.get("/rc/one")  # at once: no connection attempt while it is open
    body = assert_problem(refused, 503, "DATABASE_CONNECTION_ERROR")
    assert "circuit breaker is open" in body["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 2
    assert breaker.refused >= 1
    # a request that fails before the database is still the client's error
    assert_problem(client.get("/rc/item?id=abc"), 400, "INVALID_PARAMETER")
    assert client.get("/health/live").status_code == 200

    own_server.start()
    back = client.wait_for("GET", "/rc/one", 200, timeout_s=20)
    assert back.status_code == 200, back.text
    assert breaker.state == "closed" and breaker.failures == 0


@pytest.mark.slow
def test_a_restart_under_load_answers_200_or_503_with_retry_after_never_500(
    own_server: OwnServer, make_client: Callable[..., EngineClient]
) -> None:
    client, _ = _own_engine(own_server, make_client, pool_max_size=4)
    assert client.get("/rc/one").status_code == 200
    seen: list[tuple[int, str | None, str | None, str]] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=30) as own:
            while not stop.is_set():
                r = own.get("/rc/one")
                code = r.json().get("code") if r.status_code != 200 else None
                seen.append((r.status_code, r.headers.get("Retry-After"), code, r.text[:200]))

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        poll(lambda: len(seen), lambda n: n > 20, "answers before the restart", 10)
        own_server.stop()
        poll(lambda: [s for s in seen if s[0] == 503], bool, "503 while it is down", 20)
        own_server.start()
        mark = len(seen)

        def settled(answers: list[Any]) -> bool:  # half-open lets one trial through at first
            return len(answers) >= 8 and all(a[0] == 200 for a in answers[-8:])

        poll(lambda: seen[mark:], settled, "200 again once back", 20)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    statuses = {s[0] for s in seen}
    assert statuses <= {200, 503}, [s for s in seen if s[0] not in (200, 503)][:3]
    unavailable = [s for s in seen if s[0] == 503]
    assert all(s[1] for s in unavailable), [s for s in unavailable if not s[1]][:3]
    assert {s[2] for s in unavailable} <= {"DATABASE_CONNECTION_ERROR", "DATABASE_BUSY"}
