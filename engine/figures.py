"""Per-endpoint, per-minute figures in PostgreSQL, and slow statements with their plans.

:class:`Figures` is a request observer (``engine.observe``). For each answered
catalogue request it updates a few counters of the endpoint's current-minute
bucket: requests, successes (2xx/3xx), errors (4xx/5xx, and answers the client
left before receiving), latency sum/min/max, a fixed-bucket latency histogram
(for p95/p99), time in PostgreSQL and statements run, cache hits and misses.
A path no row serves creates nothing.

:meth:`Figures.flush` (the job of :func:`flush_job`, every
``ENGINE_METRICS_FLUSH_S`` and once at shutdown) upserts one
``api_performance_metrics`` row per endpoint, minute and process
(``engine_instance``, sql/012): a minute still filling is written again with
its totals at the next flush, so the row ends with the whole minute's figures.
Rows that cannot be written are kept for the next flush (at most
``MAX_PENDING_MINUTES`` minutes of them).

A request whose slowest statement took ``ENGINE_SLOW_QUERY_MS`` or more is
offered to :class:`SlowQueries` (at most one per endpoint every
``CAPTURE_INTERVAL_S``, a bounded queue, dropped when full). Its job explains
the statement in the background, on a connection of its own (never a pool's):
``EXPLAIN (FORMAT JSON)`` with the request's values, in a read-only transaction
with a statement timeout, never ``ANALYZE`` (so a write is planned, not run).
It records the run through ``monitor_query_performance()``, which stores it in
``query_optimization_tracking`` with the plan (and raises a ``system_alerts``
row once an hour). A statement EXPLAIN refuses (``CALL``...) is recorded
without a plan, and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import socket
import time
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from engine.database import init_connection
from engine.jobs import Periodic
from engine.observe import Exchange

log = logging.getLogger("engine.figures")

# Upper bounds (seconds) of the latency histogram: 10 % apart from 0.1 ms to 2 min,
# then one overflow bucket; a percentile is its bucket's bound (within the minute's
# min and max), so it is at most 10 % above the true value.
BOUNDS_S: tuple[float, ...] = tuple(0.0001 * 1.1**i for i in range(int(math.log(1.2e6, 1.1)) + 2))
MAX_PENDING_MINUTES = 60  # minutes kept while the database refuses the flush
CAPTURE_INTERVAL_S = 60.0  # at most one slow-statement capture per endpoint this often
SLOW_QUEUE_SIZE = 100
EXPLAIN_TIMEOUT_MS = 2000
CONNECT_TIMEOUT_S = 5.0
ACQUIRE_TIMEOUT_S = 10.0


def instance_id() -> str:
    """This process's name in the figures tables: host, pid and start time (a restarted
    container keeps its host name and pid; its figures must not overwrite the last run's)."""
    return f"{socket.gethostname()}:{os.getpid()}:{int(time.time()):x}"[-100:]


class _Bucket:
    """One endpoint's figures for one minute."""

    __slots__ = (
        "count",
        "db_s",
        "dirty",
        "errors",
        "hist",
        "hits",
        "max_s",
        "method",
        "min_s",
        "misses",
        "path",
        "statements",
        "success",
        "sum_s",
    )

    def __init__(self, path: str, method: str) -> None:
        self.path = path
        self.method = method
        self.count = self.success = self.errors = self.statements = 0
        self.hits = self.misses = 0
        self.sum_s = self.db_s = self.max_s = 0.0
        self.min_s = math.inf
        self.hist = [0] * (len(BOUNDS_S) + 1)
        self.dirty = False

    def percentile_ms(self, q: float) -> int:
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for i, n in enumerate(self.hist):
            seen += n
            if seen >= rank:
                bound = BOUNDS_S[i] if i < len(BOUNDS_S) else self.max_s
                return round(1000 * min(max(bound, self.min_s), self.max_s))
        return round(1000 * self.max_s)


UPSERT = """
INSERT INTO api_performance_metrics (
    endpoint_mapping_id, endpoint_path, http_method, metric_timestamp, engine_instance,
    request_count, success_count, error_count, requests_per_second,
    avg_response_time_ms, min_response_time_ms, max_response_time_ms,
    p95_response_time_ms, p99_response_time_ms,
    database_query_count, database_query_time_ms, cache_hits, cache_misses, cache_hit_ratio)
SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19
-- a deleted endpoint's figures are dropped: without its id the row could not be upserted
-- (NULLs never conflict), and each flush of the minute would add the totals again
WHERE EXISTS (SELECT 1 FROM api_endpoint_mappings WHERE id = $1)
ON CONFLICT (endpoint_mapping_id, metric_timestamp, engine_instance) DO UPDATE SET
    endpoint_path = EXCLUDED.endpoint_path,
    http_method = EXCLUDED.http_method,
    request_count = EXCLUDED.request_count,
    success_count = EXCLUDED.success_count,
    error_count = EXCLUDED.error_count,
    requests_per_second = EXCLUDED.requests_per_second,
    avg_response_time_ms = EXCLUDED.avg_response_time_ms,
    min_response_time_ms = EXCLUDED.min_response_time_ms,
    max_response_time_ms = EXCLUDED.max_response_time_ms,
    p95_response_time_ms = EXCLUDED.p95_response_time_ms,
    p99_response_time_ms = EXCLUDED.p99_response_time_ms,
    database_query_count = EXCLUDED.database_query_count,
    database_query_time_ms = EXCLUDED.database_query_time_ms,
    cache_hits = EXCLUDED.cache_hits,
    cache_misses = EXCLUDED.cache_misses,
    cache_hit_ratio = EXCLUDED.cache_hit_ratio
"""


