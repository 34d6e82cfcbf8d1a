"""The hand-written baseline: the same endpoints as the bench rows, coded directly in Starlette.

What a developer would write without the engine: a pool, one query per route,
orjson encoding. The benchmark reports the engine's speed as a ratio to this.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

POOL: asyncpg.Pool | None = None


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    global POOL
    POOL = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=2, max_size=10)
    yield
    await POOL.close()


async def item(request: Request) -> Response:
    try:
        item_id = int(request.path_params["id"])
    except ValueError:
        return Response(b'{"code":"INVALID_PARAMETER"}', 400, media_type="application/problem+json")
    assert POOL is not None
    row = await POOL.fetchrow(
        "SELECT id, name, price, created_at FROM bench_items WHERE id = $1", item_id
    )
    if row is None:
        return Response(
            b'{"code":"RESOURCE_NOT_FOUND"}', 404, media_type="application/problem+json"
        )
    return Response(orjson.dumps(dict(row), default=float), media_type="application/json")


async def items(request: Request) -> Response:
    limit = int(request.query_params.get("limit", "50"))
    assert POOL is not None
    rows = await POOL.fetch(
        "SELECT id, name, price, created_at FROM bench_items ORDER BY id LIMIT $1", limit
    )
    return Response(
        orjson.dumps([dict(r) for r in rows], default=float), media_type="application/json"
    )


app = Starlette(
    routes=[Route("/bench/items/{id}", item), Route("/bench/items", items)], lifespan=lifespan
)
