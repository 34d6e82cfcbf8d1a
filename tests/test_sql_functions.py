"""The plpgsql functions, triggers and constraints of ``sql/``, run on a real server.

Each test gets its own database cloned from the migrated and seeded template, so
tests insert what they need under names no seed uses (``/t/...``, ``tp_...``).
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from tests.pg import DB


def add_mapping(db: DB, path: str, method: str = "GET", **columns: Any) -> int:
    """Insert an endpoint mapping and return its id."""
    values: dict[str, Any] = {
        "endpoint_path": path,
        "http_method": method,
        "service_name": "test_service",
        "database_operation": "SELECT",
        "query_template": "SELECT 1",
        **columns,
    }
    names = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    return db.fetchval(
        f"INSERT INTO api_endpoint_mappings ({names}) VALUES ({params}) RETURNING id",
        *values.values(),
    )


def add_pattern(db: DB, regex: str | None, *, threshold: int, label: str = "test pattern") -> int:
    return db.fetchval(
        """INSERT INTO database_error_patterns
               (error_pattern, error_type, pattern_regex, alert_threshold, alert_severity,
                suggested_action)
           VALUES ($1, 'test', $2, $3, 'error', 'look at the widgets')
           RETURNING id""",
        label,
        regex,
        threshold,
    )


def open_alerts(db: DB, alert_type: str, key: str, value: Any) -> list[asyncpg.Record]:
    return db.fetch(
        """SELECT * FROM system_alerts
           WHERE alert_type = $1 AND NOT is_resolved AND alert_data ->> $2 = $3
           ORDER BY id""",
        alert_type,
        key,
        str(value),
    )


def as_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


# ---------------------------------------------------------------------------
# log_api_error
# ---------------------------------------------------------------------------


def test_log_api_error_writes_a_row_and_returns_its_id(db: DB) -> None:
    log_id = db.fetchval(
        "SELECT log_api_error($1, $2, $3, $4, $5)",
        "req-1",
        "/t/widgets",
        "post",
        "VALIDATION_ERROR",
        "name is required",
    )
    row = db.fetchrow("SELECT * FROM api_error_logs WHERE id = $1", log_id)
    assert row is not None
    assert row["request_id"] == "req-1"
    assert row["endpoint_path"] == "/t/widgets"
    assert row["http_method"] == "POST"
    assert row["error_code"] == "VALIDATION_ERROR"
    assert row["error_message"] == "name is required"
    # Category and status default to the code's own.
    assert row["error_category"] == "validation"
    assert row["response_status_code"] == 400
    assert row["error_timestamp"] is not None


def test_log_api_error_with_unknown_code_keeps_it_in_the_message(db: DB) -> None:
    log_id = db.fetchval(
        "SELECT log_api_error('req-2', '/t/widgets', 'GET', 'NO_SUCH_CODE_ANYWHERE', 'it broke')"
    )
    row = db.fetchrow("SELECT error_code, error_message FROM api_error_logs WHERE id = $1", log_id)
    assert row is not None
    assert row["error_code"] is None
    assert row["error_message"] == "[NO_SUCH_CODE_ANYWHERE] it broke"


def test_log_api_error_stores_the_added_parameters(db: DB) -> None:
    user_id = db.fetchval("INSERT INTO users (username) VALUES ('t_alice') RETURNING id")
    log_id = db.fetchval(
        """SELECT log_api_error(
               'req-3', '/t/widgets/{id}', 'DELETE', 'RESOURCE_IN_USE', 'still referenced',
               'Traceback ...', '{"x": 1}', $1, 'DELETE',
               'update or delete on table "widgets" violates foreign key constraint',
               p_error_category => 'custom',
               p_request_headers => '{"accept": "application/json"}',
               p_request_params => '{"id": 7}',
               p_response_status_code => 418,
               p_response_time_ms => 12,
               p_principal => 'alice@example.com')""",
        user_id,
    )
    row = db.fetchrow("SELECT * FROM api_error_logs WHERE id = $1", log_id)
    assert row is not None
    assert row["error_code"] == "RESOURCE_IN_USE"
    assert row["error_stack_trace"] == "Traceback ..."
    assert row["request_body"] == '{"x": 1}'
    assert row["user_id"] == user_id
    assert row["database_operation"] == "DELETE"
    assert "violates foreign key constraint" in row["database_error"]
    assert row["error_category"] == "custom"
    assert as_json(row["request_headers"]) == {"accept": "application/json"}
    assert as_json(row["request_params"]) == {"id": 7}
    assert row["response_status_code"] == 418
    assert row["response_time_ms"] == 12
    assert row["principal"] == "alice@example.com"


def test_log_api_error_never_fails_on_unknown_user_or_long_values(db: DB) -> None:
    long_path = "/t/" + "x" * 500
    log_id = db.fetchval(
        "SELECT log_api_error($1, $2, 'GET', 'ROUTE_NOT_FOUND', 'no route', p_user_id => 987654)",
        "r" * 300,
        long_path,
    )
    row = db.fetchrow("SELECT * FROM api_error_logs WHERE id = $1", log_id)
    assert row is not None
    assert row["user_id"] is None
    assert row["endpoint_path"] == long_path[:200]
    assert row["request_id"] == "r" * 100


def test_log_api_error_does_not_check_patterns(db: DB) -> None:
    # The pattern check runs from the engine's periodic job (scan_error_patterns,
    # sql/017), not per logged row: a broken check cannot touch logging at all.
    db.execute(
        """CREATE OR REPLACE FUNCTION check_error_patterns(p_error_message TEXT)
           RETURNS VOID LANGUAGE plpgsql AS $$
           BEGIN RAISE EXCEPTION 'pattern check exploded'; END $$"""
    )

    async def go() -> tuple[int, list[str]]:
        conn = await asyncpg.connect(db.url)
        warnings: list[str] = []
        conn.add_log_listener(lambda _conn, msg: warnings.append(f"{msg.severity}: {msg.message}"))
        try:
            log_id = await conn.fetchval(
                "SELECT log_api_error('req-4', '/t/w', 'GET', 'INTERNAL_ERROR', 'boom',"
                " p_database_error => 'XX000 boom')"
            )
            # Notices arrive with the result; give the listener a turn.
            await asyncio.sleep(0)
            return log_id, warnings
        finally:
            await conn.close()

    log_id, warnings = asyncio.run(go())
    assert db.fetchval("SELECT count(*) FROM api_error_logs WHERE id = $1", log_id) == 1
    assert warnings == []
    body = db.fetchval("SELECT pg_get_functiondef('log_api_error'::regproc)")
    assert "check_error_patterns" not in body


# ---------------------------------------------------------------------------
# check_error_patterns
# ---------------------------------------------------------------------------


def log_error(db: DB, message: str, database_error: str | None = None) -> int:
    """Log an error whose database error is ``database_error`` (else ``message``), then run
    the pattern scan the engine's job runs every minute: patterns match database errors only."""
    log_id = db.fetchval(
        """SELECT log_api_error('req', '/t/widgets', 'POST', 'INTERNAL_ERROR', $1,
                                p_database_error => $2)""",
        message,
        database_error or message,
    )
    db.execute("SELECT scan_error_patterns()")
    return log_id


