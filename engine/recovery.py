"""Recovery from connection-class errors, as the rows of ``error_recovery_strategies`` say.

A database that cannot be reached must not make every request queue behind it,
and a connection that dies under a read must not turn into an error the client
sees when one more try would have answered. Two strategies, read from the rows
(``error_recovery_strategies`` joined to ``database_error_patterns`` whose
``error_type`` is ``connection_error``), each its built-in default when no row
names it:

- ``retry``: an idempotent read (a GET, on the read-only pool) whose attempt
  failed on a connection-class error is tried again after ``retry_delay_ms``,
  doubled each time (``recovery_config->>'backoff'`` = ``constant`` keeps it
  flat, ``max_delay_ms`` caps it), at most ``max_retry_attempts`` more times.
  A write is never retried: it may have started writing.
- ``circuit_breaker``: one breaker per pool (read, write). After
  ``circuit_breaker_threshold`` consecutive connection failures it opens: every
  statement on that pool is answered 503 ``DATABASE_CONNECTION_ERROR`` at once,
  with ``Retry-After`` the cool-down left, for ``recovery_config->>'cooldown_ms'``
  (else ``retry_delay_ms``). Then it half-opens: one trial request runs (others
  are still refused); its success closes the breaker, its failure opens it again.

What counts (:func:`outcome_of`): a failure is a connection-class error (cannot
connect, connection lost, 08xxx, 57P01-57P03, 53300) or a commit whose outcome is
unknown; a pool that stayed busy (``DATABASE_BUSY``) or a statement timeout
(57014, ``STATEMENT_TIMEOUT``) counts neither way (the database is alive but
slow); any answer of the server, an error of the client's included, is a
success. So a retry or the breaker never turns a 4xx into a 5xx.

Strategies are read after the first statement that succeeds and again every
:data:`RELOAD_S` seconds (or at the next statement after
:meth:`Recovery.request_reload`), in the background, on the write pool (the
primary); a failed read keeps the strategies in force and is tried again soon.

This module also holds :class:`EndpointGates` (``max_concurrent`` of a row: at
most that many of its requests at once in this process, then 503
``ENDPOINT_BUSY`` at once) and :func:`with_retry_after`, the one rule that every
503 and 429 answer says when to retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from engine.errors import ApiError

log = logging.getLogger("engine.recovery")

RETRY_AFTER_S = "5"  # a 503 or 429 that does not know better says: retry in 5 s
BUSY_RETRY_AFTER_S = "1"  # a busy pool or endpoint frees up quickly
RETRY_LATER_STATUSES = frozenset({429, 503})
RELOAD_S = 60.0  # strategies are read again this often
RELOAD_FAILED_S = 5.0  # after a failed read, try again this soon
LOAD_TIMEOUT_S = 2.0
MAX_ATTEMPTS = 10  # rows asking for more retries (or longer waits) are capped, with a warning
MAX_DELAY_MS = 10_000
MAX_COOLDOWN_MS = 300_000

LOAD_STRATEGIES = """
SELECT s.id, s.strategy_name, s.recovery_action, s.recovery_config, s.retry_delay_ms,
       s.max_retry_attempts, s.circuit_breaker_threshold
FROM error_recovery_strategies s
JOIN database_error_patterns p ON p.id = s.error_pattern_id
WHERE p.error_type = 'connection_error'
ORDER BY s.id
"""


@dataclass(frozen=True)
class RetryPolicy:
    """How an idempotent read is tried again after a connection failure."""

    attempts: int  # tries after the first
    delay_ms: int
    backoff: str = "exponential"  # or "constant"
    max_delay_ms: int = 1000

    def delay_s(self, retry: int) -> float:
        """The wait before retry number ``retry`` (1 for the first)."""
        delay = self.delay_ms * (2 ** (retry - 1) if self.backoff == "exponential" else 1)
        return min(delay, self.max_delay_ms) / 1000


@dataclass(frozen=True)
class BreakerPolicy:
    """When a pool's breaker opens, and for how long."""

    threshold: int  # consecutive connection failures
    cooldown_ms: int


@dataclass(frozen=True)
class Strategies:
    """The recovery in force: where it came from, and what looked wrong in the rows."""

    retry: RetryPolicy
    breaker: BreakerPolicy
    source: str = "built-in defaults"
    warnings: tuple[str, ...] = ()


