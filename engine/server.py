"""The HTTP server: uvicorn, with what a server facing the internet must bound.

uvicorn alone keeps a connection whose request head arrives a byte at a time open
for ever (its keep-alive timer stops at the first byte), accepts connections until
the process runs out of file descriptors, and on SIGTERM has no deadline but the
statement timeout. :class:`EngineServer` is a ``uvicorn.Server`` whose HTTP
protocol (the engine's own over httptools, engine/http1.py, or uvicorn's h11 one
with the same limits when httptools is not installed: :func:`protocol_class`) adds:

- **Header timeout** (``ENGINE_HEADER_TIMEOUT_S``): a connection that has not sent a
  complete request head that long after it opened, or after its previous answer
  finished, is closed. The timer stops while a request runs: a slow statement has
  its own timeout.
- **Connection cap** (``ENGINE_MAX_CONNECTIONS``): up to the cap, connections are
  served as usual. The next :data:`RESERVE_CONNECTIONS` are the operator's reserve:
  they serve only :data:`RESERVED_PATHS` (``/health/live``, ``/health/ready``) and
  answer anything else 503 ``TOO_MANY_CONNECTIONS`` with ``Retry-After`` and
  ``Connection: close``. Beyond the reserve a connection is answered that 503 at once,
  without reading it, and closed. A connection keeps the class it had when it opened.
- **Open-file limit**: at start the soft ``RLIMIT_NOFILE`` is raised to the hard one and
  logged in one line; a warning says when the cap, the reserve and the database
  connections cannot fit under it.
- **Drain** (``ENGINE_SHUTDOWN_GRACE_S``): on SIGTERM or SIGINT ``app.state.draining``
  turns true at once (``/health/ready`` answers 503 ``draining``), the listening
  sockets close, requests in flight run until the grace is over. A connection open but
  idle meanwhile may send one more request, answered with ``Connection: close``. Then
  what still runs is cancelled (asyncpg cancels its statement on the server) and
  answered 503 ``SHUTTING_DOWN`` (``COMMIT_OUTCOME_UNKNOWN`` for a write: it may have
  committed) if its answer had not started, the idle connections are closed, the
  lifespan closes the pools, and the process exits 0 (uvicorn would re-raise the signal
  and die by it).

The 503s are ``application/problem+json`` like every other error of the engine, worded
by the catalogue's ``api_error_codes`` row when there is one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from http import HTTPStatus
from types import FrameType
from typing import Any

import uvicorn
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from engine.database import RETRY_AFTER_S
from engine.errors import (
    PROBLEM_CONTENT_TYPE,
    ApiError,
    ErrorCatalog,
    ErrorCode,
    parse_accept_language,
    problem_body,
)
from engine.observe import request_id_of
from engine.settings import Settings
from engine.shaping import encode

try:
    import httptools  # noqa: F401  (engine/http1.py's parser)

    HAVE_HTTPTOOLS = True
except ImportError:  # pragma: no cover (httptools is optional: uvicorn falls back to h11)
    HAVE_HTTPTOOLS = False

log = logging.getLogger("engine.server")

RESERVE_CONNECTIONS = 16
RESERVED_PATHS = frozenset({"/health/live", "/health/ready"})
DEDICATED_CONNECTIONS = 8  # listener, probe, pool figures, slow-query plans, and room
PROCESS_FILES = 64  # stdio, the event loop's own, the listening socket, logs, imports
CANCEL_WAIT_S = 5.0  # a cancelled request's statement cancel takes a round trip
CAP_LOG_EVERY_S = 60.0

# the codes this module answers with, and their wording when the catalogue lacks the row
TOO_MANY_CONNECTIONS = "TOO_MANY_CONNECTIONS"
SHUTTING_DOWN = "SHUTTING_DOWN"
COMMIT_OUTCOME_UNKNOWN = "COMMIT_OUTCOME_UNKNOWN"
MALFORMED_REQUEST = "MALFORMED_REQUEST"
FALLBACK_CODES = {
    MALFORMED_REQUEST: (400, "The request could not be read as HTTP/1.1"),
    TOO_MANY_CONNECTIONS: (503, "Too many open connections; retry shortly"),
    SHUTTING_DOWN: (503, "The server is shutting down; retry"),
}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Limits:
    header_timeout_s: float
    max_connections: int
    shutdown_grace_s: float
    reserve: int = RESERVE_CONNECTIONS
    database_connections: int = 0  # what the process opens to PostgreSQL, for the file budget

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        pools = 2 * settings.pool_max_size  # the read and the write pool
        return cls(
            header_timeout_s=settings.header_timeout_s,
            max_connections=settings.max_connections,
            shutdown_grace_s=settings.shutdown_grace_s,
            database_connections=pools + DEDICATED_CONNECTIONS,
        )

    @property
    def files_needed(self) -> int:
        return self.max_connections + self.reserve + self.database_connections + PROCESS_FILES


class EngineState(ServerState):
    """uvicorn's state shared by every connection, plus the limits and their counters."""

    def __init__(self, limits: Limits) -> None:
        super().__init__()
        self.limits = limits
        self.draining = False
        self.cancelling = False  # the grace is over: request tasks are being cancelled
        self.head_timeouts = 0
        self.reserve_served = 0
        self.refused = 0
        self._cap_logged_at = -CAP_LOG_EVERY_S

    def cap_reached(self, what: str) -> None:
        """Say so in the log, at most once a minute (a flood must not flood the log)."""
        now = time.monotonic()
        if now - self._cap_logged_at >= CAP_LOG_EVERY_S:
            self._cap_logged_at = now
            log.warning(
                "ENGINE_MAX_CONNECTIONS=%d reached (%d open): %s; so far %d answered from "
                "the reserve, %d refused",
                self.limits.max_connections,
                len(self.connections),
                what,
                self.reserve_served,
                self.refused,
            )


