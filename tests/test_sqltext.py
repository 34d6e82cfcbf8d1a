"""Reading a template's text: statement kind, own LIMIT, called functions (no database)."""

from __future__ import annotations

import pytest

from engine import sqltext


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("SELECT * FROM t", "SELECT"),
        ("  (SELECT 1) UNION (SELECT 2)", "SELECT"),
        ("VALUES (1), (2)", "SELECT"),
        ("WITH a AS (SELECT 1) SELECT * FROM a", "SELECT"),
        ("WITH x AS (DELETE FROM t RETURNING id) SELECT id FROM x", "DELETE"),
        ("WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x", "INSERT"),
        ("INSERT INTO t (a) VALUES ($1) RETURNING *", "INSERT"),
        ("UPDATE t SET a = 1", "UPDATE"),
        ("DELETE FROM t WHERE id = $1", "DELETE"),
        ("CALL do_it($1)", "CALL"),
        ("SELECT * FROM t FOR UPDATE", "LOCK"),
        ("SELECT * FROM t FOR NO KEY UPDATE", "LOCK"),
        ("SELECT * FROM t FOR SHARE", "LOCK"),
        ("SELECT 'insert into t' AS s -- delete from t\n", "SELECT"),
        ("SELECT $$ UPDATE t $$ AS s, $q$ DELETE $q$ AS r", "SELECT"),
        ('SELECT "delete" FROM t /* update t set a = 1 */', "SELECT"),
        ("SELECT t.update, deleted_at FROM t WHERE is_deleted", "SELECT"),
        ("SELECT E'it\\'s DELETE' AS s", "SELECT"),
        ("-- a comment first\nSELECT 1", "SELECT"),
        # unreserved keywords used as names are not writes
        ("SELECT update FROM t", "SELECT"),
        ("SELECT 'x'::text AS delete", "SELECT"),
        ("WITH update AS (SELECT 1) SELECT * FROM update", "SELECT"),
        ("SELECT * FROM t ORDER BY merge", "SELECT"),
        ("SELECT * FROM t JOIN u update ON true", "SELECT"),
        ('SELECT "DELETE" FROM t', "SELECT"),
        # writes in every position a WITH allows
        ("WITH a AS (SELECT 1) DELETE FROM t", "DELETE"),
        ("WITH a AS MATERIALIZED (UPDATE t SET x = 1 RETURNING x) SELECT * FROM a", "UPDATE"),
        ("WITH a(n) AS (INSERT INTO t VALUES (1) RETURNING n) SELECT n FROM a", "INSERT"),
        ("SELECT * INTO new_table FROM t", "SELECT INTO"),
    ],
)
def test_statement_kind(sql: str, kind: str) -> None:
    assert sqltext.statement_kind(sql) == kind


@pytest.mark.parametrize(
    ("sql", "own"),
    [
        ("SELECT * FROM t ORDER BY id LIMIT 10", True),
        ("SELECT * FROM t OFFSET 5", True),
        ("SELECT * FROM t FETCH FIRST 3 ROWS ONLY", True),
        ("SELECT * FROM (SELECT * FROM t LIMIT 5) s", False),
        ("SELECT *, (SELECT max(x) FROM u LIMIT 1) FROM t", False),
        ("SELECT 'LIMIT 5' AS s FROM t", False),
        ("SELECT * FROM t -- LIMIT 5", False),
        ("SELECT * FROM t WHERE a LIKE'x\\' AND b = 'y' LIMIT 5", True),  # not an E'' string
        ('SELECT "limit" FROM t', False),
    ],
)
def test_own_limit_is_only_the_outer_statements(sql: str, own: bool) -> None:
    assert sqltext.has_own_limit(sql) is own


def test_called_functions_are_found_outside_literals_and_keywords() -> None:
    sql = (
        "SELECT public.score($1), count(*), upper (name), x IN (1, 2), "
        '\'fake(\' AS s, "Q".calc(2), "Mixed"(3), EXISTS (SELECT 1) FROM t WHERE a = ANY($2)'
    )
    assert sqltext.called_functions(sql) == {
        ("public", "score"),
        (None, "count"),
        (None, "upper"),
        ("Q", "calc"),
        (None, "Mixed"),
    }
