"""Pools, statement execution and the one boundary where database errors become ApiErrors.

Two pools: reads run as a role that cannot write (``ENGINE_READ_DATABASE_URL``'s
user, a replica's, or ``engine_reader``: engine/roles.py), on read-only sessions
(``default_transaction_read_only``) as well, so a GET template that tries to write
fails instead of writing; writes run on the primary. Errors are
translated by SQLSTATE, never by message text, and the answer carries no table
name, constraint name or SQL: those go only to the error log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import asyncpg
import orjson
from asyncpg.exceptions._base import DataError as ArgumentError
from asyncpg.exceptions._base import InternalClientError

from engine import deadlines, holders, pgbouncer, pgcodecs, roles
from engine.errors import ApiError
from engine.observe import record_statement
from engine.recovery import (
    BUSY_RETRY_AFTER_S,
    RETRY_AFTER_S,
    Outcome,
    Recovery,
    outcome_of,
    retriable,
)
from engine.replicas import Replicas, load_configs
from engine.settings import Settings

log = logging.getLogger("engine.database")

T = TypeVar("T")

STATEMENT_CACHE_SIZE = 1024
# the default of ENGINE_POOL_TIMEOUT_S (Settings.pool_timeout_s, which request paths pass)
ACQUIRE_TIMEOUT_S = 5.0
# the longest a release waits for a cancelled statement's cancellation and for the reset;
# past it the connection is terminated (and its holder goes back to the pool)
RELEASE_TIMEOUT_S = 5.0


async def init_connection(conn: asyncpg.Connection) -> None:
    """Codecs for every pooled connection (engine/pgcodecs.py; the README's type table)."""
    await pgcodecs.register(conn)


def _server_settings(settings: Settings, *, read_only: bool, name: str) -> dict[str, str]:
    # No session statement_timeout: each statement gets its row's timeout (or
    # ENGINE_STATEMENT_TIMEOUT_MS) from the client (run_statement's deadline), which
    # cancels it on the server, so a row may allow more than the default as well as less.
    out = {"application_name": name}
    if read_only:
        out["default_transaction_read_only"] = "on"
    return out


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without the RESET ALL / UNLISTEN round trip (asyncpg still rolls back)."""


def pool_kwargs(settings: Settings, *, read_only: bool, name: str) -> dict[str, Any]:
    """How a pool's connections are set up: a direct session, or a connection through
    PgBouncer in transaction mode (engine/pgbouncer.py), which keeps no session state."""
    if pgbouncer.transaction_pooled(settings):
        # no named statement, no startup setting but application_name (the read-only
        # guarantee is a transaction per read: run_statement), no reset: it would run on
        # whichever server connection serves it
        return {
            "statement_cache_size": 0,
            "server_settings": {"application_name": name},
            "reset": _keep_session,
            "connection_class": (
                pgbouncer.ReadOnlyPerTransaction if read_only else pgbouncer.EngineConnection
            ),
        }
    # Read sessions only ever run checked, read-only templates, which keep no session
    # state, so they skip asyncpg's reset query: one round trip less per GET. Write
    # sessions keep the full reset, as a write template may change session state.
    return {
        "statement_cache_size": STATEMENT_CACHE_SIZE,
        "server_settings": _server_settings(settings, read_only=read_only, name=name),
        "reset": _keep_session if read_only else None,
        "connection_class": pgbouncer.EngineConnection,
    }


async def create_pool(url: str, settings: Settings, *, read_only: bool, name: str) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        url,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        init=init_connection,
        **pool_kwargs(settings, read_only=read_only, name=name),
    )


@dataclass(frozen=True)
class PoolFigures:
    """One pool at one moment: connections open, checked out, idle, and requests waiting."""

    name: str
    max_size: int
    size: int
    in_use: int
    idle: int
    waiting: int

    @classmethod
    def of(cls, name: str, pool: asyncpg.Pool) -> PoolFigures:
        queue = getattr(pool, "_queue", None)  # asyncpg keeps free holders in an asyncio queue
        max_size = pool.get_max_size()
        free = queue.qsize() if queue is not None else max_size
        waiting = len(getattr(queue, "_getters", ())) if queue is not None else 0
        size = pool.get_size()
        return cls(
            name=name,
            max_size=max_size,
            size=size,
            in_use=max_size - free,
            idle=pool.get_idle_size(),
            waiting=waiting,
        )


@dataclass
class Database:
    """The engine's pools: ``read`` for GET endpoints, ``write`` for the rest."""

    url: str
    read: asyncpg.Pool
    write: asyncpg.Pool
    server_version: int
    read_guarantee: roles.ReadGuarantee | None = None  # what keeps a read from writing
    # retries and a circuit breaker per pool, as error_recovery_strategies says (engine/recovery)
    recovery: Recovery = field(default_factory=Recovery)
    # the replicas of database_failover_config and the choice of pool per read (engine/replicas)
    replicas: Replicas = field(init=False, repr=False)  # none until open_replicas

    def __post_init__(self) -> None:
        self.recovery.name_pool(self.write, "engine-write")
        self.recovery.name_pool(self.read, "engine-read")
        self.recovery.read_rows_from(self.write)
        self.replicas = Replicas(self.read, self.recovery)

    @classmethod
    async def open(
        cls, url: str, settings: Settings, environ: Mapping[str, str] | None = None
    ) -> Database:
        """Both pools; reads as a role that cannot write when one is at hand (engine/roles.py),
        and the guarantee in force logged in one line; the replicas ``database_failover_config``
        names (their URLs in ``environ``, the process's environment by default), checked in
        the background from now on."""
        write = await create_pool(url, settings, read_only=False, name="engine-write")
        read = None
        try:
            async with write.acquire() as conn:
                version = conn.get_server_version().major
                read_url, note = await roles.choose(url, settings, conn)
            read = await create_pool(read_url, settings, read_only=True, name="engine-read")
            async with read.acquire() as conn:
                guarantee = await roles.inspect(conn, note=note)
        except BaseException:
            pools = [write] if read is None else [read, write]
            await asyncio.gather(*(p.close() for p in pools), return_exceptions=True)
            raise
        guarantee.log()
        db = cls(url=url, read=read, write=write, server_version=version, read_guarantee=guarantee)
        db.replicas = await open_replicas(db, settings, environ)
        db.replicas.start()
        return db

    async def close(self) -> None:
        await self.replicas.stop()
        await self.recovery.close()
        await asyncio.gather(self.read.close(), self.write.close(), return_exceptions=True)

    def pool_figures(self) -> list[PoolFigures]:
        """Size, use and waiters of each pool, read from the pools (no round trip)."""
        pools = [("write", self.write)]
        if self.read is not self.write:
            pools.append(("read", self.read))
        pools.extend(self.replicas.pools())
        return [PoolFigures.of(name, pool) for name, pool in pools]

    def pool(self, read: bool) -> asyncpg.Pool:
        return self.read if read else self.write


async def open_replicas(
    db: Database, settings: Settings, environ: Mapping[str, str] | None = None
) -> Replicas:
    """The replicas ``database_failover_config`` names, read on the primary; their pools are
    made like the primary's read pool (read-only sessions) once a replica passes a check.
    A table that cannot be read (an old schema) means no replicas, never a failed start."""
    try:
        async with db.write.acquire() as conn:
            configs, problems = await load_configs(conn, os.environ if environ is None else environ)
    except asyncpg.PostgresError as exc:
        log.warning("database_failover_config not read (%s): reads use the primary", exc.sqlstate)
        configs, problems = [], []

    async def open_pool(replica_url: str, name: str) -> asyncpg.Pool:
        pool = await create_pool(replica_url, settings, read_only=True, name=name)
        db.recovery.name_pool(pool, name)
        return pool

    return Replicas(
        db.read,
        db.recovery,
        configs=configs,
        positions=db.write,
        open_pool=open_pool,
        max_lag_s=settings.max_replica_lag_s,
        problems=problems,
        connect_kwargs=pgbouncer.connect_kwargs(settings),
    )


async def run_statement(
    pool: asyncpg.Pool,
    sql: str,
    args: Sequence[Any],
    *,
    timeout_s: float | None,
    operation: str,
    known_codes: Container[str],
    rows: bool = True,
    client_values: bool = True,
    params: Sequence[tuple[str, str]] = (),
    acquire_timeout_s: float = ACQUIRE_TIMEOUT_S,
    recovery: Recovery | None = None,
    idempotent: bool = False,
    limit: int | None = None,
) -> tuple[list[asyncpg.Record], int | None]:
    """Run one statement; (rows, affected count) or an ApiError. The only place we execute.

    With ``recovery``: the pool's circuit breaker is asked first, and an ``idempotent``
    statement (a read, never a write) is retried after a connection failure. ``limit``:
    fetch at most that many rows (:func:`fetch_rows`)."""
    return await recovering(
        pool,
        recovery,
        idempotent,
        _attempt,
        pool,
        sql,
        args,
        timeout_s,
        operation,
        known_codes,
        rows,
        client_values,
        params,
        acquire_timeout_s,
        limit,
    )


async def _attempt(
    pool: asyncpg.Pool,
    sql: str,
    args: Sequence[Any],
    timeout_s: float | None,
    operation: str,
    known_codes: Container[str],
    rows: bool,
    client_values: bool,
    params: Sequence[tuple[str, str]],
    acquire_timeout_s: float,
    limit: int | None,
) -> tuple[list[asyncpg.Record], int | None]:
    """One try of :func:`run_statement` (a function, not a closure: no cells to make)."""
    conn = await acquire(pool, acquire_timeout_s, operation, known_codes)
    started = time.perf_counter()
    try:
        if pgbouncer.read_only_per_transaction(conn):  # ENGINE_PGBOUNCER=transaction only
            return await read_in_transaction(conn, sql, args, timeout_s, rows, limit)
        # the statement's timeout from the loop's deadline sweep, not a driver timer
        # each: on expiry the task is cancelled, so the driver cancels it on the server
        loop = getattr(pool, "_loop", None)  # the running loop, without a look-up (a getpid)
        deadline = deadlines.start(timeout_s, loop) if timeout_s is not None else None
        try:
            if rows:
                return await fetch_rows(conn, sql, args, limit, None), None
            status = await conn.execute(sql, *args)
            return [], affected_rows(status)
        except asyncio.CancelledError:
            if deadline is not None and deadline.expired():
                raise TimeoutError(f"the statement ran past {timeout_s} s") from None
            raise
        finally:
            if deadline is not None:
                deadline.finish()
    except (*_DRIVER_ERRORS, InternalClientError) as exc:
        raise _failed(exc, conn, args, operation, known_codes, client_values, params) from exc
    finally:
        record_statement(time.perf_counter() - started, sql, args)
        await release(pool, conn)


async def read_in_transaction(
    conn: asyncpg.Connection,
    sql: str,
    args: Sequence[Any],
    timeout_s: float | None,
    rows: bool,
    limit: int | None = None,
) -> tuple[list[asyncpg.Record], int | None]:
    """One read as a read-only transaction of its own with its timeout ``SET LOCAL``: what a
    read-only session gives a direct connection, per transaction for a connection through
    PgBouncer in transaction mode (engine/pgbouncer.py). The driver's timeout still cancels
    the statement; the server's is the same limit, kept by whichever server connection runs
    it. ``BEGIN`` and the setting go in one round trip."""
    begin = "BEGIN READ ONLY"
    if timeout_s is not None:
        begin += f"; SET LOCAL statement_timeout = {max(1, round(timeout_s * 1000))}"
    await conn.execute(begin, timeout=timeout_s)
    try:
        if rows:
            records, affected = await fetch_rows(conn, sql, args, limit, timeout_s), None
        else:
            records, affected = [], affected_rows(await conn.execute(sql, *args, timeout=timeout_s))
    except BaseException:
        if not conn.is_closed():  # a broken connection is dropped on release
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.execute("ROLLBACK"))
        raise
    await conn.execute("COMMIT", timeout=timeout_s)
    return records, affected