# ---------------------------------------------------------------------------
# Answers written by the server itself
# ---------------------------------------------------------------------------


def _errors(app: Any) -> ErrorCatalog:
    services = getattr(getattr(app, "state", None), "services", None)
    return services.catalogs.current.errors if services is not None else ErrorCatalog()


def _entry(errors: ErrorCatalog, code: str) -> ErrorCode:
    if code in errors:
        return errors.get(code)
    return ErrorCode(code, *FALLBACK_CODES[code])


def problem_response(app: Any, scope: Scope, code: str, detail: str) -> Response:
    """503 ``code`` as the engine's problem+json, telling the client to retry and go."""
    headers = Headers(scope=scope)
    entry = _entry(_errors(app), code)
    request_id = request_id_of(headers)
    body, lang = problem_body(
        ApiError(code, detail),
        entry,
        request_id=request_id,
        instance=scope["path"],
        languages=parse_accept_language(headers.get("accept-language")),
    )
    return Response(
        b"" if scope["method"] == "HEAD" else encode(body),
        status_code=entry.status,
        media_type=PROBLEM_CONTENT_TYPE,
        headers={
            "X-Request-ID": request_id,
            "Content-Language": lang,
            "Retry-After": RETRY_AFTER_S,
            "Connection": "close",
        },
    )


