"""A client that leaves cancels the work done for it.

Starlette's plain ``Response`` path never listens for ``http.disconnect`` while
the answer is being computed, so a client that closes its socket during a
ten-second statement keeps a pool connection (and the database) busy for those
ten seconds. :class:`Departure` watches for the disconnect while ``handle()``
runs and cancels the task running it; asyncpg then sends a cancel request for
the running statement, the transaction of a write rolls back, and the
connection goes back to the pool clean.

The watch never takes a body message from the request flow: ``handle()``
reads the body through :meth:`Departure.receive`, and the watcher starts
reading the server's ``receive`` only once the body is complete (at once for a
request without a body). Requests answered within ``WATCH_AFTER_S`` never start
a watcher at all: they pay two set operations, as one timer per event loop (not
one per request) arms the watch of the requests that are still running.

Under the engine's own HTTP/1.1 protocol (engine/http1.py) there is no watch at all: its
exchange calls :meth:`Departure._lost` when the connection is lost before the answer is
complete (``on_lost``), and the flow reads the server's ``receive`` itself (``direct``).
"""

from __future__ import annotations

import asyncio
import weakref

from starlette.types import Message, Receive, Scope

from engine.deadlines import current_task

# A request still running after WATCH_AFTER_S to 2 * WATCH_AFTER_S gets a watcher task; one
# that ends sooner is not worth a task (measured: a task per request costs about 5 % of a PK
# read's CPU on a saturated engine, the sets nothing measurable; a timer per request alone
# would cost more than the sets). Statements worth cancelling run far longer.
WATCH_AFTER_S = 0.1
_EMPTY_BODY: Message = {"type": "http.request", "body": b"", "more_body": False}
_DISCONNECT: Message = {"type": "http.disconnect"}


def _bodiless(scope: Scope) -> bool:
    """Whether the request head says there is no body (HTTP/1.1: neither a length nor chunks)."""
    length = None
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding":
            return False
        if name == b"content-length":
            length = value
    return length is None or length.strip() == b"0"


class _Sweeper:
    """Arms the watch of this event loop's requests that outlived one full sweep interval:
    requests are only added to and removed from a set, the timer is the loop's one."""

    __slots__ = ("_loop", "_old", "_timer", "_young")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._young: set[Departure] = set()  # arrived since the last sweep
        self._old: set[Departure] = set()  # arrived before it: armed at the next
        self._timer: asyncio.TimerHandle | None = None

    def add(self, departure: Departure) -> None:
        self._young.add(departure)
        if self._timer is None:
            self._timer = self._loop.call_later(WATCH_AFTER_S, self._sweep)

    def discard(self, departure: Departure) -> None:
        self._young.discard(departure)
        self._old.discard(departure)

    def _sweep(self) -> None:
        due, self._old, self._young = self._old, self._young, set()
        for departure in due:
            departure.arm()
        self._timer = self._loop.call_later(WATCH_AFTER_S, self._sweep) if self._old else None


_SWEEPERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Sweeper] = (
    weakref.WeakKeyDictionary()
)


_LAST: list[_Sweeper] = []  # the sweeper found last: almost always this loop's


def _sweeper() -> _Sweeper:
    loop = asyncio.get_running_loop()
    if _LAST and _LAST[0]._loop is loop:
        return _LAST[0]
    sweeper = _SWEEPERS.get(loop)
    if sweeper is None:
        sweeper = _SWEEPERS[loop] = _Sweeper(loop)
    _LAST[:] = [sweeper]
    return sweeper


class Departure:
    """Cancels the current task when the client disconnects before :meth:`stop`.

    Made in the task that runs the request flow; :meth:`receive` is the flow's
    ``receive``. After :meth:`stop` (the answer is computed) nothing is
    cancelled any more; :attr:`left` tells whether the client had left, and
    :meth:`absorb` whether a ``CancelledError`` was this watcher's own.
    """

    __slots__ = (
        "_active",
        "_armed",
        "_bodiless",
        "_body_done",
        "_cancelled",
        "_empty_given",
        "_exchange",
        "_gone",
        "_receive",
        "_sweeper",
        "_task",
        "_watcher",
        "direct",
        "left",
    )

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self._receive = receive
        exchange = getattr(receive, "__self__", None)
        direct = exchange is not None and getattr(exchange, "on_lost", False) is None
        # the engine's protocol's loop (engine/http1.py), the running one: 3.11's
        # get_running_loop makes a getpid system call each time
        self._task = current_task(exchange.protocol.loop if direct else asyncio.get_running_loop())
        self._watcher: asyncio.Task[None] | None = None
        self._gone: asyncio.Event | None = None
        self._active = True
        self._armed = False
        self._cancelled = False
        self.left = False
        if direct:
            # the engine's protocol tells of a lost connection itself: no watch, no sweep,
            # and the flow reads ``receive`` directly (nobody else takes its messages)
            exchange.on_lost = self._lost
            self._exchange = exchange
            self.direct = True
            return
        self._exchange = None
        self.direct = False
        self._bodiless = self._body_done = _bodiless(scope)
        self._empty_given = False
        self._sweeper = _sweeper()
        self._sweeper.add(self)

    def _lost(self) -> None:
        """The connection was lost before the answer was complete (the protocol's call)."""
        self._unhook()
        self.left = True
        if self._active and self._task is not None:
            self._cancelled = True
            self._task.cancel()

    def _unhook(self) -> None:
        """No more calls from the protocol's exchange (the loop of references ends here)."""
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.on_lost = None

    async def receive(self) -> Message:
        """The request flow's ``receive``: the body as sent, then only the disconnect."""
        if not self._body_done:
            message = await self._receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                self._body_done = True
                if self._armed:  # armed while the body was still arriving
                    self._start()
            return message
        if self._bodiless and not self._empty_given:
            # the server's own empty body message may be the watcher's: give an equal one
            self._empty_given = True
            return dict(_EMPTY_BODY)
        # the body is complete: the server's receive is the watcher's; wait for its news
        if self._gone is None:
            self._gone = asyncio.Event()
        if self.left:
            self._gone.set()
        self.arm()
        await self._gone.wait()
        return _DISCONNECT

    def arm(self) -> None:
        """Watch from now on (at once, or as soon as the body is complete)."""
        if self.direct:
            return  # the protocol calls _lost: nothing to watch
        self._armed = True
        if self._body_done:
            self._start()

    def _start(self) -> None:
        if self._watcher is None and self._active:
            self._watcher = asyncio.get_running_loop().create_task(
                self._watch(), name="engine-departure"
            )

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass  # the empty body of a request without one: the flow got an equal message
        self.left = True
        if self._gone is not None:
            self._gone.set()
        if self._active and self._task is not None:
            self._cancelled = True
            self._task.cancel()

    def stop(self) -> None:
        """The answer is computed: stop watching (the response may read ``receive`` now)."""
        self._active = False
        if self.direct:
            self._unhook()
            return
        self._sweeper.discard(self)
        if self._watcher is not None and not self._watcher.done():
            self._watcher.cancel()  # it only waits on the server's receive: nothing is lost

    def absorb(self) -> bool:
        """After a ``CancelledError``: True when the cancellation was only this watcher's
        (the client left), so the request ends quietly; False when anyone else (a shutdown)
        cancelled the task too, which must then go on being cancelled."""
        if not self._cancelled or self._task is None:
            return False
        self._cancelled = False
        return self._task.uncancel() == 0
