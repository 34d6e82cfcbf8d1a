"""engine.database's acquire and release against a real PostgreSQL, under real faults.

The network path to the server goes half-open (tests/faults.StallingProxy): a statement
on it times out, and giving the connection back must still end, within
``RELEASE_TIMEOUT_S``, with the connection dropped and the pool able to serve again.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from engine import database
from engine.errors import ApiError
from engine.settings import Settings
from tests.faults import StallingProxy

OPERATION = "SELECT"


@pytest.mark.slow
def test_a_connection_whose_statement_timed_out_on_a_dead_path_is_released_within_the_bound(
    db_url: str,
) -> None:
    """The statement's timeout fires, the driver asks the server to cancel it (on a new
    connection, which the proxy forwards) but never hears the answer on the stalled one:
    the release must not wait for it forever (the request's answer waits on the release)."""

    async def scenario(proxy: StallingProxy) -> tuple[float, int]:
        settings = Settings.from_env({}, pool_min_size=1, pool_max_size=1)
        pool = await database.create_pool(proxy.url, settings, read_only=True, name="engine-t")
        try:
            conn = await database.acquire(pool, 5.0, OPERATION)
            await database.fetch_rows(conn, "SELECT 1", [], None, 5.0)  # the path works
            assert proxy.stall() >= 1
            with pytest.raises((TimeoutError, ApiError, OSError)):
                await database.fetch_rows(conn, "SELECT 2", [], None, 0.5)
            started = time.monotonic()
            await asyncio.wait_for(database.release(pool, conn), database.RELEASE_TIMEOUT_S + 10)
            released_after = time.monotonic() - started
            # the pool serves again, on a new connection over a path that forwards
            again = await database.acquire(pool, 10.0, OPERATION)
            try:
                rows = await database.fetch_rows(again, "SELECT 3 AS n", [], None, 5.0)
            finally:
                await database.release(pool, again)
            return released_after, rows[0]["n"]
        finally:
            pool.terminate()

    with StallingProxy(db_url) as proxy:
        released_after, n = asyncio.run(scenario(proxy))
    assert released_after < database.RELEASE_TIMEOUT_S + 2
    assert n == 3
