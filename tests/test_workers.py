"""``serve --workers N`` (engine/workers.py): N processes on one port, coherent through NOTIFY.

The engines run as ``python -m engine serve`` subprocesses. A request reaches a known
worker by asking ``/health/ready`` (which names the worker: its slot and pid) on a
fresh keep-alive connection, sending the request on that same connection, and asking
again: the kernel hands each new connection to one worker, so fresh connections reach
every worker sooner or later.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from engine import keys, workers
from engine.server import DEDICATED_CONNECTIONS
from engine.settings import Settings
from tests.engine_server import JWT_SECRET, free_port
from tests.helpers import (
    ITEMS_TABLE,
    add_endpoint,
    add_item_rename,
    add_sleep_endpoint,
    poll,
    run_cli,
)
from tests.pg import DB, with_database

COUNT = 2
START_S = 120.0  # spawning and importing two workers takes a while on a busy machine
SEEN_S = 30.0
LIMIT = 5  # /limited's rate_limit_per_minute


# ---------------------------------------------------------------------------
# pool sizing (pure)
# ---------------------------------------------------------------------------


def test_pools_keep_their_size_when_every_worker_fits() -> None:
    sizing = workers.size_pools(workers.ConnectionLimit(100, 3), 2, 10)
    assert (sizing.pool_max, sizing.asked) == (10, 10)
    assert sizing.workers * sizing.per_worker <= 100 - 3 - sizing.limit.margin
    assert "pools of 10 connections each" in sizing.line()


def test_pools_are_lowered_so_that_every_worker_fits_with_a_margin() -> None:
    limit = workers.ConnectionLimit(max_connections=100, reserved=3)
    sizing = workers.size_pools(limit, 4, 50)
    assert 2 <= sizing.pool_max < 50
    used = 4 * (2 * sizing.pool_max + DEDICATED_CONNECTIONS)
    assert used <= 100 - 3 - limit.margin < used + 4 * 2  # as large as fits
    assert "lowered from ENGINE_POOL_MAX_SIZE=50" in sizing.line()
    # the reserved slots count: more reserved, smaller pools
    assert workers.size_pools(workers.ConnectionLimit(100, 40), 4, 50).pool_max < sizing.pool_max


def test_too_many_workers_for_pools_of_two_are_refused() -> None:
    with pytest.raises(workers.WorkersRefused, match="--workers 8 does not fit"):
        workers.size_pools(workers.ConnectionLimit(max_connections=100, reserved=3), 8, 10)


def test_a_minimum_above_the_lowered_maximum_is_lowered_with_it() -> None:
    sizing = workers.size_pools(workers.ConnectionLimit(100, 3), 4, 50)
    sized = workers.sized_settings(Settings(pool_min_size=40, pool_max_size=50), sizing)
    assert sized.pool_max_size == sized.pool_min_size == sizing.pool_max
    assert sized.workers == 4


# ---------------------------------------------------------------------------
# a serve --workers subprocess, and reaching each of its workers
# ---------------------------------------------------------------------------


class Served:
    """``python -m engine serve`` on a free port; its stderr in ``folder``/stderr.txt, its
    temporary files (the metrics folder) in ``folder``/tmp."""

    def __init__(self, database_url: str, folder: Path, *args: str, **env: str) -> None:
        self.port = free_port()
        self.tmp = folder / "tmp"
        self.tmp.mkdir()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
        environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        environ.update(
            DATABASE_URL=database_url,
            ENGINE_JWT_SECRET=JWT_SECRET,
            ENGINE_PORT=str(self.port),
            ENGINE_LOG_LEVEL="INFO",
            ENGINE_ACCESS_LOG="off",
            ENGINE_RELOAD_DEBOUNCE_MS="20",
            ENGINE_SHUTDOWN_GRACE_S="10",
            TMPDIR=str(self.tmp),
            **env,
        )
        self.err_path = folder / "stderr.txt"
        self._err = open(self.err_path, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve", *args],
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=self._err,
        )

    def log(self) -> str:
        return self.err_path.read_text()

    def client(self) -> httpx.Client:
        """A client holding at most one connection: every request on the same worker."""
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            timeout=30,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )

    def worker_of(self, client: httpx.Client) -> dict[str, int] | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"serve exited {self.proc.returncode}: {self.log()}")
        try:
            answer = client.get("/health/ready")
        except httpx.TransportError:
            return None
        return answer.json().get("worker") if answer.status_code == 200 else None

    def on_each_worker(
        self,
        ask: Callable[[httpx.Client], httpx.Response],
        done: Callable[[httpx.Response], bool] = lambda r: True,
        what: str = "every worker answering",
        count: int = COUNT,
        timeout_s: float = SEEN_S,
    ) -> dict[int, httpx.Response]:
        """``ask`` on fresh connections until, for each worker's slot, an answer it gave
        satisfies ``done``; the answers by slot."""
        answers: dict[int, httpx.Response] = {}

        def look() -> dict[int, httpx.Response]:
            with self.client() as client:
                before = self.worker_of(client)
                if before is None or before["index"] in answers:
                    return answers
                response = ask(client)
                if self.worker_of(client) == before and done(response):
                    answers[before["index"]] = response
            return answers

        return poll(look, lambda a: len(a) == count, what, timeout_s=timeout_s)

    def workers(self, count: int = COUNT, timeout_s: float = START_S) -> dict[int, int]:
        """The pid serving in each slot, once every worker is ready."""
        answers = self.on_each_worker(
            lambda c: c.get("/health/ready"), what="every worker ready", timeout_s=timeout_s
        )
        return {index: r.json()["worker"]["pid"] for index, r in answers.items()}

    def stop(self, timeout_s: float = 60) -> int:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            self._err.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (OSError, IndexError):
        return "gone"


def _children(pid: int) -> list[int]:
    out = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(p) for p in out]


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one metric in a Prometheus text page, by their labels."""
    found = {}
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, value = line.rsplit(" ", 1)
        labels = ()
        if "{" in head:
            body = head[head.index("{") + 1 : head.rindex("}")]
            labels = tuple(
                sorted(
                    (k, v.strip('"')) for k, v in (pair.split("=", 1) for pair in body.split(","))
                )
            )
        found[labels] = float(value)
    return found


