"""The rows that publish a table: five mapping rows, two body schemas, one error code (pure).

:func:`plan` settles what the caller asked for against the table (the tenant
column and claim, the key in the path, the path, the roles), refusing what cannot
work; :func:`generate` writes the rows:

| row | template | answer |
|---|---|---|
| ``GET /path`` | ``SELECT cols FROM t [WHERE tenant = $1] ORDER BY key`` | keyset pages on the key (50, at most 500) |
| ``GET /path/{id}`` | ``... WHERE key = $1 [AND tenant = $2]`` | object, 404 ``<TABLE>_NOT_FOUND`` |
| ``POST /path`` | ``INSERT ... VALUES (..., COALESCE($n, default)) RETURNING cols`` | 201 object |
| ``PATCH /path/{id}`` | ``UPDATE t SET col = COALESCE($n, col) ... RETURNING cols`` | object, 404 |
| ``DELETE /path/{id}`` | ``DELETE FROM t WHERE key = $1 [AND tenant = $2]`` | 204, 404 |

Identifiers are quoted by PostgreSQL (``quote_ident``); every value is a ``$n``
placeholder. The tenant column is bound ``in: auth`` from the claim, never a body
field, and is not answered. Identity, serial and generated columns, and a key with
a default, are answered and never written; a column with a default is optional in
the create body (absent: the default). The create schema requires the NOT NULL
columns without a default and accepts null only where it stores NULL; the update
schema requires nothing, refuses null (``COALESCE`` keeps the old value) and needs
one field at least. Both have ``allow_unknown_fields = false``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ApiError
from engine.scaffold.model import Column, Table, refuse
from engine.spec import reserved_path

PAGE_LIMIT, PAGE_MAX_LIMIT = 50, 500
RATE_LIMIT = 100  # the column default of api_endpoint_mappings, written out for review
KEY_TYPES = ("integer", "uuid", "string", "date", "timestamp")  # what a path segment carries
MAX_PATH = 200  # api_endpoint_mappings.endpoint_path is varchar(200)
KEY_PATTERN = "^[^/]+$"  # a text key is one path segment
_PATH_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAPPING_COLUMNS = (
    "endpoint_path", "http_method", "service_name", "database_operation", "target_table",
    "target_schema", "query_template", "query_parameters", "result_mapping", "cache_enabled",
    "rate_limit_per_minute", "requires_auth", "required_roles", "is_active", "description",
)  # fmt: skip
JSONB_COLUMNS = {"query_parameters", "result_mapping", "validation_schema", "localized_messages"}
SCHEMA_COLUMNS = (
    "schema_name", "validation_schema", "strict_mode", "allow_unknown_fields", "sanitize_input",
    "applies_to",
)  # fmt: skip


@dataclass
class Plan:
    table: Table
    key: list[Column]  # primary key columns addressed by the path (the tenant column excepted)
    key_names: list[str]  # their path parameter names
    tenant: Column | None
    claim: str | None
    path: str
    item_path: str
    code: str
    roles: list[str]
    requires_auth: bool
    keyset: bool
    notes: list[str] = field(default_factory=list)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9._~-]+", "-", name.lower()).strip("-") or "rows"


def _error_code(table: str) -> str:
    stem = re.sub(r"[^A-Z0-9]+", "_", table.upper()).strip("_") or "ROW"
    return f"{stem[: 64 - len('_NOT_FOUND')]}_NOT_FOUND"


def _check_path(path: str) -> str:
    path = path.strip()
    if not path.startswith("/") or path.rstrip("/") == "":
        raise refuse(f"the path must start with '/' and name the collection, not {path!r}")
    path = path.rstrip("/")
    control = re.search(r"[\x00-\x1f\x7f-\x9f]", path)
    if control:
        raise refuse(
            f"the path {path!r} has the control character {control[0]!r}: a path is printable"
        )
    bad = re.search(r"[\s{}?#%\\]", path)
    if bad:
        raise refuse(
            f"the path {path!r} has {bad[0]!r}: give a plain collection path such as "
            "/api/v1/things (the key segments are added)"
        )
    for candidate in (path, path + "/{id}"):
        taken = reserved_path(candidate)  # /admin/v1 too: a scaffold is never the admin's
        if taken:
            raise refuse(f"{path} is under {taken}, the engine's own path (reserved)")
    if len(path) > 150:
        raise refuse(f"the path is {len(path)} characters long (at most 150 leave room for keys)")
    return path


def _key_names(key: Sequence[Column], others: set[str]) -> list[str]:
    """Path parameter names of the key columns: {id} for a single key, else the columns'."""
    names: list[str] = []
    for c in key:
        name = "id" if len(key) == 1 and "id" not in others else c.name
        if not _PATH_NAME.fullmatch(name):
            name = re.sub(r"\W+", "_", name).strip("_") or "key"
            name = name if _PATH_NAME.fullmatch(name) else f"k_{name}"
        while name in others or name in names:
            name += "_key"
        names.append(name)
    return names


