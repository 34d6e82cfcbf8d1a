"""Per-endpoint, per-minute figures in api_performance_metrics; slow statements with plans;
pool and probe figures behind check_database_health() and optimize_connection_pool()."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import asyncpg

from engine.figures import Figures, SlowQueries
from engine.observe import Exchange
from tests.engine_server import EngineClient
from tests.helpers import add_endpoint, poll
from tests.pg import DB

PARAM_ID = [{"name": "id", "in": "path", "type": "integer"}]
NOT_FOUND = {"shape": "object", "not_found": "RESOURCE_NOT_FOUND"}


def exchange(endpoint_id: int | None, ms: float, status: int = 200, **fields: Any) -> Exchange:
    ex = Exchange("r", "GET", "/x", 0.0, route="/x", endpoint_id=endpoint_id, **fields)
    ex.status = status
    ex.duration_s = ms / 1000
    return ex


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------------------
# The aggregator alone
# ---------------------------------------------------------------------------


def test_a_minute_of_requests_becomes_one_row_with_true_counts_and_percentiles() -> None:
    clock = Clock(6000.0)  # minute 100
    figures = Figures("test:1", clock=clock)
    for ms in range(1, 101):  # 1..100 ms
        figures(exchange(7, ms, db_s=0.001, statements=1))
    figures(exchange(7, 5, status=304))  # a 3xx is a success
    figures(exchange(7, 5, status=404, cache="MISS"))
    figures(exchange(7, 5, status=503))
    figures(exchange(7, 5, status=200, abandoned=True))  # the client left: not a success
    figures(exchange(7, 1, cache="HIT"))
    figures(exchange(None, 1, status=404))  # no row serves this path: not counted
    [row] = figures.rows()
    (eid, path, method, stamp, instance, count, success, errors, rps) = row[:9]
    avg, low, high, p95, p99, statements, db_ms, hits, misses, ratio = row[9:]
    assert (eid, path, method, instance) == (7, "/x", "GET", "test:1")
    assert stamp.timestamp() == 6000.0
    assert (count, success, errors) == (105, 102, 3)
    assert rps == round(105 / 60, 2)
    assert (low, high) == (1, 100)
    assert 95 <= p95 <= 105 and 99 <= p99 <= 100  # a bucket's bound, at most 10 % above
    assert 45 <= avg <= 55
    assert (statements, db_ms) == (100, 100)
    assert (hits, misses, ratio) == (1, 1, 50.0)
    assert figures.rows() == []  # nothing changed since


def test_each_minute_is_its_own_row_and_a_changed_minute_is_written_again() -> None:
    clock = Clock(6000.0)
    figures = Figures("test:1", clock=clock)
    figures(exchange(1, 10))
    first = figures.rows()
    figures(exchange(1, 20))  # same minute: the row is written again with its totals
    again = figures.rows()
    assert [r[5] for r in first] == [1] and [r[5] for r in again] == [2]
    assert first[0][3] == again[0][3]
    clock.now = 6065.0  # the next minute
    figures(exchange(1, 30))
    figures(exchange(2, 30))
    rows = figures.rows()
    assert sorted((r[0], r[3].timestamp(), r[5]) for r in rows) == [
        (1, 6060.0, 1),
        (2, 6060.0, 1),
    ]


def test_slow_statements_are_offered_at_most_once_per_endpoint_and_the_queue_is_bounded() -> None:
    slow = SlowQueries("postgresql://unused", 100, queue_size=2)
    figures = Figures("test:1", slow=slow)

    def slow_exchange(endpoint_id: int, slowest_ms: float) -> Exchange:
        return exchange(
            endpoint_id,
            slowest_ms + 1,
            slowest_s=slowest_ms / 1000,
            slowest_sql="SELECT pg_sleep($1)",
            slowest_args=(0.2,),
        )

    figures(slow_exchange(1, 99))  # under the threshold
    figures(slow_exchange(1, 150))
    figures(slow_exchange(1, 300))  # the same endpoint again: rate-limited
    figures(slow_exchange(2, 150))
    figures(slow_exchange(3, 150))  # the queue is full
    assert (slow.queued, slow.limited, slow.dropped) == (2, 1, 1)


# ---------------------------------------------------------------------------
# Through the engine
# ---------------------------------------------------------------------------


def _items(db: DB) -> None:
    db.execute(
        "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);"
        "INSERT INTO items (name) VALUES ('one'), ('two')"
    )


def _flush(client: EngineClient) -> int:
    engine = client.engine
    return engine.run(engine.app.state.figures.flush(engine.services.db.write))


def _totals(db: DB, mapping_id: int) -> dict[str, Any]:
    row = db.fetchrow(
        """SELECT count(*) AS rows, count(DISTINCT metric_timestamp) AS minutes,
                  sum(request_count) AS requests, sum(success_count) AS successes,
                  sum(error_count) AS errors, sum(cache_hits) AS hits,
                  sum(cache_misses) AS misses, sum(database_query_count) AS statements,
                  bool_and(min_response_time_ms <= avg_response_time_ms
                           AND avg_response_time_ms <= max_response_time_ms
                           AND min_response_time_ms <= p95_response_time_ms
                           AND p95_response_time_ms <= p99_response_time_ms
                           AND p99_response_time_ms <= max_response_time_ms) AS ordered,
                  bool_and(date_trunc('minute', metric_timestamp) = metric_timestamp) AS aligned,
                  bool_and(engine_instance IS NOT NULL) AS named
           FROM api_performance_metrics WHERE endpoint_mapping_id = $1""",
        mapping_id,
    )
    assert row is not None
    return dict(row)


def test_a_burst_lands_in_api_performance_metrics_with_true_counts(db: DB, make_client) -> None:
    _items(db)
    cached = add_endpoint(
        db,
        "/items/{id}",
        "GET",
        "SELECT id, name FROM items WHERE id = $1",
        PARAM_ID,
        NOT_FOUND,
        target_table="items",
        cache_enabled=True,
        cache_ttl_seconds=300,
    )
    listed = add_endpoint(db, "/items", "GET", "SELECT id, name FROM items ORDER BY id")
    db.execute("INSERT INTO api_cache_config (endpoint_mapping_id) VALUES ($1)", cached)
    client = make_client(cache_stats_interval_s=3600)
    n, m, k = 5, 3, 4
    for _ in range(n):
        assert client.get("/items").status_code == 200
    assert client.get("/items/1").headers["x-cache"] == "MISS"
    for _ in range(k):
        assert client.get("/items/1").headers["x-cache"] == "HIT"
    for _ in range(m):
        assert client.get("/items/999").status_code == 404  # a miss each time: never stored
    assert client.get("/nothing/here").status_code == 404

    def flushed() -> dict[str, Any]:
        _flush(client)
        return _totals(db, cached)

    cached_totals = poll(flushed, lambda t: t["requests"] == 1 + k + m, "cached figures")
    assert cached_totals["successes"] == 1 + k and cached_totals["errors"] == m
    assert (cached_totals["hits"], cached_totals["misses"]) == (k, 1 + m)
    assert cached_totals["statements"] == 1 + m  # a hit runs nothing
    assert cached_totals["rows"] == cached_totals["minutes"]  # one row per minute
    assert cached_totals["ordered"] and cached_totals["aligned"] and cached_totals["named"]
    ratio = db.fetchval("SELECT calculate_cache_hit_ratio($1)", cached)
    assert ratio == round(Decimal(100 * k) / (k + 1 + m), 2)

    listed_totals = poll(
        lambda: _totals(db, listed), lambda t: t["requests"] == n, "listed figures"
    )
    assert (listed_totals["successes"], listed_totals["errors"]) == (n, 0)
    assert (listed_totals["hits"], listed_totals["misses"]) == (0, 0)
    assert listed_totals["statements"] == n
    # a path no row serves makes no row
    assert (
        db.fetchval(
            "SELECT count(*) FROM api_performance_metrics "
            "WHERE coalesce(endpoint_mapping_id <> ALL($1::int[]), true)",
            [cached, listed],
        )
        == 0
    )

    # more calls in the same minute update the same row
    assert client.get("/items").status_code == 200
    again = poll(
        lambda: (_flush(client), _totals(db, listed))[1],
        lambda t: t["requests"] == n + 1,
        "listed figures updated",
    )
    assert again["rows"] == again["minutes"]


def test_cache_figures_are_no_longer_written_as_requests(db: DB, make_client) -> None:
    _items(db)
    mid = add_endpoint(
        db,
        "/items/{id}",
        "GET",
        "SELECT id, name FROM items WHERE id = $1",
        PARAM_ID,
        NOT_FOUND,
        target_table="items",
        cache_enabled=True,
    )
    db.execute("INSERT INTO api_cache_config (endpoint_mapping_id) VALUES ($1)", mid)
    client = make_client(cache_stats_interval_s=1, metrics_flush_s=3600)
    for path in ("/items/1", "/items/1", "/items/999"):
        client.get(path)
    poll(
        lambda: db.fetchval(
            "SELECT cache_eviction_count FROM api_cache_config WHERE endpoint_mapping_id = $1", mid
        ),
        lambda v: v is not None,
        "cache figures in api_cache_config",
    )
    assert db.fetchval("SELECT count(*) FROM api_performance_metrics") == 0


def test_the_figures_are_flushed_at_shutdown(db: DB, make_client) -> None:
    mid = add_endpoint(db, "/one", "GET", "SELECT 1 AS one", result={"shape": "scalar"})
    client = make_client(metrics_flush_s=3600)
    for _ in range(3):
        assert client.get("/one").status_code == 200
    client.engine.stop()  # uvicorn lets the requests finish (and be observed) first
    assert _totals(db, mid)["requests"] == 3


# ---------------------------------------------------------------------------
# Slow statements
# ---------------------------------------------------------------------------


def _tracked(db: DB, mapping_id: int) -> list[dict[str, Any]]:
    rows = db.fetch(
        "SELECT * FROM query_optimization_tracking WHERE endpoint_mapping_id = $1 ORDER BY id",
        mapping_id,
    )
    out = []
    for r in rows:
        row = dict(r)
        if isinstance(row["query_plan"], str):
            row["query_plan"] = json.loads(row["query_plan"])
        out.append(row)
    return out


def _drain(client: EngineClient) -> None:
    engine = client.engine
    engine.run(engine.app.state.slow_queries.drain())


def test_a_slow_statement_is_recorded_with_its_plan_once_a_minute(db: DB, make_client) -> None:
    _items(db)
    sql = "SELECT id, name FROM items, pg_sleep(0.2) WHERE id = $1"
    mid = add_endpoint(db, "/slow/{id}", "GET", sql, PARAM_ID, NOT_FOUND)
    client = make_client(slow_query_ms=100)
    slow = client.engine.app.state.slow_queries
    assert client.get("/slow/1").status_code == 200
    [row] = poll(lambda: _tracked(db, mid), lambda rows: len(rows) == 1, "slow statement")
    assert row["original_query"] == sql
    assert row["original_execution_time_ms"] >= 200
    plan = row["query_plan"]
    assert isinstance(plan, list) and "Node Type" in plan[0]["Plan"]
    assert len(row["query_hash"]) == 64
    assert client.get("/slow/2").status_code == 200  # within the minute: not captured again
    poll(lambda: slow.limited, lambda n: n == 1, "second slow run rate-limited")
    _drain(client)
    assert len(_tracked(db, mid)) == 1
    alerts = db.fetchval(
        "SELECT count(*) FROM system_alerts WHERE alert_type = 'slow_query_detected' "
        "AND alert_data ->> 'endpoint_mapping_id' = $1",
        str(mid),
    )
    assert alerts == 1


def test_a_slow_write_is_planned_never_run_again(db: DB, make_client) -> None:
    _items(db)
    mid = add_endpoint(
        db,
        "/items",
        "POST",
        "INSERT INTO items (name) SELECT $1 FROM pg_sleep(0.2) RETURNING id, name",
        [{"name": "name", "in": "body", "type": "string", "required": True}],
        {"shape": "object", "status": 201},
    )
    client = make_client(slow_query_ms=100)
    assert client.post("/items", json={"name": "three"}).status_code == 201
    [row] = poll(lambda: _tracked(db, mid), lambda rows: len(rows) == 1, "slow write")
    assert row["query_plan"][0]["Plan"]["Node Type"] == "ModifyTable"
    assert db.fetchval("SELECT count(*) FROM items WHERE name = 'three'") == 1


def test_a_statement_explain_refuses_is_recorded_without_a_plan(db: DB, make_client) -> None:
    db.execute(
        "CREATE PROCEDURE slow_call(seconds float8) LANGUAGE sql AS $$ SELECT pg_sleep(seconds) $$"
    )
    mid = add_endpoint(
        db,
        "/calls",
        "POST",
        "CALL slow_call($1)",
        [{"name": "seconds", "in": "body", "type": "number"}],
        {"shape": "none"},
        database_operation="CALL",
    )
    client = make_client(slow_query_ms=100)
    assert client.post("/calls", json={"seconds": 0.2}).status_code in (200, 204)
    [row] = poll(lambda: _tracked(db, mid), lambda rows: len(rows) == 1, "slow CALL")
    assert row["query_plan"] is None
    assert client.engine.app.state.slow_queries.unexplained == 1


# ---------------------------------------------------------------------------
# Pool and probe figures
# ---------------------------------------------------------------------------


def _health(db: DB) -> dict[str, dict[str, Any]]:
    return {r["pool_name"]: dict(r) for r in db.fetch("SELECT * FROM check_database_health()")}


def _optimize(db: DB, name: str) -> dict[str, Any]:
    value = db.fetchval("SELECT optimize_connection_pool($1)", name)
    return json.loads(value) if isinstance(value, str) else value


def test_pool_and_probe_figures_feed_the_health_functions(db: DB, make_client) -> None:
    client = make_client(pool_max_size=4)
    engine = client.engine
    pool_stats = engine.app.state.pool_stats
    figures = engine.run(pool_stats.run_once())
    by_name = {f"engine-{f.name}": f for f in figures}
    assert set(by_name) == {"engine-write", "engine-read"}
    health = _health(db)
    for name, f in by_name.items():
        assert health[name]["active_connections"] == f.in_use
        assert health[name]["total_connections"] == f.size
    probe = db.fetchrow(
        "SELECT * FROM database_connection_health WHERE connection_id = $1",
        pool_stats.connection_id,
    )
    assert probe is not None
    assert probe["connection_status"] == "active" and probe["pool_name"] == "engine-probe"
    assert probe["query_count"] >= 1 and probe["error_count"] == 0
    assert probe["database_name"] == db.fetchval("SELECT current_database()")
    quiet = _optimize(db, "engine-write")
    assert quiet["status"] == "ok" and quiet["max_connections"] == 4

    # every write connection held: the figures still get written (on the probe's connection)
    held: list[asyncpg.Connection] = []

    async def hold() -> None:
        write = engine.services.db.write
        for _ in range(4):
            held.append(await write.acquire(timeout=5))

    async def release() -> None:
        write = engine.services.db.write
        await asyncio.gather(*(write.release(c) for c in held))

    engine.run(hold())
    try:
        engine.run(pool_stats.run_once())
        busy = _health(db)["engine-write"]
        assert busy["health_status"] == "critical"
        assert busy["active_connections"] == 4
        assert busy["connection_utilization_percent"] == Decimal("100.00")
        advice = _optimize(db, "engine-write")
        assert advice["optimization_reason"] == "High utilization detected"
        assert advice["recommended_max_connections"] == 6
    finally:
        engine.run(release())
    engine.run(pool_stats.run_once())
    assert _optimize(db, "engine-write")["optimization_reason"] == "Low utilization detected"
    assert db.fetchval("SELECT count(DISTINCT engine_instance) FROM database_connection_pool") == 1


def test_a_deleted_endpoints_figures_are_dropped_not_written_twice(db: DB, make_client) -> None:
    _items(db)
    gone = add_endpoint(db, "/gone", "GET", "SELECT id FROM items ORDER BY id")
    client = make_client(metrics_flush_s=3600)
    assert client.get("/gone").status_code == 200
    db.execute("DELETE FROM api_endpoint_mappings WHERE id = $1", gone)
    _flush(client)  # its id is gone: no row without it (NULLs never conflict: duplicates)
    assert (
        db.fetchval("SELECT count(*) FROM api_performance_metrics WHERE endpoint_path = '/gone'")
        == 0
    )
