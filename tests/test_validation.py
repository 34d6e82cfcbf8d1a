"""Input sanitization and JSON Schema validation, over real HTTP against real PostgreSQL.

Rows of ``api_validation_schemas`` (body and query schemas, strict_mode,
allow_unknown_fields, sanitize_input) and ``data_sanitization_rules`` (trim,
transform, escape, validate, defaults, scoped or global) decide what a client
may send and what reaches the database; every failing field is reported with its
JSON pointer. Each test publishes its own endpoints under ``/v/...``; tables it
writes are read back to check what was actually stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson

from tests.engine_server import EngineClient
from tests.helpers import (
    add_endpoint,
    add_rule,
    add_schema,
    assert_problem,
    catalog_report,
    error_for,
    problems_of,
    serve,
)
from tests.pg import DB

Maker = Callable[..., EngineClient]

_KIND = {
    "text": "string",
    "int": "integer",
    "numeric": "number",
    "jsonb": "json",
    "timestamptz": "timestamp",
    "boolean": "boolean",
    "date": "date",
}


def store_endpoint(db: DB, path: str, **columns: str) -> int:
    """POST ``path`` inserting the body fields named by ``columns`` (name=SQL type).

    The table is ``v_<last path segment>``; every field is an optional body parameter,
    so what is refused here is refused by sanitization or validation, not by binding.
    """
    table = table_of(path)
    db.execute(
        f"CREATE TABLE {table} (id serial PRIMARY KEY, "
        + ", ".join(f"{name} {kind}" for name, kind in columns.items())
        + ")"
    )
    names = list(columns)
    return add_endpoint(
        db,
        path,
        "POST",
        f"INSERT INTO {table} ({', '.join(names)}) "
        f"VALUES ({', '.join(f'${i}' for i in range(1, len(names) + 1))}) RETURNING *",
        [{"name": n, "in": "body", "type": _KIND[k]} for n, k in columns.items()],
        {"shape": "object"},
    )


def table_of(path: str) -> str:
    return "v_" + path.rstrip("/").rsplit("/", 1)[-1].replace("-", "_")


def stored(db: DB, path: str, column: str) -> list[Any]:
    return [r[0] for r in db.fetch(f"SELECT {column} FROM {table_of(path)} ORDER BY id")]


def stored_json(db: DB, path: str, column: str) -> list[Any]:
    return [orjson.loads(v) for v in stored(db, path, column)]


def pointers(body: dict[str, Any]) -> list[str]:
    return sorted(e["pointer"] for e in body["errors"])


def invalid(response: Any) -> dict[str, Any]:
    body = assert_problem(response, 400, "VALIDATION_ERROR")
    for entry in body["errors"]:
        assert entry["message"]
        assert entry["pointer"] == "" or entry["pointer"].startswith("/")
    return body


CAMERA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["camera_name", "settings"],
    "properties": {
        "camera_name": {"type": "string", "minLength": 3, "maxLength": 20},
        "settings": {
            "type": "object",
            "required": ["mode"],
            "properties": {
                "fps": {"type": "integer", "minimum": 1, "maximum": 120},
                "mode": {"enum": ["day", "night"]},
            },
        },
        "items": {"type": "array", "items": {"type": "integer"}},
    },
}


# -- JSON Schema -------------------------------------------------------------------------


def test_every_failing_field_is_reported_with_its_pointer(db: DB, make_client: Maker) -> None:
    mid = store_endpoint(db, "/v/cameras", camera_name="text", settings="jsonb", items="jsonb")
    add_schema(db, mid, CAMERA)
    client = serve(make_client)

    r = client.post(
        "/v/cameras",
        json={"camera_name": 5, "settings": {"fps": 500}, "items": [1, "x", 3, "y"]},
    )
    body = invalid(r)
    assert pointers(body) == [
        "/camera_name",
        "/items/1",
        "/items/3",
        "/settings/fps",
        "/settings/mode",
    ]
    assert error_for(body, "pointer", "/camera_name")["keyword"] == "type"
    assert error_for(body, "pointer", "/settings/fps")["keyword"] == "maximum"
    mode = error_for(body, "pointer", "/settings/mode")
    assert mode["keyword"] == "required"
    assert "mode" in mode["message"]
    assert "5 invalid field(s)" in body["detail"]

    # required fields missing: one entry each, pointing at the missing field
    for kwargs in ({"json": {}}, {}):
        body = invalid(client.post("/v/cameras", **kwargs))
        assert pointers(body) == ["/camera_name", "/settings"]
        assert all(e["keyword"] == "required" for e in body["errors"])

    # a body that is not an object cannot hold the fields: INVALID_BODY, not a field error
    body = assert_problem(client.post("/v/cameras", json=[1, 2]), 400, "INVALID_BODY")
    assert body["detail"] == "The body must be a JSON object, not an array"
    assert stored(db, "/v/cameras", "id") == []

    r = client.post(
        "/v/cameras", json={"camera_name": "Gate", "settings": {"mode": "day"}, "items": [1]}
    )
    assert r.status_code == 201, r.text
    assert stored_json(db, "/v/cameras", "settings") == [{"mode": "day"}]


BOOK = {
    "type": "object",
    "required": ["author"],
    "properties": {
        "author": {"type": "string"},
        "title": {"type": "string"},
        "signed": {"type": "string"},
        "subtitle": {"type": ["string", "null"]},
        "genre": {"enum": ["fiction", "non-fiction", "biography"]},
        "cover": {"const": "hardcover"},
        "isbn": {"type": "string", "pattern": "^[0-9-]+$"},
        "code": {"type": "string", "minLength": 3},
        "pages": {"type": "integer", "minimum": 1},
        "published": {"type": "string", "format": "date"},
        "tags": {"type": "array", "maxItems": 2, "uniqueItems": True},
        "price": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        "meta": {"type": "object", "properties": {"shelf": {"type": "string"}}},
    },
}


def test_messages_spell_values_as_json(db: DB, make_client: Maker) -> None:
    columns = dict.fromkeys(BOOK["properties"], "text") | {
        "pages": "int",
        "tags": "jsonb",
        "price": "jsonb",
        "meta": "jsonb",
    }
    add_schema(db, store_endpoint(db, "/v/books", **columns), BOOK)
    client = serve(make_client)

    sent = {
        "title": None,
        "signed": True,
        "subtitle": 5,
        "genre": "poetry",
        "cover": "ebook",
        "isbn": "Cổng",
        "code": "ab",
        "pages": 0,
        "published": "2024-13-01",
        "tags": ["a", "a", "b"],
        "price": None,
        "meta": {"shelf": "B2", "colour": "red"},
    }
    body = invalid(client.post("/v/books", json=sent))
    messages = sorted((e["pointer"], e["message"]) for e in body["errors"])
    assert messages == [
        ("/author", '"author" is required'),
        ("/code", '"ab" is too short (at least 3 characters)'),
        ("/cover", '"hardcover" was expected'),
        ("/genre", '"poetry" is not one of ["fiction", "non-fiction", "biography"]'),
        ("/isbn", '"Cổng" does not match "^[0-9-]+$"'),
        ("/meta/colour", '"colour" is not an allowed field'),
        ("/pages", "0 is less than the minimum of 1"),
        ("/price", "null is not valid under any of the given schemas"),
        ("/published", '"2024-13-01" is not a valid "date"'),
        ("/signed", 'true is not of type "string"'),
        ("/subtitle", '5 is not of type "string", "null"'),
        ("/tags", '["a", "a", "b"] has non-unique elements'),
        ("/tags", '["a", "a", "b"] has too many items (at most 2)'),
        ("/title", 'null is not of type "string"'),
    ]
    assert stored(db, "/v/books", "id") == []


READ_BACK = {"shape": "object", "status": 200}


def test_body_schema_expecting_an_object_refuses_other_bodies(db: DB, make_client: Maker) -> None:
    # nothing is bound from the body here: the schema alone says it is an object
    ping = add_endpoint(
        db, "/v/ping", "POST", "SELECT 1 AS one", [], READ_BACK, database_operation="CALL"
    )
    add_schema(db, ping, {"type": "object", "properties": {"note": {"type": "string"}}})
    batch = add_endpoint(
        db, "/v/batch", "POST", "SELECT 1 AS one", [], READ_BACK, database_operation="CALL"
    )
    add_schema(db, batch, {"type": "array", "items": {"type": "integer"}})
    client = serve(make_client)
    json_body = {"content-type": "application/json"}

    for raw, kind in ((b"[1]", "an array"), (b'"x"', "a string"), (b"null", "null")):
        r = client.post("/v/ping", content=raw, headers=json_body)
        body = assert_problem(r, 400, "INVALID_BODY")
        assert body["detail"] == f"The body must be a JSON object, not {kind}"
    assert client.post("/v/ping", json={"note": "hi"}).status_code == 200
    # a schema that expects something else gets it, and says what is wrong with it
    assert client.post("/v/batch", json=[1, 2]).status_code == 200
    body = invalid(client.post("/v/batch", json=[1, "x"]))
    assert body["errors"] == [
        {"pointer": "/1", "message": '"x" is not of type "integer"', "keyword": "type"}
    ]


def test_unknown_fields_are_rejected_unless_allowed(db: DB, make_client: Maker) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "nested": {"type": "object", "properties": {"a": {"type": "integer"}}},
            "rows": {
                "type": "array",
                "items": {"type": "object", "properties": {"x": {"type": "integer"}}},
            },
        },
    }
    closed = store_endpoint(db, "/v/closed", name="text", nested="jsonb", rows="jsonb")
    add_schema(db, closed, schema, allow_unknown_fields=False)
    opened = store_endpoint(db, "/v/open", name="text", nested="jsonb", rows="jsonb")
    add_schema(db, opened, schema, allow_unknown_fields=True)
    client = serve(make_client)

    sent = {"name": "n", "extra": 1, "nested": {"a": 1, "zzz": 2}, "rows": [{"x": 1, "y": 2}]}
    body = invalid(client.post("/v/closed", json=sent))
    assert pointers(body) == ["/extra", "/nested/zzz", "/rows/0/y"]
    entry = error_for(body, "pointer", "/extra")
    assert entry["message"] == '"extra" is not an allowed field'
    assert entry["keyword"] == "additionalProperties"

    r = client.post("/v/open", json=sent)
    assert r.status_code == 201, r.text
    assert stored_json(db, "/v/open", "nested") == [{"a": 1, "zzz": 2}]
    # the closed endpoint still takes a body with only declared fields
    r = client.post("/v/closed", json={"name": "n", "nested": {"a": 1}})
    assert r.status_code == 201, r.text


def test_strict_mode_enforces_formats(db: DB, make_client: Maker) -> None:
    schema = {
        "type": "object",
        "properties": {
            "homepage": {"type": "string", "format": "uri"},
            "seen_at": {"type": "string", "format": "date-time"},
            "email": {"type": "string", "format": "email"},
        },
    }
    strict = store_endpoint(db, "/v/strict", homepage="text", seen_at="text", email="text")
    add_schema(db, strict, schema, strict_mode=True)
    lax = store_endpoint(db, "/v/lax", homepage="text", seen_at="text", email="text")
    add_schema(db, lax, schema, strict_mode=False)
    client = serve(make_client)

    bad = {"homepage": "not a uri", "seen_at": "yesterday", "email": "nobody"}
    body = invalid(client.post("/v/strict", json=bad))
    assert pointers(body) == ["/email", "/homepage", "/seen_at"]
    assert all(e["keyword"] == "format" for e in body["errors"])
    for wrong in (
        {"homepage": "/relative/path"},
        {"homepage": "http://exa mple.com"},
        {"seen_at": "2024-13-01T00:00:00Z"},
        {"seen_at": "2024-01-01T10:00:00"},  # RFC 3339 needs an offset
        {"seen_at": "2024-01-01"},
    ):
        assert pointers(invalid(client.post("/v/strict", json=wrong))) == [f"/{next(iter(wrong))}"]

    good = [
        {"homepage": "https://example.com/a?b=c#d", "seen_at": "2024-01-01T10:00:00Z"},
        {"homepage": "rtsp://10.0.0.5:554/stream1", "seen_at": "2024-01-01T10:00:00.123+02:00"},
        {"homepage": "urn:isbn:0451450523", "seen_at": "2024-02-29t23:59:59z"},
    ]
    for sent in good:
        assert client.post("/v/strict", json=sent).status_code == 201, sent

    r = client.post("/v/lax", json=bad)
    assert r.status_code == 201, r.text
    assert stored(db, "/v/lax", "homepage") == ["not a uri"]


def test_query_schema_validates_the_query_object(db: DB, make_client: Maker) -> None:
    db.execute("CREATE TABLE v_rows (id int, status text, n int, day date)")
    db.execute(
        "INSERT INTO v_rows VALUES (1, 'active', 5, '2024-01-01'), (2, 'inactive', 1, '2024-02-01'),"
        " (3, 'active', 9, '2024-03-01')"
    )
    mid = add_endpoint(
        db,
        "/v/rows",
        "GET",
        "SELECT id FROM v_rows WHERE ($1::text IS NULL OR status = $1) AND n >= $2"
        " AND ($3::date IS NULL OR day >= $3) AND ($4::int[] IS NULL OR id = ANY($4))"
        " ORDER BY id",
        [
            {"name": "status", "in": "query", "type": "string"},
            {"name": "min_n", "in": "query", "type": "integer", "default": 1},
            {"name": "since", "in": "query", "type": "date"},
            {"name": "id", "in": "query", "type": "array", "items": "integer"},
        ],
        {"shape": "list", "paginate": {"limit": 10, "max_limit": 100}},
    )
    add_schema(
        db,
        mid,
        {
            "type": "object",
            "properties": {
                "status": {"enum": ["active", "inactive"]},
                "min_n": {"type": "integer", "minimum": 1},
                "since": {"type": "string", "format": "date"},
                "id": {"type": "array", "maxItems": 2},
            },
        },
        applies_to="query",
    )
    client = serve(make_client)

    r = client.get("/v/rows", params={"status": "bogus", "min_n": "0", "extra": "1"})
    body = invalid(r)
    assert pointers(body) == ["/extra", "/min_n", "/status"]
    assert "query string" in body["detail"]
    # the bound values, spelled as JSON
    assert error_for(body, "pointer", "/status")["message"] == (
        '"bogus" is not one of ["active", "inactive"]'
    )
    assert error_for(body, "pointer", "/min_n")["message"] == "0 is less than the minimum of 1"
    assert pointers(invalid(client.get("/v/rows?id=1&id=2&id=3"))) == ["/id"]

    r = client.get("/v/rows", params={"status": "active", "min_n": "2", "since": "2024-01-01"})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == [{"id": 1}, {"id": 3}]
    # pagination parameters are the engine's, not unknown fields
    r = client.get("/v/rows", params={"limit": "1", "offset": "1", "id": "1,3"})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == [{"id": 3}]


# -- sanitization ------------------------------------------------------------------------


def test_trim_collapses_spaces_and_lowercases_before_storing(db: DB, make_client: Maker) -> None:
    mid = store_endpoint(db, "/v/titles", title="text", code="text")
    add_rule(
        db,
        "title",
        "trim",
        {"remove_extra_spaces": True, "to_lowercase": True},
        mapping_id=mid,
    )
    add_rule(db, "code", "transform", {"strip": True, "to_uppercase": True}, mapping_id=mid)
    client = serve(make_client)

    r = client.post("/v/titles", json={"title": "  Hello   BIG\t\nWorld  ", "code": " ab-1 "})
    assert r.status_code == 201, r.text
    assert r.json()["title"] == "hello big world"
    assert db.fetchrow("SELECT title, code FROM v_titles") == ("hello big world", "AB-1")


def test_url_rule_rejects_other_protocols_with_its_message(db: DB, make_client: Maker) -> None:
    mid = store_endpoint(db, "/v/links", homepage="text", stream_url="text")
    message = "homepage must be an absolute http:// or https:// URL"
    add_rule(
        db,
        "homepage",
        "validate",
        {"check_url_format": True, "allowed_protocols": ["http", "https"]},
        mapping_id=mid,
        error_message=message,
    )
    client = serve(make_client)

    for bad in ("ftp://files.example.com/x", "javascript:alert(1)", "example.com/x", "https://"):
        body = invalid(client.post("/v/links", json={"homepage": bad}))
        assert body["errors"] == [
            {"pointer": "/homepage", "message": message, "keyword": "sanitize:validate"}
        ]
    # the seeded rule for every endpoint (stream_url: rtsp, http, https) applies here too
    body = invalid(client.post("/v/links", json={"stream_url": "ftp://cam.example/1"}))
    assert body["errors"][0]["pointer"] == "/stream_url"
    assert body["errors"][0]["message"] == (
        "stream_url must be an absolute rtsp://, http:// or https:// URL"
    )
    assert stored(db, "/v/links", "homepage") == []

    r = client.post(
        "/v/links",
        json={"homepage": "HTTPS://Example.com/a", "stream_url": "rtsp://10.0.0.2:554/s"},
    )
    assert r.status_code == 201, r.text
    assert stored(db, "/v/links", "homepage") == ["HTTPS://Example.com/a"]


def test_escape_rule_stores_html_escaped_text(db: DB, make_client: Maker) -> None:
    mid = store_endpoint(db, "/v/comments", comment="text", user_input="text", plain="text")
    add_rule(db, "comment", "escape", {"escape_html": True}, mapping_id=mid)
    client = serve(make_client)

    attack = "<script>alert('x')</script> & \"co\""
    r = client.post("/v/comments", json={"comment": attack, "user_input": "<b>", "plain": "<b>"})
    assert r.status_code == 201, r.text
    row = db.fetchrow("SELECT comment, user_input, plain FROM v_comments")
    assert row["comment"] == (
        "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;co&quot;"
    )
    assert row["user_input"] == "&lt;b&gt;"  # the seeded rule for every endpoint
    assert row["plain"] == "<b>"  # no rule, untouched


def test_value_rules_check_ranges_and_round(db: DB, make_client: Maker) -> None:
    mid = store_endpoint(db, "/v/scores", score="numeric", ratio="numeric", code="text")
    add_rule(
        db,
        "score",
        "validate",
        {},
        mapping_id=mid,
        field_type="float",
        min_value=0,
        max_value=10,
        error_message="score must be from 0 to 10",
    )
    add_rule(
        db,
        "ratio",
        "validate",
        {"min": 0, "max": 1, "precision": 2},
        mapping_id=mid,
        field_type="float",
    )
    add_rule(
        db,
        "code",
        "validate",
        {},
        mapping_id=mid,
        validation_pattern="^[A-Z]{3}$",
        max_length=3,
        error_message="code is three capital letters",
    )
    client = serve(make_client)

    for bad in (11, -1, 10.01):
        body = invalid(client.post("/v/scores", json={"score": bad}))
        assert body["errors"] == [
            {
                "pointer": "/score",
                "message": "score must be from 0 to 10",
                "keyword": "sanitize:validate",
            }
        ]
    body = invalid(client.post("/v/scores", json={"ratio": 1.5, "code": "abc"}))
    assert pointers(body) == ["/code", "/ratio"]
    assert error_for(body, "pointer", "/code")["message"] == "code is three capital letters"
    assert error_for(body, "pointer", "/ratio")["message"] == '"ratio" must be at most 1'
    assert stored(db, "/v/scores", "id") == []

    r = client.post("/v/scores", json={"score": 10, "ratio": 0.12345, "code": "ABC"})
    assert r.status_code == 201, r.text
    assert db.fetchrow("SELECT score::text, ratio::text, code FROM v_scores") == (
        "10",
        "0.12",
        "ABC",
    )


def test_default_values_fill_absent_fields(db: DB, make_client: Maker) -> None:
    mid = store_endpoint(db, "/v/tickets", title="text", source="text", priority="int")
    add_rule(db, "source", "transform", {}, mapping_id=mid, default_value="web")
    add_rule(
        db, "priority", "transform", {}, mapping_id=mid, field_type="integer", default_value="3"
    )
    client = serve(make_client)

    assert client.post("/v/tickets", json={"title": "a"}).status_code == 201
    assert client.post("/v/tickets", json={"title": "b", "source": None}).status_code == 201
    r = client.post("/v/tickets", json={"title": "c", "source": "api", "priority": 1})
    assert r.status_code == 201, r.text
    rows = db.fetch("SELECT title, source, priority FROM v_tickets ORDER BY id")
    assert [tuple(r) for r in rows] == [("a", "web", 3), ("b", "web", 3), ("c", "api", 1)]


def test_scoped_rules_apply_only_to_their_endpoint(db: DB, make_client: Maker) -> None:
    a = store_endpoint(db, "/v/tags-a", tag="text", label="text")
    store_endpoint(db, "/v/tags-b", tag="text", label="text")
    add_rule(db, "tag", "transform", {"to_lowercase": True}, mapping_id=a)
    add_rule(db, "label", "trim", {})  # no endpoint: every endpoint
    client = serve(make_client)

    sent = {"tag": "MiXeD", "label": "  spaced  "}
    assert client.post("/v/tags-a", json=sent).status_code == 201
    assert client.post("/v/tags-b", json=sent).status_code == 201
    assert db.fetchrow("SELECT tag, label FROM v_tags_a") == ("mixed", "spaced")
    assert db.fetchrow("SELECT tag, label FROM v_tags_b") == ("MiXeD", "spaced")


def test_sanitize_input_false_turns_rules_off(db: DB, make_client: Maker) -> None:
    on = store_endpoint(db, "/v/raw-on", title="text", user_input="text")
    off = store_endpoint(db, "/v/raw-off", title="text", user_input="text")
    schema = {"type": "object", "properties": {"title": {}, "user_input": {}}}
    add_schema(db, on, schema, sanitize_input=True)
    add_schema(db, off, schema, sanitize_input=False)
    for mid in (on, off):
        add_rule(db, "title", "trim", {"to_uppercase": True}, mapping_id=mid)
    client = serve(make_client)

    sent = {"title": "  x  ", "user_input": "<i>"}
    assert client.post("/v/raw-on", json=sent).status_code == 201
    assert client.post("/v/raw-off", json=sent).status_code == 201
    assert db.fetchrow("SELECT title, user_input FROM v_raw_on") == ("X", "&lt;i&gt;")
    assert db.fetchrow("SELECT title, user_input FROM v_raw_off") == ("  x  ", "<i>")


def test_sanitization_runs_before_the_schema(db: DB, make_client: Maker) -> None:
    mid = store_endpoint(db, "/v/codes", code="text")
    add_schema(
        db,
        mid,
        {
            "type": "object",
            "required": ["code"],
            "properties": {"code": {"type": "string", "minLength": 1, "maxLength": 2}},
        },
    )
    add_rule(db, "code", "trim", {}, mapping_id=mid)
    client = serve(make_client)

    r = client.post("/v/codes", json={"code": "   ab   "})
    assert r.status_code == 201, r.text
    assert stored(db, "/v/codes", "code") == ["ab"]
    body = invalid(client.post("/v/codes", json={"code": "    "}))
    assert body["errors"][0]["pointer"] == "/code"
    assert body["errors"][0]["keyword"] == "minLength"


# -- the body itself ---------------------------------------------------------------------


def test_body_must_be_json(db: DB, make_client: Maker) -> None:
    store_endpoint(db, "/v/notes", note="text")
    client = serve(make_client)

    r = client.post(
        "/v/notes", content=b'{"note": "x"', headers={"content-type": "application/json"}
    )
    body = assert_problem(r, 400, "INVALID_JSON")
    assert "byte" in body["detail"]
    r = client.post("/v/notes", content=b"note=x", headers={"content-type": "text/plain"})
    assert_problem(r, 415, "UNSUPPORTED_MEDIA_TYPE")
    r = client.post(
        "/v/notes", content=b"note=x", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert_problem(r, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert stored(db, "/v/notes", "note") == []

    # any JSON media type is JSON
    for ctype in ("application/json; charset=utf-8", "application/merge-patch+json"):
        r = client.post("/v/notes", content=b'{"note": "ok"}', headers={"content-type": ctype})
        assert r.status_code == 201, (ctype, r.text)
    assert stored(db, "/v/notes", "note") == ["ok", "ok"]


def test_body_over_the_limit_is_413(db: DB, make_client: Maker) -> None:
    store_endpoint(db, "/v/blobs", data="text")
    client = serve(make_client, max_body_bytes=100)

    small = orjson.dumps({"data": "x" * 50})
    big = orjson.dumps({"data": "x" * 150})
    assert client.post("/v/blobs", content=small).status_code == 201

    r = client.post("/v/blobs", content=big, headers={"content-type": "application/json"})
    body = assert_problem(r, 413, "PAYLOAD_TOO_LARGE")
    assert "100" in body["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        for i in range(0, len(big), 40):
            yield big[i : i + 40]

    r = client.post("/v/blobs", content=chunks(), headers={"content-type": "application/json"})
    assert_problem(r, 413, "PAYLOAD_TOO_LARGE")
    assert stored(db, "/v/blobs", "length(data)") == [50]


# -- rows that cannot work ---------------------------------------------------------------


def test_invalid_schema_row_is_reported_and_not_served(db: DB, make_client: Maker) -> None:
    bad_type = store_endpoint(db, "/v/bad-type", name="text")
    add_schema(db, bad_type, {"type": "object", "properties": {"name": {"type": "strin"}}})
    bad_regex = store_endpoint(db, "/v/bad-regex", name="text")
    add_schema(db, bad_regex, {"properties": {"name": {"pattern": "(unclosed"}}})
    good = store_endpoint(db, "/v/good", name="text")
    add_schema(db, good, {"type": "object", "required": ["name"]})
    bad_rule = add_rule(db, "name", "validate", {}, validation_pattern="[unclosed")
    client = serve(make_client)

    for path in ("/v/bad-type", "/v/bad-regex"):
        assert_problem(client.post(path, json={"name": "x"}), 503, "ENDPOINT_UNAVAILABLE")
    assert "not a valid JSON Schema" in problems_of(client, bad_type)[0]
    assert problems_of(client, bad_regex)
    # a bad sanitization rule is reported too; the endpoints whose body has that field
    # depend on it and are refused, the others serve
    rules = [
        p for p in catalog_report(client)["problems"] if p["table"] == "data_sanitization_rules"
    ]
    assert [(p["id"], "validation_pattern" in p["reason"]) for p in rules] == [(bad_rule, True)]
    assert_problem(client.post("/v/good", json={"name": "x"}), 503, "ENDPOINT_UNAVAILABLE")
    assert f"data_sanitization_rules id={bad_rule}" in problems_of(client, good)[0]
    other = store_endpoint(db, "/v/other", title="text")
    assert client.wait_for("POST", "/v/other", 201, json={"title": "x"}).status_code == 201
    assert other not in [p["id"] for p in catalog_report(client)["problems"]]
    db.execute("DELETE FROM data_sanitization_rules WHERE id = $1", bad_rule)
    assert pointers(invalid(client.wait_for("POST", "/v/good", 400, json={}))) == ["/name"]

    # fixing the schema row publishes the endpoint (the catalogue reloads on NOTIFY)
    db.execute(
        "UPDATE api_validation_schemas SET validation_schema = "
        """'{"type": "object", "properties": {"name": {"type": "string"}}}'"""
        " WHERE endpoint_mapping_id = $1",
        bad_type,
    )
    r = client.wait_for("POST", "/v/bad-type", 400, json={"name": 1})
    assert pointers(invalid(r)) == ["/name"]
    assert client.post("/v/bad-type", json={"name": "ok"}).status_code == 201


def test_schema_refs_and_nested_arrays(db: DB, make_client: Maker) -> None:
    mid = store_endpoint(db, "/v/zones", zones="jsonb")
    add_schema(
        db,
        mid,
        {
            "type": "object",
            "$defs": {
                "point": {
                    "type": "object",
                    "required": ["x", "y"],
                    "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                }
            },
            "properties": {
                "zones": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "array", "items": {"$ref": "#/$defs/point"}},
                }
            },
        },
    )
    client = serve(make_client)

    r = client.post(
        "/v/zones", json={"zones": [[{"x": 1, "y": 2}, {"x": "a"}], [{"x": 0, "y": 0, "z": 1}]]}
    )
    body = invalid(r)
    assert pointers(body) == ["/zones/0/1/x", "/zones/0/1/y", "/zones/1/0/z"]
    assert pointers(invalid(client.post("/v/zones", json={"zones": []}))) == ["/zones"]

    r = client.post("/v/zones", json={"zones": [[{"x": 1.5, "y": 2}]]})
    assert r.status_code == 201, r.text
    assert stored_json(db, "/v/zones", "zones") == [[[{"x": 1.5, "y": 2}]]]


def test_pattern_properties_are_not_reported_as_unknown(db: DB, make_client: Maker) -> None:
    mid = store_endpoint(db, "/v/labels", name="text")
    add_schema(
        db,
        mid,
        {
            "type": "object",
            "properties": {"name": {"type": "string"}},
            "patternProperties": {"^x-": {"type": "string"}},
            "additionalProperties": False,
        },
    )
    client = serve(make_client)

    body = invalid(client.post("/v/labels", json={"name": "a", "x-team": "red", "colour": "red"}))
    assert body["errors"] == [
        {
            "pointer": "/colour",
            "message": '"colour" is not an allowed field',
            "keyword": "additionalProperties",
        }
    ]
    assert client.post("/v/labels", json={"name": "a", "x-team": "red"}).status_code == 201


def test_json_rule_requires_fields_and_non_negative_numbers(db: DB, make_client: Maker) -> None:
    # the seeded bbox_coordinates rule (every endpoint): x, y, width, height, none negative
    store_endpoint(db, "/v/boxes", bbox_coordinates="jsonb")
    client = serve(make_client)

    message = "bbox_coordinates needs non-negative x, y, width and height"
    for bad in ({"x": 1, "y": 2, "width": 3}, {"x": 1, "y": -2, "width": 3, "height": 4}):
        body = invalid(client.post("/v/boxes", json={"bbox_coordinates": bad}))
        assert body["errors"] == [
            {"pointer": "/bbox_coordinates", "message": message, "keyword": "sanitize:validate"}
        ]
    box = {"x": 0, "y": 2, "width": 3, "height": 4}
    assert client.post("/v/boxes", json={"bbox_coordinates": box}).status_code == 201
    assert stored_json(db, "/v/boxes", "bbox_coordinates") == [box]


def test_rules_and_schemas_added_while_running_take_effect(db: DB, make_client: Maker) -> None:
    mid = store_endpoint(db, "/v/live", name="text")
    client = serve(make_client)
    assert client.post("/v/live", json={"name": "  Mixed  "}).status_code == 201

    add_rule(db, "name", "trim", {"to_lowercase": True}, mapping_id=mid, max_length=5)
    # (the probes below are stored until the reload lands; only what follows is checked)
    r = client.wait_for("POST", "/v/live", 400, json={"name": "toolong"})
    assert invalid(r)["errors"][0]["pointer"] == "/name"
    r = client.post("/v/live", json={"name": "  Mixed  "})
    assert r.status_code == 201
    assert stored(db, "/v/live", "name")[-1] == "mixed"

    add_schema(db, mid, {"type": "object", "required": ["name"]})
    r = client.wait_for("POST", "/v/live", 400, json={})
    assert pointers(invalid(r)) == ["/name"]
    assert stored(db, "/v/live", "name")[0] == "  Mixed  "


def test_default_values_fill_an_empty_body_too(db: DB, make_client: Maker) -> None:
    mid = store_endpoint(db, "/v/pings", source="text")
    add_rule(db, "source", "transform", {}, mapping_id=mid, default_value="web")
    client = serve(make_client)

    assert client.post("/v/pings", json={}).status_code == 201
    assert client.post("/v/pings").status_code == 201  # no body at all
    assert stored(db, "/v/pings", "source") == ["web", "web"]


def test_the_engine_starts_without_building_the_iri_parser() -> None:
    # jsonschema's import of rfc3987_syntax built a Lark grammar: 1.4 s of every start-up
    import subprocess
    import sys

    code = "import sys, engine.cli, engine.app; print('rfc3987_syntax' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_iri_formats_still_assert_loaded_on_first_need() -> None:
    import sys

    import pytest

    from engine.errors import ApiError
    from engine.patterns import _warming
    from engine.validation import compile_schema

    schema = {
        "type": "object",
        "properties": {"home": {"format": "iri"}, "link": {"format": "iri-reference"}},
    }
    validator = compile_schema("links", schema)
    # a schema naming them loads the parser in a thread (unless an earlier test loaded it)
    assert _warming or "rfc3987_syntax" in sys.modules
    validator.check({"home": "https://example.com/ü", "link": "../a?b#c"})
    for bad in ({"home": "no scheme"}, {"link": "a b"}):
        with pytest.raises(ApiError) as caught:
            validator.check(bad)
        assert caught.value.code == "VALIDATION_ERROR"
