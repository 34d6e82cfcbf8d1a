"""A table as the database catalogue describes it, read for scaffolding.

:func:`read_table` looks a table up by name (as PostgreSQL does: schema-qualified
or on the search_path), refuses what cannot be scaffolded (views, materialized
views, foreign tables, partitions, temporary and system tables, the engine's own
tables, a missing primary key) with the reason, and describes each column: its type as a ``query_parameters``
type and a JSON Schema (``varchar(n)`` -> ``maxLength``, ``numeric(p,s)`` -> bounds,
enums -> ``enum``, domains by their base type, NOT NULL and default included), its
default, identity and generated columns, with the CHECK constraints of the table
and of its domains mapped in where they can be (:mod:`engine.scaffold.checks`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

from engine.migrations import CREATE_MIGRATIONS_TABLE, CREATE_SEEDS_TABLE, migration_files
from engine.scaffold.checks import json_number, map_check, merge_facets
from engine.scaffold.model import Column, Table, refuse

RELATION = """
SELECT c.oid, c.relname::text AS name, n.nspname::text AS schema,
       quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS ident,
       c.relkind::text AS kind, c.relispartition AS is_partition,
       c.relpersistence::text AS persistence,
       -- the schema of the engine's own tables (any schema when they are not on the path)
       n.oid = COALESCE((SELECT e.relnamespace FROM pg_class e
                         WHERE e.oid = to_regclass('api_endpoint_mappings')), n.oid)
           AS engine_schema,
       (SELECT quote_ident(pn.nspname) || '.' || quote_ident(p.relname)
        FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
        JOIN pg_namespace pn ON pn.oid = p.relnamespace
        WHERE i.inhrelid = c.oid LIMIT 1) AS parent
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass($1)
"""
COLUMNS = """
SELECT a.attname::text AS name, quote_ident(a.attname) AS ident, a.attnotnull AS not_null,
       pg_get_expr(d.adbin, d.adrelid) AS default_expr, a.attidentity::text AS identity,
       a.attgenerated::text AS generated, a.atttypid AS type_oid, a.atttypmod AS typmod,
       format_type(a.atttypid, a.atttypmod) AS type_sql,
       format_type(a.atttypid, NULL) AS bare_type_sql,
       col_description(a.attrelid, a.attnum) AS comment,
       EXISTS (SELECT 1 FROM pg_depend dep JOIN pg_class sq ON sq.oid = dep.objid
               WHERE dep.classid = 'pg_class'::regclass AND sq.relkind = 'S'
                 AND dep.refobjid = a.attrelid AND dep.refobjsubid = a.attnum
                 AND dep.deptype = 'a') AS serial  -- owns its sequence: serial, bigserial
FROM pg_attribute a
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
PRIMARY_KEY = """
SELECT a.attname::text AS name
FROM pg_constraint k
CROSS JOIN LATERAL unnest(k.conkey) WITH ORDINALITY AS u(attnum, ord)
JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum
WHERE k.conrelid = $1 AND k.contype = 'p'
ORDER BY u.ord
"""
CHECKS = """
SELECT conname::text AS name, pg_get_constraintdef(oid) AS definition
FROM pg_constraint WHERE conrelid = $1 AND contype = 'c' ORDER BY conname
"""
TYPES = """
SELECT t.oid, t.typname::text AS name, t.typtype::text AS typtype, t.typbasetype AS base,
       t.typtypmod AS typmod, t.typnotnull AS not_null,
       pg_get_expr(t.typdefaultbin, 0) AS default_expr,
       CASE WHEN t.typcategory = 'A' AND t.typlen = -1 THEN t.typelem ELSE 0 END AS element,
       ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid
             ORDER BY e.enumsortorder) AS labels,
       ARRAY(SELECT pg_get_constraintdef(k.oid) FROM pg_constraint k
             WHERE k.contypid = t.oid AND k.contype = 'c' ORDER BY k.conname) AS checks
FROM pg_type t WHERE t.oid = ANY($1::oid[])
"""
# base type -> (query_parameters type, JSON Schema of a value)
_NATIVE: dict[str, tuple[str, dict[str, Any]]] = {
    **{t: ("integer", {"type": "integer"}) for t in ("int2", "int4", "int8")},
    **{t: ("number", {"type": "number"}) for t in ("numeric", "float4", "float8", "money")},
    **{t: ("string", {"type": "string"}) for t in ("text", "varchar", "bpchar", "citext", "name")},
    "bool": ("boolean", {"type": "boolean"}),
    "uuid": ("uuid", {"type": "string", "format": "uuid"}),
    "date": ("date", {"type": "string", "format": "date"}),
    "timestamptz": ("timestamp", {"type": "string", "format": "date-time"}),
    "timestamp": ("timestamp", {"type": "string"}),  # RFC 3339 date-time needs an offset
    "json": ("json", {}),
    "jsonb": ("json", {}),
}
_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
_RELKINDS = {
    "v": "a view",
    "m": "a materialized view",
    "f": "a foreign table",
    "S": "a sequence",
    "i": "an index",
    "I": "a partitioned index",
    "c": "a composite type",
    "t": "a TOAST table",
}