async def fetch_rows(
    conn: asyncpg.Connection,
    sql: str,
    args: Sequence[Any],
    limit: int | None,
    timeout_s: float | None,
) -> list[asyncpg.Record]:
    """The rows of ``sql``; at most ``limit`` of them when given (ENGINE_MAX_ROWS + 1 for a
    list without pagination: engine/shaping.py).

    The limit is the protocol's own (Execute's row count, which the driver's ``fetchrow``
    uses for one row): the server stops producing rows there, in the same single round
    trip as ``fetch``, on the same cached statement, with no transaction and no rewritten
    SQL. In a write's transaction the statement still runs to its end (RETURNING rows are
    all produced before the first is sent)."""
    if timeout_s is None:
        rows = await _run_prepared(conn, sql, args, limit or 0)
        if rows is not None:
            return rows
    if limit is None:
        return await conn.fetch(sql, *args, timeout=timeout_s)
    return await conn._execute(sql, args, limit, timeout_s)


async def _run_prepared(
    conn: asyncpg.Connection, sql: str, args: Sequence[Any], limit: int
) -> list[asyncpg.Record] | None:
    """The rows of ``sql`` run on the statement the connection has prepared already, by
    the driver's protocol (Bind, Execute, Sync: the round trip ``fetch`` makes), without
    its four layers of coroutines and its timeout arithmetic around it (measured: 2.6 us
    of a 75 us primary-key read). None when there is no such statement, or the connection
    logs its queries or is closed: asyncpg's own path then prepares and runs it.

    The driver's two recoveries of a cached statement are kept as it keeps them: types
    changed under the statement (``OutdatedSchemaCacheError``) reload its type caches
    and fail; a result type changed (``InvalidCachedStatementError``, raised before the
    statement ran) drops the cached statements, and outside a transaction the driver's
    own path prepares it again and runs it once more."""
    inner = getattr(conn, "_con", None) or conn  # a pool's proxy or a connection itself
    try:
        if inner._query_loggers or not holders.is_open(inner):
            return None
        protocol = inner._protocol
        statement = inner._stmt_cache.get((sql, protocol.get_record_class(), False))
    except AttributeError:  # another asyncpg: its own path
        return None
    if statement is None:
        return None
    try:
        return await protocol.bind_execute(statement, args, "", limit, False, None)
    except asyncpg.exceptions.OutdatedSchemaCacheError:
        await inner.reload_schema_state()
        raise
    except asyncpg.exceptions.InvalidCachedStatementError:
        inner._drop_global_statement_cache()
        if protocol.is_in_transaction():
            raise
        return None