def _pids(page: str) -> set[str]:
    """The workers a metrics page has figures of (engine_catalog_generation: one per pid)."""
    return {dict(labels)["pid"] for labels in _samples(page, "engine_catalog_generation")}


# ---------------------------------------------------------------------------
# one engine of two workers for the coherence tests
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_db_url(pg_url: str, template_db: str) -> Iterator[str]:
    name = f"engine_workers_{os.getpid()}"
    admin = DB(pg_url)
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    url = with_database(pg_url, name)
    db = DB(url)
    db.execute(ITEMS_TABLE)
    item = [{"name": "id", "in": "path", "type": "integer"}]
    add_endpoint(
        db,
        "/items/{id}",
        "GET",
        "SELECT id, name FROM items WHERE id = $1",
        item,
        {"shape": "object"},
    )
    add_endpoint(
        db,
        "/cached/{id}",
        "GET",
        "SELECT id, name FROM items WHERE id = $1",
        item,
        {"shape": "object"},
        target_table="items",
        cache_enabled=True,
        cache_ttl_seconds=300,
    )
    add_item_rename(db)
    add_endpoint(
        db,
        "/whoami",
        "GET",
        "SELECT $1::text AS sub",
        [{"name": "sub", "in": "auth", "type": "string"}],
        {"shape": "scalar"},
        requires_auth=True,
    )
    add_endpoint(db, "/counted", "GET", "SELECT 1 AS one", [], {"shape": "scalar"})
    add_endpoint(
        db,
        "/limited",
        "GET",
        "SELECT 1 AS one",
        [],
        {"shape": "scalar"},
        rate_limit_per_minute=LIMIT,
    )
    yield url
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def served(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    # ENGINE_WORKERS, not --workers; pools asked far larger than the database allows
    engine = Served(
        module_db_url,
        tmp_path_factory.mktemp("workers"),
        ENGINE_WORKERS=str(COUNT),
        ENGINE_POOL_MAX_SIZE="500",
        ENGINE_UNKNOWN_PATH_LIMIT_PER_MINUTE=str(LIMIT),
    )
    try:
        engine.workers()
        yield engine
    finally:
        engine.stop()


def test_a_row_change_is_seen_by_every_worker(served: Served, module_db_url: str) -> None:
    db = DB(module_db_url)
    served.on_each_worker(
        lambda c: c.get("/items/1"), lambda r: r.json() == {"id": 1, "name": "one"}
    )
    db.execute(
        "UPDATE api_endpoint_mappings SET query_template = "
        "'SELECT id, upper(name) AS name FROM items WHERE id = $1' "
        "WHERE endpoint_path = '/items/{id}' AND http_method = 'GET'"
    )
    served.on_each_worker(
        lambda c: c.get("/items/1"),
        lambda r: r.status_code == 200 and r.json()["name"] == "ONE",
        "every worker serving the edited row",
    )


def test_a_write_through_one_worker_invalidates_the_cache_of_every_worker(served: Served) -> None:
    def twice(client: httpx.Client) -> httpx.Response:
        client.get("/cached/2")
        return client.get("/cached/2")  # the same worker: from its cache now

    served.on_each_worker(
        twice,
        lambda r: r.headers.get("x-cache") == "HIT" and r.json()["name"] == "two",
        "every worker holding /cached/2",
    )
    with served.client() as client:
        assert client.put("/items/2", json={"name": "deux"}).status_code == 200
    seen = served.on_each_worker(
        lambda c: c.get("/cached/2"),
        lambda r: r.json()["name"] == "deux",
        "every worker dropping its cached /cached/2",
    )
    assert all(r.headers.get("x-cache") != "HIT" for r in seen.values())


def test_a_revoked_key_is_refused_by_every_worker(served: Served, module_db_url: str) -> None:
    async def on_db(work: Callable[[asyncpg.Connection], Any]) -> Any:
        conn = await asyncpg.connect(module_db_url)
        try:
            return await work(conn)
        finally:
            await conn.close()

    key = asyncio.run(on_db(lambda c: keys.create_key(c, "worker-bot", roles=["reader"])))
    headers = {"X-API-Key": key}
    seen = served.on_each_worker(
        lambda c: c.get("/whoami", headers=headers),
        lambda r: r.status_code == 200,
        "every worker taking the new key",
    )
    assert {r.json() for r in seen.values()} == {"key:worker-bot"}
    asyncio.run(on_db(lambda c: keys.revoke_key(c, "worker-bot")))
    served.on_each_worker(
        lambda c: c.get("/whoami", headers=headers),
        lambda r: r.status_code == 401,
        "every worker refusing the revoked key",
    )


def _on_fresh_connections(served: Served, path: Callable[[int], str]) -> list[httpx.Response]:
    """GET ``path(n)`` on fresh connections until every worker answered and 3 x LIMIT calls
    were made; the answers in order."""
    answers: list[tuple[int, httpx.Response]] = []  # (worker slot, answer)

    def look() -> list[tuple[int, httpx.Response]]:
        with served.client() as client:  # a fresh connection: either worker may take it
            worker = served.worker_of(client)
            if worker is not None:
                answers.append((worker["index"], client.get(path(len(answers)))))
        return answers

    poll(
        look,
        lambda a: len(a) >= 3 * LIMIT and len({slot for slot, _ in a}) == COUNT,
        "calls answered by every worker",
    )
    return [r for _, r in answers]


def test_a_rate_limit_holds_for_the_server_whichever_worker_answers(served: Served) -> None:
    answers = _on_fresh_connections(served, lambda n: "/limited")
    allowed = [r for r in answers if r.status_code == 200]
    assert len(allowed) == LIMIT, [r.status_code for r in answers]
    assert [r.headers["ratelimit-remaining"] for r in allowed] == [
        str(n) for n in range(LIMIT - 1, -1, -1)
    ]
    assert {r.status_code for r in answers} == {200, 429}
    assert "rate-limits" in " ".join(os.listdir(next(served.tmp.glob("engine-rate-*"))))


def test_the_unknown_path_limit_holds_for_the_server_too(served: Served) -> None:
    answers = _on_fresh_connections(served, lambda n: f"/nowhere/{n}")
    codes = [r.json()["code"] for r in answers]
    assert codes.count("ROUTE_NOT_FOUND") == LIMIT, codes
    assert set(codes) == {"ROUTE_NOT_FOUND", "RATE_LIMIT_EXCEEDED"}


def test_metrics_sum_every_worker_and_the_pools_fit_the_database(
    served: Served, module_db_url: str
) -> None:
    sent = {1: 3, 2: 4}  # requests to send to each worker's slot
    counted: list[int] = []

    def send(client: httpx.Client) -> httpx.Response:
        worker = served.worker_of(client)
        assert worker is not None
        answers = [client.get("/counted") for _ in range(sent[worker["index"]])]
        counted.append(len(answers))
        return answers[-1]

    served.on_each_worker(send, lambda r: r.status_code == 200)

    def scrape() -> str:
        with served.client() as client:
            return client.get("/metrics").text  # whichever worker answers: the sum of both

    # each worker's counts reach the files within metrics.SETTLE_S
    key = (("method", "GET"), ("route", "/counted"), ("status", "2xx"))
    poll(
        scrape,
        lambda p: _samples(p, "engine_http_requests_total").get(key) == sum(counted),
        "every worker's requests counted",
        timeout_s=SEEN_S,
    )
    assert sum(counted) >= sum(sent.values())
    # what a worker holds reaches the files every MIRROR_INTERVAL_S: one series per worker
    pids = {str(pid) for pid in served.workers().values()}
    page = poll(scrape, lambda p: _pids(p) == pids, "every worker's figures", timeout_s=SEEN_S)
    # ENGINE_POOL_MAX_SIZE=500 asked; each worker got pools the database can hold
    limit = DB(module_db_url).fetchrow(workers.CONNECTION_LIMIT)
    free = limit["max_connections"] - limit["reserved"]
    pool_max = _samples(page, "engine_pool_max_size")  # summed over the workers
    opened_at_most = sum(pool_max.values()) + COUNT * DEDICATED_CONNECTIONS
    assert pool_max and opened_at_most <= free
    each = int(pool_max[(("pool", "write"),)]) // COUNT
    assert f"lowered from ENGINE_POOL_MAX_SIZE=500 to {each} connections each" in served.log()


def test_connections_opened_at_once_are_spread_over_the_workers(served: Served) -> None:
    # as a load balancer's or a load generator's pool opens them: all before any request
    served.workers()
    conns = [http.client.HTTPConnection("127.0.0.1", served.port, timeout=30) for _ in range(32)]
    try:
        for conn in conns:
            conn.connect()
        slots = []
        for conn in conns:  # each connection asks which worker holds it
            conn.request("GET", "/health/ready")
            answer = conn.getresponse()
            assert answer.status == 200
            slots.append(json.loads(answer.read())["worker"]["index"])
    finally:
        for conn in conns:
            conn.close()
    per_worker = {slot: slots.count(slot) for slot in range(1, COUNT + 1)}
    # the kernel spreads them by their addresses' hash (SO_REUSEPORT): below 4 of 32 on one
    # worker is a chance of 3 in a million; one worker's accept taking every queued
    # connection (one shared socket) gave 32 and 0
    assert min(per_worker.values()) >= 4, per_worker


def test_a_worker_that_dies_is_replaced(served: Served) -> None:
    before = served.workers()
    os.kill(before[2], signal.SIGKILL)
    after = served.workers(timeout_s=START_S)  # worker 2 answering again: its replacement
    assert after[2] != before[2]
    assert after[1] == before[1]  # the other worker served on, untouched
    assert "worker 2 [" in served.log() and "died" in served.log()
    with served.client() as client:  # the dead worker's figures are gone from the sum
        assert str(before[2]) not in _pids(client.get("/metrics").text)


# ---------------------------------------------------------------------------
# start-up and shutdown
# ---------------------------------------------------------------------------


def test_sigterm_drains_every_worker_and_the_parent_exits_0(db_url: str, tmp_path: Path) -> None:
    db = DB(db_url)
    add_sleep_endpoint(db, "/sleep")
    engine = Served(db_url, tmp_path, "--workers", str(COUNT), "--migrate")
    try:
        pids = engine.workers()
        folders = list(engine.tmp.glob("engine-metrics-*"))
        assert len(folders) == 1  # the workers' Prometheus folder, made for this run
        # the migrations ran once, in the parent, not once per worker
        assert engine.log().count("schema up to date") == 1, engine.log()
        slow: dict[str, Any] = {}
        idle = engine.client()
        held = engine.worker_of(idle)  # an idle keep-alive connection to one worker

        # the slow request on the held connection's worker: a worker with nothing in flight
        # closes its idle connections at once, and the held one must see the drain first
        busy = engine.client()
        for _ in range(100):  # the kernel spreads new connections over the workers
            if held is None or engine.worker_of(busy) == held:
                break
            busy.close()
            busy = engine.client()
        else:
            raise AssertionError("no connection reached the held connection's worker")

        def slow_request() -> None:
            try:
                slow["response"] = busy.get("/sleep", params={"s": 2})
            finally:
                busy.close()

        thread = threading.Thread(target=slow_request)
        thread.start()
        poll(
            lambda: db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep%' "
                "AND state = 'active' AND pid <> pg_backend_pid()"
            ),
            lambda n: n == 1,
            "the slow request running",
        )
        engine.proc.send_signal(signal.SIGTERM)
        if held is not None:  # its worker says it is draining, then closes the connection
            ready = poll(
                lambda: idle.get("/health/ready"), lambda r: r.status_code == 503, "draining"
            )
            assert ready.json()["reasons"] == ["draining"]
        thread.join(60)
        assert slow["response"].status_code == 200  # finished within the grace
        assert engine.proc.wait(60) == 0, engine.log()
        assert not any(_alive(pid) for pid in pids.values())
        assert not folders[0].exists()  # the Prometheus folder is removed
        assert engine.log().count("draining:") == COUNT
        idle.close()
    finally:
        engine.stop()