def test_crossing_the_threshold_raises_exactly_one_alert(db: DB) -> None:
    # The label differs from the regex: matching and counting both use the regex.
    pattern_id = add_pattern(db, "zq-widget failure #[0-9]+", threshold=3, label="Widget failures")

    for n in (1, 2):
        log_error(db, f"zq-widget failure #{n}")
    assert open_alerts(db, "database_error_pattern", "pattern_id", pattern_id) == []

    log_error(db, "zq-widget failure #3")
    assert len(open_alerts(db, "database_error_pattern", "pattern_id", pattern_id)) == 1

    for n in (4, 5):
        log_error(db, f"zq-widget failure #{n}")
    alerts = open_alerts(db, "database_error_pattern", "pattern_id", pattern_id)
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["alert_severity"] == "error"
    assert alert["alert_message"] == "Database error pattern detected: Widget failures"
    data = as_json(alert["alert_data"])
    assert data["error_count"] == 3
    assert data["suggested_action"] == "look at the widgets"


def test_a_new_alert_follows_once_the_open_one_is_resolved(db: DB) -> None:
    pattern_id = add_pattern(db, "zq-resolved-case", threshold=2)
    for _ in range(3):
        log_error(db, "zq-resolved-case happened")
    assert len(open_alerts(db, "database_error_pattern", "pattern_id", pattern_id)) == 1

    db.execute(
        "UPDATE system_alerts SET is_resolved = TRUE, resolved_at = now() "
        "WHERE alert_data ->> 'pattern_id' = $1",
        str(pattern_id),
    )
    log_error(db, "zq-resolved-case happened")
    alerts = open_alerts(db, "database_error_pattern", "pattern_id", pattern_id)
    assert len(alerts) == 1
    assert as_json(alerts[0]["alert_data"])["error_count"] == 4


