"""Small helpers for tests that publish their own endpoints by inserting rows.

Rows are written before the engine starts (``serve``), so its first catalogue
already holds them; rows that cannot work are read back from the admin
catalogue report. Nothing here mocks the database.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import asyncpg
import httpx
import orjson

from engine.catalog import Catalog, load_catalog
from engine.database import init_connection
from tests.engine_server import EngineClient
from tests.pg import DB, database_name

T = TypeVar("T")

ADMIN_TOKEN = "admin-token-for-tests"
PROBLEM = "application/problem+json"

_OPERATION = {"GET": "SELECT", "POST": "INSERT", "PUT": "UPDATE", "PATCH": "UPDATE"}
_JSON_COLUMNS = {"query_parameters", "result_mapping", "bulk_import"}


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def add_endpoint(
    db: DB,
    path: str,
    method: str = "GET",
    sql: str = "SELECT 1 AS one",
    params: Sequence[dict[str, Any]] = (),
    result: dict[str, Any] | None = None,
    **columns: Any,
) -> int:
    """Insert one ``api_endpoint_mappings`` row; returns its id.

    Defaults keep tests independent of other concerns: no auth, no cache, no rate
    limit, ``database_operation`` derived from the method.
    """
    method = method.upper()
    row: dict[str, Any] = {
        "endpoint_path": path,
        "http_method": method,
        "service_name": "test_service",
        "database_operation": _OPERATION.get(method, "DELETE"),
        "query_template": sql,
        "query_parameters": list(params),
        "result_mapping": result if result is not None else {"shape": "list"},
        "requires_auth": False,
        "cache_enabled": False,
        "rate_limit_per_minute": None,
    }
    row.update(columns)
    names = list(row)
    values = []
    holders = []
    for i, name in enumerate(names, start=1):
        value = row[name]
        if name in _JSON_COLUMNS:
            values.append(_json(value))
            holders.append(f"${i}::jsonb")
        else:
            values.append(value)
            holders.append(f"${i}")
    return db.fetchval(
        f"INSERT INTO api_endpoint_mappings ({', '.join(names)}) "
        f"VALUES ({', '.join(holders)}) RETURNING id",
        *values,
    )


SLEEP_SQL = "SELECT pg_sleep($1::float8) IS NULL AS slept"


def add_sleep_endpoint(db: DB, path: str, **columns: Any) -> int:
    """A GET at ``path`` sleeping ``?s=`` seconds in PostgreSQL (a slow request on demand);
    answers ``{"slept": true}``."""
    params = [{"name": "s", "in": "query", "type": "number", "required": True}]
    return add_endpoint(db, path, "GET", SLEEP_SQL, params, {"shape": "object"}, **columns)


ITEMS_TABLE = (
    "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);"
    "INSERT INTO items VALUES (1, 'one'), (2, 'two')"
)


def add_item_rename(db: DB) -> int:
    """``PUT /items/{id}`` renaming a row of :data:`ITEMS_TABLE` (a write that invalidates
    the cached reads of ``items``); answers the row."""
    return add_endpoint(
        db,
        "/items/{id}",
        "PUT",
        "UPDATE items SET name = $2 WHERE id = $1 RETURNING id, name",
        [
            {"name": "id", "in": "path", "type": "integer"},
            {"name": "name", "in": "body", "type": "string"},
        ],
        {"shape": "object"},
        target_table="items",
        database_operation="UPDATE",
    )


def add_schema(
    db: DB,
    mapping_id: int,
    schema: dict[str, Any],
    *,
    applies_to: str = "body",
    strict_mode: bool = True,
    allow_unknown_fields: bool = False,
    sanitize_input: bool = True,
    name: str = "test_schema",
) -> int:
    return db.fetchval(
        "INSERT INTO api_validation_schemas (endpoint_mapping_id, schema_name, "
        "validation_schema, strict_mode, allow_unknown_fields, sanitize_input, applies_to) "
        "VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7) RETURNING id",
        mapping_id,
        name,
        _json(schema),
        strict_mode,
        allow_unknown_fields,
        sanitize_input,
        applies_to,
    )


def add_rule(
    db: DB,
    field_name: str,
    sanitization_type: str,
    config: dict[str, Any] | None = None,
    *,
    mapping_id: int | None = None,
    field_type: str = "string",
    **columns: Any,
) -> int:
    """Insert one ``data_sanitization_rules`` row (columns: min_value, error_message, ...)."""
    row: dict[str, Any] = {
        "field_name": field_name,
        "field_type": field_type,
        "sanitization_type": sanitization_type,
        "sanitization_config": _json(config or {}),
        "endpoint_mapping_id": mapping_id,
        **columns,
    }
    names = list(row)
    holders = [
        f"${i}::jsonb" if n == "sanitization_config" else f"${i}"
        for i, n in enumerate(names, start=1)
    ]
    return db.fetchval(
        f"INSERT INTO data_sanitization_rules ({', '.join(names)}) "
        f"VALUES ({', '.join(holders)}) RETURNING id",
        *row.values(),
    )


def add_template(
    db: DB,
    response_type: str,
    *,
    mapping_id: int | None = None,
    headers: dict[str, str] | None = None,
    include_metadata: bool | None = True,
    include_pagination: bool | None = False,
    include_timestamps: bool | None = True,
) -> int:
    return db.fetchval(
        "INSERT INTO api_response_templates (endpoint_mapping_id, response_type, "
        "response_schema, response_headers, include_metadata, include_pagination, "
        "include_timestamps) VALUES ($1, $2, '{}'::jsonb, $3::jsonb, $4, $5, $6) RETURNING id",
        mapping_id,
        response_type,
        _json(headers) if headers is not None else None,
        include_metadata,
        include_pagination,
        include_timestamps,
    )


def add_error_code(db: DB, code: str, status: int, message: str, **columns: Any) -> None:
    db.execute(
        "INSERT INTO api_error_codes (error_code, http_status_code, error_category, "
        "error_message) VALUES ($1, $2, $3, $4)",
        code,
        status,
        columns.get("category", "business"),
        message,
    )


def serve(make_client: Callable[..., EngineClient], **settings: Any) -> EngineClient:
    """Start an engine (with the admin report on) on the test database."""
    settings.setdefault("admin_token", ADMIN_TOKEN)
    return make_client(**settings)


def catalog_report(client: EngineClient) -> dict[str, Any]:
    response = client.get("/_engine/catalog", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200, response.text
    return response.json()


def problems_of(client: EngineClient, mapping_id: int) -> list[str]:
    """Reasons the catalogue gives for not serving ``mapping_id``."""
    return [
        p["reason"]
        for p in catalog_report(client)["problems"]
        if p["table"] == "api_endpoint_mappings" and p["id"] == mapping_id
    ]


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status and code; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    assert body["request_id"]
    return body


def error_for(body: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    """The single entry of ``body['errors']`` whose ``key`` equals ``value``."""
    found = [e for e in body.get("errors", []) if e.get(key) == value]
    assert len(found) == 1, body.get("errors")
    return found[0]


@contextmanager
def refusing_connections(pg_url: str, db_url: str) -> Iterator[None]:
    """The test database refuses new connections and its open ones are terminated."""
    admin = DB(pg_url)
    name = database_name(db_url)
    admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
    try:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        yield
    finally:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')


def run_cli(*args: str, url: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m engine ARGS`` with DATABASE_URL=url and no other ENGINE_* from the caller."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    environ.pop("DATABASE_URL", None)
    if url:
        environ["DATABASE_URL"] = url
    environ["ENGINE_LOG_LEVEL"] = "WARNING"
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )


def _settled(
    value: T, done: Callable[[T], bool], deadline: float, what: str, timeout_s: float
) -> bool:
    """Whether ``value`` is the one awaited; past the deadline, fail loudly with it."""
    if done(value):
        return True
    if time.monotonic() > deadline:
        raise AssertionError(f"{what}: not within {timeout_s} s; last seen: {value!r}")
    return False


def poll(read: Callable[[], T], done: Callable[[T], bool], what: str, timeout_s: float = 5.0) -> T:
    """Call ``read`` until ``done`` holds for its value; fail loudly at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not _settled(value := read(), done, deadline, what, timeout_s):
        time.sleep(0.05)
    return value


