"""Endpoint history (sql/013, engine/history.py): versions written by triggers, their diff,
and restoring an old definition, on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import orjson
import pytest

from engine import history
from engine.database import init_connection
from engine.migrations import SQL_DIR, migrate
from tests.engine_server import EngineClient
from tests.helpers import (
    add_endpoint,
    add_rule,
    add_schema,
    add_template,
    assert_problem,
    compile_catalog,
    poll,
    serve,
    status_of,
)
from tests.pg import DB

T = TypeVar("T")
Maker = Callable[..., EngineClient]


def run(url: str, body: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """``body(conn)`` on a fresh connection with the engine's codecs."""

    async def go() -> T:
        conn = await asyncpg.connect(url)
        try:
            await init_connection(conn)
            return await body(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


def in_transaction(db: DB, *statements: str | tuple[Any, ...], actor: str | None = None) -> None:
    """Run ``statements`` (SQL, or (SQL, *args)) in one transaction, as ``actor`` when given."""

    async def body(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            if actor is not None:
                await conn.execute("SELECT set_config('engine.actor', $1, true)", actor)
            for s in statements:
                sql, *args = (s,) if isinstance(s, str) else s
                await conn.execute(sql, *args)

    run(db.url, body)


def kinds(db: DB, mapping_id: int) -> list[str]:
    return [
        r["change_kind"]
        for r in db.fetch(
            "SELECT change_kind FROM api_endpoint_history WHERE mapping_id = $1 ORDER BY version",
            mapping_id,
        )
    ]


def versions(db: DB, mapping_id: int) -> list[dict[str, Any]]:
    return run(db.url, lambda conn: history.versions(conn, mapping_id))


def version(db: DB, mapping_id: int, v: int) -> dict[str, Any]:
    found = run(db.url, lambda conn: history.version(conn, mapping_id, v))
    assert found is not None, f"no version {v} of mapping {mapping_id}"
    return found


def latest(db: DB, mapping_id: int) -> dict[str, Any]:
    return version(db, mapping_id, versions(db, mapping_id)[-1]["version"])


def add_cache_config(db: DB, mapping_id: int, ttl: int = 60) -> int:
    return db.fetchval(
        "INSERT INTO api_cache_config (endpoint_mapping_id, cache_ttl_seconds, cache_strategy) "
        "VALUES ($1, $2, 'lru') RETURNING id",
        mapping_id,
        ttl,
    )


NAME_SCHEMA = {
    "type": "object",
    "required": ["word"],
    "properties": {"word": {"type": "string", "maxLength": 10}},
}


def echo_endpoint(db: DB, path: str, sql: str = "SELECT 'v1:' || $1::text AS said") -> int:
    """POST ``path`` {"word": ...} answers {"said": ...}; nothing is written."""
    return add_endpoint(
        db,
        path,
        "POST",
        sql,
        [{"name": "word", "in": "body", "type": "string", "required": True}],
        {"shape": "object", "status": 200},
        database_operation="CALL",
    )


# -- what is recorded ----------------------------------------------------------------------


def test_every_change_of_a_mapping_is_a_version_and_deleting_it_keeps_its_history(
    db: DB,
) -> None:
    me = db.fetchval("SELECT current_user::text")
    mid = add_endpoint(db, "/h/one", "GET", "SELECT 1 AS one")
    db.execute(
        "UPDATE api_endpoint_mappings SET query_template = 'SELECT 2 AS two' WHERE id = $1", mid
    )
    db.execute("UPDATE api_endpoint_mappings SET is_active = false WHERE id = $1", mid)
    db.execute("UPDATE api_endpoint_mappings SET is_active = true WHERE id = $1", mid)
    add_schema(db, mid, {"type": "object"}, applies_to="query")
    db.execute("DELETE FROM api_endpoint_mappings WHERE id = $1", mid)

    listed = versions(db, mid)
    assert [v["version"] for v in listed] == [1, 2, 3, 4, 5, 6]
    assert [v["change_kind"] for v in listed] == [
        "created",
        "updated",
        "deactivated",
        "activated",
        "schema",
        "deleted",
    ]
    assert [v["changed_table"] for v in listed] == [
        *["api_endpoint_mappings"] * 4,
        "api_validation_schemas",
        "api_endpoint_mappings",
    ]
    assert [v["row_version"] for v in listed] == [1, 2, 3, 4, 4, None]
    assert {v["changed_by"] for v in listed} == {me}
    assert all("definition" not in v for v in listed)

    first = version(db, mid, 1)["definition"]
    assert first["mapping"]["query_template"] == "SELECT 1 AS one"
    assert first["mapping"]["endpoint_path"] == "/h/one"
    assert first["validation_schemas"] == [] and first["cache_config"] is None
    assert not {"id", "version", "created_at", "updated_at"} & set(first["mapping"])
    # the deleted version holds the last definition, its schema included
    gone = version(db, mid, 6)["definition"]
    assert gone["mapping"]["query_template"] == "SELECT 2 AS two"
    assert [s["applies_to"] for s in gone["validation_schemas"]] == ["query"]
    assert db.fetchval("SELECT count(*) FROM api_endpoint_mappings WHERE id = $1", mid) == 0


def test_changes_of_the_rows_a_mapping_depends_on_are_its_versions(db: DB) -> None:
    a = add_endpoint(db, "/h/a", "GET", "SELECT 1 AS one")
    b = add_endpoint(db, "/h/b", "GET", "SELECT 1 AS one")

    schema = add_schema(db, a, {"type": "object"}, applies_to="query")
    db.execute(
        'UPDATE api_validation_schemas SET validation_schema = \'{"type": "object", '
        '"maxProperties": 2}\' WHERE id = $1',
        schema,
    )
    cache = add_cache_config(db, a)
    db.execute("UPDATE api_cache_config SET cache_ttl_seconds = 30 WHERE id = $1", cache)
    add_rule(db, "name", "trim", mapping_id=b)
    add_template(db, "success", mapping_id=a, headers={"X-Own": "a"})
    assert kinds(db, a) == ["created", "schema", "schema", "cache", "cache", "templates"]
    assert kinds(db, b) == ["created", "rules"]
    assert latest(db, a)["definition"]["cache_config"]["cache_ttl_seconds"] == 30

    # a global rule applies to every mapping: a version of each
    add_rule(db, "title", "trim")
    assert kinds(db, a)[-1] == "rules" and kinds(db, b)[-1] == "rules"
    seeded = db.fetchval("SELECT min(id) FROM api_endpoint_mappings")
    assert kinds(db, seeded)[-1] == "rules"
    rules_of_b = latest(db, b)["definition"]["sanitization_rules"]
    assert {(r["field_name"], r["endpoint_mapping_id"]) for r in rules_of_b} >= {
        ("title", None),
        ("name", b),
    }

    # a default template applies to the mappings without their own of that type
    add_template(db, "success", headers={"X-Default": "yes"})
    assert kinds(db, a)[-1] == "rules"
    assert kinds(db, b)[-1] == "templates"
    templates_of_b = latest(db, b)["definition"]["response_templates"]
    assert [(t["response_type"], t["endpoint_mapping_id"]) for t in templates_of_b] == [
        ("success", None)
    ]
    templates_of_a = latest(db, a)["definition"]["response_templates"]
    assert [t["response_headers"] for t in templates_of_a] == [{"X-Own": "a"}]

    # deleting a dependent row is a version too
    db.execute("DELETE FROM api_cache_config WHERE id = $1", cache)
    assert kinds(db, a)[-1] == "cache"
    assert latest(db, a)["definition"]["cache_config"] is None


def test_the_actor_is_engine_actor_else_current_user(db: DB) -> None:
    mid = add_endpoint(db, "/h/actor", "GET", "SELECT 1 AS one")
    in_transaction(
        db,
        ("UPDATE api_endpoint_mappings SET description = 'by alice' WHERE id = $1", mid),
        actor="alice",
    )
    db.execute("UPDATE api_endpoint_mappings SET description = 'by nobody' WHERE id = $1", mid)
    by = [v["changed_by"] for v in versions(db, mid)]
    me = db.fetchval("SELECT current_user::text")
    assert by == [me, "alice", me]


def test_a_change_that_changes_nothing_records_nothing(db: DB) -> None:
    mid = add_endpoint(db, "/h/same", "GET", "SELECT 1 AS one")
    schema = add_schema(db, mid, {"type": "object"}, applies_to="query")
    cache = add_cache_config(db, mid)
    before = len(versions(db, mid))

    db.execute(
        "UPDATE api_endpoint_mappings SET query_template = query_template WHERE id = $1", mid
    )
    db.execute("UPDATE api_endpoint_mappings SET updated_at = now() WHERE id = $1", mid)
    db.execute("UPDATE api_validation_schemas SET schema_name = schema_name WHERE id = $1", schema)
    # the cache figures the engine writes are not configuration
    db.execute(
        "UPDATE api_cache_config SET cache_hit_ratio = 42.5, cache_eviction_count = 3 WHERE id = $1",
        cache,
    )
    # a transaction that ends where it started
    in_transaction(
        db,
        ("UPDATE api_endpoint_mappings SET description = 'for a moment' WHERE id = $1", mid),
        ("UPDATE api_endpoint_mappings SET description = NULL WHERE id = $1", mid),
    )
    assert len(versions(db, mid)) == before
    # and a row created and deleted in one transaction was never seen: nothing to keep
    in_transaction(
        db,
        "INSERT INTO api_endpoint_mappings (id, endpoint_path, http_method, service_name, "
        "database_operation, query_template) VALUES (987654, '/h/blink', 'GET', 's', 'SELECT', "
        "'SELECT 1')",
        "DELETE FROM api_endpoint_mappings WHERE id = 987654",
    )
    assert versions(db, 987654) == []


def test_one_transaction_is_one_version_however_many_rows_it_writes(db: DB) -> None:
    in_transaction(
        db,
        "INSERT INTO api_endpoint_mappings (id, endpoint_path, http_method, service_name, "
        "database_operation, query_template) VALUES (876543, '/h/tx', 'GET', 's', 'SELECT', "
        "'SELECT 1 AS one')",
        "INSERT INTO api_validation_schemas (endpoint_mapping_id, schema_name, validation_schema, "
        "applies_to) VALUES (876543, 'q', '{\"type\": \"object\"}', 'query')",
        "INSERT INTO api_cache_config (endpoint_mapping_id, cache_ttl_seconds) VALUES (876543, 5)",
        actor="bob",
    )
    in_transaction(
        db,
        "UPDATE api_endpoint_mappings SET description = 'd' WHERE id = 876543",
        "UPDATE api_cache_config SET cache_ttl_seconds = 6 WHERE endpoint_mapping_id = 876543",
    )
    listed = versions(db, 876543)
    assert [(v["version"], v["change_kind"]) for v in listed] == [(1, "created"), (2, "updated")]
    assert listed[0]["changed_tables"] == [
        "api_endpoint_mappings",
        "api_validation_schemas",
        "api_cache_config",
    ]
    assert listed[0]["changed_by"] == "bob"
    assert listed[1]["changed_tables"] == ["api_endpoint_mappings", "api_cache_config"]
    definition = version(db, 876543, 1)["definition"]
    assert [s["applies_to"] for s in definition["validation_schemas"]] == ["query"]
    assert definition["cache_config"]["cache_ttl_seconds"] == 5


def test_an_unknown_explicit_change_kind_is_refused(db: DB) -> None:
    mid = add_endpoint(db, "/h/kind", "GET", "SELECT 1 AS one")
    with pytest.raises(asyncpg.InvalidParameterValueError, match="not a change kind"):
        in_transaction(
            db,
            "SELECT set_config('engine.change_kind', 'whatever', true)",
            ("UPDATE api_endpoint_mappings SET description = 'x' WHERE id = $1", mid),
        )


def test_truncating_the_mappings_keeps_their_history(db: DB) -> None:
    mid = add_endpoint(db, "/h/truncated", "GET", "SELECT 1 AS one")
    count = db.fetchval("SELECT count(*) FROM api_endpoint_mappings")
    db.execute("TRUNCATE api_endpoint_mappings CASCADE")
    assert kinds(db, mid) == ["created", "deleted"]
    assert (
        db.fetchval(
            "SELECT count(DISTINCT mapping_id) FROM api_endpoint_history WHERE change_kind = 'deleted'"
        )
        == count
    )


# -- versions are numbered one by one, whoever writes --------------------------------------


def test_concurrent_changes_of_one_mapping_get_distinct_versions(db: DB) -> None:
    mid = add_endpoint(db, "/h/race", "GET", "SELECT 1 AS one")
    schema = add_schema(db, mid, {"type": "object"}, applies_to="query")
    cache = add_cache_config(db, mid)
    start = versions(db, mid)[-1]["version"]

    async def body() -> None:
        first = await asyncpg.connect(db.url)
        second = await asyncpg.connect(db.url)
        try:
            # two transactions touching different rows of one mapping: no row lock between them
            t1 = first.transaction()
            await t1.start()
            await first.execute(
                "UPDATE api_validation_schemas SET schema_name = 'first' WHERE id = $1", schema
            )

            async def other() -> None:
                async with second.transaction():
                    await second.execute(
                        "UPDATE api_cache_config SET cache_ttl_seconds = 7 WHERE id = $1", cache
                    )

            pending = asyncio.create_task(other())
            pid = second.get_server_pid()
            waiting = "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1"
            await asyncio.to_thread(
                poll, lambda: db.fetchval(waiting, pid), bool, "the second writer waits"
            )
            await t1.commit()
            await pending
        finally:
            await first.close()
            await second.close()

    asyncio.run(body())
    listed = versions(db, mid)
    assert [v["version"] for v in listed][-2:] == [start + 1, start + 2]
    assert [v["change_kind"] for v in listed][-2:] == ["schema", "cache"]
    # the second version was read after the first committed: it holds both changes
    both = version(db, mid, start + 2)["definition"]
    assert both["validation_schemas"][0]["schema_name"] == "first"
    assert both["cache_config"]["cache_ttl_seconds"] == 7


def test_a_repeatable_read_writer_behind_a_newer_version_fails_to_serialize(db: DB) -> None:
    mid = add_endpoint(db, "/h/rr", "GET", "SELECT 1 AS one")
    cache = add_cache_config(db, mid)
    start = versions(db, mid)[-1]["version"]

    async def body() -> None:
        late = await asyncpg.connect(db.url)
        try:
            tx = late.transaction(isolation="repeatable_read")
            await tx.start()
            await late.fetchval("SELECT 1")  # its snapshot is taken now
            db_change = "UPDATE api_endpoint_mappings SET description = 'new' WHERE id = $1"
            await asyncio.to_thread(db.execute, db_change, mid)
            with pytest.raises(asyncpg.SerializationError):
                await late.execute(
                    "UPDATE api_cache_config SET cache_ttl_seconds = 9 WHERE id = $1", cache
                )
            await tx.rollback()
        finally:
            await late.close()

    asyncio.run(body())
    assert [v["version"] for v in versions(db, mid)][-1] == start + 1


def test_rows_existing_when_the_history_arrives_get_a_baseline_version(
    empty_db_url: str, tmp_path: Path
) -> None:
    def folder(name: str, last: int) -> Path:
        out = tmp_path / name
        out.mkdir()
        for f in SQL_DIR.glob("*.sql"):
            if int(f.name.split("_", 1)[0]) <= last:
                shutil.copy(f, out / f.name)
        return out

    before, with_history = folder("before", 12), folder("with", 13)
    db = DB(empty_db_url)
    run(empty_db_url, lambda conn: migrate(conn, before))
    mid = add_endpoint(db, "/h/old", "GET", "SELECT 1 AS one")
    add_schema(db, mid, {"type": "object"}, applies_to="query")
    assert run(empty_db_url, lambda conn: migrate(conn, with_history)) == [
        "013_endpoint_history.sql"
    ]
    listed = versions(db, mid)
    assert [(v["version"], v["change_kind"], v["row_version"]) for v in listed] == [
        (1, "baseline", 1)
    ]
    assert [s["applies_to"] for s in version(db, mid, 1)["definition"]["validation_schemas"]] == [
        "query"
    ]
    db.execute("UPDATE api_endpoint_mappings SET description = 'next' WHERE id = $1", mid)
    assert kinds(db, mid) == ["baseline", "updated"]


# -- diff ----------------------------------------------------------------------------------


def definition(**mapping: Any) -> dict[str, Any]:
    base = {
        "endpoint_path": "/d",
        "http_method": "GET",
        "query_template": "SELECT a\nFROM t\nWHERE id = $1",
        "result_mapping": {"shape": "list", "paginate": {"limit": 50}},
        "query_parameters": [{"name": "id", "in": "query", "type": "integer"}],
        "is_active": True,
    }
    return {
        "mapping": {**base, **mapping},
        "validation_schemas": [
            {"id": 1, "applies_to": "query", "validation_schema": {"type": "object"}}
        ],
        "sanitization_rules": [],
        "response_templates": [],
        "cache_config": None,
    }


def test_diff_is_field_by_field_with_a_unified_diff_of_the_template() -> None:
    a = definition()
    b = definition(
        query_template="SELECT a, b\nFROM t\nWHERE id = $1",
        result_mapping={"shape": "object", "paginate": {"limit": 50}},
        query_parameters=[{"name": "id", "in": "query", "type": "string"}],
        is_active=1,  # not the same JSON value as true
    )
    b["validation_schemas"][0]["validation_schema"] = {"type": "object", "maxProperties": 1}
    b["sanitization_rules"] = [{"id": 4, "field_name": "a", "endpoint_mapping_id": None}]
    b["cache_config"] = {"id": 2, "cache_ttl_seconds": 5}

    out = history.diff(a, b)
    assert out["changed"] == {
        "mapping.query_template": {
            "from": "SELECT a\nFROM t\nWHERE id = $1",
            "to": "SELECT a, b\nFROM t\nWHERE id = $1",
        },
        "mapping.result_mapping.shape": {"from": "list", "to": "object"},
        "mapping.query_parameters[0].type": {"from": "integer", "to": "string"},
        "mapping.is_active": {"from": True, "to": 1},
        "validation_schemas[query].validation_schema.maxProperties": {"from": None, "to": 1},
        "sanitization_rules[4]": {
            "from": None,
            "to": {"id": 4, "field_name": "a", "endpoint_mapping_id": None},
        },
        "cache_config": {"from": None, "to": {"id": 2, "cache_ttl_seconds": 5}},
    }
    assert out["template_diff"].splitlines() == [
        "--- query_template (from)",
        "+++ query_template (to)",
        "@@ -1,3 +1,3 @@",
        "-SELECT a",
        "+SELECT a, b",
        " FROM t",
        " WHERE id = $1",
    ]
    assert history.diff(a, definition()) == {"changed": {}, "template_diff": ""}


def test_diff_of_two_recorded_versions(db: DB) -> None:
    mid = add_endpoint(db, "/h/diff", "GET", "SELECT 1 AS one", result={"shape": "list"})
    add_schema(
        db, mid, {"type": "object", "properties": {"q": {"maxLength": 5}}}, applies_to="query"
    )
    db.execute(
        "UPDATE api_endpoint_mappings SET query_template = 'SELECT 2 AS two', "
        'result_mapping = \'{"shape": "scalar"}\' WHERE id = $1',
        mid,
    )
    db.execute(
        "UPDATE api_validation_schemas SET validation_schema = "
        '\'{"type": "object", "properties": {"q": {"maxLength": 3}}}\' '
        "WHERE endpoint_mapping_id = $1",
        mid,
    )
    out = history.diff(version(db, mid, 2), version(db, mid, 4))
    assert out["changed"] == {
        "mapping.query_template": {"from": "SELECT 1 AS one", "to": "SELECT 2 AS two"},
        "mapping.result_mapping.shape": {"from": "list", "to": "scalar"},
        "validation_schemas[query].validation_schema.properties.q.maxLength": {
            "from": 5,
            "to": 3,
        },
    }
    assert out["template_diff"].splitlines()[:2] == [
        "--- query_template (version 2)",
        "+++ query_template (version 4)",
    ]
    assert "-SELECT 1 AS one" in out["template_diff"]
    assert "+SELECT 2 AS two" in out["template_diff"]


# -- restore -------------------------------------------------------------------------------


def restore(db: DB, mapping_id: int, v: int, actor: str | None = "alice") -> dict[str, Any]:
    """Restore version ``v`` in a transaction of its own, then commit."""
    stored = version(db, mapping_id, v)

    async def body(conn: asyncpg.Connection) -> dict[str, Any]:
        async with conn.transaction():
            result = await history.restore(conn, mapping_id, stored["definition"], actor)
            # what the caller writes next in its transaction is not tagged rollback
            assert await conn.fetchval("SELECT current_setting('engine.change_kind', true)") == ""
            if actor is not None:
                assert await conn.fetchval("SELECT current_setting('engine.actor', true)") == actor
            return result

    return run(db.url, body)


def said(client: EngineClient, path: str, word: str) -> Any:
    response = client.post(path, json={"word": word})
    return response.json().get("said") if response.status_code == 200 else response.status_code


def test_restoring_an_old_version_serves_its_behaviour_again(db: DB, make_client: Maker) -> None:
    mid = echo_endpoint(db, "/h/echo")
    add_schema(db, mid, NAME_SCHEMA)
    client = serve(make_client)
    assert said(client, "/h/echo", "hello") == "v1:hello"
    good = versions(db, mid)[-1]["version"]

    db.execute(
        "UPDATE api_endpoint_mappings SET query_template = 'SELECT ''v2:'' || $1::text AS said' "
        "WHERE id = $1",
        mid,
    )
    schema = {**NAME_SCHEMA, "properties": {"word": {"type": "string", "maxLength": 3}}}
    db.execute(
        "UPDATE api_validation_schemas SET validation_schema = $2::jsonb "
        "WHERE endpoint_mapping_id = $1",
        mid,
        orjson.dumps(schema).decode(),
    )
    poll(lambda: said(client, "/h/echo", "hi"), lambda s: s == "v2:hi", "version 2 serves")
    assert_problem(client.post("/h/echo", json={"word": "hello"}), 400, "VALIDATION_ERROR")

    result = restore(db, mid, good)
    new = good + 3
    assert result == {
        "mapping_id": mid,
        "version": new,
        "recreated": False,
        "not_restored": {},
        "notes": [],
    }
    poll(lambda: said(client, "/h/echo", "hello"), lambda s: s == "v1:hello", "version 1 again")
    assert said(client, "/h/echo", "hi") == "v1:hi"

    listed = versions(db, mid)
    assert listed[-1]["version"] == new
    assert listed[-1]["change_kind"] == "rollback"
    assert listed[-1]["changed_by"] == "alice"
    assert listed[-1]["changed_tables"] == ["api_endpoint_mappings", "api_validation_schemas"]
    assert history.diff(version(db, mid, good), version(db, mid, new))["changed"] == {}
    # the rollback is a change like any other: the next edit is an ordinary version
    db.execute("UPDATE api_endpoint_mappings SET description = 'after' WHERE id = $1", mid)
    assert kinds(db, mid)[-1] == "updated"


def test_restoring_a_deleted_mapping_brings_it_back_with_its_id_and_rows(db: DB) -> None:
    mid = echo_endpoint(db, "/h/back")
    schema = add_schema(db, mid, NAME_SCHEMA)
    rule = add_rule(db, "word", "trim", mapping_id=mid)
    add_cache_config(db, mid, ttl=11)
    template = add_template(db, "success", mapping_id=mid, headers={"X-Kept": "yes"})
    row_version = db.fetchval("SELECT version FROM api_endpoint_mappings WHERE id = $1", mid)
    db.execute("DELETE FROM api_endpoint_mappings WHERE id = $1", mid)
    deleted = versions(db, mid)[-1]
    assert deleted["change_kind"] == "deleted"

    result = restore(db, mid, deleted["version"], actor=None)
    assert result["recreated"] is True
    assert result["not_restored"] == {} and result["notes"] == []
    assert db.fetchval("SELECT version FROM api_endpoint_mappings WHERE id = $1", mid) > row_version
    assert (
        db.fetchval("SELECT id FROM api_validation_schemas WHERE endpoint_mapping_id = $1", mid)
        == schema
    )
    assert (
        db.fetchval("SELECT id FROM data_sanitization_rules WHERE endpoint_mapping_id = $1", mid)
        == rule
    )
    assert (
        db.fetchval(
            "SELECT cache_ttl_seconds FROM api_cache_config WHERE endpoint_mapping_id = $1", mid
        )
        == 11
    )
    assert db.fetchrow(
        "SELECT id, response_headers::text FROM api_response_templates "
        "WHERE endpoint_mapping_id = $1",
        mid,
    ) == (template, '{"X-Kept": "yes"}')
    last = versions(db, mid)[-1]
    assert last["change_kind"] == "rollback"
    assert last["changed_by"] == db.fetchval("SELECT current_user::text")
    assert status_of(compile_catalog(db), mid).state == "serving"


def test_restore_leaves_shared_rows_alone_and_says_so(db: DB) -> None:
    mid = echo_endpoint(db, "/h/shared")
    own = add_rule(db, "word", "trim", mapping_id=mid)
    shared = add_rule(db, "word", "validate", {}, max_length=50)
    good = versions(db, mid)[-1]["version"]
    db.execute("UPDATE data_sanitization_rules SET max_length = 5 WHERE id = $1", shared)
    db.execute("DELETE FROM data_sanitization_rules WHERE id = $1", own)
    add_rule(db, "word", "escape", mapping_id=mid)

    result = restore(db, mid, good)
    own_now = db.fetch(
        "SELECT id, sanitization_type FROM data_sanitization_rules WHERE endpoint_mapping_id = $1",
        mid,
    )
    assert [tuple(r) for r in own_now] == [(own, "trim")]  # back as it was, with its id
    assert db.fetchval("SELECT max_length FROM data_sanitization_rules WHERE id = $1", shared) == 5
    assert result["not_restored"] == {
        f"sanitization_rules[{shared}].max_length": {"from": 50, "to": 5}
    }
    assert len(result["notes"]) == 1
    assert f"data_sanitization_rules id={shared} is shared" in result["notes"][0]
    assert "changed since" in result["notes"][0]


def test_restore_refuses_a_route_another_row_now_holds_and_writes_nothing(db: DB) -> None:
    mid = echo_endpoint(db, "/h/taken")
    db.execute("DELETE FROM api_endpoint_mappings WHERE id = $1", mid)
    other = echo_endpoint(db, "/h/taken")
    before = len(versions(db, mid))
    stored = version(db, mid, before)

    async def body(conn: asyncpg.Connection) -> str:
        async with conn.transaction():
            with pytest.raises(history.HistoryError) as caught:
                await history.restore(conn, mid, stored, "alice")
            # the savepoint is gone; the caller's transaction still works
            assert await conn.fetchval("SELECT 1") == 1
        return str(caught.value)

    message = run(db.url, body)
    assert (
        message == f"mapping {mid} cannot be restored: mapping id={other} now holds POST /h/taken"
    )
    assert len(versions(db, mid)) == before
    assert db.fetchval("SELECT count(*) FROM api_endpoint_mappings WHERE id = $1", mid) == 0


@pytest.mark.parametrize(
    ("definition", "reason"),
    [
        ([], 'a definition is an object with a "mapping" object'),
        ({"mapping": "SELECT 1"}, 'a definition is an object with a "mapping" object'),
        ({"mapping": {}, "validation_schemas": {}}, '"validation_schemas" must be a list'),
        ({"mapping": {}, "validation_schemas": [{}]}, 'needs its "applies_to"'),
        ({"mapping": {}, "cache_config": [1]}, '"cache_config" must be an object or null'),
        ({"mapping": {"nothing": 1}}, "no column to restore"),
        ({"mapping": {"http_method": "FETCH"}}, "cannot be restored"),
        ({"mapping": {"cache_ttl_seconds": "soon"}}, "cannot be restored"),
    ],
)
def test_restore_refuses_a_malformed_definition(db: DB, definition: Any, reason: str) -> None:
    mid = add_endpoint(db, "/h/malformed", "GET", "SELECT 1 AS one")

    async def body(conn: asyncpg.Connection) -> None:
        with pytest.raises(history.HistoryError, match=reason):
            await history.restore(conn, mid, definition, "alice")

    run(db.url, body)
    assert kinds(db, mid) == ["created"]
