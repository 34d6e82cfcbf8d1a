"""The JSON Schema side of the OpenAPI document: type tables and shared components.

Types: what a client may send for a parameter (:func:`param_schema`, from its
declared type and the placeholder's PostgreSQL type) and what the engine answers
for a result column (:func:`column_schema`, by how the engine encodes each
PostgreSQL type), and how a stored query schema narrows a parameter.

Components every document has: the response headers, the shared header
parameters, the security schemes, the ``Problem`` body, and the ``pagination``
object of each kind of page. Everything here is data or pure functions of it;
:mod:`engine.openapi_operation` builds operations out of them.
"""

from __future__ import annotations

import copy
import http
from collections.abc import Mapping
from typing import Any

from engine.errors import PROBLEM_TYPE_PREFIX
from engine.spec import ParamSpec

JSON = "application/json"
API_KEY_HEADER = "X-API-Key"
NULL = {"type": "null"}
STRING = {"type": "string"}
INTEGER = {"type": "integer"}


def ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"Status {status}"


# ---------------------------------------------------------------------------
# Types: what a client sends (parameters) and what the engine answers (columns)
# ---------------------------------------------------------------------------

_PARAM_TYPES: dict[str, dict[str, Any]] = {
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "string": {"type": "string"},
    "boolean": {"type": "boolean"},
    "uuid": {"type": "string", "format": "uuid"},
    "date": {"type": "string", "format": "date"},
    "timestamp": {"type": "string", "format": "date-time"},
    "json": {},
}
# placeholder type oids PostgreSQL reports (CompiledEndpoint.signature): the binder's bounds
_INT_OIDS = {21: (-(2**15), 2**15 - 1), 23: (-(2**31), 2**31 - 1), 26: (0, 2**32 - 1)}
_ARRAY_OIDS = {1005: "integer", 1007: "integer", 1016: "integer", 1021: "number"}
_ARRAY_OIDS |= {1022: "number", 1231: "number", 1000: "boolean", 2951: "uuid", 1182: "date"}
_ARRAY_OIDS |= {1115: "timestamp", 1185: "timestamp"}
CONVERTERS = {
    "int": {"type": "integer", "minimum": 0},
    "float": {"type": "number", "minimum": 0},
    "uuid": {"type": "string", "format": "uuid"},
}

# How each PostgreSQL type is answered (README, "How values are answered"). A column's
# schema also names its PostgreSQL type, and may be null: prepare does not say.
_NUMBER = {"anyOf": [{"type": "number"}, {"enum": ["NaN", "Infinity", "-Infinity"]}]}
_POINT = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
_TWO_POINTS = {"type": "array", "items": _POINT, "minItems": 2, "maxItems": 2}
_COLUMN_TYPES: dict[str, dict[str, Any]] = {
    "int2": {"type": "integer", "format": "int32"},
    "int4": {"type": "integer", "format": "int32"},
    "int8": {"type": "integer", "format": "int64"},  # a JSON integer, every digit
    "oid": {"type": "integer", "minimum": 0},
    "numeric": _NUMBER,  # every digit; an integer when it has no fraction
    "float4": _NUMBER,
    "float8": _NUMBER,
    "money": {"type": "number"},  # exact, in the currency's units
    "bool": {"type": "boolean"},
    "uuid": {"type": "string", "format": "uuid"},
    "date": {"type": "string", "format": "date"},  # also "infinity" and BC as PostgreSQL's
    "timestamp": STRING,  # ISO 8601 without an offset: not an RFC 3339 date-time
    "timestamptz": {"type": "string", "format": "date-time"},  # in UTC
    "timetz": {"type": "string", "format": "time"},
    "bytea": {"type": "string", "contentEncoding": "base16"},
    "bit": {"type": "string", "pattern": "^[01]*$"},
    "varbit": {"type": "string", "pattern": "^[01]*$"},
    "json": {},
    "jsonb": {},
    "void": NULL,
    "point": _POINT,
    "line": {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3},
    "lseg": _TWO_POINTS,
    "box": _TWO_POINTS,
    "circle": {"type": "array", "prefixItems": [_POINT, {"type": "number"}], "items": False},
    "polygon": {"type": "array", "items": _POINT},
    "path": {
        "type": "object",
        "required": ["closed", "points"],
        "properties": {"closed": {"type": "boolean"}, "points": {"type": "array", "items": _POINT}},
    },
    "record": {},  # an object (named composite) or an array (anonymous record)
}
_TEXT_TYPES = {"text", "varchar", "bpchar", "char", "name", "citext", "xml", "tsvector"}
_TEXT_TYPES |= {"tsquery", "hstore", "inet", "cidr", "macaddr", "macaddr8", "jsonpath"}
_TEXT_TYPES |= {"time", "interval"}  # "03:04:05.5", "24:00:00"; ISO 8601 durations
_RANGES = {"int4range": "int4", "int8range": "int8", "numrange": "numeric"}
_RANGES |= {"tsrange": "timestamp", "tstzrange": "timestamptz", "daterange": "date"}


