"""Wiring only: the Starlette application, its lifespan, and the jobs of one process.

Each background job lives in the module that owns its work and has start/stop
(see ``engine.jobs``); the request flow is ``engine.endpoint``. The lifespan does
not wait for the database: its boot runs as a task of ``engine.boot``, retried
until PostgreSQL answers, and until then ``engine.boot.UntilBooted`` answers 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable, Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount

from engine import (
    accesslog,
    admin,
    boot,
    builtin,
    docs,
    figures,
    health,
    idempotency,
    keys,
    pgbouncer,
)
from engine.admin import api as admin_api
from engine.auth import Authenticator, JwtConfig
from engine.cache import CHANNEL as CACHE_CHANNEL
from engine.cache import Publisher, ResponseCache, stats_job
from engine.catalog import CHANNEL as CATALOG_CHANNEL
from engine.catalog import DDL_PAYLOAD, Catalog, CatalogManager, empty_catalog
from engine.cors import Cors, CorsPolicy, catalog_methods
from engine.database import Database
from engine.endpoint import Dispatcher, Services
from engine.errorlog import ErrorLogger, pattern_job
from engine.front import EngineApp
from engine.jobs import Jobs, Spawner
from engine.listener import Listener, listen_url
from engine.metrics import Figures, Metrics, process_figures
from engine.metrics import routes as metrics_routes
from engine.ratelimit import RateLimiter, parse_networks
from engine.retention import Retention
from engine.settings import Settings
from engine.streaming import Streams

log = logging.getLogger("engine")


YOUNG_THRESHOLD = 10_000


def _settle_heap() -> None:
    """Collect once, then freeze what is left (gc.freeze): modules, pools, the catalogue,
    the validators live as long as the process, and a full collection scanning them all
    stalled every request for 60-230 ms about once a second under 1,000 connections (the
    p99 of bench/run.py's open-loop run). Later catalogues stay collectable.

    And a young collection waits for YOUNG_THRESHOLD objects, not CPython's 700: with 64
    requests in flight more than 700 of their objects are alive at any moment, so every
    60 requests or so a collection walked them all, found no garbage, and moved them on
    to an older generation to be walked again (measured with gc.callbacks under wrk: 5 %
    of the engine's time on a primary-key read; none with this threshold). What a cycle
    holds is freed a little later, at most YOUNG_THRESHOLD objects of it."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def create_app(
    settings: Settings,
    database_url: str,
    *,
    jwt_secret: str | None = None,
    migrate: bool = False,
    seed: Sequence[str] | None = None,
    settle_heap: bool = False,
    rate_file: str | None = None,
) -> Starlette:
    """The engine as an ASGI app serving the catalogue of the database at ``database_url``.

    ``migrate`` and ``seed`` (domains; empty: all) are the boot's first steps
    (``serve --migrate --seed``), retried like the others until the database answers.
    ``settle_heap`` (a serving process, not a test's): once booted, what the boot built is
    kept out of the garbage collector's scans (:func:`settle_heap`). ``rate_file``: the
    rate-limit counters the workers of ``serve --workers`` share (engine/sharedrate.py).
    """
    jwt_config = JwtConfig.build(
        secret=jwt_secret or settings.jwt_secret,
        public_key=settings.jwt_public_key,
        algorithms=settings.jwt_algorithms,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    trusted = parse_networks(settings.trusted_proxies)
    # LISTEN, migrations and seeds keep session state: never through PgBouncer in
    # transaction mode, which refuses to start without a direct URL (engine/pgbouncer.py)
    listen_database_url = listen_url(settings, database_url)
    session_database_url = pgbouncer.session_url(settings, database_url)
    dedicated = pgbouncer.connect_kwargs(settings)  # the probe's, the figures' connections

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        access_log = accesslog.create(settings.access_log)  # ValueError unless on or off
        # what answers before the boot: the probe needs only the URL (its own connection,
        # which answers when the pools cannot), the metrics hold nothing until then
        probe = health.Probe(database_url, connect_kwargs=dedicated)
        held: Callable[[], Figures] = Figures
        metrics = Metrics(lambda: held(), token=settings.metrics_token)
        app.state.metrics, app.state.probe = metrics, probe
        app.state.loop = asyncio.get_running_loop()
        starting = boot.Boot()
        starting.cleanup.push_async_callback(probe.stop)  # closed last

        async def sequence(b: boot.Boot) -> None:
            nonlocal held
            if migrate or seed is not None:
                steps = [
                    w for w, on in (("migrating", migrate), ("seeding", seed is not None)) if on
                ]
                await b.step(
                    " and ".join(steps),
                    lambda: boot.prepare(session_database_url, migrate=migrate, seed=seed),
                )
            db = await b.step(
                "opening the pools",
                lambda: Database.open(database_url, settings),
                timeout_s=boot.ATTEMPT_TIMEOUT_S,
            )
            b.cleanup.push_async_callback(db.close)
            jobs = Jobs()
            b.cleanup.push_async_callback(jobs.stop)
            cache = ResponseCache(
                default_max_entries=settings.cache_max_entries, max_bytes=settings.cache_max_bytes
            )
            key_store = keys.KeyStore()
            spawned = Spawner()

            def on_reload(previous: Catalog, current: Catalog) -> None:
                cache.follow(previous, current)
                db.recovery.request_reload()  # strategy rows notify the catalogue channel

            catalogs = CatalogManager(
                db,
                debounce_s=settings.reload_debounce_ms / 1000,
                default_timeout_ms=settings.statement_timeout_ms,
                on_reload=on_reload,
            )
            b.cleanup.push_async_callback(catalogs.stop)

            def reload_keys(_payload: str = "") -> None:
                spawned.spawn(key_store.reload(db.write), "reload-keys")

            def on_reconnect() -> None:
                cache.clear()  # invalidations sent while we were away are lost
                catalogs.request_reload(DDL_PAYLOAD)  # so are schema changes: re-check every row
                reload_keys()

            listener = Listener(
                listen_database_url,
                {
                    CATALOG_CHANNEL: catalogs.request_reload,
                    keys.CHANNEL: reload_keys,
                    CACHE_CHANNEL: lambda payload: cache.invalidate(payload.split(",")),
                },
                on_reconnect,
                ping_s=settings.listen_ping_s,
            )
            b.cleanup.push_async_callback(listener.stop)  # stopped first
            publisher = Publisher(db.write)
            errorlog = ErrorLogger(
                db.write,
                settings.error_log_queue_size,
                sample=settings.error_log_sample,
                unknown_path_limit=settings.unknown_path_limit_per_minute,
            )
            limiter = RateLimiter(settings.redis_url, shared_path=rate_file)
            errorlog.unknown_paths.shared = limiter.shared  # one count for every worker too
            held = process_figures(db, cache, catalogs, errorlog, listener)
            instance = figures.instance_id()
            slow_queries = figures.SlowQueries(
                database_url, settings.slow_query_ms, connect_kwargs=dedicated
            )
            measured = figures.Figures(
                instance, endpoints=catalogs.endpoint_routes, slow=slow_queries
            )
            pool_stats = health.PoolStats(
                db,
                probe,
                instance=instance,
                min_size=settings.pool_min_size,
                interval_s=settings.pool_stats_interval_s,
            )
            app.state.figures, app.state.slow_queries = measured, slow_queries
            app.state.pool_stats = pool_stats
            # listen first: no change is missed during the load
            await b.step("starting the listener", listener.start, timeout_s=boot.ATTEMPT_TIMEOUT_S)
            await b.step("loading the catalogue", catalogs.start)
            await db.recovery.reload(db.write)  # a failure keeps the built-in defaults
            await key_store.reload(db.write)  # a failure is logged; a reconnect reloads them
            for job in (
                access_log,  # first, so stopped last: every request's line is written
                spawned,
                errorlog,
                publisher,
                key_store.last_used_job(db.write),
                stats_job(
                    cache, db.write, catalogs.endpoint_routes, settings.cache_stats_interval_s
                ),
                idempotency.purge_job(db.write),
                pattern_job(db.write),
                Retention(db.write, settings.error_log_retention_days),
                pool_stats,  # on its own connection; the probe (stopped last) on another
                slow_queries,
                figures.flush_job(measured, db.write, settings.metrics_flush_s),  # final flush
                metrics,  # multi-process mode: copies this process's figures for any scrape
            ):
                jobs.start(job)
            app.state.listener = listener
            app.state.services = Services(
                settings=settings,
                db=db,
                catalogs=catalogs,
                authenticator=Authenticator(jwt_config, key_store),
                errorlog=errorlog,
                cache=cache,
                limiter=limiter,
                streams=Streams(
                    db.read,
                    concurrent=min(
                        settings.stream_max_concurrent, max(1, settings.pool_max_size - 1)
                    ),
                    max_seconds=settings.stream_max_seconds,
                    acquire_timeout_s=settings.pool_timeout_s,
                ),
                trusted_proxies=trusted,
                publish_invalidation=publisher.publish,
                observers=(access_log, metrics.observe, measured),
            )
            if settle_heap:
                _settle_heap()

        starting.start(sequence)
        try:
            await starting.settle()  # a quick boot completes before "listening"
            yield
        finally:
            await starting.stop()

    def live_catalog() -> Catalog:
        services = getattr(app.state, "services", None)  # None until the boot is done
        return services.catalogs.current if services is not None else no_catalog

    def methods_for(path: str) -> tuple[list[str], list[str]] | None:
        if path.startswith(admin.PREFIX):  # built-in routes and rows share these paths
            return admin_api.methods_at(path, live_catalog())
        if any(route.path_regex.match(path) for route in own_routes):
            return ["GET", "HEAD", "OPTIONS"], []
        return catalog_methods(live_catalog(), path)

    no_catalog = empty_catalog()
    # the admin API's built-in routes win over the catalogue's rows at their (method, path)
    own_routes = [*builtin.routes, *metrics_routes, *health.routes, *admin_api.routes]
    # the state's dict, as EngineApp's lane reads it: ``app.state.services`` is a failed
    # attribute look-up (an AttributeError made) and a Python __getattr__ each request
    dispatcher = Dispatcher(lambda: app.state._state["services"])
    cors = CorsPolicy.parse(settings.cors_origins, settings.cors_max_age_s)
    app = EngineApp(
        routes=[*own_routes, Mount("/", app=dispatcher)],
        middleware=[
            Middleware(Cors, policy=cors, methods_for=methods_for),
            # until the boot is done, 503 but where the answer needs no database
            Middleware(
                boot.UntilBooted, open_routes=[*health.routes, *metrics_routes, *docs.routes]
            ),
        ],
        lifespan=lifespan,
    )
    # catalogue requests skip the Starlette layers above (engine/front.py)
    app.lane = dispatcher if cors is None else Cors(dispatcher, cors, methods_for)
    return app
