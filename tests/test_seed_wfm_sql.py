"""The wfm seed domain at the SQL level: its tables, functions, sample data and generator.

Each test gets a fresh database with every migration and seed applied (the
``db`` fixture). The computations are checked against figures worked out by
hand (or, for Erlang C, computed independently here in Python and compared
with published values). Scenarios that need exact numbers are built in
tenant 3, which the sample data leaves empty; tenants 1 and 2 hold the sample
data. HTTP-level behaviour (the endpoint rows) is tested elsewhere.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from tests.pg import DB

SEED_DIR = Path(__file__).resolve().parent.parent / "seeds" / "wfm"

DOMAIN_TABLES = (
    "wfm_metric_definitions",
    "optimization_rules",
    "data_quality_checks",
    "services",
    "service_groups",
    "agents",
    "contact_statistics",
    "agent_activity",
    "agent_status_history",
    "realtime_queues",
    "realtime_agents",
    "operational_metrics",
    "threshold_alerts",
    "predictive_alerts",
    "realtime_alerts",
    "schedule_templates",
    "work_schedules",
    "break_schedules",
    "schedule_optimization_runs",
    "forecasts",
    "forecast_data_points",
    "staffing_plans",
    "integration_connections",
    "sync_jobs",
    "integration_sync_logs",
    "integration_logs",
    "integration_endpoint_mappings",
    "data_quality_results",
)

# Every code the domain's SQL raises; the endpoint seed must define each one.
ERROR_CODES = {
    "WFM_INVALID_PARAMETER",
    "WFM_INVALID_DATE_RANGE",
    "WFM_SERVICE_NOT_FOUND",
    "WFM_FORECAST_NOT_FOUND",
    "WFM_FORECAST_EMPTY",
    "WFM_FORECAST_PUBLISHED",
    "WFM_NO_HISTORY",
    "WFM_STAFFING_UNREACHABLE",
    "WFM_UNKNOWN_METRIC",
    "WFM_INVALID_THRESHOLDS",
    "WFM_UNSUPPORTED_SL_THRESHOLD",
    "WFM_UNKNOWN_TABLE",
    "WFM_CONNECTION_NOT_FOUND",
    "WFM_CONNECTION_INACTIVE",
    "WFM_SYNC_IN_PROGRESS",
    "WFM_SYNC_JOB_NOT_FOUND",
    "WFM_IMPORT_INVALID",
    "WFM_IMPORT_TOO_LARGE",
}

# A Monday, 08:00 UTC, long past: the fixed window of the hand-computed scenarios.
T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)

T = TypeVar("T")


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def with_conn(db: DB, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run ``work`` on one connection whose json/jsonb values decode to Python."""

    async def go() -> T:
        conn = await asyncpg.connect(db.url)
        try:
            for name in ("json", "jsonb"):
                await conn.set_type_codec(
                    name, schema="pg_catalog", encoder=json.dumps, decoder=json.loads
                )
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


def rows(db: DB, sql: str, *args: Any) -> list[dict[str, Any]]:
    async def work(conn: asyncpg.Connection) -> list[dict[str, Any]]:
        return [dict(r) for r in await conn.fetch(sql, *args)]

    return with_conn(db, work)


def value(db: DB, sql: str, *args: Any) -> Any:
    """The first column of the first row; json and jsonb stay text (decode with json.loads)."""
    return db.fetchval(sql, *args)


def read_only(db: DB, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run ``work`` inside BEGIN READ ONLY, as the engine runs a GET."""

    async def go(conn: asyncpg.Connection) -> T:
        async with conn.transaction(readonly=True):
            return await work(conn)

    return with_conn(db, go)


@contextmanager
def raises_code(code: str) -> Iterator[pytest.ExceptionInfo]:
    """Expect the RAISE EXCEPTION of a stored error code (SQLSTATE P0001, message = code)."""
    with pytest.raises(asyncpg.exceptions.RaiseError) as info:
        yield info
    assert info.value.sqlstate == "P0001"
    assert info.value.message == code


def d(x: str) -> Decimal:
    return Decimal(x)


def erlang_c(traffic: float, agents: int) -> float:
    """Erlang C by the iterative Erlang B recursion (independent of the SQL)."""
    if traffic == 0:
        return 0.0
    if agents <= traffic:
        return 1.0
    b = 1.0
    for k in range(1, agents + 1):
        b = traffic * b / (k + traffic * b)
    return agents * b / (agents - traffic * (1 - b))


def erlang_c_exact(traffic: Fraction, agents: int) -> float:
    """Erlang C from its closed form, in exact arithmetic."""
    top = traffic**agents / math.factorial(agents) * Fraction(agents) / (agents - traffic)
    bottom = sum(traffic**k / math.factorial(k) for k in range(agents)) + top
    return float(top / bottom)


def service_level(traffic: float, agents: int, aht: float, target: float) -> float:
    if traffic == 0:
        return 1.0
    if agents <= traffic:
        return 0.0
    return 1 - erlang_c(traffic, agents) * math.exp(-(agents - traffic) * target / aht)


def pct(part: int, whole: int) -> float:
    """100 * part / whole rounded half up to 2 decimals, as PostgreSQL's round(numeric)."""
    exact = Decimal(100 * part) / Decimal(whole)
    return float(exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def fingerprints(db: DB) -> dict[str, tuple[int, str]]:
    """Row count and a digest of every row of every domain table."""
    out = {}
    for table in DOMAIN_TABLES:
        out[table] = tuple(
            db.fetchrow(
                f"SELECT count(*), md5(COALESCE(string_agg(t::text, '|' ORDER BY t::text), '')) "
                f"FROM {table} t"
            )
        )
    out["functions"] = tuple(
        db.fetchrow(
            "SELECT count(*), md5(string_agg(p.oid::regprocedure::text || pg_get_functiondef(p.oid),"
            " '|' ORDER BY p.oid::regprocedure::text)) FROM pg_proc p WHERE p.proname LIKE 'wfm\\_%'"
        )
    )
    return out


def add_tenant3_services(db: DB) -> None:
    """Tenant 3: services 301 (voice, 80/20), 302 (chat, 80/60), 303 (idle), 304 (inactive)."""
    db.execute(
        """
        INSERT INTO services (service_id, tenant_id, service_code, service_name, channel,
                              sl_target_pct, sl_threshold_seconds, target_aht_seconds, is_active)
        VALUES (301, 3, 'V20', 'Voice 80/20', 'voice', 80, 20, 200, TRUE),
               (302, 3, 'CHAT60', 'Chat 80/60', 'chat', 80, 60, 300, TRUE),
               (303, 3, 'IDLE', 'Idle line', 'voice', 80, 20, 200, TRUE),
               (304, 3, 'OLD', 'Closed line', 'voice', 80, 20, 200, FALSE);
        INSERT INTO agents (agent_id, tenant_id, employee_number, full_name, email, primary_service_id)
        SELECT 300 + i, 3, 'X-' || i, 'Agent ' || i, 'agent' || i || '@t3.example', 301
        FROM generate_series(1, 6) AS i;
        """
    )


def add_window_statistics(db: DB) -> None:
    """Contact statistics of 301 and 302 in [T0, T0 + 1 h), agent activity, and a forecast.

    301: offered 30/40/40/40 (150), answered 140, abandoned 10, within 20 s 120,
         handle 200 s per answered call, wait 25 s per answered call.
    302: one interval: offered 40, answered 40, within its own 60 s 38 (20 s: 20,
         30 s: 30), handle 300 s and wait 10 s per call.
    Forecast of 301: 40 calls in each of the four intervals (160).
    """
    db.execute(
        """
        INSERT INTO contact_statistics (tenant_id, service_id, interval_start, offered, answered,
            abandoned, answered_within_threshold, answered_within_10s, answered_within_20s,
            answered_within_30s, answered_within_60s, talk_seconds, wait_seconds, agents_staffed)
        VALUES
            (3, 301, '2026-03-02 08:00+00', 30, 27, 3, 24, 20, 24, 26, 27, 27 * 200, 27 * 25, 4),
            (3, 301, '2026-03-02 08:15+00', 40, 38, 2, 31, 25, 31, 35, 38, 38 * 200, 38 * 25, 5),
            (3, 301, '2026-03-02 08:30+00', 40, 37, 3, 32, 28, 32, 35, 37, 37 * 200, 37 * 25, 5),
            (3, 301, '2026-03-02 08:45+00', 40, 38, 2, 33, 30, 33, 36, 38, 38 * 200, 38 * 25, 5),
            (3, 302, '2026-03-02 08:00+00', 40, 40, 0, 38, 12, 20, 30, 38, 40 * 300, 40 * 10, 3);
        INSERT INTO agent_activity (tenant_id, agent_id, activity_date, service_id, login_seconds,
            ready_seconds, talk_seconds, hold_seconds, wrap_seconds, not_ready_seconds,
            calls_handled, scheduled_seconds, adherent_seconds)
        VALUES (3, 301, '2026-03-02', 301, 28800, 3600, 10000, 500, 3500, 1800, 70, 28800, 25920);
        INSERT INTO forecasts (forecast_id, tenant_id, service_id, forecast_name, period_start,
            period_end, interval_minutes, method, sl_target_pct, sl_threshold_seconds)
        VALUES (301, 3, 301, 'window', '2026-03-02', '2026-03-02', 15, 'manual', 80, 20);
        INSERT INTO forecast_data_points (forecast_id, tenant_id, interval_start, forecast_volume,
            forecast_aht_seconds)
        SELECT 301, 3, '2026-03-02 08:00+00'::timestamptz + n * interval '15 minutes', 40, 200
        FROM generate_series(0, 3) AS n;
        """
    )


# ---------------------------------------------------------------------------
# the files
# ---------------------------------------------------------------------------


PART1_FILES = ("001_tables.sql", "002_functions.sql", "003_sample_data.sql", "generate.sql")


def test_the_seed_files() -> None:
    names = {p.name for p in SEED_DIR.glob("*.sql")}
    assert set(PART1_FILES) <= names  # the endpoint rows follow in later numbered files
    generate = (SEED_DIR / "generate.sql").read_text(encoding="utf-8")
    assert "current_setting('engine.seed_scale')" in generate
    assert "wfm_generate(" in generate
    assert "ANALYZE contact_statistics" in generate


def test_every_raised_code_is_listed_for_the_endpoint_seed() -> None:
    raised = set()
    for name in PART1_FILES:
        text = (SEED_DIR / name).read_text(encoding="utf-8")
        raised |= set(re.findall(r"RAISE EXCEPTION '([A-Z_]+)'", text))
    assert raised == ERROR_CODES
    assert all(len(code) <= 64 for code in raised)


def test_every_domain_table_exists_with_a_comment_and_a_primary_key(db: DB) -> None:
    info = {r["table_name"]: r for r in rows(db, "SELECT * FROM wfm_schema_info()")}
    assert set(info) == set(DOMAIN_TABLES)
    for name, row in info.items():
        assert row["description"], name
        assert row["primary_key"], name
        assert row["total_bytes"] > 0
        assert row["column_count"] == len(row["columns"])
    assert info["contact_statistics"]["primary_key"] == ["service_id", "interval_start"]
    columns = {c["name"]: c for c in info["contact_statistics"]["columns"]}
    assert columns["aht_seconds"]["generated"] is True
    assert columns["offered"]["nullable"] is False
    assert columns["answered_within_20s"]["nullable"] is True


# ---------------------------------------------------------------------------
# Erlang C
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("calls", "interval", "aht", "agents"),
    [
        (100, 1800, 180, 11),
        (100, 1800, 180, 13),
        (360, 1800, 240, 55),
        (360, 1800, 240, 49),
        (7, 900, 300, 3),
        (250, 900, 420, 130),
    ],
)
def test_erlang_c_matches_an_independent_computation(
    db: DB, calls: int, interval: int, aht: int, agents: int
) -> None:
    traffic = calls * aht / interval
    got = db.fetchrow(
        "SELECT wfm_erlang_c($1, $2, $3, $4) AS pw, wfm_service_level($1, $2, $3, $4, 20) AS sl,"
        " wfm_average_speed_of_answer($1, $2, $3, $4) AS asa",
        calls,
        interval,
        aht,
        agents,
    )
    expected = erlang_c(traffic, agents)
    assert got["pw"] == pytest.approx(expected, rel=1e-12)
    assert got["pw"] == pytest.approx(
        erlang_c_exact(Fraction(calls * aht, interval), agents), rel=1e-9
    )
    assert got["sl"] == pytest.approx(service_level(traffic, agents, aht, 20), rel=1e-12)
    assert got["asa"] == pytest.approx(expected * aht / (agents - traffic), rel=1e-12)


def test_erlang_c_published_values(db: DB) -> None:
    # 100 calls in 30 minutes at 180 s: 10 Erlangs.
    assert round(value(db, "SELECT wfm_erlang_c(100, 1800, 180, 11)"), 4) == 0.6821
    assert round(value(db, "SELECT wfm_erlang_c(100, 1800, 180, 13)"), 4) == 0.2853
    assert round(value(db, "SELECT wfm_service_level(100, 1800, 180, 13, 20)"), 4) == 0.7956
    assert round(value(db, "SELECT wfm_service_level(100, 1800, 180, 14, 20)"), 4) == 0.8884
    assert value(db, "SELECT wfm_required_agents(100, 1800, 180, 0.8, 20)") == 14
    # The classic 360 calls per half hour at 240 s: 48 Erlangs; with 55 agents
    # P(wait) 23.87 %, 86.7 % answered within 20 s, ASA 8.2 s, occupancy 87.3 %.
    pw = value(db, "SELECT wfm_erlang_c(360, 1800, 240, 55)")
    assert round(pw, 4) == 0.2387
    assert round(value(db, "SELECT wfm_service_level(360, 1800, 240, 55, 20)"), 3) == 0.867
    assert round(value(db, "SELECT wfm_average_speed_of_answer(360, 1800, 240, 55)"), 1) == 8.2
    staffing = db.fetchrow("SELECT * FROM wfm_erlang_staffing(360, 1800, 240, 0.8, 20)")
    assert staffing["traffic_erlangs"] == 48
    assert staffing["required_agents"] == 54  # 53 agents: 75.2 %, 54: 81.7 %
    assert round(staffing["service_level"], 4) == 0.8172
    assert round(staffing["occupancy"], 4) == round(48 / 54, 4)


@pytest.mark.parametrize(
    ("calls", "interval", "aht", "target", "seconds"),
    [
        (100, 1800, 180, 0.8, 20),
        (360, 1800, 240, 0.9, 15),
        (3, 900, 600, 0.8, 60),
        (40, 900, 270, 0.95, 10),
    ],
)
def test_required_agents_is_the_smallest_count_meeting_the_target(
    db: DB, calls: int, interval: int, aht: int, target: float, seconds: int
) -> None:
    n = value(
        db, "SELECT wfm_required_agents($1, $2, $3, $4, $5)", calls, interval, aht, target, seconds
    )
    traffic = calls * aht / interval
    assert service_level(traffic, n, aht, seconds) >= target
    assert service_level(traffic, n - 1, aht, seconds) < target


def test_required_agents_respects_the_occupancy_cap(db: DB) -> None:
    # 48 Erlangs need 54 agents for 80/20, but 85 % occupancy needs ceil(48 / 0.85) = 57.
    assert value(db, "SELECT wfm_required_agents(360, 1800, 240, 0.8, 20, 0.85)") == 57
    assert value(db, "SELECT wfm_required_agents(360, 1800, 240, 0.8, 20, 0.95)") == 54


def test_erlang_edge_cases(db: DB) -> None:
    zero = db.fetchrow("SELECT * FROM wfm_erlang_staffing(0, 900, 180, 0.8, 20)")
    assert (zero["required_agents"], zero["probability_wait"], zero["service_level"]) == (0, 0, 1)
    assert value(db, "SELECT wfm_erlang_c(0, 900, 180, 0)") == 0
    # no more agents than Erlangs: every call waits, nobody within the target, ASA unbounded
    assert value(db, "SELECT wfm_erlang_c(100, 1800, 180, 10)") == 1
    assert value(db, "SELECT wfm_service_level(100, 1800, 180, 10, 20)") == 0
    assert value(db, "SELECT wfm_average_speed_of_answer(100, 1800, 180, 9)") is None
    assert value(db, "SELECT wfm_erlang_c(NULL, 1800, 180, 10)") is None
    table = rows(db, "SELECT * FROM wfm_staffing_table(100, 1800, 180, 20)")
    assert [r["agents"] for r in table] == list(range(11, 22))
    for r in table:
        assert r["probability_wait"] == pytest.approx(erlang_c(10, r["agents"]), rel=1e-12)
        assert r["occupancy"] == pytest.approx(10 / r["agents"])


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT wfm_erlang_c(-1, 900, 180, 3)",
        "SELECT wfm_erlang_c(10, 0, 180, 3)",
        "SELECT wfm_erlang_c(10, 900, 0, 3)",
        "SELECT wfm_erlang_c(10, 900, 180, -1)",
        "SELECT wfm_required_agents(10, 900, 180, 1, 20)",
        "SELECT wfm_required_agents(10, 900, 180, 80, 20)",
        "SELECT wfm_required_agents(10, 900, 180, 0.8, -5)",
        "SELECT wfm_required_agents(10, 900, 180, 0.8, 20, 0)",
        "SELECT * FROM wfm_staffing_table(10, 900, 180, 20, 5, 2000)",
    ],
)
def test_erlang_refuses_bad_inputs(db: DB, sql: str) -> None:
    with raises_code("WFM_INVALID_PARAMETER"):
        db.fetch(sql)