def test_the_database_error_is_matched_and_counted(db: DB) -> None:
    pattern_id = add_pattern(db, "zq-db-level problem", threshold=2)
    for _ in range(2):
        log_error(db, "Internal error", database_error="ERROR: zq-db-level problem in widgets")
    assert len(open_alerts(db, "database_error_pattern", "pattern_id", pattern_id)) == 1


def test_old_errors_do_not_count(db: DB) -> None:
    pattern_id = add_pattern(db, "zq-old-news", threshold=2)
    log_id = log_error(db, "zq-old-news")
    db.execute(
        "UPDATE api_error_logs SET error_timestamp = now() - interval '2 hours' WHERE id = $1",
        log_id,
    )
    log_error(db, "zq-old-news")
    assert open_alerts(db, "database_error_pattern", "pattern_id", pattern_id) == []


def test_invalid_regex_rows_are_skipped(db: DB) -> None:
    bad_id = add_pattern(db, "zq-(unclosed", threshold=1)
    good_id = add_pattern(db, "zq-valid", threshold=1)

    db.execute("SELECT check_error_patterns('zq-valid and zq-(unclosed')")
    log_id = log_error(db, "zq-valid again")

    assert db.fetchval("SELECT count(*) FROM api_error_logs WHERE id = $1", log_id) == 1
    assert open_alerts(db, "database_error_pattern", "pattern_id", bad_id) == []
    assert len(open_alerts(db, "database_error_pattern", "pattern_id", good_id)) == 1


def test_error_pattern_is_the_regex_when_pattern_regex_is_null(db: DB) -> None:
    pattern_id = add_pattern(db, None, threshold=1, label="zq-fallback-[a-z]+")
    log_error(db, "zq-fallback-abc")
    assert len(open_alerts(db, "database_error_pattern", "pattern_id", pattern_id)) == 1


def test_guide_patterns_match_real_postgres_messages(db: DB) -> None:
    # Provoke real errors and check their text against the shipped patterns.
    async def messages() -> list[str]:
        conn = await asyncpg.connect(db.url)
        out: list[str] = []
        try:
            for sql in (
                "INSERT INTO users (username) VALUES ('t_dup'), ('t_dup')",
                "INSERT INTO api_validation_schemas (endpoint_mapping_id, schema_name,"
                " validation_schema) VALUES (-1, 'x', '{}')",
                "SELECT * FROM zq_no_such_table",
                "SET statement_timeout = 10; SELECT pg_sleep(1)",
            ):
                try:
                    await conn.execute(sql)
                except asyncpg.PostgresError as exc:
                    out.append(str(exc))
                await conn.execute("RESET statement_timeout")
        finally:
            await conn.close()
        return out

    found = asyncio.run(messages())
    assert len(found) == 4
    types = [
        db.fetchval(
            """SELECT error_type FROM database_error_patterns
               WHERE $1 ~ COALESCE(pattern_regex, error_pattern) AND error_type <> 'test'
               ORDER BY id LIMIT 1""",
            message,
        )
        for message in found
    ]
    assert types == ["constraint_violation", "constraint_violation", "schema_error", "timeout"]


# ---------------------------------------------------------------------------
# monitor_query_performance
# ---------------------------------------------------------------------------


