"""Idempotency-Key on writes: replay, reuse with another request, a retry while running."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable

import asyncpg
import pytest

from engine.idempotency import purge_expired
from tests.engine_server import EngineClient
from tests.helpers import add_endpoint, assert_problem, serve
from tests.pg import DB


@pytest.fixture()
def orders(db: DB) -> DB:
    db.execute("CREATE TABLE i_orders (id serial PRIMARY KEY, item text NOT NULL, tenant int)")
    add_endpoint(
        db,
        "/i/orders",
        "POST",
        "INSERT INTO i_orders (item, tenant) SELECT $1, $3 FROM pg_sleep($2::float8) "
        "RETURNING id, item",
        [
            {"name": "item", "in": "body", "type": "string", "required": True},
            {"name": "pause", "in": "body", "type": "number", "default": 0},
            {"name": "tenant_id", "in": "auth", "type": "integer"},
        ],
        {"shape": "object", "status": 201},
        requires_auth=True,
    )
    return db


def count(db: DB) -> int:
    return db.fetchval("SELECT count(*) FROM i_orders")


def test_a_retry_with_the_same_key_replays_the_answer_without_writing_again(
    orders: DB, make_client: Callable[..., EngineClient]
) -> None:
    client = serve(make_client)
    headers = {**client.auth(sub="ann"), "Idempotency-Key": "order-1"}
    first = client.post("/i/orders", json={"item": "tea"}, headers=headers)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    again = client.post("/i/orders", json={"item": "tea"}, headers=headers)
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count(orders) == 1
    # the key is the caller's: another caller's same key is another request
    other = {**client.auth(sub="bob"), "Idempotency-Key": "order-1"}
    assert client.post("/i/orders", json={"item": "tea"}, headers=other).status_code == 201
    assert count(orders) == 2
    # without the header, every call writes
    assert client.post("/i/orders", json={"item": "tea"}, headers=client.auth()).status_code == 201
    assert count(orders) == 3
    # the same caller and body, but another bound claim value: another request
    other_tenant = {**client.auth(sub="ann", tenant=2), "Idempotency-Key": "order-1"}
    reused = client.post("/i/orders", json={"item": "tea"}, headers=other_tenant)
    assert_problem(reused, 422, "IDEMPOTENCY_KEY_REUSED")


def test_the_same_key_with_another_request_is_refused(
    orders: DB, make_client: Callable[..., EngineClient]
) -> None:
    client = serve(make_client)
    headers = {**client.auth(), "Idempotency-Key": '"order-2"'}
    assert client.post("/i/orders", json={"item": "tea"}, headers=headers).status_code == 201
    reused = client.post("/i/orders", json={"item": "coffee"}, headers=headers)
    assert_problem(reused, 422, "IDEMPOTENCY_KEY_REUSED")
    assert count(orders) == 1
    bad = client.post(
        "/i/orders", json={"item": "tea"}, headers={**client.auth(), "Idempotency-Key": "a b"}
    )
    assert_problem(bad, 400, "INVALID_PARAMETER")
    add_endpoint(
        orders,
        "/i/anonymous",
        "POST",
        "INSERT INTO i_orders (item) VALUES ($1) RETURNING id",
        [{"name": "item", "in": "body", "type": "string", "required": True}],
        {"shape": "object", "status": 201},
    )
    anonymous = client.wait_for(
        "POST", "/i/anonymous", 400, json={"item": "tea"}, headers={"Idempotency-Key": "anon-1"}
    )
    body = assert_problem(anonymous, 400, "INVALID_PARAMETER")
    assert "authenticated caller" in body["detail"]


def test_a_retry_while_the_first_is_running_is_409(
    orders: DB, make_client: Callable[..., EngineClient]
) -> None:
    client = serve(make_client)
    headers = {**client.auth(), "Idempotency-Key": "order-3"}
    body = {"item": "slow", "pause": 1.0}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(client.post, "/i/orders", json=body, headers=headers)
        # the second starts while the first holds the key
        deadline_wait = concurrent.futures.wait([first], timeout=0.4)
        assert not deadline_wait.done
        second = client.post("/i/orders", json=body, headers=headers)
        assert_problem(second, 409, "IDEMPOTENCY_KEY_IN_USE")
        assert first.result().status_code == 201
    replay = client.post("/i/orders", json=body, headers=headers)
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert count(orders) == 1


def test_a_failed_write_is_not_stored_and_expired_keys_are_purged(
    orders: DB, make_client: Callable[..., EngineClient]
) -> None:
    client = serve(make_client)
    headers = {**client.auth(), "Idempotency-Key": "order-4"}
    refused = client.post("/i/orders", json={"pause": 0}, headers=headers)
    assert_problem(refused, 400, "INVALID_PARAMETER")  # item is required
    assert client.post("/i/orders", json={"item": "tea"}, headers=headers).status_code == 201
    orders.execute("UPDATE engine_idempotency_keys SET expires_at = now() - interval '1 s'")

    async def purge() -> int:
        conn = await asyncpg.connect(orders.url)
        try:
            return await purge_expired(conn)
        finally:
            await conn.close()

    assert asyncio.run(purge()) == 1
    assert orders.fetchval("SELECT count(*) FROM engine_idempotency_keys") == 0