# ---------------------------------------------------------------------------
# forecasts
# ---------------------------------------------------------------------------


def _forecast_t3(db: DB, *, published: bool = False) -> None:
    """Forecast 302 of service 301: three 30-minute intervals.

    100 calls at 180 s (10 Erlangs), 360 calls at 240 s (48 Erlangs), no call.
    """
    add_tenant3_services(db)
    db.execute(
        f"""
        INSERT INTO forecasts (forecast_id, tenant_id, service_id, forecast_name, period_start,
            period_end, interval_minutes, method, sl_target_pct, sl_threshold_seconds,
            shrinkage_pct, status)
        VALUES (302, 3, 301, 'hand', '2026-03-09', '2026-03-09', 30, 'manual', 80, 20, 30,
                '{"published" if published else "draft"}');
        INSERT INTO forecast_data_points (forecast_id, tenant_id, interval_start, forecast_volume,
            forecast_aht_seconds)
        VALUES (302, 3, '2026-03-09 09:00+00', 100, 180),
               (302, 3, '2026-03-09 09:30+00', 360, 240),
               (302, 3, '2026-03-09 10:00+00', 0, 200);
        """
    )


def test_calculate_forecast_derives_the_staffing_of_every_interval(db: DB) -> None:
    _forecast_t3(db)
    summary = json.loads(value(db, "SELECT wfm_calculate_forecast(3, 302)"))
    points = rows(
        db, "SELECT * FROM forecast_data_points WHERE forecast_id = 302 ORDER BY interval_start"
    )
    # 10 Erlangs: 14 agents (88.84 % within 20 s, P(wait) 17.41 %, ASA 7.84 s, occupancy 71.43 %)
    assert points[0]["traffic_erlangs"] == d("10.000")
    assert points[0]["required_agents"] == 14
    assert points[0]["scheduled_agents_needed"] == 20  # 14 / (1 - 0.30)
    assert points[0]["expected_service_level_pct"] == d("88.84")
    assert points[0]["probability_wait_pct"] == d("17.41")
    assert points[0]["expected_asa_seconds"] == d("7.84")
    assert points[0]["occupancy_pct"] == d("71.43")
    # 48 Erlangs: 54 agents (81.72 %), 78 to schedule (54 / 0.7 = 77.1)
    assert (points[1]["required_agents"], points[1]["scheduled_agents_needed"]) == (54, 78)
    assert points[1]["expected_service_level_pct"] == d("81.72")
    # no calls: nobody
    assert (points[2]["required_agents"], points[2]["scheduled_agents_needed"]) == (0, 0)
    assert points[2]["occupancy_pct"] is None

    plans = rows(db, "SELECT * FROM staffing_plans WHERE service_id = 301 ORDER BY interval_start")
    assert [(p["required_agents"], p["planned_headcount"]) for p in plans] == [
        (14, 20),
        (54, 78),
        (0, 0),
    ]
    assert all(p["interval_end"] - p["interval_start"] == 30 * MIN for p in plans)
    assert {(p["source"], p["forecast_id"], p["tenant_id"]) for p in plans} == {
        ("forecast", 302, 3)
    }

    assert summary["intervals"] == 3
    assert summary["total_volume"] == 460
    assert summary["workload_hours"] == 29  # (10 + 48 + 0) Erlangs x 0.5 h
    assert summary["peak_required_agents"] == 54
    assert dt.datetime.fromisoformat(summary["peak_interval_start"]) == dt.datetime(
        2026, 3, 9, 9, 30, tzinfo=dt.UTC
    )
    assert summary["required_agent_hours"] == 34  # (14 + 54) x 0.5 h
    assert summary["scheduled_agent_hours"] == 49  # (20 + 78) x 0.5 h
    assert summary["expected_service_level"] == round((100 * 88.84 + 360 * 81.72) / 460 / 100, 4)
    assert summary["min_expected_service_level"] == 0.8172
    assert (summary["staffing_plan_rows"], summary["manual_rows_kept"]) == (3, 0)
    forecast = db.fetchrow("SELECT * FROM forecasts WHERE forecast_id = 302")
    assert forecast["status"] == "calculated"
    assert forecast["calculated_at"] is not None


def test_recalculating_a_forecast_keeps_manual_plans_and_stores_its_targets(db: DB) -> None:
    _forecast_t3(db)
    db.execute(
        "INSERT INTO staffing_plans (tenant_id, service_id, interval_start, interval_end,"
        " required_agents, planned_headcount, source)"
        " VALUES (3, 301, '2026-03-09 09:30+00', '2026-03-09 10:00+00', 60, 80, 'manual')"
    )
    summary = json.loads(value(db, "SELECT wfm_calculate_forecast(3, 302, 0.9, 15, 0.85, 0.25)"))
    assert (summary["staffing_plan_rows"], summary["manual_rows_kept"]) == (2, 1)
    assert (summary["target_service_level"], summary["target_seconds"]) == (0.9, 15)
    first = db.fetchrow(
        "SELECT * FROM forecast_data_points WHERE forecast_id = 302 ORDER BY interval_start LIMIT 1"
    )
    assert first["required_agents"] == value(
        db, "SELECT wfm_required_agents(100, 1800, 180, 0.9, 15, 0.85)"
    )
    plans = rows(db, "SELECT * FROM staffing_plans WHERE service_id = 301 ORDER BY interval_start")
    assert [p["source"] for p in plans] == ["forecast", "manual", "forecast"]
    assert plans[1]["required_agents"] == 60
    forecast = db.fetchrow("SELECT * FROM forecasts WHERE forecast_id = 302")
    assert (forecast["sl_target_pct"], forecast["sl_threshold_seconds"]) == (d("90"), 15)
    assert (forecast["max_occupancy_pct"], forecast["shrinkage_pct"]) == (d("85"), d("25"))


def test_calculate_forecast_errors(db: DB) -> None:
    _forecast_t3(db)
    with raises_code("WFM_FORECAST_NOT_FOUND"):
        db.fetch("SELECT wfm_calculate_forecast(1, 302)")  # another tenant's
    with raises_code("WFM_FORECAST_NOT_FOUND"):
        db.fetch("SELECT wfm_calculate_forecast(3, 999)")
    with raises_code("WFM_INVALID_PARAMETER"):
        db.fetch("SELECT wfm_calculate_forecast(3, 302, 80)")
    db.execute("DELETE FROM forecast_data_points WHERE forecast_id = 302")
    with raises_code("WFM_FORECAST_EMPTY"):
        db.fetch("SELECT wfm_calculate_forecast(3, 302)")
    db.execute("UPDATE forecasts SET status = 'published' WHERE forecast_id = 302")
    with raises_code("WFM_FORECAST_PUBLISHED"):
        db.fetch("SELECT wfm_calculate_forecast(3, 302)")


