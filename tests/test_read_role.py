"""A GET cannot write because the database refuses it, not because a session says so.

The exploit of issue 11: one GET template switches its pooled session out of read-only
(``set_config('default_transaction_read_only', 'off', false)``), the next GET on that
connection writes through a function ``engine check`` lets through (a STABLE function
calling a VOLATILE one). With reads as ``engine_reader`` (sql/019, engine/roles.py) the
write is refused with a coded problem and no row is written; with a read user that can
write, the engine says at start and in ``check`` that only the session guards reads.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import pytest

from engine import migrations, plans, roles
from engine.settings import Settings
from tests.engine_server import EngineClient
from tests.faults import OwnServer
from tests.helpers import add_endpoint, assert_problem, compile_catalog, run_cli, status_of
from tests.pg import DB, database_name, with_database

Maker = Callable[..., EngineClient]
ROLE_LINE = "reads run as role engine_reader without write privileges"
SWITCH = "SELECT set_config('default_transaction_read_only', 'off', false) AS s"


def run(url: str, work: Callable[[asyncpg.Connection], Any]) -> Any:
    async def go() -> Any:
        conn = await asyncpg.connect(url)
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


def login_url(url: str, role: str) -> str:
    """``url`` as ``role`` without a password; the test is skipped where the server asks
    for one (a server on TCP with password authentication: the engine falls back there)."""
    candidate = roles.url_as(url, role)
    try:
        run(candidate, lambda conn: conn.fetchval("SELECT 1"))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"{role} cannot log in without a password on the tests' server: {exc!r}")
    return candidate


@pytest.fixture()
def reader_url(db_url: str) -> str:
    return login_url(db_url, roles.READER)


@pytest.fixture()
def exploit(db: DB) -> DB:
    """A table, a function that writes it, a STABLE one calling it, and the two GET rows."""
    db.execute(
        """
        CREATE TABLE ro_victims (id SERIAL PRIMARY KEY, note TEXT NOT NULL);
        CREATE FUNCTION ro_write() RETURNS INTEGER LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            INSERT INTO ro_victims (note) VALUES ('written by a GET');
            RETURN 1;
        END $$;
        CREATE FUNCTION ro_sneak() RETURNS INTEGER LANGUAGE plpgsql STABLE AS $$
        BEGIN
            RETURN ro_write();
        END $$;
        """
    )
    add_endpoint(db, "/ro/switch", "GET", SWITCH, result={"shape": "object"})
    add_endpoint(db, "/ro/write", "GET", "SELECT ro_sneak() AS n", result={"shape": "object"})
    return db


def victims(db: DB) -> int:
    return db.fetchval("SELECT count(*) FROM ro_victims")


def test_the_switch_and_the_sneaky_write_pass_check(exploit: DB) -> None:
    """Both rows serve: the write is not caught by check, so only the database can stop it."""
    catalog = compile_catalog(exploit)
    states = {s.path: s.state for s in catalog.statuses if s.path.startswith("/ro/")}
    assert states == {"/ro/switch": "serving", "/ro/write": "serving"}, catalog.problems


def test_the_read_role_refuses_a_template_that_switched_its_session_to_writing(
    exploit: DB, make_client: Maker, reader_url: str
) -> None:
    client = make_client(pool_max_size=1)  # one read connection: both GETs share its session
    guarantee = client.engine.services.db.read_guarantee
    assert (guarantee.user, guarantee.by_database) == (roles.READER, True)
    assert client.get("/ro/switch").json() == {"s": "off"}
    assert_problem(client.get("/ro/write"), 500, "READ_ONLY_VIOLATION")
    assert victims(exploit) == 0


def test_without_the_role_the_switched_session_writes_and_the_engine_warned(
    exploit: DB, make_client: Maker, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The defect itself, as it stays where the read user can write: the session refuses the
    write until a template switches it off; then the next GET writes."""
    caplog.set_level(logging.INFO, logger="engine.database")
    client = make_client(pool_max_size=1, read_database_url=db_url)
    assert client.engine.services.db.read_guarantee.by_database is False
    assert_problem(client.get("/ro/write"), 500, "READ_ONLY_VIOLATION")  # 25006: the session
    assert client.get("/ro/switch").json() == {"s": "off"}
    assert client.get("/ro/write").status_code == 200
    assert victims(exploit) == 1
    warned = [r for r in caplog.records if r.name == "engine.database" and "reads " in r.message]
    assert [r.levelno for r in warned] == [logging.WARNING]
    assert warned[0].message.startswith(
        "reads run on read-only sessions only (a template can switch its session to writing); "
        "set ENGINE_READ_DATABASE_URL to a read-only role (reads connect as "
    )


def test_the_start_logs_the_guarantee_in_one_line(
    make_client: Maker, caplog: pytest.LogCaptureFixture, reader_url: str
) -> None:
    caplog.set_level(logging.INFO, logger="engine.database")
    make_client()
    lines = [r for r in caplog.records if r.name == "engine.database" and "reads " in r.message]
    assert [(r.levelno, r.message) for r in lines] == [(logging.INFO, ROLE_LINE)]


