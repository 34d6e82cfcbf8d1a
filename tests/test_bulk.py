"""Bulk import (``bulk_import``, engine/bulk.py and engine/records.py): NDJSON and CSV
bodies streamed into ``bulk_records`` and loaded in one transaction, per-record error
reports, all or nothing, and the row checks that refuse a bulk row that cannot work.

Speed is measured by bench/bulk.py, never here.
"""

from __future__ import annotations

import datetime as dt
import http.client
import itertools
import socket
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
import pytest

from engine.errors import SpecError
from engine.records import (
    CsvSplitter,
    LineSplitter,
    RecordReader,
    check_sql,
    parse_csv,
)
from engine.spec import parse_bulk, parse_row
from engine.validation import compile_schema
from tests.engine_server import EngineClient
from tests.helpers import (
    add_endpoint,
    add_schema,
    assert_problem,
    compile_catalog,
    serve,
    status_of,
)
from tests.pg import DB

NDJSON = {"Content-Type": "application/x-ndjson"}
CSV = {"Content-Type": "text/csv"}
COLUMNS = {
    "interval_start": "timestamp",
    "service_id": "integer",
    "calls_offered": "integer",
    "aht_seconds": "number",
    "queue": "string",
}
RECORD_SCHEMA = {
    "type": "object",
    "required": ["interval_start", "service_id", "calls_offered"],
    "properties": {
        "interval_start": {"type": "string", "format": "date-time"},
        "service_id": {"type": "integer", "minimum": 1},
        "calls_offered": {"type": "integer", "minimum": 0, "maximum": 100000},
        "aht_seconds": {"type": "number", "minimum": 0},
        "queue": {"type": "string", "maxLength": 20, "enum": ["support", "sales", "billing"]},
    },
}
TABLE = """
CREATE TABLE bulk_stats (
    tenant_id integer NOT NULL,
    service_id integer NOT NULL,
    interval_start timestamptz NOT NULL,
    calls_offered integer NOT NULL,
    aht_seconds numeric(10, 2),
    queue text,
    PRIMARY KEY (service_id, interval_start)
)
"""
INSERT = """
INSERT INTO bulk_stats (tenant_id, service_id, interval_start, calls_offered, aht_seconds, queue)
SELECT $1, service_id, interval_start, calls_offered, aht_seconds, queue FROM bulk_records
"""
TENANT = [{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer"}]
BASE = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)


def bulk_row(db: DB, path: str = "/bulk/stats", sql: str = INSERT, **bulk: Any) -> int:
    db.execute(TABLE)
    option = {"columns": COLUMNS, **bulk}
    mid = add_endpoint(
        db,
        path,
        "POST",
        sql,
        TENANT,
        {"shape": "none", "status": 201},
        bulk_import=option,
        requires_auth=True,
        target_table="bulk_stats",
    )
    add_schema(db, mid, RECORD_SCHEMA)
    return mid


def record(i: int, **changes: Any) -> dict[str, Any]:
    out = {
        "interval_start": (BASE + dt.timedelta(minutes=15 * i)).isoformat(),
        "service_id": 1 + i % 3,
        "calls_offered": i % 200,
        "aht_seconds": round(180 + i % 50 * 1.25, 2),
        "queue": ("support", "sales", "billing")[i % 3],
    }
    out.update(changes)
    return {k: v for k, v in out.items() if v is not None}


def ndjson(records: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def stored(db: DB) -> int:
    return db.fetchval("SELECT count(*) FROM bulk_stats")


@pytest.fixture()
def engine(make_client: Callable[..., EngineClient]) -> Callable[[], EngineClient]:
    return lambda: serve(make_client)


# ---------------------------------------------------------------------------
# the row: parsed and checked
# ---------------------------------------------------------------------------


def _row(**changes: Any) -> dict[str, Any]:
    row = {
        "id": 1,
        "endpoint_path": "/bulk",
        "http_method": "POST",
        "database_operation": "INSERT",
        "query_template": "INSERT INTO t SELECT * FROM bulk_records",
        "query_parameters": [],
        "result_mapping": {},
        "bulk_import": {"columns": {"a": "integer"}},
    }
    row.update(changes)
    return row


def test_a_bulk_row_parses_with_its_defaults() -> None:
    spec = parse_row(_row())
    assert spec.bulk is not None
    assert spec.bulk.formats == ("ndjson", "csv")
    assert spec.bulk.columns == (("a", "integer"),)
    assert (spec.bulk.on_invalid, spec.bulk.max_errors, spec.bulk.max_body_bytes) == (
        "reject",
        100,
        None,
    )
    assert spec.result.shape == "none"  # a bulk row answers counts


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"bulk_import": {"columns": {}}}, "columns must be a non-empty object"),
        ({"bulk_import": {"columns": {"a": "money"}}}, "the type must be one of"),
        ({"bulk_import": {"columns": {"A b": "integer"}}}, "is not a column name"),
        ({"bulk_import": {"columns": {"_line": "integer"}}}, "the staging table's own column"),
        ({"bulk_import": {"columns": {"a": "integer"}, "formats": ["xml"]}}, "formats must be"),
        ({"bulk_import": {"columns": {"a": "integer"}, "formats": []}}, "formats must be"),
        ({"bulk_import": {"columns": {"a": "integer"}, "on_invalid": "drop"}}, "on_invalid"),
        ({"bulk_import": {"columns": {"a": "integer"}, "max_errors": 0}}, "max_errors"),
        ({"bulk_import": {"columns": {"a": "integer"}, "max_body_bytes": -1}}, "max_body_bytes"),
        ({"bulk_import": {"columns": {"a": "integer"}, "batch": 5}}, "unknown keys: batch"),
        ({"bulk_import": []}, "bulk_import must be an object"),
        ({"http_method": "PATCH", "database_operation": "UPDATE"}, "POST or PUT"),
        (
            {"query_parameters": [{"name": "x", "in": "body"}], "query_template": "SELECT $1"},
            '"in": "body"',
        ),
        ({"result_mapping": {"shape": "list"}}, 'must be "none"'),
    ],
)
def test_a_bulk_row_that_cannot_work_is_refused_with_its_reason(
    changes: dict[str, Any], reason: str
) -> None:
    with pytest.raises(SpecError, match=reason.replace("(", r"\(")):
        parse_row(_row(**changes))


