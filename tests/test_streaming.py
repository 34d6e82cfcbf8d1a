"""Honest streams (engine/streaming.py), over real HTTP against real PostgreSQL.

A stream that fails after its first byte must look incomplete to an HTTP client
and be logged; slots and connections come back whatever the client does; a
refusal for concurrency says so; CSV exports are attachments whose cells cannot
run as spreadsheet formulas and whose NULL, NaN and infinities stay distinct.
Faults are injected for real: a template that raises at row N, a terminated
backend, clients that leave before and after the first byte.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from engine.errors import SpecError
from engine.spec import parse_result
from engine.streaming import BATCH
from tests.engine_server import EngineClient
from tests.helpers import add_endpoint, assert_problem, poll, serve
from tests.pg import DB

Maker = Callable[..., EngineClient]

# Raises at row ``at``: called per row as the cursor is read, so the first batch
# (BATCH rows, fetched before the answer starts) succeeds and a later one fails.
FAIL_AT = """
CREATE FUNCTION s_fail_at(g int, at int) RETURNS int LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF g = at THEN
        RAISE EXCEPTION 'disk on fire at row %', g;
    END IF;
    RETURN g;
END $$
"""
# 60000 rows, ~13 MB; ``delay`` holds back the first row, ``pace`` each batch after it,
# so a client can leave before the first byte or while the export is still in flight
# (socket buffers can hold all of it at once)
BIG = (
    "SELECT g AS n, repeat('x', 200) AS pad,"
    " CASE WHEN g % 500 = 0 AND $2::float8 > 0 THEN pg_sleep($2::float8) END AS pause"
    " FROM (SELECT pg_sleep($1)) AS s_delay, generate_series(1, 60000) g"
)
DELAY = [
    {"name": "delay", "in": "query", "type": "number", "default": 0},
    {"name": "pace", "in": "query", "type": "number", "default": 0},
]


def _read_until_cut(chunks_in: Iterator[bytes]) -> tuple[bytes, Exception | None]:
    """The body as far as it came, and the error that ended it (None: it completed)."""
    chunks: list[bytes] = []
    try:
        for chunk in chunks_in:
            chunks.append(chunk)
    except httpx.HTTPError as exc:
        return b"".join(chunks), exc
    return b"".join(chunks), None


def _pool_state(client: EngineClient) -> dict[str, int]:
    services = client.engine.services

    async def read() -> dict[str, int]:
        pool = services.db.read
        return {
            "active": services.streams.active,
            "size": pool.get_size(),
            "idle": pool.get_idle_size(),
        }

    state: dict[str, int] = client.engine.run(read())
    return state


def _settled(client: EngineClient) -> dict[str, int]:
    """Wait until no stream holds a slot and every read connection is idle."""
    return poll(
        lambda: _pool_state(client),
        lambda s: s["active"] == 0 and s["idle"] == s["size"],
        "stream slots and read connections released",
    )


def _log_rows(db: DB, request_id: str) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in db.fetch(
            "SELECT error_code, response_status_code, endpoint_path, error_stack_trace"
            " FROM api_error_logs WHERE request_id = $1",
            request_id,
        )
    ]


# -- a stream that fails after it started -------------------------------------------------


def test_ndjson_failing_mid_stream_is_incomplete_ends_with_error_and_is_logged(
    db: DB, make_client: Maker
) -> None:
    db.execute(FAIL_AT)
    at = BATCH + 200
    add_endpoint(
        db,
        "/st/flaky.ndjson",
        "GET",
        "SELECT s_fail_at(g, $1) AS n FROM generate_series(1, 5000) g",
        [{"name": "at", "in": "query", "type": "integer", "default": at}],
        {"shape": "stream", "format": "ndjson"},
    )
    client = serve(make_client)

    with client.stream("GET", "/st/flaky.ndjson") as r:
        assert r.status_code == 200
        request_id = r.headers["x-request-id"]
        body, cut = _read_until_cut(r.iter_raw())
    assert isinstance(cut, httpx.RemoteProtocolError), cut  # no terminating chunk
    lines = body.split(b"\n")
    assert lines[-1] == b""
    records = [orjson.loads(line) for line in lines[:-1]]
    assert [rec["n"] for rec in records[:-1]] == list(range(1, BATCH + 1))
    error = records[-1]["error"]
    assert error["code"] == "INTERNAL_ERROR" and error["status"] == 500
    assert error["request_id"] == request_id
    assert error["instance"] == "/st/flaky.ndjson"
    assert "disk on fire" not in orjson.dumps(error).decode()  # the cause is logged, not shown

    client.engine.flush_errors()
    rows = poll(lambda: _log_rows(db, request_id), bool, "the failed stream's log row")
    assert rows[0]["error_code"] == "INTERNAL_ERROR"
    assert rows[0]["response_status_code"] == 500
    assert rows[0]["endpoint_path"] == "/st/flaky.ndjson"
    assert "disk on fire" in rows[0]["error_stack_trace"]
    _settled(client)

    # the same template with the failure past its last row completes
    r = client.get("/st/flaky.ndjson", params={"at": 0})
    assert r.status_code == 200 and r.content.count(b"\n") == 5000


def test_csv_stream_whose_backend_is_terminated_is_incomplete_and_logged(
    db: DB, make_client: Maker
) -> None:
    add_endpoint(
        db,
        "/st/victim.csv",
        "GET",
        "SELECT g AS n, repeat('y', 200) AS pad, 'st_victim_marker' AS marker,"
        " CASE WHEN g % 500 = 0 THEN pg_sleep(0.02) END AS pause"
        " FROM generate_series(1, 20000) g",
        [],
        {"shape": "stream", "format": "csv"},
    )
    client = serve(make_client)

    with client.stream("GET", "/st/victim.csv") as r:
        assert r.status_code == 200
        request_id = r.headers["x-request-id"]
        chunks = r.iter_raw()  # one iterator: dropping one closes the connection
        first = next(chunks)
        assert first.startswith(b"n,pad,marker,pause\r\n")
        killed = db.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND query LIKE '%st_victim_marker%' AND query NOT LIKE '%pg_stat_activity%'"
        )
        assert killed == 1
        rest, cut = _read_until_cut(chunks)
    assert isinstance(cut, httpx.RemoteProtocolError), cut
    text = (first + rest).decode()
    assert text.count("\r\n") < 20001  # truncated, and the client was told so

    client.engine.flush_errors()
    rows = poll(lambda: _log_rows(db, request_id), bool, "the cut stream's log row")
    assert rows[0]["error_code"] == "DATABASE_CONNECTION_ERROR"
    assert rows[0]["response_status_code"] == 503
    _settled(client)
    r = client.get("/st/victim.csv")  # the pool replaced the terminated connection
    assert r.status_code == 200 and r.text.count("\r\n") == 20001


def test_a_stream_cut_at_its_time_limit_is_incomplete(db: DB, make_client: Maker) -> None:
    add_endpoint(
        db,
        "/st/slow.ndjson",
        "GET",
        # each batch after the first takes 0.6 s: the third ends past the 1 s limit
        "SELECT g AS n, CASE WHEN g % $1 = 1 AND g > 1 THEN pg_sleep(0.6) END AS pause"
        " FROM generate_series(1, 5000) g",
        [{"name": "every", "in": "query", "type": "integer", "default": BATCH}],
        {"shape": "stream"},
    )
    client = serve(make_client, stream_max_seconds=1)

    with client.stream("GET", "/st/slow.ndjson") as r:
        assert r.status_code == 200
        body, cut = _read_until_cut(r.iter_raw())
    assert isinstance(cut, httpx.RemoteProtocolError), cut
    last = orjson.loads(body.rstrip(b"\n").rsplit(b"\n", 1)[-1])
    assert last["error"]["code"] == "STATEMENT_TIMEOUT"
    _settled(client)


# -- slots and connections ------------------------------------------------------------------


def test_clients_leaving_before_or_after_the_first_byte_leak_nothing(
    db: DB, make_client: Maker
) -> None:
    add_endpoint(db, "/st/big.ndjson", "GET", BIG, DELAY, {"shape": "stream"})
    add_endpoint(db, "/st/one", "GET", "SELECT 1 AS one")
    client = serve(make_client, stream_max_concurrent=2, pool_max_size=4)

    for _ in range(5):  # leaves while the first batch is fetched
        with pytest.raises(httpx.ReadTimeout):
            client.get("/st/big.ndjson", params={"delay": 0.3}, timeout=0.1)
        _settled(client)  # given back once the server notices (its first batch comes later)
    for _ in range(5):  # leaves after the first bytes
        with client.stream("GET", "/st/big.ndjson", params={"pace": 0.05}) as r:
            assert r.status_code == 200
            next(r.iter_raw())  # then leaves: dropping the iterator closes the connection
        _settled(client)
    assert _pool_state(client)["size"] <= 4

    r = client.get("/st/big.ndjson")
    assert r.status_code == 200 and r.content.count(b"\n") == 60000
    assert client.get("/st/one", timeout=2).json() == [{"one": 1}]  # reads get connections
    _settled(client)


def test_too_many_exports_is_its_own_503_with_retry_after(db: DB, make_client: Maker) -> None:
    add_endpoint(db, "/st/big.ndjson", "GET", BIG, DELAY, {"shape": "stream"})
    client = serve(make_client, stream_max_concurrent=1, pool_max_size=4)

    with client.stream("GET", "/st/big.ndjson", params={"pace": 0.01}) as first:  # the one slot
        assert first.status_code == 200
        busy = client.get("/st/big.ndjson")
        body = assert_problem(busy, 503, "TOO_MANY_EXPORTS")
        assert busy.headers["retry-after"] == "5"
        assert body["request_id"] == busy.headers["x-request-id"]
        ru = client.get("/st/big.ndjson", headers={"Accept-Language": "ru"})
        assert ru.headers["content-language"] == "ru"
        assert assert_problem(ru, 503, "TOO_MANY_EXPORTS")["title"] != body["title"]
        assert first.read().count(b"\n") == 60000
    assert client.get("/st/big.ndjson").status_code == 200
    assert db.fetchval(
        "SELECT count(*) FROM engine_required_error_codes WHERE error_code = 'TOO_MANY_EXPORTS'"
    )


# -- CSV: attachments, formulas, NULL and NaN ----------------------------------------------

CELLS = (
    "SELECT * FROM (VALUES"
    " (1, '=HYPERLINK(\"http://evil\")', -5, '-5'),"
    " (2, '+1+1', 3, '@SUM(A1)'),"
    " (3, E'\\tx', 0, E'\\rx'),"
    " (4, 'plain', NULL, '')) AS t(id, a, num, b) WHERE id <> {} ORDER BY id"
)
BY_ID = [{"name": "id", "in": "path", "type": "integer"}]


def test_csv_is_an_attachment_and_cells_cannot_be_formulas(db: DB, make_client: Maker) -> None:
    csv_rows = {"shape": "stream", "format": "csv"}
    add_endpoint(db, "/st/reports/{id}/cells.csv", "GET", CELLS.format("$1"), BY_ID, csv_rows)
    add_endpoint(db, "/st/raw", "GET", CELLS.format("0"), [],
                 {**csv_rows, "csv_escape_formulas": False})  # fmt: skip
    add_endpoint(db, "/st/lines/{id}", "GET", CELLS.format("$1"), BY_ID, {"shape": "stream"})
    client = serve(make_client)

    r = client.get("/st/reports/7/cells.csv")
    assert r.status_code == 200
    assert r.headers["content-disposition"] == 'attachment; filename="cells.csv"'
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows == [
        ["id", "a", "num", "b"],
        ["1", '\'=HYPERLINK("http://evil")', "-5", "'-5"],  # text -5 is quoted, number -5 not
        ["2", "'+1+1", "3", "'@SUM(A1)"],
        ["3", "'\tx", "0", "'\rx"],
        ["4", "plain", "", ""],
    ]
    head = client.head("/st/reports/7/cells.csv")
    assert head.headers["content-disposition"] == 'attachment; filename="cells.csv"'

    raw = client.get("/st/raw")
    assert raw.headers["content-disposition"] == 'attachment; filename="raw.csv"'
    assert list(csv.reader(io.StringIO(raw.text)))[1][1] == '=HYPERLINK("http://evil")'

    lines = client.get("/st/lines/3")
    assert lines.headers["content-disposition"] == 'attachment; filename="lines.ndjson"'
    first = orjson.loads(lines.content.split(b"\n")[0])
    assert first["a"] == '=HYPERLINK("http://evil")'  # NDJSON is data, not a spreadsheet


def test_csv_keeps_null_nan_and_infinities_apart(db: DB, make_client: Maker) -> None:
    add_endpoint(
        db,
        "/st/numbers.csv",
        "GET",
        "SELECT * FROM (VALUES"
        " (1, NULL::float8, NULL::numeric),"
        " (2, 'NaN'::float8, 'NaN'::numeric),"
        " (3, 'Infinity'::float8, 'Infinity'::numeric),"
        " (4, '-Infinity'::float8, '-Infinity'::numeric),"
        " (5, -1.5::float8, -2.50::numeric)) AS t(id, f, n) ORDER BY id",
        [],
        {"shape": "stream", "format": "csv"},
    )
    client = serve(make_client)

    rows = list(csv.reader(io.StringIO(client.get("/st/numbers.csv").text)))
    assert rows == [
        ["id", "f", "n"],
        ["1", "", ""],
        ["2", "NaN", "NaN"],
        ["3", "Infinity", "Infinity"],
        ["4", "-Infinity", "-Infinity"],
        ["5", "-1.5", "-2.50"],
    ]


@pytest.mark.parametrize("value", ["no", 0, None, [True]])
def test_csv_escape_formulas_must_be_a_boolean(value: Any) -> None:
    with pytest.raises(SpecError, match="csv_escape_formulas"):
        parse_result({"shape": "stream", "format": "csv", "csv_escape_formulas": value})


def test_csv_escape_formulas_defaults_to_true() -> None:
    assert parse_result({"shape": "stream", "format": "csv"}).csv_escape_formulas is True
    off = parse_result({"shape": "stream", "format": "csv", "csv_escape_formulas": False})
    assert off.csv_escape_formulas is False
