"""One LISTEN connection per engine process, shared by every channel, that survives faults.

Channels: ``engine_catalog`` (rebuild the catalogue), ``engine_keys`` (reload
API keys), ``engine_cache`` (drop cached reads of a table). When the
connection drops, notifications sent meanwhile are lost, so after reconnecting
the listener calls every ``on_reconnect`` callback (reload in full, clear caches).

A dropped connection is reported by the driver at once, but a frozen backend or
a half-open TCP path (a NAT or firewall that forgot it, a host that vanished)
is not: the connection looks open and simply delivers nothing. So every
``ping_s`` (``ENGINE_LISTEN_PING_S``) the listener makes a round trip; one not
answered within ``max(1, ping_s)`` seconds means the connection is dead. It is
terminated (closing it politely would wait on the same dead path) and replaced,
so a change committed meanwhile is served within about ``ping_s + max(1, ping_s)``
plus a reload.

The connection is made to ``ENGINE_LISTEN_DATABASE_URL`` when it is set (:func:`listen_url`),
else to ``DATABASE_URL``: through PgBouncer in transaction mode a LISTEN is accepted and
then never hears a notification, so that mode refuses to start without a direct URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg

from engine import pgbouncer
from engine.settings import Settings

log = logging.getLogger("engine.listener")

PING_S = 2.0  # the default of ENGINE_LISTEN_PING_S
MIN_PING_TIMEOUT_S = 1.0  # a busy server may take a moment; a dead path never answers
MIN_CONNECT_TIMEOUT_S = 5.0
CLOSE_TIMEOUT_S = 2.0
MAX_BACKOFF_S = 5.0


def listen_url(settings: Settings, url: str) -> str:
    """Where LISTEN connects: ``ENGINE_LISTEN_DATABASE_URL``, else ``url`` (DATABASE_URL).

    Raises ``ValueError`` (one line naming both settings) with ``ENGINE_PGBOUNCER=transaction``
    and no listen URL.
    """
    pgbouncer.check(settings)
    return settings.listen_database_url or url


class Listener:
    def __init__(
        self,
        url: str,
        handlers: Mapping[str, Callable[[str], None]],
        on_reconnect: Callable[[], None],
        *,
        ping_s: float = PING_S,
    ) -> None:
        if ping_s <= 0:
            raise ValueError(f"the listener's ping interval must be positive, not {ping_s}")
        self._url = url
        self._handlers = dict(handlers)
        self._on_reconnect = on_reconnect
        self._ping_s = ping_s
        self._ping_timeout_s = max(MIN_PING_TIMEOUT_S, ping_s)
        self._connect_timeout_s = max(MIN_CONNECT_TIMEOUT_S, self._ping_timeout_s)
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.reconnects = 0

    @property
    def ping_s(self) -> float:
        """How often the connection is pinged (``ENGINE_LISTEN_PING_S``)."""
        return self._ping_s

    @property
    def ping_timeout_s(self) -> float:
        """How long a ping may take before the connection is replaced."""
        return self._ping_timeout_s

    @property
    def connected(self) -> bool:
        """Whether a LISTEN connection is open and was not found dead (readiness may ask)."""
        conn = self._conn
        return conn is not None and not conn.is_closed() and not self._lost.is_set()

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

    def _terminated(self, conn: Any) -> None:
        if conn is self._conn:  # not the one replaced (and terminated) on purpose
            self._lost.set()

    async def _connect(self) -> None:
        conn = None
        try:
            async with asyncio.timeout(self._connect_timeout_s):  # a dead path never answers
                conn = await asyncpg.connect(
                    self._url, server_settings={"application_name": "engine-listen"}
                )
                conn.add_termination_listener(self._terminated)
                for channel in self._handlers:
                    await conn.add_listener(channel, self._dispatch)
        except BaseException:
            if conn is not None:
                conn.terminate()
            raise
        self._conn = conn
        self._lost.clear()

    async def _alive(self) -> bool:
        """A round trip: a frozen backend or a half-open TCP path is never reported closed."""
        conn = self._conn
        if conn is None or conn.is_closed():
            return False
        try:
            async with asyncio.timeout(self._ping_timeout_s):
                await conn.execute("SELECT 1")
            return True
        except TimeoutError:
            log.warning(
                "the LISTEN connection did not answer a ping within %.1fs; replacing it",
                self._ping_timeout_s,
            )
            return False
        except Exception as exc:
            log.warning("the LISTEN connection failed a ping (%r); replacing it", exc)
            return False

    def _drop(self) -> None:
        """Forget the connection at once: closing it would wait on the dead path."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), CLOSE_TIMEOUT_S)
            except Exception:
                conn.terminate()

    async def _watch(self) -> None:
        backoff = 0.1
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), self._ping_s)
            if self.connected and await self._alive():
                continue
            self._drop()
            try:
                await self._connect()
            except Exception as exc:  # whatever it is, keep trying: a dead listener is worse
                log.warning("listener cannot reconnect (%r); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                self._lost.set()
                continue
            backoff = 0.1
            self.reconnects += 1
            log.warning("listener reconnected; reloading in full")
            self._on_reconnect()
