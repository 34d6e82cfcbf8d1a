"""The engine's HTTP/1.1 protocol: httptools' parser, the engine's limits, one write an answer.

uvicorn's httptools protocol runs a request through a ``RequestResponseCycle`` (an
object of fourteen attributes, an ``asyncio.Event`` each, two regular expressions
per response header, a keep-alive timer armed and cancelled per answer); with the
engine's limits wrapped around it (engine/server.py's shims: a header timer per
answer, the head held back to go out with the body, a closure per request to watch
the drain) the server layer cost more than the catalogue dispatcher. Measured under
``wrk -t1 -c64`` on a cached read (py-spy): uvicorn's cycle and the shims 45 % of
the process's samples, the dispatcher 40 %.

:class:`EngineProtocol` is the same protocol, written once with those limits inside:

- **One timer a connection**, not one an answer: the deadlines (the header timeout
  from the connection's start or its last answer; uvicorn's keep-alive from its last
  answer until a byte comes) are numbers set per request, and the timer, when it
  fires early, sets itself again for the deadline then current.
- **Head and body in one write** when the answer's length is known (a
  ``Content-Length``): the kernel's loopback write is the largest single cost of a
  small answer. Streams (chunked) write their head at once; a HEAD answer has no
  body to wait for.
- **Per request**: the scope, one small object (``__slots__``) whose ``receive``
  and ``send`` the app is given, its task. An event to wait on is made only when
  the app waits for body that has not arrived (a GET's whole request is in before
  the app runs).
- The connection classes (cap, reserve, refusal), the drain and the 503s at the
  end of the grace are engine/server.py's, as for the h11 protocol.

Everything else is uvicorn's behaviour, kept: ``Expect: 100-continue``, pipelined
requests answered in order (reading paused meanwhile), read and write flow control,
HTTP/1.0 and ``Connection: close``, an upgrade request served as an ordinary one,
400 for what the parser refuses (problem+json ``MALFORMED_REQUEST`` here, where uvicorn
answers text), 500 for an app that fails before answering, a cut
connection for one that fails after, uvicorn's ``Server`` and ``Date`` headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import urllib.parse
from collections import deque
from collections.abc import Callable
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import STATUS_LINE  # status line by code
from uvicorn.protocols.utils import get_local_addr, get_remote_addr, is_ssl

from engine.server import (
    RESERVED_PATHS,
    TOO_MANY_CONNECTIONS,
    EngineState,
    answer_cancelled,
    malformed_bytes,
    problem_response,
    refusal_bytes,
)

log = logging.getLogger("uvicorn.error")  # where uvicorn says what its protocols refuse

HEADER_NAME_BAD = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')  # uvicorn's
HEADER_VALUE_BAD = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")  # uvicorn's: tab is allowed
# the same class as a translation: 0 for a byte HEADER_VALUE_BAD matches, 1 for any other
# (a table pass and a memchr: a quarter of the search's instructions over a response's values)
VALUE_MARKS = bytes(0 if HEADER_VALUE_BAD.match(bytes([b])) else 1 for b in range(256))
# answers' header names, joined, that passed HEADER_NAME_BAD: a few sets of names repeat
# (a search costs about 2,000 instructions a response, a set look-up a tenth of that)
_GOOD_NAMES: set[bytes] = set()
GOOD_NAMES_MAX = 512


def check_header_bytes(names: list[bytes], values: list[bytes]) -> None:
    """RuntimeError, as uvicorn's protocol raises, for an answer's header name or value
    that HEADER_NAME_BAD or HEADER_VALUE_BAD matches: one test over all names and one over
    all values (tab, allowed in a value, joins them)."""
    if names:
        joined = b"".join(names)  # a byte class: the names pass when their join does
        if joined not in _GOOD_NAMES:
            if HEADER_NAME_BAD.search(joined):
                raise RuntimeError("Invalid HTTP header name.")
            if len(_GOOD_NAMES) < GOOD_NAMES_MAX:
                _GOOD_NAMES.add(joined)
    if values and b"\t".join(values).translate(VALUE_MARKS).find(0) >= 0:
        raise RuntimeError("Invalid HTTP header value.")


ASGI = {"version": "3.0", "spec_version": "2.3"}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
NO_BODY_STATUSES = frozenset({204, 304})
INVALID = "Invalid HTTP request received."  # uvicorn's words, in the log


class _DefaultHead:
    """uvicorn's default headers (``server``, ``date``: the date is renewed every second
    by uvicorn's main loop) as one block of bytes, joined again only when they change."""

    __slots__ = ("block", "source")

    def __init__(self) -> None:
        self.source: object = None
        self.block = b""

    def of(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        if headers is not self.source:
            self.block = b"".join(b"%s: %s\r\n" % (name, value) for name, value in headers)
            self.source = headers
        return self.block


_DEFAULT_HEAD = _DefaultHead()


class Exchange:
    """One request and its answer: what the app's ``receive`` and ``send`` work on."""

    __slots__ = (
        "body",
        "chunked",
        "complete",
        "continue_",
        "disconnected",
        "event",
        "final_sent",
        "head",
        "is_head",
        "keep_alive",
        "left",
        "more_body",
        "on_lost",
        "protocol",
        "scope",
        "started",
    )

    def __init__(
        self, protocol: EngineProtocol, scope: dict[str, Any], keep_alive: bool, continue_: bool
    ) -> None:
        self.protocol = protocol
        self.scope = scope
        self.keep_alive = keep_alive
        self.continue_ = continue_  # Expect: 100-continue, not yet answered
        self.is_head = scope["method"] == "HEAD"
        self.body = b""
        self.more_body = True
        self.final_sent = False  # the last http.request message was handed to the app
        self.event: asyncio.Event | None = None  # made when the app first has to wait
        self.disconnected = False
        self.started = False
        self.complete = False
        self.chunked: bool | None = None
        self.left = 0  # bytes of Content-Length still to write
        self.head: bytes | None = None  # a head held back, to go out with the body
        # called when the connection is lost before the answer is complete: the app's way
        # to stop work for a client that left without a task watching receive
        # (engine/departure.py)
        self.on_lost: Callable[[], None] | None = None

    # -- the request ------------------------------------------------------

    def wake(self) -> None:
        event = self.event
        if event is not None:
            event.set()

    async def receive(self) -> dict[str, Any]:
        protocol = self.protocol
        if self.continue_:
            self.continue_ = False
            if not protocol.transport.is_closing():
                protocol.transport.write(CONTINUE)
        while True:
            if self.disconnected or self.complete:
                return {"type": "http.disconnect"}
            if self.body or (not self.more_body and not self.final_sent):
                body, self.body = self.body, b""
                if not self.more_body:
                    self.final_sent = True
                return {"type": "http.request", "body": body, "more_body": self.more_body}
            protocol.resume_reading()
            event = self.event
            if event is None:
                event = self.event = asyncio.Event()
            event.clear()
            await event.wait()

    # -- the answer -------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        protocol = self.protocol
        if protocol.write_paused and not self.disconnected:
            await protocol.writable()
        if self.disconnected:
            return
        if not self.started:
            if message["type"] != "http.response.start":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.start', but got '{message['type']}'."
                )
            self._start(message)
        elif not self.complete:
            if message["type"] != "http.response.body":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.body', but got '{message['type']}'."
                )
            self._body(message.get("body", b""), message.get("more_body", False))
        else:
            raise RuntimeError(
                f"Unexpected ASGI message '{message['type']}' sent, after response already "
                "completed."
            )

    def _start(self, message: dict[str, Any]) -> None:
        self.started = True
        self.continue_ = False
        protocol = self.protocol
        status = message["status"]
        if protocol.server_state.draining:
            self.keep_alive = False  # said with Connection: close, not only done
        head = [STATUS_LINE[status], _DEFAULT_HEAD.of(protocol.server_state.default_headers)]
        names: list[bytes] = []
        values: list[bytes] = []
        close_said = False
        chunked: bool | None = None
        for name, value in message.get("headers", ()):
            name = name.lower()
            names.append(name)
            values.append(value)
            if name == b"content-length":
                if chunked is None:
                    self.left = int(value)
                    chunked = False
            elif name == b"transfer-encoding":
                if value.lower() == b"chunked":
                    self.left = 0
                    chunked = True
            elif name == b"connection" and b"close" in [
                token.strip() for token in value.lower().split(b",")
            ]:
                self.keep_alive = False
                close_said = True
            head += (name, b": ", value, b"\r\n")
        check_header_bytes(names, values)
        if not self.keep_alive and not close_said:
            head.append(b"connection: close\r\n")
        if chunked is None and not self.is_head and status not in NO_BODY_STATUSES:
            chunked = True  # neither a length nor chunks said: chunks
            head.append(b"transfer-encoding: chunked\r\n")
        head.append(b"\r\n")
        self.chunked = chunked
        block = b"".join(head)
        if chunked is False and self.left > 0 and not self.is_head:
            self.head = block  # goes out with the body, in one write
        else:
            protocol.transport.write(block)

    def _body(self, body: bytes, more_body: bool) -> None:
        transport = self.protocol.transport
        if self.is_head:
            self.left = 0
        elif self.chunked:
            if body:
                transport.write(
                    b"%x\r\n%s\r\n%s" % (len(body), body, b"" if more_body else b"0\r\n\r\n")
                )
            elif not more_body:
                transport.write(b"0\r\n\r\n")
        else:
            size = len(body)
            if size > self.left:
                raise RuntimeError("Response content longer than Content-Length")
            self.left -= size
            head = self.head
            if head is not None:
                if size:
                    self.head = None
                    transport.write(head + body)
            elif size:
                transport.write(body)
        if not more_body:
            if self.left != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.complete = True
            self.wake()  # a receive waiting for a disconnect returns
            if not self.keep_alive:
                transport.close()
            self.protocol.response_complete(self)


