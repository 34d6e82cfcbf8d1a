"""Scaffolding the endpoint rows of a table (engine/scaffold.py, ``engine scaffold``)."""

from __future__ import annotations

import asyncio
import getpass
import subprocess
from collections.abc import Callable
from typing import Any

import asyncpg
import orjson
import pytest

from engine.database import init_connection
from engine.errors import ApiError
from engine.scaffold import (
    MAPPING_COLUMNS,
    ScaffoldResult,
    map_check,
    merge_facets,
    scaffold,
    sql_literal,
)
from tests.engine_server import EngineClient
from tests.helpers import (
    assert_problem,
    compile_catalog,
    error_for,
    run_cli,
    serve,
    status_of,
    wait_status,
)
from tests.pg import DB

GADGETS = """
CREATE TYPE gadget_status AS ENUM ('new', 'active', 'retired');
CREATE TABLE gadgets (
    id         serial PRIMARY KEY,
    tenant_id  int NOT NULL,
    name       varchar(20) NOT NULL,
    status     gadget_status NOT NULL DEFAULT 'new',
    qty        int NOT NULL DEFAULT 1 CHECK (qty BETWEEN 1 AND 100),
    price      numeric(6,2) CHECK (price >= 0),
    note       text,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON COLUMN gadgets.name IS 'What the gadget is called';
"""
# composite keys: an integer and a text column; an integer and a timestamp; no tenant
BINS = """
CREATE TABLE bins (warehouse int, code text, label text NOT NULL,
                   PRIMARY KEY (warehouse, code));
CREATE TABLE samples (sensor int, taken_at timestamptz, value numeric(6,2) NOT NULL,
                      PRIMARY KEY (sensor, taken_at));
"""
ROLE = "gadget_admin"


def run_scaffold(url: str, table: str, **options: Any) -> ScaffoldResult:
    async def go() -> ScaffoldResult:
        conn = await asyncpg.connect(url)
        try:
            await init_connection(conn)
            return await scaffold(conn, table, **options)
        finally:
            await conn.close()

    return asyncio.run(go())


def refusal(url: str, table: str, **options: Any) -> str:
    with pytest.raises(ApiError) as caught:
        run_scaffold(url, table, **options)
    assert caught.value.code == "SCAFFOLD_REFUSED", caught.value
    return caught.value.detail or ""


def mapping_rows(db: DB, service: str) -> list[dict[str, Any]]:
    """The scaffolded rows as stored, without what the database assigns (id, dates, version)."""
    rows = db.fetch(
        f"SELECT {', '.join(MAPPING_COLUMNS)}, "
        "(SELECT jsonb_agg(jsonb_build_object('name', s.schema_name, 'schema', s.validation_schema,"
        " 'strict', s.strict_mode, 'unknown', s.allow_unknown_fields,"
        " 'sanitize', s.sanitize_input, 'applies_to', s.applies_to))"
        " FROM api_validation_schemas s WHERE s.endpoint_mapping_id = m.id)::text AS schemas, "
        "query_parameters::text AS params, result_mapping::text AS result, version "
        "FROM api_endpoint_mappings m WHERE service_name = $1 ORDER BY endpoint_path, http_method",
        service,
    )
    out = []
    for r in rows:
        row = dict(r)
        for key in ("query_parameters", "result_mapping"):
            row.pop(key)
        row["params"] = orjson.loads(row["params"])
        row["result"] = orjson.loads(row["result"])
        row["schemas"] = orjson.loads(row["schemas"]) if row["schemas"] else None
        out.append(row)
    return out