@dataclass(frozen=True)
class _Type:
    name: str
    typtype: str
    base: int
    typmod: int
    not_null: bool
    default: str | None
    element: int
    labels: tuple[str, ...]
    checks: tuple[str, ...]


async def _types(conn: asyncpg.Connection, oids: Iterable[int]) -> dict[int, _Type]:
    """Every type the columns use, with the bases of domains and the elements of arrays."""
    found: dict[int, _Type] = {}
    wanted = set(oids)
    while wanted:
        for r in await conn.fetch(TYPES, sorted(wanted)):
            found[r["oid"]] = _Type(
                r["name"], r["typtype"], r["base"], r["typmod"], r["not_null"],
                r["default_expr"], r["element"], tuple(r["labels"]), tuple(r["checks"]),
            )  # fmt: skip
        wanted = {
            o for t in found.values() for o in (t.base, t.element) if o and o not in found
        } - set(found)
    return found


def _base(types: Mapping[int, _Type], oid: int) -> tuple[_Type, list[_Type]]:
    """(the base type, the domains on the way to it, outermost first)."""
    domains = []
    t = types[oid]
    while t.typtype == "d":
        domains.append(t)
        t = types[t.base]
    return t, domains


def _value_schema(t: _Type, typmod: int) -> tuple[str, dict[str, Any]] | None:
    """(query_parameters type, JSON Schema) of a scalar base type, None when not native."""
    if t.typtype == "e":
        return "string", {"type": "string", "enum": list(t.labels)}
    if t.name not in _NATIVE:
        return None
    kind, schema = _NATIVE[t.name]
    schema = dict(schema)
    if t.name in ("varchar", "bpchar") and typmod >= 4:
        schema["maxLength"] = typmod - 4
    elif t.name == "numeric" and typmod >= 4:
        precision = ((typmod - 4) >> 16) & 0xFFFF
        scale = (((typmod - 4) & 0x7FF) ^ 1024) - 1024  # negative scales since PostgreSQL 15
        # the largest magnitude that still fits once rounded to the scale (numeric(5,2):
        # 999.995 would round to 1000.00, which overflows)
        bound = json_number(Decimal(10) ** (precision - scale) - Decimal(5).scaleb(-scale - 1))
        schema["exclusiveMaximum"], schema["exclusiveMinimum"] = bound, -bound
        schema["description"] = f"numeric({precision},{scale}): rounded to {scale} decimal places"
    return kind, schema


def _column(r: Mapping[str, Any], types: Mapping[int, _Type]) -> Column:
    base, domains = _base(types, r["type_oid"])
    typmod = r["typmod"]
    for d in domains:
        if typmod < 0:
            typmod = d.typmod
    items = cast = None
    native = None if base.element else _value_schema(base, typmod)
    if base.element:
        element, element_domains = _base(types, base.element)
        inner = None if element_domains else _value_schema(element, typmod)
        if inner is not None and inner[0] != "json":
            kind, schema = "array", {"type": "array", "items": inner[1]}
            items = inner[0]
        else:
            kind, schema, cast = "string", {"type": "string"}, r["type_sql"]
    elif native is not None:
        kind, schema = native
    else:
        kind, schema, cast = "string", {"type": "string"}, r["type_sql"]
    if cast:
        schema["description"] = f"{cast}, in PostgreSQL's text form"
    if r["comment"]:
        schema["description"] = r["comment"]
    default = r["default_expr"]
    if default is None:
        default = next((d.default for d in domains if d.default is not None), None)
    return Column(
        name=r["name"],
        ident=r["ident"],
        not_null=r["not_null"] or any(d.not_null for d in domains),
        default=default,
        identity=bool(r["identity"]),
        generated=bool(r["generated"]),
        type_sql=r["type_sql"],
        bare_type_sql=r["bare_type_sql"],
        param_type=kind,
        items=items,
        cast=cast,
        schema=schema,
        comment=r["comment"],
        is_domain=bool(domains),
        serial=bool(r["serial"]),
    )


_CREATE_TABLE = re.compile(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.IGNORECASE)


@functools.cache
def engine_tables() -> frozenset[str]:
    """The tables the engine's migrations create (sql/): its configuration, never scaffolded."""
    texts = [CREATE_MIGRATIONS_TABLE, CREATE_SEEDS_TABLE, *(f.text for f in migration_files())]
    return frozenset(name.lower() for text in texts for name in _CREATE_TABLE.findall(text))


