"""The wfm seed domain over real HTTP: every WFM endpoint, as a consumer sees it.

Each test gets a fresh clone of the migrated and seeded database and its own
engine on a real socket; callers authenticate with real bearer tokens. Tenant 1
is a telecom contact centre (services 1-4 active, 8 inactive; agents 1-13;
connections 1-4, 4 switched off), tenant 2 a bank (services 5-7, agents 14-20,
connections 5-6, 5 with a running sync job). Expected values are read from the
database's tables, not from the seed's formulas; the Erlang C staffing is
checked against an independent Python implementation.
``test_every_wfm_endpoint_is_served_and_tested`` fails when a wfm row is added
without a test here (``@covers``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from tests.engine_server import EngineClient
from tests.helpers import assert_problem, catalog_report, offset_links, serve
from tests.pg import DB

DB_API = "/api/v1/db/database"
SEEDS = Path(__file__).resolve().parent.parent / "seeds" / "wfm"

CONTACT_STATISTICS = ("GET", f"{DB_API}/contact-statistics")
AGENT_ACTIVITY = ("GET", f"{DB_API}/agent-activity")
PERFORMANCE_METRICS = ("GET", f"{DB_API}/performance-metrics")
HEALTH = ("GET", f"{DB_API}/health")
REALTIME_STATUS = ("GET", f"{DB_API}/realtime-status")
PERFORMANCE_ALERTS = ("GET", f"{DB_API}/performance-alerts")
SCHEDULES = ("GET", f"{DB_API}/schedules")
OPTIMIZE_SCHEDULES = ("POST", f"{DB_API}/schedules/optimize")
FORECASTS = ("GET", f"{DB_API}/forecasts")
CALCULATE_FORECAST = ("POST", f"{DB_API}/forecasts/calculate")
INTEGRATIONS = ("GET", f"{DB_API}/integrations")
SYNC_INTEGRATION = ("POST", f"{DB_API}/integrations/sync")
VALIDATE_TABLE = ("GET", f"{DB_API}/validation/{{table_name}}")
RUN_CHECKS = ("POST", f"{DB_API}/validation/run-checks")
BULK_EXPORT = ("POST", f"{DB_API}/bulk/export")
BULK_IMPORT = ("POST", f"{DB_API}/bulk/import")
BULK_PATH_IMPORTS = tuple(  # NDJSON or CSV, streamed (engine/bulk.py); tests/test_wfm_bulk.py
    ("POST", f"{DB_API}/bulk/import/{table}")
    for table in ("contact_statistics", "agent_activity", "agents", "work_schedules")
)
CLEANUP = ("POST", f"{DB_API}/maintenance/cleanup")
SCHEMA_INFO = ("GET", f"{DB_API}/schema/info")
REALTIME_METRICS = ("GET", "/api/v1/performance/metrics/realtime")
SLA_COMPLIANCE = ("GET", "/api/v1/performance/sla/compliance")
CONFIGURE_ALERTS = ("POST", "/api/v1/performance/alerts/configure")
EXECUTIVE_DASHBOARD = ("GET", "/api/v1/performance/dashboard/executive")
INTEGRATION_HEALTH = ("GET", "/api/v1/integration/health/status")
TRIGGER_SYNC = ("POST", "/api/v1/integration/sync/trigger")
ACTIVITY_LOGS = ("GET", "/api/v1/integration/logs/activity")
CAPACITY = ("GET", "/api/v1/performance/capacity/analysis")
SUGGEST = ("POST", "/api/v1/performance/optimization/suggest")
MAPPING_ENDPOINTS = ("GET", "/api/v1/integration/mapping/endpoints")

WFM_PREFIXES = (DB_API + "/", "/api/v1/performance/", "/api/v1/integration/")
CYRILLIC = re.compile("[\u0400-\u04ff]{4}")
JSON_KEYS = {"breaks", "settings", "field_mappings", "columns", "notification_channels"}

# ---------------------------------------------------------------------------
# coverage registry: every test names the wfm endpoints it exercises
# ---------------------------------------------------------------------------

COVERED: dict[tuple[str, str], set[str]] = {}


def covers(*endpoints: tuple[str, str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        for endpoint in endpoints:
            COVERED.setdefault(endpoint, set()).add(fn.__name__)
        return fn

    return mark


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def admin(client: EngineClient, tenant: int = 1, sub: str = "ada") -> dict[str, str]:
    return client.auth(sub=sub, tenant=tenant, roles=("wfm_admin",))


def planner(client: EngineClient, tenant: int = 1, sub: str = "pat") -> dict[str, str]:
    return client.auth(sub=sub, tenant=tenant, roles=("planner",))


def viewer(client: EngineClient, tenant: int = 1) -> dict[str, str]:
    return client.auth(sub="vera", tenant=tenant, roles=("supervisor",))


def russian(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Accept-Language": "ru"}


def as_json(name: str, value: Any) -> Any:
    """A database value as the engine writes it in JSON (and httpx reads it back)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if name in JSON_KEYS and isinstance(value, str):
        return json.loads(value)
    return value


def rows(db: DB, sql: str, *args: Any) -> list[dict[str, Any]]:
    return [{k: as_json(k, v) for k, v in r.items()} for r in db.fetch(sql, *args)]


def jsonb(db: DB, sql: str, *args: Any) -> Any:
    """A jsonb value computed by the database, as JSON."""
    value = db.fetchval(sql, *args)
    return json.loads(value) if isinstance(value, str) else value


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def page(response: httpx.Response) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    body = ok(response)
    assert set(body) == {"data", "pagination"}, body
    return body["data"], offset_links(response, body["pagination"])


def pointers(body: dict[str, Any]) -> dict[str, str]:
    """{pointer: keyword} of a VALIDATION_ERROR body (several keywords joined by '+')."""
    found: dict[str, set[str]] = {}
    for error in body["errors"]:
        assert error["message"], error
        found.setdefault(error["pointer"], set()).add(error["keyword"])
    return {pointer: "+".join(sorted(keywords)) for pointer, keywords in found.items()}


def assert_russian(db: DB, response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    body = assert_problem(response, status, code)
    title = db.fetchval(
        "SELECT localized_messages->>'ru' FROM api_error_codes WHERE error_code = $1", code
    )
    assert title and CYRILLIC.search(title)
    assert body["title"] == title
    assert response.headers["content-language"] == "ru"
    return body


def days(db: DB) -> tuple[dt.datetime, dt.datetime, dt.datetime]:
    """(start of yesterday, start of today, start of tomorrow), UTC, from the database clock."""
    today = db.fetchval("SELECT date_trunc('day', now(), 'UTC')")
    return today - dt.timedelta(days=1), today, today + dt.timedelta(days=1)


def light(direction: str, value: float | None, green: float, yellow: float) -> str | None:
    if value is None:
        return None
    if direction == "higher_is_better":
        return "green" if value >= green else "yellow" if value >= yellow else "red"
    return "green" if value <= green else "yellow" if value <= yellow else "red"


def erlang_c_agents(calls: float, interval_s: int, aht: float, target: float, answer_s: int) -> int:
    """The fewest agents answering ``target`` of the calls within ``answer_s`` (Erlang C)."""
    a = calls * aht / interval_s
    if a == 0:
        return 0
    b, n = 1.0, 0
    while True:
        n += 1
        b = a * b / (n + a * b)  # Erlang B by recursion
        if n <= a:
            continue
        c = n * b / (n - a * (1 - b))  # probability of waiting
        if 1 - c * math.exp(-(n - a) * answer_s / aht) >= target - 1e-12:
            return n


_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)$")


def instants(value: Any) -> Any:
    """``value`` with every ISO timestamp as an aware datetime: timestamps that PostgreSQL
    writes inside jsonb follow the session's TimeZone, the engine's own are UTC."""
    if isinstance(value, dict):
        return {k: instants(v) for k, v in value.items()}
    if isinstance(value, list):
        return [instants(v) for v in value]
    if isinstance(value, str) and _ISO.match(value):
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


def ndjson(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines() if line]


# ---------------------------------------------------------------------------
# the list of wfm endpoints, the rows' contract, the error codes
# ---------------------------------------------------------------------------


def test_every_wfm_endpoint_is_served_and_tested(
    make_client: Callable[..., EngineClient], db: DB
) -> None:
    mapped = db.fetch(
        "SELECT http_method, endpoint_path, service_name, database_operation, requires_auth, "
        "required_roles, rate_limit_per_minute, cache_enabled, result_mapping::text AS result "
        "FROM api_endpoint_mappings WHERE service_name LIKE 'wfm\\_%'"
    )
    seeded = {(r["http_method"], r["endpoint_path"]) for r in mapped}
    # 18 of seeds-docs/000 (health once), 10 of 001, and the 4 bulk-path imports
    assert len(seeded) == 32
    # every row under the WFM prefixes belongs to the domain
    under = {
        (r["http_method"], r["endpoint_path"])
        for r in db.fetch("SELECT http_method, endpoint_path FROM api_endpoint_mappings")
        if r["endpoint_path"].startswith(WFM_PREFIXES)
    }
    assert under == seeded
    untested = seeded - set(COVERED)
    assert not untested, f"wfm endpoints without an HTTP test: {sorted(untested)}"
    stale = set(COVERED) - seeded
    assert not stale, f"tests name endpoints that are not seeded: {sorted(stale)}"
    assert all(COVERED.values())

    schemas = {
        (r["http_method"], r["endpoint_path"], r["applies_to"])
        for r in db.fetch(
            "SELECT m.http_method, m.endpoint_path, s.applies_to FROM api_validation_schemas s "
            "JOIN api_endpoint_mappings m ON m.id = s.endpoint_mapping_id"
        )
    }
    admin_only = {BULK_IMPORT, CLEANUP, *BULK_PATH_IMPORTS}
    for r in mapped:
        key = (r["http_method"], r["endpoint_path"])
        if r["http_method"] == "GET":
            assert r["database_operation"] == "SELECT", key
            assert list(r["required_roles"]) == [], key
        else:
            assert (*key, "body") in schemas, f"{key} has no body schema"
            assert not r["cache_enabled"], key
            if key in admin_only:
                assert list(r["required_roles"]) == ["wfm_admin"], key
            elif key != SUGGEST:  # suggest only reads: any authenticated caller
                assert sorted(r["required_roles"]) == ["planner", "wfm_admin"], key
        assert r["requires_auth"] is (key != HEALTH), key
        assert (r["rate_limit_per_minute"] is None) is (key == HEALTH), key
    assert (
        json.loads(next(r["result"] for r in mapped if r["endpoint_path"].endswith("export")))[
            "shape"
        ]
        == "stream"
    )

    client = serve(make_client)
    report = catalog_report(client)
    served = {(e["method"], e["path"]) for e in report["endpoints"]}
    assert seeded <= served, sorted(seeded - served)
    assert not [p for p in report["problems"] if (p.get("path") or "").startswith(WFM_PREFIXES)]
    assert not [p for p in report["problems"] if p["table"] != "api_endpoint_mappings"]


