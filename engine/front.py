"""The outermost ASGI app: catalogue requests go straight to the dispatcher.

A published row's request needs none of Starlette's layers (its error
middlewares, the router, the mount): the dispatcher answers every failure
itself as problem+json. So once the boot is done, a request whose path is not
one of the engine's own (``/openapi.json``, ``/docs``, ``/metrics``,
``/health``, ``/_engine``, ``/admin/v1``) and whose method is not OPTIONS is
handed to the dispatcher (wrapped in CORS when ``ENGINE_CORS_ORIGINS`` is
set) with one prefix test. Everything else takes the Starlette app as before:
the built-in routes, OPTIONS, and the 503 of :class:`engine.boot.UntilBooted`
before the boot.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from engine.spec import ADMIN_PREFIX, RESERVED_EXACT, RESERVED_UNDER

# a path starting with one of these may be an own route: it takes the Starlette app (a
# catalogue row at /docsearch is still served, through the mount, only not by this lane)
OWN_PREFIXES: tuple[str, ...] = (*RESERVED_EXACT, *RESERVED_UNDER, ADMIN_PREFIX)


class EngineApp(Starlette):
    """Starlette with a direct lane for catalogue requests (see the module's doc)."""

    def __init__(self, *, lane: ASGIApp | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lane = lane  # set by create_app: the dispatcher, in CORS when configured

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = self.lane
        if (
            lane is not None
            and scope["type"] == "http"
            and scope["method"] != "OPTIONS"
            and not scope["path"].startswith(OWN_PREFIXES)
            and self.state._state.get("services") is not None
        ):
            scope["app"] = self
            await lane(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
