"""Read replicas named by ``database_failover_config``: which pool serves each read.

A row names a primary and one streaming replica by the *environment variables* that
hold their URLs (``primary_database = 'DATABASE_URL'``, ``replica_database =
'REPLICA_1_URL'``), never by the URLs themselves: a row that holds a connection string,
or names a variable that is not set, is refused (logged at start, a PROBLEM of ``engine
check``) and the value is never logged. One row per replica; rows with
``failover_enabled`` false are ignored.

Reads (GET endpoints, pages and their counts) go to the replicas in use by each row's
``read_distribution_percent`` (a smooth weighted round robin: the shares are exact, not
random), the rest to the primary's read pool. Writes, reads inside a write, the LISTEN
connection, the admin API, idempotency, figures and streamed exports stay on the primary.

Each replica is checked every ``health_check_interval_seconds`` on a connection of its
own (``connection_timeout_seconds`` to connect and to answer): it must be a standby
(``pg_is_in_recovery()``) of the engine's primary (same system identifier) and replay
WAL. Its lag is measured against the primary's ``pg_current_wal_lsn()``: caught up (its
replay LSN reached what the primary had written) is 0 s, however idle the primary;
otherwise the time since a check first saw the primary at an LSN the replica has still
not replayed (at the very first check, the age of its last replayed commit). A replica
lagging more than ``ENGINE_MAX_REPLICA_LAG_S`` takes no reads until it catches up.

``failover_threshold`` failures since its last good check (a check that could not
connect or answer, or a read on it that failed to connect) take a replica out; a check
that finds it unfit (not a standby, say promoted, or another system identifier) takes
it out at once, since every read it takes may then be wrong; one good check puts it
back. The checks connect with ``connect_kwargs`` (engine/pgbouncer.py's, through
PgBouncer). A read that
fails on a replica with a connection-class error, a recovery conflict, a busy pool or a
table the replica does not have yet is run once more on the primary: the client never
sees the replica's failure. Reads on a replica may miss a write the primary committed a
moment ago: read-your-writes is not promised there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

from engine import roles
from engine.errors import ApiError
from engine.recovery import Outcome, Recovery, outcome_of

log = logging.getLogger("engine.replicas")

T = TypeVar("T")

PRIMARY = "primary"  # the read target name of the primary's read pool
MAX_SAMPLES = 512  # primary LSNs a lagging replica has not replayed yet, oldest kept
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NOT_A_DSN = "store the name of an environment variable, never a DSN"
# a replica's failure that the primary may well answer: the read runs there once more
FALLBACK_CODES = frozenset({"DATABASE_CONNECTION_ERROR", "DATABASE_BUSY", "TRANSACTION_CONFLICT"})

LOAD_ROWS = """
SELECT id, primary_database, replica_database, failover_enabled,
       health_check_interval_seconds, failover_threshold, connection_timeout_seconds,
       read_distribution_percent
FROM database_failover_config
ORDER BY id
"""
PRIMARY_POSITION = """
SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8 AS lsn,
       (SELECT system_identifier FROM pg_control_system()) AS system_id
