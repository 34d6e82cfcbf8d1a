"""Prometheus at /metrics: exact request counts, cache and pool figures, the token, workers."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.metrics import UNMATCHED, Metrics
from engine.observe import Exchange
from tests.helpers import add_endpoint, assert_problem, poll, serve

ROOT = Path(__file__).resolve().parent.parent
PARAM_ID = [{"name": "id", "in": "path", "type": "integer"}]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(client: Any, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def total(samples: Samples, name: str) -> float:
    return sum(series(samples, name).values())


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def settled(client: Any, before: Samples, name: str, expected: float, **labels: str) -> Samples:
    """A scrape once ``name`` (with ``labels``; all its series without) has moved by
    ``expected``: observers run after the answer is sent, the client may be quicker."""

    def grown(after: Samples) -> float:
        if labels:
            return moved(before, after, name, **labels)
        return total(after, name) - total(before, name)

    return poll(
        lambda: scrape(client), lambda s: grown(s) >= expected, f"{name} {labels} +{expected}"
    )


def test_requests_are_counted_exactly_and_random_paths_share_one_label(db, make_client):
    add_endpoint(db, "/m/ok", "GET", "SELECT 1 AS v", [], {"shape": "scalar"})
    client = serve(make_client)
    ok = {"route": "/m/ok", "method": "GET"}
    before = scrape(client)
    for _ in range(5):
        assert client.get("/m/ok").status_code == 200
    for _ in range(3):
        assert_problem(client.get(f"/m/{uuid.uuid4().hex}"), 404, "ROUTE_NOT_FOUND")
    assert_problem(client.post("/m/ok"), 405, "METHOD_NOT_ALLOWED")
    after = settled(client, before, "engine_http_requests_total", 9)
    scrape(client)  # scrapes are not catalogue requests: they move nothing
    after = scrape(client)

    assert moved(before, after, "engine_http_requests_total", **ok, status="2xx") == 5
    duration = "engine_http_request_duration_seconds"
    assert moved(before, after, f"{duration}_count", **ok) == 5
    assert moved(before, after, f"{duration}_bucket", **ok, le="+Inf") == 5
    assert moved(before, after, f"{duration}_bucket", **ok, le="10.0") == 5
    assert moved(before, after, "engine_db_time_seconds_total", **ok) > 0
    unmatched = {"route": UNMATCHED, "status": "4xx"}
    assert moved(before, after, "engine_http_requests_total", **unmatched, method="GET") == 3
    # a 405 at a published path keeps its route: a route that refuses is visible per route
    assert moved(before, after, "engine_http_requests_total", **unmatched, method="POST") == 0
    refused = {"route": "/m/ok", "method": "POST", "status": "4xx"}
    assert moved(before, after, "engine_http_requests_total", **refused) == 1
    assert (
        total(after, "engine_http_requests_total") - total(before, "engine_http_requests_total")
        == 9
    )
    routes = {dict(labels)["route"] for labels in series(after, "engine_http_requests_total")}
    assert routes == {"/m/ok", UNMATCHED}  # neither the random paths nor /metrics


def test_each_refusal_is_one_error_log_entry_written(db, make_client):
    client = serve(make_client)
    before = scrape(client)
    for _ in range(3):
        assert_problem(client.get(f"/m/{uuid.uuid4().hex}"), 404, "ROUTE_NOT_FOUND")
    client.engine.flush_errors()
    after = settled(client, before, "engine_error_log_written_total", 3)
    assert moved(before, after, "engine_error_log_written_total") == 3
    assert value(after, "engine_error_log_queue_length") == 0
    assert value(after, "engine_error_log_dropped_total") == 0
    assert value(after, "engine_error_log_failed_total") == 0


def test_cache_hits_misses_evictions_and_bytes_move_exactly(db, make_client):
    db.execute(
        "CREATE TABLE m_items (id int PRIMARY KEY, name text NOT NULL);"
        "INSERT INTO m_items SELECT g, 'item ' || g FROM generate_series(1, 3) g"
    )
    mid = add_endpoint(
        db,
        "/m/items/{id}",
        "GET",
        "SELECT id, name FROM m_items WHERE id = $1",
        PARAM_ID,
        {"shape": "object"},
        target_table="m_items",
        cache_enabled=True,
        cache_ttl_seconds=300,
    )
    db.execute(
        "INSERT INTO api_cache_config (endpoint_mapping_id, cache_strategy, cache_max_entries, "
        "cache_ttl_seconds) VALUES ($1, 'lru', 2, 300)",
        mid,
    )
    client = serve(make_client)
    route = {"route": "/m/items/{id}", "method": "GET"}
    before = scrape(client)
    seen = [client.get(f"/m/items/{i}").headers["x-cache"] for i in (1, 1, 2, 2, 3)]
    assert seen == ["MISS", "HIT", "MISS", "HIT", "MISS"]  # 3 pushes 1 out (two entries kept)
    after = settled(client, before, "engine_http_requests_total", 5, **route, status="2xx")
    assert moved(before, after, "engine_cache_hits_total", **route) == 2
    assert moved(before, after, "engine_cache_misses_total", **route) == 3
    assert moved(before, after, "engine_cache_evictions_total", **route) == 1
    assert value(after, "engine_cache_bytes", **route) > 0


def test_rate_limit_refusals_are_counted_by_route(db, make_client):
    add_endpoint(
        db, "/m/limited", "GET", "SELECT 1 AS v", [], {"shape": "scalar"}, rate_limit_per_minute=2
    )
    client = serve(make_client)
    route = {"route": "/m/limited", "method": "GET"}
    before = scrape(client)
    answers = [client.get("/m/limited").status_code for _ in range(5)]
    assert answers == [200, 200, 429, 429, 429]
    after = settled(client, before, "engine_rate_limited_total", 3, **route)
    assert moved(before, after, "engine_rate_limited_total", **route) == 3
    assert moved(before, after, "engine_http_requests_total", **route, status="4xx") == 3
    assert moved(before, after, "engine_http_requests_total", **route, status="2xx") == 2


def test_every_pool_and_the_catalogue_listener_and_error_log_are_reported(db, make_client):
    add_endpoint(db, "/m/one", "GET", "SELECT 1 AS v", [], {"shape": "scalar"})
    client = serve(make_client, pool_max_size=3)
    samples = scrape(client)
    for pool in ("write", "read"):
        assert value(samples, "engine_pool_max_size", pool=pool) == 3
        size = value(samples, "engine_pool_size", pool=pool)
        assert size >= 1
        in_use = ("engine_pool_connections", frozenset({("pool", pool), ("state", "in_use")}))
        idle = ("engine_pool_connections", frozenset({("pool", pool), ("state", "idle")}))
        assert in_use in samples and idle in samples
        assert samples[idle] <= size
        assert ("engine_pool_waiting", frozenset({("pool", pool)})) in samples
    catalogs = client.engine.services.catalogs
    assert value(samples, "engine_catalog_generation") == catalogs.current.generation >= 1
    assert value(samples, "engine_catalog_endpoints") == len(catalogs.current.endpoints)
    assert value(samples, "engine_catalog_reloads_total") == catalogs.reloads >= 1
    assert value(samples, "engine_catalog_reload_failures_total") == 0
    assert value(samples, "engine_routes_not_serving") == 0
    assert value(samples, "engine_listener_reconnects_total") == 0
    for name in ("engine_error_log_queue_length", "engine_error_log_written_total"):
        assert (name, frozenset()) in samples


def test_the_token_guards_metrics(db, make_client):
    client = serve(make_client, metrics_token="metrics-secret-for-tests")
    refused = client.get("/metrics")
    assert_problem(refused, 401, "INVALID_TOKEN")
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert "metrics-secret" not in refused.text
    wrong = client.get("/metrics", headers={"Authorization": "Bearer metrics-secret"})
    assert_problem(wrong, 401, "INVALID_TOKEN")
    samples = scrape(client, Authorization="Bearer metrics-secret-for-tests")
    assert ("engine_catalog_generation", frozenset()) in samples


def test_the_token_scheme_is_case_insensitive(db, make_client):
    token = "metrics-secret-for-tests"
    client = serve(make_client, metrics_token=token)
    for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
        samples = scrape(client, Authorization=f"{scheme} {token}")
        assert ("engine_catalog_generation", frozenset()) in samples, scheme
    for header in (token, f"Basic {token}", f"Bearer {token}x", "Bearer", f"bearer{token}"):
        assert_problem(
            client.get("/metrics", headers={"Authorization": header}), 401, "INVALID_TOKEN"
        )


def test_the_engines_own_paths_are_never_catalogue_requests(db, make_client):
    """Odd methods on the engine's paths are its own 405s: not counted, not error-logged."""
    client = serve(make_client)
    before = scrape(client)
    paths = ("/health/live", "/health/ready", "/_engine/health", "/_engine/catalog", "/metrics")
    for path in paths:
        for method in ("POST", "DELETE", "PROPFIND"):
            assert_problem(client.request(method, path), 405, "METHOD_NOT_ALLOWED")
        assert client.get("/health/live").status_code == 200
    # one catalogue request after them: once it is counted and logged, they would be too
    assert_problem(client.get(f"/m/{uuid.uuid4().hex}"), 404, "ROUTE_NOT_FOUND")
    client.engine.flush_errors()
    settled(client, before, "engine_http_requests_total", 1)
    after = settled(client, before, "engine_error_log_written_total", 1)
    requests = "engine_http_requests_total"
    assert total(after, requests) - total(before, requests) == 1
    assert moved(before, after, "engine_error_log_written_total") == 1


