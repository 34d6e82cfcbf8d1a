"""The engine's HTTP/1.1 protocol (engine/http1.py) on raw sockets: what uvicorn's did.

Pipelined requests answered in order, ``Expect: 100-continue``, chunked request bodies,
HTTP/1.0, HEAD, chunked answers, uvicorn's keep-alive timeout, the parser's 400, and
one timer a connection however many answers it carries. The header timeout, the
connection cap and the drain are tests/test_server.py's (run on both protocols).
"""

from __future__ import annotations

import random
import socket
import time
from typing import Any

import orjson
import pytest

from engine.http1 import HEADER_NAME_BAD, HEADER_VALUE_BAD, EngineProtocol, check_header_bytes
from tests.engine_server import EngineClient
from tests.helpers import add_endpoint
from tests.pg import DB
from tests.test_server import closed_by_server, connect

HEADER_TIMEOUT_S = 8
ALPHABET = b'abcXYZ09-_ \t\r\n\x00\x7f\x1f\xe9:("\\'
BODY = [{"name": "token", "in": "body", "type": "string", "required": True}]


@pytest.fixture()
def client(db: DB, make_client: Any, request: pytest.FixtureRequest) -> EngineClient:
    """The engine over this protocol; ``indirect`` parametrization names another (h11)."""
    db.execute("CREATE TABLE p_notes (id serial PRIMARY KEY, token text NOT NULL)")
    add_endpoint(db, "/p/one", sql="SELECT 1 AS one", result={"shape": "object"})
    add_endpoint(db, "/p/echo/{n}", sql="SELECT $1::int AS n", params=[
        {"name": "n", "in": "path", "type": "integer"}], result={"shape": "object"})  # fmt: skip
    add_endpoint(
        db,
        "/p/notes",
        "POST",
        "INSERT INTO p_notes (token) VALUES ($1) RETURNING id, token",
        BODY,
        {"shape": "object", "status": 201},
        target_table="p_notes",
    )
    add_endpoint(db, "/p/rows", sql="SELECT g AS n FROM generate_series(1, 3) g",
                 result={"shape": "stream", "format": "ndjson"})  # fmt: skip
    http = getattr(request, "param", "auto")
    return make_client(header_timeout_s=HEADER_TIMEOUT_S, http=http)


def read_answers(
    sock: socket.socket, count: int, *, heads: frozenset[int] = frozenset(), timeout_s: float = 10.0
) -> list[dict[str, Any]]:
    """Read ``count`` whole answers (Content-Length or chunked) off ``sock``; those numbered
    in ``heads`` answer a HEAD (a length, no body)."""
    sock.settimeout(timeout_s)
    data = b""
    answers: list[dict[str, Any]] = []
    while len(answers) < count:
        while b"\r\n\r\n" not in data:
            more = sock.recv(65536)
            if not more:
                raise ConnectionError(f"closed after {len(answers)} answer(s): {data[:200]!r}")
            data += more
        head, data = data.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        status = int(status_line.split()[1])
        if status == 100:
            answers.append({"status": 100, "headers": headers, "body": b""})
            continue
        body = b""
        if len(answers) in heads:
            pass
        elif headers.get("transfer-encoding") == "chunked":
            while True:
                while b"\r\n" not in data:
                    data += sock.recv(65536)
                size_line, data = data.split(b"\r\n", 1)
                size = int(size_line, 16)
                while len(data) < size + 2:
                    data += sock.recv(65536)
                body, data = body + data[:size], data[size + 2 :]
                if size == 0:
                    break
        else:
            length = int(headers.get("content-length", "0"))
            while len(data) < length:
                data += sock.recv(65536)
            body, data = data[:length], data[length:]
        answers.append({"status": status, "headers": headers, "body": body})
    return answers


def get(path: str, *extra: str, version: str = "1.1") -> bytes:
    lines = [f"GET {path} HTTP/{version}", "Host: t", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_the_default_protocol_is_the_engines_own(client: EngineClient) -> None:
    assert client.engine.server.config.http is EngineProtocol


def test_pipelined_requests_are_answered_in_order(client: EngineClient) -> None:
    sock = connect(client.engine.port)
    try:
        sock.sendall(b"".join(get(f"/p/echo/{n}") for n in (1, 2, 3)))
        answers = read_answers(sock, 3)
    finally:
        sock.close()
    assert [a["status"] for a in answers] == [200, 200, 200]
    assert [orjson.loads(a["body"]) for a in answers] == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_expect_100_continue_is_answered_before_the_body_is_sent(client: EngineClient) -> None:
    body = b'{"token": "waited"}'
    sock = connect(client.engine.port)
    try:
        head = (
            "POST /p/notes HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
        )
        sock.sendall(head.encode())
        (interim,) = read_answers(sock, 1)
        assert interim["status"] == 100
        sock.sendall(body)
        (answer,) = read_answers(sock, 1)
    finally:
        sock.close()
    assert answer["status"] == 201, answer
    assert orjson.loads(answer["body"])["token"] == "waited"


def test_a_chunked_request_body_is_read_whole(client: EngineClient) -> None:
    parts = [b'{"tok', b'en": "in ', b'chunks"}']
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    head = b"POST /p/notes HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    sock = connect(client.engine.port)
    try:
        sock.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(chunks), 7):  # in small pieces, as a slow client sends
            sock.sendall(chunks[i : i + 7])
        (answer,) = read_answers(sock, 1)
    finally:
        sock.close()
    assert answer["status"] == 201, answer
    assert orjson.loads(answer["body"])["token"] == "in chunks"