"""
REPLICA_POSITION = """
SELECT pg_is_in_recovery() AS standby,
       (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8 AS lsn,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS replay_age_s,
       (SELECT system_identifier FROM pg_control_system()) AS system_id
"""


# ---------------------------------------------------------------------------
# The rows
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplicaConfig:
    """One usable row of ``database_failover_config``: a replica and how to treat it."""

    row_id: int
    name: str  # the environment variable naming the replica's URL (its label everywhere)
    url: str = field(repr=False)  # never logged
    primary_name: str
    interval_s: float
    threshold: int
    connect_timeout_s: float
    share_percent: float  # of all reads, after scaling when the rows ask for more than 100


def _variable(
    row: Mapping[str, Any], column: str, environ: Mapping[str, str]
) -> tuple[str, str] | str:
    """(name, value) of the variable a column names, or why the row is refused."""
    where = f"database_failover_config id={row['id']}"
    value = (row.get(column) or "").strip()
    if "://" in value or "=" in value:
        return f"{where}: {column} holds a connection string; {NOT_A_DSN} (row ignored)"
    if not ENV_NAME.fullmatch(value):
        return f"{where}: {column} is not an environment variable name; {NOT_A_DSN} (row ignored)"
    url = environ.get(value)
    if not url:
        return f"{where}: {column} names {value}, which is not set in the environment (row ignored)"
    return value, url


def parse_rows(
    rows: Iterable[Mapping[str, Any]], environ: Mapping[str, str]
) -> tuple[list[ReplicaConfig], list[str]]:
    """The replicas the rows name, and the problems of the rows refused (pure)."""
    problems: list[str] = []
    found: list[tuple[Mapping[str, Any], str, str, str]] = []
    for row in rows:
        if row.get("failover_enabled") is False:
            continue
        primary = _variable(row, "primary_database", environ)
        replica = _variable(row, "replica_database", environ)
        refused = [p for p in (primary, replica) if isinstance(p, str)]
        if refused:
            problems.extend(refused)
            continue
        assert not isinstance(primary, str) and not isinstance(replica, str)
        where = f"database_failover_config id={row['id']}"
        if replica[0] == primary[0] or replica[1] == primary[1]:
            problems.append(f"{where}: replica_database names the primary itself (row ignored)")
            continue
        if any(f[2] == replica[0] for f in found):
            problems.append(f"{where}: replica {replica[0]} is named by an earlier row (ignored)")
            continue
        found.append((row, primary[0], replica[0], replica[1]))
    primaries = sorted({f[1] for f in found})
    if len(primaries) > 1:
        problems.append(
            "database_failover_config names several primaries ("
            + ", ".join(primaries)
            + "); every replica must follow the engine's one primary (checked by system "
            "identifier: a replica of another server takes no reads)"
        )
    wanted = sum(_int(row.get("read_distribution_percent"), 80) for row, *_ in found)
    scale = 100 / wanted if wanted > 100 else 1.0
    if scale < 1:
        problems.append(
            f"database_failover_config: the replicas' read_distribution_percent add up to "
            f"{wanted}; each is scaled down so they share every read"
        )
    configs = [
        ReplicaConfig(
            row_id=int(row["id"]),
            name=name,
            url=url,
            primary_name=primary_name,
            interval_s=float(_int(row.get("health_check_interval_seconds"), 30)),
            threshold=_int(row.get("failover_threshold"), 3),
            connect_timeout_s=float(_int(row.get("connection_timeout_seconds"), 10)),
            share_percent=_int(row.get("read_distribution_percent"), 80) * scale,
        )
        for row, primary_name, name, url in found
    ]
    return configs, problems


def _int(value: Any, default: int) -> int:
    return default if value is None else int(value)


async def load_configs(
    conn: asyncpg.Connection, environ: Mapping[str, str]
) -> tuple[list[ReplicaConfig], list[str]]:
    """The rows read on the primary, parsed (:func:`parse_rows`)."""
    return parse_rows([dict(r) for r in await conn.fetch(LOAD_ROWS)], environ)


# ---------------------------------------------------------------------------
# Lag
# ---------------------------------------------------------------------------


class LagMeter:
    """A replica's lag from successive (primary LSN, replica replay LSN) observations.

    Caught up (the replay LSN reached the primary's LSN read just before) is 0 s, so an
    idle primary never makes an idle replica look behind. Behind: the time since the
    first observation of a primary LSN the replica has still not replayed; when no
    earlier observation exists (the first check), the age of its last replayed commit.
    """

    def __init__(self) -> None:
        self._behind: deque[tuple[float, int]] = deque()  # (monotonic, primary LSN) unreplayed
        self._observed = False

    def observe(
        self, primary_lsn: int, replay_lsn: int, replay_age_s: float | None, now: float
    ) -> float:
        first = not self._observed
        self._observed = True
        while self._behind and self._behind[0][1] <= replay_lsn:
            self._behind.popleft()
        if replay_lsn >= primary_lsn:
            self._behind.clear()
            return 0.0
        if len(self._behind) < MAX_SAMPLES:
            self._behind.append((now, primary_lsn))
        if first and replay_age_s is not None:
            return max(0.0, replay_age_s)
        return now - self._behind[0][0]


# ---------------------------------------------------------------------------
# One replica
# ---------------------------------------------------------------------------


@dataclass
class ReadTarget:
    """Where one read runs: a pool and the recovery (breaker, retries) it runs under."""

    name: str
    pool: asyncpg.Pool
    recovery: Recovery | None  # None on a replica: the fallback to the primary is its retry
    replica: Replica | None = None
    weight: float = 0.0
    current: float = 0.0  # the smooth weighted round robin's running credit
    reads: int = 0


class Replica:
    """One replica's state: its pool, health, lag, and the check job that keeps them."""

    def __init__(
        self, config: ReplicaConfig, connect_kwargs: Mapping[str, Any] | None = None
    ) -> None:
        self.config = config
        self.connect_kwargs = dict(connect_kwargs or {})  # pgbouncer.connect_kwargs
        self.name = config.name
        self.pool: asyncpg.Pool | None = None  # made at its first good check
        self.target: ReadTarget | None = None
        self.healthy = False  # passed its last check, fewer than threshold failures since
        self.lag_s: float | None = None
        self.failures = 0  # since the last good check
        self.checks = 0
        self.failed_checks = 0
        self.fallbacks = 0  # reads it failed that the primary answered instead
        self.reason: str | None = "not checked yet"
        self.guarantee: roles.ReadGuarantee | None = None
        self.lag = LagMeter()
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    def in_use(self, max_lag_s: float) -> bool:
        return self.healthy and self.target is not None and (self.lag_s or 0.0) <= max_lag_s

    def as_dict(self, max_lag_s: float) -> dict[str, Any]:
        return {
            "replica": self.name,
            "row_id": self.config.row_id,
            "in_use": self.in_use(max_lag_s),
            "healthy": self.healthy,
            "lag_s": None if self.lag_s is None else round(self.lag_s, 3),
            "failures": self.failures,
            "reads": self.target.reads if self.target is not None else 0,
            "fallbacks": self.fallbacks,
            **({"reason": self.reason} if self.reason else {}),
        }

    async def connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(
                self.config.url,
                timeout=self.config.connect_timeout_s,
                server_settings={"application_name": "engine-replica-check"},
                **self.connect_kwargs,
            )
        return self._conn

    def drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.terminate()
        self._conn = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.drop()
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), 5)


