"""Endpoint history: the versions of a mapping's definition, their diff, and restoring one.

The versions are written by the triggers of ``sql/013_endpoint_history.sql``
into ``api_endpoint_history``, whatever made the change (SQL, a seed, the admin
API); this module only reads them, compares them, and writes an old definition
back as an ordinary change.

A *definition* is the JSON object the triggers store::

    {"mapping":            {every api_endpoint_mappings column but id, created_at,
                            updated_at and version},
     "validation_schemas": [its api_validation_schemas rows, without endpoint_mapping_id],
     "sanitization_rules": [the active global rules (endpoint_mapping_id null) and all
                            of its own],
     "response_templates": [its own templates and the defaults (endpoint_mapping_id null)
                            of the response types it has none of],
     "cache_config":       its api_cache_config row without the figures, or null}

Rows keep their ``id``; no row keeps created_at or updated_at.

A *version* (what :func:`versions` lists and :func:`version` returns) is::

    {"mapping_id": 12, "version": 3, "row_version": 5, "change_kind": "updated",
     "changed_table": "api_endpoint_mappings", "changed_tables": ["api_endpoint_mappings"],
     "changed_by": "alice", "changed_at": datetime, "definition": {...}}

(``versions`` leaves ``definition`` out). ``change_kind`` is one of
:data:`CHANGE_KINDS`; ``row_version`` is the mapping's ``version`` column then,
None for a ``deleted`` version.

:func:`restore` runs inside the caller's transaction (as a savepoint), sets
``engine.actor`` and ``engine.change_kind = 'rollback'`` for it, so the triggers
record one new version of kind ``rollback``; the caller checks the result like
any edit (``engine.catalog.load_catalog`` on the same connection) before it
commits.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

__all__ = [
    "CHANGE_KINDS",
    "HistoryError",
    "current",
    "diff",
    "restore",
    "version",
    "versions",
]

CHANGE_KINDS = (
    "baseline",  # the row as it was when the history migration ran
    "created",
    "updated",  # mapping columns, or several kinds of change in one transaction
    "activated",  # only is_active, to true
    "deactivated",  # only is_active, to false
    "deleted",  # the definition is the last one; row_version is None
    "schema",
    "rules",
    "templates",
    "cache",
    "rollback",  # written by restore()
)

_FIELDS = (
    "mapping_id, version, row_version, change_kind, changed_table, changed_tables, "
    "changed_by, changed_at"
)
LIST_VERSIONS = f"""
SELECT {_FIELDS}
FROM api_endpoint_history
WHERE mapping_id = $1
ORDER BY version
"""
# definition as text: the same answer whatever jsonb codec the connection has
GET_VERSION = f"""
SELECT {_FIELDS}, definition::text AS definition
FROM api_endpoint_history
WHERE mapping_id = $1 AND version = $2
"""
CURRENT_DEFINITION = """
SELECT definition::text FROM engine_endpoint_definitions(ARRAY[$1::int])
"""
TABLE_COLUMNS = """
SELECT a.attname::text
FROM pg_attribute a
WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
  AND a.attgenerated = ''