def test_create_forecast_averages_the_same_weekday_and_time(db: DB) -> None:
    add_tenant3_services(db)
    # Mondays 2 and 9 March at 10:00: 10 and 20 calls (answered 10 and 18 at 100 s and
    # 200 s of handling each); Tuesday 10 March at 10:00: 30 calls; 10:15 on Monday 9: 4.
    db.execute(
        """
        INSERT INTO contact_statistics (tenant_id, service_id, interval_start, offered, answered,
            talk_seconds)
        VALUES (3, 301, '2026-03-02 10:00+00', 10, 10, 1000),
               (3, 301, '2026-03-09 10:00+00', 20, 18, 3600),
               (3, 301, '2026-03-09 10:15+00', 4, 4, 800),
               (3, 301, '2026-03-10 10:00+00', 30, 30, 6000);
        """
    )
    fid = value(db, "SELECT wfm_create_forecast(3, 301, '2026-03-16', '2026-03-17', 2)")
    points = {
        r["interval_start"]: r
        for r in rows(db, "SELECT * FROM forecast_data_points WHERE forecast_id = $1", fid)
    }
    assert len(points) == 2 * 96
    monday = dt.datetime(2026, 3, 16, 10, 0, tzinfo=dt.UTC)
    # Monday 10:00: (10 + 20) / 2 weeks; AHT (1000 + 3600) / (10 + 18)
    assert points[monday]["forecast_volume"] == d("15.00")
    assert points[monday]["forecast_aht_seconds"] == round(Decimal(4600) / 28, 2)
    # Monday 10:15: 4 calls in one of the two Mondays
    assert points[monday + 15 * MIN]["forecast_volume"] == d("2.00")
    # Tuesday 10:00: one Tuesday in the history
    assert points[monday + dt.timedelta(days=1)]["forecast_volume"] == d("30.00")
    assert points[monday + 3 * HOUR]["forecast_volume"] == 0
    forecast = db.fetchrow("SELECT * FROM forecasts WHERE forecast_id = $1", fid)
    assert (forecast["status"], forecast["method"], forecast["history_weeks"]) == (
        "draft",
        "seasonal_average",
        2,
    )
    # A weekday without history: the mean at that time over the days with statistics;
    # the two weeks before 18 March hold 9 and 10 March -> 10:00 is (20 + 30) / 2.
    wed = value(db, "SELECT wfm_create_forecast(3, 301, '2026-03-18', '2026-03-18', 2)")
    assert value(
        db,
        "SELECT forecast_volume FROM forecast_data_points WHERE forecast_id = $1"
        " AND interval_start = '2026-03-18 10:00+00'",
        wed,
    ) == d("25.00")
    # Creating it again refreshes the same forecast
    assert value(db, "SELECT wfm_create_forecast(3, 301, '2026-03-16', '2026-03-17', 2)") == fid
    summary = json.loads(value(db, "SELECT wfm_calculate_forecast(3, $1)", fid))
    assert summary["intervals"] == 192


def test_create_forecast_errors(db: DB) -> None:
    add_tenant3_services(db)
    with raises_code("WFM_SERVICE_NOT_FOUND"):
        db.fetch("SELECT wfm_create_forecast(3, 1, '2026-03-16', '2026-03-16')")
    with raises_code("WFM_INVALID_DATE_RANGE"):
        db.fetch("SELECT wfm_create_forecast(3, 301, '2026-03-16', '2026-03-15')")
    with raises_code("WFM_INVALID_PARAMETER"):
        db.fetch("SELECT wfm_create_forecast(3, 301, '2026-03-16', '2026-03-16', 4, 20)")
    with raises_code("WFM_NO_HISTORY"):
        db.fetch("SELECT wfm_create_forecast(3, 301, '2026-03-16', '2026-03-16')")


def test_forecast_accuracy(db: DB) -> None:
    add_tenant3_services(db)
    add_window_statistics(db)
    acc = json.loads(value(db, "SELECT wfm_forecast_accuracy(3, 301)"))
    # actual 30/40/40/40 against 40 each: |error| 10 of 150 calls
    assert acc["intervals_compared"] == 4
    assert (acc["forecast_volume"], acc["actual_volume"]) == (160, 150)
    assert acc["wape_pct"] == 6.67
    assert acc["bias_pct"] == 6.67
    assert acc["accuracy_pct"] == 93.33
    with raises_code("WFM_FORECAST_NOT_FOUND"):
        db.fetch("SELECT wfm_forecast_accuracy(1, 301)")


# ---------------------------------------------------------------------------
# contact statistics and SLA compliance
# ---------------------------------------------------------------------------


def test_contact_statistics_summary(db: DB) -> None:
    add_tenant3_services(db)
    add_window_statistics(db)
    hour = rows(
        db,
        "SELECT * FROM wfm_contact_statistics_summary(3, $1, $2, 'hour')",
        T0,
        T0 + HOUR,
    )
    assert [(r["service_id"], r["period_start"]) for r in hour] == [(301, T0), (302, T0)]
    s = hour[0]
    assert (s["intervals"], s["offered"], s["answered"], s["abandoned"]) == (4, 150, 140, 10)
    assert s["answered_within_threshold"] == 120
    assert s["service_level_pct"] == d("80.00")
    assert s["abandon_rate_pct"] == d("6.67")
    assert s["aht_seconds"] == d("200.00")
    assert s["asa_seconds"] == d("25.00")
    assert s["avg_agents_staffed"] == d("4.75")
    quarter = rows(
        db,
        "SELECT * FROM wfm_contact_statistics_summary(3, $1, $2, '15min', 301)",
        T0,
        T0 + HOUR,
    )
    assert [r["offered"] for r in quarter] == [30, 40, 40, 40]
    for granularity, start in [
        ("day", T0.replace(hour=0)),
        ("week", T0.replace(hour=0)),  # 2 March 2026 is a Monday
        ("month", T0.replace(day=1, hour=0)),
    ]:
        got = rows(
            db,
            "SELECT * FROM wfm_contact_statistics_summary(3, $1, $2, $3, 301)",
            T0 - dt.timedelta(days=40),
            T0 + dt.timedelta(days=1),
            granularity,
        )
        assert [(r["period_start"], r["offered"]) for r in got] == [(start, 150)]
    assert rows(db, "SELECT * FROM wfm_contact_statistics_summary(1, $1, $2)", T0, T0 + HOUR) == []
    with raises_code("WFM_INVALID_PARAMETER"):
        db.fetch("SELECT * FROM wfm_contact_statistics_summary(3, $1, $2, 'year')", T0, T0 + HOUR)
    with raises_code("WFM_INVALID_DATE_RANGE"):
        db.fetch("SELECT * FROM wfm_contact_statistics_summary(3, $1, $2)", T0 + HOUR, T0)
    with raises_code("WFM_INVALID_DATE_RANGE"):  # hourly answers cover at most 92 days
        db.fetch(
            "SELECT * FROM wfm_contact_statistics_summary(3, $1, $2, 'hour')",
            T0,
            T0 + dt.timedelta(days=93),
        )
    assert rows(
        db,
        "SELECT * FROM wfm_contact_statistics_summary(3, $1, $2, 'day')",
        T0,
        T0 + dt.timedelta(days=400),
    )


def test_agent_performance(db: DB) -> None:
    add_tenant3_services(db)
    add_window_statistics(db)
    [row] = rows(db, "SELECT * FROM wfm_agent_performance(3, '2026-03-01', '2026-03-02')")
    assert (row["agent_id"], row["days"], row["calls_handled"]) == (301, 1, 70)
    assert row["login_hours"] == d("8.00")
    assert row["aht_seconds"] == d("200.00")  # 14000 s / 70
    assert row["occupancy_pct"] == d("79.55")  # 14000 / (3600 + 14000)
    assert row["adherence_pct"] == d("90.00")
    assert row["not_ready_pct"] == d("6.25")
    with raises_code("WFM_INVALID_DATE_RANGE"):
        db.fetch("SELECT * FROM wfm_agent_performance(3, '2026-03-02', '2026-03-01')")


def test_sla_compliance_in_the_80_20_format(db: DB) -> None:
    add_tenant3_services(db)
    add_window_statistics(db)
    got = {
        r["service_id"]: r
        for r in rows(db, "SELECT * FROM wfm_sla_compliance(3, $1, $2)", T0, T0 + HOUR)
    }
    assert set(got) == {301, 302, 303}  # the active services
    v = got[301]  # its own threshold is 20 s: 120 of 150 offered = exactly 80 %
    assert (v["offered"], v["answered"], v["abandoned"], v["answered_within_threshold"]) == (
        150,
        140,
        10,
        120,
    )
    assert (v["threshold_seconds"], v["target"]) == (20, d("0.8"))
    assert v["service_level"] == d("0.8000")
    assert v["compliant"] is True  # the target met exactly is compliant
    assert v["answer_rate"] == d("0.9333")
    assert v["abandon_rate"] == d("0.0667")
    # intervals: 24/30 = 0.8 yes, 31/40 no, 32/40 yes, 33/40 yes
    assert (v["intervals"], v["compliant_intervals"]) == (4, 3)
    c = got[302]  # own threshold 60 s, measured at 20 s with the ACD's increment
    assert (c["threshold_seconds"], c["answered_within_threshold"]) == (20, 20)
    assert c["service_level"] == d("0.5000")
    assert c["compliant"] is False
    idle = got[303]
    assert (idle["offered"], idle["service_level"], idle["compliant"], idle["intervals"]) == (
        0,
        None,
        None,
        0,
    )
    # each service's own threshold and target
    own = {
        r["service_id"]: r
        for r in rows(db, "SELECT * FROM wfm_sla_compliance(3, $1, $2, NULL, NULL)", T0, T0 + HOUR)
    }
    assert (own[302]["threshold_seconds"], own[302]["answered_within_threshold"]) == (60, 38)
    assert own[302]["service_level"] == d("0.9500")
    assert own[302]["compliant"] is True
    # 30 s for everyone, 0.85 target
    at30 = {
        r["service_id"]: r
        for r in rows(db, "SELECT * FROM wfm_sla_compliance(3, $1, $2, 30, 0.85)", T0, T0 + HOUR)
    }
    assert at30[301]["answered_within_threshold"] == 26 + 35 + 35 + 36
    assert at30[301]["service_level"] == d("0.8800")
    assert at30[301]["compliant"] is True
    assert at30[302]["service_level"] == d("0.7500")
    # an increment the ACD did not report makes the figure unknown, not zero
    db.execute("UPDATE contact_statistics SET answered_within_20s = NULL WHERE service_id = 302")
    [chat] = rows(
        db, "SELECT * FROM wfm_sla_compliance(3, $1, $2) WHERE service_id = 302", T0, T0 + HOUR
    )
    assert (chat["answered_within_threshold"], chat["service_level"], chat["compliant"]) == (
        None,
        None,
        None,
    )


def test_sla_compliance_errors(db: DB) -> None:
    add_tenant3_services(db)
    with raises_code("WFM_UNSUPPORTED_SL_THRESHOLD") as info:
        db.fetch("SELECT * FROM wfm_sla_compliance(3, $1, $2, 45)", T0, T0 + HOUR)
    assert "V20" in info.value.detail
    with raises_code("WFM_INVALID_PARAMETER"):
        db.fetch("SELECT * FROM wfm_sla_compliance(3, $1, $2, 20, 80)", T0, T0 + HOUR)
    with raises_code("WFM_INVALID_DATE_RANGE"):
        db.fetch("SELECT * FROM wfm_sla_compliance(3, $1, $2)", T0, T0)
    with raises_code("WFM_INVALID_DATE_RANGE"):
        db.fetch("SELECT * FROM wfm_sla_compliance(3, NULL, $1)", T0)


# ---------------------------------------------------------------------------
# thresholds and traffic lights
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "val", "light"),
    [
        ("higher_is_better", "80", "green"),
        ("higher_is_better", "80.01", "green"),
        ("higher_is_better", "79.99", "yellow"),
        ("higher_is_better", "70", "yellow"),
        ("higher_is_better", "69.99", "red"),
        ("lower_is_better", "5", "green"),
        ("lower_is_better", "5.01", "yellow"),
        ("lower_is_better", "10", "yellow"),
        ("lower_is_better", "10.01", "red"),
        ("lower_is_better", "-3", "green"),
    ],
)
def test_traffic_light_boundaries(db: DB, direction: str, val: str, light: str) -> None:
    green, yellow = ("80", "70") if direction == "higher_is_better" else ("5", "10")
    assert (
        value(
            db,
            "SELECT wfm_traffic_light_level($1, $2, $3, $4)",
            direction,
            d(val),
            d(green),
            d(yellow),
        )
        == light
    )