def test_a_scaffolded_table_serves_validates_and_isolates_tenants(
    db: DB, db_url: str, make_client: Callable[..., EngineClient]
) -> None:
    db.execute(GADGETS + BINS)
    result = run_scaffold(
        db_url, "gadgets", tenant_column="tenant_id", tenant_claim="tenant_id", roles=[ROLE],
        apply=True, actor="alice",
    )  # fmt: skip
    bins = run_scaffold(db_url, "public.bins", apply=True)
    samples = run_scaffold(db_url, "samples", apply=True)
    orjson.dumps(result.as_dict())  # JSON-able, for POST /admin/v1/scaffold

    # drafts that would serve, as `engine check` sees them on a connection of its own
    assert [(s.method, s.path) for s in result.states] == [
        ("GET", "/api/v1/gadgets"),
        ("GET", "/api/v1/gadgets/{id}"),
        ("POST", "/api/v1/gadgets"),
        ("PATCH", "/api/v1/gadgets/{id}"),
        ("DELETE", "/api/v1/gadgets/{id}"),
    ]
    catalog = compile_catalog(db)
    for mid in result.ids + bins.ids + samples.ids:
        status = status_of(catalog, mid)
        assert (status.state, status.reason, status.warnings) == ("draft", None, ()), status
    stored = db.fetch(
        "SELECT is_active, requires_auth, required_roles FROM api_endpoint_mappings "
        "WHERE id = ANY($1::int[])",
        result.ids,
    )
    assert {(r["is_active"], r["requires_auth"], tuple(r["required_roles"])) for r in stored} == {
        (False, True, (ROLE,))
    }
    create = next(s for s in result.schemas if s["http_method"] == "POST")
    assert create["allow_unknown_fields"] is False
    body = create["validation_schema"]
    assert body["required"] == ["name"]
    assert body["properties"]["name"] == {
        "type": "string", "maxLength": 20, "description": "What the gadget is called",
    }  # fmt: skip
    assert body["properties"]["status"] == {"type": "string", "enum": ["new", "active", "retired"]}
    assert body["properties"]["qty"] == {"type": "integer", "minimum": 1, "maximum": 100}
    assert body["properties"]["price"]["minimum"] == 0
    assert body["properties"]["price"]["exclusiveMaximum"] == 9999.995  # numeric(6,2), rounded
    assert "tenant_id" not in body["properties"] and "id" not in body["properties"]
    code = db.fetchrow(
        "SELECT http_status_code, localized_messages::text AS l FROM api_error_codes "
        "WHERE error_code = 'GADGETS_NOT_FOUND'"
    )
    assert code["http_status_code"] == 404 and set(orjson.loads(code["l"])) == {"vi", "ru"}

    client = serve(make_client)
    db.execute(
        "UPDATE api_endpoint_mappings SET is_active = true WHERE id = ANY($1::int[])",
        result.ids + bins.ids + samples.ids,
    )
    for mid in result.ids + bins.ids + samples.ids:
        wait_status(db, mid, "serving")
    one = client.auth(tenant=1, roles=(ROLE,))
    two = client.auth(tenant=2, roles=(ROLE,))

    # create: defaults from the table, the tenant from the token
    made = []
    for name in ("anvil", "bell", "clock"):
        r = client.post("/api/v1/gadgets", json={"name": name}, headers=one)
        assert r.status_code == 201, r.text
        made.append(r.json())
    assert made[0]["status"] == "new" and made[0]["qty"] == 1 and "tenant_id" not in made[0]
    theirs = client.post(
        "/api/v1/gadgets", json={"name": "drum", "qty": 7, "status": "active"}, headers=two
    )
    assert theirs.status_code == 201, theirs.text
    theirs_id = theirs.json()["id"]
    assert db.fetchval("SELECT tenant_id FROM gadgets WHERE id = $1", theirs_id) == 2

    # the schema refuses a too-long string, a missing required field, an unknown field
    # (the tenant included: it is never a body field), an enum value and a CHECK bound
    too_long = assert_problem(
        client.post("/api/v1/gadgets", json={"name": "x" * 21}, headers=one),
        400,
        "VALIDATION_ERROR",
    )
    assert error_for(too_long, "pointer", "/name")["keyword"] == "maxLength"
    missing = assert_problem(
        client.post("/api/v1/gadgets", json={"qty": 2}, headers=one), 400, "VALIDATION_ERROR"
    )
    assert error_for(missing, "pointer", "/name")["keyword"] == "required"
    unknown = assert_problem(
        client.post("/api/v1/gadgets", json={"name": "e", "tenant_id": 2}, headers=one),
        400,
        "VALIDATION_ERROR",
    )
    assert error_for(unknown, "pointer", "/tenant_id")["keyword"] == "additionalProperties"
    bad = assert_problem(
        client.post("/api/v1/gadgets", json={"name": "e", "status": "lost", "qty": 0}, headers=one),
        400,
        "VALIDATION_ERROR",
    )
    assert error_for(bad, "pointer", "/status")["keyword"] == "enum"
    assert error_for(bad, "pointer", "/qty")["keyword"] == "minimum"
    assert db.fetchval("SELECT count(*) FROM gadgets") == 4  # nothing refused was written

    # list: keyset pages of the caller's rows only
    first = client.get("/api/v1/gadgets", params={"limit": 2}, headers=one)
    assert first.status_code == 200, first.text
    page = first.json()
    assert [g["name"] for g in page["data"]] == ["anvil", "bell"]
    assert page["pagination"]["has_more"] is True and "after=" in page["pagination"]["next"]
    second = client.get(page["pagination"]["next"], headers=one).json()
    assert [g["name"] for g in second["data"]] == ["clock"]
    assert second["pagination"]["has_more"] is False
    assert [g["name"] for g in client.get("/api/v1/gadgets", headers=two).json()["data"]] == [
        "drum"
    ]

    # get, patch, delete: another tenant's row is not found, and stays as it was
    mine = made[1]["id"]
    got = client.get(f"/api/v1/gadgets/{mine}", headers=one)
    assert got.status_code == 200 and got.json()["name"] == "bell"
    for method, kwargs in (("GET", {}), ("PATCH", {"json": {"qty": 99}}), ("DELETE", {})):
        r = client.request(method, f"/api/v1/gadgets/{theirs_id}", headers=one, **kwargs)
        assert_problem(r, 404, "GADGETS_NOT_FOUND")
    still = client.get(f"/api/v1/gadgets/{theirs_id}", headers=two).json()
    assert (still["name"], still["qty"]) == ("drum", 7)

    patched = client.patch(f"/api/v1/gadgets/{mine}", json={"qty": 5}, headers=one)
    assert patched.status_code == 200, patched.text
    assert (patched.json()["name"], patched.json()["qty"]) == ("bell", 5)
    assert_problem(
        client.patch(f"/api/v1/gadgets/{mine}", json={}, headers=one), 400, "VALIDATION_ERROR"
    )
    cleared = assert_problem(
        client.patch(f"/api/v1/gadgets/{mine}", json={"name": None}, headers=one),
        400,
        "VALIDATION_ERROR",
    )
    assert error_for(cleared, "pointer", "/name")["keyword"] == "type"
    assert_problem(
        client.patch(f"/api/v1/gadgets/{mine}", json={"name": "y" * 21}, headers=one),
        400,
        "VALIDATION_ERROR",
    )

    gone = client.delete(f"/api/v1/gadgets/{mine}", headers=one)
    assert gone.status_code == 204, gone.text
    missing_row = client.get(f"/api/v1/gadgets/{mine}", headers={**one, "Accept-Language": "vi"})
    body = assert_problem(missing_row, 404, "GADGETS_NOT_FOUND")
    assert body["title"].startswith("Không tìm thấy")
    assert_problem(client.delete(f"/api/v1/gadgets/{mine}", headers=one), 404, "GADGETS_NOT_FOUND")

    # who may call: the role, and a token
    assert_problem(client.get("/api/v1/gadgets"), 401, "AUTHENTICATION_REQUIRED")
    assert_problem(
        client.get("/api/v1/gadgets", headers=client.auth(tenant=1)),
        403,
        "INSUFFICIENT_PERMISSIONS",
    )

    # a composite key: one path segment per key column, keyset pages over both
    anyone = client.auth(tenant=1)
    for warehouse, code in ((2, "a"), (1, "b"), (1, "a")):
        r = client.post(
            "/api/v1/bins", json={"warehouse": warehouse, "code": code, "label": f"{warehouse}{code}"},
            headers=anyone,
        )  # fmt: skip
        assert r.status_code == 201, r.text
    listed = client.get("/api/v1/bins", params={"limit": 2}, headers=anyone).json()
    assert [b["label"] for b in listed["data"]] == ["1a", "1b"]
    rest = client.get(listed["pagination"]["next"], headers=anyone).json()
    assert [b["label"] for b in rest["data"]] == ["2a"]
    assert client.get("/api/v1/bins/1/b", headers=anyone).json()["label"] == "1b"
    renamed = client.patch("/api/v1/bins/1/b", json={"label": "B"}, headers=anyone)
    assert renamed.json()["label"] == "B"
    assert client.delete("/api/v1/bins/2/a", headers=anyone).status_code == 204
    assert_problem(client.get("/api/v1/bins/2/a", headers=anyone), 404, "BINS_NOT_FOUND")
    taken_at = "2026-01-02T03:04:05+00:00"
    r = client.post(
        "/api/v1/samples", json={"sensor": 1, "taken_at": taken_at, "value": 1.5}, headers=anyone
    )
    assert r.status_code == 201 and r.json()["taken_at"] == taken_at, r.text
    assert client.get(f"/api/v1/samples/1/{taken_at}", headers=anyone).json()["value"] == 1.5
    assert_problem(
        client.get("/api/v1/samples/1/2026-01-02T03:04:06Z", headers=anyone),
        404,
        "SAMPLES_NOT_FOUND",
    )

    # documented: the rows are in /openapi.json, tagged with the table
    doc = client.get("/openapi.json").json()
    assert set(doc["paths"]["/api/v1/gadgets"]) >= {"get", "post"}
    assert set(doc["paths"]["/api/v1/gadgets/{id}"]) >= {"get", "patch", "delete"}
    assert doc["paths"]["/api/v1/gadgets"]["get"]["tags"] == ["gadgets"]
    assert "/api/v1/bins/{warehouse}/{code}" in doc["paths"]


