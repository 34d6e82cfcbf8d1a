"""engine.holders against a real PostgreSQL: a connection taken and given back inline leaves
asyncpg's pool as asyncpg's own steps leave it, and every case these steps do not cover
takes asyncpg's path."""

from __future__ import annotations

import asyncio
import sys
import warnings
from typing import Any

import asyncpg
import pytest

from engine import database, holders
from engine.errors import ApiError
from engine.settings import Settings
from tests.helpers import apoll

OPERATION = "SELECT"


async def _pool(url: str, size: int, **extra: Any) -> asyncpg.Pool:
    settings = Settings.from_env({}, pool_min_size=size, pool_max_size=size)
    kwargs = database.pool_kwargs(settings, read_only=True, name="engine-t")
    return await asyncpg.create_pool(url, min_size=size, max_size=size, **kwargs, **extra)


async def _in_line(pool: asyncpg.Pool, n: int) -> None:
    """Until ``n`` requests wait for a connection of ``pool``."""
    await apoll(lambda: len(pool._queue._getters), lambda k: k == n, f"{n} requests waiting")


def _state(pool: asyncpg.Pool) -> list[tuple[Any, ...]]:
    """What asyncpg keeps of each holder and its queue, comparable between two pools."""
    queue = pool._queue
    free = {id(h) for h in queue._queue}
    return [
        (
            id(h) in free,
            h._in_use is None,
            h._proxy is None,
            h._con is not None and h._con._proxy is None,
            h._inactive_callback is not None,
            h._timeout,
        )
        for h in pool._holders
    ] + [(queue.qsize(), queue._unfinished_tasks > 0, queue._finished.is_set())]


def test_the_inline_steps_apply_to_this_asyncpg() -> None:
    assert holders.INLINE  # else every test below checks asyncpg's own path only


def test_taking_and_giving_back_leaves_the_pool_as_asyncpgs_own_steps_do(db_url: str) -> None:
    async def scenario() -> tuple[list[Any], list[Any], list[Any], list[Any]]:
        ours, theirs = await _pool(db_url, 2), await _pool(db_url, 2)
        try:
            conn = await database.acquire(ours, 5.0, OPERATION)
            other = await theirs.acquire()
            taken = (_state(ours), _state(theirs))
            assert (await conn.fetchval("SELECT 41 + 1")) == 42
            await database.release(ours, conn)
            await theirs.release(other)
            given = (_state(ours), _state(theirs))
            with pytest.raises(asyncpg.InterfaceError, match="released back to the pool"):
                await conn.fetchval("SELECT 1")  # the proxy no longer reaches it
            return [*taken, *given]
        finally:
            await ours.close()
            await theirs.close()

    ours_taken, theirs_taken, ours_given, theirs_given = asyncio.run(scenario())
    assert ours_taken == theirs_taken
    assert ours_given == theirs_given


def test_a_connection_given_back_wakes_a_request_waiting_for_one(db_url: str) -> None:
    async def scenario() -> int:
        pool = await _pool(db_url, 1)
        try:
            first = await database.acquire(pool, 5.0, OPERATION)
            waiting = asyncio.create_task(database.acquire(pool, 5.0, OPERATION))
            await asyncio.sleep(0.05)
            assert not waiting.done() and pool._queue._getters
            await database.release(pool, first)
            second = await asyncio.wait_for(waiting, 5)
            try:
                return await second.fetchval("SELECT 7")
            finally:
                await database.release(pool, second)
        finally:
            await pool.close()

    assert asyncio.run(scenario()) == 7


def test_waiting_requests_are_served_in_turn_and_one_that_leaves_passes_its_turn_on(
    db_url: str,
) -> None:
    async def waiter(pool: asyncpg.Pool, name: str, order: list[str]) -> None:
        conn = await database.acquire(pool, 5.0, OPERATION)
        order.append(name)
        await asyncio.sleep(0.01)
        await database.release(pool, conn)

    async def scenario() -> tuple[list[str], int, int]:
        pool = await _pool(db_url, 1)
        try:
            held = await database.acquire(pool, 5.0, OPERATION)
            order: list[str] = []
            tasks = {}
            for n, name in enumerate("abcd", 1):  # in line in this order
                tasks[name] = asyncio.create_task(waiter(pool, name, order))
                await _in_line(pool, n)
            tasks["b"].cancel()  # b leaves the line before its turn
            await database.release(pool, held)
            await asyncio.wait_for(asyncio.gather(tasks["a"], tasks["c"], tasks["d"]), 5)
            return order, len(pool._queue._getters), pool._queue.qsize()
        finally:
            await pool.close()

    assert asyncio.run(scenario()) == (["a", "c", "d"], 0, 1)


def test_a_request_woken_as_it_leaves_wakes_the_next_in_line(db_url: str) -> None:
    async def scenario() -> tuple[int, int, int]:
        pool = await _pool(db_url, 1)
        try:
            held = await database.acquire(pool, 5.0, OPERATION)
            first = asyncio.create_task(database.acquire(pool, 5.0, OPERATION))
            await _in_line(pool, 1)
            second = asyncio.create_task(database.acquire(pool, 5.0, OPERATION))
            await _in_line(pool, 2)
            await database.release(pool, held)  # wakes first's getter ...
            first.cancel()  # ... which leaves before it runs: second must get the connection
            conn = await asyncio.wait_for(second, 5)
            try:
                value = await conn.fetchval("SELECT 3")
            finally:
                await database.release(pool, conn)
            return value, len(pool._queue._getters), pool._queue.qsize()
        finally:
            await pool.close()

    assert asyncio.run(scenario()) == (3, 0, 1)