# ---------------------------------------------------------------------------
# The set of replicas, and the choice per read
# ---------------------------------------------------------------------------

OpenPool = Callable[[str, str], Awaitable[asyncpg.Pool]]


class Replicas:
    """The process's replicas and the read selector (one per :class:`Database`).

    ``primary``: the primary's read pool and recovery; ``positions``: the pool the
    primary's WAL position is read on (the write pool); ``open_pool(url, name)`` makes a
    replica's read pool (read-only sessions, as the primary's read pool);
    ``connect_kwargs``: for the health checks' connections (engine/pgbouncer.py's).
    """

    def __init__(
        self,
        primary_pool: asyncpg.Pool,
        recovery: Recovery | None,
        *,
        configs: Sequence[ReplicaConfig] = (),
        positions: asyncpg.Pool | None = None,
        open_pool: OpenPool | None = None,
        max_lag_s: float = 30.0,
        problems: Sequence[str] = (),
        connect_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.primary = ReadTarget(PRIMARY, primary_pool, recovery, weight=100.0)
        self.replicas = [Replica(c, connect_kwargs) for c in configs]
        self.problems = list(problems)
        self.max_lag_s = max_lag_s
        self._positions = positions or primary_pool
        self._open_pool = open_pool
        self._recovery = recovery
        self._system_id: int | None = None
        self._targets: tuple[ReadTarget, ...] = (self.primary,)
        self._started = False

    # the hot path ---------------------------------------------------------

    def choose(self) -> ReadTarget:
        """The pool of the next read: a smooth weighted round robin over the targets in use."""
        targets = self._targets
        if len(targets) == 1:
            best = targets[0]
        else:
            best = targets[0]
            total = 0.0
            for t in targets:
                t.current += t.weight
                total += t.weight
                if t.current > best.current:
                    best = t
            best.current -= total
        best.reads += 1
        return best

    async def read(self, run: Callable[[ReadTarget], Awaitable[T]]) -> T:
        """``run`` on the chosen target; a replica's failure the primary may answer is run
        once more on the primary."""
        return await self.read_on(self.choose(), run)

    async def read_on(self, target: ReadTarget, run: Callable[[ReadTarget], Awaitable[T]]) -> T:
        """``run`` on ``target`` (what :meth:`choose` gave), falling back as :meth:`read`."""
        if target.replica is None:
            return await run(target)
        try:
            return await run(target)
        except ApiError as error:
            if error.code not in FALLBACK_CODES and not error.schema_drift:
                raise
            replica = target.replica
            replica.fallbacks += 1
            if outcome_of(error) is Outcome.FAILURE:
                self._failed(replica, f"a read failed ({error.code})")
            log.info(
                "a read failed on replica %s (%s); run on the primary", target.name, error.code
            )
        self.primary.reads += 1
        return await run(self.primary)

    # figures ----------------------------------------------------------------

    def reads(self) -> dict[str, int]:
        """Reads chosen per target (``primary`` and each replica's name)."""
        out = {PRIMARY: self.primary.reads}
        for r in self.replicas:
            out[r.name] = r.target.reads if r.target is not None else 0
        return out

    def status(self) -> list[dict[str, Any]]:
        """Each replica's state (health, lag, reads), for readiness and the figures."""
        return [r.as_dict(self.max_lag_s) for r in self.replicas]

    def pools(self) -> list[tuple[str, asyncpg.Pool]]:
        return [(f"replica:{r.name}", r.pool) for r in self.replicas if r.pool is not None]

    # health -------------------------------------------------------------------

    def start(self) -> None:
        """Check every replica now, then every interval (a replica takes reads once good)."""
        if self._started:
            return
        self._started = True
        for problem in self.problems:
            log.warning("%s", problem)
        for r in self.replicas:
            r._task = asyncio.create_task(self._watch(r), name=f"replica-check-{r.name}")

    async def stop(self) -> None:
        await asyncio.gather(*(r.close() for r in self.replicas), return_exceptions=True)
        self._started = False

    async def _watch(self, replica: Replica) -> None:
        while True:
            try:
                await self.check(replica)
            except Exception:  # a bug of ours must not end the checks
                log.exception("checking replica %s failed", replica.name)
            await asyncio.sleep(replica.config.interval_s)

    async def check(self, replica: Replica) -> None:
        """One health check of ``replica``: standby of our primary, replaying, how far behind."""
        timeout_s = replica.config.connect_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                async with self._positions.acquire() as conn:
                    primary = await conn.fetchrow(PRIMARY_POSITION)
        except Exception as exc:  # the primary's trouble is not the replica's: no verdict
            log.info(
                "replica %s not checked: the primary's position unread (%r)", replica.name, exc
            )
            return
        assert primary is not None
        self._system_id = primary["system_id"]
        try:
            async with asyncio.timeout(timeout_s):
                conn = await replica.connection()
                state = await conn.fetchrow(REPLICA_POSITION)
            assert state is not None
            why = self._unfit(state)
            if why is not None:  # it answers, and what it would answer is wrong: out now
                self._failed(replica, why, at_once=True)
                return
            if replica.pool is None:
                await self._open(replica)
        except Exception as exc:
            replica.drop()
            self._failed(replica, f"check failed: {type(exc).__name__}")
            return
        lag = replica.lag.observe(
            primary["lsn"], state["lsn"], state["replay_age_s"], time.monotonic()
        )
        self._good(replica, lag)

    def _unfit(self, state: Mapping[str, Any]) -> str | None:
        if not state["standby"]:
            return "not a standby (promoted, or not a replica): it takes no reads"
        if state["system_id"] != self._system_id:
            return "not a replica of the engine's primary (another system identifier)"
        if state["lsn"] is None:
            return "replays no WAL"
        return None

    async def _open(self, replica: Replica) -> None:
        assert self._open_pool is not None
        pool = await self._open_pool(replica.config.url, f"engine-replica:{replica.name}"[:63])
        try:
            async with pool.acquire() as conn:
                replica.guarantee = await roles.inspect(conn)
        except BaseException:
            await pool.close()
            raise
        replica.pool = pool
        replica.target = ReadTarget(replica.name, pool, None, replica=replica)
        log.info("replica %s: %s", replica.name, replica.guarantee.line)

    def _good(self, replica: Replica, lag_s: float) -> None:
        replica.checks += 1
        was = replica.in_use(self.max_lag_s)
        back = not replica.healthy
        replica.healthy, replica.failures, replica.lag_s = True, 0, lag_s
        lagging = lag_s > self.max_lag_s
        replica.reason = (
            f"lags {lag_s:.1f} s behind the primary (ENGINE_MAX_REPLICA_LAG_S={self.max_lag_s:g})"
            if lagging
            else None
        )
        now = replica.in_use(self.max_lag_s)
        if now != was:
            if now:
                log.warning(
                    "replica %s %s: takes reads",
                    replica.name,
                    "is healthy" if back else f"caught up (lag {lag_s:.1f} s)",
                )
            else:
                log.warning(
                    "replica %s %s: no reads until it catches up", replica.name, replica.reason
                )
            self._rebuild()

    def _failed(self, replica: Replica, why: str, *, at_once: bool = False) -> None:
        """A failure of ``replica``: out once ``failover_threshold`` of them came in a row
        (a connection may fail once and work again), or ``at_once`` (it is unfit)."""
        replica.failed_checks += 1
        replica.failures += 1
        if replica.healthy and replica.failures < replica.config.threshold and not at_once:
            return
        was = replica.in_use(self.max_lag_s)
        replica.healthy = False
        replica.reason = why
        if was:
            log.warning(
                "replica %s taken out %s: %s; reads go to the primary",
                replica.name,
                "at once" if at_once else f"after {replica.failures} failure(s)",
                why,
            )
            self._rebuild()

    def _rebuild(self) -> None:
        """The targets in use and their weights: each replica its share, the primary the
        rest (a replica out gives its share back to the primary)."""
        using = [
            r.target for r in self.replicas if r.in_use(self.max_lag_s) and r.target is not None
        ]
        for t in using:
            assert t.replica is not None
            t.weight = t.replica.config.share_percent
        self.primary.weight = max(0.0, 100.0 - sum(t.weight for t in using))
        targets = [self.primary, *using] if self.primary.weight > 0 or not using else using
        for t in targets:
            t.current = 0.0
        self._targets = tuple(targets)


# ---------------------------------------------------------------------------
# engine check
# ---------------------------------------------------------------------------


async def check_report(
    conn: asyncpg.Connection,
    environ: Mapping[str, str],
    max_lag_s: float,
    connect_kwargs: Mapping[str, Any] | None = None,
) -> list[tuple[str, str]]:
    """(kind, line) for ``engine check``: PROBLEM for a refused row, WARNING for a replica
    that is down, not a standby of this primary, or lagging, REPLICA for one that is fine.
    ``connect_kwargs``: for the connection to each replica (engine/pgbouncer.py's)."""
    try:
        configs, problems = await load_configs(conn, environ)
    except asyncpg.UndefinedTableError:
        return []
    out = [("PROBLEM", p) for p in problems]
    if not configs:
        return out
    primary = await conn.fetchrow(PRIMARY_POSITION)
    assert primary is not None
    for c in configs:
        out.append(await _check_one(c, primary, max_lag_s, connect_kwargs or {}))
    return out


async def _check_one(
    config: ReplicaConfig,
    primary: Mapping[str, Any],
    max_lag_s: float,
    connect_kwargs: Mapping[str, Any],
) -> tuple[str, str]:
    what = f"replica {config.name} (database_failover_config id={config.row_id})"
    try:
        async with asyncio.timeout(config.connect_timeout_s):
            conn = await asyncpg.connect(
                config.url, timeout=config.connect_timeout_s, **connect_kwargs
            )
            try:
                state = await conn.fetchrow(REPLICA_POSITION)
            finally:
                await conn.close()
    except Exception as exc:
        return "WARNING", f"{what} does not answer ({type(exc).__name__}); reads use the primary"
    assert state is not None
    if not state["standby"]:
        return "WARNING", f"{what} is not a standby; it takes no reads"
    if state["system_id"] != primary["system_id"]:
        return "WARNING", f"{what} is not a replica of this primary; it takes no reads"
    lag = LagMeter().observe(primary["lsn"], state["lsn"] or 0, state["replay_age_s"], 0.0)
    if lag > max_lag_s:
        return "WARNING", f"{what} lags {lag:.1f} s (ENGINE_MAX_REPLICA_LAG_S={max_lag_s:g})"
    return "REPLICA", f"{what}: standby, {config.share_percent:g} % of reads, lag {lag:.1f} s"
