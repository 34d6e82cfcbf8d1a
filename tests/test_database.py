"""engine.database's acquire and release against a real PostgreSQL, under real faults.

The network path to the server goes half-open (tests/faults.StallingProxy): a statement
on it times out, and giving the connection back must still end, within
``RELEASE_TIMEOUT_S``, with the connection dropped and the pool able to serve again.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
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


def _pool(url: str, **sizes: int) -> object:
    settings = Settings.from_env({}, **sizes)
    return database.create_pool(url, settings, read_only=True, name="engine-t")


async def _read(pool: object, sql: str, timeout_s: float | None) -> list[object]:
    rows, _ = await database.run_statement(
        pool, sql, [], timeout_s=timeout_s, operation=OPERATION, known_codes=frozenset()
    )
    return rows


@pytest.mark.slow
def test_a_request_statement_on_a_dead_path_times_out_and_the_pool_serves_again(
    db_url: str,
) -> None:
    """The request path's statement timeout (the loop's deadline sweep, no driver timer)
    ends a statement whose answer never comes: STATEMENT_TIMEOUT, the task not left
    cancelled, the connection given back, and the next read served."""

    async def scenario(proxy: StallingProxy) -> tuple[str, float, int]:
        pool = await _pool(proxy.url, pool_min_size=1, pool_max_size=1)
        try:
            assert (await _read(pool, "SELECT 1 AS n", 5.0))[0]["n"] == 1
            assert proxy.stall() >= 1
            started = time.monotonic()
            with pytest.raises(ApiError) as raised:
                await asyncio.wait_for(_read(pool, "SELECT 2", 0.5), 15)
            ended_after = time.monotonic() - started
            await asyncio.sleep(0)  # the timeout's cancellation was taken back
            rows = await asyncio.wait_for(_read(pool, "SELECT 3 AS n", 5.0), 20)
            return raised.value.code, ended_after, rows[0]["n"]
        finally:
            pool.terminate()

    with StallingProxy(db_url) as proxy:
        code, ended_after, n = asyncio.run(scenario(proxy))
    assert code == "STATEMENT_TIMEOUT"
    assert ended_after < database.RELEASE_TIMEOUT_S + 2
    assert n == 3


def test_a_statement_timeout_cancels_the_server_statement_and_only_its_own(db_url: str) -> None:
    """Past its timeout a read is STATEMENT_TIMEOUT and its backend is cancelled; a
    cancellation from elsewhere (a client that left, a shutdown) stays a cancellation."""

    async def scenario() -> tuple[str, int, bool, int]:
        pool = await _pool(db_url, pool_min_size=2, pool_max_size=2)
        try:
            with pytest.raises(ApiError) as raised:
                await asyncio.wait_for(_read(pool, "SELECT pg_sleep(5) /* timed */", 0.3), 4)
            running = await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE query LIKE '%/* timed */' AND state = 'active'"
            )
            task = asyncio.create_task(_read(pool, "SELECT pg_sleep(5) /* left */", 10.0))
            await asyncio.sleep(0.3)
            task.cancel()
            try:
                await task
                cancelled = False
            except asyncio.CancelledError:
                cancelled = True
            rows = await _read(pool, "SELECT 4 AS n", 5.0)
            return raised.value.code, running, cancelled, rows[0]["n"]
        finally:
            await pool.close()

    code, running, cancelled, n = asyncio.run(scenario())
    assert code == "STATEMENT_TIMEOUT"
    assert running == 0
    assert cancelled
    assert n == 4


def test_a_read_session_gives_its_connection_back_and_one_past_its_budget_is_replaced(
    db_url: str,
) -> None:
    """A read's release (no reset, no wait) puts the same connection back for the next
    read; a connection past the pool's query budget is closed and replaced instead."""

    async def pids(pool: object, n: int) -> list[int]:
        return [(await _read(pool, "SELECT pg_backend_pid() AS p", 5.0))[0]["p"] for _ in range(n)]

    async def scenario() -> tuple[list[int], list[int], int]:
        pool = await _pool(db_url, pool_min_size=1, pool_max_size=1)
        try:
            kept = await pids(pool, 3)
            for holder in pool._holders:
                holder._max_queries = 1  # every connection is past its budget after a read
            replaced = await pids(pool, 3)
            return kept, replaced, pool._queue.qsize()
        finally:
            await pool.close()

    kept, replaced, free = asyncio.run(scenario())
    assert len(set(kept)) == 1
    assert len(set(replaced)) == 3
    assert free == 1


