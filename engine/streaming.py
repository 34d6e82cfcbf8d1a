"""The ``stream`` shape: NDJSON or CSV from a server-side cursor, for large exports.

The first batch is fetched before the answer starts, so an error up to then
(a timeout, a bad value, too many exports at once) is still a normal coded error
answer. After that the stream can only stop, and it must not look complete: the
failure is logged through ``log_api_error()``, an NDJSON stream writes a last line
``{"error": <problem>}``, and the response ends without the zero-length chunk
that ends a chunked body, so HTTP clients report an incomplete transfer. An export
cut at ``ENGINE_STREAM_MAX_SECONDS`` is such a failure (``STATEMENT_TIMEOUT``).

The first batch is small (``BATCH`` rows: the first byte comes soon); later ones are
``MORE`` rows, each encoded in one go and sent as one chunk, and each asked for
before the one in hand is encoded and written, so the database produces it on the
other core meanwhile (at most two batches are held). A batch is encoded column by
column with C-level calls over each whole column (``_Cells`` for CSV,
:func:`ndjson_batch`), a column that does not fit those going value by value by the
general rule, so per-value Python work is the exception (tests/test_streaming_cells.py
checks both paths against the per-value rule, byte for byte).

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
import datetime as dt
import io
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import repeat
from operator import itemgetter
from typing import Any

import asyncpg
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from engine.catalog import CompiledEndpoint
from engine.database import ACQUIRE_TIMEOUT_S, RETRY_AFTER_S, acquire, release, translate
from engine.errorlog import ErrorEntry, ErrorLogger, safe_headers, safe_query
from engine.errors import ApiError, ErrorCatalog, parse_accept_language, problem_body
from engine.observe import record_statement
from engine.shaping import PgText, encode, ndjson_lines

log = logging.getLogger("engine.streaming")

BATCH = 500  # rows of the first batch, fetched before the answer starts
MORE = 5000  # rows of each later batch: fewer round trips and sends (~0.5-1 MB a chunk)
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
        self.ahead: asyncio.Future[list[asyncpg.Record]] | None = None  # the next batch
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
            ahead = self.ahead
            if ahead is not None:  # a fetch still in flight (the client left): stop it first
                ahead.cancel()
                await asyncio.wait({ahead})
                if not ahead.cancelled():
                    ahead.exception()  # retrieved: a failure here is not news
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
    renamed = dict(spec.result.fields)
    names = [renamed.get(n, n) for n, _ in ep.columns]
    deadline = time.monotonic() + streams.max_seconds
    cells = _Cells(spec.result.csv_escape_formulas)
    keys: list[str] = []  # each record's keys, renamed (read from the first record)

    def render(batch: list[asyncpg.Record]) -> bytes:
        if csv_mode:
            return cells.lines(batch)
        if not keys:
            keys.extend(renamed.get(k, k) for k in batch[0].keys())  # noqa: SIM118 (a Record)
        return ndjson_batch(keys, batch)

    async def fetch_more(limit_s: float) -> list[asyncpg.Record]:
        fetching = time.perf_counter()  # to its decoded rows: the write meanwhile counts too
        batch = await cursor.fetch(MORE, timeout=limit_s)
        record_statement(time.perf_counter() - fetching, ep.sql, args, more_of_the_last=True)
        return batch

    async def body() -> AsyncIterator[bytes]:
        try:
            if csv_mode:
                yield _csv_lines([names])
            batch = first
            while True:
                if export.ahead is not None:  # the fetch started before the last write
                    batch = await export.ahead
                    export.ahead = None
                last = len(batch) < (BATCH if batch is first else MORE)
                if last:  # read to the end: give back before the last write
                    await export.given_back()
                else:  # the next batch: the database works on it while this one is written
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(f"cut after {streams.max_seconds} s")
                    timeout = remaining if ep.timeout_s is None else min(ep.timeout_s, remaining)
                    export.ahead = asyncio.ensure_future(fetch_more(timeout))
                    await asyncio.sleep(0)  # its request leaves now
                if batch:
                    yield render(batch)
                if last:
                    return
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


def _same(value: Any) -> Any:
    return value  # an int: the csv writer's str() is its JSON text


def _iso(value: dt.date) -> str:
    return orjson.dumps(value)[1:-1].decode()  # orjson's ISO 8601, as the JSON answer


_SPECIAL_DECIMAL_TEXT = frozenset({"NaN", "sNaN", "-NaN", "-sNaN", "Infinity", "-Infinity", "-0"})
_NONE = type(None)
_NULL_EMPTY = {None: ""}.get  # map(_NULL_EMPTY, c, c): None as "", the rest as they are
_BOOL_TEXT = {True: "true", False: "false", None: ""}.__getitem__
_QUOTE_NEEDED = re.compile(r'[",\r\n]')  # what the csv writer quotes (QUOTE_MINIMAL, CRLF)


def _csv_lines(rows: Iterable[Sequence[Any]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode()


def _csv_decimal(value: Decimal) -> str:
    if not value.is_finite():
        return _csv_cell(value, False)
    text = format(value, "f")  # the JSON answer's digits (engine/shaping.py), -0 as 0
    return "0" if text == "-0" else text


def _decimal_texts(column: list[Any], nulls: bool) -> list[Any] | None:
    """``format(v, "f")`` of each value (None kept), or None when one needs the general
    rule (NaN, infinities, -0)."""
    if nulls:
        texts = [None if v is None else format(v, "f") for v in column]
    else:
        texts = list(map(format, column, repeat("f")))
    return None if not _SPECIAL_DECIMAL_TEXT.isdisjoint(texts) else texts


def _iso_texts(column: list[Any]) -> list[str] | None:
    """orjson's ISO 8601 text of each datetime or date, NULL as "", from one orjson call
    (its text holds no ``","`` and no ``null``), or None if that did not come out right."""
    texts = orjson.dumps(column).replace(b"null", b'""')[2:-2].decode().split('","')
    return texts if len(texts) == len(column) else None


def _quoted(column: list[str]) -> list[str]:
    """Each cell of a text column quoted as RFC 4180 (and the csv writer) says, if needed."""
    if not _QUOTE_NEEDED.search("".join(column)):
        return column
    search = _QUOTE_NEEDED.search
    return ['"' + v.replace('"', '""') + '"' if search(v) else v for v in column]


class _Cells:
    """A batch's CSV lines, column by column, by the rules of :func:`_csv_cell`.

    Each column is taken out of the batch (``itemgetter``) and, when its values are
    all of one common type (NULLs aside), turned into text by C-level calls over the
    whole column: ints by ``str``, timestamps and dates by one ``orjson.dumps`` of the
    column, numerics by ``format(v, "f")``; text is checked for formulas and for what
    needs quoting in one pass each. Any other column, or one holding a value the rule
    treats apart (NaN, a formula, PgText, a mix of types), goes value by value through
    the type table and :func:`_csv_cell`. The lines are then joined, so the csv
    writer's per-row call is gone too (a one-column export still uses it: a lone empty
    cell is quoted there).
    """

    def __init__(self, escape_formulas: bool) -> None:
        self.escape = escape_formulas

        def text(value: str) -> str:
            return "'" + value if value.startswith(_FORMULA_START) else value

        self.by_type: dict[type, Callable[[Any], str]] = {
            str: text if escape_formulas else _same,
            int: str,  # its JSON text
            bool: _BOOL_TEXT,
            _NONE: _BOOL_TEXT,  # ""
            dt.datetime: _iso,
            dt.date: _iso,
            Decimal: _csv_decimal,
        }

    def _other(self, value: Any) -> str:
        return _csv_cell(value, self.escape)

    def _by_value(self, column: list[Any]) -> list[str]:
        get, other = self.by_type.get, self._other
        return _quoted([(get(type(v)) or other)(v) for v in column])

    def _column(self, column: list[Any]) -> list[str]:
        kinds = set(map(type, column))
        nulls = _NONE in kinds
        kinds.discard(_NONE)
        if len(kinds) != 1:
            return [""] * len(column) if not kinds else self._by_value(column)
        (kind,) = kinds
        if kind is int:
            return list(map(str, map(_NULL_EMPTY, column, column) if nulls else column))
        if kind is str:
            # filter(None, ...) drops NULLs (and empty text, never a formula)
            if self.escape and any(
                map(str.startswith, filter(None, column), repeat(_FORMULA_START))
            ):
                return self._by_value(column)
            return _quoted(list(map(_NULL_EMPTY, column, column)) if nulls else column)
        if kind is bool:
            return list(map(_BOOL_TEXT, column))
        if kind is dt.datetime or kind is dt.date:
            texts = _iso_texts(column)
        elif kind is Decimal:
            texts = _decimal_texts(column, nulls)
            if texts is not None and nulls:
                texts = list(map(_NULL_EMPTY, texts, texts))
        else:
            texts = None
        return texts if texts is not None else self._by_value(column)

    def lines(self, batch: Sequence[asyncpg.Record]) -> bytes:
        """The CSV lines of ``batch`` (records, or any sequences of one length)."""
        width = len(batch[0])
        if width < 2:
            return self._lines_by_writer(batch)
        columns = [self._column(list(map(itemgetter(i), batch))) for i in range(width)]
        return ("\r\n".join(map(",".join, zip(*columns, strict=True))) + "\r\n").encode()

    def _lines_by_writer(self, batch: Sequence[asyncpg.Record]) -> bytes:
        get, other = self.by_type.get, self._other
        return _csv_lines([[(get(type(v)) or other)(v) for v in r] for r in batch])


# kinds whose JSON text never holds a comma: a column of them, encoded as one JSON
# array, splits at its commas into each value's text
_COMMALESS = frozenset({int, float, bool, _NONE, dt.datetime, dt.date})
_NULL_JSON = {None: "null"}.get


def _json_texts(column: list[Any]) -> list[bytes] | None:
    """Each value's JSON text (as :func:`engine.shaping.encode` writes it) from C-level
    calls over the whole column, or None when it cannot be had so (text with a comma,
    a numeric NaN, infinity or -0, any kind whose text may hold a comma, a mix)."""
    kinds = set(map(type, column))
    nulls = _NONE in kinds
    if kinds - {_NONE} == {Decimal}:  # its digits, as encode() writes them (a fragment)
        digits = _decimal_texts(column, nulls)
        if digits is None:
            return None
        if nulls:
            digits = list(map(_NULL_JSON, digits, digits))
        return ",".join(digits).encode().split(b",")
    if not kinds <= _COMMALESS and (
        not kinds <= {str, _NONE} or "," in "".join(filter(None, column))
    ):
        return None
    texts = encode(column)[1:-1].split(b",")
    return texts if len(texts) == len(column) else None


def ndjson_batch(keys: Sequence[str], batch: Sequence[asyncpg.Record]) -> bytes:
    """``b"".join(encode(dict(zip(keys, r))) + b"\n" for r in batch)``, byte for byte.

    Column by column where it can: each column's values' texts made by C-level calls
    over the whole column (:func:`_json_texts`: one orjson call split at its commas, a
    numeric's digits by ``format``), and the lines assembled from those and each
    key's constant ``,"key":`` by slice assignment and one join. A batch with a column
    that cannot be split (text holding a comma, jsonb, uuid, a mix) is written as
    dicts, in one orjson call (:func:`engine.shaping.ndjson_lines`).
    """
    width, count = len(keys), len(batch)
    columns = [list(map(itemgetter(i), batch)) for i in range(width)]
    stride = 2 * width + 1
    pieces: list[bytes] = [b"}\n"] * (stride * count)
    unique = len(set(keys)) == width  # else a dict keeps one of each (and so must this)
    for i, (key, column) in enumerate(zip(keys, columns, strict=True)):
        texts = _json_texts(column) if unique else None
        if texts is None:
            return ndjson_lines(list(map(dict, map(zip, repeat(keys), batch))))
        pieces[2 * i :: stride] = repeat((b"," if i else b"{") + encode(key) + b":", count)
        pieces[2 * i + 1 :: stride] = texts
    return b"".join(pieces)
