"""A list without pagination is bounded by ENGINE_MAX_ROWS, and a long list is encoded in
slices (engine/shaping.py, engine/database.py fetch_rows).

Past the bound the answer is 500 RESULT_TOO_LARGE telling the admin to paginate or
stream, never the rows, and only one row past the bound is ever produced (a template
that raises at row bound + 2 is never run that far). Objects, scalars and paginated
lists are not affected. A write past the bound answers the same and is rolled back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
import pytest

from engine.shaping import LARGE_LIST, Shaper, encode, encode_slices
from engine.spec import Pagination, ResultSpec
from tests.engine_server import EngineClient
from tests.helpers import add_endpoint, add_template, assert_problem, serve
from tests.pg import DB

Maker = Callable[..., EngineClient]
BOUND = 20

# raises when row ``at`` is produced: shows how many rows the server was asked for
FAIL_AT = """
CREATE FUNCTION mr_fail_at(g int, at int) RETURNS int LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF g = at THEN
        RAISE EXCEPTION 'row % was produced', g;
    END IF;
    RETURN g;
END $$
"""
SERIES = [{"name": "n", "in": "query", "type": "integer", "default": BOUND}]


def test_a_list_past_the_bound_is_result_too_large_never_the_rows(
    db: DB, make_client: Maker
) -> None:
    add_endpoint(db, "/mr/series", "GET", "SELECT g FROM generate_series(1, $1) g", SERIES)
    client = serve(make_client, max_rows=BOUND)

    at = client.get("/mr/series", params={"n": BOUND})
    assert at.status_code == 200 and [r["g"] for r in at.json()] == list(range(1, BOUND + 1))
    over = client.get("/mr/series", params={"n": BOUND + 1})
    body = assert_problem(over, 500, "RESULT_TOO_LARGE")
    assert "paginate" in body["detail"] and "stream" in body["detail"]
    assert str(BOUND) in body["detail"]
    assert "retry-after" not in over.headers  # the row must change, not the timing
    assert b'"g"' not in over.content
    ru = client.get("/mr/series", params={"n": 10**6}, headers={"Accept-Language": "ru"})
    assert assert_problem(ru, 500, "RESULT_TOO_LARGE")["title"] != body["title"]


def test_only_one_row_past_the_bound_is_produced(db: DB, make_client: Maker) -> None:
    db.execute(FAIL_AT)
    add_endpoint(
        db,
        "/mr/failing",
        "GET",
        "SELECT mr_fail_at(g, $1) AS g FROM generate_series(1, 1000000) g",
        [{"name": "at", "in": "query", "type": "integer", "required": True}],
    )
    client = serve(make_client, max_rows=BOUND)

    # a million rows, and the one that raises lies past bound + 1: never produced
    assert_problem(client.get("/mr/failing", params={"at": BOUND + 2}), 500, "RESULT_TOO_LARGE")
    # the row one past the bound is produced (that is how the bound is known to be passed)
    assert_problem(client.get("/mr/failing", params={"at": BOUND + 1}), 500, "INTERNAL_ERROR")


def test_objects_and_scalars_answer_their_first_row_whatever_follows(
    db: DB, make_client: Maker
) -> None:
    db.execute(FAIL_AT)
    sql = "SELECT mr_fail_at(g, 2) AS g, 'x' AS t FROM generate_series(1, 100000) g"
    add_endpoint(db, "/mr/object", "GET", sql, [], {"shape": "object"})
    add_endpoint(db, "/mr/scalar", "GET", sql, [], {"shape": "scalar"})
    client = serve(make_client, max_rows=BOUND)

    assert client.get("/mr/object").json() == {"g": 1, "t": "x"}
    assert client.get("/mr/scalar").json() == 1


def test_a_paginated_list_keeps_its_max_limit(db: DB, make_client: Maker) -> None:
    add_endpoint(
        db,
        "/mr/pages",
        "GET",
        "SELECT g FROM generate_series(1, 500) g ORDER BY g",
        [],
        {"shape": "list", "paginate": {"limit": 5, "max_limit": 100}},
    )
    client = serve(make_client, max_rows=BOUND)

    page = client.get("/mr/pages", params={"limit": 100, "offset": 200})
    assert page.status_code == 200, page.text
    assert [r["g"] for r in page.json()["data"]] == list(range(201, 301))  # 100 > BOUND
    assert_problem(client.get("/mr/pages", params={"limit": 101}), 400, "INVALID_PARAMETER")


def test_a_write_past_the_bound_answers_result_too_large_and_is_rolled_back(
    db: DB, make_client: Maker
) -> None:
    db.execute("CREATE TABLE mr_rows (g int PRIMARY KEY)")
    add_endpoint(
        db,
        "/mr/rows",
        "POST",
        "INSERT INTO mr_rows SELECT g FROM generate_series($1::int, $2::int) g RETURNING g",
        [
            {"name": "from", "in": "body", "type": "integer", "required": True},
            {"name": "to", "in": "body", "type": "integer", "required": True},
        ],
        {"shape": "list"},
        target_table="mr_rows",
    )
    add_endpoint(
        db,
        "/mr/rows/count",
        "POST",
        "INSERT INTO mr_rows SELECT g FROM generate_series($1::int, $2::int) g RETURNING g",
        [
            {"name": "from", "in": "body", "type": "integer", "required": True},
            {"name": "to", "in": "body", "type": "integer", "required": True},
        ],
        {"shape": "scalar"},
        target_table="mr_rows",
    )
    client = serve(make_client, max_rows=BOUND)

    over = client.post("/mr/rows", json={"from": 1, "to": 5000})
    assert_problem(over, 500, "RESULT_TOO_LARGE")
    assert db.fetchval("SELECT count(*) FROM mr_rows") == 0  # answered 500: nothing committed
    at = client.post("/mr/rows", json={"from": 1, "to": BOUND})
    assert at.status_code == 201 and len(at.json()) == BOUND
    assert db.fetchval("SELECT count(*) FROM mr_rows") == BOUND
    # a write's scalar is not cut: its statement runs to its end and commits every row
    first = client.post("/mr/rows/count", json={"from": 1001, "to": 6000})
    assert first.status_code == 201 and first.json() == 1001
    assert db.fetchval("SELECT count(*) FROM mr_rows") == BOUND + 5000


def test_a_long_list_is_answered_whole_bare_and_in_an_envelope(db: DB, make_client: Maker) -> None:
    rows = 3 * LARGE_LIST + 7
    sql = (
        "SELECT g AS n, 'row ' || g AS name, (g / 4.0)::numeric(10,2) AS amount,"
        " CASE WHEN g % 2 = 0 THEN NULL ELSE true END AS flag FROM generate_series(1, $1) g"
    )
    add_endpoint(db, "/mr/long", "GET", sql, SERIES, {"shape": "list", "fields": {"n": "id"}})
    wrapped = add_endpoint(db, "/mr/wrapped", "GET", sql, SERIES)
    add_template(db, "success", mapping_id=wrapped)
    add_endpoint(db, "/mr/cached", "GET", sql, SERIES, cache_enabled=True, cache_ttl_seconds=60)
    client = serve(make_client)

    want = [
        {
            "id": g,
            "name": f"row {g}",
            "amount": g // 4 if g % 4 == 0 else float(Decimal(g) / 4),
            "flag": None if g % 2 == 0 else True,
        }
        for g in range(1, rows + 1)
    ]
    bare = client.get("/mr/long", params={"n": rows})
    assert bare.status_code == 200 and bare.json() == want
    assert bare.content.startswith(b'[{"id":1,"name":"row 1","amount":0.25,"flag":true},')
    body = client.get("/mr/wrapped", params={"n": rows}).json()
    assert body["meta"]["count"] == rows
    assert body["data"] == [{"n": w["id"], **{k: w[k] for k in ("name", "amount", "flag")}}
                            for w in want]  # fmt: skip
    miss = client.get("/mr/cached", params={"n": rows})
    hit = client.get("/mr/cached", params={"n": rows})
    assert (miss.headers["x-cache"], hit.headers["x-cache"]) == ("MISS", "HIT")
    assert hit.content == miss.content and len(hit.json()) == rows


# -- encoding in slices (pure) ------------------------------------------------------------


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"n{i}", "amount": Decimal(i) / 8, "none": None} for i in range(n)]


def _dicts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dict(r) for r in rows]


@pytest.mark.parametrize("n", [1, LARGE_LIST - 1, LARGE_LIST, LARGE_LIST + 1, 3 * LARGE_LIST])
def test_slices_encode_byte_for_byte_as_one_call(n: int) -> None:
    rows = _rows(n)
    got = asyncio.run(encode_slices(rows, _dicts))
    assert encode(got) == encode(rows)
    assert encode({"data": got, "x": 1}) == encode({"data": rows, "x": 1})


def test_a_long_list_gives_the_loop_back_while_it_encodes() -> None:
    """Another task runs between the slices: with one call it could run only after."""
    order: list[str] = []

    async def big() -> None:
        await encode_slices(_rows(4 * LARGE_LIST), _dicts)
        order.append("big done")

    async def small() -> None:
        order.append("small ran")

    async def both() -> None:
        first = asyncio.ensure_future(big())  # scheduled first: it starts first
        second = asyncio.ensure_future(small())
        await asyncio.gather(first, second)

    asyncio.run(both())
    assert order == ["small ran", "big done"]


def test_the_slices_path_is_taken_from_large_list_rows_on() -> None:
    shaper = Shaper(ResultSpec(shape="list"), "GET")
    short = asyncio.run(shaper.shape_read(_rows(LARGE_LIST - 1), max_rows=10_000))
    long = asyncio.run(shaper.shape_read(_rows(LARGE_LIST), max_rows=10_000))
    assert isinstance(short.payload, list)
    assert isinstance(long.payload, orjson.Fragment) and long.count == LARGE_LIST
    assert encode(long.payload) == encode(_rows(LARGE_LIST))


def test_fetch_limits_by_shape() -> None:
    def limit(result: ResultSpec, read: bool = True) -> int | None:
        return Shaper(result, "GET" if read else "POST").fetch_limit(100, read=read)

    assert limit(ResultSpec(shape="list")) == 101
    assert limit(ResultSpec(shape="list"), read=False) == 101
    assert limit(ResultSpec(shape="object")) == 1
    assert limit(ResultSpec(shape="scalar")) == 1
    assert limit(ResultSpec(shape="object"), read=False) is None
    assert limit(ResultSpec(shape="list", paginate=Pagination(limit=5, max_limit=10))) is None
