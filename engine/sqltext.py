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
    """A word of the template: a keyword or an identifier, quoted or not."""

    text: str  # upper-cased when unquoted (keywords compare here); as written when quoted
    depth: int  # parenthesis depth
    called: bool  # followed by "(" (a function call, unless it is a keyword)
    qualifier: str | None = None  # the identifier before a ".", in its stored form
    quoted: bool = False
    opener: str | None = None  # first token after "(": the word before that "(" ('' if none)
    after_close: bool = False  # the token before is ")"

    @property
    def name(self) -> str:
        """The identifier as PostgreSQL stores it (unquoted names fold to lower case)."""
        return self.text if self.quoted else self.text.lower()


def words(sql: str) -> Iterator[Word]:
    """The words of ``sql`` in order, outside literals and comments."""
    i, depth, n = 0, 0, len(sql)
    previous: Word | None = None  # the word just before (for "." and "(")
    dotted = False
    opener: str | None = None  # set right after a "("
    closed = False  # set right after a ")"
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
            # E'...' takes backslash escapes; the E must stand alone (not end a word)
            escapes = (
                i > 0
                and sql[i - 1] in "eE"
                and not (i > 1 and (sql[i - 2].isalnum() or sql[i - 2] in "_$"))
            )
            i = _quoted_end(sql, i + 1, "'", escapes=escapes)
            previous, dotted, opener, closed = None, False, None, False
            continue
        word_end = None
        if c == '"':
            word_end = _quoted_end(sql, i + 1, '"')
            text, quoted = sql[i + 1 : word_end - 1].replace('""', '"'), True
        else:
            if c == "$":
                tag = _DOLLAR_TAG.match(sql, i)
                if tag:
                    close = sql.find(tag.group(0), tag.end())
                    i = n if close < 0 else close + len(tag.group(0))
                    previous, dotted, opener, closed = None, False, None, False
                    continue
            m = _WORD.match(sql, i)
            if m and not (i > 0 and (sql[i - 1].isalnum() or sql[i - 1] in "_$")):
                word_end, text, quoted = m.end(), m.group(0).upper(), False
        if word_end is not None:
            after = _SPACE.match(sql, word_end).end()
            word = Word(
                text,
                depth,
                called=after < n and sql[after] == "(",
                qualifier=previous.name if dotted and previous is not None else None,
                quoted=quoted,
                opener=opener,
                after_close=closed,
            )
            yield word
            previous, dotted, opener, closed = word, False, None, False
            i = word_end
            continue
        if c == "(":
            opener = previous.text if previous is not None and not previous.quoted else ""
            depth += 1
            previous, dotted = None, False
            closed = False
        elif c == ")":
            depth = max(0, depth - 1)
            previous, dotted, opener = None, False, None
            closed = True
        elif c == ".":
            dotted = previous is not None
            opener, closed = None, False
        elif not c.isspace():
            previous, dotted, opener, closed = None, False, None, False
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
    """``SELECT`` for a statement that only reads, else what it does instead.

    A ``WITH`` whose part (``name AS (INSERT ...)``) writes counts as that write;
    a read that locks rows (``FOR UPDATE``/``FOR SHARE``) counts as ``LOCK``, and
    ``SELECT ... INTO`` (which creates a table) as ``SELECT INTO``. Words such as
    ``update`` used as names (they are unreserved in PostgreSQL) do not count.
    """
    first = leading_keyword(sql)
    if first not in READ_STARTS:
        return first
    previous = ""
    for word in words(sql):
        if word.quoted:
            previous = ""
            continue
        if word.text in WRITE_WORDS and (
            word.opener in _CTE_OPENERS  # x AS (DELETE ...)
            or (word.depth == 0 and word.after_close)  # WITH x AS (...) DELETE ...
        ):
            return word.text
        if previous == "FOR" and word.text in ("UPDATE", "SHARE", "NO", "KEY"):
            return "LOCK"
        if word.text == "INTO" and word.depth == 0:
            return "SELECT INTO"
        previous = word.text
    return "SELECT"


_CTE_OPENERS = frozenset({"AS", "MATERIALIZED"})  # x AS (...), x AS [NOT] MATERIALIZED (...)


def top_level_words(sql: str) -> set[str]:
    """Keywords outside every parenthesis (the outer statement's own clauses)."""
    return {w.text for w in words(sql) if w.depth == 0 and not w.quoted}


def has_own_limit(sql: str) -> bool:
    """Whether the outer statement has LIMIT, OFFSET or FETCH FIRST/NEXT of its own."""
    return bool(top_level_words(sql) & {"LIMIT", "OFFSET", "FETCH"})


def called_functions(sql: str) -> set[tuple[str | None, str]]:
    """(schema or None, name) of every function the text calls, as PostgreSQL stores them."""
    return {
        (w.qualifier, w.name)
        for w in words(sql)
        if w.called and (w.quoted or w.qualifier is not None or w.text not in _NOT_CALLS)
    }