def closing_problem_bytes(app: Any, code: str, detail: str, *, retry: bool) -> bytes:
    """A whole problem+json answer, written by the protocol itself (no request was read, or
    none could be), saying the connection closes; ``retry``: with Retry-After."""
    entry = _entry(_errors(app), code)
    body, lang = problem_body(
        ApiError(code, detail), entry, request_id=request_id_of({}), instance="/"
    )
    content = encode(body)
    try:
        phrase = HTTPStatus(entry.status).phrase
    except ValueError:  # a status an admin gave the code that HTTP does not name
        phrase = ""
    head = (
        f"HTTP/1.1 {entry.status} {phrase}\r\n"
        f"content-type: {PROBLEM_CONTENT_TYPE}\r\n"
        f"content-length: {len(content)}\r\n"
        f"content-language: {lang}\r\n"
        f"x-request-id: {body['request_id']}\r\n"
        + (f"retry-after: {RETRY_AFTER_S}\r\n" if retry else "")
        + "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + content


def refusal_bytes(app: Any) -> bytes:
    """The whole 503 written to a connection beyond the reserve, before it sent anything."""
    detail = "The server holds as many connections as it may; retry shortly"
    return closing_problem_bytes(app, TOO_MANY_CONNECTIONS, detail, retry=True)


def malformed_bytes(app: Any) -> bytes:
    """The whole 400 written to a connection whose bytes are not an HTTP/1.1 request."""
    detail = "The bytes received are not a well-formed HTTP/1.1 request"
    return closing_problem_bytes(app, MALFORMED_REQUEST, detail, retry=False)


async def answer_cancelled(app: Any, scope: Scope, receive: Receive, send: Send) -> None:
    """The answer of a request cancelled at the end of the grace, before its answer began."""
    if scope["method"] in SAFE_METHODS:
        code, detail = SHUTTING_DOWN, "The server shut down before this request finished"
    else:
        code = COMMIT_OUTCOME_UNKNOWN
        detail = "The server shut down while this request ran: it may have been written"
    await problem_response(app, scope, code, detail)(scope, receive, send)


# ---------------------------------------------------------------------------
# The h11 protocol: the same limits over uvicorn's (engine/http1.py is the default)
# ---------------------------------------------------------------------------


class _Guarded:
    """Header timer, connection class and drain, over a uvicorn HTTP protocol.

    Written against what both uvicorn protocols share: ``self.cycle`` (the request
    whose head was read last), ``connection_made``, ``data_received``,
    ``on_response_complete``, ``self.app`` (the ASGI app a new request runs).
    """

    # attributes of the uvicorn protocol this is mixed into
    server_state: EngineState
    connections: set[Any]
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    cycle: Any
    app: Any
    config: uvicorn.Config

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._inner_app = self.app
        self.app = self._guarded_app
        self._head_timer: asyncio.TimerHandle | None = None
        self._seen_cycle: Any = None
        self._reserve_only = False
        self._refused = False

    # -- connection class -------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        opened = len(self.connections)  # before this one joins them
        super().connection_made(transport)  # type: ignore[misc]
        state, limits = self.server_state, self.server_state.limits
        if opened >= limits.max_connections + limits.reserve:
            self._refuse()
            return
        if opened >= limits.max_connections:
            self._reserve_only = True
            state.cap_reached("only /health/live and /health/ready are served")
        self._arm_head_timer()

    def _refuse(self) -> None:
        self._refused = True
        state = self.server_state
        state.refused += 1
        state.cap_reached("the reserve is full too: new connections are refused")
        self.transport.write(refusal_bytes(self.config.app))
        self.transport.close()  # after the write is flushed

    # -- header timer -----------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        timeout = self.server_state.limits.header_timeout_s
        self._head_timer = self.loop.call_later(timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.server_state.head_timeouts += 1
            self.transport.close()

    def _after_parse(self) -> None:
        """A head was read completely: stop its timer; while draining, one answer only."""
        cycle = self.cycle
        if cycle is not None and cycle is not self._seen_cycle:
            self._seen_cycle = cycle
            self._cancel_head_timer()
            if self.server_state.draining:
                cycle.keep_alive = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)  # type: ignore[misc]
        self._after_parse()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._after_parse()  # h11 reads a pipelined head here
        if not self.transport.is_closing() and self.idle:
            self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    @property
    def idle(self) -> bool:
        """No request is running or waiting on this connection."""
        return self.cycle is None or self.cycle.response_complete

    # -- drain ------------------------------------------------------------

    def drain(self) -> None:
        """Shutdown began: a running request's answer closes its connection."""
        if not self.idle:
            self.cycle.keep_alive = False

    def close_now(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    # -- the app a request runs -------------------------------------------

    async def _guarded_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self.config.app
        if self._reserve_only and scope["type"] == "http" and scope["path"] not in RESERVED_PATHS:
            detail = "The server holds as many connections as it may; retry shortly"
            await problem_response(app, scope, TOO_MANY_CONNECTIONS, detail)(scope, receive, send)
            return
        if self._reserve_only:
            self.server_state.reserve_served += 1
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            if not started and self.server_state.draining:
                # said, not only done: h11 would close without telling the client
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"connection" for name, _ in headers):
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
            started = True
            await send(message)

        try:
            await self._inner_app(scope, receive, watched_send)
        except asyncio.CancelledError:
            if not self.server_state.cancelling:
                raise  # not ours to answer
            if started:  # the answer is cut: it must not look complete
                self.transport.close()
                return
            await answer_cancelled(app, scope, receive, send)


class EngineH11Protocol(_Guarded, H11Protocol):
    """uvicorn's h11 protocol with the engine's limits."""

    def send_400_response(self, msg: str) -> None:
        """What h11 cannot read: 400 MALFORMED_REQUEST as problem+json and a close, as the
        httptools protocol answers it (uvicorn's own is text/plain)."""
        self.transport.write(malformed_bytes(self.config.app))
        self.transport.close()


def protocol_class(http: str = "auto") -> type[asyncio.Protocol]:
    """The protocol for uvicorn's ``http`` choice: the engine's own over httptools
    (engine/http1.py) when httptools is installed (as uvicorn's "auto"), else uvicorn's h11
    protocol with the same limits."""
    if http == "h11" or (http == "auto" and not HAVE_HTTPTOOLS):
        return EngineH11Protocol
    if http in ("auto", "httptools"):
        if not HAVE_HTTPTOOLS:
            raise ValueError("http='httptools' needs the httptools package")
        from engine.http1 import EngineProtocol

        return EngineProtocol
    raise ValueError(f"unsupported HTTP implementation {http!r} (auto, httptools or h11)")


# ---------------------------------------------------------------------------
# Open files
# ---------------------------------------------------------------------------


def raise_open_file_limit(limits: Limits) -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; the resulting soft limit, logged once."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = soft
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:  # e.g. an unlimited hard limit on macOS
            log.warning("could not raise the open-file limit from %d to %s: %s", soft, hard, exc)
    raised = f"raised from {before}" if soft != before else "already the hard limit"
    log.info(
        "open-file limit %d (%s); needs about %d: ENGINE_MAX_CONNECTIONS=%d, reserve %d, "
        "database %d, process %d",
        soft,
        raised,
        limits.files_needed,
        limits.max_connections,
        limits.reserve,
        limits.database_connections,
        PROCESS_FILES,
    )
    if soft != resource.RLIM_INFINITY and limits.files_needed > soft:
        log.warning(
            "ENGINE_MAX_CONNECTIONS=%d does not fit under the open-file limit %d (about %d "
            "files needed): beyond about %d connections accepting fails, health included; "
            "lower ENGINE_MAX_CONNECTIONS or raise the hard limit (ulimit -Hn, LimitNOFILE=)",
            limits.max_connections,
            soft,
            limits.files_needed,
            max(0, soft - limits.files_needed + limits.max_connections),
        )
    return soft


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------


def engine_config(app: Any, *, http: str = "auto", **kwargs: Any) -> uvicorn.Config:
    """uvicorn's configuration for the engine: its protocol, the lifespan on, proxy headers
    off (``ENGINE_TRUSTED_PROXIES`` decides), uvicorn's access log off (the engine writes its
    own); ``kwargs`` are uvicorn.Config's (host, port, log_level, log_config...)."""
    kwargs.setdefault("access_log", False)
    return uvicorn.Config(
        app,
        http=protocol_class(http),
        ws="none",  # no websocket route: an upgrade request is an ordinary request
        lifespan="on",
        proxy_headers=False,
        **kwargs,
    )


class EngineServer(uvicorn.Server):
    """uvicorn's server with the engine's connection limits and its drain."""

    def __init__(self, config: uvicorn.Config, settings: Settings) -> None:
        super().__init__(config)
        self.limits = Limits.of(settings)
        self.server_state: EngineState = EngineState(self.limits)
        self.open_file_limit: int | None = None

    async def serve(self, sockets: Any = None) -> None:
        self.open_file_limit = raise_open_file_limit(self.limits)
        await super().serve(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """uvicorn's handlers, without re-raising the signal afterwards: a drained
        shutdown is a normal exit (status 0), not a death by SIGTERM."""
        with super().capture_signals():
            try:
                yield
            finally:
                self._captured_signals.clear()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.begin_draining()  # ready turns 503 before anything else happens
        super().handle_exit(sig, frame)

    def begin_draining(self) -> None:
        state = self.server_state
        if not state.draining:
            state.draining = True
            app_state = getattr(self.config.app, "state", None)
            if app_state is not None:
                app_state.draining = True

    async def shutdown(self, sockets: Any = None) -> None:
        self.begin_draining()
        state = self.server_state
        grace = self.limits.shutdown_grace_s
        for server in self.servers:
            server.close()  # no new connections
        for sock in sockets or []:
            sock.close()
        log.info(
            "draining: %d request(s) in flight, %d connection(s) open, grace %.1f s",
            len(state.tasks),
            len(state.connections),
            grace,
        )
        for connection in list(state.connections):
            _drain(connection)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        # a connection idle at the signal may still bring one request: wait for those too
        while state.tasks and not self.force_exit:
            left = deadline - loop.time()
            if left <= 0:
                break
            await asyncio.wait(list(state.tasks), timeout=min(left, 0.5))
        if state.tasks:
            await self._cancel_requests()
        for connection in list(state.connections):
            _close(connection)
        for server in self.servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2)
        if not self.force_exit:
            await self.lifespan.shutdown()

    async def _cancel_requests(self) -> None:
        state = self.server_state
        tasks = list(state.tasks)
        log.warning(
            "shutdown grace of %.1f s over: cancelling %d request(s) (and their statements)",
            self.limits.shutdown_grace_s,
            len(tasks),
        )
        state.cancelling = True
        for task in tasks:
            task.cancel()
        _done, pending = await asyncio.wait(tasks, timeout=CANCEL_WAIT_S)
        if pending:
            log.warning(
                "%d cancelled request(s) did not finish in %.0f s", len(pending), CANCEL_WAIT_S
            )


def _drain(connection: Any) -> None:
    drain: Callable[[], None] | None = getattr(connection, "drain", None)
    if drain is not None:
        drain()
    else:  # a websocket or a protocol of uvicorn's own: its own graceful close
        connection.shutdown()


def _close(connection: Any) -> None:
    close: Callable[[], None] | None = getattr(connection, "close_now", None)
    if close is not None:
        close()
    else:
        connection.shutdown()