def test_the_printed_sql_makes_the_rows_apply_makes(db: DB, db_url: str) -> None:
    db.execute(GADGETS)
    options = ["--tenant-column", "tenant_id", "--tenant-claim", "tenant_id", "--roles", "a,b"]
    printed = run_cli("scaffold", "gadgets", *options, url=db_url)
    assert printed.returncode == 0, printed.stderr
    sql = printed.stdout
    assert sql.startswith("-- Endpoints of public.gadgets, generated by `python -m engine scaffold")
    assert (
        db.fetchval("SELECT count(*) FROM api_endpoint_mappings WHERE service_name = 'gadgets'")
        == 0
    )
    db.execute(sql)
    from_sql = mapping_rows(db, "gadgets")
    assert len(from_sql) == 5 and all(not r["is_active"] for r in from_sql)
    db.execute(sql)  # idempotent: running it again changes nothing
    assert mapping_rows(db, "gadgets") == from_sql

    db.execute("DELETE FROM api_endpoint_mappings WHERE service_name = 'gadgets'")
    applied = run_cli("scaffold", "gadgets", *options, "--apply", url=db_url)
    assert applied.returncode == 0, applied.stderr
    lines = applied.stdout.splitlines()
    assert [line.split()[:3] for line in lines[:5]] == [
        ["DRAFT", "GET", "/api/v1/gadgets"],
        ["DRAFT", "GET", "/api/v1/gadgets/{id}"],
        ["DRAFT", "POST", "/api/v1/gadgets"],
        ["DRAFT", "PATCH", "/api/v1/gadgets/{id}"],
        ["DRAFT", "DELETE", "/api/v1/gadgets/{id}"],
    ]
    assert "UPDATE api_endpoint_mappings SET is_active = true WHERE id IN (" in applied.stdout
    assert mapping_rows(db, "gadgets") == from_sql
    # the history names the CLI's user, as `engine endpoints` does
    actors = db.fetch(
        "SELECT DISTINCT h.changed_by FROM api_endpoint_history h "
        "JOIN api_endpoint_mappings m ON m.id = h.mapping_id WHERE m.service_name = 'gadgets'"
    )
    assert [r["changed_by"] for r in actors] == [f"cli:{getpass.getuser()}"]

    # a second scaffold of the same routes is refused, naming the rows that own them
    again = run_cli("scaffold", "gadgets", "--apply", url=db_url)
    assert again.returncode == 1
    assert (
        "GET /api/v1/gadgets belongs to mapping id=" in again.stderr and "(a draft)" in again.stderr
    )
    check = run_cli("check", url=db_url)
    assert check.returncode == 0, check.stdout
    assert check.stdout.count("DRAFT    ") >= 5 and "/api/v1/gadgets" in check.stdout


