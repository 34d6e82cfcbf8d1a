"""Pagination a consumer can follow: links, keyset cursors, counts and the offset bound.

The pure parts (cursors, links, ``Prefer``, ORDER BY reading, the row contract)
are tested without a server; the rest over real HTTP against real PostgreSQL,
each test publishing its own endpoints under ``/p/...`` over its own tables.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from starlette.datastructures import QueryParams

from engine import sqltext
from engine.compiler import keyset_sql
from engine.errors import ApiError, SpecError
from engine.pagination import (
    Cursors,
    PageRequest,
    PageUrl,
    cursor_key,
    cursor_text,
    link_header,
    page_request,
    prefers_exact_count,
    request_path,
)
from engine.spec import Pagination, parse_row
from tests.engine_server import EngineClient
from tests.helpers import (
    add_endpoint,
    add_schema,
    assert_problem,
    compile_catalog,
    error_for,
    poll,
    run_cli,
    serve,
    status_of,
)
from tests.pg import DB

Maker = Callable[..., EngineClient]
_LINK = re.compile(r'<([^>]*)>;\s*rel="([a-z]+)"')

# -- pure: cursors -----------------------------------------------------------------------

KEY = cursor_key(b"a test secret of enough length")


def cursors(endpoint: int = 7, scope: str = "v1", bound: bytes = b"[1]") -> Cursors:
    return Cursors(KEY, endpoint, scope, bound)


def refused(call: Callable[[], Any]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    assert caught.value.code == "INVALID_CURSOR"
    assert "not valid" in (caught.value.detail or "")
    return caught.value


def test_a_cursor_round_trips_and_is_url_safe() -> None:
    values = ["2024-01-01T00:00:00.000001+00:00", "42", "a b/c?d=é"]
    token = cursors().sign(values)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    assert cursors().verify(token, 3) == tuple(values)
    assert "42" not in token and "2024" not in token  # opaque: not the values in clear


def test_a_tampered_or_foreign_cursor_is_refused() -> None:
    token = cursors().sign(["5", "x"])
    # every single-character change of the token is caught
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i in range(len(token)):
        other = alphabet[(alphabet.index(token[i]) + 1) % len(alphabet)]
        changed = token[:i] + other + token[i + 1 :]
        if changed != token:
            refused(lambda changed=changed: cursors().verify(changed, 2))
    # a new payload with the old tag
    blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    forged = blob[:17] + orjson.dumps(["6", "x"])
    refused(lambda: cursors().verify(base64.urlsafe_b64encode(forged).rstrip(b"=").decode(), 2))
    refused(lambda: cursors(endpoint=8).verify(token, 2))  # another endpoint
    refused(lambda: cursors(scope="v2").verify(token, 2))  # another definition
    refused(lambda: cursors(bound=b"[2]").verify(token, 2))  # other filter values
    other_key = Cursors(cursor_key(b"another secret"), 7, "v1", b"[1]")
    refused(lambda: other_key.verify(token, 2))
    refused(lambda: cursors().verify(token, 3))  # not as many values as the keyset
    for junk in ("", "x", "!!!!", "a" * 9000, "AAAA", token + "="):
        refused(lambda junk=junk: cursors().verify(junk, 2))
    assert cursors().verify(token, 2) == ("5", "x")
    with pytest.raises(ApiError) as caught:  # a cursor too long to send back is never made
        cursors().sign(["x" * 7000])
    assert caught.value.code == "TEMPLATE_ERROR"


def test_keyset_values_as_text_postgresql_reads_back() -> None:
    moment = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
    cases = {
        7: "7",
        True: "true",
        Decimal("10.500"): "10.500",
        Decimal("1E+3"): "1000",
        Decimal("NaN"): "NaN",
        0.1: "0.1",
        float("inf"): "Infinity",
        float("nan"): "NaN",
        moment: "2024-05-06T07:08:09.123456+00:00",
        moment.replace(tzinfo=None): "2024-05-06T07:08:09.123456",
        dt.date(2024, 2, 29): "2024-02-29",
        uuid.UUID(int=1): "00000000-0000-0000-0000-000000000001",
        "infinity": "infinity",
    }
    for value, text in cases.items():
        assert cursor_text(value) == text, value
    with pytest.raises(TypeError):
        cursor_text(b"bytes")


# -- pure: links -------------------------------------------------------------------------


def test_links_change_only_paging_parameters_in_place() -> None:
    url = PageUrl("/p/items", (("q", "a b&c=d"), ("limit", "5"), ("tag", "x"), ("tag", "é+")))
    assert url.link(offset="10") == "/p/items?q=a%20b%26c%3Dd&limit=5&tag=x&tag=%C3%A9%2B&offset=10"
    assert url.link(limit="7") == "/p/items?q=a%20b%26c%3Dd&limit=7&tag=x&tag=%C3%A9%2B"
    assert url.link(limit=None) == "/p/items?q=a%20b%26c%3Dd&tag=x&tag=%C3%A9%2B"
    assert PageUrl("/p/items").link(after=None) == "/p/items"
    assert PageUrl("/p/items", (("after", "x"),)).link(after=None) == "/p/items"
    # the path as the client sent it, its escapes kept and anything unsafe escaped
    assert request_path(b"/p/a%2Fb/c d", "/p/a/b/c d") == "/p/a%2Fb/c%20d"
    assert request_path(None, "/p/é<x>") == "/p/%C3%A9%3Cx%3E"


def test_link_header_syntax() -> None:
    value = link_header([("next", "/p?offset=2"), ("prev", None), ("first", "/p?offset=0")])
    assert value == '</p?offset=2>; rel="next", </p?offset=0>; rel="first"'
    assert link_header([("next", None)]) is None


def test_prefer_count_exact() -> None:
    assert prefers_exact_count(["count=exact"])
    assert prefers_exact_count(['return=minimal, Count="exact"'])
    assert prefers_exact_count(["return=minimal", "count=exact; strict"])
    assert not prefers_exact_count(["count=estimated"])
    assert not prefers_exact_count(["exact"])
    assert not prefers_exact_count([])


def _asked(paginate: Pagination, query: str, prefer: tuple[str, ...] = ()) -> PageRequest:
    cursors = Cursors(cursor_key(b"s"), 1, "scope", b"[]") if paginate.keyset else None
    return page_request(paginate, QueryParams(query), prefer, "/p", cursors)


def test_page_requests_are_read_from_the_query_without_a_database() -> None:
    offsets = Pagination(limit=20, max_limit=100, max_offset=1000, count="on_request")
    page = _asked(offsets, "limit=5&offset=1000&x=1", ("count=exact",))
    assert (page.limit, page.offset, page.counted, page.args) == (5, 1000, True, (6, 1000))
    assert page.url.query == (("limit", "5"), ("offset", "1000"), ("x", "1"))
    assert not _asked(offsets, "").counted and _asked(offsets, "").limit == 20
    for query, says in [
        ("offset=1001", "keyset"),
        ("limit=101", "from 1 to 100"),
        ("limit=0", "from 1 to 100"),
        ("offset=-1", "non-negative"),
        ("limit=1&limit=2", "once"),
    ]:
        with pytest.raises(ApiError) as refused:
            _asked(offsets, query)
        assert refused.value.code == "INVALID_PARAMETER"
        assert says in str(refused.value.errors), (query, refused.value.errors)
    keyset = Pagination(limit=10, max_limit=10, keyset=("id",), descending=(False,))
    with pytest.raises(ApiError, match="pagination"):
        _asked(keyset, "offset=10")
    with pytest.raises(ApiError) as tampered:
        _asked(keyset, "after=AAAA")
    assert tampered.value.code == "INVALID_CURSOR"


def test_offset_page_description() -> None:
    url = PageUrl("/p/items", (("limit", "50"), ("offset", "30")))
    info, headers = PageRequest(limit=50, url=url, offset=30).describe([{}] * 51)
    assert info["prev"] == "/p/items?limit=50&offset=0"
    assert info["next"] == "/p/items?limit=50&offset=80"
    assert dict(headers)["Link"] == (
        '</p/items?limit=50&offset=80>; rel="next", </p/items?limit=50&offset=0>; rel="prev", '
        '</p/items?limit=50&offset=0>; rel="first"'
    )
    info, _ = PageRequest(limit=50, url=PageUrl("/p/items")).describe([{}] * 3, total=3)
    assert info == {
        "limit": 50,
        "offset": 0,
        "count": 3,
        "has_more": False,
        "next_offset": None,
        "next": None,
        "prev": None,
        "total": 3,
    }
    # past max_offset the next page is not offered by offset
    info, _ = PageRequest(limit=5, url=url, offset=8, max_offset=10).describe([{}] * 6)
    assert info["has_more"] and info["next"] is None and info["next_offset"] is None


# -- pure: the row contract -------------------------------------------------------------


def mapping(paginate: Any, **overrides: Any) -> dict[str, Any]:
    row = {
        "id": 1,
        "endpoint_path": "/p/x",
        "http_method": "GET",
        "database_operation": "SELECT",
        "query_template": "SELECT id FROM t ORDER BY id",
        "query_parameters": [],
        "result_mapping": {"shape": "list", "paginate": paginate},
    }
    row.update(overrides)
    return row


@pytest.mark.parametrize(
    ("paginate", "reason"),
    [
        ({"max_offset": -1}, "max_offset must be an integer from 0 to"),
        ({"max_offset": "10"}, "max_offset must be an integer from 0 to"),
        ({"count": "sometimes"}, 'count must be "exact"'),
        ({"count": True}, 'count must be "exact"'),
        ({"keyset": []}, "keyset must be a non-empty array"),
        ({"keyset": "id"}, "keyset must be a non-empty array"),
        ({"keyset": ["id", "id"]}, "names the column 'id' twice"),
        ({"keyset": ["id", "-id"]}, "names the column 'id' twice"),
        ({"keyset": [""]}, "must name a result column"),
        ({"keyset": ["-"]}, "must name a result column"),
        ({"keyset": [3]}, "must be a column name"),
        ({"keyset": [{"column": "id", "desc": "yes"}]}, "desc must be true or false"),
        ({"keyset": [{"col": "id"}]}, "unknown keys: col"),
        ({"keyst": ["id"]}, "unknown keys: keyst"),
        ({"limit": True}, "0 < limit <= max_limit"),
    ],
)
def test_bad_paginate_values_are_refused_with_a_reason(paginate: Any, reason: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_row(mapping(paginate))
    assert reason in str(caught.value)


def test_the_row_contract_extends_paginate() -> None:
    spec = parse_row(mapping({"keyset": ["-created_at", {"column": "id", "desc": True}]}))
    p = spec.result.paginate
    assert p is not None
    assert (p.limit, p.max_limit, p.max_offset, p.count) == (50, 1000, 10_000, "none")
    assert p.keyset == ("created_at", "id") and p.descending == (True, True)
    p = parse_row(mapping({"limit": 5, "count": "on_request", "max_offset": 0})).result.paginate
    assert p is not None and (p.count, p.max_offset, p.keyset) == ("on_request", 0, ())
    # "after" is the keyset's own parameter; keyset and count are for GET
    with pytest.raises(SpecError, match="clash with pagination"):
        parse_row(
            mapping(
                {"keyset": ["id"]},
                query_parameters=[{"name": "after", "in": "query"}],
                query_template="SELECT id FROM t WHERE id > $1 ORDER BY id",
            )
        )
    for key in ({"keyset": ["id"]}, {"count": "exact"}):
        with pytest.raises(SpecError, match="only for GET"):
            parse_row(mapping(key, http_method="POST", database_operation="INSERT"))


def test_order_by_of_the_outer_statement() -> None:
    items = sqltext.order_by(
        "WITH w AS (SELECT 1 ORDER BY 1) SELECT a, string_agg(b, ',' ORDER BY c) "
        'FROM t.x -- ORDER BY nothing\nORDER BY t.a DESC, "B" NULLS LAST, lower(c), 2 LIMIT 4'
    )
    assert items is not None
    assert [(i.column, i.ordinal, i.descending, i.nulls) for i in items] == [
        ("a", None, True, None),
        ("B", None, False, "LAST"),
        (None, None, False, None),
        (None, 2, False, None),
    ]
    assert [i.text for i in items] == ["t.a DESC", '"B" NULLS LAST', "lower(c)", "2"]
    assert sqltext.order_by("SELECT 'ORDER BY x' FROM t") is None
    assert sqltext.order_by("SELECT * FROM (SELECT 1 ORDER BY 1) s") is None


def test_keyset_sql_compares_rows_or_spells_out_mixed_directions() -> None:
    first, after = keyset_sql(
        "SELECT * FROM t WHERE k = $1",
        1,
        [("created_at", False, '"pg_catalog"."timestamptz"'), ("id", False, '"pg_catalog"."int4"')],
    )
    assert first.endswith('ORDER BY "created_at", "id" LIMIT $2')
    assert (
        'WHERE ("created_at", "id") > ($2::text::"pg_catalog"."timestamptz", '
        '$3::text::"pg_catalog"."int4") ORDER BY "created_at", "id" LIMIT $4'
    ) in after
    _, mixed = keyset_sql("SELECT 1", 0, [("a", True, "T"), ("b", False, "U")])
    assert (
        'WHERE "a" <= $1::text::T AND (("a" < $1::text::T) OR ("a" = $1::text::T AND "b" > '
        "$2::text::U))"
    ) in mixed
    assert 'ORDER BY "a" DESC, "b" LIMIT $3' in mixed


# -- HTTP --------------------------------------------------------------------------------

EVENTS = """
CREATE TABLE p_events (
    id         int PRIMARY KEY,
    kind       text NOT NULL,
    created_at timestamptz NOT NULL,
    day        date NOT NULL,
    price      numeric(10, 3) NOT NULL,
    code       uuid NOT NULL,
    score      float8 NOT NULL,
    stamp      timestamp NOT NULL,
    label      text NOT NULL,
    note       text
);
-- ties: three or four rows share each created_at (with microseconds), ids out of order
INSERT INTO p_events
SELECT i,
       CASE WHEN i % 3 = 0 THEN 'a' ELSE 'b' END,
       timestamptz '2024-03-01 10:00:00.000001+00' + ((i * 7) % 9) * interval '1.5 second',
       date '2024-01-01' + (i % 5),
       ((i * 13) % 11) / 4.0,
       md5(i::text)::uuid,
       ((i * 5) % 7) / 3.0,
       timestamp '2024-03-01 10:00:00.5' + (i % 4) * interval '1 microsecond',
       chr(97 + (i * 3) % 26) || ' ' || i,
       CASE WHEN i = 29 THEN NULL ELSE 'n' END
