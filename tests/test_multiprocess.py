"""Several engine processes: a shared rate limit through Redis, invalidations and revocations via NOTIFY."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from engine import keys
from tests.engine_server import JWT_SECRET, free_port
from tests.helpers import add_endpoint, add_item_rename, poll, wait_status

REDIS = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(
    REDIS is None, reason="redis-server is not installed (.ci/run installs Debian's redis-server)"
)


@pytest.fixture()
def redis_url() -> Iterator[str]:
    port = free_port()
    folder = tempfile.mkdtemp(prefix="engine-redis-")
    proc = subprocess.Popen(
        [
            REDIS,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            folder,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                import socket

                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


class Engine:
    """`python -m engine serve` in its own process."""

    def __init__(self, database_url: str, redis_url: str) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
        env.update(
            DATABASE_URL=database_url,
            ENGINE_REDIS_URL=redis_url,
            ENGINE_JWT_SECRET=JWT_SECRET,
            ENGINE_PORT=str(self.port),
            ENGINE_LOG_LEVEL="WARNING",
            ENGINE_RELOAD_DEBOUNCE_MS="20",
        )
        self.proc = subprocess.Popen([sys.executable, "-m", "engine", "serve"], env=env)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.http.get("/_engine/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("engine process did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        self.http.close()
        self.proc.terminate()
        self.proc.wait(15)


@pytest.fixture()
def two_engines(db, db_url, redis_url) -> Iterator[tuple[Engine, Engine]]:
    db.execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL); INSERT INTO items VALUES (1, 'one')"
    )
    add_endpoint(
        db, "/limited", "GET", "SELECT 1 AS v", [], {"shape": "scalar"}, rate_limit_per_minute=4
    )
    add_endpoint(
        db,
        "/items/{id}",
        "GET",
        "SELECT id, name FROM items WHERE id = $1",
        [{"name": "id", "in": "path", "type": "integer"}],
        {"shape": "object"},
        target_table="items",
        cache_enabled=True,
        cache_ttl_seconds=300,
    )
    add_item_rename(db)
    add_endpoint(
        db,
        "/whoami",
        "GET",
        "SELECT $1::text AS sub",
        [{"name": "sub", "in": "auth", "type": "string"}],
        {"shape": "scalar"},
        requires_auth=True,
    )
    engines = (Engine(db_url, redis_url), Engine(db_url, redis_url))
    try:
        yield engines
    finally:
        for engine in engines:
            engine.stop()


def test_the_rate_limit_is_shared_through_redis(two_engines):
    a, b = two_engines
    answers = [e.http.get("/limited") for e in (a, b, a, b)]
    assert [r.status_code for r in answers] == [200, 200, 200, 200]
    assert [r.headers["ratelimit-remaining"] for r in answers] == ["3", "2", "1", "0"]
    over = a.http.get("/limited")  # only the third call on a: the limit is shared
    assert over.status_code == 429 and over.json()["code"] == "RATE_LIMIT_EXCEEDED"
    assert b.http.get("/limited").status_code == 429


def test_a_write_in_one_process_invalidates_the_cache_of_the_other(two_engines):
    a, b = two_engines
    assert b.http.get("/items/1").json()["name"] == "one"
    assert b.http.get("/items/1").headers["x-cache"] == "HIT"
    assert a.http.put("/items/1", json={"name": "uno"}).status_code == 200
    deadline = time.monotonic() + 5
    while b.http.get("/items/1").json()["name"] != "uno" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b.http.get("/items/1").json()["name"] == "uno"


def test_a_revoked_key_is_refused_by_every_process(two_engines, db_url):
    async def make() -> str:
        conn = await asyncpg.connect(db_url)
        try:
            return await keys.create_key(conn, "shared-bot", roles=["reader"])
        finally:
            await conn.close()

    key = asyncio.run(make())
    for engine in two_engines:
        deadline = time.monotonic() + 5
        while engine.http.get("/whoami", headers={"X-API-Key": key}).status_code != 200:
            assert time.monotonic() < deadline, "the new key never became usable"
            time.sleep(0.05)
        assert engine.http.get("/whoami", headers={"X-API-Key": key}).json() == "key:shared-bot"
    result = subprocess.run(
        [sys.executable, "-m", "engine", "keys", "revoke", "shared-bot"],
        env={**os.environ, "DATABASE_URL": db_url, "ENGINE_LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for engine in two_engines:
        deadline = time.monotonic() + 5
        while engine.http.get("/whoami", headers={"X-API-Key": key}).status_code != 401:
            assert time.monotonic() < deadline, "the revoked key still works"
            time.sleep(0.05)


def test_every_process_converges_on_each_edit_and_keeps_the_last_good_version(two_engines, db):
    mid = db.fetchval(
        "SELECT id FROM api_endpoint_mappings WHERE endpoint_path = '/items/{id}' "
        "AND http_method = 'GET'"
    )
    for engine in two_engines:
        assert engine.http.get("/items/1").json() == {"id": 1, "name": "one"}
    db.execute(
        "UPDATE api_endpoint_mappings SET query_template = "
        "'SELECT id, upper(name) AS name FROM items WHERE id = $1' WHERE id = $1",
        mid,
    )
    for engine in two_engines:
        poll(
            lambda e=engine: e.http.get("/items/1").json()["name"],
            lambda name: name == "ONE",
            "every process serving the edit",
        )
    db.execute(
        "UPDATE api_endpoint_mappings SET query_template = 'SELEC broken' WHERE id = $1", mid
    )
    wait_status(db, mid, "stale")
    for engine in two_engines:
        assert engine.http.get("/items/1").json() == {"id": 1, "name": "ONE"}
