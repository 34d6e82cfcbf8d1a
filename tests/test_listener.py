"""A frozen or half-open LISTEN connection is found by its ping and replaced (issue 11, item 7).

Real faults: the listen backend frozen with SIGSTOP, and a TCP path that goes
half-open (tests/faults.StallingProxy stops forwarding without closing). The
listener is driven on an event loop of its own; the last test freezes the
backend of a running engine and has a change committed meanwhile served.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from engine.listener import CLOSE_TIMEOUT_S, Listener
from tests.faults import StallingProxy, frozen
from tests.helpers import add_endpoint, poll, serve
from tests.pg import DB

CHANNEL = "engine_test_channel"
PING_S = 0.5
RELOAD_SLACK_S = 2.5  # reconnecting and the test's own polling, on a loaded machine


class Loop:
    """An event loop in a thread of its own, as the engine's is."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Any, timeout_s: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class Watched:
    """A Listener on one test channel, with what it heard and how often it reconnected."""

    def __init__(self, loop: Loop, url: str, ping_s: float = PING_S) -> None:
        self.heard: list[str] = []
        self.reloads = 0
        self.loop = loop

        def reloaded() -> None:
            self.reloads += 1

        async def make() -> Listener:
            return Listener(url, {CHANNEL: self.heard.append}, reloaded, ping_s=ping_s)

        self.listener: Listener = loop.run(make())
        loop.run(self.listener.start())

    def stop(self) -> None:
        self.loop.run(self.listener.stop())

    @property
    def bound_s(self) -> float:
        """Found dead within a ping interval and a ping timeout, then replaced."""
        return self.listener.ping_s + self.listener.ping_timeout_s + RELOAD_SLACK_S


@pytest.fixture()
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


def listen_pids(db: DB) -> list[int]:
    rows = db.fetch(
        "SELECT pid FROM pg_stat_activity "
        "WHERE application_name = 'engine-listen' AND datname = current_database()"
    )
    return [r["pid"] for r in rows]


def hears(db: DB, watched: Watched, payload: str, timeout_s: float = 5.0) -> None:
    db.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)
    poll(
        lambda: list(watched.heard), lambda heard: payload in heard, f"{payload!r} heard", timeout_s
    )


def test_the_ping_interval_is_the_setting_and_the_timeout_at_least_a_second():
    assert Listener("postgresql://unused", {}, lambda: None).ping_s == 2.0  # the setting's default
    fast = Listener("postgresql://unused", {}, lambda: None, ping_s=0.2)
    assert (fast.ping_s, fast.ping_timeout_s) == (0.2, 1.0)
    slow = Listener("postgresql://unused", {}, lambda: None, ping_s=3)
    assert slow.ping_timeout_s == 3
    with pytest.raises(ValueError):
        Listener("postgresql://unused", {}, lambda: None, ping_s=0)


@pytest.mark.slow
def test_a_frozen_listen_backend_is_replaced_and_reloaded_within_the_bound(db, db_url, loop):
    watched = Watched(loop, db_url)
    try:
        hears(db, watched, "before")
        [pid] = listen_pids(db)
        with frozen(pid):
            started = time.monotonic()
            poll(lambda: watched.reloads, lambda n: n == 1, "reconnected", watched.bound_s)
            assert time.monotonic() - started < watched.bound_s
            assert watched.listener.reconnects == 1
            # the new connection hears what is sent while the old backend is still frozen
            [new_pid] = [p for p in listen_pids(db) if p != pid]  # a new LISTEN backend
            hears(db, watched, "while frozen")
            assert watched.reloads == 1  # replaced once, not on every ping
            # stopping does not wait on a frozen backend: a short polite close, then terminated
            with frozen(new_pid):
                stopped = time.monotonic()
                watched.stop()
                assert time.monotonic() - stopped < CLOSE_TIMEOUT_S + 2
    finally:
        watched.stop()


@pytest.mark.slow
def test_a_half_open_tcp_path_is_replaced_and_reloaded_within_the_bound(db, db_url, loop):
    with StallingProxy(db_url) as proxy:
        watched = Watched(loop, proxy.url)
        try:
            hears(db, watched, "before")
            assert proxy.stall() == 1  # the LISTEN connection: open, silent, never closed
            db.execute("SELECT pg_notify($1, 'lost')", CHANNEL)  # held by the dead path
            started = time.monotonic()
            poll(lambda: watched.reloads, lambda n: n == 1, "reconnected", watched.bound_s)
            assert time.monotonic() - started < watched.bound_s
            hears(db, watched, "after")  # through the proxy again, on a new connection
            assert "lost" not in watched.heard  # why on_reconnect reloads in full
            assert watched.listener.reconnects == 1
        finally:
            watched.stop()


@pytest.mark.slow
def test_a_route_committed_while_the_listen_backend_is_frozen_is_served(db, db_url, make_client):
    client = serve(make_client, listen_ping_s=PING_S)
    client.wait_for("GET", "/live/frozen", 404)
    listener: Listener = client.engine.app.state.listener
    # PING_S once app.py passes ENGINE_LISTEN_PING_S to the listener; its default until then
    bound = listener.ping_s + listener.ping_timeout_s + RELOAD_SLACK_S
    [pid] = listen_pids(db)
    with frozen(pid):
        add_endpoint(db, "/live/frozen", "GET", "SELECT 'served' AS v", result={"shape": "scalar"})
        started = time.monotonic()
        response = client.wait_for("GET", "/live/frozen", 200, timeout_s=bound)
        assert response.status_code == 200 and response.json() == "served"
        assert time.monotonic() - started < bound
    health = client.get("/_engine/health").json()
    assert health["counters"]["listener_reconnects"] == 1
    # and notifications flow again on the new connection
    add_endpoint(db, "/live/after", "GET", "SELECT 'again' AS v", result={"shape": "scalar"})
    assert client.wait_for("GET", "/live/after", 200, timeout_s=5).json() == "again"
