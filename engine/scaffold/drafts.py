"""Scaffolding one table: generate its rows, check them as ``engine check`` does, insert them.

:func:`scaffold` is what ``python -m engine scaffold`` and ``POST /admin/v1/scaffold``
call. It reads the table (:mod:`engine.scaffold.table`), plans and generates the rows
(:mod:`engine.scaffold.rows`), refuses routes another row already has, then, in one
transaction, inserts the rows as drafts (``is_active = false``) and compiles the whole
catalogue on that connection (:func:`engine.catalog.load_catalog`, which sees the
uncommitted rows): a row that would not serve refuses everything and nothing is
written. With ``apply`` the transaction commits (every engine reloads on its NOTIFY);
without, it rolls back and the rows are returned as SQL text
(:mod:`engine.scaffold.seedfile`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from engine.admin.change import catalog_write_lock
from engine.catalog import RowStatus, load_catalog
from engine.errors import ApiError
from engine.routing import route_key
from engine.scaffold.model import refuse
from engine.scaffold.rows import (
    JSONB_COLUMNS,
    MAPPING_COLUMNS,
    SCHEMA_COLUMNS,
    error_code_row,
    generate,
    plan,
)
from engine.scaffold.seedfile import command_line, render_sql
from engine.scaffold.table import read_table

ROUTES = "SELECT id, http_method, endpoint_path, is_active FROM api_endpoint_mappings"
CODE_STATUS = "SELECT http_status_code FROM api_error_codes WHERE error_code = $1"
SET_ACTOR = "SELECT set_config('engine.actor', $1, true)"
INSERT_CODE = """
INSERT INTO api_error_codes
    (error_code, http_status_code, error_category, error_message, suggested_action,
     localized_messages)
VALUES ($1, $2, $3, $4, $5, $6::text::jsonb)
ON CONFLICT (error_code) DO NOTHING
"""
INSERT_MAPPING = f"""
INSERT INTO api_endpoint_mappings ({", ".join(MAPPING_COLUMNS)})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb, $9::text::jsonb, $10, $11, $12,
        $13::text[], $14, $15)
RETURNING id
"""
INSERT_SCHEMA = f"""
INSERT INTO api_validation_schemas (endpoint_mapping_id, {", ".join(SCHEMA_COLUMNS)})
VALUES ($1, $2, $3::text::jsonb, $4, $5, $6, $7)
"""


@dataclass(frozen=True)
class ScaffoldResult:
    """What :func:`scaffold` generated (and, with ``apply``, inserted as drafts)."""

    table: str
    path: str
    rows: tuple[dict[str, Any], ...]  # api_endpoint_mappings rows, without id
    schemas: tuple[dict[str, Any], ...]  # api_validation_schemas rows, by path and method
    error_codes: tuple[dict[str, Any], ...]
    sql: str
    notes: tuple[str, ...]
    applied: bool
    states: tuple[RowStatus, ...]  # apply: the inserted rows; else: what they would be

    @property
    def ids(self) -> list[int]:
        return [s.mapping_id for s in self.states] if self.applied else []

    def as_dict(self) -> dict[str, Any]:
        by_route = {(s["endpoint_path"], s["http_method"]): s for s in self.schemas}
        rows = []
        for row, state in zip(self.rows, self.states, strict=True):
            schema = by_route.get((row["endpoint_path"], row["http_method"]))
            state_dict = state.as_dict()
            if not self.applied:
                state_dict["id"] = None  # the check ran on rows that were rolled back
            rows.append(
                {
                    **row,
                    "validation_schema": None
                    if schema is None
                    else {k: schema[k] for k in SCHEMA_COLUMNS},
                    "state": state_dict,
                }
            )
        return {
            "table": self.table,
            "path": self.path,
            "applied": self.applied,
            "ids": self.ids,
            "rows": rows,
            "error_codes": list(self.error_codes),
            "notes": list(self.notes),
            "sql": self.sql,
        }

    def report(self) -> str:
        """The states of the inserted drafts, as ``engine check`` prints rows."""
        lines = []
        for s in self.states:
            line = f"{s.state.upper():<8} {s.method:<7}{s.path}  (id={s.mapping_id}, v{s.version})"
            lines.append(line if s.reason is None else f"{line}: {s.reason}")
            lines.extend(f"WARNING {s.method} {s.path}: {w}" for w in s.warnings)
        lines.extend(f"NOTE {n}" for n in self.notes)
        ids = ", ".join(str(i) for i in self.ids)
        lines.append(
            f"{len(self.states)} draft row(s) for {self.table} (is_active = false); review them, "
            f"then activate:\n  UPDATE api_endpoint_mappings SET is_active = true "
            f"WHERE id IN ({ids});"
        )
        return "\n".join(lines) + "\n"


def _arg(column: str, value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if column in JSONB_COLUMNS else value


async def _insert(
    conn: asyncpg.Connection,
    rows: Sequence[Mapping[str, Any]],
    schemas: Sequence[Mapping[str, Any]],
    code: Mapping[str, Any],
) -> list[int]:
    await conn.execute(INSERT_CODE, *(_arg(k, v) for k, v in code.items()))
    ids: dict[tuple[str, str], int] = {}
    for r in rows:
        try:
            mid = await conn.fetchval(INSERT_MAPPING, *(_arg(k, r[k]) for k in MAPPING_COLUMNS))
        except asyncpg.UniqueViolationError:
            raise refuse(
                f"{r['http_method']} {r['endpoint_path']} was taken by another row meanwhile"
            ) from None
        ids[(r["endpoint_path"], r["http_method"])] = mid
    for s in schemas:
        mid = ids[(s["endpoint_path"], s["http_method"])]
        await conn.execute(INSERT_SCHEMA, mid, *(_arg(k, s[k]) for k in SCHEMA_COLUMNS))
    return list(ids.values())


async def _owners(conn: asyncpg.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Refuse routes another row already has (active or draft), naming it."""
    wanted = {route_key(r["http_method"], r["endpoint_path"]) for r in rows}
    taken = []
    for r in await conn.fetch(ROUTES):
        if route_key(r["http_method"], r["endpoint_path"]) in wanted:
            state = "active" if r["is_active"] else "a draft"
            taken.append(
                {
                    "endpoint": f"{r['http_method']} {r['endpoint_path']}",
                    "message": f"{r['http_method']} {r['endpoint_path']} belongs to mapping "
                    f"id={r['id']} ({state})",
                }
            )
    if taken:
        raise refuse(
            "the routes are taken: "
            + "; ".join(t["message"] for t in taken)
            + " (pass another path, or delete those rows)",
            taken,
        )


