"""Deleting the engine's old log and figure rows, in batches, from a periodic job.

What the engine writes on its own grows with time: error-log rows, per-minute
endpoint and pool figures, probe rows of processes long gone, slow-query
records, alerts. Rows older than ENGINE_ERROR_LOG_RETENTION_DAYS are deleted
(hourly, the first run a minute after start) by at most :data:`BATCH` rows a
statement, each in its own short transaction with a pause between, so neither
a lock nor a pool connection is held for long and concurrent writers are not
starved. Rows a concurrent purge (another engine process) has locked are
skipped, not waited for. A retention of 0 days or less keeps everything.

Not touched: the row contract (mappings, schemas, codes, templates, cache
configuration), its history (``api_endpoint_history``), API keys, and expired
idempotency keys (``engine.idempotency`` purges those).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import asyncpg

from engine.jobs import Periodic

log = logging.getLogger("engine.retention")

BATCH = 5000
PAUSE_S = 0.05
MAX_BATCHES_PER_RUN = 200  # a run deletes at most 1,000,000 rows a table; the next goes on
INTERVAL_S = 3600.0
FIRST_RUN_S = 60.0
RUN_TIMEOUT_S = 600.0

CUTOFF_SQL = "SELECT now() - make_interval(days => $1)"


@dataclass(frozen=True)
class Purge:
    """One table's old rows: ``old`` is a condition on ``$1``, the cutoff."""

    table: str
    old: str

    @property
    def sql(self) -> str:
        # identifiers are this module's constants, the cutoff and batch size parameters
        return (
            f"DELETE FROM {self.table} WHERE id = ANY (ARRAY("
            f"SELECT id FROM {self.table} WHERE {self.old} LIMIT $2 FOR UPDATE SKIP LOCKED))"
        )


PURGES = (
    Purge("api_error_logs", "error_timestamp < $1"),
    Purge("api_performance_metrics", "metric_timestamp < $1"),
    Purge("database_connection_pool", "metric_timestamp < $1"),
    # probe rows are upserted while their process lives: a row not touched is a dead one's
    Purge(
        "database_connection_health",
        "(last_activity_time < $1 OR (last_activity_time IS NULL AND updated_at < $1))",
    ),
    Purge("query_optimization_tracking", "created_at < $1"),
    # resolved or not: an open alert that old is history (a recurring problem raises anew)
    Purge("system_alerts", "created_at < $1"),
)


class Retention:
    """The retention job: start/stop like every job of ``engine.jobs``."""

    name = "retention"

    def __init__(
        self,
        pool: asyncpg.Pool,
        days: int,
        *,
        interval_s: float = INTERVAL_S,
        first_run_s: float = FIRST_RUN_S,
        batch: int = BATCH,
        pause_s: float = PAUSE_S,
        max_batches: int = MAX_BATCHES_PER_RUN,
    ) -> None:
        self._pool = pool
        self.days = days
        self.interval_s = interval_s
        self.first_run_s = first_run_s
        self.batch = batch
        self.pause_s = pause_s
        self.max_batches = max_batches
        self.deleted: dict[str, int] = {p.table: 0 for p in PURGES}  # since start
        self.statements = 0
        self._runner = Periodic(self.name, interval_s, self.purge, timeout_s=RUN_TIMEOUT_S)
        self._task: asyncio.Task[None] | None = None

    @property
    def runs(self) -> int:
        return self._runner.runs

    @property
    def failures(self) -> int:
        return self._runner.failures

    def start(self) -> None:
        if self.days <= 0:
            log.info("retention off (ENGINE_ERROR_LOG_RETENTION_DAYS=%d): rows are kept", self.days)
            return
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def _loop(self) -> None:
        await asyncio.sleep(self.first_run_s)
        while True:
            await self._runner.run_once()
            await asyncio.sleep(self.interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def purge(self) -> dict[str, int]:
        """Delete every table's rows older than the retention; the rows deleted by table."""
        if self.days <= 0:
            return {}
        async with self._pool.acquire(timeout=10) as conn:
            cutoff = await conn.fetchval(CUTOFF_SQL, self.days)
        done: dict[str, int] = {}
        for purge in PURGES:
            done[purge.table] = await self._purge(purge, cutoff)
            self.deleted[purge.table] += done[purge.table]
        if any(done.values()):
            log.info("retention: deleted rows older than %s: %s", cutoff, done)
        return done

    async def _purge(self, purge: Purge, cutoff: object) -> int:
        total = 0
        for _ in range(self.max_batches):
            # a connection per batch: the pool is never held across the pause
            async with self._pool.acquire(timeout=10) as conn:
                status = await conn.execute(purge.sql, cutoff, self.batch)
            self.statements += 1
            deleted = int(status.rsplit(" ", 1)[-1])
            total += deleted
            if deleted < self.batch:
                break
            await asyncio.sleep(self.pause_s)
        return total
