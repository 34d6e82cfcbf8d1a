"""How each PostgreSQL type is decoded (and encoded): the codecs every connection gets.

The driver's own decoders map ±infinity to date.max/min (lossy), refuse years
beyond 9999 and BC, refuse time '24:00:00', drop interval months, map NaN to a
float JSON cannot hold, and read some types as text only, which it cannot do
inside a record or range. These codecs decode every value so it answers by the
rule of the README's type table. All are binary or tuple codecs: a text-format
codec cannot sit inside a record or range.
"""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from functools import partial
from typing import Any

import asyncpg
import orjson

from engine.shaping import NON_FINITE, date_text, interval_iso, timestamp_text

TYPE_FACTS = """
SELECT scale('1'::money::numeric) AS money_scale,
       (SELECT n.nspname::text FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE t.typname = 'hstore' LIMIT 1) AS hstore_schema
"""

# Measured
# (1,000 rows): the tuple codecs decode timestamp/timestamptz ~10% faster than the
# driver's, date ~25% slower (a text codec would be as fast, but cannot sit inside a
# daterange: no text codecs, as ranges and composites cannot hold text-format elements).
_I32_MAX, _I32_MIN = 2**31 - 1, -(2**31)
_I64_MAX, _I64_MIN = 2**63 - 1, -(2**63)
_EPOCH = dt.datetime(2000, 1, 1)
_EPOCH_UTC = _EPOCH.replace(tzinfo=dt.UTC)
_EPOCH_ORDINAL = _EPOCH.toordinal()
_US = dt.timedelta(microseconds=1)
_INFINITIES = {"infinity": 1, "-infinity": -1}
_F8 = struct.Struct("!d")
_F4 = struct.Struct("!f")


def _special_time(us: int, utc: bool) -> str:
    if us == _I64_MAX:
        return NON_FINITE["infinity"]
    if us == _I64_MIN:
        return NON_FINITE["-infinity"]
    return timestamp_text(us, utc)


def _decode_timestamptz(t: tuple[int], _e: dt.datetime = _EPOCH_UTC, _us: Any = _US) -> Any:
    try:  # a microsecond times n: timedelta(0, 0, n) parses its arguments, at twice the cost
        return _e + _us * t[0]
    except OverflowError:
        return _special_time(t[0], True)


def _decode_timestamp(t: tuple[int], _e: dt.datetime = _EPOCH, _us: Any = _US) -> Any:
    try:
        return _e + _us * t[0]
    except OverflowError:
        return _special_time(t[0], False)