def test_every_wfm_error_code_is_defined_in_english_and_russian(db: DB) -> None:
    raised = set()
    for path in SEEDS.glob("*.sql"):
        raised |= set(re.findall(r"RAISE EXCEPTION '([A-Z_]+)'", path.read_text()))
    assert raised and all(code.startswith("WFM_") for code in raised)
    defined = {
        r["error_code"]: r
        for r in db.fetch(
            "SELECT error_code, http_status_code, error_message, "
            "localized_messages->>'ru' AS ru FROM api_error_codes WHERE error_code LIKE 'WFM\\_%'"
        )
    }
    missing = raised - set(defined)
    assert not missing, f"codes raised by the wfm functions but not defined: {sorted(missing)}"
    for code, r in defined.items():
        assert 400 <= r["http_status_code"] < 500, code
        assert r["error_message"] and r["ru"] and CYRILLIC.search(r["ru"]), code
    assert defined["WFM_SERVICE_NOT_FOUND"]["http_status_code"] == 404
    assert defined["WFM_SYNC_IN_PROGRESS"]["http_status_code"] == 409


# ---------------------------------------------------------------------------
# contact statistics and performance
# ---------------------------------------------------------------------------

HOURLY_SQL = """
SELECT cs.service_id, s.service_code, date_trunc('hour', cs.interval_start, 'UTC') AS period_start,
       count(*) AS intervals, sum(cs.offered)::bigint AS offered, sum(cs.answered)::bigint AS answered,
       sum(cs.abandoned)::bigint AS abandoned,
       sum(cs.answered_within_threshold)::bigint AS answered_within_threshold,
       round(100.0 * sum(LEAST(cs.answered_within_threshold, cs.offered))
             / NULLIF(sum(cs.offered), 0), 2) AS service_level_pct,
       round(100.0 * sum(cs.abandoned) / NULLIF(sum(cs.offered), 0), 2) AS abandon_rate_pct,
       round(sum(cs.talk_seconds + cs.hold_seconds + cs.wrap_seconds)::numeric
             / NULLIF(sum(cs.answered), 0), 2) AS aht_seconds,
       round(sum(cs.wait_seconds)::numeric / NULLIF(sum(cs.answered), 0), 2) AS asa_seconds,
       max(cs.max_wait_seconds) AS max_wait_seconds,
       round(avg(cs.agents_staffed), 2) AS avg_agents_staffed
FROM contact_statistics cs JOIN services s ON s.service_id = cs.service_id
WHERE cs.tenant_id = $1 AND cs.interval_start >= $2 AND cs.interval_start < $3
GROUP BY 1, 2, 3 ORDER BY 1, 3
"""


@covers(CONTACT_STATISTICS)
def test_contact_statistics_aggregates_per_service_and_period(client: EngineClient, db: DB) -> None:
    yesterday, today, _ = days(db)
    url = DB_API + "/contact-statistics"
    h = viewer(client)
    period = {"from": yesterday.isoformat(), "to": today.isoformat()}

    hourly = rows(db, HOURLY_SQL, 1, yesterday, today)
    assert len(hourly) == 4 * 24  # services 1-4, every hour of yesterday
    data, meta = page(client.get(url, params=period, headers=h))
    assert data == hourly
    assert meta == {"limit": 1000, "offset": 0, "count": 96, "has_more": False, "next_offset": None}
    data, meta = page(client.get(url, params={**period, "limit": 10, "offset": 20}, headers=h))
    assert data == hourly[20:30] and meta["has_more"] and meta["next_offset"] == 30

    # a day per service: the sums of the raw intervals; dates are accepted for timestamps
    daily, _ = page(
        client.get(
            url,
            params={
                "from": yesterday.date().isoformat(),
                "to": today.date().isoformat(),
                "granularity": "day",
            },
            headers=h,
        )
    )
    sums = rows(
        db,
        "SELECT service_id, count(*) AS intervals, sum(offered)::bigint AS offered FROM "
        "contact_statistics WHERE tenant_id = 1 AND interval_start >= $1 AND interval_start < $2 "
        "GROUP BY service_id ORDER BY service_id",
        yesterday,
        today,
    )
    assert [{k: d[k] for k in ("service_id", "intervals", "offered")} for d in daily] == sums
    assert {d["period_start"] for d in daily} == {yesterday.isoformat()}

    # interval granularity of one service: the raw 15-minute rows
    raw = rows(
        db,
        "SELECT interval_start, offered, answered FROM contact_statistics WHERE service_id = 3 "
        "AND interval_start >= $1 AND interval_start < $2 ORDER BY interval_start",
        yesterday,
        today,
    )
    data, _ = page(
        client.get(url, params={**period, "granularity": "interval", "service_id": 3}, headers=h)
    )
    assert [(d["period_start"], d["offered"], d["answered"]) for d in data] == [
        (r["interval_start"], r["offered"], r["answered"]) for r in raw
    ]
    assert {d["service_id"] for d in data} == {3} and len(data) == 96

    # tenant 2 sees its own services only; another tenant's service is not found
    data, _ = page(client.get(url, params=period, headers=viewer(client, tenant=2)))
    assert {d["service_id"] for d in data} == {5, 6, 7}
    assert_russian(
        db,
        client.get(url, params={**period, "service_id": 5}, headers=russian(h)),
        404,
        "WFM_SERVICE_NOT_FOUND",
    )

    body = assert_problem(
        client.get(url, params={"to": "2026-01-01"}, headers=h), 400, "INVALID_PARAMETER"
    )
    assert [e["parameter"] for e in body["errors"]] == ["from"]
    body = assert_problem(
        client.get(url, params={**period, "from": "yesterday"}, headers=h), 400, "INVALID_PARAMETER"
    )
    assert [e["parameter"] for e in body["errors"]] == ["from"]
    body = assert_russian(
        db,
        client.get(url, params={"from": period["to"], "to": period["from"]}, headers=russian(h)),
        400,
        "WFM_INVALID_DATE_RANGE",
    )
    assert body["detail"]
    # 15-minute rows over more than 31 days: too long
    assert_problem(
        client.get(
            url,
            params={
                "from": (today - dt.timedelta(days=40)).isoformat(),
                "to": period["to"],
                "granularity": "interval",
            },
            headers=h,
        ),
        400,
        "WFM_INVALID_DATE_RANGE",
    )
    body = assert_problem(
        client.get(url, params={**period, "granularity": "minute", "servce_id": "1"}, headers=h),
        400,
        "VALIDATION_ERROR",
    )
    assert pointers(body) == {"/granularity": "enum", "/servce_id": "additionalProperties"}
    assert_problem(client.get(url, params=period), 401, "AUTHENTICATION_REQUIRED")


@covers(AGENT_ACTIVITY)
def test_agent_activity_per_agent_over_days(client: EngineClient, db: DB) -> None:
    url = DB_API + "/agent-activity"
    h = viewer(client)
    today = db.fetchval("SELECT (now() AT TIME ZONE 'UTC')::date")
    sql = """
        SELECT a.agent_id, a.employee_number, a.full_name, count(*) AS days,
               round(sum(aa.login_seconds) / 3600.0, 2) AS login_hours,
               sum(aa.calls_handled)::bigint AS calls_handled,
               round(100.0 * sum(aa.adherent_seconds) / NULLIF(sum(aa.scheduled_seconds), 0), 2)
                   AS adherence_pct
        FROM agent_activity aa JOIN agents a ON a.agent_id = aa.agent_id
        WHERE aa.tenant_id = $1 AND aa.activity_date BETWEEN $2 AND $3
          AND ($4::int IS NULL OR aa.service_id = $4)
        GROUP BY a.agent_id ORDER BY a.agent_id
    """
    keys = (
        "agent_id",
        "employee_number",
        "full_name",
        "days",
        "login_hours",
        "calls_handled",
        "adherence_pct",
    )

    def subset(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: item[k] for k in keys} for item in items]

    expected = rows(db, sql, 1, today - dt.timedelta(days=6), today, None)
    assert len(expected) >= 10
    data, meta = page(client.get(url, headers=h))  # default: the last 7 days
    assert subset(data) == expected and meta["count"] == len(expected)
    assert all(0 < d["occupancy_pct"] <= 100 for d in data)

    week_ago, three_days_ago = today - dt.timedelta(days=7), today - dt.timedelta(days=3)
    params = {"from": week_ago.isoformat(), "to": three_days_ago.isoformat(), "service_id": 2}
    data, _ = page(client.get(url, params=params, headers=h))
    assert subset(data) == rows(db, sql, 1, week_ago, three_days_ago, 2)
    assert {d["agent_id"] for d in data} <= {6, 7, 8}
    data, _ = page(client.get(url, params={"agent_id": 12}, headers=h))
    assert [d["agent_id"] for d in data] == [12]

    assert_russian(
        db, client.get(url, params={"agent_id": 14}, headers=russian(h)), 404, "WFM_AGENT_NOT_FOUND"
    )
    assert_problem(
        client.get(url, params={"from": today.isoformat(), "to": week_ago.isoformat()}, headers=h),
        400,
        "WFM_INVALID_DATE_RANGE",
    )
    body = assert_problem(
        client.get(url, params={"from": "2026-13-01"}, headers=h), 400, "INVALID_PARAMETER"
    )
    assert [e["parameter"] for e in body["errors"]] == ["from"]


