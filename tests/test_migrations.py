"""The migration runner against real, empty databases: order, once-only, checksums,
transactions; and what the migrations in ``sql/`` leave behind."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from engine.catalog import ddl_watched
from engine.migrations import SQL_DIR, MigrationError, migrate, migration_files
from tests.pg import DB, database_name

T = TypeVar("T")


def run(url: str, body: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run ``body(conn)`` on a fresh connection to ``url``."""

    async def go() -> T:
        conn = await asyncpg.connect(url)
        try:
            return await body(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.fixture()
def sql_copy(tmp_path: Path) -> Path:
    """A private copy of ``sql/`` that a test may edit."""
    folder = tmp_path / "sql"
    shutil.copytree(SQL_DIR, folder)
    return folder


def test_migrate_applies_every_file_in_order_and_records_checksums(empty_db_url: str) -> None:
    files = sorted(SQL_DIR.glob("*.sql"))
    assert [f.name for f in files][:4] == [
        "001_meta_schema.sql",
        "002_functions.sql",
        "003_builtin_error_codes.sql",
        "004_catalog_triggers.sql",
    ]

    async def body(conn: asyncpg.Connection) -> tuple[list[str], dict[str, str]]:
        applied = await migrate(conn)
        rows = await conn.fetch("SELECT filename, checksum FROM engine_schema_migrations")
        return applied, {r["filename"]: r["checksum"] for r in rows}

    applied, recorded = run(empty_db_url, body)
    assert applied == [f.name for f in files]
    assert recorded == {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def test_second_run_applies_nothing(empty_db_url: str) -> None:
    async def body(conn: asyncpg.Connection) -> tuple[list[str], list[str], int]:
        first = await migrate(conn)
        second = await migrate(conn)
        count = await conn.fetchval("SELECT count(*) FROM engine_schema_migrations")
        return first, second, count

    first, second, count = run(empty_db_url, body)
    assert len(first) == len(migration_files()) > 0
    assert second == []
    assert count == len(first)


def test_migrated_database_has_every_table_and_function(empty_db_url: str) -> None:
    tables = [
        "users",
        "system_alerts",
        "api_endpoint_mappings",
        "api_response_templates",
        "api_error_codes",
        "api_validation_schemas",
        "data_sanitization_rules",
        "api_error_logs",
        "database_error_patterns",
        "error_recovery_strategies",
        "api_performance_metrics",
        "api_cache_config",
        "query_optimization_tracking",
        "database_connection_pool",
        "database_connection_health",
        "database_failover_config",
    ]
    functions = [
        "log_api_error",
        "check_error_patterns",
        "monitor_query_performance",
        "calculate_cache_hit_ratio",
        "check_database_health",
        "optimize_connection_pool",
        "engine_notify_catalog",
        "api_mapping_id",
    ]

    async def body(conn: asyncpg.Connection) -> tuple[list[str], list[str]]:
        await migrate(conn)
        missing_tables = [
            t for t in tables if await conn.fetchval("SELECT to_regclass($1)", t) is None
        ]
        present = {
            r["proname"]
            for r in await conn.fetch(
                "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
            )
        }
        return missing_tables, [f for f in functions if f not in present]

    missing_tables, missing_functions = run(empty_db_url, body)
    assert missing_tables == []
    assert missing_functions == []


def test_builtin_error_codes_are_localized(empty_db_url: str) -> None:
    expected = {
        "VALIDATION_ERROR": 400,
        "INVALID_PARAMETER": 400,
        "INVALID_JSON": 400,
        "INVALID_VALUE": 400,
        "UNSUPPORTED_MEDIA_TYPE": 415,
        "PAYLOAD_TOO_LARGE": 413,
        "ROUTE_NOT_FOUND": 404,
        "METHOD_NOT_ALLOWED": 405,
        "RESOURCE_NOT_FOUND": 404,
        "AUTHENTICATION_REQUIRED": 401,
        "INVALID_TOKEN": 401,
        "INSUFFICIENT_PERMISSIONS": 403,
        "RATE_LIMIT_EXCEEDED": 429,
        "DUPLICATE_RESOURCE": 409,
        "REFERENCED_RESOURCE_MISSING": 422,
        "RESOURCE_IN_USE": 409,
        "CONSTRAINT_VIOLATION": 422,
        "TRANSACTION_CONFLICT": 503,
        "STATEMENT_TIMEOUT": 504,
        "DATABASE_CONNECTION_ERROR": 503,
        "INTERNAL_ERROR": 500,
    }

    async def body(conn: asyncpg.Connection) -> list[asyncpg.Record]:
        await migrate(conn)
        return await conn.fetch(
            """SELECT error_code, http_status_code, error_category, suggested_action,
                      localized_messages ->> 'vi' AS vi, localized_messages ->> 'ru' AS ru
               FROM api_error_codes"""
        )

    rows = {r["error_code"]: r for r in run(empty_db_url, body)}
    assert {code: rows[code]["http_status_code"] for code in expected if code in rows} == expected
    for code in expected:
        row = rows[code]
        assert row["error_category"], code
        assert row["suggested_action"], code
        assert row["vi"] and row["ru"], code
        # Russian text is Cyrillic, Vietnamese is not ASCII-only either.
        assert any("\u0400" <= ch <= "\u04ff" for ch in row["ru"]), code
        assert not row["vi"].isascii(), code


def test_guide_error_patterns_are_seeded(empty_db_url: str) -> None:
    async def body(conn: asyncpg.Connection) -> list[asyncpg.Record]:
        await migrate(conn)
        return await conn.fetch(
            "SELECT error_pattern, error_type FROM database_error_patterns ORDER BY id"
        )

    rows = run(empty_db_url, body)
    assert [(r["error_pattern"], r["error_type"]) for r in rows] == [
        ("duplicate key value violates unique constraint", "constraint_violation"),
        ("foreign key constraint violation", "constraint_violation"),
        ("connection to server at .* failed", "connection_error"),
        ("query execution timeout", "timeout"),
        ("insufficient memory", "resource_error"),
        ("table .* does not exist", "schema_error"),
    ]


def test_editing_an_applied_migration_is_refused(empty_db_url: str, sql_copy: Path) -> None:
    assert run(empty_db_url, lambda conn: migrate(conn, sql_copy))
    edited = sql_copy / "002_functions.sql"
    edited.write_text(edited.read_text(encoding="utf-8") + "\n-- an edit\n", encoding="utf-8")

    with pytest.raises(MigrationError) as excinfo:
        run(empty_db_url, lambda conn: migrate(conn, sql_copy))
    message = str(excinfo.value)
    assert "002_functions.sql" in message
    assert "changed" in message


def test_new_file_is_applied_on_next_run(empty_db_url: str, sql_copy: Path) -> None:
    first = run(empty_db_url, lambda conn: migrate(conn, sql_copy))
    (sql_copy / "900_extra.sql").write_text(
        "CREATE TABLE extra_things (id SERIAL PRIMARY KEY, name TEXT NOT NULL);\n",
        encoding="utf-8",
    )

    async def body(conn: asyncpg.Connection) -> tuple[list[str], object, list[str]]:
        applied = await migrate(conn, sql_copy)
        exists = await conn.fetchval("SELECT to_regclass('extra_things')")
        again = await migrate(conn, sql_copy)
        return applied, exists, again

    applied, exists, again = run(empty_db_url, body)
    assert "900_extra.sql" not in first
    assert applied == ["900_extra.sql"]
    assert exists is not None
    assert again == []


def test_files_are_ordered_by_number_not_by_text(empty_db_url: str, sql_copy: Path) -> None:
    # "0910" sorts before "909" as text; numerically it comes after and needs its table.
    (sql_copy / "0910_second.sql").write_text(
        "ALTER TABLE ordered_things ADD COLUMN label TEXT;\n", encoding="utf-8"
    )
    (sql_copy / "909_first.sql").write_text(
        "CREATE TABLE ordered_things (id INTEGER);\n", encoding="utf-8"
    )
    applied = run(empty_db_url, lambda conn: migrate(conn, sql_copy))
    assert applied[-2:] == ["909_first.sql", "0910_second.sql"]


def test_broken_migration_names_the_file_and_leaves_nothing_applied(
    empty_db_url: str, sql_copy: Path
) -> None:
    broken = sql_copy / "900_broken.sql"
    broken.write_text(
        "CREATE TABLE half_done (id INTEGER);\n"
        "INSERT INTO half_done VALUES (1);\n"
        "SELECT * FROM no_such_table_anywhere;\n",
        encoding="utf-8",
    )

    with pytest.raises(MigrationError) as excinfo:
        run(empty_db_url, lambda conn: migrate(conn, sql_copy))
    assert "900_broken.sql" in str(excinfo.value)
    assert "no_such_table_anywhere" in str(excinfo.value)

    async def state(conn: asyncpg.Connection) -> tuple[object, list[str]]:
        half = await conn.fetchval("SELECT to_regclass('half_done')")
        recorded = [
            r["filename"] for r in await conn.fetch("SELECT filename FROM engine_schema_migrations")
        ]
        return half, recorded

    half, recorded = run(empty_db_url, state)
    assert half is None
    assert "900_broken.sql" not in recorded
    # The files before it were applied and stay applied.
    assert sorted(recorded) == sorted(f.name for f in SQL_DIR.glob("*.sql"))

    # Once fixed, the file is applied like any pending one.
    broken.write_text("CREATE TABLE half_done (id INTEGER);\n", encoding="utf-8")
    assert run(empty_db_url, lambda conn: migrate(conn, sql_copy)) == ["900_broken.sql"]


def test_migrations_apply_without_a_superuser_and_leave_drift_unwatched(
    pg_url: str, empty_db_url: str
) -> None:
    """The event trigger needs a superuser; without one the rest still applies."""
    name = database_name(empty_db_url)
    role = f"engine_owner_{os.getpid()}"
    admin = DB(pg_url)
    admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'owner-pw' NOSUPERUSER")
    try:
        admin.execute(f'ALTER DATABASE "{name}" OWNER TO {role}')
        DB(empty_db_url).execute(f"ALTER SCHEMA public OWNER TO {role}")
        parts = urlsplit(empty_db_url)
        host = parts.netloc.rsplit("@", 1)[-1]
        as_owner = urlunsplit((parts.scheme, f"{role}:owner-pw@{host}", *parts[2:]))

        async def body(conn: asyncpg.Connection) -> tuple[list[str], bool, bool]:
            applied = await migrate(conn)
            su = await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            return applied, su, await ddl_watched(conn)

        applied, superuser, watched = run(as_owner, body)
        assert superuser is False
        assert "006_catalog_integrity.sql" in applied
        assert watched is False
    finally:
        owned = DB(empty_db_url)
        owned.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER; DROP OWNED BY {role}")
        admin.execute(f'ALTER DATABASE "{name}" OWNER TO CURRENT_USER')
        admin.execute(f"DROP ROLE {role}")