def plan(
    table: Table,
    *,
    path: str | None = None,
    tenant_column: str | None = None,
    tenant_claim: str | None = None,
    roles: Sequence[str] = (),
    public: bool = False,
) -> Plan:
    """What to generate for ``table``, or SCAFFOLD_REFUSED saying why the options cannot work."""
    notes = list(table.notes)
    if tenant_claim is not None and tenant_column is None:
        raise refuse("a tenant claim needs a tenant column (--tenant-column)")
    tenant = None
    if tenant_column is not None:
        tenant = table.column(tenant_column)
        if tenant is None:
            names = ", ".join(c.name for c in table.columns)
            raise refuse(f"{table.ident} has no column {tenant_column!r} (its columns: {names})")
        if tenant.generated or tenant.identity:
            raise refuse(f"the tenant column {tenant_column!r} is generated by the database")
        if tenant.param_type not in KEY_TYPES or tenant.cast:
            raise refuse(
                f"the tenant column {tenant_column!r} is {tenant.type_sql}: a tenant is bound "
                "from a claim as an integer, uuid, text, date or timestamp"
            )
        tenant_claim = tenant_claim or "tenant_id"
    else:
        notes.extend(
            f"{table.ident} has a column {guess!r} but no tenant was asked for: every caller "
            f"sees every row (--tenant-column {guess} binds it from the caller's claim)"
            for guess in ("tenant_id", "tenant")
            if table.column(guess) is not None
        )
    if public and (roles or tenant):
        raise refuse("public endpoints cannot have roles or a tenant (those need a caller)")
    key = [c for c in table.columns if c.name in table.key and c is not tenant]
    key.sort(key=lambda c: table.key.index(c.name))
    if not key:
        raise refuse(
            f"the primary key of {table.ident} is the tenant column alone (one row per tenant): "
            "there is nothing to address in a path; write these rows by hand"
        )
    for c in key:
        if c.param_type not in KEY_TYPES or c.cast:
            raise refuse(
                f"the primary key column {c.name!r} is {c.type_sql}: a key in a path must be "
                "an integer, uuid, text, enum, date or timestamp"
            )
    others = {c.name for c in table.columns if c not in key and c is not tenant}
    key_names = _key_names(key, others)
    keyset = not any(c.is_domain for c in key)
    if not keyset:
        notes.append("the list pages by offset: a key column of a domain type cannot be a keyset")
    base_path = _check_path(path or f"/api/v1/{_slug(table.name)}")
    item_path = base_path + "".join(f"/{{{n}}}" for n in key_names)
    if len(item_path) > MAX_PATH:
        raise refuse(
            f"the item path {item_path} is {len(item_path)} characters long (at most "
            f"{MAX_PATH}, endpoint_path's limit): pass a shorter --path"
        )
    for c in key:
        if c.param_type == "string":
            notes.append(
                f"key column {c.name} is text: a value with '/' could not be addressed in one "
                f"path segment, so the create schema refuses it (pattern {KEY_PATTERN})"
            )
    clean_roles = []
    for role in roles:
        if not isinstance(role, str) or not role.strip():
            raise ApiError("INVALID_PARAMETER", "roles must be non-empty strings")
        clean_roles.append(role.strip())
    return Plan(
        table=table,
        key=key,
        key_names=key_names,
        tenant=tenant,
        claim=tenant_claim,
        path=base_path,
        item_path=item_path,
        code=_error_code(table.name),
        roles=clean_roles,
        requires_auth=not public,
        keyset=keyset,
        notes=notes,
    )


