"""Binding request values to ``$n`` placeholders, with type coercion (pure: no I/O).

A :class:`Binder` is compiled once per mapping row from its parameter specs and
the types PostgreSQL inferred for the placeholders when the template was
prepared. Per request it pulls each value from its source (path, query, body,
header, the authenticated principal, or a constant), coerces it, checks it fits
the column type (an int4 overflow is a 400 here, not a database error), and
returns the argument tuple. Every bad value is reported, not just the first. A
scalar query parameter given more than once is refused (only arrays repeat), and
so is a header parameter; header values are read as UTF-8, and a path or query
value whose escapes are not UTF-8 is refused (never bound as U+FFFD).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import orjson

from engine.errors import ApiError, SpecError
from engine.spec import ParamSpec

INT_RANGES = {
    "int2": (-(2**15), 2**15 - 1),
    "int4": (-(2**31), 2**31 - 1),
    "int8": (-(2**63), 2**63 - 1),
    "oid": (0, 2**32 - 1),
}
# Declared type -> PostgreSQL type names a placeholder of that type may have.
COMPATIBLE: dict[str, frozenset[str]] = {
    "integer": frozenset({"int2", "int4", "int8", "oid", "numeric", "float4", "float8"}),
    "number": frozenset({"numeric", "float4", "float8", "money"}),
    "string": frozenset({"text", "varchar", "bpchar", "name", "citext", "char", "unknown"}),
    "boolean": frozenset({"bool"}),
    "uuid": frozenset({"uuid"}),
    "date": frozenset({"date"}),
    "timestamp": frozenset({"timestamp", "timestamptz"}),
    "json": frozenset({"json", "jsonb"}),
}
# ASCII digits only: int() and Decimal() also take other scripts' digits and "1_000"
# (bounded lengths: a 5,000-digit integer or 1e300000000 must be a cheap 400, not a DoS)
_INT_TEXT = re.compile(r"[+-]?[0-9]{1,20}")
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,6})?")
_MAX_NUMBER_TEXT = 256
_MAX_EXPONENT = 1000  # |adjusted exponent|: far beyond any real quantity
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="engine"'}
_TRUE = {"true", "t", "1", "yes", "y", "on"}
_FALSE = {"false", "f", "0", "no", "n", "off"}


@dataclass(frozen=True)
class PgType:
    """What PostgreSQL says about one placeholder: type name, kind, element type name."""

    name: str
    kind: str = "scalar"  # scalar | array | enum | composite | range | domain
    element: str | None = None


class Principal(Protocol):
    claims: Mapping[str, Any]


class Source(Protocol):
    """What a request offers the binder."""

    path_params: Mapping[str, str]
    query: Any  # has .getlist(name) and .get(name)
    headers: Mapping[str, str]  # values as the server decodes them: Latin-1, a char per byte
    body: Any
    claims: Mapping[str, Any] | None


@dataclass
class RequestSource:
    """A :class:`Source` made of a request's parts (the request path's and a bulk import's)."""

    path_params: Mapping[str, str]
    query: Any
    headers: Any
    body: Any
    claims: Mapping[str, Any] | None


def compatible(declared: str, pg: PgType, items: str | None = None) -> bool:
    if declared == "array":
        if pg.kind != "array":
            return False
        # a declared element type must suit a known element type (an enum element is unknown)
        if items is None or pg.element is None:
            return True
        known = any(pg.element in names for names in COMPATIBLE.values())
        return not known or pg.element in COMPATIBLE.get(items, frozenset())
    if declared == "string" and pg.kind == "enum":
        return True
    return pg.name in COMPATIBLE.get(declared, frozenset())


def check_types(params: Sequence[ParamSpec], pg_types: Sequence[PgType]) -> list[str]:
    """Problems between the declared parameter types and the prepared placeholders."""
    problems: list[str] = []
    if len(pg_types) != len(params):
        problems.append(
            f"the template has {len(pg_types)} placeholder(s) but query_parameters declares "
            f"{len(params)}"
        )
        return problems
    for p, pg in zip(params, pg_types, strict=True):
        if compatible(p.type, pg, p.items):
            continue
        declared = f"array of {p.items}" if p.items else p.type
        if not p.explicit_type:
            declared = "string (it has no 'type', and string is the default)"
        inferred = f"{pg.element}[]" if pg.kind == "array" and pg.element else pg.name
        fix = _declaration_for(pg)
        hint = (
            f"declare {fix} to match it, or cast the placeholder in the template "
            f"(${p.position}::type) if the value really is a {p.items or p.type}"
            if fix
            else f"cast the placeholder in the template (${p.position}::type) to a type "
            f"query_parameters can bind"
        )
        problems.append(
            f"query_parameters[{p.position - 1}] '{p.name}' (${p.position}) is declared "
            f"{declared}, but PostgreSQL infers {inferred} for ${p.position}; {hint}"
        )
    return problems


