"""Turning result rows into the answer body, and encoding it (pure: no I/O).

``result_mapping`` decides the shape (list, object, scalar, none, stream) and
field renames; ``api_response_templates`` optionally wrap answers in an
envelope (success, paginated, error) with metadata and a timestamp. Bodies are
encoded once with orjson.

A list without pagination holds at most ``ENGINE_MAX_ROWS`` rows: its read fetches
one row more (``fetch_limit``) and more than the bound is 500 ``RESULT_TOO_LARGE``,
never the rows. A long list read (``LARGE_LIST`` rows or more) is encoded in slices
of that many rows, giving the event loop back between slices, so other requests
are answered while it encodes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from engine.errors import ApiError
from engine.pagination import PageRequest
from engine.spec import ResultSpec

_INT_RANGE = (-(2**63), 2**64 - 1)  # what orjson writes as a JSON integer


def _decimal(value: Decimal, _str: Callable[[object], str] = str) -> Any:
    # str() is C and exact; only its exponent forms (1E+30, 1.00E+30) need format(value, "f")
    text = _str(value)
    if "E" not in text and value.is_finite():
        if "." in text:
            return orjson.Fragment(text)
        number = int(text)
        if _INT_RANGE[0] <= number <= _INT_RANGE[1]:
            return number
        return orjson.Fragment(text)
    if not value.is_finite():  # JSON has no NaN or Infinity: spelled out, as PostgreSQL does
        return NON_FINITE["NaN" if value.is_nan() else ("Infinity" if value > 0 else "-Infinity")]
    # every digit of a numeric, in plain notation (a float would round numeric(20,2)
    # amounts; the driver may hand over 1.00E+30 for a numeric(40,0)); a numeric without
    # a fraction part (exponent >= 0: no point in its plain text) that fits is a JSON integer
    text = format(value, "f")
    if "." not in text:
        number = int(text)
        if _INT_RANGE[0] <= number <= _INT_RANGE[1]:
            return number
    return orjson.Fragment(text)


def _default(value: Any) -> Any:
    # most frequent first: numeric and uuid columns come here for every value
    if isinstance(value, Decimal):
        text = str(value)
        if "." in text and "E" not in text:  # _decimal's most frequent case, without a frame
            return orjson.Fragment(text)  # (NaN and the infinities have no point)
        return _decimal(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(
        value,
        ipaddress.IPv4Address
        | ipaddress.IPv6Address
        | ipaddress.IPv4Network
        | ipaddress.IPv6Network,
    ):
        return str(value)
    if isinstance(value, set | frozenset | tuple):  # also point, lseg, box, circle, line
        return list(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    if hasattr(value, "lower_inc"):  # a range (the driver's Range)
        return _range(value)
    if hasattr(value, "is_closed"):  # path and polygon (a polygon is always closed)
        points = [list(p) for p in value.points]
        if type(value).__name__ == "Polygon":
            return points
        return {"closed": value.is_closed, "points": points}
    if hasattr(value, "as_string"):  # bit and varbit
        return value.as_string()
    if isinstance(value, dt.timedelta):
        return interval_iso(0, value.days, value.seconds * 1_000_000 + value.microseconds)
    if isinstance(value, dt.time):  # a time with an offset (orjson refuses those)
        return value.isoformat()
    items = getattr(value, "items", None)
    if callable(items):  # a composite value (the driver's record type): an object
        return dict(items())
    return str(value)


def _range(value: Any) -> dict[str, Any]:
    if value.isempty:
        return {"lower": None, "upper": None, "bounds": "empty"}
    bounds = ("[" if value.lower_inc else "(") + ("]" if value.upper_inc else ")")
    return {"lower": value.lower, "upper": value.upper, "bounds": bounds}


class PgText(str):
    """A value answered as PostgreSQL writes it (infinity, years beyond 9999, BC, NaN).

    A plain JSON string to orjson; CSV writes it as is (never formula-escaped: the
    engine spells these, not the data).
    """

    __slots__ = ()


NON_FINITE = {k: PgText(k) for k in ("NaN", "Infinity", "-Infinity", "infinity", "-infinity")}

_US_PER_DAY = 86_400_000_000
_CYCLE_DAYS = 146_097  # days in 400 Gregorian years: the calendar repeats
_PG_EPOCH = dt.datetime(2000, 1, 1)  # PostgreSQL's day 0 and microsecond 0
_PG_EPOCH_ORDINAL = _PG_EPOCH.toordinal()


def _year_text(year: int) -> tuple[str, str]:
    """(year digits, era suffix) as PostgreSQL writes an astronomical year (0 is 1 BC)."""
    return (f"{year:04d}", "") if year > 0 else (f"{1 - year:04d}", " BC")


def date_text(days: int) -> str:
    """PostgreSQL's ISO text of a date given as days since 2000-01-01 (any year)."""
    cycles, rest = divmod(days, _CYCLE_DAYS)
    d = dt.date.fromordinal(_PG_EPOCH_ORDINAL + rest)
    year, era = _year_text(d.year + 400 * cycles)
    return PgText(f"{year}-{d.month:02d}-{d.day:02d}{era}")