def test_http_1_0_is_answered_and_closed(client: EngineClient) -> None:
    sock = connect(client.engine.port)
    try:
        sock.sendall(get("/p/one", version="1.0"))
        (answer,) = read_answers(sock, 1)
        assert closed_by_server(sock, timeout_s=5)
    finally:
        sock.close()
    assert answer["status"] == 200 and answer["headers"]["connection"] == "close"
    assert orjson.loads(answer["body"]) == {"one": 1}


def test_connection_close_is_honoured_after_the_answer(client: EngineClient) -> None:
    sock = connect(client.engine.port)
    try:
        sock.sendall(get("/p/one", "Connection: close"))
        (answer,) = read_answers(sock, 1)
        assert closed_by_server(sock, timeout_s=5)
    finally:
        sock.close()
    assert answer["status"] == 200 and answer["headers"]["connection"] == "close"


def test_head_has_the_length_and_no_body_and_the_connection_goes_on(
    client: EngineClient,
) -> None:
    sock = connect(client.engine.port)
    try:
        sock.sendall(b"HEAD /p/one HTTP/1.1\r\nHost: t\r\n\r\n" + get("/p/echo/7"))
        head_answer, next_answer = read_answers(sock, 2, heads=frozenset({0}))
    finally:
        sock.close()
    assert head_answer["status"] == 200 and head_answer["body"] == b""
    assert int(head_answer["headers"]["content-length"]) == len(b'{"one":1}')
    assert orjson.loads(next_answer["body"]) == {"n": 7}


def test_a_stream_is_sent_in_chunks_ending_with_the_last_chunk(client: EngineClient) -> None:
    sock = connect(client.engine.port)
    try:
        sock.sendall(get("/p/rows") + get("/p/one"))
        stream, after = read_answers(sock, 2)
    finally:
        sock.close()
    assert stream["headers"]["transfer-encoding"] == "chunked"
    assert [orjson.loads(line) for line in stream["body"].splitlines()] == [
        {"n": 1}, {"n": 2}, {"n": 3}]  # fmt: skip
    assert after["status"] == 200


@pytest.mark.parametrize("client", ["auto", "h11"], indirect=True)  # h11: without httptools
def test_what_the_parser_refuses_is_a_coded_400_and_a_close(client: EngineClient) -> None:
    sock = connect(client.engine.port)
    try:
        sock.sendall(b"GET /p/one HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n")
        (answer,) = read_answers(sock, 1)
        assert closed_by_server(sock, timeout_s=5)
    finally:
        sock.close()
    assert answer["status"] == 400 and answer["headers"]["connection"] == "close"
    assert answer["headers"]["content-type"] == "application/problem+json"
    problem = orjson.loads(answer["body"])
    assert problem["code"] == "MALFORMED_REQUEST" and problem["status"] == 400, problem
    assert problem["request_id"] == answer["headers"]["x-request-id"]


def test_an_idle_keep_alive_connection_is_closed_after_uvicorns_keep_alive(
    client: EngineClient,
) -> None:
    keep_alive_s = client.engine.server.config.timeout_keep_alive
    assert keep_alive_s < HEADER_TIMEOUT_S  # the header timeout is not what closes it
    sock = connect(client.engine.port)
    try:
        sock.sendall(get("/p/one"))
        read_answers(sock, 1)
        started = time.monotonic()
        assert closed_by_server(sock, timeout_s=keep_alive_s + 3)
        assert time.monotonic() - started >= keep_alive_s - 0.5
    finally:
        sock.close()
    assert client.engine.server.server_state.head_timeouts == 0


def test_a_connection_keeps_one_timer_however_many_answers_it_carries(
    client: EngineClient,
) -> None:
    """The deadlines move with each answer; the timer set when the connection opened
    stays (uvicorn armed and cancelled one an answer, and the engine's shim another)."""
    sock = connect(client.engine.port)
    try:
        sock.sendall(get("/p/echo/0"))
        read_answers(sock, 1)
        (connection,) = client.engine.server.server_state.connections
        first = connection._timer
        for n in range(1, 200):
            sock.sendall(get(f"/p/echo/{n}"))
            assert orjson.loads(read_answers(sock, 1)[0]["body"]) == {"n": n}
        assert first is not None and connection._timer is first
        assert connection._head_deadline is not None  # idle: the next head is awaited
    finally:
        sock.close()


def test_an_answers_header_bytes_are_checked_as_uvicorns_expressions_say() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        names = [bytes(rng.choice(ALPHABET) for _ in range(rng.randint(0, 6))) for _ in range(3)]
        values = [bytes(rng.choice(ALPHABET) for _ in range(rng.randint(0, 9))) for _ in range(3)]
        bad_name = any(HEADER_NAME_BAD.search(n) for n in names)
        bad_value = any(HEADER_VALUE_BAD.search(v) for v in values)
        for _twice in range(2):  # the second time, names that passed come from the set
            if bad_name or bad_value:
                with pytest.raises(RuntimeError, match="name" if bad_name else "value"):
                    check_header_bytes(names, values)
            else:
                check_header_bytes(names, values)


def test_names_that_passed_never_let_a_bad_name_through() -> None:
    good = [b"content-type", b"etag", b"x-request-id"]
    check_header_bytes(good, [b"a", b"b\tc", b"\xe9"])  # tab and obs-text are allowed
    for bad in (b"x request", b"x:y", b"x\ny", b"\x7f"):
        with pytest.raises(RuntimeError, match="name"):
            check_header_bytes([*good, bad], [b"a", b"b", b"c", b"d"])
    for bad in (b"a\rb", b"a\nb", b"\x00", b"\x7f", b"\x1f"):
        with pytest.raises(RuntimeError, match="value"):
            check_header_bytes(good, [b"a", bad, b"c"])
