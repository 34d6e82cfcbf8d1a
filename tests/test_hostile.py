"""The hostile input corpus: one table of requests a client should never be able to hurt
the engine with, each with the exact answer it gets and the pool connections it may take.

One engine serves a few rows for the whole module: a GET by integer path id, a GET by
string path, a GET with a query parameter of every type, a GET with a header parameter
and a POST whose stored JSON Schema holds the catastrophic pattern ``^(a+)+$``. Every
request is written on a raw socket (httpx would normalise ``..``, refuse CR/LF, fix a
lying Content-Length), carries its own X-Request-ID, and the pool acquisitions made on
behalf of that request id are counted in-process: a refusal must not take a database
connection. A value with SQL metacharacters must come back as the data it was.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from engine import database as database_module
from engine.errors import ApiError, SpecError
from engine.observe import CURRENT
from engine.patterns import PatternError, compile_pattern
from engine.validation import build_sanitizer, compile_rule, compile_schema
from tests.engine_server import RunningEngine
from tests.helpers import add_endpoint, add_schema, run_cli
from tests.pg import DB, with_database

PROBLEM = "application/problem+json"
LIMIT = 1_048_576  # ENGINE_MAX_BODY_BYTES's default, which the engine below keeps
SQL = "'; DROP TABLE h_items; --"
STRANGE = [SQL, "$1", "\\", "%", "_", "a'b\"c", "1 OR 1=1"]

TABLES = """
CREATE TABLE h_items (id int8 PRIMARY KEY, name text NOT NULL);
INSERT INTO h_items VALUES (1, 'alpha'), (2, '%'), (3, $$'; DROP TABLE h_items; --$$);
CREATE TABLE h_things (id serial PRIMARY KEY, code text, name text, qty int8, meta jsonb);
"""
SEARCH_PARAMS = [
    ("i", "integer", "int8"),
    ("n", "number", "numeric"),
    ("s", "string", "text"),
    ("b", "boolean", "bool"),
    ("u", "uuid", "uuid"),
    ("d", "date", "date"),
    ("t", "timestamp", "timestamptz"),
    ("j", "json", "jsonb"),
    ("a", "array", "text[]"),
    ("f", "number", "float8"),
]
THING_SCHEMA = {
    "type": "object",
    "required": ["code"],
    "properties": {
        "code": {"type": "string", "pattern": "^(a+)+$", "maxLength": 200},
        "name": {"type": "string", "maxLength": 200},
        "qty": {"type": "integer"},
        "meta": {"type": "object"},
        "expr": {"type": "string", "format": "regex", "maxLength": 100_000},
    },
}


def _publish(db: DB) -> None:
    db.execute(TABLES)
    add_endpoint(
        db,
        "/h/items/{id}",
        "GET",
        "SELECT id, name FROM h_items WHERE id = $1",
        [{"name": "id", "in": "path", "type": "integer"}],
        {"shape": "object", "not_found": "RESOURCE_NOT_FOUND"},
    )
    add_endpoint(
        db,
        "/h/names/{name}",
        "GET",
        "SELECT $1::text AS name, (SELECT count(*) FROM h_items WHERE name = $1) AS exact, "
        "(SELECT count(*) FROM h_items) AS items",
        [{"name": "name", "in": "path", "type": "string"}],
        {"shape": "object"},
    )
    columns = ", ".join(f"${i}::{pg} AS {name}" for i, (name, _, pg) in enumerate(SEARCH_PARAMS, 1))
    add_endpoint(
        db,
        "/h/search",
        "GET",
        f"SELECT {columns}, (SELECT count(*) FROM h_items WHERE name = $3) AS exact",
        [
            {
                "name": name,
                "in": "query",
                "type": kind,
                **({"items": "string"} if pg == "text[]" else {}),
            }
            for name, kind, pg in SEARCH_PARAMS
        ],
        {"shape": "object"},
    )
    add_endpoint(
        db,
        "/h/whoami",
        "GET",
        "SELECT $1::text AS name, (SELECT count(*) FROM h_items WHERE name = $1) AS exact",
        [{"name": "X-Client-Name", "in": "header", "type": "string", "required": True}],
        {"shape": "object"},
    )
    things = add_endpoint(
        db,
        "/h/things",
        "POST",
        "INSERT INTO h_things (code, name, qty, meta) VALUES ($1, $2, $3, $4) "
        "RETURNING id, code, name, qty, meta",
        [
            {"name": "code", "in": "body", "type": "string", "required": True},
            {"name": "name", "in": "body", "type": "string"},
            {"name": "qty", "in": "body", "type": "integer"},
            {"name": "meta", "in": "body", "type": "json"},
        ],
        {"shape": "object", "status": 201},
        database_operation="INSERT",
    )
    add_schema(db, things, THING_SCHEMA)


def counting_acquire(counts: Counter[str]) -> Callable[..., Any]:
    """engine.database.acquire, counting the connections taken on behalf of each request id
    (of any pool: the primary's, a replica's)."""
    real = database_module.acquire

    async def acquire(*args: Any, **kwargs: Any) -> Any:
        exchange = CURRENT.get()
        task = asyncio.current_task()
        # the request's own task (uvicorn's, unnamed), not a background task the engine
        # started from it (named, e.g. recovery-strategies), which inherits its context
        if exchange is not None and task is not None and task.get_name().startswith("Task-"):
            counts[exchange.request_id] += 1
        return await real(*args, **kwargs)

    return acquire


@dataclass
class Served:
    engine: RunningEngine
    db: DB
    acquired: Counter[str]


@pytest.fixture(scope="module")
def served(pg_url: str, template_db: str) -> Iterator[Served]:
    name = f"engine_hostile_{os.getpid()}"
    admin = DB(pg_url)
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    url = with_database(pg_url, name)
    db = DB(url)
    _publish(db)
    engine = RunningEngine(url)
    acquired: Counter[str] = Counter()
    patch = pytest.MonkeyPatch()
    patch.setattr(database_module, "acquire", counting_acquire(acquired))
    try:
        yield Served(engine, db, acquired)
    finally:
        patch.undo()
        engine.stop()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- raw HTTP ------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int | None  # None: the connection closed with no answer
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name.lower()), None)

    def json(self) -> Any:
        return orjson.loads(self.body)


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False  # no length: read until the server closes


def _parse(data: bytes) -> Answer:
    if not data:
        return Answer(None)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    return Answer(status, headers, body)


def send(port: int, data: bytes, *, shut: bool = False, timeout_s: float = 15.0) -> Answer:
    """Write ``data`` on a new connection; the first answer (or None when dropped)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        try:
            sock.sendall(data)
            if shut:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed before reading it all: the answer is still there
        received = b""
        while not _complete(received):
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    return _parse(received)


Header = tuple[str | bytes, str | bytes]


def _b(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def request(
    method: str,
    target: str | bytes,
    *headers: Header,
    body: bytes | None = None,
    length: int | str | None = None,
    rid: bool = True,
) -> Callable[[str], bytes]:
    """The raw request, given its request id. ``length`` overrides Content-Length (a lie)."""

    def build(request_id: str) -> bytes:
        lines = [_b(method) + b" " + _b(target) + b" HTTP/1.1", b"Host: engine.test"]
        if rid:
            lines.append(b"X-Request-ID: " + request_id.encode())
        lines += [_b(k) + b": " + _b(v) for k, v in headers]
        chunked = any(_b(k).lower() == b"transfer-encoding" for k, _ in headers)
        if length is not None:
            lines.append(b"Content-Length: " + str(length).encode())
        elif body is not None and not chunked:
            lines.append(b"Content-Length: " + str(len(body)).encode())
        lines.append(b"Connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")

    return build


JSON = ("Content-Type", "application/json")


def post(body: Any, *headers: Header, length: int | str | None = None) -> Callable[[str], bytes]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return request("POST", "/h/things", JSON, *headers, body=raw, length=length)


def get(target: str | bytes, *headers: Header) -> Callable[[str], bytes]:
    return request("GET", target, *headers)


def chunked(total: int, size: int = 65536, *, end: bool = True) -> bytes:
    """A chunked body of ``total`` bytes of JSON-ish filler."""
    out = []
    left = total
    while left > 0:
        n = min(size, left)
        out.append(f"{n:x}\r\n".encode() + b"a" * n + b"\r\n")
        left -= n
    return b"".join(out) + (b"0\r\n\r\n" if end else b"")


# -- what an answer must be ----------------------------------------------------------------

Check = Callable[[Answer, Served], None]


def data(**expected: Any) -> Check:
    """The answer's JSON holds these fields with these values (and the table is intact)."""

    def check(answer: Answer, served: Served) -> None:
        body = answer.json()
        assert {k: body.get(k) for k in expected} == expected, body
        assert served.db.fetchval("SELECT count(*) FROM h_items") == 3

    return check


def stored(**expected: Any) -> Check:
    """The write's answer and the row it stored hold these values, as sent."""

    def check(answer: Answer, served: Served) -> None:
        body = answer.json()
        assert {k: body.get(k) for k in expected} == expected, body
        row = served.db.fetchrow("SELECT * FROM h_things WHERE id = $1", body["id"])
        assert row is not None
        found = {k: orjson.loads(row[k]) if k == "meta" else row[k] for k in expected}
        assert found == expected
        assert served.db.fetchval("SELECT count(*) FROM h_items") == 3

    return check


def allow(methods: str) -> Check:
    def check(answer: Answer, served: Served) -> None:
        assert answer.header("allow") == methods, answer.headers

    return check


def not_echoed(*texts: str) -> Check:
    def check(answer: Answer, served: Served) -> None:
        body = answer.body.decode("utf-8", "replace")
        for text in texts:
            assert text not in body, body

    return check


def no_injected_header(answer: Answer, served: Served) -> None:
    assert all(name not in ("x-injected", "set-cookie") for name, _ in answer.headers), (
        answer.headers
    )


def mentions(parameter: str) -> Check:
    def check(answer: Answer, served: Served) -> None:
        errors = answer.json().get("errors", [])
        assert [e.get("parameter") or e.get("pointer") for e in errors] == [parameter], errors

    return check


@dataclass(frozen=True)
class Case:
    """One hostile request and its exact answer.

    ``code`` None: a success, or (status 400) the HTTP parser's own refusal, before the
    request reaches the dispatcher (the protocol answers it 400 MALFORMED_REQUEST); ``status``
    None: the connection is closed unanswered.
    ``pool``: connections the request may take (0 for every refusal).
    """

    id: str
    send: Callable[[str], bytes]
    status: int | None
    code: str | None = None
    pool: int = 0
    check: Check | None = None
    shut: bool = False
    xfail: str | None = None


def _assert(condition: bool, what: Any) -> None:
    assert condition, what


def _nested(depth: int, kind: str = "[") -> bytes:
    close = "]" if kind == "[" else "}"
    opening = "[" if kind == "[" else '{"a":'
    return (opening * depth + "1" + close * depth).encode()


def _q(value: str) -> str:
    return quote(value, safe="")


CASES = [
    # -- bodies over the limit, told honestly, lied about, or chunked ---------------------
    Case(
        "content-length-over-the-limit",
        post(b"", length=LIMIT + 1),  # the head alone: 413 before a byte of body is read
        413,
        "PAYLOAD_TOO_LARGE",
    ),
    Case("content-length-a-gigabyte", post(b"", length=10**9), 413, "PAYLOAD_TOO_LARGE"),
    Case(
        "content-length-smaller-than-the-body",
        post(b'{"code": "aaaaaaaa"}', length=10),  # the engine reads 10 bytes: `{"code": "`
        400,
        "INVALID_JSON",
    ),
    Case(
        "content-length-larger-than-the-body",
        post(b'{"code": "aaa"}', length=1000),
        None,  # the client half-closed before the rest came: nobody to answer
        shut=True,
    ),
    Case("content-length-not-a-number", post(b'{"code": "a"}', length="abc"), 400),
    Case("content-length-negative", post(b'{"code": "a"}', length="-1"), 400),
    Case(
        "content-length-twice-differing",  # request smuggling: the parser refuses it
        post(b'{"code": "a"}', ("Content-Length", "3")),
        400,
    ),
    Case(
        "content-length-and-chunked",
        request(
            "POST",
            "/h/things",
            JSON,
            ("Transfer-Encoding", "chunked"),
            body=chunked(20),
            length=20,
        ),
        400,
    ),
    Case(
        "chunked-over-the-limit",
        request(
            "POST", "/h/things", JSON, ("Transfer-Encoding", "chunked"), body=chunked(LIMIT + 1)
        ),
        413,
        "PAYLOAD_TOO_LARGE",
    ),
    Case(
        "chunked-over-the-limit-never-ending",
        request(
            "POST",
            "/h/things",
            JSON,
            ("Transfer-Encoding", "chunked"),
            body=chunked(LIMIT + 1, end=False),
        ),
        413,
        "PAYLOAD_TOO_LARGE",
    ),
    # -- JSON nested deep ----------------------------------------------------------------
    Case("json-arrays-nested-100000-deep", post(_nested(100_000)), 400, "INVALID_JSON"),
    Case("json-objects-nested-100000-deep", post(_nested(100_000, "{")), 400, "INVALID_JSON"),
    Case("json-nested-100-deep", post(_nested(100, "{")), 400, "INVALID_BODY"),
    # -- invalid UTF-8 -------------------------------------------------------------------
    Case("utf8-invalid-in-body", post(b'{"code": "a\xff"}'), 400, "INVALID_JSON"),
    Case("utf8-invalid-in-query", get("/h/search?s=%FF%FE"), 400, "INVALID_PARAMETER"),
    Case("utf8-invalid-in-path", get("/h/names/%C3%28"), 400, "INVALID_PARAMETER"),
    Case(
        "utf8-invalid-in-header",
        get("/h/whoami", ("X-Client-Name", b"caf\xe9")),
        400,
        "INVALID_PARAMETER",
        check=mentions("X-Client-Name"),
    ),
    Case(
        "utf8-valid-in-header",
        get("/h/whoami", ("X-Client-Name", "Cổng chính".encode())),
        200,
        pool=1,
        check=data(name="Cổng chính"),
    ),
    # -- NUL bytes -------------------------------------------------------------------------
    Case("nul-in-path-escaped", get("/h/names/a%00b"), 400, "INVALID_PARAMETER"),
    Case("nul-in-path-raw", get(b"/h/names/a\x00b"), 400),  # the HTTP parser refuses it
    Case("nul-in-query-escaped", get("/h/search?s=a%00b"), 400, "INVALID_PARAMETER"),
    Case("nul-in-query-raw", get(b"/h/search?s=a\x00b"), 400),
    Case("nul-in-header", get("/h/whoami", ("X-Client-Name", b"a\x00b")), 400),
    Case("nul-in-body-string", post({"code": "a", "name": "a\x00b"}), 400, "INVALID_PARAMETER"),
    Case(
        "nul-in-body-json-value",
        post({"code": "a", "meta": {"k": "a\x00b"}}),
        400,
        "INVALID_PARAMETER",
    ),
    Case("nul-in-body-raw", post(b'{"code": "a\x00"}'), 400, "INVALID_JSON"),
    # -- numbers beyond their types --------------------------------------------------------
    Case(
        "int8-overflow-in-query", get("/h/search?i=9223372036854775808"), 400, "INVALID_PARAMETER"
    ),
    Case(
        "int8-max-in-query",
        get("/h/search?i=9223372036854775807"),
        200,
        pool=1,
        check=data(i=9223372036854775807),
    ),
    Case("int8-overflow-in-path", get("/h/items/9223372036854775808"), 400, "INVALID_PARAMETER"),
    Case(
        "int8-overflow-in-body",
        post(b'{"code": "a", "qty": 9223372036854775808}'),
        400,
        "INVALID_PARAMETER",
    ),
    Case(
        "huge-integer-in-body",
        post(b'{"code": "a", "qty": 1' + b"0" * 400 + b"}"),
        400,
        "INVALID_JSON",
    ),
    Case("float-1e400-in-query", get("/h/search?f=1e400"), 400, "INVALID_PARAMETER"),
    Case("float-1e400-in-body", post(b'{"code": "a", "qty": 1e400}'), 400, "INVALID_JSON"),
    Case("nan-in-query", get("/h/search?f=NaN"), 400, "INVALID_PARAMETER"),
    Case("numeric-1e400-in-query", get("/h/search?n=1e400"), 200, pool=1),
    # -- wrong types ----------------------------------------------------------------------
    Case("integer-path-id-not-a-number", get("/h/items/abc"), 400, "INVALID_PARAMETER"),
    Case("boolean-maybe", get("/h/search?b=maybe"), 400, "INVALID_PARAMETER"),
    Case("uuid-not-a-uuid", get("/h/search?u=not-a-uuid"), 400, "INVALID_PARAMETER"),
    Case("date-month-13", get("/h/search?d=2024-13-45"), 400, "INVALID_PARAMETER"),
    Case("timestamp-garbage", get("/h/search?t=yesterday"), 400, "INVALID_PARAMETER"),
    Case("json-not-json", get("/h/search?j=%7Bnope"), 400, "INVALID_PARAMETER"),
    Case(
        "json-query-nested-300-deep",
        get("/h/search?j=" + "%5B" * 300 + "%5D" * 300),
        400,
        "INVALID_PARAMETER",
    ),
    Case("json-query-with-nul", get("/h/search?j=%22a%5Cu0000%22"), 400, "INVALID_PARAMETER"),
    Case(
        "json-body-nested-60-deep",
        post({"code": "a", "meta": orjson.loads(_nested(59, "{"))}),
        201,
        pool=1,
    ),
    Case("body-integer-as-string", post({"code": "a", "qty": "ten"}), 400, "VALIDATION_ERROR"),
    Case("body-an-array", post([{"code": "a"}]), 400, "INVALID_BODY"),
    Case("body-a-string", post(b'"aaa"'), 400, "INVALID_BODY"),
    Case("body-null", post(b"null"), 400, "INVALID_BODY"),
    # -- wrong content type, method, path --------------------------------------------------
    Case(
        "content-type-text",
        request("POST", "/h/things", ("Content-Type", "text/plain"), body=b'{"code": "a"}'),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    ),
    Case(
        "content-type-form",
        request(
            "POST",
            "/h/things",
            ("Content-Type", "application/x-www-form-urlencoded"),
            body=b"code=a",
        ),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    ),
    Case(
        "wrong-method",
        request("DELETE", "/h/items/1"),
        405,
        "METHOD_NOT_ALLOWED",
        check=allow("GET"),
    ),
    Case(
        "unknown-path-not-echoed",
        get("/h/nope-%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
        404,
        "ROUTE_NOT_FOUND",
        check=not_echoed("nope", "<script>"),
    ),
    Case("path-escaped-nul-in-integer", get("/h/items/%00"), 400, "INVALID_PARAMETER"),
    Case("path-dot-dot", get("/h/items/../items/1"), 404, "ROUTE_NOT_FOUND"),
    Case("path-dot-dot-as-data", get("/h/names/.."), 200, pool=1, check=data(name="..")),
    Case(  # decoded before routing (as Starlette does): more segments, no route
        "path-escaped-slashes",
        get("/h/names/..%2F..%2Fetc%2Fpasswd"),
        404,
        "ROUTE_NOT_FOUND",
    ),
    Case(
        "path-escaped-question-mark",
        get("/h/names/a%3Fb"),
        200,
        pool=1,
        check=data(name="a?b"),
    ),
    Case(
        "path-escaped-hash",
        get("/h/names/a%23b"),
        200,
        pool=1,
        check=data(name="a#b"),
    ),
    # -- CR/LF in header values (never a header of the answer) ---------------------------
    Case(
        "crlf-in-request-id",
        request("GET", "/h/items/1", ("X-Request-ID", "abc\r\nX-Injected: 1"), rid=False),
        200,  # two request headers: the answer has the id and nothing else of the client's
        check=lambda answer, served: (
            no_injected_header(answer, served),
            _assert(answer.header("x-request-id") == "abc", answer.headers),
        ),
    ),
    Case(
        "bare-cr-in-header-value",
        get("/h/whoami", ("X-Client-Name", b"a\rX-Injected: 1")),
        400,
        check=no_injected_header,
    ),
    Case(
        "bare-lf-in-header-value",
        get("/h/whoami", ("X-Client-Name", b"a\nX-Injected: 1")),
        400,
        check=no_injected_header,
    ),
    Case(
        "crlf-escaped-in-request-id",
        request("GET", "/h/items/1", ("X-Request-ID", "abc%0d%0aSet-Cookie:x=1"), rid=False),
        200,
        check=no_injected_header,
    ),
    # -- duplicate parameters --------------------------------------------------------------
    Case("duplicate-query-parameter", get("/h/search?i=1&i=2"), 400, "INVALID_PARAMETER"),
    Case(
        "duplicate-header-parameter",
        get("/h/whoami", ("X-Client-Name", "one"), ("X-Client-Name", "two")),
        400,
        "INVALID_PARAMETER",
    ),
    Case(
        "duplicate-array-query-parameter",
        get("/h/search?a=x&a=y"),
        200,
        pool=1,
        check=data(a=["x", "y"]),
    ),
    # -- the catastrophic pattern -----------------------------------------------------------
    Case(
        "catastrophic-pattern-35-characters",
        post({"code": "a" * 35 + "!"}),
        400,
        "VALIDATION_ERROR",
    ),
    Case(
        "catastrophic-pattern-200-characters",
        post({"code": "a" * 199 + "!"}),
        400,
        "VALIDATION_ERROR",
    ),
    Case(
        "catastrophic-pattern-matching",
        post({"code": "a" * 200}),
        201,
        pool=1,
        check=stored(code="a" * 200),
    ),
    Case("pattern-end-is-the-end", post({"code": "aaa\n"}), 400, "VALIDATION_ERROR"),
    Case(
        "format-regex-lookahead",  # a client's regex: valid when RE2 could match it
        post({"code": "a", "expr": "(?=a)"}),
        400,
        "VALIDATION_ERROR",
    ),
    Case(
        "format-regex-nested-20000-deep",  # Python's re.compile raised RecursionError: a 500
        post({"code": "a", "expr": "(" * 20_000 + ")" * 20_000}),
        201,
        pool=1,
    ),
    # -- Accept-Language ------------------------------------------------------------------
    Case(
        "accept-language-64-kb",
        get("/h/items/x", ("Accept-Language", "en-" + "x" * 65536)),
        400,
        "INVALID_PARAMETER",
    ),
    Case(
        "accept-language-1000-ranges",
        get(
            "/h/items/x",
            ("Accept-Language", ", ".join(f"l{i};q=0.{i % 9 + 1}" for i in range(1000))),
        ),
        400,
        "INVALID_PARAMETER",
    ),
]

# SQL metacharacters in every parameter kind: data, never SQL
for n, value in enumerate(STRANGE):
    CASES += [
        Case(
            f"sql-in-path-{n}",
            get("/h/names/" + _q(value)),
            200,
            pool=1,
            check=data(name=value, exact=int(value in (SQL, "%")), items=3),
        ),
        Case(
            f"sql-in-query-{n}",
            get("/h/search?s=" + _q(value)),
            200,
            pool=1,
            check=data(s=value, exact=int(value in (SQL, "%"))),
        ),
        Case(
            f"sql-in-header-{n}",
            get("/h/whoami", ("X-Client-Name", value)),
            200,
            pool=1,
            check=data(name=value, exact=int(value in (SQL, "%"))),
        ),
        Case(
            f"sql-in-body-{n}",
            post({"code": "a", "name": value, "meta": {value: value}}),
            201,
            pool=1,
            check=stored(name=value, meta={value: value}),
        ),
        Case(f"sql-in-integer-path-{n}", get("/h/items/" + _q(value)), 400, "INVALID_PARAMETER"),
    ]


def _params() -> list[Any]:
    out = []
    for case in CASES:
        marks = [pytest.mark.xfail(reason=case.xfail, strict=False)] if case.xfail else []
        out.append(pytest.param(case, id=case.id, marks=marks))
    return out


def test_a_catastrophic_pattern_never_stalls_other_requests(served: Served) -> None:
    """``^(a+)+$`` against 35 a's and a "!" took Python's re minutes, holding the event loop:
    now 20 of them at once, and a GET meanwhile, all answered at once."""
    port = served.engine.port
    hostile = post({"code": "a" * 35 + "!"})
    with ThreadPoolExecutor(8) as pool:
        answers = [pool.submit(send, port, hostile(f"redos-{i}")) for i in range(20)]
        started = time.monotonic()
        other = send(port, get("/h/items/1")("redos-other"))
        waited = time.monotonic() - started
        refused = [a.result(timeout=60) for a in answers]
    assert other.status == 200 and other.json() == {"id": 1, "name": "alpha"}
    assert waited < 5, waited  # generous: it is milliseconds; a backtracking match is minutes
    assert {(a.status, a.json()["code"]) for a in refused} == {(400, "VALIDATION_ERROR")}
    pointer = refused[0].json()["errors"][0]["pointer"]
    assert pointer == "/code"


@pytest.mark.parametrize("case", _params())
def test_hostile_request(served: Served, case: Case) -> None:
    rid = f"hostile-{case.id}"
    sent = case.send(rid)
    answer = send(served.engine.port, sent, shut=case.shut)
    assert answer.status == case.status, (answer.status, answer.body[:300])
    if case.code is not None:
        assert (answer.header("content-type") or "").startswith(PROBLEM), answer.headers
        problem = answer.json()
        assert problem["code"] == case.code, problem
        assert problem["status"] == case.status
        assert problem["request_id"]
        for leak in ("h_items", "h_things", "SELECT", "INSERT", "Traceback"):
            said = leak.encode() in sent or quote(leak).encode() in sent
            assert said or leak not in answer.body.decode("utf-8", "replace"), problem
    elif case.status == 400:  # refused by the protocol's parser: it never became a request
        assert (answer.header("content-type") or "").startswith(PROBLEM), answer.headers
        assert answer.json()["code"] == "MALFORMED_REQUEST", answer.body
        assert answer.header("connection") == "close", answer.headers
    if case.check is not None:
        case.check(answer, served)
    assert served.acquired[rid] == case.pool, served.acquired[rid]


# -- bounded patterns: what RE2 keeps of Python's re, and what it refuses --------------------


@pytest.mark.parametrize(
    ("pattern", "text", "found"),
    [
        (r"^[\w\s\-]+$", "Cổng chính - Tòa A", True),  # \w and \s keep their Unicode meaning
        (r"^\d+$", "٣٤", True),  # Arabic-Indic digits are \d, as in Python's re
        (r"^[^\s/?#]+\S*$", "host/x\u00a0y", False),  # a no-break space is \s
        (r"^\u00e9t\u00E9$", "été", True),  # ECMA-262 \uXXXX
        (r"^\u{1F600}$", "😀", True),
        (r"^abc\Z", "abc", True),  # Python's \Z is RE2's \z
        (r"^abc$", "abc\n", False),  # $ is the end of the text, as in ECMA-262
        (r"(?i)^ABC$", "abc", True),
        (r"^(a+)+$", "a" * 100_000 + "!", False),  # linear: a hundred thousand is nothing
        (r"\\u0041", "\\u0041", True),  # an escaped backslash, then a literal u0041
    ],
)
def test_patterns_keep_their_meaning_in_linear_time(pattern: str, text: str, found: bool) -> None:
    assert compile_pattern(pattern).search(text) is found


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"^(a)\1$", "cannot be matched in linear time by RE2"),  # a backreference
        (r"^(?=a)", "cannot be matched in linear time by RE2"),  # lookahead
        (r"(?<!x)y", "cannot be matched in linear time by RE2"),  # lookbehind
        (r"(?>a+)b", "cannot be matched in linear time by RE2"),  # an atomic group
        (r"a*+b", "cannot be matched in linear time by RE2"),  # possessive
        (r"([a-", "is not a valid regular expression"),
        (r"[\W]", "no RE2 equivalent with Unicode meaning"),
    ],
)
def test_patterns_re2_cannot_match_are_refused_with_the_reason(pattern: str, reason: str) -> None:
    with pytest.raises(PatternError, match=re.escape(reason)):
        compile_pattern(pattern)
    with pytest.raises(SpecError, match="at /properties/x/pattern the pattern"):
        compile_schema("s", {"properties": {"x": {"type": "string", "pattern": pattern}}})