def test_traffic_light_uses_the_tenants_thresholds(db: DB) -> None:
    def light(metric: str, v: str, tenant: int = 1, service: int | None = None) -> str | None:
        return value(db, "SELECT wfm_traffic_light($1, $2, $3, $4)", metric, d(v), tenant, service)

    # tenant 1: service level green from 80, yellow from 70 (sample thresholds)
    assert [light("service_level_pct", v) for v in ("80", "79.99", "70", "69.99")] == [
        "green",
        "yellow",
        "yellow",
        "red",
    ]
    # BILLING (service 3) has its own: green from 85, yellow from 75
    assert light("service_level_pct", "84.99", service=3) == "yellow"
    assert light("service_level_pct", "84.99", service=1) == "green"
    assert light("service_level_pct", "74.99", service=3) == "red"
    # lower is better: abandon rate green up to 5 %, yellow up to 10 %
    assert [light("abandon_rate_pct", v) for v in ("5", "5.01", "10", "10.01")] == [
        "green",
        "yellow",
        "yellow",
        "red",
    ]
    assert light("service_level_pct", "50", tenant=3) is None  # no thresholds
    assert value(db, "SELECT wfm_traffic_light('aht_seconds', NULL, 1)") is None
    db.execute("UPDATE threshold_alerts SET is_active = FALSE WHERE alert_id = 12")
    assert light("service_level_pct", "84.99", service=3) == "green"
    with raises_code("WFM_UNKNOWN_METRIC"):
        db.fetch("SELECT wfm_traffic_light('happiness', 1, 1)")


def test_thresholds_must_put_green_on_the_better_side(db: DB) -> None:
    with raises_code("WFM_INVALID_THRESHOLDS"):
        db.execute(
            "INSERT INTO threshold_alerts (tenant_id, metric_name, green_threshold, yellow_threshold)"
            " VALUES (3, 'service_level_pct', 70, 80)"
        )
    with raises_code("WFM_INVALID_THRESHOLDS"):
        db.execute("UPDATE threshold_alerts SET green_threshold = 12 WHERE alert_id = 2")
    db.execute(  # equal thresholds are allowed: no yellow band
        "INSERT INTO threshold_alerts (tenant_id, metric_name, green_threshold, yellow_threshold)"
        " VALUES (3, 'abandon_rate_pct', 5, 5)"
    )


def test_configure_alert_creates_then_updates(db: DB) -> None:
    add_tenant3_services(db)
    first = json.loads(
        value(
            db,
            "SELECT wfm_configure_alert(3, 'service_level_pct', 85, 75, 301, '{dashboard,sms}', 5,"
            " TRUE, '{\"horizon_minutes\": 45}', 'alice')",
        )
    )
    assert first["created"] is True
    t = first["threshold"]
    assert (t["tenant_id"], t["service_id"], t["green_threshold"], t["yellow_threshold"]) == (
        3,
        301,
        85,
        75,
    )
    assert (t["notification_channels"], t["escalation_minutes"]) == (["dashboard", "sms"], 5)
    p = first["predictive"]
    assert (p["horizon_minutes"], p["min_confidence_pct"], p["accuracy_target_pct"]) == (45, 70, 85)
    again = json.loads(
        value(
            db,
            "SELECT wfm_configure_alert(3, 'service_level_pct', 90, 80, 301, p_updated_by => 'bob')",
        )
    )
    assert again["created"] is False
    assert again["threshold"]["alert_id"] == t["alert_id"]
    assert again["threshold"]["notification_channels"] == ["dashboard", "sms"]  # kept
    assert again["threshold"]["updated_by"] == "bob"
    assert again["predictive"] is None
    assert value(db, "SELECT wfm_traffic_light('service_level_pct', 85, 3, 301)") == "yellow"
    tenant_wide = json.loads(value(db, "SELECT wfm_configure_alert(3, 'aht_seconds', 300, 400)"))
    assert tenant_wide["threshold"]["service_id"] is None
    with raises_code("WFM_UNKNOWN_METRIC"):
        db.fetch("SELECT wfm_configure_alert(3, 'nope', 1, 2)")
    with raises_code("WFM_SERVICE_NOT_FOUND"):
        db.fetch("SELECT wfm_configure_alert(3, 'aht_seconds', 300, 400, 1)")
    with raises_code("WFM_INVALID_THRESHOLDS"):
        db.fetch("SELECT wfm_configure_alert(3, 'aht_seconds', 500, 400)")
    with raises_code("WFM_INVALID_PARAMETER"):
        db.fetch("SELECT wfm_configure_alert(3, 'aht_seconds', 300, 400, NULL, '{pager}')")
    with raises_code("WFM_INVALID_PARAMETER"):
        db.fetch(
            "SELECT wfm_configure_alert(3, 'aht_seconds', 300, 400, p_predictive => "
            "'{\"horizon_minutes\": 5}')"
        )


# ---------------------------------------------------------------------------
# schedules
# ---------------------------------------------------------------------------


def _schedule_t3(db: DB) -> None:
    """Service 301 needs 2 agents in each quarter of [T0, T0 + 1 h).

    Agent 301 works all of it; 302 starts at T0 + 5 min and has a break in the
    third quarter; 303 has two overlapping shifts (of service 302), 304 a short
    rest between two; 305's only shift is cancelled; 306 has none.
    """
    add_tenant3_services(db)
    db.execute(
        """
        INSERT INTO staffing_plans (tenant_id, service_id, interval_start, interval_end,
            required_agents, planned_headcount, source)
        SELECT 3, 301, '2026-03-02 08:00+00'::timestamptz + n * interval '15 minutes',
               '2026-03-02 08:15+00'::timestamptz + n * interval '15 minutes', 2, 3, 'manual'
        FROM generate_series(0, 3) AS n;
        INSERT INTO schedule_templates (template_id, tenant_id, template_name, shift_start,
            shift_minutes, days_of_week)
        VALUES (301, 3, 'Morning', '08:00', 240, '{1,2,3,4,5,6,7}'),
               (302, 3, 'Night', '22:00', 480, '{1,2,3,4,5,6,7}'),
               (303, 3, 'Weekend', '08:00', 480, '{6,7}');
        INSERT INTO work_schedules (schedule_id, tenant_id, agent_id, service_id, shift_start,
            shift_end, status)
        VALUES (3001, 3, 301, 301, '2026-03-02 07:00+00', '2026-03-02 15:00+00', 'published'),
               (3002, 3, 302, 301, '2026-03-02 08:05+00', '2026-03-02 16:00+00', 'published'),
               (3003, 3, 303, 302, '2026-03-02 08:00+00', '2026-03-02 12:00+00', 'published'),
               (3004, 3, 303, 302, '2026-03-02 11:00+00', '2026-03-02 14:00+00', 'planned'),
               (3005, 3, 304, 302, '2026-03-01 22:00+00', '2026-03-02 06:00+00', 'published'),
               (3006, 3, 304, 302, '2026-03-02 14:00+00', '2026-03-02 20:00+00', 'planned'),
               (3007, 3, 305, 301, '2026-03-02 08:00+00', '2026-03-02 16:00+00', 'cancelled');
        INSERT INTO break_schedules (tenant_id, schedule_id, break_type, break_start, break_end)
        VALUES (3, 3002, 'break', '2026-03-02 08:30+00', '2026-03-02 08:45+00');
        """
    )


def test_schedule_coverage_and_gaps(db: DB) -> None:
    _schedule_t3(db)
    coverage = rows(db, "SELECT * FROM wfm_schedule_coverage(3, $1, $2)", T0, T0 + HOUR)
    assert [r["scheduled_agents"] for r in coverage] == [d("1.67"), 2, 1, 2]
    assert [r["gap"] for r in coverage] == [d("0.33"), 0, 1, 0]
    gaps = rows(db, "SELECT * FROM wfm_schedule_gaps(3, $1, $2)", T0, T0 + HOUR)
    assert [(g["interval_start"], g["required_agents"], g["gap"]) for g in gaps] == [
        (T0, 2, d("0.33")),
        (T0 + 30 * MIN, 2, d("1.00")),
    ]
    assert rows(db, "SELECT * FROM wfm_schedule_gaps(3, $1, $2, 302)", T0, T0 + HOUR) == []
    assert rows(db, "SELECT * FROM wfm_schedule_gaps(1, $1, $2)", T0, T0 + HOUR) == []
    with raises_code("WFM_INVALID_DATE_RANGE"):
        db.fetch("SELECT * FROM wfm_schedule_gaps(3, $1, $2)", T0, T0 + dt.timedelta(days=93))


def test_schedule_conflicts(db: DB) -> None:
    _schedule_t3(db)
    conflicts = rows(
        db,
        "SELECT * FROM wfm_schedule_conflicts(3, $1, $2)",
        T0 - 12 * HOUR,
        T0 + 12 * HOUR,
    )
    assert [
        (c["agent_id"], c["conflict_type"], c["schedule_id"], c["other_schedule_id"], c["minutes"])
        for c in conflicts
    ] == [
        (303, "overlap", 3003, 3004, 60),  # 11:00-12:00
        (304, "short_rest", 3005, 3006, 480),  # 06:00 -> 14:00: 8 h of rest
    ]
    assert conflicts[0]["conflict_start"] == T0 + 3 * HOUR
    assert conflicts[0]["full_name"] == "Agent 3"
    # 8 hours of rest are enough when 8 are required
    relaxed = rows(
        db,
        "SELECT * FROM wfm_schedule_conflicts(3, $1, $2, 8)",
        T0 - 12 * HOUR,
        T0 + 12 * HOUR,
    )
    assert [c["conflict_type"] for c in relaxed] == ["overlap"]
    # cancelling a shift ends its conflicts
    db.execute("UPDATE work_schedules SET status = 'cancelled' WHERE schedule_id = 3004")
    assert [
        c["conflict_type"]
        for c in rows(
            db,
            "SELECT * FROM wfm_schedule_conflicts(3, $1, $2)",
            T0 - 12 * HOUR,
            T0 + 12 * HOUR,
        )
    ] == ["short_rest"]
    with raises_code("WFM_INVALID_PARAMETER"):
        db.fetch("SELECT * FROM wfm_schedule_conflicts(3, $1, $2, 30)", T0, T0 + HOUR)


def test_optimize_schedule_records_a_run(db: DB) -> None:
    _schedule_t3(db)
    result = json.loads(
        value(db, "SELECT wfm_optimize_schedule(3, $1, $2, 301, 'planner')", T0, T0 + HOUR)
    )
    assert result["intervals_checked"] == 4
    assert (result["gap_intervals"], result["surplus_intervals"]) == (2, 0)
    assert result["coverage_pct"] == 83.38  # (1.67 + 2 + 1 + 2) / 8
    assert result["shortfall_agent_hours"] == 0.33  # (0.33 + 1) x 0.25 h
    assert [g["gap"] for g in result["gaps"]] == [0.33, 1.0]
    assert result["conflicts"] == [] and result["conflict_count"] == 0  # none on service 301
    [suggestion] = result["suggestions"]
    assert (suggestion["template_id"], suggestion["extra_shifts"]) == (301, 1)
    assert suggestion["date"] == "2026-03-02"
    assert suggestion["covered_gap_agent_hours"] == 0.33
    assert suggestion["candidate_agent_ids"] == [305]  # its only shift is cancelled
    run = db.fetchrow(
        "SELECT * FROM schedule_optimization_runs WHERE run_id = $1", result["run_id"]
    )
    assert (run["tenant_id"], run["service_id"], run["requested_by"]) == (3, 301, "planner")
    assert (run["intervals_checked"], run["gap_intervals"], run["conflict_count"]) == (4, 2, 0)
    assert run["coverage_pct"] == d("83.38")
    assert run["shortfall_agent_hours"] == d("0.33")
    stored = json.loads(run["result"])
    assert stored["suggestions"] == result["suggestions"]

    wide = json.loads(
        value(db, "SELECT wfm_optimize_schedule(3, $1, $2)", T0 - 12 * HOUR, T0 + 12 * HOUR)
    )
    assert wide["conflict_count"] == 2
    assert {c["conflict_type"] for c in wide["conflicts"]} == {"overlap", "short_rest"}
    assert value(db, "SELECT count(*) FROM schedule_optimization_runs WHERE tenant_id = 3") == 2
    with raises_code("WFM_SERVICE_NOT_FOUND"):
        db.fetch("SELECT wfm_optimize_schedule(3, $1, $2, 1)", T0, T0 + HOUR)


def test_sample_schedules_have_the_documented_conflicts(db: DB) -> None:
    found = rows(
        db,
        "SELECT agent_id, conflict_type, schedule_id, other_schedule_id FROM"
        " wfm_schedule_conflicts(1, now() - interval '2 days', now() + interval '3 days')",
    )
    assert {(c["agent_id"], c["conflict_type"]) for c in found} == {
        (3, "overlap"),
        (5, "short_rest"),
    }
    assert (
        rows(
            db,
            "SELECT * FROM wfm_schedule_conflicts(2, now() - interval '2 days', now() + interval '3 days')",
        )
        == []
    )


