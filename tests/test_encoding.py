"""Every PostgreSQL value encodes by a documented rule, in JSON, NDJSON and CSV.

One table of (SQL expression, expected JSON value, expected CSV cell), served over
real HTTP by one engine: each expression as a list endpoint, an NDJSON stream and
a CSV stream, and again inside an array and an anonymous record (JSON array) so
element codecs are exercised too. Named composites, ranges and multiranges of
special values have rows of their own.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
from collections.abc import Iterator
from typing import Any

import asyncpg
import orjson
import pytest

from engine.database import init_connection
from tests.engine_server import EngineClient, RunningEngine
from tests.helpers import add_endpoint
from tests.pg import DB, with_database

UUID = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"

# (SQL expression, JSON value, CSV cell); CSV writes a non-text value as its JSON text
CASES: list[tuple[str, Any, str]] = [
    ("1::int2", 1, "1"),
    ("2147483647::int4", 2147483647, "2147483647"),
    ("'-9223372036854775808'::int8", -(2**63), "-9223372036854775808"),
    ("123456789012345678901234567890.0100::numeric", 123456789012345678901234567890.0100,
     "123456789012345678901234567890.0100"),
    ("'NaN'::numeric", "NaN", "NaN"),
    ("'Infinity'::numeric", "Infinity", "Infinity"),
    ("'-Infinity'::numeric", "-Infinity", "-Infinity"),
    ("1.5::float4", 1.5, "1.5"),
    ("0.1::float4", 0.1, "0.1"),  # as PostgreSQL writes a real, not as a double
    ("0.1::float8", 0.1, "0.1"),
    ("'NaN'::float8", "NaN", "NaN"),
    ("'Infinity'::float4", "Infinity", "Infinity"),
    ("'-Infinity'::float8", "-Infinity", "-Infinity"),
    ("'x'::text", "x", "x"),
    ("'ab'::char(3)", "ab ", "ab "),
    ("'é'::varchar", "é", "é"),
    ("'n'::name", "n", "n"),
    ("true", True, "true"),
    ("'2024-02-29'::date", "2024-02-29", "2024-02-29"),
    ("'infinity'::date", "infinity", "infinity"),
    ("'-infinity'::date", "-infinity", "-infinity"),
    ("'10000-01-01'::date", "10000-01-01", "10000-01-01"),
    ("'0044-03-15 BC'::date", "0044-03-15 BC", "0044-03-15 BC"),
    ("'2024-01-02 03:04:05.5'::timestamp", "2024-01-02T03:04:05.500000", "2024-01-02T03:04:05.500000"),
    ("'infinity'::timestamp", "infinity", "infinity"),
    ("'12000-01-01 10:00'::timestamp", "12000-01-01 10:00:00", "12000-01-01 10:00:00"),
    ("'0001-01-01 00:00:00.25 BC'::timestamp", "0001-01-01 00:00:00.25 BC",
     "0001-01-01 00:00:00.25 BC"),
    ("'2024-01-02 03:04:05+02'::timestamptz", "2024-01-02T01:04:05+00:00",
     "2024-01-02T01:04:05+00:00"),
    ("'-infinity'::timestamptz", "-infinity", "-infinity"),
    ("'1969-12-31 23:59:59.999999+00'::timestamptz", "1969-12-31T23:59:59.999999+00:00",
     "1969-12-31T23:59:59.999999+00:00"),
    ("'0001-01-01 00:00:00.000001'::timestamp", "0001-01-01T00:00:00.000001",
     "0001-01-01T00:00:00.000001"),
    ("'294276-12-31 23:59:59.999999+00'::timestamptz", "294276-12-31 23:59:59.999999+00",
     "294276-12-31 23:59:59.999999+00"),
    ("'4713-01-01 00:00+00 BC'::timestamptz", "4713-01-01 00:00:00+00 BC",
     "4713-01-01 00:00:00+00 BC"),
    ("'03:04:05.5'::time", "03:04:05.5", "03:04:05.5"),
    ("'24:00'::time", "24:00:00", "24:00:00"),
    ("'03:04:05+05:30'::timetz", "03:04:05+05:30", "03:04:05+05:30"),
    ("'03:04:05-08'::timetz", "03:04:05-08", "03:04:05-08"),
    ("'1 year 2 mons 3 days 04:05:06.5'::interval", "P1Y2M3DT4H5M6.5S", "P1Y2M3DT4H5M6.5S"),
    ("'-1 days -00:00:00.25'::interval", "P-1DT-0.25S", "P-1DT-0.25S"),
    ("'0'::interval", "PT0S", "PT0S"),
    ("'infinity'::interval", "infinity", "infinity"),
    ("'\\xdeadbeef'::bytea", "deadbeef", "deadbeef"),
    (f"'{UUID}'::uuid", UUID, UUID),
    ("'10.0.0.1'::inet", "10.0.0.1", "10.0.0.1"),
    ("'10.0.0.1/8'::inet", "10.0.0.1/8", "10.0.0.1/8"),
    ("'2001:db8::/32'::cidr", "2001:db8::/32", "2001:db8::/32"),
    ("'08:00:2b:01:02:03'::macaddr", "08:00:2b:01:02:03", "08:00:2b:01:02:03"),
    ("'08:00:2b:01:02:03:04:05'::macaddr8", "08:00:2b:01:02:03:04:05", "08:00:2b:01:02:03:04:05"),
    ("12.34::money", 12.34, "12.34"),  # a number in the currency's units, no symbol
    ("B'101'", "101", "101"),
    ("B'1'::varbit(4)", "1", "1"),
    ("'<a>x</a>'::xml", "<a>x</a>", "<a>x</a>"),
    ("'happy'::enc_mood", "happy", "happy"),
    ("7::enc_positive", 7, "7"),
    ("'{\"a\": [1, null], \"b\": \"x\"}'::json", {"a": [1, None], "b": "x"}, '{"a":[1,null],"b":"x"}'),
    ("'{\"b\": 1.5, \"a\": true}'::jsonb", {"a": True, "b": 1.5}, '{"a":true,"b":1.5}'),
    ("'a=>1, b=>NULL'::hstore", '"a"=>"1", "b"=>NULL', '"a"=>"1", "b"=>NULL'),
    ("int4range(1, 5)", {"lower": 1, "upper": 5, "bounds": "[)"},
     '{"lower":1,"upper":5,"bounds":"[)"}'),
    ("'empty'::int4range", {"lower": None, "upper": None, "bounds": "empty"},
     '{"lower":null,"upper":null,"bounds":"empty"}'),
    ("'(1.5,]'::numrange", {"lower": 1.5, "upper": None, "bounds": "()"},
     '{"lower":1.5,"upper":null,"bounds":"()"}'),
    ("'[2024-01-01,infinity)'::daterange", {"lower": "2024-01-01", "upper": "infinity", "bounds": "[)"},
     '{"lower":"2024-01-01","upper":"infinity","bounds":"[)"}'),
    ("'[2024-01-01 00:00+00,)'::tstzrange",
     {"lower": "2024-01-01T00:00:00+00:00", "upper": None, "bounds": "[)"},
     '{"lower":"2024-01-01T00:00:00+00:00","upper":null,"bounds":"[)"}'),
    ("'{[1,3), [5,7)}'::int4multirange",
     [{"lower": 1, "upper": 3, "bounds": "[)"}, {"lower": 5, "upper": 7, "bounds": "[)"}],
     '[{"lower":1,"upper":3,"bounds":"[)"},{"lower":5,"upper":7,"bounds":"[)"}]'),
    ("'(1,2.5)'::point", [1.0, 2.5], "[1.0,2.5]"),
    ("'[(1,2),(3,4)]'::lseg", [[1.0, 2.0], [3.0, 4.0]], "[[1.0,2.0],[3.0,4.0]]"),
    ("'(1,2),(3,4)'::box", [[3.0, 4.0], [1.0, 2.0]], "[[3.0,4.0],[1.0,2.0]]"),
    ("'[(1,2),(3,4)]'::path", {"closed": False, "points": [[1.0, 2.0], [3.0, 4.0]]},
     '{"closed":false,"points":[[1.0,2.0],[3.0,4.0]]}'),
    ("'((1,2),(3,4),(5,0))'::polygon", [[1.0, 2.0], [3.0, 4.0], [5.0, 0.0]],
     "[[1.0,2.0],[3.0,4.0],[5.0,0.0]]"),
    ("'<(1,2),3>'::circle", [[1.0, 2.0], 3.0], "[[1.0,2.0],3.0]"),
    ("'{1,2,3}'::line", [1.0, 2.0, 3.0], "[1.0,2.0,3.0]"),
    ("'a fat cat'::tsvector", "'a' 'cat' 'fat'", "'a' 'cat' 'fat'"),
    ("'fat & cat'::tsquery", "'fat' & 'cat'", "'fat' & 'cat'"),
    ("'0/16B3748'::pg_lsn", 23803720, "23803720"),
    ("NULL::text", None, ""),
    ("ROW(1, 'infinity'::date, '03:04+01'::timetz, 'NaN'::float8)::enc_pair",
     {"n": 1, "d": "infinity", "t": "03:04:00+01", "f": "NaN"},
     '{"n":1,"d":"infinity","t":"03:04:00+01","f":"NaN"}'),
    ("ARRAY[ARRAY[1, 2], ARRAY[3, NULL]]", [[1, 2], [3, None]], "[[1,2],[3,null]]"),
]  # fmt: skip

NEEDS = {"xml": "'<a/>'::xml", "hstore": "'a=>1'::hstore"}

SETUP = """
CREATE TYPE enc_mood AS ENUM ('sad', 'happy');
CREATE DOMAIN enc_positive AS int CHECK (VALUE > 0);
CREATE TYPE enc_pair AS (n int, d date, t timetz, f float8);
"""


# Types the driver reads only as text: inside an anonymous record it hands over their
# binary bytes as text (or fails). Not fixed yet: cast them to text inside a ROW().
# text-only types the driver could not decode inside a record: none left (engine/pgcodecs.py)
RECORD_GAPS: tuple[str, ...] = ()


def _variants() -> list[Any]:
    """Each case alone, in an array and in an anonymous record (a JSON array)."""
    out = []
    for i, (sql, value, cell) in enumerate(CASES):
        out.append(pytest.param(f"c{i}", sql, value, cell, id=f"c{i}"))
        text = orjson.dumps(value).decode() if isinstance(value, str) else cell  # its JSON
        if sql != "NULL::text" and not sql.startswith("ARRAY"):
            out.append(pytest.param(f"c{i}a", f"ARRAY[{sql}]", [value], f"[{text}]", id=f"c{i}a"))
        gap = any(sql.endswith(f"::{t}") for t in RECORD_GAPS)
        marks = [pytest.mark.xfail(reason="text-only type in a record", strict=True)] if gap else []
        record = f'[{text or "null"},"r"]'
        key = f"c{i}r"
        param = pytest.param(
            key, f"ROW({sql}, 'r'::text)", [value, "r"], record, id=key, marks=marks
        )
        out.append(param)
    return out


VARIANTS = _variants()


@pytest.fixture(scope="module")
def served(pg_url: str, template_db: str) -> Iterator[tuple[EngineClient, set[str]]]:
    """One engine serving every variant three ways; the set names unavailable types."""
    name = f"engine_enc{os.getpid()}"
    admin = DB(pg_url)
    admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    url = with_database(pg_url, name)
    db = DB(url)
    db.execute(SETUP)
    missing = set()
    try:
        db.execute("CREATE EXTENSION IF NOT EXISTS hstore")
    except Exception:
        missing.add("hstore")
    try:
        db.fetchval(NEEDS["xml"])
    except Exception:
        missing.add("xml")
    for key, sql, _value, _cell in (p.values for p in VARIANTS):
        if any(f"::{t}" in sql for t in missing):
            continue
        add_endpoint(db, f"/enc/{key}", sql=f"SELECT {sql} AS v")
        add_endpoint(db, f"/enc/{key}/ndjson", sql=f"SELECT {sql} AS v", result={"shape": "stream"})
        add_endpoint(
            db,
            f"/enc/{key}/csv",
            sql=f"SELECT {sql} AS v",
            result={"shape": "stream", "format": "csv"},
        )
    server = RunningEngine(url)
    try:
        yield server.client, missing
    finally:
        server.stop()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize(("key", "sql", "value", "cell"), VARIANTS)
def test_every_type_encodes_by_its_rule(
    served: tuple[EngineClient, set[str]], key: str, sql: str, value: Any, cell: str
) -> None:
    client, missing = served
    unavailable = [t for t in missing if f"::{t}" in sql]
    if unavailable:
        pytest.skip(f"{unavailable[0]} is not available on this server")

    response = client.get(f"/enc/{key}")
    assert response.status_code == 200, response.text
    body = response.json()
    rows = body["data"] if isinstance(body, dict) else body
    assert rows == [{"v": value}]

    ndjson = client.get(f"/enc/{key}/ndjson")
    assert ndjson.status_code == 200, ndjson.text
    assert [orjson.loads(line) for line in ndjson.content.splitlines()] == [{"v": value}]

    exported = client.get(f"/enc/{key}/csv")
    assert exported.status_code == 200, exported.text
    assert list(csv.reader(io.StringIO(exported.text))) == [["v"], [cell]]


def test_interval_text_is_postgresqls_own_iso_8601_style(pg_url: str) -> None:
    """The engine's interval rule matches PostgreSQL's IntervalStyle iso_8601 exactly."""
    samples = [
        "1 year -2 mons 3 days -04:05:06.25",
        "-1 years -2 mons",
        "1 mon -1 s",
        "-0.000001 s",
        "100 hours 59 min",
        "-178000000 years",
        "2 days 00:00:00.5",
        "-13 mons",
    ]

    async def go() -> tuple[list[str], list[str]]:
        conn = await asyncpg.connect(pg_url)
        try:
            await init_connection(conn)
            got = [await conn.fetchval("SELECT $1::text::interval", t) for t in samples]
            await conn.execute("SET intervalstyle = iso_8601")
            want = [await conn.fetchval("SELECT $1::text::interval::text", t) for t in samples]
            return got, want
        finally:
            await conn.close()

    got, want = asyncio.run(go())
    assert got == want
