"""The ``stream`` shape: NDJSON or CSV from a server-side cursor, for large exports.

The first batch is fetched before the answer starts, so an error up to then
(a timeout, a bad value, too many exports at once) is still a normal coded error
answer. After that the stream can only stop, and it must not look complete: the
failure is logged through ``log_api_error()``, an NDJSON stream writes a last line
``{"error": <problem>}``, and the response ends without the zero-length chunk
that ends a chunked body, so HTTP clients report an incomplete transfer. An export
cut at ``ENGINE_STREAM_MAX_SECONDS`` is such a failure (``STATEMENT_TIMEOUT``).

An export's slot and connection are given back exactly once, by a task of its
own that no cancellation reaches, whether the export ends, fails, or its client
leaves (before the first byte or in the middle).

CSV cells are written as the JSON answer writes the value (``true``, ISO 8601),
except: SQL NULL is an empty cell, NaN and infinities are ``NaN``, ``Infinity``
and ``-Infinity``, and a text cell starting with ``=``, ``+``, ``-``, ``@``, tab or
carriage return gets a leading ``'`` so a spreadsheet does not run it as a formula
(OWASP's rule; ``"csv_escape_formulas": false`` in ``result_mapping`` opts out).
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from engine.catalog import CompiledEndpoint
from engine.database import ACQUIRE_TIMEOUT_S, RETRY_AFTER_S, acquire, release, translate
from engine.errorlog import ErrorEntry, ErrorLogger, safe_headers, safe_query
from engine.errors import ApiError, ErrorCatalog, parse_accept_language, problem_body
from engine.observe import record_statement
from engine.shaping import PgText, encode

log = logging.getLogger("engine.streaming")

BATCH = 500
GIVE_BACK_S = 5.0  # the longest a rollback may take before the connection is dropped
_DRIVER_ERRORS = (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_KNOWN_SUFFIX = re.compile(r"\.(csv|ndjson|jsonl|json|txt)$", re.IGNORECASE)
_PENDING: set[asyncio.Task[None]] = set()  # strong references to give-backs until done


class Streams:
    """The read pool as streams may use it: a few at a time, each for a bounded time.

    A stream holds a connection for as long as its client reads, so without a
    bound a handful of slow readers would take every read connection and every
    other GET would wait. Streams over the bound answer 503 at once.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        concurrent: int,
        max_seconds: float,
        acquire_timeout_s: float = ACQUIRE_TIMEOUT_S,  # ENGINE_POOL_TIMEOUT_S
    ) -> None:
        self.pool = pool
        self.max_seconds = max_seconds
        self.acquire_timeout_s = acquire_timeout_s
        self.limit = max(1, concurrent)
        self.active = 0

    def try_enter(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def leave(self) -> None:
        self.active -= 1


@dataclass(frozen=True)
class StreamOrigin:
    """The request an export answers, as its failure is logged and reported."""

    request: Request
    request_id: str
    started: float  # time.perf_counter() when the request arrived
    errorlog: ErrorLogger
    principal: str | None = None


class StreamAborted(Exception):
    """Raised from the body after the first byte: the server drops the connection."""


def stream_media_type(ep: CompiledEndpoint) -> str:
    return (
        "text/csv; charset=utf-8"
        if ep.spec.result.stream_format == "csv"
        else "application/x-ndjson"
    )


def export_filename(path: str, stream_format: str) -> str:
    """``<last literal segment of the path>.csv`` (or ``.ndjson``), safe in a header."""
    extension = "csv" if stream_format == "csv" else "ndjson"
    stem = ""
    for segment in reversed(path.split("/")):
        if segment and "{" not in segment:
            stem = _NAME_UNSAFE.sub("_", _KNOWN_SUFFIX.sub("", segment)).strip("_-")[:100]
            break
    return f"{stem or 'export'}.{extension}"


def export_headers(ep: CompiledEndpoint, headers: Mapping[str, str]) -> dict[str, str]:
    name = export_filename(ep.spec.path, ep.spec.result.stream_format)
    return {**headers, "Content-Disposition": f'attachment; filename="{name}"'}


class _Export:
    """One running export's slot, connection and transaction, given back exactly once."""

    def __init__(self, streams: Streams, conn: asyncpg.Connection, tx: Any) -> None:
        self.streams = streams
        self.conn = conn
        self.tx = tx
        self.in_transaction = False
        self._giving_back: asyncio.Task[None] | None = None

    def give_back(self) -> asyncio.Task[None]:
        """Start returning the connection and the slot, in a task no cancellation reaches."""
        if self._giving_back is None:
            task = asyncio.ensure_future(self._give_back())
            _PENDING.add(task)
            task.add_done_callback(_PENDING.discard)
            self._giving_back = task
        return self._giving_back

    async def given_back(self) -> None:
        """Give back and wait; if the waiter is cancelled, the giving back still finishes."""
        await asyncio.shield(self.give_back())

    async def _give_back(self) -> None:
        try:
            if self.in_transaction:
                try:
                    await asyncio.wait_for(self.tx.rollback(), GIVE_BACK_S)
                except Exception as exc:  # gone, or stuck: never reuse it
                    log.info("dropping an export's connection: %r", exc)
                    self.conn.terminate()
            await release(self.streams.pool, self.conn)
        finally:
            self.streams.leave()


class _ExportResponse(StreamingResponse):
    """A streaming response that gives its export back however the sending ends."""

    def __init__(self, export: _Export, body: AsyncIterator[bytes], **kwargs: Any) -> None:
        super().__init__(body, **kwargs)
        self._export = export

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:  # the body may never have run (the client left before the first byte)
            await self._export.given_back()


async def stream_response(
    streams: Streams,
    ep: CompiledEndpoint,
    args: Sequence[Any],
    errors: ErrorCatalog,
    headers: Mapping[str, str],
    origin: StreamOrigin,
) -> Response:
    """The export of ``ep``; HEAD answers its headers without running it."""
    spec = ep.spec
    media_type = stream_media_type(ep)
    if origin.request.method == "HEAD":
        return Response(status_code=200, headers=export_headers(ep, headers), media_type=media_type)
    if not streams.try_enter():
        raise ApiError(
            "TOO_MANY_EXPORTS",
            f"{streams.limit} export(s) are running; retry shortly",
            headers={"Retry-After": RETRY_AFTER_S},
        )
    try:  # DATABASE_BUSY after the pool timeout, as every request's wait
        conn = await acquire(streams.pool, streams.acquire_timeout_s, spec.operation, errors)
    except BaseException:
        streams.leave()
        raise
    export = _Export(streams, conn, conn.transaction(readonly=True))
    try:
        await export.tx.start()
        export.in_transaction = True
        opened = time.perf_counter()
        cursor = await conn.cursor(ep.sql, *args, timeout=ep.timeout_s)
        first = await cursor.fetch(BATCH, timeout=ep.timeout_s)
        record_statement(time.perf_counter() - opened, ep.sql, args)
    except BaseException as exc:
        await export.given_back()
        if isinstance(exc, _DRIVER_ERRORS):
            raise translate(exc, spec.operation, errors, client_values=ep.client_values) from exc
        raise

    csv_mode = spec.result.stream_format == "csv"
    escape = spec.result.csv_escape_formulas
    names = [dict(spec.result.fields).get(n, n) for n, _ in ep.columns]
    deadline = time.monotonic() + streams.max_seconds

    def render(batch: list[asyncpg.Record]) -> bytes:
        if csv_mode:
            return _csv_lines([[_csv_cell(v, escape) for v in r.values()] for r in batch])
        return b"".join(encode(ep.shaper.rename(r)) + b"\n" for r in batch)

    async def body() -> AsyncIterator[bytes]:
        try:
            if csv_mode:
                yield _csv_lines([names])
            batch = first
            while True:
                last = len(batch) < BATCH
                if last:  # read to the end: give back before the last write
                    await export.given_back()
                if batch:
                    yield render(batch)
                if last:
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"cut after {streams.max_seconds} s")
                timeout = remaining if ep.timeout_s is None else min(ep.timeout_s, remaining)
                fetching = time.perf_counter()
                batch = await cursor.fetch(BATCH, timeout=timeout)
                elapsed = time.perf_counter() - fetching
                record_statement(elapsed, ep.sql, args, more_of_the_last=True)
        except Exception as exc:
            export.give_back()  # first, whatever happens to the writes below
            cut = isinstance(exc, TimeoutError) and time.monotonic() >= deadline
            problem = _report(exc, ep, errors, origin, cut=cut)
            if not csv_mode:
                yield encode({"error": problem}) + b"\n"
            raise StreamAborted(f"{spec.label} stopped after it started") from None
        finally:
            await export.given_back()

    return _ExportResponse(
        export, body(), media_type=media_type, headers=export_headers(ep, headers)
    )