async def acquire(
    pool: asyncpg.Pool,
    timeout_s: float,
    operation: str,
    known_codes: Container[str] = frozenset(),
) -> asyncpg.Connection:
    """A connection of ``pool`` within ``timeout_s`` (ENGINE_POOL_TIMEOUT_S for requests).

    Waiting for a free connection that never came is 503 ``DATABASE_BUSY`` (the
    database is fine, the pool is full); a connection that could not be made, or a
    connection attempt that did not finish in time although one was free, is 503
    ``DATABASE_CONNECTION_ERROR``.
    """
    queue = getattr(pool, "_queue", None)  # asyncpg keeps free holders in an asyncio queue
    # no free holder, or others waiting already (queue.empty() and its getters)
    waits = queue is None or not getattr(queue, "_queue", None) or bool(queue._getters)
    try:
        if not waits and holders.connected(pool, queue):
            # a free, connected holder: nothing to wait for, so no deadline at all, and
            # asyncpg's Pool._acquire without its queue wait (its own steps inline, or
            # its own calls when they do not apply)
            taken = holders.take(pool, queue)
            return taken if taken is not None else await _acquire_free(pool, queue)
        # asyncpg's own timeout sets a timer per acquisition: one sweep per loop instead
        deadline = deadlines.start(timeout_s, getattr(pool, "_loop", None))
        try:
            if waits and holders.can_wait(pool, queue):
                await holders.wait_free(pool, queue)  # in line, as Queue.get waits
                if holders.connected(pool, queue):
                    taken = holders.take(pool, queue)
                    return taken if taken is not None else await _acquire_free(pool, queue)
            return await pool._acquire(None)
        except asyncio.CancelledError:
            if deadline.expired():
                raise TimeoutError from None
            raise
        finally:
            deadline.finish()
    except TimeoutError as exc:
        if waits:
            raise translate(exc, operation, known_codes, acquiring=True) from exc
        hung = ConnectTimeout(f"no connection was made within {timeout_s} s")
        raise translate(hung, operation, known_codes, acquiring=True) from exc
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, InternalClientError) as exc:
        # InternalClientError: a new connection's set-up (the codecs) lost its backend
        raise translate(exc, operation, known_codes, acquiring=True) from exc


