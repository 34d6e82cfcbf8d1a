"""Liveness and readiness, the database probe behind them, and the pool figures job.

:class:`Probe` owns one connection of its own (never a pool's, so it answers
while every pooled connection is busy): ``SELECT 1`` with a short timeout,
reconnecting when the connection broke. Concurrent checks share one probe in
flight, and a result younger than ``REUSE_S`` is reused, so a burst of
readiness checks costs one round trip.

``GET /health/live`` answers 200 from the event loop, touching nothing else.
``GET /health/ready`` answers 200 when the catalogue is loaded and the probe
succeeds, else 503 with ``Retry-After`` and the reasons::

    {"status": "ready", "catalog_generation": 3, "endpoints": 12, "routes_not_serving": 0,
     "database": {"ok": true, "latency_ms": 0.41}}

    {"status": "not_ready", "reasons": ["database unreachable (ConnectionRefusedError)"],
     "catalog_generation": 3, "endpoints": 12, "routes_not_serving": 0,
     "database": {"ok": false, "latency_ms": 0.2, "error": "ConnectionRefusedError"}}

Routes whose row cannot serve answer 503 themselves: they are counted, not a
reason to take the process out of a load balancer. Nor is a read replica down or
lagging (engine/replicas.py): the primary serves its reads; ``replicas`` lists each
one's state and ``warnings`` says which take no reads.

:class:`PoolStats` writes, every ``ENGINE_POOL_STATS_INTERVAL_S``, one
``database_connection_pool`` row per pool (``Database.pool_figures()``) and
upserts the probe's ``database_connection_health`` row, on a dedicated connection
of its own (not a pool's, not the probe's), so ``check_database_health()`` and
``optimize_connection_pool()`` answer from live figures even when the pools are
exhausted, and a figures write stuck behind a lock never delays a readiness check.

Every other method than GET and HEAD on these paths is a 405 problem
(:mod:`engine.problems`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from engine.catalog import empty_catalog
from engine.database import ACQUIRE_TIMEOUT_S, RETRY_AFTER_S, Database, PoolFigures
from engine.jobs import Periodic
from engine.problems import own_route
from engine.shaping import encode

log = logging.getLogger("engine.health")

T = TypeVar("T")

CONNECT_TIMEOUT_S = 2.0
PROBE_TIMEOUT_S = 2.0
REUSE_S = 0.25
WRITE_TIMEOUT_S = 5.0
JSON = "application/json"
NOT_LOADED = empty_catalog()  # what readiness reads before the boot loads one


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    latency_ms: float
    error: str | None  # the failure's kind (an exception class name), never its text
    at: float  # time.monotonic() when it finished

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "latency_ms": round(self.latency_ms, 2)}
        if self.error is not None:
            out["error"] = self.error
        return out


class Dedicated:
    """One connection of its own (never a pool's), made at first use and after a failure.

    Whoever holds :attr:`lock` has the connection to itself: one statement at a time.
    """

    def __init__(
        self,
        url: str,
        application_name: str,
        *,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        server_settings: dict[str, str] | None = None,
        connect_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.connect_timeout_s = connect_timeout_s
        self.server_settings = {"application_name": application_name, **(server_settings or {})}
        self.connect_kwargs = dict(connect_kwargs or {})  # pgbouncer.connect_kwargs
        self.lock = asyncio.Lock()
        self._conn: asyncpg.Connection | None = None
        self.connects = 0
        self.connected_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        """Whether a connection was made and not dropped since (it may still be broken)."""
        return self._conn is not None

    async def get(self) -> asyncpg.Connection:
        """The connection, made now if there is none (call it holding :attr:`lock`)."""
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        self.drop()
        self._conn = await asyncpg.connect(
            self.url,
            timeout=self.connect_timeout_s,
            server_settings=self.server_settings,
            **self.connect_kwargs,
        )
        self.connects += 1
        self.connected_at = datetime.now(UTC)
        return self._conn

    def drop(self) -> None:
        """Forget the connection at once (cut mid-statement or broken: never reused)."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.terminate()
        self._conn = None

    async def close(self) -> None:
        async with self.lock:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._conn.close(), 2)
            self.drop()