ORDER BY a.attnum
"""
CHANGE_KIND_NOW = "SELECT current_setting('engine.change_kind', true)"
SET_CHANGE_KIND = "SELECT set_config('engine.change_kind', $1, true)"
SET_ACTOR = "SELECT set_config('engine.actor', $1, true)"
NEXT_ROW_VERSION = """
SELECT COALESCE(max(row_version), 0) + 1 FROM api_endpoint_history WHERE mapping_id = $1
"""
RECORDED_NOW = """
SELECT version FROM engine_history_heads
WHERE mapping_id = $1 AND xact = pg_current_xact_id()
"""
ROUTE_HOLDER = """
SELECT id FROM api_endpoint_mappings
WHERE endpoint_path = $1 AND http_method = $2 AND id <> $3
"""

MAPPINGS = "api_endpoint_mappings"
# columns a restore never writes: identity, bookkeeping, and cache figures
_NOT_RESTORED = frozenset(
    {
        "id",
        "endpoint_mapping_id",
        "created_at",
        "updated_at",
        "version",
        "cache_hit_ratio",
        "cache_size_mb",
        "cache_eviction_count",
    }
)


class HistoryError(Exception):
    """A definition that cannot be restored; the message says why (safe to show an admin)."""


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


def _record(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row.items())
    out["changed_tables"] = list(out["changed_tables"] or ())
    if "definition" in out:
        out["definition"] = orjson.loads(out["definition"])
    return out


async def versions(conn: asyncpg.Connection, mapping_id: int) -> list[dict[str, Any]]:
    """Every version of ``mapping_id``, oldest first, without their definitions.

    Empty when the mapping never existed (the history outlives a deleted row).
    """
    return [_record(r) for r in await conn.fetch(LIST_VERSIONS, mapping_id)]


async def version(conn: asyncpg.Connection, mapping_id: int, v: int) -> dict[str, Any] | None:
    """Version ``v`` of ``mapping_id`` with its ``definition``, or None."""
    row = await conn.fetchrow(GET_VERSION, mapping_id, v)
    return None if row is None else _record(row)


async def current(conn: asyncpg.Connection, mapping_id: int) -> dict[str, Any] | None:
    """The definition of ``mapping_id`` as it is now (what the next version would hold)."""
    text = await conn.fetchval(CURRENT_DEFINITION, mapping_id)
    return None if text is None else orjson.loads(text)


# ---------------------------------------------------------------------------
# Diff (pure)
# ---------------------------------------------------------------------------

_MISSING: Any = None  # an absent key diffs as null
# the rows a definition lists, and what identifies one among them
_KEYED = (
    ("validation_schemas", "applies_to"),
    ("sanitization_rules", "id"),
    ("response_templates", "response_type"),
)


def _definition_of(value: Mapping[str, Any]) -> tuple[Mapping[str, Any], str | None]:
    """A definition and its label, from a definition or a version record."""
    if "definition" in value and "mapping" not in value:
        inner = value["definition"]
        label = f"version {value['version']}" if "version" in value else None
        return (inner if isinstance(inner, Mapping) else {}), label
    return value, None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _walk(path: str, a: Any, b: Any, out: dict[str, dict[str, Any]]) -> None:
    if _same(a, b):
        return
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted({*a, *b}, key=str):
            _walk(f"{path}.{key}", a.get(key, _MISSING), b.get(key, _MISSING), out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _walk(f"{path}[{i}]", x, y, out)
    else:
        out[path] = {"from": a, "to": b}


def _by_key(rows: Any, key: str) -> dict[str, Any]:
    if not isinstance(rows, list):
        return {}
    return {str(r.get(key)): r for r in rows if isinstance(r, Mapping)}


def _lines(text: Any) -> list[str]:
    if not isinstance(text, str) or not text:
        return []
    lines = text.splitlines(keepends=True)
    if not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return lines


def diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """What changed from definition ``a`` to definition ``b``, field by field.

    ``a`` and ``b`` are definitions or version records (as :func:`version`
    returns). The answer::

        {"changed": {path: {"from": old, "to": new}, ...},
         "template_diff": "unified diff of mapping.query_template ('' when equal)"}

    Paths lead into the definition: ``mapping.query_template``,
    ``mapping.result_mapping.shape``, ``mapping.query_parameters[0].type``,
    ``validation_schemas[body].validation_schema.properties.name.maxLength``,
    ``sanitization_rules[7].max_length``, ``response_templates[success].response_headers``,
    ``cache_config.cache_ttl_seconds``. JSON values are compared as values and
    followed into objects (and into arrays of equal length); a row or key on one
    side only is ``null`` on the other.
    """
    left, left_label = _definition_of(a)
    right, right_label = _definition_of(b)
    changed: dict[str, dict[str, Any]] = {}
    _walk("mapping", left.get("mapping") or {}, right.get("mapping") or {}, changed)
    for name, key in _KEYED:
        old, new = _by_key(left.get(name), key), _by_key(right.get(name), key)
        for k in sorted({*old, *new}):
            _walk(f"{name}[{k}]", old.get(k, _MISSING), new.get(k, _MISSING), changed)
    _walk("cache_config", left.get("cache_config"), right.get("cache_config"), changed)

    old_sql = (left.get("mapping") or {}).get("query_template")
    new_sql = (right.get("mapping") or {}).get("query_template")
    template_diff = ""
    if not _same(old_sql, new_sql):
        template_diff = "".join(
            difflib.unified_diff(
                _lines(old_sql),
                _lines(new_sql),
                fromfile=f"query_template ({left_label or 'from'})",
                tofile=f"query_template ({right_label or 'to'})",
            )
        )
    return {"changed": changed, "template_diff": template_diff}


# ---------------------------------------------------------------------------
# Restore
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rows:
    """A table of rows that belong to one mapping, as a definition lists them."""

    table: str
    entry: str  # the definition's key
    key: str | None  # what identifies one of the mapping's rows (None: it has at most one)
    shareable: bool  # rows with endpoint_mapping_id NULL apply to every mapping


_DEPENDENTS = (
    _Rows("api_validation_schemas", "validation_schemas", "applies_to", False),
    _Rows("api_cache_config", "cache_config", None, False),
    _Rows("data_sanitization_rules", "sanitization_rules", "id", True),
    _Rows("api_response_templates", "response_templates", "response_type", True),
)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _checked(mapping_id: Any, definition: Any) -> dict[str, Any]:
    if isinstance(mapping_id, bool) or not isinstance(mapping_id, int):
        raise HistoryError(f"mapping id must be an integer, not {mapping_id!r}")
    if isinstance(definition, Mapping) and "mapping" not in definition:
        definition = definition.get("definition")
    if not isinstance(definition, Mapping) or not isinstance(definition.get("mapping"), Mapping):
        raise HistoryError('a definition is an object with a "mapping" object')
    for rows in _DEPENDENTS:
        value = definition.get(rows.entry)
        if rows.key is None:
            if value is not None and not isinstance(value, Mapping):
                raise HistoryError(f'"{rows.entry}" must be an object or null')
            continue
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(r, Mapping) for r in value):
            raise HistoryError(f'"{rows.entry}" must be a list of objects')
        if any(r.get(rows.key) is None for r in value):
            raise HistoryError(f'every row of "{rows.entry}" needs its "{rows.key}"')
    return dict(definition)


def _own(rows: _Rows, definition: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    value = definition.get(rows.entry)
    if rows.key is None:
        return [value] if isinstance(value, Mapping) else []
    if not rows.shareable:
        return list(value or [])
    return [r for r in value or [] if r.get("endpoint_mapping_id") is not None]


class _Writer:
    """The statements of one restore, with the column lists read once."""

    def __init__(self, conn: asyncpg.Connection, mapping_id: int) -> None:
        self.conn = conn
        self.mapping_id = mapping_id
        self.columns: dict[str, list[str]] = {}
        self.notes: list[str] = []

    async def writable(self, table: str, row: Mapping[str, Any]) -> list[str]:
        if table not in self.columns:
            self.columns[table] = [r[0] for r in await self.conn.fetch(TABLE_COLUMNS, table)]
        names = self.columns[table]
        gone = sorted(set(row) - set(names) - _NOT_RESTORED)
        if gone:
            self.notes.append(f"{table}: column(s) {', '.join(gone)} no longer exist; not restored")
        return [c for c in names if c in row and c not in _NOT_RESTORED]

    async def mapping(self, row: Mapping[str, Any]) -> bool:
        """Write the mapping columns back; True when the row had to be inserted again."""
        cols = await self.writable(MAPPINGS, row)
        if not cols:
            raise HistoryError("the definition's mapping has no column to restore")
        names = ", ".join(_ident(c) for c in cols)
        picked = ", ".join(f"r.{_ident(c)}" for c in cols)
        source = f"jsonb_populate_record(NULL::{MAPPINGS}, $2::text::jsonb) r"
        payload = orjson.dumps(row).decode()
        status = await self.conn.execute(
            f"UPDATE {MAPPINGS} m SET ({names}) = (SELECT {picked} FROM {source}) WHERE m.id = $1",
            self.mapping_id,
            payload,
        )
        if status != "UPDATE 0":
            return False
        # deleted: the same id again, and a row version that keeps counting up
        row_version = await self.conn.fetchval(NEXT_ROW_VERSION, self.mapping_id)
        await self.conn.execute(
            f"INSERT INTO {MAPPINGS} (id, version, {names}) SELECT $1, $3, {picked} FROM {source}",
            self.mapping_id,
            payload,
            row_version,
        )
        return True

    async def rows(self, spec: _Rows, stored: list[Mapping[str, Any]]) -> None:
        """Make the mapping's own rows of ``spec.table`` exactly ``stored``."""
        table, key = spec.table, spec.key
        if key is None:
            if not stored:
                await self.conn.execute(
                    f"DELETE FROM {table} WHERE endpoint_mapping_id = $1", self.mapping_id
                )
        else:
            await self.conn.execute(
                f"DELETE FROM {table} WHERE endpoint_mapping_id = $1 "
                f"AND NOT ({_ident(key)}::text = ANY ($2::text[]))",
                self.mapping_id,
                [str(r[key]) for r in stored],
            )
        for row in stored:
            cols = await self.writable(table, row)
            if not cols:
                raise HistoryError(f"a row of {spec.entry} has no column to restore")
            names = ", ".join(_ident(c) for c in cols)
            picked = ", ".join(f"r.{_ident(c)}" for c in cols)
            source = f"jsonb_populate_record(NULL::{table}, $2::text::jsonb) r"
            same = (
                ""
                if key is None
                else f" AND t.{_ident(key)} = (SELECT r.{_ident(key)} FROM {source})"
            )
            payload = orjson.dumps(row).decode()
            status = await self.conn.execute(
                f"UPDATE {table} t SET ({names}) = (SELECT {picked} FROM {source}) "
                f"WHERE t.endpoint_mapping_id = $1{same}",
                self.mapping_id,
                payload,
            )
            if status != "UPDATE 0":
                continue
            # a row that is gone comes back with its old id when nothing took it
            old_id = row.get("id")
            old_id = old_id if isinstance(old_id, int) and not isinstance(old_id, bool) else None
            await self.conn.execute(
                f"INSERT INTO {table} (id, endpoint_mapping_id, {names}) "
                f"SELECT CASE WHEN $3::int IS NOT NULL "
                f"AND NOT EXISTS (SELECT 1 FROM {table} x WHERE x.id = $3::int) THEN $3::int "
                f"ELSE nextval(pg_get_serial_sequence('{table}', 'id')) END, $1, {picked} "
                f"FROM {source}",
                self.mapping_id,
                payload,
                old_id,
            )