def _encode_timestamp(value: Any, utc: bool) -> tuple[int]:
    if isinstance(value, str):
        sign = _INFINITIES.get(value.strip().lower())
        if sign is None:
            value = dt.datetime.fromisoformat(value)
        else:
            return (_I64_MAX if sign > 0 else _I64_MIN,)
    if utc:
        value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return ((value - _EPOCH_UTC) // _US,)
    if value.tzinfo:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return ((value - _EPOCH) // _US,)


def _decode_date_tuple(t: tuple[int], _date: Any = dt.date.fromordinal) -> Any:
    try:
        return _date(_EPOCH_ORDINAL + t[0])
    except (ValueError, OverflowError):
        days = t[0]
        if days == _I32_MAX:
            return NON_FINITE["infinity"]
        if days == _I32_MIN:
            return NON_FINITE["-infinity"]
        return date_text(days)


def _encode_date_tuple(value: Any) -> tuple[int]:
    if isinstance(value, str):
        sign = _INFINITIES.get(value.strip().lower())
        if sign is not None:
            return (_I32_MAX if sign > 0 else _I32_MIN,)
        value = dt.date.fromisoformat(value)
    return (value.toordinal() - _EPOCH_ORDINAL,)


def _decode_interval(t: tuple[int, int, int]) -> str:
    months, days, us = t
    if us == _I64_MAX and months == _I32_MAX:
        return NON_FINITE["infinity"]
    if us == _I64_MIN and months == _I32_MIN:
        return NON_FINITE["-infinity"]
    return interval_iso(months, days, us)


def _encode_interval(value: dt.timedelta) -> tuple[int, int, int]:
    return (0, value.days, value.seconds * 1_000_000 + value.microseconds)


def _clock(us: int) -> str:
    seconds, fraction = divmod(us, 1_000_000)
    minutes, second = divmod(seconds, 60)
    text = f"{minutes // 60:02d}:{minutes % 60:02d}:{second:02d}"
    return text + f".{fraction:06d}".rstrip("0") if fraction else text


def _decode_time(t: tuple[int]) -> str:
    return _clock(t[0])


def _decode_timetz(t: tuple[int, int]) -> str:
    east = -t[1]  # PostgreSQL keeps the offset in seconds west of UTC
    minutes, second = divmod(abs(east), 60)
    offset = f"{'-' if east < 0 else '+'}{minutes // 60:02d}"
    if minutes % 60 or second:
        offset += f":{minutes % 60:02d}" + (f":{second:02d}" if second else "")
    return _clock(t[0]) + offset


def _time_us(value: dt.time) -> int:
    return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond


def _encode_time(value: Any) -> tuple[int]:
    if isinstance(value, str):
        value = dt.time.fromisoformat(value)
    return (_time_us(value),)


def _encode_timetz(value: Any) -> tuple[int, int]:
    if isinstance(value, str):
        value = dt.time.fromisoformat(value)
    offset = value.utcoffset()
    return (_time_us(value), -int(offset.total_seconds()) if offset else 0)


def _float_decoder(unpack: Callable[[bytes], tuple[float]]) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        (value,) = unpack(data)
        if value - value == 0:  # finite (NaN and ±Infinity give NaN)
            return value
        return NON_FINITE["NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")]

    return decode


_decode_float4_raw = _float_decoder(_F4.unpack)


def _decode_float4(data: bytes) -> Any:
    """A real as PostgreSQL writes it: the shortest decimal that is the same float4
    (0.1, not the double 0.10000000149011612)."""
    value = _decode_float4_raw(data)
    if isinstance(value, float):
        for digits in range(6, 10):
            shorter = float(f"{value:.{digits}g}")
            if _F4.pack(shorter) == data:
                return shorter
    return value


def _float_encoder(pack: Callable[[float], bytes]) -> Callable[[Any], bytes]:
    return lambda value: pack(float(value))


_JSONB_VERSION = b"\x01"  # jsonb's binary form: a version byte, then the JSON text


def _encode_jsonb(value: Any) -> bytes:
    return _JSONB_VERSION + orjson.dumps(value)


def _decode_jsonb(data: bytes) -> Any:
    try:
        return orjson.loads(memoryview(data)[1:])
    except orjson.JSONDecodeError:
        # valid JSON that orjson cannot hold (1e400): answered as PostgreSQL wrote it
        # (jsonb's text has no raw newline, so an NDJSON row stays one line)
        return orjson.Fragment(data[1:])


def _decode_mac(data: bytes) -> str:
    return data.hex(":")


def _encode_mac(value: Any) -> bytes:
    return bytes.fromhex(str(value).replace(":", "").replace("-", "").replace(".", ""))


# Types the driver reads as text only (so not inside a record): binary decoders that
# write PostgreSQL's own text form (tsvector, tsquery, hstore) or a number (money).
_I16 = struct.Struct("!h")
_U16 = struct.Struct("!H")
_I32 = struct.Struct("!i")
_I64 = struct.Struct("!q")
_WEIGHTS = {3: "A", 2: "B", 1: "C", 0: ""}
_OPERATORS = {2: " & ", 3: " | "}
_PRIORITY = {1: 4, 4: 3, 2: 2, 3: 1}  # NOT > PHRASE (<->) > AND > OR, as tsquery's output


def _quote_lexeme(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _cstring(data: bytes, at: int) -> tuple[str, int]:
    end = data.index(0, at)
    return data[at:end].decode(), end + 1


def _decode_tsvector(data: bytes) -> str:
    (count,), at, out = _I32.unpack_from(data), 4, []
    for _ in range(count):
        lexeme, at = _cstring(data, at)
        (npos,) = _U16.unpack_from(data, at)
        at += 2
        positions = []
        for _ in range(npos):
            (pos,) = _U16.unpack_from(data, at)
            at += 2
            positions.append(f"{pos & 0x3FFF}{_WEIGHTS[pos >> 14]}")
        out.append(_quote_lexeme(lexeme) + (":" + ",".join(positions) if positions else ""))
    return " ".join(out)


def _decode_tsquery(data: bytes) -> str:
    (count,), at = _I32.unpack_from(data), 4
    items: list[tuple[Any, ...]] = []
    for _ in range(count):
        kind = data[at]
        if kind == 1:  # an operand: weight bits, prefix flag, text
            weight, prefix = data[at + 1], data[at + 2]
            text, at = _cstring(data, at + 3)
            items.append(("val", text, weight, prefix))
        else:  # an operator: 1 NOT, 2 AND, 3 OR, 4 PHRASE (with a distance)
            oper = data[at + 1]
            at += 2
            distance = 0
            if oper == 4:
                (distance,) = _I16.unpack_from(data, at)
                at += 2
            items.append(("op", oper, distance))

    def infix(i: int) -> tuple[str, int, int]:  # (text, priority, next index)
        item = items[i]
        if item[0] == "val":
            _, text, weight, prefix = item
            marks = ("*" if prefix else "") + "".join(
                letter for bit, letter in ((8, "A"), (4, "B"), (2, "C"), (1, "D")) if weight & bit
            )
            return _quote_lexeme(text) + (":" + marks if marks else ""), 5, i + 1
        _, oper, distance = item
        if oper == 1:
            operand, priority, nxt = infix(i + 1)
            return "!" + (operand if priority >= 4 else f"( {operand} )"), 4, nxt
        right, rp, j = infix(i + 1)  # stored: the operator, its right operand, its left one
        left, lp, k = infix(j)
        mine = _PRIORITY[oper]
        if lp < mine:
            left = f"( {left} )"
        if rp < mine or (rp == mine and oper == 4):
            right = f"( {right} )"
        sign = _OPERATORS.get(oper) or (" <-> " if distance == 1 else f" <{distance}> ")
        return left + sign + right, mine, k

    return infix(0)[0] if items else ""


def _decode_hstore(data: bytes) -> str:
    (count,), at, pairs = _I32.unpack_from(data), 4, []

    def text() -> str | None:
        nonlocal at
        (size,) = _I32.unpack_from(data, at)
        at += 4
        if size < 0:
            return None
        value = data[at : at + size].decode()
        at += size
        return value

    def quote(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    for _ in range(count):
        key, value = text(), text()
        pairs.append(f"{quote(key or '')}=>{'NULL' if value is None else quote(value)}")
    return ", ".join(pairs)


def _text_only(value: Any) -> bytes:
    raise TypeError("this type is answered, not bound: cast the parameter to text")


def _money_codec(scale: int) -> tuple[Callable[[Any], bytes], Callable[[bytes], Decimal]]:
    unit = Decimal(1).scaleb(-scale)

    def decode(data: bytes) -> Decimal:
        return Decimal(_I64.unpack(data)[0]).scaleb(-scale)

    def encode(value: Any) -> bytes:
        # half away from zero, as PostgreSQL rounds '0.125'::money
        return _I64.pack(int((Decimal(str(value)) / unit).to_integral_value(ROUND_HALF_UP)))

    return encode, decode


async def register(conn: asyncpg.Connection) -> None:
    """Codecs for every pooled connection (see the type table in the README).

    json/jsonb as Python values via orjson; the date/time types and floats decoded
    so that every value answers by a documented rule.
    """
    # binary, not text: a text-format codec cannot be decoded inside a record or range
    codecs: tuple[tuple[str, Callable[..., Any], Callable[..., Any], str], ...] = (
        ("jsonb", _encode_jsonb, _decode_jsonb, "binary"),
        ("json", orjson.dumps, orjson.loads, "binary"),
        ("macaddr", _encode_mac, _decode_mac, "binary"),
        ("macaddr8", _encode_mac, _decode_mac, "binary"),
        ("timestamptz", partial(_encode_timestamp, utc=True), _decode_timestamptz, "tuple"),
        ("timestamp", partial(_encode_timestamp, utc=False), _decode_timestamp, "tuple"),
        ("date", _encode_date_tuple, _decode_date_tuple, "tuple"),
        ("interval", _encode_interval, _decode_interval, "tuple"),
        ("time", _encode_time, _decode_time, "tuple"),  # '24:00:00' fits no Python time
        ("timetz", _encode_timetz, _decode_timetz, "tuple"),
        ("float8", _float_encoder(_F8.pack), _float_decoder(_F8.unpack), "binary"),
        ("float4", _float_encoder(_F4.pack), _decode_float4, "binary"),
    )
    for name, encoder, decoder, fmt in codecs:
        await conn.set_type_codec(
            name, schema="pg_catalog", encoder=encoder, decoder=decoder, format=fmt
        )
    # money: an exact number in the currency's units (lc_monetary sets the fraction digits)
    scale, hstore = await conn.fetchrow(TYPE_FACTS)
    money_encode, money_decode = _money_codec(scale)
    await conn.set_type_codec(
        "money", schema="pg_catalog", encoder=money_encode, decoder=money_decode, format="binary"
    )
    for name, decoder in (("tsvector", _decode_tsvector), ("tsquery", _decode_tsquery)):
        await conn.set_type_codec(
            name, schema="pg_catalog", encoder=_text_only, decoder=decoder, format="binary"
        )
    if hstore is not None:  # the extension is installed (in the schema it names)
        await conn.set_type_codec(
            "hstore", schema=hstore, encoder=_text_only, decoder=_decode_hstore, format="binary"
        )
