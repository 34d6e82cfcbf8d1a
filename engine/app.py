"""Wiring: the Starlette application and its lifespan (pools, catalogue, keys, cache, listener)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable

from starlette.applications import Starlette
from starlette.routing import Mount

from engine import builtin, idempotency, keys
from engine.auth import Authenticator, JwtConfig
from engine.cache import ResponseCache, write_stats
from engine.catalog import CHANNEL as CATALOG_CHANNEL
from engine.catalog import DDL_PAYLOAD, Catalog, CatalogManager
from engine.database import Database
from engine.endpoint import Dispatcher, Services
from engine.errorlog import ErrorLogger
from engine.listener import Listener
from engine.ratelimit import RateLimiter, parse_networks
from engine.settings import Settings
from engine.streaming import Streams

log = logging.getLogger("engine")

CACHE_CHANNEL = "engine_cache"


class _Background:
    """Small periodic and fire-and-forget tasks of one engine process."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: object, name: str) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        task.set_name(name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


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
        db = await Database.open(database_url, settings)
        cache = ResponseCache(default_max_entries=settings.cache_max_entries)
        background = _Background()

        def on_reload(previous: Catalog, catalog: Catalog) -> None:
            # an endpoint compiled anew (its row or a row it depends on changed) may answer
            # differently: drop its cached answers; the others keep theirs
            for mid, ep in previous.serving.items():
                if catalog.serving.get(mid) is not ep:
                    cache.drop(mid)
            for ep in catalog.endpoints:
                if ep.cacheable:
                    cache.configure(
                        ep.spec.id,
                        strategy=ep.cache.strategy,
                        ttl_seconds=ep.cache.ttl_seconds,
                        max_entries=ep.cache.max_entries,
                        tables=ep.cache.tables,
                    )
            cache.retain(ep.spec.id for ep in catalog.endpoints if ep.cacheable)

        catalogs = CatalogManager(
            db,
            debounce_s=settings.reload_debounce_ms / 1000,
            default_timeout_ms=settings.statement_timeout_ms,
            on_reload=on_reload,
        )
        key_store = keys.KeyStore()

        async def reload_keys() -> None:
            try:
                async with db.write.acquire(timeout=10) as conn:
                    await key_store.load(conn)
            except Exception as exc:  # keep the keys we have
                log.error("could not reload API keys: %s", exc)

        def on_reconnect() -> None:
            cache.clear()  # invalidations sent while we were away are lost
            catalogs.request_reload(DDL_PAYLOAD)  # so are schema changes: re-check every row
            background.spawn(reload_keys(), "reload-keys")

        listener = Listener(
            database_url,
            {
                CATALOG_CHANNEL: catalogs.request_reload,
                keys.CHANNEL: lambda _p: background.spawn(reload_keys(), "reload-keys"),
                CACHE_CHANNEL: lambda payload: cache.invalidate(payload.split(",")),
            },
            on_reconnect,
        )

        pending: set[str] = set()
        wake_notifier = asyncio.Event()

        async def notifier() -> None:
            """Tell the other processes which tables changed: one task, batched, off the request path."""
            while True:
                await wake_notifier.wait()
                wake_notifier.clear()
                tables = sorted(pending)
                pending.clear()
                try:
                    async with db.write.acquire(timeout=10) as conn:
                        await conn.execute(
                            "SELECT pg_notify($1, $2)", CACHE_CHANNEL, ",".join(tables)
                        )
                except Exception as exc:
                    log.warning("could not tell other processes to invalidate %s: %s", tables, exc)

        def publish(tables: Iterable[str]) -> None:
            pending.update(tables)
            wake_notifier.set()

        async def stats_loop() -> None:
            while True:
                await asyncio.sleep(settings.cache_stats_interval_s)
                endpoints = {
                    ep.spec.id: (ep.spec.path, ep.spec.method) for ep in catalogs.current.endpoints
                }
                try:
                    async with db.write.acquire(timeout=10) as conn:
                        await write_stats(cache, conn, endpoints)
                except Exception as exc:
                    log.warning("could not write cache figures: %s", exc)

        async def purge_idempotency_keys() -> None:
            while True:
                await asyncio.sleep(idempotency.PURGE_INTERVAL_S)
                try:
                    async with db.write.acquire(timeout=10) as conn:
                        purged = await idempotency.purge_expired(conn)
                    if purged:
                        log.info("purged %d expired idempotency key(s)", purged)
                except Exception as exc:
                    log.warning("could not purge expired idempotency keys: %s", exc)

        errorlog = ErrorLogger(db.write, settings.error_log_queue_size)
        limiter = RateLimiter(settings.redis_url)
        try:
            await listener.start()  # listen first: no change is missed during the load
            await catalogs.start()
            await reload_keys()
            errorlog.start()
            key_store.start(db.write)
            background.spawn(stats_loop(), "cache-stats")
            background.spawn(notifier(), "cache-notifier")
            background.spawn(purge_idempotency_keys(), "idempotency-purge")
            app.state.loop = asyncio.get_running_loop()
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
                ),
                trusted_proxies=trusted,
                publish_invalidation=publish,
            )
            yield
        finally:
            await listener.stop()
            await catalogs.stop()
            await background.stop()
            await key_store.stop(db.write)
            await errorlog.stop()
            await db.close()

    app = Starlette(
        routes=[*builtin.routes, Mount("/", app=Dispatcher(lambda: app.state.services))],
        lifespan=lifespan,
    )
    return app
