"""Checks and warnings of one row, given the facts the compiler looks up (no database)."""

from __future__ import annotations

from typing import Any

import pytest

from engine import checks
from engine.errors import SpecError
from engine.spec import EndpointSpec, parse_row


def spec(sql: str = "SELECT 1 AS one", method: str = "GET", **row: Any) -> EndpointSpec:
    base: dict[str, Any] = {
        "id": 1,
        "endpoint_path": "/t",
        "http_method": method,
        "database_operation": "SELECT" if method == "GET" else "INSERT",
        "query_template": sql,
        "query_parameters": [],
        "result_mapping": {"shape": "list"},
        "requires_auth": True,
    }
    base.update(row)
    return parse_row(base)


def warnings_of(s: EndpointSpec, **facts: Any) -> list[str]:
    args: dict[str, Any] = {
        "columns": ["one"],
        "missing_tables": (),
        "body_fields": set(),
        "own_rules": (),
        "calls_functions": False,
    }
    args.update(facts)
    return checks.row_warnings(s, **args)


@pytest.mark.parametrize(
    ("row", "volatile", "message"),
    [
        ({"sql": "SELECT bump($1)"}, {"bump"}, "calls VOLATILE function(s) bump()"),
        ({"sql": "SELECT * FROM t FOR UPDATE"}, set(), "cannot lock rows"),
        (
            {"sql": "INSERT INTO t VALUES (1) RETURNING *", "method": "POST",
             "result_mapping": {"shape": "stream"}, "database_operation": "SELECT"},
            set(),
            "a stream template must only read (SELECT, WITH, VALUES), but this one is INSERT",
        ),
        (
            {"sql": "SELECT * FROM t ORDER BY id LIMIT 3",
             "result_mapping": {"shape": "list", "paginate": {"limit": 2}}},
            set(),
            "own LIMIT/OFFSET/FETCH",
        ),
    ],
)  # fmt: skip
def test_templates_that_would_fail_at_run_time_are_refused(
    row: dict[str, Any], volatile: set[str], message: str
) -> None:
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        checks.check_statement(spec(row.pop("sql"), **row), volatile)


def test_a_volatile_function_is_fine_in_a_write() -> None:
    checks.check_statement(spec("SELECT bump($1)", "POST"), {"bump"})


def test_each_probably_wrong_row_gets_a_warning() -> None:
    params = [
        {"name": "q", "in": "query"},
        {"name": "q", "in": "header"},
    ]
    s = spec(
        "SELECT $1::text AS one, $2::text AS two",
        endpoint_path="/t/{id}",
        query_parameters=params,
        result_mapping={"shape": "list", "fields": {"missing": "m"}},
        requires_auth=False,
        required_roles=["admin"],
    )
    found = warnings_of(
        s,
        columns=["one", "two"],
        missing_tables={"nope"},
        own_rules=[{"id": 9, "field_name": "ghost"}],
    )
    text = "\n".join(found)
    assert "the name 'q' is used by $1 and $2" in text
    assert "endpoint_path has {id} but no query_parameters entry" in text
    assert "table 'nope'" in text
    assert "renames 'missing' to 'm', but the template returns no column 'missing'" in text
    assert "id=9: field_name 'ghost'" in text
    assert "requires_auth is false" in text
    assert len(found) == 6


def test_a_delete_whose_template_only_reads_is_a_warning_unless_it_calls_a_function() -> None:
    s = spec("SELECT 1 AS one", "DELETE", database_operation="DELETE")
    assert any("only reads" in w for w in warnings_of(s))
    assert not any("only reads" in w for w in warnings_of(s, calls_functions=True))
    assert warnings_of(spec()) == []


def test_error_code_and_rule_row_warnings() -> None:
    bad = {"error_code": "NOT A CODE", "error_message": " ", "localized_messages": {"vi": 5}}
    text = "\n".join(checks.error_code_warnings(bad))
    assert "not a valid URN segment" in text
    assert "error_message is empty" in text
    assert "localized_messages.vi is a JSON int" in text
    good = {"error_code": "BOOK_NOT_FOUND", "error_message": "No book", "localized_messages": {}}
    assert checks.error_code_warnings(good) == []
    rule = {"sanitization_config": {"to_lowercse": True, "strip": True}}
    assert "unknown key(s) to_lowercse" in checks.rule_warnings(rule)[0]


def test_schema_fields_are_every_property_name() -> None:
    schema = {"properties": {"a": {"properties": {"b": {}}}}, "items": [{"properties": {"c": {}}}]}
    assert checks.schema_fields(schema) == {"a", "b", "c"}


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ({"ModifyTable", "CTE Scan"}, "its plan writes (ModifyTable)"),
        ({"LockRows", "Seq Scan"}, "its plan locks rows (LockRows"),
    ],
)
def test_a_read_whose_plan_writes_or_locks_is_refused(nodes: set[str], message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        checks.check_plan(spec(), nodes)
    stream = spec(method="POST", database_operation="SELECT", result_mapping={"shape": "stream"})
    with pytest.raises(SpecError, match="a stream template"):
        checks.check_plan(stream, nodes)


def test_a_plan_that_only_reads_or_a_write_endpoints_plan_is_fine() -> None:
    checks.check_plan(spec(), {"Seq Scan", "Index Scan", "Result"})
    checks.check_plan(spec("INSERT INTO t VALUES (1)", "POST"), {"ModifyTable"})
