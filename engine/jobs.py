"""Background work of one engine process: each job has ``start()`` and ``stop()``.

A job lives in the module that owns its work (the cache's figures in ``cache``,
expired idempotency keys in ``idempotency``...); :class:`Periodic` is the common
case, a coroutine run every few seconds whose failure is logged and retried at
the next tick. ``app`` only builds the jobs and hands them to :class:`Jobs`,
which starts them in order and stops them in reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

log = logging.getLogger("engine.jobs")

RUN_TIMEOUT_S = 30.0
FINAL_TIMEOUT_S = 5.0


class Job(Protocol):
    def start(self) -> None: ...

    async def stop(self) -> None: ...


class Periodic:
    """Run ``work`` every ``interval_s`` (first after one interval); ``final`` runs once at stop."""

    def __init__(
        self,
        name: str,
        interval_s: float,
        work: Callable[[], Awaitable[object]],
        *,
        final: bool = False,
        timeout_s: float = RUN_TIMEOUT_S,
    ) -> None:
        self.name = name
        self.interval_s = interval_s
        self.work = work
        self.final = final
        self.timeout_s = timeout_s  # a run blocked longer (a locked table...) is given up
        self.runs = 0
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def run_once(self, timeout_s: float | None = None) -> None:
        try:
            await asyncio.wait_for(self.work(), timeout_s or self.timeout_s)
            self.runs += 1
        except Exception as exc:  # logged and retried at the next tick
            self.failures += 1
            log.warning("%s failed: %r", self.name, exc)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.run_once()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.final:  # bounded: a locked table must not hold the shutdown
            await self.run_once(min(self.timeout_s, FINAL_TIMEOUT_S))


class Jobs:
    """The process's jobs: started in order, stopped in reverse, a failing stop logged."""

    def __init__(self) -> None:
        self._jobs: list[Job] = []

    def start(self, job: Job) -> None:
        job.start()
        self._jobs.append(job)

    async def stop(self) -> None:
        for job in reversed(self._jobs):
            try:
                await job.stop()
            except Exception:
                log.exception("stopping %s failed", getattr(job, "name", job))
        self._jobs.clear()


class Spawner:
    """Fire-and-forget tasks (a key reload asked by a notification), cancelled at stop."""

    name = "spawned tasks"

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[object]] = set()

    def start(self) -> None:
        pass

    def spawn(self, coro: Awaitable[object], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
