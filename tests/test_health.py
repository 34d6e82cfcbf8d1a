"""/health/live and /health/ready: a probe on a connection of its own, not the pools."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
from starlette.applications import Starlette

from engine import health
from engine.catalog import CatalogManager
from engine.endpoint import request_id_of
from engine.health import Probe
from tests.engine_server import EngineClient, RunningEngine
from tests.faults import OwnServer
from tests.helpers import ADMIN_TOKEN, add_endpoint, assert_problem, poll, serve
from tests.pg import DB


def test_live_and_ready(db, client) -> None:
    live = client.get("/health/live")
    assert live.status_code == 200 and live.json() == {"status": "alive"}
    assert live.headers["cache-control"] == "no-store"
    ready = client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready" and "reasons" not in body
    assert body["catalog_generation"] >= 1
    assert body["database"]["ok"] is True and body["database"]["latency_ms"] >= 0
    assert body["routes_not_serving"] == 0
    assert client.head("/health/ready").status_code == 200
    assert client.get("/_engine/health").status_code == 200  # still there


@contextlib.contextmanager
def every_pool_connection_held(engine: RunningEngine) -> Iterator[None]:
    """Every connection of the read and the write pool is taken, as by busy requests."""
    pools = engine.services.db.read, engine.services.db.write
    held: list[tuple[Any, asyncpg.Connection]] = []

    async def hold() -> None:
        for pool in pools:
            for _ in range(pool.get_max_size()):
                held.append((pool, await pool.acquire(timeout=5)))

    async def release() -> None:
        await asyncio.gather(*(pool.release(conn) for pool, conn in held))

    engine.run(hold())
    try:
        yield
    finally:
        engine.run(release())


def test_ready_answers_while_every_pool_connection_is_held(db, make_client) -> None:
    add_endpoint(db, "/one", "GET", "SELECT 1 AS one", result={"shape": "scalar"})
    client = make_client(pool_max_size=2)
    with every_pool_connection_held(client.engine):
        # a pool acquire would wait ACQUIRE_TIMEOUT_S (10 s): these answer at once
        ready = client.get("/health/ready", timeout=5)
        assert ready.status_code == 200, ready.text
        assert ready.json()["database"]["ok"] is True
        assert client.get("/health/live", timeout=5).status_code == 200
    assert client.get("/one").status_code == 200


ENGINE_HEALTH_FIELDS = {
    "status",
    "database",
    "endpoints",
    "problems",
    "routes_not_serving",
    "rows",
    "schema_changes_watched",
    "catalog_generation",
    "counters",
}


def test_engine_health_says_ok_while_the_read_pool_is_busy(make_client) -> None:
    client = make_client(pool_max_size=2)
    assert set(client.get("/_engine/health").json()) == ENGINE_HEALTH_FIELDS
    with every_pool_connection_held(client.engine):
        # a busy pool is not a database down: the dedicated probe answers
        response = client.get("/_engine/health", timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "ok" and body["database"] == "ok", body
        assert set(body) == ENGINE_HEALTH_FIELDS


def test_engine_health_follows_the_probe_when_the_database_is_down(
    own_server: OwnServer, make_client
) -> None:
    client = make_client(own_server.url)
    assert client.get("/_engine/health").json()["database"] == "ok"
    own_server.stop()
    try:
        down = client.wait_for("GET", "/_engine/health", 503, timeout_s=15)
        assert down.status_code == 503, down.text
        body = down.json()
        assert body["status"] == "degraded" and body["database"] == "unavailable"
        assert down.headers["retry-after"]
        assert set(body) == ENGINE_HEALTH_FIELDS
    finally:
        own_server.start()
    assert client.wait_for("GET", "/_engine/health", 200, timeout_s=15).status_code == 200


def _waiting_on_pool_figures(db: DB) -> int:
    """Backends of the test database waiting for a lock on database_connection_pool."""
    return db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO database_connection_pool%'"
    )


def test_ready_never_waits_behind_the_pool_figures_writes(db: DB, db_url: str, make_client) -> None:
    client = make_client(pool_stats_interval_s=1)
    engine = client.engine
    probe: Probe = engine.app.state.probe
    locker: asyncpg.Connection = engine.run(asyncpg.connect(db_url))
    try:
        engine.run(locker.execute("BEGIN"))
        engine.run(locker.execute("LOCK TABLE database_connection_pool IN ACCESS EXCLUSIVE MODE"))
        # the figures job's write is stuck behind the lock (for up to WRITE_TIMEOUT_S) ...
        poll(lambda: _waiting_on_pool_figures(db), bool, "a figures write waiting", 15)
        # ... and the job's own probe is too old to be reused: ready must probe now
        poll(
            lambda: time.monotonic() - probe.last.at if probe.last else 0.0,
            lambda age: age > probe.reuse_s,
            "the last probe older than its reuse time",
        )
        started = time.perf_counter()
        ready = client.get("/health/ready", timeout=health.WRITE_TIMEOUT_S * 2)
        took_ms = (time.perf_counter() - started) * 1000
        assert _waiting_on_pool_figures(db) >= 1  # the write was still stuck meanwhile
    finally:
        engine.run(locker.close())  # its transaction ends: the figures go through
    assert ready.status_code == 200, ready.text
    database = ready.json()["database"]
    assert database["ok"] is True
    assert took_ms < health.PROBE_TIMEOUT_S * 1000, took_ms  # within its own probe timeout
    assert database["latency_ms"] <= took_ms  # what it measured is what the client waited


ENGINE_PATHS = ("/health/live", "/health/ready", "/_engine/health", "/_engine/catalog")


def test_other_methods_on_the_engines_own_paths_are_405(db: DB, make_client) -> None:
    # a row at a reserved path never takes it over
    add_endpoint(db, "/health/live", method="POST", sql="SELECT 'the row answered' AS who")
    client = serve(make_client)
    for path in ENGINE_PATHS:
        for method in ("POST", "PUT", "PATCH", "DELETE", "PROPFIND"):  # OPTIONS: engine.cors
            response = client.request(method, path)
            body = assert_problem(response, 405, "METHOD_NOT_ALLOWED")
            assert response.headers["allow"] == "GET, HEAD", (method, path)
            assert body["instance"] == path
            assert "the row answered" not in response.text
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert client.get(path, headers=headers).status_code == 200, path
        assert client.head(path, headers=headers).status_code == 200, path


def test_the_admin_token_scheme_is_case_insensitive(make_client) -> None:
    client = serve(make_client)
    for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
        response = client.get(
            "/_engine/catalog", headers={"Authorization": f"{scheme} {ADMIN_TOKEN}"}
        )
        assert response.status_code == 200, (scheme, response.text)
    for header in (
        ADMIN_TOKEN,
        f"Basic {ADMIN_TOKEN}",
        f"Bearer {ADMIN_TOKEN}x",
        f"Bearer {ADMIN_TOKEN[:-1]}",
        "Bearer",
        "Bearer:" + ADMIN_TOKEN,
    ):
        refused = client.get("/_engine/catalog", headers={"Authorization": header})
        assert_problem(refused, 401, "INVALID_TOKEN")
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert ADMIN_TOKEN not in refused.text


# --- every problem answer of the engine's own paths carries the request's id ----------

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
FROM_TRACE = request_id_of({"traceparent": TRACEPARENT})  # as the catalogue's answers say
METRICS_TOKEN = "metrics-token-for-tests"

OWN_PROBLEMS = (
    ("GET", "/_engine/catalog", 401, "INVALID_TOKEN"),
    ("GET", "/metrics", 401, "INVALID_TOKEN"),
    ("GET", "/docs/no-such-file.js", 404, "ROUTE_NOT_FOUND"),
    *(
        (method, path, 405, "METHOD_NOT_ALLOWED")
        for method, path in (
            ("POST", "/health/live"),
            ("PUT", "/health/ready"),
            ("DELETE", "/_engine/health"),
            ("PATCH", "/_engine/catalog"),
            ("POST", "/metrics"),
            ("POST", "/docs"),
            ("POST", "/docs/swagger-ui.css"),
            ("POST", "/openapi.json"),
        )
    ),
)


def _assert_ids(client: EngineClient, method: str, path: str, status: int, code: str) -> None:
    given = "client-req.42:a_b"
    cases: list[tuple[dict[str, str], str | None]] = [
        ({"X-Request-ID": given}, given),
        ({"X-Request-ID": given, "traceparent": TRACEPARENT}, given),  # the client's id wins
        ({}, None),  # none given: a new one
    ]
    cases.append(({"traceparent": TRACEPARENT}, FROM_TRACE))
    cases.append(({"X-Request-ID": "not well formed!", "traceparent": TRACEPARENT}, FROM_TRACE))
    for headers, expected in cases:
        response = client.request(method, path, headers=headers)
        body = assert_problem(response, status, code)
        where = (method, path, headers)
        assert body["request_id"] == response.headers["x-request-id"], where
        if expected is not None:
            assert body["request_id"] == expected, where
        assert body["instance"] == path, where


def test_every_own_problem_carries_the_request_id(make_client) -> None:
    client = serve(make_client, metrics_token=METRICS_TOKEN)
    for method, path, status, code in OWN_PROBLEMS:
        _assert_ids(client, method, path, status, code)


def test_the_admin_report_switched_off_carries_the_request_id(client) -> None:
    _assert_ids(client, "GET", "/_engine/catalog", 404, "ROUTE_NOT_FOUND")


def test_concurrent_checks_share_one_probe(db_url: str) -> None:
    async def go() -> tuple[list[health.ProbeResult], int]:
        probe = Probe(db_url)
        try:
            results = await asyncio.gather(*(probe.check() for _ in range(20)))
            return list(results), probe.probes
        finally:
            await probe.stop()

    results, probes = asyncio.run(go())
    assert probes == 1 and all(r.ok for r in results)


def test_not_ready_before_the_catalogue_is_loaded(db_url: str) -> None:
    app = Starlette(routes=health.routes)

    class Services:
        catalogs = CatalogManager(None)  # type: ignore[arg-type]  # generation 0, nothing loaded

    app.state.services = Services()

    async def go() -> httpx.Response:
        app.state.probe = Probe(db_url)
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://engine") as c:
                return await c.get("/health/ready")
        finally:
            await app.state.probe.stop()

    response = asyncio.run(go())
    assert response.status_code == 503
    assert response.headers["retry-after"]
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["reasons"] == ["catalogue not loaded"]
    assert body["database"]["ok"] is True


# ---------------------------------------------------------------------------
# A PostgreSQL of the test's own, stopped and started again
# ---------------------------------------------------------------------------


def test_ready_follows_the_database_down_and_back(own_server: OwnServer, make_client) -> None:
    client = make_client(own_server.url)
    assert client.get("/health/ready").status_code == 200
    own_server.stop()
    down = client.wait_for("GET", "/health/ready", 503, timeout_s=15)
    assert down.status_code == 503, down.text
    body = down.json()
    assert body["status"] == "not_ready"
    assert any(r.startswith("database unreachable") for r in body["reasons"]), body
    assert body["database"]["ok"] is False and body["database"]["error"]
    assert down.headers["retry-after"]
    assert client.get("/health/live").status_code == 200
    own_server.start()
    back = client.wait_for("GET", "/health/ready", 200, timeout_s=15)
    assert back.status_code == 200, back.text
    assert back.json()["database"]["ok"] is True