async def scaffold(
    conn: asyncpg.Connection,
    table: str,
    *,
    path: str | None = None,
    tenant_column: str | None = None,
    tenant_claim: str | None = None,
    roles: Sequence[str] = (),
    apply: bool = False,
    public: bool = False,
    actor: str | None = None,
    default_timeout_ms: int = 30000,
) -> ScaffoldResult:
    """Generate (and with ``apply``, insert as drafts) the endpoint rows of ``table``.

    ``conn`` is set up by :func:`engine.database.init_connection` (the catalogue's codecs).
    Outside a transaction, one is opened (repeatable read); inside one (which must be
    repeatable read, as :func:`~engine.catalog.load_catalog` nests in it), a savepoint is
    used and committing is the caller's. The rows are compiled with the checks of
    ``engine check`` in it; any that would not serve refuses the whole scaffold
    (``SCAFFOLD_REFUSED``, with every reason) and nothing is written. Without ``apply``
    it is rolled back and only the rows and their SQL are returned. ``actor`` is set as
    ``engine.actor`` for the history of the inserted rows. Bad options are 400
    ``INVALID_PARAMETER``; a table or options that cannot work, 422 ``SCAFFOLD_REFUSED``.
    """
    if not isinstance(table, str) or not table.strip():
        raise ApiError("INVALID_PARAMETER", "table must name a table, e.g. things or public.things")
    if isinstance(roles, str):
        roles = [r for r in roles.split(",") if r.strip()]
    texts = {"path": path, "tenant_column": tenant_column, "tenant_claim": tenant_claim,
             "actor": actor}  # fmt: skip
    bad = [name for name, v in texts.items() if v is not None and not isinstance(v, str)]
    if not isinstance(roles, list | tuple):
        bad.append("roles")
    bad += [name for name, v in (("apply", apply), ("public", public)) if not isinstance(v, bool)]
    if bad:
        raise ApiError(
            "INVALID_PARAMETER",
            f"wrong type for {', '.join(bad)}: path, tenant_column, tenant_claim are strings, "
            "roles a list of strings, apply and public true or false",
        )
    name = table.strip()
    found = await read_table(conn, name)
    todo = plan(
        found, path=path, tenant_column=tenant_column or None, tenant_claim=tenant_claim or None,
        roles=roles, public=public,
    )  # fmt: skip
    rows, schemas = generate(todo)
    code = error_code_row(todo)
    status = await conn.fetchval(CODE_STATUS, todo.code)
    if status is not None:
        todo.notes.append(f"uses the existing error code {todo.code} (HTTP {status})")
    await _owners(conn, rows)
    command = command_line(name, path, tenant_column, tenant_claim, todo.roles, public)
    sql = render_sql(todo, rows, schemas, code, command)

    # one catalogue change at a time (as the admin API's): two scaffolds, or a scaffold
    # and an admin edit, of the same routes cannot both pass their checks
    async with catalog_write_lock(conn):
        nested = conn.is_in_transaction()
        transaction = (
            conn.transaction() if nested else conn.transaction(isolation="repeatable_read")
        )
        await transaction.start()
        done = False
        try:
            if actor:
                await conn.execute(SET_ACTOR, actor)
            ids = await _insert(conn, rows, schemas, code)
            catalog = await load_catalog(conn, default_timeout_ms=default_timeout_ms)
            by_id = {s.mapping_id: s for s in catalog.statuses}
            states = tuple(by_id[i] for i in ids)
            broken = [s for s in states if s.reason is not None]
            if broken:
                raise refuse(
                    f"the generated rows for {found.ident} would not serve; nothing was written",
                    [{"endpoint": f"{s.method} {s.path}", "message": s.reason} for s in broken],
                )
            if apply:
                await transaction.commit()
                done = True
        finally:
            if not done:
                await transaction.rollback()
    return ScaffoldResult(
        table=found.ident,
        path=todo.path,
        rows=tuple(rows),
        schemas=tuple(schemas),
        error_codes=(code,),
        sql=sql,
        notes=tuple(todo.notes),
        applied=apply,
        states=states,
    )