NO_RETRY = RetryPolicy(attempts=0, delay_ms=0)
DEFAULT_RETRY = RetryPolicy(attempts=2, delay_ms=100, backoff="exponential", max_delay_ms=1000)
DEFAULT_BREAKER = BreakerPolicy(threshold=5, cooldown_ms=2000)
DEFAULT_STRATEGIES = Strategies(DEFAULT_RETRY, DEFAULT_BREAKER)


def _config(raw: Any) -> Mapping[str, Any]:
    if isinstance(raw, str | bytes):
        with contextlib.suppress(orjson.JSONDecodeError):
            raw = orjson.loads(raw)
    return raw if isinstance(raw, Mapping) else {}


def _bounded(value: Any, default: int, low: int, high: int, what: str, notes: list[str]) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        notes.append(f"{what} is not a number; {default} is used")
        return default
    try:
        number = int(value)
    except ValueError:
        notes.append(f"{what} is not a number; {default} is used")
        return default
    if number < low:
        notes.append(f"{what} {number} is below {low}; {low} is used")
        return low
    if number > high:
        notes.append(f"{what} {number} is above {high}; {high} is used")
        return high
    return number


def strategies_from_rows(rows: Sequence[Mapping[str, Any]]) -> Strategies:
    """The strategies the rows describe (the first row of each action wins; a missing action
    keeps its built-in default; values out of bounds are clamped and reported)."""
    notes: list[str] = []
    retry, breaker = DEFAULT_RETRY, DEFAULT_BREAKER
    seen: set[str] = set()
    for row in rows:
        action = row.get("recovery_action")
        where = f"error_recovery_strategies id={row.get('id')}"
        if action not in ("retry", "circuit_breaker"):
            notes.append(f"{where}: recovery_action {action!r} is not applied to connection errors")
            continue
        if action in seen:
            notes.append(f"{where}: a second {action} row for connection errors is ignored")
            continue
        seen.add(action)
        config = _config(row.get("recovery_config"))
        if action == "retry":
            backoff = config.get("backoff", "exponential")
            if backoff not in ("exponential", "constant"):
                notes.append(f"{where}: backoff {backoff!r} is not exponential or constant")
                backoff = "exponential"
            delay = _bounded(
                row.get("retry_delay_ms"), 100, 0, MAX_DELAY_MS, f"{where}: retry_delay_ms", notes
            )
            retry = RetryPolicy(
                attempts=_bounded(
                    row.get("max_retry_attempts"),
                    2,
                    0,
                    MAX_ATTEMPTS,
                    f"{where}: max_retry_attempts",
                    notes,
                ),
                delay_ms=delay,
                backoff=backoff,
                max_delay_ms=_bounded(
                    config.get("max_delay_ms"),
                    max(delay, 1000),
                    delay,
                    MAX_DELAY_MS,
                    f"{where}: recovery_config.max_delay_ms",
                    notes,
                ),
            )
        else:
            cooldown = config.get("cooldown_ms", row.get("retry_delay_ms"))
            breaker = BreakerPolicy(
                threshold=_bounded(
                    row.get("circuit_breaker_threshold"),
                    DEFAULT_BREAKER.threshold,
                    1,
                    1_000_000,
                    f"{where}: circuit_breaker_threshold",
                    notes,
                ),
                cooldown_ms=_bounded(
                    cooldown,
                    DEFAULT_BREAKER.cooldown_ms,
                    100,
                    MAX_COOLDOWN_MS,
                    f"{where}: cooldown_ms",
                    notes,
                ),
            )
    source = "error_recovery_strategies" if seen else "built-in defaults"
    return Strategies(retry, breaker, source, tuple(notes))


async def load_strategies(conn: asyncpg.Connection) -> Strategies:
    """The strategies as the rows say now."""
    rows = await conn.fetch(LOAD_STRATEGIES, timeout=LOAD_TIMEOUT_S)
    return strategies_from_rows([dict(r.items()) for r in rows])


class Outcome(enum.Enum):
    SUCCESS = "success"  # the server answered (whatever it said)
    FAILURE = "failure"  # a connection-class failure
    NEUTRAL = "neutral"  # busy, slow or cancelled: says nothing about the connection


_FAILURE_CODES = frozenset({"DATABASE_CONNECTION_ERROR", "COMMIT_OUTCOME_UNKNOWN"})
_NEUTRAL_CODES = frozenset({"DATABASE_BUSY", "STATEMENT_TIMEOUT", "ENDPOINT_BUSY"})


