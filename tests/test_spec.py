"""The row contract, checked without a database: what a row may say and what it is refused for."""

from __future__ import annotations

import pytest

from engine.errors import ErrorCatalog, ErrorCode, SpecError, parse_accept_language
from engine.spec import parse_row, path_regex, path_specificity


def row(**overrides):
    base = {
        "id": 1,
        "endpoint_path": "/things/{id}",
        "http_method": "GET",
        "service_name": "s",
        "database_operation": "SELECT",
        "query_template": "SELECT * FROM t WHERE id = $1;",
        "query_parameters": [{"name": "id", "in": "path", "type": "integer"}],
        "result_mapping": {"shape": "object", "not_found": "THING_NOT_FOUND"},
        "cache_enabled": True,
        "cache_ttl_seconds": 60,
        "requires_auth": False,
    }
    base.update(overrides)
    return base


def test_a_good_row_parses_into_a_spec():
    spec = parse_row(row())
    assert spec.sql == "SELECT * FROM t WHERE id = $1"  # trailing semicolon dropped
    assert spec.params[0].position == 1 and spec.params[0].required
    assert spec.result.shape == "object" and spec.result.not_found == "THING_NOT_FOUND"
    assert spec.label == "GET /things/{id}"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"endpoint_path": "things"}, "must start with '/'"),
        ({"endpoint_path": "/_engine/x"}, "reserved"),
        ({"endpoint_path": "/things/{id"}, "malformed"),
        ({"http_method": "TRACE"}, "http_method"),
        ({"database_operation": "MERGE"}, "database_operation"),
        ({"database_operation": "DELETE"}, "GET endpoint must be a read"),
        ({"query_template": "  "}, "empty"),
        ({"query_template": "SELECT ... FROM t"}, "elided"),
        ({"query_parameters": {"name": "id"}}, "JSON array"),
        ({"query_parameters": [{"name": "id", "in": "cookie"}]}, '"in" must be'),
        ({"query_parameters": [{"name": "id", "in": "path", "type": "int"}]}, '"type" must be'),
        ({"query_parameters": [{"name": "", "in": "query"}]}, "non-empty 'name'"),
        ({"query_parameters": [{"name": "x", "in": "path"}]}, "not in endpoint_path"),
        (
            {"query_parameters": [{"name": "id", "in": "path", "required": False}]},
            "always required",
        ),
        ({"query_parameters": [{"name": "c", "in": "const"}]}, "needs a 'value'"),
        ({"query_parameters": [{"name": "c", "in": "query", "claim": "x"}]}, "only for in: auth"),
        ({"query_parameters": [{"name": "c", "in": "query", "colour": 1}]}, "unknown keys"),
        ({"result_mapping": {"shape": "table"}}, "shape must be"),
        ({"result_mapping": {"shape": "list", "status": 404}}, "2xx"),
        ({"result_mapping": {"shape": "object", "paginate": {"limit": 5}}}, "needs shape 'list'"),
        (
            {"result_mapping": {"shape": "list", "paginate": {"limit": 50, "max_limit": 10}}},
            "limit <= max_limit",
        ),
        ({"result_mapping": {"shape": "list", "extra": 1}}, "unknown keys"),
        ({"result_mapping": {"shape": "stream", "format": "xml"}}, "ndjson or csv"),
        ({"statement_timeout_ms": -5}, "positive"),
    ],
)
def test_rows_that_cannot_work_are_refused_with_a_reason(overrides, reason):
    with pytest.raises(SpecError, match=None) as caught:
        parse_row(row(**overrides))
    assert reason in str(caught.value)


def test_pagination_clashing_with_a_query_parameter_is_refused():
    with pytest.raises(SpecError, match="clash with pagination"):
        parse_row(
            row(
                endpoint_path="/things",
                query_parameters=[{"name": "limit", "in": "query", "type": "integer"}],
                result_mapping={"shape": "list", "paginate": {"limit": 5, "max_limit": 10}},
            )
        )


def test_path_matching_and_precedence():
    rx = path_regex("/cams/{id:int}/files/{rest:path}")
    assert rx.match("/cams/12/files/a/b.txt").groupdict() == {"id": "12", "rest": "a/b.txt"}
    assert rx.match("/cams/x/files/a") is None
    assert path_specificity("/a/stats") < path_specificity("/a/{id}")


def test_accept_language_parsing():
    assert parse_accept_language("vi-VN,vi;q=0.9,en;q=0.8") == ("vi-vn", "vi", "en")
    assert parse_accept_language("ru;q=0.5, de;q=0") == ("ru",)
    assert parse_accept_language("garbage;q=x, en") == ("en",)
    assert parse_accept_language(None) == ()


def test_error_catalog_falls_back_to_builtin_codes_and_languages():
    catalog = ErrorCatalog({"X": ErrorCode("X", 418, "teapot", localized={"vi": "ấm trà"})})
    assert catalog.get("X").message_for(("vi-vn",)) == ("ấm trà", "vi")
    assert catalog.get("X").message_for(("fr", "en")) == ("teapot", "en")
    assert catalog.get("ROUTE_NOT_FOUND").status == 404  # builtin even without a row
    assert catalog.get("NOPE").code == "INTERNAL_ERROR"