class Figures:
    """The per-minute figures of this process's endpoints, and the slow-statement offer."""

    def __init__(
        self,
        instance: str,
        *,
        endpoints: Callable[[], Mapping[int, tuple[str, str]]] = dict,
        slow: SlowQueries | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.instance = instance
        self._endpoints = endpoints  # id -> (path, method) of the serving rows
        self._slow = slow
        self._slow_s = slow.threshold_s if slow is not None else math.inf
        self._clock = clock
        self._minute = int(clock() // 60)
        self._current: dict[int, _Bucket] = {}
        self._closed: dict[int, dict[int, _Bucket]] = {}  # minute -> endpoint -> figures
        self.written = 0  # rows upserted
        self.lost = 0  # endpoint-minutes dropped because they could not be written

    def __call__(self, exchange: Exchange) -> None:
        """The observer: a few counter updates on the endpoint's current-minute bucket."""
        eid = exchange.endpoint_id
        if eid is None:
            return
        minute = int(self._clock() // 60)
        if minute != self._minute:
            self._roll(minute)
        bucket = self._current.get(eid)
        if bucket is None:
            bucket = self._current[eid] = _Bucket(exchange.route or exchange.path, exchange.method)
        elapsed = exchange.duration_s
        bucket.count += 1
        if 200 <= exchange.status < 400 and not exchange.abandoned:
            bucket.success += 1
        else:
            bucket.errors += 1
        bucket.sum_s += elapsed
        if elapsed < bucket.min_s:
            bucket.min_s = elapsed
        if elapsed > bucket.max_s:
            bucket.max_s = elapsed
        bucket.hist[bisect_left(BOUNDS_S, elapsed)] += 1
        bucket.db_s += exchange.db_s
        bucket.statements += exchange.statements
        if exchange.cache == "HIT":
            bucket.hits += 1
        elif exchange.cache == "MISS":
            bucket.misses += 1
        bucket.dirty = True
        if exchange.slowest_s > self._slow_s and self._slow is not None:
            self._slow.offer(exchange)

    def _roll(self, minute: int) -> None:
        if self._current:
            self._closed[self._minute] = self._current
        # a clock set back lands in a minute already closed: keep filling that one
        self._current = self._closed.pop(minute, None) or {}
        self._minute = minute
        while len(self._closed) > MAX_PENDING_MINUTES:
            oldest = min(self._closed)
            self.lost += len(self._closed.pop(oldest))
            log.warning("figures of minute %s dropped: they could not be written", oldest)

    def rows(self) -> list[tuple[Any, ...]]:
        """The upsert rows of every bucket changed since the last flush (marked clean)."""
        names = self._endpoints()
        out = []
        minutes = [*self._closed.items(), (self._minute, self._current)]
        for minute, buckets in minutes:
            stamp = datetime.fromtimestamp(minute * 60, UTC)
            for eid, b in buckets.items():
                if not b.dirty or not b.count:
                    continue
                b.dirty = False
                path, method = names.get(eid, (b.path, b.method))
                lookups = b.hits + b.misses
                out.append(
                    (
                        eid,
                        path[:200],
                        method[:10],
                        stamp,
                        self.instance,
                        b.count,
                        b.success,
                        b.errors,
                        round(b.count / 60, 2),
                        round(1000 * b.sum_s / b.count),
                        round(1000 * b.min_s),
                        round(1000 * b.max_s),
                        b.percentile_ms(0.95),
                        b.percentile_ms(0.99),
                        b.statements,
                        round(1000 * b.db_s),
                        b.hits,
                        b.misses,
                        round(100 * b.hits / lookups, 2) if lookups else None,
                    )
                )
        return out

    async def flush(self, pool: Any) -> int:
        """Upsert the changed buckets; on failure they stay changed for the next flush."""
        closed = list(self._closed)
        rows = self.rows()
        if rows:
            try:
                async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                    await conn.executemany(UPSERT, rows)
            except BaseException:
                self._mark_dirty({(r[3], r[0]) for r in rows})
                raise
            self.written += len(rows)
        for minute in closed:  # written whole: a closed minute gets no more requests
            self._closed.pop(minute, None)
        return len(rows)

    def _mark_dirty(self, keys: set[tuple[datetime, int]]) -> None:
        for minute, buckets in [*self._closed.items(), (self._minute, self._current)]:
            stamp = datetime.fromtimestamp(minute * 60, UTC)
            for eid, bucket in buckets.items():
                if (stamp, eid) in keys:
                    bucket.dirty = True


def flush_job(figures: Figures, pool: Any, interval_s: float) -> Periodic:
    """Write the figures every ``interval_s``, and once more at shutdown."""

    async def work() -> None:
        await figures.flush(pool)

    return Periodic("figures-flush", interval_s, work, final=True)


# ---------------------------------------------------------------------------
# Slow statements
# ---------------------------------------------------------------------------

RECORD = "SELECT monitor_query_performance($1, $2, $3, $4, $5)"


class SlowQueries:
    """Explains slow statements in the background and records them with their plans."""

    name = "slow-query-recorder"

    def __init__(
        self,
        url: str,
        threshold_ms: int,
        *,
        capture_interval_s: float = CAPTURE_INTERVAL_S,
        queue_size: int = SLOW_QUEUE_SIZE,
        connect_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.connect_kwargs = dict(connect_kwargs or {})  # pgbouncer.connect_kwargs
        self.threshold_ms = threshold_ms
        self.threshold_s = threshold_ms / 1000 if threshold_ms > 0 else math.inf
        self.capture_interval_s = capture_interval_s
        self._queue: asyncio.Queue[tuple[int, str, Sequence[Any], int]] = asyncio.Queue(queue_size)
        self._last: dict[int, float] = {}  # endpoint -> when its last capture was queued
        self._task: asyncio.Task[None] | None = None
        self.queued = 0
        self.limited = 0  # slow runs not captured: the endpoint was captured recently
        self.dropped = 0  # slow runs not captured: the queue was full
        self.recorded = 0
        self.unexplained = 0  # recorded without a plan (EXPLAIN refused the statement)
        self.failed = 0

    def offer(self, exchange: Exchange) -> None:
        """Queue a slow request's slowest statement, unless its endpoint was just captured."""
        eid, sql = exchange.endpoint_id, exchange.slowest_sql
        if eid is None or sql is None:
            return
        now = time.monotonic()
        last = self._last.get(eid)
        if last is not None and now - last < self.capture_interval_s:
            self.limited += 1
            return
        ms = max(math.ceil(exchange.slowest_s * 1000), 1)
        try:
            self._queue.put_nowait((eid, sql, tuple(exchange.slowest_args), ms))
        except asyncio.QueueFull:
            self.dropped += 1
            return
        self._last[eid] = now
        if len(self._last) > 10_000:  # endpoints come and go: forget old captures
            self._last = {k: t for k, t in self._last.items() if now - t < self.capture_interval_s}
        self.queued += 1

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def drain(self) -> None:
        """Wait until every queued capture is done (tests, shutdown)."""
        await self._queue.join()

    async def _loop(self) -> None:
        while True:
            item: tuple[int, str, Sequence[Any], int] | None = await self._queue.get()
            try:
                conn = await self._connect()
            except Exception as exc:
                self.failed += 1
                self._queue.task_done()
                log.warning("slow-statement recorder cannot connect: %r", exc)
                continue
            try:  # one connection for the captures queued together, closed when idle
                while item is not None:
                    try:
                        await self._capture(conn, *item)
                    except Exception as exc:
                        self.failed += 1
                        log.warning("could not record a slow statement: %r", exc)
                    finally:
                        self._queue.task_done()
                    if conn.is_closed() or self._queue.empty():
                        break
                    item = self._queue.get_nowait()
            finally:
                await _close(conn)

    async def _connect(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(
            self.url,
            timeout=CONNECT_TIMEOUT_S,
            server_settings={"application_name": "engine-slow-queries"},
            **self.connect_kwargs,
        )
        try:
            await init_connection(conn)  # the pools' codecs: the values encode alike
        except BaseException:
            conn.terminate()
            raise
        return conn

    async def _capture(
        self, conn: asyncpg.Connection, endpoint_id: int, sql: str, args: Sequence[Any], ms: int
    ) -> None:
        plan = await explain(conn, sql, args)
        if plan is None:
            self.unexplained += 1
        digest = hashlib.sha256(sql.encode()).hexdigest()
        await conn.execute(RECORD, endpoint_id, digest, ms, plan, self.threshold_ms)
        self.recorded += 1


async def explain(conn: asyncpg.Connection, sql: str, args: Sequence[Any]) -> Any | None:
    """The JSON plan of ``sql`` with ``args``: planned, never run; None if EXPLAIN refuses it."""
    try:
        async with conn.transaction(readonly=True):
            await conn.execute(f"SET LOCAL statement_timeout = {EXPLAIN_TIMEOUT_MS}")
            return await conn.fetchval(
                "EXPLAIN (FORMAT JSON) " + sql, *args, timeout=EXPLAIN_TIMEOUT_MS / 1000 + 1
            )
    except (asyncpg.PostgresError, asyncpg.InterfaceError, ValueError, TypeError) as exc:
        if conn.is_closed():
            raise
        log.info("EXPLAIN refused a slow statement (recorded without a plan): %r", exc)
        return None


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 2)
    except Exception:  # gone already, or too slow to say goodbye
        conn.terminate()
    except asyncio.CancelledError:
        conn.terminate()
        raise
