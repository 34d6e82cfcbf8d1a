"""How the admin API's built-in routes appear in ``/openapi.json`` (pure).

The admin API's rows (sql/014) are documented like every row, under their
``service_name`` ``admin``; the built-in routes of :mod:`engine.admin.api` are
described here, under the same tag, with the body schemas derived from the
columns of :mod:`engine.admin.fields`. Each is marked ``x-engine-builtin``.
"""

from __future__ import annotations

import copy
from typing import Any

from engine.admin import PREFIX, ROLE, SERVICE
from engine.admin.fields import ERROR_CODES, MAPPINGS, SCHEMAS, Column, Table
from engine.errors import PROBLEM_CONTENT_TYPE
from engine.openapi_schemas import AUTH, JSON, ref

_ROW = {"type": "object", "description": "the row as saved, with its state"}
_DRY_RUN = {
    "name": "dry_run",
    "in": "query",
    "description": "true: answer the check (would_serve, problems) and write nothing",
    "schema": {"type": "boolean", "default": False},
}


def _id(name: str = "id", description: str = "the mapping's id") -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "integer", "minimum": 1},
    }


def _column_schema(column: Column) -> dict[str, Any]:
    kind = column.kind
    if kind == "text":
        schema: dict[str, Any] = {"type": "string"}
        if column.choices:
            schema["enum"] = list(column.choices)
        if column.max_length:
            schema["maxLength"] = column.max_length
    elif kind == "integer":
        schema = {"type": "integer", "maximum": column.maximum}
        if column.minimum is not None:
            schema["minimum"] = column.minimum
    elif kind == "boolean":
        schema = {"type": "boolean"}
    elif kind == "object":
        schema = {"type": "object"}
    elif kind == "array":
        schema = {"type": "array"}
    elif kind == "texts":
        schema = {"type": "array", "items": {"type": "string"}}
    else:
        schema = {}
    if column.nullable and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    return schema


def body_schema(table: Table, *, creating: bool) -> dict[str, Any]:
    """The JSON Schema of a create (required columns) or update (any, at least one) body."""
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {c.name: _column_schema(c) for c in table.columns},
    }
    if creating:
        schema["required"] = [c.name for c in table.columns if c.required]
    else:
        schema["minProperties"] = 1
    return schema


def _errors(*statuses: int) -> dict[str, Any]:
    problem = {PROBLEM_CONTENT_TYPE: {"schema": ref("schemas", "Problem")}}
    described = {
        400: "The body or a parameter is not valid (VALIDATION_ERROR, INVALID_JSON, ...)",
        401: "No valid credential (AUTHENTICATION_REQUIRED, INVALID_TOKEN)",
        403: f"The caller lacks the role {ROLE} (INSUFFICIENT_PERMISSIONS)",
        404: "No such row or version",
        409: "The row exists already, or is still in use (DUPLICATE_RESOURCE, RESOURCE_IN_USE)",
        422: "The change would not serve; errors lists every reason and nothing was written",
    }
    out = {
        str(s): {"description": described[s], "content": copy.deepcopy(problem)} for s in statuses
    }
    out["default"] = {"description": "Another error", "content": copy.deepcopy(problem)}
    return out


