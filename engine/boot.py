"""Starting before the database answers: the pre-flight, the boot task and its back-off,
and what every path that needs the database answers until the boot is done.

``serve`` listens whether or not PostgreSQL answers. The app's lifespan starts a
:class:`Boot` task and yields at once, or, when the database answers, as soon as
the boot is done (:data:`SETTLE_S` at most), so in the normal case "listening"
is logged after a complete boot. The boot runs its steps in order (migrate and
seed when asked, open the pools, start the listener, load the catalogue, start
the jobs, then publish ``app.state.services``); a step that fails is retried with
capped exponential back-off (:data:`FIRST_DELAY_S` doubling to
:data:`MAX_DELAY_S`), one log line per failed attempt, never a traceback. What a
step opened is closed at shutdown even when the boot never finished, and a
shutdown during the boot cancels it at once.

Until ``app.state.services`` is set, :class:`UntilBooted` answers every request
with 503 ``DATABASE_CONNECTION_ERROR`` and ``Retry-After``, except the paths that
answer without the database (``/health/live``, ``/health/ready`` with its
reasons, ``/metrics``, ``/docs``).

A database that refuses us for good (wrong password, unknown role, unknown
database) is not waited for: :func:`preflight`, run by ``serve`` before it
listens, returns the refusal so ``serve`` exits with one line. The same refusal
seen later (a password changed while we waited) is logged as an error and
retried like any other failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TypeVar

import asyncpg
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from engine import migrations
from engine.database import RETRY_AFTER_S, init_connection
from engine.errors import ApiError
from engine.problems import problem

log = logging.getLogger("engine.boot")

T = TypeVar("T")

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 10.0
SETTLE_S = 10.0  # the longest the lifespan waits for a boot whose steps do not fail
CONNECT_TIMEOUT_S = 5.0  # a pre-flight or migration connection; an unreachable host says so
ATTEMPT_TIMEOUT_S = 30.0  # opening the pools or the listener once (asyncpg's default: 60 s)

# the server answered and refused us: waiting will not change that
REFUSED_FOR_GOOD = (
    asyncpg.InvalidAuthorizationSpecificationError,  # wrong password, unknown role, no pg_hba
    asyncpg.InvalidCatalogNameError,  # unknown database
)
# no server answered yet, or it is starting, shutting down or full: it may answer later
NOT_ANSWERING = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)

# the meta-schema is missing or older than this engine
NOT_MIGRATED = (asyncpg.UndefinedTableError, asyncpg.UndefinedFunctionError)
MIGRATE_HINT = ": run python -m engine migrate (or serve --migrate)"


def describe(exc: BaseException) -> str:
    """An exception on one line: its kind and message (no traceback, no line breaks)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def preflight(urls: Mapping[str, str], timeout_s: float = CONNECT_TIMEOUT_S) -> str | None:
    """Connect once to each URL (by the setting naming it): the reason, naming the setting,
    when the database refuses us for good; else None.

    A database that does not answer (refused, timed out, unknown host, starting up)
    is logged as one warning: ``serve`` listens anyway and the boot waits for it. A
    URL the driver cannot use raises ``ValueError`` (a bad setting).
    """
    for setting, url in urls.items():
        try:
            conn = await asyncpg.connect(url, timeout=timeout_s)
        except asyncpg.ClientConfigurationError:
            raise  # a ValueError: a bad setting, not a database to wait for
        except REFUSED_FOR_GOOD as exc:
            text = " ".join(str(exc).split())
            return f"the database refused the connection: {text} (check {setting})"
        except (*NOT_ANSWERING, asyncpg.PostgresError) as exc:
            log.warning(
                "the database does not answer (%s): listening anyway, answering 503 until it does",
                describe(exc),
            )
            return None
        with contextlib.suppress(Exception):
            await conn.close(timeout=timeout_s)
    return None


def delays(first_s: float = FIRST_DELAY_S, cap_s: float = MAX_DELAY_S) -> Iterator[float]:
    """The waits between attempts: ``first_s``, doubling, never more than ``cap_s``."""
    delay = first_s
    while True:
        yield delay
        delay = min(delay * 2, cap_s)