def column_schema(pg_type: str) -> dict[str, Any]:
    """The JSON Schema of a PostgreSQL value of type ``pg_type`` as the engine answers it.

    ``pg_type`` is the name the prepared statement reports (``int4``, ``text[]``,
    ``_int4``). A type its name does not tell (a composite, domain or extension
    type) is left unconstrained.
    """
    name = pg_type.lower()
    if name.endswith("[]") or (name.startswith("_") and len(name) > 1):
        element = name[:-2] if name.endswith("[]") else name[1:]
        return {"type": "array", "items": nullable(column_schema(element))}
    if name in _COLUMN_TYPES:
        return copy.deepcopy(_COLUMN_TYPES[name])
    if name in _TEXT_TYPES:
        return dict(STRING)
    ranged = _RANGES.get(name) or _RANGES.get(name.replace("multirange", "range"))
    if ranged is None:
        return {}
    bound = nullable(column_schema(ranged))
    schema = {
        "type": "object",
        "required": ["lower", "upper", "bounds"],
        "properties": {
            "lower": bound,
            "upper": bound,
            "bounds": {"enum": ["[]", "[)", "(]", "()", "empty"]},
        },
    }
    return schema if name in _RANGES else {"type": "array", "items": schema}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or JSON null."""
    kind = schema.get("type")
    if isinstance(kind, str):
        return schema if kind == "null" else {**schema, "type": [kind, "null"]}
    if isinstance(kind, list):
        return schema if "null" in kind else {**schema, "type": [*kind, "null"]}
    if "anyOf" in schema:
        return {**schema, "anyOf": [*schema["anyOf"], NULL]}
    return schema  # unconstrained: null is allowed already


def column_property(pg_type: str) -> dict[str, Any]:
    return {**nullable(column_schema(pg_type)), "description": pg_type}


def param_schema(p: ParamSpec, oid: int | None = None) -> dict[str, Any]:
    """What a client may send for parameter ``p`` (``oid``: its placeholder's type)."""
    if p.type == "array":
        kind = p.items or _ARRAY_OIDS.get(oid or 0, "string")
        schema: dict[str, Any] = {"type": "array", "items": dict(_PARAM_TYPES[kind])}
    else:
        schema = dict(_PARAM_TYPES[p.type])
    if p.type == "integer" and oid in _INT_OIDS:
        schema["minimum"], schema["maximum"] = _INT_OIDS[oid]
    if p.type == "integer" and oid in (20, 23):
        schema["format"] = "int64" if oid == 20 else "int32"
    if p.has_default and p.default is not None:
        schema["default"] = p.default
    return schema


_STRICTER = {"minimum": max, "exclusiveMinimum": max, "maximum": min, "exclusiveMaximum": min}


def narrowed(base: dict[str, Any], stored: Any) -> dict[str, Any]:
    """``base`` with a stored schema's property: merged when they agree, else both."""
    if not isinstance(stored, Mapping) or not stored:
        return base
    merged = dict(base)
    for key, value in stored.items():
        if key not in merged or merged[key] == value:
            merged[key] = copy.deepcopy(value)
        elif key in _STRICTER and isinstance(value, int | float) and not isinstance(value, bool):
            merged[key] = _STRICTER[key](merged[key], value)
        else:
            return {"allOf": [base, copy.deepcopy(dict(stored))]}
    return merged


# keywords whose value maps names to schemas: a property may be called "default" or "enum"
_SCHEMA_MAPS = ("properties", "patternProperties", "dependentSchemas", "$defs", "definitions")


def rebased(schema: Any, base: str) -> Any:
    """A copy of ``schema`` living at ``base``: its document-local ``$ref``s point there."""
    if isinstance(schema, list):
        return [rebased(s, base) for s in schema]
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("$ref", "$dynamicRef") and isinstance(value, str) and value.startswith("#"):
            out[key] = base + value[1:]
        elif key in _SCHEMA_MAPS and isinstance(value, Mapping):
            out[key] = {name: rebased(s, base) for name, s in value.items()}
        elif key in ("const", "enum", "default", "examples"):
            out[key] = copy.deepcopy(value)  # values, not schemas
        else:
            out[key] = rebased(value, base)
    return out


# ---------------------------------------------------------------------------
# Components every document has
# ---------------------------------------------------------------------------


def header_object(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or dict(STRING)}


HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": header_object(
        "The request's id (the client's X-Request-ID when it is 1-100 characters of "
        "A-Za-z0-9._:-); problem bodies and the error log name it."
    ),
    "RateLimit-Limit": header_object("Calls allowed a minute.", INTEGER),
    "RateLimit-Remaining": header_object("Calls left in the window.", INTEGER),
    "RateLimit-Reset": header_object("Seconds until the window frees a call.", INTEGER),
    "Retry-After": header_object("Seconds to wait before retrying.", INTEGER),
    "ETag": header_object("The answer's validator, for If-None-Match."),
    "X-Cache": header_object("Whether the cache answered.", {"enum": ["HIT", "MISS"]}),
    "Cache-Control": header_object(
        "`public` or `private` (the answer is the caller's), `max-age`."
    ),
    "Content-Language": header_object(
        "The language of the problem's title (from Accept-Language)."
    ),
    "WWW-Authenticate": header_object('`Bearer realm="engine"`'),
    "Link": header_object('RFC 8288 links to the other pages (`rel="next"`, `rel="prev"`).'),
    "Idempotent-Replayed": header_object(
        "`true`: the stored answer of an earlier request with this Idempotency-Key.",
        {"enum": ["true"]},
    ),
    "Content-Disposition": header_object('`attachment; filename="<last path segment>.<format>"`'),
}
PARAMETERS: dict[str, dict[str, Any]] = {
    "RequestId": {
        "name": "X-Request-ID",
        "in": "header",
        "description": "Your id for this request (1-100 characters of A-Za-z0-9._:-), "
        "answered back and logged with its errors; any other value is replaced by an id of "
        "the engine's own, never refused.",
        "schema": {"type": "string"},
    },
    "AcceptLanguage": {
        "name": "Accept-Language",
        "in": "header",
        "description": "The language of error titles (English when the catalogue has none).",
        "schema": dict(STRING),
    },
    "IfNoneMatch": {
        "name": "If-None-Match",
        "in": "header",
        "description": "The ETag of an earlier answer: 304 while it still holds.",
        "schema": dict(STRING),
    },
    "IdempotencyKey": {
        "name": "Idempotency-Key",
        "in": "header",
        "description": "A retry with the same key and request replays the first answer "
        "without writing again (another request: 422 IDEMPOTENCY_KEY_REUSED; while the "
        "first runs: 409 IDEMPOTENCY_KEY_IN_USE). Needs an authenticated caller.",
        "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
    },
    "PreferCount": {
        "name": "Prefer",
        "in": "header",
        "description": "`count=exact` adds `pagination.total`, the rows of every page.",
        "schema": {"enum": ["count=exact"]},
    },
}
SECURITY_SCHEMES = {
    "ApiKeyAuth": {
        "type": "apiKey",
        "in": "header",
        "name": API_KEY_HEADER,
        "description": "An API key; its roles, permissions and tenant act as a token's "
        "claims. Send a key or a bearer token, not both.",
    },
    "BearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A JWT with `exp` and `sub`; `roles`, `permissions` and `tenant_id` "
        "decide access and fill the parameters bound from the caller.",
    },
}
AUTH = [{"ApiKeyAuth": []}, {"BearerAuth": []}]
SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details; `code` is a row of api_error_codes.",
        "required": ["type", "title", "status", "detail", "instance", "code", "request_id"],
        "properties": {
            "type": {"type": "string", "description": f"`{PROBLEM_TYPE_PREFIX}<code>`"},
            "title": {"type": "string", "description": "the code's message, localized"},
            "status": INTEGER,
            "detail": STRING,
            "instance": {"type": "string", "description": "the request's path"},
            "code": STRING,
            "request_id": STRING,
            "errors": {"type": "array", "items": ref("schemas", "ProblemItem")},
            "meta": {"type": "object", "properties": {"endpoint": STRING}},
            "timestamp": {"type": "string", "format": "date-time"},
        },
    },
    "ProblemItem": {
        "type": "object",
        "required": ["message"],
        "properties": {
            "pointer": {"type": "string", "description": "a JSON pointer into the body"},
            "parameter": STRING,
            "in": {"enum": ["path", "query", "header", "body"]},
            "message": STRING,
            "keyword": {"type": "string", "description": "the JSON Schema keyword that failed"},
        },
    },
}