def test_every_keyword_that_matches_patterns_is_bounded() -> None:
    long_key = "x-" + "a" * 50_000 + "!"
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "patternProperties": {"^x-(a+)+$": {"type": "integer"}},
        "unevaluatedProperties": False,
    }
    found = compile_schema("s", schema, allow_unknown_fields=True).errors(
        {long_key: 1, "x-aa": "q"}
    )
    assert [e["keyword"] for e in found] == ["unevaluatedProperties", "type"]
    closed_schema = {k: v for k, v in schema.items() if k != "unevaluatedProperties"}
    closed = compile_schema("c", {**closed_schema, "additionalProperties": False})
    assert [(e["pointer"], e["keyword"]) for e in closed.errors({long_key: 1, "x-a": 2})] == [
        (f"/{long_key}", "additionalProperties")
    ]
    rule = compile_rule(
        {"field_name": "v", "sanitization_type": "validate", "validation_pattern": "^(a+)+$"}
    )
    with pytest.raises(ApiError) as refused:
        build_sanitizer([rule]).apply({"v": "a" * 50_000 + "!"})
    assert refused.value.code == "VALIDATION_ERROR"


def test_a_nested_dialect_is_refused() -> None:
    # jsonschema would switch to its own class (and Python's re) below a $schema
    nested = {"properties": {"a": {"$schema": "https://json-schema.org/draft/2020-12/schema"}}}
    with pytest.raises(SpecError, match=r"\$schema at /properties/a/\$schema"):
        compile_schema("s", nested)
    top = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": "#/$defs/n"}
    top["$defs"] = {"n": {"type": "object", "properties": {"s": {"pattern": "^(a+)+$"}}}}
    assert compile_schema("t", top).errors({"s": "a" * 50_000 + "!"})[0]["keyword"] == "pattern"


@pytest.mark.slow
def test_engine_check_names_a_pattern_re2_cannot_match(db: DB) -> None:
    mid = add_endpoint(
        db,
        "/h/twice",
        "POST",
        "SELECT $1::text AS w",
        [{"name": "w", "in": "body", "type": "string"}],
        {"shape": "scalar"},
        database_operation="SELECT",
    )
    add_schema(db, mid, {"type": "object", "properties": {"w": {"pattern": r"^(\w+) \1$"}}})
    result = run_cli("check", url=db.url)
    assert result.returncode == 1, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if "/h/twice" in x)
    assert "cannot be matched in linear time by RE2" in line, line
    assert "at /properties/w/pattern the pattern '^(\\\\w+) \\\\1$'" in line, line