def test_tables_it_cannot_handle_are_refused_with_the_reason(db: DB, db_url: str) -> None:
    db.execute(
        GADGETS
        + """
        CREATE TABLE loose (a int, b text);
        CREATE VIEW gadget_names AS SELECT id, name FROM gadgets;
        CREATE MATERIALIZED VIEW gadget_counts AS SELECT count(*) AS n FROM gadgets;
        CREATE TABLE readings (id int, region text, PRIMARY KEY (id, region))
            PARTITION BY LIST (region);
        CREATE TABLE readings_eu PARTITION OF readings FOR VALUES IN ('eu');
        CREATE TABLE tenant_settings (tenant_id int PRIMARY KEY, theme text);
        CREATE TABLE spans (r int4range PRIMARY KEY);
        """
    )
    before = db.fetchval("SELECT count(*) FROM api_endpoint_mappings")
    assert "public.loose needs a primary key" in refusal(db_url, "loose")
    assert "public.gadget_names is a view" in refusal(db_url, "gadget_names")
    assert "is a materialized view" in refusal(db_url, "gadget_counts")
    assert "no table 'nothing_here'" in refusal(db_url, "nothing_here")
    assert "not a table name" in refusal(db_url, "a.b.c.d")
    assert "is a partition of public.readings" in refusal(db_url, "readings_eu")
    assert "is the tenant column alone" in refusal(
        db_url, "tenant_settings", tenant_column="tenant_id"
    )
    assert "'r' is int4range" in refusal(db_url, "spans")
    for own in ("api_keys", "engine_secrets", "api_endpoint_mappings"):
        assert f"public.{own} is one of the engine's own tables" in refusal(db_url, own)
    assert "has no column 'org_id'" in refusal(db_url, "gadgets", tenant_column="org_id")
    assert "reserved" in refusal(db_url, "gadgets", path="/_engine/gadgets")
    assert "reserved" in refusal(db_url, "gadgets", path="/admin/v1/gadgets")
    camera_get = db.fetchval("SELECT api_mapping_id('/api/v1/cameras', 'GET')")
    taken = refusal(db_url, "gadgets", path="/api/v1/cameras/")
    assert f"GET /api/v1/cameras belongs to mapping id={camera_get} (active)" in taken
    assert "roles or a tenant" in refusal(db_url, "gadgets", public=True, roles=["x"])
    assert db.fetchval("SELECT count(*) FROM api_endpoint_mappings") == before

    # the partitioned table itself is handled (its key has the partition key)
    parted = run_scaffold(db_url, "readings")
    assert [s.path for s in parted.states][:2] == [
        "/api/v1/readings",
        "/api/v1/readings/{id}/{region}",
    ]
    assert any("partitioned" in n for n in parted.notes)
    assert (
        not parted.applied and db.fetchval("SELECT count(*) FROM api_endpoint_mappings") == before
    )

    cli = run_cli("scaffold", "loose", url=db_url)
    assert cli.returncode == 1 and "needs a primary key" in cli.stderr and cli.stdout == ""


