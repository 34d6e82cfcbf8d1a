"""Binding request values to ``$n`` placeholders, over real HTTP against real PostgreSQL.

Every ``in`` source (path, query, body, header, auth, const) and every declared
type, with the coercions a client relies on and the 400 INVALID_PARAMETER answers
(``errors`` naming each parameter and where it came from) it gets otherwise.
Each test publishes its own endpoints under ``/b/...`` before the engine starts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from engine import binding
from tests.engine_server import EngineClient
from tests.helpers import add_endpoint, assert_problem, error_for, problems_of, serve
from tests.pg import DB

Maker = Callable[..., EngineClient]


def echo(db: DB, path: str, cast: str, kind: str, source: str = "query", **extra: Any) -> int:
    """GET ``path`` answering ``{"v": <the bound value>}`` for one parameter ``v``."""
    param = {"name": "v", "in": source, "type": kind, **extra}
    return add_endpoint(db, path, "GET", f"SELECT $1::{cast} AS v", [param], {"shape": "object"})


def invalid(response: Any, name: str, source: str) -> dict[str, Any]:
    """The INVALID_PARAMETER entry for parameter ``name``; checks the problem body."""
    body = assert_problem(response, 400, "INVALID_PARAMETER")
    entry = error_for(body, "parameter", name)
    assert entry["in"] == source
    assert entry["message"].startswith(name)
    return entry


# -- sources -----------------------------------------------------------------------------


def test_path_parameter_binds_typed_value(db: DB, make_client: Maker) -> None:
    add_endpoint(
        db,
        "/b/items/{id}/{slug}",
        "GET",
        "SELECT $1::int AS id, $2::text AS slug, pg_typeof($1::int)::text AS t",
        [
            {"name": "id", "in": "path", "type": "integer"},
            {"name": "slug", "in": "path", "type": "string"},
        ],
        {"shape": "object"},
    )
    client = serve(make_client)

    r = client.get("/b/items/42/c%E1%BB%95ng%20ch%C3%ADnh")
    assert r.status_code == 200, r.text
    assert r.json() == {"id": 42, "slug": "cổng chính", "t": "integer"}

    entry = invalid(client.get("/b/items/12abc/x"), "id", "path")
    assert "integer" in entry["message"]
    invalid(client.get("/b/items/1.5/x"), "id", "path")


def test_query_parameter_binds_and_absent_optional_is_null(db: DB, make_client: Maker) -> None:
    add_endpoint(
        db,
        "/b/search",
        "GET",
        "SELECT $1::text AS q, $1::text IS NULL AS absent",
        [{"name": "q", "in": "query", "type": "string"}],
        {"shape": "object"},
    )
    client = serve(make_client)

    assert client.get("/b/search", params={"q": "hello world"}).json() == {
        "q": "hello world",
        "absent": False,
    }
    assert client.get("/b/search").json() == {"q": None, "absent": True}
    # an empty value is a value, not an absent parameter
    assert client.get("/b/search?q=").json() == {"q": "", "absent": False}


def test_body_fields_bind_top_level_json_fields(db: DB, make_client: Maker) -> None:
    db.execute("CREATE TABLE b_things (id serial PRIMARY KEY, name text NOT NULL, qty int)")
    add_endpoint(
        db,
        "/b/things",
        "POST",
        "INSERT INTO b_things (name, qty) VALUES ($1, $2) RETURNING id, name, qty",
        [
            {"name": "name", "in": "body", "type": "string", "required": True},
            {"name": "qty", "in": "body", "type": "integer"},
        ],
        {"shape": "object"},
    )
    client = serve(make_client)

    r = client.post("/b/things", json={"name": "bolt", "qty": 12, "ignored": {"x": 1}})
    assert r.status_code == 201, r.text
    assert r.json() == {"id": 1, "name": "bolt", "qty": 12}
    assert db.fetchrow("SELECT name, qty FROM b_things") == ("bolt", 12)

    # a JSON number where a string is declared, a string where an integer is declared:
    # both reported, each with the JSON pointer of its field; nothing is written
    r = client.post("/b/things", json={"name": 5, "qty": "12"})
    body = assert_problem(r, 400, "INVALID_PARAMETER")
    assert {e["parameter"]: e["pointer"] for e in body["errors"]} == {
        "name": "/name",
        "qty": "/qty",
    }
    assert all(e["in"] == "body" for e in body["errors"])
    assert "string" in error_for(body, "parameter", "name")["message"]
    assert db.fetchval("SELECT count(*) FROM b_things") == 1


def test_body_missing_or_empty_reports_required_fields(db: DB, make_client: Maker) -> None:
    db.execute("CREATE TABLE b_pairs (a int, b text)")
    add_endpoint(
        db,
        "/b/pairs",
        "POST",
        "INSERT INTO b_pairs VALUES ($1, $2) RETURNING a, b",
        [
            {"name": "a", "in": "body", "type": "integer", "required": True},
            {"name": "b", "in": "body", "type": "string", "required": True},
        ],
        {"shape": "object"},
    )
    client = serve(make_client)

    for kwargs in ({}, {"json": {}}):
        body = assert_problem(client.post("/b/pairs", **kwargs), 400, "INVALID_PARAMETER")
        assert sorted(e["parameter"] for e in body["errors"]) == ["a", "b"]
        assert all("required" in e["message"] for e in body["errors"])
        assert "a" in body["detail"] and "b" in body["detail"]

    # an explicit null for a required field is its own message
    body = assert_problem(
        client.post("/b/pairs", json={"a": None, "b": "x"}), 400, "INVALID_PARAMETER"
    )
    assert error_for(body, "parameter", "a")["message"] == "a must not be null"
    assert db.fetchval("SELECT count(*) FROM b_pairs") == 0


def test_body_that_is_not_an_object_is_invalid_body(db: DB, make_client: Maker) -> None:
    db.execute("CREATE TABLE b_notes (id int PRIMARY KEY, title text, pages int)")
    db.execute("INSERT INTO b_notes VALUES (1, 'draft', 3)")
    add_endpoint(
        db,
        "/b/notes/{id}",
        "PATCH",
        "UPDATE b_notes SET title = COALESCE($2, title), pages = COALESCE($3, pages)"
        " WHERE id = $1 RETURNING id, title, pages",
        [
            {"name": "id", "in": "path", "type": "integer"},
            {"name": "title", "in": "body", "type": "string"},
            {"name": "pages", "in": "body", "type": "integer"},
        ],
        {"shape": "object"},
    )
    client = serve(make_client)
    json_body = {"content-type": "application/json"}

    # fields are read from the body by name: anything but an object cannot hold them
    for raw, kind in (
        (b'[{"title": "x"}]', "an array"),
        (b'"title"', "a string"),
        (b"7", "a number"),
        (b"true", "a boolean"),
        (b"null", "null"),
    ):
        r = client.patch("/b/notes/1", content=raw, headers=json_body)
        body = assert_problem(r, 400, "INVALID_BODY")
        assert body["detail"] == f"The body must be a JSON object, not {kind}", raw
    assert db.fetchrow("SELECT title, pages FROM b_notes") == ("draft", 3)

    # no body at all is no fields, and an object still binds
    assert client.patch("/b/notes/1").json() == {"id": 1, "title": "draft", "pages": 3}
    r = client.patch("/b/notes/1", json={"title": "final"})
    assert r.json() == {"id": 1, "title": "final", "pages": 3}


def test_repeated_scalar_query_parameter_is_refused(db: DB, make_client: Maker) -> None:
    add_endpoint(
        db,
        "/b/find",
        "GET",
        "SELECT $1::text AS q, $2::int AS n, $3::text[] AS tags",
        [
            {"name": "q", "in": "query", "type": "string"},
            {"name": "n", "in": "query", "type": "integer"},
            {"name": "tag", "in": "query", "type": "array"},
        ],
        {"shape": "object"},
    )
    client = serve(make_client)

    entry = invalid(client.get("/b/find?q=a&q=b"), "q", "query")
    assert entry["message"] == "q must be given once, not 2 times"
    # even when the copies agree: the client said something twice
    invalid(client.get("/b/find?q=a&q=a"), "q", "query")
    # every problem is listed at once
    body = assert_problem(client.get("/b/find?q=a&q=b&n=1&n=x&n=3"), 400, "INVALID_PARAMETER")
    assert error_for(body, "parameter", "n")["message"] == "n must be given once, not 3 times"
    assert "q" in body["detail"] and "n" in body["detail"]

    # array parameters repeat, and keys that bind nothing are not the binder's business
    r = client.get("/b/find?q=a&tag=x&tag=y&other=1&other=2")
    assert r.json() == {"q": "a", "n": None, "tags": ["x", "y"]}


def test_header_values_are_read_as_utf8(db: DB, make_client: Maker) -> None:
    add_endpoint(
        db,
        "/b/kiosk",
        "GET",
        "SELECT $1::text AS name, length($1::text) AS chars",
        [{"name": "X-Client-Name", "in": "header", "type": "string"}],
        {"shape": "object"},
    )
    client = serve(make_client)

    r = client.get("/b/kiosk", headers={"X-Client-Name": "kiosk ✓".encode()})
    assert r.json() == {"name": "kiosk ✓", "chars": 7}
    r = client.get("/b/kiosk", headers={"X-Client-Name": "Cổng chính".encode()})
    assert r.json() == {"name": "Cổng chính", "chars": 10}
    assert client.get("/b/kiosk", headers={"X-Client-Name": "plain"}).json()["name"] == "plain"

    # bytes that are not UTF-8 (here Latin-1 "café") are refused, not guessed at
    for raw in ("café".encode("latin-1"), b"\xff\xfe", b"ok \xe2\x9c"):
        r = client.get("/b/kiosk", headers={"X-Client-Name": raw})
        entry = invalid(r, "X-Client-Name", "header")
        assert entry["message"] == "X-Client-Name must be UTF-8 text", raw


def test_header_parameter_name_is_case_insensitive(db: DB, make_client: Maker) -> None:
    add_endpoint(
        db,
        "/b/headers",
        "GET",
        "SELECT $1::text AS ref, $2::int AS shard",
        [
            {"name": "X-Client-Ref", "in": "header", "type": "string", "required": True},
            {"name": "x-shard", "in": "header", "type": "integer", "default": 0},
        ],
        {"shape": "object"},
    )
    client = serve(make_client)

    r = client.get("/b/headers", headers={"x-client-ref": "abc-1", "X-SHARD": "7"})
    assert r.json() == {"ref": "abc-1", "shard": 7}
    assert client.get("/b/headers", headers={"X-CLIENT-REF": "z"}).json() == {
        "ref": "z",
        "shard": 0,
    }

    r = client.get("/b/headers", headers={"x-shard": "seven"})
    body = assert_problem(r, 400, "INVALID_PARAMETER")
    assert {(e["parameter"], e["in"]) for e in body["errors"]} == {
        ("X-Client-Ref", "header"),
        ("x-shard", "header"),
    }


def test_auth_claim_is_bound_and_never_taken_from_the_client(db: DB, make_client: Maker) -> None:
    db.execute("CREATE TABLE b_docs (id int, tenant_id int, title text)")
    db.execute("INSERT INTO b_docs VALUES (1, 1, 'mine'), (2, 2, 'theirs'), (3, 1, 'also mine')")
    tenant = {"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer"}
    add_endpoint(
        db,
        "/b/docs",
        "GET",
        "SELECT id, title FROM b_docs WHERE tenant_id = $1 ORDER BY id",
        [tenant],
    )
    db.execute("CREATE TABLE b_notes (tenant_id int, body text)")
    add_endpoint(
        db,
        "/b/notes",
        "POST",
        "INSERT INTO b_notes VALUES ($1, $2) RETURNING tenant_id, body",
        [tenant, {"name": "body", "in": "body", "type": "string", "required": True}],
        {"shape": "object"},
    )
    client = serve(make_client)

    mine = [{"id": 1, "title": "mine"}, {"id": 3, "title": "also mine"}]
    assert client.get("/b/docs", headers=client.auth(tenant=1)).json() == mine
    # a query value of the same name changes nothing
    r = client.get("/b/docs", params={"tenant_id": 2}, headers=client.auth(tenant=1))
    assert r.json() == mine
    assert client.get("/b/docs", headers=client.auth(tenant=2)).json() == [
        {"id": 2, "title": "theirs"}
    ]
    # nor does a body field of the same name
    r = client.post("/b/notes", json={"tenant_id": 2, "body": "hi"}, headers=client.auth(tenant=1))
    assert r.status_code == 201, r.text
    assert r.json() == {"tenant_id": 1, "body": "hi"}
    assert db.fetch("SELECT tenant_id FROM b_notes") == [(1,)]

    # no token at all: 401, even though the row says requires_auth false
    r = client.get("/b/docs", params={"tenant_id": 1})
    assert_problem(r, 401, "AUTHENTICATION_REQUIRED")
    assert r.headers["www-authenticate"].startswith("Bearer")
    # a token without the claim, or with an unusable one: 403
    body = assert_problem(
        client.get("/b/docs", headers=client.auth(tenant=None)), 403, "INSUFFICIENT_PERMISSIONS"
    )
    assert "tenant_id" in body["detail"]
    assert_problem(
        client.get("/b/docs", headers=client.auth(tenant="acme")), 403, "INSUFFICIENT_PERMISSIONS"
    )
    assert db.fetchval("SELECT count(*) FROM b_notes") == 1


def test_auth_parameter_reads_any_named_claim(db: DB, make_client: Maker) -> None:
    add_endpoint(
        db,
        "/b/whoami",
        "GET",
        "SELECT $1::text AS org, $2::text AS sub",
        [
            {"name": "organisation", "in": "auth", "claim": "org", "type": "string"},
            {"name": "sub", "in": "auth", "type": "string"},  # claim defaults to the name
        ],
        {"shape": "object"},
    )
    client = serve(make_client)

    r = client.get("/b/whoami", headers=client.auth(sub="alice", org="acme"))
    assert r.json() == {"org": "acme", "sub": "alice"}
    body = assert_problem(
        client.get("/b/whoami", headers=client.auth(sub="alice")), 403, "INSUFFICIENT_PERMISSIONS"
    )
    assert "'org'" in body["detail"]


def test_const_parameter_binds_its_value_whatever_the_client_sends(
    db: DB, make_client: Maker
) -> None:
    add_endpoint(
        db,
        "/b/const",
        "GET",
        "SELECT $1::text AS kind, $2::int AS n, $3::jsonb AS cfg",
        [
            {"name": "kind", "in": "const", "type": "string", "value": "fixed"},
            {"name": "n", "in": "const", "type": "integer", "value": 5},
            {"name": "cfg", "in": "const", "type": "json", "value": {"a": [1, 2]}},
        ],
        {"shape": "object"},
    )
    client = serve(make_client)

    expected = {"kind": "fixed", "n": 5, "cfg": {"a": [1, 2]}}
    assert client.get("/b/const").json() == expected
    assert client.get("/b/const", params={"kind": "other", "n": 9}).json() == expected


# -- types -------------------------------------------------------------------------------


def test_integer_range_follows_the_placeholder_type(db: DB, make_client: Maker) -> None:
    echo(db, "/b/int4", "int", "integer")
    echo(db, "/b/int8", "bigint", "integer")
    echo(db, "/b/int2", "smallint", "integer")
    db.execute("CREATE TABLE b_counts (n int)")
    add_endpoint(
        db,
        "/b/counts",
        "POST",
        "INSERT INTO b_counts VALUES ($1) RETURNING n",
        [{"name": "n", "in": "body", "type": "integer", "required": True}],
        {"shape": "object"},
    )
    client = serve(make_client)

    assert client.get("/b/int4", params={"v": "2147483647"}).json() == {"v": 2147483647}
    assert client.get("/b/int4", params={"v": "-2147483648"}).json() == {"v": -2147483648}
    assert client.get("/b/int4", params={"v": "+7"}).json() == {"v": 7}
    entry = invalid(client.get("/b/int4", params={"v": "2147483648"}), "v", "query")
    assert "2147483647" in entry["message"]
    invalid(client.get("/b/int2", params={"v": "40000"}), "v", "query")
    assert client.get("/b/int8", params={"v": "3000000000"}).json() == {"v": 3000000000}
    invalid(client.get("/b/int8", params={"v": str(2**63)}), "v", "query")
    for bad in ("12abc", "1.5", "1e3", "", "0x10", "1_000", "\u0661\u0662"):
        invalid(client.get("/b/int4", params={"v": bad}), "v", "query")

    # an int4 overflow in the body is answered by the binder (INVALID_PARAMETER naming
    # the field), not by the database, and nothing is written
    invalid(client.post("/b/counts", json={"n": 2**31}), "n", "body")
    invalid(client.post("/b/counts", json={"n": 2.5}), "n", "body")
    invalid(client.post("/b/counts", json={"n": True}), "n", "body")
    assert db.fetchval("SELECT count(*) FROM b_counts") == 0
    # a JSON number with a zero fraction is still an integer
    assert client.post("/b/counts", json={"n": 3.0}).json() == {"n": 3}


def test_number_keeps_decimal_precision(db: DB, make_client: Maker) -> None:
    add_endpoint(
        db,
        "/b/sum",
        "GET",
        "SELECT ($1::numeric + $2::numeric)::text AS sum",
        [
            {"name": "a", "in": "query", "type": "number", "required": True},
            {"name": "b", "in": "query", "type": "number", "required": True},
        ],
        {"shape": "object"},
    )
    add_endpoint(
        db,
        "/b/sum",
        "POST",
        "SELECT ($1::numeric + $2::numeric)::text AS sum, $3::float8 AS f",
        [
            {"name": "a", "in": "body", "type": "number", "required": True},
            {"name": "b", "in": "body", "type": "number", "required": True},
            {"name": "f", "in": "body", "type": "number"},
        ],
        {"shape": "object"},
        database_operation="CALL",
    )
    echo(db, "/b/float", "float8", "number")
    client = serve(make_client)

    assert client.get("/b/sum", params={"a": "0.1", "b": "0.2"}).json() == {"sum": "0.3"}
    assert client.get("/b/float", params={"v": "1.5e2"}).json() == {"v": 150.0}
    assert client.get("/b/float", params={"v": ".25"}).json() == {"v": 0.25}
    # a decimal too large for a float is refused, not stored as Infinity
    invalid(client.get("/b/float", params={"v": "1e400"}), "v", "query")
    r = client.get("/b/sum", params={"a": "12345678901234567890.12", "b": "0.01"})
    assert r.json() == {"sum": "12345678901234567890.13"}
    r = client.post("/b/sum", json={"a": 0.1, "b": 0.2, "f": 1})
    assert r.json() == {"sum": "0.3", "f": 1.0}
    assert client.post("/b/sum", json={"a": 1, "b": -3}).json() == {"sum": "-2", "f": None}

    for bad in ("abc", "NaN", "Infinity", "1,5"):
        invalid(client.get("/b/sum", params={"a": bad, "b": "1"}), "a", "query")
    invalid(client.post("/b/sum", json={"a": "0.1", "b": 1}), "a", "body")
    invalid(client.post("/b/sum", json={"a": False, "b": 1}), "a", "body")


def test_string_rejects_other_json_types_and_nul(db: DB, make_client: Maker) -> None:
    echo(db, "/b/str", "text", "string")
    add_endpoint(
        db,
        "/b/str",
        "POST",
        "SELECT $1::text AS v",
        [{"name": "v", "in": "body", "type": "string", "required": True}],
        {"shape": "object", "status": 200},
        database_operation="CALL",
    )
    client = serve(make_client)

    assert client.post("/b/str", json={"v": "ok"}).json() == {"v": "ok"}
    for bad in (5, 1.5, True, ["a"], {"a": 1}):
        entry = invalid(client.post("/b/str", json={"v": bad}), "v", "body")
        assert entry["pointer"] == "/v"
    # PostgreSQL text cannot hold NUL: a clean 400, not a database error
    invalid(client.get("/b/str?v=a%00b"), "v", "query")
    invalid(client.post("/b/str", json={"v": "a\u0000b"}), "v", "body")


def test_boolean_accepts_the_usual_spellings_in_the_query(db: DB, make_client: Maker) -> None:
    echo(db, "/b/bool", "boolean", "boolean")
    add_endpoint(
        db,
        "/b/bool",
        "POST",
        "SELECT $1::boolean AS v",
        [{"name": "v", "in": "body", "type": "boolean", "required": True}],
        {"shape": "object", "status": 200},
        database_operation="CALL",
    )
    client = serve(make_client)

    spellings = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
    spellings |= {"TRUE": True, "Off": False, "on": True}
    for text, value in spellings.items():
        assert client.get("/b/bool", params={"v": text}).json() == {"v": value}, text
    for bad in ("maybe", "2", ""):
        invalid(client.get("/b/bool", params={"v": bad}), "v", "query")
    assert client.post("/b/bool", json={"v": False}).json() == {"v": False}
    # in a JSON body only JSON booleans are booleans
    for bad in ("true", 1, None):
        invalid(client.post("/b/bool", json={"v": bad}), "v", "body")


def test_uuid_and_date(db: DB, make_client: Maker) -> None:
    echo(db, "/b/uuid", "uuid", "uuid")
    echo(db, "/b/date", "date", "date")
    add_endpoint(
        db,
        "/b/dates",
        "GET",
        "SELECT ($2::date - $1::date) AS days",
        [
            {"name": "from", "in": "query", "type": "date", "required": True},
            {"name": "to", "in": "query", "type": "date", "required": True},
        ],
        {"shape": "scalar"},
    )
    client = serve(make_client)

    u = "6F9619FF-8B86-D011-B42D-00C04FC964FF"
    assert client.get("/b/uuid", params={"v": u}).json() == {"v": u.lower()}
    for bad in ("not-a-uuid", "6F9619FF-8B86-D011-B42D", "123"):
        invalid(client.get("/b/uuid", params={"v": bad}), "v", "query")

    assert client.get("/b/date", params={"v": "2024-02-29"}).json() == {"v": "2024-02-29"}
    for bad in ("2023-02-29", "yesterday", "2024-13-01", "01/02/2024"):
        entry = invalid(client.get("/b/date", params={"v": bad}), "v", "query")
        assert "YYYY-MM-DD" in entry["message"]
    assert client.get("/b/dates", params={"from": "2024-01-01", "to": "2024-03-01"}).json() == 60


def test_timestamps_with_z_offset_and_naive(db: DB, make_client: Maker) -> None:
    add_endpoint(
        db,
        "/b/tstz",
        "GET",
        "SELECT extract(epoch FROM $1::timestamptz)::bigint AS epoch",
        [{"name": "at", "in": "query", "type": "timestamp", "required": True}],
        {"shape": "scalar"},
    )
    add_endpoint(
        db,
        "/b/ts",
        "GET",
        "SELECT $1::timestamp::text AS local",
        [{"name": "at", "in": "query", "type": "timestamp", "required": True}],
        {"shape": "scalar"},
    )
    db.execute("CREATE TABLE b_events (at timestamptz)")
    add_endpoint(
        db,
        "/b/events",
        "POST",
        "INSERT INTO b_events VALUES ($1) RETURNING at",
        [{"name": "at", "in": "body", "type": "timestamp", "required": True}],
        {"shape": "scalar"},
    )
    client = serve(make_client)

    epoch = 1704103200  # 2024-01-01T10:00:00Z
    for text in (
        "2024-01-01T10:00:00Z",
        "2024-01-01T12:00:00+02:00",
        "2024-01-01T05:00:00-05:00",
        "2024-01-01T10:00:00",  # naive: taken as UTC
        "2024-01-01 10:00:00.000Z",
    ):
        assert client.get("/b/tstz", params={"at": text}).json() == epoch, text
    # timestamp without time zone: an offset is converted to UTC, a naive value kept
    assert client.get("/b/ts", params={"at": "2024-01-01T12:00:00+02:00"}).json() == (
        "2024-01-01 10:00:00"
    )
    assert client.get("/b/ts", params={"at": "2024-06-30T23:59:59.5"}).json() == (
        "2024-06-30 23:59:59.5"
    )
    for bad in ("2024-01-01T25:00:00Z", "last tuesday", "1704103200"):
        invalid(client.get("/b/tstz", params={"at": bad}), "at", "query")

    r = client.post("/b/events", json={"at": "2024-01-01T12:00:00+02:00"})
    assert r.status_code == 201, r.text
    assert db.fetchval("SELECT extract(epoch FROM at)::bigint FROM b_events") == epoch
    invalid(client.post("/b/events", json={"at": 1704103200}), "at", "body")


def test_json_parameter_binds_jsonb(db: DB, make_client: Maker) -> None:
    db.execute("CREATE TABLE b_docs (id serial, meta jsonb)")
    add_endpoint(
        db,
        "/b/docs",
        "POST",
        "INSERT INTO b_docs (meta) VALUES ($1) RETURNING meta, jsonb_typeof(meta) AS kind",
        [{"name": "meta", "in": "body", "type": "json", "required": True}],
        {"shape": "object"},
    )
    add_endpoint(
        db,
        "/b/docs",
        "GET",
        "SELECT id FROM b_docs WHERE meta @> $1 ORDER BY id",
        [{"name": "match", "in": "query", "type": "json", "required": True}],
    )
    client = serve(make_client)

    doc = {"a": {"b": [1, 2.5, None, "x"]}, "ok": True, "name": "Cổng"}
    r = client.post("/b/docs", json={"meta": doc})
    assert r.status_code == 201, r.text
    assert r.json() == {"meta": doc, "kind": "object"}
    assert db.fetchval("SELECT meta->'a'->'b'->>1 FROM b_docs WHERE id = 1") == "2.5"
    assert client.post("/b/docs", json={"meta": [1, 2]}).json()["kind"] == "array"
    assert client.post("/b/docs", json={"meta": "text"}).json() == {
        "meta": "text",
        "kind": "string",
    }

    # in the query string a json parameter is parsed as JSON
    assert client.get("/b/docs", params={"match": '{"ok": true}'}).json() == [{"id": 1}]
    assert client.get("/b/docs", params={"match": '{"ok": false}'}).json() == []
    entry = invalid(client.get("/b/docs", params={"match": "{ok"}), "match", "query")
    assert "JSON" in entry["message"]


def test_array_from_repeated_keys_commas_and_json(db: DB, make_client: Maker) -> None:
    db.execute("CREATE TABLE b_items (id int, tag text)")
    db.execute("INSERT INTO b_items SELECT g, 't' || g FROM generate_series(1, 5) g")
    add_endpoint(
        db,
        "/b/items",
        "GET",
        "SELECT id FROM b_items WHERE id = ANY($1::int[]) ORDER BY id",
        [{"name": "id", "in": "query", "type": "array", "items": "integer", "required": True}],
    )
    add_endpoint(
        db,
        "/b/tags",
        "GET",
        "SELECT id FROM b_items WHERE tag = ANY($1::text[]) ORDER BY id",
        [{"name": "tag", "in": "query", "type": "array"}],
    )
    add_endpoint(
        db,
        "/b/items",
        "POST",
        "SELECT id FROM b_items WHERE id = ANY($1::int[]) ORDER BY id",
        [{"name": "ids", "in": "body", "type": "array", "required": True}],
        {"shape": "list", "status": 200},
        database_operation="CALL",
    )
    client = serve(make_client)

    ids = [{"id": 1}, {"id": 3}]
    assert client.get("/b/items?id=1&id=3").json() == ids
    assert client.get("/b/items?id=1,3").json() == ids
    assert client.get("/b/items?id=4").json() == [{"id": 4}]
    assert client.get("/b/tags?tag=t2,t5").json() == [{"id": 2}, {"id": 5}]
    assert client.get("/b/tags?tag=t2&tag=t4").json() == [{"id": 2}, {"id": 4}]
    assert client.post("/b/items", json={"ids": [5, 2]}).json() == [{"id": 2}, {"id": 5}]
    assert client.post("/b/items", json={"ids": []}).json() == []

    # element types are checked, and the failing item is named
    entry = invalid(client.get("/b/items?id=1&id=x"), "id", "query")
    assert "item 1" in entry["message"]
    invalid(client.get("/b/items?id=1,2147483648"), "id", "query")
    invalid(client.post("/b/items", json={"ids": ["1"]}), "ids", "body")
    invalid(client.post("/b/items", json={"ids": 1}), "ids", "body")
    invalid(client.post("/b/items", json={"ids": [1, None]}), "ids", "body")
    invalid(client.get("/b/items"), "id", "query")


# -- required, defaults, optional --------------------------------------------------------


def test_every_bad_parameter_is_listed_at_once(db: DB, make_client: Maker) -> None:
    add_endpoint(
        db,
        "/b/report/{camera}",
        "GET",
        "SELECT $1::int AS camera, $2::date AS day, $3::uuid AS zone, $4::boolean AS live",
        [
            {"name": "camera", "in": "path", "type": "integer"},
            {"name": "day", "in": "query", "type": "date", "required": True},
            {"name": "zone", "in": "query", "type": "uuid"},
            {"name": "X-Live", "in": "header", "type": "boolean", "required": True},
        ],
        {"shape": "object"},
    )
    client = serve(make_client)

    r = client.get("/b/report/abc", params={"zone": "nope"})
    body = assert_problem(r, 400, "INVALID_PARAMETER")
    assert {(e["parameter"], e["in"]) for e in body["errors"]} == {
        ("camera", "path"),
        ("day", "query"),
        ("zone", "query"),
        ("X-Live", "header"),
    }
    assert error_for(body, "parameter", "day")["message"] == "day is required"
    assert error_for(body, "parameter", "zone")["message"] == "zone must be a UUID"
    for name in ("camera", "day", "zone", "X-Live"):
        assert name in body["detail"]

    r = client.get("/b/report/7", params={"day": "2024-05-01"}, headers={"x-live": "yes"})
    assert r.json() == {"camera": 7, "day": "2024-05-01", "zone": None, "live": True}


def test_defaults_apply_when_a_value_is_absent_or_null(db: DB, make_client: Maker) -> None:
    add_endpoint(
        db,
        "/b/defaults",
        "GET",
        "SELECT $1::int AS n, $2::date AS day, $3::text AS mode, $4::int[] AS ids",
        [
            {"name": "n", "in": "query", "type": "integer", "default": 10},
            {"name": "day", "in": "query", "type": "date", "default": "2024-01-31"},
            {"name": "mode", "in": "query", "type": "string", "default": "fast"},
            {"name": "ids", "in": "query", "type": "array", "default": [1, 2]},
        ],
        {"shape": "object"},
    )
    db.execute("CREATE TABLE b_cams (name text, fps int, threshold numeric)")
    add_endpoint(
        db,
        "/b/cams",
        "POST",
        "INSERT INTO b_cams VALUES ($1, $2, $3) RETURNING name, fps, threshold::text",
        [
            {"name": "name", "in": "body", "type": "string", "required": True},
            {"name": "fps", "in": "body", "type": "integer", "default": 25},
            {"name": "threshold", "in": "body", "type": "number", "default": 0.5},
        ],
        {"shape": "object"},
    )
    client = serve(make_client)

    assert client.get("/b/defaults").json() == {
        "n": 10,
        "day": "2024-01-31",
        "mode": "fast",
        "ids": [1, 2],
    }
    r = client.get(
        "/b/defaults", params={"n": "3", "day": "2020-02-02", "mode": "slow", "ids": "9"}
    )
    assert r.json() == {"n": 3, "day": "2020-02-02", "mode": "slow", "ids": [9]}

    assert client.post("/b/cams", json={"name": "a"}).json() == {
        "name": "a",
        "fps": 25,
        "threshold": "0.5",
    }
    assert client.post("/b/cams", json={"name": "b", "fps": None, "threshold": 0.75}).json() == {
        "name": "b",
        "fps": 25,
        "threshold": "0.75",
    }
    assert db.fetchval("SELECT count(*) FROM b_cams WHERE fps = 25") == 2


def test_rows_whose_types_do_not_match_the_template_are_reported_not_served(
    db: DB, make_client: Maker
) -> None:
    bad_type = echo(db, "/b/bad-type", "text", "integer")
    bad_count = add_endpoint(
        db,
        "/b/bad-count",
        "GET",
        "SELECT $1::int AS a, $2::int AS b",
        [{"name": "a", "in": "query", "type": "integer"}],
    )
    bad_items = add_endpoint(
        db,
        "/b/bad-items",
        "GET",
        "SELECT $1::int[] AS v",
        [{"name": "v", "in": "query", "type": "array", "items": "uuid"}],
    )
    bad_const = add_endpoint(
        db,
        "/b/bad-const",
        "GET",
        "SELECT $1::int AS v",
        [{"name": "v", "in": "const", "type": "integer", "value": "ten"}],
    )
    echo(db, "/b/good", "int", "integer")
    client = serve(make_client)

    assert client.get("/b/good", params={"v": "1"}).json() == {"v": 1}
    for path in ("/b/bad-type", "/b/bad-count", "/b/bad-items", "/b/bad-const"):
        assert_problem(client.get(path, params={"v": "1"}), 503, "ENDPOINT_UNAVAILABLE")
    assert "is declared integer, but PostgreSQL infers text" in problems_of(client, bad_type)[0]
    assert "2 placeholder(s)" in problems_of(client, bad_count)[0]
    assert "uuid" in problems_of(client, bad_items)[0]
    assert "value must be an integer" in problems_of(client, bad_const)[0]


@pytest.mark.parametrize("accept", ["en", "vi"])
def test_bad_parameter_problem_is_localized_but_keeps_its_errors(
    db: DB, make_client: Maker, accept: str
) -> None:
    echo(db, "/b/int", "int", "integer", required=True)
    client = serve(make_client)

    r = client.get("/b/int", params={"v": "x"}, headers={"Accept-Language": accept})
    body = invalid(r, "v", "query")
    assert r.headers["content-language"] == accept
    problem = r.json()
    if accept == "vi":
        assert problem["title"] == "Thiếu tham số hoặc tham số không hợp lệ"
    else:
        assert problem["title"] == "A request parameter is missing or invalid"
    assert body["message"] == "v must be an integer"


def test_every_source_in_one_statement(db: DB, make_client: Maker) -> None:
    db.execute(
        "CREATE TABLE b_cams (id int, tenant_id int, name text, fps int, source text,"
        " trace text, touched_by text)"
    )
    db.execute(
        "INSERT INTO b_cams VALUES (7, 1, 'old', 25, NULL, NULL, NULL), (7, 2, 'other', 25, NULL, NULL, NULL)"
    )
    add_endpoint(
        db,
        "/b/cams/{id}",
        "PUT",
        "UPDATE b_cams SET name = $3, fps = coalesce($4, fps), source = $5, trace = $6,"
        " touched_by = $7 WHERE id = $1 AND tenant_id = $2"
        " RETURNING id, tenant_id, name, fps, source, trace, touched_by",
        [
            {"name": "id", "in": "path", "type": "integer"},
            {"name": "tenant_id", "in": "auth", "type": "integer"},
            {"name": "name", "in": "body", "type": "string", "required": True},
            {"name": "fps", "in": "query", "type": "integer"},
            {"name": "source", "in": "const", "type": "string", "value": "api"},
            {"name": "X-Trace-Id", "in": "header", "type": "string"},
            {"name": "sub", "in": "auth", "type": "string"},
        ],
        {"shape": "object"},
    )
    client = serve(make_client)

    r = client.put(
        "/b/cams/7",
        params={"fps": "30", "source": "client", "tenant_id": "2"},
        json={"name": "Gate", "source": "client", "tenant_id": 2, "sub": "mallory"},
        headers={**client.auth(sub="alice", tenant=1), "x-trace-id": "t-1"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "id": 7,
        "tenant_id": 1,
        "name": "Gate",
        "fps": 30,
        "source": "api",
        "trace": "t-1",
        "touched_by": "alice",
    }
    assert db.fetchval("SELECT name FROM b_cams WHERE tenant_id = 2") == "other"


def test_array_items_of_other_types(db: DB, make_client: Maker) -> None:
    add_endpoint(
        db,
        "/b/arrays",
        "GET",
        "SELECT $1::date[] AS days, $2::uuid[] AS ids, $3::boolean[] AS flags, $4::numeric[] AS n",
        [
            {"name": "day", "in": "query", "type": "array", "items": "date"},
            {"name": "id", "in": "query", "type": "array"},
            {"name": "flag", "in": "query", "type": "array"},
            {"name": "n", "in": "query", "type": "array", "items": "number"},
        ],
        {"shape": "object"},
    )
    client = serve(make_client)

    u1, u2 = "6f9619ff-8b86-d011-b42d-00c04fc964ff", "00000000-0000-0000-0000-000000000001"
    r = client.get(
        "/b/arrays",
        params={"day": "2024-01-01,2024-02-29", "id": [u1, u2], "flag": "yes,0", "n": "0.1,2"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "days": ["2024-01-01", "2024-02-29"],
        "ids": [u1, u2],
        "flags": [True, False],
        "n": [0.1, 2],
    }
    assert client.get("/b/arrays").json() == {"days": None, "ids": None, "flags": None, "n": None}
    entry = invalid(
        client.get("/b/arrays", params={"day": "2024-01-01,2024-02-30"}), "day", "query"
    )
    assert "item 1" in entry["message"]
    invalid(client.get("/b/arrays", params={"id": "nope"}), "id", "query")
    invalid(client.get("/b/arrays", params={"flag": "maybe"}), "flag", "query")


def test_integer_into_numeric_and_float_placeholders(db: DB, make_client: Maker) -> None:
    add_endpoint(
        db,
        "/b/mixed",
        "GET",
        "SELECT ($1::numeric / 3)::numeric(10, 4)::text AS third, $2::float8 / 2 AS half",
        [
            {"name": "a", "in": "query", "type": "integer", "required": True},
            {"name": "b", "in": "query", "type": "integer", "required": True},
        ],
        {"shape": "object"},
    )
    client = serve(make_client)

    assert client.get("/b/mixed", params={"a": "10", "b": "5"}).json() == {
        "third": "3.3333",
        "half": 2.5,
    }
    invalid(client.get("/b/mixed", params={"a": "1.5", "b": "5"}), "a", "query")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("42446", 42446),
        ("007", 7),
        (" 42 ", 42),
        ("+3", 3),
        ("-4", -4),
        ("2147483647", 2147483647),
        ("2147483648", "must be between -2147483648 and 2147483647"),
        ("9" * 20, "must be between -2147483648 and 2147483647"),
        ("9" * 21, "must be an integer"),
        ("", "must be an integer"),
        ("12a", "must be an integer"),
        ("\u00b2", "must be an integer"),  # a superscript two: a digit to str.isdigit, not to us
        ("\u0663", "must be an integer"),  # an Arabic-Indic three: int() would take it
        ("1_000", "must be an integer"),  # int() would take it too
    ],
)
def test_an_integer_from_text_is_plain_ascii_digits_with_an_optional_sign(
    raw: str, expected: object
) -> None:
    coerce = binding._to_int("int4")
    if isinstance(expected, int):
        assert coerce(raw, True) == expected
    else:
        with pytest.raises(binding.BadValue, match=f"^{re.escape(expected)}$"):
            coerce(raw, True)