# ---------------------------------------------------------------------------
# metrics: current, realtime, dashboard, optimisation rules
# ---------------------------------------------------------------------------


def _live_t3(db: DB) -> None:
    """Now: 301 needs 1 agent and has 3 working; 302 needs 4 and has 1.

    Scheduled now on 301: agents 301-304 (305 is on a break); on 302: 306.
    Live: 301, 302 on call, 303 available, 304 logged out (all 301); 306 on call (302).
    """
    db.execute(
        """
        UPDATE agents SET primary_service_id = 302 WHERE agent_id = 306;
        INSERT INTO staffing_plans (tenant_id, service_id, interval_start, interval_end,
            required_agents, planned_headcount, source)
        SELECT 3, s.sid, date_bin('15 minutes', now(), '2000-01-01'),
               date_bin('15 minutes', now(), '2000-01-01') + interval '15 minutes', s.req, s.req,
               'manual'
        FROM (VALUES (301, 1), (302, 4)) AS s (sid, req);
        INSERT INTO work_schedules (schedule_id, tenant_id, agent_id, service_id, shift_start,
            shift_end, status)
        SELECT 3100 + a, 3, 300 + a, CASE WHEN a = 6 THEN 302 ELSE 301 END,
               now() - interval '2 hours', now() + interval '6 hours', 'published'
        FROM generate_series(1, 6) AS a;
        INSERT INTO break_schedules (tenant_id, schedule_id, break_start, break_end)
        VALUES (3, 3105, now() - interval '5 minutes', now() + interval '10 minutes');
        INSERT INTO realtime_agents (agent_id, tenant_id, status, current_service_id)
        VALUES (301, 3, 'on_call', 301), (302, 3, 'on_call', 301), (303, 3, 'available', 301),
               (304, 3, 'logged_out', 301), (306, 3, 'on_call', 302);
        INSERT INTO realtime_queues (service_id, tenant_id, calls_waiting, longest_wait_seconds,
            offered_today, answered_today, abandoned_today, answered_within_threshold_today)
        VALUES (301, 3, 3, 45, 100, 90, 10, 72);
        INSERT INTO threshold_alerts (tenant_id, metric_name, green_threshold, yellow_threshold)
        VALUES (3, 'agents_short', 0, 2), (3, 'service_level_pct', 80, 70);
        INSERT INTO operational_metrics (tenant_id, service_id, metric_name, metric_value, measured_at)
        VALUES (3, 302, 'agents_short', 1, now() - interval '1 minute'),
               (3, 302, 'agents_short', 9, now() - interval '10 minutes'),
               (3, NULL, 'agents_short', 1, now() - interval '1 minute');
        """
    )


def test_current_metrics(db: DB) -> None:
    add_tenant3_services(db)
    add_window_statistics(db)
    _live_t3(db)
    got = {
        (r["service_id"], r["metric_name"]): r["metric_value"]
        for r in rows(db, "SELECT * FROM wfm_current_metrics(3, $1, $2)", T0, T0 + HOUR)
    }
    expected = {
        (301, "service_level_pct"): "80.00",
        (301, "abandon_rate_pct"): "6.67",
        (301, "acd_rate_pct"): "93.33",
        (301, "avg_speed_answer_seconds"): "25.00",
        (301, "aht_seconds"): "200.00",
        (301, "occupancy_pct"): "79.55",
        (301, "adherence_pct"): "90.00",
        (301, "forecast_error_pct"): "6.67",
        (301, "load_deviation_pct"): "6.25",
        (301, "operators_online_pct"): "75.00",  # 3 of the 4 scheduled
        (301, "agents_short"): "-2.00",
        (301, "calls_waiting"): "3.00",
        (301, "longest_wait_seconds"): "45.00",
        (302, "service_level_pct"): "95.00",  # its own 60 s threshold
        (302, "abandon_rate_pct"): "0.00",
        (302, "acd_rate_pct"): "100.00",
        (302, "avg_speed_answer_seconds"): "10.00",
        (302, "aht_seconds"): "300.00",
        (302, "operators_online_pct"): "100.00",
        (302, "agents_short"): "3.00",
        (None, "service_level_pct"): "83.16",  # 158 / 190
        (None, "abandon_rate_pct"): "5.26",
        (None, "acd_rate_pct"): "94.74",
        (None, "avg_speed_answer_seconds"): "21.67",  # 3900 / 180
        (None, "aht_seconds"): "222.22",  # 40000 / 180
        (None, "occupancy_pct"): "79.55",
        (None, "adherence_pct"): "90.00",
        (None, "forecast_error_pct"): "6.67",
        (None, "load_deviation_pct"): "6.25",
        (None, "operators_online_pct"): "80.00",  # 4 logged in of 5 scheduled
        (None, "agents_short"): "1.00",  # 5 required, 4 working
        (None, "calls_waiting"): "3.00",
        (None, "longest_wait_seconds"): "45.00",
    }
    assert got == {k: d(v) for k, v in expected.items()}
    # another tenant sees none of it
    assert not any(
        r["service_id"] in (301, 302)
        for r in rows(db, "SELECT * FROM wfm_current_metrics(1, $1, $2)", T0, T0 + HOUR)
    )


def test_realtime_metrics_have_lights_and_trends(db: DB) -> None:
    add_tenant3_services(db)
    _live_t3(db)
    got = {
        (r["service_id"], r["metric_name"]): r
        for r in rows(db, "SELECT * FROM wfm_realtime_metrics(3)")
    }
    assert {m for _, m in got} <= {
        "operators_online_pct",
        "load_deviation_pct",
        "agents_short",
        "service_level_pct",
        "acd_rate_pct",
        "aht_seconds",
    }
    short = got[(302, "agents_short")]
    assert (short["metric_value"], short["status"]) == (d("3.00"), "red")
    assert (short["previous_value"], short["trend"]) == (d("1.00"), "up")  # the latest snapshot
    assert (short["unit"], short["display_name"]) == ("count", "Operator requirement gap")
    assert short["service_name"] == "Chat 80/60"
    assert (got[(301, "agents_short")]["status"], got[(301, "agents_short")]["trend"]) == (
        "green",
        None,
    )
    centre = got[(None, "agents_short")]
    assert (centre["status"], centre["trend"]) == ("yellow", "flat")
    assert got[(301, "operators_online_pct")]["status"] is None  # no threshold row


def test_realtime_status(db: DB) -> None:
    add_tenant3_services(db)
    _live_t3(db)
    status = json.loads(value(db, "SELECT wfm_realtime_status(3)"))
    queues = {q["service_id"]: q for q in status["queues"]}
    assert set(queues) == {301, 302, 303}
    q = queues[301]
    assert (q["calls_waiting"], q["longest_wait_seconds"], q["service_level_today_pct"]) == (
        3,
        45,
        72,
    )
    assert q["service_level_status"] == "yellow"
    assert q["agents"] == {
        "available": 1,
        "on_call": 2,
        "wrap_up": 0,
        "not_ready": 0,
        "logged_out": 1,
    }
    assert queues[302]["calls_waiting"] == 0
    assert status["agents"] == {"on_call": 3, "available": 1, "logged_out": 1}
    assert status["totals"] == {
        "calls_waiting": 3,
        "longest_wait_seconds": 45,
        "agents_logged_in": 4,
        "agents_available": 1,
    }


def test_executive_dashboard(db: DB) -> None:
    add_tenant3_services(db)
    add_window_statistics(db)
    _live_t3(db)
    db.execute(
        "INSERT INTO realtime_alerts (tenant_id, service_id, metric_name, level, metric_value, message)"
        " VALUES (3, 301, 'abandon_rate_pct', 'red', 6.67, 'abandon'),"
        " (3, 302, 'agents_short', 'yellow', 1, 'short')"
    )
    dash = json.loads(value(db, "SELECT wfm_executive_dashboard(3, $1, $2)", T0, T0 + HOUR))
    assert dash["totals"] == {
        "offered": 190,
        "answered": 180,
        "abandoned": 10,
        "service_level_pct": 83.16,
        "abandon_rate_pct": 5.26,
        "aht_seconds": 222.22,
        "asa_seconds": 21.67,
    }
    services = {s["service_id"]: s for s in dash["services"]}
    assert set(services) == {301, 302, 303}
    assert (services[301]["service_level_pct"], services[301]["status"]) == (80.0, "green")
    assert (services[301]["agents_working"], services[301]["agents_required"]) == (3, 1)
    assert (services[302]["balance"], services[303]["balance"]) == (-3, None)
    # two of 301's surplus agents go to 302, which is short of 3
    assert dash["reallocation"] == [{"from_service_id": 301, "to_service_id": 302, "agents": 2}]
    assert dash["benchmark"] == {
        "best_service_id": 302,
        "worst_service_id": 301,
        "services_meeting_target": 2,
        "services_with_calls": 2,
    }
    assert dash["alerts"] == {"open_red": 1, "open_yellow": 1, "unacknowledged": 2}
    today = json.loads(value(db, "SELECT wfm_executive_dashboard(3)"))
    assert (today["totals"]["offered"], today["totals"]["service_level_pct"]) == (0, None)


def test_optimization_suggestions_evaluate_the_rules(db: DB) -> None:
    add_tenant3_services(db)
    add_window_statistics(db)
    _live_t3(db)

    def fired() -> set[tuple[str, int | None]]:
        return {
            (r["rule_code"], r["service_id"])
            for r in rows(
                db, "SELECT * FROM wfm_optimization_suggestions(3, $1, $2)", T0, T0 + HOUR
            )
            if not r["rule_code"].startswith("DB_")
        }

    # abandon rate 6.67 % (301) and 5.26 % (centre) > 5; agents short 3 (302) and 1 (centre) > 0.
    # At their thresholds exactly, nothing fires: SL 80 % (301) is not < 80, adherence 90 % is
    # not < 90, SL 95 % (302) is not > 95.
    assert fired() == {
        ("ABANDON_HIGH", 301),
        ("ABANDON_HIGH", None),
        ("AGENTS_SHORT", 302),
        ("AGENTS_SHORT", None),
    }
    top = rows(db, "SELECT * FROM wfm_optimization_suggestions(3, $1, $2)", T0, T0 + HOUR)[0]
    assert top["priority"] == 1
    assert (
        top["suggestion"] and top["impact"] and top["cost_impact"] in ("saving", "neutral", "cost")
    )
    # the rules are data: switch one off, make another inclusive
    db.execute("UPDATE optimization_rules SET is_active = FALSE WHERE rule_code = 'ABANDON_HIGH'")
    db.execute("UPDATE optimization_rules SET comparison = '<=' WHERE rule_code = 'ADHERENCE_LOW'")
    assert fired() == {
        ("AGENTS_SHORT", 302),
        ("AGENTS_SHORT", None),
        ("ADHERENCE_LOW", 301),
        ("ADHERENCE_LOW", None),
    }


# ---------------------------------------------------------------------------
# capacity (PostgreSQL's own statistics), read-only
# ---------------------------------------------------------------------------


def test_capacity_analysis_works_read_only(db: DB) -> None:
    async def work(conn: asyncpg.Connection) -> tuple[Any, ...]:
        assert await conn.fetchval("SHOW transaction_read_only") == "on"
        cap = await conn.fetchval("SELECT wfm_capacity_analysis()")
        stats = await conn.fetchrow(
            "SELECT * FROM pg_stat_database WHERE datname = current_database()"
        )
        size = await conn.fetchval("SELECT pg_database_size(current_database())")
        max_conn = int(await conn.fetchval("SHOW max_connections"))
        return cap, stats, size, max_conn

    cap, stats, size, max_conn = read_only(db, work)
    conns = cap["connections"]
    assert conns["max_connections"] == max_conn
    assert 1 <= conns["in_use"] <= max_conn
    assert conns["active"] >= 1  # this very query
    assert conns["usage_pct"] == pct(conns["in_use"], max_conn)
    assert cap["storage"]["database_bytes"] == size
    largest = cap["storage"]["largest_tables"]
    assert 1 <= len(largest) <= 10
    assert {t["table_name"] for t in largest} <= set(DOMAIN_TABLES)
    assert [t["total_bytes"] for t in largest] == sorted(
        (t["total_bytes"] for t in largest), reverse=True
    )
    # the same statistics snapshot as pg_stat_database within the transaction
    assert (cap["cache"]["blks_hit"], cap["cache"]["blks_read"]) == (
        stats["blks_hit"],
        stats["blks_read"],
    )
    assert cap["cache"]["hit_ratio_pct"] == pct(
        stats["blks_hit"], stats["blks_hit"] + stats["blks_read"]
    )
    assert cap["transactions"]["commits"] == stats["xact_commit"]
    assert cap["transactions"]["rollbacks"] == stats["xact_rollback"]
    assert cap["rows"] == {
        "returned": stats["tup_returned"],
        "fetched": stats["tup_fetched"],
        "inserted": stats["tup_inserted"],
        "updated": stats["tup_updated"],
        "deleted": stats["tup_deleted"],
    }
    assert set(cap["settings"]) == {
        "shared_buffers",
        "work_mem",
        "maintenance_work_mem",
        "effective_cache_size",
    }
    assert isinstance(cap["recommendations"], list)