def outcome_of(error: BaseException | None) -> Outcome:
    """What an attempt's ending says about the database connection.

    Keyed on the code the database boundary gave (engine.database.translate) and its
    cause: a function that RAISEs a connection code of its own is the server answering.
    """
    if error is None:
        return Outcome.SUCCESS
    if not isinstance(error, ApiError):
        return Outcome.NEUTRAL  # cancelled, or a bug of ours
    if error.code in _NEUTRAL_CODES:
        return Outcome.NEUTRAL
    if error.code in _FAILURE_CODES:
        cause = error.__cause__
        if cause is not None and getattr(cause, "sqlstate", None) == "P0001":
            return Outcome.SUCCESS
        return Outcome.FAILURE
    return Outcome.SUCCESS


def retriable(error: ApiError) -> bool:
    """Whether an idempotent read that ended with ``error`` may be tried again."""
    return error.code == "DATABASE_CONNECTION_ERROR" and outcome_of(error) is Outcome.FAILURE


class CircuitBreaker:
    """Consecutive connection failures of one pool, and whether it may be used now."""

    def __init__(
        self,
        name: str,
        policy: Callable[[], BreakerPolicy],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._policy = policy
        self._clock = clock
        self.state = "closed"  # closed | open | half_open
        self.failures = 0  # consecutive
        self.opened_at = 0.0
        self.opened = 0  # times it opened
        self.refused = 0  # statements answered at once while open
        self._trial = False  # a half-open trial is running

    def remaining_s(self) -> float:
        """Cool-down left while open (0 otherwise)."""
        if self.state != "open":
            return 0.0
        left = self.opened_at + self._policy().cooldown_ms / 1000 - self._clock()
        return max(left, 0.0)

    def enter(self) -> bool:
        """May a statement run now? True when it is the half-open trial; raises the 503
        answer when the breaker refuses."""
        if self.state == "open":
            left = self.remaining_s()
            if left > 0:
                self._refuse(left)
            self.state = "half_open"
            log.info("circuit breaker of %s half-open: one trial request", self.name)
        if self.state == "half_open":
            if self._trial:
                self._refuse(1.0)
            self._trial = True
            return True
        return False

    def record(self, outcome: Outcome, trial: bool) -> None:
        """The ending of a statement that :meth:`enter` let through."""
        if trial:
            self._trial = False
        if outcome is Outcome.SUCCESS:
            if self.state != "closed":
                log.warning("circuit breaker of %s closed: the database answers again", self.name)
            self.state, self.failures = "closed", 0
        elif outcome is Outcome.FAILURE:
            self.failures += 1
            policy = self._policy()
            if self.state == "half_open" or (
                self.state == "closed" and self.failures >= policy.threshold
            ):
                self._open(policy)

    def _open(self, policy: BreakerPolicy) -> None:
        self.state = "open"
        self.opened_at = self._clock()
        self.opened += 1
        log.warning(
            "circuit breaker of %s open after %d consecutive connection failure(s): "
            "statements on it are refused for %.1f s",
            self.name,
            self.failures,
            policy.cooldown_ms / 1000,
        )

    def _refuse(self, left_s: float) -> None:
        self.refused += 1
        seconds = max(1, math.ceil(left_s))
        raise ApiError(
            "DATABASE_CONNECTION_ERROR",
            f"The database failed {self.failures} connection attempt(s) in a row; the circuit "
            f"breaker is open and new requests are refused for {seconds} s",
            headers={"Retry-After": str(seconds)},
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "pool": self.name,
            "state": self.state,
            "consecutive_failures": self.failures,
            "opened": self.opened,
            "refused": self.refused,
            "retry_in_s": round(self.remaining_s(), 3),
        }


@dataclass
class Recovery:
    """The strategies in force and one :class:`CircuitBreaker` per pool, for one process."""

    strategies: Strategies = DEFAULT_STRATEGIES
    _breakers: dict[int, CircuitBreaker] = field(default_factory=dict)
    _names: dict[int, str] = field(default_factory=dict)
    _next_load: float = 0.0  # monotonic time of the next read of the rows
    _rows_pool: asyncpg.Pool | None = None  # where the rows are read (the primary's pool)
    _loading: asyncio.Task[None] | None = None
    loads: int = 0
    load_failures: int = 0

    def name_pool(self, pool: object, name: str) -> None:
        """The name a pool's breaker has in logs and figures."""
        self._names[id(pool)] = name

    def read_rows_from(self, pool: asyncpg.Pool) -> None:
        """Read the strategies on ``pool`` (the primary: a replica's or a read role's
        connection may not see the rows), whichever pool a statement used."""
        self._rows_pool = pool

    def breaker(self, pool: object) -> CircuitBreaker:
        key = id(pool)
        found = self._breakers.get(key)
        if found is None:
            name = self._names.get(key, f"pool-{len(self._breakers) + 1}")
            found = self._breakers[key] = CircuitBreaker(name, lambda: self.strategies.breaker)
        return found

    def retry_policy(self, idempotent: bool) -> RetryPolicy:
        return self.strategies.retry if idempotent else NO_RETRY

    def breakers(self) -> list[dict[str, Any]]:
        """Each pool's breaker as figures (state, consecutive failures, times opened...)."""
        return [b.as_dict() for b in self._breakers.values()]

    def request_reload(self) -> None:
        """Read the rows again at the next statement (e.g. after a catalogue reload)."""
        self._next_load = 0.0

    def refresh(self, pool: asyncpg.Pool) -> None:
        """Read the rows again in the background when it is time (cheap when it is not)."""
        if self._loading is not None or time.monotonic() < self._next_load:
            return
        self._next_load = time.monotonic() + RELOAD_S
        self._loading = asyncio.get_running_loop().create_task(
            self._reload(self._rows_pool or pool),
            name="recovery-strategies",
            context=contextvars.Context(),  # not the request's: its time is not the request's
        )

    async def reload(self, pool: asyncpg.Pool) -> Strategies:
        """Read the strategies from the rows now; on failure keep those in force."""
        try:
            async with pool.acquire(timeout=LOAD_TIMEOUT_S) as conn:
                loaded = await load_strategies(conn)
        except Exception as exc:
            self.load_failures += 1
            self._next_load = time.monotonic() + RELOAD_FAILED_S
            log.info("recovery strategies not read (%r); keeping %s", exc, self.strategies.source)
            return self.strategies
        self.loads += 1
        if loaded != self.strategies:
            for note in loaded.warnings:
                log.warning("recovery strategy: %s", note)
            log.info(
                "recovery from %s: retry %d time(s) after %d ms (%s); breaker opens after %d "
                "failure(s) for %d ms",
                loaded.source,
                loaded.retry.attempts,
                loaded.retry.delay_ms,
                loaded.retry.backoff,
                loaded.breaker.threshold,
                loaded.breaker.cooldown_ms,
            )
        self.strategies = loaded
        return loaded

    async def _reload(self, pool: asyncpg.Pool) -> None:
        try:
            await self.reload(pool)
        finally:
            self._loading = None

    async def close(self) -> None:
        """Stop a read of the rows in flight (the pools are closing)."""
        task, self._loading = self._loading, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def with_retry_after(status: int, headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """``headers`` of an answer with ``status``: every 503 and 429 says when to retry."""
    if status in RETRY_LATER_STATUSES and not any(k.lower() == "retry-after" for k in headers):
        headers["Retry-After"] = RETRY_AFTER_S
    return headers


class EndpointGates:
    """Requests of each endpoint running now in this process, bounded by its
    ``max_concurrent``: one more is answered 503 ``ENDPOINT_BUSY`` at once (no queue),
    so one slow endpoint cannot take every pool connection."""

    def __init__(self) -> None:
        self._running: dict[int, int] = {}

    def running(self, endpoint_id: int) -> int:
        return self._running.get(endpoint_id, 0)

    @contextlib.contextmanager
    def enter(self, endpoint_id: int, limit: int | None) -> Iterator[None]:
        if limit is None:
            yield
            return
        running = self._running.get(endpoint_id, 0)
        if running >= limit:
            raise ApiError(
                "ENDPOINT_BUSY",
                f"This endpoint answers at most {limit} request(s) at once; retry shortly",
                headers={"Retry-After": BUSY_RETRY_AFTER_S},
            )
        self._running[endpoint_id] = running + 1
        try:
            yield
        finally:
            left = self._running.get(endpoint_id, 1) - 1
            if left > 0:
                self._running[endpoint_id] = left
            else:
                self._running.pop(endpoint_id, None)
