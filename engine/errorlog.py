"""Writing every error answer through ``log_api_error()``, off the request path.

The request handler only puts an entry on a bounded queue; a background task
drains it in batches. A full queue drops entries (counted), and a failure to
write never reaches a client. Secret headers and secret-looking body fields are
removed before anything is queued.

No entry is lost to its content: text PostgreSQL cannot hold (NUL, lone
surrogates, undecodable bytes) is escaped in every field before it is sent, and
an entry the database still refuses is retried alone so the rest of its batch
is written. An entry that cannot be written at all (the database is down) is
reported to the Python log, masked as it was queued, and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

log = logging.getLogger("engine.errorlog")

SECRET_HEADERS = frozenset(
    {"authorization", "x-api-key", "cookie", "set-cookie", "proxy-authorization", "x-auth-token"}
)
_SECRET_FIELD = re.compile(r"pass(word)?|secret|token|api[_-]?key|credential", re.IGNORECASE)
MAX_BODY_CHARS = 4096
BATCH = 100
# Failures caused by one entry's content (a value out of range, text the server refuses),
# as opposed to the database being out of reach.
# asyncpg.DataError is SQLSTATE class 22; a value the driver cannot encode is a ValueError
_ENTRY_ERRORS = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    ValueError,
    TypeError,
)

LOG_SQL = """
SELECT log_api_error(
    $1::varchar, $2::varchar, $3::varchar, $4::varchar, $5::text, $6::text, $7::text,
    NULL::integer, $8::varchar, $9::text, $10::varchar, $11::jsonb, $12::jsonb,
    $13::integer, $14::integer, $15::text)
"""


@dataclass(frozen=True)
class ErrorEntry:
    request_id: str
    path: str
    method: str
    code: str
    message: str
    status: int
    elapsed_ms: int
    category: str | None = None
    stack: str | None = None
    body: str | None = None
    headers: Mapping[str, str] | None = None
    params: Mapping[str, Any] | None = None
    operation: str | None = None
    database_error: str | None = None
    principal: str | None = None

    def args(self) -> tuple[Any, ...]:
        """The arguments of ``LOG_SQL``, every text escaped to what PostgreSQL can store."""
        return (
            storable(self.request_id)[:100],
            storable(self.path)[:200],
            storable(self.method)[:10],
            storable(self.code),
            storable(self.message),
            storable(self.stack),
            storable(self.body),
            storable(self.operation),
            storable(self.database_error),
            storable(self.category),
            storable(dict(self.headers)) if self.headers is not None else None,
            storable(dict(self.params)) if self.params is not None else None,
            self.status,
            self.elapsed_ms,
            storable(self.principal),
        )

    def report(self) -> str:
        """The entry as one JSON line, for the Python log when the database cannot take it."""
        fields = dict(zip(_REPORT_FIELDS, self.args(), strict=True))
        return orjson.dumps(fields, default=str).decode()


_REPORT_FIELDS = (
    "request_id",
    "path",
    "method",
    "code",
    "message",
    "stack",
    "body",
    "operation",
    "database_error",
    "category",
    "headers",
    "params",
    "status",
    "elapsed_ms",
    "principal",
)


def _storable_text(text: str) -> str:
    if text.isascii():
        return text.replace("\x00", "\\x00") if "\x00" in text else text
    try:
        text.encode()
    except UnicodeEncodeError:  # lone surrogates (from surrogateescape, or a JSON \ud800)
        text = text.encode("utf-8", "backslashreplace").decode()
    return text.replace("\x00", "\\x00") if "\x00" in text else text


def storable(value: Any) -> Any:
    """``value`` with every string (dict keys too) holding only what PostgreSQL text can.

    NUL becomes the four characters ``\\x00`` and a lone surrogate its ``\\udXXX``
    escape; bytes are decoded as UTF-8 with the same escapes. Anything else is unchanged.
    """
    if isinstance(value, str):
        return _storable_text(value)
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return _storable_text(bytes(value).decode("utf-8", "backslashreplace"))
    return value


def safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in SECRET_HEADERS}


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: ("***" if isinstance(k, str) and _SECRET_FIELD.search(k) else _scrub(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def safe_body(body: Any, raw: bytes | None) -> str | None:
    """The request body as logged: parsed JSON with secret fields masked, truncated.

    A body that could not be parsed is never logged as it came (it may be a form
    with a password in it): only its size is.
    """
    if body is not None:
        try:
            text = orjson.dumps(_scrub(body), default=str).decode()
        except (orjson.JSONEncodeError, RecursionError):  # nested deeper than orjson writes
            return f"<{len(raw or b'')} bytes, not logged: nested too deep>"
    elif raw:
        return f"<{len(raw)} bytes, not logged: not a JSON document>"
    else:
        return None
    return text if len(text) <= MAX_BODY_CHARS else text[:MAX_BODY_CHARS] + "…"


def safe_query(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Query parameters as logged, secret-looking ones masked (repeated keys become lists)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        masked = "***" if _SECRET_FIELD.search(key) else value
        if key in out:
            previous = out[key]
            out[key] = [*previous, masked] if isinstance(previous, list) else [previous, masked]
        else:
            out[key] = masked
    return out


class ErrorLogger:
    """A bounded queue of error entries and the task that writes them."""

    def __init__(self, pool: asyncpg.Pool, max_queue: int = 10000) -> None:
        self._pool = pool
        self._queue: asyncio.Queue[ErrorEntry] = asyncio.Queue(maxsize=max_queue)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.written = 0
        self.failed = 0

    def submit(self, entry: ErrorEntry) -> None:
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            self.dropped += 1

    @property
    def queued(self) -> int:
        """Entries waiting to be written."""
        return self._queue.qsize()

    def start(self) -> None:
        self._task = asyncio.create_task(self._drain(), name="error-logger")

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Write what is queued (up to ``timeout_s``), then stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout_s)
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def flush(self, timeout_s: float = 5.0) -> None:
        await asyncio.wait_for(self._queue.join(), timeout_s)

    async def _drain(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: list[ErrorEntry]) -> None:
        pending = list(batch)
        try:
            async with self._pool.acquire(timeout=10) as conn:
                try:
                    # atomic: when it fails, nothing of the batch was written
                    await conn.executemany(LOG_SQL, [e.args() for e in pending])
                    self.written += len(pending)
                    return
                except _ENTRY_ERRORS:
                    if len(pending) == 1:
                        raise
                # one entry's content was refused: each alone, so it takes no other with it
                while pending:
                    try:
                        await conn.fetchval(LOG_SQL, *pending[0].args())
                        self.written += 1
                    except _ENTRY_ERRORS as exc:
                        self._lost([pending[0]], exc)
                    pending.pop(0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is out of reach: say what is lost
            self._lost(pending, exc)

    def _lost(self, entries: list[ErrorEntry], exc: Exception) -> None:
        self.failed += len(entries)
        log.warning("could not write %d error log entr(y/ies): %s", len(entries), exc)
        for e in entries:
            log.warning("error log entry not written: %s", e.report())