async def _acquire_free(pool: asyncpg.Pool, queue: Any) -> asyncpg.Connection:
    """The free, connected holder :func:`acquire` found, by asyncpg's own steps (those
    :func:`holders.take` leaves to it)."""
    holder = queue.get_nowait()
    try:
        proxy = await holder.acquire()
    except BaseException:
        queue.put_nowait(holder)
        pool._schedule_min_size_maintenance()
        raise
    holder._timeout = None
    return proxy


class ConnectTimeout(OSError):
    """A free connection of the pool could not connect in time: the database does not answer."""


async def connect_session(url: str, timeout_s: float, operation: str) -> asyncpg.Connection:
    """A connection of its own to ``url``, with the pools' codecs, for work that holds session
    state (an advisory lock) while the pools go through PgBouncer in transaction mode
    (engine/pgbouncer.py). It fails as :func:`acquire` does: 503 DATABASE_CONNECTION_ERROR."""
    try:
        conn = await asyncpg.connect(url, timeout=timeout_s)
    except TimeoutError as exc:
        hung = ConnectTimeout(f"no connection was made within {timeout_s} s")
        raise translate(hung, operation, acquiring=True) from exc
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, InternalClientError) as exc:
        raise translate(exc, operation, acquiring=True) from exc
    try:
        await init_connection(conn)
    except BaseException as exc:
        conn.terminate()
        if isinstance(exc, (*_DRIVER_ERRORS, InternalClientError)):
            raise translate(exc, operation, acquiring=True) from exc
        raise
    return conn


async def recovering(
    pool: asyncpg.Pool,
    recovery: Recovery | None,
    idempotent: bool,
    attempt: Callable[..., Awaitable[T]],
    *args: Any,
) -> T:
    """Run ``attempt(*args)`` past the pool's circuit breaker, telling it how it ended; an
    ``idempotent`` attempt that failed on a connection-class error is tried again with
    the strategy's back-off (engine/recovery.py). A write is never tried twice."""
    if recovery is None:
        return await attempt(*args)
    breaker = recovery.breaker(pool)
    retries = 0
    while True:
        trial = breaker.enter()  # raises the 503 at once while the breaker is open
        try:
            result = await attempt(*args)
        except ApiError as error:
            breaker.record(outcome_of(error), trial)
            policy = recovery.retry_policy(idempotent)
            if retries >= policy.attempts or not retriable(error):
                raise
            retries += 1
            log.info(
                "retrying a read on %s (%d/%d): %s",
                breaker.name,
                retries,
                policy.attempts,
                error.internal,
            )
            await asyncio.sleep(policy.delay_s(retries))
            continue
        except BaseException:
            breaker.record(Outcome.NEUTRAL, trial)
            raise
        breaker.record(Outcome.SUCCESS, trial)
        recovery.refresh(pool)
        return result


