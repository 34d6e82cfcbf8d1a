"""The route table and the rule for which rows clash (no database)."""

from __future__ import annotations

from engine.routing import UNAVAILABLE, RouteTable, route_key


def test_rows_clash_when_only_parameter_names_or_a_trailing_slash_differ() -> None:
    assert route_key("get", "/a/{id}") == route_key("GET", "/a/{book_id}")
    assert route_key("GET", "/a/{id:int}") == route_key("GET", "/a/{x}/")
    assert route_key("GET", "/a/b") != route_key("GET", "/a/{b}")
    assert route_key("GET", "/a/b") != route_key("POST", "/a/b")


def test_an_unavailable_owner_is_matched_like_an_endpoint() -> None:
    table = RouteTable(
        [("GET", "/books/{id}", UNAVAILABLE), ("GET", "/books/new", "new"), ("POST", "/books", "p")]
    )
    assert table.match("/books/7", "GET").endpoint is UNAVAILABLE
    assert table.match("/books/7", "GET").path_params == {"id": "7"}
    assert table.match("/books/new", "HEAD").endpoint == "new"  # literal before parameter
    allowed = table.match("/books", "GET")
    assert allowed.endpoint is None and allowed.allowed == ("POST",)
    assert table.match("/nothing", "GET") is None


def test_a_path_no_request_can_reach_is_left_out() -> None:
    table = RouteTable([("GET", "/a/{id}/{id}", UNAVAILABLE), ("GET", "/b", "b")])
    assert table.match("/a/1/2", "GET") is None
    assert table.match("/b", "GET").endpoint == "b"
