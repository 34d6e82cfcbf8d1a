"""One error body shape everywhere, localized titles, and every error logged without secrets."""

from __future__ import annotations

import re

import pytest

from tests.helpers import add_endpoint

PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "request_id", "instance"}
ADMIN = {"Authorization": "Bearer admin"}


def assert_problem(response, db_codes: set[str]) -> dict:
    assert response.headers["content-type"] == "application/problem+json", response.text
    body = response.json()
    assert set(body) >= PROBLEM_KEYS, body
    assert body["status"] == response.status_code
    assert body["code"] in db_codes, body["code"]
    assert body["type"].endswith(body["code"])
    assert body["request_id"] == response.headers["x-request-id"]
    assert isinstance(body["title"], str) and body["title"]
    assert "Traceback" not in response.text
    return body


def test_error_body_shape_across_every_route(db, make_client):
    client = make_client(admin_token="admin")
    add_endpoint(
        db,
        "/shape/{id}",
        "GET",
        "SELECT $1::int AS id WHERE false",
        [{"name": "id", "in": "path", "type": "integer"}],
        {"shape": "object"},
    )
    client.wait_for("GET", "/shape/1", 404, code="RESOURCE_NOT_FOUND")
    codes = {r["error_code"] for r in db.fetch("SELECT error_code FROM api_error_codes")}
    endpoints = client.get("/_engine/catalog", headers=ADMIN).json()["endpoints"]
    assert len(endpoints) >= 15  # the seeded camera endpoints and ours
    everyone = client.auth(sub="probe", tenant=1, roles=("camera_admin", "operator", "admin"))
    seen_codes = set()
    for ep in endpoints:
        concrete = re.sub(r"\{[^}]+\}", "not-a-valid-value", ep["path"])
        attempts = [
            client.request(ep["method"], concrete, headers={"Authorization": "Bearer garbage"}),
            client.request(
                "PATCH" if ep["method"] != "PATCH" else "TRACE",
                ep["path"].replace("{", "x").replace("}", ""),
            ),
            client.request(
                ep["method"],
                concrete,
                headers=everyone,
                content=b"{not json",
            ),
        ]
        for response in attempts:
            if response.status_code < 400:
                continue
            seen_codes.add(assert_problem(response, codes)["code"])
    seen_codes.add(assert_problem(client.get("/no/such/route"), codes)["code"])
    assert {"INVALID_TOKEN", "ROUTE_NOT_FOUND"} <= seen_codes
    assert seen_codes & {"INVALID_PARAMETER", "INVALID_JSON", "VALIDATION_ERROR"}


def test_localized_title_follows_accept_language(db, client):
    response = client.get("/nowhere", headers={"Accept-Language": "vi-VN,vi;q=0.9,en;q=0.5"})
    body = response.json()
    expected_vi = db.fetchval(
        "SELECT localized_messages->>'vi' FROM api_error_codes WHERE error_code = 'ROUTE_NOT_FOUND'"
    )
    assert body["title"] == expected_vi
    assert response.headers["content-language"] == "vi"

    ru = client.get("/nowhere", headers={"Accept-Language": "fr;q=1.0, ru;q=0.8, vi;q=0.5"})
    assert ru.json()["title"] == db.fetchval(
        "SELECT localized_messages->>'ru' FROM api_error_codes WHERE error_code = 'ROUTE_NOT_FOUND'"
    )
    assert ru.headers["content-language"] == "ru"

    english = client.get("/nowhere", headers={"Accept-Language": "de"})
    assert english.json()["title"] == "No endpoint matches this path"
    assert english.headers["content-language"] == "en"
    assert (
        client.get("/nowhere", headers={"Accept-Language": "vi;q=0"}).json()["title"]
        == "No endpoint matches this path"
    )


def test_domain_error_code_is_localized(db, client):
    db.execute(
        "INSERT INTO api_error_codes (error_code, error_message, error_category, http_status_code, localized_messages) "
        "VALUES ('GADGET_NOT_FOUND', 'Gadget not found', 'business', 404, '{\"vi\": \"Không tìm thấy thiết bị\"}')"
    )
    add_endpoint(
        db,
        "/gadgets/{id}",
        "GET",
        "SELECT 1 AS id WHERE $1 < 0",
        [{"name": "id", "in": "path", "type": "integer"}],
        {"shape": "object", "not_found": "GADGET_NOT_FOUND"},
    )
    response = client.wait_for(
        "GET", "/gadgets/3", 404, code="GADGET_NOT_FOUND", headers={"Accept-Language": "vi"}
    )
    assert response.json()["title"] == "Không tìm thấy thiết bị"
    assert client.get("/gadgets/3").json()["title"] == "Gadget not found"


