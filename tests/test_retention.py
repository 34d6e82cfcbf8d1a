"""Old log and figure rows are deleted in batches by the retention job; recent ones stay.

Rows are backdated on a real database; the job's purge runs on a real pool. The
row contract, its history and API keys are never touched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from engine.database import init_connection
from engine.retention import PURGES, Retention
from tests.helpers import poll
from tests.pg import DB

T = TypeVar("T")

OLD = "now() - interval '31 days'"
RECENT = "now() - interval '29 days'"
KEPT_TABLES = (
    "api_endpoint_mappings",
    "api_error_codes",
    "api_endpoint_history",
    "api_cache_config",
    "database_error_patterns",
)


def fill(db: DB, old: int, recent: int) -> None:
    """``old`` rows older than 30 days and ``recent`` younger ones in every purged table."""
    for when, n in ((OLD, old), (RECENT, recent)):
        db.execute(
            "INSERT INTO api_error_logs (request_id, endpoint_path, http_method, error_message,"
            f" error_timestamp) SELECT 'r' || g, '/t', 'GET', 'm', {when}"
            " FROM generate_series(1, $1) g",
            n,
        )
        db.execute(
            "INSERT INTO api_performance_metrics (endpoint_path, http_method, metric_timestamp)"
            f" SELECT '/t', 'GET', {when} - g * interval '1 minute' FROM generate_series(1, $1) g",
            n,
        )
        db.execute(
            "INSERT INTO database_connection_pool (pool_name, metric_timestamp)"
            f" SELECT 'zq-pool', {when} FROM generate_series(1, $1) g",
            n,
        )
        db.execute(
            "INSERT INTO database_connection_health (connection_id, pool_name,"
            f" last_activity_time) SELECT 'zq-' || md5(random()::text), 'engine-probe', {when}"
            " FROM generate_series(1, $1) g",
            n,
        )
        db.execute(
            "INSERT INTO query_optimization_tracking (query_hash, created_at)"
            f" SELECT 'qh', {when} FROM generate_series(1, $1) g",
            n,
        )
        db.execute(
            "INSERT INTO system_alerts (alert_type, alert_message, is_resolved, created_at)"
            f" SELECT 'zq', 'old news', g % 2 = 0, {when} FROM generate_series(1, $1) g",
            n,
        )


def counts(db: DB, tables: tuple[str, ...]) -> dict[str, int]:
    return {t: db.fetchval(f"SELECT count(*) FROM {t}") for t in tables}


def with_retention(url: str, work: Callable[[Retention], Awaitable[T]], **kwargs: Any) -> T:
    async def go() -> T:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2, init=init_connection)
        try:
            return await work(Retention(pool, kwargs.pop("days", 30), **kwargs))
        finally:
            await pool.close()

    return asyncio.run(go())


TABLES = tuple(p.table for p in PURGES)


def test_old_rows_are_deleted_in_batches_and_recent_ones_kept(db: DB) -> None:
    fill(db, old=23, recent=4)
    before = counts(db, TABLES)
    kept_before = counts(db, KEPT_TABLES)

    async def purge(job: Retention) -> tuple[dict[str, int], int]:
        return await job.purge(), job.statements

    deleted, statements = with_retention(db.url, purge, batch=7, pause_s=0)
    assert deleted == dict.fromkeys(TABLES, 23)
    # 7 + 7 + 7 + 2 a table: four statements each, none holding more than a batch
    assert statements == 4 * len(TABLES)
    after = counts(db, TABLES)
    assert after == {t: before[t] - 23 for t in TABLES}
    assert db.fetchval("SELECT count(*) FROM api_error_logs WHERE request_id LIKE 'r%'") == 4
    assert db.fetchval("SELECT count(*) FROM system_alerts WHERE alert_type = 'zq'") == 4
    assert counts(db, KEPT_TABLES) == kept_before  # configuration and history are kept


def test_a_run_is_bounded_and_the_next_one_goes_on(db: DB) -> None:
    fill(db, old=23, recent=1)

    async def runs(job: Retention) -> list[int]:
        return [(await job.purge())["api_error_logs"] for _ in range(4)]

    assert with_retention(db.url, runs, batch=5, pause_s=0, max_batches=2) == [10, 10, 3, 0]
    assert db.fetchval("SELECT count(*) FROM api_error_logs") == 1


def test_zero_days_keeps_everything(db: DB) -> None:
    fill(db, old=3, recent=1)
    before = counts(db, TABLES)

    async def off(job: Retention) -> dict[str, int]:
        job.start()  # starts nothing
        try:
            return await job.purge()
        finally:
            await job.stop()

    assert with_retention(db.url, off, days=0) == {}
    assert counts(db, TABLES) == before


def test_the_job_runs_soon_after_start_then_every_interval(db: DB) -> None:
    fill(db, old=3, recent=1)

    async def started(job: Retention) -> tuple[int, int]:
        job.start()
        try:
            deadline = asyncio.get_running_loop().time() + 10
            while job.runs < 1:  # polled with a deadline that fails loudly
                assert asyncio.get_running_loop().time() < deadline, "the first run never came"
                await asyncio.sleep(0.02)
            return job.runs, job.failures
        finally:
            await job.stop()

    runs, failures = with_retention(db.url, started, first_run_s=0.01, interval_s=3600)
    assert (runs, failures) == (1, 0)  # one run: the next is an hour away
    poll(
        lambda: db.fetchval("SELECT count(*) FROM api_error_logs WHERE request_id LIKE 'r%'"),
        lambda n: n == 1,
        "old error-log rows deleted",
    )


def test_every_purged_column_has_an_index(db: DB) -> None:
    indexed = {
        (r["table"], r["column"])
        for r in db.fetch(
            """SELECT c.relname AS table, a.attname AS column
               FROM pg_index i
               JOIN pg_class c ON c.oid = i.indrelid
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
               WHERE i.indpred IS NULL"""
        )
    }
    for table, column in (
        ("api_error_logs", "error_timestamp"),
        ("api_performance_metrics", "metric_timestamp"),
        ("database_connection_pool", "metric_timestamp"),
        ("database_connection_health", "last_activity_time"),
        ("query_optimization_tracking", "created_at"),
        ("system_alerts", "created_at"),
    ):
        assert (table, column) in indexed, (table, column)
