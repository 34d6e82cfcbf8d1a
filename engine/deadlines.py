"""Deadlines without a timer each: one sweep per event loop cancels what ran too long.

An ``asyncio.timeout`` per pool acquisition costs a timer set and cancelled on
every request that waits for a connection (under wrk, ``Timeout.reschedule`` was
10 % of a primary-key read's samples with 64 clients on a 10-connection pool).
Deadlines of one length arrive in the order they expire, so each length keeps
a deque; one timer per loop, running only while deadlines are pending, pops
the finished ones and cancels the tasks whose deadline passed (at most
``SWEEP_S`` late, fine for waits of seconds).

    deadline = deadlines.start(5.0)
    try:
        await work()
    except asyncio.CancelledError:
        if deadline.expired():    # ours: the task's other cancellations stay
            raise TimeoutError from None
        raise
    finally:
        deadline.finish()
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque

SWEEP_S = 0.05

# asyncio.current_task(loop) as a C call: in C on 3.12+; on 3.11 a Python function
# around this dict's get (a frame, twice a request)
try:
    from _asyncio import current_task  # type: ignore[attr-defined]
except ImportError:
    from asyncio.tasks import _current_tasks  # type: ignore[attr-defined]

    current_task = _current_tasks.get


class Deadline:
    __slots__ = ("_before", "_fired", "done", "task", "when")

    def __init__(self, task: asyncio.Task[object] | None, when: float) -> None:
        self.task = task
        self.when = when
        self.done = False
        self._fired = False
        # cancellations the task had pending already (a cleanup after one was absorbed):
        # only one more than these is this deadline's own, as asyncio.timeout counts
        self._before = task.cancelling() if task is not None else 0

    def finish(self) -> None:
        self.done = True

    def expired(self) -> bool:
        """After a ``CancelledError``: True when this deadline cancelled the task and no one
        else did (the cancellation is then taken back: the caller raises its timeout)."""
        if not self._fired or self.task is None:
            return False
        self._fired = False
        return self.task.uncancel() <= self._before

    def _fire(self) -> None:
        self._fired = True
        if self.task is not None:
            self.task.cancel()


class _Sweep:
    __slots__ = ("_loop", "_queues", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queues: dict[float, deque[Deadline]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def start(self, timeout_s: float) -> Deadline:
        deadline = Deadline(current_task(self._loop), self._loop.time() + timeout_s)
        queue = self._queues.get(timeout_s)
        if queue is None:
            queue = self._queues[timeout_s] = deque()
        queue.append(deadline)
        if self._timer is None:
            self._timer = self._loop.call_later(min(SWEEP_S, timeout_s), self._sweep)
        return deadline

    def _sweep(self) -> None:
        now = self._loop.time()
        for timeout_s, queue in list(self._queues.items()):
            while queue and (queue[0].done or queue[0].when <= now):
                deadline = queue.popleft()
                if not deadline.done:
                    deadline.done = True
                    deadline._fire()
            if not queue:
                del self._queues[timeout_s]
        self._timer = self._loop.call_later(SWEEP_S, self._sweep) if self._queues else None


_SWEEPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Sweep] = weakref.WeakKeyDictionary()


_LAST: list[_Sweep] = []  # the sweep found last: almost always this loop's


def start(timeout_s: float, loop: asyncio.AbstractEventLoop | None = None) -> Deadline:
    """A deadline ``timeout_s`` from now for the current task. ``loop``: the running loop,
    when the caller has it (a pool's): 3.11's ``get_running_loop`` makes a ``getpid``
    system call each time."""
    if loop is None:
        loop = asyncio.get_running_loop()
    if _LAST and _LAST[0]._loop is loop:  # no weak-key look-up (a weakref made per call)
        return _LAST[0].start(timeout_s)
    sweep = _SWEEPS.get(loop)
    if sweep is None:
        sweep = _SWEEPS[loop] = _Sweep(loop)
    _LAST[:] = [sweep]
    return sweep.start(timeout_s)