def test_request_id_is_echoed_when_sane(client):
    given = client.get("/nowhere", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123" and given.json()["request_id"] == "abc-123"
    bad = client.get("/nowhere", headers={"X-Request-ID": "<script>" * 3})
    assert bad.headers["x-request-id"] != "<script>" * 3


def test_failed_requests_are_logged_through_log_api_error_without_secrets(db, client):
    add_endpoint(
        db,
        "/logged",
        "POST",
        "SELECT $1::int AS n",
        [{"name": "n", "in": "body", "type": "integer", "required": True}],
        {"shape": "scalar"},
        database_operation="SELECT",
    )
    client.wait_for("POST", "/logged", 200, json={"n": 1})
    response = client.post(
        "/logged",
        json={"n": "nope", "password": "hunter2", "api_key": "k-123"},
        headers={
            "X-API-Key": "super-secret-key",
            "Authorization": "Bearer abc.def.ghi",
            "X-Request-ID": "log-me-1",
        },
    )
    assert response.status_code == 400  # a key and a token at once: AMBIGUOUS_CREDENTIALS
    response = client.post(
        "/logged",
        json={"n": "nope"},
        headers={"X-API-Key": "super-secret-key", "X-Request-ID": "log-me-2"},
    )
    assert response.status_code == 401  # so is an unknown API key
    response = client.post(
        "/logged",
        json={"n": "nope", "password": "hunter2", "api_key": "k-123"},
        headers={"X-Request-ID": "log-me-3", "Cookie": "session=cookie-secret"},
    )
    assert response.status_code == 400
    client.engine.flush_errors()
    rows = {
        r["request_id"]: r
        for r in db.fetch("SELECT * FROM api_error_logs WHERE request_id LIKE 'log-me-%'")
    }
    assert set(rows) == {"log-me-1", "log-me-2", "log-me-3"}
    row = rows["log-me-3"]
    assert row["error_code"] == "INVALID_PARAMETER"
    assert row["endpoint_path"] == "/logged" and row["http_method"] == "POST"
    assert row["response_status_code"] == 400
    assert rows["log-me-1"]["error_code"] == "AMBIGUOUS_CREDENTIALS"
    assert rows["log-me-2"]["error_code"] == "INVALID_TOKEN"
    everything = " ".join(str(v) for r in rows.values() for v in dict(r).values())
    for secret in ("hunter2", "k-123", "super-secret-key", "abc.def.ghi", "cookie-secret"):
        assert secret not in everything
    for logged in rows.values():
        names = {k.lower() for k in logged["request_headers"]}
        assert not names & {"x-api-key", "authorization", "cookie"}


def test_database_errors_are_logged_with_their_sqlstate(db, client):
    db.execute("CREATE TABLE uniq (v int UNIQUE); INSERT INTO uniq VALUES (1)")
    add_endpoint(
        db,
        "/uniq",
        "POST",
        "INSERT INTO uniq VALUES ($1)",
        [{"name": "v", "in": "body", "type": "integer"}],
        {"shape": "none"},
    )
    client.wait_for("POST", "/uniq", 409, json={"v": 1}, headers={"X-Request-ID": "dup-1"})
    client.engine.flush_errors()
    row = db.fetchrow(
        "SELECT * FROM api_error_logs WHERE request_id = 'dup-1' ORDER BY id DESC LIMIT 1"
    )
    assert row["error_code"] == "DUPLICATE_RESOURCE"
    assert row["database_error"].startswith("23505")
    assert row["database_operation"] == "INSERT"


def test_a_failing_error_log_never_changes_the_answer(db, client):
    client.wait_for("GET", "/nowhere", 404)
    db.execute(
        "DO $$ DECLARE f regprocedure; BEGIN FOR f IN SELECT oid::regprocedure FROM pg_proc "
        "WHERE proname = 'log_api_error' LOOP EXECUTE 'DROP FUNCTION ' || f; END LOOP; END $$"
    )
    for _ in range(3):
        response = client.get("/nowhere")
        assert response.status_code == 404 and response.json()["code"] == "ROUTE_NOT_FOUND"
    client.engine.flush_errors()
    assert client.engine.services.errorlog.failed >= 1


@pytest.mark.parametrize("header", ["en", "", "*", "vi-VN", "zz;q=0.1, vi"])
def test_accept_language_never_breaks_an_answer(client, header):
    response = client.get("/nowhere", headers={"Accept-Language": header})
    assert response.status_code == 404 and response.json()["title"]
