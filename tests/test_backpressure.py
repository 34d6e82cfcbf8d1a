"""Back-pressure with coded answers: a full pool is 503 DATABASE_BUSY after
ENGINE_POOL_TIMEOUT_S, a row's ``max_concurrent`` is 503 ENDPOINT_BUSY at once, and
every 503 and 429 says when to retry (``Retry-After``).

The pool is exhausted for real (slow statements holding every read connection),
never mocked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from engine.errors import ApiError, SpecError
from engine.recovery import EndpointGates, with_retry_after
from engine.spec import parse_row
from tests.engine_server import EngineClient
from tests.helpers import add_endpoint, add_error_code, assert_problem, poll, serve
from tests.pg import DB

SLOW = "SELECT pg_sleep(3) IS NULL AS slept"


def sleeping(db: DB, seconds: int = 3) -> int:
    """How many statements of this test's database are in pg_sleep(seconds) now."""
    return db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'engine-read' AND query LIKE $1",
        f"%pg_sleep({seconds})%",
    )


@contextmanager
def in_threads(calls: list[Callable[[], Any]]) -> Iterator[list[Any]]:
    """Run each call in a thread of its own; the block sees their results once joined."""
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except Exception as exc:  # reported by the test, not lost in the thread
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for t in threads:
        t.start()
    try:
        yield results
    finally:
        for t in threads:
            t.join(30)


def fresh_get(client: EngineClient, path: str) -> Callable[[], httpx.Response]:
    """A GET on a connection of its own (httpx clients are not shared between threads)."""

    def go() -> httpx.Response:
        with httpx.Client(base_url=str(client.base_url), timeout=30) as own:
            return own.get(path)

    return go


# ---------------------------------------------------------------------------
# Pure parts
# ---------------------------------------------------------------------------


def test_every_503_and_429_gets_retry_after_and_a_given_one_is_kept() -> None:
    assert with_retry_after(503, {})["Retry-After"] == "5"
    assert with_retry_after(429, {"X": "1"})["Retry-After"] == "5"
    assert with_retry_after(503, {"retry-after": "2"}) == {"retry-after": "2"}
    assert "Retry-After" not in with_retry_after(504, {})
    assert "Retry-After" not in with_retry_after(500, {})


def test_an_endpoint_gate_admits_its_limit_and_refuses_one_more_at_once() -> None:
    gates = EndpointGates()
    with gates.enter(7, 2), gates.enter(7, 2):
        assert gates.running(7) == 2
        with pytest.raises(ApiError) as refused, gates.enter(7, 2):
            pass
        assert refused.value.code == "ENDPOINT_BUSY"
        assert refused.value.headers["Retry-After"] == "1"
        with gates.enter(8, 1):  # another endpoint is not held back
            assert gates.running(8) == 1
        with gates.enter(7, None):  # no limit: not counted
            pass
    assert gates.running(7) == 0
    with pytest.raises(RuntimeError), gates.enter(7, 1):
        raise RuntimeError("the work failed")
    assert gates.running(7) == 0  # given back however the work ends


def test_a_row_s_max_concurrent_is_a_positive_integer_or_null() -> None:
    row = {
        "id": 1,
        "endpoint_path": "/x",
        "http_method": "GET",
        "service_name": "s",
        "database_operation": "SELECT",
        "query_template": "SELECT 1",
        "query_parameters": [],
        "result_mapping": {"shape": "list"},
    }
    assert parse_row(row).max_concurrent is None
    assert parse_row({**row, "max_concurrent": 3}).max_concurrent == 3
    for bad in (0, -2, True, "3", 1.5):
        with pytest.raises(SpecError, match="max_concurrent must be a positive integer"):
            parse_row({**row, "max_concurrent": bad})


# ---------------------------------------------------------------------------
# A full pool
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_full_pool_is_database_busy_within_the_timeout_while_health_stays_up(
    db: DB, make_client: Callable[..., EngineClient]
) -> None:
    add_endpoint(db, "/bp/slow", sql=SLOW, result={"shape": "scalar"})
    add_endpoint(db, "/bp/fast", sql="SELECT 1 AS one", result={"shape": "scalar"})
    client = serve(make_client, pool_min_size=1, pool_max_size=2, pool_timeout_s=0.5)
    assert client.get("/bp/fast").status_code == 200
    slow = fresh_get(client, "/bp/slow")
    with in_threads([slow, slow]) as results:
        poll(lambda: sleeping(db), lambda n: n == 2, "both read connections busy", 10)
        started = time.monotonic()
        busy = client.get("/bp/fast")
        waited = time.monotonic() - started
        body = assert_problem(busy, 503, "DATABASE_BUSY")
        assert int(busy.headers["Retry-After"]) >= 1
        assert waited < 3, waited  # the pool timeout (0.5 s), not the slow statements (3 s)
        assert "connection" in body["detail"]
        assert client.get("/health/live").status_code == 200
        ready = client.get("/health/ready")
        assert ready.status_code == 200, ready.text  # its probe has a connection of its own
    assert [r.status_code for r in results] == [200, 200], results
    assert client.get("/bp/fast").status_code == 200