def test_the_check_puts_an_empty_staging_table_in_front_of_the_template() -> None:
    bulk = parse_bulk({"columns": {"a": "integer", "b": "timestamp"}})
    plain = check_sql("INSERT INTO t SELECT a FROM bulk_records", bulk)
    assert plain.startswith('WITH bulk_records ("a", "b", "_line") AS (SELECT NULL::int8')
    own = check_sql("-- note\nWITH RECURSIVE x AS (SELECT 1) INSERT INTO t SELECT 1", bulk)
    assert own.startswith("-- note\nWITH RECURSIVE bulk_records (")
    assert own.endswith(", x AS (SELECT 1) INSERT INTO t SELECT 1")


def test_engine_check_refuses_a_template_that_does_not_prepare_and_warns_of_unread_records(
    db: DB,
) -> None:
    db.execute(TABLE)
    bad = add_endpoint(
        db,
        "/bulk/bad",
        "POST",
        "INSERT INTO bulk_stats (service_id) SELECT no_such_column FROM bulk_records",
        result={"shape": "none"},
        bulk_import={"columns": COLUMNS},
    )
    unread = add_endpoint(
        db,
        "/bulk/unread",
        "POST",
        "DELETE FROM bulk_stats WHERE false",
        result={"shape": "none"},
        bulk_import={"columns": {"a": "integer"}},
    )
    catalog = compile_catalog(db)
    status = status_of(catalog, bad)
    assert status.state == "refused"
    assert "does not prepare" in status.reason and "no_such_column" in status.reason
    assert any("never reads bulk_records" in w for w in status_of(catalog, unread).warnings)


# ---------------------------------------------------------------------------
# records: split, parsed, checked (pure)
# ---------------------------------------------------------------------------


def test_lines_and_csv_records_are_split_across_chunks() -> None:
    lines = LineSplitter()
    got = lines.feed(b'{"a": 1}\n{"a"') + lines.feed(b': 2}\n\n{"a": 3}') + lines.end()
    assert got == [b'{"a": 1}', b'{"a": 2}', b"", b'{"a": 3}']
    records = CsvSplitter()
    found = records.feed(b'a,b\n1,"x\n') + records.feed(b'y"\n2,"q""r"\n3,')
    tail, unclosed = records.end()
    assert [(n, parse_csv(n, raw)) for n, raw in [*found, *tail]] == [
        (1, ["a", "b"]),
        (2, ["1", "x\ny"]),  # a quoted line break: the record of its first line
        (4, ["2", 'q"r']),
        (5, ["3", ""]),
    ]
    assert unclosed is None
    records = CsvSplitter()
    assert records.feed(b'a\n"open\n') == [(1, b"a")]
    assert records.end() == ([], 2)


VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 7, 1.0, 2.5, -0.5, 10**6, 100000, 100001, "", "x",
    "support", "SUPPORT", "2026-03-02T08:00:00Z", "2026-02-30T08:00:00Z", "2026-03-02",
    "a" * 21, [], {}, [1], {"a": 1},
]  # fmt: skip


def test_the_fast_check_never_accepts_what_the_validator_refuses() -> None:
    validator = compile_schema("s", RECORD_SCHEMA)
    fast = validator.fast
    assert fast is not None
    names = list(RECORD_SCHEMA["properties"])
    accepted = 0
    for name, value in itertools.product(names, VALUES):
        candidate = record(1, **{name: value})
        candidate[name] = value
        if fast(candidate):
            accepted += 1
            assert validator.errors(candidate) == [], (name, value)
    extra = {**record(1), "unknown": 1}
    assert not fast(extra) and validator.errors(extra)
    missing = record(1, service_id=None)
    assert not fast(missing) and validator.errors(missing)
    assert accepted > 10  # it does accept the plainly valid ones


def test_a_schema_the_fast_check_cannot_read_goes_to_the_validator() -> None:
    nested = compile_schema("n", {"type": "object", "properties": {"a": {"type": "array"}}})
    assert nested.fast is not None
    composed = compile_schema("c", {"type": "object", "anyOf": [{"required": ["a"]}]})
    assert composed.fast is None
    bulk = parse_bulk({"columns": {"a": "integer"}})
    reader = RecordReader(bulk, composed)
    assert reader.from_json(b"{}", 3) == [
        {"line": 3, "pointer": "", "message": "{} is not valid under any of the given schemas"}
    ]
    assert reader.from_json(b'{"a": 5}', 4) == (5, 4)


def test_records_are_typed_by_their_columns_and_report_line_and_pointer() -> None:
    bulk = parse_bulk({"columns": COLUMNS})
    reader = RecordReader(bulk, compile_schema("s", RECORD_SCHEMA))
    out = reader.from_json(orjson.dumps(record(0)), 1)
    assert out == (BASE, 1, 0, Decimal("180.0"), "support", 1)
    assert reader.from_json(b"", 2) is None  # a blank line is no record
    assert reader.from_json(b"[1]", 3) == [
        {"line": 3, "pointer": "", "message": "must be a JSON object, not an array"}
    ]
    assert reader.from_json(b"{nope", 4)[0]["message"].startswith("is not valid JSON")  # type: ignore[index]
    bad = reader.from_json(orjson.dumps(record(0, calls_offered=-3, queue="ops")), 5)
    assert bad == [
        {"line": 5, "pointer": "/calls_offered", "message": "-3 is less than the minimum of 0"},
        {
            "line": 5,
            "pointer": "/queue",
            "message": '"ops" is not one of ["support", "sales", "billing"]',
        },
    ]
    header = reader.csv_header(["interval_start", "service_id", "calls_offered", "aht_seconds"])
    cells = ["2026-03-02T08:00:00+00:00", "2", "17", "12.345678901234567890"]
    typed = reader.from_csv(cells, 6, header)
    assert typed == (BASE, 2, 17, Decimal("12.345678901234567890"), None, 6)  # exact numeric
    assert reader.from_csv(["x", "2", "17", ""], 7, header) == [
        {"line": 7, "pointer": "/interval_start", "message": '"x" is not a valid "date-time"'}
    ]


# ---------------------------------------------------------------------------
# over HTTP
# ---------------------------------------------------------------------------


