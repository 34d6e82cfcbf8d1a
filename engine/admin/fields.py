"""The columns an admin API body may set, per catalogue table, and how each is checked (pure).

A body is a JSON object naming columns (``{"endpoint_path": "/x", "query_template":
"SELECT 1"}``). :func:`clean` checks every field at once and raises one
``VALIDATION_ERROR`` listing each bad one (``pointer`` ``/name``): a name that is
not a column, a column the engine sets itself (``id``, ``version``, the state),
a value of the wrong JSON type, out of range or too long, a required column
missing on create. Deeper checks (does the template prepare, does the schema
compile) are the catalogue's, run on the written row (:mod:`engine.admin.operations`).

Column names here are constants: SQL built from them never takes a name from a request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ApiError
from engine.spec import METHODS, OPERATIONS

INT4_MAX = 2**31 - 1
DEFAULT_OPERATION = {"GET": "SELECT", "POST": "INSERT", "PUT": "UPDATE", "PATCH": "UPDATE"}


@dataclass(frozen=True)
class Column:
    """One settable column: its JSON kind and limits."""

    name: str
    kind: str  # text | integer | boolean | json | object | array | texts
    nullable: bool = True
    required: bool = False  # on create
    choices: tuple[str, ...] = ()
    max_length: int | None = None
    minimum: int | None = None
    maximum: int = INT4_MAX
    upper: bool = False  # stored upper-cased (http_method, database_operation)
    starts_with: str | None = None

    @property
    def sql_type(self) -> str | None:
        """The cast its placeholder needs (``$n::jsonb``), or None."""
        return {"json": "jsonb", "object": "jsonb", "array": "jsonb", "texts": "text[]"}.get(
            self.kind
        )


@dataclass(frozen=True)
class Table:
    """A catalogue table as the admin API writes it."""

    name: str
    key: str  # the column a route names the row by
    columns: tuple[Column, ...]
    # columns (and fields of its answers) the engine sets itself: refused, with a reason
    read_only: Mapping[str, str] = field(default_factory=dict)

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


_ENGINE_SETS = "the engine sets it"
_STATE = "the state is the engine's check of the row, not a column"

MAPPINGS = Table(
    "api_endpoint_mappings",
    "id",
    (
        Column(
            "endpoint_path", "text", nullable=False, required=True, max_length=200, starts_with="/"
        ),
        Column("http_method", "text", nullable=False, required=True, choices=METHODS, upper=True),
        Column("service_name", "text", nullable=False, required=True, max_length=100),
        Column("database_operation", "text", nullable=False, choices=OPERATIONS, upper=True),
        Column("target_table", "text", max_length=100),
        Column("target_schema", "text", max_length=100),
        Column("query_template", "text", nullable=False, required=True),
        Column("query_parameters", "array", nullable=False),
        Column("result_mapping", "object", nullable=False),
        Column("cache_enabled", "boolean", nullable=False),
        Column("cache_ttl_seconds", "integer", minimum=0),
        Column("rate_limit_per_minute", "integer", minimum=1),
        Column("requires_auth", "boolean", nullable=False),
        Column("required_roles", "texts", nullable=False),
        Column("required_permissions", "texts", nullable=False),
        Column("is_active", "boolean", nullable=False),
        Column("statement_timeout_ms", "integer", minimum=1),
        Column("max_concurrent", "integer", minimum=1),
        Column("bulk_import", "object"),  # NDJSON/CSV import (engine/bulk.py); null: none
        Column("description", "text"),
    ),
    {
        "id": "the database numbers the rows",
        "version": "every change bumps it (sql/004)",
        "created_at": _ENGINE_SETS,
        "updated_at": _ENGINE_SETS,
        "state": _STATE,
        "reason": _STATE,
        "serving_version": _STATE,
        "warnings": _STATE,
        "checked_at": _STATE,
    },
)

SCHEMAS = Table(
    "api_validation_schemas",
    "id",
    (
        Column("endpoint_mapping_id", "integer", nullable=False, required=True, minimum=1),
        Column("schema_name", "text", nullable=False, required=True, max_length=100),
        Column("validation_schema", "json", nullable=False, required=True),
        Column("validation_rules", "json"),
        Column("strict_mode", "boolean"),
        Column("allow_unknown_fields", "boolean"),
        Column("sanitize_input", "boolean"),
        Column("applies_to", "text", nullable=False, choices=("body", "query")),
    ),
    {
        "id": "the database numbers the rows",
        "created_at": _ENGINE_SETS,
        "updated_at": _ENGINE_SETS,
        "http_method": "it is the mapping's (endpoint_mapping_id names the mapping)",
        "endpoint_path": "it is the mapping's (endpoint_mapping_id names the mapping)",
        "endpoint": "it is the mapping's state, not a column",
    },
)

ERROR_CODES = Table(
    "api_error_codes",
    "error_code",
    (
        Column("error_code", "text", nullable=False, required=True, max_length=64),
        Column("error_message", "text", nullable=False, required=True),
        Column("error_category", "text", nullable=False, required=True, max_length=50),
        Column(
            "http_status_code", "integer", nullable=False, required=True, minimum=400, maximum=599
        ),
        Column("error_details", "json"),
        Column("suggested_action", "text"),
        Column("localized_messages", "object", nullable=False),
    ),
    {
        "id": "the database numbers the rows",
        "created_at": _ENGINE_SETS,
        "updated_at": _ENGINE_SETS,
        "engine_code": "it says whether the engine answers with the code itself",
    },
)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _problem(column: Column, value: Any) -> tuple[str | None, Any]:
    """(why ``value`` does not fit ``column`` or None, the value as stored)."""
    if value is None:
        return (None if column.nullable else "must not be null"), None
    kind = column.kind
    given = _json_type(value)
    if kind == "text":
        if not isinstance(value, str):
            return f"must be a string, not a JSON {given}", value
        if "\x00" in value:
            return "must not contain NUL characters", value
        if column.upper:
            value = value.upper()
        if column.choices and value not in column.choices:
            return f"must be one of {', '.join(column.choices)}", value
        if column.max_length is not None and len(value) > column.max_length:
            return f"must be at most {column.max_length} characters", value
        if not column.nullable and not value.strip():
            return "must not be empty", value
        if column.starts_with and not value.startswith(column.starts_with):
            return f"must start with '{column.starts_with}'", value
        return None, value
    if kind == "integer":
        if given != "integer":
            return f"must be an integer, not a JSON {given}", value
        low = column.minimum if column.minimum is not None else -INT4_MAX - 1
        if not low <= value <= column.maximum:
            return f"must be between {low} and {column.maximum}", value
        return None, value
    if kind == "boolean":
        return (None if given == "boolean" else f"must be true or false, not a JSON {given}"), value
    if kind == "object" and given != "object":
        return f"must be a JSON object, not a JSON {given}", value
    if kind == "array" and given != "array":
        return f"must be a JSON array, not a JSON {given}", value
    if kind in ("json", "object", "array") and _has_nul(value):
        return "must not contain NUL characters (\\u0000): jsonb cannot store them", value
    if kind == "texts":
        if given != "array" or not all(isinstance(v, str) for v in value):
            return "must be an array of strings", value
        if any("\x00" in v for v in value):
            return "must not contain NUL characters", value
    return None, value


def _has_nul(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def clean(table: Table, body: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
    """The columns ``body`` sets, checked and normalised; every problem raised at once."""
    errors: list[dict[str, Any]] = []
    out: dict[str, Any] = {}
    for name, value in body.items():
        column = table.column(name)
        if column is None:
            why = table.read_only.get(name)
            message = (
                f"'{name}' cannot be set: {why}"
                if why
                else f"'{name}' is not a column of {table.name} (known: "
                + ", ".join(c.name for c in table.columns)
                + ")"
            )
            errors.append({"pointer": f"/{_escape(name)}", "message": message})
            continue
        problem, stored = _problem(column, value)
        if problem:
            errors.append({"pointer": f"/{name}", "message": f"{name} {problem}"})
        else:
            out[name] = stored
    if creating:
        if table is MAPPINGS and "database_operation" not in out and "http_method" in out:
            out["database_operation"] = DEFAULT_OPERATION.get(out["http_method"], "DELETE")
        for column in table.columns:
            if column.required and column.name not in body:
                errors.append(
                    {"pointer": f"/{column.name}", "message": f"{column.name} is required"}
                )
    elif not body:
        errors.append({"pointer": "", "message": "the body names no column to change"})
    if errors:
        raise ApiError(
            "VALIDATION_ERROR", f"The body is not a valid {table.name} row", errors=errors
        )
    return out


def _escape(name: str) -> str:
    """``name`` as a JSON Pointer token (RFC 6901)."""
    return name.replace("~", "~0").replace("/", "~1")
