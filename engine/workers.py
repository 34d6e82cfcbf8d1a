"""Several worker processes serving one port: ``serve --workers N`` (``ENGINE_WORKERS``).

The parent process checks that the port is free (uvicorn's ``Config.bind_socket``,
which also logs where the server listens) and starts uvicorn's own supervisor,
:class:`uvicorn.supervisors.Multiprocess`. Each worker listens on a socket of its
own on that port with ``SO_REUSEPORT`` (:func:`worker_socket`), opened once its app
has started: the kernel spreads new connections over the listening workers by
their addresses' hash. (One socket shared by every worker did not: the worker that
woke first accepted every connection queued, so a pool of keep-alive connections
opened at once, as a load balancer or a load generator opens them, all went to one
worker.) A worker that dies is replaced, and its socket closes with it, so new
connections go to the workers still listening meanwhile; SIGTERM or SIGINT on the
parent is passed to every worker as SIGTERM, and the parent waits for them and
exits 0. The kernel admits into a port's group only sockets of the same user, and
the parent's check refuses a port that anything listens on already.
Each worker is a fresh interpreter (multiprocessing's spawn) running
:class:`~engine.server.EngineServer` over its own app, so each drains as a single
process does (ready 503 ``draining``, the grace, exit 0). No clustering of our own:
workers share nothing but the socket and the database, and stay coherent through
LISTEN/NOTIFY (reloads, cache invalidations, key revocations) exactly as separate
hosts do.

What must happen once happens in the parent, before any worker starts:

- the embedded PostgreSQL (no ``DATABASE_URL``) is started once, by ``serve``;
- the parent waits for the database (capped back-off, one line an attempt), reads
  its connection limit and sizes each worker's pools (:func:`size_pools`), logging
  the sizing in one line; it refuses to start (exit 1, one line on stderr) when
  even pools of :data:`MIN_POOL` do not fit;
- ``--migrate`` and ``--seed`` run there, once, never in N racing workers;
- Prometheus multi-process mode (``PROMETHEUS_MULTIPROC_DIR``, engine/metrics.py)
  gets a fresh folder, removed when the parent exits, unless you set one yourself.

- without ``ENGINE_REDIS_URL``, the rate-limit counters get one file that every
  worker maps (engine/sharedrate.py), removed when the parent exits: a row's
  ``rate_limit_per_minute`` holds for the server, whichever worker answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import uvicorn
from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from engine import boot, logs, sharedrate
from engine.app import create_app
from engine.server import CANCEL_WAIT_S, DEDICATED_CONNECTIONS, EngineServer, engine_config
from engine.settings import Settings

log = logging.getLogger("engine.workers")

MIN_POOL = 2  # the smallest pool worth starting a worker with
POOLS = 2  # each worker's read pool and write pool
MARGIN_SHARE = 10  # a tenth of the free connections is left for psql, CLI verbs, deploys
MIN_MARGIN = 5
# a worker that does not answer the supervisor's ping this long is killed and replaced;
# a new worker answers once its imports are done, which takes seconds on a busy machine
HEALTHCHECK_TIMEOUT_S = 60
JOIN_SLACK_S = 15.0  # beyond the drain's own deadline, before a worker is killed
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

CONNECTION_LIMIT = """
SELECT current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int
         + coalesce(current_setting('reserved_connections', true), '0')::int AS reserved