class EngineProtocol(asyncio.Protocol):
    """HTTP/1.1 over httptools, with the engine's limits (see the module's doc)."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: EngineState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.app_state = app_state
        self.root_path = config.root_path
        self.keep_alive_s = float(config.timeout_keep_alive)
        self.header_timeout_s = server_state.limits.header_timeout_s
        self.parser = httptools.HttpRequestParser(self)
        # answer the first of pipelined requests sent after a close (httptools >= 0.6.3)
        with contextlib.suppress(AttributeError):
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.current: Exchange | None = None  # the exchange whose answer is due first
        self.reading: Exchange | None = None  # the exchange the parser fills
        self.pipeline: deque[Exchange] = deque()
        self.write_paused = False
        self._writable: asyncio.Future[None] | None = None
        self.read_paused = False
        # the parser's per-request state
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._continue = False
        # deadlines (loop time) and the one timer that watches them
        self._head_deadline: float | None = None  # a whole head must have come by then
        self._idle_deadline: float | None = None  # uvicorn's keep-alive: a first byte by then
        self._timer: asyncio.TimerHandle | None = None
        self._reserve_only = False
        self._refused = False

    # -- connection -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        opened = len(self.connections)  # before this one joins them
        self.connections.add(self)
        self.transport = transport  # type: ignore[assignment]
        self.server = get_local_addr(self.transport)
        self.client = get_remote_addr(self.transport)
        self.scheme = "https" if is_ssl(self.transport) else "http"
        state, limits = self.server_state, self.server_state.limits
        if opened >= limits.max_connections + limits.reserve:
            self._refused = True
            state.refused += 1
            state.cap_reached("the reserve is full too: new connections are refused")
            self.transport.write(refusal_bytes(self.config.app))
            self.transport.close()  # after the write is flushed
            return
        if opened >= limits.max_connections:
            self._reserve_only = True
            state.cap_reached("only /health/live and /health/ready are served")
        self._head_deadline = self.loop.time() + self.header_timeout_s
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        current = self.current
        if current is not None:
            if not current.complete:
                current.disconnected = True
                lost = current.on_lost
                if lost is not None:
                    current.on_lost = None
                    lost()
            current.wake()
        for waiting in self.pipeline:
            waiting.disconnected = True
        self.resume_writing()
        if exc is None:
            self.transport.close()
        self.parser = None  # type: ignore[assignment]

    def eof_received(self) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._idle_deadline = None  # a byte came: uvicorn's keep-alive is over
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            log.warning("%s (%s)", INVALID, exc)
            self.transport.write(malformed_bytes(self.config.app))  # 400 MALFORMED_REQUEST
            self.transport.close()
        except httptools.HttpParserUpgrade:
            log.warning("Unsupported upgrade request.")  # served as an ordinary request

    # -- deadlines --------------------------------------------------------

    def _arm(self) -> None:
        deadline = self._deadline()
        if deadline is None:
            return
        timer = self._timer
        if timer is not None:
            if timer.when() <= deadline:
                return  # fires first, and sets itself again for what is due then
            timer.cancel()  # due later than the new deadline (the first keep-alive): again
        self._timer = self.loop.call_at(deadline, self._check_deadlines)

    def _deadline(self) -> float | None:
        head, idle = self._head_deadline, self._idle_deadline
        if head is None:
            return idle
        return head if idle is None or head < idle else idle

    def _check_deadlines(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        head, idle = self._head_deadline, self._idle_deadline
        if idle is not None and now >= idle:  # not a byte since the last answer
            self.transport.close()
        elif head is not None and now >= head:
            self.server_state.head_timeouts += 1
            self.transport.close()
        else:
            self._arm()  # fired early: the deadlines moved on since it was set

    # -- parser callbacks -------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._continue = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        value = value.rstrip(b" \t")  # llhttp keeps trailing whitespace (RFC 9110 5.5 does not)
        if name == b"expect" and value.lower() == b"100-continue":
            self._continue = True
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        version = parser.get_http_version()
        url = httptools.parse_url(self._url)
        raw_path = url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        root = self.root_path
        scope = {
            "type": "http",
            "asgi": ASGI,
            "http_version": version,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": parser.get_method().decode("ascii"),
            "root_path": root,
            "path": root + path if root else path,
            "raw_path": root.encode("ascii") + raw_path if root else raw_path,
            "query_string": url.query or b"",
            "headers": self._headers,
            "state": self.app_state.copy(),
        }
        keep_alive = version != "1.0" and parser.should_keep_alive()
        if self.server_state.draining:
            keep_alive = False  # one more answer, then the connection closes
        exchange = Exchange(self, scope, keep_alive, self._continue)
        self._head_deadline = None  # a whole head came: a running request has its own limits
        self._idle_deadline = None
        self.reading = exchange
        current = self.current
        if current is None or current.complete:
            self.current = exchange
            self._start(exchange)
        else:  # pipelined: answered after those before it
            self.pause_reading()
            self.pipeline.append(exchange)

    def on_body(self, body: bytes) -> None:
        exchange = self.reading
        if exchange is None or exchange.complete:
            return
        exchange.body += body
        if len(exchange.body) > HIGH_WATER_LIMIT:
            self.pause_reading()
        exchange.wake()

    def on_message_complete(self) -> None:
        exchange = self.reading
        if exchange is None or exchange.complete:
            return
        exchange.more_body = False
        exchange.wake()

    # -- requests ---------------------------------------------------------

    def _start(self, exchange: Exchange) -> None:
        task = self.loop.create_task(self._run(exchange))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _run(self, exchange: Exchange) -> None:
        scope, receive, send = exchange.scope, exchange.receive, exchange.send
        if self._reserve_only:
            if scope["path"] not in RESERVED_PATHS:
                detail = "The server holds as many connections as it may; retry shortly"
                response = problem_response(self.config.app, scope, TOO_MANY_CONNECTIONS, detail)
                await response(scope, receive, send)
                return
            self.server_state.reserve_served += 1
        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            if not self.server_state.cancelling:
                raise  # not ours to answer
            if exchange.started:  # the answer is cut: it must not look complete
                self.transport.close()
                return
            await answer_cancelled(self.config.app, scope, receive, send)
        except BaseException as exc:
            log.error("Exception in ASGI application\n", exc_info=exc)
            if not exchange.started:
                await self._send_500(exchange)
            else:
                self.transport.close()
        else:
            if not exchange.started and not exchange.disconnected:
                log.error("ASGI callable returned without starting response.")
                await self._send_500(exchange)
            elif not exchange.complete and not exchange.disconnected:
                log.error("ASGI callable returned without completing response.")
                self.transport.close()

    @staticmethod
    async def _send_500(exchange: Exchange) -> None:
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"21"),
            (b"connection", b"close"),
        ]
        await exchange.send({"type": "http.response.start", "status": 500, "headers": headers})
        await exchange.send({"type": "http.response.body", "body": b"Internal Server Error"})

    def response_complete(self, exchange: Exchange) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.resume_reading()
        if self.pipeline:
            self.current = self.pipeline.popleft()
            self._start(self.current)
            return
        now = self.loop.time()
        self._head_deadline = now + self.header_timeout_s
        self._idle_deadline = now + self.keep_alive_s
        self._arm()

    # -- flow control -----------------------------------------------------

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    async def writable(self) -> None:
        """Until the transport's buffer is below its low-water mark again."""
        if self._writable is None:
            self._writable = self.loop.create_future()
        await asyncio.shield(self._writable)

    # -- what the server asks of a connection -----------------------------

    @property
    def idle(self) -> bool:
        """No request is running or waiting on this connection."""
        current = self.current
        return (current is None or current.complete) and not self.pipeline

    def drain(self) -> None:
        """Shutdown began: a running request's answer closes its connection."""
        for exchange in (self.current, *self.pipeline):
            if exchange is not None and not exchange.complete:
                exchange.keep_alive = False

    def close_now(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def shutdown(self) -> None:
        """uvicorn's graceful close: an idle connection closes, a busy one after its answer."""
        if self.idle:
            self.close_now()
        else:
            self.drain()
