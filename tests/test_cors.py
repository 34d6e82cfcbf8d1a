"""OPTIONS and CORS: preflights and actual requests from allowed and refused origins."""

from __future__ import annotations

import pytest

from engine.cors import ALLOW_HEADERS, CorsPolicy
from engine.errors import SpecError
from engine.spec import parse_row, reserved_path
from tests.helpers import (
    add_endpoint,
    add_template,
    assert_problem,
    compile_catalog,
    serve,
    status_of,
)

APP = "https://app.example.com"
OTHER = "https://evil.example.net"
ID = [{"name": "id", "in": "path", "type": "integer"}]


def _publish(db) -> None:
    add_endpoint(db, "/things", "GET", "SELECT 1 AS one")
    add_endpoint(db, "/things", "POST", "SELECT 1 AS one", database_operation="SELECT")
    add_endpoint(
        db,
        "/things/{id}",
        "DELETE",
        "SELECT $1::int AS id, $2::text AS tenant",
        [*ID, {"name": "X-Tenant", "in": "header", "type": "string"}],
        {"shape": "none"},
        database_operation="SELECT",
    )


def _preflight(client, path: str, origin: str, method: str = "POST"):
    return client.request(
        "OPTIONS",
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def test_policy_parsing() -> None:
    assert CorsPolicy.parse(None, 600) is None
    assert CorsPolicy.parse(" ", 600) is None
    policy = CorsPolicy.parse(f"{APP}/, https://b.example", 60)
    assert policy is not None and policy.allows(APP) and not policy.allows(OTHER)
    assert CorsPolicy.parse("*", 60).allows(OTHER)  # type: ignore[union-attr]
    for bad in ("app.example.com", "https://a.example/x", "ftp://a.example", "https://"):
        with pytest.raises(ValueError, match="not an origin"):
            CorsPolicy.parse(bad, 60)
    mixed = CorsPolicy.parse("HTTPS://App.Example.com:8443/, *", 60)
    assert mixed is not None and mixed.origins == {"https://app.example.com:8443"}
    assert mixed.varies and not CorsPolicy.parse("*", 60).varies  # type: ignore[union-attr]


def test_options_without_cors_lists_the_methods(db, make_client) -> None:
    _publish(db)
    client = serve(make_client)
    r = client.request("OPTIONS", "/things")
    assert r.status_code == 204
    assert r.headers["allow"] == "GET, HEAD, OPTIONS, POST"
    assert "access-control-allow-origin" not in r.headers
    assert client.request("OPTIONS", "/things/7").headers["allow"] == "DELETE, OPTIONS"
    own = client.request("OPTIONS", "/_engine/health")
    assert own.status_code == 204 and own.headers["allow"] == "GET, HEAD, OPTIONS"
    assert_problem(client.request("OPTIONS", "/nothing/here"), 404, "ROUTE_NOT_FOUND")
    # an Origin without CORS configured gets no CORS header, on OPTIONS or a call
    assert "access-control-allow-origin" not in _preflight(client, "/things", APP).headers
    assert (
        "access-control-allow-origin" not in client.get("/things", headers={"Origin": APP}).headers
    )


def test_preflight_and_calls_from_an_allowed_and_a_refused_origin(db, make_client) -> None:
    _publish(db)
    client = serve(make_client, cors_origins=f"{APP}, https://other.example", cors_max_age_s=900)
    r = _preflight(client, "/things", APP)
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == APP
    assert r.headers["access-control-allow-credentials"] == "true"
    assert r.headers["access-control-allow-methods"] == "GET, HEAD, OPTIONS, POST"
    allowed = [h.strip() for h in r.headers["access-control-allow-headers"].split(",")]
    for name in ("Authorization", "X-API-Key", "Idempotency-Key", "Content-Type"):
        assert name in allowed
    assert r.headers["access-control-max-age"] == "900"
    assert "Origin" in r.headers["vary"]
    # a route's own header parameter may be sent too
    one = _preflight(client, "/things/3", APP, "DELETE")
    assert "X-Tenant" in one.headers["access-control-allow-headers"]
    assert one.headers["access-control-allow-methods"] == "DELETE, OPTIONS"

    refused = _preflight(client, "/things", OTHER)
    assert refused.status_code == 204
    assert not any(h.startswith("access-control-") for h in refused.headers)

    call = client.get("/things", headers={"Origin": APP})
    assert call.status_code == 200
    assert call.headers["access-control-allow-origin"] == APP
    assert call.headers["access-control-allow-credentials"] == "true"
    exposed = call.headers["access-control-expose-headers"]
    for name in ("X-Request-ID", "RateLimit-Remaining", "Retry-After", "ETag", "Link"):
        assert name in exposed
    assert "Origin" in call.headers["vary"]
    # errors carry the CORS headers too, or the page could not read the problem
    missing = client.get("/things/x/y", headers={"Origin": APP})
    assert missing.status_code == 404 and missing.headers["access-control-allow-origin"] == APP

    other = client.get("/things", headers={"Origin": OTHER})
    assert other.status_code == 200
    assert not any(h.startswith("access-control-") for h in other.headers)


def test_any_origin_never_allows_credentials(db, make_client) -> None:
    _publish(db)
    client = serve(make_client, cors_origins="*")
    r = _preflight(client, "/things", OTHER)
    assert r.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in r.headers
    call = client.get("/things", headers={"Origin": OTHER})
    assert call.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in call.headers
    assert set(ALLOW_HEADERS) <= {
        h.strip() for h in r.headers["access-control-allow-headers"].split(",")
    }


@pytest.mark.parametrize(
    "path",
    [
        "/openapi.json",
        "/docs",
        "/docs/swagger-ui.css",
        "/metrics",
        "/metrics/",
        "/health/live",
        "/health/{what}",
        "/health",
        "/_engine/health",
        "/_engine",
        "/_enginex",
    ],
)
def test_reserved_paths_are_refused(path: str) -> None:
    assert reserved_path(path) is not None
    row = {
        "endpoint_path": path,
        "http_method": "GET",
        "database_operation": "SELECT",
        "query_template": "SELECT 1",
    }
    with pytest.raises(SpecError, match="the engine's own path"):
        parse_row(row)


@pytest.mark.parametrize("path", ["/api/docs", "/metricsx", "/healthy", "/documents", "/"])
def test_paths_near_reserved_ones_are_free(path: str) -> None:
    assert reserved_path(path) is None


def test_check_names_the_reserved_path(db) -> None:
    mid = add_endpoint(db, "/metrics", "GET", "SELECT 1 AS one")
    status = status_of(compile_catalog(db), mid)
    assert status.state == "refused"
    assert "/metrics is the engine's own path" in status.reason


def test_answers_vary_by_origin_and_operator_paths_get_no_cors(db, make_client) -> None:
    _publish(db)
    client = serve(make_client, cors_origins=APP)
    # a cached answer without CORS headers must not be handed to a page: Vary on every answer
    plain = client.get("/things")
    assert "Origin" in plain.headers["vary"] and "access-control-allow-origin" not in plain.headers
    refused = client.get("/things", headers={"Origin": OTHER})
    assert "Origin" in refused.headers["vary"]
    allowed = client.get("/things", headers={"Origin": APP.upper()})  # origins compare lowercased
    assert allowed.headers["access-control-allow-origin"] == APP
    assert len(allowed.headers.get_list("vary")) == 1  # merged, not a second Vary
    for own in ("/metrics", "/_engine/health", "/health/ready"):
        r = client.get(own, headers={"Origin": APP})
        assert not any(h.startswith("access-control-") for h in r.headers), own
        pre = _preflight(client, own, APP, "GET")
        assert pre.status_code == 204 and "access-control-allow-origin" not in pre.headers, own


def test_a_response_templates_own_headers_are_exposed(db, make_client) -> None:
    mid = add_endpoint(db, "/h", "GET", "SELECT 1 AS one")
    add_template(db, "success", mapping_id=mid, headers={"X-Api-Version": "3"})
    client = serve(make_client, cors_origins="*")
    r = client.get("/h")  # no Origin: with * every answer says so, nothing to vary
    assert r.headers["access-control-allow-origin"] == "*"
    assert "vary" not in r.headers or "Origin" not in r.headers["vary"]
    exposed = [h.strip() for h in r.headers["access-control-expose-headers"].split(",")]
    assert r.headers["x-api-version"] == "3"
    assert "x-api-version" in [h.lower() for h in exposed]
    assert "Idempotent-Replayed" in exposed and "X-Request-ID" in exposed
    assert "Content-Type" not in exposed  # safelisted
