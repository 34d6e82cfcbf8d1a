"""The error log never loses an entry to its content, and says what it could not write.

Characters PostgreSQL text cannot hold (NUL, lone surrogates, undecodable bytes)
are escaped in every field before ``log_api_error()``; a batch holding one entry
the database still refuses writes the others; entries that cannot be written at
all (the database is down) are reported to the Python log, already masked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import orjson
import pytest

from engine.database import init_connection
from engine.errorlog import ErrorEntry, ErrorLogger, UnknownPathLimit, pattern_job, safe_body
from tests.engine_server import EngineClient
from tests.helpers import add_endpoint, assert_problem, refusing_connections, serve
from tests.pg import DB
from tests.test_metrics import scrape, value

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


# ---------------------------------------------------------------------------
# a bounded error log: sampled answers, summary rows, the unknown-path limit
# ---------------------------------------------------------------------------


class Clock:
    """A settable wall clock for the sampling windows."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def queued(logger: ErrorLogger) -> list[ErrorEntry]:
    """What the logger queued, taken off its queue (no drain task runs in these tests)."""
    out = []
    while logger.queued:
        out.append(logger._queue.get_nowait())
        logger._queue.task_done()
    return out


MINUTE = 1_800_000_000 // 60 * 60  # a minute's start


def test_sampled_codes_write_a_few_rows_a_minute_and_count_the_rest() -> None:
    clock = Clock(MINUTE + 5)
    logger = ErrorLogger(None, sample=3, clock=clock)  # type: ignore[arg-type]
    for i in range(50):
        logger.submit(entry(f"nf-{i}", path=f"/no/{i}", code="ROUTE_NOT_FOUND", status=404))
    for i in range(5):  # another code has its own sample
        logger.submit(
            entry(f"mna-{i}", code="METHOD_NOT_ALLOWED", status=405, method="PUT", route="/x")
        )
    for i in range(4):  # answers that are not sampled are all written
        logger.submit(entry(f"bad-{i}"))
    first = queued(logger)
    assert [e.request_id for e in first] == [
        "nf-0", "nf-1", "nf-2", "mna-0", "mna-1", "mna-2", "bad-0", "bad-1", "bad-2", "bad-3"
    ]  # fmt: skip
    clock.now += 60  # the next minute: the last one's counts become one row per code
    logger.submit(entry("nf-next", code="ROUTE_NOT_FOUND", status=404))
    rows = queued(logger)
    assert [(e.code, e.path, e.params and e.params["counted"]) for e in rows] == [
        ("ROUTE_NOT_FOUND", "(summary)", 47),
        ("METHOD_NOT_ALLOWED", "(summary)", 2),
        ("ROUTE_NOT_FOUND", "/x", None),  # the new minute's first: written as it came
    ]
    assert logger.summarized == 49
    clock.now += 60  # a minute with nothing counted beyond the sample: no summary row
    logger.submit(entry("nf-later", code="ROUTE_NOT_FOUND", status=404))
    assert [e.request_id for e in queued(logger)] == ["nf-later"]


def test_a_summary_row_says_how_many_and_where() -> None:
    clock = Clock(MINUTE + 5)
    logger = ErrorLogger(None, sample=2, clock=clock)  # type: ignore[arg-type]
    for i in range(30):
        logger.submit(entry(f"nf-{i}", path=f"/no/{i}", code="ROUTE_NOT_FOUND", status=404))
    for route in [f"/r{n}" for n in range(12) for _ in range(n + 1)]:  # /r11 the most refused
        logger.submit(entry("tok", code="INVALID_TOKEN", status=401, route=route))
    assert len(queued(logger)) == 4
    clock.now = MINUTE + 61
    logger.submit(entry("nf-next", code="ROUTE_NOT_FOUND", status=404))
    rows = queued(logger)
    assert [e.request_id for e in rows[-1:]] == ["nf-next"]  # a new minute: sampled again
    by_code = {e.code: e for e in rows[:-1]}
    assert set(by_code) == {"ROUTE_NOT_FOUND", "INVALID_TOKEN"}
    nf = by_code["ROUTE_NOT_FOUND"]
    assert (nf.status, nf.path, nf.method) == (404, "(summary)", "*")
    assert nf.message.startswith("28 more ROUTE_NOT_FOUND answers from ")
    assert nf.message.endswith(
        "were counted, not logged (at most 2 a minute are logged one by one)"
    )
    assert nf.params is not None and nf.params["counted"] == 28
    assert nf.params["by_endpoint"] == {"GET (unmatched)": 28}
    assert nf.params["other_endpoints"] == 0
    tok = by_code["INVALID_TOKEN"]
    assert tok.params is not None and tok.params["counted"] == sum(range(1, 13)) - 2
    top = tok.params["by_endpoint"]
    assert len(top) == 10 and next(iter(top)) == "GET /r11" and top["GET /r11"] == 12
    assert tok.params["counted"] == sum(top.values()) + tok.params["other_endpoints"]
    # every answer, logged or not, is counted for the metrics, by code, route and method
    assert logger.client_errors[("ROUTE_NOT_FOUND", "(unmatched)", "GET")] == 31
    assert logger.client_errors[("INVALID_TOKEN", "/r11", "GET")] == 12
    assert logger.summarized == 28 + tok.params["counted"]