def test_only_get_and_head_are_answered(client):
    refused = client.post("/metrics")
    assert_problem(refused, 405, "METHOD_NOT_ALLOWED")
    assert refused.headers["allow"] == "GET, HEAD"
    head = client.head("/metrics")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) > 0


def _exchange(method: str, path: str, status: int, **fields: Any) -> Exchange:
    return Exchange("r", method, path, 0.0, status=status, duration_s=0.002, **fields)


def test_labels_stay_bounded_whatever_clients_send():
    metrics = Metrics()
    for i in range(50):
        metrics.observe(_exchange(f"M{i}", f"/random/{i}", 404))
    metrics.observe(_exchange("GET", "/gone", 200, route="/gone", abandoned=True))
    samples = parse(metrics.render().decode())
    assert series(samples, "engine_http_requests_total") == {
        frozenset({("route", UNMATCHED), ("method", "other"), ("status", "4xx")}): 50,
        frozenset({("route", "/gone"), ("method", "GET"), ("status", "abandoned")}): 1,
    }
    assert len(metrics._children) == 1  # an odd method is never kept


def test_tallied_requests_read_as_prometheus_clients_own_observations_would():
    """Requests are tallied in plain numbers and go into prometheus_client at the scrape: the
    same buckets (a value on a bound is in that bound's bucket), sums and counts."""
    durations = [0.0004, 0.001, 0.0011, 0.02, 0.3, 7.0, 42.0, 0.001]
    tallied = Metrics()
    for d in durations:
        tallied.observe(Exchange("r", "GET", "/t", 0.0, "/t", status=200, duration_s=d, db_s=d / 2))
    direct = Metrics()
    child = direct._duration.labels("/t", "GET")
    for d in durations:
        child.observe(d)
    direct._requests.labels("/t", "GET", "2xx").inc(len(durations))
    direct._db_time.labels("/t", "GET").inc(sum(d / 2 for d in durations))
    got, expected = parse(tallied.render().decode()), parse(direct.render().decode())
    assert series(got, "engine_http_request_duration_seconds_bucket") == series(
        expected, "engine_http_request_duration_seconds_bucket"
    )
    for name in (
        "engine_http_request_duration_seconds_count",
        "engine_http_request_duration_seconds_sum",
        "engine_http_requests_total",
        "engine_db_time_seconds_total",
    ):
        assert series(got, name) == pytest.approx(series(expected, name)), name
    tallied.observe(_exchange("GET", "/t", 200, route="/t"))  # counted once, not again
    again = parse(tallied.render().decode())
    assert value(again, "engine_http_requests_total", route="/t", method="GET", status="2xx") == 9


