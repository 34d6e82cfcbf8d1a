"""CHECK constraints read as JSON Schema keywords (pure: no I/O).

PostgreSQL deparses a constraint (``pg_get_constraintdef``) in one normal form:
``CHECK ((qty >= 1) AND (qty <= 100))``, ``CHECK ((status)::text = ANY
((ARRAY['a'::character varying, ...])::text[]))``, ``CHECK ((char_length(name) <= 20))``.
:func:`map_check` reads that form: conjunctions of single-column comparisons with
constants become ``minimum``/``maximum``/``exclusive*``, ``enum``, ``minLength`` and
``maxLength``; anything else is returned unmapped (the database still enforces it,
answered as 422 ``CONSTRAINT_VIOLATION``). A mapped keyword is a necessary condition
of the constraint, never a stricter one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_IDENT = re.compile(r'[a-z_][a-z0-9_$]*|"(?:[^"]|"")+"')
_CAST_TYPE = re.compile(r'\s*[A-Za-z_"][\w\s".]*(?:\(\d+(?:,\s*-?\d+)?\))?(?:\[\])*\s*')
_LENGTH = re.compile(r"(?:char_length|character_length|length)\((.*)\)", re.S)
_OPS = (" >= ", " <= ", " <> ", " != ", " = ", " > ", " < ")
_FLIP = {">=": "<=", "<=": ">=", ">": "<", "<": ">", "=": "=", "<>": "<>", "!=": "<>"}
_LOWER = {"minimum", "exclusiveMinimum", "minLength"}
_UPPER = {"maximum", "exclusiveMaximum", "maxLength"}


def json_number(d: Decimal) -> int | float:
    return int(d) if d == d.to_integral_value() else float(d)


def _positions(text: str, sep: str) -> list[int]:
    """Where ``sep`` occurs at depth 0, outside quotes."""
    out, depth, i, quote = [], 0, 0, ""
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote and text[i + 1 : i + 2] == quote:
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            out.append(i)
        i += 1
    return out


def _split(text: str, sep: str) -> list[str]:
    parts, start = [], 0
    for i in _positions(text, sep):
        if i >= start:
            parts.append(text[start:i])
            start = i + len(sep)
    return [*parts, text[start:]]


def _wraps(t: str) -> bool:
    """Whether the "(" that ``t`` starts with closes at its very end (quotes skipped)."""
    if not (t.startswith("(") and t.endswith(")")):
        return False
    depth, quote = 0, ""
    for i, ch in enumerate(t):
        if quote:
            quote = "" if ch == quote else quote  # a doubled quote closes and reopens
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i == len(t) - 1
    return False


def _unwrap(text: str) -> str:
    """``text`` without the parentheses around it (a term of a condition)."""
    t = text.strip()
    while _wraps(t):
        t = t[1:-1].strip()
    return t


def _peel(text: str) -> str:
    """``text`` without the parentheses around it and the casts after it."""
    while True:
        t = text.strip()
        if _wraps(t):
            text = t[1:-1]
            continue
        casts = _positions(t, "::")
        if casts and _CAST_TYPE.fullmatch(t[casts[-1] + 2 :]):
            text = t[: casts[-1]]
            continue
        return t


def _atom(text: str, columns: Mapping[str, str]) -> tuple[str, Any] | None:
    """("column"|"length", column name), ("number", Decimal), ("literal", text),
    ("array", [atoms]), or None for anything else."""
    t = _peel(text)
    if m := _LENGTH.fullmatch(t):
        inner = _atom(m[1], columns)
        return ("length", inner[1]) if inner and inner[0] == "column" else None
    if _NUMBER.fullmatch(t):
        return "number", Decimal(t)
    if len(t) >= 2 and t[0] == t[-1] == "'" and "'" not in t[1:-1].replace("''", ""):
        return "literal", t[1:-1].replace("''", "'")
    if t.startswith("ARRAY[") and t.endswith("]"):
        values = [_atom(x, columns) for x in _split(t[6:-1], ",")]
        ok = all(v is not None and v[0] in ("number", "literal") for v in values)
        return ("array", values) if ok else None
    if _IDENT.fullmatch(t) or t == "VALUE":
        name = t[1:-1].replace('""', '"') if t.startswith('"') else t
        return ("column", columns[name]) if name in columns else None
    return None


def _constant(atom: tuple[str, Any], numeric: bool) -> Any:
    if not numeric:
        return atom[1] if atom[0] == "literal" else None
    try:
        return json_number(Decimal(atom[1]))
    except (InvalidOperation, ValueError):
        return None


def _facets(
    conjunct: str, columns: Mapping[str, str], kinds: Mapping[str, str]
) -> tuple[str, dict[str, Any]] | None:
    """(column, JSON Schema keywords) for one ``col op constant`` term, None if it does not map."""
    t = _unwrap(conjunct)
    if len(parts := _split(t, " = ANY ")) == 2:
        left, right = _atom(parts[0], columns), _atom(parts[1], columns)
        if not left or left[0] != "column" or not right or right[0] != "array":
            return None
        kind = kinds.get(left[1], "")
        values = [_constant(v, kind in ("integer", "number")) for v in right[1]]
        if not kind or any(v is None for v in values):
            return None
        return left[1], {"enum": values}
    for op in _OPS:
        parts = _split(t, op)
        if len(parts) == 2:
            break
    else:
        return None
    left, right, op = _atom(parts[0], columns), _atom(parts[1], columns), op.strip()
    if left and right and left[0] in ("number", "literal") and right[0] in ("column", "length"):
        left, right, op = right, left, _FLIP[op]
    if not left or not right or left[0] not in ("column", "length"):
        return None
    if right[0] not in ("number", "literal"):
        return None
    column, kind = left[1], kinds.get(left[1], "")
    if left[0] == "length":
        n = _constant(right, True)
        if kind != "string" or not isinstance(n, int):
            return None
        by_op = {
            ">=": {"minLength": n}, ">": {"minLength": n + 1}, "<=": {"maxLength": n},
            "<": {"maxLength": n - 1}, "=": {"minLength": n, "maxLength": n},
        }  # fmt: skip
        found = by_op.get(op)
        return (column, found) if found and all(v >= 0 for v in found.values()) else None
    if kind in ("integer", "number"):
        v = _constant(right, True)
        if v is None:
            return None
        whole = kind == "integer" and isinstance(v, int)
        by_op = {
            ">=": {"minimum": v},
            ">": {"minimum": v + 1} if whole else {"exclusiveMinimum": v},
            "<=": {"maximum": v},
            "<": {"maximum": v - 1} if whole else {"exclusiveMaximum": v},
            "=": {"enum": [v]},
        }
        found = by_op.get(op)
        return (column, found) if found else None
    if kind == "string" and right[0] == "literal":
        if op == "=":
            return column, {"enum": [right[1]]}
        if op == "<>" and right[1] == "":
            return column, {"minLength": 1}
    return None


def _is_null(term: str, columns: Mapping[str, str]) -> bool:
    if not term.endswith(" IS NULL"):
        return False
    atom = _atom(term[: -len(" IS NULL")], columns)
    return atom is not None and atom[0] == "column"


def _check_body(definition: str) -> str | None:
    m = re.fullmatch(r"CHECK \((.*)\)(?: NO INHERIT)?(?: NOT VALID)?", definition.strip(), re.S)
    return m[1] if m else None


def map_check(
    definition: str, columns: Mapping[str, str], kinds: Mapping[str, str]
) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """A CHECK constraint's terms as (column, JSON Schema keywords), and the terms that do not map.

    ``columns``: the names a term may use -> the column they mean (a domain's check
    says ``VALUE``); ``kinds``: column -> "integer" | "number" | "string" (columns of other
    kinds map nothing). Conjunctions of single-column comparisons map (``col op v``,
    ``v op col``, ``BETWEEN``, ``IN``/``= ANY``, ``char_length(col) op n``, ``col <> ''``),
    also with ``OR col IS NULL``; a term with another OR, two columns, a function or
    another operator stays unmapped and is left to the database. A term on a NULL column
    is not false in SQL, and JSON Schema's keywords skip null too, so the two agree.
    """
    body = _check_body(definition)
    return _conjunction(body, columns, kinds) if body is not None else ([], [definition])


def _conjunction(
    text: str, columns: Mapping[str, str], kinds: Mapping[str, str]
) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    mapped: list[tuple[str, dict[str, Any]]] = []
    unmapped: list[str] = []
    pending = [text]
    while pending:
        term = _unwrap(pending.pop(0))
        parts = _split(term, " AND ")
        if len(parts) > 1:
            pending[:0] = parts
            continue
        either = [_unwrap(x) for x in _split(term, " OR ")]
        nulls = [x for x in either if _is_null(x, columns)]
        if len(either) == 2 and len(nulls) == 1:
            # "... OR c IS NULL" says what a CHECK means anyway: NULL passes it
            column = _atom(nulls[0][: -len(" IS NULL")], columns)
            other = either[1] if nulls[0] is either[0] else either[0]
            inner, rest = _conjunction(other, columns, kinds)
            if column and not rest and inner and all(c == column[1] for c, _ in inner):
                mapped.extend(inner)
                continue
        found = _facets(term, columns, kinds)
        if found is None:
            unmapped.append(term)
        else:
            mapped.append(found)
    return mapped, unmapped


def merge_facets(schema: dict[str, Any], facets: Mapping[str, Any]) -> None:
    """Add JSON Schema keywords, keeping the tighter bound and the common enum values."""
    for key, value in facets.items():
        if key in _LOWER:
            schema[key] = max(schema.get(key, value), value)
        elif key in _UPPER:
            schema[key] = min(schema.get(key, value), value)
        elif key == "enum" and "enum" in schema:
            schema["enum"] = [v for v in schema["enum"] if v in value]
        else:
            schema[key] = value