@dataclass(frozen=True)
class OrderItem:
    """One item of the outer statement's ORDER BY, as written."""

    text: str  # the item as written, direction included (spaces collapsed, comments dropped)
    column: str | None  # the column it names, as PostgreSQL stores it; None: an expression
    ordinal: int | None  # ORDER BY 2: the position of a result column
    descending: bool
    nulls: str | None  # "FIRST" or "LAST" when written
    qualified: bool = False  # t.col: a table's column, which need not be the result column


_TOKEN_WORD = re.compile(r"[A-Za-z_\x80-\uffff][A-Za-z0-9_$\x80-\uffff]*")
_TOKEN_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?")
_ORDER_ENDS = frozenset({"LIMIT", "OFFSET", "FETCH", "FOR"})


def _tokens(sql: str) -> Iterator[tuple[str, str, int, int, int]]:
    """(kind, text, depth, start, end) of every token outside comments.

    kind: ``word`` (unquoted, upper-cased), ``ident`` (quoted, as stored), ``number``,
    ``literal`` (a string or dollar-quoted body) or ``op`` (any other character).
    """
    i, depth, n = 0, 0, len(sql)
    while i < n:
        c = sql[i]
        if c.isspace():
            i += 1
        elif c == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif c == "/" and sql.startswith("/*", i):
            i = _block_comment_end(sql, i)
        elif c == "'":
            escapes = (
                i > 0
                and sql[i - 1] in "eE"
                and not (i > 1 and (sql[i - 2].isalnum() or sql[i - 2] in "_$"))
            )
            end = _quoted_end(sql, i + 1, "'", escapes=escapes)
            yield "literal", sql[i:end], depth, i, end
            i = end
        elif c == '"':
            end = _quoted_end(sql, i + 1, '"')
            yield "ident", sql[i + 1 : end - 1].replace('""', '"'), depth, i, end
            i = end
        elif c == "$" and (tag := _DOLLAR_TAG.match(sql, i)):
            close = sql.find(tag.group(0), tag.end())
            end = n if close < 0 else close + len(tag.group(0))
            yield "literal", sql[i:end], depth, i, end
            i = end
        elif m := _TOKEN_WORD.match(sql, i):
            yield "word", m.group(0).upper(), depth, i, m.end()
            i = m.end()
        elif m := _TOKEN_NUMBER.match(sql, i):
            yield "number", m.group(0), depth, i, m.end()
            i = m.end()
        else:
            if c == ")":
                depth = max(0, depth - 1)
            yield "op", c, depth, i, i + 1
            if c == "(":
                depth += 1
            i += 1


def order_by(sql: str) -> tuple[OrderItem, ...] | None:
    """The items of the outer statement's own ORDER BY (None when it has none).

    Only depth 0 counts: an ORDER BY inside a subquery, a window or an aggregate is
    not the statement's.
    """
    tokens = list(_tokens(sql))
    start = None
    for k in range(len(tokens) - 1):
        kind, text, depth = tokens[k][:3]
        if kind == "word" and text == "ORDER" and depth == 0:
            after = tokens[k + 1]
            if after[0] == "word" and after[1] == "BY" and after[2] == 0:
                start = k + 2
    if start is None:
        return None
    items: list[list[tuple[str, str, int, int, int]]] = [[]]
    for token in tokens[start:]:
        kind, text, depth = token[:3]
        if depth == 0 and kind == "word" and text in _ORDER_ENDS:
            break
        if depth == 0 and kind == "op" and text in ",;":
            if text == ";":
                break
            items.append([])
            continue
        items[-1].append(token)
    return tuple(_order_item(sql, item) for item in items if item)


def _order_item(sql: str, item: list[tuple[str, str, int, int, int]]) -> OrderItem:
    text = " ".join(sql[item[0][3] : item[-1][4]].split())
    words = [(kind, value) for kind, value, *_ in item]
    nulls = None
    if len(words) > 2 and words[-2] == ("word", "NULLS") and words[-1][1] in ("FIRST", "LAST"):
        nulls = words[-1][1]
        words = words[:-2]
    descending = False
    if len(words) > 1 and words[-1] in (("word", "ASC"), ("word", "DESC")):
        descending = words[-1][1] == "DESC"
        words = words[:-1]
    column = ordinal = None
    named = words[::2]
    if len(words) == 1 and words[0][0] == "number" and words[0][1].isdigit():
        ordinal = int(words[0][1])
    elif (
        len(words) % 2 == 1
        and all(kind in ("word", "ident") for kind, _ in named)
        and all(w == ("op", ".") for w in words[1::2])
    ):  # col, t.col, s.t.col
        kind, value = words[-1]
        column = value if kind == "ident" else value.lower()
    return OrderItem(text, column, ordinal, descending, nulls, qualified=len(words) > 1)