def test_check_constraints_that_map_into_json_schema() -> None:
    kinds = {"n": "integer", "x": "number", "s": "string"}
    columns = {c: c for c in kinds}

    def mapped(definition: str) -> tuple[dict[str, Any], list[str]]:
        found, rest = map_check(definition, columns, kinds)
        schema: dict[str, Any] = {}
        for _, facets in found:
            merge_facets(schema, facets)
        return schema, rest

    assert mapped("CHECK ((n > 0))") == ({"minimum": 1}, [])
    assert mapped("CHECK ((0 < n))") == ({"minimum": 1}, [])
    assert mapped("CHECK (((n >= 1) AND (n <= 10)))") == ({"minimum": 1, "maximum": 10}, [])
    assert mapped("CHECK ((n > '-10'::integer))") == ({"minimum": -9}, [])
    assert mapped("CHECK ((x > ('-1.5'::numeric)::double precision))") == (
        {"exclusiveMinimum": -1.5}, [],
    )  # fmt: skip
    assert mapped("CHECK ((x > (0)::numeric))") == ({"exclusiveMinimum": 0}, [])
    assert mapped("CHECK ((n = ANY (ARRAY[1, 2, 3])))") == ({"enum": [1, 2, 3]}, [])
    assert mapped(
        "CHECK (((s)::text = ANY ((ARRAY['a''b'::character varying, 'c'::character varying])"
        "::text[])))"
    ) == ({"enum": ["a'b", "c"]}, [])
    assert mapped("CHECK ((char_length(s) <= 5))") == ({"maxLength": 5}, [])
    assert mapped("CHECK ((length((s)::text) > 1))") == ({"minLength": 2}, [])
    assert mapped("CHECK ((s <> ''::text))") == ({"minLength": 1}, [])
    assert mapped("CHECK ((((n >= 1) AND (n < 100)) OR (n IS NULL)))") == (
        {"minimum": 1, "maximum": 99}, [],
    )  # fmt: skip
    assert mapped("CHECK ((n >= 0)) NOT VALID") == ({"minimum": 0}, [])
    # what does not map is left to the database
    assert mapped("CHECK ((n > x))") == ({}, ["n > x"])
    assert mapped("CHECK (((n > 0) AND (n < x)))") == ({"minimum": 1}, ["n < x"])
    assert mapped("CHECK (((n > 0) OR (x > 0)))") == ({}, ["(n > 0) OR (x > 0)"])
    assert mapped("CHECK ((s ~ '^a'::text))") == ({}, ["s ~ '^a'::text"])
    # a domain's check names VALUE
    assert map_check("CHECK ((VALUE > 0))", {"VALUE": "n"}, kinds)[0] == [("n", {"minimum": 1})]
    # tighter bounds win, enums intersect
    schema: dict[str, Any] = {"maxLength": 20, "enum": ["a", "b", "c"]}
    merge_facets(schema, {"maxLength": 5, "enum": ["c", "a", "z"]})
    assert schema == {"maxLength": 5, "enum": ["a", "c"]}