def test_one_worker_is_one_process_as_before(db_url: str, tmp_path: Path) -> None:
    engine = Served(db_url, tmp_path, "--workers", "1")
    try:
        with engine.client() as client:

            def ask() -> httpx.Response | None:
                assert engine.proc.poll() is None, engine.log()
                try:
                    return client.get("/health/ready")
                except httpx.TransportError:
                    return None  # not listening yet

            ready = poll(
                ask, lambda r: r is not None and r.status_code == 200, "ready", timeout_s=START_S
            )
        assert ready is not None and "worker" not in ready.json()
        assert _children(engine.proc.pid) == []  # no supervisor, no worker processes
        assert "workers:" not in engine.log() and "parent process" not in engine.log()
        assert not list(engine.tmp.glob("engine-metrics-*"))
    finally:
        assert engine.stop() == 0


def test_workers_that_cannot_all_fit_are_refused_in_one_line(db_url: str) -> None:
    limit = DB(db_url).fetchrow(workers.CONNECTION_LIMIT)
    count = str(limit["max_connections"])  # a worker per connection: pools of 2 cannot fit
    result = run_cli("serve", "--workers", count, url=db_url, ENGINE_JWT_SECRET=JWT_SECRET)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --workers {count} does not fit")
    assert "max_connections" in lines[0]