def test_odd_methods_and_endless_routes_cannot_grow_the_counts() -> None:
    logger = ErrorLogger(None, sample=0, clock=Clock(MINUTE))  # type: ignore[arg-type]
    for i in range(3000):
        logger.submit(entry("x", code="METHOD_NOT_ALLOWED", status=405, method=f"M{i}"))
        logger.submit(entry("y", code="INVALID_TOKEN", status=401, route=f"/r/{i}"))
    assert logger.queued == 0  # sample 0: nothing one by one
    assert len(logger.client_errors) <= 1001
    assert logger.client_errors[("METHOD_NOT_ALLOWED", "(unmatched)", "other")] == 3000
    assert sum(logger.client_errors.values()) == 6000
    logger.summarize()
    (tok,) = [e for e in queued(logger) if e.code == "INVALID_TOKEN"]
    assert tok.params is not None and tok.params["counted"] == 3000
    assert len(tok.params["by_endpoint"]) == 10


def test_unknown_paths_are_limited_per_client_address() -> None:
    clock = Clock(100.0)
    limit = UnknownPathLimit(3, max_clients=100, clock=clock)
    assert [limit.hit("203.0.113.7") for _ in range(3)] == [None, None, None]
    assert limit.hit("203.0.113.7") == 60  # the window's end, for Retry-After
    assert limit.hit("203.0.113.8") is None  # another address has its own window
    clock.now += 45.2
    assert limit.hit("203.0.113.7") == 15
    # one IPv6 client holds a /64: its addresses share one window
    assert [limit.hit(f"2001:db8::{n}") for n in range(1, 5)] == [None, None, None, 60]
    clock.now += 15
    assert limit.hit("203.0.113.7") is None  # a new window
    assert limit.refused == 3
    for n in range(1000):  # memory stays bounded whatever the addresses
        limit.hit(f"198.51.{n // 256}.{n % 256}")
    assert len(limit._windows) <= 100
    assert UnknownPathLimit(0).hit("203.0.113.7") is None  # 0: no limit


