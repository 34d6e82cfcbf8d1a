"""One LISTEN connection per engine process, shared by every channel, that survives faults.

Channels: ``engine_catalog`` (rebuild the catalogue), ``engine_keys`` (reload
API keys), ``engine_cache`` (drop cached reads of a table). When the
connection drops, notifications sent meanwhile are lost, so after reconnecting
the listener calls every ``on_reconnect`` callback (reload in full, clear caches).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg

log = logging.getLogger("engine.listener")

CHECK_INTERVAL_S = 1.0
PING_EVERY_CHECKS = 10
PING_TIMEOUT_S = 5.0
MAX_BACKOFF_S = 5.0


class Listener:
    def __init__(
        self,
        url: str,
        handlers: Mapping[str, Callable[[str], None]],
        on_reconnect: Callable[[], None],
    ) -> None:
        self._url = url
        self._handlers = dict(handlers)
        self._on_reconnect = on_reconnect
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reconnects = 0

    async def start(self) -> None:
        await self._connect()
        self._task = asyncio.create_task(self._watch(), name="engine-listener")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close()

    def _dispatch(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        handler = self._handlers.get(channel)
        if handler is not None:
            try:
                handler(payload)
            except Exception:  # a handler's bug must not kill the listener
                log.exception("handler for %s failed", channel)

    async def _connect(self) -> None:
        conn = await asyncpg.connect(
            self._url, server_settings={"application_name": "engine-listen"}
        )
        try:
            conn.add_termination_listener(lambda _c: self._lost.set())
            for channel in self._handlers:
                await conn.add_listener(channel, self._dispatch)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        self._lost.clear()

    async def _alive(self) -> bool:
        """A round trip: a half-open TCP connection is not always reported as closed."""
        conn = self._conn
        if conn is None or conn.is_closed():
            return False
        try:
            await asyncio.wait_for(conn.execute("SELECT 1"), PING_TIMEOUT_S)
            return True
        except Exception:
            return False

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)

    async def _watch(self) -> None:
        backoff = 0.1
        checks = 0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), CHECK_INTERVAL_S)
            checks += 1
            conn = self._conn
            healthy = not self._lost.is_set() and conn is not None and not conn.is_closed()
            if healthy and checks % PING_EVERY_CHECKS == 0:
                healthy = await self._alive()
            if healthy:
                continue
            await self._close()
            try:
                await self._connect()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("listener cannot reconnect (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                self._lost.set()
                continue
            backoff = 0.1
            self.reconnects += 1
            log.warning("listener reconnected; reloading in full")
            self._on_reconnect()
