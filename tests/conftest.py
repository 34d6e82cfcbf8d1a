"""Session-wide PostgreSQL, a migrated and seeded template, and a fresh database per test."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import pytest

from engine import migrations
from tests.engine_server import EngineClient, RunningEngine
from tests.faults import own_server  # noqa: F401 (a fixture for every test module)
from tests.pg import DB, postgres_server, with_database

TEMPLATE = f"engine_tpl_{os.getpid()}"
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of the maintenance database of the session's server."""
    with postgres_server() as (url, _how):
        yield url


async def _build_template(admin_url: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
        await conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(with_database(admin_url, TEMPLATE))
    try:
        await migrations.migrate(conn)
        # TEST_SEED_DOMAINS=camera_counting limits the template to some domains (dev only)
        only = [d for d in os.environ.get("TEST_SEED_DOMAINS", "").split(",") if d]
        await migrations.seed(conn, only)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_db(pg_url: str) -> Iterator[str]:
    """Name of a database with every migration and every seed domain applied."""
    asyncio.run(_build_template(pg_url))
    yield TEMPLATE
    DB(pg_url).execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')


@pytest.fixture()
def db_url(pg_url: str, template_db: str) -> Iterator[str]:
    """URL of a fresh database cloned from the template, dropped after the test."""
    name = f"engine_t{os.getpid()}_{next(_counter)}"
    admin = DB(pg_url)
    admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield with_database(pg_url, name)
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def empty_db_url(pg_url: str) -> Iterator[str]:
    """URL of a fresh, empty database (nothing migrated), dropped after the test."""
    name = f"engine_e{os.getpid()}_{next(_counter)}"
    admin = DB(pg_url)
    admin.execute(f'CREATE DATABASE "{name}"')
    yield with_database(pg_url, name)
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def db(db_url: str) -> DB:
    """Synchronous helper on the test's own migrated and seeded database."""
    return DB(db_url)


@pytest.fixture()
def make_client(db_url: str) -> Iterator[Callable[..., EngineClient]]:
    """Factory: ``make_client(**settings)`` serves the test database over real HTTP."""
    servers: list[RunningEngine] = []

    def factory(url: str | None = None, **overrides: Any) -> EngineClient:
        server = RunningEngine(url or db_url, **overrides)
        servers.append(server)
        return server.client

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture()
def client(make_client: Callable[..., EngineClient]) -> EngineClient:
    """An engine with default test settings serving the test database."""
    return make_client()
