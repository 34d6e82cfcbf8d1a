"""The route table and the rule for which rows clash (no database)."""

from __future__ import annotations

from typing import Any

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


def _linear(entries: list[tuple[str, str, str]], path: str, method: str) -> tuple:
    """The rule the table keeps, written as the plain scan: the exact path first, then
    every parameterised route from the most to the least specific."""
    import re

    from engine.spec import path_regex, path_specificity

    if method == "HEAD":
        method = "GET"
    routes: dict[str, dict[str, str]] = {}
    for m, p, owner in entries:
        routes.setdefault(p, {})[m] = owner
    allowed: set[str] = set()
    first = None
    if path in routes and "{" not in path:
        if method in routes[path]:
            return (routes[path][method], {}, (), path)
        allowed.update(routes[path])
        first = path
    patterns = []
    for p in routes:
        if "{" in p:
            try:
                patterns.append((path_specificity(p), p, path_regex(p)))
            except (re.error, ValueError, KeyError):
                continue
    patterns.sort(key=lambda t: t[0])
    for _, p, regex in patterns:
        found = regex.match(path)
        if found is None:
            continue
        if method in routes[p]:
            return (routes[p][method], found.groupdict(), (), p)
        allowed.update(routes[p])
        first = first or p
    return (None, {}, tuple(sorted(allowed)), first) if allowed else None


def _seen(match: object) -> tuple | None:
    if match is None:
        return None
    return (match.endpoint, dict(match.path_params), match.allowed, match.route)


def test_lookup_agrees_with_the_ordered_scan_on_mixed_templates() -> None:
    import random

    rng = random.Random(12)
    pieces = ["a", "b", "v1", "{id}", "{n:int}", "{f:float}", "{u:uuid}", "{p:path}", "x{id}.json"]
    entries = []
    for i in range(300):
        segs = [rng.choice(pieces) for _ in range(rng.randint(1, 4))]
        seen_names: set[str] = set()
        named = []
        for seg in segs:  # unique parameter names per template
            if "{" in seg:
                name = seg[seg.index("{") + 1 :].split("}")[0].split(":")[0]
                seg = seg.replace("{" + name, "{" + name + str(len(seen_names)))
                seen_names.add(name)
            named.append(seg)
        path = "/" + "/".join(named) + rng.choice(["", "", "/"])
        entries.append((rng.choice(["GET", "POST", "PUT"]), path, f"r{i}"))
    table = RouteTable(entries)
    values = ["a", "b", "v1", "7", "3.5", "x7.json", "", "0b6e6a1c-3a4f-4b0e-9a47-3f2d1c0e9b8a"]
    for _ in range(3000):
        path = "/" + "/".join(rng.choice(values) for _ in range(rng.randint(0, 5)))
        path += rng.choice(["", "/"])
        method = rng.choice(["GET", "HEAD", "POST", "PUT", "DELETE"])
        assert _seen(table.match(path, method)) == _linear(entries, path, method), (path, method)


def test_a_request_is_tried_only_against_the_routes_that_could_match_it() -> None:
    # 10,000 rows: 2,000 parameterised routes; a request must not scan them all (it did:
    # every one of 2,000 regexes for the last route and for any unknown path)
    entries = []
    for r in range(2000):
        entries.append(("GET", f"/scale/svc{r % 50}/res{r}", f"list{r}"))
        entries.append(("GET", f"/scale/svc{r % 50}/res{r}/{{id}}", f"one{r}"))
        entries.append(("PUT", f"/scale/svc{r % 50}/res{r}/{{id}}", f"put{r}"))
    entries.append(("GET", "/files/{rest:path}", "files"))
    table = RouteTable(entries)
    assert [r.path for r in table.candidates("/scale/svc49/res1999/5")] == [
        "/scale/svc49/res1999/{id}",
        "/files/{rest:path}",
    ]
    assert [r.path for r in table.candidates("/nope/x")] == ["/files/{rest:path}"]
    assert table.match("/scale/svc49/res1999/5", "GET").endpoint == "one1999"
    assert table.match("/scale/svc49/res1999/5", "DELETE").allowed == ("GET", "PUT")
    assert table.match("/files/a/b", "GET").path_params == {"rest": "a/b"}


def test_a_table_built_in_steps_yields_while_it_builds_the_tree_too() -> None:
    # a reload builds the table on the event loop: every `every` routes it lets requests run,
    # over the entries and over the segment tree alike (2,000 templates in one go: 5-7 ms)
    entries = [("GET", f"/r{r}/{{id}}", r) for r in range(2000)]
    steps = RouteTable.in_steps(entries, every=500)
    yields = 0
    try:
        while True:
            next(steps)
            yields += 1
    except StopIteration as done:
        table = done.value
    # entries 500, 1000, 1500, 2000; routes laid out 500, 1000, 1500; the sort; tree 500-1500
    assert yields == 4 + 3 + 1 + 3
    assert table.match("/r1999/7", "GET").endpoint == 1999


def _built(entries: list[tuple[str, str, Any]], previous: RouteTable | None) -> RouteTable:
    steps = RouteTable.in_steps(entries, previous, every=100)
    try:
        while True:
            next(steps)
    except StopIteration as done:
        return done.value


def test_a_table_with_the_routes_of_the_last_one_keeps_its_tree_and_takes_new_owners() -> None:
    # a reload that changes one template among thousands rebuilt every route and node: 8,000
    # objects a reload for the collector to walk and then to free, in blocks of 3-6 ms
    entries = [("GET", f"/r{r}/{{id}}", f"old{r}") for r in range(1000)]
    entries += [("GET", f"/lit{r}", f"lit{r}") for r in range(1000)]
    first = _built(entries, None)
    renewed = [(m, p, owner.replace("old", "new")) for m, p, owner in entries]
    second = _built(renewed, first)
    assert second._tree is first._tree and second._exact is first._exact
    assert second.match("/r7/1", "GET").endpoint == "new7"
    assert first.match("/r7/1", "GET").endpoint == "old7"  # the old table answers as before
    assert second.match("/lit3", "GET").endpoint == "lit3"
    # one route more, one fewer, or one moved: laid out anew, and answering as a new table
    for changed in (
        [*renewed, ("POST", "/r7/{id}", "post7")],
        renewed[:-1],
        [("GET", "/moved/{id}", "moved"), *renewed[1:]],
    ):
        table = _built(changed, second)
        assert table._tree is not first._tree
        fresh = RouteTable(changed)
        for path in ("/r7/1", "/r0/1", "/lit999", "/moved/1", "/lit3"):
            for method in ("GET", "POST"):
                assert _seen(table.match(path, method)) == _seen(fresh.match(path, method))
