"""Wiring: the Starlette application, its lifespan (pools, catalogue, error logger)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import Mount

from engine import builtin
from engine.auth import Authenticator
from engine.catalog import CatalogManager
from engine.database import Database
from engine.endpoint import Dispatcher, Services
from engine.errorlog import ErrorLogger
from engine.settings import Settings

log = logging.getLogger("engine")


def create_app(
    settings: Settings, database_url: str, *, jwt_secret: str | None = None
) -> Starlette:
    """The engine as an ASGI app serving the catalogue of the database at ``database_url``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        db = await Database.open(database_url, settings)
        catalogs = CatalogManager(
            db,
            debounce_s=settings.reload_debounce_ms / 1000,
            default_timeout_ms=settings.statement_timeout_ms,
        )
        errorlog = ErrorLogger(db.write, settings.error_log_queue_size)
        try:
            await catalogs.start()
            errorlog.start()
            app.state.loop = asyncio.get_running_loop()
            app.state.services = Services(
                settings=settings,
                db=db,
                catalogs=catalogs,
                authenticator=Authenticator(jwt_secret or settings.jwt_secret),
                errorlog=errorlog,
            )
            yield
        finally:
            await catalogs.stop()
            await errorlog.stop()
            await db.close()

    app = Starlette(
        routes=[*builtin.routes, Mount("/", app=Dispatcher(lambda: app.state.services))],
        lifespan=lifespan,
    )
    return app
