"""Wiring only: the Starlette application, its lifespan, and the jobs of one process.

Each background job lives in the module that owns its work and has start/stop
(see ``engine.jobs``); the request flow is ``engine.endpoint``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount

from engine import accesslog, admin, builtin, figures, health, idempotency, keys
from engine.admin import api as admin_api
from engine.auth import Authenticator, JwtConfig
from engine.cache import CHANNEL as CACHE_CHANNEL
from engine.cache import Publisher, ResponseCache, stats_job
from engine.catalog import CHANNEL as CATALOG_CHANNEL
from engine.catalog import DDL_PAYLOAD, CatalogManager
from engine.cors import Cors, CorsPolicy, catalog_methods
from engine.database import Database
from engine.endpoint import Dispatcher, Services
from engine.errorlog import ErrorLogger
from engine.jobs import Jobs, Spawner
from engine.listener import Listener
from engine.metrics import Metrics, process_figures
from engine.metrics import routes as metrics_routes
from engine.ratelimit import RateLimiter, parse_networks
from engine.settings import Settings
from engine.streaming import Streams

log = logging.getLogger("engine")


def create_app(
    settings: Settings, database_url: str, *, jwt_secret: str | None = None
) -> Starlette:
    """The engine as an ASGI app serving the catalogue of the database at ``database_url``."""
    jwt_config = JwtConfig.build(
        secret=jwt_secret or settings.jwt_secret,
        public_key=settings.jwt_public_key,
        algorithms=settings.jwt_algorithms,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    trusted = parse_networks(settings.trusted_proxies)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        access_log = accesslog.create(settings.access_log)  # ValueError unless on or off
        db = await Database.open(database_url, settings)
        cache = ResponseCache(default_max_entries=settings.cache_max_entries)
        key_store = keys.KeyStore()
        spawned = Spawner()
        catalogs = CatalogManager(
            db,
            debounce_s=settings.reload_debounce_ms / 1000,
            default_timeout_ms=settings.statement_timeout_ms,
            on_reload=cache.follow,
        )

        def reload_keys(_payload: str = "") -> None:
            spawned.spawn(key_store.reload(db.write), "reload-keys")

        def on_reconnect() -> None:
            cache.clear()  # invalidations sent while we were away are lost
            catalogs.request_reload(DDL_PAYLOAD)  # so are schema changes: re-check every row
            reload_keys()

        listener = Listener(
            database_url,
            {
                CATALOG_CHANNEL: catalogs.request_reload,
                keys.CHANNEL: reload_keys,
                CACHE_CHANNEL: lambda payload: cache.invalidate(payload.split(",")),
            },
            on_reconnect,
        )
        publisher = Publisher(db.write)
        errorlog = ErrorLogger(db.write, settings.error_log_queue_size)
        metrics = Metrics(
            process_figures(db, cache, catalogs, errorlog, listener), token=settings.metrics_token
        )
        app.state.metrics = metrics
        instance = figures.instance_id()
        slow_queries = figures.SlowQueries(database_url, settings.slow_query_ms)
        measured = figures.Figures(instance, endpoints=catalogs.endpoint_routes, slow=slow_queries)
        probe = health.Probe(database_url)  # its own connection: answers when the pools cannot
        pool_stats = health.PoolStats(
            db,
            probe,
            instance=instance,
            min_size=settings.pool_min_size,
            interval_s=settings.pool_stats_interval_s,
        )
        app.state.figures, app.state.slow_queries = measured, slow_queries
        app.state.probe, app.state.pool_stats = probe, pool_stats
        jobs = Jobs()
        try:
            await listener.start()  # listen first: no change is missed during the load
            await catalogs.start()
            await key_store.reload(db.write)
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
                probe,  # its own connection; the pool figures write on another
                pool_stats,
                slow_queries,
                figures.flush_job(measured, db.write, settings.metrics_flush_s),  # final flush
                metrics,  # multi-process mode: copies this process's figures for any scrape
            ):
                jobs.start(job)
            app.state.loop = asyncio.get_running_loop()
            app.state.listener = listener
            app.state.services = Services(
                settings=settings,
                db=db,
                catalogs=catalogs,
                authenticator=Authenticator(jwt_config, key_store),
                errorlog=errorlog,
                cache=cache,
                limiter=RateLimiter(settings.redis_url),
                streams=Streams(
                    db.read,
                    concurrent=min(
                        settings.stream_max_concurrent, max(1, settings.pool_max_size - 1)
                    ),
                    max_seconds=settings.stream_max_seconds,
                ),
                trusted_proxies=trusted,
                publish_invalidation=publisher.publish,
                observers=(access_log, metrics.observe, measured),
            )
            yield
        finally:
            await listener.stop()
            await catalogs.stop()
            await jobs.stop()
            await db.close()

    def methods_for(path: str) -> tuple[list[str], list[str]] | None:
        if path.startswith(admin.PREFIX):  # built-in routes and rows share these paths
            return admin_api.methods_at(path, app.state.services.catalogs.current)
        if any(route.path_regex.match(path) for route in own_routes):
            return ["GET", "HEAD", "OPTIONS"], []
        return catalog_methods(app.state.services.catalogs.current, path)

    # the admin API's built-in routes win over the catalogue's rows at their (method, path)
    own_routes = [*builtin.routes, *metrics_routes, *health.routes, *admin_api.routes]
    app = Starlette(
        routes=[*own_routes, Mount("/", app=Dispatcher(lambda: app.state.services))],
        middleware=[
            Middleware(
                Cors,
                policy=CorsPolicy.parse(settings.cors_origins, settings.cors_max_age_s),
                methods_for=methods_for,
            )
        ],
        lifespan=lifespan,
    )
    return app