def _report(
    exc: Exception, ep: CompiledEndpoint, errors: ErrorCatalog, origin: StreamOrigin, *, cut: bool
) -> dict[str, Any]:
    """Log a stream that failed after it started; its problem body (RFC 9457)."""
    spec = ep.spec
    internal = f"{type(exc).__name__}: {exc}"
    if cut:
        error = ApiError(
            "STATEMENT_TIMEOUT",
            "The export took longer than allowed and was cut",
            internal=internal,
            database_error="export time limit",
        )
    elif isinstance(exc, _DRIVER_ERRORS):
        error = translate(exc, spec.operation, errors, client_values=ep.client_values)
    else:
        error = ApiError("INTERNAL_ERROR", internal=internal)
    if error.schema_drift:  # no re-check from here: the stream is already answered
        error = ApiError(
            "INTERNAL_ERROR", internal=error.internal, database_error=error.database_error
        )
    entry = errors.get(error.code)
    log.error("stream %s failed after it started -> %s: %s", spec.label, entry.code, internal)
    request = origin.request
    body, _ = problem_body(
        error,
        entry,
        request_id=origin.request_id,
        instance=request.url.path,
        languages=parse_accept_language(request.headers.get("accept-language")),
    )
    origin.errorlog.submit(
        ErrorEntry(
            request_id=origin.request_id,
            path=spec.path,
            method=request.method,
            code=entry.code,
            message=error.detail or entry.message,
            status=entry.status,
            elapsed_ms=int((time.perf_counter() - origin.started) * 1000),
            category=entry.category,
            stack=error.internal,
            headers=safe_headers(request.headers),
            params=safe_query(request.query_params.multi_items()) if request.url.query else None,
            operation=spec.operation,
            database_error=error.database_error,
            principal=origin.principal,
        )
    )
    return body


def _csv_cell(value: Any, escape_formulas: bool) -> Any:
    """A CSV cell: NULL empty, NaN/Infinity spelled out, text guarded against formulas."""
    if value is None:
        return ""
    if isinstance(value, str):
        # the engine's own spellings (-infinity, -Infinity) are values, not formulas
        if escape_formulas and value.startswith(_FORMULA_START) and type(value) is not PgText:
            return "'" + value
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Decimal) and not value.is_finite():
        return "NaN" if value.is_nan() else ("Infinity" if value > 0 else "-Infinity")
    text = encode(value).decode()
    return text[1:-1] if text.startswith('"') else text


def _csv_lines(rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode()