@covers(PERFORMANCE_METRICS)
def test_performance_metrics_with_traffic_lights(client: EngineClient, db: DB) -> None:
    yesterday, today, _ = days(db)
    url = DB_API + "/performance-metrics"
    h = viewer(client)
    period = {"from": yesterday.isoformat(), "to": today.isoformat()}
    data = ok(client.get(url, params=period, headers=h))
    by_key = {(d["service_id"], d["metric_name"]): d for d in data}
    assert data[0]["service_id"] is None  # the centre first

    figures = db.fetch(
        "SELECT service_id, round(100.0 * sum(LEAST(answered_within_threshold, offered)) "
        "/ sum(offered), 2) AS sl, round(sum(talk_seconds + hold_seconds + wrap_seconds)::numeric "
        "/ sum(answered), 2) AS aht FROM contact_statistics WHERE tenant_id = 1 "
        "AND interval_start >= $1 AND interval_start < $2 GROUP BY GROUPING SETS ((service_id), ())",
        yesterday,
        today,
    )
    for f in figures:
        assert by_key[(f["service_id"], "service_level_pct")]["metric_value"] == float(f["sl"])
        assert by_key[(f["service_id"], "aht_seconds")]["metric_value"] == float(f["aht"])
    centre = by_key[(None, "service_level_pct")]
    assert centre["unit"] == "percent" and centre["direction"] == "higher_is_better"
    # tenant-wide thresholds 80/70; service 3 has its own (85/75)
    assert centre["status"] == light("higher_is_better", centre["metric_value"], 80, 70)
    billing = by_key[(3, "service_level_pct")]
    assert billing["status"] == light("higher_is_better", billing["metric_value"], 85, 75)
    assert by_key[(3, "aht_seconds")]["status"] == light(
        "lower_is_better", by_key[(3, "aht_seconds")]["metric_value"], 360, 420
    )

    only = ok(client.get(url, params={**period, "service_id": 3}, headers=h))
    assert only == [d for d in data if d["service_id"] == 3] and only

    assert_russian(
        db,
        client.get(url, params={"service_id": 6}, headers=russian(h)),
        404,
        "WFM_SERVICE_NOT_FOUND",
    )
    assert_problem(
        client.get(url, params={"from": period["to"], "to": period["from"]}, headers=h),
        400,
        "WFM_INVALID_DATE_RANGE",
    )


