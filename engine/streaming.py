"""The ``stream`` shape: NDJSON or CSV from a server-side cursor, for large exports.

The first batch is fetched before the answer starts, so an error up to then
(a timeout, a bad value) is still a normal coded error answer; after that the
stream can only stop, and the failure is logged.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import AsyncIterator, Container, Mapping, Sequence
from typing import Any

import asyncpg
from starlette.responses import Response, StreamingResponse

from engine.catalog import CompiledEndpoint
from engine.database import release, translate
from engine.errors import ApiError
from engine.shaping import encode

log = logging.getLogger("engine.streaming")

BATCH = 500
_DRIVER_ERRORS = (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


class Streams:
    """The read pool as streams may use it: a few at a time, each for a bounded time.

    A stream holds a connection for as long as its client reads, so without a
    bound a handful of slow readers would take every read connection and every
    other GET would wait. Streams over the bound answer 503 at once.
    """

    def __init__(self, pool: asyncpg.Pool, *, concurrent: int, max_seconds: float) -> None:
        self.pool = pool
        self.max_seconds = max_seconds
        self.limit = max(1, concurrent)
        self.active = 0

    def try_enter(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active -= 1


def stream_media_type(ep: CompiledEndpoint) -> str:
    return (
        "text/csv; charset=utf-8"
        if ep.spec.result.stream_format == "csv"
        else "application/x-ndjson"
    )


async def stream_response(
    streams: Streams,
    ep: CompiledEndpoint,
    args: Sequence[Any],
    known_codes: Container[str],
    headers: Mapping[str, str],
) -> Response:
    spec = ep.spec
    if not streams.try_enter():
        raise ApiError(
            "DATABASE_CONNECTION_ERROR",
            "Too many exports are running; retry shortly",
            headers={"Retry-After": "5"},
        )
    pool = streams.pool
    try:
        conn = await pool.acquire(timeout=10)
    except BaseException as exc:
        streams.leave()
        if isinstance(exc, _DRIVER_ERRORS):
            raise translate(exc, spec.operation, known_codes, acquiring=True) from exc
        raise
    tx = conn.transaction(readonly=True)
    try:
        await tx.start()
        cursor = await conn.cursor(ep.sql, *args, timeout=ep.timeout_s)
        first = await cursor.fetch(BATCH, timeout=ep.timeout_s)
    except BaseException as exc:
        await _end(streams, conn, tx)
        if isinstance(exc, _DRIVER_ERRORS):
            raise translate(exc, spec.operation, known_codes) from exc
        raise

    csv_mode = spec.result.stream_format == "csv"
    names = [dict(spec.result.fields).get(n, n) for n, _ in ep.columns]
    deadline = time.monotonic() + streams.max_seconds

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
                if time.monotonic() > deadline:
                    log.error("stream %s cut after %.0f s", spec.label, streams.max_seconds)
                    break
                batch = await cursor.fetch(BATCH, timeout=ep.timeout_s)
        except _DRIVER_ERRORS as exc:
            log.error("stream %s aborted after it started: %s", spec.label, exc)
        finally:
            await _end(streams, conn, tx)

    return StreamingResponse(body(), media_type=stream_media_type(ep), headers=dict(headers))


async def _end(streams: Streams, conn: asyncpg.Connection, tx: Any) -> None:
    try:
        await tx.rollback()
    except Exception:  # the connection may already be gone
        pass
    finally:
        await release(streams.pool, conn)
        streams.leave()


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
