"""The access log: one JSON line per catalogue request on stdout, written in batches.

:class:`AccessLog` is a request observer (``engine.observe``): for each answered
request it keeps the exchange and the time; no :mod:`logging` machinery and no
system call per request. The lines are rendered (one small JSON object each, by
orjson) a batch at a time, when about ``flush_bytes`` (64 KB) of them wait, on a
short timer armed when the first waits (0.25 s), and when the job stops::

    {"ts":"2025-01-31T12:00:00.123Z","level":"info","msg":"request","request_id":"3f2a...-1c",
     "method":"GET","route":"/api/v1/cameras/{id}","path":"/api/v1/cameras/7","status":200,
     "duration_ms":1.942,"db_ms":0.811,"cache":"MISS","subject":"key:dashboard"}

``route`` is the row's path template (null for a path no row serves), ``cache``
is HIT or MISS on a cacheable read (else null), ``subject`` the caller's token
``sub`` or ``key:<name>`` (null when anonymous), and ``"abandoned": true`` is
added only when the client left before the answer was sent whole.

Never a credential: no header is logged, and the path is logged without its
query string (a query can carry ``?api_key=...``).

A slow reader of stdout (a full pipe) never blocks the event loop: batches are
handed to a writer thread of the log's own, which does the blocking writes. At
most ``max_pending_bytes`` wait for it; a batch beyond that is dropped and its
lines counted in ``dropped``, so memory stays bounded. When stdout is a pipe or
a socket, writes are cut at line ends into pieces of at most ``PIPE_BUF`` bytes,
which the kernel keeps whole, so the lines of several processes sharing one
pipe never interleave mid-line.

Requests to the engine's own paths (``/_engine/*``, ``/metrics``,
``/openapi.json``, ``/docs``) do not go through the catalogue's dispatcher and
are not logged: health probes and scrapes would otherwise be most of the log.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import select
import stat
import threading
import time
from collections.abc import Iterator

from engine.logs import Stamp, json_line
from engine.observe import Exchange

log = logging.getLogger("engine.accesslog")

FLUSH_BYTES = 64 * 1024
LINE_BYTES = 256  # about one line: a batch is rendered every flush_bytes / LINE_BYTES lines
FLUSH_INTERVAL_S = 0.25
MAX_PENDING_BYTES = 4 * 1024 * 1024
MAX_PATH_CHARS = 1024  # a path no row serves is the client's: cut, so a line stays small
MAX_SUBJECT_CHARS = 256
STOP_TIMEOUT_S = 5.0
PIPE_BUF = getattr(select, "PIPE_BUF", 512)  # POSIX guarantees at least 512
SETTING_VALUES = {"on": True, "off": False}


def enabled(value: str) -> bool:
    """ENGINE_ACCESS_LOG as a bool; ValueError for anything but on or off."""
    try:
        return SETTING_VALUES[value.strip().lower()]
    except KeyError:
        raise ValueError(f"ENGINE_ACCESS_LOG={value!r}: expected on or off") from None


def render(exchange: Exchange, ts: str) -> bytes:
    """The access-log line of one request (with its newline)."""
    subject = exchange.subject
    entry = {
        "ts": ts,
        "level": "info",
        "msg": "request",
        "request_id": exchange.request_id,
        "method": exchange.method,
        "route": exchange.route,
        "path": exchange.path[:MAX_PATH_CHARS],
        "status": exchange.status,
        # milliseconds to three places, as round(x * 1000, 3) gives them for a duration
        # (never negative), without round's correctly rounded decimal conversion
        "duration_ms": int(exchange.duration_s * 1_000_000 + 0.5) / 1000,
        "db_ms": int(exchange.db_s * 1_000_000 + 0.5) / 1000,
        "cache": exchange.cache,
        "subject": subject[:MAX_SUBJECT_CHARS] if subject is not None else None,
    }
    if exchange.abandoned:
        entry["abandoned"] = True
    return json_line(entry)


def pieces(chunk: bytes, limit: int) -> Iterator[memoryview]:
    """``chunk`` cut at line ends into pieces of at most ``limit`` bytes (a longer line alone)."""
    view = memoryview(chunk)
    start, size = 0, len(chunk)
    while start < size:
        if size - start <= limit:
            end = size
        else:
            cut = chunk.rfind(b"\n", start, start + limit)
            end = cut + 1 if cut >= start else (chunk.find(b"\n", start + limit) + 1 or size)
        yield view[start:end]
        start = end


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        try:
            written = os.write(fd, data)
        except BlockingIOError:  # someone made the descriptor non-blocking: wait for room
            select.select([], [fd], [], 0.1)
            continue
        data = data[written:]


class _Writer:
    """A thread writing the batches it is handed to ``fd``, in order, with blocking writes."""

    def __init__(self, fd: int, max_pending_bytes: int) -> None:
        self.fd = fd
        self.max_pending_bytes = max_pending_bytes
        self.pending_bytes = 0
        self.lost = 0  # lines whose write failed (stdout closed...)
        self._batches: collections.deque[tuple[bytes | bytearray, int]] = collections.deque()
        self._ready = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        try:
            mode = os.fstat(fd).st_mode
            shared = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
        except OSError:
            shared = False
        self._piece = PIPE_BUF if shared else 1 << 30

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="engine-access-log", daemon=True)
            self._thread.start()

    def put(self, batch: bytes | bytearray, lines: int) -> bool:
        """Queue a batch; False (not queued) when closed or when too much is waiting."""
        with self._ready:
            if self._closing or self.pending_bytes + len(batch) > self.max_pending_bytes:
                return False
            self._batches.append((batch, lines))
            self.pending_bytes += len(batch)
            self._ready.notify()
        return True

    def close(self, timeout_s: float) -> bool:
        """Write what is queued and end the thread; False if it is still stuck after the timeout."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        if self._thread is None:
            self._drain()  # never started: write here (the caller is off the event loop)
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _next(self) -> tuple[bytes | bytearray, int] | None:
        with self._ready:
            while not self._batches and not self._closing:
                self._ready.wait()
            return self._batches.popleft() if self._batches else None

    def _run(self) -> None:
        while (item := self._next()) is not None:
            self._write(*item)

    def _drain(self) -> None:
        while self._batches:
            self._write(*self._batches.popleft())

    def _write(self, batch: bytes | bytearray, lines: int) -> None:
        try:
            for piece in pieces(batch, self._piece):
                _write_all(self.fd, piece)
        except OSError as exc:  # stdout closed or broken: these lines are lost, and counted
            if not self.lost:
                log.warning("access log: cannot write to stdout (%s); lines are dropped", exc)
            self.lost += lines
        finally:
            with self._ready:
                self.pending_bytes -= len(batch)