FROM generate_series(1, 31) AS i;
"""
KIND = [{"name": "kind", "in": "query", "type": "string"}]
BY_KIND = "($1::text IS NULL OR kind = $1)"


def events(db: DB) -> None:
    db.execute(EVENTS)


def ids(db: DB, order: str, kind: str | None = None) -> list[int]:
    return [
        r["id"] for r in db.fetch(f"SELECT id FROM p_events WHERE {BY_KIND} ORDER BY {order}", kind)
    ]


def links(response: httpx.Response) -> dict[str, str]:
    return {rel: url for url, rel in _LINK.findall(response.headers.get("link", ""))}


def walk(
    client: EngineClient, url: str, *, via: str = "link", **kwargs: Any
) -> tuple[list[dict[str, Any]], list[httpx.Response]]:
    """Every row of a paged list, following next (the Link header or the body's)."""
    rows: list[dict[str, Any]] = []
    responses = []
    next_url: str | None = url
    while next_url is not None:
        r = client.get(next_url, **kwargs)
        assert r.status_code == 200, r.text
        responses.append(r)
        body = r.json()
        rows.extend(body["data"])
        assert body["pagination"]["count"] == len(body["data"])
        assert body["pagination"]["next"] == links(r).get("next")
        next_url = links(r).get("next") if via == "link" else body["pagination"]["next"]
        assert len(responses) < 100
    return rows, responses


def test_offset_pages_link_to_next_prev_and_first(db: DB, make_client: Maker) -> None:
    events(db)
    add_endpoint(
        db,
        "/p/offset",
        "GET",
        f"SELECT id, kind FROM p_events WHERE {BY_KIND} ORDER BY id",
        KIND,
        {"shape": "list", "paginate": {"limit": 4, "max_limit": 10}},
    )
    client = serve(make_client)

    rows, responses = walk(client, "/p/offset?kind=b&x=a%20b&limit=3")
    assert [r["id"] for r in rows] == ids(db, "id", "b")
    assert len(responses) == 7  # 21 rows, 3 a page (the last page full, nothing after)
    first, second, last = responses[0], responses[1], responses[-1]
    assert links(first) == {
        "next": "/p/offset?kind=b&x=a%20b&limit=3&offset=3",
        "first": "/p/offset?kind=b&x=a%20b&limit=3&offset=0",
    }
    assert links(second)["prev"] == "/p/offset?kind=b&x=a%20b&limit=3&offset=0"
    assert "next" not in links(last) and last.json()["pagination"]["next"] is None
    # walking back from the last page with prev gives the same rows
    back: list[dict[str, Any]] = []
    prev: str | None = links(last)["prev"]
    back = last.json()["data"]
    while prev:
        r = client.get(prev)
        back = r.json()["data"] + back
        prev = r.json()["pagination"]["prev"]
    assert back == rows
    # the body's next is followed the same way (the default limit, no query string)
    rows, responses = walk(client, "/p/offset", via="body")
    assert [r["id"] for r in rows] == ids(db, "id")
    assert responses[1].json()["pagination"]["prev"] == "/p/offset?offset=0"


def test_keyset_pages_walk_every_row_once_through_ties(db: DB, make_client: Maker) -> None:
    events(db)
    columns = "id, kind, created_at, day, price, code, score, stamp, label"
    cases = {
        "/p/by-time": (["created_at", "id"], "created_at, id"),
        "/p/by-day-desc": (["-day", {"column": "id", "desc": True}], "day DESC, id DESC"),
        "/p/mixed": (["-price", "label"], "price DESC, label"),
        "/p/by-code": (["code"], "code"),
        "/p/by-score": (["score", "stamp", "id"], "score, stamp, id"),
    }
    for path, (keyset, order) in cases.items():
        add_endpoint(
            db,
            path,
            "GET",
            f"SELECT {columns} FROM p_events WHERE {BY_KIND} ORDER BY {order}",
            KIND,
            {"shape": "list", "paginate": {"limit": 4, "keyset": keyset}},
        )
    add_endpoint(  # renamed fields: the keyset names the template's columns
        db,
        "/p/renamed",
        "GET",
        "SELECT id, created_at FROM p_events ORDER BY created_at, id",
        [],
        {
            "shape": "list",
            "fields": {"created_at": "at", "id": "event"},
            "paginate": {"limit": 5, "keyset": ["created_at", "id"]},
        },
    )
    client = serve(make_client)

    rows, _ = walk(client, "/p/renamed")
    assert [r["event"] for r in rows] == ids(db, "created_at, id") and "at" in rows[0]
    for path, (_, order) in cases.items():
        for kind, limit in ((None, 4), ("b", 3), (None, 1)):
            query = f"?limit={limit}" + (f"&kind={kind}" if kind else "")
            rows, responses = walk(client, path + query, via="link" if limit != 1 else "body")
            got = [r["id"] for r in rows]
            assert got == ids(db, order, kind), (path, kind)  # no duplicates, no gaps
            assert len(responses) == -(-len(got) // limit)  # a full last page says no more
            page = responses[0].json()["pagination"]
            assert set(page) == {"limit", "count", "has_more", "next", "next_cursor"}
            assert page["next"] == f"{path}{query}&after={page['next_cursor']}"
            assert links(responses[1])["first"] == path + query
            assert responses[-1].json()["pagination"]["has_more"] is False
    # the rows answered are the template's, typed as any list answers them
    rows, _ = walk(client, "/p/by-time?limit=31")
    assert rows[0]["created_at"].startswith("2024-03-01T10:00:00.000001")


def test_tampered_and_foreign_cursors_are_invalid_cursor(db: DB, make_client: Maker) -> None:
    events(db)
    sql = f"SELECT id, created_at FROM p_events WHERE {BY_KIND} ORDER BY created_at, id"
    page = {"shape": "list", "paginate": {"limit": 2, "keyset": ["created_at", "id"]}}
    add_endpoint(db, "/p/one", "GET", sql, KIND, page)
    add_endpoint(db, "/p/two", "GET", sql, KIND, page)
    client = serve(make_client)

    body = client.get("/p/one", params={"kind": "a"}).json()
    cursor = body["pagination"]["next_cursor"]
    assert client.get("/p/one", params={"kind": "a", "after": cursor}).status_code == 200

    flipped = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    flipped[-3] ^= 0x01
    changed = base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=").decode()
    blob = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    values = orjson.loads(blob[17:])
    values[-1] = "1"
    forged = base64.urlsafe_b64encode(blob[:17] + orjson.dumps(values)).rstrip(b"=").decode()
    for path, params in (
        ("/p/one", {"kind": "a", "after": changed}),  # a byte flipped
        ("/p/one", {"kind": "a", "after": forged}),  # another payload
        ("/p/two", {"kind": "a", "after": cursor}),  # another endpoint
        ("/p/one", {"kind": "b", "after": cursor}),  # another filter value
        ("/p/one", {"after": cursor}),  # no filter
        ("/p/one", {"kind": "a", "after": "not a cursor"}),
        ("/p/one", {"kind": "a", "after": ""}),
    ):
        problem = assert_problem(client.get(path, params=params), 400, "INVALID_CURSOR")
        assert "not valid" in problem["detail"] and "first page" in problem["detail"]
        assert error_for(problem, "parameter", "after")["in"] == "query"
        assert "p_events" not in str(problem) and "Traceback" not in str(problem)

    twice = client.get(f"/p/one?kind=a&after={cursor}&after={cursor}")
    problem = assert_problem(twice, 400, "INVALID_PARAMETER")
    assert "once" in error_for(problem, "parameter", "after")["message"]
    problem = assert_problem(client.get("/p/one?offset=2"), 400, "INVALID_PARAMETER")
    assert "after" in error_for(problem, "parameter", "offset")["message"]
    # limit works on keyset pages too
    assert len(client.get("/p/one?limit=5").json()["data"]) == 5
    problem = assert_problem(client.get("/p/one?limit=0"), 400, "INVALID_PARAMETER")

    # an edit of the row's definition retires its cursors (the template changed)
    db.execute(
        "UPDATE api_endpoint_mappings SET query_template = query_template || ' /* v2 */' "
        "WHERE endpoint_path = '/p/one'"
    )
    r = client.wait_for("GET", f"/p/one?kind=a&after={cursor}", 400, code="INVALID_CURSOR")
    assert_problem(r, 400, "INVALID_CURSOR")


def test_every_process_on_a_database_accepts_the_others_cursors(db: DB, make_client: Maker) -> None:
    events(db)
    add_endpoint(
        db,
        "/p/shared",
        "GET",
        "SELECT id FROM p_events ORDER BY id",
        [],
        {"shape": "list", "paginate": {"limit": 5, "keyset": ["id"]}},
    )
    one, two = serve(make_client), serve(make_client)
    other = serve(make_client, cursor_secret="a configured secret of its own")

    next_url = one.get("/p/shared").json()["pagination"]["next"]
    assert [r["id"] for r in two.get(next_url).json()["data"]] == [6, 7, 8, 9, 10]
    assert_problem(other.get(next_url), 400, "INVALID_CURSOR")
    # a configured secret is the same on every process that has it
    again = serve(make_client, cursor_secret="a configured secret of its own")
    mine = other.get("/p/shared").json()["pagination"]["next"]
    assert again.get(mine).status_code == 200
    stored = db.fetchval("SELECT value FROM engine_secrets WHERE name = 'cursor'")
    assert len(stored) >= 32 and stored not in str(one.get("/p/shared").json())


def test_the_total_and_the_page_see_one_snapshot(db: DB, make_client: Maker) -> None:
    db.execute("CREATE TABLE p_counted AS SELECT id FROM generate_series(1, 3) id")
    add_endpoint(
        db,
        "/p/counted",
        "GET",
        "SELECT id FROM p_counted, pg_sleep(0.5) ORDER BY id",
        [],
        {"shape": "list", "paginate": {"limit": 10, "count": "exact"}},
    )
    client = serve(make_client)
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(client.get, "/p/counted")
        poll(
            lambda: db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%FROM p_counted, pg_sleep%'"
                " AND state = 'active' AND pid <> pg_backend_pid()"
            ),
            lambda n: n > 0,
            "the page's statement to be running",
        )
        db.execute("INSERT INTO p_counted VALUES (4)")  # commits while the page runs
        body = answer.result(timeout=10).json()
    assert [r["id"] for r in body["data"]] == [1, 2, 3]
    assert body["pagination"]["total"] == 3  # the page's snapshot, not a later one


def test_counts_exact_on_request_and_none(db: DB, make_client: Maker) -> None:
    events(db)
    sql = f"SELECT id FROM p_events WHERE {BY_KIND} ORDER BY id"
    for path, count, keyset in (
        ("/p/exact", "exact", None),
        ("/p/asked", "on_request", None),
        ("/p/never", "none", None),
        ("/p/keyset-exact", "exact", ["id"]),
    ):
        paginate: dict[str, Any] = {"limit": 5, "count": count}
        if keyset:
            paginate["keyset"] = keyset
        add_endpoint(db, path, "GET", sql, KIND, {"shape": "list", "paginate": paginate})
    client = serve(make_client)
    prefer = {"Prefer": "count=exact"}
    b = len(ids(db, "id", "b"))

    r = client.get("/p/exact", params={"kind": "b"})
    assert r.json()["pagination"]["total"] == b and "preference-applied" not in r.headers
    assert client.get("/p/exact?offset=500").json()["pagination"]["total"] == 31
    assert client.get("/p/keyset-exact").json()["pagination"]["total"] == 31
    nxt = client.get("/p/keyset-exact?kind=a").json()["pagination"]["next"]
    assert client.get(nxt).json()["pagination"]["total"] == len(ids(db, "id", "a"))

    r = client.get("/p/asked", params={"kind": "b"})
    assert "total" not in r.json()["pagination"] and "preference-applied" not in r.headers
    assert "Prefer" in r.headers["vary"]
    r = client.get("/p/asked", params={"kind": "b"}, headers=prefer)
    assert r.json()["pagination"]["total"] == b
    assert r.headers["preference-applied"] == "count=exact"
    r = client.get("/p/asked", headers={"Prefer": "return=minimal, count=exact"})
    assert r.json()["pagination"]["total"] == 31

    r = client.get("/p/never", headers=prefer)
    assert "total" not in r.json()["pagination"] and "preference-applied" not in r.headers


def test_offsets_past_max_offset_point_to_keyset(db: DB, make_client: Maker) -> None:
    events(db)
    sql = "SELECT id FROM p_events ORDER BY id"
    add_endpoint(
        db,
        "/p/bounded",
        "GET",
        sql,
        [],
        {"shape": "list", "paginate": {"limit": 4, "max_offset": 10}},
    )
    add_endpoint(db, "/p/default", "GET", sql, [], {"shape": "list", "paginate": {"limit": 4}})
    client = serve(make_client)

    assert [r["id"] for r in client.get("/p/bounded?offset=10").json()["data"]] == [11, 12, 13, 14]
    for path, offset, bound in (("/p/bounded", 11, 10), ("/p/default", 10_001, 10_000)):
        problem = assert_problem(client.get(f"{path}?offset={offset}"), 400, "INVALID_PARAMETER")
        message = error_for(problem, "parameter", "offset")["message"]
        assert f"at most {bound}" in message
        assert "keyset" in message and "after" in message
    assert client.get("/p/default?offset=10000").status_code == 200
    # the last page offset can reach says there is more, but offers no next link
    page = client.get("/p/bounded?offset=8").json()["pagination"]
    assert page["has_more"] and page["next"] is None and page["next_offset"] is None


def test_bad_pagination_rows_are_refused_with_the_reason(db: DB, db_url: str) -> None:
    events(db)
    t = "SELECT id, created_at, note, to_jsonb(id) AS doc FROM p_events"
    cases = {
        "no-order": (f"{t}", ["id"], "has no ORDER BY of its own: end it with ORDER BY id"),
        "other-order": (
            f"{t} ORDER BY created_at DESC, id",
            ["created_at", "id"],
            "orders by created_at DESC, id; end the template with ORDER BY created_at, id",
        ),
        "short-order": (f"{t} ORDER BY created_at", ["created_at", "id"], "must be the template's"),
        "expression": (f"{t} ORDER BY id + 0", ["id"], "'id + 0' is an expression"),
        "nulls": (f"{t} ORDER BY id NULLS FIRST", ["id"], "drop NULLS FIRST/LAST"),
        "unknown": (f"{t} ORDER BY id", ["ident"], "names 'ident', which the template does not"),
        "jsonb": (f"{t} ORDER BY doc", ["doc"], "is of type jsonb"),
        "qualified": (
            f"{t} ORDER BY created_at, p_events.id",
            ["created_at", "id"],
            "'p_events.id' names a table's column",
        ),
        "twice": (
            "SELECT id, id FROM p_events ORDER BY 1",
            ["id"],
            "returns 2 times",
        ),
    }
    mids = {}
    for name, (sql, keyset, _) in cases.items():
        mids[name] = add_endpoint(
            db, f"/p/{name}", "GET", sql, [], {"shape": "list", "paginate": {"keyset": keyset}}
        )
    ordinal = add_endpoint(
        db,
        "/p/ordinal",
        "GET",
        f"{t} ORDER BY 2, id",
        [],
        {"shape": "list", "paginate": {"keyset": ["created_at", "id"], "count": "exact"}},
    )
    sometimes = add_endpoint(
        db, "/p/sometimes", "GET", f"{t} ORDER BY id", [], {"paginate": {"count": "sometimes"}}
    )
    catalog = compile_catalog(db)
    assert status_of(catalog, sometimes).state == "refused"
    assert 'result_mapping.paginate.count must be "exact"' in status_of(catalog, sometimes).reason
    for name, (_, _, reason) in cases.items():
        status = status_of(catalog, mids[name])
        assert status.state == "refused", name
        assert "result_mapping.paginate.keyset" in status.reason
        assert reason in status.reason, (name, status.reason)
    assert status_of(catalog, ordinal).state == "serving"

    result = run_cli("check", url=db_url)
    assert result.returncode == 1
    assert f"api_endpoint_mappings id={mids['other-order']} GET /p/other-order" in result.stdout
    assert "end the template with ORDER BY created_at, id" in result.stdout


def test_a_null_keyset_value_is_a_template_error(db: DB, make_client: Maker) -> None:
    events(db)
    add_endpoint(
        db,
        "/p/nullable",
        "GET",
        "SELECT id, note FROM p_events ORDER BY note DESC, id",
        [],
        {"shape": "list", "paginate": {"limit": 2, "keyset": ["-note", "id"]}},
    )
    client = serve(make_client)
    assert_problem(client.get("/p/nullable"), 500, "TEMPLATE_ERROR")  # NULLs sort first


def test_a_keyset_that_is_not_unique_fails_rather_than_skipping_rows(
    db: DB, make_client: Maker
) -> None:
    db.execute("CREATE TABLE p_groups AS SELECT id, id % 3 AS grp FROM generate_series(1, 40) id")
    add_endpoint(
        db,
        "/p/groups",
        "GET",
        "SELECT id, grp FROM p_groups ORDER BY grp",
        [],
        {"shape": "list", "paginate": {"limit": 5, "keyset": ["grp"]}},
    )
    client = serve(make_client)
    # 13 or 14 rows share each grp: the first page ends inside a tie, whose rest a cursor
    # after grp = 0 would skip; the engine says so instead of answering short pages
    assert_problem(client.get("/p/groups"), 500, "TEMPLATE_ERROR")
    assert client.get("/p/groups?limit=13").status_code == 200  # ends where grp changes


def test_page_bounds_beyond_bigint_are_refused_at_load() -> None:
    for paginate, says in [
        ({"max_offset": 2**63}, "max_offset must be an integer from 0 to"),
        ({"limit": 1, "max_limit": 2**63}, "0 < limit <= max_limit <="),
    ]:
        row = {
            "endpoint_path": "/p",
            "http_method": "GET",
            "database_operation": "SELECT",
            "query_template": "SELECT 1 AS one",
            "result_mapping": {"shape": "list", "paginate": paginate},
        }
        with pytest.raises(SpecError, match=re.escape(says)):
            parse_row(row)


def test_cached_pages_link_to_their_own_request(db: DB, make_client: Maker) -> None:
    events(db)
    for path, paginate in (
        ("/p/cached", {"limit": 3, "count": "on_request"}),
        ("/p/cached-keyset", {"limit": 3, "keyset": ["id"]}),
    ):
        add_endpoint(
            db,
            path,
            "GET",
            f"SELECT id FROM p_events WHERE {BY_KIND} ORDER BY id",
            KIND,
            {"shape": "list", "paginate": paginate},
            cache_enabled=True,
            cache_ttl_seconds=300,
        )
    db.execute(
        "INSERT INTO api_cache_config (endpoint_mapping_id, cache_enabled, cache_ttl_seconds, "
        "cache_key_template) SELECT id, true, 300, '{kind}' FROM api_endpoint_mappings "
        "WHERE endpoint_path = '/p/cached-keyset'"
    )
    client = serve(make_client)

    def get(url: str, **kwargs: Any) -> httpx.Response:
        r = client.get(url, **kwargs)
        assert r.status_code == 200, r.text
        return r

    # the same bound values, other query strings: each answer links back to its own URL
    one = get("/p/cached?kind=b&offset=3")
    two = get("/p/cached?offset=3&kind=b")
    three = get("/p/cached?offset=3&kind=b&utm=x%20y")
    assert one.json()["data"] == two.json()["data"] == three.json()["data"]
    assert links(one)["next"] == one.json()["pagination"]["next"] == "/p/cached?kind=b&offset=6"
    assert links(two)["next"] == two.json()["pagination"]["next"] == "/p/cached?offset=6&kind=b"
    assert links(three)["prev"] == "/p/cached?offset=0&kind=b&utm=x%20y"
    again = get("/p/cached?offset=3&kind=b")
    assert again.headers["x-cache"] == "HIT" and again.content == two.content
    assert links(again) == links(two)
    # the count asked for is not answered to a request that did not ask, nor the reverse
    counted = get("/p/cached?kind=b&offset=3", headers={"Prefer": "count=exact"})
    assert counted.json()["pagination"]["total"] == len(ids(db, "id", "b"))
    assert counted.headers["preference-applied"] == "count=exact"
    plain = get("/p/cached?kind=b&offset=3")
    assert plain.headers["x-cache"] == "HIT" and "total" not in plain.json()["pagination"]
    assert "preference-applied" not in plain.headers

    # keyset pages cached by the cache_key_template: the cursor is part of the key
    rows, responses = walk(client, "/p/cached-keyset?kind=a")
    assert [r["id"] for r in rows] == ids(db, "id", "a")
    rows, responses = walk(client, "/p/cached-keyset?kind=a")
    assert [r["id"] for r in rows] == ids(db, "id", "a")
    assert {r.headers["x-cache"] for r in responses} == {"HIT"}
    moved = get("/p/cached-keyset?x=1&kind=a")
    assert links(moved)["next"].startswith("/p/cached-keyset?x=1&kind=a&after=")


def test_paginated_writes_keep_working(db: DB, make_client: Maker) -> None:
    events(db)
    add_endpoint(
        db,
        "/p/search",
        "POST",
        f"SELECT id FROM p_events WHERE {BY_KIND} ORDER BY id",
        [{"name": "kind", "in": "body", "type": "string"}],
        {"shape": "list", "status": 200, "paginate": {"limit": 4}},
        database_operation="SELECT",
    )
    client = serve(make_client)
    r = client.post("/p/search?offset=4", json={"kind": "a"})
    assert r.status_code == 200, r.text
    assert [row["id"] for row in r.json()["data"]] == ids(db, "id", "a")[4:8]
    assert r.json()["pagination"]["prev"] == "/p/search?offset=0"
    assert links(r)["first"] == "/p/search?offset=0"


def test_paging_parameters_are_not_unknown_fields_of_a_query_schema(
    db: DB, make_client: Maker
) -> None:
    events(db)
    mid = add_endpoint(
        db,
        "/p/strict",
        "GET",
        f"SELECT id FROM p_events WHERE {BY_KIND} ORDER BY id",
        KIND,
        {"shape": "list", "paginate": {"limit": 2, "keyset": ["id"]}},
    )
    add_schema(
        db,
        mid,
        {"type": "object", "properties": {"kind": {"enum": ["a", "b"]}}},
        applies_to="query",
        allow_unknown_fields=False,
    )
    client = serve(make_client)

    rows, _ = walk(client, "/p/strict?kind=a&limit=3")
    assert [r["id"] for r in rows] == ids(db, "id", "a")
    # offset is refused as pagination's, with the way to page instead
    problem = assert_problem(client.get("/p/strict?offset=2"), 400, "INVALID_PARAMETER")
    assert "after" in error_for(problem, "parameter", "offset")["message"]
    assert_problem(client.get("/p/strict?other=1"), 400, "VALIDATION_ERROR")
    # HEAD: the same headers, no body
    head = client.head("/p/strict?kind=a")
    assert head.status_code == 200 and head.content == b""
    assert links(head) == links(client.get("/p/strict?kind=a"))
