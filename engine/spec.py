"""A mapping row parsed into an immutable endpoint spec (pure: no I/O).

This module owns the row contract of DESIGN.md: the shape of
``query_parameters`` and ``result_mapping`` and the rules a row must follow
before the engine will serve it. Anything wrong raises :class:`SpecError` with
a reason an admin can act on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import SpecError

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
OPERATIONS = ("SELECT", "INSERT", "UPDATE", "DELETE", "CALL")
SOURCES = ("path", "query", "body", "header", "auth", "const")
TYPES = ("integer", "number", "string", "boolean", "uuid", "date", "timestamp", "json", "array")
SHAPES = ("list", "object", "scalar", "none", "stream")
STREAM_FORMATS = ("ndjson", "csv")
PAGINATION_PARAMS = ("limit", "offset")
COUNT_MODES = ("exact", "on_request", "none")
_PAGINATE_KEYS = {"limit", "max_limit", "max_offset", "count", "keyset"}
_MAX_PAGE_VALUE = 2**62  # LIMIT/OFFSET are bigint: a larger bound could never be sent

BULK_FORMATS = ("ndjson", "csv")
# a bulk_import column's type -> the staging table's PostgreSQL type (engine/records.py)
BULK_TYPES = {
    "integer": "int8",
    "number": "numeric",
    "string": "text",
    "boolean": "bool",
    "uuid": "uuid",
    "date": "date",
    "timestamp": "timestamptz",
    "json": "jsonb",
}
BULK_ON_INVALID = ("reject", "skip")
BULK_LINE_COLUMN = "_line"  # the staging table's own column: the record's line in the body
BULK_MAX_ERRORS = 10_000
_BULK_KEYS = {"formats", "columns", "on_invalid", "max_body_bytes", "max_errors", "description"}
_BULK_COLUMN = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(str|int|float|uuid|path))?\}")
_PARAM_KEYS = {
    "name",
    "in",
    "type",
    "required",
    "default",
    "claim",
    "value",
    "items",
    "description",
}
_RESULT_KEYS = {
    "shape",
    "not_found",
    "fields",
    "status",
    "paginate",
    "format",
    "description",
    "csv_escape_formulas",
}


@dataclass(frozen=True)
class ParamSpec:
    """One element of ``query_parameters``: binds placeholder ``$position``."""

    position: int
    name: str
    source: str
    type: str
    required: bool = False
    default: Any = None
    has_default: bool = False
    claim: str | None = None
    value: Any = None
    items: str | None = None
    description: str | None = None
    explicit_type: bool = True  # False: no "type" was given (string by default)


@dataclass(frozen=True)
class Pagination:
    """``result_mapping.paginate``: offset pages, or keyset pages when ``keyset`` is set."""

    limit: int
    max_limit: int
    max_offset: int = 10_000  # a larger ?offset= is refused (deep pages need keyset)
    count: str = "none"  # exact: always pagination.total; on_request: on Prefer: count=exact
    keyset: tuple[str, ...] = ()  # result columns the pages are ordered by (unique together)
    descending: tuple[bool, ...] = ()  # per keyset column: ordered DESC

    @property
    def params(self) -> tuple[str, ...]:
        """The query parameters the engine reads for this kind of pagination."""
        return ("limit", "after") if self.keyset else ("limit", "offset")


@dataclass(frozen=True)
class ResultSpec:
    shape: str = "list"
    not_found: str | None = None
    fields: tuple[tuple[str, str], ...] = ()
    status: int | None = None
    paginate: Pagination | None = None
    stream_format: str = "ndjson"
    csv_escape_formulas: bool = True  # CSV text cells starting =, +, -, @ get a quote


@dataclass(frozen=True)
class BulkSpec:
    """``bulk_import``: the body is NDJSON or CSV records, COPYed into ``bulk_records``."""

    formats: tuple[str, ...]  # ndjson, csv
    columns: tuple[tuple[str, str], ...]  # (name, type of BULK_TYPES), the staging table's
    on_invalid: str = "reject"  # reject: any invalid record writes nothing; skip: load the rest
    max_body_bytes: int | None = None  # None: ENGINE_BULK_MAX_BODY_BYTES alone
    max_errors: int = 100  # per-record errors listed in an answer


@dataclass(frozen=True)
class EndpointSpec:
    id: int
    path: str
    method: str
    service_name: str
    operation: str
    target_table: str | None
    sql: str
    params: tuple[ParamSpec, ...]
    result: ResultSpec
    cache_enabled: bool
    cache_ttl_seconds: int
    rate_limit_per_minute: int | None
    requires_auth: bool
    required_roles: tuple[str, ...]
    required_permissions: tuple[str, ...]
    statement_timeout_ms: int | None
    version: int
    description: str | None = None
    max_concurrent: int | None = None  # requests at once per process; more: 503 ENDPOINT_BUSY
    bulk: BulkSpec | None = None  # bulk_import: an NDJSON/CSV import (engine/bulk.py)

    @property
    def is_read(self) -> bool:
        return self.method == "GET"

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    def path_params(self) -> tuple[str, ...]:
        return path_parameters(self.path)


def path_parameters(path: str) -> tuple[str, ...]:
    return tuple(m.group(1) for m in _PATH_PARAM.finditer(path))


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise SpecError(message)


def parse_param(position: int, raw: Any) -> ParamSpec:
    where = f"query_parameters[{position - 1}] (${position})"
    _need(isinstance(raw, Mapping), f"{where} must be an object")
    unknown = set(raw) - _PARAM_KEYS
    _need(not unknown, f"{where} has unknown keys: {', '.join(sorted(unknown))}")
    name = raw.get("name")
    source = raw.get("in")
    kind = raw.get("type", "string")
    _need(isinstance(name, str) and bool(name.strip()), f"{where} needs a non-empty 'name'")
    _need(source is not None, f"{where} '{name}' needs \"in\": one of {', '.join(SOURCES)}")
    _need(
        source in SOURCES,
        f"{where} '{name}': \"in\" must be one of {', '.join(SOURCES)}, not {_json(source)}",
    )
    _need(
        kind in TYPES,
        f"{where} '{name}': \"type\" must be one of {', '.join(TYPES)} (string when "
        f"omitted), not {_json(kind)}",
    )
    items = raw.get("items")
    _need(
        items is None or (kind == "array" and items in TYPES and items not in ("array", "json")),
        f"{where} 'items' is only for type array and must be a scalar type",
    )
    required = raw.get("required", source == "path")
    _need(isinstance(required, bool), f"{where} 'required' must be true or false")
    claim = raw.get("claim")
    if source == "auth":
        claim = claim or name
        _need(isinstance(claim, str), f"{where} 'claim' must be a string")
    else:
        _need(claim is None, f"{where} 'claim' is only for in: auth")
    if source == "const":
        _need("value" in raw, f"{where} in: const needs a 'value'")
    if source == "path":
        _need(required, f"{where} a path parameter is always required")
    return ParamSpec(
        position=position,
        name=name,
        source=source,
        type=kind,
        required=required,
        default=raw.get("default"),
        has_default="default" in raw,
        claim=claim,
        value=raw.get("value"),
        items=items,
        description=raw.get("description"),
        explicit_type="type" in raw,
    )


def _json(value: Any) -> str:
    """A value as the admin wrote it in the JSON column (not Python's repr)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def parse_result(raw: Any) -> ResultSpec:
    if raw is None:
        raw = {}
    _need(isinstance(raw, Mapping), "result_mapping must be an object")
    unknown = set(raw) - _RESULT_KEYS
    _need(not unknown, f"result_mapping has unknown keys: {', '.join(sorted(unknown))}")
    shape = raw.get("shape", "list")
    _need(shape in SHAPES, f"result_mapping.shape must be one of {', '.join(SHAPES)}")
    not_found = raw.get("not_found")
    _need(
        not_found is None or (isinstance(not_found, str) and bool(not_found)),
        "result_mapping.not_found must be an error code",
    )
    fields = raw.get("fields") or {}
    _need(
        isinstance(fields, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) and v for k, v in fields.items()),
        "result_mapping.fields must map column names to JSON names",
    )
    status = raw.get("status")
    _need(
        status is None or (isinstance(status, int) and 200 <= status <= 299),
        "result_mapping.status must be a 2xx status code",
    )
    paginate = None
    if raw.get("paginate") is not None:
        _need(shape == "list", "result_mapping.paginate needs shape 'list'")
        paginate = parse_pagination(raw["paginate"])
    stream_format = raw.get("format", "ndjson")
    if shape == "stream":
        _need(stream_format in STREAM_FORMATS, "result_mapping.format must be ndjson or csv")
    escape_formulas = raw.get("csv_escape_formulas", True)
    _need(
        isinstance(escape_formulas, bool),
        "result_mapping.csv_escape_formulas must be true or false",
    )
    return ResultSpec(
        shape=shape,
        not_found=not_found,
        fields=tuple(fields.items()),
        status=status,
        paginate=paginate,
        stream_format=stream_format,
        csv_escape_formulas=escape_formulas,
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_pagination(p: Any) -> Pagination:
    """``result_mapping.paginate``: limit, max_limit, max_offset, count and keyset."""
    where = "result_mapping.paginate"
    _need(isinstance(p, Mapping), f"{where} must be an object")
    unknown = set(p) - _PAGINATE_KEYS
    _need(
        not unknown,
        f"{where} has unknown keys: {', '.join(sorted(unknown))} (known: "
        f"{', '.join(sorted(_PAGINATE_KEYS))})",
    )
    limit = p.get("limit", 50)
    max_limit = p.get("max_limit", max(limit, 1000) if _is_int(limit) else 1000)
    _need(
        _is_int(limit) and _is_int(max_limit) and 0 < limit <= max_limit <= _MAX_PAGE_VALUE,
        f"{where} needs integers 0 < limit <= max_limit <= {_MAX_PAGE_VALUE}",
    )
    max_offset = p.get("max_offset", 10_000)
    _need(
        _is_int(max_offset) and 0 <= max_offset <= _MAX_PAGE_VALUE,
        f"{where}.max_offset must be an integer from 0 to {_MAX_PAGE_VALUE}, "
        f"not {_json(max_offset)}",
    )
    count = p.get("count")
    count = "none" if count is None else count
    _need(
        count in COUNT_MODES,
        f'{where}.count must be "exact" (always answer pagination.total), "on_request" '
        '(only when the client sends Prefer: count=exact) or "none", not ' + _json(count),
    )
    columns: list[str] = []
    descending: list[bool] = []
    keyset = p.get("keyset")
    if keyset is not None:
        _need(
            isinstance(keyset, list) and bool(keyset),
            f"{where}.keyset must be a non-empty array of result column names, not {_json(keyset)}",
        )
        for i, item in enumerate(keyset):
            column, desc = _keyset_column(f"{where}.keyset[{i}]", item)
            _need(column not in columns, f"{where}.keyset names the column '{column}' twice")
            columns.append(column)
            descending.append(desc)
    return Pagination(
        limit=limit,
        max_limit=max_limit,
        max_offset=max_offset,
        count=count,
        keyset=tuple(columns),
        descending=tuple(descending),
    )


def _keyset_column(where: str, item: Any) -> tuple[str, bool]:
    """One keyset entry: "col", "-col" (descending) or {"column": "col", "desc": true}."""
    if isinstance(item, str):
        desc = item.startswith("-")
        column = item[1:] if desc else item
        _need(
            bool(column.strip()),
            f'{where} must name a result column ("col", "-col" for descending), not ' + _json(item),
        )
        return column, desc
    _need(
        isinstance(item, Mapping),
        f'{where} must be a column name ("col" or "-col") or {{"column": "col", "desc": true}}, '
        f"not {_json(item)}",
    )
    unknown = set(item) - {"column", "desc"}
    _need(not unknown, f"{where} has unknown keys: {', '.join(sorted(unknown))}")
    column = item.get("column")
    desc = item.get("desc", False)
    _need(
        isinstance(column, str) and bool(column.strip()),
        f"{where}.column must be a result column name, not {_json(column)}",
    )
    _need(isinstance(desc, bool), f"{where}.desc must be true or false, not {_json(desc)}")
    return column, desc


def parse_bulk(raw: Any) -> BulkSpec:
    """``bulk_import``: formats, the staging table's columns and what an invalid record does."""
    where = "bulk_import"
    _need(isinstance(raw, Mapping), f"{where} must be an object (or null: not a bulk import)")
    unknown = set(raw) - _BULK_KEYS
    _need(
        not unknown,
        f"{where} has unknown keys: {', '.join(sorted(unknown))} (known: "
        f"{', '.join(sorted(_BULK_KEYS))})",
    )
    formats = raw.get("formats", list(BULK_FORMATS))
    _need(
        isinstance(formats, list)
        and bool(formats)
        and all(f in BULK_FORMATS for f in formats)
        and len(set(formats)) == len(formats),
        f'{where}.formats must be a non-empty array of "ndjson" and/or "csv", not '
        + _json(formats),
    )
    columns = raw.get("columns")
    _need(
        isinstance(columns, Mapping) and bool(columns),
        f"{where}.columns must be a non-empty object naming each column of the staging table "
        f'bulk_records and its type ({{"interval_start": "timestamp", ...}}), not '
        + _json(columns),
    )
    for name, kind in columns.items():
        _need(
            isinstance(name, str) and _BULK_COLUMN.fullmatch(name) is not None,
            f"{where}.columns: {_json(name)} is not a column name (lower-case letters, digits "
            "and _, starting with a letter or _, at most 63 characters)",
        )
        _need(
            name != BULK_LINE_COLUMN,
            f"{where}.columns: {BULK_LINE_COLUMN} is the staging table's own column (the "
            "record's line number)",
        )
        _need(
            kind in BULK_TYPES,
            f"{where}.columns.{name}: the type must be one of {', '.join(BULK_TYPES)}, not "
            + _json(kind),
        )
    on_invalid = raw.get("on_invalid", "reject")
    _need(
        on_invalid in BULK_ON_INVALID,
        f'{where}.on_invalid must be "reject" (any invalid record: nothing is written) or '
        f'"skip" (invalid records are reported, the others written), not {_json(on_invalid)}',
    )
    limit = raw.get("max_body_bytes")
    _need(
        limit is None or (_is_int(limit) and limit > 0),
        f"{where}.max_body_bytes must be a positive integer (or absent: "
        f"ENGINE_BULK_MAX_BODY_BYTES), not {_json(limit)}",
    )
    max_errors = raw.get("max_errors", 100)
    _need(
        _is_int(max_errors) and 1 <= max_errors <= BULK_MAX_ERRORS,
        f"{where}.max_errors must be an integer from 1 to {BULK_MAX_ERRORS}, not "
        + _json(max_errors),
    )
    return BulkSpec(
        formats=tuple(formats),
        columns=tuple(columns.items()),
        on_invalid=on_invalid,
        max_body_bytes=limit,
        max_errors=max_errors,
    )


def _texts(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    _need(
        isinstance(value, list | tuple) and all(isinstance(v, str) for v in value),
        f"{what} must be an array of text",
    )
    return tuple(v for v in value if v)


# the engine's own paths: no mapping row may publish at (or under) them
RESERVED_EXACT = ("/openapi.json", "/docs", "/metrics", "/health", "/_engine")
RESERVED_UNDER = ("/docs/", "/health/", "/_engine/")
# the admin API: its built-in routes and the engine's own rows (service_name 'admin', sql/014)
ADMIN_PREFIX = "/admin/v1"
ADMIN_SERVICE = "admin"
ADMIN_ROLE = "engine_admin"  # the role every admin row must require (engine.admin.ROLE)


def _may_match(segment: str, literal: str) -> bool:
    """Whether a path segment can match ``literal``: itself, or a text/path parameter."""
    if segment == literal:
        return True
    m = _PATH_PARAM.fullmatch(segment)
    return m is not None and (m.group(2) or "str") in ("str", "path")


def _reaches_admin(bare: str) -> bool:
    """Whether a path that names ``admin`` or ``v1`` literally in its first two segments
    could match a request under /admin/v1 (``/admin/{v}/x``, ``/{a}/v1/x``)."""
    segments = bare.strip("/").split("/")
    if len(segments) < 2:
        return False
    first, second = segments[0], segments[1]
    if "admin" not in (first, second) and "v1" not in (first, second):
        return False
    return _may_match(first, "admin") and _may_match(second, "v1")


def reserved_path(path: str, service_name: str | None = None) -> str | None:
    """The engine's path that ``path`` would take (``/health/*``...), or None when free.

    ``/admin/v1/*`` is free only to rows of ``service_name`` ``admin``, and so is a
    pattern that names ``admin`` or ``v1`` literally in its first two segments and could
    match a request there (``/admin/{v}/secrets``); a generic ``/{a}/{b}`` stays free
    (the admin API never dispatches to a row of another service).
    """
    bare = path.rstrip("/") or "/"
    for exact in RESERVED_EXACT:
        if bare == exact:
            return exact
    for prefix in RESERVED_UNDER:
        if bare.startswith(prefix) or bare.startswith(prefix.rstrip("/") + "{"):
            return prefix + "*"
    if bare.startswith("/_engine"):
        return "/_engine/*"
    admin = bare == ADMIN_PREFIX or bare.startswith((ADMIN_PREFIX + "/", ADMIN_PREFIX + "{"))
    if (admin or _reaches_admin(bare)) and service_name != ADMIN_SERVICE:
        return ADMIN_PREFIX + "/*"
    return None


def parse_row(row: Mapping[str, Any]) -> EndpointSpec:
    """Parse one ``api_endpoint_mappings`` row (a mapping of column -> value)."""
    path = row.get("endpoint_path") or ""
    method = (row.get("http_method") or "").upper()
    _need(path.startswith("/"), "endpoint_path must start with '/'")
    reserved = reserved_path(path, row.get("service_name"))
    _need(reserved is None, f"{reserved} is the engine's own path (reserved)")
    if row.get("service_name") == ADMIN_SERVICE and (
        path.rstrip("/") == ADMIN_PREFIX
        or path.startswith((ADMIN_PREFIX + "/", ADMIN_PREFIX + "{"))
    ):
        roles = row.get("required_roles")
        _need(
            bool(row.get("requires_auth", True))
            and isinstance(roles, list | tuple)
            and ADMIN_ROLE in roles,
            f"an admin row under {ADMIN_PREFIX} must require auth and the role {ADMIN_ROLE} "
            "(requires_auth true, required_roles containing it)",
        )
    _need(
        path.count("{") == path.count("}") == len(path_parameters(path)),
        "endpoint_path has a malformed {parameter}",
    )
    _need(method in METHODS, f"http_method must be one of {', '.join(METHODS)}")
    operation = (row.get("database_operation") or "").upper()
    _need(operation in OPERATIONS, f"database_operation must be one of {', '.join(OPERATIONS)}")
    _need(
        method != "GET" or operation == "SELECT",
        "a GET endpoint must be a read (database_operation SELECT)",
    )
    sql = (row.get("query_template") or "").strip().rstrip(";").strip()
    _need(bool(sql), "query_template is empty")
    _need("..." not in sql, "query_template contains '...' (an elided template)")

    raw_params = row.get("query_parameters")
    if raw_params is None:
        raw_params = []
    _need(isinstance(raw_params, list), "query_parameters must be a JSON array")
    params = tuple(parse_param(i + 1, p) for i, p in enumerate(raw_params))

    names = path_parameters(path)
    _need(len(set(names)) == len(names), "endpoint_path names a {parameter} twice")
    in_path = set(names)
    for p in params:
        if p.source == "path":
            _need(
                p.name in in_path,
                f"path parameter '{p.name}' (${p.position}) is not in endpoint_path",
            )

    raw_bulk = row.get("bulk_import")
    bulk = parse_bulk(raw_bulk) if raw_bulk is not None else None
    raw_result = row.get("result_mapping")
    if bulk is not None and isinstance(raw_result, Mapping) and "shape" not in raw_result:
        raw_result = {**raw_result, "shape": "none"}  # a bulk import answers its counts
    elif bulk is not None and raw_result is None:
        raw_result = {"shape": "none"}
    result = parse_result(raw_result)
    if bulk is not None:
        _check_bulk(method, params, result)
    if result.paginate:
        taken = {*PAGINATION_PARAMS, *result.paginate.params}
        clash = [p.name for p in params if p.source == "query" and p.name in taken]
        _need(not clash, f"query parameter(s) {', '.join(clash)} clash with pagination")
        if method != "GET":
            _need(
                not result.paginate.keyset,
                "result_mapping.paginate.keyset is only for GET endpoints",
            )
            _need(
                result.paginate.count == "none",
                "result_mapping.paginate.count is only for GET endpoints",
            )
    if result.shape == "stream":
        _need(operation == "SELECT", "shape 'stream' needs database_operation SELECT")

    timeout = row.get("statement_timeout_ms")
    _need(
        timeout is None or (isinstance(timeout, int) and timeout > 0),
        "statement_timeout_ms must be positive",
    )
    concurrent = row.get("max_concurrent")
    _need(
        concurrent is None
        or (isinstance(concurrent, int) and not isinstance(concurrent, bool) and concurrent > 0),
        "max_concurrent must be a positive integer (or null: no limit)",
    )
    ttl = row.get("cache_ttl_seconds")
    rate = row.get("rate_limit_per_minute")
    return EndpointSpec(
        id=int(row["id"]),
        path=path,
        method=method,
        service_name=row.get("service_name") or "",
        operation=operation,
        target_table=row.get("target_table"),
        sql=sql,
        params=params,
        result=result,
        cache_enabled=bool(row.get("cache_enabled")),
        cache_ttl_seconds=int(ttl) if ttl is not None else 300,
        rate_limit_per_minute=int(rate) if rate is not None else None,
        requires_auth=bool(row.get("requires_auth", True)),
        required_roles=_texts(row.get("required_roles"), "required_roles"),
        required_permissions=_texts(row.get("required_permissions"), "required_permissions"),
        statement_timeout_ms=timeout,
        version=int(row.get("version") or 1),
        description=row.get("description"),
        max_concurrent=concurrent,
        bulk=bulk,
    )


def _check_bulk(method: str, params: tuple[ParamSpec, ...], result: ResultSpec) -> None:
    """What a bulk row may not combine with: the body is the records, the answer the counts."""
    _need(method in ("POST", "PUT"), "bulk_import needs http_method POST or PUT")
    body = [p.name for p in params if p.source == "body"]
    _need(
        not body,
        f'bulk_import: the body is the records, so no parameter can be "in": "body" '
        f"({', '.join(body)}); the template reads the records from bulk_records",
    )
    _need(
        result.shape in ("none", "scalar") and result.paginate is None,
        'bulk_import answers counts: result_mapping.shape must be "none" (the statement\'s '
        'row count is "inserted") or "scalar" (the value it returns is "result"), not '
        + _json(result.shape),
    )


_CONVERTER_RE = {
    "str": "[^/]+",
    "int": "[0-9]+",
    "float": "[0-9]+(?:\\.[0-9]+)?",
    "uuid": "[0-9a-fA-F-]{32,36}",
    "path": ".*",
}


def path_regex(path: str) -> re.Pattern[str]:
    """A compiled regex matching ``path`` with named groups for its {parameters}."""
    out, last = ["^"], 0
    for m in _PATH_PARAM.finditer(path):
        out.append(re.escape(path[last : m.start()]))
        out.append(f"(?P<{m.group(1)}>{_CONVERTER_RE[m.group(2) or 'str']})")
        last = m.end()
    out.append(re.escape(path[last:]))
    out.append("$")
    return re.compile("".join(out))


def path_specificity(path: str) -> tuple[int, ...]:
    """Sort key: literal segments before parameters, {x:path} (matching many segments) last."""

    def weight(seg: str) -> int:
        if ":path}" in seg:
            return 2
        return 1 if "{" in seg else 0

    return tuple(weight(seg) for seg in path.strip("/").split("/"))