class AccessLog:
    """Request observer and job: buffers one line per request, flushes in batches."""

    name = "access log"

    def __init__(
        self,
        fd: int = 1,
        *,
        flush_bytes: int = FLUSH_BYTES,
        interval_s: float = FLUSH_INTERVAL_S,
        max_pending_bytes: int = MAX_PENDING_BYTES,
    ) -> None:
        self.flush_bytes = flush_bytes
        self.interval_s = interval_s
        self.lines = 0  # requests logged
        self.dropped = 0  # lines dropped because the writer was too far behind (or stopped)
        # exchanges answered, with their wall-clock time, waiting to be rendered (bounded:
        # about flush_bytes of lines; an exchange is not changed once its answer is sent)
        self._requests: list[tuple[Exchange, float]] = []
        self._flush_lines = max(1, flush_bytes // LINE_BYTES)
        self._stamp = Stamp()
        self._writer = _Writer(fd, max_pending_bytes)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def lost(self) -> int:
        """Lines whose write to stdout failed."""
        return self._writer.lost

    def __call__(self, exchange: Exchange) -> None:
        # the line is rendered with the batch: a loop over a batch of lines costs less than
        # a line rendered amid each request's work (measured in process on a primary-key
        # read: 6.4 us a request for the observer, 3.1 us less rendered by batch)
        self._requests.append((exchange, time.time()))
        self.lines += 1
        if len(self._requests) >= self._flush_lines:
            self.flush()
        elif self._timer is None and self._loop is not None:
            self._timer = self._loop.call_later(self.interval_s, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        """Render the waiting lines and hand them to the writer thread (never waits for the
        write)."""
        requests = self._requests
        if not requests:
            return
        self._requests = []
        stamp = self._stamp
        batch = bytearray()
        for exchange, now in requests:
            try:
                batch += render(exchange, stamp(now))
            except Exception:  # a bug of ours: that line is lost, never the batch
                log.exception("access log: a line could not be rendered")
        if not self._writer.put(batch, len(requests)):
            if not self.dropped:  # said once; the total is logged at stop
                log.warning("access log: stdout is not keeping up; lines are dropped and counted")
            self.dropped += len(requests)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._writer.start()

    async def stop(self) -> None:
        """Flush, then wait (off the event loop, a few seconds at most) for the writes."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._loop = None
        self.flush()
        finished = await asyncio.to_thread(self._writer.close, STOP_TIMEOUT_S)
        if not finished:
            log.warning("access log: stdout is not being read; the last lines may be lost")
        if self.dropped or self.lost:
            log.warning(
                "access log: %d line(s) dropped (stdout too slow), %d lost (write failed)",
                self.dropped,
                self.lost,
            )


class Off:
    """ENGINE_ACCESS_LOG=off: an observer and job that do nothing."""

    name = "access log (off)"
    lines = dropped = lost = 0

    def __call__(self, exchange: Exchange) -> None:
        pass

    def flush(self) -> None:
        pass

    def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


def create(setting: str, fd: int = 1) -> AccessLog | Off:
    """The access log ENGINE_ACCESS_LOG asks for: writing to ``fd``, or one that does nothing."""
    return AccessLog(fd) if enabled(setting) else Off()