async def run_page_and_count(
    pool: asyncpg.Pool,
    page_sql: str,
    args: Sequence[Any],
    count_sql: str,
    count_args: Sequence[Any],
    *,
    timeout_s: float | None,
    operation: str,
    known_codes: Container[str],
    client_values: bool = True,
    params: Sequence[tuple[str, str]] = (),
    acquire_timeout_s: float = ACQUIRE_TIMEOUT_S,
    recovery: Recovery | None = None,
) -> tuple[list[asyncpg.Record], int]:
    """A page and the count of every row, in one snapshot (a repeatable-read, read-only
    transaction on one connection): the total always agrees with the page. A read: retried
    after a connection failure as ``recovery`` says."""

    async def attempt() -> tuple[list[asyncpg.Record], int]:
        conn = await acquire(pool, acquire_timeout_s, operation, known_codes)
        started = time.perf_counter()
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                rows = await conn.fetch(page_sql, *args, timeout=timeout_s)
                total = await conn.fetchval(count_sql, *count_args, timeout=timeout_s)
            return rows, int(total)
        except (*_DRIVER_ERRORS, InternalClientError) as exc:
            raise _failed(exc, conn, args, operation, known_codes, client_values, params) from exc
        finally:
            record_statement(time.perf_counter() - started, page_sql, args)
            await release(pool, conn)

    return await recovering(pool, recovery, True, attempt)


def _failed(
    exc: BaseException,
    conn: asyncpg.Connection,
    args: Sequence[Any],
    operation: str,
    known_codes: Container[str],
    client_values: bool,
    params: Sequence[tuple[str, str]],
) -> ApiError:
    """The ApiError of a read that failed on ``conn``."""
    if isinstance(exc, InternalClientError):
        # the driver lost track of the connection (e.g. its backend was terminated
        # while idle): never reuse it
        _drop(conn)
        return translate(exc, operation, known_codes, client_values=client_values)
    blame = _client_may_cause(exc, args, client_values, params)
    return translate(exc, operation, known_codes, client_values=blame)


async def run_write(
    pool: asyncpg.Pool,
    sql: str,
    args: Sequence[Any],
    finish: Callable[[list[asyncpg.Record], int | None], T],
    *,
    timeout_s: float | None,
    operation: str,
    known_codes: Container[str],
    rows: bool = True,
    guard: WriteGuard[T] | None = None,
    client_values: bool = True,
    params: Sequence[tuple[str, str]] = (),
    acquire_timeout_s: float = ACQUIRE_TIMEOUT_S,
    recovery: Recovery | None = None,
    limit: int | None = None,
) -> T:
    """Run a write in its own transaction; answer only what committed.

    ``finish`` shapes and encodes the result *before* ``COMMIT``, so a value that
    cannot be answered rolls the write back. ``guard`` (idempotency) may answer
    instead of running the statement, and stores the answer in the same
    transaction. A connection lost during ``COMMIT`` is 503
    ``COMMIT_OUTCOME_UNKNOWN``: the write may or may not have happened. Past the
    pool's circuit breaker (``recovery``), and never retried: it may have started writing.
    """

    async def attempt() -> T:
        conn = await acquire(pool, acquire_timeout_s, operation, known_codes)
        started = time.perf_counter()
        clean = False  # the session was reset with the COMMIT: nothing to reset on release
        try:
            tx = WriteTransaction(conn, reset_with_commit(pool, conn))
            try:
                await tx.start()
                if guard is not None:
                    replay = await guard.before(conn)
                    if replay is not None:
                        await tx.rollback()
                        return replay
                if rows:
                    records, affected = await fetch_rows(conn, sql, args, limit, timeout_s), None
                else:
                    records, affected = (
                        [],
                        affected_rows(await conn.execute(sql, *args, timeout=timeout_s)),
                    )
                result = finish(records, affected)
                if guard is not None:
                    await guard.after(conn, result)
            except BaseException as exc:
                await _rollback(conn, tx)
                if isinstance(exc, InternalClientError):
                    _drop(conn)  # the driver lost track of the connection: never reuse it
                if isinstance(exc, (*_DRIVER_ERRORS, InternalClientError)):
                    blame = _client_may_cause(exc, args, client_values, params)
                    error = translate(
                        exc, operation, known_codes, client_values=blame, params=params
                    )
                    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
                        await _explain_violation(conn, exc, error)
                    raise error from exc
                if isinstance(exc, ValueError | OverflowError | orjson.JSONEncodeError):
                    # the driver could not decode a value, or the answer could not be encoded
                    raise ApiError(
                        "INTERNAL_ERROR",
                        "The result could not be answered; nothing was written",
                        internal=f"decoding the result failed, rolled back: {exc!r}",
                    ) from exc
                raise
            await commit(conn, tx, operation, known_codes, client_values=client_values)
            clean = tx.reset is not None
            return result
        finally:
            record_statement(time.perf_counter() - started, sql, args)
            await release(pool, conn, reset=not clean)

    return await recovering(pool, recovery, False, attempt)