def test_every_reading_function_runs_read_only(db: DB) -> None:
    """What GET endpoints call must run on the engine's read-only sessions."""
    calls = [
        "SELECT wfm_erlang_c(100, 1800, 180, 11)",
        "SELECT * FROM wfm_erlang_staffing(100, 1800, 180, 0.8, 20)",
        "SELECT * FROM wfm_staffing_table(100, 1800, 180, 20)",
        "SELECT wfm_forecast_accuracy(1, 1)",
        "SELECT count(*) FROM wfm_contact_statistics_summary(1, now() - interval '3 days', now(), 'hour')",
        "SELECT count(*) FROM wfm_agent_performance(1, current_date - 7, current_date)",
        "SELECT count(*) FROM wfm_sla_compliance(1, now() - interval '3 days', now())",
        "SELECT wfm_traffic_light('service_level_pct', 75, 1)",
        "SELECT count(*) FROM wfm_current_metrics(1)",
        "SELECT count(*) FROM wfm_realtime_metrics(1)",
        "SELECT wfm_realtime_status(2)",
        "SELECT wfm_executive_dashboard(1)",
        "SELECT count(*) FROM wfm_optimization_suggestions(2)",
        "SELECT count(*) FROM wfm_schedule_coverage(1, now() - interval '1 day', now() + interval '1 day')",
        "SELECT count(*) FROM wfm_schedule_gaps(1, now() - interval '1 day', now() + interval '1 day')",
        "SELECT count(*) FROM wfm_schedule_conflicts(1, now() - interval '1 day', now() + interval '1 day')",
        "SELECT wfm_integration_health(1)",
        "SELECT wfm_validate_table(1, 'contact_statistics')",
        "SELECT count(*) FROM wfm_export(1, 'contact_statistics')",
        "SELECT count(*) FROM wfm_schema_info()",
        "SELECT wfm_capacity_analysis()",
    ]

    async def work(conn: asyncpg.Connection) -> None:
        for sql in calls:
            await conn.fetch(sql)

    read_only(db, work)

    async def write(conn: asyncpg.Connection) -> None:
        await conn.fetch("SELECT wfm_optimize_schedule(1, now(), now() + interval '1 day')")

    with pytest.raises(asyncpg.exceptions.ReadOnlySQLTransactionError):
        read_only(db, write)


# ---------------------------------------------------------------------------
# data quality
# ---------------------------------------------------------------------------


def test_validate_table_counts_failing_rows_of_the_tenant(db: DB) -> None:
    agents = read_only(db, lambda c: c.fetchval("SELECT wfm_validate_table(1, 'agents')"))
    assert agents["table_name"] == "agents"
    assert agents["checked_rows"] == 13  # tenant 1's agents
    checks = {c["check_name"]: c for c in agents["checks"]}
    assert set(checks) == {"active_without_group", "missing_email"}
    assert (
        checks["active_without_group"]["failed_rows"],
        checks["missing_email"]["failed_rows"],
    ) == (1, 1)
    assert not checks["missing_email"]["passed"]
    assert (agents["checks_run"], agents["failed_checks"]) == (2, 2)
    assert agents["quality_score_pct"] == round(100 - 100 * 2 / (13 * 2), 2)
    stats = json.loads(value(db, "SELECT wfm_validate_table(1, 'contact_statistics')"))
    assert {c["check_name"]: c["failed_rows"] for c in stats["checks"]} == {
        "aht_outlier": 0,
        "asa_without_answers": 0,
        "carry_over_exceeds_offered": 1,  # the sample SALES interval
        "future_interval": 0,
    }
    assert stats["checked_rows"] == value(
        db, "SELECT count(*) FROM contact_statistics WHERE tenant_id = 1"
    )
    tenant2 = json.loads(value(db, "SELECT wfm_validate_table(2, 'agents')"))
    assert tenant2["checked_rows"] == 7
    assert tenant2["failed_checks"] == 0
    empty = json.loads(value(db, "SELECT wfm_validate_table(3, 'agents')"))
    assert (empty["checked_rows"], empty["quality_score_pct"]) == (0, None)


@pytest.mark.parametrize(
    "name",
    [
        "wfm_trap",
        "pg_authid",
        "users",
        "api_keys",
        "agents; DROP TABLE agents",
        'agents" t; SELECT 1; --',
        "AGENTS",
        "",
        None,
    ],
)
def test_validate_table_refuses_a_table_off_the_allow_list_without_touching_it(
    db: DB, name: str | None
) -> None:
    # A view that raises when read: if any SQL ran on it, the error would be TRAP.
    db.execute(
        """
        CREATE FUNCTION wfm_trap_fn() RETURNS INTEGER LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'TRAP'; END $$;
        CREATE VIEW wfm_trap AS SELECT wfm_trap_fn() AS tenant_id;
        INSERT INTO data_quality_checks (table_name, check_name, description, failing_condition)
        VALUES ('wfm_trap', 'always', 'an admin listed a view', 'TRUE');
        """
    )
    with raises_code("WFM_UNKNOWN_TABLE") as info:
        db.fetch("SELECT wfm_validate_table(1, $1)", name)
    assert "agents" in info.value.detail  # the detail lists the tables that can be validated
    with raises_code("WFM_UNKNOWN_TABLE"):
        db.fetch("SELECT wfm_run_quality_checks(1, ARRAY[$1::text])", name)
    assert value(db, "SELECT count(*) FROM agents") == 20


def test_a_broken_check_is_reported_and_the_others_still_run(db: DB) -> None:
    db.execute(
        "INSERT INTO data_quality_checks (table_name, check_name, description, failing_condition)"
        " VALUES ('agents', 'broken', 'typo', 't.no_such_column > 0')"
    )
    result = json.loads(value(db, "SELECT wfm_validate_table(1, 'agents')"))
    checks = {c["check_name"]: c for c in result["checks"]}
    assert "no_such_column" in checks["broken"]["error"]
    assert checks["broken"]["passed"] is None
    assert checks["missing_email"]["failed_rows"] == 1
    with pytest.raises(asyncpg.exceptions.CheckViolationError):
        db.execute(
            "INSERT INTO data_quality_checks (table_name, check_name, description, failing_condition)"
            " VALUES ('agents', 'two', 'two statements', 'TRUE; DELETE FROM agents')"
        )


def test_run_quality_checks_records_the_results(db: DB) -> None:
    before = value(db, "SELECT count(*) FROM data_quality_results")
    result = json.loads(value(db, "SELECT wfm_run_quality_checks(1, NULL, 'auditor')"))
    active = value(db, "SELECT count(*) FROM data_quality_checks WHERE is_active")
    assert result["checks_run"] == active
    assert [t["table_name"] for t in result["tables"]] == sorted(
        value(db, "SELECT array_agg(DISTINCT table_name) FROM data_quality_checks")
    )
    recorded = rows(db, "SELECT * FROM data_quality_results WHERE run_id = $1", result["run_id"])
    assert len(recorded) == active
    assert value(db, "SELECT count(*) FROM data_quality_results") == before + active
    assert {r["tenant_id"] for r in recorded} == {1}
    assert {r["requested_by"] for r in recorded} == {"auditor"}
    failed = {(r["table_name"], r["check_name"]) for r in recorded if not r["passed"]}
    assert ("agents", "missing_email") in failed
    assert ("contact_statistics", "carry_over_exceeds_offered") in failed
    assert result["failed_checks"] == len(failed)
    one = json.loads(value(db, "SELECT wfm_run_quality_checks(2, ARRAY['agents'])"))
    assert one["checks_run"] == 2 and one["failed_checks"] == 0
    health = json.loads(value(db, "SELECT wfm_integration_health(2)"))
    assert health["data_quality"]["run_id"] == one["run_id"]


# ---------------------------------------------------------------------------
# integration
# ---------------------------------------------------------------------------


def _connections_t3(db: DB) -> None:
    db.execute(
        """
        INSERT INTO integration_connections (connection_id, tenant_id, connection_name, system_type,
            endpoint_url, sync_interval_seconds, settings, is_active, last_sync_at, last_success_at)
        VALUES (301, 3, 'ACD', 'contact_center', 'https://acd.example', 60,
                '{"entities": ["interval_stats"]}', TRUE, now() - interval '10 seconds',
                now() - interval '10 seconds'),
               (302, 3, 'ZUP', '1c_zup', 'https://zup.example', 3600, '{}', TRUE,
                now() - interval '5 minutes', now() - interval '30 minutes'),
               (303, 3, 'LDAP', 'ldap', 'ldaps://ldap.example', 900, '{}', TRUE,
                now() - interval '1 minute', now() - interval '1 hour'),
               (304, 3, 'Hook', 'webhook', NULL, 300, '{}', FALSE, NULL, NULL);
        INSERT INTO integration_sync_logs (tenant_id, connection_id, started_at, finished_at, status,
            records_processed)
        SELECT 3, 301, now() - n * interval '1 minute', now() - n * interval '1 minute' + interval '2 s',
               'success', 10
        FROM generate_series(1, 5) AS n;
        INSERT INTO integration_sync_logs (tenant_id, connection_id, started_at, finished_at, status,
            records_processed)
        VALUES (3, 302, now() - interval '5 minutes', now() - interval '4 minutes', 'failed', 0),
               (3, 302, now() - interval '30 minutes', now() - interval '29 minutes', 'success', 7),
               (3, 302, now() - interval '90 minutes', now() - interval '89 minutes', 'success', 7),
               (3, 302, now() - interval '150 minutes', now() - interval '149 minutes', 'success', 7),
               (3, 302, now() - interval '2 days', now() - interval '2 days', 'failed', 0);
        """
    )


def test_integration_health(db: DB) -> None:
    _connections_t3(db)
    health = json.loads(value(db, "SELECT wfm_integration_health(3)"))
    components = {c["connection_id"]: c for c in health["components"]}
    assert {k: c["status"] for k, c in components.items()} == {
        301: "healthy",
        302: "degraded",  # its last sync failed
        303: "down",  # no success for 3 sync intervals
        304: "inactive",
    }
    assert health["status"] == "degraded"
    acd = components[301]
    assert (acd["syncs_24h"], acd["failed_24h"], acd["success_rate_24h_pct"]) == (5, 0, 100.0)
    assert (acd["records_24h"], acd["avg_duration_seconds_24h"]) == (50, 2.0)
    zup = components[302]
    assert (zup["syncs_24h"], zup["failed_24h"], zup["success_rate_24h_pct"]) == (4, 1, 75.0)
    assert zup["last_sync_status"] == "failed"
    assert health["data_quality"] is None
    db.execute("UPDATE integration_connections SET is_active = FALSE WHERE connection_id = 301")
    assert json.loads(value(db, "SELECT wfm_integration_health(3)"))["status"] == "down"
    nothing = json.loads(value(db, "SELECT wfm_integration_health(4)"))
    assert (nothing["status"], nothing["components"], nothing["data_quality"]) == (
        "healthy",
        [],
        None,
    )


