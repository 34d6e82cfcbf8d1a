"""The records of a bulk import: split, parsed, checked and typed (pure: no I/O).

A bulk row (``bulk_import``, engine/spec.py) takes NDJSON (one JSON object a line)
or CSV (a header line naming columns, then one record a line, RFC 4180 quoting).
Each record is checked against the row's stored JSON Schema, which describes one
record (the same compiled :class:`~engine.validation.SchemaValidator` as a body's),
and its columns are typed as ``bulk_import.columns`` says, by the binder's own
coercions (engine/binding.py), into a tuple for the staging table ``bulk_records``
(its columns in order, then ``_line``, the record's line in the body).

Speed: jsonschema's validator costs tens of microseconds a record, more than a
whole import may spend. Each record goes first through the schema's fast check
(engine/quickcheck.py), which can only say "valid" when the full validator would;
anything it is unsure of goes to the full validator, whose messages are the ones
reported. So a report reads the same as a body's, and the fast check changes no answer.

Lines are numbered from 1 as the client sent them (a CSV header is line 1; a quoted
CSV field may span lines: its record has the number of its first line; blank lines
are counted and skipped).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from engine import sqltext
from engine.binding import BadValue, Coercer, scalar_coercer
from engine.errors import ApiError
from engine.spec import BULK_LINE_COLUMN, BULK_TYPES, BulkSpec
from engine.validation import Sanitizer, SchemaValidator

STAGING_TABLE = "bulk_records"
MAX_RECORD_BYTES = 1 << 20  # one record (a line, or a CSV record's lines) at most 1 MiB
_INT_TEXT = re.compile(r"[+-]?[0-9]{1,20}")
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,6})?")
_LEADING_WITH = re.compile(
    r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*WITH(?:\s+RECURSIVE)?\b", re.IGNORECASE | re.DOTALL
)
_TRUE = {"true", "t", "1", "yes", "y", "on"}
_FALSE = {"false", "f", "0", "no", "n", "off"}

Problem = dict[str, Any]  # {"line": 17, "pointer": "/calls_offered", "message": "..."}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def staging_columns(bulk: BulkSpec) -> list[tuple[str, str]]:
    """(column, PostgreSQL type) of ``bulk_records``: the row's columns, then ``_line``."""
    return [*((name, BULK_TYPES[kind]) for name, kind in bulk.columns), (BULK_LINE_COLUMN, "int8")]


def staging_ddl(bulk: BulkSpec) -> str:
    """The staging table of one import: temporary, dropped at the end of its transaction."""
    columns = ", ".join(f"{_quote(c)} {t}" for c, t in staging_columns(bulk))
    return f"CREATE TEMP TABLE {STAGING_TABLE} ({columns}) ON COMMIT DROP"


def check_sql(template: str, bulk: BulkSpec) -> str:
    """The template with an empty ``bulk_records`` of the staging table's columns in front
    (a CTE), so it prepares where no staging table exists: the catalogue is read in a
    read-only transaction, which cannot create even a temporary table."""
    columns = staging_columns(bulk)
    names = ", ".join(_quote(c) for c, _ in columns)
    nulls = ", ".join(f"NULL::{t}" for _, t in columns)
    cte = f"{STAGING_TABLE} ({names}) AS (SELECT {nulls} WHERE false)"
    if sqltext.leading_keyword(template) == "WITH":
        own = _LEADING_WITH.match(template)
        if own is not None:  # the template's own WITH: ours goes first in its list
            return f"{template[: own.end()]} {cte},{template[own.end() :]}"
    return f"WITH {cte}\n{template}"


# -- one record -------------------------------------------------------------------------


def _csv_value(kind: str, text: str) -> Any:
    """A CSV cell as the JSON value the schema checks (text that is no such value stays text,
    and the schema or the column's coercion says what is wrong with it)."""
    if kind == "integer":
        return int(text) if _INT_TEXT.fullmatch(text) else text
    if kind == "number":
        if _NUMBER_TEXT.fullmatch(text) and len(text) <= 256:
            number = float(text)
            return (
                int(number)
                if number.is_integer() and "." not in text and "e" not in text.lower()
                else number
            )
        return text
    if kind == "boolean":
        low = text.strip().lower()
        return True if low in _TRUE else False if low in _FALSE else text
    if kind == "json":
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
    return text


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array"