OWN_SCHEMAS = {*SCHEMAS, "Pagination", "KeysetPagination"}
_URL = {"type": ["string", "null"], "format": "uri-reference"}


def pagination_schema(paginate: Any) -> tuple[str, dict[str, Any]]:
    """(component name, schema) of the ``pagination`` object of ``paginate``'s pages."""
    properties: dict[str, Any] = {
        "limit": INTEGER,
        "count": {"type": "integer", "description": "rows on this page"},
        "has_more": {"type": "boolean"},
    }
    if getattr(paginate, "keyset", None):
        name = "KeysetPagination"
        properties["next"] = {**_URL, "description": "the next page (null on the last)"}
        properties["next_cursor"] = {"type": ["string", "null"], "description": "its `after`"}
    else:
        name = "Pagination"
        properties["offset"] = INTEGER
        properties["next_offset"] = {"type": ["integer", "null"]}
        if has_links(paginate):
            properties["next"] = {**_URL, "description": "the next page (null on the last)"}
            properties["prev"] = {**_URL, "description": "the previous page (null on the first)"}
    required = list(properties)
    if hasattr(paginate, "count"):  # required only where the row asks for an exact count
        properties["total"] = {"type": "integer", "description": "the rows of every page"}
    return name, {"type": "object", "required": required, "properties": properties}


def has_links(paginate: Any) -> bool:
    # next/prev URLs and the Link header came with max_offset (a newer Pagination)
    return hasattr(paginate, "max_offset")