def test_monitor_query_performance_records_slow_queries_only(db: DB) -> None:
    mapping_id = add_mapping(db, "/t/slow", query_template="SELECT pg_sleep(2)")

    def tracked() -> list[asyncpg.Record]:
        return db.fetch(
            "SELECT * FROM query_optimization_tracking WHERE query_hash = 'qh-slow' ORDER BY id"
        )

    db.execute("SELECT monitor_query_performance($1, 'qh-slow', 500)", mapping_id)
    db.execute("SELECT monitor_query_performance($1, 'qh-slow', 1000)", mapping_id)  # not above
    assert tracked() == []
    assert open_alerts(db, "slow_query_detected", "query_hash", "qh-slow") == []

    db.execute(
        "SELECT monitor_query_performance($1, 'qh-slow', 1500, '{\"Plan\": {}}')", mapping_id
    )
    rows = tracked()
    assert [r["original_execution_time_ms"] for r in rows] == [1500]
    assert rows[0]["endpoint_mapping_id"] == mapping_id
    assert rows[0]["original_query"] == "SELECT pg_sleep(2)"
    assert as_json(rows[0]["query_plan"]) == {"Plan": {}}
    alerts = open_alerts(db, "slow_query_detected", "query_hash", "qh-slow")
    assert len(alerts) == 1
    data = as_json(alerts[0]["alert_data"])
    assert data["endpoint_mapping_id"] == mapping_id
    assert data["execution_time_ms"] == 1500
    assert data["threshold_ms"] == 1000
    assert data["previous_slow_count"] == 0

    # Every slow run is recorded; the open alert is not repeated.
    db.execute("SELECT monitor_query_performance($1, 'qh-slow', 2500)", mapping_id)
    assert [r["original_execution_time_ms"] for r in tracked()] == [1500, 2500]
    assert len(open_alerts(db, "slow_query_detected", "query_hash", "qh-slow")) == 1

    # Once resolved, the next slow run alerts again, with the history's average.
    db.execute(
        "UPDATE system_alerts SET is_resolved = TRUE WHERE alert_type = 'slow_query_detected'"
    )
    db.execute("SELECT monitor_query_performance($1, 'qh-slow', 3000)", mapping_id)
    alerts = open_alerts(db, "slow_query_detected", "query_hash", "qh-slow")
    assert len(alerts) == 1
    data = as_json(alerts[0]["alert_data"])
    assert data["previous_slow_count"] == 2
    assert Decimal(str(data["previous_avg_execution_time_ms"])) == Decimal("2000")


def test_monitor_query_performance_threshold_is_a_parameter(db: DB) -> None:
    mapping_id = add_mapping(db, "/t/fast")
    db.execute("SELECT monitor_query_performance($1, 'qh-fast', 150, NULL, 100)", mapping_id)
    db.execute("SELECT monitor_query_performance($1, 'qh-fast', 90, NULL, 100)", mapping_id)
    times = db.fetch(
        "SELECT original_execution_time_ms FROM query_optimization_tracking "
        "WHERE query_hash = 'qh-fast'"
    )
    assert [r["original_execution_time_ms"] for r in times] == [150]
    alerts = open_alerts(db, "slow_query_detected", "query_hash", "qh-fast")
    assert as_json(alerts[0]["alert_data"])["threshold_ms"] == 100


def test_monitor_query_performance_of_a_deleted_mapping_does_not_fail(db: DB) -> None:
    db.execute("SELECT monitor_query_performance(-42, 'qh-gone', 5000)")
    row = db.fetchrow("SELECT * FROM query_optimization_tracking WHERE query_hash = 'qh-gone'")
    assert row is not None
    assert row["endpoint_mapping_id"] is None


# ---------------------------------------------------------------------------
# calculate_cache_hit_ratio
# ---------------------------------------------------------------------------


def add_metrics(
    db: DB, mapping_id: int, hits: int, misses: int, age: timedelta = timedelta(minutes=1)
) -> None:
    db.execute(
        """INSERT INTO api_performance_metrics
               (endpoint_path, http_method, endpoint_mapping_id, cache_hits, cache_misses,
                metric_timestamp)
           VALUES ('/t/cached', 'GET', $1, $2, $3, now() - $4::interval)""",
        mapping_id,
        hits,
        misses,
        age,
    )


