"""What `engine check` refuses (the row would fail at run time) and warns about, per row.

Each row is compiled against a real PostgreSQL, as `engine check` does; the
facts (VOLATILE functions, column types, tables) come from the database.
"""

from __future__ import annotations

import pytest

from tests.helpers import (
    add_endpoint,
    add_error_code,
    add_rule,
    compile_catalog,
    run_cli,
    status_of,
)
from tests.pg import DB


@pytest.fixture()
def loans(db: DB) -> DB:
    db.execute(
        """
        CREATE TABLE lib_loans (loan_id serial PRIMARY KEY, book text, due date);
        INSERT INTO lib_loans (book, due) SELECT 'b' || n, current_date + n
        FROM generate_series(1, 7) n;
        CREATE FUNCTION lib_touch(p int) RETURNS int LANGUAGE plpgsql AS
            $$ BEGIN UPDATE lib_loans SET due = due WHERE loan_id = p; RETURN p; END $$;
        CREATE FUNCTION lib_count() RETURNS bigint LANGUAGE sql STABLE AS
            $$ SELECT count(*) FROM lib_loans $$;
        """
    )
    return db


REFUSED = {
    "volatile": (
        dict(sql="SELECT lib_touch($1) AS n", params=[{"name": "p", "in": "query", "type": "integer"}]),
        "calls VOLATILE function(s) lib_touch()",
    ),
    "stream_insert": (
        dict(method="POST", sql="INSERT INTO lib_loans (book) VALUES ('x') RETURNING *",
             result={"shape": "stream"}, database_operation="SELECT"),
        "a stream template must only read",
    ),
    "own_limit": (
        dict(sql="SELECT * FROM lib_loans ORDER BY loan_id LIMIT 5",
             result={"shape": "list", "paginate": {"limit": 2}}),
        "own LIMIT/OFFSET/FETCH",
    ),
    "locking": (
        dict(sql="SELECT * FROM lib_loans FOR UPDATE"),
        "cannot lock rows",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_rows_that_would_fail_at_run_time_are_refused(loans: DB, case: str) -> None:
    row, reason = REFUSED[case]
    mid = add_endpoint(loans, f"/lib/v1/{case}", **row)
    status = status_of(compile_catalog(loans), mid)
    assert status.state == "refused"
    assert reason in status.reason


def test_timetz_and_range_columns_serve(loans: DB) -> None:
    sql = "SELECT now()::timetz AS t, int4range(1, 5) AS r, '{[1,2)}'::int4multirange AS m"
    mid = add_endpoint(loans, "/lib/v1/typed", sql=sql)
    assert status_of(compile_catalog(loans), mid).state == "serving"


def test_stable_functions_and_builtins_may_be_called_by_a_get(loans: DB) -> None:
    mid = add_endpoint(loans, "/lib/v1/count", sql="SELECT lib_count() AS n, random() AS r")
    assert status_of(compile_catalog(loans), mid).state == "serving"


def test_check_prints_errors_and_warnings_and_strict_fails_on_warnings(
    loans: DB, db_url: str
) -> None:
    bad = add_endpoint(loans, "/lib/v1/volatile", sql="SELECT lib_touch(1) AS n")
    warned = add_endpoint(
        loans,
        "/lib/v1/loans/{id}",
        "DELETE",
        "SELECT 1 AS one",
        target_table="no_such_table",
        required_roles=["librarian"],
    )
    result = run_cli("check", url=db_url)
    assert result.returncode == 1, result.stdout
    assert f"REFUSED  GET    /lib/v1/volatile  (id={bad}, v1): " in result.stdout
    assert f"PROBLEM api_endpoint_mappings id={bad}" in result.stdout
    lines = [line for line in result.stdout.splitlines() if f"id={warned} " in line]
    warnings = [line for line in lines if line.startswith("WARNING")]
    text = "\n".join(warnings)
    assert "endpoint_path has {id}" in text
    assert "table 'no_such_table'" in text
    assert "whose template only reads" in text
    assert "requires_auth is false" in text

    loans.execute("UPDATE api_endpoint_mappings SET is_active = false WHERE id = $1", bad)
    relaxed = run_cli("check", url=db_url)
    assert relaxed.returncode == 0, relaxed.stdout  # warnings alone pass ...
    assert "DRAFT" in relaxed.stdout
    assert run_cli("check", "--strict", url=db_url).returncode == 1  # ... unless --strict


def test_side_rows_that_look_wrong_are_warnings(loans: DB) -> None:
    mid = add_endpoint(
        loans,
        "/lib/v1/loans",
        "POST",
        "INSERT INTO lib_loans (book) VALUES ($1) RETURNING loan_id",
        [{"name": "book", "in": "body", "type": "string", "required": True}],
        {"shape": "object", "status": 201},
        target_table="lib_loans",
    )
    rule = add_rule(loans, "book", "transform", {"to_lowercse": True}, mapping_id=mid)
    add_rule(loans, "ghost", "trim", mapping_id=mid)
    add_error_code(loans, "LOAN LATE", 409, "")
    loans.execute(
        "UPDATE api_error_codes SET localized_messages = '{\"vi\": 5}' WHERE error_code = 'LOAN LATE'"
    )
    catalog = compile_catalog(loans)
    assert status_of(catalog, mid).state == "serving"
    texts = [str(w) for w in catalog.warnings]
    assert any(f"id={rule}" in t and "to_lowercse" in t for t in texts)
    assert any("field_name 'ghost'" in t for t in texts)
    code = [t for t in texts if "LOAN LATE" in t]
    assert len(code) == 3  # the URN segment, the empty message, the non-string translation


@pytest.mark.parametrize(
    ("params", "sql", "message"),
    [
        (
            [{"name": "n", "in": "query"}],
            "SELECT $1::int AS n",
            "is declared string (it has no 'type', and string is the default), but PostgreSQL "
            'infers int4 for $1; declare "type": "integer"',
        ),
        (
            [{"name": "ids", "in": "query", "type": "array", "items": "string"}],
            "SELECT loan_id FROM lib_loans WHERE loan_id = ANY($1)",
            'infers int4[] for $1; declare "type": "array", "items": "integer"',
        ),
        ([{"name": "n", "type": "integer"}], "SELECT $1::int AS n", "'n' needs \"in\": one of"),
    ],
)
def test_type_and_parameter_messages_say_what_to_write(
    loans: DB, params: list[dict[str, str]], sql: str, message: str
) -> None:
    mid = add_endpoint(loans, "/lib/v1/typed", sql=sql, params=params)
    assert message in status_of(compile_catalog(loans), mid).reason


def test_the_seeded_catalogue_has_no_errors_and_no_warnings(db: DB) -> None:
    catalog = compile_catalog(db)
    assert [str(p) for p in catalog.problems] == []
    assert [str(w) for w in catalog.warnings] == []