def test_the_read_pool_connects_as_the_reader_on_the_main_database(
    make_client: Maker, db_url: str, reader_url: str
) -> None:
    client = make_client()
    db = client.engine.services.db

    async def who() -> tuple[str, str, str]:
        async with db.read.acquire() as conn:
            return await conn.fetchrow(
                "SELECT current_user::text, current_database()::text, "
                "current_setting('default_transaction_read_only')"
            )

    assert tuple(client.engine.run(who())) == ("engine_reader", database_name(db_url), "on")


@pytest.mark.slow
def test_check_prints_the_guarantee(db_url: str, reader_url: str) -> None:
    result = run_cli("check", url=db_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"READS {ROLE_LINE}" in result.stdout.splitlines()


@pytest.mark.slow
def test_check_warns_when_the_read_user_can_write(db_url: str) -> None:
    result = run_cli("check", "--strict", url=db_url, ENGINE_READ_DATABASE_URL=db_url)
    assert result.returncode == 1  # --strict: the warning fails it
    lines = [line for line in result.stdout.splitlines() if "read-only sessions only" in line]
    user = roles.url_user(db_url)
    assert lines == [
        "WARNING reads run on read-only sessions only (a template can switch its session to "
        f"writing); set ENGINE_READ_DATABASE_URL to a read-only role (reads connect as {user}, "
        "a superuser)"
    ]
    assert run_cli("check", url=db_url, ENGINE_READ_DATABASE_URL=db_url).returncode == 0


@pytest.fixture()
def writer_role(db: DB, pg_url: str) -> Iterator[str]:
    """A login role that is no superuser but may insert into one table."""
    name = f"ro_writer_{os.getpid()}"
    DB(pg_url).execute(f"CREATE ROLE {name} LOGIN NOSUPERUSER")
    db.execute(
        f"CREATE TABLE ro_notes (id INTEGER); GRANT SELECT ON ALL TABLES IN SCHEMA public TO "
        f"{name}; GRANT INSERT ON ro_notes TO {name}"
    )
    try:
        yield name
    finally:
        db.execute(f"DROP OWNED BY {name}")
        DB(pg_url).execute(f"DROP ROLE {name}")


def test_a_read_user_that_may_write_one_table_is_named_with_it(
    writer_role: str, db_url: str
) -> None:
    guarantee = run(login_url(db_url, writer_role), roles.inspect)
    assert guarantee.by_database is False
    assert f"reads connect as {writer_role}, which may write ro_notes" in guarantee.line


def test_a_reader_that_cannot_log_in_falls_back_to_sessions_and_says_why(
    db: DB, db_url: str, pg_url: str
) -> None:
    admin = DB(pg_url)
    admin.execute("ALTER ROLE engine_reader NOLOGIN")  # the whole (test) server's role
    try:
        guarantee = run(db_url, lambda c: roles.read_guarantee(db_url, Settings(), c))
    finally:
        admin.execute("ALTER ROLE engine_reader LOGIN")
    assert guarantee.by_database is False
    assert guarantee.line.endswith(
        "; there is no role engine_reader that can log in (sql/019 makes it))"
    )


def test_the_reader_reads_every_table_but_the_secrets_and_writes_none(
    db: DB, reader_url: str
) -> None:
    db.execute("CREATE TABLE ro_later (id INTEGER); CREATE SEQUENCE ro_seq")  # after sql/019

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        await conn.execute("SET default_transaction_read_only = off")  # the exploit's switch
        seen: dict[str, Any] = {}
        for sql in (
            "SELECT count(*) FROM api_endpoint_mappings",
            "SELECT count(*) FROM camera_configurations",  # the seeded domains
            "SELECT count(*) FROM agents",
            "SELECT count(*) FROM ro_later",  # default privileges: tables made later
            "SELECT count(name) FROM api_keys",
            "SELECT count(key_hash) FROM api_keys",
            "SELECT count(*) FROM engine_secrets",
            "SELECT nextval('ro_seq')",
            "INSERT INTO ro_later VALUES (1)",
            "DELETE FROM api_endpoint_mappings",
        ):
            try:
                await conn.execute(sql)
                seen[sql] = "ok"
            except asyncpg.PostgresError as exc:
                seen[sql] = exc.sqlstate
        return seen

    seen = run(reader_url, work)
    refused = {sql for sql, outcome in seen.items() if outcome != "ok"}
    assert refused == {
        "SELECT count(key_hash) FROM api_keys",
        "SELECT count(*) FROM engine_secrets",
        "SELECT nextval('ro_seq')",
        "INSERT INTO ro_later VALUES (1)",
        "DELETE FROM api_endpoint_mappings",
    }, seen
    assert {seen[sql] for sql in refused} == {"42501"}


def test_the_reader_url_keeps_server_and_database_and_drops_the_password() -> None:
    assert (
        roles.url_as("postgresql://app:s3cret@db.example:5433/shop?sslmode=require", "r")
        == "postgresql://r@db.example:5433/shop?sslmode=require"
    )
    assert (
        roles.url_as("postgresql://postgres:@/engine?host=/tmp/pg&user=x&password=y", "r")
        == "postgresql://r@/engine?host=/tmp/pg"
    )


@pytest.mark.slow
def test_a_migration_without_createrole_skips_the_role_and_still_applies() -> None:
    """A fresh server (no engine_reader yet) migrated by a user that may not create roles."""
    server = OwnServer()
    try:
        owner = "app_owner"
        DB(server.url).execute(f"CREATE ROLE {owner} LOGIN NOSUPERUSER NOCREATEROLE")
        DB(server.url).execute(f"CREATE DATABASE app OWNER {owner}")
        url = roles.url_as(with_database(server.url, "app"), owner)
        notices: list[str] = []

        async def migrate(conn: asyncpg.Connection) -> list[str]:
            conn.add_log_listener(lambda _c, message: notices.append(message.message))
            return await migrations.migrate(conn)

        applied = run(url, migrate)
        assert "019_read_role.sql" in applied
        assert (
            DB(server.url).fetchval("SELECT count(*) FROM pg_roles WHERE rolname = 'engine_reader'")
            == 0
        )
        assert any(n.startswith("role engine_reader not created") for n in notices), notices
        guarantee = run(url, lambda c: roles.read_guarantee(url, Settings(), c))
        assert guarantee.by_database is False  # the owner may write its own tables
        assert "there is no role engine_reader that can log in" in guarantee.line
    finally:
        server.cleanup()


# --- the plan check: the same SQL on PostgreSQL 14, 15 and later ---

PLANS = [
    ("SELECT id FROM ro_items WHERE id > $1", 1, set()),
    ("WITH w AS (INSERT INTO ro_items VALUES ($1) RETURNING 1) SELECT count(*) FROM w", 1,
     {"ModifyTable"}),
    ("SELECT * FROM ro_items WHERE id > $1 FOR UPDATE", 1, {"LockRows"}),
    # a NULL bound would fold "id > $1" to a one-time-false Result over the LockRows
    # (what EXPLAIN (GENERIC_PLAN) with bound values shows): the plan must stay generic
    ("SELECT * FROM ro_locked WHERE id > $1", 1, {"LockRows"}),
    ("SELECT * FROM ro_locked", 0, {"LockRows"}),
]  # fmt: skip


@pytest.fixture()
def items(db: DB) -> DB:
    db.execute(
        "CREATE TABLE ro_items (id INTEGER PRIMARY KEY); "
        "CREATE VIEW ro_locked AS SELECT * FROM ro_items FOR UPDATE"
    )
    return db


@pytest.mark.parametrize(("sql", "n", "expected"), PLANS)
def test_the_generic_plan_shows_writes_and_locks(
    items: DB, sql: str, n: int, expected: set[str]
) -> None:
    async def work(conn: asyncpg.Connection) -> tuple[frozenset[str], Any]:
        async with conn.transaction():  # as the compiler: inside the load's snapshot
            nodes = await plans.plan_nodes(conn, sql, n)
            after = await conn.fetchrow(
                "SELECT current_setting('plan_cache_mode') AS mode, "
                "current_setting('statement_timeout') AS timeout, "
                "(SELECT count(*) FROM pg_prepared_statements WHERE name = $1) AS left",
                plans.PREPARED_NAME,
            )
        return nodes, after

    nodes, after = run(items.url, work)
    assert {"ModifyTable", "LockRows"} & nodes == expected
    assert tuple(after) == ("auto", "0", 0)  # nothing of the check stays
    assert items.fetchval("SELECT count(*) FROM ro_items") == 0  # planned, never run


def test_a_template_that_does_not_plan_is_a_postgres_error_and_leaves_the_snapshot_usable(
    items: DB,
) -> None:
    async def work(conn: asyncpg.Connection) -> tuple[str, int]:
        async with conn.transaction():
            with pytest.raises(asyncpg.PostgresError) as caught:
                await plans.plan_nodes(conn, "SELECT * FROM ro_missing", 0)
            return caught.value.sqlstate, await conn.fetchval("SELECT count(*) FROM ro_items")

    assert run(items.url, work) == ("42P01", 0)


def test_check_refuses_a_get_whose_view_locks_rows(items: DB) -> None:
    """The text says SELECT; only the plan shows the view's FOR UPDATE, which would fail in
    every read-only transaction."""
    after = [{"name": "after", "in": "query", "type": "integer", "default": 0}]
    locked = add_endpoint(
        items, "/ro/locked", "GET", "SELECT * FROM ro_locked WHERE id > $1", after
    )
    plain = add_endpoint(items, "/ro/plain", "GET", "SELECT * FROM ro_items WHERE id > $1", after)
    catalog = compile_catalog(items)
    assert status_of(catalog, plain).state == "serving"
    refused = status_of(catalog, locked)
    assert refused.state == "refused"
    assert "its plan locks rows (LockRows" in refused.reason