def reset_with_commit(pool: asyncpg.Pool, conn: asyncpg.Connection) -> str | None:
    """The session reset a write connection gets on release (asyncpg's reset query: the
    advisory locks, cursors, LISTENs and settings a template may have left), to run in the
    COMMIT's round trip instead; None for a pool that resets otherwise (a read pool, one
    through PgBouncer: none) or a connection whose reset asyncpg's release must run
    (listeners of its own to drop as well)."""
    inner = getattr(conn, "_con", None) or conn  # a pool's proxy or a connection itself
    if getattr(pool, "_reset", False) is not None or not isinstance(inner, asyncpg.Connection):
        return None
    if inner._listeners or inner._log_listeners:
        return None
    return inner.get_reset_query() or None


class WriteTransaction:
    """A write's transaction, begun and ended by statements of its own (asyncpg's
    ``Transaction`` has no way to add to its COMMIT), with ``reset`` (the session reset,
    :func:`reset_with_commit`) sent ahead of the COMMIT in the same simple query: one round
    trip a write less than a COMMIT then the pool's reset.

    The reset runs inside the transaction, so it takes effect with it (a RESET ALL or an
    UNLISTEN inside a transaction is undone by a rollback): a failure anywhere in that
    query leaves nothing committed and the session as it was, and the pool's own reset
    runs on release as before. Only the session's advisory locks are let go a moment
    before the COMMIT instead of after it."""

    __slots__ = ("_conn", "reset")

    def __init__(self, conn: asyncpg.Connection, reset: str | None) -> None:
        self._conn = conn
        self.reset = reset

    async def start(self) -> None:
        await self._conn.execute("BEGIN")

    async def commit(self) -> None:
        ending = "COMMIT" if self.reset is None else f"{self.reset}\nCOMMIT;"
        try:
            await self._conn.execute(ending)
        except BaseException:
            self.reset = None  # not known to have run: the pool's reset on release
            if not self._conn.is_closed() and self._conn.is_in_transaction():
                await self.rollback()  # the reset failed before the COMMIT ran
            raise

    async def rollback(self) -> None:
        """Roll back whatever happens (shielded: a cancelled request still rolls back)."""
        self.reset = None
        with contextlib.suppress(Exception):
            await asyncio.shield(self._conn.execute("ROLLBACK"))


async def _explain_violation(
    conn: asyncpg.Connection, exc: asyncpg.IntegrityConstraintViolationError, error: ApiError
) -> None:
    """Name the column, key or constraint a write violated (never the table or the SQL)."""
    column = getattr(exc, "column_name", None)
    constraint = getattr(exc, "constraint_name", None)
    table = getattr(exc, "table_name", None) or ""
    if exc.sqlstate == "23502" and column:
        error.errors = [{"field": column, "message": "must not be null"}]
        return
    if exc.sqlstate not in ("23505", "23514") or not constraint:
        return
    key = (getattr(exc, "schema_name", None) or "public", table, constraint)
    columns = _constraint_columns.get(key)
    if columns is None:
        try:
            found = await asyncio.wait_for(conn.fetchval(CONSTRAINT_COLUMNS, *key), 2)
        except Exception:  # only the explanation is lost
            return
        if len(_constraint_columns) > 1000:
            _constraint_columns.clear()
        columns = _constraint_columns[key] = tuple(found or ())
    if exc.sqlstate == "23505" and columns:
        error.detail = f"A resource with the same {', '.join(columns)} already exists"
        error.errors = [{"fields": list(columns), "message": "must be unique"}]
    elif exc.sqlstate == "23514":
        # generated names begin with a table's name ("loans_days_check", also on a partition
        # or after a rename): name such a check by its columns, never by the table
        name = constraint
        if constraint.endswith("_check") and columns:
            name = "_".join(columns) + "_check"
        error.detail = f"The data violates the check {name}"
        error.errors = [
            {"constraint": name, "fields": list(columns), "message": "violates the check"}
        ]


def _client_may_cause(
    exc: BaseException, args: Sequence[Any], client_values: bool, params: Sequence[Any]
) -> bool:
    """Whether a data exception may come from a value the client sent.

    A division by zero can only be the client's when one of the bound values is zero
    (the template's own, not the pagination values appended after them); otherwise the
    template divides by something of its own.
    """
    if not client_values:
        return False
    if getattr(exc, "sqlstate", None) == "22012":
        bound = args[: len(params)] if params else args
        return any(
            isinstance(v, int | float | Decimal) and not isinstance(v, bool) and v == 0
            for v in bound
        )
    return True