def test_calculate_cache_hit_ratio(db: DB) -> None:
    mapping_id = add_mapping(db, "/t/cached")
    other_id = add_mapping(db, "/t/other")
    db.execute(
        "INSERT INTO api_cache_config (endpoint_mapping_id) VALUES ($1), ($2)", mapping_id, other_id
    )
    add_metrics(db, mapping_id, 30, 10)
    add_metrics(db, mapping_id, 45, 15)
    add_metrics(db, mapping_id, 0, 100, age=timedelta(hours=2))  # outside the default window
    add_metrics(db, other_id, 0, 50)  # another mapping

    ratio = db.fetchval("SELECT calculate_cache_hit_ratio($1)", mapping_id)
    assert ratio == Decimal("75.00")
    stored = db.fetchval(
        "SELECT cache_hit_ratio FROM api_cache_config WHERE endpoint_mapping_id = $1", mapping_id
    )
    assert stored == Decimal("75.00")
    # The other mapping's config is untouched.
    assert (
        db.fetchval(
            "SELECT cache_hit_ratio FROM api_cache_config WHERE endpoint_mapping_id = $1", other_id
        )
        is None
    )

    assert db.fetchval("SELECT calculate_cache_hit_ratio($1, 180)", mapping_id) == Decimal("37.50")
    assert db.fetchval("SELECT calculate_cache_hit_ratio($1)", other_id) == Decimal("0.00")


def test_calculate_cache_hit_ratio_without_data_is_zero(db: DB) -> None:
    mapping_id = add_mapping(db, "/t/unused")
    assert db.fetchval("SELECT calculate_cache_hit_ratio($1)", mapping_id) == Decimal("0")


# ---------------------------------------------------------------------------
# check_database_health and optimize_connection_pool
# ---------------------------------------------------------------------------


def add_pool_row(
    db: DB, name: str, total: int | None, active: int, age: timedelta = timedelta(minutes=1)
) -> None:
    db.execute(
        """INSERT INTO database_connection_pool
               (pool_name, total_connections, active_connections, metric_timestamp)
           VALUES ($1, $2, $3, now() - $4::interval)""",
        name,
        total,
        active,
        age,
    )


def test_check_database_health(db: DB) -> None:
    db.execute("DELETE FROM database_connection_pool")
    add_pool_row(db, "tp_warning", 10, 7)
    add_pool_row(db, "tp_critical", 10, 9)
    add_pool_row(db, "tp_zero", 0, 0)
    add_pool_row(db, "tp_healthy", 10, 3)
    add_pool_row(db, "tp_stale", 10, 10, age=timedelta(minutes=10))
    add_pool_row(db, "tp_changed", 4, 4, age=timedelta(minutes=3))  # superseded by the next row
    add_pool_row(db, "tp_changed", 4, 1, age=timedelta(seconds=30))

    rows = [tuple(r) for r in db.fetch("SELECT * FROM check_database_health()")]
    assert rows == [
        ("tp_critical", "critical", 9, 10, Decimal("90.00")),
        ("tp_warning", "warning", 7, 10, Decimal("70.00")),
        ("tp_healthy", "healthy", 3, 10, Decimal("30.00")),
        ("tp_changed", "healthy", 1, 4, Decimal("25.00")),
        ("tp_zero", "unknown", 0, 0, None),
    ]


def test_check_database_health_without_rows(db: DB) -> None:
    db.execute("DELETE FROM database_connection_pool")
    assert db.fetch("SELECT * FROM check_database_health()") == []


def optimize(db: DB, name: str) -> dict[str, Any]:
    return as_json(db.fetchval("SELECT optimize_connection_pool($1)", name))


def test_optimize_connection_pool_recommendations(db: DB) -> None:
    add_pool_row(db, "tp_high", 10, 5, age=timedelta(hours=1))  # older row: ignored
    add_pool_row(db, "tp_high", 10, 9)
    add_pool_row(db, "tp_low", 10, 2)
    add_pool_row(db, "tp_mid", 20, 10)
    add_pool_row(db, "tp_odd", 7, 7)

    high = optimize(db, "tp_high")
    assert high["status"] == "ok"
    assert Decimal(str(high["current_utilization_percent"])) == Decimal("90")
    assert (high["recommended_max_connections"], high["recommended_min_connections"]) == (15, 3)
    assert high["optimization_reason"] == "High utilization detected"

    low = optimize(db, "tp_low")
    assert (low["recommended_max_connections"], low["recommended_min_connections"]) == (8, 2)
    assert low["optimization_reason"] == "Low utilization detected"

    mid = optimize(db, "tp_mid")
    assert (mid["recommended_max_connections"], mid["recommended_min_connections"]) == (20, 5)
    assert mid["optimization_reason"] == "Optimal utilization"

    # 7 x 1.5 = 10.5 and 7 x 0.3 = 2.1: whole connections, rounded up for the maximum.
    odd = optimize(db, "tp_odd")
    assert (odd["recommended_max_connections"], odd["recommended_min_connections"]) == (11, 2)
    assert all(
        isinstance(odd[k], int)
        for k in ("recommended_max_connections", "recommended_min_connections")
    )