# ---------------------------------------------------------------------------
# max_concurrent
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_max_concurrent_refuses_one_more_at_once_while_other_endpoints_answer(
    db: DB, make_client: Callable[..., EngineClient]
) -> None:
    add_endpoint(db, "/bp/slow", sql=SLOW, result={"shape": "scalar"}, max_concurrent=1)
    add_endpoint(db, "/bp/fast", sql="SELECT 1 AS one", result={"shape": "scalar"})
    client = serve(make_client, pool_max_size=4)
    with in_threads([fresh_get(client, "/bp/slow")]) as results:
        poll(lambda: sleeping(db), lambda n: n == 1, "the slow call running", 10)
        started = time.monotonic()
        second = client.get("/bp/slow")
        assert time.monotonic() - started < 2  # at once, not after the first call
        body = assert_problem(second, 503, "ENDPOINT_BUSY")
        assert second.headers["Retry-After"] == "1"
        assert "at most 1" in body["detail"]
        assert client.get("/bp/fast").json() == 1  # the pool still serves the others
        assert sleeping(db) == 1  # the refused call never reached the database
    assert results[0].status_code == 200, results
    # the slot is given back: the endpoint answers again
    assert client.get("/bp/fast").status_code == 200
    assert client.engine.services.gates.running(_id(db, "/bp/slow")) == 0


def _id(db: DB, path: str) -> int:
    return db.fetchval("SELECT id FROM api_endpoint_mappings WHERE endpoint_path = $1", path)


def test_max_concurrent_is_part_of_the_row_contract(db: DB, client: EngineClient) -> None:
    """The admin API accepts it (and refuses a bad one), the history records it, the
    catalogue refuses a row the database would not hold, and OpenAPI lists the 503."""
    admin = {"Authorization": "Bearer " + client.token(sub="alice", roles=("engine_admin",))}
    row = {
        "endpoint_path": "/bp/limited",
        "http_method": "GET",
        "service_name": "bp",
        "query_template": "SELECT 1 AS one",
        "result_mapping": {"shape": "scalar"},
        "requires_auth": False,
        "max_concurrent": 2,
    }
    created = client.post("/admin/v1/endpoints", json=row, headers=admin)
    assert created.status_code == 201, created.text
    mid = created.json()["id"]
    assert db.fetchval("SELECT max_concurrent FROM api_endpoint_mappings WHERE id = $1", mid) == 2
    recorded = db.fetchval(
        "SELECT definition -> 'mapping' ->> 'max_concurrent' FROM api_endpoint_history "
        "WHERE mapping_id = $1 ORDER BY version DESC LIMIT 1",
        mid,
    )
    assert recorded == "2"
    for bad in (0, -1, "two", 1.5, True):
        refused = client.patch(
            f"/admin/v1/endpoints/{mid}", json={"max_concurrent": bad}, headers=admin
        )
        body = assert_problem(refused, 400, "VALIDATION_ERROR")
        assert any(e.get("pointer") == "/max_concurrent" for e in body["errors"]), body
    unlimited = client.patch(
        f"/admin/v1/endpoints/{mid}", json={"max_concurrent": None}, headers=admin
    )
    assert unlimited.status_code == 200, unlimited.text
    assert (
        db.fetchval("SELECT max_concurrent FROM api_endpoint_mappings WHERE id = $1", mid) is None
    )
    back = client.patch(f"/admin/v1/endpoints/{mid}", json={"max_concurrent": 3}, headers=admin)
    assert back.status_code == 200, back.text
    assert client.wait_for("GET", "/bp/limited", 200).json() == 1

    def answers_503() -> dict[str, Any]:
        spec = client.get("/openapi.json").json()
        responses = spec["paths"]["/bp/limited"]["get"]["responses"]
        return spec["components"]["responses"][responses["503"]["$ref"].rsplit("/", 1)[1]]

    def codes(response: dict[str, Any]) -> set[str]:
        return set(response["content"]["application/problem+json"]["examples"])

    busy = poll(answers_503, lambda r: "ENDPOINT_BUSY" in codes(r), "version 3 in OpenAPI")
    assert {"DATABASE_BUSY", "DATABASE_CONNECTION_ERROR"} <= codes(busy)
    assert "Retry-After" in busy["headers"]


def test_every_503_and_429_a_row_can_cause_says_when_to_retry(
    db: DB, make_client: Callable[..., EngineClient]
) -> None:
    """A template raising a 503 code of the catalogue's own, and a rate limit."""
    add_error_code(db, "BP_MAINTENANCE", 503, "Down for maintenance")
    db.execute(
        "CREATE FUNCTION bp_down() RETURNS int LANGUAGE plpgsql STABLE AS "
        "$$ BEGIN RAISE EXCEPTION 'BP_MAINTENANCE'; END $$"
    )
    add_endpoint(db, "/bp/down", sql="SELECT bp_down() AS v", result={"shape": "scalar"})
    add_endpoint(db, "/bp/limited", sql="SELECT 1 AS v", rate_limit_per_minute=1)
    client = serve(make_client)
    down = client.get("/bp/down")
    assert_problem(down, 503, "BP_MAINTENANCE")
    assert down.headers["Retry-After"] == "5"
    assert client.get("/bp/limited").status_code == 200
    limited = client.get("/bp/limited")
    assert_problem(limited, 429, "RATE_LIMIT_EXCEEDED")
    assert int(limited.headers["Retry-After"]) >= 1