def test_a_closed_pool_refuses_at_once_rather_than_letting_a_request_wait(db_url: str) -> None:
    async def scenario() -> str:
        pool = await _pool(db_url, 1)
        await pool.close()
        with pytest.raises(ApiError) as caught:  # asyncpg's "pool is closed", translated
            await asyncio.wait_for(database.acquire(pool, 30.0, OPERATION), 5)
        return caught.value.code

    assert asyncio.run(scenario()).startswith("DATABASE_")


def test_a_request_waits_for_a_connection_without_looking_the_loop_up(db_url: str) -> None:
    """On 3.11 each ``get_running_loop`` (Queue.get's, a deadline's) is a getpid system call:
    the wait and its deadline use the pool's loop."""
    lookups = {"get_running_loop", "_get_running_loop", "get_event_loop"}

    async def scenario() -> tuple[list[str], int]:
        pool = await _pool(db_url, 1)
        try:
            held = await database.acquire(pool, 5.0, OPERATION)
            seen: list[str] = []
            loop = asyncio.get_running_loop()

            def profile(frame: Any, event: str, arg: Any) -> None:  # the waiting task's calls
                name = getattr(arg, "__name__", "") if event == "c_call" else ""
                if name in lookups and asyncio.current_task(loop) is task:
                    seen.append(f"{name} at {frame.f_code.co_filename}:{frame.f_lineno}")

            async def waiting() -> list[str]:
                sys.setprofile(profile)
                try:
                    conn = await database.acquire(pool, 5.0, OPERATION)
                finally:
                    sys.setprofile(None)
                await database.release(pool, conn)
                return seen

            task = asyncio.create_task(waiting())
            await _in_line(pool, 1)
            await database.release(pool, held)
            return await asyncio.wait_for(task, 5), pool._queue.qsize()
        finally:
            await pool.close()

    assert asyncio.run(scenario()) == ([], 1)


def test_many_requests_share_a_small_pool_and_it_ends_whole(db_url: str) -> None:
    async def one(pool: asyncpg.Pool, n: int) -> int:
        conn = await database.acquire(pool, 10.0, OPERATION)
        try:
            return await conn.fetchval("SELECT $1::int", n)
        finally:
            await database.release(pool, conn)

    async def scenario() -> tuple[list[int], int, int]:
        pool = await _pool(db_url, 3)
        try:
            got = await asyncio.gather(*(one(pool, n) for n in range(300)))
            return got, pool._queue.qsize(), sum(h._in_use is not None for h in pool._holders)
        finally:
            await pool.close()

    got, free, in_use = asyncio.run(scenario())
    assert got == list(range(300)) and free == 3 and in_use == 0


def test_a_pool_with_a_setup_callback_and_a_connection_with_a_listener_take_asyncpgs_path(
    db_url: str,
) -> None:
    async def scenario() -> tuple[int, list[str]]:
        calls = 0

        async def setup(proxy: Any) -> None:
            nonlocal calls
            calls += 1

        pool = await _pool(db_url, 1, setup=setup)
        try:
            queue = pool._queue
            assert holders.connected(pool, queue) and holders.take(pool, queue) is None
            conn = await database.acquire(pool, 5.0, OPERATION)
            await conn.add_listener("engine_t", lambda *a: None)
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                await database.release(pool, conn)  # asyncpg warns of the listener left
            again = await database.acquire(pool, 5.0, OPERATION)
            await database.release(pool, again)
            return calls, [str(w.message) for w in seen]
        finally:
            await pool.close()

    calls, said = asyncio.run(scenario())
    assert calls == 2  # setup ran on each acquisition: asyncpg's own path
    assert any("listener" in message for message in said)


def test_a_free_connection_whose_backend_was_terminated_is_replaced(db_url: str) -> None:
    async def scenario() -> tuple[int, int]:
        pool = await _pool(db_url, 1)
        try:
            conn = await database.acquire(pool, 5.0, OPERATION)
            pid = conn.get_server_pid()
            await database.release(pool, conn)
            killer = await asyncpg.connect(db_url)
            try:
                await killer.execute("SELECT pg_terminate_backend($1)", pid)
            finally:
                await killer.close()
            failures = 0
            for _ in range(100):  # until the driver has seen the close and reconnected
                try:  # the engine's own path, which drops a connection that failed
                    rows, _ = await database.run_statement(
                        pool, "SELECT pg_backend_pid() AS pid", [], timeout_s=5.0,
                        operation=OPERATION, known_codes=frozenset(),
                    )  # fmt: skip
                except ApiError:  # handed out before the close was seen: asyncpg does too
                    failures += 1
                    continue
                if rows[0]["pid"] != pid:
                    return failures, pool._queue.qsize()
                await asyncio.sleep(0.05)
            raise AssertionError("the pool kept the terminated connection")
        finally:
            await pool.close()

    failures, free = asyncio.run(scenario())
    assert failures <= 1 and free == 1