def test_optimize_connection_pool_zero_connections_and_no_metrics(db: DB) -> None:
    add_pool_row(db, "tp_zero", 0, 0)
    zero = optimize(db, "tp_zero")
    assert zero["status"] == "no_connections"
    assert zero["current_utilization_percent"] is None
    assert zero["recommended_max_connections"] is None
    assert "zero connections" in zero["optimization_reason"]

    none = optimize(db, "tp_never_reported")
    assert none["status"] == "no_metrics"
    assert none["pool_name"] == "tp_never_reported"
    assert none["current_utilization_percent"] is None
    assert "no metrics" in none["optimization_reason"].lower()


# ---------------------------------------------------------------------------
# Triggers: catalogue notifications, mapping versions, api_mapping_id()
# ---------------------------------------------------------------------------


async def _first_notifications(url: str, *statements: str, count: int = 1) -> list[str]:
    """Payloads of the first ``count`` notifications on 'engine_catalog' after
    running ``statements`` (each in its own transaction) on another connection."""
    listener = await asyncpg.connect(url)
    writer = await asyncpg.connect(url)
    received: asyncio.Queue[str] = asyncio.Queue()
    try:
        await listener.add_listener(
            "engine_catalog", lambda _conn, _pid, _channel, payload: received.put_nowait(payload)
        )
        for sql in statements:
            await writer.execute(sql)
        return [await asyncio.wait_for(received.get(), timeout=10) for _ in range(count)]
    finally:
        await writer.close()
        await listener.close()


def test_catalog_change_notifies_listeners(db: DB) -> None:
    payloads = asyncio.run(
        _first_notifications(
            db.url,
            """INSERT INTO api_endpoint_mappings
                   (endpoint_path, http_method, service_name, database_operation, query_template)
               VALUES ('/t/notified', 'GET', 'test', 'SELECT', 'SELECT 1')""",
        )
    )
    assert payloads == ["api_endpoint_mappings"]


def test_cache_statistics_do_not_notify_but_cache_settings_do(db: DB) -> None:
    mapping_id = add_mapping(db, "/t/stats")
    db.execute("INSERT INTO api_cache_config (endpoint_mapping_id) VALUES ($1)", mapping_id)
    payloads = asyncio.run(
        _first_notifications(
            db.url,
            f"SELECT calculate_cache_hit_ratio({mapping_id})",
            "UPDATE api_error_codes SET suggested_action = 'retry' WHERE error_code = 'INTERNAL_ERROR'",
            f"UPDATE api_cache_config SET cache_ttl_seconds = 5 WHERE endpoint_mapping_id = {mapping_id}",
            count=2,
        )
    )
    assert payloads == ["api_error_codes", "api_cache_config"]


def test_mapping_update_bumps_version_and_updated_at(db: DB) -> None:
    mapping_id = add_mapping(db, "/t/versioned")
    before = db.fetchrow(
        "SELECT version, updated_at FROM api_endpoint_mappings WHERE id = $1", mapping_id
    )
    assert before is not None and before["version"] == 1

    db.execute("UPDATE api_endpoint_mappings SET description = 'v2' WHERE id = $1", mapping_id)
    after = db.fetchrow(
        "SELECT version, updated_at FROM api_endpoint_mappings WHERE id = $1", mapping_id
    )
    assert after is not None
    assert after["version"] == 2
    assert after["updated_at"] > before["updated_at"]

    # Nothing but version/updated_at in the SET, or the same values: no new version.
    db.execute("UPDATE api_endpoint_mappings SET version = 40 WHERE id = $1", mapping_id)
    db.execute("UPDATE api_endpoint_mappings SET description = 'v2' WHERE id = $1", mapping_id)
    assert db.fetchval("SELECT version FROM api_endpoint_mappings WHERE id = $1", mapping_id) == 2

    db.execute("UPDATE api_endpoint_mappings SET is_active = FALSE WHERE id = $1", mapping_id)
    assert db.fetchval("SELECT version FROM api_endpoint_mappings WHERE id = $1", mapping_id) == 3