_WHY_NOT = {
    "v": "it has no primary key the catalogue can trust, and writes through it depend on its "
    "rules or triggers; scaffold its base table, or write the rows by hand",
    "m": "it is read-only and has no primary key; write a list row for it by hand",
    "f": "a foreign table cannot have a primary key constraint",
}


async def read_table(conn: asyncpg.Connection, table: str) -> Table:
    """The table named ``table``, or SCAFFOLD_REFUSED saying why it cannot be scaffolded."""
    try:
        rel = await conn.fetchrow(RELATION, table)
    except asyncpg.PostgresError as exc:  # to_regclass refuses malformed names
        raise refuse(f"{table!r} is not a table name: {exc}") from None
    if rel is None:
        raise refuse(
            f"no table {table!r} in the database (names are looked up as PostgreSQL does: "
            "schema-qualified, or on the search_path; quote mixed-case names)"
        )
    name, kind = rel["ident"], rel["kind"]
    if kind in _RELKINDS:
        why = _WHY_NOT.get(kind, "only tables are scaffolded")
        raise refuse(f"{name} is {_RELKINDS[kind]}: {why}")
    if rel["schema"] in _SYSTEM_SCHEMAS or rel["schema"].startswith("pg_"):
        raise refuse(f"{name} is a system table")
    if rel["engine_schema"] and rel["name"] in engine_tables():
        raise refuse(
            f"{name} is one of the engine's own tables (its migrations create it): its rows "
            "belong to the engine (configuration, logs, keys, secrets); use the admin API "
            "(/admin/v1) or SQL"
        )
    if rel["persistence"] == "t":
        raise refuse(f"{name} is a temporary table: it exists only in the session that made it")
    if rel["is_partition"]:
        raise refuse(
            f"{name} is a partition of {rel['parent']}: scaffold the partitioned table "
            f"{rel['parent']}, which routes rows to its partitions"
        )
    raw = await conn.fetch(COLUMNS, rel["oid"])
    types = await _types(conn, {r["type_oid"] for r in raw})
    columns = [_column(r, types) for r in raw]
    key = [r["name"] for r in await conn.fetch(PRIMARY_KEY, rel["oid"])]
    if not key:
        raise refuse(
            f"{name} needs a primary key: get, update and delete address one row by it, and "
            f"the list pages by it (ALTER TABLE {name} ADD PRIMARY KEY (column))"
        )
    out = Table(rel["schema"], rel["name"], name, kind, columns, key)
    if kind == "p":
        out.notes.append(
            f"{name} is partitioned: PostgreSQL routes each row to its partition, and the "
            "primary key includes the partition key"
        )
    _apply_checks(out, await conn.fetch(CHECKS, rel["oid"]), raw, types)
    for c in columns:
        if c.cast:
            out.notes.append(
                f"column {c.name} ({c.type_sql}) is sent as text and cast by PostgreSQL "
                "(malformed text: 400 INVALID_VALUE)"
            )
        if c.generated or c.identity or c.serial or (c.name in key and c.has_default):
            how = "generated" if c.generated else "assigned by the database"
            out.notes.append(f"column {c.name} is {how}: answered, never written")
    return out


def _apply_checks(
    table: Table,
    checks: Iterable[Mapping[str, Any]],
    raw: Iterable[Mapping[str, Any]],
    types: Mapping[int, _Type],
) -> None:
    """Merge the CHECK constraints of the table and of its columns' domains into the schemas."""
    by_name = {c.name: c for c in table.columns}
    kinds = {
        c.name: c.param_type
        for c in table.columns
        if c.param_type in ("integer", "number", "string") and not c.cast
        and c.schema.get("format") is None
    }  # fmt: skip
    for r in checks:
        mapped, unmapped = map_check(r["definition"], {c: c for c in by_name}, kinds)
        for column, facets in mapped:
            merge_facets(by_name[column].schema, facets)
        if unmapped:
            table.notes.append(
                f"CHECK {r['name']}: {' AND '.join(unmapped)} is not in the JSON Schema; the "
                "database enforces it (422 CONSTRAINT_VIOLATION)"
            )
    for r, c in zip(raw, table.columns, strict=True):
        for domain in _base(types, r["type_oid"])[1]:
            for definition in domain.checks:
                mapped, unmapped = map_check(definition, {"VALUE": c.name}, kinds)
                for column, facets in mapped:
                    merge_facets(by_name[column].schema, facets)
                if unmapped:
                    table.notes.append(
                        f"domain {domain.name} of {c.name}: {' AND '.join(unmapped)} is not in "
                        "the JSON Schema; the database enforces it"
                    )