def test_trigger_and_complete_a_sync(db: DB) -> None:
    _connections_t3(db)
    job = json.loads(value(db, "SELECT wfm_trigger_sync(3, 301, 'full', NULL, 'high', 'alice')"))
    assert (job["status"], job["sync_type"], job["priority"], job["target_seconds"]) == (
        "queued",
        "full",
        "high",
        30,
    )
    assert job["entities"] == ["interval_stats"]  # from the connection's settings
    stored = db.fetchrow("SELECT * FROM sync_jobs WHERE job_id = $1::uuid", job["job_id"])
    assert (stored["tenant_id"], stored["requested_by"]) == (3, "alice")
    [log] = rows(db, "SELECT * FROM integration_logs WHERE job_id = $1::uuid", job["job_id"])
    assert (log["event_type"], str(log["correlation_id"]), log["log_id"]) == (
        "sync_requested",
        job["correlation_id"],
        job["log_id"],
    )
    with raises_code("WFM_SYNC_IN_PROGRESS") as info:
        db.fetch("SELECT wfm_trigger_sync(3, 301)")
    assert job["job_id"] in info.value.detail

    running = json.loads(
        value(db, "SELECT wfm_complete_sync(3, $1::uuid, 'running')", job["job_id"])
    )
    assert running["status"] == "running" and running["within_target"] is None
    done = json.loads(
        value(db, "SELECT wfm_complete_sync(3, $1::uuid, 'completed', 10, 1)", job["job_id"])
    )
    assert (done["status"], done["records_processed"], done["within_target"]) == (
        "completed",
        10,
        True,
    )
    [sync_log] = rows(
        db, "SELECT * FROM integration_sync_logs WHERE job_id = $1::uuid", job["job_id"]
    )
    assert (sync_log["status"], sync_log["records_processed"], sync_log["records_failed"]) == (
        "partial",
        10,
        1,
    )
    events = rows(
        db,
        "SELECT event_type, level, correlation_id FROM integration_logs WHERE job_id = $1::uuid"
        " ORDER BY log_id",
        job["job_id"],
    )
    assert [(e["event_type"], e["level"]) for e in events] == [
        ("sync_requested", "info"),
        ("sync_started", "info"),
        ("sync_completed", "warning"),
    ]
    assert {str(e["correlation_id"]) for e in events} == {job["correlation_id"]}
    assert value(
        db,
        "SELECT last_success_at > now() - interval '1 second' FROM integration_connections"
        " WHERE connection_id = 301",
    )
    with raises_code("WFM_INVALID_PARAMETER"):
        db.fetch("SELECT wfm_complete_sync(3, $1::uuid, 'failed')", job["job_id"])
    # a personal-data system logs its transfer with a legal basis; a failure keeps last success
    zup = json.loads(value(db, "SELECT wfm_trigger_sync(3, 302, p_entities => '{employees}')"))
    assert zup["entities"] == ["employees"]
    value(db, "SELECT wfm_complete_sync(3, $1::uuid, 'completed', 5)", zup["job_id"])
    row = db.fetchrow(
        "SELECT * FROM integration_logs WHERE job_id = $1::uuid AND event_type = 'sync_completed'",
        zup["job_id"],
    )
    assert (row["contains_personal_data"], row["legal_basis"]) == (True, "contract")
    again = json.loads(value(db, "SELECT wfm_trigger_sync(3, 302)"))
    before = value(
        db, "SELECT last_success_at FROM integration_connections WHERE connection_id = 302"
    )
    value(db, "SELECT wfm_complete_sync(3, $1::uuid, 'failed', 0, 0, 'HTTP 503')", again["job_id"])
    assert (
        value(db, "SELECT last_success_at FROM integration_connections WHERE connection_id = 302")
        == before
    )
    assert value(
        db,
        "SELECT message FROM integration_logs WHERE job_id = $1::uuid AND event_type = 'sync_failed'",
        again["job_id"],
    ).endswith("HTTP 503")


def test_sync_errors(db: DB) -> None:
    _connections_t3(db)
    with raises_code("WFM_CONNECTION_NOT_FOUND"):
        db.fetch("SELECT wfm_trigger_sync(1, 301)")  # another tenant's connection
    with raises_code("WFM_CONNECTION_INACTIVE"):
        db.fetch("SELECT wfm_trigger_sync(3, 304)")
    with raises_code("WFM_INVALID_PARAMETER"):
        db.fetch("SELECT wfm_trigger_sync(3, 301, 'partial')")
    with raises_code("WFM_INVALID_PARAMETER"):
        db.fetch("SELECT wfm_trigger_sync(3, 301, 'full', NULL, 'urgent')")
    with raises_code("WFM_SYNC_JOB_NOT_FOUND"):
        db.fetch("SELECT wfm_complete_sync(3, gen_random_uuid(), 'completed')")
    # Genesys Cloud (tenant 2) has a job running in the sample data
    with raises_code("WFM_SYNC_IN_PROGRESS"):
        db.fetch("SELECT wfm_trigger_sync(2, 5)")
    job = value(db, "SELECT job_id FROM sync_jobs WHERE connection_id = 5 AND status = 'running'")
    with raises_code("WFM_SYNC_JOB_NOT_FOUND"):
        db.fetch("SELECT wfm_complete_sync(1, $1, 'completed')", job)


# ---------------------------------------------------------------------------
# bulk import and export, maintenance
# ---------------------------------------------------------------------------


def test_bulk_import_inserts_and_upserts(db: DB) -> None:
    add_tenant3_services(db)
    first = json.loads(
        value(
            db,
            "SELECT wfm_bulk_import(3, 'agents', $1::jsonb)",
            json.dumps(
                [
                    {
                        "employee_number": "N-1",
                        "full_name": "New One",
                        "email": "n1@t3.example",
                        "primary_service_id": 302,
                        "tenant_id": 1,
                    },
                    {"employee_number": "X-1", "full_name": "Agent One Renamed"},
                ]
            ),
        )
    )
    assert first == {
        "table_name": "agents",
        "mode": "upsert",
        "received": 2,
        "inserted": 1,
        "updated": 1,
        "skipped": 0,
    }
    new = db.fetchrow("SELECT * FROM agents WHERE employee_number = 'N-1'")
    assert (new["tenant_id"], new["primary_service_id"]) == (3, 302)  # never the row's tenant
    renamed = db.fetchrow("SELECT * FROM agents WHERE agent_id = 301")
    assert renamed["full_name"] == "Agent One Renamed"
    assert (renamed["email"], renamed["primary_service_id"]) == ("agent1@t3.example", 301)  # kept
    skipped = json.loads(
        value(
            db,
            "SELECT wfm_bulk_import(3, 'agents', $1::jsonb, 'insert')",
            json.dumps([{"employee_number": "X-2", "full_name": "Ignored"}]),
        )
    )
    assert (skipped["inserted"], skipped["skipped"]) == (0, 1)
    assert value(db, "SELECT full_name FROM agents WHERE agent_id = 302") == "Agent 2"

    stats = [
        {
            "service_id": 301,
            "interval_start": "2026-03-02T08:00:00Z",
            "offered": 10,
            "answered": 9,
            "abandoned": 1,
            "answered_within_threshold": 8,
            "talk_seconds": 1800,
        },
        {"service_id": 302, "interval_start": "2026-03-02T08:00:00Z", "offered": 4},
    ]
    imported = json.loads(
        value(db, "SELECT wfm_bulk_import(3, 'contact_statistics', $1::jsonb)", json.dumps(stats))
    )
    assert (imported["inserted"], imported["updated"]) == (2, 0)
    value(
        db,
        "SELECT wfm_bulk_import(3, 'contact_statistics', $1::jsonb)",
        json.dumps(
            [{"service_id": 301, "interval_start": "2026-03-02T08:00:00+00:00", "offered": 12}]
        ),
    )
    row = db.fetchrow(
        "SELECT * FROM contact_statistics WHERE service_id = 301 AND interval_start = $1", T0
    )
    assert (row["offered"], row["answered"], row["aht_seconds"]) == (12, 9, d("200.00"))
    activity = json.loads(
        value(
            db,
            "SELECT wfm_bulk_import(3, 'agent_activity', $1::jsonb)",
            json.dumps([{"agent_id": 301, "activity_date": "2026-03-02", "login_seconds": 3600}]),
        )
    )
    assert activity["inserted"] == 1
    shifts = json.loads(
        value(
            db,
            "SELECT wfm_bulk_import(3, 'work_schedules', $1::jsonb)",
            json.dumps(
                [
                    {
                        "agent_id": 301,
                        "service_id": 301,
                        "shift_start": "2026-03-03T08:00:00Z",
                        "shift_end": "2026-03-03T16:00:00Z",
                    }
                ]
            ),
        )
    )
    assert shifts["inserted"] == 1
    assert value(db, "SELECT status FROM work_schedules WHERE agent_id = 301") == "planned"


@pytest.mark.parametrize(
    ("table", "payload", "code", "detail"),
    [
        ("agents", {"employee_number": "A"}, "WFM_IMPORT_INVALID", "must be a JSON array"),
        ("agents", [1], "WFM_IMPORT_INVALID", "Row 1 is not an object"),
        (
            "agents",
            [{"full_name": "No Number"}],
            "WFM_IMPORT_INVALID",
            "Row 1 has no employee_number",
        ),
        (
            "agents",
            [
                {"employee_number": "A", "full_name": "A"},
                {"employee_number": "A", "full_name": "B"},
            ],
            "WFM_IMPORT_INVALID",
            "Rows 1 and 2 have the same key",
        ),
        (
            "agents",
            [{"employee_number": "A", "full_name": "A", "group_id": 1}],
            "WFM_IMPORT_INVALID",
            "Row 1: group 1 not found",
        ),
        (
            "contact_statistics",
            [
                {"service_id": 301, "interval_start": "2026-03-02T08:00:00Z"},
                {"service_id": 1, "interval_start": "2026-03-02T08:00:00Z"},
            ],
            "WFM_IMPORT_INVALID",
            "Row 2: service 1 not found",
        ),
        (
            "work_schedules",
            [
                {
                    "agent_id": 1,
                    "service_id": 301,
                    "shift_start": "2026-03-03T08:00:00Z",
                    "shift_end": "2026-03-03T09:00:00Z",
                }
            ],
            "WFM_IMPORT_INVALID",
            "Row 1: agent 1 not found",
        ),
        ("services", [], "WFM_UNKNOWN_TABLE", "importable tables"),
        ("agents", [{}] * 10001, "WFM_IMPORT_TOO_LARGE", "10001 rows"),
    ],
)
def test_bulk_import_refusals(db: DB, table: str, payload: Any, code: str, detail: str) -> None:
    add_tenant3_services(db)
    before = fingerprints(db)
    with raises_code(code) as info:
        db.fetch("SELECT wfm_bulk_import(3, $1, $2::jsonb)", table, json.dumps(payload))
    assert detail in info.value.detail
    assert fingerprints(db) == before


def test_bulk_import_bad_values_are_database_errors_and_nothing_is_written(db: DB) -> None:
    add_tenant3_services(db)
    with pytest.raises(asyncpg.exceptions.CheckViolationError):
        db.fetch(
            "SELECT wfm_bulk_import(3, 'contact_statistics', $1::jsonb)",
            json.dumps(
                [
                    {"service_id": 301, "interval_start": "2026-03-02T08:00:00Z", "offered": 5},
                    {"service_id": 301, "interval_start": "2026-03-02T08:15:00Z", "offered": -1},
                ]
            ),
        )
    with pytest.raises(asyncpg.exceptions.CheckViolationError):  # not on a 15-minute boundary
        db.fetch(
            "SELECT wfm_bulk_import(3, 'contact_statistics', $1::jsonb)",
            json.dumps([{"service_id": 301, "interval_start": "2026-03-02T08:07:00Z"}]),
        )
    with pytest.raises(asyncpg.exceptions.InvalidDatetimeFormatError):
        db.fetch(
            "SELECT wfm_bulk_import(3, 'contact_statistics', $1::jsonb)",
            json.dumps([{"service_id": 301, "interval_start": "yesterday-ish"}]),
        )
    assert value(db, "SELECT count(*) FROM contact_statistics WHERE tenant_id = 3") == 0


def test_export_streams_one_tenants_rows(db: DB) -> None:
    add_tenant3_services(db)
    add_window_statistics(db)
    exported = [
        r["e"]
        for r in rows(
            db, "SELECT e FROM wfm_export(3, 'contact_statistics', $1, $2) e", T0, T0 + 30 * MIN
        )
    ]
    assert [
        (e["service_id"], dt.datetime.fromisoformat(e["interval_start"]), e["offered"])
        for e in exported
    ] == [(301, T0, 30), (302, T0, 40), (301, T0 + 15 * MIN, 40)]
    assert all("tenant_id" not in e for e in exported)
    agents = [r["e"] for r in rows(db, "SELECT e FROM wfm_export(1, 'agents') e")]
    assert [a["agent_id"] for a in agents] == list(range(1, 14))
    assert value(db, "SELECT count(*) FROM wfm_export(3, 'agents')") == 6
    with raises_code("WFM_UNKNOWN_TABLE"):
        db.fetch("SELECT * FROM wfm_export(1, 'users')")