class Probe:
    """``SELECT 1`` on a dedicated connection, coalesced; its counters feed the health table.

    Nothing but probes runs on that connection (the figures job writes on one of its
    own): a readiness check never waits behind another statement.
    """

    name = "health-probe"

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        timeout_s: float = PROBE_TIMEOUT_S,
        reuse_s: float = REUSE_S,
        connect_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self.reuse_s = reuse_s
        self.connect_kwargs = dict(connect_kwargs or {})  # pgbouncer.connect_kwargs
        self._dedicated = Dedicated(
            url, "engine-probe", connect_timeout_s=connect_timeout_s, connect_kwargs=connect_kwargs
        )
        self._inflight: asyncio.Task[ProbeResult] | None = None
        self.last: ProbeResult | None = None
        self.probes = 0
        self.failures = 0
        self.total_ms = 0.0
        self.last_activity: datetime | None = None

    @property
    def connects(self) -> int:
        return self._dedicated.connects

    @property
    def connected_at(self) -> datetime | None:
        return self._dedicated.connected_at

    def start(self) -> None:
        pass  # connects at the first probe

    async def stop(self) -> None:
        if self._inflight is not None:
            self._inflight.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._inflight
        await self._dedicated.close()

    async def check(self) -> ProbeResult:
        """A recent result, the one in flight, or a new probe."""
        last = self.last
        if last is not None and time.monotonic() - last.at < self.reuse_s:
            return last
        if self._inflight is None:
            task = asyncio.ensure_future(self._probe())
            self._inflight = task
            task.add_done_callback(self._landed)
        return await asyncio.shield(self._inflight)

    def _landed(self, task: asyncio.Task[ProbeResult]) -> None:
        if self._inflight is task:
            self._inflight = None

    async def _probe(self) -> ProbeResult:
        dedicated = self._dedicated
        started = time.perf_counter()  # before the lock: any wait is part of the latency
        async with dedicated.lock:
            error: str | None = None
            detail: BaseException | None = None
            for _ in range(2):
                reused = dedicated.is_open
                try:
                    conn = await dedicated.get()
                    await conn.fetchval("SELECT 1", timeout=self.timeout_s)
                    error = None
                    break
                except Exception as exc:
                    dedicated.drop()
                    error = type(exc).__name__
                    detail = exc
                    # a connection broken while idle (a server restart): one fresh try
                    if not reused or isinstance(exc, TimeoutError):
                        break
            result = ProbeResult(
                ok=error is None,
                latency_ms=(time.perf_counter() - started) * 1000,
                error=error,
                at=time.monotonic(),
            )
        was_ok = self.last.ok if self.last is not None else True
        if was_ok and not result.ok:
            log.warning("database probe failed: %r", detail)
        elif not was_ok and result.ok:
            log.warning("database probe succeeds again")
        self.probes += 1
        self.failures += 0 if result.ok else 1
        self.total_ms += result.latency_ms
        self.last_activity = datetime.now(UTC)
        self.last = result
        return result


# ---------------------------------------------------------------------------
# Pool and probe figures
# ---------------------------------------------------------------------------

POOL_ROW = """
INSERT INTO database_connection_pool (
    pool_name, engine_instance, total_connections, active_connections, idle_connections,
    waiting_connections, max_connections, min_connections, connection_timeout_seconds)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""
PROBE_ROW = """
INSERT INTO database_connection_health (
    connection_id, pool_name, connection_status, connection_start_time, last_activity_time,
    query_count, total_query_time_ms, error_count, client_host, database_name)
VALUES ($1, 'engine-probe', $2, $3, $4, $5, $6, $7, $8, current_database())
ON CONFLICT (connection_id) DO UPDATE SET
    pool_name = EXCLUDED.pool_name,
    connection_status = EXCLUDED.connection_status,
    connection_start_time = EXCLUDED.connection_start_time,
    last_activity_time = EXCLUDED.last_activity_time,
    query_count = EXCLUDED.query_count,
    total_query_time_ms = EXCLUDED.total_query_time_ms,
    error_count = EXCLUDED.error_count,
    client_host = EXCLUDED.client_host,
    database_name = EXCLUDED.database_name
