"""The memo of request lines answered from the cache (engine/hot.py): the same answers as
the whole request flow gives, never past credentials, a write, a reload or a TTL."""

from __future__ import annotations

from typing import Any

from engine import hot
from engine.hot import HotKey, HotKeys, plain
from tests.helpers import ITEMS_TABLE, add_endpoint, add_item_rename, assert_problem, poll, serve
from tests.test_metrics import scrape, value

PARAM_ID = [{"name": "id", "in": "path", "type": "integer"}]
ITEM = "SELECT id, name FROM items WHERE id = $1"


def _items(db: Any, **columns: Any) -> int:
    db.execute(ITEMS_TABLE)
    columns = {"cache_enabled": True, "cache_ttl_seconds": 60, **columns}
    return add_endpoint(
        db, "/items/{id}", "GET", ITEM, PARAM_ID, {"shape": "object"}, target_table="items",
        **columns,
    )  # fmt: skip


def _memo(client: Any) -> HotKeys:
    return client.engine.services.catalogs.current.hot


def _same_answer(one: Any, other: Any) -> None:
    """Status, body and headers alike, but for each request's own id."""
    assert (one.status_code, one.content) == (other.status_code, other.content)
    drop = {"x-request-id", "date"}
    assert [(k, v) for k, v in one.headers.items() if k not in drop] == [
        (k, v) for k, v in other.headers.items() if k not in drop
    ]


# --- pure --------------------------------------------------------------------


def test_credentials_request_ids_traces_and_conditionals_are_not_plain() -> None:
    assert plain([(b"host", b"x"), (b"accept", b"*/*"), (b"user-agent", b"wrk")])
    for name in (b"authorization", b"x-api-key", b"x-request-id", b"traceparent"):
        assert not plain([(b"host", b"x"), (name, b"anything")])
    assert not plain([(b"if-none-match", b'"abc"')])


def test_the_memo_is_bounded_in_entries_and_line_length(monkeypatch: Any) -> None:
    monkeypatch.setattr(hot, "MAX_ENTRIES", 3)
    memo = HotKeys()
    key = HotKey(None, "/r", ("v", None, b"k"), "public, max-age=1")  # type: ignore[arg-type]
    memo.record("/" + "x" * hot.MAX_LINE, b"", key)
    assert not memo
    for n in range(3):
        memo.record(f"/r/{n}", b"a=1", key)
    assert len(memo) == 3 and memo.get("/r/1", b"a=1") is key and memo.get("/r/1", b"") is None
    memo.record("/r/3", b"", key)  # full: starts again
    assert len(memo) == 1 and memo.get("/r/3", b"") is key


# --- over HTTP -----------------------------------------------------------------


def test_a_repeated_request_line_is_answered_as_the_whole_flow_answers_it(db, make_client):
    _items(db)
    client = serve(make_client)
    first = client.wait_for("GET", "/items/1", 200)
    assert first.headers["x-cache"] == "MISS"
    assert _memo(client).get("/items/1", b"") is not None
    hot_hit = client.get("/items/1")
    # an If-None-Match that matches nothing: the whole flow, a HIT of the same entry
    flow_hit = client.get("/items/1", headers={"If-None-Match": '"other"'})
    assert hot_hit.headers["x-cache"] == flow_hit.headers["x-cache"] == "HIT"
    _same_answer(hot_hit, flow_hit)
    assert hot_hit.json() == {"id": 1, "name": "one"}
    assert hot_hit.headers["x-request-id"] != first.headers["x-request-id"]
    # the client's own request id and a matching ETag take the whole flow, as before
    mine = client.get("/items/1", headers={"X-Request-ID": "mine-1"})
    assert mine.headers["x-request-id"] == "mine-1" and mine.headers["x-cache"] == "HIT"
    etag = hot_hit.headers["etag"]
    assert client.get("/items/1", headers={"If-None-Match": etag}).status_code == 304


def test_credentials_on_a_public_row_are_still_checked(db, make_client):
    _items(db)
    client = serve(make_client)
    client.wait_for("GET", "/items/1", 200)
    assert client.get("/items/1").headers["x-cache"] == "HIT"
    bad_token = client.get("/items/1", headers={"Authorization": "Bearer not-a-token"})
    assert_problem(bad_token, 401, "INVALID_TOKEN")
    bad_key = client.get("/items/1", headers={"X-API-Key": "not-a-key"})
    assert_problem(bad_key, 401, "INVALID_TOKEN")


def test_a_write_a_ttl_and_a_row_edit_end_what_the_memo_answers(db, make_client):
    _items(db, cache_ttl_seconds=1)
    add_item_rename(db)
    client = serve(make_client)
    client.wait_for("GET", "/items/2", 200)
    assert client.get("/items/2").headers["x-cache"] == "HIT"
    assert client.put("/items/2", json={"name": "deux"}).status_code == 200
    after = client.get("/items/2")  # invalidated: the whole flow runs the statement again
    assert (after.headers["x-cache"], after.json()["name"]) == ("MISS", "deux")
    db.execute("UPDATE items SET name = 'zwei' WHERE id = 2")  # no trigger: only the TTL ends it
    poll(lambda: client.get("/items/2").json()["name"], lambda n: n == "zwei", "the TTL's end")
    db.execute(
        "UPDATE api_endpoint_mappings SET query_template = "
        "'SELECT id, upper(name) AS name FROM items WHERE id = $1' "
        "WHERE endpoint_path = '/items/{id}' AND http_method = 'GET'"
    )
    edited = poll(
        lambda: client.get("/items/2"), lambda r: r.json()["name"] == "ZWEI", "the edited row"
    )
    assert edited.headers["x-cache"] == "MISS"  # the new generation's memo started empty


def test_rows_whose_answer_depends_on_more_than_the_request_line_are_not_memoised(db, make_client):
    _items(db, rate_limit_per_minute=1000)
    common = {"target_table": "items", "cache_enabled": True, "cache_ttl_seconds": 60}
    header = [{"name": "x-item", "in": "header", "type": "integer"}]
    add_endpoint(
        db,
        "/by-header",
        "GET",
        "SELECT id, name FROM items WHERE id = $1",
        header,
        {"shape": "object"},
        **common,
    )
    paged = {"shape": "list", "paginate": {"limit": 1}}
    add_endpoint(db, "/paged", "GET", "SELECT id FROM items ORDER BY id", [], paged, **common)
    client = serve(make_client)
    client.wait_for("GET", "/paged", 200)
    for _ in range(2):
        assert client.get("/items/1").status_code == 200  # rate-limited: counted each time
        assert client.get("/by-header", headers={"X-Item": "1"}).status_code == 200
        assert client.get("/paged").status_code == 200  # its links follow the Host header
    assert client.get("/paged").headers["x-cache"] == "HIT"
    assert not _memo(client)


def test_memo_answers_are_counted_like_every_answer(db, make_client):
    _items(db)
    client = serve(make_client)
    client.wait_for("GET", "/items/1", 200)
    labels = {"route": "/items/{id}", "method": "GET", "status": "2xx"}
    before = value(scrape(client), "engine_http_requests_total", **labels)
    for _ in range(5):
        assert client.get("/items/1").headers["x-cache"] == "HIT"
    after = value(scrape(client), "engine_http_requests_total", **labels)
    assert after - before == 5
