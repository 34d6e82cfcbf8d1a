"""``serve`` before the database answers (engine/boot.py), with the real fault: a
PostgreSQL of the test's own, stopped before the engine starts and started again.

The engine listens at once: ``/health/live`` 200, ``/health/ready`` 503 with its
reasons, every path needing the database 503 ``DATABASE_CONNECTION_ERROR`` with
``Retry-After``; it retries with capped back-off and serves once the database
answers. A database that refuses us for good (wrong password, unknown role or
database) stops ``serve`` at once with one line.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.boot import delays
from tests.engine_server import JWT_SECRET, free_port
from tests.faults import OwnServer
from tests.helpers import add_endpoint, assert_problem, poll, run_cli
from tests.pg import DB, with_database


class EngineProcess:
    """``python -m engine serve [args]`` against ``url``, its stderr in a file."""

    def __init__(self, url: str, folder: Path, *args: str) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
        env.update(
            DATABASE_URL=url,
            ENGINE_JWT_SECRET=JWT_SECRET,
            ENGINE_PORT=str(self.port),
            ENGINE_LOG_LEVEL="INFO",
            ENGINE_ACCESS_LOG="off",
        )
        self.err_path = folder / f"stderr-{self.port}.txt"
        self._err = open(self.err_path, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._err,
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)
        poll(self._live, bool, "serve listening with the database down", timeout_s=60)

    def _live(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"serve exited {self.proc.returncode}: {self.log()}")
        try:
            return self.http.get("/health/live").status_code == 200
        except httpx.TransportError:
            return False

    def log(self) -> str:
        return self.err_path.read_text()

    def status(self, path: str) -> int:
        return self.http.get(path).status_code

    def wait(self, path: str, status: int, timeout_s: float = 60) -> httpx.Response:
        """Poll ``path`` until it answers ``status``; at the deadline, fail with the log."""
        deadline = time.monotonic() + timeout_s
        while True:
            answer = self.http.get(path)
            if answer.status_code == status:
                return answer
            if time.monotonic() > deadline:
                raise AssertionError(f"{path}: {answer.text}\n{self.log()}")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 20) -> int:
        """SIGTERM, as a supervisor stops it; its exit status."""
        self.http.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        finally:
            self._err.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._err.close()


@pytest.fixture()
def engines() -> Any:
    started: list[EngineProcess] = []
    yield started
    for engine in started:
        engine.kill()  # a test that failed midway leaves no process behind


def assert_not_booted(engine: EngineProcess, path: str) -> None:
    """What an engine whose database has not answered yet says, path by path."""
    assert engine.status("/health/live") == 200
    ready = engine.http.get("/health/ready")
    assert ready.status_code == 503 and ready.headers["retry-after"]
    body = ready.json()
    assert body["status"] == "not_ready"
    assert "catalogue not loaded" in body["reasons"]
    assert any(r.startswith("database unreachable (") for r in body["reasons"]), body
    answer = engine.http.get(path)
    assert_problem(answer, 503, "DATABASE_CONNECTION_ERROR")
    assert answer.headers["retry-after"]
    for own in ("/_engine/health", "/openapi.json", "/admin/v1/endpoints"):  # need the boot
        assert_problem(engine.http.get(own), 503, "DATABASE_CONNECTION_ERROR")
    assert engine.status("/metrics") == 200  # the process's figures are empty, never a 500
    assert engine.http.options(path).status_code == 503  # CORS reads no catalogue yet


def test_back_off_doubles_up_to_its_cap():
    assert list(itertools.islice(delays(0.5, 10), 8)) == [0.5, 1, 2, 4, 8, 10, 10, 10]


@pytest.mark.slow
def test_serve_listens_without_the_database_and_serves_once_it_answers(
    own_server: OwnServer, engines: list[EngineProcess], tmp_path: Path
):
    add_endpoint(DB(own_server.url), "/boot/word", sql="SELECT 'hello' AS word")
    own_server.stop()
    engine = EngineProcess(own_server.url, tmp_path)
    engines.append(engine)
    assert_not_booted(engine, "/boot/word")
    poll(
        engine.log,
        lambda log: "boot: opening the pools failed" in log,
        "a line per failed attempt",
        timeout_s=30,
    )
    own_server.start()
    assert engine.wait("/boot/word", 200).json() == [{"word": "hello"}]
    engine.wait("/health/ready", 200, timeout_s=10)
    assert engine.status("/_engine/health") == 200
    assert engine.stop() == 0
    log = engine.log()
    assert "the database does not answer" in log  # the pre-flight's warning
    assert "booted after" in log
    assert "Traceback" not in log


@pytest.mark.slow
def test_serve_migrate_waits_for_the_database(
    own_server: OwnServer, engines: list[EngineProcess], tmp_path: Path
):
    admin = DB(own_server.url)
    admin.execute("CREATE DATABASE boot_fresh")  # never migrated
    fresh = with_database(own_server.url, "boot_fresh")
    own_server.stop()
    engine = EngineProcess(fresh, tmp_path, "--migrate")
    engines.append(engine)
    assert_not_booted(engine, "/anything")
    poll(engine.log, lambda log: "boot: migrating failed" in log, "the retried migration", 30)
    own_server.start()
    engine.wait("/health/ready", 200)
    assert DB(fresh).fetchval("SELECT count(*) FROM engine_schema_migrations") > 0
    assert_problem(engine.http.get("/anything"), 404, "ROUTE_NOT_FOUND")  # catalogue loaded
    assert engine.stop() == 0
    assert "Traceback" not in engine.log()


@pytest.mark.slow
def test_sigterm_while_waiting_for_the_database_exits_promptly(
    own_server: OwnServer, engines: list[EngineProcess], tmp_path: Path
):
    own_server.stop()
    engine = EngineProcess(own_server.url, tmp_path)
    engines.append(engine)
    started = time.monotonic()
    assert engine.stop(timeout_s=15) == 0
    assert time.monotonic() - started < 15  # a generous bound: the boot task is cancelled
    assert "Traceback" not in engine.log()


def require_password(server: OwnServer, role: str, password: str) -> None:
    """A login role that must give its password: the embedded server trusts every local
    connection (pg_hba.conf), so a line for this role goes first, then a reload."""
    db = DB(server.url)
    db.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    hba = Path(server.handle.pgdata) / "pg_hba.conf"
    hba.write_text(f"local all {role} scram-sha-256\n" + hba.read_text())
    db.execute("SELECT pg_reload_conf()")


def with_user(url: str, user: str, password: str = "") -> str:
    return url.replace("postgres:@", f"{user}:{password}@", 1)


@pytest.mark.slow
def test_a_database_that_refuses_us_stops_serve_with_one_line(own_server: OwnServer):
    require_password(own_server, "boot_pw", "right")
    refusals = {
        "wrong password": (
            with_user(own_server.url, "boot_pw", "wrong"),
            'password authentication failed for user "boot_pw"',
        ),
        "unknown role": (with_user(own_server.url, "nobody_here"), 'role "nobody_here"'),
        "unknown database": (with_database(own_server.url, "no_such_db"), '"no_such_db"'),
    }
    for what, (url, says) in refusals.items():
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
        env.update(
            DATABASE_URL=url,
            ENGINE_JWT_SECRET=JWT_SECRET,
            ENGINE_PORT=str(free_port()),
            ENGINE_LOG_LEVEL="INFO",
        )
        result = subprocess.run(
            [sys.executable, "-m", "engine", "serve"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,  # a generous bound: no waiting for a database that refused
        )
        assert result.returncode == 1, (what, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (what, result.stderr)
        assert lines[0].startswith("error: the database refused the connection: "), lines
        assert says in lines[0] and "DATABASE_URL" in lines[0], lines


@pytest.mark.slow
def test_a_password_refused_after_the_start_is_an_error_line_and_retried(
    own_server: OwnServer, engines: list[EngineProcess], tmp_path: Path
):
    require_password(own_server, "boot_pw", "right")
    add_endpoint(DB(own_server.url), "/boot/word", sql="SELECT 'hello' AS word")
    DB(own_server.url).execute("ALTER ROLE boot_pw SUPERUSER")  # owns nothing: reads everything
    DB(own_server.url).execute("ALTER ROLE boot_pw PASSWORD 'changed'")  # while we wait
    own_server.stop()
    engine = EngineProcess(with_user(own_server.url, "boot_pw", "right"), tmp_path)
    engines.append(engine)
    own_server.start()
    poll(
        engine.log,
        lambda log: (
            "ERROR engine.boot: boot: opening the pools failed (InvalidPasswordError" in log
        ),
        "the refusal logged as an error",
        timeout_s=60,
    )
    assert_problem(engine.http.get("/boot/word"), 503, "DATABASE_CONNECTION_ERROR")
    assert engine.status("/health/live") == 200
    DB(own_server.url).execute("ALTER ROLE boot_pw PASSWORD 'right'")  # fixed: the retry boots
    engine.wait("/boot/word", 200)
    assert engine.stop() == 0
    assert "Traceback" not in engine.log()


@pytest.mark.slow
def test_an_unmigrated_database_is_waited_for_until_migrated(
    own_server: OwnServer, engines: list[EngineProcess], tmp_path: Path
):
    DB(own_server.url).execute("CREATE DATABASE boot_bare")
    bare = with_database(own_server.url, "boot_bare")
    engine = EngineProcess(bare, tmp_path)  # the database answers; its meta-schema is missing
    engines.append(engine)
    ready = engine.wait("/health/ready", 503)
    assert ready.json()["reasons"] == ["catalogue not loaded"]  # the database itself answers
    assert_problem(engine.http.get("/anything"), 503, "DATABASE_CONNECTION_ERROR")
    poll(engine.log, lambda log: "run python -m engine migrate" in log, "the hint", 30)
    migrated = run_cli("migrate", url=bare)
    assert migrated.returncode == 0, migrated.stderr
    engine.wait("/health/ready", 200)
    assert_problem(engine.http.get("/anything"), 404, "ROUTE_NOT_FOUND")
    assert engine.stop() == 0
    assert "Traceback" not in engine.log()
