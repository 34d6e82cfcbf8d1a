"""Starting and stopping the servers under test, each in a process of its own, pinned to nothing.

The engine is started as a user starts it (``python -m engine serve`` with
``DATABASE_URL`` and ``ENGINE_PORT``, every other setting at its default: access
log, metrics and all); the baselines run under uvicorn with one worker, without
uvicorn's access log (the most favourable way to run them).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workers_available() -> bool:
    """Whether ``python -m engine serve`` takes ``--workers`` (ENGINE_WORKERS)."""
    done = subprocess.run(
        [sys.executable, "-m", "engine", "serve", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return "--workers" in done.stdout


def _spawn(name: str, command: list[str], env: dict[str, str], port: int, folder: Path) -> Server:
    log = folder / f"{name}.log"
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,  # the engine's access log: written, as users run it
        stderr=log.open("w"),
        start_new_session=True,  # its workers stop with it, and a Ctrl-C here is ours
    )
    return Server(name, port, process, log)


def _environment(**settings: str) -> dict[str, str]:
    # every ENGINE_* setting at its default, whatever the calling shell has set
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    return {**env, **settings}


def start_engine(
    name: str, database_url: str, jwt_secret: str, folder: Path, workers: int | None = None
) -> Server:
    port = free_port()
    env = _environment(
        DATABASE_URL=database_url, ENGINE_PORT=str(port), ENGINE_JWT_SECRET=jwt_secret
    )
    command = [sys.executable, "-m", "engine", "serve"]
    if workers is not None:
        env["ENGINE_WORKERS"] = str(workers)
        command += ["--workers", str(workers)]
    return _spawn(name, command, env, port, folder)


def start_app(name: str, app: str, database_url: str, folder: Path) -> Server:
    port = free_port()
    env = _environment(DATABASE_URL=database_url, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "uvicorn", app, "--port", str(port)]
    command += ["--log-level", "warning", "--no-access-log"]
    return _spawn(name, command, env, port, folder)


def wait_ready(server: Server, path: str, *, ok_only: bool, timeout_s: float = 90.0) -> None:
    """Until ``path`` answers (200 if ``ok_only``, else any status); raises with the log if not."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(server.url + path, timeout=2):
                return
        except urllib.error.HTTPError:
            if not ok_only:
                return
        except OSError:
            pass
        if server.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} did not start:\n{server.tail()}")
        time.sleep(0.2)


def stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(10)


def rss_kb(pid: int) -> int:
    """A process's resident memory (VmRSS), in kB; 0 once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(match.group(1)) if match else 0


class RssSampler:
    """A process's RSS every ``every_s`` seconds on a thread, from ``with`` to its end
    (one sample more at the end): ``samples``, ``peak``."""

    def __init__(self, pid: int, every_s: float = 0.1) -> None:
        self.pid = pid
        self.every_s = every_s
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(rss_kb(self.pid))
            self._stop.wait(self.every_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(rss_kb(self.pid))
