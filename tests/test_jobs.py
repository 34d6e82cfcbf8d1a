"""Background jobs: periodic work survives its failures, stops cleanly, runs once more at stop."""

from __future__ import annotations

import asyncio

import asyncpg

from engine.database import PoolFigures
from engine.jobs import Jobs, Periodic, Spawner


async def _until(condition, what: str, timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def test_a_failing_run_is_counted_and_the_next_tick_runs() -> None:
    calls: list[int] = []

    async def work() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first run fails")

    async def go() -> Periodic:
        job = Periodic("flaky", 0.01, work)
        job.start()
        await _until(lambda: job.runs >= 2, "two good runs")
        await job.stop()
        return job

    job = asyncio.run(go())
    assert job.failures == 1 and job.runs >= 2


def test_final_runs_once_more_at_stop_and_jobs_stop_in_reverse() -> None:
    order: list[str] = []

    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

        def start(self) -> None:
            order.append(f"start {self.name}")

        async def stop(self) -> None:
            order.append(f"stop {self.name}")
            if self.name == "b":
                raise RuntimeError("a failing stop does not stop the others")

    flushed: list[int] = []

    async def flush() -> None:
        flushed.append(1)

    async def go() -> None:
        jobs = Jobs()
        jobs.start(Named("a"))
        jobs.start(Named("b"))
        jobs.start(Periodic("flush", 3600, flush, final=True))
        await jobs.stop()

    asyncio.run(go())
    assert order == ["start a", "start b", "stop b", "stop a"]
    assert flushed == [1]


def test_spawned_tasks_are_cancelled_at_stop() -> None:
    async def go() -> bool:
        spawner = Spawner()
        started = asyncio.Event()

        async def forever() -> None:
            started.set()
            await asyncio.sleep(3600)

        spawner.spawn(forever(), "forever")
        await started.wait()
        task = next(iter(spawner.tasks))
        await spawner.stop()
        return task.cancelled()

    assert asyncio.run(go())


def test_pool_figures_count_use_and_waiters(db_url: str) -> None:
    async def go() -> list[PoolFigures]:
        pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
        try:
            seen = [PoolFigures.of("p", pool)]
            held = [await pool.acquire(), await pool.acquire()]
            waiter = asyncio.ensure_future(pool.acquire())  # an awaitable, not a coroutine
            await _until(lambda: PoolFigures.of("p", pool).waiting == 1, "a waiter")
            seen.append(PoolFigures.of("p", pool))
            for conn in held:
                await pool.release(conn)
            await pool.release(await waiter)
            seen.append(PoolFigures.of("p", pool))
            return seen
        finally:
            pool.terminate()

    idle, busy, after = asyncio.run(go())
    assert (idle.in_use, idle.waiting, idle.max_size, idle.size) == (0, 0, 2, 1)
    assert (busy.in_use, busy.waiting, busy.size, busy.idle) == (2, 1, 2, 0)
    assert (after.in_use, after.waiting, after.idle) == (0, 0, 2)


def test_a_blocked_final_run_cannot_hold_the_shutdown() -> None:
    async def blocked() -> None:
        await asyncio.sleep(3600)  # a flush waiting on a locked table

    async def go() -> tuple[float, Periodic]:
        job = Periodic("blocked", 3600, blocked, final=True, timeout_s=0.05)
        job.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await job.stop()
        return loop.time() - started, job

    took, job = asyncio.run(go())
    assert took < 2 and job.failures == 1
