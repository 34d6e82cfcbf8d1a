"""The error log never loses an entry to its content, and says what it could not write.

Characters PostgreSQL text cannot hold (NUL, lone surrogates, undecodable bytes)
are escaped in every field before ``log_api_error()``; a batch holding one entry
the database still refuses writes the others; entries that cannot be written at
all (the database is down) are reported to the Python log, already masked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from engine.database import init_connection
from engine.errorlog import ErrorEntry, ErrorLogger, safe_body
from tests.engine_server import EngineClient
from tests.helpers import add_endpoint, assert_problem, refusing_connections, serve
from tests.pg import DB

Maker = Callable[..., EngineClient]

ROW = (
    "SELECT request_id, endpoint_path, http_method, error_code, error_message, "
    "error_stack_trace, request_body, database_error, request_headers::text AS headers, "
    "request_params::text AS params, response_status_code, principal "
    "FROM api_error_logs WHERE request_id = $1"
)


def entry(request_id: str, **fields: Any) -> ErrorEntry:
    values: dict[str, Any] = {
        "path": "/x",
        "method": "GET",
        "code": "INVALID_PARAMETER",
        "message": "m",
        "status": 400,
        "elapsed_ms": 1,
        **fields,
    }
    return ErrorEntry(request_id=request_id, **values)


def write(url: str, entries: list[ErrorEntry]) -> ErrorLogger:
    """Entries written by a real ErrorLogger on a pool of ``url``; returns the logger."""

    async def go() -> ErrorLogger:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2, init=init_connection)
        logger = ErrorLogger(pool)
        logger.start()
        try:
            for e in entries:
                logger.submit(e)
            await logger.flush()
        finally:
            await logger.stop()
            await pool.close()
        return logger

    return asyncio.run(go())


BAD_TEXT = [
    pytest.param("a\x00b", "a\\x00b", id="nul"),
    pytest.param("a\ud800b", "a\\ud800b", id="lone-surrogate"),
    pytest.param("a\udcffb", "a\\udcffb", id="surrogate-escaped-byte"),
    pytest.param("plain ✓", "plain ✓", id="unicode-unchanged"),
]


@pytest.mark.parametrize(("raw", "logged"), BAD_TEXT)
def test_every_field_is_escaped_before_it_is_written(db: DB, raw: str, logged: str) -> None:
    rid = f"esc-{logged.encode().hex()[:40]}"
    logger = write(
        db.url,
        [
            entry(
                rid,
                path=f"/p/{raw}",
                message=f"bad {raw}",
                stack=f"stack {raw}",
                body=f'{{"v": "{raw}"}}',
                headers={"x-thing": raw, raw: "key"},
                params={"q": raw, "list": [raw, {"deep": raw}]},
                database_error=f"db {raw}",
                principal=f"who {raw}",
            )
        ],
    )
    assert (logger.written, logger.failed) == (1, 0)
    row = db.fetchrow(ROW, rid)
    assert row is not None, "the entry was lost"
    assert row["endpoint_path"] == f"/p/{logged}"
    assert row["error_message"] == f"bad {logged}"
    assert row["error_stack_trace"] == f"stack {logged}"
    assert row["request_body"] == f'{{"v": "{logged}"}}'
    assert row["principal"] == f"who {logged}"
    assert row["database_error"] == f"db {logged}"
    keyed = db.fetchrow(
        "SELECT request_headers ->> 'x-thing' AS header, request_headers ->> $2 AS named, "
        "request_params #>> '{list,1,deep}' AS deep FROM api_error_logs WHERE request_id = $1",
        rid,
        logged,
    )
    assert dict(keyed) == {"header": logged, "named": "key", "deep": logged}


def test_one_refused_entry_does_not_take_its_batch_with_it(db: DB, caplog: Any) -> None:
    # a status beyond PostgreSQL's integer: this one entry cannot be written, whatever its text
    bad = entry("batch-bad", status=2**40)
    good = [entry(f"batch-{i}") for i in range(5)]
    caplog.set_level(logging.WARNING, logger="engine.errorlog")
    logger = write(db.url, [good[0], good[1], bad, *good[2:]])
    stored = {r["request_id"] for r in db.fetch("SELECT request_id FROM api_error_logs")}
    assert {e.request_id for e in good} <= stored
    assert "batch-bad" not in stored
    assert (logger.written, logger.failed) == (5, 1)
    reported = [r.getMessage() for r in caplog.records if "batch-bad" in r.getMessage()]
    assert len(reported) == 1, reported


def test_a_nul_in_the_query_string_is_answered_400_and_logged(db: DB, make_client: Maker) -> None:
    add_endpoint(
        db,
        "/echo",
        sql="SELECT $1::text AS q",
        params=[{"name": "q", "in": "query", "type": "string"}],
        result={"shape": "scalar"},
    )
    client = serve(make_client)
    assert client.get("/echo", params={"q": "fine"}).json() == "fine"
    r = client.get("/echo?q=a%00b&other=%00", headers={"X-Request-ID": "nul-query"})
    assert_problem(r, 400, "INVALID_PARAMETER")
    r = client.get("/nowhere%00/x?z=%00", headers={"X-Request-ID": "nul-path"})
    assert_problem(r, 404, "ROUTE_NOT_FOUND")
    client.engine.flush_errors()
    assert client.engine.services.errorlog.failed == 0
    row = db.fetchrow(ROW, "nul-query")
    assert row is not None, "the error log lost the entry"
    assert row["response_status_code"] == 400 and row["error_code"] == "INVALID_PARAMETER"
    assert '"q": "a\\\\x00b"' in row["params"], row["params"]
    assert "\x00" not in "".join(str(v) for v in row.values())
    row = db.fetchrow(ROW, "nul-path")
    assert row is not None, "the error log lost the entry"
    assert row["endpoint_path"] == "/nowhere\\x00/x"


def test_entries_that_cannot_be_written_are_reported_without_secrets(
    db: DB, make_client: Maker, pg_url: str, db_url: str, caplog: Any
) -> None:
    client = serve(make_client)
    caplog.set_level(logging.WARNING, logger="engine.errorlog")
    errorlog = client.engine.services.errorlog
    before = errorlog.failed
    with refusing_connections(pg_url, db_url):
        for i in range(3):
            r = client.get(
                f"/nowhere/{i}?password=hunter2-SECRET&x=1",
                headers={
                    "X-Request-ID": f"outage-{i}",
                    "Authorization": "Bearer header-SECRET",
                    "X-API-Key": "ek_abc_key-SECRET",
                },
            )
            assert_problem(r, 404, "ROUTE_NOT_FOUND")
        client.engine.flush_errors()
    assert errorlog.failed - before == 3
    text = "\n".join(r.getMessage() for r in caplog.records)
    for i in range(3):
        assert f"outage-{i}" in text, text
        assert f"/nowhere/{i}" in text
    assert "ROUTE_NOT_FOUND" in text
    assert "SECRET" not in text
    assert db.fetchval("SELECT count(*) FROM api_error_logs WHERE request_id LIKE 'outage-%'") == 0


def test_a_body_nested_too_deep_to_write_back_is_logged_by_its_size() -> None:
    deep: object = 1
    for _ in range(300):
        deep = {"x": deep}
    assert safe_body(deep, b"x" * 1801) == "<1801 bytes, not logged: nested too deep>"
