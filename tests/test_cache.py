"""The response cache: driven by the rows, never crossing principals, invalidated by writes."""

from __future__ import annotations

import concurrent.futures
import time

from tests.helpers import add_endpoint, assert_problem, serve

PARAM_ID = [{"name": "id", "in": "path", "type": "integer"}]


def _items(db) -> None:
    db.execute(
        "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);"
        "INSERT INTO items VALUES (1, 'one'), (2, 'two')"
    )


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
    add_endpoint(
        db,
        "/items/{id}",
        "PUT",
        "UPDATE items SET name = $2 WHERE id = $1 RETURNING id, name",
        [*PARAM_ID, {"name": "name", "in": "body", "type": "string"}],
        {"shape": "object"},
        target_table="items",
        database_operation="UPDATE",
    )
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
