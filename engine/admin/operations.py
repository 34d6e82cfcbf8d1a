"""What an admin can do to the catalogue, shared by the admin API and ``engine endpoints``.

Every change is checked with exactly the checks of ``engine check`` before it
is kept (:mod:`engine.admin.change`): a refusal is ``ENDPOINT_INVALID`` (422)
listing every reason, and nothing is written; a dry run answers the check and
writes nothing. A kept change commits, and the catalogue triggers' ``NOTIFY``
makes every engine process reload within a second. The caller is recorded:
``engine.actor`` is set for the transaction, and the history triggers (sql/013)
write it.

Activating, deactivating and deleting go through the SQL functions of sql/014,
as the admin API's rows do. Versions, diffs and rollbacks are
:mod:`engine.history`'s. Failures are :class:`~engine.errors.ApiError` with the
admin API's codes, so the CLI prints the same reasons the API answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from engine import checks, history
from engine.admin.change import Check, checked_change
from engine.admin.fields import ERROR_CODES, MAPPINGS, SCHEMAS, Column, Table, clean
from engine.catalog import Catalog
from engine.errors import ApiError

T = TypeVar("T")

MAPPING_NAMES = (
    "id", "endpoint_path", "http_method", "service_name", "database_operation", "target_table",
    "target_schema", "query_template", "query_parameters", "result_mapping", "cache_enabled",
    "cache_ttl_seconds", "rate_limit_per_minute", "requires_auth", "required_roles",
    "required_permissions", "is_active", "statement_timeout_ms", "max_concurrent",
    "bulk_import", "description", "version",
    "created_at", "updated_at",
)  # fmt: skip
MAPPING_RETURNING = ", ".join(MAPPING_NAMES)
MAPPING_COLUMNS = ", ".join(f"m.{name}" for name in MAPPING_NAMES)
SELECT_MAPPING = f"SELECT {MAPPING_RETURNING} FROM api_endpoint_mappings WHERE id = $1"
# the state as the engine last wrote it, when it is of the row's current version
STATE_COLUMNS = """CASE WHEN s.version = m.version THEN s.state ELSE 'pending' END AS state,
       CASE WHEN s.version = m.version THEN s.reason END AS reason,
       s.serving_version, COALESCE(s.warnings, '[]'::jsonb) AS warnings, s.checked_at"""
SHOW_ENDPOINT = f"""
SELECT {MAPPING_COLUMNS},
       {STATE_COLUMNS}
FROM api_endpoint_mappings m
LEFT JOIN api_endpoint_status s ON s.endpoint_mapping_id = m.id
WHERE m.id = $1
"""
LIST_ENDPOINTS = f"""
SELECT m.id, m.http_method, m.endpoint_path, m.service_name, m.is_active, m.version,
       {STATE_COLUMNS}
