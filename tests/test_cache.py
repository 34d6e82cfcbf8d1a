"""The response cache: driven by the rows, never crossing principals, invalidated by writes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Any

import pytest

from engine.cache import CachedAnswer, ResponseCache, etag_of
from tests.helpers import ITEMS_TABLE, add_endpoint, add_item_rename, assert_problem, serve

PARAM_ID = [{"name": "id", "in": "path", "type": "integer"}]


def _items(db) -> None:
    db.execute(ITEMS_TABLE)


def _wait(predicate, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_a_cacheable_get_is_answered_from_the_cache_until_its_ttl(db, client):
    _items(db)
    add_endpoint(
        db,
        "/items/{id}",
        "GET",
        "SELECT id, name FROM items WHERE id = $1",
        PARAM_ID,
        {"shape": "object"},
        target_table="items",
        cache_enabled=True,
        cache_ttl_seconds=1,
    )
    first = client.wait_for("GET", "/items/1", 200)
    assert first.headers["x-cache"] == "MISS"
    assert first.headers["cache-control"] == "public, max-age=1"
    db.execute(
        "UPDATE items SET name = 'changed' WHERE id = 1"
    )  # no trigger: the cache cannot know
    second = client.get("/items/1")
    assert second.headers["x-cache"] == "HIT" and second.json()["name"] == "one"
    assert second.headers["etag"] == first.headers["etag"]
    assert _wait(lambda: client.get("/items/1").json()["name"] == "changed", 3)
    other = client.get("/items/2")
    assert other.headers["x-cache"] == "MISS" and other.json()["name"] == "two"


def test_if_none_match_gives_304_and_a_changed_answer_a_new_etag(db, make_client):
    _items(db)
    add_endpoint(
        db,
        "/items/{id}",
        "GET",
        "SELECT id, name FROM items WHERE id = $1",
        PARAM_ID,
        {"shape": "object"},
        target_table="items",
        cache_enabled=True,
        cache_ttl_seconds=60,
    )
    add_item_rename(db)
    client = serve(make_client)  # both rows in its first catalogue: no reload race
    first = client.wait_for("GET", "/items/1", 200)
    etag = first.headers["etag"]
    again = client.get("/items/1", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert client.get("/items/1", headers={"If-None-Match": '"other"'}).status_code == 200
    assert client.get("/items/1", headers={"If-None-Match": f'W/{etag}, "x"'}).status_code == 304
    assert client.put("/items/1", json={"name": "uno"}).status_code == 200
    fresh = client.get("/items/1", headers={"If-None-Match": etag})
    assert fresh.status_code == 200 and fresh.json()["name"] == "uno"
    assert fresh.headers["etag"] != etag


def test_a_write_through_the_api_drops_stale_reads_of_its_table(db, make_client):
    _items(db)
    add_endpoint(
        db,
        "/items",
        "GET",
        "SELECT id, name FROM items ORDER BY id",
        [],
        {"shape": "list"},
        target_table="items",
        cache_enabled=True,
        cache_ttl_seconds=300,
    )
    add_endpoint(
        db,
        "/items",
        "POST",
        "INSERT INTO items VALUES ($1, $2) RETURNING id",
        [
            {"name": "id", "in": "body", "type": "integer"},
            {"name": "name", "in": "body", "type": "string"},
        ],
        {"shape": "object"},
        target_table="items",
    )
    client = serve(make_client)  # both rows in its first catalogue: no reload race
    assert len(client.wait_for("GET", "/items", 200).json()) == 2
    assert client.get("/items").headers["x-cache"] == "HIT"
    assert client.post("/items", json={"id": 3, "name": "three"}).status_code == 201
    after = client.get("/items")
    assert after.headers["x-cache"] == "MISS" and [i["id"] for i in after.json()] == [1, 2, 3]


def test_invalidation_rules_name_other_tables(db, make_client):
    _items(db)
    db.execute("CREATE TABLE item_log (n int)")
    read = add_endpoint(
        db,
        "/items",
        "GET",
        "SELECT id, name FROM items ORDER BY id",
        [],
        {"shape": "list"},
        target_table="items",
        cache_enabled=True,
        cache_ttl_seconds=300,
    )
    write = add_endpoint(
        db,
        "/log",
        "POST",
        "INSERT INTO item_log VALUES (1)",
        [],
        {"shape": "none"},
        target_table="item_log",
    )
    db.execute(
        "INSERT INTO api_cache_config (endpoint_mapping_id, cache_invalidation_rules) "
        'VALUES ($1, \'{"tables": ["items"]}\')',
        write,
    )
    db.execute(
        "INSERT INTO api_cache_config (endpoint_mapping_id, cache_ttl_seconds) VALUES ($1, 300)",
        read,
    )
    client = make_client()  # started after the rows, so no reload races the assertions
    client.wait_for("GET", "/items", 200)
    assert _wait(lambda: client.get("/items").headers["x-cache"] == "HIT")
    db.execute("INSERT INTO items VALUES (9, 'nine')")
    assert client.get("/items").headers["x-cache"] == "HIT"
    assert client.wait_for("POST", "/log", 204).status_code == 204
    assert [i["id"] for i in client.get("/items").json()] == [1, 2, 9]


def test_a_direct_write_to_an_opted_in_table_invalidates(db, client):
    _items(db)
    db.execute(
        "CREATE TRIGGER items_cache AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON items "
        "FOR EACH STATEMENT EXECUTE FUNCTION engine_invalidate_cache()"
    )
    add_endpoint(
        db,
        "/items/{id}",
        "GET",
        "SELECT id, name FROM items WHERE id = $1",
        PARAM_ID,
        {"shape": "object"},
        target_table="items",
        cache_enabled=True,
        cache_ttl_seconds=300,
    )
    client.wait_for("GET", "/items/1", 200)
    assert client.get("/items/1").headers["x-cache"] == "HIT"
    db.execute("UPDATE items SET name = 'edited by psql' WHERE id = 1")
    assert _wait(lambda: client.get("/items/1").json()["name"] == "edited by psql", 3)


def test_only_successful_answers_are_cached(db, client):
    _items(db)
    add_endpoint(
        db,
        "/items/{id}",
        "GET",
        "SELECT id, name FROM items WHERE id = $1",
        PARAM_ID,
        {"shape": "object"},
        target_table="items",
        cache_enabled=True,
        cache_ttl_seconds=300,
    )
    client.wait_for("GET", "/items/5", 404, code="RESOURCE_NOT_FOUND")
    assert client.get("/items/5").status_code == 404
    db.execute("INSERT INTO items VALUES (5, 'five')")
    assert client.get("/items/5").json() == {"id": 5, "name": "five"}


def test_tenants_each_get_only_their_own_cached_rows(db, client):
    ids = {
        t: {
            r["camera_id"]
            for r in db.fetch(
                "SELECT camera_id FROM camera_configurations WHERE tenant_id = $1 AND is_active", t
            )
        }
        for t in (1, 2)
    }
    assert ids[1] and ids[2] and not ids[1] & ids[2]
    for _ in range(2):  # the second round is answered from the cache
        for tenant in (1, 2):
            answer = client.get(
                "/api/v1/cameras", headers=client.auth(sub=f"user{tenant}", tenant=tenant)
            )
            assert answer.status_code == 200
            assert {c["camera_id"] for c in answer.json()["data"]} == ids[tenant]
            assert answer.headers["cache-control"].startswith("private")
    # same tenant, another principal: its own entry, never someone else's
    other = client.get("/api/v1/cameras", headers=client.auth(sub="someone-else", tenant=1))
    assert other.headers["x-cache"] == "MISS"
    assert {c["camera_id"] for c in other.json()["data"]} == ids[1]


def test_an_anonymous_call_is_never_served_an_authenticated_entry(db, client):
    assert client.get("/api/v1/cameras", headers=client.auth(tenant=1)).status_code == 200
    assert client.get("/api/v1/cameras", headers=client.auth(tenant=1)).headers["x-cache"] == "HIT"
    anonymous = client.get("/api/v1/cameras")
    assert_problem(anonymous, 401, "AUTHENTICATION_REQUIRED")
    assert "x-cache" not in anonymous.headers


def test_concurrent_misses_run_the_query_once(db, make_client):
    db.execute(
        "CREATE FUNCTION slow_answer(n int) RETURNS int LANGUAGE plpgsql STABLE AS "
        "$$ BEGIN PERFORM pg_sleep(0.6); RETURN n * 2; END $$"
    )
    add_endpoint(
        db,
        "/slow/{id}",
        "GET",
        "SELECT slow_answer($1) AS v",
        PARAM_ID,
        {"shape": "scalar"},
        cache_enabled=True,
        cache_ttl_seconds=60,
    )
    client = make_client(pool_max_size=8)
    running = []  # how many backends run the query, sampled while the requests are in flight
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(client.get, "/slow/21") for _ in range(8)]
        while not all(f.done() for f in futures):
            running.append(
                db.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                    "AND query LIKE 'SELECT slow_answer%'"
                )
            )
        answers = [f.result() for f in futures]
    assert all(a.status_code == 200 and a.json() == 42 for a in answers)
    assert max(running) == 1, running
    assert sum(a.headers["x-cache"] == "MISS" for a in answers) == 8  # all missed, one query ran


def test_lru_strategy_bounds_the_entries(db, client):
    _items(db)
    mid = add_endpoint(
        db,
        "/items/{id}",
        "GET",
        "SELECT id, name FROM items WHERE id = $1",
        PARAM_ID,
        {"shape": "object"},
        target_table="items",
        cache_enabled=True,
        cache_ttl_seconds=300,
    )
    db.execute("INSERT INTO items SELECT g, 'n' || g FROM generate_series(3, 5) g")
    db.execute(
        "INSERT INTO api_cache_config (endpoint_mapping_id, cache_strategy, cache_max_entries, "
        "cache_ttl_seconds) VALUES ($1, 'lru', 2, 300)",
        mid,
    )
    client.wait_for("GET", "/items/1", 200)
    assert _wait(
        lambda: (
            client.engine.services.cache.caches.get(mid) is not None
            and client.engine.services.cache.caches[mid].strategy == "lru"
        )
    )
    for i in (1, 2):
        client.get(f"/items/{i}")
    assert client.get("/items/1").headers["x-cache"] == "HIT"  # 1 is now the most recent
    client.get("/items/3")  # evicts 2, the least recently used
    assert client.get("/items/1").headers["x-cache"] == "HIT"
    assert client.get("/items/2").headers["x-cache"] == "MISS"
    assert client.engine.services.cache.caches[mid].evictions >= 1


def test_cache_key_template_and_version_change(db, client):
    _items(db)
    mid = add_endpoint(
        db,
        "/items/{id}",
        "GET",
        "SELECT id, name, $2::text AS echo FROM items WHERE id = $1",
        [*PARAM_ID, {"name": "note", "in": "query", "type": "string"}],
        {"shape": "object"},
        target_table="items",
        cache_enabled=True,
        cache_ttl_seconds=300,
    )
    db.execute(
        "INSERT INTO api_cache_config (endpoint_mapping_id, cache_key_template, cache_ttl_seconds) "
        "VALUES ($1, '{id}', 300)",
        mid,
    )
    client.wait_for("GET", "/items/1?note=a", 200)
    assert _wait(lambda: client.get("/items/1?note=b").headers["x-cache"] == "HIT")
    assert client.get("/items/1?note=b").json()["echo"] in ("a", "b")  # note is not in the key
    db.execute("UPDATE api_endpoint_mappings SET description = 'v2' WHERE id = $1", mid)
    assert _wait(lambda: client.get("/items/1?note=c").headers["x-cache"] == "MISS")


def test_cache_figures_are_written_to_the_database(db, make_client):
    _items(db)
    mid = add_endpoint(
        db,
        "/items/{id}",
        "GET",
        "SELECT id, name FROM items WHERE id = $1",
        PARAM_ID,
        {"shape": "object"},
        target_table="items",
        cache_enabled=True,
        cache_ttl_seconds=300,
    )
    db.execute(
        "INSERT INTO api_cache_config (endpoint_mapping_id, cache_ttl_seconds) VALUES ($1, 300)",
        mid,
    )
    # hits and misses reach api_performance_metrics with the per-minute figures
    client = make_client(cache_stats_interval_s=1, metrics_flush_s=1)
    for _ in range(4):
        assert client.get("/items/1").status_code == 200  # 1 miss, 3 hits
    assert _wait(
        lambda: (
            db.fetchval(
                "SELECT sum(cache_hits) FROM api_performance_metrics WHERE endpoint_mapping_id = $1",
                mid,
            )
            == 3
        ),
        5,
    )
    assert (
        db.fetchval(
            "SELECT sum(cache_misses) FROM api_performance_metrics WHERE endpoint_mapping_id = $1",
            mid,
        )
        == 1
    )
    assert float(db.fetchval("SELECT calculate_cache_hit_ratio($1)", mid)) == 75.0
    row = db.fetchrow(
        "SELECT cache_hit_ratio, cache_eviction_count FROM api_cache_config WHERE endpoint_mapping_id = $1",
        mid,
    )
    assert float(row["cache_hit_ratio"]) == 75.0 and row["cache_eviction_count"] == 0


def test_bad_cache_config_is_reported_not_served(db, make_client):
    mid = add_endpoint(
        db, "/cfg", "GET", "SELECT 1 AS v", [], {"shape": "scalar"}, cache_enabled=True
    )
    db.execute(
        "INSERT INTO api_cache_config (endpoint_mapping_id, cache_key_template) VALUES ($1, '{nope}')",
        mid,
    )
    client = make_client(admin_token="a")
    report = client.get("/_engine/catalog", headers={"Authorization": "Bearer a"}).json()
    reasons = [p["reason"] for p in report["problems"] if p["id"] == mid]
    assert reasons and "unknown parameter" in reasons[0]
    assert client.get("/cfg").json()["code"] == "ENDPOINT_UNAVAILABLE"


# -- the byte budget (ENGINE_CACHE_MAX_BYTES) ---------------------------------------------


def _answer(size: int, tag: str = "") -> CachedAnswer:
    body = (tag.encode() + b"x" * size)[:size]
    return CachedAnswer(body, 200, "application/json", (), etag_of(body), time.monotonic() + 300)


def _fill(cache: ResponseCache, endpoint_id: int, key: Any, answer: CachedAnswer) -> None:
    async def compute() -> CachedAnswer:
        return answer

    asyncio.run(cache.fill(endpoint_id, key, compute))


def _budgeted(max_bytes: int, endpoints: int = 3, strategy: str = "ttl") -> ResponseCache:
    cache = ResponseCache(max_bytes=max_bytes)
    for eid in range(1, endpoints + 1):
        cache.configure(eid, strategy=strategy, ttl_seconds=300, max_entries=10_000, tables=["t"])
    return cache


@pytest.mark.parametrize("strategy", ["ttl", "lru", "lfu"])
def test_many_large_answers_stay_under_the_byte_budget(strategy: str) -> None:
    budget = 1_000_000
    cache = _budgeted(budget, strategy=strategy)
    for i in range(300):  # 300 answers of ~50 kB over three endpoints: 15 MB offered
        _fill(cache, 1 + i % 3, ("k", i), _answer(50_000 + i, str(i)))
        assert cache.bytes <= budget
    held = sum(len(c.store) for c in cache.caches.values())
    assert 15 <= held <= 20  # the budget is used, not wasted
    assert cache.bytes == sum(c.size_bytes for c in cache.caches.values())
    assert cache.bytes == sum(
        a.size for c in cache.caches.values() for a in c.store.values()
    ) + sum(len(k[0]) for c in cache.caches.values() for k in c.store)
    assert sum(c.evictions for c in cache.caches.values()) == 300 - held
    # the most recent answers are the ones kept, and they are hits
    for i in range(300 - held, 300):
        found = cache.lookup(1 + i % 3, ("k", i))
        assert found is not None and found.body.startswith(str(i).encode())
    assert cache.lookup(1, ("k", 0)) is None


def test_the_least_recently_used_answer_goes_first_whichever_endpoint_holds_it() -> None:
    size = _answer(1_000).size + len("k") + 10
    cache = _budgeted(8 * size)  # eight answers fit (an answer may be 1/8 of the budget)
    for i in range(8):
        _fill(cache, 1 + i % 3, ("k", i), _answer(1_000))
    assert cache.lookup(1, ("k", 0)) is not None  # used: now the most recent
    _fill(cache, 3, ("k", 8), _answer(1_000))  # one must go: the least recent, (2, k1)
    assert cache.lookup(2, ("k", 1)) is None
    assert all(cache.lookup(1 + i % 3, ("k", i)) is not None for i in (0, *range(2, 9)))
    assert cache.caches[2].evictions == 1 and cache.caches[1].evictions == 0


def test_an_answer_over_an_eighth_of_the_budget_is_served_not_cached() -> None:
    cache = _budgeted(800_000)
    _fill(cache, 1, ("small",), _answer(1_000))
    _fill(cache, 1, ("big",), _answer(100_001))
    assert cache.lookup(1, ("big",)) is None and cache.too_large == 1
    assert cache.lookup(1, ("small",)) is not None  # nothing was pushed out for it
    assert cache.bytes < 2_000


def test_bytes_are_given_back_by_invalidation_expiry_entry_bound_and_reload() -> None:
    cache = _budgeted(10_000_000, endpoints=2)
    cache.configure(3, strategy="lru", ttl_seconds=300, max_entries=2, tables=["u"])
    for i in range(5):
        _fill(cache, 3, ("k", i), _answer(1_000))
    assert len(cache.caches[3].store) == 2 and cache.bytes == cache.caches[3].size_bytes
    _fill(cache, 1, ("k",), _answer(1_000))
    cache.invalidate(["t"])
    assert cache.caches[1].size_bytes == 0 and cache.bytes == cache.caches[3].size_bytes
    cache.drop(3)
    assert cache.bytes == 0 and cache.budget.entries == 0
    cache.configure(2, strategy="ttl", ttl_seconds=0, max_entries=10, tables=["t"])
    _fill(cache, 2, ("gone",), _answer(1_000))  # expires at once
    _fill(cache, 2, ("next",), _answer(1_000))  # storing purges the expired one
    assert cache.lookup(2, ("gone",)) is None
    assert cache.bytes <= cache.caches[2].size_bytes <= _answer(1_000).size + 10
    cache.clear()
    assert cache.bytes == 0


def test_the_byte_budget_holds_over_http(db, make_client):
    db.execute(
        "CREATE TABLE big_items (id int PRIMARY KEY, pad text NOT NULL);"
        "INSERT INTO big_items SELECT g, repeat('p', 3000) FROM generate_series(1, 60) g"
    )
    mid = add_endpoint(
        db,
        "/big/{id}",
        "GET",
        "SELECT id, pad FROM big_items WHERE id = $1",
        PARAM_ID,
        {"shape": "object"},
        target_table="big_items",
        cache_enabled=True,
        cache_ttl_seconds=300,
    )
    budget = 40_000  # about a dozen answers of 3 kB
    client = serve(make_client, cache_max_bytes=budget)
    services = client.engine.services
    for i in range(1, 61):
        assert client.get(f"/big/{i}").headers["x-cache"] == "MISS"
    assert services.cache.bytes <= budget
    kept = len(services.cache.caches[mid].store)
    assert 8 <= kept <= 13
    assert services.cache.caches[mid].evictions == 60 - kept
    assert client.get("/big/60").headers["x-cache"] == "HIT"
    assert client.get("/big/1").headers["x-cache"] == "MISS"
    evictions = services.cache.caches[mid].evictions
    assert evictions == 60 - kept + 1  # /big/1 was stored again: one more went
    lines = client.get("/metrics").text.splitlines()
    counted = [ln for ln in lines if ln.startswith("engine_cache_evictions_total{")]
    assert any('"/big/{id}"' in ln and ln.endswith(f" {evictions}.0") for ln in counted), counted


def _ep(mid: int, cacheable: bool = True) -> Any:
    from types import SimpleNamespace

    cache = SimpleNamespace(strategy="ttl", ttl_seconds=300, max_entries=10, tables=frozenset())
    return SimpleNamespace(spec=SimpleNamespace(id=mid), cacheable=cacheable, cache=cache)


def _catalog(generation: int, eps: list[Any], changes: Any = None) -> Any:
    from types import SimpleNamespace

    serving = {ep.spec.id: ep for ep in eps}
    return SimpleNamespace(generation=generation, endpoints=eps, serving=serving, changes=changes)


@pytest.mark.parametrize("told", [True, False], ids=["told-what-changed", "walks-every-row"])
def test_a_reload_drops_the_answers_of_changed_rows_only(told: bool) -> None:
    # a reload of one row among 10,000 walked every endpoint three times on the event loop;
    # told what changed (engine.catalog.Catalog.changes), it walks those alone, to the same end
    same, changed, gone, uncached = _ep(1), _ep(2), _ep(3), _ep(5, cacheable=False)
    before = _catalog(7, [same, changed, gone, uncached])
    cache = ResponseCache()
    cache.follow(_catalog(0, []), before)
    for mid in (1, 2, 3):
        _fill(cache, mid, ("k",), _answer(100))
    assert set(cache.caches) == {1, 2, 3}
    eps = [same, _ep(2), _ep(4), _ep(5, cacheable=False)]
    after = _catalog(8, eps, (7, frozenset({2, 3, 4, 5})) if told else None)
    cache.follow(before, after)
    assert set(cache.caches) == {1, 2, 4}
    assert cache.lookup(1, ("k",)) is not None  # unchanged: its answers stay
    assert cache.lookup(2, ("k",)) is None  # compiled anew: answers dropped
    assert cache.bytes == cache.caches[1].size_bytes
