"""Writing error answers through ``log_api_error()``, off the request path, bounded.

The request handler only puts an entry on a bounded queue; a background task
drains it in batches. A full queue drops entries (counted), and a failure to
write never reaches a client. Secret headers and secret-looking body fields are
removed before anything is queued.

Answers anyone can send at any rate (401, 404 for a path no row publishes, 405,
429) are not written one row each: at most ``sample`` of each code a minute are
written as they came, the rest are counted by code and endpoint and written as
one summary row per code and minute (its ``request_params`` say how many, and
for which endpoints); every one of them is counted for the metrics
(:attr:`ErrorLogger.client_errors`). :class:`UnknownPathLimit` caps the 404s
for unknown paths one client address gets a minute, in memory.

No entry is lost to its content: text PostgreSQL cannot hold (NUL, lone
surrogates, undecodable bytes) is escaped in every field before it is sent, and
an entry the database still refuses is retried alone so the rest of its batch
is written. An entry that cannot be written at all (the database is down) is
reported to the Python log, masked as it was queued, and counted.

Matching the stored ``database_error_patterns`` is not done per row any more:
:func:`pattern_job` runs ``scan_error_patterns()`` (sql/017) once a minute over
the rows logged since, against their database errors only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from cachetools import TTLCache

from engine.jobs import Periodic
from engine.settings import Settings
from engine.sharedrate import SharedCounters

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

# answers anyone can send as fast as they like: sampled and counted, not one row each
COUNTED_STATUSES = frozenset({401, 405, 429})
UNKNOWN_PATH_CODE = "ROUTE_NOT_FOUND"  # only a path no row publishes answers it
UNMATCHED = "(unmatched)"  # the route of a path no row publishes (as in engine.metrics)
SUMMARY_PATH = "(summary)"  # endpoint_path of a summary row
OTHER = "(other)"  # where tallies go once MAX_TALLIES keys are held
MAX_TALLIES = 1000  # (code, route, method) keys counted, per window and in total
TOP_ENDPOINTS = 10  # endpoints named in a summary row; the rest are one sum
WINDOW_S = 60
# any method token may arrive: others are counted as "other" (as in engine.metrics)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
PATTERN_SCAN_INTERVAL_S = 60.0
PATTERN_SCAN_SQL = "SELECT scan_error_patterns()"

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
    # the route template the request matched (bounded, unlike the path): what the
    # sampled answers are counted by; None when no row publishes the path
    route: str | None = None

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


def counted(entry: ErrorEntry) -> bool:
    """Whether ``entry`` is an answer that is sampled and counted rather than logged each."""
    return entry.status in COUNTED_STATUSES or entry.code == UNKNOWN_PATH_CODE


@dataclass
class _Tally:
    """The answers of one code counted, not logged, since the last summary."""

    status: int
    category: str | None
    since: float
    count: int = 0
    by_endpoint: dict[str, int] = field(default_factory=dict)


def _bounded_add(counts: dict[Any, int], key: Any, other: Any) -> None:
    """``counts[key] += 1``, the key folded into ``other`` once MAX_TALLIES keys are held."""
    if key not in counts and len(counts) >= MAX_TALLIES:
        key = other
    counts[key] = counts.get(key, 0) + 1


def _stamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class ErrorLogger:
    """A bounded queue of error entries, the task that writes them, and the sampling.

    ``sample``: the 401, 404 (unknown path), 405 and 429 answers of one code
    written one by one per minute (ENGINE_ERROR_LOG_SAMPLE); ``unknown_path_limit``:
    the unknown paths one client address may ask for a minute (0: no limit).
    """

    name = "error-logger"

    def __init__(
        self,
        pool: asyncpg.Pool,
        max_queue: int = 10000,
        *,
        sample: int = Settings.error_log_sample,
        unknown_path_limit: int = Settings.unknown_path_limit_per_minute,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._pool = pool
        self._queue: asyncio.Queue[ErrorEntry] = asyncio.Queue(maxsize=max_queue)
        self._task: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.sample = max(0, sample)
        self.unknown_paths = UnknownPathLimit(unknown_path_limit)
        self._clock = clock
        self._minute: int | None = None
        self._sampled: dict[str, int] = {}  # code -> written one by one this minute
        self._tallies: dict[str, _Tally] = {}  # code -> counted, not written, since the summary
        # (code, route, method) -> every such answer since start, logged or not (the metrics)
        self.client_errors: dict[tuple[str, str, str], int] = {}
        self.dropped = 0
        self.written = 0
        self.failed = 0
        self.summarized = 0  # answers counted in summary rows instead of written one by one

    def submit(self, entry: ErrorEntry) -> None:
        if counted(entry) and not self._sampled_in(entry):
            return
        self._put(entry)

    def _put(self, entry: ErrorEntry) -> None:
        try:
            self._queue.put_nowait(entry)
        except asyncio.QueueFull:
            self.dropped += 1

    def _sampled_in(self, entry: ErrorEntry) -> bool:
        """Count a sampled kind of answer; whether it is one of this minute's written ones."""
        now = self._clock()
        self._roll(now)
        method = entry.method if entry.method in METHODS else "other"
        route = entry.route or UNMATCHED
        _bounded_add(self.client_errors, (entry.code, route, method), (entry.code, OTHER, method))
        written = self._sampled.get(entry.code, 0)
        if written < self.sample:
            self._sampled[entry.code] = written + 1
            return True
        tally = self._tallies.get(entry.code)
        if tally is None:
            if len(self._tallies) >= MAX_TALLIES:  # codes are rows, yet bounded here too
                return False
            tally = self._tallies[entry.code] = _Tally(entry.status, entry.category, now)
        tally.count += 1
        _bounded_add(tally.by_endpoint, f"{method} {route}", OTHER)
        return False

    def _roll(self, now: float) -> None:
        """At a new minute: summarize the last one's counts; the sample starts again."""
        minute = int(now // WINDOW_S)
        if minute != self._minute:
            if self._minute is not None:  # the rows cover up to the minute's end
                self.summarize(min(now, (self._minute + 1) * WINDOW_S))
            self._minute = minute
            self._sampled.clear()

    def summarize(self, now: float | None = None) -> int:
        """Queue one summary row per code counted since the last one; the rows queued.

        Done at each new minute (by the next sampled answer or the ticker, whichever
        comes first) and at stop, so every counted answer is in some row.
        """
        now = self._clock() if now is None else now
        tallies, self._tallies = self._tallies, {}
        for code, tally in tallies.items():
            self.summarized += tally.count
            self._put(self._summary(code, tally, now))
        return len(tallies)

    def _summary(self, code: str, tally: _Tally, now: float) -> ErrorEntry:
        ranked = sorted(tally.by_endpoint.items(), key=lambda kv: (-kv[1], kv[0]))
        top = dict(ranked[:TOP_ENDPOINTS])
        since, until = _stamp(tally.since), _stamp(now)
        return ErrorEntry(
            request_id=f"summary:{code}:{since}",
            path=SUMMARY_PATH,
            method="*",
            code=code,
            message=(
                f"{tally.count:,} more {code} answers from {since} to {until} were counted, "
                f"not logged (at most {self.sample} a minute are logged one by one)"
            ),
            status=tally.status,
            elapsed_ms=0,
            category=tally.category,
            params={
                "counted": tally.count,
                "from": since,
                "to": until,
                "sample_per_minute": self.sample,
                "by_endpoint": top,
                "other_endpoints": sum(n for _, n in ranked[TOP_ENDPOINTS:]),
            },
        )

    @property
    def queued(self) -> int:
        """Entries waiting to be written."""
        return self._queue.qsize()

    def start(self) -> None:
        self._task = asyncio.create_task(self._drain(), name="error-logger")
        self._ticker = asyncio.create_task(self._tick(), name="error-logger-summaries")

    async def _tick(self) -> None:
        """Close each minute on time, even when no sampled answer arrives to do it."""
        while True:
            now = self._clock()
            await asyncio.sleep(WINDOW_S - now % WINDOW_S + 0.01)
            self._roll(self._clock())

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Summarize what was counted, write what is queued (up to ``timeout_s``), then stop."""
        if self._ticker:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self.summarize()
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


class UnknownPathLimit:
    """At most ``per_minute`` unknown paths per client address and minute, in memory.

    A fixed window per address, starting at its first unknown path; no database
    round trip, so a flood of 404s costs neither a connection nor a row. The
    windows are held in a TTL cache of at most ``max_clients`` addresses (the
    least recently seen go first), and an IPv6 address counts as its /64, which
    one client usually holds whole. ``per_minute`` <= 0: no limit. Under ``serve
    --workers N`` the workers count in their shared table instead (``shared``, a
    sliding window: engine/sharedrate.py), so the limit holds for the server.
    """

    def __init__(
        self,
        per_minute: int,
        *,
        max_clients: int = 65536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._windows: TTLCache[str, tuple[float, int]] = TTLCache(
            maxsize=max_clients, ttl=WINDOW_S, timer=clock
        )
        self.refused = 0
        # the workers of `serve --workers N`: counted in their shared table (a sliding window)
        self.shared: SharedCounters | None = None

    def hit(self, address: str) -> int | None:
        """Count one unknown path of ``address``: None within the limit, else the seconds
        until its window ends (for ``Retry-After``)."""
        if self.per_minute <= 0:
            return None
        key = _client_key(address)
        if self.shared is not None:
            try:
                counted = self.shared.hit(f"unknown/{key}", self.per_minute)
            except OSError:  # the file went away: not limited, as a counter outage
                return None
            if counted.allowed:
                return None
            self.refused += 1
            return counted.reset_s
        now = self._clock()
        start, count = self._windows.get(key, (now, 0))
        if now - start >= WINDOW_S:
            start, count = now, 0
        self._windows[key] = (start, count + 1)
        if count < self.per_minute:
            return None
        self.refused += 1
        return max(1, math.ceil(start + WINDOW_S - now))


def _client_key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # not an address (a unix socket's peer...): counted as it is
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def pattern_job(pool: asyncpg.Pool, interval_s: float = PATTERN_SCAN_INTERVAL_S) -> Periodic:
    """Every minute, ``scan_error_patterns()``: the stored database error patterns matched
    against the database errors logged since the last scan (sql/017), raising alerts."""

    async def scan() -> None:
        async with pool.acquire(timeout=10) as conn:
            raised = await conn.fetchval(PATTERN_SCAN_SQL)
        if raised:
            log.warning("%d database error pattern alert(s) raised (see system_alerts)", raised)

    return Periodic("error-patterns", interval_s, scan)