def test_maintenance_cleanup(db: DB) -> None:
    add_tenant3_services(db)
    _connections_t3(db)
    db.execute(
        """
        INSERT INTO integration_logs (tenant_id, correlation_id, event_type, message, created_at)
        VALUES (3, gen_random_uuid(), 'auth', 'old', now() - interval '100 days'),
               (3, gen_random_uuid(), 'auth', 'old', now() - interval '95 days'),
               (3, gen_random_uuid(), 'auth', 'recent', now() - interval '1 day'),
               (1, gen_random_uuid(), 'auth', 'old, other tenant', now() - interval '100 days');
        INSERT INTO operational_metrics (tenant_id, metric_name, metric_value, measured_at)
        VALUES (3, 'calls_waiting', 1, now() - interval '120 days');
        INSERT INTO contact_statistics (tenant_id, service_id, interval_start, offered)
        VALUES (3, 301, date_bin('15 minutes', now() - interval '400 days', '2000-01-01'), 1),
               (3, 301, date_bin('15 minutes', now() - interval '10 days', '2000-01-01'), 1);
        """
    )
    dry = json.loads(value(db, "SELECT wfm_maintenance_cleanup(3, 90, TRUE)"))
    assert dry["dry_run"] is True
    assert dry["deleted"]["integration_logs"] == 2
    assert dry["deleted"]["operational_metrics"] == 1
    assert "contact_statistics" not in dry["deleted"]
    assert dry["total"] == 3
    assert value(db, "SELECT count(*) FROM integration_logs WHERE tenant_id = 3") == 3
    done = json.loads(value(db, "SELECT wfm_maintenance_cleanup(3, 90, FALSE, 365)"))
    assert done["deleted"]["integration_logs"] == 2
    assert done["deleted"]["contact_statistics"] == 1
    assert done["total"] == 4
    assert value(db, "SELECT count(*) FROM integration_logs WHERE tenant_id = 3") == 1
    assert value(db, "SELECT count(*) FROM contact_statistics WHERE tenant_id = 3") == 1
    assert (
        value(db, "SELECT count(*) FROM integration_logs WHERE message = 'old, other tenant'") == 1
    )
    with raises_code("WFM_INVALID_PARAMETER"):
        db.fetch("SELECT wfm_maintenance_cleanup(3, 6)")
    with raises_code("WFM_INVALID_PARAMETER"):
        db.fetch("SELECT wfm_maintenance_cleanup(3, 90, FALSE, 30)")


# ---------------------------------------------------------------------------
# sample data
# ---------------------------------------------------------------------------


def test_sample_data_of_both_tenants(db: DB) -> None:
    counts = {
        r["tenant_id"]: r
        for r in rows(
            db,
            "SELECT s.tenant_id, count(DISTINCT s.service_id) AS services,"
            " count(cs.*) AS stats FROM services s"
            " LEFT JOIN contact_statistics cs ON cs.service_id = s.service_id"
            " GROUP BY s.tenant_id",
        )
    }
    assert set(counts) == {1, 2}
    assert (counts[1]["services"], counts[2]["services"]) == (5, 3)
    # intervals from the day before yesterday (UTC) to the last complete one before seeding
    seeded = value(
        db,
        "SELECT applied_at FROM engine_seed_files WHERE domain = 'wfm' AND filename = '003_sample_data.sql'",
    )
    first, last, per_service = db.fetchrow(
        "SELECT min(interval_start), max(interval_start), count(*) / count(DISTINCT service_id)"
        " FROM contact_statistics"
    )
    day = seeded.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert first == day - dt.timedelta(days=2)
    assert seeded - 30 * MIN <= last <= seeded - 15 * MIN
    assert per_service == (last - first) // (15 * MIN) + 1
    for table in (
        "agent_activity",
        "agent_status_history",
        "realtime_queues",
        "realtime_agents",
        "operational_metrics",
        "threshold_alerts",
        "predictive_alerts",
        "realtime_alerts",
        "schedule_templates",
        "work_schedules",
        "break_schedules",
        "forecasts",
        "forecast_data_points",
        "staffing_plans",
        "integration_connections",
        "sync_jobs",
        "integration_sync_logs",
        "integration_logs",
        "integration_endpoint_mappings",
    ):
        tenants = {r["tenant_id"] for r in rows(db, f"SELECT DISTINCT tenant_id FROM {table}")}
        assert tenants == {1, 2}, table
    # the staffing plans come from the calculated forecasts
    assert rows(db, "SELECT forecast_id, status FROM forecasts ORDER BY forecast_id") == [
        {"forecast_id": 1, "status": "calculated"},
        {"forecast_id": 2, "status": "calculated"},
        {"forecast_id": 3, "status": "draft"},
    ]
    assert value(db, "SELECT count(*) FROM staffing_plans WHERE forecast_id = 1") == 192
    # someone is on shift whenever the seed ran
    assert (
        value(
            db,
            "SELECT count(*) FROM work_schedules WHERE tenant_id = 1 AND status <> 'cancelled'"
            " AND shift_start <= $1 AND shift_end > $1",
            seeded,
        )
        >= 5
    )
    # new rows get ids after the sample ids
    assert (
        value(
            db,
            "INSERT INTO agents (tenant_id, employee_number, full_name) VALUES (1, 'N', 'N') RETURNING agent_id",
        )
        == 21
    )
    assert (
        value(
            db,
            "INSERT INTO services (tenant_id, service_code, service_name) VALUES (1, 'N', 'N')"
            " RETURNING service_id",
        )
        == 9
    )


def test_sample_statistics_are_consistent(db: DB) -> None:
    bad = value(
        db,
        """
        SELECT count(*) FROM contact_statistics
        WHERE answered + abandoned <> offered AND NOT (service_id = 2)
           OR answered_within_10s > answered_within_20s
           OR answered_within_20s > answered_within_30s
           OR answered_within_30s > answered_within_60s
           OR (answered > 0 AND aht_seconds IS NULL)
        """,
    )
    assert bad == 0
    email = db.fetchrow(
        "SELECT count(*) AS n, count(answered_within_20s) AS reported FROM contact_statistics"
        " WHERE service_id = 7"
    )
    assert email["n"] > 0 and email["reported"] == 0  # no increments for e-mail
    assert value(db, "SELECT count(*) FROM contact_statistics WHERE interval_start > now()") == 0
    # the realtime queue totals are today's statistics
    assert (
        value(
            db,
            """
        SELECT count(*) FROM realtime_queues q
        WHERE q.offered_today <> (SELECT COALESCE(sum(offered), 0) FROM contact_statistics cs
                                  WHERE cs.service_id = q.service_id
                                    AND cs.interval_start >= date_trunc('day', q.updated_at, 'UTC'))
        """,
        )
        == 0
    )


# ---------------------------------------------------------------------------
# the generator
# ---------------------------------------------------------------------------


def test_generate_small_volumes(db: DB) -> None:
    sample = value(db, "SELECT count(*) FROM contact_statistics")
    result = json.loads(value(db, "SELECT wfm_generate(2, 3, 3, 2)"))
    assert result["contact_statistics_rows"] == 2 * 3 * 96
    assert (result["services"], result["agents"], result["days"]) == (3, 6, 2)
    services = rows(db, "SELECT * FROM services WHERE is_generated ORDER BY service_id")
    assert [s["service_code"] for s in services] == ["GEN-0001", "GEN-0002", "GEN-0003"]
    assert {s["tenant_id"] for s in services} == {3}
    agents = rows(db, "SELECT * FROM agents WHERE is_generated ORDER BY agent_id")
    assert len(agents) == 6
    assert {a["tenant_id"] for a in agents} == {3}
    # 5 working days in 7: a day d (0, 1) of agent a is worked when (d + a) % 7 < 5
    assert result["agent_activity_rows"] == sum(
        1 for a in agents for day in range(2) if (day + a["agent_id"]) % 7 < 5
    )
    assert (
        value(db, "SELECT count(*) FROM agent_activity WHERE tenant_id = 3")
        == result["agent_activity_rows"]
    )
    today = value(db, "SELECT date_trunc('day', now(), 'UTC')")
    span = db.fetchrow(
        "SELECT min(interval_start) AS lo, max(interval_start) AS hi, count(*) AS n"
        " FROM contact_statistics WHERE tenant_id = 3"
    )
    assert span["n"] == 576
    assert span["lo"] == today - dt.timedelta(days=2)
    assert span["hi"] == today - 15 * MIN
    broken = value(
        db,
        """
        SELECT count(*) FROM contact_statistics WHERE tenant_id = 3 AND (
            answered + abandoned <> offered
            OR answered_within_10s > answered_within_20s OR answered_within_20s > answered_within_30s
            OR answered_within_30s > answered_within_60s OR answered_within_60s > answered
            OR answered_within_threshold <> answered_within_20s
            OR agents_staffed < 1 OR (answered > 0 AND max_wait_seconds IS NULL))
        """,
    )
    assert broken == 0
    # a contact centre's day: the 10:00-12:00 peak carries far more calls than 02:00-04:00
    peak, night = db.fetchrow(
        "SELECT sum(offered) FILTER (WHERE extract(hour FROM interval_start AT TIME ZONE 'UTC')"
        " BETWEEN 10 AND 11), sum(offered) FILTER (WHERE extract(hour FROM interval_start AT TIME"
        " ZONE 'UTC') BETWEEN 2 AND 3) FROM contact_statistics WHERE tenant_id = 3"
    )
    assert peak > 5 * night
    quality = json.loads(value(db, "SELECT wfm_validate_table(3, 'contact_statistics')"))
    assert quality["failed_checks"] == 0
    activity = json.loads(value(db, "SELECT wfm_validate_table(3, 'agent_activity')"))
    assert activity["failed_checks"] == 0
    totals = value(
        db,
        "SELECT sum(cs.offered) FROM contact_statistics cs WHERE tenant_id = 3",
    )

    # Again: the previous set is replaced, and the series is reproducible.
    again = json.loads(value(db, "SELECT wfm_generate(2, 3, 3, 2)"))
    assert again["deleted_contact_statistics_rows"] == 576
    assert value(db, "SELECT count(*) FROM contact_statistics WHERE tenant_id = 3") == 576
    assert value(db, "SELECT count(*) FROM services WHERE is_generated") == 3
    assert (
        value(db, "SELECT sum(cs.offered) FROM contact_statistics cs WHERE tenant_id = 3") == totals
    )
    assert (
        value(
            db,
            "SELECT count(*) FROM services WHERE service_id = ANY($1::int[])",
            [s["service_id"] for s in services],
        )
        == 0
    )
    # Zero removes the generated data; the sample data stays.
    gone = json.loads(value(db, "SELECT wfm_generate(0, 0)"))
    assert gone["contact_statistics_rows"] == 0
    assert value(db, "SELECT count(*) FROM services WHERE is_generated") == 0
    assert value(db, "SELECT count(*) FROM agents WHERE is_generated") == 0
    assert value(db, "SELECT count(*) FROM contact_statistics") == sample
    with raises_code("WFM_INVALID_PARAMETER"):
        db.fetch("SELECT wfm_generate(-1, 3)")


def test_generate_sql_runs_with_the_seed_scale(db: DB) -> None:
    value(db, "SELECT wfm_generate(1, 2, 1, 1)")
    text = (SEED_DIR / "generate.sql").read_text(encoding="utf-8")

    async def work(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await conn.execute("SELECT set_config('engine.seed_scale', '0', true)")
            await conn.execute(text)

    with_conn(db, work)
    assert value(db, "SELECT count(*) FROM services WHERE is_generated") == 0
    assert value(db, "SELECT count(*) FROM contact_statistics WHERE tenant_id = 1") > 0


# ---------------------------------------------------------------------------
# idempotence
# ---------------------------------------------------------------------------


def test_reapplying_every_seed_file_changes_nothing(db: DB) -> None:
    before = fingerprints(db)
    assert before["contact_statistics"][0] > 1000
    assert before["staffing_plans"][0] > 0
    for name in ("001_tables.sql", "002_functions.sql", "003_sample_data.sql"):
        db.execute((SEED_DIR / name).read_text(encoding="utf-8"))
        assert fingerprints(db) == before, name


def test_reapplying_the_sample_data_after_changes_through_the_api(db: DB) -> None:
    db.execute(
        """
        UPDATE agents SET is_active = FALSE WHERE agent_id = 12;
        UPDATE services SET is_active = FALSE WHERE service_id = 4;
        DELETE FROM realtime_agents WHERE agent_id = 12;
        DELETE FROM contact_statistics WHERE service_id = 4
            AND interval_start < date_trunc('day', now(), 'UTC');
        UPDATE forecasts SET status = 'published' WHERE forecast_id = 1;
        """
    )
    before = fingerprints(db)
    db.execute((SEED_DIR / "003_sample_data.sql").read_text(encoding="utf-8"))
    assert fingerprints(db) == before