def timestamp_text(us: int, utc: bool) -> str:
    """PostgreSQL's ISO text (in UTC) of a timestamp given as microseconds since 2000."""
    days, us_of_day = divmod(us, _US_PER_DAY)
    cycles, rest = divmod(days, _CYCLE_DAYS)
    d = dt.date.fromordinal(_PG_EPOCH_ORDINAL + rest)
    year, era = _year_text(d.year + 400 * cycles)
    seconds, fraction = divmod(us_of_day, 1_000_000)
    minutes, second = divmod(seconds, 60)
    clock = f"{minutes // 60:02d}:{minutes % 60:02d}:{second:02d}"
    if fraction:
        clock += f".{fraction:06d}".rstrip("0")
    return PgText(f"{year}-{d.month:02d}-{d.day:02d} {clock}{'+00' if utc else ''}{era}")


def interval_iso(months: int, days: int, us: int) -> str:
    """An interval as an ISO 8601 duration, exactly as PostgreSQL's ``iso_8601`` style."""
    year, month = int(months / 12), months - 12 * int(months / 12)  # C truncation
    hours, rest = _trunc_divmod(us, 3_600_000_000)
    minutes, rest = _trunc_divmod(rest, 60_000_000)
    seconds, fraction = _trunc_divmod(rest, 1_000_000)
    if not (months or days or us):
        return "PT0S"
    out = "P" + _part(year, "Y") + _part(month, "M") + _part(days, "D")
    if hours or minutes or seconds or fraction:
        out += "T" + _part(hours, "H") + _part(minutes, "M")
    if seconds or fraction:
        sign = "-" if seconds < 0 or fraction < 0 else ""
        text = str(abs(seconds))
        if fraction:
            text += f".{abs(fraction):06d}".rstrip("0")
        out += f"{sign}{text}S"
    return out


def _trunc_divmod(n: int, d: int) -> tuple[int, int]:
    q = abs(n) // d * (1 if n >= 0 else -1)
    return q, n - q * d


def _part(n: int, unit: str) -> str:
    return f"{n}{unit}" if n else ""


_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_ANY_KEYS = orjson.OPT_NON_STR_KEYS | _OPTIONS


