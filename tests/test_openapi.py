"""OpenAPI 3.1 at GET /openapi.json: the pure builder, and the document the engine serves.

The builder is tested on hand-made compiled endpoints (no database) and on the
seeded catalogue; the served document is checked with openapi-spec-validator
against the OpenAPI 3.1 schema, against the catalogue report, and across a
reload (a new row appears, a refused one does not, the ETag changes).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator

from engine import openapi
from engine.binding import Binder
from engine.catalog import Catalog
from engine.compiler import CacheConfig, CompiledEndpoint
from engine.errors import ErrorCatalog, ErrorCode
from engine.records import compile_plan
from engine.shaping import NON_FINITE, Envelope, Shaper, encode
from engine.spec import parse_row
from engine.validation import compile_schema
from tests.engine_server import EngineClient
from tests.helpers import add_endpoint, assert_problem, catalog_report, poll, serve
from tests.pg import DB


def endpoint(
    mid: int = 1,
    path: str = "/t/items",
    method: str = "GET",
    *,
    params: list[dict[str, Any]] | None = None,
    result: dict[str, Any] | None = None,
    columns: tuple[tuple[str, str], ...] = (("id", "int4"),),
    oids: tuple[int, ...] = (),
    body_schema: dict[str, Any] | None = None,
    query_schema: dict[str, Any] | None = None,
    success: Envelope | None = None,
    cached: bool = False,
    sql: str = "SELECT 1 AS id",
    **row: Any,
) -> CompiledEndpoint:
    """A compiled endpoint made by hand, as the compiler would make it from the row."""
    spec = parse_row(
        {
            "id": mid,
            "endpoint_path": path,
            "http_method": method,
            "service_name": "things",
            "database_operation": "SELECT" if method == "GET" else "INSERT",
            "query_template": sql,
            "query_parameters": params or [],
            "result_mapping": result or {"shape": "list"},
            "requires_auth": False,
            **row,
        }
    )
    return CompiledEndpoint(
        spec=spec,
        binder=Binder(spec.params),
        shaper=Shaper(spec.result, spec.method),
        sql=spec.sql,
        page_sql="SELECT ..." if spec.result.paginate else None,
        body_schema=compile_schema("item_body", body_schema) if body_schema else None,
        query_schema=compile_schema("q", query_schema, applies_to="query")
        if query_schema
        else None,
        sanitizer=None,
        success=success,
        paginated=None,
        error=None,
        timeout_s=5.0,
        cache=CacheConfig(enabled=cached, ttl_seconds=60),
        columns=columns,
        signature=(oids, ()),
        client_values=any(p.source in ("path", "query", "body", "header") for p in spec.params),
    )


def document(*endpoints: CompiledEndpoint, errors: ErrorCatalog | None = None) -> dict[str, Any]:
    catalog = Catalog(endpoints=endpoints, errors=errors or ErrorCatalog(), problems=())
    body, _ = openapi.render(catalog, max_body_bytes=1000)
    doc = orjson.loads(body)
    validate(doc, cls=OpenAPIV31SpecValidator)
    return doc


def deref(doc: dict[str, Any], ref: Any) -> Any:
    """Follow ``{"$ref": "#/..."}`` chains inside ``doc``."""
    while isinstance(ref, dict) and set(ref) == {"$ref"}:
        node: Any = doc
        for part in ref["$ref"].removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        ref = node
    return ref


def params_of(doc: dict[str, Any], op: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    found = [deref(doc, p) for p in op.get("parameters", [])]
    return {(p["in"], p["name"]): p for p in found}


def codes_of(doc: dict[str, Any], op: dict[str, Any], status: str) -> set[str]:
    response = deref(doc, op["responses"][status])
    return set(response["content"]["application/problem+json"]["examples"])


def json_schema(
    doc: dict[str, Any], response: dict[str, Any], media: str = "application/json"
) -> dict[str, Any]:
    return deref(doc, deref(doc, response)["content"][media]["schema"])


# ---------------------------------------------------------------------------
# Types
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pg_type", "value", "ok"),
    [
        ("int4", 7, True),
        ("int4", "7", False),
        ("int8", 2**62, True),
        ("numeric", Decimal("12.345"), True),
        ("numeric", Decimal("1E+30"), True),
        ("numeric", Decimal("NaN"), True),
        ("float8", NON_FINITE["Infinity"], True),  # as the float codec decodes infinity
        ("money", Decimal("12.34"), True),
        ("bool", True, True),
        ("text", "hi", True),
        ("varchar", 3, False),
        ("uuid", uuid.UUID(int=5), True),
        ("date", dt.date(2024, 2, 29), True),
        ("timestamptz", dt.datetime(2024, 1, 2, 1, 4, 5, tzinfo=dt.UTC), True),
        ("timestamp", dt.datetime(2024, 1, 2, 3, 4, 5, 500000), True),
        ("jsonb", {"a": [1, None]}, True),
        ("text[]", ["a", None], True),
        ("_int4", [1, 2], True),
        ("_int4", ["x"], False),
        ("bytea", b"\x01\xff", True),
        ("int4", None, True),  # PostgreSQL does not say which columns are NOT NULL
    ],
)
def test_column_schemas_accept_what_the_engine_encodes(pg_type: str, value: Any, ok: bool) -> None:
    wire = orjson.loads(encode(value))
    schema = openapi.nullable(openapi.column_schema(pg_type))
    checker = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert checker.is_valid(wire) is ok, (pg_type, wire, schema)


def test_column_schemas_name_the_json_types() -> None:
    assert openapi.column_schema("int8") == {"type": "integer", "format": "int64"}
    assert openapi.column_schema("timestamptz") == {"type": "string", "format": "date-time"}
    assert "format" not in openapi.column_schema("timestamp")  # no offset: not RFC 3339
    assert openapi.column_schema("jsonb") == {}
    assert openapi.column_schema("my_composite") == {}  # unknown: not constrained
    ranged = openapi.column_schema("int4range")
    assert ranged["properties"]["bounds"]["enum"][-1] == "empty"
    assert openapi.column_schema("int4multirange")["items"] == ranged


# ---------------------------------------------------------------------------
# The builder on hand-made endpoints
# ---------------------------------------------------------------------------


def test_parameters_are_typed_and_values_from_the_caller_never_appear() -> None:
    ep = endpoint(
        path="/t/items/{item_id}",
        params=[
            {"name": "item_id", "in": "path", "type": "integer"},
            {"name": "tenant_id", "in": "auth", "type": "integer"},
            {"name": "kind", "in": "const", "value": "x"},
            {"name": "since", "in": "query", "type": "date", "required": True, "description": "d"},
            {"name": "tags", "in": "query", "type": "array", "items": "string"},
            {"name": "filter", "in": "query", "type": "json"},
            {"name": "X-Trace", "in": "header", "type": "uuid"},
            {"name": "top", "in": "query", "type": "integer", "default": 10},
        ],
        oids=(23, 23, 25, 1082, 1009, 3802, 2950, 23),
        result={"shape": "object", "not_found": "RESOURCE_NOT_FOUND"},
    )
    doc = document(ep)
    op = doc["paths"]["/t/items/{item_id}"]["get"]
    params = params_of(doc, op)
    assert params["path", "item_id"]["schema"] == {
        "type": "integer",
        "minimum": -(2**31),
        "maximum": 2**31 - 1,
        "format": "int32",
    }
    assert params["query", "since"]["required"] is True
    assert params["query", "since"]["schema"] == {"type": "string", "format": "date"}
    assert params["query", "since"]["description"] == "d"
    assert params["query", "tags"]["schema"] == {"type": "array", "items": {"type": "string"}}
    assert params["query", "filter"]["content"] == {"application/json": {"schema": {}}}
    assert params["header", "X-Trace"]["schema"] == {"type": "string", "format": "uuid"}
    assert params["query", "top"]["schema"]["default"] == 10
    names = {name for _, name in params}
    assert not names & {"tenant_id", "kind"}
    assert {"X-Request-ID", "Accept-Language"} <= names
    # an in: auth value needs a caller: the route needs auth even though requires_auth is false
    assert op["security"] == [{"ApiKeyAuth": []}, {"BearerAuth": []}]
    assert codes_of(doc, op, "401") == {"AUTHENTICATION_REQUIRED", "INVALID_TOKEN"}
    assert codes_of(doc, op, "403") == {"INSUFFICIENT_PERMISSIONS"}
    assert "RESOURCE_NOT_FOUND" in codes_of(doc, op, "404")


def test_a_public_route_takes_credentials_optionally_and_has_no_403() -> None:
    doc = document(endpoint())
    op = doc["paths"]["/t/items"]["get"]
    assert op["security"] == [{}, {"ApiKeyAuth": []}, {"BearerAuth": []}]
    assert codes_of(doc, op, "401") == {"INVALID_TOKEN"}  # a credential sent is still checked
    assert "403" not in op["responses"] and "429" not in op["responses"]
    assert "404" not in op["responses"]  # a list answers [] when nothing matches
    assert deref(doc, op["responses"]["default"])["content"]["application/problem+json"]


def test_shapes_answers_and_renamed_columns() -> None:
    columns = (("id", "int8"), ("label", "text"), ("price", "numeric"))
    listed = endpoint(
        1, "/t/a", columns=columns, result={"shape": "list", "fields": {"label": "name"}}
    )
    one = endpoint(
        2,
        "/t/a/{id}",
        params=[{"name": "id", "in": "path", "type": "integer"}],
        oids=(20,),
        columns=columns,
        result={"shape": "object", "not_found": "GONE"},
    )
    value = endpoint(3, "/t/v", columns=(("n", "int4"),), result={"shape": "scalar"})
    empty = endpoint(4, "/t/n", "POST", result={"shape": "none"}, sql="DELETE FROM x")
    created = endpoint(5, "/t/a", "POST", columns=columns, result={"shape": "object"})
    export = endpoint(6, "/t/export", columns=columns, result={"shape": "stream", "format": "csv"})
    errors = ErrorCatalog({"GONE": ErrorCode("GONE", 404, "No such thing", "business")})
    doc = document(listed, one, value, empty, created, export, errors=errors)

    rows = json_schema(doc, doc["paths"]["/t/a"]["get"]["responses"]["200"])
    assert rows["type"] == "array"
    assert list(rows["items"]["properties"]) == ["id", "name", "price"]
    assert rows["items"]["properties"]["id"]["type"] == ["integer", "null"]
    assert rows["items"]["properties"]["price"]["description"] == "numeric"
    single = json_schema(doc, doc["paths"]["/t/a/{id}"]["get"]["responses"]["200"])
    assert single["type"] == "object" and single["required"] == ["id", "label", "price"]
    gone = doc["paths"]["/t/a/{id}"]["get"]
    assert codes_of(doc, gone, "404") == {"GONE"}
    assert doc["components"]["examples"]["GONE"]["value"]["detail"] == "No such thing"
    assert json_schema(doc, doc["paths"]["/t/v"]["get"]["responses"]["200"])["type"] == [
        "integer",
        "null",
    ]
    none = doc["paths"]["/t/n"]["post"]["responses"]
    assert "204" in none and "content" not in none["204"]
    assert "201" in doc["paths"]["/t/a"]["post"]["responses"]  # a POST creates by default
    csv = doc["paths"]["/t/export"]["get"]["responses"]["200"]
    assert list(csv["content"]) == ["text/csv"]
    assert "id, label, price" in csv["description"]
    assert "Content-Disposition" in csv["headers"]
    assert "TOO_MANY_EXPORTS" in codes_of(doc, doc["paths"]["/t/export"]["get"], "503")


def test_writes_list_their_conflicts_and_the_idempotency_key() -> None:
    ep = endpoint(
        method="POST",
        result={"shape": "object"},
        rate_limit_per_minute=10,
        params=[
            {"name": "label", "in": "body", "type": "string", "required": True},
            {"name": "note", "in": "body", "type": "string"},
        ],
    )
    doc = document(ep)
    op = doc["paths"]["/t/items"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert body == {
        "type": "object",
        "properties": {"label": {"type": "string"}, "note": {"type": ["string", "null"]}},
        "required": ["label"],
    }
    assert op["requestBody"]["required"] is True
    assert "Idempotency-Key" in {name for _, name in params_of(doc, op)}
    assert codes_of(doc, op, "409") == {"DUPLICATE_RESOURCE", "IDEMPOTENCY_KEY_IN_USE"}
    assert {"CONSTRAINT_VIOLATION", "IDEMPOTENCY_KEY_REUSED"} <= codes_of(doc, op, "422")
    assert codes_of(doc, op, "413") == {"PAYLOAD_TOO_LARGE"}
    assert "1000 bytes" in deref(doc, op["responses"]["413"])["description"]
    assert codes_of(doc, op, "415") == {"UNSUPPORTED_MEDIA_TYPE"}
    assert codes_of(doc, op, "429") == {"RATE_LIMIT_EXCEEDED"}
    assert "COMMIT_OUTCOME_UNKNOWN" in codes_of(doc, op, "503")
    limited = deref(doc, op["responses"]["429"])["headers"]
    assert {"Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(
        limited
    )
    assert "Idempotent-Replayed" in op["responses"]["201"]["headers"]


def test_a_stored_body_schema_is_published_with_its_own_references() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["where"],
        "properties": {"where": {"$ref": "#/$defs/point"}, "tags": {"type": "array"}},
        "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number"}}}},
    }
    ep = endpoint(method="POST", body_schema=schema, result={"shape": "none"})
    doc = document(ep)
    op = doc["paths"]["/t/items"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/item_body"
    }
    stored = doc["components"]["schemas"]["item_body"]
    where = stored["properties"]["where"]["$ref"]
    assert where == "#/components/schemas/item_body/$defs/point"
    assert deref(doc, {"$ref": where})["properties"]["x"] == {"type": "number"}
    # as enforced: allow_unknown_fields is off, so unknown fields are refused
    assert stored["additionalProperties"] is False
    assert "VALIDATION_ERROR" in codes_of(doc, op, "400")


def test_two_rows_whose_schemas_share_a_name_keep_their_own() -> None:
    first = endpoint(1, "/t/a", "POST", body_schema={"type": "object"}, result={"shape": "none"})
    second = endpoint(
        2,
        "/t/b",
        "POST",
        body_schema={"type": "object", "required": ["x"], "$id": "urn:b", "$defs": {}},
        result={"shape": "none"},
    )
    doc = document(first, second)
    refs = [
        doc["paths"][p]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        for p in ("/t/a", "/t/b")
    ]
    assert refs == ["#/components/schemas/item_body", "#/components/schemas/item_body_2"]
    assert doc["components"]["schemas"]["item_body_2"]["$id"] == "urn:b"  # its own resource
    assert doc["paths"]["/t/b"]["post"]["requestBody"]["required"] is True


def test_pagination_parameters_headers_and_page_body() -> None:
    offset = endpoint(
        1,
        "/t/pages",
        result={
            "shape": "list",
            "paginate": {"limit": 20, "max_limit": 200, "max_offset": 500, "count": "on_request"},
        },
    )
    keyset = endpoint(
        2,
        "/t/keyset",
        result={"shape": "list", "paginate": {"limit": 5, "keyset": ["id"], "count": "exact"}},
    )
    wrapped = endpoint(
        3,
        "/t/wrapped",
        result={"shape": "list", "paginate": {"limit": 5}},
        success=Envelope("success"),
    )
    doc = document(offset, keyset, wrapped)

    op = doc["paths"]["/t/pages"]["get"]
    params = params_of(doc, op)
    assert params["query", "limit"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 200,
        "default": 20,
    }
    assert params["query", "offset"]["schema"]["maximum"] == 500
    assert params["header", "Prefer"]["schema"] == {"enum": ["count=exact"]}
    answer = op["responses"]["200"]
    assert {"Link", "Vary", "Preference-Applied"} <= set(answer["headers"])
    page = json_schema(doc, answer)
    assert page["required"] == ["data", "pagination"]
    pagination = deref(doc, page["properties"]["pagination"])
    assert {"next", "prev", "offset", "next_offset", "total"} <= set(pagination["properties"])
    assert "total" not in pagination["required"]  # only when the client asks

    op = doc["paths"]["/t/keyset"]["get"]
    params = params_of(doc, op)
    assert ("query", "after") in params and ("query", "offset") not in params
    assert ("header", "Prefer") not in params
    assert "INVALID_CURSOR" in codes_of(doc, op, "400")
    page = json_schema(doc, op["responses"]["200"])
    exact = page["properties"]["pagination"]["allOf"]
    assert exact[1] == {"required": ["total"]}
    assert "next_cursor" in deref(doc, exact[0])["properties"]

    envelope = json_schema(doc, doc["paths"]["/t/wrapped"]["get"]["responses"]["200"])
    assert envelope["required"] == ["data", "meta", "pagination", "timestamp"]
    assert envelope["properties"]["meta"]["required"] == ["request_id", "endpoint", "count"]


def test_an_older_pagination_is_described_without_links() -> None:
    ep = endpoint(result={"shape": "list", "paginate": {"limit": 5}})
    result = dataclasses.replace(ep.spec.result, paginate=_OldPagination(5, 50))
    doc = document(dataclasses.replace(ep, spec=dataclasses.replace(ep.spec, result=result)))
    op = doc["paths"]["/t/items"]["get"]
    assert params_of(doc, op)["query", "offset"]["schema"]["maximum"] == 2**62
    assert "Link" not in op["responses"]["200"]["headers"]
    assert "next" not in doc["components"]["schemas"]["Pagination"]["properties"]


class _OldPagination:
    """``result_mapping.paginate`` before max_offset, count and keyset."""

    def __init__(self, limit: int, max_limit: int) -> None:
        self.limit = limit
        self.max_limit = max_limit


def test_a_query_schema_narrows_the_parameters() -> None:
    ep = endpoint(
        params=[
            {"name": "granularity", "in": "query", "default": "hour"},
            {"name": "n", "in": "query", "type": "integer"},
        ],
        oids=(25, 23),
        query_schema={
            "type": "object",
            "required": ["n"],
            "properties": {
                "granularity": {"enum": ["hour", "day"]},
                "n": {"type": "integer", "minimum": 1, "maximum": 5},
            },
        },
    )
    doc = document(ep)
    params = params_of(doc, doc["paths"]["/t/items"]["get"])
    assert params["query", "granularity"]["schema"] == {
        "type": "string",
        "default": "hour",
        "enum": ["hour", "day"],
    }
    assert params["query", "n"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 5,
        "format": "int32",
    }
    assert params["query", "n"]["required"] is True


def test_operation_ids_are_unique_stable_and_paths_merge_their_parameter_names() -> None:
    get = endpoint(1, "/t/things/{id}", params=[{"name": "id", "in": "path", "type": "integer"}])
    put = endpoint(
        2,
        "/t/things/{thing}",
        "PUT",
        params=[{"name": "thing", "in": "path", "type": "integer"}],
        result={"shape": "none"},
    )
    literal = endpoint(3, "/t/things/id")  # sanitises to the same words as /t/things/{id}
    doc = document(get, put, literal)
    assert set(doc["paths"]) == {"/t/things/{id}", "/t/things/id"}
    item = doc["paths"]["/t/things/{id}"]
    assert set(item) == {"get", "put"}
    assert params_of(doc, item["put"])["path", "id"]["description"] == "(bound as `thing`)"
    ids = [item["get"]["operationId"], item["put"]["operationId"]]
    ids.append(doc["paths"]["/t/things/id"]["get"]["operationId"])
    assert ids == ["get_t_things_id", "put_t_things_thing", "get_t_things_id_3"]
    again = document(literal, put, get)  # another order, the same document
    assert again == doc


def test_the_error_code_table_lists_the_catalogue() -> None:
    errors = ErrorCatalog({"MY_CODE": ErrorCode("MY_CODE", 409, "Mine | yours", "business")})
    doc = document(endpoint(sql="SELECT raise_it('MY_CODE') AS id"), errors=errors)
    table = doc["components"]["responses"]["OtherError"]["description"]
    assert "| `MY_CODE` | 409 | Mine \\| yours |" in table
    assert "| `RATE_LIMIT_EXCEEDED` | 429 |" in table
    assert doc["paths"]["/t/items"]["get"]["responses"]["default"] == {
        "$ref": "#/components/responses/OtherError"
    }
    # a code the template names itself is listed with the route's answers
    assert codes_of(doc, doc["paths"]["/t/items"]["get"], "409") == {"MY_CODE"}


# ---------------------------------------------------------------------------
# The served document
# ---------------------------------------------------------------------------


def operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if "engine" not in op.get("tags", ()) and not op.get("x-engine-builtin")
    }


def fetch(client: EngineClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def test_the_served_document_lists_every_seeded_route_and_validates(client: EngineClient) -> None:
    doc = fetch(client)
    validate(doc, cls=OpenAPIV31SpecValidator)
    assert doc["openapi"] == "3.1.0" and doc["servers"] == [{"url": "."}]
    report = catalog_report(client)
    served = {(e["method"], e["path"]) for e in report["endpoints"]}
    assert len(served) >= 40
    assert set(operations(doc)) == served
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    assert "/_engine/health" in doc["paths"]
    assert "/_engine/catalog" not in doc["paths"]
    admin = [
        op for p, item in doc["paths"].items() if p.startswith("/admin/") for op in item.values()
    ]
    assert admin and all(op["tags"] == ["admin"] for op in admin)
    assert all(op["security"] == [{"ApiKeyAuth": []}, {"BearerAuth": []}] for op in admin)
    tags = {t["name"] for t in doc["tags"]}
    assert {"camera_service", "wfm_statistics", "engine"} <= tags
    assert {"ApiKeyAuth", "BearerAuth"} == set(doc["components"]["securitySchemes"])
    assert doc["components"]["securitySchemes"]["ApiKeyAuth"]["name"] == "X-API-Key"


@pytest.fixture()
def client(make_client: Any) -> EngineClient:
    """An engine on the seeded database, with the admin catalogue report on."""
    return serve(make_client)


def test_a_seeded_camera_route_is_typed_as_served(client: EngineClient) -> None:
    doc = fetch(client)
    one = doc["paths"]["/api/v1/cameras/{id}"]["get"]
    assert one["tags"] == ["camera_service"] and one["operationId"] == "get_api_v1_cameras_id"
    params = params_of(doc, one)
    assert params["path", "id"]["schema"]["type"] == "integer"
    assert ("query", "tenant_id") not in params  # bound from the caller's claim
    assert one["security"] == [{"ApiKeyAuth": []}, {"BearerAuth": []}]
    camera = json_schema(doc, one["responses"]["200"])
    assert camera["properties"]["camera_id"]["type"] == ["integer", "null"]
    assert camera["properties"]["created_at"]["format"] == "date-time"
    assert codes_of(doc, one, "404") == {"CAMERA_NOT_FOUND"}
    example = doc["components"]["examples"]["CAMERA_NOT_FOUND"]["value"]
    assert example["status"] == 404 and example["detail"] == "Camera with specified ID not found"
    assert "304" in one["responses"] and "ETag" in one["responses"]["200"]["headers"]
    assert "RATE_LIMIT_EXCEEDED" in codes_of(doc, one, "429")

    # what the document says is what the route answers
    body = client.get("/api/v1/cameras/1", headers=client.auth(tenant=1)).json()
    checker = Draft202012Validator(camera, format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert not list(checker.iter_errors(body))
    problem = client.get("/api/v1/cameras/999", headers=client.auth(tenant=1))
    assert_problem(problem, 404, "CAMERA_NOT_FOUND")

    listing = doc["paths"]["/api/v1/cameras"]["get"]
    params = params_of(doc, listing)
    assert params["query", "limit"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 500,
        "default": 50,
    }
    assert params["query", "camera_type"]["schema"]["type"] == "string"
    page = client.get("/api/v1/cameras?limit=2", headers=client.auth(tenant=1)).json()
    page_schema = json_schema(doc, listing["responses"]["200"])
    resolver_doc = {**page_schema, "components": doc["components"]}
    assert Draft202012Validator(resolver_doc).is_valid(page)

    create = doc["paths"]["/api/v1/cameras"]["post"]
    assert "201" in create["responses"]
    assert create["x-required-roles"] == ["camera_admin"]
    schema = deref(doc, create["requestBody"]["content"]["application/json"]["schema"])
    assert schema["required"] == ["camera_name", "camera_type", "stream_url"]
    assert schema["properties"]["camera_type"]["enum"] == ["IP", "USB", "RTSP", "HTTP", "WebRTC"]
    assert "VALIDATION_ERROR" in codes_of(doc, create, "400")


def test_a_seeded_wfm_route_is_typed_as_served(client: EngineClient) -> None:
    doc = fetch(client)
    stats = doc["paths"]["/api/v1/db/database/contact-statistics"]["get"]
    assert stats["tags"] == ["wfm_statistics"]
    params = params_of(doc, stats)
    assert params["query", "from"]["required"] is True
    assert params["query", "from"]["schema"] == {"type": "string", "format": "date-time"}
    granularity = params["query", "granularity"]["schema"]
    assert granularity["default"] == "hour" and "week" in granularity["enum"]
    assert params["query", "service_id"]["schema"]["minimum"] == 1  # from the query schema
    assert params["query", "limit"]["schema"]["maximum"] == 5000
    rows = json_schema(doc, stats["responses"]["200"])["properties"]["data"]["items"]
    assert rows["properties"]["offered"]["format"] == "int64"
    assert "NaN" in str(rows["properties"]["service_level_pct"])

    export = doc["paths"]["/api/v1/db/database/bulk/export"]["post"]
    assert list(export["responses"]["200"]["content"]) == ["application/x-ndjson"]
    assert export["x-required-roles"] == ["wfm_admin", "planner"]
    assert "TOO_MANY_EXPORTS" in codes_of(doc, export, "503")
    assert "Idempotency-Key" not in {n for _, n in params_of(doc, export)}  # a stream: a read
    body = deref(doc, export["requestBody"]["content"]["application/json"]["schema"])
    assert "table" in body["properties"]

    bulk = doc["paths"]["/api/v1/db/database/bulk/import/contact_statistics"]["post"]
    assert list(bulk["requestBody"]["content"]) == ["application/x-ndjson", "text/csv"]
    record = deref(doc, bulk["requestBody"]["content"]["application/x-ndjson"]["schema"])
    assert record["required"] == ["service_id", "interval_start"]
    assert "tenant_id" not in record["properties"]  # the caller's claim, never a field
    assert set(json_schema(doc, bulk["responses"]["200"])["properties"]) == {
        "received",
        "inserted",
        "rejected",
        "errors",
    }
    assert "BULK_INVALID_RECORDS" in codes_of(doc, bulk, "422")
    assert "PAYLOAD_TOO_LARGE" in codes_of(doc, bulk, "413")
    assert bulk["x-required-roles"] == ["wfm_admin"]


def test_head_and_etag_and_a_reload_adds_a_route_but_never_a_refused_row(
    db: DB, client: EngineClient
) -> None:
    first = client.get("/openapi.json")
    etag = first.headers["etag"]
    head = client.head("/openapi.json")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(first.content))
    assert head.headers["etag"] == etag
    assert client.get("/openapi.json", headers={"If-None-Match": etag}).status_code == 304
    refused = client.post("/openapi.json", headers={"X-Request-ID": "mine-1"})
    assert assert_problem(refused, 405, "METHOD_NOT_ALLOWED")["request_id"] == "mine-1"
    assert refused.headers["allow"] == "GET, HEAD"
    again = client.get("/openapi.json")
    assert again.content == first.content  # encoded once per catalogue generation

    add_endpoint(
        db,
        "/extra/notes/{note_id}",
        params=[{"name": "note_id", "in": "path", "type": "integer", "description": "the note"}],
        sql="SELECT $1::int AS note_id, 'hi'::text AS body",
        result={"shape": "object"},
        service_name="notes",
    )
    broken = add_endpoint(db, "/extra/broken", sql="SELEC nonsense")
    doc = poll(
        lambda: client.get("/openapi.json").json(),
        lambda d: "/extra/notes/{note_id}" in d["paths"],
        "the new row in /openapi.json",
    )
    assert_problem(client.get("/extra/broken"), 503, "ENDPOINT_UNAVAILABLE")
    assert "/extra/broken" not in doc["paths"]
    assert broken not in {op.get("x-mapping-id") for op in operations(doc).values()}
    note = doc["paths"]["/extra/notes/{note_id}"]["get"]
    assert note["tags"] == ["notes"] and note["operationId"] == "get_extra_notes_note_id"
    assert params_of(doc, note)["path", "note_id"]["description"] == "the note"
    assert json_schema(doc, note["responses"]["200"])["properties"]["body"]["type"] == [
        "string",
        "null",
    ]
    validate(doc, cls=OpenAPIV31SpecValidator)
    changed = client.get("/openapi.json")
    assert changed.headers["etag"] != etag
    assert changed.json()["info"]["version"] != first.json()["info"]["version"]
    assert client.get("/openapi.json", headers={"If-None-Match": etag}).status_code == 200


def bulk_endpoint(**bulk: Any) -> CompiledEndpoint:
    """A bulk row (bulk_import) as the compiler makes it: its record schema, its plan."""
    columns = {"service_id": "integer", "interval_start": "timestamp", "offered": "integer"}
    ep = endpoint(
        7,
        "/t/stats/import",
        "POST",
        params=[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer"}],
        result={"shape": "none", "status": 201},
        body_schema={
            "type": "object",
            "required": ["service_id", "interval_start"],
            "properties": {
                "service_id": {"type": "integer", "minimum": 1},
                "interval_start": {"type": "string"},
                "offered": {"type": "integer", "minimum": 0},
            },
        },
        sql="INSERT INTO s SELECT $1, * FROM bulk_records",
        bulk_import={"columns": columns, **bulk},
        rate_limit_per_minute=20,
        required_roles=["loader"],
    )
    assert ep.spec.bulk is not None and ep.body_schema is not None
    return dataclasses.replace(
        ep, bulk=compile_plan(ep.spec.bulk, ep.spec.sql, ep.body_schema), columns=()
    )


def test_a_bulk_row_takes_ndjson_or_csv_records_and_answers_counts() -> None:
    doc = document(bulk_endpoint(max_body_bytes=5000))
    op = doc["paths"]["/t/stats/import"]["post"]
    body = op["requestBody"]
    assert body["required"] is True
    assert list(body["content"]) == ["application/x-ndjson", "text/csv"]
    record = deref(doc, body["content"]["application/x-ndjson"]["schema"])
    assert record["required"] == ["service_id", "interval_start"]
    assert record["properties"]["offered"]["minimum"] == 0
    assert (
        "service_id, interval_start, offered"
        in (body["content"]["text/csv"]["schema"]["description"])
    )
    assert set(op["responses"]) >= {"201", "413", "415", "422", "400", "default"}
    answer = json_schema(doc, op["responses"]["201"])
    assert answer["required"] == ["received", "inserted", "rejected", "errors"]
    assert answer["properties"]["errors"]["items"]["required"] == ["line", "pointer", "message"]
    assert "Idempotent-Replayed" in op["responses"]["201"]["headers"]
    assert codes_of(doc, op, "422") >= {"BULK_INVALID_RECORDS", "IDEMPOTENCY_KEY_REUSED"}
    assert "PAYLOAD_TOO_LARGE" in codes_of(doc, op, "413")
    assert "(at most 5000 bytes)" in deref(doc, op["responses"]["413"])["description"]
    assert codes_of(doc, op, "415") == {"UNSUPPORTED_MEDIA_TYPE"}
    assert "Accept-Post" in deref(doc, op["responses"]["415"])["headers"]
    assert "INVALID_BODY" in codes_of(doc, op, "400")  # a CSV header naming no column
    every = set().union(*(codes_of(doc, op, s) for s in op["responses"] if s[0] in "45"))
    assert not every & {"INVALID_JSON", "VALIDATION_ERROR"}  # a record's problem is listed
    assert "BULK_INVALID_RECORDS" in op["description"] and "at most 5000 bytes" in op["description"]

    ndjson_only = document(bulk_endpoint(formats=["ndjson"], on_invalid="skip"))
    op = ndjson_only["paths"]["/t/stats/import"]["post"]
    assert list(op["requestBody"]["content"]) == ["application/x-ndjson"]
    every = set().union(*(codes_of(ndjson_only, op, s) for s in op["responses"] if s[0] in "45"))
    assert "BULK_INVALID_RECORDS" not in every and "INVALID_BODY" not in every