"""


class WorkersRefused(Exception):
    """``serve --workers N`` cannot start: the one line it prints on stderr."""


# ---------------------------------------------------------------------------
# Pool sizing (pure)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionLimit:
    """What the database lets clients open: ``max_connections`` less the reserved slots
    (``superuser_reserved_connections`` and PostgreSQL 16's ``reserved_connections``)."""

    max_connections: int
    reserved: int

    @property
    def free(self) -> int:
        return max(0, self.max_connections - self.reserved)

    @property
    def margin(self) -> int:
        return max(MIN_MARGIN, self.free // MARGIN_SHARE)


@dataclass(frozen=True)
class Sizing:
    """Each worker's pools: ``pool_max`` connections each (``asked`` was ENGINE_POOL_MAX_SIZE)."""

    workers: int
    asked: int
    pool_max: int
    limit: ConnectionLimit

    @property
    def per_worker(self) -> int:
        """Connections one worker may open: its pools and its own (listener, probe...)."""
        return POOLS * self.pool_max + DEDICATED_CONNECTIONS

    def line(self) -> str:
        lim = self.limit
        pools = (
            f"pools of {self.pool_max} connections each"
            if self.pool_max == self.asked
            else f"pools lowered from ENGINE_POOL_MAX_SIZE={self.asked} to {self.pool_max} "
            "connections each"
        )
        return (
            f"workers: {self.workers} processes, {pools}: {self.workers} x ({POOLS} x "
            f"{self.pool_max} + {DEDICATED_CONNECTIONS} of its own) = "
            f"{self.workers * self.per_worker} connections at most, within the database's "
            f"max_connections={lim.max_connections} less {lim.reserved} reserved and a margin "
            f"of {lim.margin}"
        )


def size_pools(limit: ConnectionLimit, workers: int, pool_max: int) -> Sizing:
    """The largest pools up to ``pool_max`` such that ``workers`` workers, each with two
    pools and :data:`DEDICATED_CONNECTIONS` of its own, fit the database's free
    connections less a margin; :class:`WorkersRefused` when pools of :data:`MIN_POOL`
    do not fit."""
    budget = limit.free - limit.margin
    fits = (budget // workers - DEDICATED_CONNECTIONS) // POOLS
    if fits < MIN_POOL:
        least = POOLS * MIN_POOL + DEDICATED_CONNECTIONS
        raise WorkersRefused(
            f"--workers {workers} does not fit the database's max_connections="
            f"{limit.max_connections}: each worker needs at least {least} connections "
            f"({POOLS} pools of {MIN_POOL} and {DEDICATED_CONNECTIONS} of its own), "
            f"{workers * least} in all, and {max(0, budget)} are free ({limit.reserved} "
            f"reserved, a margin of {limit.margin}); run fewer workers or raise max_connections"
        )
    return Sizing(workers=workers, asked=pool_max, pool_max=min(pool_max, fits), limit=limit)


def sized_settings(settings: Settings, sizing: Sizing) -> Settings:
    """The settings each worker runs with: its pools as sized (a minimum never above it)."""
    return settings.replace(
        pool_max_size=sizing.pool_max,
        pool_min_size=min(settings.pool_min_size, sizing.pool_max),
        workers=sizing.workers,
    )


# ---------------------------------------------------------------------------
# Before the workers: once, in the parent
# ---------------------------------------------------------------------------


async def _read_limit(url: str) -> ConnectionLimit:
    conn = await asyncpg.connect(url, timeout=boot.CONNECT_TIMEOUT_S)
    try:
        row = await conn.fetchrow(CONNECTION_LIMIT)
    finally:
        with contextlib.suppress(Exception):
            await conn.close(timeout=boot.CONNECT_TIMEOUT_S)
    assert row is not None
    return ConnectionLimit(max_connections=row["max_connections"], reserved=row["reserved"])


async def _until_answered(what: str, work: Any) -> Any:
    """``work()`` until the database answers it: a refusal for good or any other failure
    raises :class:`WorkersRefused`; not answering yet is waited for, one line an attempt."""
    for attempt, delay in enumerate(boot.delays(), start=1):
        try:
            return await work()
        except asyncpg.ClientConfigurationError:
            raise  # a ValueError: a bad setting, not a database to wait for
        except boot.REFUSED_FOR_GOOD as exc:
            text = " ".join(str(exc).split())
            raise WorkersRefused(
                f"the database refused the connection: {text} (check DATABASE_URL)"
            ) from exc
        except boot.NOT_ANSWERING as exc:
            log.warning(
                "workers: %s: the database does not answer (%s); attempt %d, again in %.1f s "
                "(the workers start once it answers)",
                what,
                boot.describe(exc),
                attempt,
                delay,
            )
            await asyncio.sleep(delay)
        except Exception as exc:  # a failed migration or seed: no worker would do better
            raise WorkersRefused(f"{what} failed: {boot.describe(exc)}") from exc
    raise AssertionError("unreachable")  # pragma: no cover (delays() never ends)


async def prepare(
    url: str,
    settings: Settings,
    workers: int,
    *,
    migrate: bool = False,
    seed: Sequence[str] | None = None,
) -> Settings:
    """Once, before any worker: wait for the database, size the pools (logged in one line),
    run ``--migrate`` / ``--seed``; the settings every worker runs with."""
    limit: ConnectionLimit = await _until_answered(
        "reading max_connections", lambda: _read_limit(url)
    )
    sizing = size_pools(limit, workers, settings.pool_max_size)
    log.info("%s", sizing.line())
    if migrate or seed is not None:
        steps = " and ".join(
            w for w, on in (("migrating", migrate), ("seeding", seed is not None)) if on
        )
        await _until_answered(steps, lambda: boot.prepare(url, migrate=migrate, seed=seed))
    return sized_settings(settings, sizing)


# ---------------------------------------------------------------------------
# The workers
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to build its app; sent to it pickled by multiprocessing."""

    settings: Settings
    database_url: str
    jwt_secret: str | None
    host: str
    port: int
    rate_file: str | None = None  # the shared rate-limit counters (no ENGINE_REDIS_URL)


def _uvicorn_log_config(settings: Settings) -> dict[str, Any] | None:
    # json: no uvicorn handlers, its records reach the root logger's JSON handler
    return None if logs.is_json(settings.log_format) else uvicorn.config.LOGGING_CONFIG


def build_server(spec: WorkerSpec, index: int) -> EngineServer:
    """A worker's server: its own app (pools, listener, cache), as ``serve`` builds one."""
    settings = spec.settings
    logs.configure(settings.log_level, settings.log_format)
    app = create_app(
        settings,
        spec.database_url,
        jwt_secret=spec.jwt_secret,
        settle_heap=True,
        rate_file=spec.rate_file,
    )
    # which worker answered, in /health/ready: its slot (1..N, kept by its replacement), pid
    app.state.worker = {"index": index, "pid": os.getpid()}
    config = engine_config(
        app,
        host=spec.host,
        port=spec.port,
        log_level=settings.log_level.lower(),
        log_config=_uvicorn_log_config(settings),
    )
    return EngineServer(config, settings)


class EngineProcess(Process):
    """One worker of uvicorn's supervisor, running an :class:`EngineServer` of its own."""

    def __init__(self, config: Config, sockets: list[socket.socket], spec: WorkerSpec, index: int):
        self.spec = spec
        self.index = index
        super().__init__(config, sockets)

    @property
    def server(self) -> EngineServer:  # type: ignore[override]
        if self._server is None:
            self._server = build_server(self.spec, self.index)
        return self._server  # type: ignore[return-value]

    def pong(self) -> None:
        """Answer the supervisor's health ping: started yet? (never builds the server: the
        ping thread runs beside the main thread building it)."""
        self.child_conn.recv()
        self.child_conn.send(self._server is not None and self._server.started)

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # pragma: no cover
        threading.Thread(target=self.always_pong, daemon=True).start()
        if not sockets:  # the worker's own socket (the parent's, where no SO_REUSEPORT)
            try:
                sockets = [worker_socket(self.spec.host, self.spec.port)]
            except OSError as exc:
                log.error("worker %d cannot listen on port %d: %s", self.index, self.spec.port, exc)
                sys.exit(STARTUP_FAILURE)
        self.server.run(sockets)


REUSE_PORT = hasattr(socket, "SO_REUSEPORT")


def worker_socket(host: str, port: int) -> socket.socket:
    """A worker's own socket on the server's port, bound with ``SO_REUSEPORT``, listening
    only once the worker's app has started (uvicorn's startup listens on it after the
    lifespan): the kernel never queues a connection for a worker that is still starting."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class Supervisor(Multiprocess):
    """uvicorn's supervisor, its workers :class:`EngineProcess` in fixed slots.

    Its own: SIGTERM/SIGINT stop every worker (each drains) and the parent waits for
    them; a dead worker is replaced in its slot; SIGHUP replaces the workers one by one;
    SIGTTOU drops one. SIGTTIN is refused: the pools were sized for N workers.
    """

    def __init__(self, config: Config, sockets: list[socket.socket], spec: WorkerSpec) -> None:
        super().__init__(config, sockets)
        self.spec = spec
        self.failed = False  # a worker could not start: the parent exits 1
        # a worker's drain ends by its grace, the cancelled requests and the lifespan
        self.join_timeout_s = spec.settings.shutdown_grace_s + CANCEL_WAIT_S + JOIN_SLACK_S

    def _new(self, index: int) -> EngineProcess:
        process = EngineProcess(self.config, self.sockets, self.spec, index)
        process.start()
        return process

    def init_processes(self) -> None:
        for index in range(1, self.processes_num + 1):
            self.processes.append(self._new(index))

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for slot, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung, or gone
            process.join()
            if process.exitcode == STARTUP_FAILURE:  # would fail the same way again
                log.error("worker %d [%s] failed to start: stopping", process.index, process.pid)
                self.failed = True
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            log.warning(
                "worker %d [%s] died (exit %s): starting its replacement",
                process.index,
                process.pid,
                process.exitcode,
            )
            self.processes[slot] = self._new(process.index)

    def restart_all(self) -> None:
        """SIGHUP: each worker replaced in turn, the new one serving before the old one goes."""
        for slot, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._new(old.index)
            timeout = self.config.timeout_worker_healthcheck
            if not new.wait_until_ready(timeout, self.should_exit):
                new.kill()
                new.join()
                log.error(
                    "worker %d's replacement was not ready in time: restart stopped", old.index
                )
                return
            old.terminate()
            old.join()
            self.processes[slot] = new

    def handle_ttin(self) -> None:
        log.warning(
            "SIGTTIN ignored: the pools were sized for %d workers; restart with --workers",
            self.spec.settings.workers,
        )

    def terminate_all(self) -> None:
        """SIGTERM to every worker, this process's copy of a shared socket (no SO_REUSEPORT)
        closed first: once the workers closed theirs, a new connection is refused (as with
        one process), not left waiting in a backlog no worker accepts from any more."""
        for sock in self.sockets:
            sock.close()
        super().terminate_all()

    def join_all(self) -> None:
        for process in self.processes:
            process.process.join(self.join_timeout_s)
            if process.process.exitcode is None:
                log.warning(
                    "worker %d [%s] still runs %.0f s after SIGTERM: killed",
                    process.index,
                    process.pid,
                    self.join_timeout_s,
                )
                process.kill()
                process.join()


@contextlib.contextmanager
def multiprocess_metrics() -> Any:
    """A fresh ``PROMETHEUS_MULTIPROC_DIR`` for the workers, removed at the end; one you
    set yourself is used as it is and kept."""
    if os.environ.get(MULTIPROC_ENV):
        log.info(
            "workers: Prometheus figures in %s (yours: empty it between runs)",
            os.environ[MULTIPROC_ENV],
        )
        yield os.environ[MULTIPROC_ENV]
        return
    folder = tempfile.mkdtemp(prefix="engine-metrics-")
    os.environ[MULTIPROC_ENV] = folder  # the workers' prometheus_client reads it at import
    try:
        yield folder
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _rate_file(settings: Settings) -> Iterator[str | None]:
    """The workers' shared rate-limit file; none when Redis counts (ENGINE_REDIS_URL)."""
    if settings.redis_url:
        yield None
        return
    with sharedrate.shared_file() as path:
        yield path


def run(spec: WorkerSpec, workers: int) -> int:
    """Serve with ``workers`` processes until SIGTERM/SIGINT; the exit status (0 once every
    worker drained, 1 when one could not start)."""
    settings = spec.settings
    config = engine_config(
        "engine.workers:built-in-each-worker",  # never loaded: each worker builds its app
        host=spec.host,
        port=spec.port,
        workers=workers,
        timeout_worker_healthcheck=HEALTHCHECK_TIMEOUT_S,
        log_level=settings.log_level.lower(),
        log_config=_uvicorn_log_config(settings),
    )
    try:
        sock = config.bind_socket()  # the port is free (or SystemExit); bound, not listening
    except SystemExit:  # uvicorn logged why (address in use, permission)
        return 1
    port = sock.getsockname()[1]  # ENGINE_PORT=0: the port the kernel chose, for every worker
    shared = [sock]
    if REUSE_PORT:  # each worker opens its own on the port (worker_socket)
        sock.close()
        shared = []
    with multiprocess_metrics(), _rate_file(settings) as rate_file, contextlib.closing(sock):
        each = dataclasses.replace(spec, port=port, rate_file=rate_file)
        supervisor = Supervisor(config, shared, each)
        supervisor.run()  # until SIGTERM/SIGINT, then every worker drained
    return 1 if supervisor.failed else 0
