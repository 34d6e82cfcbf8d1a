"""The engine's scenarios hand-written in Starlette as typical code writes them.

asyncpg's default pool (which resets each connection on release), rows made
JSON-friendly by hand and answered with ``JSONResponse``, the body checked
with ``jsonschema.validate``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import jsonschema
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.baselines import sql

pool: asyncpg.Pool


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    global pool
    pool = await asyncpg.create_pool(os.environ["DATABASE_URL"])
    yield
    await pool.close()


def jsonable(row: asyncpg.Record) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if isinstance(value, Decimal):
            value = float(value)
        elif isinstance(value, dt.date | dt.datetime):
            value = value.isoformat()
        out[key] = value
    return out


def problem(status: int, code: str) -> JSONResponse:
    return JSONResponse(
        {"status": status, "code": code}, status, media_type="application/problem+json"
    )


async def camera(request: Request) -> JSONResponse:
    try:
        camera_id = int(request.path_params["camera_id"])
        tenant_id = int(request.query_params["tenant_id"])
    except (KeyError, ValueError):
        return problem(400, "INVALID_PARAMETER")
    async with pool.acquire() as conn:
        row = await conn.fetchrow(sql.CAMERA, camera_id, tenant_id)
    if row is None:
        return problem(404, "RESOURCE_NOT_FOUND")
    return JSONResponse(jsonable(row))


async def cameras(request: Request) -> JSONResponse:
    try:
        tenant_id = int(request.query_params["tenant_id"])
        after = int(request.query_params.get("after", 0))
    except (KeyError, ValueError):
        return problem(400, "INVALID_PARAMETER")
    async with pool.acquire() as conn:
        rows = await conn.fetch(sql.CAMERAS, tenant_id, after)
    return JSONResponse([jsonable(r) for r in rows])


async def reading(request: Request) -> JSONResponse:
    try:
        body = await request.json()
        jsonschema.validate(body, sql.READING_SCHEMA)
    except (ValueError, jsonschema.ValidationError):
        return problem(400, "VALIDATION_ERROR")
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            sql.READING, body["camera_id"], body["tenant_id"], body["people_count"]
        )
    return JSONResponse(jsonable(row), 201)


async def camera_status(request: Request) -> JSONResponse:
    try:
        camera_id = int(request.path_params["camera_id"])
        tenant_id = int(request.query_params["tenant_id"])
    except (KeyError, ValueError):
        return problem(400, "INVALID_PARAMETER")
    async with pool.acquire() as conn:
        row = await conn.fetchrow(sql.CAMERA_STATUS, camera_id, tenant_id)
    if row is None:
        return problem(404, "RESOURCE_NOT_FOUND")
    return JSONResponse(jsonable(row))


app = Starlette(
    routes=[
        Route("/bench/cameras/{camera_id}", camera),
        Route("/bench/cameras", cameras),
        Route("/bench/readings", reading, methods=["POST"]),
        Route("/bench/cameras/{camera_id}/status", camera_status),
    ],
    lifespan=lifespan,
)