def drop_connection(conn: asyncpg.Connection) -> None:
    """Close a connection that must not be reused (it may be gone already)."""
    with contextlib.suppress(Exception):
        conn.terminate()


_drop = drop_connection


async def commit(
    conn: asyncpg.Connection,
    tx: Any,
    operation: str,
    known_codes: Container[str],
    *,
    client_values: bool = True,
) -> None:
    """COMMIT a write's transaction. A connection lost during it is 503
    ``COMMIT_OUTCOME_UNKNOWN`` (the server may or may not have committed); a refusal at
    COMMIT (a deferred constraint) is translated as the statement's errors are."""
    try:
        await tx.commit()
    except _CONNECTION_LOST as exc:
        drop_connection(conn)
        raise ApiError(
            "COMMIT_OUTCOME_UNKNOWN",
            headers={"Retry-After": RETRY_AFTER_S},
            internal=f"connection lost during COMMIT: {exc!r}",
            database_error=f"{type(exc).__name__}: {exc}",
        ) from exc
    except asyncpg.PostgresError as exc:
        raise translate(exc, operation, known_codes, client_values=client_values) from exc


async def rollback(tx: Any) -> None:
    """Roll ``tx`` back whatever happens (shielded: a cancelled request still rolls back)."""
    with contextlib.suppress(Exception):
        await asyncio.shield(tx.rollback())