def _operation(
    name: str,
    summary: str,
    description: str,
    *,
    parameters: tuple[dict[str, Any], ...] = (),
    body: dict[str, Any] | None = None,
    success: int = 200,
    errors: tuple[int, ...] = (400, 401, 403, 404, 409, 422),
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "tags": [SERVICE],
        "summary": summary,
        "description": description,
        "operationId": name,
        "parameters": [*parameters, ref("parameters", "RequestId")],
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    answers: dict[str, Any] = {
        str(success): {"description": "Done", "content": {JSON: {"schema": dict(_ROW)}}}
    }
    if success == 201:
        answers["200"] = {
            "description": "A dry run: the check, nothing written",
            "content": {JSON: {"schema": dict(_ROW)}},
        }
    op["responses"] = {**answers, **_errors(*errors)}
    op["security"] = copy.deepcopy(AUTH)
    op["x-required-roles"] = [ROLE]
    op["x-engine-builtin"] = True
    return op


_CHECKED = (
    "The row is compiled with the checks of `engine check` first: if it would not serve "
    "(or would stop another row from serving), the answer is 422 `ENDPOINT_INVALID` "
    "listing every reason, and nothing is written. Every engine process serves the change "
    "within a second."
)


def operations() -> dict[str, dict[str, dict[str, Any]]]:
    """path -> method (lower case) -> operation, for every built-in admin route."""
    return {
        f"{PREFIX}/endpoints": {
            "post": _operation(
                "admin_create_endpoint",
                "Create an endpoint mapping, checked first",
                _CHECKED + " Answers the saved row and its state (201, Location).",
                parameters=(_DRY_RUN,),
                body=body_schema(MAPPINGS, creating=True),
                success=201,
            )
        },
        f"{PREFIX}/endpoints/{{id}}": {
            "patch": _operation(
                "admin_update_endpoint",
                "Change the columns of an endpoint mapping, checked first",
                _CHECKED + " Only the columns named change.",
                parameters=(_id(), _DRY_RUN),
                body=body_schema(MAPPINGS, creating=False),
            )
        },
        f"{PREFIX}/endpoints/{{id}}/diff": {
            "get": _operation(
                "admin_diff_endpoint",
                "Compare two versions of an endpoint",
                "A field-by-field diff of the two definitions (`changed`) with a unified "
                "text diff of the template (`template_diff`). Without from/to: the last "
                "version against the one before.",
                parameters=(
                    _id(),
                    {"name": "from", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                    {"name": "to", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                ),
                errors=(400, 401, 403, 404),
            )
        },
        f"{PREFIX}/endpoints/{{id}}/rollback": {
            "post": _operation(
                "admin_rollback_endpoint",
                "Restore an earlier version of an endpoint as a new version",
                "The definition of that version (the mapping, its schemas, rules, templates "
                "and cache settings) is written back as a new version, checked like any "
                "edit: refused (422) when it would not serve today.",
                parameters=(_id(), _DRY_RUN),
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["version"],
                    "properties": {"version": {"type": "integer", "minimum": 1}},
                },
            )
        },
        f"{PREFIX}/schemas": {
            "post": _operation(
                "admin_create_schema",
                "Add a validation schema to a mapping, checked first",
                "A schema that does not compile, or that stops its mapping from serving, "
                "is refused (422) and nothing is written.",
                parameters=(_DRY_RUN,),
                body=body_schema(SCHEMAS, creating=True),
                success=201,
            )
        },
        f"{PREFIX}/schemas/{{id}}": {
            "patch": _operation(
                "admin_update_schema",
                "Change a validation schema, checked first",
                "Refused (422) when its mapping would stop serving.",
                parameters=(_id(description="the schema's id"), _DRY_RUN),
                body=body_schema(SCHEMAS, creating=False),
            )
        },
        f"{PREFIX}/error-codes": {
            "post": _operation(
                "admin_create_error_code",
                "Add an error code, checked first",
                "A malformed code (not a URN segment, an empty message, a non-text "
                "localized message) is 422 `ERROR_CODE_INVALID`.",
                parameters=(_DRY_RUN,),
                body=body_schema(ERROR_CODES, creating=True),
                success=201,
            )
        },
        f"{PREFIX}/error-codes/{{code}}": {
            "patch": _operation(
                "admin_update_error_code",
                "Change an error code, checked first",
                "Refused when malformed (422 `ERROR_CODE_INVALID`), when a mapping would "
                "stop serving (422 `ENDPOINT_INVALID`), or when a code in use is renamed "
                "(409 `RESOURCE_IN_USE`).",
                parameters=(
                    {"name": "code", "in": "path", "required": True, "schema": {"type": "string"}},
                    _DRY_RUN,
                ),
                body=body_schema(ERROR_CODES, creating=False),
            )
        },
        f"{PREFIX}/scaffold": {
            "post": _operation(
                "admin_scaffold",
                "Generate the endpoint rows of a table",
                "Reads the table from the database catalogue and generates list, get, "
                "create, update and delete rows with a JSON Schema from its columns. "
                "Without apply: the SQL; with apply: the rows inserted as drafts, and "
                "their states.",
                body={
                    "type": "object",
                    "required": ["table"],
                    "properties": {
                        "table": {"type": "string"},
                        "path": {"type": "string"},
                        "tenant_column": {"type": "string"},
                        "tenant_claim": {"type": "string"},
                        "roles": {"type": "array", "items": {"type": "string"}},
                        "apply": {"type": "boolean", "default": False},
                    },
                },
            )
        },
    }