def test_other_tables_touch_updated_at(db: DB) -> None:
    before = db.fetchval(
        "SELECT updated_at FROM api_error_codes WHERE error_code = 'INTERNAL_ERROR'"
    )
    db.execute(
        "UPDATE api_error_codes SET suggested_action = 'x' WHERE error_code = 'INTERNAL_ERROR'"
    )
    after = db.fetchval(
        "SELECT updated_at FROM api_error_codes WHERE error_code = 'INTERNAL_ERROR'"
    )
    assert after > before


def test_api_mapping_id(db: DB) -> None:
    mapping_id = add_mapping(db, "/t/things", "POST")
    add_mapping(db, "/t/things", "GET")
    assert db.fetchval("SELECT api_mapping_id('/t/things', 'post')") == mapping_id
    assert db.fetchval("SELECT api_mapping_id('/t/things', 'POST')") == mapping_id
    with pytest.raises(asyncpg.NoDataFoundError, match="/t/nothing"):
        db.fetchval("SELECT api_mapping_id('/t/nothing', 'GET')")


# ---------------------------------------------------------------------------
# Constraints that fix the guide
# ---------------------------------------------------------------------------


def test_error_codes_longer_than_twenty_characters_fit(db: DB) -> None:
    code = "A_VERY_LONG_DOMAIN_SPECIFIC_ERROR_CODE"
    db.execute(
        """INSERT INTO api_error_codes (error_code, error_message, error_category, http_status_code)
           VALUES ($1, 'long', 'business', 409)""",
        code,
    )
    log_id = db.fetchval("SELECT log_api_error('r', '/t', 'GET', $1, 'm')", code)
    assert db.fetchval("SELECT error_code FROM api_error_logs WHERE id = $1", log_id) == code


def test_one_default_template_per_response_type(db: DB) -> None:
    db.execute("DELETE FROM api_response_templates WHERE endpoint_mapping_id IS NULL")
    insert = (
        "INSERT INTO api_response_templates (endpoint_mapping_id, response_type, response_schema) "
        "VALUES ($1, 'error', '{}')"
    )
    db.execute(insert, None)
    with pytest.raises(asyncpg.UniqueViolationError):
        db.execute(insert, None)
    mapping_id = add_mapping(db, "/t/templated")
    db.execute(insert, mapping_id)
    with pytest.raises(asyncpg.UniqueViolationError):
        db.execute(insert, mapping_id)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("http_method", "FETCH"),
        ("database_operation", "MERGE"),
        ("statement_timeout_ms", 0),
        ("query_parameters", '{"not": "an array"}'),
    ],
)
def test_mapping_rejects_invalid_values(db: DB, column: str, value: Any) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        add_mapping(db, "/t/invalid", **{column: value})


def test_deleting_a_mapping_cascades_to_its_configuration_only(db: DB) -> None:
    mapping_id = add_mapping(db, "/t/doomed", "POST")
    db.execute(
        """INSERT INTO api_validation_schemas (endpoint_mapping_id, schema_name, validation_schema)
           VALUES ($1, 'doomed', '{"type": "object"}')""",
        mapping_id,
    )
    db.execute("INSERT INTO api_cache_config (endpoint_mapping_id) VALUES ($1)", mapping_id)
    add_metrics(db, mapping_id, 1, 1)

    db.execute("DELETE FROM api_endpoint_mappings WHERE id = $1", mapping_id)
    assert (
        db.fetchval(
            "SELECT count(*) FROM api_validation_schemas WHERE endpoint_mapping_id = $1", mapping_id
        )
        == 0
    )
    assert (
        db.fetchval(
            "SELECT count(*) FROM api_cache_config WHERE endpoint_mapping_id = $1", mapping_id
        )
        == 0
    )
    # Metrics are history: they stay, detached.
    assert (
        db.fetchval(
            "SELECT count(*) FROM api_performance_metrics WHERE endpoint_path = '/t/cached' "
            "AND endpoint_mapping_id IS NULL"
        )
        == 1
    )