def _declaration_for(pg: PgType) -> str | None:
    """The query_parameters type that binds what PostgreSQL infers, as an admin writes it."""
    if pg.kind == "array":
        for items in COMPATIBLE:
            if items != "json" and pg.element in COMPATIBLE[items]:
                return f'"type": "array", "items": "{items}"'
        return '"type": "array"'
    if pg.kind == "enum":
        return '"type": "string"'
    for name, names in COMPATIBLE.items():
        if pg.name in names:
            return f'"type": "{name}"'
    return None


class BadValue(ValueError):
    pass


Coercer = Callable[[Any, bool], Any]


def _to_int(pg: str) -> Coercer:
    low, high = INT_RANGES.get(pg, INT_RANGES["int8"])

    as_pg: Callable[[int], Any] | None = (
        Decimal if pg == "numeric" else float if pg in ("float4", "float8") else None
    )

    def coerce(raw: Any, text: bool) -> Any:
        if text and isinstance(raw, str):
            # plain ASCII digits (most values) are what the pattern accepts, without it
            if not (len(raw) <= 20 and raw.isascii() and raw.isdigit()):
                if not _INT_TEXT.fullmatch(raw.strip()):
                    raise BadValue("must be an integer")
                raw = raw.strip()
            value = int(raw)
        elif isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        elif isinstance(raw, float) and raw.is_integer():
            value = int(raw)
        else:
            raise BadValue("must be an integer")
        if not low <= value <= high:
            raise BadValue(f"must be between {low} and {high}")
        return value if as_pg is None else as_pg(value)

    return coerce


def _to_number(pg: str) -> Coercer:
    def coerce(raw: Any, text: bool) -> Any:
        if isinstance(raw, bool):
            raise BadValue("must be a number")
        if isinstance(raw, int | float):
            value: Any = raw
        elif text and isinstance(raw, str):
            if len(raw) > _MAX_NUMBER_TEXT or not _NUMBER_TEXT.fullmatch(raw.strip()):
                raise BadValue("must be a number")
            try:
                value = Decimal(raw.strip())
            except InvalidOperation:
                raise BadValue("must be a number") from None
            if value and abs(value.adjusted()) > _MAX_EXPONENT:
                raise BadValue("is out of range")
        else:
            raise BadValue("must be a number")
        if pg == "numeric":
            return value if isinstance(value, Decimal) else Decimal(str(value))
        value = float(value)
        if not math.isfinite(value):  # "1e400" is a finite decimal but no float
            raise BadValue("must be a finite number")
        return value

    return coerce


def _to_string(raw: Any, text: bool) -> str:
    if not isinstance(raw, str):
        raise BadValue("must be a string")
    if "\x00" in raw:
        raise BadValue("must not contain NUL characters")
    return raw


def _to_bool(raw: Any, text: bool) -> bool:
    if isinstance(raw, bool):
        return raw
    if text and isinstance(raw, str):
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise BadValue("must be true or false")


def _to_uuid(raw: Any, text: bool) -> uuid.UUID:
    if isinstance(raw, str):
        try:
            return uuid.UUID(raw.strip())
        except ValueError:
            pass
    raise BadValue("must be a UUID")


def _to_date(raw: Any, text: bool) -> dt.date:
    if isinstance(raw, str):
        try:
            return dt.date.fromisoformat(raw.strip())
        except ValueError:
            pass
    raise BadValue("must be a date (YYYY-MM-DD)")


def _to_timestamp(pg: str) -> Coercer:
    def coerce(raw: Any, text: bool) -> dt.datetime:
        if not isinstance(raw, str):
            raise BadValue("must be an ISO 8601 timestamp")
        s = raw.strip()
        try:
            value = dt.datetime.fromisoformat(s)
        except ValueError:
            raise BadValue("must be an ISO 8601 timestamp") from None
        if pg == "timestamptz":
            return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        if value.tzinfo:
            return value.astimezone(dt.UTC).replace(tzinfo=None)
        return value

    return coerce


