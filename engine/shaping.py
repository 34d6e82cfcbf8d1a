"""Turning result rows into the answer body, and encoding it (pure: no I/O).

``result_mapping`` decides the shape (list, object, scalar, none, stream) and
field renames; ``api_response_templates`` optionally wrap answers in an
envelope (success, paginated, error) with metadata and a timestamp. Bodies are
encoded once with orjson.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from engine.errors import ApiError
from engine.spec import ResultSpec

_INT_RANGE = (-(2**63), 2**64 - 1)  # what orjson writes as a JSON integer


def _decimal(value: Decimal) -> Any:
    if not value.is_finite():
        return None  # JSON has no NaN or Infinity; orjson writes such floats as null too
    if (
        value == value.to_integral_value()
        and isinstance(value.as_tuple().exponent, int)
        and value.as_tuple().exponent >= 0
        and _INT_RANGE[0] <= value <= _INT_RANGE[1]
    ):
        return int(value)
    # every digit of a numeric, in plain notation (a float would round numeric(20,2)
    # amounts; the driver may hand over 1.00E+30 for a numeric(40,0))
    return orjson.Fragment(format(value, "f"))


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(
        value,
        ipaddress.IPv4Address
        | ipaddress.IPv6Address
        | ipaddress.IPv4Network
        | ipaddress.IPv6Network,
    ):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    items = getattr(value, "items", None)
    if callable(items):  # a composite value (the driver's record type): an object
        return dict(items())
    return str(value)


_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def encode(body: Any) -> bytes:
    return orjson.dumps(body, default=_default, option=_OPTIONS)


Row = Mapping[str, Any]


def _renamer(fields: tuple[tuple[str, str], ...]) -> Callable[[Row], dict[str, Any]]:
    if not fields:
        return dict
    names = dict(fields)

    def rename(row: Row) -> dict[str, Any]:
        return {names.get(k, k): v for k, v in row.items()}

    return rename


@dataclass(frozen=True)
class Shaped:
    """The payload of a successful answer, before any envelope."""

    payload: Any
    status: int
    empty: bool = False  # answer has no body (204, or shape none)
    count: int | None = None
    pagination: Mapping[str, Any] | None = None


class Shaper:
    """Compiled from a row's ``result_mapping``."""

    def __init__(self, result: ResultSpec, method: str) -> None:
        self.result = result
        self.row = _renamer(result.fields)
        default_status = 201 if method == "POST" and result.shape != "none" else 200
        self.status = result.status or (204 if result.shape == "none" else default_status)
        self.not_found = result.not_found

    def rename(self, row: Row) -> dict[str, Any]:
        return self.row(row)

    def shape(self, rows: Sequence[Row], *, affected: int | None = None) -> Shaped:
        shape = self.result.shape
        if shape == "list":
            items = [self.row(r) for r in rows]
            return Shaped(items, self.status, count=len(items))
        if shape == "object":
            if not rows:
                raise ApiError(self.not_found or "RESOURCE_NOT_FOUND")
            return Shaped(self.row(rows[0]), self.status)
        if shape == "scalar":
            if not rows:
                if self.not_found:
                    raise ApiError(self.not_found)
                return Shaped(None, self.status)
            first = rows[0]
            return Shaped(next(iter(first.values())) if len(first) else None, self.status)
        # none
        if self.not_found and affected == 0:
            raise ApiError(self.not_found)
        return Shaped(None, self.status, empty=True)

    def page(self, rows: Sequence[Row], limit: int, offset: int) -> Shaped:
        has_more = len(rows) > limit
        items = [self.row(r) for r in rows[:limit]]
        pagination = {
            "limit": limit,
            "offset": offset,
            "count": len(items),
            "has_more": has_more,
            "next_offset": offset + limit if has_more else None,
        }
        return Shaped(items, self.status, count=len(items), pagination=pagination)


@dataclass(frozen=True)
class Envelope:
    """A row of ``api_response_templates``: how to wrap one kind of answer."""

    response_type: str
    include_metadata: bool = True
    include_pagination: bool = False
    include_timestamps: bool = True
    headers: tuple[tuple[str, str], ...] = ()

    def wrap(self, shaped: Shaped, *, request_id: str, endpoint: str) -> dict[str, Any]:
        body: dict[str, Any] = {"data": shaped.payload}
        if self.include_metadata:
            meta: dict[str, Any] = {"request_id": request_id, "endpoint": endpoint}
            if shaped.count is not None:
                meta["count"] = shaped.count
            body["meta"] = meta
        # a paginated answer always says where the next page is, whichever template
        # wraps it: without it a client cannot page (include_pagination cannot drop it)
        if shaped.pagination is not None:
            body["pagination"] = dict(shaped.pagination)
        if self.include_timestamps:
            body["timestamp"] = _now()
        return body

    def extend_problem(self, problem: dict[str, Any], *, endpoint: str) -> dict[str, Any]:
        if self.include_metadata:
            problem["meta"] = {"endpoint": endpoint}
        if self.include_timestamps:
            problem["timestamp"] = _now()
        return problem


@dataclass(frozen=True)
class Rendered:
    """A success answer, encoded: what is sent, cached, or stored for idempotent replay."""

    body: bytes
    status_code: int
    headers: dict[str, str]
    empty: bool
    replayed: bool = False  # answered from a stored Idempotency-Key answer


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def compile_envelope(row: Mapping[str, Any]) -> Envelope:
    headers = row.get("response_headers") or {}
    if not isinstance(headers, Mapping):
        headers = {}
    return Envelope(
        response_type=row["response_type"],
        include_metadata=_flag(row, "include_metadata", True),
        include_pagination=_flag(row, "include_pagination", False),
        include_timestamps=_flag(row, "include_timestamps", True),
        headers=tuple((str(k), str(v)) for k, v in headers.items()),
    )


def _flag(row: Mapping[str, Any], name: str, default: bool) -> bool:
    """A nullable boolean column: NULL means the column's default, not false."""
    value = row.get(name)
    return default if value is None else bool(value)


def default_page_body(shaped: Shaped) -> dict[str, Any]:
    """A paginated list with no paginated template: data plus pagination."""
    return {"data": shaped.payload, "pagination": dict(shaped.pagination or {})}
