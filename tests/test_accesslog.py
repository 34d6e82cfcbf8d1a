"""The access log (one JSON line per catalogue request on stdout) and the JSON engine logs.

Unit tests cover the request id, the line and its timestamp, and the buffer
(flushed by size, by timer and at stop; a reader that does not keep up costs
counted lines, never the event loop or unbounded memory). The engine is then
served for real: in a thread with stdout captured at the descriptor, and as
``python -m engine serve`` for what only the command sets up (uvicorn's own
access log off, JSON logs on stderr).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from engine import accesslog, keys, logs
from engine.accesslog import AccessLog, pieces, render
from engine.endpoint import request_id_of
from engine.logs import JsonFormatter, Stamp
from engine.observe import Exchange
from tests.engine_server import JWT_SECRET, EngineClient, free_port
from tests.helpers import add_endpoint, poll, run_cli, serve
from tests.pg import DB

Maker = Callable[..., EngineClient]
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
FROM_TRACE = f"{TRACE_ID}-00f067aa0ba902b7"  # the trace id, then this call's own span id


# --- the request id ---------------------------------------------------------------------


def test_a_well_formed_request_id_wins_even_over_a_traceparent():
    headers = {"x-request-id": "client-req.42:a_b", "traceparent": TRACEPARENT}
    assert request_id_of(headers) == "client-req.42:a_b"


@pytest.mark.parametrize("given", ["has space", "x" * 101, "semi;colon", "new\nline", "é"])
def test_a_malformed_request_id_is_replaced(given):
    made = request_id_of({"x-request-id": given})
    assert made != given
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", made), made
    assert request_id_of({"x-request-id": given}) != made  # each request its own
    # a malformed id does not hide a valid traceparent
    assert request_id_of({"x-request-id": given, "traceparent": TRACEPARENT}) == FROM_TRACE


def test_a_valid_traceparent_gives_its_trace_and_parent_id():
    assert request_id_of({"traceparent": TRACEPARENT}) == FROM_TRACE
    assert request_id_of({"traceparent": f" {TRACEPARENT.upper()} "}) == FROM_TRACE


@pytest.mark.parametrize(
    "parent",
    [
        f"00-{'0' * 32}-00f067aa0ba902b7-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE_ID}-00f067aa0ba902b7-01",  # version ff is invalid
        f"00-{TRACE_ID[:-1]}-00f067aa0ba902b7-01",  # short trace id
        f"00-{TRACE_ID[:-1]}g-00f067aa0ba902b7-01",  # not hex
        f"00_{TRACE_ID}_00f067aa0ba902b7_01",
        TRACE_ID,
        "",
    ],
)
def test_a_zero_version_ff_or_malformed_traceparent_is_ignored(parent):
    made = request_id_of({"traceparent": parent})
    assert made != TRACE_ID and "0" * 32 not in made
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]+", made), made


# --- the line -----------------------------------------------------------------------------


def exchange(**fields: Any) -> Exchange:
    values: dict[str, Any] = {
        "request_id": "r-1",
        "method": "GET",
        "path": "/items/7",
        "started": 0.0,
        "route": "/items/{id}",
        "endpoint_id": 3,
        "subject": "key:dashboard",
        "cache": "MISS",
        "db_s": 0.0008114,
        "statements": 1,
        "status": 200,
        "duration_s": 0.0019421,
        **fields,
    }
    return Exchange(**values)


def test_the_line_holds_the_request_and_nothing_else():
    line = render(exchange(), "2025-01-31T12:00:00.123Z")
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert orjson.loads(line) == {
        "ts": "2025-01-31T12:00:00.123Z",
        "level": "info",
        "msg": "request",
        "request_id": "r-1",
        "method": "GET",
        "route": "/items/{id}",
        "path": "/items/7",
        "status": 200,
        "duration_ms": 1.942,
        "db_ms": 0.811,
        "cache": "MISS",
        "subject": "key:dashboard",
    }


def test_an_unknown_path_an_anonymous_caller_and_an_abandoned_request():
    entry = orjson.loads(
        render(exchange(route=None, subject=None, cache=None, abandoned=True, status=404), "t")
    )
    assert entry["route"] is None and entry["subject"] is None and entry["cache"] is None
    assert entry["abandoned"] is True and entry["status"] == 404
    assert "abandoned" not in orjson.loads(render(exchange(), "t"))


def test_what_the_client_sends_is_cut_and_escaped_never_a_broken_line():
    entry = orjson.loads(render(exchange(path="/" + "a" * 5000, subject="bad\ud800sub"), "t"))
    assert len(entry["path"]) == accesslog.MAX_PATH_CHARS
    assert entry["subject"] == "bad\\ud800sub"
    forged = render(exchange(path='/x"\n{"status":200}'), "t")
    assert forged.count(b"\n") == 1  # a newline in the path cannot start a line of its own


def test_timestamps_are_rfc3339_utc_with_milliseconds():
    stamp = Stamp()
    now = 1738324800.1239  # 2025-01-31T12:00:00Z
    assert stamp(now) == "2025-01-31T12:00:00.123Z"
    assert stamp(now + 0.5) == "2025-01-31T12:00:00.623Z"
    assert stamp(now + 61) == "2025-01-31T12:01:01.123Z"
    assert TS.fullmatch(stamp(time.time()))


def test_a_batch_is_cut_at_line_ends_so_a_shared_pipe_keeps_lines_whole():
    lines = [b"x" * n + b"\n" for n in (10, 30, 5, 90, 2, 7)]
    chunk = b"".join(lines)
    cut = list(pieces(chunk, 40))
    assert b"".join(cut) == chunk
    for piece in cut:
        assert bytes(piece).endswith(b"\n")
        assert len(piece) <= 40 or bytes(piece).count(b"\n") == 1  # a longer line goes alone
    assert [bytes(p) for p in pieces(chunk, 1 << 20)] == [chunk]


def test_the_setting_is_on_or_off():
    assert accesslog.enabled("on") and accesslog.enabled(" ON ")
    assert not accesslog.enabled("off")
    with pytest.raises(ValueError, match="ENGINE_ACCESS_LOG"):
        accesslog.enabled("yes please")
    off = accesslog.create("off")
    off(exchange())
    assert off.lines == 0


# --- the buffer -----------------------------------------------------------------------------


def _read_available(fd: int) -> bytes:
    out = b""
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return out
        if not data:
            return out
        out += data


async def _poll_pipe(fd: int, lines: int, timeout_s: float = 5.0) -> list[bytes]:
    got = b""
    deadline = time.monotonic() + timeout_s
    while got.count(b"\n") < lines:
        got += _read_available(fd)
        if time.monotonic() > deadline:
            raise AssertionError(f"{lines} line(s) not written within {timeout_s} s: {got!r}")
        await asyncio.sleep(0.01)
    return got.splitlines()


@pytest.fixture()
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    os.set_blocking(r, False)
    yield r, w
    for fd in (r, w):
        with contextlib.suppress(OSError):
            os.close(fd)


def test_lines_wait_in_the_buffer_and_the_timer_writes_them(pipe):
    r, w = pipe

    async def go() -> None:
        log = AccessLog(w, interval_s=0.02)
        log.start()
        try:
            log(exchange(request_id="a"))
            log(exchange(request_id="b"))
            assert _read_available(r) == b""  # no write per request: the loop has not run yet
            lines = await _poll_pipe(r, 2)
            assert [orjson.loads(x)["request_id"] for x in lines] == ["a", "b"]
            log(exchange(request_id="c"))  # the timer is armed again for a new batch
            assert [orjson.loads(x)["request_id"] for x in await _poll_pipe(r, 1)] == ["c"]
        finally:
            await log.stop()

    asyncio.run(go())


def test_a_line_rendered_with_its_batch_has_its_own_request_time(pipe, monkeypatch):
    r, w = pipe
    clock = iter([1_700_000_000.25, 1_700_000_007.5])

    class Clock:
        @staticmethod
        def time() -> float:
            return next(clock)

    async def go() -> None:
        log = AccessLog(w, interval_s=3600)
        log.start()
        monkeypatch.setattr(accesslog, "time", Clock)
        log(exchange(request_id="first"))
        log(exchange(request_id="second"))
        monkeypatch.undo()
        await log.stop()  # both rendered now, in one batch

    asyncio.run(go())
    lines = [orjson.loads(x) for x in _read_available(r).splitlines()]
    assert [(x["request_id"], x["ts"]) for x in lines] == [
        ("first", "2023-11-14T22:13:20.250Z"),
        ("second", "2023-11-14T22:13:27.500Z"),
    ]


def test_a_full_buffer_is_written_at_once(pipe):
    r, w = pipe

    async def go() -> None:
        log = AccessLog(w, flush_bytes=1, interval_s=3600)
        log.start()
        try:
            log(exchange(request_id="now"))
            assert [orjson.loads(x)["request_id"] for x in await _poll_pipe(r, 1)] == ["now"]
        finally:
            await log.stop()

    asyncio.run(go())


def test_stop_writes_what_is_left(pipe):
    r, w = pipe

    async def go() -> AccessLog:
        log = AccessLog(w, interval_s=3600)
        log.start()
        for i in range(5):
            log(exchange(request_id=f"r{i}"))
        await log.stop()
        return log

    log = asyncio.run(go())
    lines = _read_available(r).splitlines()
    assert [orjson.loads(x)["request_id"] for x in lines] == [f"r{i}" for i in range(5)]
    assert (log.lines, log.dropped, log.lost) == (5, 0, 0)


def test_a_reader_that_does_not_keep_up_costs_counted_lines_not_memory_or_the_loop(pipe):
    r, w = pipe
    total = 3000  # about 700 KB: far more than the pipe and the writer's queue hold
    received: list[bytes] = []

    def drain() -> None:
        os.set_blocking(r, True)
        while data := os.read(r, 65536):
            received.append(data)

    async def go() -> AccessLog:
        log = AccessLog(w, flush_bytes=2048, interval_s=3600, max_pending_bytes=16 * 1024)
        log.start()
        for i in range(total):  # nobody reads: each call still returns at once
            log(exchange(request_id=f"r{i}"))
        log.flush()
        assert log.dropped > 0
        assert log._writer.pending_bytes <= 16 * 1024 + 4096
        reader = threading.Thread(target=drain)
        reader.start()
        await log.stop()
        os.close(w)
        reader.join(10)
        return log

    log = asyncio.run(go())
    lines = b"".join(received).splitlines()
    assert all(orjson.loads(line)["msg"] == "request" for line in lines)  # every line whole
    assert len(lines) + log.dropped == total and log.lost == 0


def test_a_closed_stdout_loses_lines_counted_never_an_error(pipe, caplog):
    r, w = pipe
    os.close(r)

    async def go() -> AccessLog:
        log = AccessLog(w, flush_bytes=1)
        log.start()
        log(exchange())
        log(exchange())
        await log.stop()
        return log

    with caplog.at_level(logging.WARNING, logger="engine.accesslog"):
        log = asyncio.run(go())
    assert log.lost == 2
    assert "cannot write to stdout" in caplog.text


def test_the_observer_costs_a_few_microseconds():
    """Not an assertion on speed: prints the figure (pytest -s) for the record."""
    fd = os.open(os.devnull, os.O_WRONLY)

    async def go() -> float:
        log = AccessLog(fd)
        log.start()
        one = exchange()
        n = 50000
        started = time.perf_counter()
        for _ in range(n):
            log(one)
        elapsed = (time.perf_counter() - started) / n
        await log.stop()
        assert log.lines == n and log.dropped == 0
        return elapsed

    try:
        per_call = asyncio.run(go())
    finally:
        os.close(fd)
    print(f"access log observer: {per_call * 1e6:.2f} us per request")


# --- JSON engine logs -----------------------------------------------------------------------


def test_json_log_records_are_one_object_a_line_with_the_traceback():
    formatter = JsonFormatter()
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.getLogger("engine.x").makeRecord(
            "engine.x",
            logging.ERROR,
            __file__,
            1,
            "failed %s\nsecond line",
            ("job",),
            sys.exc_info(),
        )
    text = formatter.format(record)
    assert "\n" not in text
    entry = orjson.loads(text)
    assert entry["level"] == "error" and entry["logger"] == "engine.x"
    assert entry["msg"] == "failed job\nsecond line"
    assert TS.fullmatch(entry["ts"])
    assert "Traceback" in entry["exc"] and "RuntimeError: boom" in entry["exc"]
    plain = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "up", None, None)
    assert set(orjson.loads(formatter.format(plain))) == {"ts", "level", "logger", "msg"}


def test_an_unknown_log_format_or_level_is_refused():
    with pytest.raises(ValueError, match="ENGINE_LOG_FORMAT"):
        logs.configure("INFO", "xml")
    with pytest.raises(ValueError, match="ENGINE_LOG_LEVEL"):
        logs.configure("LOUD", "json")


def test_bad_log_settings_are_clear_errors():
    for env in ({"ENGINE_LOG_FORMAT": "xml"}, {"ENGINE_ACCESS_LOG": "sometimes"}):
        result = run_cli("serve", url="postgresql://127.0.0.1:1/none", **env)
        assert result.returncode == 2, result.stderr
        assert "bad setting" in result.stderr and next(iter(env)) in result.stderr
        assert "Traceback" not in result.stderr


# --- served for real -------------------------------------------------------------------------


def create_key(url: str, name: str) -> str:
    async def go() -> str:
        conn = await asyncpg.connect(url)
        try:
            return await keys.create_key(conn, name, tenant_id=1)
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.fixture()
def published(db: DB) -> DB:
    db.execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'a')"
    )
    add_endpoint(
        db,
        "/items/{id}",
        "GET",
        "SELECT id, name FROM items WHERE id = $1",
        [{"name": "id", "in": "path", "type": "integer"}],
        {"shape": "object"},
        target_table="items",
        cache_enabled=True,
        cache_ttl_seconds=300,
    )
    add_endpoint(
        db,
        "/whoami",
        "GET",
        "SELECT $1::text AS sub",
        [{"name": "sub", "in": "auth", "type": "string"}],
        {"shape": "scalar"},
        requires_auth=True,
    )
    return db


def access_lines(out: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in out.splitlines() if line.startswith('{"ts"')]


def test_every_catalogue_request_is_one_line_and_no_credential_is_written(
    make_client: Maker, published: DB, db_url: str, capfd
):
    key = create_key(db_url, "dashboard")
    client = serve(make_client)
    client.get("/_engine/health")  # the engine's own paths are not logged
    assert client.get("/items/1", headers={"X-Request-ID": "mine-1"}).headers["x-cache"] == "MISS"
    assert client.get("/items/1", headers={"traceparent": TRACEPARENT}).headers["x-cache"] == "HIT"
    assert client.get("/whoami", headers={"X-API-Key": key}).json() == "key:dashboard"
    assert client.get("/whoami", headers=client.auth(sub="alice")).status_code == 200
    assert client.get(f"/nowhere/9?api_key={key}&token=hush-hush").status_code == 404
    assert client.get("/whoami").status_code == 401
    client.engine.stop()  # the last lines are written at stop

    out = capfd.readouterr().out
    lines = access_lines(out)
    assert len(lines) == 6, out
    miss, hit, by_key, by_token, unknown, anonymous = lines
    for line in lines:
        assert TS.fullmatch(line["ts"]) and line["level"] == "info" and line["msg"] == "request"
        assert line["method"] == "GET" and line["duration_ms"] > 0
    assert miss["request_id"] == "mine-1"
    assert (miss["route"], miss["path"], miss["status"]) == ("/items/{id}", "/items/1", 200)
    assert miss["cache"] == "MISS" and miss["db_ms"] > 0
    assert hit["request_id"] == FROM_TRACE
    assert hit["cache"] == "HIT" and hit["db_ms"] == 0
    assert (by_key["subject"], by_key["cache"], by_key["route"]) == (
        "key:dashboard",
        None,
        "/whoami",
    )
    assert by_token["subject"] == "alice"
    assert (unknown["route"], unknown["path"], unknown["status"]) == (None, "/nowhere/9", 404)
    assert (anonymous["status"], anonymous["subject"]) == (401, None)
    assert key not in out and "hush-hush" not in out and "api_key" not in out


def test_access_log_off_writes_no_line(make_client: Maker, published: DB, capfd):
    client = serve(make_client, access_log="off")
    for _ in range(3):
        assert client.get("/items/1").status_code == 200
    client.engine.stop()
    assert access_lines(capfd.readouterr().out) == []


class EngineProcess:
    """``python -m engine serve`` with its stdout and stderr captured."""

    def __init__(self, database_url: str, **env: str) -> None:
        self.port = free_port()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
        environ.update(
            DATABASE_URL=database_url,
            ENGINE_JWT_SECRET=JWT_SECRET,
            ENGINE_PORT=str(self.port),
            ENGINE_LOG_LEVEL="INFO",
            **env,
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve"],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        poll(self._ready, bool, "the engine process answering", timeout_s=60)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the engine exited: {self.proc.communicate()}")
        try:
            return self.http.get("/_engine/health").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> tuple[str, str]:
        """Stop it as a supervisor would (SIGTERM); its stdout and stderr."""
        self.http.close()
        self.proc.terminate()
        out, err = self.proc.communicate(timeout=30)
        return out, err


def test_the_served_command_writes_only_its_own_access_lines_and_json_logs(
    published: DB, db_url: str
):
    engine = EngineProcess(db_url, ENGINE_LOG_FORMAT="json")
    try:
        for i in range(4):
            engine.http.get("/items/1", headers={"X-Request-ID": f"p-{i}"})
        engine.http.get("/nowhere")
    finally:
        out, err = engine.stop()
    # stdout holds the access log only: uvicorn's own access log is off
    lines = [orjson.loads(line) for line in out.splitlines()]
    assert [line["request_id"] for line in lines[:4]] == [f"p-{i}" for i in range(4)]
    assert [line["status"] for line in lines] == [200, 200, 200, 200, 404]
    assert [line["cache"] for line in lines[:2]] == ["MISS", "HIT"]
    # stderr: every record of the engine and of uvicorn is one JSON object
    records = [orjson.loads(line) for line in err.splitlines() if line.strip()]
    assert records and all(set(r) >= {"ts", "level", "logger", "msg"} for r in records)
    loggers = {r["logger"] for r in records}
    assert "engine" in loggers and "uvicorn.error" in loggers, loggers
    assert any("settings:" in r["msg"] for r in records)
    assert all(TS.fullmatch(r["ts"]) for r in records)


def test_the_served_command_with_the_access_log_off_writes_nothing_on_stdout(
    published: DB, db_url: str
):
    engine = EngineProcess(db_url, ENGINE_ACCESS_LOG="off")
    try:
        for _ in range(3):
            assert engine.http.get("/items/1").status_code == 200
    finally:
        out, err = engine.stop()
    assert out == ""
    assert "INFO engine: settings:" in err  # text logs stay as they were


def test_milliseconds_have_three_places_as_round_gives_them() -> None:
    rng = random.Random(3)
    for _ in range(20_000):
        seconds = rng.random() * rng.choice((1e-5, 1e-3, 1.0, 300.0))
        entry = orjson.loads(render(exchange(duration_s=seconds, db_s=seconds / 3), "t"))
        for ms, s in ((entry["duration_ms"], seconds), (entry["db_ms"], seconds / 3)):
            assert abs(ms - round(s * 1000, 3)) <= 0.001 + 1e-9
            assert len(repr(ms).partition(".")[2]) <= 3
    entry = orjson.loads(render(exchange(duration_s=0.0019421, db_s=0.0), "t"))
    assert entry["duration_ms"] == 1.942 and entry["db_ms"] == 0.0
