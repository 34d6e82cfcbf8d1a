"""Route ownership, the last good version, drafts and api_endpoint_status, on a real server.

The domain is a small two-tenant library no seed contains: row A owns
``GET /lib/v1/books/{book_id}`` and filters by the caller's tenant; row B,
inserted later at the same route without that filter, must never answer it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from tests.engine_server import EngineClient
from tests.helpers import (
    add_endpoint,
    add_error_code,
    add_schema,
    assert_problem,
    poll,
    serve,
    wait_status,
)
from tests.pg import DB

BOOK_SQL = "SELECT book_id, title FROM lib_books WHERE book_id = $1 AND tenant_id = $2"
BOOK_PARAMS = [
    {"name": "book_id", "in": "path", "type": "integer"},
    {"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer"},
]
OTHER_TENANTS_BOOK = 2  # book 2 belongs to tenant 2


@pytest.fixture()
def library(db: DB) -> dict[str, int]:
    db.execute(
        "CREATE TABLE lib_books (book_id int PRIMARY KEY, tenant_id int NOT NULL, title text);"
        "INSERT INTO lib_books VALUES (1, 1, 'Ours'), (2, 2, 'Theirs')"
    )
    add_error_code(db, "BOOK_NOT_FOUND", 404, "No such book")
    a = add_endpoint(
        db,
        "/lib/v1/books/{book_id}",
        "GET",
        BOOK_SQL,
        BOOK_PARAMS,
        {"shape": "object", "not_found": "BOOK_NOT_FOUND"},
        requires_auth=True,
    )
    b = add_endpoint(
        db,
        "/lib/v1/books/{id}",
        "GET",
        "SELECT book_id, title FROM lib_books WHERE book_id = $1",
        [{"name": "id", "in": "path", "type": "integer"}],
        {"shape": "object"},
    )
    return {"a": a, "b": b}


def _get_book(client: EngineClient, book: int) -> Any:
    return client.get(f"/lib/v1/books/{book}", headers=client.auth(tenant=1))


def _break_template(db: DB, a: int) -> None:
    db.execute(
        "UPDATE api_endpoint_mappings SET query_template = 'SELEC book_id FROM lib_books' "
        "WHERE id = $1",
        a,
    )


def _break_schema(db: DB, a: int) -> None:
    add_schema(db, a, {"type": "object", "properties": {"x": {"type": "no-such-type"}}})


def _break_cache_config(db: DB, a: int) -> None:
    db.execute(
        "INSERT INTO api_cache_config (endpoint_mapping_id, cache_key_template) "
        "VALUES ($1, '{no_such_param}')",
        a,
    )


def _break_error_code(db: DB, a: int) -> None:
    # the database refuses the DELETE of a code an active row names ...
    with pytest.raises(asyncpg.RestrictViolationError, match=rf"active mapping\(s\) id={a} GET"):
        db.execute("DELETE FROM api_error_codes WHERE error_code = 'BOOK_NOT_FOUND'")
    # ... so an admin has to go around the guard to break the row this way
    db.execute(
        "ALTER TABLE api_error_codes DISABLE TRIGGER trg_api_error_codes_guard;"
        "DELETE FROM api_error_codes WHERE error_code = 'BOOK_NOT_FOUND';"
        "ALTER TABLE api_error_codes ENABLE TRIGGER trg_api_error_codes_guard"
    )


BREAKS: dict[str, Callable[[DB, int], None]] = {
    "template": _break_template,
    "schema": _break_schema,
    "cache_config": _break_cache_config,
    "error_code": _break_error_code,
}


@pytest.mark.parametrize("how", sorted(BREAKS))
def test_a_broken_owner_keeps_its_last_good_version_and_never_hands_over_its_route(
    db: DB, make_client: Callable[..., EngineClient], library: dict[str, int], how: str
) -> None:
    a, b = library["a"], library["b"]
    client = serve(make_client)
    assert _get_book(client, 1).json() == {"book_id": 1, "title": "Ours"}
    assert_problem(_get_book(client, OTHER_TENANTS_BOOK), 404, "BOOK_NOT_FOUND")
    wait_status(db, a, "serving")
    clash = wait_status(db, b, "refused")
    assert f"mapping id={a}" in clash["reason"] and "lowest id owns" in clash["reason"]

    BREAKS[how](db, a)

    stale = wait_status(db, a, "stale", version=None)
    assert stale["serving_version"] == 1
    # the other tenant's book is still not found: B never answers, whatever happened to A
    body = assert_problem(_get_book(client, OTHER_TENANTS_BOOK), 404, "BOOK_NOT_FOUND")
    assert body["title"] == "No such book"
    assert _get_book(client, 1).json() == {"book_id": 1, "title": "Ours"}
    assert wait_status(db, b, "refused")["reason"] == clash["reason"]

    # a cold start has no last good version: the route is unavailable, still never B's
    cold = serve(make_client)
    response = _get_book(cold, OTHER_TENANTS_BOOK)
    assert_problem(response, 503, "ENDPOINT_UNAVAILABLE")
    assert response.headers["Retry-After"].isdigit()
    assert "Theirs" not in response.text and "lib_books" not in response.text
    health = cold.get("/_engine/health").json()
    assert health["routes_not_serving"] == 1


def test_fixing_the_owner_serves_the_new_version_and_deactivating_it_takes_effect_at_once(
    db: DB, make_client: Callable[..., EngineClient], library: dict[str, int]
) -> None:
    a, b = library["a"], library["b"]
    client = serve(make_client)
    _break_template(db, a)
    wait_status(db, a, "stale")
    db.execute(
        "UPDATE api_endpoint_mappings SET query_template = $2, "
        'result_mapping = result_mapping || \'{"fields": {"title": "name"}}\' WHERE id = $1',
        a,
        BOOK_SQL,
    )
    fixed = wait_status(db, a, "serving")
    assert fixed["version"] == 3 and fixed["serving_version"] == 3 and fixed["reason"] is None
    assert _get_book(client, 1).json() == {"book_id": 1, "name": "Ours"}

    # deactivating (or deleting) the owner is a deliberate act and takes effect at once:
    # the route goes to the next active row at it, which the admin saw refused until now
    db.execute("UPDATE api_endpoint_mappings SET is_active = false WHERE id = $1", a)
    wait_status(db, a, "draft")
    wait_status(db, b, "serving")
    assert client.wait_for("GET", "/lib/v1/books/2", 200).json()["title"] == "Theirs"


def test_a_draft_is_compiled_reported_and_served_once_activated(
    db: DB, make_client: Callable[..., EngineClient]
) -> None:
    client = serve(make_client)
    draft = add_endpoint(
        db, "/lib/v1/ping", "GET", "SELECT 'pong' AS v", [], {"shape": "scalar"}, is_active=False
    )
    row = wait_status(db, draft, "draft")
    assert row["reason"] is None  # it would serve
    assert_problem(client.get("/lib/v1/ping"), 404, "ROUTE_NOT_FOUND")

    broken = add_endpoint(db, "/lib/v1/broken", "GET", "SELECT nope FROM nowhere", is_active=False)
    assert "nowhere" in wait_status(db, broken, "draft", timeout_s=5)["reason"]

    db.execute("UPDATE api_endpoint_mappings SET is_active = true WHERE id = $1", draft)
    wait_status(db, draft, "serving")
    assert client.wait_for("GET", "/lib/v1/ping", 200).json() == "pong"


def test_a_draft_at_an_owned_route_says_it_would_clash(
    db: DB, make_client: Callable[..., EngineClient], library: dict[str, int]
) -> None:
    serve(make_client)
    later = add_endpoint(
        db,
        "/lib/v1/books/{n}/",
        "GET",
        "SELECT 1 AS one WHERE $1 > 0",
        [{"name": "n", "in": "path", "type": "integer"}],
        is_active=False,
    )
    reason = wait_status(db, later, "draft")["reason"]
    assert f"mapping id={library['a']}" in reason
    assert "same path with other parameter names" in reason


def test_a_trailing_slash_duplicate_is_named_as_such(
    db: DB, make_client: Callable[..., EngineClient]
) -> None:
    serve(make_client)
    first = add_endpoint(db, "/lib/v1/shelves", "GET", "SELECT 1 AS one")
    second = add_endpoint(db, "/lib/v1/shelves/", "GET", "SELECT 2 AS two")
    reason = wait_status(db, second, "refused")["reason"]
    assert "the same path but for a trailing slash" in reason and f"id={first}" in reason


def test_every_row_has_a_state_within_a_second_of_its_commit(
    db: DB, make_client: Callable[..., EngineClient]
) -> None:
    client = serve(make_client)
    counts = db.fetch("SELECT state, count(*) AS n FROM api_endpoint_status GROUP BY state")
    total = db.fetchval("SELECT count(*) FROM api_endpoint_mappings")
    assert sum(r["n"] for r in counts) == total
    mid = add_endpoint(
        db,
        "/lib/v1/warned",
        "GET",
        "SELECT 1 AS one",
        [],
        {"shape": "list", "fields": {"uno": "first"}},
    )
    row = wait_status(db, mid, "serving", timeout_s=1.5)
    assert any("returns no column 'uno'" in w for w in row["warnings"])
    report = client.get(
        "/_engine/catalog", headers={"Authorization": "Bearer admin-token-for-tests"}
    )
    mine = [r for r in report.json()["rows"] if r["id"] == mid]
    assert mine[0]["state"] == "serving" and mine[0]["warnings"] == row["warnings"]


def test_deleting_or_renaming_an_error_code_in_use_is_refused_by_the_database(
    db: DB, library: dict[str, int]
) -> None:
    with pytest.raises(asyncpg.RestrictViolationError, match="BOOK_NOT_FOUND is named by"):
        db.execute(
            "UPDATE api_error_codes SET error_code = 'BOOK_GONE' WHERE error_code = 'BOOK_NOT_FOUND'"
        )
    with pytest.raises(asyncpg.RestrictViolationError, match="used by the engine itself"):
        db.execute("DELETE FROM api_error_codes WHERE error_code = 'ROUTE_NOT_FOUND'")
    with pytest.raises(asyncpg.RestrictViolationError):
        db.execute("TRUNCATE api_error_codes CASCADE")
    # editing its text is fine, and so is deleting it once no active row names it
    db.execute(
        "UPDATE api_error_codes SET error_message = 'Gone' WHERE error_code = 'BOOK_NOT_FOUND'"
    )
    db.execute("UPDATE api_endpoint_mappings SET is_active = false WHERE id = $1", library["a"])
    db.execute("DELETE FROM api_error_codes WHERE error_code = 'BOOK_NOT_FOUND'")


def test_the_guarded_codes_are_the_engines_own(db: DB) -> None:
    from engine.errors import BUILTIN_CODES

    guarded = {
        r["error_code"] for r in db.fetch("SELECT error_code FROM engine_required_error_codes")
    }
    assert guarded == set(BUILTIN_CODES)
    stored = {r["error_code"] for r in db.fetch("SELECT error_code FROM api_error_codes")}
    assert set(BUILTIN_CODES) <= stored


def test_a_ttl_of_zero_means_not_cached(db: DB, make_client: Callable[..., EngineClient]) -> None:
    client = serve(make_client)
    mid = add_endpoint(
        db, "/lib/v1/now", "GET", "SELECT clock_timestamp()::text AS t", [], {"shape": "scalar"},
        cache_enabled=True, cache_ttl_seconds=0,
    )  # fmt: skip
    row = wait_status(db, mid, "serving")
    assert any("cache_ttl_seconds = 0" in w for w in row["warnings"])
    first = client.get("/lib/v1/now")
    assert first.status_code == 200 and "X-Cache" not in first.headers
    assert poll(lambda: client.get("/lib/v1/now").json(), lambda t: t != first.json(), "new answer")


def test_a_failed_edit_that_changes_who_may_call_is_refused_not_stale(
    db: DB, make_client: Callable[..., EngineClient]
) -> None:
    db.execute(
        "CREATE TABLE lib_notes (id int, tenant_id int, body text);"
        "INSERT INTO lib_notes VALUES (1, 1, 'mine'), (2, 2, 'yours')"
    )
    mid = add_endpoint(db, "/lib/v1/notes", "GET", "SELECT id, body FROM lib_notes ORDER BY id")
    client = serve(make_client)
    assert len(client.get("/lib/v1/notes").json()) == 2
    # the edit adds a tenant filter and auth, with a typo: the old, open version must not
    # keep serving in its place
    db.execute(
        "UPDATE api_endpoint_mappings SET requires_auth = true, query_parameters = $2::jsonb, "
        "query_template = 'SELECT id, body FROM lib_notes WHERE tenant_id = $1 ORDER BY idd' "
        "WHERE id = $1",
        mid,
        '[{"name": "tenant_id", "in": "auth", "type": "integer"}]',
    )
    row = wait_status(db, mid, "refused")
    assert "changes who may call it" in row["reason"]
    assert_problem(client.get("/lib/v1/notes"), 503, "ENDPOINT_UNAVAILABLE")


def test_a_delete_racing_an_edit_that_names_the_code_is_refused(
    db: DB, library: dict[str, int]
) -> None:
    add_error_code(db, "SHELF_NOT_FOUND", 404, "No such shelf")

    async def race() -> str:
        editor = await asyncpg.connect(db.url)
        deleter = await asyncpg.connect(db.url)
        try:
            tx = editor.transaction()
            await tx.start()
            await editor.execute(
                "UPDATE api_endpoint_mappings SET result_mapping = "
                'result_mapping || \'{"not_found": "SHELF_NOT_FOUND"}\' WHERE id = $1',
                library["b"],
            )
            delete = asyncio.ensure_future(
                deleter.execute("DELETE FROM api_error_codes WHERE error_code = 'SHELF_NOT_FOUND'")
            )
            await asyncio.sleep(0.3)
            assert not delete.done()  # it waits for the editor
            await tx.commit()
            try:
                await delete
            except asyncpg.RestrictViolationError as exc:
                return str(exc)
            return "deleted"
        finally:
            await editor.close()
            await deleter.close()

    assert "is named by result_mapping.not_found" in asyncio.run(race())


def test_a_refused_row_is_not_compiled_again_until_it_changes(
    db: DB, make_client: Callable[..., EngineClient]
) -> None:
    broken = add_endpoint(db, "/lib/v1/broken", "GET", "SELECT nope FROM nowhere")
    client = serve(make_client)
    catalogs = client.engine.services.catalogs
    generation = catalogs.current.generation
    add_endpoint(db, "/lib/v1/other", "GET", "SELECT 1 AS one")
    loaded = poll(lambda: catalogs.current, lambda c: c.generation > generation, "a reload")
    assert loaded.compiled_rows == 1  # the new row; not the refused one again
    assert wait_status(db, broken, "refused")["reason"]


def test_a_catalogue_knows_which_serving_rows_changed_since_the_one_before() -> None:
    from types import SimpleNamespace

    from engine.catalog import _changes

    def ep(mid: int) -> Any:
        return SimpleNamespace(spec=SimpleNamespace(id=mid))

    kept, replaced, gone = ep(1), ep(2), ep(3)
    before = SimpleNamespace(generation=4, serving={1: kept, 2: replaced, 3: gone})
    steps = _changes(before, [kept, ep(2), ep(9)])
    try:
        while True:
            next(steps)
    except StopIteration as done:
        serving, changes = done.value
    assert sorted(serving) == [1, 2, 9] and serving[1] is kept
    assert changes == (4, frozenset({2, 3, 9}))
