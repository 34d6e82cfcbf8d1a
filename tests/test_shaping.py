"""Shaping answers, over real HTTP against real PostgreSQL.

``result_mapping`` (shape list, object, scalar, none, stream; field renames;
status; pagination), ``api_response_templates`` (success, paginated and error
envelopes, per endpoint or for every endpoint) and the JSON encoding of
PostgreSQL types. Each test publishes its own endpoints under ``/s/...``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Callable
from decimal import Decimal

import orjson
import pytest

from engine import shaping
from tests.engine_server import EngineClient
from tests.helpers import (
    add_endpoint,
    add_error_code,
    add_template,
    assert_problem,
    error_for,
    problems_of,
    serve,
)
from tests.pg import DB

Maker = Callable[..., EngineClient]

WIDGETS = """
CREATE TABLE s_widgets (
    widget_id   int PRIMARY KEY,
    widget_name text NOT NULL,
    price       numeric(10, 2),
    tags        text[]
);
INSERT INTO s_widgets VALUES
    (1, 'bolt', 0.10, '{a,b}'),
    (2, 'nut', 0.20, '{}'),
    (3, 'gear', 12.50, NULL),
    (4, 'cog', NULL, '{c}'),
    (5, 'axle', 99.99, '{d,e}');
"""
ID = [{"name": "id", "in": "path", "type": "integer"}]
ISO_MS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def widgets(db: DB) -> None:
    db.execute(WIDGETS)


def names(rows: list[dict[str, object]], key: str = "widget_name") -> list[object]:
    return [r[key] for r in rows]


# -- shapes ------------------------------------------------------------------------------


def test_list_shape_answers_an_array_of_objects(db: DB, make_client: Maker) -> None:
    widgets(db)
    add_endpoint(
        db,
        "/s/widgets",
        "GET",
        "SELECT widget_id, widget_name FROM s_widgets WHERE widget_id >= $1 ORDER BY widget_id",
        [{"name": "from", "in": "query", "type": "integer", "default": 1}],
        {"shape": "list"},
    )
    client = serve(make_client)

    r = client.get("/s/widgets")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == [
        {"widget_id": 1, "widget_name": "bolt"},
        {"widget_id": 2, "widget_name": "nut"},
        {"widget_id": 3, "widget_name": "gear"},
        {"widget_id": 4, "widget_name": "cog"},
        {"widget_id": 5, "widget_name": "axle"},
    ]
    assert names(client.get("/s/widgets", params={"from": 4}).json()) == ["cog", "axle"]
    r = client.get("/s/widgets", params={"from": 99})
    assert r.status_code == 200
    assert r.content == b"[]"


def test_object_shape_and_its_not_found_code(db: DB, make_client: Maker) -> None:
    widgets(db)
    add_error_code(db, "WIDGET_NOT_FOUND", 404, "Widget not found")
    sql = "SELECT widget_id, widget_name FROM s_widgets WHERE widget_id = $1"
    add_endpoint(
        db, "/s/widgets/{id}", "GET", sql, ID, {"shape": "object", "not_found": "WIDGET_NOT_FOUND"}
    )
    add_endpoint(db, "/s/plain/{id}", "GET", sql, ID, {"shape": "object"})
    unknown = add_endpoint(
        db, "/s/typo/{id}", "GET", sql, ID, {"shape": "object", "not_found": "NO_SUCH_CODE"}
    )
    client = serve(make_client)

    assert client.get("/s/widgets/3").json() == {"widget_id": 3, "widget_name": "gear"}
    body = assert_problem(client.get("/s/widgets/999"), 404, "WIDGET_NOT_FOUND")
    assert body["title"] == "Widget not found"
    assert body["instance"] == "/s/widgets/999"
    assert_problem(client.get("/s/plain/999"), 404, "RESOURCE_NOT_FOUND")
    # a not_found naming no error code is a row that cannot work: reported, not served
    assert_problem(client.get("/s/typo/1"), 503, "ENDPOINT_UNAVAILABLE")
    assert "NO_SUCH_CODE" in problems_of(client, unknown)[0]


def test_object_shape_answers_only_the_first_row(db: DB, make_client: Maker) -> None:
    widgets(db)
    add_endpoint(
        db,
        "/s/cheapest",
        "GET",
        "SELECT widget_name FROM s_widgets WHERE price IS NOT NULL ORDER BY price",
        [],
        {"shape": "object"},
    )
    client = serve(make_client)
    assert client.get("/s/cheapest").json() == {"widget_name": "bolt"}


def test_scalar_shape_answers_a_bare_value(db: DB, make_client: Maker) -> None:
    widgets(db)
    add_error_code(db, "WIDGET_NOT_FOUND", 404, "Widget not found")
    add_endpoint(db, "/s/count", "GET", "SELECT count(*) FROM s_widgets", [], {"shape": "scalar"})
    name_sql = "SELECT widget_name FROM s_widgets WHERE widget_id = $1"
    add_endpoint(db, "/s/name/{id}", "GET", name_sql, ID, {"shape": "scalar"})
    add_endpoint(
        db,
        "/s/strict-name/{id}",
        "GET",
        name_sql,
        ID,
        {"shape": "scalar", "not_found": "WIDGET_NOT_FOUND"},
    )
    add_endpoint(
        db,
        "/s/summary",
        "GET",
        "SELECT jsonb_build_object('n', count(*), 'names', jsonb_agg(widget_name ORDER BY widget_id))"
        " FROM s_widgets",
        [],
        {"shape": "scalar"},
    )
    db.execute("CREATE TABLE s_log (n int)")
    add_endpoint(
        db,
        "/s/log",
        "POST",
        "INSERT INTO s_log VALUES ($1) RETURNING n * 2",
        [{"name": "n", "in": "body", "type": "integer", "required": True}],
        {"shape": "scalar"},
    )
    client = serve(make_client)

    r = client.get("/s/count")
    assert (r.status_code, r.content) == (200, b"5")
    assert client.get("/s/name/2").content == b'"nut"'
    r = client.get("/s/name/99")
    assert (r.status_code, r.content) == (200, b"null")
    assert_problem(client.get("/s/strict-name/99"), 404, "WIDGET_NOT_FOUND")
    assert client.get("/s/summary").json() == {
        "n": 5,
        "names": ["bolt", "nut", "gear", "cog", "axle"],
    }
    r = client.post("/s/log", json={"n": 21})
    assert (r.status_code, r.json()) == (201, 42)


def test_none_shape_answers_no_body(db: DB, make_client: Maker) -> None:
    widgets(db)
    add_error_code(db, "WIDGET_NOT_FOUND", 404, "Widget not found")
    add_endpoint(
        db,
        "/s/widgets/{id}",
        "DELETE",
        "DELETE FROM s_widgets WHERE widget_id = $1",
        ID,
        {"shape": "none", "not_found": "WIDGET_NOT_FOUND"},
        database_operation="DELETE",
    )
    add_endpoint(
        db,
        "/s/widgets/{id}",
        "PUT",
        "UPDATE s_widgets SET widget_name = $2 WHERE widget_id = $1",
        [*ID, {"name": "name", "in": "body", "type": "string", "required": True}],
        {"shape": "none"},
    )
    add_endpoint(
        db,
        "/s/widgets",
        "POST",
        "INSERT INTO s_widgets (widget_id, widget_name) VALUES ($1, 'new')",
        [{"name": "id", "in": "body", "type": "integer", "required": True}],
        {"shape": "none"},
    )
    add_endpoint(
        db,
        "/s/jobs",
        "POST",
        "UPDATE s_widgets SET price = price WHERE widget_id = $1",
        [{"name": "id", "in": "body", "type": "integer", "required": True}],
        {"shape": "none", "status": 202},
    )
    client = serve(make_client)

    r = client.delete("/s/widgets/1")
    assert (r.status_code, r.content) == (204, b"")
    assert db.fetchval("SELECT count(*) FROM s_widgets WHERE widget_id = 1") == 0
    # nothing deleted and a not_found code: 404, not a silent 204
    assert_problem(client.delete("/s/widgets/1"), 404, "WIDGET_NOT_FOUND")

    r = client.put("/s/widgets/2", json={"name": "renamed"})
    assert (r.status_code, r.content) == (204, b"")
    # without a not_found code, zero rows changed is still a success
    assert client.put("/s/widgets/99", json={"name": "x"}).status_code == 204
    assert db.fetchval("SELECT widget_name FROM s_widgets WHERE widget_id = 2") == "renamed"

    r = client.post("/s/widgets", json={"id": 10})
    assert (r.status_code, r.content) == (204, b"")
    r = client.post("/s/jobs", json={"id": 3})
    assert (r.status_code, r.content) == (202, b"")


def test_fields_rename_columns(db: DB, make_client: Maker) -> None:
    widgets(db)
    fields = {"widget_id": "id", "widget_name": "name"}
    sql = "SELECT widget_id, widget_name, price FROM s_widgets"
    add_endpoint(
        db, "/s/renamed", "GET", sql + " ORDER BY widget_id LIMIT 2", [], {"fields": fields}
    )
    add_endpoint(
        db,
        "/s/renamed/{id}",
        "GET",
        sql + " WHERE widget_id = $1",
        ID,
        {"shape": "object", "fields": {"widget_name": "displayName", "not_a_column": "x"}},
    )
    client = serve(make_client)

    assert client.get("/s/renamed").json() == [
        {"id": 1, "name": "bolt", "price": 0.10},
        {"id": 2, "name": "nut", "price": 0.20},
    ]
    assert client.get("/s/renamed/3").json() == {
        "widget_id": 3,
        "displayName": "gear",
        "price": 12.5,
    }


def test_status_codes(db: DB, make_client: Maker) -> None:
    db.execute("CREATE TABLE s_jobs (id serial PRIMARY KEY, kind text)")
    body = [{"name": "kind", "in": "body", "type": "string", "required": True}]
    insert = "INSERT INTO s_jobs (kind) VALUES ($1) RETURNING id, kind"
    add_endpoint(db, "/s/created", "POST", insert, body, {"shape": "object"})
    add_endpoint(db, "/s/accepted", "POST", insert, body, {"shape": "object", "status": 202})
    add_endpoint(db, "/s/listed", "POST", insert, body, {"shape": "list"})
    add_endpoint(
        db,
        "/s/jobs/{id}",
        "PUT",
        "UPDATE s_jobs SET kind = $2 WHERE id = $1 RETURNING id, kind",
        [*ID, *body],
        {"shape": "object"},
    )
    add_endpoint(db, "/s/partial", "GET", "SELECT 1 AS one", [], {"shape": "object", "status": 203})
    client = serve(make_client)

    r = client.post("/s/created", json={"kind": "a"})
    assert (r.status_code, r.json()) == (201, {"id": 1, "kind": "a"})
    r = client.post("/s/accepted", json={"kind": "b"})
    assert (r.status_code, r.json()) == (202, {"id": 2, "kind": "b"})
    r = client.post("/s/listed", json={"kind": "c"})
    assert (r.status_code, r.json()) == (201, [{"id": 3, "kind": "c"}])
    r = client.put("/s/jobs/1", json={"kind": "z"})
    assert (r.status_code, r.json()) == (200, {"id": 1, "kind": "z"})
    assert client.get("/s/partial").status_code == 203


# -- pagination --------------------------------------------------------------------------


def test_pagination(db: DB, make_client: Maker) -> None:
    widgets(db)
    add_endpoint(
        db,
        "/s/pages",
        "GET",
        "SELECT widget_id, widget_name FROM s_widgets WHERE widget_id >= $1 ORDER BY widget_id",
        [{"name": "from", "in": "query", "type": "integer", "default": 1}],
        {"shape": "list", "paginate": {"limit": 2, "max_limit": 3}, "fields": {"widget_id": "id"}},
    )
    client = serve(make_client)

    body = client.get("/s/pages").json()
    assert body == {
        "data": [{"id": 1, "widget_name": "bolt"}, {"id": 2, "widget_name": "nut"}],
        "pagination": {
            "limit": 2,
            "offset": 0,
            "count": 2,
            "has_more": True,
            "next_offset": 2,
            "next": "/s/pages?offset=2",
            "prev": None,
        },
    }
    body = client.get("/s/pages", params={"offset": 2}).json()
    assert names(body["data"]) == ["gear", "cog"]
    assert body["pagination"]["next_offset"] == 4
    body = client.get("/s/pages", params={"limit": 3, "offset": 3}).json()
    assert names(body["data"]) == ["cog", "axle"]
    assert body["pagination"] == {
        "limit": 3,
        "offset": 3,
        "count": 2,
        "has_more": False,
        "next_offset": None,
        "next": None,
        "prev": "/s/pages?limit=3&offset=0",
    }
    # exactly a full last page: no more
    body = client.get("/s/pages", params={"limit": 3, "offset": 2}).json()
    assert body["pagination"]["has_more"] is False
    assert body["pagination"]["count"] == 3
    # the endpoint's own parameters still apply under pagination
    body = client.get("/s/pages", params={"from": 5}).json()
    assert names(body["data"]) == ["axle"]
    body = client.get("/s/pages", params={"offset": 50}).json()
    assert body["data"] == []
    assert body["pagination"]["has_more"] is False

    for params, bad in (
        ({"limit": 4}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": "two"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": [1, 2]}, "offset"),  # a repeated scalar is never silently the last one
    ):
        body = assert_problem(client.get("/s/pages", params=params), 400, "INVALID_PARAMETER")
        assert error_for(body, "parameter", bad)["in"] == "query"
    body = assert_problem(
        client.get("/s/pages", params={"limit": 9, "offset": "x"}), 400, "INVALID_PARAMETER"
    )
    assert sorted(e["parameter"] for e in body["errors"]) == ["limit", "offset"]
    assert "3" in error_for(body, "parameter", "limit")["message"]


# -- streams -----------------------------------------------------------------------------


def test_stream_ndjson(db: DB, make_client: Maker) -> None:
    add_endpoint(
        db,
        "/s/export.ndjson",
        "GET",
        "SELECT g AS n, 'row ' || g AS label, (g % 2 = 0) AS even, g / 4.0 AS q"
        " FROM generate_series(1, $1) g",
        [{"name": "rows", "in": "query", "type": "integer", "default": 1203}],
        {"shape": "stream", "format": "ndjson", "fields": {"n": "number"}},
    )
    client = serve(make_client)

    r = client.get("/s/export.ndjson")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-ndjson"
    assert r.headers["x-request-id"]
    lines = r.content.split(b"\n")
    assert lines[-1] == b""  # every record ends with a newline
    records = [orjson.loads(line) for line in lines[:-1]]
    assert len(records) == 1203
    assert records[0] == {"number": 1, "label": "row 1", "even": False, "q": 0.25}
    assert records[-1]["number"] == 1203
    assert [rec["number"] for rec in records] == list(range(1, 1204))

    r = client.get("/s/export.ndjson", params={"rows": 0})
    assert (r.status_code, r.content) == (200, b"")
    body = assert_problem(
        client.get("/s/export.ndjson", params={"rows": "x"}), 400, "INVALID_PARAMETER"
    )
    assert body["errors"][0]["parameter"] == "rows"


def test_stream_csv(db: DB, make_client: Maker) -> None:
    widgets(db)
    add_endpoint(
        db,
        "/s/export.csv",
        "GET",
        "SELECT widget_id, widget_name || CASE WHEN widget_id = 2 THEN ', \"big\"' ELSE '' END"
        " AS widget_name, price, tags FROM s_widgets ORDER BY widget_id",
        [],
        {"shape": "stream", "format": "csv", "fields": {"widget_id": "id", "widget_name": "name"}},
    )
    client = serve(make_client)

    r = client.get("/s/export.csv")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["id", "name", "price", "tags"]
    assert len(rows) == 6
    assert rows[1][:3] == ["1", "bolt", "0.10"]
    assert rows[2][1] == 'nut, "big"'  # quoted, not split
    assert rows[4][2] == ""  # NULL is an empty cell


# -- response templates ------------------------------------------------------------------


def test_success_template_wraps_one_endpoint(db: DB, make_client: Maker) -> None:
    widgets(db)
    sql = "SELECT widget_id, widget_name FROM s_widgets WHERE widget_id <= 2 ORDER BY widget_id"
    wrapped = add_endpoint(db, "/s/wrapped", "GET", sql)
    add_endpoint(db, "/s/bare", "GET", sql)
    add_template(
        db,
        "success",
        mapping_id=wrapped,
        headers={"Cache-Control": "no-store", "X-Api-Version": "2"},
    )
    client = serve(make_client)

    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    r = client.get("/s/wrapped")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"data", "meta", "timestamp"}
    assert body["data"] == [
        {"widget_id": 1, "widget_name": "bolt"},
        {"widget_id": 2, "widget_name": "nut"},
    ]
    assert body["meta"] == {
        "request_id": r.headers["x-request-id"],
        "endpoint": "GET /s/wrapped",
        "count": 2,
    }
    assert ISO_MS.fullmatch(body["timestamp"])
    stamp = dt.datetime.fromisoformat(body["timestamp"])
    assert before < stamp < dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-api-version"] == "2"

    # the caller's request id is the one in the envelope
    r = client.get("/s/wrapped", headers={"X-Request-ID": "req-42"})
    assert r.json()["meta"]["request_id"] == "req-42"
    assert r.headers["x-request-id"] == "req-42"

    r = client.get("/s/bare")
    assert isinstance(r.json(), list)
    assert "x-api-version" not in r.headers


def test_template_flags_drop_metadata_and_timestamps(db: DB, make_client: Maker) -> None:
    scalar = {"shape": "scalar"}
    no_meta = add_endpoint(db, "/s/no-meta", "GET", "SELECT 1", [], scalar)
    no_time = add_endpoint(db, "/s/no-time", "GET", "SELECT 2", [], scalar)
    neither = add_endpoint(db, "/s/neither", "GET", "SELECT 3", [], scalar)
    nulls = add_endpoint(db, "/s/nulls", "GET", "SELECT 4", [], scalar)
    add_template(db, "success", mapping_id=no_meta, include_metadata=False)
    add_template(db, "success", mapping_id=no_time, include_timestamps=False)
    add_template(
        db, "success", mapping_id=neither, include_metadata=False, include_timestamps=False
    )
    # NULL flags mean the columns' defaults (metadata and timestamp on)
    add_template(
        db,
        "success",
        mapping_id=nulls,
        include_metadata=None,
        include_pagination=None,
        include_timestamps=None,
    )
    client = serve(make_client)

    body = client.get("/s/no-meta").json()
    assert set(body) == {"data", "timestamp"}
    assert body["data"] == 1
    body = client.get("/s/no-time").json()
    assert set(body) == {"data", "meta"}
    assert body["meta"]["endpoint"] == "GET /s/no-time"
    assert "count" not in body["meta"]  # a scalar has no count
    assert client.get("/s/neither").json() == {"data": 3}
    assert set(client.get("/s/nulls").json()) == {"data", "meta", "timestamp"}


def test_paginated_template_and_pagination_under_a_success_template(
    db: DB, make_client: Maker
) -> None:
    widgets(db)
    sql = "SELECT widget_id FROM s_widgets ORDER BY widget_id"
    page = {"shape": "list", "paginate": {"limit": 2, "max_limit": 10}}
    paged = add_endpoint(db, "/s/paged", "GET", sql, [], page)
    success_only = add_endpoint(db, "/s/paged-success", "GET", sql, [], page)
    add_template(db, "paginated", mapping_id=paged, headers={"X-Paged": "yes"})
    add_template(db, "success", mapping_id=paged, headers={"X-Success": "yes"})
    add_template(db, "success", mapping_id=success_only, include_timestamps=False)
    client = serve(make_client)

    r = client.get("/s/paged", params={"offset": 4})
    body = r.json()
    assert set(body) == {"data", "meta", "pagination", "timestamp"}
    assert body["data"] == [{"widget_id": 5}]
    assert body["meta"]["count"] == 1
    assert body["pagination"] == {
        "limit": 2,
        "offset": 4,
        "count": 1,
        "has_more": False,
        "next_offset": None,
        "next": None,
        "prev": "/s/paged?offset=2",
    }
    assert r.headers["x-paged"] == "yes"
    assert "x-success" not in r.headers

    # a success template on a paginated endpoint must not lose where the next page is
    body = client.get("/s/paged-success").json()
    assert set(body) == {"data", "meta", "pagination"}
    assert body["pagination"]["next_offset"] == 2


def test_error_template_extends_problem_bodies(db: DB, make_client: Maker) -> None:
    add_error_code(db, "WIDGET_NOT_FOUND", 404, "Widget not found")
    sql = "SELECT $1::int AS id WHERE $1::int < 10"
    result = {"shape": "object", "not_found": "WIDGET_NOT_FOUND"}
    mid = add_endpoint(db, "/s/e/{id}", "GET", sql, ID, result)
    add_endpoint(db, "/s/plain/{id}", "GET", sql, ID, result)
    add_template(db, "error", mapping_id=mid, headers={"X-Error-Template": "1"})
    client = serve(make_client)

    assert client.get("/s/e/1").json() == {"id": 1}  # success answers are not wrapped
    for path, code, status in (
        ("/s/e/11", "WIDGET_NOT_FOUND", 404),
        ("/s/e/x", "INVALID_PARAMETER", 400),
    ):
        r = client.get(path)
        body = assert_problem(r, status, code)
        assert body["meta"] == {"endpoint": "GET /s/e/{id}"}
        assert ISO_MS.fullmatch(body["timestamp"])
        assert body["instance"] == path
        assert r.headers["x-error-template"] == "1"
    assert assert_problem(client.get("/s/e/x"), 400, "INVALID_PARAMETER")["errors"]

    r = client.get("/s/plain/11")
    body = assert_problem(r, 404, "WIDGET_NOT_FOUND")
    assert "meta" not in body and "timestamp" not in body
    assert "x-error-template" not in r.headers


def test_templates_without_an_endpoint_apply_to_every_endpoint(db: DB, make_client: Maker) -> None:
    first = add_endpoint(db, "/s/one", "GET", "SELECT 1 AS n", [], {"shape": "object"})
    add_endpoint(db, "/s/two", "GET", "SELECT 2 AS n", [], {"shape": "list"})
    add_template(db, "success", headers={"X-Envelope": "global"}, include_timestamps=False)
    add_template(db, "error", headers={"X-Envelope": "global-error"})
    add_template(
        db, "success", mapping_id=first, headers={"X-Envelope": "own"}, include_metadata=False
    )
    client = serve(make_client)

    r = client.get("/s/two")
    assert r.json() == {
        "data": [{"n": 2}],
        "meta": {"request_id": r.headers["x-request-id"], "endpoint": "GET /s/two", "count": 1},
    }
    assert r.headers["x-envelope"] == "global"
    # an endpoint's own template wins over the global one
    r = client.get("/s/one")
    assert r.json() == {"data": {"n": 1}, "timestamp": r.json()["timestamp"]}
    assert r.headers["x-envelope"] == "own"
    # the global error template covers every problem, even for paths no row publishes
    r = client.get("/s/nowhere")
    body = assert_problem(r, 404, "ROUTE_NOT_FOUND")
    assert body["meta"] == {"endpoint": "(unmatched)"}  # the path is not echoed
    assert "timestamp" in body
    assert r.headers["x-envelope"] == "global-error"
    body = assert_problem(
        client.get("/s/one", headers={"Authorization": "Basic x"}), 401, "INVALID_TOKEN"
    )
    assert body["meta"] == {"endpoint": "GET /s/one"}


# -- JSON encoding -----------------------------------------------------------------------


def test_json_encoding_of_postgres_types(db: DB, make_client: Maker) -> None:
    db.execute("CREATE TYPE s_point AS (x int, label text)")
    add_endpoint(
        db,
        "/s/types",
        "GET",
        """SELECT
            12345678901234567.89::numeric(20, 2) AS money,
            (0.1::numeric + 0.2::numeric) AS sum,
            42::numeric AS whole,
            1.50::numeric(5, 2) AS scaled,
            'Infinity'::numeric AS infinite,
            (10::numeric ^ 30)::numeric(40, 0) AS huge,
            0.1::float8 + 0.2::float8 AS float_sum,
            9007199254740993::bigint AS big,
            true AS flag,
            '2024-01-01 12:00:00+02'::timestamptz AS at,
            '2024-01-01 12:00:00'::timestamp AS local,
            '2024-02-29'::date AS day,
            '10:30:00'::time AS clock,
            '1 day 2 hours'::interval AS span,
            '6f9619ff-8b86-d011-b42d-00c04fc964ff'::uuid AS id,
            '{"a": [1, {"b": null}], "c": "Cổng"}'::jsonb AS doc,
            '[1, 2]'::json AS plain_json,
            ARRAY[1, 2, 3] AS ints,
            ARRAY['x', NULL, 'z'] AS texts,
            ARRAY[]::int[] AS empty,
            NULL::text AS nothing,
            'Cổng chính "A"' AS text,
            ROW(1, 'p')::s_point AS point,
            '192.168.0.1'::inet AS ip""",
        [],
        {"shape": "object"},
    )
    client = serve(make_client)

    r = client.get("/s/types")
    assert r.status_code == 200, r.text
    raw = r.content
    # numeric keeps every digit it has, as a JSON number
    assert b'"money":12345678901234567.89' in raw
    assert b'"sum":0.3,' in raw
    assert b'"whole":42,' in raw
    assert b'"scaled":1.50,' in raw
    assert b'"huge":1000000000000000000000000000000' in raw
    assert "Cổng chính".encode() in raw  # UTF-8, not \u escapes
    body = r.json()
    assert body["infinite"] == "Infinity"  # JSON has no infinity: a documented string
    assert body["float_sum"] == 0.1 + 0.2
    assert body["big"] == 9007199254740993
    assert body["flag"] is True
    assert body["at"] == "2024-01-01T10:00:00+00:00"
    assert body["local"] == "2024-01-01T12:00:00"
    assert body["day"] == "2024-02-29"
    assert body["clock"] == "10:30:00"
    assert body["span"] == "P1DT2H"  # ISO 8601 duration
    assert body["id"] == "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    assert body["doc"] == {"a": [1, {"b": None}], "c": "Cổng"}
    assert body["plain_json"] == [1, 2]
    assert body["ints"] == [1, 2, 3]
    assert body["texts"] == ["x", None, "z"]
    assert body["empty"] == []
    assert body["nothing"] is None
    assert body["text"] == 'Cổng chính "A"'
    assert body["point"] == {"x": 1, "label": "p"}
    assert body["ip"] == "192.168.0.1"


def test_stream_errors_before_the_first_row_are_problems(db: DB, make_client: Maker) -> None:
    add_endpoint(
        db,
        "/s/ratio.csv",
        "GET",
        "SELECT g, 100 / $1 AS ratio FROM generate_series(1, 3) g",
        [{"name": "d", "in": "query", "type": "integer", "required": True}],
        {"shape": "stream", "format": "csv"},
    )
    client = serve(make_client)

    r = client.get("/s/ratio.csv", params={"d": 50})
    assert r.text.splitlines() == ["g,ratio", "1,2", "2,2", "3,2"]
    assert_problem(client.get("/s/ratio.csv", params={"d": 0}), 400, "INVALID_VALUE")
    assert_problem(client.get("/s/ratio.csv"), 400, "INVALID_PARAMETER")


def test_envelopes_on_created_and_empty_answers(db: DB, make_client: Maker) -> None:
    db.execute("CREATE TABLE s_items (id serial PRIMARY KEY, name text)")
    body = [{"name": "name", "in": "body", "type": "string", "required": True}]
    created = add_endpoint(
        db,
        "/s/items",
        "POST",
        "INSERT INTO s_items (name) VALUES ($1) RETURNING id, name",
        body,
        {"shape": "object", "fields": {"name": "label"}},
    )
    deleted = add_endpoint(
        db,
        "/s/items/{id}",
        "DELETE",
        "DELETE FROM s_items WHERE id = $1",
        ID,
        {"shape": "none"},
        database_operation="DELETE",
    )
    for mid in (created, deleted):
        add_template(db, "success", mapping_id=mid, headers={"X-Wrapped": "1"})
    client = serve(make_client)

    r = client.post("/s/items", json={"name": "a"})
    assert r.status_code == 201
    assert r.json()["data"] == {"id": 1, "label": "a"}
    assert "count" not in r.json()["meta"]
    r = client.delete("/s/items/1")
    assert (r.status_code, r.content) == (204, b"")
    assert db.fetchval("SELECT count(*) FROM s_items") == 0


def test_pagination_rejects_non_ascii_digits(db: DB, make_client: Maker) -> None:
    widgets(db)
    add_endpoint(
        db,
        "/s/pages",
        "GET",
        "SELECT widget_id FROM s_widgets ORDER BY widget_id",
        [],
        {"shape": "list", "paginate": {"limit": 2, "max_limit": 3}},
    )
    client = serve(make_client)

    for params in ({"limit": "\u00b2"}, {"offset": "\u00b9"}):
        body = assert_problem(client.get("/s/pages", params=params), 400, "INVALID_PARAMETER")
        assert body["errors"][0]["parameter"] == next(iter(params))


def test_stream_csv_cells_match_the_json_encoding(db: DB, make_client: Maker) -> None:
    add_endpoint(
        db,
        "/s/cells.csv",
        "GET",
        "SELECT true AS flag, '2024-01-01 12:00:00+02'::timestamptz AS at,"
        " '{\"a\": 1}'::jsonb AS doc, ARRAY[1, 2] AS ints, 0.10::numeric AS n",
        [],
        {"shape": "stream", "format": "csv"},
    )
    client = serve(make_client)

    rows = list(csv.reader(io.StringIO(client.get("/s/cells.csv").text)))
    assert rows == [
        ["flag", "at", "doc", "ints", "n"],
        ["true", "2024-01-01T10:00:00+00:00", '{"a":1}', "[1,2]", "0.10"],
    ]


def test_a_list_of_records_is_shaped_as_each_record_alone(db: DB) -> None:
    # the rows of one statement are zipped with keys read once: the same objects as a dict
    # of each record (renamed, a column named twice: the last value, as dict() keeps it)
    from engine.shaping import Shaper
    from engine.spec import ResultSpec

    rows = db.fetch("SELECT g AS a, g * 10 AS b, g * 100 AS c FROM generate_series(1, 3) g")
    twice = db.fetch("SELECT g AS a, g * 10 AS a, g * 100 AS b FROM generate_series(1, 3) g")
    for fields in ((), (("b", "renamed"),), (("b", "a"),)):
        shaper = Shaper(ResultSpec(shape="list", fields=fields), "GET")
        for got in (rows, twice, rows[:1], []):
            assert shaper.rows(got) == [shaper.row(r) for r in got]
    plain = Shaper(ResultSpec(shape="list"), "GET")
    assert plain.rows(twice) == [{"a": 10, "b": 100}, {"a": 20, "b": 200}, {"a": 30, "b": 300}]
    renamed = Shaper(ResultSpec(shape="list", fields=(("b", "x"),)), "GET").rows(rows)
    assert renamed[0] == {"a": 1, "x": 10, "c": 100}


@pytest.mark.parametrize(
    "text",
    ["1.5", "0.55", "-0.001", "0.0", "-0", "12", "0E-10", "1E+30", "1.00E+30", "1.5E-7",
     "123456789012345678901234567890.5", "NaN", "-NaN", "sNaN", "Infinity", "-Infinity"],
)  # fmt: skip
def test_a_numeric_reads_the_same_through_the_fast_case_as_through_the_whole_rule(
    text: str,
) -> None:
    value = Decimal(text)
    assert orjson.dumps([value], default=shaping._default) == orjson.dumps(
        [shaping._decimal(value)]
    )


def test_a_key_that_is_no_string_is_written_as_its_text_and_the_rest_as_before() -> None:
    # encode tries orjson's string-keyed path first: a body with another key still encodes,
    # and a string-keyed body reads byte for byte as under OPT_NON_STR_KEYS
    assert shaping.encode({1: "a", "b": {2: Decimal("1.5")}}) == b'{"1":"a","b":{"2":1.5}}'
    body = [{"a": Decimal("0.55"), "b": dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "c": [1, None]}]
    assert shaping.encode(body) == orjson.dumps(
        body, default=shaping._default, option=orjson.OPT_NON_STR_KEYS
    )
    with pytest.raises(orjson.JSONEncodeError):
        shaping.encode({"a": 2**70})  # refused by both paths: the caller's error, as before
