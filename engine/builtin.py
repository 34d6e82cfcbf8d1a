"""The engine's own endpoints under ``/_engine``: health and the catalogue report.

Both answer GET and HEAD only (any other method: 405, see :mod:`engine.problems`).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine import docs
from engine.database import RETRY_AFTER_S
from engine.errors import ApiError
from engine.health import Probe
from engine.openapi import openapi_json
from engine.problems import BEARER_CHALLENGE, bearer_matches, own_route, problem
from engine.shaping import encode

JSON = "application/json"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(encode(body), status_code=status, media_type=JSON, headers=headers)


async def health(request: Request) -> Response:
    """Database, catalogue and counters; 503 when the database does not answer."""
    services = request.app.state.services
    catalog = services.catalogs.current
    # the dedicated probe (engine.health), not a pool connection: a busy pool is not a
    # database that is down, and waiting for one would make this answer late
    probe: Probe = request.app.state.probe
    database = "ok" if (await probe.check()).ok else "unavailable"
    body = {
        "status": "ok" if database == "ok" else "degraded",
        "database": database,
        "endpoints": len(catalog.endpoints),
        "problems": len(catalog.problems),
        # routes whose owning row cannot serve (they answer 503 ENDPOINT_UNAVAILABLE), and
        # rows whose latest version is refused while an older one serves
        "routes_not_serving": len(catalog.unavailable),
        "rows": catalog.state_counts(),
        "schema_changes_watched": services.catalogs.ddl_watched,
        "catalog_generation": catalog.generation,
        # counters an operator watches: a failing reload keeps an old catalogue,
        # reconnects mean lost notifications, dropped error-log entries are lost
        "counters": {
            "catalog_reloads": services.catalogs.reloads,
            "catalog_reload_failures": services.catalogs.reload_failures,
            "listener_reconnects": request.app.state.listener.reconnects,
            "cache_invalidations": services.cache.invalidations,
            "error_log_written": services.errorlog.written,
            "error_log_failed": services.errorlog.failed,
            "error_log_dropped": services.errorlog.dropped,
        },
    }
    if database != "ok":  # a 5xx says when to retry
        return _json(body, 503, {"Retry-After": RETRY_AFTER_S})
    return _json(body)


async def catalog_report(request: Request) -> Response:
    """Every served endpoint and every skipped row with its reason (admin token needed)."""
    services = request.app.state.services
    token = services.settings.admin_token
    if not token:
        error = ApiError("ROUTE_NOT_FOUND", "The admin endpoint is off (set ENGINE_ADMIN_TOKEN)")
        return problem(request, error)
    if not bearer_matches(request.headers.get("authorization"), token):
        error = ApiError(
            "INVALID_TOKEN", "The admin token is missing or wrong", headers=BEARER_CHALLENGE
        )
        return problem(request, error)
    catalog = services.catalogs.current
    return _json(
        {
            "generation": catalog.generation,
            "endpoints": [
                {
                    "id": ep.spec.id,
                    "method": ep.spec.method,
                    "path": ep.spec.path,
                    "version": ep.spec.version,
                }
                for ep in catalog.endpoints
            ],
            "problems": [p.as_dict() for p in catalog.problems],
            "warnings": [p.as_dict() for p in catalog.warnings],
            "rows": [s.as_dict() for s in catalog.statuses],
        }
    )


routes = [
    own_route("/_engine/health", health),
    own_route("/_engine/catalog", catalog_report),
    Route("/openapi.json", openapi_json),  # every method: 405 is a problem+json
    *docs.routes,
]
