"""Running the engine on a real socket for a test, and a client that knows its tokens."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import httpx

from engine.app import create_app
from engine.auth import mint_token
from engine.server import EngineServer, engine_config
from engine.settings import Settings

JWT_SECRET = "test-secret-that-is-long-enough-for-hs256"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EngineClient(httpx.Client):
    """httpx client bound to one running engine; ``token()`` mints bearer tokens."""

    engine: RunningEngine

    def token(
        self,
        sub: str = "tester",
        *,
        tenant: Any = 1,
        roles: tuple[str, ...] = (),
        permissions: tuple[str, ...] = (),
        ttl_s: int = 600,
        **extra: Any,
    ) -> str:
        return mint_token(
            JWT_SECRET,
            subject=sub,
            roles=roles,
            permissions=permissions,
            tenant_id=tenant,
            ttl_s=ttl_s,
            extra=extra,
        )

    def auth(self, **kwargs: Any) -> dict[str, str]:
        """Headers with a bearer token (same arguments as :meth:`token`)."""
        return {"Authorization": f"Bearer {self.token(**kwargs)}"}

    def wait_for(
        self,
        method: str,
        path: str,
        status: int,
        timeout_s: float = 5.0,
        code: str | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Poll until ``method path`` answers ``status`` (and error ``code``, if given)."""
        deadline = time.monotonic() + timeout_s
        while True:
            response = self.request(method, path, **kwargs)
            done = response.status_code == status and (
                code is None or response.json().get("code") == code
            )
            if done or time.monotonic() > deadline:
                return response
            time.sleep(0.05)


class RunningEngine:
    """The engine's server (as ``serve`` runs it) in a background thread, on a free loopback
    port."""

    def __init__(self, database_url: str, *, http: str = "auto", **overrides: Any) -> None:
        """``overrides`` are settings; ``http`` is uvicorn's implementation (auto, httptools,
        h11)."""
        overrides.setdefault("jwt_secret", JWT_SECRET)
        overrides.setdefault("reload_debounce_ms", 20)
        overrides.setdefault("pool_max_size", 4)
        self.settings = Settings(database_url=database_url, **overrides)
        self.app = create_app(self.settings, database_url)
        self.port = free_port()
        # the server ``serve`` runs: header timeout, connection cap, drain (engine.server)
        config = engine_config(
            self.app, http=http, host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = EngineServer(config, self.settings)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the engine did not start")
            time.sleep(0.02)
        self.client = EngineClient(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        self.client.engine = self

    @property
    def services(self) -> Any:
        return self.app.state.services

    def run(self, coro: Any) -> Any:
        """Run a coroutine on the server's event loop (e.g. flush the error log)."""
        loop = self.server_loop
        return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

    @property
    def server_loop(self) -> asyncio.AbstractEventLoop:
        return self.app.state.loop

    def flush_errors(self) -> None:
        self.run(self.services.errorlog.flush())

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(15)