def test_sql_literals_read_back_as_written(db_url: str) -> None:
    values = ["it's", "a\\b", "x$sql$y", "ends$sql", "two\nlines", "", "ünïcode 'q' \\n $1"]

    async def read_back(setting: str) -> list[str]:
        conn = await asyncpg.connect(db_url)
        try:
            await conn.execute(f"SET standard_conforming_strings = {setting}")
            return [await conn.fetchval(f"SELECT {sql_literal(v)}::text") for v in values]
        finally:
            await conn.close()

    assert asyncio.run(read_back("on")) == values
    assert asyncio.run(read_back("off")) == values  # the text means the same either way


def test_inside_a_transaction_the_caller_commits_and_the_actor_is_recorded(
    db: DB, db_url: str
) -> None:
    db.execute(GADGETS)

    async def go(commit: bool) -> list[int]:
        conn = await asyncpg.connect(db_url)
        try:
            await init_connection(conn)
            transaction = conn.transaction(isolation="repeatable_read")
            await transaction.start()
            result = await scaffold(conn, "gadgets", apply=True, actor="bob")
            await (transaction.commit() if commit else transaction.rollback())
            return result.ids
        finally:
            await conn.close()

    rolled_back = asyncio.run(go(False))
    assert len(rolled_back) == 5
    assert (
        db.fetchval("SELECT count(*) FROM api_endpoint_mappings WHERE service_name = 'gadgets'")
        == 0
    )
    ids = asyncio.run(go(True))
    assert (
        db.fetchval(
            "SELECT count(*) FROM api_endpoint_mappings WHERE id = ANY($1::int[]) AND NOT is_active",
            ids,
        )
        == 5
    )
    if db.fetchval("SELECT to_regclass('api_endpoint_history') IS NOT NULL"):
        actors = db.fetch(
            "SELECT DISTINCT changed_by FROM api_endpoint_history WHERE mapping_id = ANY($1::int[])",
            ids,
        )
        assert [r["changed_by"] for r in actors] == ["bob"]


EVIL = "evil\nCREATE TABLE pwned (x int);--"


