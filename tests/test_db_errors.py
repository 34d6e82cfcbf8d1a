"""Database errors are translated by SQLSTATE at one boundary, and nothing internal leaks."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

from engine import roles
from engine.database import translate
from tests.helpers import add_endpoint, refusing_connections

SECRET_NAMES = (
    "widgets",
    "widget_parts",
    "widgets_pkey",
    "widgets_name_key",
    "raise_state",
    "pg_sleep",
)


def _no_leak(response) -> None:
    body = response.json()
    body.pop("instance", None)  # the request's own path, which the client sent
    text = json.dumps(body)
    for name in SECRET_NAMES:
        assert name not in text, f"{name!r} leaked in {text}"
    assert "Traceback" not in text and "SELECT" not in text and "INSERT" not in text


@pytest.fixture()
def widgets(db):
    db.execute(
        """
        CREATE TABLE widgets (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            size INTEGER CHECK (size > 0)
        );
        CREATE TABLE widget_parts (
            id SERIAL PRIMARY KEY,
            widget_id INTEGER NOT NULL REFERENCES widgets(id)
        );
        INSERT INTO widgets VALUES (1, 'first', 1);
        INSERT INTO widget_parts (widget_id) VALUES (1);
        CREATE FUNCTION raise_state(state text, msg text, det text) RETURNS int
        LANGUAGE plpgsql STABLE AS $$
        BEGIN
            RAISE EXCEPTION USING ERRCODE = state, MESSAGE = msg, DETAIL = coalesce(det, '');
        END $$;
        """
    )
    body = {"in": "body"}
    add_endpoint(
        db,
        "/widgets",
        "POST",
        "INSERT INTO widgets (id, name, size) VALUES ($1, $2, $3) RETURNING id, name",
        [
            {"name": "id", **body, "type": "integer", "required": True},
            {"name": "name", **body, "type": "string"},
            {"name": "size", **body, "type": "integer"},
        ],
        {"shape": "object"},
    )
    add_endpoint(
        db,
        "/widgets/{id}/parts",
        "POST",
        "INSERT INTO widget_parts (widget_id) VALUES ($1) RETURNING id",
        [{"name": "id", "in": "path", "type": "integer"}],
        {"shape": "object"},
    )
    add_endpoint(
        db,
        "/widgets/{id}",
        "DELETE",
        "DELETE FROM widgets WHERE id = $1",
        [{"name": "id", "in": "path", "type": "integer"}],
        {"shape": "none", "not_found": "RESOURCE_NOT_FOUND"},
        database_operation="DELETE",
    )
    add_endpoint(
        db,
        "/cast",
        "GET",
        "SELECT $1::text::integer AS n",
        [{"name": "v", "in": "query", "type": "string", "required": True}],
        {"shape": "scalar"},
    )
    add_endpoint(
        db,
        "/raise",
        "GET",
        "SELECT raise_state($1, $2, $3)",
        [
            {"name": "state", "in": "query", "type": "string", "required": True},
            {"name": "msg", "in": "query", "type": "string", "default": "boom widgets"},
            {"name": "detail", "in": "query", "type": "string"},
        ],
        {"shape": "scalar"},
    )
    add_endpoint(db, "/sleep", "GET", "SELECT pg_sleep(3)::text AS s", [], {"shape": "scalar"})
    add_endpoint(
        db,
        "/sleep-row-timeout",
        "GET",
        "SELECT pg_sleep(3)::text AS s",
        [],
        {"shape": "scalar"},
        statement_timeout_ms=200,
    )
    return db


def _problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code
    _no_leak(response)
    return body


def test_unique_violation_is_409(widgets, client):
    client.wait_for("POST", "/widgets", 201, json={"id": 2, "name": "second", "size": 2})
    again = client.post("/widgets", json={"id": 3, "name": "second", "size": 2})
    body = _problem(again, 409, "DUPLICATE_RESOURCE")
    assert body["errors"] == [{"fields": ["name"], "message": "must be unique"}]
    assert body["detail"] == "A resource with the same name already exists"
    same_key = client.post("/widgets", json={"id": 2, "name": "other", "size": 2})
    assert _problem(same_key, 409, "DUPLICATE_RESOURCE")["errors"][0]["fields"] == ["id"]


def test_foreign_key_violation_is_422_on_insert_and_409_on_delete(widgets, client):
    client.wait_for("DELETE", "/widgets/999", 404, code="RESOURCE_NOT_FOUND")
    _problem(client.post("/widgets/999/parts"), 422, "REFERENCED_RESOURCE_MISSING")
    _problem(client.delete("/widgets/1"), 409, "RESOURCE_IN_USE")
    assert widgets.fetchval("SELECT count(*) FROM widgets WHERE id = 1") == 1


def test_not_null_and_check_violations_are_422(widgets, client):
    client.wait_for("POST", "/widgets", 201, json={"id": 5, "name": "five", "size": 5})
    missing = _problem(
        client.post("/widgets", json={"id": 6, "size": 1}), 422, "CONSTRAINT_VIOLATION"
    )
    assert missing["errors"] == [{"field": "name", "message": "must not be null"}]
    check = _problem(
        client.post("/widgets", json={"id": 7, "name": "neg", "size": -1}),
        422,
        "CONSTRAINT_VIOLATION",
    )
    # the constraint is named without the table's name (widgets_size_check)
    assert check["errors"] == [
        {"constraint": "size_check", "fields": ["size"], "message": "violates the check"}
    ]
    assert widgets.fetchval("SELECT count(*) FROM widgets") == 2


def test_invalid_text_representation_is_400(widgets, client):
    assert client.wait_for("GET", "/cast?v=12", 200).json() == 12
    _problem(client.get("/cast?v=twelve"), 400, "INVALID_VALUE")


def test_server_statement_timeout_is_504_and_the_pool_recovers(widgets, make_client):
    client = make_client(statement_timeout_ms=300)
    response = client.wait_for("GET", "/sleep", 504)
    _problem(response, 504, "STATEMENT_TIMEOUT")
    assert client.get("/cast?v=7").json() == 7


def test_row_statement_timeout_is_504(widgets, client):
    response = client.wait_for("GET", "/sleep-row-timeout", 504)
    _problem(response, 504, "STATEMENT_TIMEOUT")
    assert client.get("/cast?v=8").json() == 8
    # the timed-out backend was cancelled, not left running
    running = widgets.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(3)%' AND state = 'active'"
    )
    assert running == 0


@pytest.mark.parametrize(
    ("state", "status", "code"),
    [
        ("23505", 409, "DUPLICATE_RESOURCE"),
        ("23514", 422, "CONSTRAINT_VIOLATION"),
        ("22012", 500, "TEMPLATE_ERROR"),  # no bound value is zero: the template divided
        ("22003", 400, "INVALID_VALUE"),
        ("57014", 504, "STATEMENT_TIMEOUT"),
        ("40001", 503, "TRANSACTION_CONFLICT"),
        ("40P01", 503, "TRANSACTION_CONFLICT"),
        ("53300", 503, "DATABASE_CONNECTION_ERROR"),
        ("42P01", 503, "ENDPOINT_UNAVAILABLE"),  # schema drift: the row is re-checked
        ("XX000", 500, "INTERNAL_ERROR"),
    ],
)
def test_each_sqlstate_maps_to_its_code(widgets, client, state, status, code):
    response = client.wait_for("GET", f"/raise?state={state}", status)
    body = _problem(response, status, code)
    assert "boom" not in response.text
    assert body["status"] == status
    if status == 503:  # every 503 says when to retry
        assert response.headers["retry-after"].isdigit(), (state, response.headers)


def test_a_data_error_of_the_templates_own_is_template_error_not_the_clients(db, client):
    add_endpoint(db, "/own-ratio", "GET", "SELECT count(*) / 0 AS r FROM pg_class", [])
    add_endpoint(
        db,
        "/ratio",
        "GET",
        "SELECT $1::int / (count(*) - count(*)) AS r FROM pg_class",
        [{"name": "n", "in": "query", "type": "integer", "required": True}],
        {"shape": "scalar"},
    )
    response = client.wait_for("GET", "/own-ratio", 500)
    _problem(response, 500, "TEMPLATE_ERROR")
    # a client value is bound, but none is zero: the template divided by its own zero (the
    # row may come with the next reload: wait for it too)
    _problem(client.wait_for("GET", "/ratio", 500, params={"n": 5}), 500, "TEMPLATE_ERROR")


def test_a_read_only_session_asked_to_write_is_read_only_violation(db, client):
    # built-in functions pass check; nextval() writes, and the read-only session refuses it
    db.execute("CREATE SEQUENCE ro_seq")
    add_endpoint(db, "/sneaky", "GET", "SELECT nextval('ro_seq') AS v", [], {"shape": "scalar"})
    response = client.wait_for("GET", "/sneaky", 500)
    _problem(response, 500, "READ_ONLY_VIOLATION")
    assert db.fetchval("SELECT is_called FROM ro_seq") is False  # never advanced


def test_raise_with_a_known_error_code_answers_that_code(widgets, client):
    widgets.execute(
        "INSERT INTO api_error_codes (error_code, error_message, error_category, http_status_code) "
        "VALUES ('WIDGET_LOCKED', 'The widget is locked', 'business', 423)"
    )
    response = client.wait_for(
        "GET", "/raise?state=P0001&msg=WIDGET_LOCKED&detail=Locked until noon", 423
    )
    body = response.json()
    assert body["code"] == "WIDGET_LOCKED"
    assert body["title"] == "The widget is locked"
    assert body["detail"] == "Locked until noon"
    unknown = client.get("/raise?state=P0001&msg=secret internal widgets message")
    _problem(unknown, 500, "INTERNAL_ERROR")


def test_connection_failure_is_503_and_the_engine_recovers(widgets, client, pg_url, db_url):
    assert client.wait_for("GET", "/cast?v=1", 200).json() == 1
    with refusing_connections(pg_url, db_url):
        response = client.get("/cast?v=2")
        _problem(response, 503, "DATABASE_CONNECTION_ERROR")
        again = client.get("/cast?v=3")
        _problem(again, 503, "DATABASE_CONNECTION_ERROR")
        health = client.get("/_engine/health")
        assert health.status_code == 503 and health.json()["database"] == "unavailable"
    assert client.wait_for("GET", "/cast?v=4", 200, timeout_s=10).json() == 4


def test_a_privilege_the_read_role_lacks_is_read_only_violation_only_for_reads(db_url):
    """42501 in a SELECT row is the read role refusing a write (sql/019); in a write row it
    is the engine's own user lacking a privilege: an internal error."""

    async def refused():
        conn = await asyncpg.connect(roles.url_as(db_url, roles.READER))
        try:
            await conn.execute("SET default_transaction_read_only = off")
            await conn.execute("DELETE FROM api_error_codes")
        except asyncpg.InsufficientPrivilegeError as exc:
            return exc
        finally:
            await conn.close()

    try:
        exc = asyncio.run(refused())
    except (OSError, asyncpg.PostgresError) as login:  # a server that asks it for a password
        pytest.skip(f"engine_reader cannot log in without a password here: {login!r}")
    assert exc is not None and exc.sqlstate == "42501"
    assert translate(exc, "SELECT").code == "READ_ONLY_VIOLATION"
    assert translate(exc, "DELETE").code == "INTERNAL_ERROR"