@covers(HEALTH)
def test_health_needs_no_token_and_checks_the_domain_tables(client: EngineClient, db: DB) -> None:
    url = DB_API + "/health"
    body = ok(client.get(url))
    tables = db.fetchval("SELECT cardinality(wfm_domain_tables())")
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["tables_expected"] == body["tables_present"] == tables
    assert body["missing_tables"] == []
    assert body["endpoints_active"] == 32
    assert "ratelimit-limit" not in client.get(url).headers  # no rate limit on health
    assert client.head(url).status_code == 200

    db.execute("DROP TABLE data_quality_results")
    body = ok(client.get(url))
    assert body["status"] == "degraded" and body["missing_tables"] == ["data_quality_results"]

    response = client.post(url, json={})
    assert_problem(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "GET"


# ---------------------------------------------------------------------------
# real-time monitoring and alerts
# ---------------------------------------------------------------------------


@covers(REALTIME_STATUS)
def test_realtime_status_of_queues_and_agents(client: EngineClient, db: DB) -> None:
    url = DB_API + "/realtime-status"
    h = viewer(client)
    response = client.get(url, headers=h)
    body = ok(response)
    assert response.headers["x-cache"] == "MISS"
    assert client.get(url, headers=h).headers["x-cache"] == "HIT"

    queues = rows(
        db,
        "SELECT s.service_id, q.calls_waiting, q.longest_wait_seconds, q.offered_today "
        "FROM services s JOIN realtime_queues q ON q.service_id = s.service_id "
        "WHERE s.tenant_id = 1 AND s.is_active ORDER BY s.service_id",
    )
    assert [q["service_id"] for q in body["queues"]] == [1, 2, 3, 4]
    assert [
        {k: q[k] for k in ("service_id", "calls_waiting", "longest_wait_seconds", "offered_today")}
        for q in body["queues"]
    ] == queues
    assert body["totals"]["calls_waiting"] == sum(q["calls_waiting"] for q in queues)
    states = {
        r["status"]: r["n"]
        for r in db.fetch(
            "SELECT status, count(*) AS n FROM realtime_agents WHERE tenant_id = 1 GROUP BY status"
        )
    }
    assert body["agents"] == states
    assert body["totals"]["agents_logged_in"] == sum(
        n for s, n in states.items() if s != "logged_out"
    )
    # support's oldest call waits 95 s: yellow between 60 and 120 s
    assert body["queues"][0]["longest_wait_status"] == "yellow"

    other = ok(client.get(url, headers=viewer(client, tenant=2)))
    assert [q["service_id"] for q in other["queues"]] == [5, 6, 7]

    no_tenant = client.auth(sub="vera", tenant=None, roles=("supervisor",))
    assert_problem(client.get(url, headers=no_tenant), 403, "INSUFFICIENT_PERMISSIONS")


@covers(PERFORMANCE_ALERTS)
def test_performance_alerts_filter_by_state_and_level(client: EngineClient, db: DB) -> None:
    url = DB_API + "/performance-alerts"
    h = viewer(client)
    sql = (
        "SELECT a.alert_event_id, a.level, a.triggered_at + make_interval(mins => "
        "t.escalation_minutes) AS escalate_at FROM realtime_alerts a "
        "LEFT JOIN threshold_alerts t ON t.alert_id = a.threshold_alert_id "
        "WHERE a.tenant_id = $1 AND ($2 OR a.resolved_at IS NULL) "
        "ORDER BY a.triggered_at DESC, a.alert_event_id DESC"
    )
    active = rows(db, sql, 1, False)
    data, meta = page(client.get(url, headers=h))
    assert [{k: d[k] for k in ("alert_event_id", "level", "escalate_at")} for d in data] == active
    assert [d["alert_event_id"] for d in data] == [3, 1, 2]
    assert {d["alert_event_id"]: d["state"] for d in data} == {
        3: "open",
        1: "open",
        2: "acknowledged",
    }
    assert data[0]["service_code"] == "SUPPORT" and data[0]["display_name"] == "Longest wait"
    assert data[2]["escalation_due"] is False  # acknowledged
    assert meta["count"] == 3

    everything, _ = page(client.get(url, params={"state": "all"}, headers=h))
    assert [d["alert_event_id"] for d in everything] == [
        r["alert_event_id"] for r in rows(db, sql, 1, True)
    ]
    assert everything[-1]["state"] == "resolved"
    red, _ = page(client.get(url, params={"level": "red", "state": "open"}, headers=h))
    assert [d["alert_event_id"] for d in red] == [1]
    support, _ = page(client.get(url, params={"service_id": 1}, headers=h))
    assert [d["alert_event_id"] for d in support] == [3, 2]
    bank, _ = page(client.get(url, headers=viewer(client, tenant=2)))
    assert [d["alert_event_id"] for d in bank] == [5]

    body = assert_problem(
        client.get(url, params={"state": "closed"}, headers=h), 400, "VALIDATION_ERROR"
    )
    assert pointers(body) == {"/state": "enum"}
    assert_problem(
        client.get(url, params={"service_id": 5}, headers=h), 404, "WFM_SERVICE_NOT_FOUND"
    )


# ---------------------------------------------------------------------------
# schedules
# ---------------------------------------------------------------------------


@covers(SCHEDULES)
def test_schedules_list_shifts_with_breaks(client: EngineClient, db: DB) -> None:
    url = DB_API + "/schedules"
    h = viewer(client)
    _, today, _ = days(db)
    sql = (
        "SELECT w.schedule_id, w.agent_id, a.full_name AS agent_name, w.service_id, w.status, "
        "w.shift_start, w.shift_end FROM work_schedules w JOIN agents a ON a.agent_id = w.agent_id "
        "WHERE w.tenant_id = $1 AND w.shift_start < $3 AND w.shift_end > $2 "
        "ORDER BY w.shift_start, w.schedule_id"
    )
    keys = (
        "schedule_id",
        "agent_id",
        "agent_name",
        "service_id",
        "status",
        "shift_start",
        "shift_end",
    )
    expected = rows(db, sql, 1, today, today + dt.timedelta(days=7))
    assert len(expected) >= 20
    data, meta = page(client.get(url, headers=h))  # default: the 7 days from today (UTC)
    assert [{k: d[k] for k in keys} for d in data] == expected
    assert meta["count"] == len(expected)
    first = data[0]
    stored = rows(
        db,
        "SELECT break_id, break_type, break_start, break_end FROM break_schedules "
        "WHERE schedule_id = $1 ORDER BY break_start",
        first["schedule_id"],
    )
    assert instants(first["breaks"]) == instants(stored) and len(stored) == 2

    data, meta = page(client.get(url, params={"limit": 5, "offset": 5}, headers=h))
    assert [d["schedule_id"] for d in data] == [e["schedule_id"] for e in expected[5:10]]
    assert meta["next_offset"] == 10
    data, _ = page(client.get(url, params={"agent_id": 3}, headers=h))
    assert sorted(d["schedule_id"] for d in data) == [1003, 1103, 1903]
    data, _ = page(client.get(url, params={"status": "cancelled"}, headers=h))
    assert [(d["schedule_id"], d["notes"]) for d in data] == [(1110, "Vacation approved in 1C ZUP")]
    data, _ = page(client.get(url, headers=viewer(client, tenant=2)))
    assert {d["agent_id"] for d in data} <= set(range(14, 21)) and data

    assert_russian(
        db, client.get(url, params={"agent_id": 14}, headers=russian(h)), 404, "WFM_AGENT_NOT_FOUND"
    )
    assert_problem(
        client.get(
            url,
            params={"from": today.isoformat(), "to": (today + dt.timedelta(days=100)).isoformat()},
            headers=h,
        ),
        400,
        "WFM_INVALID_DATE_RANGE",
    )
    body = assert_problem(
        client.get(url, params={"status": "done"}, headers=h), 400, "VALIDATION_ERROR"
    )
    assert pointers(body) == {"/status": "enum"}


@covers(OPTIMIZE_SCHEDULES)
def test_optimize_schedules_finds_gaps_and_conflicts_and_records_the_run(
    client: EngineClient, db: DB
) -> None:
    url = DB_API + "/schedules/optimize"
    _, today, tomorrow = days(db)
    period = {
        "period_start": today.isoformat(),
        "period_end": (tomorrow + dt.timedelta(days=1)).isoformat(),
    }
    body = ok(client.post(url, json=period, headers=planner(client)), 201)

    gaps = db.fetch(
        "SELECT service_id, interval_start, required_agents FROM wfm_schedule_gaps(1, $1, $2)",
        today,
        tomorrow + dt.timedelta(days=1),
    )
    assert body["gap_intervals"] == len(gaps) == len(body["gaps"]) > 0
    plans = db.fetchval(
        "SELECT count(*) FROM staffing_plans WHERE tenant_id = 1 AND interval_start >= $1 "
        "AND interval_start < $2",
        today,
        tomorrow + dt.timedelta(days=1),
    )
    assert body["intervals_checked"] == plans
    conflicts = {(c["agent_id"], c["conflict_type"]) for c in body["conflicts"]}
    assert {(3, "overlap"), (5, "short_rest")} <= conflicts
    assert body["conflict_count"] == len(body["conflicts"])
    assert all(s["service_id"] == 1 for s in body["suggestions"])  # only support has a plan

    run = db.fetchrow(
        "SELECT tenant_id, requested_by, gap_intervals, conflict_count, result "
        "FROM schedule_optimization_runs WHERE run_id = $1",
        body["run_id"],
    )
    assert (run["tenant_id"], run["requested_by"]) == (1, "pat")
    assert (run["gap_intervals"], run["conflict_count"]) == (len(gaps), len(body["conflicts"]))

    sales = ok(client.post(url, json={**period, "service_id": 2}, headers=admin(client)), 201)
    assert sales["service_id"] == 2 and sales["intervals_checked"] == 0  # no plan for sales

    assert_problem(
        client.post(url, json=period, headers=viewer(client)), 403, "INSUFFICIENT_PERMISSIONS"
    )
    body = assert_problem(
        client.post(
            url, json={"period_start": period["period_start"], "shift": 1}, headers=planner(client)
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert pointers(body) == {"/period_end": "required", "/shift": "additionalProperties"}
    assert_russian(
        db,
        client.post(url, json={**period, "service_id": 5}, headers=russian(planner(client))),
        404,
        "WFM_SERVICE_NOT_FOUND",
    )
    assert_problem(
        client.post(
            url,
            json={"period_start": period["period_end"], "period_end": period["period_start"]},
            headers=planner(client),
        ),
        400,
        "WFM_INVALID_DATE_RANGE",
    )
    assert db.fetchval("SELECT count(*) FROM schedule_optimization_runs") == 2


# ---------------------------------------------------------------------------
# forecasting
# ---------------------------------------------------------------------------


@covers(FORECASTS)
def test_forecasts_list_with_totals_accuracy_and_intervals(client: EngineClient, db: DB) -> None:
    url = DB_API + "/forecasts"
    h = viewer(client)
    data, _ = page(client.get(url, headers=h))
    assert [d["forecast_id"] for d in data] == [3, 1]  # same start: the newest id first
    totals = {
        r["forecast_id"]: r
        for r in rows(
            db,
            "SELECT forecast_id, count(*) AS intervals, sum(forecast_volume) AS total_volume, "
            "max(required_agents) AS peak_required_agents FROM forecast_data_points "
            "WHERE tenant_id = 1 GROUP BY forecast_id",
        )
    }
    for d in data:
        assert {k: d[k] for k in totals[d["forecast_id"]]} == totals[d["forecast_id"]]
    support = data[1]
    assert (support["status"], support["service_code"], support["intervals"]) == (
        "calculated",
        "SUPPORT",
        192,
    )
    assert data[0]["status"] == "draft" and data[0]["peak_required_agents"] is None
    compared = db.fetchval(
        "SELECT count(*) FROM forecast_data_points d WHERE d.forecast_id = 1 "
        "AND d.interval_start + INTERVAL '15 minutes' <= now() AND EXISTS (SELECT 1 FROM "
        "contact_statistics c WHERE c.service_id = 1 AND c.interval_start = d.interval_start)"
    )
    assert support["accuracy"]["intervals_compared"] == compared
    assert "data_points" in support and support["data_points"] is None

    one, _ = page(
        client.get(url, params={"forecast_id": 1, "include_intervals": "true"}, headers=h)
    )
    points = one[0]["data_points"]
    stored = rows(
        db,
        "SELECT interval_start, forecast_volume, required_agents, scheduled_agents_needed "
        "FROM forecast_data_points WHERE forecast_id = 1 ORDER BY interval_start",
    )
    assert instants([{k: p[k] for k in stored[0]} for p in points]) == instants(stored)
    drafts, _ = page(client.get(url, params={"status": "draft"}, headers=h))
    assert [d["forecast_id"] for d in drafts] == [3]
    bank, _ = page(client.get(url, headers=viewer(client, tenant=2)))
    assert [d["forecast_id"] for d in bank] == [2]

    assert_russian(
        db,
        client.get(url, params={"forecast_id": 2}, headers=russian(h)),
        404,
        "WFM_FORECAST_NOT_FOUND",
    )
    body = assert_problem(
        client.get(url, params={"status": "final"}, headers=h), 400, "VALIDATION_ERROR"
    )
    assert pointers(body) == {"/status": "enum"}
    body = assert_problem(
        client.get(url, params={"include_intervals": "maybe"}, headers=h), 400, "INVALID_PARAMETER"
    )
    assert [e["parameter"] for e in body["errors"]] == ["include_intervals"]


@covers(CALCULATE_FORECAST, FORECASTS)
def test_calculate_forecast_staffs_every_interval_by_erlang_c(client: EngineClient, db: DB) -> None:
    url = DB_API + "/forecasts/calculate"
    h = planner(client)
    listed, _ = page(client.get(DB_API + "/forecasts", headers=viewer(client)))  # now cached
    assert {d["forecast_id"]: d["status"] for d in listed}[3] == "draft"

    body = ok(client.post(url, json={"forecast_id": 3, "target_service_level": 0.9}, headers=h))
    assert (body["forecast_id"], body["status"], body["created"]) == (3, "calculated", False)
    assert body["target_service_level"] == 0.9 and body["target_seconds"] == 20
    points = db.fetch(
        "SELECT interval_start, forecast_volume, forecast_aht_seconds, required_agents, "
        "scheduled_agents_needed FROM forecast_data_points WHERE forecast_id = 3"
    )
    assert len(points) == body["intervals"] == 96
    for p in points:
        needed = erlang_c_agents(
            float(p["forecast_volume"]), 900, float(p["forecast_aht_seconds"]), 0.9, 20
        )
        assert p["required_agents"] == needed, dict(p)
        # shrinkage 30 %: agents to schedule = required / 0.7, rounded up
        assert p["scheduled_agents_needed"] == math.ceil(round(needed / 0.7, 6))
    assert body["peak_required_agents"] == max(p["required_agents"] for p in points)
    stored = db.fetchrow("SELECT status, sl_target_pct FROM forecasts WHERE forecast_id = 3")
    assert (stored["status"], stored["sl_target_pct"]) == ("calculated", Decimal("90.00"))
    assert (
        db.fetchval("SELECT count(*) FROM staffing_plans WHERE forecast_id = 3 AND service_id = 2")
        == body["staffing_plan_rows"]
        == 96
    )

    listed, _ = page(client.get(DB_API + "/forecasts", headers=viewer(client)))  # cache dropped
    again = {d["forecast_id"]: d for d in listed}[3]
    assert again["status"] == "calculated"
    assert again["peak_required_agents"] == body["peak_required_agents"]

    # a new forecast from a week of history, trimmed name
    day = db.fetchval("SELECT (now() AT TIME ZONE 'UTC')::date + 2")
    created = ok(
        client.post(
            url,
            json={
                "service_id": 1,
                "period_start": day.isoformat(),
                "period_end": day.isoformat(),
                "history_weeks": 1,
                "interval_minutes": 30,
                "forecast_name": "  Support   day   after  ",
            },
            headers=admin(client),
        )
    )
    assert created["created"] is True and created["status"] == "calculated"
    assert created["forecast_name"] == "Support day after"
    assert (created["intervals"], created["interval_minutes"]) == (48, 30)
    row = db.fetchrow(
        "SELECT tenant_id, method, history_weeks, created_by FROM forecasts WHERE forecast_id = $1",
        created["forecast_id"],
    )
    assert tuple(row) == (1, "seasonal_average", 1, "ada")

    assert_russian(
        db,
        client.post(url, json={"forecast_id": 2}, headers=russian(h)),
        404,
        "WFM_FORECAST_NOT_FOUND",
    )
    body = assert_problem(
        client.post(url, json={"service_id": 1}, headers=h), 400, "VALIDATION_ERROR"
    )
    assert pointers(body) == {"": "oneOf"}
    body = assert_problem(
        client.post(
            url, json={"forecast_id": 3, "target_service_level": 1.5, "shrinkage": -1}, headers=h
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert pointers(body) == {"/target_service_level": "exclusiveMaximum", "/shrinkage": "minimum"}
    assert_russian(
        db,
        client.post(
            url,
            json={
                "service_id": 1,
                "period_start": "2035-01-01",
                "period_end": "2035-01-01",
                "history_weeks": 1,
            },
            headers=russian(h),
        ),
        422,
        "WFM_NO_HISTORY",
    )
    assert_problem(
        client.post(url, json={"forecast_id": 3}, headers=viewer(client)),
        403,
        "INSUFFICIENT_PERMISSIONS",
    )


# ---------------------------------------------------------------------------
# integrations
# ---------------------------------------------------------------------------


@covers(INTEGRATIONS, INTEGRATION_HEALTH)
def test_integrations_and_their_health(client: EngineClient, db: DB) -> None:
    db.execute(
        "UPDATE integration_connections SET settings = settings || "
        '\'{"password": "hunter2", "api_key": "k"}\' WHERE connection_id = 1'
    )
    h = viewer(client)
    data = ok(client.get(DB_API + "/integrations", headers=h))
    health = jsonb(db, "SELECT wfm_integration_health(1)")
    statuses = {c["connection_id"]: c["status"] for c in health["components"]}
    assert [d["connection_id"] for d in data] == [1, 2, 3, 4]
    assert {d["connection_id"]: d["status"] for d in data} == statuses
    assert statuses[1] == "healthy" and statuses[3] == "down" and statuses[4] == "inactive"
    zup = data[0]
    assert zup["settings"] == {
        "entities": ["employees", "vacations", "timesheets"],
        "organization": "Telecom LLC",
    }
    assert "hunter2" not in json.dumps(data)
    logs = db.fetchrow(
        "SELECT count(*) AS n, sum(records_processed) AS records FROM integration_sync_logs "
        "WHERE connection_id = 1 AND started_at > now() - INTERVAL '24 hours'"
    )
    assert (zup["syncs_24h"], zup["records_24h"]) == (logs["n"], logs["records"])
    assert zup["last_job"]["status"] == "completed"
    ldap = ok(client.get(DB_API + "/integrations", params={"system_type": "ldap"}, headers=h))
    assert [d["connection_id"] for d in ldap] == [3]

    status = ok(client.get("/api/v1/integration/health/status", headers=h))
    assert status["status"] == health["status"] == "degraded"
    assert {c["connection_id"]: c["status"] for c in status["components"]} == statuses
    assert status["data_quality"]["run_id"] == "d9a10000-0000-4000-8000-000000000001"
    assert status["data_quality"]["failed"] == 2
    bank = ok(client.get("/api/v1/integration/health/status", headers=viewer(client, tenant=2)))
    assert [c["connection_id"] for c in bank["components"]] == [5, 6]

    assert_problem(client.get(DB_API + "/integrations"), 401, "AUTHENTICATION_REQUIRED")
    assert_problem(client.get("/api/v1/integration/health/status"), 401, "AUTHENTICATION_REQUIRED")
    body = assert_problem(
        client.get(DB_API + "/integrations", params={"system_type": "ftp"}, headers=h),
        400,
        "VALIDATION_ERROR",
    )
    assert pointers(body) == {"/system_type": "enum"}


@covers(SYNC_INTEGRATION, INTEGRATIONS, ACTIVITY_LOGS)
def test_sync_one_integration_queues_a_job_once(client: EngineClient, db: DB) -> None:
    url = DB_API + "/integrations/sync"
    h = planner(client)
    before = ok(client.get(DB_API + "/integrations", headers=viewer(client)))
    assert before[0]["queued_jobs"] == 0
    page(client.get("/api/v1/integration/logs/activity", headers=viewer(client)))  # cached

    body = ok(client.post(url, json={"connection_id": 1, "priority": "high"}, headers=h), 202)
    job = db.fetchrow(
        "SELECT status, priority, requested_by, entities, correlation_id FROM sync_jobs "
        "WHERE job_id = $1",
        uuid.UUID(body["job_id"]),
    )
    assert (job["status"], job["priority"], job["requested_by"]) == ("queued", "high", "pat")
    assert body["entities"] == list(job["entities"]) == ["employees", "vacations", "timesheets"]
    assert body["correlation_id"] == str(job["correlation_id"]) and body["target_seconds"] == 30
    # the integration list and the activity log show it at once (their cache was dropped)
    after = ok(client.get(DB_API + "/integrations", headers=viewer(client)))
    assert after[0]["queued_jobs"] == 1 and after[0]["last_job"]["job_id"] == body["job_id"]
    logs, _ = page(client.get("/api/v1/integration/logs/activity", headers=viewer(client)))
    assert (logs[0]["log_id"], logs[0]["event_type"], logs[0]["actor"]) == (
        body["log_id"],
        "sync_requested",
        "pat",
    )

    problem = assert_russian(
        db,
        client.post(url, json={"connection_id": 1}, headers=russian(h)),
        409,
        "WFM_SYNC_IN_PROGRESS",
    )
    assert body["job_id"] in problem["detail"]
    assert_problem(
        client.post(url, json={"connection_id": 4}, headers=h), 409, "WFM_CONNECTION_INACTIVE"
    )
    assert_problem(
        client.post(url, json={"connection_id": 5}, headers=h), 404, "WFM_CONNECTION_NOT_FOUND"
    )
    assert_problem(
        client.post(url, json={"connection_id": 2}, headers=viewer(client)),
        403,
        "INSUFFICIENT_PERMISSIONS",
    )
    body = assert_problem(
        client.post(
            url, json={"connection_id": 2, "priority": "urgent", "entities": []}, headers=h
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert pointers(body) == {"/priority": "enum", "/entities": "minItems"}
    assert (
        db.fetchval("SELECT count(*) FROM sync_jobs WHERE connection_id = 2 AND status = 'queued'")
        == 0
    )


@covers(TRIGGER_SYNC)
def test_trigger_sync_queues_several_connections_and_skips_busy_ones(
    client: EngineClient, db: DB
) -> None:
    url = "/api/v1/integration/sync/trigger"
    # tenant 2: Genesys (5) is still syncing, 1C ZUP (6) gets queued
    body = ok(client.post(url, json={}, headers=admin(client, tenant=2)), 202)
    assert (body["queued_count"], body["skipped_count"]) == (1, 1)
    assert [j["connection_id"] for j in body["jobs"]] == [6]
    assert body["skipped"][0]["connection_id"] == 5
    assert body["skipped"][0]["reason"] == "WFM_SYNC_IN_PROGRESS"
    assert (
        db.fetchval("SELECT count(*) FROM sync_jobs WHERE connection_id = 6 AND status = 'queued'")
        == 1
    )

    # tenant 1, by system type: only the LDAP directory
    body = ok(
        client.post(
            url, json={"system_type": "ldap", "sync_type": "full"}, headers=planner(client)
        ),
        202,
    )
    assert [(j["connection_id"], j["sync_type"]) for j in body["jobs"]] == [(3, "full")]
    # named connections: switched off ones are reported, not queued
    body = ok(client.post(url, json={"connection_ids": [4, 2]}, headers=planner(client)), 202)
    assert [j["connection_id"] for j in body["jobs"]] == [2]
    assert [(s["connection_id"], s["reason"]) for s in body["skipped"]] == [
        (4, "WFM_CONNECTION_INACTIVE")
    ]
    logged = db.fetchval(
        "SELECT count(*) FROM integration_logs WHERE event_type = 'sync_requested' AND actor = 'pat'"
    )
    assert logged == 2

    assert_russian(
        db,
        client.post(url, json={"connection_ids": [5]}, headers=russian(planner(client))),
        404,
        "WFM_CONNECTION_NOT_FOUND",
    )
    # no active webhook connection in tenant 1 (the only one is switched off)
    assert_problem(
        client.post(url, json={"system_type": "webhook"}, headers=planner(client)),
        404,
        "WFM_CONNECTION_NOT_FOUND",
    )
    body = assert_problem(
        client.post(
            url, json={"system_type": "ftp", "connection_ids": [0]}, headers=planner(client)
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert pointers(body) == {"/system_type": "enum", "/connection_ids/0": "minimum"}
    assert_problem(
        client.post(url, json={}, headers=viewer(client)), 403, "INSUFFICIENT_PERMISSIONS"
    )


@covers(ACTIVITY_LOGS)
def test_activity_logs_audit_trail_with_filters(client: EngineClient, db: DB) -> None:
    url = "/api/v1/integration/logs/activity"
    h = viewer(client)
    expected = rows(
        db,
        "SELECT log_id, created_at, correlation_id, event_type, level, connection_id, "
        "contains_personal_data, legal_basis FROM integration_logs WHERE tenant_id = 1 "
        "ORDER BY created_at DESC, log_id DESC",
    )
    data, meta = page(client.get(url, headers=h))
    assert [{k: d[k] for k in expected[0]} for d in data] == expected
    assert meta["count"] == len(expected) >= 10

    chain, _ = page(
        client.get(
            url, params={"correlation_id": "c0de0000-0000-4000-8000-000000000101"}, headers=h
        )
    )
    assert [d["event_type"] for d in chain] == ["sync_completed", "sync_started", "sync_requested"]
    assert {d["connection_name"] for d in chain} == {"1C ZUP (HR and payroll)"}
    personal, _ = page(client.get(url, params={"personal_data": "true"}, headers=h))
    assert personal and all(
        d["contains_personal_data"] and d["legal_basis"] == "contract" for d in personal
    )
    assert 901 in {d["log_id"] for d in personal}
    ldap, _ = page(client.get(url, params={"connection_id": 3, "level": "error"}, headers=h))
    assert [d["event_type"] for d in ldap] == ["sync_failed"]
    data, meta = page(client.get(url, params={"limit": 3}, headers=h))
    assert len(data) == 3 and meta["has_more"]
    bank, _ = page(client.get(url, headers=viewer(client, tenant=2)))
    assert {d["connection_id"] for d in bank} <= {5, 6}

    body = assert_problem(
        client.get(url, params={"correlation_id": "abc"}, headers=h), 400, "INVALID_PARAMETER"
    )
    assert [e["parameter"] for e in body["errors"]] == ["correlation_id"]
    body = assert_problem(
        client.get(url, params={"level": "fatal"}, headers=h), 400, "VALIDATION_ERROR"
    )
    assert pointers(body) == {"/level": "enum"}
    assert_russian(
        db,
        client.get(url, params={"connection_id": 5}, headers=russian(h)),
        404,
        "WFM_CONNECTION_NOT_FOUND",
    )


@covers(MAPPING_ENDPOINTS)
def test_mapping_endpoints_link_external_fields_to_routes(client: EngineClient, db: DB) -> None:
    url = "/api/v1/integration/mapping/endpoints"
    h = viewer(client)
    expected = rows(
        db,
        "SELECT m.mapping_id, m.connection_id, m.direction, m.external_endpoint, m.target_table, "
        "m.field_mappings, m.api_endpoint_path FROM integration_endpoint_mappings m "
        "WHERE m.tenant_id = 1 ORDER BY m.connection_id, m.mapping_id",
    )
    data, _ = page(client.get(url, headers=h))
    assert [{k: d[k] for k in expected[0]} for d in data] == expected
    by_id = {d["mapping_id"]: d for d in data}
    assert by_id[1]["external_url"] == "https://zup.telecom.example/hs/wfm/v1/employees"
    assert by_id[1]["field_count"] == len(by_id[1]["field_mappings"]) == 5
    assert by_id[1]["field_mappings"]["ФИО"] == "full_name"
    # every mapped route is one of this seed's, and served
    assert {i: by_id[i]["api_route_active"] for i in by_id} == {
        1: True,
        2: True,
        3: None,
        4: True,
        5: True,
        6: None,
    }
    exports, _ = page(client.get(url, params={"direction": "export"}, headers=h))
    assert [d["mapping_id"] for d in exports] == [2]
    acd, _ = page(client.get(url, params={"connection_id": 2}, headers=h))
    assert [d["mapping_id"] for d in acd] == [4, 5]

    body = assert_problem(
        client.get(url, params={"direction": "sideways"}, headers=h), 400, "VALIDATION_ERROR"
    )
    assert pointers(body) == {"/direction": "enum"}
    assert_problem(
        client.get(url, params={"connection_id": 6}, headers=h), 404, "WFM_CONNECTION_NOT_FOUND"
    )


# ---------------------------------------------------------------------------
# data validation and quality
# ---------------------------------------------------------------------------


@covers(VALIDATE_TABLE)
def test_validate_one_table_of_the_tenant(client: EngineClient, db: DB) -> None:
    h = viewer(client)
    body = ok(client.get(DB_API + "/validation/agents", headers=h))
    counts = db.fetchrow(
        "SELECT count(*) AS total, "
        "count(*) FILTER (WHERE is_active AND group_id IS NULL) AS without_group, "
        "count(*) FILTER (WHERE email IS NULL OR btrim(email) = '') AS without_email "
        "FROM agents WHERE tenant_id = 1"
    )
    assert body["table_name"] == "agents" and body["checked_rows"] == counts["total"] == 13
    checks = {c["check_name"]: c for c in body["checks"]}
    assert checks["active_without_group"]["failed_rows"] == counts["without_group"] == 1
    assert checks["missing_email"]["failed_rows"] == counts["without_email"] == 1
    assert body["failed_checks"] == 2 and body["checks_run"] == 2
    assert body["quality_score_pct"] == round(100 - 100 * 2 / (13 * 2), 2)

    stats = ok(client.get(DB_API + "/validation/contact_statistics", headers=h))
    carry = db.fetchval(
        "SELECT count(*) FROM contact_statistics WHERE tenant_id = 1 "
        "AND answered + abandoned > offered"
    )
    carry_check = next(
        c for c in stats["checks"] if c["check_name"] == "carry_over_exceeds_offered"
    )
    assert carry_check["failed_rows"] == carry == 1 and carry_check["passed"] is False
    bank = ok(client.get(DB_API + "/validation/agents", headers=viewer(client, tenant=2)))
    assert bank["checked_rows"] == 7

    body = assert_russian(
        db,
        client.get(DB_API + "/validation/pg_authid", headers=russian(h)),
        404,
        "WFM_UNKNOWN_TABLE",
    )
    assert "agents" in body["detail"]
    for name in ("services", "agents;drop table agents", "AGENTS"):
        assert_problem(
            client.get(f"{DB_API}/validation/{name}", headers=h), 404, "WFM_UNKNOWN_TABLE"
        )
    assert db.fetchval("SELECT count(*) FROM agents") == 20


@covers(RUN_CHECKS, INTEGRATION_HEALTH)
def test_run_checks_records_a_run(client: EngineClient, db: DB) -> None:
    url = DB_API + "/validation/run-checks"
    health = ok(client.get("/api/v1/integration/health/status", headers=viewer(client)))
    seeded_run = health["data_quality"]["run_id"]

    body = ok(
        client.post(
            url, json={"tables": ["agents", "contact_statistics"]}, headers=planner(client)
        ),
        201,
    )
    assert [t["table_name"] for t in body["tables"]] == ["agents", "contact_statistics"]
    stored = db.fetch(
        "SELECT table_name, check_name, failed_rows, requested_by FROM data_quality_results "
        "WHERE run_id = $1 ORDER BY table_name, check_name",
        uuid.UUID(body["run_id"]),
    )
    assert len(stored) == body["checks_run"] == 6
    assert {r["requested_by"] for r in stored} == {"pat"}
    agents = next(t for t in body["tables"] if t["table_name"] == "agents")
    assert {c["check_name"]: c["failed_rows"] for c in agents["checks"]} == {
        r["check_name"]: r["failed_rows"] for r in stored if r["table_name"] == "agents"
    }
    # the integration health shows the new run at once
    health = ok(client.get("/api/v1/integration/health/status", headers=viewer(client)))
    assert health["data_quality"]["run_id"] == body["run_id"] != seeded_run

    everything = ok(client.post(url, json={}, headers=admin(client)), 201)
    assert len(everything["tables"]) == db.fetchval("SELECT count(*) FROM wfm_quality_tables()")

    assert_russian(
        db,
        client.post(url, json={"tables": ["agents", "users"]}, headers=russian(planner(client))),
        404,
        "WFM_UNKNOWN_TABLE",
    )
    body = assert_problem(
        client.post(url, json={"tables": "agents"}, headers=planner(client)),
        400,
        "VALIDATION_ERROR",
    )
    assert pointers(body) == {"/tables": "type"}
    assert_problem(
        client.post(url, json={}, headers=viewer(client)), 403, "INSUFFICIENT_PERMISSIONS"
    )
    assert db.fetchval("SELECT count(DISTINCT run_id) FROM data_quality_results") == 3


# ---------------------------------------------------------------------------
# bulk operations and administration
# ---------------------------------------------------------------------------


@covers(BULK_EXPORT)
def test_bulk_export_streams_ndjson(client: EngineClient, db: DB) -> None:
    url = DB_API + "/bulk/export"
    h = planner(client)
    lines = ndjson(client.post(url, json={"table": " Agents "}, headers=h))
    expected = [
        json.loads(r["record"])
        for r in db.fetch(
            "SELECT (to_jsonb(a) - 'tenant_id')::text AS record FROM agents a "
            "WHERE tenant_id = 1 ORDER BY agent_id"
        )
    ]
    assert [line["record"] for line in lines] == expected and len(expected) == 13
    assert {tuple(line) for line in lines} == {("record",)}

    yesterday, _, _ = days(db)
    start, end = yesterday + dt.timedelta(hours=10), yesterday + dt.timedelta(hours=12)
    lines = ndjson(
        client.post(
            url,
            json={"table": "contact_statistics", "from": start.isoformat(), "to": end.isoformat()},
            headers=admin(client),
        )
    )
    assert len(lines) == 4 * 8  # four services, eight intervals
    assert {line["record"]["service_id"] for line in lines} == {1, 2, 3, 4}
    assert min(instants(line["record"]["interval_start"]) for line in lines) == start
    assert "tenant_id" not in lines[0]["record"]
    bank = ndjson(client.post(url, json={"table": "agents"}, headers=admin(client, tenant=2)))
    assert {line["record"]["agent_id"] for line in bank} == set(range(14, 21))

    body = assert_problem(
        client.post(url, json={"table": "users"}, headers=h), 400, "VALIDATION_ERROR"
    )
    assert pointers(body) == {"/table": "enum"}
    body = assert_problem(client.post(url, json={}, headers=h), 400, "VALIDATION_ERROR")
    assert pointers(body) == {"/table": "required"}
    assert_problem(
        client.post(url, json={"table": "agents"}, headers=viewer(client)),
        403,
        "INSUFFICIENT_PERMISSIONS",
    )


@covers(*BULK_PATH_IMPORTS)
def test_bulk_path_imports_take_ndjson_and_csv_records(client: EngineClient, db: DB) -> None:
    """One import through each bulk-path row; tests/test_wfm_bulk.py has the rest."""
    h = admin(client)
    _, _, tomorrow = days(db)
    bodies = {
        "contact_statistics": (
            "text/csv",
            f"service_id,interval_start,offered,answered\n1,{tomorrow.isoformat()},10,9\n",
        ),
        "agents": ("application/x-ndjson", '{"employee_number": "T1-0700", "full_name": "B"}\n'),
        "agent_activity": (
            "application/x-ndjson",
            f'{{"agent_id": 1, "activity_date": "{tomorrow.date()}", "calls_handled": 3}}\n',
        ),
        "work_schedules": (
            "text/csv",
            "agent_id,service_id,shift_start,shift_end\n"
            f"1,1,{tomorrow.isoformat()},{(tomorrow + dt.timedelta(hours=8)).isoformat()}\n",
        ),
    }
    for table, (media, text) in bodies.items():  # agents before the activity that names one
        response = client.post(
            f"{DB_API}/bulk/import/{table}",
            content=text.encode(),
            headers={**h, "Content-Type": media},
        )
        assert ok(response) == {"received": 1, "inserted": 1, "rejected": 0, "errors": []}, table
    assert_problem(
        client.post(
            BULK_PATH_IMPORTS[0][1],
            content=b'{"service_id": 5, "interval_start": "2031-01-01T00:00:00Z"}\n',
            headers={**h, "Content-Type": "application/x-ndjson"},
        ),
        422,
        "WFM_IMPORT_INVALID",
    )  # tenant 2's service


@covers(BULK_IMPORT, VALIDATE_TABLE, CONTACT_STATISTICS)
def test_bulk_import_upserts_and_is_seen_at_once(client: EngineClient, db: DB) -> None:
    url = DB_API + "/bulk/import"
    h = admin(client)
    before = ok(client.get(DB_API + "/validation/agents", headers=viewer(client)))  # cached
    assert before["failed_checks"] == 2

    body = ok(
        client.post(
            url,
            json={
                "table": "agents",
                "rows": [
                    {
                        "employee_number": "T1-0012",
                        "full_name": "Andrey Solovyov",
                        "email": "a.s@example.org",
                        "group_id": 1,
                    },
                    {
                        "employee_number": "T1-0100",
                        "full_name": "Nina New",
                        "email": "n.new@example.org",
                        "group_id": 2,
                        "primary_service_id": 1,
                        "weekly_hours": 30,
                    },
                ],
            },
            headers=h,
        )
    )
    assert body == {
        "table_name": "agents",
        "mode": "upsert",
        "received": 2,
        "inserted": 1,
        "updated": 1,
        "skipped": 0,
    }
    agent = db.fetchrow(
        "SELECT tenant_id, email, employment_type FROM agents WHERE employee_number = 'T1-0012'"
    )
    assert tuple(agent) == (1, "a.s@example.org", "contractor")  # fields left out are kept
    after = ok(client.get(DB_API + "/validation/agents", headers=viewer(client)))
    assert after["failed_checks"] == 0 and after["checked_rows"] == 14

    _, _, tomorrow = days(db)
    stats_url = DB_API + "/contact-statistics"
    period = {"from": tomorrow.isoformat(), "to": (tomorrow + dt.timedelta(hours=1)).isoformat()}
    assert page(client.get(stats_url, params=period, headers=viewer(client)))[0] == []
    body = ok(
        client.post(
            url,
            json={
                "table": "contact_statistics",
                "rows": [
                    {
                        "service_id": 1,
                        "interval_start": tomorrow.isoformat(),
                        "offered": 40,
                        "answered": 38,
                        "abandoned": 2,
                        "answered_within_threshold": 30,
                        "talk_seconds": 9000,
                        "hold_seconds": 500,
                        "wrap_seconds": 1900,
                        "wait_seconds": 600,
                    },
                ],
            },
            headers=h,
        )
    )
    assert body["inserted"] == 1
    data, _ = page(client.get(stats_url, params=period, headers=viewer(client)))
    assert [
        (d["service_id"], d["offered"], d["service_level_pct"], d["aht_seconds"]) for d in data
    ] == [(1, 40, 75, 300)]

    body = ok(
        client.post(
            url,
            json={
                "table": "agents",
                "mode": "insert",
                "rows": [{"employee_number": "T1-0001", "full_name": "Someone Else"}],
            },
            headers=h,
        )
    )
    assert (body["inserted"], body["skipped"]) == (0, 1)
    assert db.fetchval("SELECT full_name FROM agents WHERE agent_id = 1") == "Anna Ivanova"

    assert_problem(
        client.post(
            url, json={"table": "agents", "rows": [{"full_name": "x"}]}, headers=planner(client)
        ),
        403,
        "INSUFFICIENT_PERMISSIONS",
    )
    body = assert_problem(
        client.post(url, json={"table": "agents", "rows": {"a": 1}, "mode": "merge"}, headers=h),
        400,
        "VALIDATION_ERROR",
    )
    assert pointers(body) == {"/rows": "type", "/mode": "enum"}
    body = assert_russian(
        db,
        client.post(
            url, json={"table": "agents", "rows": [{"full_name": "No Number"}]}, headers=russian(h)
        ),
        422,
        "WFM_IMPORT_INVALID",
    )
    assert body["detail"] == "Row 1 has no employee_number"
    body = assert_problem(
        client.post(
            url,
            json={
                "table": "contact_statistics",
                "rows": [{"service_id": 5, "interval_start": tomorrow.isoformat(), "offered": 1}],
            },
            headers=h,
        ),
        422,
        "WFM_IMPORT_INVALID",
    )
    assert "service 5 not found" in body["detail"]
    assert_problem(
        client.post(
            url,
            json={
                "table": "contact_statistics",
                "rows": [{"service_id": 1, "interval_start": tomorrow.isoformat(), "offered": -1}],
            },
            headers=h,
        ),
        422,
        "CONSTRAINT_VIOLATION",
    )
    assert db.fetchval("SELECT count(*) FROM agents WHERE tenant_id = 1") == 14


@covers(CLEANUP)
def test_maintenance_cleanup_dry_run_then_delete(client: EngineClient, db: DB) -> None:
    url = DB_API + "/maintenance/cleanup"
    h = admin(client)
    for log_id, tenant, connection in ((7001, 1, 1), (7002, 1, 2), (7003, 2, 5)):
        db.execute(
            "INSERT INTO integration_logs (log_id, tenant_id, connection_id, correlation_id, "
            "event_type, message, created_at) VALUES ($1, $2, $3, gen_random_uuid(), 'auth', "
            "'old', now() - INTERVAL '200 days')",
            log_id,
            tenant,
            connection,
        )
    db.execute(
        "UPDATE realtime_alerts SET triggered_at = now() - INTERVAL '120 days', "
        "resolved_at = now() - INTERVAL '119 days' WHERE alert_event_id = 4"
    )
    logs_before = db.fetchval("SELECT count(*) FROM integration_logs")

    dry = ok(client.post(url, json={"dry_run": True}, headers=h))
    assert dry["dry_run"] is True and dry["retention_days"] == 90
    assert dry["deleted"]["integration_logs"] == 2 and dry["deleted"]["realtime_alerts"] == 1
    assert dry["total"] == sum(dry["deleted"].values()) == 3
    assert "contact_statistics" not in dry["deleted"]  # only when asked
    assert db.fetchval("SELECT count(*) FROM integration_logs") == logs_before

    done = ok(client.post(url, json={"retention_days": 90}, headers=h))
    assert done["deleted"] == dry["deleted"] and done["dry_run"] is False
    assert db.fetchval("SELECT count(*) FROM integration_logs") == logs_before - 2
    assert db.fetchval("SELECT count(*) FROM integration_logs WHERE log_id = 7003") == 1
    assert db.fetchval("SELECT count(*) FROM realtime_alerts WHERE alert_event_id = 4") == 0

    assert_problem(
        client.post(url, json={"dry_run": True}, headers=planner(client)),
        403,
        "INSUFFICIENT_PERMISSIONS",
    )
    body = assert_problem(
        client.post(url, json={"retention_days": 3, "statistics_retention_days": 30}, headers=h),
        400,
        "VALIDATION_ERROR",
    )
    assert pointers(body) == {"/retention_days": "minimum", "/statistics_retention_days": "minimum"}


@covers(SCHEMA_INFO)
def test_schema_info_describes_the_domain_tables(client: EngineClient, db: DB) -> None:
    url = DB_API + "/schema/info"
    data = ok(client.get(url, headers=viewer(client)))
    tables = db.fetchval("SELECT wfm_domain_tables()")
    assert [d["table_name"] for d in data] == list(tables)
    by_name = {d["table_name"]: d for d in data}
    columns = [
        r["column_name"]
        for r in db.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'services' "
            "ORDER BY ordinal_position"
        )
    ]
    services = by_name["services"]
    assert [c["name"] for c in services["columns"]] == columns
    assert services["column_count"] == len(columns) and services["primary_key"] == ["service_id"]
    assert by_name["contact_statistics"]["primary_key"] == ["service_id", "interval_start"]
    assert {c["name"]: c["generated"] for c in by_name["contact_statistics"]["columns"]}[
        "aht_seconds"
    ] is True
    assert services["description"].startswith("Contact-centre services")
    assert all(d["total_bytes"] > 0 for d in data)

    assert_problem(client.get(url), 401, "AUTHENTICATION_REQUIRED")
    assert_problem(
        client.get(url, headers={"Authorization": "Bearer not-a-token"}), 401, "INVALID_TOKEN"
    )


# ---------------------------------------------------------------------------
# performance monitoring (seeds-docs/001)
# ---------------------------------------------------------------------------


@covers(REALTIME_METRICS)
def test_realtime_metrics_six_key_figures_with_lights(client: EngineClient, db: DB) -> None:
    url = "/api/v1/performance/metrics/realtime"
    h = viewer(client)
    data = ok(client.get(url, headers=h))
    six = {
        "operators_online_pct",
        "load_deviation_pct",
        "agents_short",
        "service_level_pct",
        "acd_rate_pct",
        "aht_seconds",
    }
    assert {d["metric_name"] for d in data} <= six
    assert data[0]["service_id"] is None  # the centre first
    by_key = {(d["service_id"], d["metric_name"]): d for d in data}

    today = db.fetchval("SELECT date_trunc('day', now(), 'UTC')")
    figures = db.fetch(
        "SELECT service_id, round(100.0 * sum(answered) / sum(offered), 2) AS acd, "
        "round(sum(talk_seconds + hold_seconds + wrap_seconds)::numeric / sum(answered), 2) AS aht "
        "FROM contact_statistics WHERE tenant_id = 1 AND interval_start >= $1 "
        "GROUP BY GROUPING SETS ((service_id), ()) HAVING sum(answered) > 0",
        today,
    )
    for f in figures:
        acd = by_key[(f["service_id"], "acd_rate_pct")]
        assert acd["metric_value"] == float(f["acd"])
        assert acd["status"] == light("higher_is_better", acd["metric_value"], 95, 90)
        assert by_key[(f["service_id"], "aht_seconds")]["metric_value"] == float(f["aht"])
    # the previous value of the trend arrow: the latest snapshot of the metric
    previous = {
        r["service_id"]: float(r["metric_value"])
        for r in db.fetch(
            "SELECT service_id, metric_value FROM operational_metrics WHERE tenant_id = 1 "
            "AND metric_name = 'aht_seconds'"
        )
    }
    for (service, metric), d in by_key.items():
        if metric == "aht_seconds" and service in previous:
            assert d["previous_value"] == previous[service]
            expected = (
                "up"
                if d["metric_value"] > previous[service]
                else "down"
                if d["metric_value"] < previous[service]
                else "flat"
            )
            assert d["trend"] == expected
    short = by_key.get((None, "agents_short"))
    assert short is not None and short["unit"] == "count"

    support = ok(client.get(url, params={"service_id": 1}, headers=h))
    assert support and {d["service_id"] for d in support} == {1}

    assert_russian(
        db,
        client.get(url, params={"service_id": 5}, headers=russian(h)),
        404,
        "WFM_SERVICE_NOT_FOUND",
    )
    body = assert_problem(
        client.get(url, params={"service_id": "one"}, headers=h), 400, "INVALID_PARAMETER"
    )
    assert [e["parameter"] for e in body["errors"]] == ["service_id"]


@covers(SLA_COMPLIANCE)
def test_sla_compliance_80_20_and_own_targets(client: EngineClient, db: DB) -> None:
    url = "/api/v1/performance/sla/compliance"
    h = viewer(client)
    yesterday, today, _ = days(db)
    period = {"from": yesterday.isoformat(), "to": today.isoformat()}
    data = ok(client.get(url, params=period, headers=h))
    assert [d["service_id"] for d in data] == [1, 2, 3, 4]
    sums = {
        r["service_id"]: r
        for r in db.fetch(
            "SELECT service_id, sum(offered) AS offered, "
            "sum(LEAST(answered_within_20s, offered)) AS w20, "
            "round(sum(LEAST(answered_within_20s, offered))::numeric / sum(offered), 4) AS level, "
            "sum(LEAST(answered_within_20s, offered))::numeric / sum(offered) >= 0.8 AS compliant, "
            "round(sum(LEAST(answered_within_threshold, offered))::numeric / sum(offered), 4) "
            "AS own, count(*) FILTER (WHERE offered > 0) AS intervals "
            "FROM contact_statistics WHERE tenant_id = 1 AND interval_start >= $1 "
            "AND interval_start < $2 GROUP BY service_id",
            yesterday,
            today,
        )
    }
    for d in data:
        s = sums[d["service_id"]]
        level = s["level"]
        assert d["sla_format"] == "80/20" and (d["threshold_seconds"], d["target"]) == (20, 0.8)
        assert (d["offered"], d["answered_within_threshold"]) == (s["offered"], s["w20"])
        assert d["service_level"] == float(level) and d["compliant"] is s["compliant"]
        assert d["intervals"] == s["intervals"] and d["compliant_intervals"] <= d["intervals"]
        green, yellow = (85, 75) if d["service_id"] == 3 else (80, 70)
        assert d["status"] == light("higher_is_better", round(100 * float(level), 2), green, yellow)

    own = {
        d["service_id"]: d
        for d in ok(client.get(url, params={**period, "own_targets": "true"}, headers=h))
    }
    assert own[3]["sla_format"] == "85/30" and own[4]["sla_format"] == "80/60"
    assert own[3]["service_level"] == float(sums[3]["own"])
    tight = ok(
        client.get(url, params={**period, "threshold_seconds": 10, "target": 0.9}, headers=h)
    )
    assert {d["sla_format"] for d in tight} == {"90/10"}
    assert all(t["service_level"] <= d["service_level"] for t, d in zip(tight, data, strict=True))

    body = assert_russian(
        db,
        client.get(url, params={**period, "threshold_seconds": 25}, headers=russian(h)),
        400,
        "WFM_UNSUPPORTED_SL_THRESHOLD",
    )
    assert "BILLING" in body["detail"]
    body = assert_problem(
        client.get(url, params={**period, "target": 1.5}, headers=h), 400, "VALIDATION_ERROR"
    )
    assert pointers(body) == {"/target": "maximum"}
    assert_problem(
        client.get(url, params={"from": period["to"], "to": period["from"]}, headers=h),
        400,
        "WFM_INVALID_DATE_RANGE",
    )


@covers(CONFIGURE_ALERTS, PERFORMANCE_METRICS)
def test_configure_alerts_changes_the_traffic_lights(client: EngineClient, db: DB) -> None:
    url = "/api/v1/performance/alerts/configure"
    h = planner(client)
    yesterday, today, _ = days(db)
    metrics_url = DB_API + "/performance-metrics"
    period = {"from": yesterday.isoformat(), "to": today.isoformat()}

    def centre_level() -> dict[str, Any]:
        data = ok(client.get(metrics_url, params=period, headers=viewer(client)))
        return next(
            d for d in data if d["service_id"] is None and d["metric_name"] == "service_level_pct"
        )

    before = centre_level()
    assert before["status"] == light("higher_is_better", before["metric_value"], 80, 70)

    created = ok(
        client.post(
            url,
            json={
                "metric_name": " Adherence_PCT ",
                "green_threshold": 92,
                "yellow_threshold": 85,
                "notification_channels": ["email", "sms"],
            },
            headers=h,
        )
    )
    assert created["created"] is True and created["predictive"] is None
    assert created["threshold"]["metric_name"] == "adherence_pct"
    row = db.fetchrow(
        "SELECT green_threshold, yellow_threshold, notification_channels, "
        "updated_by FROM threshold_alerts WHERE tenant_id = 1 "
        "AND metric_name = 'adherence_pct'"
    )
    assert tuple(row) == (Decimal("92.00"), Decimal("85.00"), ["email", "sms"], "pat")

    # tighten the tenant-wide service level thresholds, with a predictive alert
    updated = ok(
        client.post(
            url,
            json={
                "metric_name": "service_level_pct",
                "green_threshold": 99.5,
                "yellow_threshold": 99,
                "predictive": {"horizon_minutes": 30, "min_confidence_pct": 80},
            },
            headers=admin(client),
        )
    )
    assert updated["created"] is False and updated["threshold"]["alert_id"] == 1
    assert updated["threshold"]["notification_channels"] == ["dashboard", "email"]  # kept
    predictive = db.fetchrow(
        "SELECT horizon_minutes, min_confidence_pct, accuracy_target_pct "
        "FROM predictive_alerts WHERE tenant_id = 1 "
        "AND metric_name = 'service_level_pct' AND service_id IS NULL"
    )
    assert tuple(predictive) == (30, Decimal("80.00"), Decimal("85.00"))
    after = centre_level()  # the cached read was dropped by the write
    assert after["metric_value"] == before["metric_value"]
    assert after["status"] == light("higher_is_better", after["metric_value"], 99.5, 99)

    body = assert_russian(
        db,
        client.post(
            url,
            json={
                "metric_name": "service_level_pct",
                "green_threshold": 70,
                "yellow_threshold": 80,
            },
            headers=russian(h),
        ),
        422,
        "WFM_INVALID_THRESHOLDS",
    )
    assert "better when higher" in body["detail"]
    assert_problem(
        client.post(
            url,
            json={"metric_name": "happiness", "green_threshold": 1, "yellow_threshold": 2},
            headers=h,
        ),
        422,
        "WFM_UNKNOWN_METRIC",
    )
    assert_problem(
        client.post(
            url,
            json={
                "metric_name": "aht_seconds",
                "green_threshold": 300,
                "yellow_threshold": 400,
                "service_id": 5,
            },
            headers=h,
        ),
        404,
        "WFM_SERVICE_NOT_FOUND",
    )
    body = assert_problem(
        client.post(
            url,
            json={
                "metric_name": "aht seconds",
                "yellow_threshold": 400,
                "escalation_minutes": 0,
                "notification_channels": ["pager"],
                "predictive": {"horizon_minutes": 5, "colour": "red"},
            },
            headers=h,
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert pointers(body) == {
        "/green_threshold": "required",
        "/metric_name": "pattern",
        "/escalation_minutes": "minimum",
        "/notification_channels/0": "enum",
        "/predictive/horizon_minutes": "minimum",
        "/predictive/colour": "additionalProperties",
    }
    assert_problem(
        client.post(
            url,
            json={"metric_name": "aht_seconds", "green_threshold": 1, "yellow_threshold": 2},
            headers=viewer(client),
        ),
        403,
        "INSUFFICIENT_PERMISSIONS",
    )


@covers(EXECUTIVE_DASHBOARD)
def test_executive_dashboard_totals_services_and_alerts(client: EngineClient, db: DB) -> None:
    url = "/api/v1/performance/dashboard/executive"
    h = viewer(client)
    yesterday, today, _ = days(db)
    body = ok(
        client.get(url, params={"from": yesterday.isoformat(), "to": today.isoformat()}, headers=h)
    )
    totals = db.fetchrow(
        "SELECT sum(offered) AS offered, sum(abandoned) AS abandoned, "
        "round(100.0 * sum(LEAST(answered_within_threshold, offered)) / sum(offered), 2) AS sl "
        "FROM contact_statistics WHERE tenant_id = 1 AND interval_start >= $1 "
        "AND interval_start < $2",
        yesterday,
        today,
    )
    assert instants(body["period"]) == {"from": yesterday, "to": today}
    assert body["totals"]["offered"] == totals["offered"]
    assert body["totals"]["abandoned"] == totals["abandoned"]
    assert body["totals"]["service_level_pct"] == float(totals["sl"])
    assert [s["service_id"] for s in body["services"]] == [1, 2, 3, 4]
    assert body["benchmark"]["services_with_calls"] == 4
    levels = {s["service_id"]: s["service_level_pct"] for s in body["services"]}
    assert body["benchmark"]["best_service_id"] == max(levels, key=lambda k: (levels[k], -k))
    alerts = db.fetchrow(
        "SELECT count(*) FILTER (WHERE level = 'red') AS red, "
        "count(*) FILTER (WHERE level = 'yellow') AS yellow FROM realtime_alerts "
        "WHERE tenant_id = 1 AND resolved_at IS NULL"
    )
    assert (body["alerts"]["open_red"], body["alerts"]["open_yellow"]) == tuple(alerts)
    for s in body["services"]:
        if s["agents_required"] is not None:
            assert s["balance"] == s["agents_working"] - s["agents_required"]

    default = ok(client.get(url, headers=h))  # the UTC day so far
    assert instants(default["period"]["from"]) == today
    bank = ok(
        client.get(
            url,
            params={"from": yesterday.isoformat(), "to": today.isoformat()},
            headers=viewer(client, tenant=2),
        )
    )
    assert [s["service_id"] for s in bank["services"]] == [5, 6, 7]

    assert_russian(
        db,
        client.get(
            url, params={"from": today.isoformat(), "to": yesterday.isoformat()}, headers=russian(h)
        ),
        400,
        "WFM_INVALID_DATE_RANGE",
    )
    body = assert_problem(
        client.get(url, params={"from": "last week"}, headers=h), 400, "INVALID_PARAMETER"
    )
    assert [e["parameter"] for e in body["errors"]] == ["from"]


@covers(CAPACITY)
def test_capacity_analysis_from_postgres_statistics(client: EngineClient, db: DB) -> None:
    url = "/api/v1/performance/capacity/analysis"
    body = ok(client.get(url, headers=viewer(client)))
    assert body["database"] == db.fetchval("SELECT current_database()")
    assert body["connections"]["max_connections"] == int(db.fetchval("SHOW max_connections"))
    assert body["connections"]["in_use"] >= 1
    largest = body["storage"]["largest_tables"]
    tables = set(db.fetchval("SELECT wfm_domain_tables()"))
    assert 0 < len(largest) <= 10 and {t["table_name"] for t in largest} <= tables
    assert largest == sorted(largest, key=lambda t: (-t["total_bytes"], t["table_name"]))
    assert 0 <= body["cache"]["hit_ratio_pct"] <= 100
    assert set(body["settings"]) == {
        "shared_buffers",
        "work_mem",
        "maintenance_work_mem",
        "effective_cache_size",
    }
    assert all(r["metric_name"].startswith("db_") for r in body["recommendations"])

    assert_problem(client.get(url), 401, "AUTHENTICATION_REQUIRED")


@covers(SUGGEST)
def test_optimization_suggestions_from_the_rules(client: EngineClient, db: DB) -> None:
    url = "/api/v1/performance/optimization/suggest"
    h = viewer(client)  # read-only: any authenticated caller
    yesterday, today, _ = days(db)
    period = {"period_start": yesterday.isoformat(), "period_end": today.isoformat()}
    body = ok(client.post(url, json={**period, "include_database": False}, headers=h))
    expected = rows(
        db,
        "SELECT priority, rule_code, category, service_id, metric_name, metric_value, "
        "cost_impact FROM wfm_optimization_suggestions(1, $1, $2) "
        "WHERE metric_name NOT LIKE 'db\\_%' ORDER BY priority, service_id NULLS FIRST, "
        "rule_code, metric_name",
        yesterday,
        today,
    )
    assert [{k: s[k] for k in expected[0]} for s in body["suggestions"]] == expected
    # every suggestion is a rule that fires on the metric's value
    rules = {r["rule_code"]: r for r in db.fetch("SELECT * FROM optimization_rules")}
    for s in body["suggestions"]:
        rule = rules[s["rule_code"]]
        value, threshold = Decimal(str(s["metric_value"])), rule["threshold_value"]
        assert {
            "<": value < threshold,
            ">": value > threshold,
            "<=": value <= threshold,
            ">=": value >= threshold,
        }[rule["comparison"]]
        assert s["labor_compliance_note"] == rule["labor_compliance_note"]
    summary = body["summary"]
    assert summary["suggestions"] == len(expected) == sum(summary["by_category"].values())
    assert summary["labor_review_needed"] == sum(
        1 for s in body["suggestions"] if s["labor_compliance_note"]
    )
    assert instants(body["period_start"]) == yesterday

    some = ok(
        client.post(
            url,
            json={**period, "categories": ["scheduling"], "max_priority": 2, "service_id": 1},
            headers=h,
        )
    )
    assert all(
        s["category"] == "scheduling" and s["priority"] <= 2 and s["service_id"] == 1
        for s in some["suggestions"]
    )
    with_db = ok(client.post(url, json=period, headers=h))
    assert with_db["summary"]["suggestions"] >= summary["suggestions"]

    body = assert_problem(
        client.post(url, json={"categories": ["magic"], "max_priority": 9}, headers=h),
        400,
        "VALIDATION_ERROR",
    )
    assert pointers(body) == {"/categories/0": "enum", "/max_priority": "maximum"}
    assert_russian(
        db,
        client.post(url, json={"service_id": 5}, headers=russian(h)),
        404,
        "WFM_SERVICE_NOT_FOUND",
    )
    assert_problem(
        client.post(
            url,
            json={"period_start": period["period_end"], "period_end": period["period_start"]},
            headers=h,
        ),
        400,
        "WFM_INVALID_DATE_RANGE",
    )