def _property(c: Column, *, nullable: bool) -> dict[str, Any]:
    schema = json.loads(json.dumps(c.schema))  # a copy per body
    if nullable:
        kind = schema.get("type")
        if isinstance(kind, str):
            schema["type"] = [kind, "null"]
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
    elif not schema:
        schema = {"not": {"type": "null"}}
    return schema


def _add_pattern(schema: dict[str, Any], pattern: str) -> None:
    if "pattern" in schema:
        schema.setdefault("allOf", []).append({"pattern": pattern})
    else:
        schema["pattern"] = pattern


def _param(name: str, source: str, c: Column, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "in": source, "type": c.param_type}
    if c.items:
        out["items"] = c.items
    out.update(extra)
    return out


def _wrap(items: Sequence[str], indent: str) -> str:
    """``items`` joined by commas, in lines under 89 characters."""
    lines: list[list[str]] = [[]]
    width = len(indent)
    for item in items:
        if lines[-1] and width + len(item) + 2 > 88:
            lines.append([])
            width = len(indent)
        lines[-1].append(item)
        width += len(item) + 2
    return (",\n" + indent).join(", ".join(line) for line in lines)


def generate(p: Plan) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The five mapping rows (four when nothing can be updated) and the two body schemas."""
    t = p.table
    returned = [c for c in t.columns if c is not p.tenant]
    select = _wrap([c.ident for c in returned], "       ")
    whose = " of the caller's tenant" if p.tenant else ""
    key_desc = ", ".join(c.name for c in p.key)
    key_params = [
        _param(n, "path", c, required=True, description=f"the row's {c.name}")
        for n, c in zip(p.key_names, p.key, strict=True)
    ]
    tenant_param = (
        [_param(p.tenant.name, "auth", p.tenant, claim=p.claim, required=True)] if p.tenant else []
    )

    def where(first: int) -> str:
        terms = [f"{c.ident} = ${first + i}" for i, c in enumerate(p.key)]
        if p.tenant:
            terms.append(f"{p.tenant.ident} = ${first + len(p.key)}")
        return "WHERE " + "\n  AND ".join(terms)

    def row(method: str, operation: str, path: str, sql: str, params: list[dict[str, Any]],
            result: dict[str, Any], description: str) -> dict[str, Any]:  # fmt: skip
        return {
            "endpoint_path": path, "http_method": method, "service_name": t.name,
            "database_operation": operation, "target_table": t.name, "target_schema": t.schema,
            "query_template": sql, "query_parameters": params, "result_mapping": result,
            "cache_enabled": False, "rate_limit_per_minute": RATE_LIMIT,
            "requires_auth": p.requires_auth, "required_roles": list(p.roles),
            "is_active": False, "description": description,
        }  # fmt: skip

    paginate: dict[str, Any] = {"limit": PAGE_LIMIT, "max_limit": PAGE_MAX_LIMIT}
    if p.keyset:
        paginate["keyset"] = [c.name for c in p.key]
    order = ", ".join(c.ident for c in p.key)
    list_sql = f"SELECT {select}\nFROM {t.ident}\n"
    if p.tenant:
        list_sql += f"WHERE {p.tenant.ident} = $1\n"
    list_sql += f"ORDER BY {order}"
    pages = f"keyset pages by {key_desc}" if p.keyset else f"pages by {key_desc}"
    rows = [
        row("GET", "SELECT", p.path, list_sql, list(tenant_param),
            {"shape": "list", "paginate": paginate},
            f"List {t.name} rows{whose}, {PAGE_LIMIT} a page ({pages}: follow "
            "pagination.next)."),
        row("GET", "SELECT", p.item_path, f"SELECT {select}\nFROM {t.ident}\n{where(1)}",
            [*key_params, *tenant_param], {"shape": "object", "not_found": p.code},
            f"One {t.name} row{whose} by {key_desc}; 404 {p.code} when there is none."),
    ]  # fmt: skip

    writable = [
        c for c in t.columns
        if c is not p.tenant and not c.generated and not c.identity and not c.serial
        and not (c in p.key and c.has_default)
    ]  # fmt: skip
    insert_cols, values, params = [], [], list(tenant_param)
    if p.tenant:
        insert_cols.append(p.tenant.ident)
        values.append("$1")
    create_props: dict[str, Any] = {}
    required = []
    for c in writable:
        n = len(params) + 1
        must = c.not_null and not c.has_default
        insert_cols.append(c.ident)
        if c.default is not None:
            default = c.default  # cast, so that it cannot change the placeholder's type
            if not default.endswith(f"::{c.bare_type_sql}"):
                default = f"({default})::{c.bare_type_sql}"
            values.append(f"COALESCE({c.placeholder(n)}, {default})")
        else:
            values.append(c.placeholder(n))
        params.append(_param(c.name, "body", c, **({"required": True} if must else {})))
        create_props[c.name] = _property(c, nullable=not c.not_null and not c.has_default)
        if c in p.key and c.param_type == "string":
            _add_pattern(create_props[c.name], KEY_PATTERN)
        if must:
            required.append(c.name)
    if insert_cols:
        create_sql = (
            f"INSERT INTO {t.ident} ({_wrap(insert_cols, '    ')})\n"
            f"VALUES ({_wrap(values, '        ')})\nRETURNING {select}"
        )
    else:
        create_sql = f"INSERT INTO {t.ident} DEFAULT VALUES\nRETURNING {select}"
    rows.append(
        row("POST", "INSERT", p.path, create_sql, params, {"shape": "object", "status": 201},
            f"Create a {t.name} row{whose}: fields left out take the column's default; "
            "answers the row (201).")
    )  # fmt: skip
    schemas = [
        {
            "endpoint_path": p.path, "http_method": "POST", "schema_name": f"{t.name}_create",
            "validation_schema": _object_schema(create_props, required),
            "strict_mode": True, "allow_unknown_fields": False, "sanitize_input": True,
            "applies_to": "body",
        }
    ]  # fmt: skip

    updatable = [c for c in writable if c not in p.key]
    if updatable:
        first = len(p.key) + (1 if p.tenant else 0) + 1
        sets = [
            f"{c.ident} = COALESCE({c.placeholder(first + i)}, {c.ident})"
            for i, c in enumerate(updatable)
        ]
        update_sql = (
            f"UPDATE {t.ident} SET\n    " + ",\n    ".join(sets) + f"\n{where(1)}\n"
            f"RETURNING {select}"
        )
        rows.append(
            row("PATCH", "UPDATE", p.item_path, update_sql,
                [*key_params, *tenant_param,
                 *(_param(c.name, "body", c) for c in updatable)],
                {"shape": "object", "not_found": p.code},
                f"Partial update of a {t.name} row{whose}: fields left out keep their value "
                f"(null cannot clear a column); 404 {p.code} when there is none.")
        )  # fmt: skip
        props = {c.name: _property(c, nullable=False) for c in updatable}
        schemas.append(
            {
                "endpoint_path": p.item_path, "http_method": "PATCH",
                "schema_name": f"{t.name}_update",
                "validation_schema": {**_object_schema(props, []), "minProperties": 1},
                "strict_mode": True, "allow_unknown_fields": False, "sanitize_input": True,
                "applies_to": "body",
            }
        )  # fmt: skip
    else:
        p.notes.append(f"no PATCH row: {t.ident} has no column a client may change")
    rows.append(
        row("DELETE", "DELETE", p.item_path, f"DELETE FROM {t.ident}\n{where(1)}",
            [*key_params, *tenant_param], {"shape": "none", "not_found": p.code},
            f"Delete a {t.name} row{whose} (204); 404 {p.code} when there is none.")
    )  # fmt: skip
    return rows, schemas


def _object_schema(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": props,
    }
    if required:
        schema["required"] = required
    return schema


def error_code_row(p: Plan) -> dict[str, Any]:
    """The ``<TABLE>_NOT_FOUND`` code (404) with Vietnamese and Russian messages."""
    t = p.table
    key = ", ".join(p.key_names)
    return {
        "error_code": p.code,
        "http_status_code": 404,
        "error_category": "business",
        "error_message": f"No record in {t.name} with the specified {key}",
        "suggested_action": f"Check the {key}; list the records with GET {p.path}.",
        "localized_messages": {
            "vi": f"Không tìm thấy bản ghi trong {t.name} với {key} đã chỉ định",
            "ru": f"В {t.name} нет записи с указанным {key}",  # noqa: RUF001
        },
    }