FROM api_endpoint_mappings m
LEFT JOIN api_endpoint_status s ON s.endpoint_mapping_id = m.id
WHERE ($1::text IS NULL OR m.service_name = $1)
ORDER BY m.id
"""
MAPPING_AT = "SELECT id FROM api_endpoint_mappings WHERE endpoint_path = $1 AND http_method = $2"
SCHEMA_COLUMNS = """id, endpoint_mapping_id, schema_name, applies_to, validation_schema,
       validation_rules, strict_mode, allow_unknown_fields, sanitize_input, created_at, updated_at"""
SCHEMA_OF = (
    "SELECT id FROM api_validation_schemas WHERE endpoint_mapping_id = $1 AND applies_to = $2"
)
SCHEMA_MAPPING = "SELECT endpoint_mapping_id FROM api_validation_schemas WHERE id = $1"
MAPPING_EXISTS = "SELECT EXISTS (SELECT 1 FROM api_endpoint_mappings WHERE id = $1)"
ERROR_CODE_COLUMNS = """id, error_code, http_status_code, error_category, error_message,
       suggested_action, error_details, localized_messages, created_at, updated_at"""
NAMING_CODE = """
SELECT id FROM api_endpoint_mappings WHERE result_mapping ->> 'not_found' = ANY($1::text[])
"""
# the functions of sql/014, which the admin API's rows call too
SET_ACTIVE = "SELECT * FROM engine_admin_set_active($1, $2, $3)"
DELETE_ENDPOINT = "SELECT * FROM engine_admin_delete_endpoint($1, $2)"


# ---------------------------------------------------------------------------
# Writing rows (only columns of fields.py; values as $n parameters)
# ---------------------------------------------------------------------------


def _holder(column: Column, n: int) -> str:
    cast = column.sql_type
    return f"${n}::{cast}" if cast else f"${n}"


def _db_refusal(exc: asyncpg.PostgresError, table: Table) -> ApiError:
    """A constraint of ``table`` that refused the row, as the admin API answers it."""
    what = f"{table.name}: {exc}"
    if isinstance(exc, asyncpg.CheckViolationError | asyncpg.NotNullViolationError):
        code = "ERROR_CODE_INVALID" if table is ERROR_CODES else "ENDPOINT_INVALID"
        return ApiError(code, f"The database refused the row: {what}", errors=[{"message": what}])
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return ApiError("REFERENCED_RESOURCE_MISSING", f"The row names a missing row: {what}")
    if isinstance(exc, asyncpg.RestrictViolationError):  # the error-code guard of sql/006
        hint = getattr(exc, "hint", None)  # str(exc) would append "\nHINT:  ..."
        message = getattr(exc, "message", None) or str(exc).split("\n", 1)[0]
        return ApiError("RESOURCE_IN_USE", f"{message}. {hint}" if hint else message)
    return ApiError("CONSTRAINT_VIOLATION", what)


async def _insert(
    conn: asyncpg.Connection, table: Table, values: Mapping[str, Any], returning: str
) -> dict[str, Any]:
    columns = [c for c in table.columns if c.name in values]
    sql = (
        f"INSERT INTO {table.name} ({', '.join(c.name for c in columns)}) "
        f"VALUES ({', '.join(_holder(c, i) for i, c in enumerate(columns, 1))}) "
        f"RETURNING {returning}"
    )
    async with conn.transaction():  # a savepoint: a refusal leaves the transaction usable
        row = await conn.fetchrow(sql, *(values[c.name] for c in columns))
    return dict(row.items())


async def _update(
    conn: asyncpg.Connection,
    table: Table,
    key: Any,
    values: Mapping[str, Any],
    returning: str,
) -> dict[str, Any] | None:
    columns = [c for c in table.columns if c.name in values]
    sets = ", ".join(f"{c.name} = {_holder(c, i)}" for i, c in enumerate(columns, 1))
    sql = (
        f"UPDATE {table.name} SET {sets} WHERE {table.key} = ${len(columns) + 1} "
        f"RETURNING {returning}"
    )
    async with conn.transaction():
        row = await conn.fetchrow(sql, *(values[c.name] for c in columns), key)
    return None if row is None else dict(row.items())


async def _guarded(
    conn: asyncpg.Connection, table: Table, values: Mapping[str, Any], work: Awaitable[T]
) -> T:
    """``work`` with the row's constraint violations answered as the admin API's errors."""
    try:
        return await work
    except asyncpg.UniqueViolationError:
        raise await _duplicate(conn, table, values) from None
    except asyncpg.IntegrityConstraintViolationError as exc:
        raise _db_refusal(exc, table) from None


async def _duplicate(conn: asyncpg.Connection, table: Table, values: Mapping[str, Any]) -> ApiError:
    if table is MAPPINGS:
        mid = await conn.fetchval(
            MAPPING_AT, values.get("endpoint_path"), values.get("http_method")
        )
        detail = (
            f"{values.get('http_method')} {values.get('endpoint_path')} is mapping id={mid} "
            f"already; change it with PATCH /admin/v1/endpoints/{mid}"
        )
    elif table is SCHEMAS:
        sid = await conn.fetchval(
            SCHEMA_OF, values.get("endpoint_mapping_id"), values.get("applies_to", "body")
        )
        detail = (
            f"mapping id={values.get('endpoint_mapping_id')} has a "
            f"{values.get('applies_to', 'body')} schema already (id={sid}); change it with "
            f"PATCH /admin/v1/schemas/{sid}"
        )
    else:
        detail = f"the error code {values.get('error_code')} exists already"
    return ApiError("DUPLICATE_RESOURCE", detail)


def _mapping_row(row: Mapping[str, Any], check: Check) -> dict[str, Any]:
    out = dict(row)
    out.update(check.state_of(int(row["id"])))
    return out


@dataclass(frozen=True)
class Outcome:
    """A change as answered: the row (saved, or as it would be), and the check."""

    row: dict[str, Any]
    check: Check
    saved: bool
    created: bool = False

    def as_dict(self) -> dict[str, Any]:
        if self.saved:
            return self.row
        return {
            **self.row,
            "dry_run": True,
            "would_serve": self.check.ok,
            "problems": list(self.check.problems),
        }


# ---------------------------------------------------------------------------
# Endpoint mappings
# ---------------------------------------------------------------------------


async def list_endpoints(
    conn: asyncpg.Connection, *, service: str | None = None
) -> list[dict[str, Any]]:
    return [dict(r.items()) for r in await conn.fetch(LIST_ENDPOINTS, service)]


async def show_endpoint(conn: asyncpg.Connection, mapping_id: int) -> dict[str, Any]:
    row = await conn.fetchrow(SHOW_ENDPOINT, mapping_id)
    if row is None:
        raise _no_mapping(mapping_id)
    return dict(row.items())


def _no_mapping(mapping_id: int) -> ApiError:
    return ApiError("ENDPOINT_NOT_FOUND", f"No endpoint mapping has id {mapping_id}")


async def save_endpoint(
    conn: asyncpg.Connection,
    body: Mapping[str, Any],
    *,
    mapping_id: int | None = None,
    actor: str | None,
    dry_run: bool = False,
    previous: Catalog | None = None,
    default_timeout_ms: int = 30000,
) -> Outcome:
    """Create a mapping (``mapping_id`` None) or change the columns ``body`` names."""
    creating = mapping_id is None
    values = clean(MAPPINGS, body, creating=creating)

    made: list[int] = []

    async def write(c: asyncpg.Connection) -> dict[str, Any]:
        returning = MAPPING_RETURNING
        if mapping_id is None:
            row = await _guarded(c, MAPPINGS, values, _insert(c, MAPPINGS, values, returning))
            made.append(int(row["id"]))
            return row
        row = await _guarded(
            c, MAPPINGS, values, _update(c, MAPPINGS, mapping_id, values, returning)
        )
        if row is None:
            raise _no_mapping(mapping_id)
        return row

    try:
        row, check = await checked_change(
            conn,
            write,
            lambda r: [int(r["id"])],
            actor=actor,
            dry_run=dry_run,
            previous=previous,
            default_timeout_ms=default_timeout_ms,
        )
    except ApiError as exc:
        _unnumber(exc.errors or (), made)
        raise
    out = _mapping_row(row, check)
    if made and dry_run:  # the check ran on a row that was rolled back: it has no id
        out["id"] = None
        _unnumber(check.problems, made)
    return Outcome(out, check, saved=not dry_run, created=creating)


def _unnumber(problems: Iterable[dict[str, Any]], ids: Iterable[int]) -> None:
    """Problems of a row that was rolled back name no id (it was never written)."""
    gone = set(ids)
    for problem in problems:
        if problem.get("id") in gone and problem.get("table") == "api_endpoint_mappings":
            problem["id"] = None


async def activate(
    conn: asyncpg.Connection,
    mapping_id: int,
    *,
    actor: str | None,
    previous: Catalog | None = None,
    default_timeout_ms: int = 30000,
) -> Outcome:
    """Activate a mapping once the catalogue says it would serve (else ENDPOINT_INVALID)."""
    return await save_endpoint(
        conn,
        {"is_active": True},
        mapping_id=mapping_id,
        actor=actor,
        previous=previous,
        default_timeout_ms=default_timeout_ms,
    )


async def deactivate(
    conn: asyncpg.Connection, mapping_id: int, *, actor: str | None
) -> dict[str, Any]:
    """Deactivate a mapping (a draft from now on); its route stops at once."""
    row = await conn.fetchrow(SET_ACTIVE, mapping_id, False, actor)
    if row is None:
        raise _no_mapping(mapping_id)
    return dict(row.items())


async def delete_endpoint(
    conn: asyncpg.Connection, mapping_id: int, *, actor: str | None
) -> dict[str, Any]:
    """Delete a mapping and the rows that are its own; its history stays."""
    row = await conn.fetchrow(DELETE_ENDPOINT, mapping_id, actor)
    if row is None:
        raise _no_mapping(mapping_id)
    return dict(row.items())


# ---------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------


async def versions(conn: asyncpg.Connection, mapping_id: int) -> list[dict[str, Any]]:
    found = await history.versions(conn, mapping_id)
    if not found and not await conn.fetchval(MAPPING_EXISTS, mapping_id):
        raise _no_mapping(mapping_id)
    return found


async def version(conn: asyncpg.Connection, mapping_id: int, number: int) -> dict[str, Any]:
    found = await history.version(conn, mapping_id, number)
    if found is None:
        raise ApiError(
            "ENDPOINT_VERSION_NOT_FOUND",
            f"Mapping id={mapping_id} has no version {number} (list them with GET "
            f"/admin/v1/endpoints/{mapping_id}/versions)",
        )
    return found


async def diff(
    conn: asyncpg.Connection, mapping_id: int, first: int | None, second: int | None
) -> dict[str, Any]:
    """The field-by-field diff of two versions (default: the latest and the one before)."""
    if second is None:
        listed = await versions(conn, mapping_id)
        second = max((int(v["version"]) for v in listed), default=1)
    if first is None:
        first = max(second - 1, 1)
    a = await version(conn, mapping_id, first)
    b = await version(conn, mapping_id, second)
    return {"id": mapping_id, "from": first, "to": second, **history.diff(a, b)}


async def rollback(
    conn: asyncpg.Connection,
    mapping_id: int,
    number: int,
    *,
    actor: str | None,
    dry_run: bool = False,
    previous: Catalog | None = None,
    default_timeout_ms: int = 30000,
) -> Outcome:
    """Restore version ``number`` as a new version, checked like any edit."""
    old = await version(conn, mapping_id, number)

    async def write(c: asyncpg.Connection) -> dict[str, Any]:
        try:
            restored = await history.restore(c, mapping_id, old["definition"], actor)
        except history.HistoryError as exc:
            raise ApiError(
                "ENDPOINT_INVALID", f"Nothing was written: {exc}", errors=[{"message": str(exc)}]
            ) from None
        row = await c.fetchrow(SELECT_MAPPING, mapping_id)
        if row is None:
            raise _no_mapping(mapping_id)
        return {
            **dict(row.items()),
            "restored": {"from_version": number, **restored},
        }

    row, check = await checked_change(
        conn,
        write,
        lambda r: [int(r["id"])],
        actor=actor,
        dry_run=dry_run,
        previous=previous,
        default_timeout_ms=default_timeout_ms,
    )
    return Outcome(_mapping_row(row, check), check, saved=not dry_run)


# ---------------------------------------------------------------------------
# Validation schemas and error codes
# ---------------------------------------------------------------------------


def _with_mappings(row: Mapping[str, Any], check: Check) -> dict[str, Any]:
    out = dict(row)
    out["endpoints"] = [
        {"id": mid, "method": s.method, "path": s.path, **check.state_of(mid)}
        for mid, s in sorted(check.statuses.items())
    ]
    return out


async def save_schema(
    conn: asyncpg.Connection,
    body: Mapping[str, Any],
    *,
    schema_id: int | None = None,
    actor: str | None,
    dry_run: bool = False,
    previous: Catalog | None = None,
    default_timeout_ms: int = 30000,
) -> Outcome:
    """Create or change a validation schema; its mapping must still serve (or be no worse)."""
    creating = schema_id is None
    values = clean(SCHEMAS, body, creating=creating)
    was: list[int] = []

    async def write(c: asyncpg.Connection) -> dict[str, Any]:
        mid = values.get("endpoint_mapping_id")
        if mid is not None and not await c.fetchval(MAPPING_EXISTS, mid):
            raise ApiError(
                "REFERENCED_RESOURCE_MISSING",
                f"endpoint_mapping_id {mid} is not a mapping",
                errors=[{"pointer": "/endpoint_mapping_id", "message": "no such mapping"}],
            )
        if schema_id is None:
            return await _guarded(c, SCHEMAS, values, _insert(c, SCHEMAS, values, SCHEMA_COLUMNS))
        old = await c.fetchval(SCHEMA_MAPPING, schema_id)
        if old is None:
            raise ApiError("SCHEMA_NOT_FOUND", f"No validation schema has id {schema_id}")
        was.append(old)
        row = await _guarded(
            c, SCHEMAS, values, _update(c, SCHEMAS, schema_id, values, SCHEMA_COLUMNS)
        )
        assert row is not None
        return row

    row, check = await checked_change(
        conn,
        write,
        lambda r: {int(r["endpoint_mapping_id"]), *was},
        actor=actor,
        dry_run=dry_run,
        strict=False,
        previous=previous,
        default_timeout_ms=default_timeout_ms,
    )
    return Outcome(_with_mappings(row, check), check, saved=not dry_run, created=creating)


def _code_problems(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"message": w} for w in checks.error_code_warnings(row)]


async def save_error_code(
    conn: asyncpg.Connection,
    body: Mapping[str, Any],
    *,
    code: str | None = None,
    actor: str | None,
    dry_run: bool = False,
    previous: Catalog | None = None,
    default_timeout_ms: int = 30000,
) -> Outcome:
    """Create or change an error code; it must be well-formed and break no mapping."""
    creating = code is None
    values = clean(ERROR_CODES, body, creating=creating)
    names: list[str] = []

    async def write(c: asyncpg.Connection) -> dict[str, Any]:
        if code is None:
            row = await _guarded(
                c, ERROR_CODES, values, _insert(c, ERROR_CODES, values, ERROR_CODE_COLUMNS)
            )
        else:
            found = await _guarded(
                c, ERROR_CODES, values, _update(c, ERROR_CODES, code, values, ERROR_CODE_COLUMNS)
            )
            if found is None:
                raise ApiError("ERROR_CODE_NOT_FOUND", f"No error code is named {code}")
            row = found
        problems = _code_problems(row)
        if problems:
            raise ApiError(
                "ERROR_CODE_INVALID",
                f"Nothing was written: {problems[0]['message']}",
                errors=problems,
            )
        names.extend(n for n in (code, row["error_code"]) if n)
        ids = await c.fetch(NAMING_CODE, names)
        row["_mappings"] = [r["id"] for r in ids]
        return row

    row, check = await checked_change(
        conn,
        write,
        lambda r: r["_mappings"],
        actor=actor,
        dry_run=dry_run,
        strict=False,
        previous=previous,
        default_timeout_ms=default_timeout_ms,
    )
    row.pop("_mappings", None)
    return Outcome(_with_mappings(row, check), check, saved=not dry_run, created=creating)
