"""The engine's scenarios in FastAPI + asyncpg, as its tutorial writes them.

Typed path and query parameters, a pydantic model for the body, dicts returned
and encoded by FastAPI (with no return type, which would add a response model
validating every answer). A failed parameter answers 400 (FastAPI's default is 422)
so every server answers the same statuses.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import asyncpg
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from bench.baselines import sql

pool: asyncpg.Pool


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    global pool
    pool = await asyncpg.create_pool(os.environ["DATABASE_URL"])
    yield
    await pool.close()


app = FastAPI(lifespan=lifespan)


@app.exception_handler(RequestValidationError)
async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"status": 400, "code": "INVALID_PARAMETER"}, 400)


class Reading(BaseModel):
    model_config = ConfigDict(extra="forbid")
    camera_id: int = Field(ge=1)
    tenant_id: int = Field(ge=1)
    people_count: int = Field(ge=0, le=10000)


@app.get("/bench/cameras/{camera_id}")
async def camera(camera_id: int, tenant_id: int):
    async with pool.acquire() as conn:
        row = await conn.fetchrow(sql.CAMERA, camera_id, tenant_id)
    if row is None:
        raise HTTPException(404, "RESOURCE_NOT_FOUND")
    return dict(row)


@app.get("/bench/cameras")
async def cameras(tenant_id: int, after: int = 0):
    async with pool.acquire() as conn:
        rows = await conn.fetch(sql.CAMERAS, tenant_id, after)
    return [dict(r) for r in rows]


@app.post("/bench/readings", status_code=201)
async def reading(body: Reading):
    async with pool.acquire() as conn:
        row = await conn.fetchrow(sql.READING, body.camera_id, body.tenant_id, body.people_count)
    return dict(row)


@app.get("/bench/cameras/{camera_id}/status")
async def camera_status(camera_id: int, tenant_id: int):
    async with pool.acquire() as conn:
        row = await conn.fetchrow(sql.CAMERA_STATUS, camera_id, tenant_id)
    if row is None:
        raise HTTPException(404, "RESOURCE_NOT_FOUND")
    return dict(row)
