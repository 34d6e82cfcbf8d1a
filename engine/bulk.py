"""A bulk import: an NDJSON or CSV body streamed into a staging table, loaded in one
transaction (the request path of a row with ``bulk_import``; engine/endpoint.py hands
over after authentication, authorisation and the rate limit).

    body chunks -> records (engine/records.py: split, parse, schema, column types)
      -> COPY into ``bulk_records`` (a temporary table, ON COMMIT DROP) while they arrive
      -> the row's template, once, in the same transaction -> COMMIT -> counts

The body is never held whole: chunks are parsed as they arrive and the valid
records go straight into one ``COPY ... FROM STDIN`` (asyncpg's flow control
bounds what waits to be sent), so memory stays flat whatever the body's size; the
body is bounded by min(``bulk_import.max_body_bytes``, ``ENGINE_BULK_MAX_BODY_BYTES``)
(413), one record by 1 MiB. ``on_invalid: "reject"`` (the default): one invalid
record and nothing is written, 422 ``BULK_INVALID_RECORDS`` listing the first
``max_errors`` problems (reading stops there); ``"skip"``: the invalid records are
reported (the first ``max_errors`` problems, every one counted) and the others
written. The answer is 2xx exactly when the transaction committed; a database error
rolls everything back and is translated like any write's (engine/database.py).

Time and connections are bounded, so slow uploads cannot take the write pool: the
first chunk is read before a connection is taken; a pause between chunks longer than
``ENGINE_BULK_IDLE_S``, or a body not all arrived within ``ENGINE_STREAM_MAX_SECONDS``
(the bound a streamed export has too), ends the import with 408 ``REQUEST_TIMEOUT``,
nothing written and the connection given back. From the first chunk to the COMMIT the
import holds one write connection; all imports of a process together hold at most half
of the write pool (at least 1; more get 503 ``ENDPOINT_BUSY``), and a row's
``max_concurrent`` bounds its own imports further.
``Idempotency-Key`` works as for any write; the body's digest is taken as it
streams, so a replay is answered once the body has been read.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import asyncpg
from asyncpg.exceptions._base import InternalClientError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from engine.auth import Principal
from engine.binding import RequestSource, query_object
from engine.cache import ResponseCache
from engine.compiler import CompiledEndpoint
from engine.database import (
    Database,
    acquire,
    affected_rows,
    commit,
    drop_connection,
    recovering,
    release,
    rollback,
    translate,
)
from engine.errors import ApiError
from engine.idempotency import IDEMPOTENCY_HEADER, IdempotencyGuard, request_fingerprint
from engine.observe import record_statement
from engine.records import (
    MAX_RECORD_BYTES,
    STAGING_TABLE,
    BulkPlan,
    CsvSplitter,
    LineSplitter,
    Problem,
    TooLong,
    parse_csv,
)
from engine.recovery import EndpointGates
from engine.settings import Settings
from engine.shaping import Rendered, Shaped, encode

JSON = "application/json"
MEDIA_TYPES = {
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "text/csv": "csv",
}
FORMAT_MEDIA = {"ndjson": "application/x-ndjson", "csv": "text/csv"}
ANALYZE_FROM = 1000  # a staging table of this many records gets statistics before the template
_DRIVER_ERRORS = (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
ALL_IMPORTS = 0  # the gate (EndpointGates) every bulk row shares; no mapping row has id 0


class BulkServices(Protocol):
    """What an import needs of the app's services (engine/endpoint.py's Services)."""

    settings: Settings
    db: Database
    cache: ResponseCache
    gates: EndpointGates
    publish_invalidation: Callable[[Iterable[str]], None]


class _Body:
    """The request body's chunks, each within ``idle_s`` of the one before and all before
    the deadline (else ApiError REQUEST_TIMEOUT); the first may be read ahead (:meth:`prime`)."""

    def __init__(self, request: Request, idle_s: float, total_s: float) -> None:
        self._stream = request.stream()
        self._idle_s = idle_s
        self._total_s = total_s
        self._loop = asyncio.get_running_loop()
        self.deadline = self._loop.time() + total_s
        self._ahead: list[bytes | None] = []

    def remaining_s(self) -> float:
        return max(0.0, self.deadline - self._loop.time())

    async def prime(self) -> None:
        """Read the first chunk now (before a connection is taken), for :meth:`next`."""
        self._ahead.append(await self._read())

    async def next(self) -> bytes | None:
        """The next chunk; None at the end of the body."""
        if self._ahead:
            return self._ahead.pop()
        return await self._read()

    async def _read(self) -> bytes | None:
        remaining = self.remaining_s()
        wait = min(self._idle_s, remaining)
        try:
            async with asyncio.timeout(wait):
                return await anext(self._stream, None)
        except TimeoutError:
            if wait < self._idle_s:
                detail = (
                    f"The body had not all arrived within {self._total_s:g} s "
                    "(ENGINE_STREAM_MAX_SECONDS); nothing was written"
                )
            else:
                detail = (
                    f"The body paused for more than {self._idle_s:g} s between two chunks "
                    "(ENGINE_BULK_IDLE_S); nothing was written"
                )
            raise ApiError("REQUEST_TIMEOUT", detail) from None

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._stream.aclose()


@dataclass
class _Tally:
    """What the stream brought: counts, the problems listed, why it stopped early."""

    received: int = 0
    rejected: int = 0
    errors: list[Problem] = field(default_factory=list)
    stopped: BaseException | None = None  # PAYLOAD_TOO_LARGE, REQUEST_TIMEOUT, a departed client
    truncated: bool = False  # reject: reading stopped after max_errors problems
    digest: Any = field(default_factory=hashlib.sha256)


async def handle(
    services: BulkServices,
    known_codes: Any,
    ep: CompiledEndpoint,
    request: Request,
    path_params: Mapping[str, str],
    principal: Principal | None,
    headers: dict[str, str],
) -> Response:
    """Answer one bulk import (``ep.bulk`` is set); raises ApiError for the problem answer."""
    plan = ep.bulk
    assert plan is not None
    fmt = _format(request, plan)
    limit = services.settings.bulk_max_body_bytes
    if plan.spec.max_body_bytes is not None:
        limit = min(limit, plan.spec.max_body_bytes)
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise ApiError("PAYLOAD_TOO_LARGE", f"The body may be at most {limit} bytes")
    claims = principal.claims if principal is not None else None
    args = ep.binder.bind(
        RequestSource(path_params, request.query_params, request.headers, None, claims)
    )
    if ep.query_schema is not None:
        ep.query_schema.check(query_object(ep.spec.params, request.query_params, args))
    guard = _guard(services, ep, request, principal.identity if principal else None)
    request_id = headers.get("X-Request-ID", "")
    settings = services.settings
    body = _Body(request, settings.bulk_idle_s, settings.stream_max_seconds)
    try:
        await body.prime()  # a client that sends nothing holds no slot and no connection
        with _slots(services, ep):
            rendered = await _import(
                services, known_codes, ep, request, body, fmt, limit, args, guard, request_id
            )
    finally:
        await body.close()
    if ep.invalidates and not rendered.replayed:
        services.cache.invalidate(ep.invalidates)
        services.publish_invalidation(ep.invalidates)
    headers.update(rendered.headers)
    return Response(
        rendered.body, status_code=rendered.status_code, headers=headers, media_type=JSON
    )


@contextlib.contextmanager
def _slots(services: BulkServices, ep: CompiledEndpoint) -> Iterator[None]:
    """A place among the imports running now: all of them together at most half of the
    write pool (at least 1), so imports never take every write connection; the row's
    ``max_concurrent`` bounds its own. One more is answered 503 ENDPOINT_BUSY at once."""
    cap = max(1, services.db.write.get_max_size() // 2)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(services.gates.enter(ALL_IMPORTS, cap))
        except ApiError as busy:
            raise ApiError(
                "ENDPOINT_BUSY",
                f"{cap} bulk import(s) are running in this process, as many as it runs at "
                "once (half of the write pool); retry shortly",
                headers=busy.headers,
            ) from None
        stack.enter_context(services.gates.enter(ep.spec.id, ep.spec.max_concurrent))
        yield


def _format(request: Request, plan: BulkPlan) -> str:
    """ndjson or csv, from Content-Type (415 for anything this row does not take)."""
    value = request.headers.get("content-type", "")
    media, _, params = value.partition(";")
    fmt = MEDIA_TYPES.get(media.strip().lower())
    charset = next(
        (p.split("=", 1)[1].strip().strip('"').lower() for p in params.split(";") if "=" in p
         and p.split("=", 1)[0].strip().lower() == "charset"),
        "utf-8",
    )  # fmt: skip
    if fmt is None or fmt not in plan.spec.formats or charset not in ("utf-8", "utf8"):
        accepted = ", ".join(FORMAT_MEDIA[f] for f in plan.spec.formats)
        shown = media.strip()[:80] or "no Content-Type"
        raise ApiError(
            "UNSUPPORTED_MEDIA_TYPE",
            f"Send the records as {accepted} (UTF-8), not {shown}",
            headers={"Accept-Post": accepted},
        )
    return fmt


def _guard(
    services: BulkServices, ep: CompiledEndpoint, request: Request, identity: str | None
) -> IdempotencyGuard | None:
    """The Idempotency-Key guard, its fingerprint filled in once the body has been read."""
    header = request.headers.get(IDEMPOTENCY_HEADER)
    if header is None:
        return None
    if identity is None:
        raise ApiError(
            "INVALID_PARAMETER",
            "Idempotency-Key needs an authenticated caller (a bearer token or an API key)",
            errors=[{"parameter": "Idempotency-Key", "in": "header", "message": "needs auth"}],
        )
    return IdempotencyGuard.for_request(
        header,
        principal=identity,
        endpoint_id=ep.spec.id,
        fingerprint="",
        ttl_s=services.settings.idempotency_ttl_s,
    )


async def _records(
    body: _Body, plan: BulkPlan, fmt: str, limit: int, tally: _Tally
) -> AsyncIterator[tuple[Any, ...]]:
    """The valid records of the body, as they arrive; the rest is counted in ``tally``."""
    reader = plan.reader
    reject = plan.spec.on_invalid == "reject"
    max_errors = plan.spec.max_errors
    loading = True  # reject: the first invalid record ends the loading, not the reading
    size = 0
    line = 0
    header: tuple[str, ...] | None = None
    lines = LineSplitter() if fmt == "ndjson" else None
    records = CsvSplitter() if fmt == "csv" else None

    def refuse(problems: list[Problem]) -> bool:
        """Count an invalid record; True when reading should stop."""
        nonlocal loading
        tally.rejected += 1
        room = max_errors - len(tally.errors)
        if room > 0:
            tally.errors.extend(problems[:room])
        if reject:
            loading = False
            if len(tally.errors) >= max_errors:
                tally.truncated = True
                return True
        return False

    try:
        while True:
            try:
                chunk = await body.next()
            except (ClientDisconnect, ApiError) as exc:  # a departed client, REQUEST_TIMEOUT
                tally.stopped = exc
                return
            last = chunk is None
            if not last:
                size += len(chunk)
                if size > limit:
                    tally.stopped = ApiError(
                        "PAYLOAD_TOO_LARGE", f"The body may be at most {limit} bytes"
                    )
                    return
                tally.digest.update(chunk)
            try:
                if lines is not None:
                    batch = lines.end() if last else lines.feed(chunk)
                    for raw in batch:
                        line += 1
                        out = reader.from_json(raw, line)
                        if out is None:
                            continue
                        tally.received += 1
                        if type(out) is tuple:
                            if loading:
                                yield out
                        elif refuse(out):
                            return
                else:
                    assert records is not None
                    if last:
                        found, unclosed = records.end()
                    else:
                        found, unclosed = records.feed(chunk), None
                    for at, raw in found:
                        cells = parse_csv(at, raw)
                        if header is None:
                            if isinstance(cells, str):
                                raise ApiError("INVALID_BODY", f"The CSV header (line 1) {cells}")
                            if not cells:
                                continue
                            header = reader.csv_header(cells)
                            continue
                        out = (
                            [{"line": at, "pointer": "", "message": cells}]
                            if isinstance(cells, str)
                            else reader.from_csv(cells, at, header)
                        )
                        if out is None:
                            continue
                        tally.received += 1
                        if type(out) is tuple:
                            if loading:
                                yield out
                        elif refuse(out):
                            return
                    if unclosed is not None:
                        tally.received += 1
                        message = "has a quoted field that is never closed"
                        if refuse([{"line": unclosed, "pointer": "", "message": message}]):
                            return
            except TooLong as exc:
                tally.stopped = ApiError(
                    "PAYLOAD_TOO_LARGE",
                    f"A record may be at most {MAX_RECORD_BYTES} bytes (line {exc.args[0]})",
                )
                return
            except ApiError as error:  # the CSV header
                tally.stopped = error
                return
            if last:
                return
    finally:
        await body.close()


async def _import(
    services: BulkServices,
    known_codes: Any,
    ep: CompiledEndpoint,
    request: Request,
    body: _Body,
    fmt: str,
    limit: int,
    args: list[Any],
    guard: IdempotencyGuard | None,
    request_id: str,
) -> Rendered:
    """Stream, load and run the template in one transaction; the answer once committed."""
    spec = ep.spec
    plan = ep.bulk
    assert plan is not None
    pool = services.db.write
    operation = spec.operation

    async def attempt() -> Rendered:
        conn = await acquire(pool, services.settings.pool_timeout_s, operation, known_codes)
        started = time.perf_counter()
        tally = _Tally()
        try:
            tx = conn.transaction()
            try:
                await tx.start()
                await conn.execute(plan.ddl, timeout=ep.timeout_s)
                # the body's reading stops at its deadline; the database then has the
                # row's statement timeout to finish the COPY
                await conn.copy_records_to_table(
                    STAGING_TABLE,
                    records=_records(body, plan, fmt, limit, tally),
                    columns=plan.columns,
                    timeout=body.remaining_s() + max(ep.timeout_s or 0.0, 1.0),
                )
                if tally.stopped is not None:
                    raise tally.stopped
                if tally.rejected and spec.bulk is not None and spec.bulk.on_invalid == "reject":
                    raise _invalid(tally)
                rendered = None
                checked = guard
                if checked is not None:
                    checked = replace(checked, fingerprint=_fingerprint(request, tally, args))
                    rendered = await checked.before(conn)
                if rendered is not None:
                    await rollback(tx)
                    return rendered
                loaded = tally.received - tally.rejected
                if loaded >= ANALYZE_FROM:
                    await conn.execute(f"ANALYZE {STAGING_TABLE}", timeout=ep.timeout_s)
                rendered = await _run(conn, ep, args, tally, request_id)
                if checked is not None:
                    await checked.after(conn, rendered)
            except BaseException as exc:
                await rollback(tx)
                if isinstance(exc, InternalClientError):
                    drop_connection(conn)
                if isinstance(exc, (*_DRIVER_ERRORS, InternalClientError)):
                    raise translate(
                        exc, operation, known_codes, client_values=True, params=ep.param_names
                    ) from exc
                raise
            await commit(conn, tx, operation, known_codes)
            return rendered
        finally:
            record_statement(time.perf_counter() - started, plan.sql, args)
            await release(pool, conn)

    return await recovering(pool, services.db.recovery, False, attempt)


async def _run(
    conn: asyncpg.Connection, ep: CompiledEndpoint, args: list[Any], tally: _Tally, request_id: str
) -> Rendered:
    """The row's template over the staging table, and the encoded answer (before COMMIT)."""
    plan = ep.bulk
    assert plan is not None
    body: dict[str, Any] = {"received": tally.received}
    if ep.spec.result.shape == "scalar":
        rows = await conn.fetch(plan.sql, *args, timeout=ep.timeout_s)
        first = rows[0] if rows else None
        body["result"] = next(iter(first.values())) if first is not None and len(first) else None
    else:
        status = await conn.execute(plan.sql, *args, timeout=ep.timeout_s)
        body["inserted"] = affected_rows(status) or 0
    body["rejected"] = tally.rejected
    body["errors"] = tally.errors
    status_code = ep.spec.result.status or 200
    headers: dict[str, str] = {}
    envelope = ep.success
    payload: Any = body
    if envelope is not None:
        headers.update(envelope.headers)
        shaped = Shaped(body, status_code)
        payload = envelope.wrap(shaped, request_id=request_id, endpoint=ep.spec.label)
    return Rendered(encode(payload), status_code, headers, False)


def _invalid(tally: _Tally) -> ApiError:
    more = (
        f"; reading stopped after the first {len(tally.errors)} problem(s) (max_errors)"
        if tally.truncated
        else ""
    )
    return ApiError(
        "BULK_INVALID_RECORDS",
        f"{tally.rejected} of {tally.received} record(s) read are invalid, so nothing was "
        f"written{more}",
        errors=tally.errors,
    )


def _fingerprint(request: Request, tally: _Tally, args: list[Any]) -> str:
    return request_fingerprint(
        request.method,
        request.url.path,
        request.url.query,
        tally.digest.digest(),
        encode(args),
    )
