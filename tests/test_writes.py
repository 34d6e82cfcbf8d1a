"""A write answers 2xx exactly when it committed (real faults: terminated backends, a
backend killed during COMMIT, a result the engine cannot decode)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable

import asyncpg
import pytest

from engine.database import create_pool, release
from engine.settings import Settings
from tests.engine_server import EngineClient
from tests.helpers import add_endpoint, assert_problem, serve
from tests.pg import DB

BODY = [{"name": "token", "in": "body", "type": "string", "required": True}]


@pytest.fixture()
def ledger(db: DB) -> DB:
    db.execute(
        "CREATE TABLE w_ledger (id serial PRIMARY KEY, token text UNIQUE NOT NULL, "
        "due date NOT NULL DEFAULT current_date)"
    )
    add_endpoint(
        db,
        "/w/ledger",
        "POST",
        "INSERT INTO w_ledger (token) VALUES ($1) RETURNING id, token",
        BODY,
        {"shape": "object", "status": 201},
        target_table="w_ledger",
    )
    add_endpoint(
        db,
        "/w/loans",
        "POST",
        # a json value nested deeper than the encoder goes (orjson: 254 levels) cannot be
        # answered: the write must not stay
        "INSERT INTO w_ledger (token, due) VALUES ($1, current_date + $2::int) "
        "RETURNING id, CASE WHEN $2 > 1000 THEN (repeat('[', 300) || repeat(']', 300))::json "
        "END AS odd",
        [*BODY, {"name": "days", "in": "body", "type": "integer", "required": True}],
        {"shape": "object", "status": 201},
    )
    return db


def test_a_result_that_cannot_be_answered_rolls_the_write_back(
    ledger: DB, make_client: Callable[..., EngineClient]
) -> None:
    client = serve(make_client)
    response = client.post("/w/loans", json={"token": "far", "days": 5000})
    assert_problem(response, 500, "INTERNAL_ERROR")
    assert "nothing was written" in response.json()["detail"]
    assert ledger.fetchval("SELECT count(*) FROM w_ledger") == 0
    ok = client.post("/w/loans", json={"token": "near", "days": 3})
    assert ok.status_code == 201
    assert ledger.fetchval("SELECT count(*) FROM w_ledger") == 1


def test_a_connection_lost_during_commit_says_the_outcome_is_unknown(
    ledger: DB, make_client: Callable[..., EngineClient]
) -> None:
    # a deferred constraint trigger runs at COMMIT: there it kills its own backend
    ledger.execute(
        """
        CREATE FUNCTION w_die() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.token = 'doomed' THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF;
            RETURN NULL;
        END $$;
        CREATE CONSTRAINT TRIGGER w_die AFTER INSERT ON w_ledger
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION w_die();
        """
    )
    client = serve(make_client)
    response = client.post("/w/ledger", json={"token": "doomed"})
    assert_problem(response, 503, "COMMIT_OUTCOME_UNKNOWN")
    assert response.headers["Retry-After"].isdigit()
    assert ledger.fetchval("SELECT count(*) FROM w_ledger WHERE token = 'doomed'") == 0
    assert client.post("/w/ledger", json={"token": "fine"}).status_code == 201


def test_every_answer_agrees_with_the_database_while_backends_are_terminated(
    ledger: DB, make_client: Callable[..., EngineClient]
) -> None:
    client = serve(make_client)
    stop = threading.Event()

    def killer() -> None:
        while not stop.is_set():
            ledger.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'engine-write' AND datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
            stop.wait(0.03)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    answers: dict[str, tuple[int, str | None]] = {}
    try:
        for _ in range(60):
            token = uuid.uuid4().hex
            response = client.post("/w/ledger", json={"token": token})
            code = None if response.status_code < 400 else response.json()["code"]
            answers[token] = (response.status_code, code)
    finally:
        stop.set()
        thread.join(10)
    stored = {r["token"] for r in ledger.fetch("SELECT token FROM w_ledger")}
    for token, (status, code) in answers.items():
        assert status != 500, code
        if status == 201:
            assert token in stored, "answered 201 but not committed"
        elif code != "COMMIT_OUTCOME_UNKNOWN":
            assert token not in stored, f"answered {status} {code} but committed"
    assert any(status == 201 for status, _ in answers.values())


def test_release_never_raises_for_a_connection_whose_backend_died(db: DB) -> None:
    async def go() -> None:
        pool = await create_pool(db.url, Settings(), read_only=False, name="engine-test-release")
        try:
            conn = await pool.acquire()
            pid = conn.get_server_pid()
            killer = await asyncpg.connect(db.url)
            await killer.execute("SELECT pg_terminate_backend($1)", pid)
            await killer.close()
            await asyncio.sleep(0.2)
            await release(pool, conn)  # must not raise
            async with pool.acquire() as fresh:  # and the pool still works
                assert await fresh.fetchval("SELECT 1") == 1
        finally:
            await pool.close()

    asyncio.run(go())
