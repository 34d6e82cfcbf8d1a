"""Applying SQL files in order, each once: the meta-schema migrations and domain seeds.

Migrations (``sql/NNN_name.sql``) are applied once each and tracked with a
SHA-256 checksum in ``engine_schema_migrations``; re-running is a no-op and a
migration edited after it was applied is refused. Seeds (``seeds/DOMAIN/*.sql``)
are tracked the same way in ``engine_seed_files`` but a changed seed file is
applied again, so seed SQL must be idempotent. Each file runs in its own
transaction under an advisory lock, so two processes never migrate at once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = PROJECT_ROOT / "sql"
SEEDS_DIR = PROJECT_ROOT / "seeds"

_LOCK_KEY = 0x656E67696E65  # "engine"

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS engine_schema_migrations (
    filename   TEXT PRIMARY KEY,
    checksum   TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""
CREATE_SEEDS_TABLE = """
CREATE TABLE IF NOT EXISTS engine_seed_files (
    domain     TEXT NOT NULL,
    filename   TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (domain, filename)
)
"""


class MigrationError(Exception):
    """A migration or seed file could not be applied (the message says which and why)."""


@dataclass(frozen=True)
class SqlFile:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def _ordered(folder: Path) -> list[SqlFile]:
    """The numbered ``NNN_*.sql`` files of a folder, in numeric order."""
    numbered = [
        (int(m.group(1)), p) for p in folder.glob("*.sql") if (m := re.match(r"(\d+)_", p.name))
    ]
    return [SqlFile(p) for _, p in sorted(numbered, key=lambda item: (item[0], item[1].name))]


def migration_files(folder: Path = SQL_DIR) -> list[SqlFile]:
    return _ordered(folder)


def seed_domains(folder: Path = SEEDS_DIR) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and _ordered(p))


async def _run_file(conn: asyncpg.Connection, f: SqlFile, record_sql: str, *args: str) -> None:
    try:
        async with conn.transaction():
            await conn.execute(f.text)
            await conn.execute(record_sql, *args)
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"{f.path}: {type(exc).__name__}: {exc}") from exc


async def migrate(conn: asyncpg.Connection, folder: Path = SQL_DIR) -> list[str]:
    """Apply pending migrations in order; return the names applied."""
    files = migration_files(folder)
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(CREATE_MIGRATIONS_TABLE)
        done = {
            r["filename"]: r["checksum"]
            for r in await conn.fetch("SELECT filename, checksum FROM engine_schema_migrations")
        }
        for f in files:
            if f.name in done:
                if done[f.name] != f.checksum:
                    raise MigrationError(
                        f"{folder.name}/{f.name} was changed after it was applied "
                        f"(recorded checksum {done[f.name][:12]}, file now {f.checksum[:12]}). "
                        "Applied migrations are immutable: revert the edit and add a new "
                        "numbered migration instead."
                    )
                continue
            await _run_file(
                conn,
                f,
                "INSERT INTO engine_schema_migrations (filename, checksum) VALUES ($1, $2)",
                f.name,
                f.checksum,
            )
            applied_now.append(f.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now


GENERATOR = "generate.sql"


async def seed(
    conn: asyncpg.Connection,
    domains: Sequence[str] = (),
    folder: Path = SEEDS_DIR,
    *,
    scale: int | None = None,
) -> list[str]:
    """Apply new or changed seed files of the given domains (all when empty).

    With ``scale``, each domain's ``generate.sql`` (if it has one) then runs in
    its own transaction with ``current_setting('engine.seed_scale')`` set to the
    scale: set-based SQL that loads volumes on request. It runs every time it
    is asked for, so it must replace what it generated before.
    """
    available = seed_domains(folder) if folder.exists() else []
    wanted = list(domains) or available
    unknown = [d for d in wanted if d not in available]
    if unknown:
        raise MigrationError(
            f"unknown seed domain(s): {', '.join(unknown)}; available: {', '.join(available)}"
        )
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(CREATE_SEEDS_TABLE)
        done = {
            (r["domain"], r["filename"]): r["checksum"]
            for r in await conn.fetch("SELECT domain, filename, checksum FROM engine_seed_files")
        }
        for domain in wanted:
            for f in _ordered(folder / domain):
                if done.get((domain, f.name)) == f.checksum:
                    continue
                await _run_file(
                    conn,
                    f,
                    """INSERT INTO engine_seed_files (domain, filename, checksum) VALUES ($1, $2, $3)
                       ON CONFLICT (domain, filename)
                       DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()""",
                    domain,
                    f.name,
                    f.checksum,
                )
                applied_now.append(f"{domain}/{f.name}")
            generator = folder / domain / GENERATOR
            if scale is not None and generator.exists():
                await _generate(conn, SqlFile(generator), scale)
                applied_now.append(f"{domain}/{GENERATOR} (scale {scale})")
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now


async def _generate(conn: asyncpg.Connection, f: SqlFile, scale: int) -> None:
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('engine.seed_scale', $1, true)", str(scale))
            await conn.execute(f.text)
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"{f.path}: {type(exc).__name__}: {exc}") from exc
