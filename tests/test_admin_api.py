"""The admin API under /admin/v1, over HTTP with real tokens and API keys.

Its reads are rows of sql/014 served by the catalogue; creating and changing rows,
diffs and rollbacks are built in (engine/admin/api.py). Every change is checked with
the checks of ``engine check`` before it is kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest

from engine import keys
from engine.admin import ROLE
from engine.admin.api import BUILTIN as builtin_routes
from engine.admin.change import judge
from engine.admin.fields import MAPPINGS, clean
from engine.catalog import Catalog, RowStatus
from engine.errors import ApiError, ErrorCatalog
from tests.engine_server import EngineClient
from tests.helpers import (
    add_endpoint,
    assert_problem,
    compile_catalog,
    poll,
    serve,
    status_of,
    wait_status,
)
from tests.pg import DB

BOOKS_TABLE = """
CREATE TABLE lib_books (id serial PRIMARY KEY, title text NOT NULL);
INSERT INTO lib_books (title) VALUES ('Dune'), ('Emma');
"""
BOOKS = {
    "endpoint_path": "/lib/v1/books",
    "http_method": "GET",
    "service_name": "library",
    "query_template": "SELECT id, title FROM lib_books ORDER BY id",
    "result_mapping": {"shape": "list"},
    "requires_auth": False,
    "cache_enabled": False,
    "rate_limit_per_minute": None,
}
AS_WRITTEN = [{"id": 1, "title": "Dune"}, {"id": 2, "title": "Emma"}]
SHOUTED = [{"id": 1, "title": "DUNE"}, {"id": 2, "title": "EMMA"}]


@pytest.fixture()
def client(make_client: Callable[..., EngineClient]) -> EngineClient:
    return serve(make_client)


def admin(client: EngineClient, sub: str = "alice") -> dict[str, str]:
    return client.auth(sub=sub, roles=(ROLE,))


def create_key(url: str, name: str, roles: list[str]) -> str:
    async def go() -> str:
        conn = await asyncpg.connect(url)
        try:
            return await keys.create_key(conn, name, roles=roles)
        finally:
            await conn.close()

    return asyncio.run(go())


def rows_of(response: httpx.Response) -> list[dict[str, Any]]:
    """The rows of a list answer (a page's data, or the list itself)."""
    assert response.status_code == 200, response.text
    body = response.json()
    return body["data"] if isinstance(body, dict) else body


def counts(db: DB) -> tuple[int, ...]:
    """Rows of the tables an admin change may write (a refused change writes none)."""
    return tuple(
        db.fetchval(f"SELECT count(*) FROM {table}")
        for table in (
            "api_endpoint_mappings",
            "api_validation_schemas",
            "api_error_codes",
            "api_endpoint_history",
        )
    )


def create(client: EngineClient, row: dict[str, Any], **params: str) -> httpx.Response:
    return client.post("/admin/v1/endpoints", json=row, params=params, headers=admin(client))


# ---------------------------------------------------------------------------
# Who may call
# ---------------------------------------------------------------------------


def every_admin_route(db: DB) -> list[tuple[str, str]]:
    """(method, path) of every admin route: the rows of sql/014 and the built-in ones."""
    rows = db.fetch(
        "SELECT http_method, endpoint_path FROM api_endpoint_mappings "
        "WHERE service_name = 'admin' ORDER BY id"
    )
    found = [(r["http_method"], r["endpoint_path"]) for r in rows]
    found += [(method, r.path) for r in builtin_routes for method in r.methods - {"HEAD"}]
    assert len(found) >= 24
    # ids no row has: an admin's call of a destructive route must change nothing here
    filled = {"{id}": "999999", "{version}": "1", "{code}": "NO_SUCH_CODE"}
    out = []
    for method, path in found:
        for name, value in filled.items():
            path = path.replace(name, value)
        out.append((method, path))
    return out


def test_every_admin_route_needs_the_engine_admin_role(
    db: DB, db_url: str, client: EngineClient
) -> None:
    routes = every_admin_route(db)
    plain_key = create_key(db_url, "plain", ["camera_admin"])
    admin_key = create_key(db_url, "admin-key", [ROLE])
    not_admin = client.auth(roles=("camera_admin",))
    # the keys reach the engine's key store on NOTIFY
    client.wait_for("GET", "/admin/v1/error-codes", 200, headers={"X-API-Key": admin_key})
    for method, path in routes:
        anonymous = client.request(method, path, json={})
        assert_problem(anonymous, 401, "AUTHENTICATION_REQUIRED")
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        for headers in (not_admin, {"X-API-Key": plain_key}):
            refused = client.request(method, path, json={}, headers=headers)
            assert_problem(refused, 403, "INSUFFICIENT_PERMISSIONS")
        for headers in (admin(client), {"X-API-Key": admin_key}):
            allowed = client.request(method, path, json={}, headers=headers)
            assert allowed.status_code not in (401, 403, 405, 500), (method, path, allowed.text)
    bad = client.get("/admin/v1/endpoints", headers={"Authorization": "Bearer nope"})
    assert_problem(bad, 401, "INVALID_TOKEN")


def test_rows_may_not_publish_under_admin_v1_unless_they_are_the_admin_service(db: DB) -> None:
    mine = add_endpoint(db, "/admin/v1/mine", "GET", "SELECT 1 AS one")
    status = status_of(compile_catalog(db), mine)
    assert status.state == "refused"
    assert "/admin/v1/* is the engine's own path" in status.reason
    admin_rows = db.fetch("SELECT id FROM api_endpoint_mappings WHERE service_name = 'admin'")
    catalog = compile_catalog(db)
    assert all(status_of(catalog, r["id"]).state == "serving" for r in admin_rows)
    assert not [w for w in catalog.warnings if w.path and w.path.startswith("/admin/")]


# ---------------------------------------------------------------------------
# Create, update, rollback: each version's behaviour, in every process
# ---------------------------------------------------------------------------


def test_create_update_rollback_round_trip_in_two_processes(
    db: DB, make_client: Callable[..., EngineClient]
) -> None:
    db.execute(BOOKS_TABLE)
    first, second = serve(make_client), make_client()
    created = create(first, BOOKS)
    assert created.status_code == 201, created.text
    row = created.json()
    mid = row["id"]
    assert created.headers["Location"] == f"/admin/v1/endpoints/{mid}"
    assert row["state"] == "serving" and row["version"] == 1 and row["reason"] is None
    assert (
        row["query_template"] == BOOKS["query_template"] and row["database_operation"] == "SELECT"
    )
    for engine in (first, second):  # served within a second in every process
        served = engine.wait_for("GET", "/lib/v1/books", 200, timeout_s=1.5)
        assert served.json() == AS_WRITTEN

    shout = "SELECT id, upper(title) AS title FROM lib_books ORDER BY id"
    changed = first.patch(
        f"/admin/v1/endpoints/{mid}", json={"query_template": shout}, headers=admin(first, "bob")
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["version"] == 2 and changed.json()["state"] == "serving"
    for engine in (first, second):
        poll(lambda e=engine: e.get("/lib/v1/books").json(), lambda b: b == SHOUTED, "v2", 1.5)

    versions = rows_of(first.get(f"/admin/v1/endpoints/{mid}/versions", headers=admin(first)))
    assert [(v["version"], v["change_kind"], v["changed_by"]) for v in versions] == [
        (2, "updated", "bob"),
        (1, "created", "alice"),
    ]
    back = first.post(
        f"/admin/v1/endpoints/{mid}/rollback", json={"version": 1}, headers=admin(first, "carol")
    )
    assert back.status_code == 200, back.text
    assert back.json()["query_template"] == BOOKS["query_template"]
    assert back.json()["restored"]["from_version"] == 1 and back.json()["state"] == "serving"
    for engine in (first, second):
        poll(lambda e=engine: e.get("/lib/v1/books").json(), lambda b: b == AS_WRITTEN, "v3", 1.5)
    latest = rows_of(second.get(f"/admin/v1/endpoints/{mid}/versions", headers=admin(second)))[0]
    assert (latest["version"], latest["change_kind"], latest["changed_by"]) == (
        3,
        "rollback",
        "carol",
    )
    shown = second.get(f"/admin/v1/endpoints/{mid}", headers=admin(second))
    assert shown.status_code == 200 and shown.json()["version"] == 3


def test_the_diff_of_two_versions(db: DB, client: EngineClient) -> None:
    db.execute(BOOKS_TABLE)
    mid = create(client, BOOKS).json()["id"]
    client.patch(
        f"/admin/v1/endpoints/{mid}",
        json={
            "query_template": "SELECT id, title\nFROM lib_books\nWHERE id > 1\nORDER BY id",
            "description": "later books",
        },
        headers=admin(client),
    ).raise_for_status()
    diff = client.get(
        f"/admin/v1/endpoints/{mid}/diff", params={"from": 1, "to": 2}, headers=admin(client)
    )
    assert diff.status_code == 200, diff.text
    body = diff.json()
    assert (body["id"], body["from"], body["to"]) == (mid, 1, 2)
    assert body["changed"]["mapping.description"] == {"from": None, "to": "later books"}
    assert set(body["changed"]) == {"mapping.description", "mapping.query_template"}
    assert "-SELECT id, title FROM lib_books ORDER BY id" in body["template_diff"]
    assert "+WHERE id > 1" in body["template_diff"]
    # without from/to: the last version against the one before
    again = client.get(f"/admin/v1/endpoints/{mid}/diff", headers=admin(client)).json()
    assert again["changed"] == body["changed"]
    missing = client.get(
        f"/admin/v1/endpoints/{mid}/diff", params={"from": 1, "to": 9}, headers=admin(client)
    )
    assert_problem(missing, 404, "ENDPOINT_VERSION_NOT_FOUND")
    bad = client.get(f"/admin/v1/endpoints/{mid}/diff?from=one", headers=admin(client))
    assert_problem(bad, 400, "INVALID_PARAMETER")


# ---------------------------------------------------------------------------
# Refusals write nothing
# ---------------------------------------------------------------------------


def test_a_create_that_would_not_serve_is_refused_with_its_reasons_and_writes_nothing(
    db: DB, client: EngineClient
) -> None:
    before = counts(db)
    missing_table = create(client, {**BOOKS, "query_template": "SELECT * FROM no_such_table"})
    body = assert_problem(missing_table, 422, "ENDPOINT_INVALID")
    assert "no_such_table" in body["detail"]
    [reason] = body["errors"]
    assert reason["id"] is None  # the row was never written
    assert reason["path"] == "/lib/v1/books" and reason["state"] == "refused"
    assert "does not prepare" in reason["message"]

    mismatched = create(
        client, {**BOOKS, "query_template": "SELECT $1::int AS n", "query_parameters": []}
    )
    assert "1 placeholder(s)" in assert_problem(mismatched, 422, "ENDPOINT_INVALID")["detail"]
    clash = create(client, {**BOOKS, "endpoint_path": "/health/mine"})
    assert "engine's own path" in assert_problem(clash, 422, "ENDPOINT_INVALID")["detail"]
    assert counts(db) == before
    assert client.get("/lib/v1/books").status_code == 404

    # the body's own faults, every one named
    bad = create(
        client,
        {"endpoint_path": "lib", "http_method": "FETCH", "cache_ttl_seconds": -1, "colour": "red"},
    )
    problem = assert_problem(bad, 400, "VALIDATION_ERROR")
    pointers = {e["pointer"]: e["message"] for e in problem["errors"]}
    assert {"/endpoint_path", "/http_method", "/cache_ttl_seconds", "/colour"} <= set(pointers)
    assert {"/service_name", "/query_template"} <= set(pointers)  # required
    assert "not a column" in pointers["/colour"]
    readonly = create(client, {**BOOKS, "version": 7})
    assert (
        "cannot be set" in assert_problem(readonly, 400, "VALIDATION_ERROR")["errors"][0]["message"]
    )
    for raw, code in ((b"[1]", "INVALID_BODY"), (b"{", "INVALID_JSON")):
        sent = client.post(
            "/admin/v1/endpoints",
            content=raw,
            headers={**admin(client), "Content-Type": "application/json"},
        )
        assert_problem(sent, 400, code)
    nul = create(client, {**BOOKS, "result_mapping": {"shape": "list", "fields": {"a\u0000": "b"}}})
    assert "NUL" in assert_problem(nul, 400, "VALIDATION_ERROR")["errors"][0]["message"]
    taken = create(client, {**BOOKS, "endpoint_path": "/api/v1/cameras"})
    assert "is mapping id=" in assert_problem(taken, 409, "DUPLICATE_RESOURCE")["detail"]
    assert counts(db) == before


def test_a_failed_edit_is_refused_and_the_last_version_keeps_serving(
    db: DB, client: EngineClient
) -> None:
    db.execute(BOOKS_TABLE)
    mid = create(client, BOOKS).json()["id"]
    client.wait_for("GET", "/lib/v1/books", 200)
    before = counts(db)
    broken = client.patch(
        f"/admin/v1/endpoints/{mid}",
        json={"query_template": "SELECT nope FROM lib_books"},
        headers=admin(client),
    )
    body = assert_problem(broken, 422, "ENDPOINT_INVALID")
    assert body["errors"][0]["state"] == "stale"  # what it would be: the old version serving
    assert "still serves" in body["errors"][0]["message"]
    assert counts(db) == before
    assert db.fetchval("SELECT version FROM api_endpoint_mappings WHERE id = $1", mid) == 1
    assert client.get("/lib/v1/books").json() == AS_WRITTEN
    gone = client.patch(
        "/admin/v1/endpoints/999999", json={"is_active": True}, headers=admin(client)
    )
    assert_problem(gone, 404, "ENDPOINT_NOT_FOUND")
    empty = client.patch(f"/admin/v1/endpoints/{mid}", json={}, headers=admin(client))
    assert_problem(empty, 400, "VALIDATION_ERROR")


def test_a_dry_run_answers_the_check_and_writes_nothing(db: DB, client: EngineClient) -> None:
    db.execute(BOOKS_TABLE)
    before = counts(db)
    good = create(client, BOOKS, dry_run="true")
    assert good.status_code == 200, good.text
    assert good.json()["dry_run"] is True and good.json()["would_serve"] is True
    assert good.json()["state"] == "serving" and good.json()["problems"] == []
    assert good.json()["id"] is None and good.json()["query_template"] == BOOKS["query_template"]
    bad = create(client, {**BOOKS, "query_template": "SELECT * FROM nowhere"}, dry_run="true")
    assert bad.status_code == 200 and bad.json()["would_serve"] is False
    assert "nowhere" in bad.json()["problems"][0]["message"]
    assert counts(db) == before
    assert client.get("/lib/v1/books").status_code == 404
    odd = create(client, BOOKS, dry_run="maybe")
    assert_problem(odd, 400, "INVALID_PARAMETER")


# ---------------------------------------------------------------------------
# Activate, deactivate, delete; history after delete
# ---------------------------------------------------------------------------


def test_activate_and_deactivate_take_effect_and_a_broken_draft_is_not_activated(
    db: DB, client: EngineClient
) -> None:
    db.execute(BOOKS_TABLE)
    draft = create(client, {**BOOKS, "is_active": False})
    assert draft.status_code == 201 and draft.json()["state"] == "draft"
    mid = draft.json()["id"]
    assert client.get("/lib/v1/books").status_code == 404
    on = client.post(f"/admin/v1/endpoints/{mid}/activate", headers=admin(client))
    assert on.status_code == 200, on.text
    assert on.json()["is_active"] is True
    assert client.wait_for("GET", "/lib/v1/books", 200, timeout_s=1.5).json() == AS_WRITTEN
    wait_status(db, mid, "serving")
    off = client.post(f"/admin/v1/endpoints/{mid}/deactivate", headers=admin(client))
    assert off.status_code == 200 and off.json()["is_active"] is False
    again = client.post(f"/admin/v1/endpoints/{mid}/activate", headers=admin(client))
    assert again.status_code == 200, again.text  # no wait: it served as this very definition
    off = client.post(f"/admin/v1/endpoints/{mid}/deactivate", headers=admin(client))
    assert client.wait_for("GET", "/lib/v1/books", 404, timeout_s=1.5).status_code == 404

    broken = add_endpoint(db, "/lib/v1/broken", "GET", "SELECT * FROM gone", is_active=False)
    wait_status(db, broken, "draft")
    refused = client.post(f"/admin/v1/endpoints/{broken}/activate", headers=admin(client))
    assert "gone" in assert_problem(refused, 422, "ENDPOINT_INVALID")["detail"]
    assert not db.fetchval("SELECT is_active FROM api_endpoint_mappings WHERE id = $1", broken)
    missing = client.post("/admin/v1/endpoints/999999/activate", headers=admin(client))
    assert_problem(missing, 404, "ENDPOINT_NOT_FOUND")


def test_activating_a_version_no_engine_has_checked_yet_is_refused(db: DB) -> None:
    mid = add_endpoint(db, "/lib/v1/unchecked", "GET", "SELECT 1 AS one", is_active=False)
    with pytest.raises(asyncpg.RaiseError, match="ENDPOINT_NOT_CHECKED"):
        db.fetch("SELECT * FROM engine_admin_set_active($1, true, 'me')", mid)


def test_history_is_kept_after_delete_and_a_rollback_brings_the_row_back(
    db: DB, client: EngineClient
) -> None:
    db.execute(BOOKS_TABLE)
    mid = create(client, BOOKS).json()["id"]
    client.wait_for("GET", "/lib/v1/books", 200)
    deleted = client.delete(f"/admin/v1/endpoints/{mid}", headers=admin(client, "dave"))
    assert deleted.status_code == 200 and deleted.json()["id"] == mid
    assert client.wait_for("GET", "/lib/v1/books", 404, timeout_s=1.5).status_code == 404
    assert_problem(
        client.get(f"/admin/v1/endpoints/{mid}", headers=admin(client)), 404, "ENDPOINT_NOT_FOUND"
    )
    assert_problem(
        client.delete(f"/admin/v1/endpoints/{mid}", headers=admin(client)),
        404,
        "ENDPOINT_NOT_FOUND",
    )

    versions = rows_of(client.get(f"/admin/v1/endpoints/{mid}/versions", headers=admin(client)))
    assert [(v["version"], v["change_kind"], v["deleted"]) for v in versions] == [
        (2, "deleted", True),
        (1, "created", False),
    ]
    assert versions[0]["changed_by"] == "dave"
    one = client.get(f"/admin/v1/endpoints/{mid}/versions/1", headers=admin(client))
    assert one.json()["definition"]["mapping"]["query_template"] == BOOKS["query_template"]
    none = client.get(f"/admin/v1/endpoints/{mid}/versions/9", headers=admin(client))
    assert_problem(none, 404, "ENDPOINT_VERSION_NOT_FOUND")

    back = client.post(
        f"/admin/v1/endpoints/{mid}/rollback", json={"version": 1}, headers=admin(client)
    )
    assert back.status_code == 200, back.text
    assert back.json()["id"] == mid and back.json()["restored"]["recreated"] is True
    assert client.wait_for("GET", "/lib/v1/books", 200, timeout_s=1.5).json() == AS_WRITTEN
    bad = client.post(
        f"/admin/v1/endpoints/{mid}/rollback", json={"version": "1"}, headers=admin(client)
    )
    assert_problem(bad, 400, "VALIDATION_ERROR")


def test_a_rollback_that_would_not_serve_today_is_refused(db: DB, client: EngineClient) -> None:
    db.execute(BOOKS_TABLE)
    mid = create(client, BOOKS).json()["id"]
    client.patch(
        f"/admin/v1/endpoints/{mid}",
        json={"query_template": "SELECT id FROM lib_books ORDER BY id"},
        headers=admin(client),
    ).raise_for_status()
    db.execute("ALTER TABLE lib_books DROP COLUMN title")  # version 1 no longer prepares
    before = counts(db)
    refused = client.post(
        f"/admin/v1/endpoints/{mid}/rollback", json={"version": 1}, headers=admin(client)
    )
    assert "title" in assert_problem(refused, 422, "ENDPOINT_INVALID")["detail"]
    assert counts(db) == before
    assert db.fetchval("SELECT version FROM api_endpoint_mappings WHERE id = $1", mid) == 2


# ---------------------------------------------------------------------------
# Schemas and error codes
# ---------------------------------------------------------------------------


def test_schemas_are_checked_and_a_broken_one_leaves_the_endpoint_serving(
    db: DB, client: EngineClient
) -> None:
    db.execute(BOOKS_TABLE)
    post = {
        **BOOKS,
        "http_method": "POST",
        "query_template": "INSERT INTO lib_books (title) VALUES ($1) RETURNING id, title",
        "query_parameters": [{"name": "title", "in": "body", "type": "string"}],
        "result_mapping": {"shape": "object", "status": 201},
    }
    mid = create(client, post).json()["id"]
    client.wait_for("POST", "/lib/v1/books", 201, json={"title": "first"})
    before = counts(db)
    broken = client.post(
        "/admin/v1/schemas",
        json={
            "endpoint_mapping_id": mid,
            "schema_name": "book",
            "validation_schema": {"type": "nonsense"},
        },
        headers=admin(client),
    )
    body = assert_problem(broken, 422, "ENDPOINT_INVALID")
    assert body["errors"][0]["id"] == mid and "nonsense" in body["detail"]
    assert counts(db) == before
    assert client.post("/lib/v1/books", json={"title": "x" * 50}).status_code == 201

    schema = {
        "type": "object",
        "required": ["title"],
        "properties": {"title": {"type": "string", "maxLength": 10}},
    }
    made = client.post(
        "/admin/v1/schemas",
        json={"endpoint_mapping_id": mid, "schema_name": "book", "validation_schema": schema},
        headers=admin(client),
    )
    assert made.status_code == 201, made.text
    sid = made.json()["id"]
    assert made.json()["endpoints"][0]["state"] == "serving"
    assert (
        client.wait_for(
            "POST", "/lib/v1/books", 400, json={"title": "x" * 50}, code="VALIDATION_ERROR"
        ).status_code
        == 400
    )
    listed = rows_of(
        client.get("/admin/v1/schemas", params={"endpoint_id": mid}, headers=admin(client))
    )
    assert [s["id"] for s in listed] == [sid]

    looser = client.patch(
        f"/admin/v1/schemas/{sid}",
        json={"validation_schema": {**schema, "properties": {"title": {"maxLength": 100}}}},
        headers=admin(client),
    )
    assert looser.status_code == 200, looser.text
    assert (
        client.wait_for("POST", "/lib/v1/books", 201, json={"title": "x" * 50}).status_code == 201
    )
    twice = client.post(
        "/admin/v1/schemas",
        json={"endpoint_mapping_id": mid, "schema_name": "again", "validation_schema": schema},
        headers=admin(client),
    )
    assert_problem(twice, 409, "DUPLICATE_RESOURCE")
    nowhere = client.post(
        "/admin/v1/schemas",
        json={"endpoint_mapping_id": 999999, "schema_name": "x", "validation_schema": {}},
        headers=admin(client),
    )
    assert_problem(nowhere, 422, "REFERENCED_RESOURCE_MISSING")
    assert_problem(
        client.patch("/admin/v1/schemas/999999", json={"strict_mode": True}, headers=admin(client)),
        404,
        "SCHEMA_NOT_FOUND",
    )


def test_error_codes_are_checked(db: DB, client: EngineClient) -> None:
    code = {
        "error_code": "BOOK_NOT_FOUND",
        "http_status_code": 404,
        "error_category": "business",
        "error_message": "No such book",
        "localized_messages": {"ru": "Книга не найдена"},
    }
    made = client.post("/admin/v1/error-codes", json=code, headers=admin(client))
    assert made.status_code == 201, made.text
    assert made.headers["Location"] == "/admin/v1/error-codes/BOOK_NOT_FOUND"
    listed = rows_of(
        client.get("/admin/v1/error-codes", params={"category": "business"}, headers=admin(client))
    )
    assert "BOOK_NOT_FOUND" in [c["error_code"] for c in listed]

    draft = add_endpoint(
        db, "/lib/v1/book/{id}", "GET", "SELECT $1::int AS id",
        [{"name": "id", "in": "path", "type": "integer"}],
        {"shape": "object", "not_found": "BOOK_NOT_FOUND"}, is_active=False,
    )  # fmt: skip
    wait_status(db, draft, "draft")
    before = counts(db)
    malformed = client.post(
        "/admin/v1/error-codes",
        json={**code, "error_code": "BAD CODE", "localized_messages": {"vi": ""}},
        headers=admin(client),
    )
    body = assert_problem(malformed, 422, "ERROR_CODE_INVALID")
    assert len(body["errors"]) == 2  # the name and the empty message
    out_of_range = client.patch(
        "/admin/v1/error-codes/BOOK_NOT_FOUND",
        json={"http_status_code": 200},
        headers=admin(client),
    )
    assert_problem(out_of_range, 400, "VALIDATION_ERROR")
    in_use = client.patch(
        "/admin/v1/error-codes/CAMERA_NOT_FOUND",
        json={"error_code": "CAM_GONE"},
        headers=admin(client),
    )
    in_use_detail = assert_problem(in_use, 409, "RESOURCE_IN_USE")["detail"]
    assert "named by result_mapping.not_found" in in_use_detail
    assert "\n" not in in_use_detail and "HINT:" not in in_use_detail
    assert "Point those mappings at another code" in in_use_detail
    renamed = client.patch(
        "/admin/v1/error-codes/BOOK_NOT_FOUND",
        json={"error_code": "NO_BOOK"},
        headers=admin(client),
    )
    problem = assert_problem(renamed, 422, "ENDPOINT_INVALID")
    assert problem["errors"][0]["id"] == draft and "BOOK_NOT_FOUND" in problem["detail"]
    assert counts(db) == before
    reworded = client.patch(
        "/admin/v1/error-codes/BOOK_NOT_FOUND",
        json={"error_message": "That book is not here"},
        headers=admin(client),
    )
    assert (
        reworded.status_code == 200 and reworded.json()["error_message"] == "That book is not here"
    )
    missing = client.patch(
        "/admin/v1/error-codes/NOPE", json={"error_message": "x"}, headers=admin(client)
    )
    assert_problem(missing, 404, "ERROR_CODE_NOT_FOUND")


def test_scaffold_through_the_api_then_activate_the_drafts(db: DB, client: EngineClient) -> None:
    db.execute(BOOKS_TABLE + "CREATE TABLE lib_loose (title text);")
    before = counts(db)
    preview = client.post("/admin/v1/scaffold", json={"table": "lib_books"}, headers=admin(client))
    assert preview.status_code == 200, preview.text
    assert (
        preview.json()["applied"] is False
        and "INSERT INTO api_endpoint_mappings" in (preview.json()["sql"])
    )
    assert counts(db) == before
    applied = client.post(
        "/admin/v1/scaffold",
        json={"table": "lib_books", "path": "/lib/v2/books", "apply": True, "public": True},
        headers=admin(client, "erin"),
    )
    assert applied.status_code == 201, applied.text
    ids = applied.json()["ids"]
    assert len(ids) == 5 and all(r["state"]["state"] == "draft" for r in applied.json()["rows"])
    listing = db.fetchval(
        "SELECT id FROM api_endpoint_mappings WHERE endpoint_path = '/lib/v2/books' "
        "AND http_method = 'GET'"
    )
    on = client.post(f"/admin/v1/endpoints/{listing}/activate", headers=admin(client))
    assert on.status_code == 200, on.text
    page = client.wait_for("GET", "/lib/v2/books", 200, timeout_s=1.5).json()
    assert [b["title"] for b in page["data"]] == ["Dune", "Emma"]
    versions = rows_of(client.get(f"/admin/v1/endpoints/{listing}/versions", headers=admin(client)))
    assert {v["changed_by"] for v in versions} == {"erin", "alice"}

    refused = client.post("/admin/v1/scaffold", json={"table": "lib_loose"}, headers=admin(client))
    assert "primary key" in assert_problem(refused, 422, "SCAFFOLD_REFUSED")["detail"]
    bad = client.post(
        "/admin/v1/scaffold", json={"table": 5, "colour": "red"}, headers=admin(client)
    )
    pointers = {e["pointer"] for e in assert_problem(bad, 400, "VALIDATION_ERROR")["errors"]}
    assert {"/table", "/colour"} <= pointers


# ---------------------------------------------------------------------------
# Reads: endpoints, logs, figures, alerts, cache; database actions
# ---------------------------------------------------------------------------


def test_the_endpoint_list_shows_every_row_with_its_state(db: DB, client: EngineClient) -> None:
    broken = add_endpoint(db, "/lib/v1/broken", "GET", "SELECT * FROM gone")
    wait_status(db, broken, "refused")
    every = []
    page = client.get("/admin/v1/endpoints", params={"limit": 25}, headers=admin(client))
    while True:
        body = page.json()
        every += body["data"]
        if not body["pagination"]["next"]:
            break
        page = client.get(body["pagination"]["next"], headers=admin(client))
    assert len(every) == db.fetchval("SELECT count(*) FROM api_endpoint_mappings")
    mine = next(r for r in every if r["id"] == broken)
    assert mine["state"] == "refused" and "gone" in mine["reason"]
    refused = rows_of(client.get("/admin/v1/endpoints?state=refused", headers=admin(client)))
    assert [r["id"] for r in refused] == [broken]
    one = client.get(f"/admin/v1/endpoints/{broken}", headers=admin(client)).json()
    assert one["query_template"] == "SELECT * FROM gone" and one["state"] == "refused"


def test_the_error_log_filters_and_pages(client: EngineClient) -> None:
    for i in range(5):
        assert client.get(f"/nowhere/{i}").status_code == 404
    assert client.get("/api/v1/cameras").status_code == 401
    client.engine.flush_errors()

    def page(**params: Any) -> dict[str, Any]:
        response = client.get("/admin/v1/error-logs", params=params, headers=admin(client))
        assert response.status_code == 200, response.text
        return response.json()

    first = page(code="ROUTE_NOT_FOUND", limit=2)
    seen = [e["endpoint_path"] for e in first["data"]]
    assert seen == ["/nowhere/4", "/nowhere/3"]  # newest first
    rest = client.get(first["pagination"]["next"], headers=admin(client)).json()
    seen += [e["endpoint_path"] for e in rest["data"]]
    rest = client.get(rest["pagination"]["next"], headers=admin(client)).json()
    seen += [e["endpoint_path"] for e in rest["data"]]
    assert seen == [f"/nowhere/{i}" for i in (4, 3, 2, 1, 0)]
    auth = page(endpoint="/api/v1/cameras")["data"]
    assert [e["error_code"] for e in auth] == ["AUTHENTICATION_REQUIRED"]
    assert page(code="ROUTE_NOT_FOUND", to="2000-01-01T00:00:00Z")["data"] == []
    assert len(page(code="ROUTE_NOT_FOUND", **{"from": "2000-01-01T00:00:00Z"})["data"]) == 5
    assert page(status=401)["data"][0]["request_id"]
    odd = client.get("/admin/v1/error-logs", params={"from": "yesterday"}, headers=admin(client))
    assert_problem(odd, 400, "INVALID_PARAMETER")


def test_alerts_metrics_and_cache_figures(db: DB, make_client: Callable[..., EngineClient]) -> None:
    client = serve(make_client, metrics_flush_s=3600)
    db.execute(
        "INSERT INTO system_alerts (alert_type, alert_message, alert_severity, is_resolved) "
        "VALUES ('slow_query', 'slow', 'warning', false), ('pool', 'full', 'critical', false), "
        "('pool', 'was full', 'critical', true)"
    )
    open_critical = rows_of(
        client.get("/admin/v1/alerts?resolved=false&severity=critical", headers=admin(client))
    )
    assert [a["alert_message"] for a in open_critical] == ["full"]
    assert len(rows_of(client.get("/admin/v1/alerts", headers=admin(client)))) >= 3

    cameras = db.fetchval(
        "SELECT id FROM api_endpoint_mappings WHERE endpoint_path = '/api/v1/cameras' "
        "AND http_method = 'GET'"
    )
    token = client.auth(tenant=1)
    for _ in range(3):
        assert client.get("/api/v1/cameras", headers=token).status_code == 200
    engine = client.engine
    engine.run(engine.app.state.figures.flush(engine.services.db.write))
    minutes = rows_of(client.get(f"/admin/v1/metrics?endpoint_id={cameras}", headers=admin(client)))
    assert sum(m["request_count"] for m in minutes) == 3
    assert {m["endpoint_mapping_id"] for m in minutes} == {cameras}
    assert sum(m["cache_hits"] for m in minutes) == 2  # the camera list is cached

    db.execute(
        "INSERT INTO api_cache_config (endpoint_mapping_id, cache_hit_ratio, cache_size_mb, "
        "cache_eviction_count) VALUES ($1, 66.67, 0.01, 0) ON CONFLICT (endpoint_mapping_id) "
        "DO UPDATE SET cache_hit_ratio = 66.67",
        cameras,
    )
    cache = rows_of(client.get(f"/admin/v1/cache?endpoint_id={cameras}", headers=admin(client)))
    assert cache[0]["endpoint_id"] == cameras and cache[0]["cache_hit_ratio"] == 66.67
    assert (cache[0]["hits_last_hour"], cache[0]["misses_last_hour"]) == (2, 1)


def test_database_health_check_and_pool_advice(
    db: DB, make_client: Callable[..., EngineClient]
) -> None:
    client = serve(make_client, pool_stats_interval_s=1)
    pools = poll(
        lambda: rows_of(client.post("/admin/v1/database/health-check", headers=admin(client))),
        lambda rows: {"engine-write", "engine-read"} <= {r["pool_name"] for r in rows},
        "pool figures",
    )
    assert all(r["health_status"] in ("healthy", "warning", "critical") for r in pools)
    advice = rows_of(client.post("/admin/v1/database/pool-advice", headers=admin(client)))
    assert {"engine-write", "engine-read"} <= {a["pool_name"] for a in advice}
    assert all(a["advice"]["status"] == "ok" for a in advice)
    one = rows_of(
        client.post(
            "/admin/v1/database/pool-advice", json={"pool": "engine-write"}, headers=admin(client)
        )
    )
    assert [a["pool_name"] for a in one] == ["engine-write"]
    assert one[0]["advice"]["recommended_max_connections"] >= 1
    unknown = rows_of(
        client.post("/admin/v1/database/pool-advice", json={"pool": "nope"}, headers=admin(client))
    )
    assert unknown[0]["advice"]["status"] == "no_metrics"


# ---------------------------------------------------------------------------
# OpenAPI, OPTIONS, problem bodies
# ---------------------------------------------------------------------------


def test_every_admin_route_is_in_openapi_under_the_admin_tag(db: DB, client: EngineClient) -> None:
    doc = client.get("/openapi.json").json()
    listed = {
        (method.upper(), path): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if path.startswith("/admin/")
    }
    expected = {(m, p) for m, p in _templates(db)}
    assert set(listed) == expected
    for op in listed.values():
        assert op["tags"] == ["admin"]
        assert op["security"] == [{"ApiKeyAuth": []}, {"BearerAuth": []}]
        assert op["x-required-roles"] == [ROLE]
    assert {"name": "admin"} in doc["tags"]
    create_body = listed["POST", "/admin/v1/endpoints"]["requestBody"]["content"]
    schema = create_body["application/json"]["schema"]
    assert "query_template" in schema["required"] and schema["additionalProperties"] is False


def _templates(db: DB) -> list[tuple[str, str]]:
    rows = db.fetch(
        "SELECT http_method, endpoint_path FROM api_endpoint_mappings WHERE service_name = 'admin'"
    )
    out = [(r["http_method"], r["endpoint_path"]) for r in rows]
    return out + [(m, r.path) for r in builtin_routes for m in r.methods - {"HEAD"}]


def test_options_lists_the_methods_of_rows_and_built_in_routes(client: EngineClient) -> None:
    allowed = client.options("/admin/v1/endpoints")
    assert allowed.status_code == 204
    assert {"GET", "POST", "OPTIONS"} <= set(allowed.headers["Allow"].replace(" ", "").split(","))
    one = client.options("/admin/v1/endpoints/1")
    assert {"GET", "PATCH", "DELETE"} <= set(one.headers["Allow"].replace(" ", "").split(","))


def test_other_methods_are_405_naming_the_methods_of_rows_and_built_in_routes(
    client: EngineClient,
) -> None:
    put = client.put("/admin/v1/endpoints", json={}, headers=admin(client))
    assert_problem(put, 405, "METHOD_NOT_ALLOWED")
    assert put.headers["Allow"] == "GET, HEAD, POST"
    get = client.get("/admin/v1/scaffold", headers=admin(client))
    assert_problem(get, 405, "METHOD_NOT_ALLOWED")
    assert get.headers["Allow"] == "POST"
    assert_problem(client.get("/admin/v1/nothing", headers=admin(client)), 404, "ROUTE_NOT_FOUND")


def test_built_in_problems_carry_the_request_id_and_are_logged(
    db: DB, client: EngineClient
) -> None:
    refused = client.post(
        "/admin/v1/endpoints",
        json={"colour": "red"},
        headers={**admin(client), "X-Request-ID": "admin-req-1", "Accept-Language": "ru"},
    )
    body = assert_problem(refused, 400, "VALIDATION_ERROR")
    assert body["request_id"] == "admin-req-1" == refused.headers["X-Request-ID"]
    assert refused.headers["Content-Language"] == "ru" and body["instance"] == "/admin/v1/endpoints"
    client.engine.flush_errors()
    logged = db.fetchrow("SELECT * FROM api_error_logs WHERE request_id = 'admin-req-1'")
    assert logged["error_code"] == "VALIDATION_ERROR" and logged["principal"] == "alice"
    assert logged["endpoint_path"] == "/admin/v1/endpoints"


# ---------------------------------------------------------------------------
# Pure: the body check and the verdict on a change
# ---------------------------------------------------------------------------


def test_a_body_is_checked_column_by_column() -> None:
    values = clean(MAPPINGS, {"http_method": "post", "endpoint_path": "/x"}, creating=False)
    assert values == {"http_method": "POST", "endpoint_path": "/x"}
    with pytest.raises(ApiError) as refused:
        clean(
            MAPPINGS,
            {"required_roles": "admin", "is_active": 1, "rate_limit_per_minute": 0, "id": 3},
            creating=False,
        )
    messages = {e["pointer"]: e["message"] for e in refused.value.errors or []}
    assert messages == {
        "/required_roles": "required_roles must be an array of strings",
        "/is_active": "is_active must be true or false, not a JSON integer",
        "/rate_limit_per_minute": "rate_limit_per_minute must be between 1 and 2147483647",
        "/id": "'id' cannot be set: the database numbers the rows",
    }
    created = clean(
        MAPPINGS,
        {
            "endpoint_path": "/x",
            "http_method": "DELETE",
            "service_name": "s",
            "query_template": "x",
        },
        creating=True,
    )
    assert created["database_operation"] == "DELETE"


def _catalog(*statuses: RowStatus) -> Catalog:
    return Catalog(endpoints=(), errors=ErrorCatalog(), problems=(), statuses=statuses)


def test_the_verdict_refuses_what_would_not_serve_and_what_it_breaks() -> None:
    def row(mid: int, state: str, reason: str | None = None) -> RowStatus:
        return RowStatus(mid, 1, state, reason, "GET", f"/r/{mid}")

    before = _catalog(row(1, "serving"), row(2, "draft"), row(3, "refused", "old"))
    fine = judge(
        before,
        _catalog(row(1, "serving"), row(2, "draft"), row(3, "refused", "old")),
        [1],
        strict=True,
    )
    assert fine.ok and fine.statuses[1].state == "serving"
    stale = judge(before, _catalog(row(1, "stale", "new fails")), [1], strict=True)
    assert [p["message"] for p in stale.problems] == ["new fails"]
    broke_other = judge(
        before, _catalog(row(1, "serving"), row(2, "draft", "code gone")), [1], strict=True
    )
    assert (
        "mapping id=2 (GET /r/2) would stop serving: code gone"
        in broke_other.problems[0]["message"]
    )
    # a schema edit of a row already broken for the same reason is not its fault
    same = judge(before, _catalog(row(3, "refused", "old")), [3], strict=False)
    assert same.ok
    worse = judge(before, _catalog(row(3, "refused", "schema broken")), [3], strict=False)
    assert not worse.ok


# ---------------------------------------------------------------------------
# Review fixes: route ownership, concurrent creates, the /admin/v1 reservation
# ---------------------------------------------------------------------------


def test_activating_a_draft_at_a_route_another_row_serves_is_refused(
    db: DB, client: EngineClient
) -> None:
    draft = add_endpoint(db, "/x/{a}", "GET", "SELECT 'a' AS who", is_active=False)
    owner = add_endpoint(db, "/x/{b}", "GET", "SELECT 'b' AS who")
    for path in ("/x/{b}/", "x/{id:int}", "/x/{a}"):
        assert db.fetchval("SELECT engine_route_path($1)", path) == "/x/{}"
    assert db.fetchval("SELECT engine_route_path('/')") == "/"
    wait_status(db, draft, "draft")
    wait_status(db, owner, "serving")
    refused = client.post(f"/admin/v1/endpoints/{draft}/activate", headers=admin(client))
    detail = assert_problem(refused, 422, "ENDPOINT_INVALID")["detail"]
    assert f"id={owner}" in detail
    assert not db.fetchval("SELECT is_active FROM api_endpoint_mappings WHERE id = $1", draft)
    assert client.wait_for("GET", "/x/1", 200).json() == [{"who": "b"}]
    assert status_of(compile_catalog(db), owner).state == "serving"


def test_concurrent_creates_of_one_route_keep_only_one(db: DB, client: EngineClient) -> None:
    async def go() -> list[int]:
        async with httpx.AsyncClient(base_url=str(client.base_url), timeout=30) as http:
            answers = await asyncio.gather(
                *(
                    http.post(
                        "/admin/v1/endpoints",
                        json={**BOOKS, "endpoint_path": f"/api/v1/clash/{{{name}}}",
                              "query_template": "SELECT 1 AS one",
                              "result_mapping": {"shape": "object"}},
                        headers=admin(client),
                    )
                    for name in "abc"
                )
            )  # fmt: skip
        return sorted(a.status_code for a in answers)

    assert asyncio.run(go()) == [201, 422, 422]
    count = "SELECT count(*) FROM api_endpoint_mappings WHERE endpoint_path LIKE '/api/v1/clash/%'"
    assert db.fetchval(count) == 1


@pytest.mark.parametrize(
    "path", ["/admin/{v}/secrets", "/{a}/v1/endpoints", "/admin/{rest:path}", "/admin/{v}"]
)
def test_a_row_may_not_target_admin_paths_through_parameters(db: DB, path: str) -> None:
    mine = add_endpoint(db, path, "GET", "SELECT 1 AS one")
    status = status_of(compile_catalog(db), mine)
    assert status.state == "refused"
    assert "/admin/v1/* is the engine's own path" in status.reason


def test_generic_rows_are_allowed_but_never_answer_under_admin_v1(
    db: DB, client: EngineClient
) -> None:
    mine = add_endpoint(db, "/{a}/{b}/{c}", "GET", "SELECT 1 AS one")
    other = add_endpoint(db, "/admin/{v:int}/x", "GET", "SELECT 1 AS one")
    wait_status(db, mine, "serving")
    wait_status(db, other, "serving")
    assert client.get("/q/r/s").json() == [{"one": 1}]
    assert_problem(client.get("/admin/v1/secrets"), 404, "ROUTE_NOT_FOUND")


def test_an_admin_row_must_require_the_engine_admin_role(db: DB, client: EngineClient) -> None:
    open_row = add_endpoint(db, "/admin/v1/open", "GET", "SELECT 1 AS one", service_name="admin")
    no_role = add_endpoint(
        db, "/admin/v1/norole", "GET", "SELECT 1 AS one", service_name="admin",
        requires_auth=True, required_roles=["someone"],
    )  # fmt: skip
    catalog = compile_catalog(db)
    for mid in (open_row, no_role):
        status = status_of(catalog, mid)
        assert status.state == "refused" and "engine_admin" in status.reason
    listed = db.fetchval(
        "SELECT id FROM api_endpoint_mappings WHERE endpoint_path = '/admin/v1/endpoints' "
        "AND http_method = 'GET'"
    )
    wait_status(db, listed, "serving")
    patched = client.patch(
        f"/admin/v1/endpoints/{listed}", json={"requires_auth": False}, headers=admin(client)
    )
    assert "engine_admin" in assert_problem(patched, 422, "ENDPOINT_INVALID")["detail"]
    assert_problem(client.get("/admin/v1/endpoints"), 401, "AUTHENTICATION_REQUIRED")


def test_the_path_filter_is_a_prefix_not_a_pattern(db: DB, client: EngineClient) -> None:
    add_endpoint(db, "/lib/v1/a_b", "GET", "SELECT 1 AS one")
    add_endpoint(db, "/lib/v1/axb", "GET", "SELECT 1 AS one")
    for given, wanted in (("%", []), ("/lib/v1/a_", ["/lib/v1/a_b"]), ("/lib/", None)):
        found = rows_of(
            client.get("/admin/v1/endpoints", params={"path": given}, headers=admin(client))
        )
        paths = [r["endpoint_path"] for r in found]
        if wanted is None:
            assert set(paths) == {"/lib/v1/a_b", "/lib/v1/axb"}
        else:
            assert paths == wanted
