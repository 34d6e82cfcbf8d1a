"""The stream encoders (engine/streaming.py) column by column, against the per-value rule.

Pure: a batch of tuples (a Record iterates its values the same way) encoded by the
fast column-wise path must be byte for byte what the general rule writes value by
value (``_csv_cell`` for CSV, ``encode`` for NDJSON), whatever mix of types,
NULLs, NaNs, infinities, formulas and engine spellings (PgText) a column holds.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
import uuid
from decimal import Decimal
from typing import Any

import pytest

from engine.shaping import NON_FINITE, PgText, encode, timestamp_text
from engine.streaming import _Cells, _csv_cell, _csv_lines, ndjson_batch

UTC = dt.UTC
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


def _reference_csv(batch: list[tuple[Any, ...]], escape: bool) -> bytes:
    return _csv_lines([[_csv_cell(v, escape) for v in r] for r in batch])


def _reference_ndjson(keys: list[str], batch: list[tuple[Any, ...]]) -> bytes:
    return b"".join(encode(dict(zip(keys, r, strict=True))) + b"\n" for r in batch)


# one list of values per column; a batch takes row i from each (cycling)
COLUMNS: dict[str, list[Any]] = {
    "int": [1, -5, 0, 2**63 - 1, -(2**63)],
    "int_null": [1, None, 3],
    "text": ["plain", 'a "quoted", comma', "two\nlines", "cr\r\nlf", "", " lead space"],
    "text_null": ["x", None, "", "y"],
    "formula": ["ok", "=SUM(A1)", "+1", "-2", "@x", "\tTab", "\rCR", None],
    "pgtext": ["2024-01-01", PgText("-infinity"), NON_FINITE["infinity"], None],
    "datetime_utc": [
        dt.datetime(2024, 1, 1, tzinfo=UTC),
        dt.datetime(2024, 2, 29, 23, 59, 59, 1, tzinfo=UTC),
        dt.datetime(1, 1, 1, tzinfo=UTC),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        dt.datetime(2024, 6, 1, 12, 0, 0, 120000, tzinfo=UTC),
    ],
    "datetime_offset": [dt.datetime(2024, 1, 1, 8, 30, tzinfo=IST)],
    "datetime_naive": [dt.datetime(2024, 1, 1, 0, 0, 17), dt.datetime(999, 3, 4, 5, 6, 7, 8)],
    "datetime_null": [dt.datetime(2024, 1, 1, tzinfo=UTC), None],
    "timestamp_special": [
        dt.datetime(2024, 1, 1, tzinfo=UTC),
        NON_FINITE["infinity"],
        timestamp_text(10**17, True),
    ],
    "date": [dt.date(2024, 1, 1), dt.date(1, 1, 1), dt.date(9999, 12, 31)],
    "date_null": [dt.date(2024, 1, 1), None],
    "numeric": [Decimal("1.50"), Decimal("0.01"), Decimal("123456789012345678901234.5")],
    "numeric_int": [Decimal("100"), Decimal("1E+30"), Decimal("0"), Decimal("-7")],
    "numeric_tiny": [Decimal("0.0000001"), Decimal("-0.00"), Decimal("1E-20")],
    "numeric_null": [Decimal("2.25"), None],
    "numeric_special": [Decimal("1.5"), Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")],
    "numeric_minus_zero": [Decimal("-0"), Decimal("3")],
    "bool": [True, False],
    "bool_null": [True, None, False],
    "float": [0.1, 1e16, -0.0, 1.5e-7, float("nan"), float("inf"), float("-inf")],
    "uuid": [uuid.UUID(int=1), uuid.UUID(int=2**128 - 1)],
    "mixed": [1, "x", None, Decimal("2.5"), True, dt.date(2024, 1, 1), [1, 2], {"a": 1}],
    "all_null": [None],
    "json_text": ['{"a": 1}', "[1,2]"],
}


def _batch(names: list[str], rows: int, seed: int) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    columns = [COLUMNS[n] for n in names]
    return [tuple(rng.choice(c) for c in columns) for _ in range(rows)]


@pytest.mark.parametrize("name", sorted(COLUMNS))
@pytest.mark.parametrize("escape", [True, False])
def test_each_kind_of_column_encodes_as_the_per_value_rule(name: str, escape: bool) -> None:
    names = ["int", name, "text_null"]
    for seed in range(5):
        batch = _batch(names, 40, seed)
        assert _Cells(escape).lines(batch) == _reference_csv(batch, escape), (name, seed)
        assert ndjson_batch(names, batch) == _reference_ndjson(names, batch), (name, seed)


def test_a_column_of_one_value_kind_each_row() -> None:
    for name, values in COLUMNS.items():
        batch = [(v,) for v in values]
        assert _Cells(True).lines(batch) == _reference_csv(batch, True), name
        assert ndjson_batch(["v"], batch) == _reference_ndjson(["v"], batch), name


def test_every_column_at_once_round_trips_through_a_csv_reader() -> None:
    names = sorted(COLUMNS)
    batch = _batch(names, 500, 7)
    out = _Cells(True).lines(batch)
    assert out == _reference_csv(batch, True)
    rows = list(csv.reader(io.StringIO(out.decode(), newline="")))
    assert len(rows) == len(batch) and all(len(r) == len(names) for r in rows)
    text = rows[next(i for i, r in enumerate(batch) if r[names.index("text")] == "two\nlines")]
    assert text[names.index("text")] == "two\nlines"
    assert ndjson_batch(names, batch) == _reference_ndjson(names, batch)


def test_the_export_bench_row_shape() -> None:
    """bigint, int, text, timestamptz, numeric(12,2), nullable text: the fast paths only."""
    base = dt.datetime(2024, 1, 1, tzinfo=UTC)
    batch = [
        (
            g,
            1 + g % 50,
            f"customer {g} abc",
            base + dt.timedelta(seconds=17 * g),
            Decimal(g % 100000) / 100 + Decimal("0.01"),
            None if g % 3 == 0 else f"order #{g * 7 % 9973}",
        )
        for g in range(1, 2001)
    ]
    assert _Cells(True).lines(batch) == _reference_csv(batch, True)
    keys = ["id", "tenant_id", "name", "created_at", "amount", "note"]
    assert ndjson_batch(keys, batch) == _reference_ndjson(keys, batch)