"""


class PoolStats:
    """Every interval: probe, then write each pool's figures and the probe's health row.

    The writes go on a dedicated connection of their own, neither a pool's (so they are
    written while every pooled connection is busy) nor the probe's (a write waiting on a
    lock, up to :data:`WRITE_TIMEOUT_S`, must never make a readiness check wait).
    """

    name = "pool-figures"

    def __init__(
        self, db: Database, probe: Probe, *, instance: str, min_size: int, interval_s: float
    ) -> None:
        self.db = db
        self.probe = probe
        self.instance = instance
        self.min_size = min_size
        self.connection_id = f"probe:{instance}"[:100]
        self.last_figures: list[PoolFigures] = []
        self._writer = Dedicated(
            probe.url,
            "engine-pool-figures",
            connect_timeout_s=probe.connect_timeout_s,
            connect_kwargs=probe.connect_kwargs,
        )
        self._periodic = Periodic(self.name, interval_s, self.run_once)

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
        try:  # the probe's row says it is gone
            await self._run(lambda conn: self._write_probe(conn, "closed"))
        except Exception as exc:
            log.info("could not mark the probe's connection closed: %r", exc)
        await self._writer.close()

    async def _run(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run ``work`` on the figures' own connection, at most about WRITE_TIMEOUT_S."""
        async with self._writer.lock:
            conn = await self._writer.get()
            try:
                # the server's statement_timeout comes first; this is the backstop
                return await asyncio.wait_for(_limited(conn, work), WRITE_TIMEOUT_S + 1)
            except asyncpg.PostgresError:
                raise  # refused by the server: the connection is fine (or closed, and replaced)
            except BaseException:
                self._writer.drop()  # cut by a timeout or broken: never reused mid-statement
                raise

    async def run_once(self) -> list[PoolFigures]:
        result = await self.probe.check()
        figures = self.db.pool_figures()
        status = "active" if result.ok else "error"

        async def write(conn: asyncpg.Connection) -> None:
            await conn.executemany(
                POOL_ROW,
                [
                    (
                        f"engine-{f.name}",
                        self.instance,
                        f.size,
                        f.in_use,
                        f.idle,
                        f.waiting,
                        f.max_size,
                        self.min_size,
                        int(ACQUIRE_TIMEOUT_S),
                    )
                    for f in figures
                ],
            )
            await self._write_probe(conn, status)

        await self._run(write)
        self.last_figures = figures
        return figures

    async def _write_probe(self, conn: asyncpg.Connection, status: str) -> None:
        p = self.probe
        await conn.execute(
            PROBE_ROW,
            self.connection_id,
            status,
            p.connected_at,
            p.last_activity,
            p.probes,
            round(p.total_ms),
            p.failures,
            socket.gethostname()[:100],
        )


async def _limited(
    conn: asyncpg.Connection, work: Callable[[asyncpg.Connection], Awaitable[T]]
) -> T:
    """``work`` in a transaction whose statements the server gives up after WRITE_TIMEOUT_S:
    a write stuck behind a lock ends by itself, so the connection stays usable and no backend
    is left waiting. A transaction's setting, not the session's: through PgBouncer in
    transaction mode there is no session (engine/pgbouncer.py)."""
    async with conn.transaction():
        await conn.execute(f"SET LOCAL statement_timeout = {int(WRITE_TIMEOUT_S * 1000)}")
        return await work(conn)


# ---------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        encode(body),
        status_code=status,
        media_type=JSON,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


async def live(request: Request) -> Response:
    """200 while the event loop runs: nothing else is touched."""
    return _json({"status": "alive"})


async def ready(request: Request) -> Response:
    """200 when the catalogue is loaded and the database answers the probe, else 503."""
    if getattr(request.app.state, "draining", False):  # SIGTERM: out of the balancer first
        body = {"status": "not_ready", "reasons": ["draining"]}
        return _json(body, 503, {"Retry-After": RETRY_AFTER_S})
    probe: Probe = request.app.state.probe
    services = getattr(request.app.state, "services", None)  # None until the boot is done
    catalog = services.catalogs.current if services is not None else NOT_LOADED
    result = await probe.check()
    reasons = []
    if not result.ok:
        reasons.append(f"database unreachable ({result.error})")
    if catalog.generation == 0:
        reasons.append("catalogue not loaded")
    body: dict[str, Any] = {"status": "not_ready" if reasons else "ready"}
    if reasons:
        body["reasons"] = reasons
    body.update(
        catalog_generation=catalog.generation,
        endpoints=len(catalog.endpoints),
        routes_not_serving=len(catalog.unavailable),
        database=result.as_dict(),
    )
    db = getattr(services, "db", None)  # None until the boot is done
    if db is not None and db.replicas.replicas:
        body.update(_replicas(db))
    worker = getattr(request.app.state, "worker", None)  # serve --workers N: which one
    if worker is not None:
        body["worker"] = worker
    if reasons:
        return _json(body, 503, {"Retry-After": RETRY_AFTER_S})
    return _json(body)


def _replicas(db: Database) -> dict[str, Any]:
    """The replicas' state, and a warning (never a reason for not ready) per replica that
    takes no reads: the primary serves its share meanwhile."""
    status = db.replicas.status()
    out: dict[str, Any] = {"replicas": status}
    warnings = [
        f"replica {r['replica']} takes no reads: {r.get('reason') or 'out'}"
        for r in status
        if not r["in_use"]
    ]
    if warnings:
        out["warnings"] = warnings
    return out


# every method is answered here (405 for all but GET and HEAD): never the catalogue's
routes = [
    own_route("/health/live", live),
    own_route("/health/ready", ready),
]