def test_an_ndjson_import_loads_every_record_in_one_transaction(
    db: DB, engine: Callable[[], EngineClient]
) -> None:
    bulk_row(db)
    client = engine()
    body = ndjson([record(i) for i in range(2500)])
    response = client.post("/bulk/stats", content=body, headers={**NDJSON, **client.auth(tenant=7)})
    assert response.status_code == 201, response.text
    assert response.json() == {"received": 2500, "inserted": 2500, "rejected": 0, "errors": []}
    assert stored(db) == 2500
    assert db.fetchval("SELECT count(DISTINCT tenant_id) FROM bulk_stats WHERE tenant_id = 7") == 1
    first = db.fetchrow("SELECT * FROM bulk_stats WHERE interval_start = $1", BASE)
    assert (first["service_id"], first["calls_offered"], first["aht_seconds"]) == (
        1,
        0,
        Decimal("180.00"),
    )


def test_a_csv_import_reads_its_header_and_quoted_fields(
    db: DB, engine: Callable[[], EngineClient]
) -> None:
    bulk_row(db, sql=INSERT.replace("queue FROM", "queue || '' FROM"))
    client = engine()
    text = (
        "\ufeffservice_id,interval_start,calls_offered,queue\r\n"
        '1,2026-03-02T08:00:00Z,10,"support"\r\n'
        "\r\n"
        "2,2026-03-02T08:15:00+00:00,20,sales\r\n"
    )
    response = client.post(
        "/bulk/stats", content=text.encode(), headers={**CSV, **client.auth(tenant=1)}
    )
    assert response.status_code == 201, response.text
    assert response.json()["inserted"] == 2
    got = db.fetch("SELECT service_id, calls_offered, queue FROM bulk_stats ORDER BY service_id")
    assert [tuple(r.values()) for r in got] == [(1, 10, "support"), (2, 20, "sales")]
    unknown = client.post(
        "/bulk/stats", content=b"service_id,colour\n1,red\n", headers={**CSV, **client.auth()}
    )
    problem = assert_problem(unknown, 400, "INVALID_BODY")
    assert '"colour"' in problem["detail"]


def test_invalid_records_reject_the_whole_import_with_a_report(
    db: DB, engine: Callable[[], EngineClient]
) -> None:
    bulk_row(db, max_errors=3)
    client = engine()
    records = [record(i) for i in range(100)]
    records[16] = record(16, calls_offered=-1)
    records[40] = record(40, service_id=None)
    lines = ndjson(records).split(b"\n")
    lines[70] = b'{"interval_start": oops}'
    response = client.post(
        "/bulk/stats", content=b"\n".join(lines), headers={**NDJSON, **client.auth()}
    )
    problem = assert_problem(response, 422, "BULK_INVALID_RECORDS")
    assert problem["errors"] == [
        {"line": 17, "pointer": "/calls_offered", "message": "-1 is less than the minimum of 0"},
        {"line": 41, "pointer": "/service_id", "message": '"service_id" is required'},
        {"line": 71, "pointer": "", "message": problem["errors"][2]["message"]},
    ]
    assert problem["errors"][2]["message"].startswith("is not valid JSON")
    assert "nothing was written" in problem["detail"]
    assert stored(db) == 0
    russian = client.post(
        "/bulk/stats",
        content=ndjson([record(1, calls_offered="many")]),
        headers={**NDJSON, **client.auth(), "Accept-Language": "ru"},
    )
    assert assert_problem(russian, 422, "BULK_INVALID_RECORDS")["title"].startswith("Некоторые")


def test_skip_loads_the_valid_records_and_reports_the_others(
    db: DB, engine: Callable[[], EngineClient]
) -> None:
    bulk_row(db, on_invalid="skip", max_errors=2)
    client = engine()
    records = [record(i) for i in range(50)]
    for i in (3, 9, 27):
        records[i] = record(i, aht_seconds=-1)
    response = client.post(
        "/bulk/stats", content=ndjson(records), headers={**NDJSON, **client.auth()}
    )
    assert response.status_code == 201, response.text
    answer = response.json()
    assert (answer["received"], answer["inserted"], answer["rejected"]) == (50, 47, 3)
    assert [e["line"] for e in answer["errors"]] == [4, 10]  # max_errors listed, all counted
    assert stored(db) == 47