class RecordReader:
    """One row's records made into staging-table tuples (compiled once per row)."""

    def __init__(
        self,
        bulk: BulkSpec,
        schema: SchemaValidator | None = None,
        sanitizer: Sanitizer | None = None,
    ) -> None:
        self.bulk = bulk
        self.schema = schema
        self.sanitizer = sanitizer or None
        self.fast = schema.fast if schema is not None else None
        self.names = tuple(name for name, _ in bulk.columns)
        self.kinds = dict(bulk.columns)
        self._slots: tuple[tuple[str, Coercer], ...] = tuple(
            (name, scalar_coercer(kind, BULK_TYPES[kind])) for name, kind in bulk.columns
        )
        self._known = frozenset(self.names)

    def from_json(self, raw: bytes, line: int) -> tuple[Any, ...] | list[Problem] | None:
        """An NDJSON line: its tuple, its problems, or None for a blank line."""
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if not raw.strip():
                return None
            return [_problem(line, "", f"is not valid JSON ({exc.msg})")]
        if type(record) is not dict:
            return [_problem(line, "", f"must be a JSON object, not {_kind_of(record)}")]
        return self.check(record, line, None)

    def check(
        self, record: dict[str, Any], line: int, texts: Mapping[str, str] | None
    ) -> tuple[Any, ...] | list[Problem]:
        """A parsed record checked and typed; ``texts``: a CSV record's cells, typed from
        their text (exact numerics), where ``record`` holds the values the schema checks."""
        if self.sanitizer is not None:
            try:
                record = self.sanitizer.apply(record)
            except ApiError as error:
                return [_problem(line, e["pointer"], e["message"]) for e in error.errors or ()]
            texts = (
                None
                if texts is None
                else {**texts, **{k: v for k, v in record.items() if isinstance(v, str)}}
            )
        schema = self.schema
        if schema is not None:
            if self.fast is None or not self.fast(record):
                found = schema.errors(record)
                if found:
                    return [_problem(line, e["pointer"], e["message"]) for e in found]
        elif not self._known.issuperset(record):
            return [
                _problem(line, _pointer(name), f"{_text(name)} is not a column of this import")
                for name in record
                if name not in self._known
            ]
        values: list[Any] = []
        problems: list[Problem] | None = None
        source: Mapping[str, Any] = record if texts is None else texts
        text = texts is not None
        for name, coerce in self._slots:
            value = source.get(name)
            if value is None:
                values.append(None)
                continue
            try:
                values.append(coerce(value, text))
            except BadValue as exc:
                if problems is None:
                    problems = []
                problems.append(_problem(line, _pointer(name), f"{name} {exc}"))
        if problems:
            return problems
        values.append(line)
        return tuple(values)

    def csv_header(self, cells: Sequence[str]) -> tuple[str, ...]:
        """The columns a CSV body's header names, in order (INVALID_BODY when it names an
        unknown column, or one twice)."""
        names = tuple(c.strip() for c in cells)
        if names and names[0].startswith("\ufeff"):
            names = (names[0][1:], *names[1:])
        unknown = [n for n in names if n not in self._known]
        if unknown or not names:
            raise ApiError(
                "INVALID_BODY",
                f"The CSV header (line 1) must name columns of this import ({', '.join(self.names)})"
                + (f"; unknown: {', '.join(map(_text, unknown[:10]))}" if unknown else ""),
            )
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ApiError(
                "INVALID_BODY", f"The CSV header (line 1) names {', '.join(twice)} more than once"
            )
        return names

    def from_csv(
        self, cells: Sequence[str], line: int, header: tuple[str, ...]
    ) -> tuple[Any, ...] | list[Problem] | None:
        """A CSV record's cells (an empty cell is an absent field), or None for a blank line."""
        if len(cells) != len(header):
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                return None
            return [
                _problem(line, "", f"has {len(cells)} field(s), but the header names {len(header)}")
            ]
        texts = {name: cell for name, cell in zip(header, cells, strict=True) if cell != ""}
        for name, cell in texts.items():
            if "\x00" in cell:
                return [_problem(line, _pointer(name), f"{name} must not contain NUL characters")]
        kinds = self.kinds
        record = {name: _csv_value(kinds[name], cell) for name, cell in texts.items()}
        return self.check(record, line, texts)