async def _rollback(conn: asyncpg.Connection, tx: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.shield(tx.rollback())


class WriteGuard(Protocol[T]):
    """What runs inside a write's transaction before and after its statement."""

    async def before(self, conn: asyncpg.Connection) -> T | None:
        """An answer to give instead of running the statement, or None to run it."""

    async def after(self, conn: asyncpg.Connection, result: T) -> None:
        """Called with the finished answer, before COMMIT."""


async def release(pool: asyncpg.Pool, conn: asyncpg.Connection, *, reset: bool = True) -> None:
    """Return a connection; a broken one is dropped, never surfaced as an error.

    This runs in ``finally`` after the answer is decided: whatever goes wrong here
    (a backend terminated meanwhile, a driver that lost track of the connection)
    must never replace that answer. ``reset=False``: the session was reset already (a
    write's, with its COMMIT: :class:`WriteTransaction`), so the pool's reset is skipped.
    """
    try:
        holder = getattr(conn, "_holder", None)
        inner = getattr(conn, "_con", None)
        if holder is not None and inner is not None and holder._pool is pool:
            # Pool.release without its asyncio.shield (a task per release): cancelled
            # here, asyncpg terminates the connection and its holder returns to the pool
            holders.on_release(inner)
            # a bound on the wait for a cancellation to finish and for a reset round trip;
            # none for a read session's free release (no wait, no round trip, no timer)
            waits = (
                (reset and getattr(pool, "_reset", None) is not _keep_session)  # a RESET trip
                or inner._protocol._is_cancelling()
                or inner._protocol.is_in_transaction()  # Connection.is_in_transaction's own
                or inner._top_xact is not None
            )
            if waits or not holders.give_back(pool, holder, inner):
                await holder.release(RELEASE_TIMEOUT_S if waits else None)
        else:
            await pool.release(conn)
    except Exception as exc:
        log.info("dropped a broken connection on release: %r", exc)
        _drop(conn)


def affected_rows(status: str) -> int | None:
    """Row count from a command tag such as 'UPDATE 3' or 'INSERT 0 1'."""
    parts = status.split()
    if parts and parts[-1].isdigit():
        return int(parts[-1])
    return None


_CONNECTION_STATES = ("57P01", "57P02", "57P03", "53300")
_DRIVER_ERRORS = (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
# what, during COMMIT, leaves the outcome unknown (the server may have committed)
_CONNECTION_LOST = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    InternalClientError,
)
# undefined table, column, function: schema drift under a compiled row
DRIFT_STATES = frozenset({"42P01", "42703", "42883"})
_ARGUMENT = re.compile(r"query argument \$(\d+)")
CONSTRAINT_COLUMNS = """
SELECT coalesce(
    (SELECT array_agg(a.attname::text ORDER BY k.n)
     FROM pg_constraint c
     CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
     JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
     WHERE c.conname = $3
       AND c.conrelid = to_regclass(quote_ident($1) || '.' || quote_ident($2))),
    (SELECT array_agg(a.attname::text ORDER BY k.n)
     FROM pg_index i
     CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indexrelid = to_regclass(quote_ident($1) || '.' || quote_ident($3))))
"""
_constraint_columns: dict[tuple[str, str, str], tuple[str, ...]] = {}


def translate(
    exc: BaseException,
    operation: str,
    known_codes: Container[str] = frozenset(),
    *,
    acquiring: bool = False,
    client_values: bool = True,
    params: Sequence[tuple[str, str]] = (),
) -> ApiError:
    """Map a driver or server error to an ApiError (see :func:`_translate`); an answer that
    asks to retry (a conflict, a connection problem) says when, with ``Retry-After``."""
    error = _translate(
        exc,
        operation,
        known_codes,
        acquiring=acquiring,
        client_values=client_values,
        params=params,
    )
    if error.code in _RETRY_LATER and "Retry-After" not in error.headers:
        error.headers["Retry-After"] = _RETRY_LATER[error.code]
    return error


_RETRY_LATER = {
    "TRANSACTION_CONFLICT": RETRY_AFTER_S,
    "DATABASE_CONNECTION_ERROR": RETRY_AFTER_S,
    "DATABASE_BUSY": BUSY_RETRY_AFTER_S,
}


def _translate(
    exc: BaseException,
    operation: str,
    known_codes: Container[str] = (),
    *,
    acquiring: bool = False,
    client_values: bool = True,
    params: Sequence[tuple[str, str]] = (),
) -> ApiError:
    """Map a driver or server error to an ApiError, keyed on SQLSTATE.

    ``client_values``: the statement binds values the client sent. Without them, a
    data exception (class 22) is the template's own fault, not the client's.
    ``params``: (name, in) of each placeholder, to name the one the driver refused.
    """
    internal = f"{type(exc).__name__}: {exc}"
    if acquiring:
        # waiting for a free connection in vain: the pool is busy, the database may be fine
        if isinstance(exc, TimeoutError):
            return ApiError(
                "DATABASE_BUSY",
                "No database connection became free in time",
                internal=internal,
            )
        # whatever else stops us getting a connection (refused, a connection attempt that
        # hung, database closed to connections, too many clients) is a connection problem
        return ApiError("DATABASE_CONNECTION_ERROR", internal=internal, database_error=internal)
    if isinstance(exc, TimeoutError):
        return ApiError("STATEMENT_TIMEOUT", internal=internal, database_error="client timeout")
    if isinstance(exc, ArgumentError):
        # the driver refused to encode an argument (e.g. out of range for the column type);
        # its own (not the server's localizable) message says which placeholder
        errors = None
        m = _ARGUMENT.search(str(exc))
        if m and 0 < int(m.group(1)) <= len(params):
            name, source = params[int(m.group(1)) - 1]
            errors = [{"parameter": name, "in": source, "message": "does not fit its column"}]
        return ApiError(
            "INVALID_VALUE",
            "A parameter value does not fit its column",
            errors=errors,
            internal=internal,
        )
    if isinstance(
        exc,
        OSError | asyncpg.InterfaceError | asyncpg.PostgresConnectionError | InternalClientError,
    ):
        return ApiError("DATABASE_CONNECTION_ERROR", internal=internal, database_error=internal)
    if not isinstance(exc, asyncpg.PostgresError):
        return ApiError("INTERNAL_ERROR", internal=internal)
    state = exc.sqlstate or ""
    db_error = f"{state} {exc}"
    if state in DRIFT_STATES:
        # the database changed under the row (a table, column or function is gone): the
        # row is re-checked; meanwhile the route is unavailable, not broken
        return ApiError(
            "ENDPOINT_UNAVAILABLE",
            "This endpoint is being re-checked after a change in the database",
            headers={"Retry-After": RETRY_AFTER_S},
            internal=internal,
            database_error=db_error,
            schema_drift=True,
        )
    code, detail = _code_for_state(state, operation, client_values)
    if state == "P0001":
        message = str(getattr(exc, "message", "") or "").strip()
        if message in known_codes:
            detail = getattr(exc, "detail", None) or None
            return ApiError(message, detail, internal=internal, database_error=db_error)
    return ApiError(code, detail, internal=internal, database_error=db_error)


def _code_for_state(state: str, operation: str, client_values: bool) -> tuple[str, str | None]:
    if state == "23505":
        return "DUPLICATE_RESOURCE", None
    if state == "23503":
        if operation == "DELETE":
            return "RESOURCE_IN_USE", None
        return "REFERENCED_RESOURCE_MISSING", None
    if state in ("23502", "23514", "23P01", "23001", "23000"):
        return "CONSTRAINT_VIOLATION", None
    if state.startswith("22"):  # a data exception: a client's value, else the template's own
        return ("INVALID_VALUE" if client_values else "TEMPLATE_ERROR"), None
    # a read-only session (25006) or a read's role without the privilege (42501) asked to write
    if state == "25006" or (state == "42501" and operation == "SELECT"):
        return "READ_ONLY_VIOLATION", None
    if state == "57014":
        return "STATEMENT_TIMEOUT", None
    if state in ("40001", "40P01"):
        return "TRANSACTION_CONFLICT", None
    if state.startswith("08") or state in _CONNECTION_STATES:
        return "DATABASE_CONNECTION_ERROR", None
    return "INTERNAL_ERROR", None