def test_a_real_logger_writes_the_sample_and_one_summary_row(db: DB) -> None:
    async def go() -> ErrorLogger:
        pool = await asyncpg.create_pool(db.url, min_size=1, max_size=2, init=init_connection)
        logger = ErrorLogger(pool, sample=3)
        logger.start()
        try:
            for i in range(40):
                logger.submit(
                    entry(f"real-nf-{i}", path=f"/no/{i}", code="ROUTE_NOT_FOUND", status=404)
                )
            logger.submit(entry("real-bad"))
            await logger.flush()
        finally:
            await logger.stop()  # what was counted is summarized before stopping
            await pool.close()
        return logger

    started = time.time()
    logger = asyncio.run(go())
    windows = int(time.time() // 60) - int(started // 60) + 1  # a minute may turn meanwhile
    rows = db.fetch(
        "SELECT request_id, endpoint_path, error_code, response_status_code, request_params "
        "FROM api_error_logs ORDER BY id"
    )
    singles = [r for r in rows if r["endpoint_path"] != "(summary)"]
    summaries = [r for r in rows if r["endpoint_path"] == "(summary)"]
    assert "real-bad" in {r["request_id"] for r in singles}
    nf = [r for r in singles if r["error_code"] == "ROUTE_NOT_FOUND"]
    assert 3 <= len(nf) <= 3 * windows and 1 <= len(summaries) <= windows
    counted = [orjson.loads(r["request_params"])["counted"] for r in summaries]
    assert len(nf) + sum(counted) == 40  # each answer is a row or counted in one
    assert {(r["error_code"], r["response_status_code"]) for r in summaries} == {
        ("ROUTE_NOT_FOUND", 404)
    }
    assert (logger.failed, logger.dropped) == (0, 0)


def summarize(client: EngineClient) -> None:
    """Write the engine's counts so far as summary rows now, and wait until written."""

    async def go() -> None:
        client.engine.services.errorlog.summarize()
        await client.engine.services.errorlog.flush()

    client.engine.run(go())


@pytest.mark.slow
def test_2000_unknown_paths_write_at_most_a_few_rows(db: DB, make_client: Maker) -> None:
    client = serve(make_client, unknown_path_limit_per_minute=0)  # each reaches the logger
    sample = client.engine.settings.error_log_sample
    started = time.time()
    for i in range(2000):
        r = client.get(f"/probe-{i}/wp-login.php", headers={"X-Request-ID": f"scan-{i}"})
        if i % 400 == 0:
            body = assert_problem(r, 404, "ROUTE_NOT_FOUND")
            assert f"probe-{i}" not in r.text, body  # the path is not echoed
    summarize(client)
    windows = int(time.time() // 60) - int(started // 60) + 1
    rows = db.fetch("SELECT endpoint_path, error_code, request_params FROM api_error_logs")
    assert len(rows) <= (sample + 1) * windows, len(rows)
    summaries = [r for r in rows if r["endpoint_path"] == "(summary)"]
    counted = sum(orjson.loads(r["request_params"])["counted"] for r in summaries)
    assert len(rows) - len(summaries) + counted == 2000
    assert {r["error_code"] for r in rows} == {"ROUTE_NOT_FOUND"}
    samples = scrape(client)
    labels = {"code": "ROUTE_NOT_FOUND", "route": "(unmatched)", "method": "GET"}
    assert value(samples, "engine_client_errors_total", **labels) == 2000


def test_the_unknown_path_limit_is_per_client_address(db: DB, make_client: Maker) -> None:
    add_endpoint(db, "/known", sql="SELECT 1 AS one", result={"shape": "scalar"})
    client = serve(make_client, trusted_proxies="127.0.0.1")
    limit = client.engine.settings.unknown_path_limit_per_minute
    assert limit == 120  # the default
    one = {"X-Forwarded-For": "198.51.100.7"}
    for i in range(limit):
        assert_problem(client.get(f"/nothing/{i}", headers=one), 404, "ROUTE_NOT_FOUND")
    refused = client.get("/nothing/more", headers=one)
    body = assert_problem(refused, 429, "RATE_LIMIT_EXCEEDED")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "/nothing" not in refused.text  # not echoed either
    assert body["instance"].startswith("urn:")
    other = {"X-Forwarded-For": "198.51.100.8"}
    assert_problem(client.get("/nothing/else", headers=other), 404, "ROUTE_NOT_FOUND")
    assert client.get("/known", headers=one).json() == 1  # published paths are not limited


def test_a_404_for_an_unknown_path_does_not_echo_it(db: DB, make_client: Maker) -> None:
    add_endpoint(db, "/known/{id}", sql="SELECT $1::int AS id",
                 params=[{"name": "id", "in": "path", "type": "integer"}],
                 result={"shape": "object"})  # fmt: skip
    client = serve(make_client)
    hostile = "/<script>alert(1)</script>/etc/passwd"
    for method in ("GET", "POST", "DELETE"):
        r = client.request(method, hostile, headers={"X-Request-ID": f"echo-{method}"})
        body = assert_problem(r, 404, "ROUTE_NOT_FOUND")
        assert "script" not in r.text and "passwd" not in r.text, body
        assert body["instance"] == f"urn:engine:request:echo-{method}"
    # a known route's answers still name the path the client asked for
    r = client.put("/known/7")
    assert assert_problem(r, 405, "METHOD_NOT_ALLOWED")["instance"] == "/known/7"
    client.engine.flush_errors()
    logged = db.fetchval("SELECT endpoint_path FROM api_error_logs WHERE request_id = 'echo-GET'")
    assert logged == "/<script>alert(1)</script>/etc/passwd"  # the log keeps it, for admins


# ---------------------------------------------------------------------------
# error patterns: database errors only, from a periodic job
# ---------------------------------------------------------------------------


def run_pattern_job(client: EngineClient) -> None:
    job = pattern_job(client.engine.services.db.write)
    client.engine.run(job.run_once())
    assert (job.runs, job.failures) == (1, 0)


def alerts(db: DB, error_type: str | None = None) -> list[Any]:
    return db.fetch(
        "SELECT a.*, p.error_type FROM system_alerts a "
        "JOIN database_error_patterns p ON p.id = (a.alert_data ->> 'pattern_id')::int "
        "WHERE a.alert_type = 'database_error_pattern' AND ($1::text IS NULL OR p.error_type = $1)",
        error_type,
    )


def test_a_path_that_reads_like_a_database_error_raises_no_alert(
    db: DB, make_client: Maker
) -> None:
    db.execute(
        "UPDATE database_error_patterns SET alert_threshold = 1 WHERE error_type = 'schema_error'"
    )
    db.execute(
        "INSERT INTO database_error_patterns (error_pattern, error_type, pattern_regex, "
        "alert_threshold) VALUES ('division by zero', 'zq_arith', 'division by zero', 2)"
    )
    add_endpoint(
        db,
        "/ratio",
        sql="SELECT 10 / $1::int AS r",
        params=[{"name": "d", "in": "query", "type": "integer"}],
        result={"shape": "scalar"},
    )
    client = serve(make_client)
    for _ in range(3):
        assert_problem(client.get("/table x does not exist"), 404, "ROUTE_NOT_FOUND")
        assert_problem(client.get("/relation zq does not exist"), 404, "ROUTE_NOT_FOUND")
    client.engine.flush_errors()
    run_pattern_job(client)
    assert alerts(db) == []
    # a real database error that matches a pattern still raises its alert, from the job
    for _ in range(2):
        assert client.get("/ratio", params={"d": 0}).status_code >= 400
    client.engine.flush_errors()
    assert db.fetchval(
        "SELECT count(*) FROM api_error_logs WHERE database_error LIKE '%division by zero%'"
    ) == 2  # fmt: skip
    assert alerts(db) == []  # logging does not check patterns any more: the job does
    run_pattern_job(client)
    (alert,) = alerts(db)
    assert alert["error_type"] == "zq_arith"
    assert "division by zero" in orjson.loads(alert["alert_data"])["last_database_error"]
    run_pattern_job(client)  # nothing new since: no other alert
    assert len(alerts(db)) == 1
    assert alerts(db, "schema_error") == []


def add_pattern(db: DB, regex: str, threshold: int) -> int:
    return db.fetchval(
        "INSERT INTO database_error_patterns (error_pattern, error_type, pattern_regex, "
        "alert_threshold) VALUES ($1, 'zq_test', $1, $2) RETURNING id",
        regex,
        threshold,
    )


def log_error(db: DB, message: str, database_error: str | None = None) -> int:
    return db.fetchval(
        "SELECT log_api_error('req', '/t/w', 'POST', 'INTERNAL_ERROR', $1, p_database_error => $2)",
        message,
        database_error,
    )


def pattern_alerts(db: DB, pattern_id: int) -> list[Any]:
    return db.fetch(
        "SELECT * FROM system_alerts WHERE alert_type = 'database_error_pattern' "
        "AND alert_data ->> 'pattern_id' = $1",
        str(pattern_id),
    )


def test_log_api_error_only_writes_its_row(db: DB) -> None:
    body = db.fetchval("SELECT pg_get_functiondef('log_api_error'::regproc)")
    assert "INSERT INTO api_error_logs" in body
    assert "check_error_patterns" not in body and "scan_error_patterns" not in body
    pid = add_pattern(db, "zq-widget exploded", threshold=1)
    log_error(db, "Internal error", database_error="XX000 zq-widget exploded")
    assert pattern_alerts(db, pid) == []  # written, not checked: that is the job's
    assert db.fetchval("SELECT scan_error_patterns()") == 1
    (alert,) = pattern_alerts(db, pid)
    assert orjson.loads(alert["alert_data"])["error_count"] == 1
    assert db.fetchval("SELECT scan_error_patterns()") == 0  # nothing new since


def test_patterns_match_database_errors_never_api_messages(db: DB) -> None:
    pid = add_pattern(db, "zq-thing .* does not exist", threshold=2)
    for _ in range(3):  # what a client chose (its path) is in the message, not the db error
        log_error(db, "No endpoint at /zq-thing x does not exist")
    db.execute("SELECT check_error_patterns('zq-thing x does not exist')")
    assert db.fetchval("SELECT scan_error_patterns()") == 0
    assert pattern_alerts(db, pid) == []  # the messages were never counted
    for _ in range(2):
        log_error(db, "Internal error", database_error="42P01 zq-thing t does not exist")
    assert db.fetchval("SELECT scan_error_patterns()") == 1
    (alert,) = pattern_alerts(db, pid)
    data = orjson.loads(alert["alert_data"])
    assert data["error_count"] == 2  # the database errors only
    assert data["last_database_error"] == "42P01 zq-thing t does not exist"
    log_error(db, "Internal error", database_error="42P01 zq-thing u does not exist")
    assert db.fetchval("SELECT scan_error_patterns()") == 0  # one open alert an hour


def test_the_scan_skips_invalid_regexes_and_old_rows(db: DB) -> None:
    bad = add_pattern(db, "zq-(unclosed", threshold=1)
    good = add_pattern(db, "zq-valid", threshold=1)
    old = log_error(db, "x", database_error="zq-valid long ago")
    db.execute(
        "UPDATE api_error_logs SET error_timestamp = now() - interval '2 hours' WHERE id = $1", old
    )
    assert db.fetchval("SELECT scan_error_patterns()") == 0  # older than the hour counted
    log_error(db, "x", database_error="zq-valid and zq-(unclosed")
    assert db.fetchval("SELECT scan_error_patterns()") == 1
    assert pattern_alerts(db, bad) == [] and len(pattern_alerts(db, good)) == 1
    assert db.fetchval("SELECT last_log_id FROM engine_error_pattern_scan") == db.fetchval(
        "SELECT max(id) FROM api_error_logs"
    )