# --- several workers: prometheus_client's multi-process mode ---------------------------

WORKER = """
import sys
from engine.database import PoolFigures
from engine.metrics import Figures, Metrics
from engine.observe import Exchange

calls, size = int(sys.argv[1]), int(sys.argv[2])
figures = Figures(
    pools=[PoolFigures("write", 10, size, 1, size - 1, 0)],
    catalog_generation=calls,
    error_log_written=calls,
)
metrics = Metrics(lambda: figures)
for _ in range(calls):
    metrics.observe(Exchange("r", "GET", "/a", 0.0, route="/a", status=200, duration_s=0.01))
metrics.render()  # a scrape copies this worker's held figures for the others
print("ready", flush=True)
sys.stdin.readline()
"""


@pytest.fixture()
def multiproc_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="engine-prom-") as folder:
        yield folder


def _worker(folder: str, calls: int, size: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": folder}
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(calls), str(size)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def test_a_scrape_sums_every_worker_and_keeps_the_counts_of_those_gone(multiproc_dir):
    workers = [_worker(multiproc_dir, 3, 2), _worker(multiproc_dir, 4, 5)]
    scraper = Metrics(multiprocess_dir=multiproc_dir)  # what any worker's /metrics answers
    a = {"route": "/a", "method": "GET"}
    try:
        samples = parse(scraper.render().decode())
        assert value(samples, "engine_http_requests_total", **a, status="2xx") == 7
        assert value(samples, "engine_http_request_duration_seconds_count", **a) == 7
        assert value(samples, "engine_pool_size", pool="write") == 7  # summed over live workers
        assert value(samples, "engine_error_log_written_total") == 7
        generations = series(samples, "engine_catalog_generation")  # one per worker
        assert sorted(generations.values()) == [3, 4]
        assert {dict(labels)["pid"] for labels in generations} == {str(w.pid) for w in workers}
    finally:
        for w in workers:
            w.communicate("", timeout=30)
    samples = parse(scraper.render().decode())
    assert value(samples, "engine_http_requests_total", **a, status="2xx") == 7
    assert value(samples, "engine_error_log_written_total") == 7
    assert series(samples, "engine_pool_size") == {}  # the workers are gone
    assert series(samples, "engine_catalog_generation") == {}


SERVING_WORKER = """
import asyncio, sys
from engine.metrics import SETTLE_S, Metrics
from engine.observe import Exchange

async def main() -> None:
    metrics = Metrics()
    metrics.start()
    for _ in range(3):
        metrics.observe(Exchange("r", "GET", "/b", 0.0, route="/b", status=200, duration_s=0.01))
    await asyncio.sleep(SETTLE_S * 5)  # the loop runs: the counts go into the files
    print("settled", flush=True)
    sys.stdin.readline()
    for _ in range(2):  # then stopped at once, before another settle is due
        metrics.observe(Exchange("r", "GET", "/b", 0.0, route="/b", status=200, duration_s=0.01))
    await metrics.stop()
    print("stopped", flush=True)
    sys.stdin.readline()

asyncio.run(main())
"""


def test_a_serving_workers_counts_reach_the_files_soon_and_all_of_them_when_it_stops(
    multiproc_dir,
):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": multiproc_dir}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVING_WORKER],
        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    scraper = Metrics(multiprocess_dir=multiproc_dir)
    b = {"route": "/b", "method": "GET", "status": "2xx"}
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "settled\n"
        assert value(parse(scraper.render().decode()), "engine_http_requests_total", **b) == 3
        assert proc.stdin is not None
        proc.stdin.write("go on\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "stopped\n"
        assert value(parse(scraper.render().decode()), "engine_http_requests_total", **b) == 5
    finally:
        proc.communicate("", timeout=30)
