"""A client that disconnects cancels its statement on the server (issue 11, item 4).

Real sockets closed while the engine runs the request's statement; the
cancellation is seen in ``pg_stat_activity``, the single pooled connection
serves the next request, a cancelled write leaves no row, and the request is
counted as abandoned in ``/metrics``.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.departure import Departure
from tests.engine_server import EngineClient
from tests.helpers import add_endpoint, add_sleep_endpoint, poll, serve
from tests.pg import DB

LONG_S = 30  # far longer than any bound below: only a cancellation ends it in time

ACTIVE_SLEEPS = (  # statements of the engine's sessions sleeping in pg_sleep (COMMIT too)
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND application_name = $1 AND state = 'active' AND wait_event = 'PgSleep'"
)


def active_sleeps(db: DB, application_name: str = "engine-read") -> int:
    return db.fetchval(ACTIVE_SLEEPS, application_name)


@contextmanager
def raw_request(client: EngineClient, head: str, body: bytes = b"") -> Iterator[socket.socket]:
    """A request sent on a socket of its own, which is closed (the client leaves) after."""
    sock = socket.create_connection(("127.0.0.1", client.engine.port), timeout=10)
    try:
        sock.sendall(head.encode() + body)
        yield sock
    finally:
        sock.close()


def get(path: str) -> str:
    return f"GET {path} HTTP/1.1\r\nHost: engine\r\n\r\n"


def abandoned_count(client: EngineClient, route: str) -> float:
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "engine_http_requests_total"
                and labels.get("route") == route
                and labels.get("status") == "abandoned"
            ):
                return sample.value
    return 0.0


@pytest.fixture()
def sleepy(db: DB, make_client: Any) -> EngineClient:
    """An engine with one connection per pool and a slow and a fast read."""
    add_sleep_endpoint(db, "/cancel/sleep")
    add_endpoint(db, "/cancel/fast", "GET", "SELECT 1 AS one", result={"shape": "scalar"})
    return serve(make_client, pool_max_size=1)


@pytest.mark.slow
def test_a_client_that_leaves_cancels_its_statement_and_the_connection_serves_the_next(
    db, sleepy, capfd
):
    assert sleepy.get("/cancel/fast").json() == 1
    with raw_request(sleepy, get(f"/cancel/sleep?s={LONG_S}")):
        poll(lambda: active_sleeps(db), lambda n: n == 1, "the slow statement running")
    # the socket is closed: the statement is cancelled on the server, not left to finish
    poll(lambda: active_sleeps(db), lambda n: n == 0, "the statement cancelled", timeout_s=5)
    started = time.monotonic()
    response = sleepy.get("/cancel/fast", timeout=10)  # the pool's single connection, clean
    assert response.status_code == 200 and response.json() == 1
    assert time.monotonic() - started < 3
    # and it still runs a statement that takes a while
    assert sleepy.get("/cancel/sleep", params={"s": 0.05}).json() == {"slept": False}
    # counted as abandoned, not as an answer
    poll(
        lambda: abandoned_count(sleepy, "/cancel/sleep"),
        lambda n: n == 1,
        "the abandoned request counted",
    )
    sleepy.engine.stop()  # the access log's last lines are written at stop
    lines = [
        orjson.loads(line)
        for line in capfd.readouterr().out.splitlines()
        if line.startswith('{"ts"') and '"/cancel/sleep"' in line
    ]
    left, stayed = lines
    # no answer was sent (status 0), the time in PostgreSQL until the cancel is counted
    assert (left["status"], left["abandoned"], left["db_ms"] > 0) == (0, True, True)
    assert stayed["status"] == 200 and "abandoned" not in stayed


@pytest.mark.slow
def test_ten_abandoned_calls_do_not_hold_the_pool(db, sleepy):
    sockets = [
        socket.create_connection(("127.0.0.1", sleepy.engine.port), timeout=10) for _ in range(10)
    ]
    try:
        for sock in sockets:
            sock.sendall(get(f"/cancel/sleep?s={LONG_S}").encode())
        # one runs on the pool's single connection, nine wait for it
        poll(lambda: active_sleeps(db), lambda n: n == 1, "a slow statement running")
    finally:
        for sock in sockets:
            sock.close()
    started = time.monotonic()
    response = sleepy.get("/cancel/fast", timeout=20)
    assert response.status_code == 200 and response.json() == 1
    assert time.monotonic() - started < 5  # generous: without cancellation 300 s
    poll(lambda: active_sleeps(db), lambda n: n == 0, "every statement cancelled")
    poll(
        lambda: abandoned_count(sleepy, "/cancel/sleep"),
        lambda n: n == 10,
        "the ten abandoned requests counted",
    )


def add_slow_write(db: DB) -> None:
    """POST /cancel/write: inserts a row first, then sleeps: only a rollback removes it."""
    db.execute("CREATE TABLE cancel_probe (id serial PRIMARY KEY, note text NOT NULL)")
    add_endpoint(
        db,
        "/cancel/write",
        "POST",
        "WITH added AS (INSERT INTO cancel_probe (note) VALUES ($1) RETURNING id) "
        "SELECT id FROM added, pg_sleep($2::float8)",
        [
            {"name": "note", "in": "body", "type": "string"},
            {"name": "s", "in": "body", "type": "number"},
        ],
        {"shape": "object"},
    )


@pytest.mark.slow
def test_a_cancelled_write_leaves_no_row_and_the_next_write_commits(db, make_client):
    add_slow_write(db)
    client = serve(make_client, pool_max_size=1)
    body = orjson.dumps({"note": "abandoned", "s": LONG_S})
    head = (
        "POST /cancel/write HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    with raw_request(client, head, body):
        poll(lambda: active_sleeps(db, "engine-write"), lambda n: n == 1, "the write running")
    poll(lambda: active_sleeps(db, "engine-write"), lambda n: n == 0, "the write cancelled")
    assert db.fetchval("SELECT count(*) FROM cancel_probe") == 0
    response = client.post("/cancel/write", json={"note": "kept", "s": 0}, timeout=10)
    assert response.status_code in (200, 201), response.text
    assert db.fetchval("SELECT array_agg(note) FROM cancel_probe") == ["kept"]
    poll(
        lambda: abandoned_count(client, "/cancel/write"),
        lambda n: n == 1,
        "the abandoned write counted",
    )
    client.engine.flush_errors()
    assert db.fetchval("SELECT count(*) FROM api_error_logs") == 0  # nothing to report


@pytest.mark.slow
def test_a_write_cancelled_during_its_commit_is_only_abandoned(db, make_client):
    """COMMIT in flight when the client leaves: cancelled on the server (a deferred trigger
    keeps it running), rolled back, and reported as nothing but abandoned."""
    db.execute("CREATE TABLE cancel_probe (id serial PRIMARY KEY, note text NOT NULL)")
    db.execute(
        "CREATE FUNCTION cancel_probe_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN IF NEW.note = 'slow' THEN PERFORM pg_sleep({LONG_S}); END IF; RETURN NULL; END $$"
    )
    db.execute(
        "CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON cancel_probe "
        "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cancel_probe_at_commit()"
    )
    add_endpoint(
        db,
        "/cancel/commit",
        "POST",
        "INSERT INTO cancel_probe (note) VALUES ($1) RETURNING id",
        [{"name": "note", "in": "body", "type": "string"}],
        {"shape": "object"},
    )
    client = serve(make_client, pool_max_size=1)
    body = orjson.dumps({"note": "slow"})
    head = (
        "POST /cancel/commit HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    committing = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'engine-write' AND state = 'active' AND query ~* 'commit;?\\s*$'"
    )
    with raw_request(client, head, body):
        poll(lambda: db.fetchval(committing), lambda n: n == 1, "the COMMIT running")
    poll(lambda: active_sleeps(db, "engine-write"), lambda n: n == 0, "the COMMIT cancelled")
    assert db.fetchval("SELECT count(*) FROM cancel_probe") == 0
    response = client.post("/cancel/commit", json={"note": "kept"}, timeout=10)
    assert response.status_code in (200, 201), response.text
    assert db.fetchval("SELECT array_agg(note) FROM cancel_probe") == ["kept"]
    poll(
        lambda: abandoned_count(client, "/cancel/commit"),
        lambda n: n == 1,
        "the abandoned write counted",
    )
    client.engine.flush_errors()
    assert db.fetchval("SELECT count(*) FROM api_error_logs") == 0  # not COMMIT_OUTCOME_UNKNOWN


@pytest.mark.slow
def test_a_client_that_stays_gets_its_answer(db, sleepy):
    """The watcher never takes the body or the answer from a request whose client waits."""
    assert sleepy.get("/cancel/sleep", params={"s": 0.3}).json() == {"slept": False}
    assert abandoned_count(sleepy, "/cancel/sleep") == 0


@pytest.mark.slow
def test_a_body_sent_slowly_is_read_whole_and_a_client_that_stays_gets_its_write(db, make_client):
    """The watch is armed while the body is still arriving: it waits for the last chunk, so
    the flow reads the whole body, and a client that waits gets the committed answer."""
    add_slow_write(db)
    client = serve(make_client, pool_max_size=1)
    body = orjson.dumps({"note": "slowly sent", "s": 0.3})
    head = (
        "POST /cancel/write HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    with raw_request(client, head) as sock:
        half = len(body) // 2
        for piece in (body[:half], body[half:]):
            sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            time.sleep(0.3)  # the client's own slowness (the fault), longer than the arming
        sock.sendall(b"0\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
    assert answer.startswith((b"HTTP/1.1 200", b"HTTP/1.1 201")), answer
    assert db.fetchval("SELECT array_agg(note) FROM cancel_probe") == ["slowly sent"]
    assert abandoned_count(client, "/cancel/write") == 0


@pytest.mark.slow
def test_a_client_that_leaves_after_a_slow_body_cancels_its_write(db, make_client):
    add_slow_write(db)
    client = serve(make_client, pool_max_size=1)
    body = orjson.dumps({"note": "abandoned", "s": LONG_S})
    head = (
        "POST /cancel/write HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    with raw_request(client, head) as sock:
        sock.sendall(f"{len(body):x}\r\n".encode() + body + b"\r\n")
        time.sleep(0.3)  # the client's own slowness: the watch is armed before the body ends
        sock.sendall(b"0\r\n\r\n")
        poll(lambda: active_sleeps(db, "engine-write"), lambda n: n == 1, "the write running")
    poll(lambda: active_sleeps(db, "engine-write"), lambda n: n == 0, "the write cancelled")
    assert db.fetchval("SELECT count(*) FROM cancel_probe") == 0
    poll(
        lambda: abandoned_count(client, "/cancel/write"),
        lambda n: n == 1,
        "the abandoned write counted",
    )


def test_only_the_clients_own_departure_is_absorbed_never_a_shutdown():
    """The flow's task is cancelled by its watcher (absorbed: the request ends quietly) or by
    anyone else, a shutdown (re-raised: the task goes on being cancelled), or by both."""

    async def go() -> list[bool]:
        gone = asyncio.Event()

        async def receive() -> dict[str, Any]:  # the server's receive: the client may leave
            await gone.wait()
            return {"type": "http.disconnect"}

        async def flow() -> bool:
            departure = Departure({"type": "http", "headers": []}, receive)
            departure.arm()  # as the sweep does for a request still running
            try:
                await asyncio.sleep(30)  # the statement
            except asyncio.CancelledError:
                return departure.absorb()
            finally:
                departure.stop()
            return False

        seen = []
        for client_leaves, shutdown in ((True, False), (False, True), (True, True)):
            gone.clear()
            task = asyncio.create_task(flow())
            await asyncio.sleep(0.01)  # the flow and its watcher are waiting
            if client_leaves:
                gone.set()
            if shutdown:
                task.cancel()
            seen.append(await task)
        return seen

    assert asyncio.run(go()) == [True, False, False]


def test_under_the_engines_protocol_a_departure_is_told_not_watched():
    """engine/http1.py calls the departure when the connection is lost: no watcher task, no
    sweep; a client that leaves cancels the flow (absorbed), one that stays clears the call."""
    from engine.departure import _sweeper
    from engine.http1 import Exchange

    async def go() -> list[Any]:
        seen: list[Any] = []
        for leaves in (True, False):
            # all a departure asks of the protocol: its loop
            protocol = SimpleNamespace(loop=asyncio.get_running_loop())
            scope = {"type": "http", "method": "GET", "headers": []}
            exchange = Exchange(protocol, scope, True, False)  # type: ignore[arg-type]

            async def flow(exchange: Exchange = exchange, leaves: bool = leaves) -> bool:
                departure = Departure(exchange.scope, exchange.receive)
                seen.append((departure.direct, departure not in _sweeper()._young))
                try:
                    await asyncio.sleep(30 if leaves else 0)  # the statement
                except asyncio.CancelledError:
                    return departure.absorb()
                finally:
                    departure.stop()
                return False

            task = asyncio.create_task(flow())
            await asyncio.sleep(0.01)
            if leaves:
                assert exchange.on_lost is not None
                exchange.on_lost()  # as connection_lost calls it
            seen.append(await task)
            seen.append(exchange.on_lost is None)
        return seen

    assert asyncio.run(go()) == [(True, True), True, True, (True, True), False, True]