def _to_json(raw: Any, text: bool) -> Any:
    if text and isinstance(raw, str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise BadValue("must be valid JSON") from None
    problem = _json_problem(raw)
    if problem:  # a 400 here, not a statement that fails to encode or to cast
        raise BadValue(problem)
    return raw


_MAX_JSON_DEPTH = 64  # as a body's (engine/endpoint.py); orjson writes at most 254 levels


def _json_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a json/jsonb argument: NUL in a string (jsonb refuses
    \\u0000) or nesting too deep to encode. Walked without recursion."""
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return "must not contain NUL characters (\\u0000)"
        elif isinstance(node, dict | list):
            if depth >= _MAX_JSON_DEPTH:
                return f"must not nest objects and arrays deeper than {_MAX_JSON_DEPTH} levels"
            children = [*node, *node.values()] if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return None


def scalar_coercer(kind: str, pg_name: str) -> Coercer:
    if kind == "integer":
        return _to_int(pg_name)
    if kind == "number":
        return _to_number(pg_name)
    if kind == "timestamp":
        return _to_timestamp(pg_name)
    return {
        "string": _to_string,
        "boolean": _to_bool,
        "uuid": _to_uuid,
        "date": _to_date,
        "json": _to_json,
    }[kind]


_ELEMENT_KIND = {
    "int2": "integer",
    "int4": "integer",
    "int8": "integer",
    "numeric": "number",
    "float4": "number",
    "float8": "number",
    "bool": "boolean",
    "uuid": "uuid",
    "date": "date",
    "timestamp": "timestamp",
    "timestamptz": "timestamp",
    "json": "json",
    "jsonb": "json",
}


def _to_array(items: str | None, element_pg: str | None) -> Coercer:
    element_pg = element_pg or "text"
    kind = items or _ELEMENT_KIND.get(element_pg, "string")
    item = scalar_coercer(kind, element_pg)

    def coerce(raw: Any, text: bool) -> list[Any]:
        if text and isinstance(raw, str):
            raw = [part for part in raw.split(",") if part != ""]
        if not isinstance(raw, list):
            raise BadValue("must be an array")
        out = []
        for index, value in enumerate(raw):
            try:
                out.append(item(value, text))
            except BadValue as exc:
                raise BadValue(f"item {index} {exc}") from None
        return out

    return coerce


def coercer_for(param: ParamSpec, pg: PgType | None) -> Coercer:
    if param.type == "array":
        return _to_array(param.items, pg.element if pg else None)
    return scalar_coercer(param.type, pg.name if pg else "")


@dataclass(frozen=True)
class _Slot:
    spec: ParamSpec
    coerce: Coercer
    default: Any


_MISSING = object()


class Binder:
    """Turns one request into the argument tuple of one prepared statement."""

    def __init__(
        self, params: Sequence[ParamSpec], pg_types: Sequence[PgType] | None = None
    ) -> None:
        types: Sequence[PgType | None] = pg_types or [None] * len(params)
        slots = []
        for p, pg in zip(params, types, strict=True):
            coerce = coercer_for(p, pg)
            default = None
            if p.source == "const":
                default = self._coerce_static(p, coerce, p.value, "value")
            elif p.has_default and p.default is not None:
                default = self._coerce_static(p, coerce, p.default, "default")
            slots.append(_Slot(p, coerce, default))
        self._slots = tuple(slots)
        self.uses_body = any(p.source == "body" for p in params)
        self.uses_auth = any(p.source == "auth" for p in params)

    @staticmethod
    def _coerce_static(p: ParamSpec, coerce: Coercer, value: Any, what: str) -> Any:
        try:
            return coerce(value, isinstance(value, str))
        except BadValue as exc:
            raise SpecError(f"${p.position} '{p.name}' {what} {exc}") from None

    def bind(self, source: Source) -> list[Any]:
        args: list[Any] = []
        errors: list[dict[str, Any]] = []
        for slot in self._slots:
            p = slot.spec
            if p.source == "const":
                args.append(slot.default)
                continue
            if p.source == "auth":
                claims = source.claims
                if claims is None:
                    raise ApiError(
                        "AUTHENTICATION_REQUIRED",
                        "This endpoint needs an authenticated caller",
                        headers=_CHALLENGE,  # a 401 names its scheme (RFC 9110), as auth's do
                    )
                value = claims.get(p.claim or p.name)
                if value is None:
                    raise ApiError(
                        "INSUFFICIENT_PERMISSIONS",
                        f"The credentials carry no '{p.claim}' claim, which this endpoint needs",
                    )
                try:
                    args.append(slot.coerce(value, isinstance(value, str)))
                except BadValue:
                    raise ApiError(
                        "INSUFFICIENT_PERMISSIONS", f"The '{p.claim}' claim has an unusable value"
                    ) from None
                continue
            try:
                raw, text = self._raw(p, source)
            except BadValue as exc:  # repeated, or not readable as text
                errors.append(_problem(p, str(exc)))
                args.append(None)
                continue
            if raw is _MISSING or raw is None:
                if p.required and raw is _MISSING:
                    errors.append(_problem(p, "is required"))
                elif p.required:
                    errors.append(_problem(p, "must not be null"))
                args.append(slot.default)
                continue
            try:
                args.append(slot.coerce(raw, text))
            except BadValue as exc:
                errors.append(_problem(p, str(exc)))
                args.append(None)
        if errors:
            names = ", ".join(e["parameter"] for e in errors)
            raise ApiError(
                "INVALID_PARAMETER", f"Invalid or missing parameter(s): {names}", errors=errors
            )
        return args

    @staticmethod
    def _raw(p: ParamSpec, source: Source) -> tuple[Any, bool]:
        if p.source == "path":
            value = source.path_params.get(p.name)
            return (_MISSING if value is None else _decoded(value)), True
        if p.source == "query":
            values = [_decoded(v) for v in source.query.getlist(p.name)]
            if not values:
                return _MISSING, True
            if p.type == "array":
                return (values if len(values) > 1 else values[0]), True
            if len(values) > 1:  # never guess which one the client meant
                raise BadValue(f"must be given once, not {len(values)} times")
            return values[0], True
        if p.source == "header":
            getlist = getattr(source.headers, "getlist", None)
            given = getlist(p.name) if getlist is not None else []
            if len(given) > 1:  # as for the query: never guess which one was meant
                raise BadValue(f"must be given once, not {len(given)} times")
            value = source.headers.get(p.name)
            return (_MISSING if value is None else _utf8(value)), True
        body = source.body
        if not isinstance(body, Mapping) or p.name not in body:
            return _MISSING, False
        return body[p.name], False


def _decoded(value: str) -> str:
    """A path or query value, refused when its percent-escapes were not UTF-8.

    Starlette decodes them with replacement, so a byte that is not UTF-8 arrives as
    U+FFFD; binding that would store what the client never sent. (A client's own
    %EF%BF%BD, U+FFFD itself, cannot be told apart and is refused too.)
    """
    if "\ufffd" in value:
        raise BadValue("must be UTF-8 text (percent-escapes that decode to UTF-8)")
    return value


def _utf8(value: str) -> str:
    """A header value read as UTF-8 (RFC 9110 leaves the charset open; clients send UTF-8).

    Starlette, like the ASGI spec, hands header bytes over as Latin-1, one character
    per byte, so encoding back to Latin-1 gives the bytes the client sent.
    """
    if value.isascii():
        return value
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:  # a character above U+00FF: already decoded text
        return value
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadValue("must be UTF-8 text") from None


def _problem(p: ParamSpec, message: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"parameter": p.name, "in": p.source, "message": f"{p.name} {message}"}
    if p.source == "body":
        entry["pointer"] = "/" + p.name.replace("~", "~0").replace("/", "~1")
    return entry


def query_object(params: Sequence[ParamSpec], query: Any, args: Sequence[Any]) -> dict[str, Any]:
    """The query string as the object a query schema checks (``applies_to = 'query'``): a
    repeated name as an array of its values, the row's own query parameters as bound."""
    out: dict[str, Any] = {}
    for key in query:
        values = query.getlist(key)
        out[key] = values if len(values) > 1 else values[0]
    for p in params:
        if p.source == "query" and p.name in out:
            out[p.name] = args[p.position - 1]
    return out