class Boot:
    """The boot task of one process: its steps, retried until each succeeds, and a
    :attr:`cleanup` stack closing what they opened (in reverse) at :meth:`stop`."""

    def __init__(self, *, first_delay_s: float = FIRST_DELAY_S, max_delay_s: float = MAX_DELAY_S):
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.cleanup = contextlib.AsyncExitStack()
        self.done = False
        self.failures = 0  # failed attempts, every step together
        self._settled = asyncio.Event()  # done, or a first attempt failed: listen now
        self._task: asyncio.Task[None] | None = None
        self._started = 0.0

    def start(self, sequence: Callable[[Boot], Awaitable[None]]) -> None:
        self._started = time.monotonic()
        self._task = asyncio.create_task(self._run(sequence), name="engine-boot")

    async def _run(self, sequence: Callable[[Boot], Awaitable[None]]) -> None:
        try:
            await sequence(self)
        except Exception:  # a bug of the wiring, not the database: no retry would help
            log.exception("the boot failed; the engine answers 503 until it is restarted")
            self._settled.set()
            return
        self.done = True
        self._settled.set()
        if self.failures:
            log.warning(
                "the database answers: booted after %d failed attempt(s) in %.1f s, serving",
                self.failures,
                time.monotonic() - self._started,
            )

    async def step(
        self, what: str, work: Callable[[], Awaitable[T]], *, timeout_s: float | None = None
    ) -> T:
        """``work()`` until it succeeds, waiting between failed attempts (one line each)."""
        waits = delays(self.first_delay_s, self.max_delay_s)
        attempt = 0
        while True:
            attempt += 1
            try:
                if timeout_s is None:
                    return await work()
                return await asyncio.wait_for(work(), timeout_s)
            except Exception as exc:
                self.failures += 1
                self._settled.set()
                delay = next(waits)
                # not answering yet is expected at start; anything else needs a look
                level = logging.WARNING if _not_answering(exc) else logging.ERROR
                log.log(
                    level,
                    "boot: %s failed (%s)%s; attempt %d, again in %.1f s",
                    what,
                    describe(exc),
                    MIGRATE_HINT if isinstance(exc, NOT_MIGRATED) else "",
                    attempt,
                    delay,
                )
                await asyncio.sleep(delay)

    async def settle(self, timeout_s: float = SETTLE_S) -> None:
        """Wait until the boot is done, or failed once, or ``timeout_s`` went by."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), timeout_s)

    async def stop(self) -> None:
        """Cancel the boot if it still runs, then close whatever its steps opened."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.cleanup.aclose()


def _not_answering(exc: BaseException) -> bool:
    return isinstance(exc, NOT_ANSWERING) and not isinstance(exc, REFUSED_FOR_GOOD)


async def prepare(url: str, *, migrate: bool, seed: Sequence[str] | None) -> None:
    """``serve --migrate`` / ``--seed``: apply pending migrations, then load the seed domains
    (every domain when ``seed`` is empty), logged one line a file. Safe to run again."""
    conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)
    try:
        await init_connection(conn)
        if migrate:
            applied = await migrations.migrate(conn)
            for name in applied:
                log.info("applied sql/%s", name)
            log.info("migrations: %d applied, schema up to date", len(applied))
        if seed is not None:
            seeded = await migrations.seed(conn, seed)
            for name in seeded:
                log.info("seeded seeds/%s", name)
            log.info("seeds: %d file(s) applied", len(seeded))
    finally:
        with contextlib.suppress(Exception):
            await conn.close(timeout=CONNECT_TIMEOUT_S)


def not_booted() -> ApiError:
    """What a request needing the database gets before the boot is done."""
    return ApiError(
        "DATABASE_CONNECTION_ERROR",
        "The engine is starting: the database has not answered yet",
        headers={"Retry-After": RETRY_AFTER_S},
    )


class UntilBooted:
    """ASGI middleware: before ``app.state.services`` is set, 503 ``DATABASE_CONNECTION_ERROR``
    with ``Retry-After`` for every path but those of ``open_routes`` (they answer without
    the database); after it, one attribute look-up a request."""

    def __init__(self, app: ASGIApp, open_routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.open_paths = [r.path_regex for r in open_routes if hasattr(r, "path_regex")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or getattr(scope["app"].state, "services", None) is not None
            or any(regex.match(scope["path"]) for regex in self.open_paths)
        ):
            await self.app(scope, receive, send)
            return
        response = problem(Request(scope, receive), not_booted())
        await response(scope, receive, send)