def _problem(line: int, pointer: str, message: str) -> Problem:
    return {"line": line, "pointer": pointer, "message": message}


def _pointer(name: str) -> str:
    return "/" + name.replace("~", "~0").replace("/", "~1")


def _text(name: str) -> str:
    return orjson.dumps(name[:80]).decode()


@dataclass(frozen=True)
class BulkPlan:
    """What a bulk row's requests need, compiled once (engine/compiler.py)."""

    spec: BulkSpec
    reader: RecordReader
    sql: str  # the row's template, run once over the staging table
    ddl: str  # CREATE TEMP TABLE bulk_records (...) ON COMMIT DROP
    columns: tuple[str, ...]  # of the staging table, in the order of a record's tuple


def compile_plan(
    bulk: BulkSpec,
    template: str,
    schema: SchemaValidator | None = None,
    sanitizer: Sanitizer | None = None,
) -> BulkPlan:
    return BulkPlan(
        spec=bulk,
        reader=RecordReader(bulk, schema, sanitizer),
        sql=template,
        ddl=staging_ddl(bulk),
        columns=tuple(c for c, _ in staging_columns(bulk)),
    )


# -- splitting a stream into records ----------------------------------------------------


class TooLong(ValueError):
    """One record is longer than :data:`MAX_RECORD_BYTES`."""


class LineSplitter:
    """NDJSON: the complete lines of each chunk (the last, partial one waits for the next)."""

    def __init__(self) -> None:
        self._tail = b""
        self.line = 0  # lines handed out so far

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self._tail + chunk if self._tail else chunk
        lines = data.split(b"\n")
        self._tail = lines.pop()
        if len(self._tail) > MAX_RECORD_BYTES:
            raise TooLong(self.line + len(lines) + 1)
        return lines

    def end(self) -> list[bytes]:
        tail, self._tail = self._tail, b""
        return [tail] if tail.strip() else []


class CsvSplitter:
    """CSV: complete records (a quoted field may hold line breaks) with their first line."""

    def __init__(self) -> None:
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._quotes = 0  # double quotes in the pending record: odd means a field is open
        self._start = 0
        self._tail = b""
        self.line = 0

    def feed(self, chunk: bytes) -> list[tuple[int, bytes]]:
        data = self._tail + chunk if self._tail else chunk
        lines = data.split(b"\n")
        self._tail = lines.pop()
        out: list[tuple[int, bytes]] = []
        for piece in lines:
            self.line += 1
            self._add(piece, out)
        if self._pending_size + len(self._tail) > MAX_RECORD_BYTES:
            raise TooLong(self._start or self.line + 1)
        return out

    def _add(self, piece: bytes, out: list[tuple[int, bytes]]) -> None:
        quotes = piece.count(b'"')
        if not self._pending and not quotes & 1:
            out.append((self.line, piece))
            return
        if not self._pending:
            self._start = self.line
        self._pending.append(piece)
        self._pending_size += len(piece) + 1
        self._quotes += quotes
        if not self._quotes & 1:
            out.append((self._start, b"\n".join(self._pending)))
            self._pending, self._pending_size, self._quotes = [], 0, 0

    def end(self) -> tuple[list[tuple[int, bytes]], int | None]:
        """The last records, and the line of a record whose quoted field never closed."""
        out: list[tuple[int, bytes]] = []
        if self._tail:
            self.line += 1
            self._add(self._tail, out)
            self._tail = b""
        unclosed = self._start if self._pending else None
        self._pending = []
        return out, unclosed


def parse_csv(line: int, raw: bytes) -> list[str] | str:
    """One record's cells, or why it cannot be read (not UTF-8, bad quoting)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "is not UTF-8 text"
    if text.endswith("\r"):
        text = text[:-1]
    try:
        return next(csv.reader([text], strict=True), [])
    except csv.Error as exc:
        return f"is not valid CSV ({exc})"
