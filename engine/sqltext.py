"""What can be read off a template's text without running it (pure: no I/O).

PostgreSQL prepares a template and reports its placeholders and columns, but
not what kind of statement it is at the top level, whether it has its own
``LIMIT``, or which functions it calls. This module scans the text into words
at their parenthesis depth, skipping string literals, dollar-quoted bodies,
quoted identifiers and comments, so ``'LIMIT 5'`` or ``-- delete`` never count.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_SPACE = re.compile(r"\s*")

READ_STARTS = frozenset({"SELECT", "WITH", "VALUES", "TABLE"})
WRITE_WORDS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE"})
# words that are followed by "(" without being function calls
_NOT_CALLS = frozenset(
    {
        "ALL", "AND", "ANY", "ARRAY", "AS", "BETWEEN", "BY", "CASE", "CAST", "DISTINCT", "ELSE",
        "EXISTS", "FILTER", "FROM", "IN", "INTO", "JOIN", "LATERAL", "NOT", "ON", "OR", "OVER",
        "ROW", "SELECT", "SOME", "THEN", "USING", "VALUES", "WHEN", "WHERE", "WITH", "WITHIN",
        "RETURNING", "SET", "TABLE", "LIMIT", "OFFSET", "ROWS", "GROUPING", "CUBE", "ROLLUP",
        "INTERVAL", "CONFLICT", "DO", "FOR", "OF", "IS", "LIKE", "ILIKE", "SIMILAR",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Word:
    """An unquoted word (keyword or identifier) of the template, upper-cased."""

    text: str
    depth: int  # parenthesis depth
    called: bool  # followed by "(" (a function call, unless it is a keyword)
    qualifier: str | None = None  # "schema" of schema.name


def words(sql: str) -> Iterator[Word]:
    """The unquoted words of ``sql`` in order, outside literals and comments."""
    i, depth, n = 0, 0, len(sql)
    previous: str | None = None  # the word before a "."
    dotted = False
    while i < n:
        c = sql[i]
        if c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        if c == "/" and sql.startswith("/*", i):
            i = _block_comment_end(sql, i)
            continue
        if c == "'":
            escapes = i > 0 and sql[i - 1] in "eE"
            i = _quoted_end(sql, i + 1, "'", escapes=escapes)
            previous, dotted = None, False
            continue
        if c == '"':
            end = _quoted_end(sql, i + 1, '"')
            previous = sql[i + 1 : end - 1].replace('""', '"').upper()
            i = end
            continue
        if c == "$":
            tag = _DOLLAR_TAG.match(sql, i)
            if tag:
                close = sql.find(tag.group(0), tag.end())
                i = n if close < 0 else close + len(tag.group(0))
                continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth = max(0, depth - 1)
        elif c == ".":
            dotted = previous is not None
            i += 1
            continue
        m = _WORD.match(sql, i)
        if m and not (i > 0 and (sql[i - 1].isalnum() or sql[i - 1] in "_$")):
            text = m.group(0).upper()
            after = _SPACE.match(sql, m.end()).end()
            called = after < n and sql[after] == "("
            yield Word(text, depth, called, previous if dotted else None)
            previous, dotted = text, False
            i = m.end()
            continue
        if not c.isspace():
            previous, dotted = None, False
        i += 1


def _quoted_end(sql: str, i: int, quote: str, *, escapes: bool = False) -> int:
    """Index after the closing ``quote`` (a doubled quote, or \\' in E'', is escaped)."""
    n = len(sql)
    while i < n:
        if sql[i] == quote:
            if i + 1 < n and sql[i + 1] == quote:
                i += 2
                continue
            return i + 1
        if escapes and sql[i] == "\\":
            i += 2
            continue
        i += 1
    return n


def _block_comment_end(sql: str, i: int) -> int:
    depth, i, n = 0, i, len(sql)
    while i < n:
        if sql.startswith("/*", i):
            depth += 1
            i += 2
        elif sql.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return n


def leading_keyword(sql: str) -> str:
    """The first word of the statement (``SELECT``, ``WITH``, ``INSERT``...), or ''."""
    for word in words(sql):
        return word.text
    return ""


def statement_kind(sql: str) -> str:
    """``SELECT`` for a statement that only reads, else the writing or leading keyword.

    A ``WITH`` whose parts insert, update or delete counts as that write; a read
    that locks rows (``FOR UPDATE``/``FOR SHARE``) counts as ``LOCK``.
    """
    first = leading_keyword(sql)
    if first not in READ_STARTS:
        return first
    previous = ""
    for word in words(sql):
        if (
            word.text in WRITE_WORDS
            and word.qualifier is None  # t.update is a column
            and previous not in ("FOR", "ON")
        ):
            return word.text
        if previous == "FOR" and word.text in ("UPDATE", "SHARE", "NO", "KEY"):
            return "LOCK"
        previous = word.text
    return "SELECT"


def top_level_words(sql: str) -> set[str]:
    """Words outside every parenthesis (the outer statement's own clauses)."""
    return {w.text for w in words(sql) if w.depth == 0}


def has_own_limit(sql: str) -> bool:
    """Whether the outer statement has LIMIT, OFFSET or FETCH FIRST/NEXT of its own."""
    return bool(top_level_words(sql) & {"LIMIT", "OFFSET", "FETCH"})


def called_functions(sql: str) -> set[tuple[str | None, str]]:
    """(schema or None, name) of every function the text calls, names lower-cased."""
    return {
        (w.qualifier.lower() if w.qualifier else None, w.text.lower())
        for w in words(sql)
        if w.called and (w.qualifier is not None or w.text not in _NOT_CALLS)
    }
