"""The engine's own endpoints under ``/_engine``: health and the catalogue report."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine import docs
from engine.errors import PROBLEM_CONTENT_TYPE
from engine.openapi import openapi_json
from engine.shaping import encode

JSON = "application/json"


def _json(body: Any, status: int = 200) -> Response:
    return Response(encode(body), status_code=status, media_type=JSON)


def _problem(status: int, code: str, title: str) -> Response:
    body = {
        "type": f"urn:api-error:{code}",
        "title": title,
        "status": status,
        "detail": title,
        "code": code,
        "request_id": "",
    }
    return Response(encode(body), status_code=status, media_type=PROBLEM_CONTENT_TYPE)


async def health(request: Request) -> Response:
    services = request.app.state.services
    catalog = services.catalogs.current
    database = "ok"
    try:
        async with services.db.read.acquire(timeout=2) as conn:
            await asyncio.wait_for(conn.fetchval("SELECT 1"), 2)
    except Exception:
        database = "unavailable"
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
    return _json(body, 200 if database == "ok" else 503)


async def catalog_report(request: Request) -> Response:
    """Every served endpoint and every skipped row with its reason (admin token needed)."""
    services = request.app.state.services
    token = services.settings.admin_token
    if not token:
        return _problem(
            404, "ROUTE_NOT_FOUND", "The admin endpoint is off (set ENGINE_ADMIN_TOKEN)"
        )
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return _problem(401, "INVALID_TOKEN", "The admin token is missing or wrong")
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
    Route("/_engine/health", health, methods=["GET"]),
    Route("/_engine/catalog", catalog_report, methods=["GET"]),
    Route("/openapi.json", openapi_json),  # every method: 405 is a problem+json
    *docs.routes,
]