def _shared_notes(stored: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    notes = []
    for spec in _DEPENDENTS:
        if not spec.shareable:
            continue
        then = {
            r.get("id"): r
            for r in stored.get(spec.entry) or []
            if r.get("endpoint_mapping_id") is None
        }
        today = {
            r.get("id"): r
            for r in now.get(spec.entry) or []
            if r.get("endpoint_mapping_id") is None
        }
        for rid in sorted({*then, *today}, key=str):
            if then.get(rid) == today.get(rid):
                continue
            how = (
                "applied then and does not now"
                if rid not in today
                else "applies now and did not then"
                if rid not in then
                else "changed since"
            )
            notes.append(
                f"{spec.table} id={rid} is shared by every endpoint (endpoint_mapping_id NULL) "
                f"and {how}; a restore does not change shared rows"
            )
    return notes


async def restore(
    conn: asyncpg.Connection,
    mapping_id: int,
    definition: Mapping[str, Any],
    actor: str | None = None,
) -> dict[str, Any]:
    """Write ``definition`` back as the current definition of ``mapping_id``.

    Inside the caller's transaction (a savepoint: on error nothing is left
    written and the transaction stays usable; called outside a transaction it
    commits on its own). The mapping columns are updated, or the row is inserted
    again with the same id when it was deleted (its ``version`` continuing from
    the history's); ``is_active`` is as stored. The mapping's own validation
    schemas, cache config, sanitization rules and response templates become
    exactly the stored ones (rows that are gone come back with their old ids
    when free). Shared rows (global rules, default templates) are not changed:
    ``notes`` says which differ. ``engine.actor`` is set to ``actor`` (when
    given) and the triggers record one version of kind ``rollback``.

    Returns ``{"mapping_id", "version": the version recorded (None when the
    definition was already current), "recreated": bool, "not_restored": the diff
    (as :func:`diff` ``changed``) between the stored definition and the one now,
    "notes": [str]}``. Raises :class:`HistoryError` for a malformed definition or
    one the database refuses (a route now held by another row, a value a column
    no longer accepts).
    """
    stored = _checked(mapping_id, definition)
    writer = _Writer(conn, mapping_id)
    try:
        async with conn.transaction():
            kind_before = await conn.fetchval(CHANGE_KIND_NOW)
            await conn.execute(SET_CHANGE_KIND, "rollback")
            if actor:
                await conn.execute(SET_ACTOR, actor)
            recreated = await writer.mapping(stored["mapping"])
            for spec in _DEPENDENTS:
                await writer.rows(spec, _own(spec, stored))
            await conn.execute(SET_CHANGE_KIND, kind_before or "")
            now = await current(conn, mapping_id) or {}
            recorded = await conn.fetchval(RECORDED_NOW, mapping_id)
    except asyncpg.UniqueViolationError as exc:
        raise HistoryError(await _clash(conn, mapping_id, stored, exc)) from exc
    except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError) as exc:
        raise HistoryError(f"mapping {mapping_id} cannot be restored: {exc}") from exc
    return {
        "mapping_id": mapping_id,
        "version": recorded,
        "recreated": recreated,
        "not_restored": diff(stored, now)["changed"],
        "notes": list(dict.fromkeys([*writer.notes, *_shared_notes(stored, now)])),
    }


async def _clash(
    conn: asyncpg.Connection, mapping_id: int, stored: Mapping[str, Any], exc: Exception
) -> str:
    row = stored["mapping"]
    path, method = row.get("endpoint_path"), row.get("http_method")
    holder = None
    if isinstance(path, str) and isinstance(method, str):
        try:
            holder = await conn.fetchval(ROUTE_HOLDER, path, method, mapping_id)
        except asyncpg.PostgresError:  # the caller's transaction is aborted
            holder = None
    if holder is not None:
        return f"mapping {mapping_id} cannot be restored: mapping id={holder} now holds {method} {path}"
    return f"mapping {mapping_id} cannot be restored: {exc}"