def encode(body: Any) -> bytes:
    """The body's JSON. Keys are strings but for a rare few (a key of another type is
    written as its text): orjson's string-keyed path first (50 rows: 39 against 46 us),
    the other only when it refuses (the same bytes where both apply)."""
    try:
        return orjson.dumps(body, default=_default, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return orjson.dumps(body, default=_default, option=_ANY_KEYS)


# a raw line feed: orjson writes none itself (it escapes them in strings) and neither
# do the engine's fragments (numeric digits, jsonb text), so in one encoded batch it
# can only be this separator
_NEWLINE = orjson.Fragment(b"\n")


def ndjson_lines(rows: Sequence[Any]) -> bytes:
    """``b"".join(encode(r) + b"\n" for r in rows)``, byte for byte, in one orjson call
    (a call per row costs more than its encoding): ``[r1,\n,r2,\n]`` with each
    ``,\n,`` made a line feed."""
    if not rows:
        return b""
    items: list[Any] = [_NEWLINE] * (2 * len(rows))
    items[0::2] = rows
    return encode(items).replace(b",\n,", b"\n")[1:-3] + b"\n"


LARGE_LIST = 1000  # rows: a list this long is encoded in slices of this many (~1-2 ms each)


async def encode_slices(
    rows: Sequence[Any], shape_rows: Callable[[Sequence[Any]], list[Any]], size: int = LARGE_LIST
) -> orjson.Fragment:
    """``encode(shape_rows(rows))`` as a fragment, byte for byte, built ``size`` rows at a
    time with the event loop given back between slices (orjson holds the GIL for a whole
    call, so a thread would not let the loop run meanwhile)."""
    parts = []
    for start in range(0, len(rows), size):
        if start:
            await asyncio.sleep(0)  # other requests' turn
        parts.append(encode(shape_rows(rows[start : start + size]))[1:-1])
    return orjson.Fragment(b"[" + b",".join(parts) + b"]")


Row = Mapping[str, Any]


def _renamer(fields: tuple[tuple[str, str], ...]) -> Callable[[Row], dict[str, Any]]:
    if not fields:
        return dict
    names = dict(fields)

    def rename(row: Row) -> dict[str, Any]:
        return {names.get(k, k): v for k, v in row.items()}

    return rename


@dataclass(slots=True)  # made per request: frozen fields cost an object.__setattr__ each
class Shaped:
    """The payload of a successful answer, before any envelope."""

    payload: Any
    status: int
    empty: bool = False  # answer has no body (204, or shape none)
    count: int | None = None
    pagination: Mapping[str, Any] | None = None
    headers: tuple[tuple[str, str], ...] = ()  # a page's Link, Vary, Preference-Applied


class Shaper:
    """Compiled from a row's ``result_mapping``."""

    def __init__(self, result: ResultSpec, method: str) -> None:
        self.result = result
        self.row = _renamer(result.fields)
        self._names = dict(result.fields)
        default_status = 201 if method == "POST" and result.shape != "none" else 200
        self.status = result.status or (204 if result.shape == "none" else default_status)
        self.not_found = result.not_found

    def rename(self, row: Row) -> dict[str, Any]:
        return self.row(row)

    def rows(self, rows: Sequence[Row]) -> list[dict[str, Any]]:
        """``[self.row(r) for r in rows]``: the records of one statement share their columns,
        so their (renamed) keys are read once and each record zipped with them, 20 % less
        than a dict of each record by its mapping protocol (50 rows: 45 against 56 us). No
        ``strict`` zip: the records of one statement are all as long (strict costs 15 us)."""
        if len(rows) < 2 or type(rows[0]) is not asyncpg.Record:
            return [self.row(r) for r in rows]
        names = self._names
        # a record iterates over its values, not its keys (as a tuple does)
        keys = tuple(names.get(k, k) for k in rows[0].keys())  # noqa: SIM118
        if len(set(keys)) < len(keys):  # a name twice: each row as self.row makes it
            return [self.row(r) for r in rows]
        return [dict(zip(keys, r)) for r in rows]  # noqa: B905

    @property
    def bounded(self) -> bool:
        """A list without pagination: ``ENGINE_MAX_ROWS`` bounds its rows."""
        return self.result.shape == "list" and self.result.paginate is None

    def fetch_limit(self, max_rows: int, *, read: bool = True) -> int | None:
        """The most rows worth fetching (None: every row): one past ``max_rows`` for a list
        without pagination (to know it is over), the first row of an object or scalar read.
        A write's object or scalar is not cut: its statement runs to its end."""
        if self.bounded:
            return max_rows + 1
        if read and self.result.shape in ("object", "scalar"):
            return 1
        return None

    def check_bound(self, rows: Sequence[Row], max_rows: int | None) -> None:
        """500 RESULT_TOO_LARGE when a list without pagination has more than ``max_rows``."""
        if max_rows is not None and self.bounded and len(rows) > max_rows:
            raise ApiError(
                "RESULT_TOO_LARGE",
                f"This list has more than {max_rows} rows, the most a list without pagination"
                " may answer (ENGINE_MAX_ROWS). The endpoint's admin should paginate it"
                ' (result_mapping.paginate) or stream it (result_mapping shape "stream").',
                internal=f"an unpaginated list reached {len(rows)} rows (limit {max_rows})",
            )

    def shape(
        self, rows: Sequence[Row], *, affected: int | None = None, max_rows: int | None = None
    ) -> Shaped:
        shape = self.result.shape
        if shape == "list":
            self.check_bound(rows, max_rows)
            items = self.rows(rows)
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

    def sliced(self, rows: Sequence[Row]) -> bool:
        """Whether :meth:`shape_read` encodes ``rows`` in slices (else it is :meth:`shape`)."""
        return self.result.shape == "list" and len(rows) >= LARGE_LIST

    async def shape_read(self, rows: Sequence[Row], *, max_rows: int | None = None) -> Shaped:
        """:meth:`shape` for a read; a list of ``LARGE_LIST`` rows or more is encoded here in
        slices, giving the event loop back between them (its payload is the encoded array)."""
        if not self.sliced(rows):
            return self.shape(rows, max_rows=max_rows)
        self.check_bound(rows, max_rows)
        return Shaped(await encode_slices(rows, self.rows), self.status, count=len(rows))

    def page(self, rows: Sequence[Row], page: PageRequest, *, total: int | None = None) -> Shaped:
        """A page of a list: ``rows`` holds one row more than the page when more follow."""
        pagination, headers = page.describe(rows, total=total)
        items = self.rows(rows[: page.limit])
        return Shaped(items, self.status, count=len(items), pagination=pagination, headers=headers)


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


@dataclass(slots=True)  # made per request: frozen fields cost an object.__setattr__ each
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