async def apoll(
    read: Callable[[], T], done: Callable[[T], bool], what: str, timeout_s: float = 5.0
) -> T:
    """:func:`poll` inside an event loop: the loop runs between the reads."""
    deadline = time.monotonic() + timeout_s
    # a poll on purpose: what it reads (a driver's queue, say) sets no event to wait on
    while not _settled(value := read(), done, deadline, what, timeout_s):  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    return value


def wait_status(
    db: DB, mapping_id: int, state: str, *, version: int | None = None, timeout_s: float = 5.0
) -> dict[str, Any]:
    """The ``api_endpoint_status`` row of ``mapping_id`` once it has ``state`` (and version)."""

    def read() -> dict[str, Any] | None:
        row = db.fetchrow(
            "SELECT s.*, m.version AS row_version FROM api_endpoint_status s "
            "JOIN api_endpoint_mappings m ON m.id = s.endpoint_mapping_id "
            "WHERE s.endpoint_mapping_id = $1",
            mapping_id,
        )
        if row is None:
            return None
        return {**row, "warnings": orjson.loads(row["warnings"])}

    def done(row: dict[str, Any] | None) -> bool:
        return (
            row is not None
            and row["state"] == state
            and row["version"] == (row["row_version"] if version is None else version)
        )

    row = poll(read, done, f"mapping {mapping_id} in state {state}", timeout_s)
    assert row is not None
    return row


def compile_catalog(db: DB) -> Catalog:
    """What ``engine check`` sees: every row compiled cold, on a connection of its own."""

    async def go() -> Catalog:
        conn = await asyncpg.connect(db.url)
        try:
            await init_connection(conn)
            return await load_catalog(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


def status_of(catalog: Catalog, mapping_id: int) -> Any:
    return next(s for s in catalog.statuses if s.mapping_id == mapping_id)


def offset_links(response: httpx.Response, pagination: dict[str, Any]) -> dict[str, Any]:
    """``pagination`` without next/prev, once they are checked against the request.

    next/prev are the request's URL (host-relative) with only ``offset`` changed:
    ``next_offset`` for next, ``offset - limit`` (at least 0) for prev, null at the ends.
    """
    rest = dict(pagination)
    sent = response.request.url
    expected = {
        "next": rest["next_offset"],
        "prev": max(0, rest["offset"] - rest["limit"]) if rest["offset"] > 0 else None,
    }
    for rel, offset in expected.items():
        url = rest.pop(rel)
        if offset is None:
            assert url is None, (rel, url)
            continue
        link = httpx.URL(url)
        assert not link.host and link.path == sent.path, (rel, url)
        assert dict(link.params) == {**dict(sent.params), "offset": str(offset)}, (rel, url)
    return rest
