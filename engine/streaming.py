"""The ``stream`` shape: NDJSON or CSV from a server-side cursor, for large exports.

The first batch is fetched before the answer starts, so an error up to then
(a timeout, a bad value) is still a normal coded error answer; after that the
stream can only stop, and the failure is logged.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import AsyncIterator, Container, Mapping, Sequence
from typing import Any

import asyncpg
from starlette.responses import Response, StreamingResponse

from engine.catalog import CompiledEndpoint
from engine.database import release, translate
from engine.shaping import encode

log = logging.getLogger("engine.streaming")

BATCH = 500
_DRIVER_ERRORS = (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def stream_response(
    pool: asyncpg.Pool,
    ep: CompiledEndpoint,
    args: Sequence[Any],
    known_codes: Container[str],
    headers: Mapping[str, str],
) -> Response:
    spec = ep.spec
    try:
        conn = await pool.acquire(timeout=10)
    except _DRIVER_ERRORS as exc:
        raise translate(exc, spec.operation, known_codes, acquiring=True) from exc
    tx = conn.transaction(readonly=True)
    try:
        await tx.start()
        cursor = await conn.cursor(ep.sql, *args, timeout=ep.timeout_s)
        first = await cursor.fetch(BATCH, timeout=ep.timeout_s)
    except BaseException as exc:
        await _end(pool, conn, tx)
        if isinstance(exc, _DRIVER_ERRORS):
            raise translate(exc, spec.operation, known_codes) from exc
        raise

    csv_mode = spec.result.stream_format == "csv"
    names = [dict(spec.result.fields).get(n, n) for n, _ in ep.columns]

    async def body() -> AsyncIterator[bytes]:
        try:
            if csv_mode:
                yield _csv_lines([names])
            batch = first
            while batch:
                if csv_mode:
                    yield _csv_lines([[_csv_cell(v) for v in r.values()] for r in batch])
                else:
                    yield b"".join(encode(ep.shaper.rename(r)) + b"\n" for r in batch)
                if len(batch) < BATCH:
                    break
                batch = await cursor.fetch(BATCH, timeout=ep.timeout_s)
        except _DRIVER_ERRORS as exc:
            log.error("stream %s aborted after it started: %s", spec.label, exc)
        finally:
            await _end(pool, conn, tx)

    media = "text/csv; charset=utf-8" if csv_mode else "application/x-ndjson"
    return StreamingResponse(body(), media_type=media, headers=dict(headers))


async def _end(pool: asyncpg.Pool, conn: asyncpg.Connection, tx: Any) -> None:
    try:
        await tx.rollback()
    except Exception:  # the connection may already be gone
        pass
    finally:
        await release(pool, conn)


def _csv_cell(value: Any) -> Any:
    """A CSV cell written as the JSON answer would write the value (true, ISO 8601...)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    text = encode(value).decode()
    return text[1:-1] if text.startswith('"') else text


def _csv_lines(rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode()