def test_a_database_error_rolls_back_every_record(
    db: DB, engine: Callable[[], EngineClient]
) -> None:
    bulk_row(db)
    client = engine()
    records = [record(i) for i in range(300)]
    records.append(record(5))  # the key of record 5 again: the insert fails as a whole
    response = client.post(
        "/bulk/stats", content=ndjson(records), headers={**NDJSON, **client.auth()}
    )
    problem = assert_problem(response, 409, "DUPLICATE_RESOURCE")
    assert "bulk_stats" not in response.text  # no table name leaks
    assert stored(db) == 0
    ok = client.post(
        "/bulk/stats", content=ndjson(records[:-1]), headers={**NDJSON, **client.auth()}
    )
    assert ok.status_code == 201 and stored(db) == 300  # the connection was left clean
    assert problem["request_id"]


def test_media_type_size_and_auth_are_checked_before_any_record(
    db: DB, engine: Callable[[], EngineClient]
) -> None:
    bulk_row(db, formats=["ndjson"], max_body_bytes=2000)
    client = engine()
    body = ndjson([record(i) for i in range(5)])
    assert_problem(
        client.post("/bulk/stats", content=body, headers=NDJSON), 401, "AUTHENTICATION_REQUIRED"
    )
    wrong = client.post("/bulk/stats", content=body, headers={**CSV, **client.auth()})
    problem = assert_problem(wrong, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert "application/x-ndjson" in problem["detail"]
    json_body = client.post("/bulk/stats", json=[record(1)], headers=client.auth())
    assert_problem(json_body, 415, "UNSUPPORTED_MEDIA_TYPE")
    big = ndjson([record(i) for i in range(40)])
    assert_problem(
        client.post("/bulk/stats", content=big, headers={**NDJSON, **client.auth()}),
        413,
        "PAYLOAD_TOO_LARGE",
    )

    def chunks() -> Any:  # no Content-Length: the limit holds while streaming
        for i in range(40):
            yield orjson.dumps(record(i)) + b"\n"

    streamed = client.post("/bulk/stats", content=chunks(), headers={**NDJSON, **client.auth()})
    assert_problem(streamed, 413, "PAYLOAD_TOO_LARGE")
    assert stored(db) == 0


def test_an_idempotent_retry_replays_the_first_answer(
    db: DB, engine: Callable[[], EngineClient]
) -> None:
    bulk_row(db)
    client = engine()
    headers = {**NDJSON, **client.auth(), "Idempotency-Key": "import-1"}
    body = ndjson([record(i) for i in range(10)])
    first = client.post("/bulk/stats", content=body, headers=headers)
    again = client.post("/bulk/stats", content=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    other = client.post("/bulk/stats", content=ndjson([record(1)]), headers=headers)
    assert_problem(other, 422, "IDEMPOTENCY_KEY_REUSED")
    assert stored(db) == 10


def test_a_scalar_row_answers_the_value_its_template_returns(
    db: DB, engine: Callable[[], EngineClient]
) -> None:
    db.execute(TABLE)
    mid = add_endpoint(
        db,
        "/bulk/summary",
        "POST",
        "WITH ins AS (" + INSERT + " RETURNING calls_offered) "
        "SELECT jsonb_build_object('rows', count(*), 'calls', sum(calls_offered)) FROM ins",
        TENANT,
        {"shape": "scalar"},
        bulk_import={"columns": COLUMNS, "formats": ["csv"]},
        requires_auth=True,
    )
    client = engine()
    text = b"service_id,interval_start,calls_offered\n1,2026-03-02T08:00:00Z,4\n2,2026-03-02T08:00:00Z,6\n"
    response = client.post("/bulk/summary", content=text, headers={**CSV, **client.auth()})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "received": 2,
        "result": {"rows": 2, "calls": 10},
        "rejected": 0,
        "errors": [],
    }
    assert mid


# ---------------------------------------------------------------------------
# slow uploads: bounded in time, and never holding every write connection
# ---------------------------------------------------------------------------

PLAIN = """
INSERT INTO bulk_stats (tenant_id, service_id, interval_start, calls_offered)
VALUES (1, 99, clock_timestamp(), 1)
"""


def upload(client: EngineClient, first: bytes = b"", length: int = 10**6) -> socket.socket:
    """A bulk import over a raw socket: the head and ``first``, then nothing (the caller
    sends more, or reads the answer with :func:`answer`)."""
    sock = socket.create_connection(("127.0.0.1", client.engine.port), timeout=20)
    head = (
        "POST /bulk/stats HTTP/1.1\r\nHost: engine\r\n"
        "Content-Type: application/x-ndjson\r\n"
        f"Authorization: Bearer {client.token()}\r\nContent-Length: {length}\r\n\r\n"
    )
    sock.sendall(head.encode() + first)
    return sock


def answer(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, orjson.loads(response.read())


def transactions(db: DB) -> int:
    """Imports holding a transaction id (their last statement names bulk_records)."""
    return db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL AND query LIKE '%bulk_records%'"
    )


def until(check: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_an_upload_that_pauses_too_long_is_answered_408_and_writes_nothing(
    db: DB, make_client: Callable[..., EngineClient]
) -> None:
    bulk_row(db)
    client = serve(make_client, bulk_idle_s=1.0)
    sock = upload(client, ndjson([record(i) for i in range(3)]))
    try:
        status, problem = answer(sock)  # before the fix: no answer, the socket times out
    finally:
        sock.close()
    assert (status, problem["code"]) == (408, "REQUEST_TIMEOUT")
    assert "ENGINE_BULK_IDLE_S" in problem["detail"] and problem["request_id"]
    assert stored(db) == 0
    assert until(lambda: transactions(db) == 0)  # the transaction ended, the connection back
    ok = client.post(
        "/bulk/stats", content=ndjson([record(1)]), headers={**NDJSON, **client.auth()}
    )
    assert ok.status_code == 201, ok.text


def test_an_upload_that_trickles_past_the_overall_limit_is_answered_408(
    db: DB, make_client: Callable[..., EngineClient]
) -> None:
    bulk_row(db)
    client = serve(make_client, bulk_idle_s=5.0, stream_max_seconds=2)
    sock = upload(client, ndjson([record(0)]))
    stop = threading.Event()

    def trickle() -> None:  # a record every 0.2 s: never idle, never done
        for i in range(1, 200):
            if stop.wait(0.2):
                return
            try:
                sock.sendall(ndjson([record(i)]))
            except OSError:
                return

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        status, problem = answer(sock)
    finally:
        stop.set()
        sender.join(5)
        sock.close()
    assert (status, problem["code"]) == (408, "REQUEST_TIMEOUT")
    assert "ENGINE_STREAM_MAX_SECONDS" in problem["detail"]
    assert stored(db) == 0
    assert until(lambda: transactions(db) == 0)


def test_uploads_that_send_nothing_yet_hold_no_write_connection(
    db: DB, make_client: Callable[..., EngineClient]
) -> None:
    bulk_row(db)
    add_endpoint(db, "/plain", "POST", PLAIN, (), {"shape": "none", "status": 201})
    client = serve(make_client, pool_max_size=2, pool_timeout_s=1.0)
    server_state = client.engine.server.server_state
    silent = [upload(client) for _ in range(3)]  # more than the write pool: only their heads
    try:
        assert until(lambda: len(server_state.tasks) >= 3)  # each request is being handled
        write = client.post("/plain")
        assert write.status_code == 201, write.text  # before the fix: 503 DATABASE_BUSY
        assert transactions(db) == 0
    finally:
        for sock in silent:
            sock.close()


def test_imports_together_never_take_every_write_connection(
    db: DB, make_client: Callable[..., EngineClient]
) -> None:
    bulk_row(db)
    add_endpoint(db, "/plain", "POST", PLAIN, (), {"shape": "none", "status": 201})
    client = serve(make_client, pool_max_size=2, pool_timeout_s=1.0)  # imports: 1 at once
    slow = upload(client, ndjson([record(0)]))  # started, then stalls holding its transaction
    try:
        assert until(lambda: transactions(db) == 1)
        second = client.post(
            "/bulk/stats", content=ndjson([record(1)]), headers={**NDJSON, **client.auth()}
        )
        problem = assert_problem(second, 503, "ENDPOINT_BUSY")  # before the fix: 201
        assert "bulk import" in problem["detail"] and second.headers["Retry-After"]
        write = client.post("/plain")
        assert write.status_code == 201, write.text  # a write connection was left free
    finally:
        slow.close()

    def imported() -> bool:  # the departed upload gave its place back
        again = client.post(
            "/bulk/stats", content=ndjson([record(2)]), headers={**NDJSON, **client.auth()}
        )
        return again.status_code == 201

    assert until(imported)
    assert db.fetchval("SELECT count(*) FROM bulk_stats WHERE service_id <> 99") == 1