def test_names_with_line_breaks_cannot_escape_the_comments_of_the_printed_sql(
    db: DB, db_url: str
) -> None:
    db.execute(
        f"""CREATE SCHEMA s;
        CREATE TABLE s."{EVIL}" (id int PRIMARY KEY, "c\rDROP TABLE gadgets;--" int
            CONSTRAINT "k\nCREATE TABLE pwned2 ();--" CHECK ("c\rDROP TABLE gadgets;--" > id),
            s serial);
        CREATE TABLE gadgets (id int PRIMARY KEY);"""
    )
    sql = run_scaffold(db_url, f's."{EVIL}"').sql
    for line in sql.splitlines():
        if line.startswith("--"):
            assert "\r" not in line
    ran = subprocess.run(
        ["psql", "-v", "ON_ERROR_STOP=1", "-X", "-q", "-d", db_url],
        input=sql, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert db.fetchval("SELECT to_regclass('pwned') IS NULL AND to_regclass('pwned2') IS NULL")
    assert db.fetchval("SELECT to_regclass('gadgets') IS NOT NULL")
    assert db.fetchval("SELECT count(*) FROM api_endpoint_mappings WHERE target_schema = 's'") == 5


def test_the_engines_own_tables_are_refused_whatever_the_search_path(db: DB, db_url: str) -> None:
    db.execute("CREATE SCHEMA other; CREATE TABLE other.api_keys (id int PRIMARY KEY, v text)")

    async def go(table: str) -> ScaffoldResult:
        conn = await asyncpg.connect(db_url)
        try:
            await init_connection(conn)
            await conn.execute("SET search_path = other, public")
            return await scaffold(conn, table)
        finally:
            await conn.close()

    for own in ("public.api_keys", "public.engine_secrets", "api_endpoint_mappings"):
        with pytest.raises(ApiError) as caught:
            asyncio.run(go(own))
        assert caught.value.code == "SCAFFOLD_REFUSED"
        assert "one of the engine's own tables" in (caught.value.detail or "")
    # a table of the same name elsewhere is the admin's own
    assert asyncio.run(go("other.api_keys")).table == "other.api_keys"


def test_paths_too_long_or_with_control_characters_are_refused(db: DB, db_url: str) -> None:
    long = [f"k{i}_" + "x" * 58 for i in range(3)]
    db.execute(
        GADGETS + f"CREATE TABLE longkeys ({', '.join(f'{c} int' for c in long)}, v text, "
        f"PRIMARY KEY ({', '.join(long)}))"
    )
    before = db.fetchval("SELECT count(*) FROM api_endpoint_mappings")
    assert "at most 200" in refusal(db_url, "longkeys", path="/api/v1/" + "l" * 30)
    for bad in ("/api/v1/a\x00b", "/api/v1/a\x01b", "/api/v1/a\x7fb"):
        assert "control character" in refusal(db_url, "gadgets", path=bad)
    assert db.fetchval("SELECT count(*) FROM api_endpoint_mappings") == before


def test_text_keys_rounded_numbers_and_serial_columns(
    db: DB, db_url: str, make_client: Callable[..., EngineClient]
) -> None:
    db.execute(
        "CREATE TABLE tags (name text PRIMARY KEY, amount numeric(5,2), "
        "tiny numeric(3,-1), s serial NOT NULL, label text)"
    )
    result = run_scaffold(db_url, "tags", public=True, apply=True)
    create = next(s for s in result.schemas if s["http_method"] == "POST")["validation_schema"]
    update = next(s for s in result.schemas if s["http_method"] == "PATCH")["validation_schema"]
    assert create["properties"]["name"]["pattern"] == "^[^/]+$"
    assert any("'/'" in n and "name" in n for n in result.notes)
    amount = create["properties"]["amount"]
    assert (amount["exclusiveMaximum"], amount["exclusiveMinimum"]) == (999.995, -999.995)
    tiny = create["properties"]["tiny"]
    assert (tiny["exclusiveMaximum"], tiny["exclusiveMinimum"]) == (9995, -9995)
    assert "s" not in create["properties"] and "s" not in update["properties"]
    assert any("column s is assigned by the database" in n for n in result.notes)

    client = serve(make_client)
    db.execute("UPDATE api_endpoint_mappings SET is_active = true WHERE id = ANY($1::int[])",
               result.ids)  # fmt: skip
    for mid in result.ids:
        wait_status(db, mid, "serving")
    slash = assert_problem(
        client.post("/api/v1/tags", json={"name": "a/b"}), 400, "VALIDATION_ERROR"
    )
    assert error_for(slash, "pointer", "/name")["keyword"] == "pattern"
    for value in (999.995, 999.999, -999.999):
        r = client.post("/api/v1/tags", json={"name": "big", "amount": value})
        assert error_for(assert_problem(r, 400, "VALIDATION_ERROR"), "pointer", "/amount")
    r = client.post("/api/v1/tags", json={"name": "big", "tiny": 9994})
    assert r.status_code == 201 and r.json()["tiny"] == 9990, r.text
    r = client.post("/api/v1/tags", json={"name": "ok", "amount": 999.994, "tiny": -9994})
    assert r.status_code == 201 and r.json()["amount"] == 999.99, r.text
    assert isinstance(r.json()["s"], int)
    assert_problem(client.post("/api/v1/tags", json={"name": "n", "s": 7}), 400, "VALIDATION_ERROR")
    assert_problem(client.patch("/api/v1/tags/ok", json={"s": 7}), 400, "VALIDATION_ERROR")
    assert client.get("/api/v1/tags/ok").json()["label"] is None