def test_a_prepared_read_follows_a_table_or_a_type_changed_under_it(db_url: str) -> None:
    """A read runs on the statement its connection prepared before (engine/database.py's
    _run_prepared). A table changed under it is prepared again and answered at once (the
    server refused the old plan before running it); a composite type changed under it
    fails that one read, as the driver's own path does, and the next is answered."""

    async def scenario() -> tuple[list[dict], list[dict], str, list[dict]]:
        setup = await asyncpg.connect(db_url)
        await setup.execute(
            "DROP TABLE IF EXISTS prep_t; DROP TYPE IF EXISTS prep_c;"
            "CREATE TYPE prep_c AS (x int);"
            "CREATE TABLE prep_t (a int, c prep_c); INSERT INTO prep_t VALUES (1, ROW(7))"
        )
        pool = await _pool(db_url, pool_min_size=1, pool_max_size=1)
        try:
            for _ in range(3):  # prepared by the first, run as prepared by the others
                before = [dict(r) for r in await _read(pool, "SELECT * FROM prep_t", 5.0)]
            await setup.execute("ALTER TABLE prep_t ADD COLUMN b int DEFAULT 2")
            widened = [dict(r) for r in await _read(pool, "SELECT * FROM prep_t", 5.0)]
            await _read(pool, "SELECT c FROM prep_t", 5.0)
            await _read(pool, "SELECT c FROM prep_t", 5.0)
            await setup.execute("ALTER TYPE prep_c ADD ATTRIBUTE y int")
            with pytest.raises(ApiError) as raised:
                await _read(pool, "SELECT c FROM prep_t", 5.0)
            again = [dict(r) for r in await _read(pool, "SELECT c FROM prep_t", 5.0)]
            return before, widened, raised.value.code, again
        finally:
            await pool.close()
            await setup.execute("DROP TABLE prep_t; DROP TYPE prep_c")
            await setup.close()

    before, widened, code, again = asyncio.run(scenario())
    assert [r["a"] for r in before] == [1]
    assert [(r["a"], r["b"]) for r in widened] == [(1, 2)]
    assert code == "DATABASE_CONNECTION_ERROR"  # retriable: a request's read is tried again
    assert [dict(r["c"]) for r in again] == [{"x": 7, "y": None}]


LEAVE_STATE = """
CREATE TABLE write_probe (id int PRIMARY KEY, ok boolean NOT NULL);
CREATE FUNCTION write_probe_check() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF NOT NEW.ok THEN RAISE EXCEPTION 'refused at commit' USING ERRCODE = '23514'; END IF;
RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON write_probe
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION write_probe_check();
CREATE FUNCTION leave_state(id int, ok boolean) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('engine.probe', 'left', false);  -- for the session, not the transaction
    PERFORM pg_advisory_lock(4242);
    EXECUTE 'LISTEN engine_probe';
    INSERT INTO write_probe VALUES (id, ok);
    RETURN id;
END $$;
"""
SESSION = (
    "SELECT coalesce(current_setting('engine.probe', true), '') AS setting,"
    " (SELECT count(*) FROM pg_listening_channels()) AS listens,"
    " pg_backend_pid() AS pid"
)


def _write(pool: object, id_: int, ok: bool) -> object:
    return database.run_write(
        pool,  # type: ignore[arg-type]
        "SELECT leave_state($1, $2) AS id",
        [id_, ok],
        lambda rows, _: rows[0]["id"],
        timeout_s=5.0,
        operation="INSERT",
        known_codes=frozenset(),
    )


def test_a_write_resets_its_session_with_its_commit_and_one_refused_at_commit_still_gets_it(
    db_url: str,
) -> None:
    """A template may leave session state (a setting, an advisory lock, a LISTEN): the next
    request on that connection never sees it. The reset goes in the COMMIT's round trip (three
    statements a write: BEGIN, the statement, reset and COMMIT); a COMMIT refused (a deferred
    check) rolls the reset back with the rest, and the pool's own reset runs on release."""

    async def scenario() -> tuple[list[object], list[int], int]:
        setup = await asyncpg.connect(db_url)
        await setup.execute(LEAVE_STATE)
        settings = Settings.from_env({}, pool_min_size=1, pool_max_size=1)
        pool = await database.create_pool(db_url, settings, read_only=False, name="engine-t")
        seen: list[object] = []
        trips: list[int] = []
        try:
            for id_, ok in ((1, True), (2, False), (3, True)):
                holder = pool._holders[0]
                before = holder._con._protocol.queries_count if holder._con else 0
                try:
                    seen.append(await _write(pool, id_, ok))
                except ApiError as error:
                    seen.append(error.code)
                trips.append(pool._holders[0]._con._protocol.queries_count - before)
                rows, _ = await database.run_statement(
                    pool, SESSION, [], timeout_s=5.0, operation=OPERATION, known_codes=frozenset()
                )
                locks = await setup.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1",
                    rows[0]["pid"],
                )
                seen.append((rows[0]["setting"], rows[0]["listens"], locks))
            return seen, trips, await setup.fetchval("SELECT count(*) FROM write_probe")
        finally:
            await pool.close()
            await setup.close()

    seen, trips, written = asyncio.run(scenario())
    clean = ("", 0, 0)
    assert seen == [1, clean, "CONSTRAINT_VIOLATION", clean, 3, clean], seen
    assert trips[0] == 3 and trips[2] == 3, trips  # the refused one pays the pool's reset
    assert written == 2
