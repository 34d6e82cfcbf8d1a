"""The HTTP server layer (engine.server): header timeout, connection cap, file limit, drain.

Real sockets against a real engine: raw sockets play the slow or idle clients (a head
sent a byte at a time, connections held open), and ``python -m engine serve`` runs as
a subprocess for the signal tests, its statements watched in ``pg_stat_activity``.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import httpx
import orjson
import pytest

from engine import server as engine_server
from tests.engine_server import JWT_SECRET, EngineClient, free_port
from tests.helpers import add_sleep_endpoint, poll
from tests.pg import DB

RUNNING_SLEEPS = """
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND state = 'active' AND query LIKE '%pg_sleep%'
  AND pid <> pg_backend_pid()
"""


# ---------------------------------------------------------------------------
# raw HTTP/1.1 on a socket we control
# ---------------------------------------------------------------------------


def connect(port: int, timeout_s: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    sock.settimeout(timeout_s)
    return sock


class Raw:
    """One client connection, kept alive across requests (h11 on a plain socket)."""

    def __init__(self, port: int, timeout_s: float = 10.0) -> None:
        self.sock = connect(port, timeout_s)
        self.conn = h11.Connection(h11.CLIENT)

    def request(self, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        """Send one request and read its whole answer: (status, headers, body)."""
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        self.sock.sendall(
            self.conn.send(h11.Request(method=method, target=path, headers=[("Host", "t")]))
        )
        self.sock.sendall(self.conn.send(h11.EndOfMessage()))
        status, headers, body = 0, {}, b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(self.sock.recv(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, headers, body
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("closed before the answer ended")

    def close(self) -> None:
        self.sock.close()


def closed_by_server(sock: socket.socket, timeout_s: float) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within ``timeout_s``."""
    sock.settimeout(timeout_s)
    try:
        while sock.recv(65536):
            pass  # an answer before the close is allowed; the close is what counts
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def dribble(sock: socket.socket, data: bytes, every_s: float, timeout_s: float) -> float | None:
    """Send ``data`` a byte every ``every_s``; seconds until the server closed, or None."""
    started = time.monotonic()
    sock.settimeout(every_s)
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass  # still open: the next byte
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            return None
    return None


# both uvicorn HTTP implementations: httptools (used when installed, as here) and h11
both_protocols = pytest.mark.parametrize("http", ["httptools", "h11"])

ENDLESS_HEAD = b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 1000


# ---------------------------------------------------------------------------
# header timeout (slowloris)
# ---------------------------------------------------------------------------


@both_protocols
def test_a_head_sent_byte_by_byte_is_closed_after_the_header_timeout(make_client, http) -> None:
    client: EngineClient = make_client(http=http, header_timeout_s=1)
    port = client.engine.port
    sock = connect(port)
    try:
        closed_after = dribble(sock, ENDLESS_HEAD, every_s=0.3, timeout_s=5)
    finally:
        sock.close()
    assert closed_after is not None, "a head dribbled for 5 s was never cut"
    assert client.engine.server.server_state.head_timeouts >= 1
    # a whole request on a fresh connection is served as before
    assert client.get("/health/live").status_code == 200


@both_protocols
def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    make_client, http
) -> None:
    client: EngineClient = make_client(http=http, header_timeout_s=1)
    sock = connect(client.engine.port)
    try:
        assert closed_by_server(sock, timeout_s=5), "an idle connection stayed open"
    finally:
        sock.close()


@both_protocols
def test_the_header_timeout_starts_again_after_each_answer(make_client, http) -> None:
    """Keep-alive: after an answer the next head has the same time; dribbling is cut.

    (uvicorn's keep-alive timer stops at the first byte, so it alone never cuts this.)
    """
    client: EngineClient = make_client(http=http, header_timeout_s=1)
    raw = Raw(client.engine.port)
    try:
        status, _, _ = raw.request("/health/live")
        assert status == 200
        closed_after = dribble(raw.sock, ENDLESS_HEAD, every_s=0.3, timeout_s=5)
    finally:
        raw.close()
    assert closed_after is not None, "the second head was dribbled for 5 s and never cut"


def answer_until_close(port: int, head: bytes) -> bytes:
    """Everything the server sends for one request on a fresh connection, until it closes."""
    sock = connect(port)
    try:
        sock.sendall(head)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data
    finally:
        sock.close()


@both_protocols
@pytest.mark.parametrize(
    "head",
    [
        b"HEAD /health/live HTTP/1.0\r\n\r\n",
        b"HEAD /health/live HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"GET /health/live HTTP/1.0\r\n\r\n",
        b"HEAD /no/such/route HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    ],
    ids=["head-http10", "head-connection-close", "get-http10", "head-catalogue-close"],
)
def test_an_answer_before_the_server_closes_the_connection_is_sent_whole(
    make_client, http, head: bytes
) -> None:
    """A load balancer's HEAD over HTTP/1.0 (or with Connection: close) gets its status line
    and headers: the head kept back to go out with the body is written before the close."""
    client: EngineClient = make_client(http=http)
    data = answer_until_close(client.engine.port, head)
    status_line, _, rest = data.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 "), data
    assert b"content-length: " in rest.lower(), data
    if head.startswith(b"GET"):
        assert data.endswith(b"}"), data  # the body came too


@both_protocols
def test_a_request_running_longer_than_the_header_timeout_is_answered(
    db: DB, make_client, http
) -> None:
    """The timer covers the head only: once it is in, the request has its own timeouts."""
    add_sleep_endpoint(db, "/sleep")
    client: EngineClient = make_client(http=http, header_timeout_s=1)
    response = client.get("/sleep", params={"s": "1.5"})
    assert response.status_code == 200, response.text
    assert "slept" in response.json()


# ---------------------------------------------------------------------------
# connection cap and the operator's reserve
# ---------------------------------------------------------------------------


def open_connections(engine: Any) -> int:
    return len(engine.server.server_state.connections)


def read_until_closed(sock: socket.socket, timeout_s: float = 5.0) -> bytes:
    sock.settimeout(timeout_s)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


@contextlib.contextmanager
def held_connections(port: int, n: int) -> Iterator[list[socket.socket]]:
    """``n`` connections that send nothing and stay open until the block ends."""
    socks = [connect(port) for _ in range(n)]
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


def get(port: int, path: str) -> httpx.Response:
    """``GET path`` on a connection of its own (never one of a pool)."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as fresh:
        return fresh.get(path)


@both_protocols
def test_beyond_max_connections_only_health_is_served_from_the_reserve(make_client, http) -> None:
    client: EngineClient = make_client(http=http, max_connections=5, header_timeout_s=60)
    engine, port = client.engine, client.engine.port
    with held_connections(port, 5):
        poll(lambda: open_connections(engine), lambda n: n == 5, "five connections accepted")
        raw = Raw(port)
        try:
            status, headers, body = raw.request("/anything")
            assert status == 503, body
            assert headers["content-type"] == "application/problem+json"
            assert int(headers["retry-after"]) > 0
            assert headers["connection"] == "close"
            problem = orjson.loads(body)
            assert problem["code"] == "TOO_MANY_CONNECTIONS" and problem["status"] == 503
            assert problem["request_id"] == headers["x-request-id"]
            assert closed_by_server(raw.sock, 5), "a reserve connection stays open after a 503"
        finally:
            raw.close()
        # the operator's reserve: health answers while the cap is reached
        live = get(port, "/health/live")
        assert live.status_code == 200 and live.json() == {"status": "alive"}
        assert get(port, "/health/ready").status_code == 200
    # the held connections are gone: everything is served again
    poll(lambda: get(port, "/anything").status_code, lambda s: s == 404, "served again")


@both_protocols
def test_beyond_the_reserve_a_connection_gets_503_at_once_and_is_closed(make_client, http) -> None:
    client: EngineClient = make_client(http=http, max_connections=2, header_timeout_s=60)
    engine, port = client.engine, client.engine.port
    everything = 2 + engine_server.RESERVE_CONNECTIONS
    with held_connections(port, everything):
        poll(lambda: open_connections(engine), lambda n: n == everything, "cap and reserve full")
        sock = connect(port)
        try:
            answer = read_until_closed(sock)  # answered without reading a request
        finally:
            sock.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 "), answer
        assert b"retry-after: " in head.lower() and b"connection: close" in head.lower()
        assert b"content-type: application/problem+json" in head.lower()
        assert orjson.loads(body)["code"] == "TOO_MANY_CONNECTIONS"
        assert open_connections(engine) <= everything
    assert get(port, "/health/live").status_code == 200


# ---------------------------------------------------------------------------
# python -m engine serve: the open-file limit and SIGTERM
# ---------------------------------------------------------------------------


class EngineProcess:
    """``python -m engine serve`` on a free port, its output in files of ``folder``."""

    def __init__(
        self, database_url: str, folder: Any, *, nofile_soft: int | None = None, **env: str
    ):
        self.port = free_port()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
        environ.update(
            DATABASE_URL=database_url,
            ENGINE_JWT_SECRET=JWT_SECRET,
            ENGINE_PORT=str(self.port),
            ENGINE_LOG_LEVEL="INFO",
            ENGINE_ACCESS_LOG="off",
            **env,
        )
        self.err_path = folder / "stderr.txt"
        self._out = open(folder / "stdout.txt", "w")  # noqa: SIM115 (closed in wait)
        self._err = open(self.err_path, "w")  # noqa: SIM115

        def lower_the_soft_limit() -> None:  # in the child, before exec: as a shell's ulimit -Sn
            if nofile_soft is not None:
                _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile_soft, hard))

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve"],
            env=environ,
            stdout=self._out,
            stderr=self._err,
            preexec_fn=lower_the_soft_limit,
        )
        try:
            poll(self._ready, bool, "the engine process ready", timeout_s=90)
        except BaseException:
            self.kill()
            raise

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the engine exited {self.proc.returncode}: {self.log()}")
        try:
            return get(self.port, "/health/ready").status_code == 200
        except httpx.TransportError:
            return False

    def log(self) -> str:
        return self.err_path.read_text()

    def nofile_limits(self) -> tuple[int, int]:
        """(soft, hard) open-file limit of the running process, as the kernel reports it."""
        for line in Path(f"/proc/{self.proc.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
        raise AssertionError("no open-file line in /proc/<pid>/limits")

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout_s)
        finally:
            self._out.close()
            self._err.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._out.close()
        self._err.close()


@pytest.fixture()
def engine_processes() -> Iterator[list[EngineProcess]]:
    started: list[EngineProcess] = []
    yield started
    for engine in started:
        engine.kill()  # a test that failed midway leaves no process behind


@pytest.mark.slow
def test_serve_raises_the_open_file_limit_to_the_hard_limit_and_logs_it(
    db_url: str, tmp_path, engine_processes
) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.skip(f"no finite hard open-file limit above 256 to raise to ({hard})")
    # a cap that cannot fit under the limit: said at start, not found out under load
    engine = EngineProcess(db_url, tmp_path, nofile_soft=256, ENGINE_MAX_CONNECTIONS=str(hard))
    engine_processes.append(engine)
    assert engine.nofile_limits() == (hard, hard)
    log = engine.log()
    assert f"open-file limit {hard} (raised from 256" in log, log
    assert "WARNING" in log and f"ENGINE_MAX_CONNECTIONS={hard}" in log, log
    engine.terminate()
    assert engine.wait(30) == 0, engine.log()


def sleeping(db: DB) -> list[int]:
    return [r["pid"] for r in db.fetch(RUNNING_SLEEPS)]


@pytest.mark.slow
def test_sigterm_drains_a_request_in_flight_while_ready_says_draining(
    db: DB, db_url: str, tmp_path, engine_processes
) -> None:
    add_sleep_endpoint(db, "/sleep", statement_timeout_ms=60000)
    engine = EngineProcess(db_url, tmp_path, ENGINE_SHUTDOWN_GRACE_S="6")
    engine_processes.append(engine)
    port = engine.port
    idle = Raw(port)  # a load balancer's keep-alive connection, open before the signal
    slow: dict[str, Any] = {}

    def three_seconds() -> None:
        slow["response"] = get(port, "/sleep?s=3")

    worker = threading.Thread(target=three_seconds)
    try:
        worker.start()
        poll(lambda: sleeping(db), bool, "the 3 s request running its statement")
        assert idle.request("/health/ready")[0] == 200
        started = time.monotonic()
        engine.terminate()
        # readiness turns 503 at once, on the connection already open
        _, headers, body = poll(
            lambda: idle.request("/health/ready"), lambda a: a[0] == 503, "ready says draining"
        )
        assert orjson.loads(body)["reasons"] == ["draining"]
        assert int(headers["retry-after"]) > 0
        assert headers["connection"] == "close"  # one answer, then the connection goes
        assert closed_by_server(idle.sock, 5)
        # no new connection is accepted
        poll(lambda: refused(port), bool, "new connections refused")
        worker.join(30)
    finally:
        idle.close()
    assert slow["response"].status_code == 200, slow["response"].text
    assert "slept" in slow["response"].json()
    assert engine.wait(30) == 0, engine.log()
    assert time.monotonic() - started < 6 + 10  # finished inside the grace, not at its end
    assert "engine stopped" in engine.log()


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.slow
def test_sigterm_cancels_a_request_past_the_grace_and_its_statement(
    db: DB, db_url: str, tmp_path, engine_processes
) -> None:
    add_sleep_endpoint(db, "/sleep", statement_timeout_ms=60000)
    engine = EngineProcess(db_url, tmp_path, ENGINE_SHUTDOWN_GRACE_S="2")
    engine_processes.append(engine)
    slow: dict[str, Any] = {}

    def thirty_seconds() -> None:
        slow["response"] = get(engine.port, "/sleep?s=30")

    worker = threading.Thread(target=thirty_seconds)
    worker.start()
    backends = poll(lambda: sleeping(db), bool, "the 30 s request running its statement")
    started = time.monotonic()
    engine.terminate()
    assert engine.wait(30) == 0, engine.log()
    assert time.monotonic() - started < 2 + 8, "the grace did not bound the shutdown"
    worker.join(10)
    # the client got a coded answer saying to retry, not a bare 500 or a cut connection
    response = slow["response"]
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["code"] == "SHUTTING_DOWN"
    # the statement was cancelled on the server: a backend whose client merely vanished
    # would sleep on for the rest of its 30 s
    poll(
        lambda: [pid for pid in sleeping(db) if pid in backends],
        lambda left: not left,
        "pg_sleep cancelled on the server",
        timeout_s=5,
    )
    assert "cancelling 1 request(s)" in engine.log()


# ---------------------------------------------------------------------------
# the drain in process, on both protocols (the signal handler's part: should_exit)
# ---------------------------------------------------------------------------


def in_background(call: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        out["result"] = call()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


@pytest.mark.slow
@both_protocols
def test_stopping_lets_a_request_finish_while_ready_says_draining(
    db: DB, make_client, http
) -> None:
    add_sleep_endpoint(db, "/sleep")
    client: EngineClient = make_client(http=http, shutdown_grace_s=10)
    engine = client.engine
    idle = Raw(engine.port)
    try:
        assert idle.request("/health/ready")[0] == 200
        thread, slow = in_background(lambda: get(engine.port, "/sleep?s=3"))
        poll(lambda: sleeping(db), bool, "the request running its statement")
        engine.server.should_exit = True  # what SIGTERM does, after marking the drain
        _, headers, body = poll(
            lambda: idle.request("/health/ready"), lambda a: a[0] == 503, "ready says draining"
        )
        assert orjson.loads(body) == {"status": "not_ready", "reasons": ["draining"]}
        assert int(headers["retry-after"]) > 0 and headers["connection"] == "close"
        thread.join(30)
    finally:
        idle.close()
    assert slow["result"].status_code == 200, slow["result"].text
    engine.thread.join(15)
    assert not engine.thread.is_alive()


@both_protocols
def test_stopping_cancels_a_request_past_the_grace_with_a_coded_503(
    db: DB, make_client, http
) -> None:
    add_sleep_endpoint(db, "/sleep", statement_timeout_ms=60000)
    client: EngineClient = make_client(http=http, shutdown_grace_s=0.5)
    engine = client.engine
    thread, slow = in_background(lambda: get(engine.port, "/sleep?s=20"))
    backends = poll(lambda: sleeping(db), bool, "the request running its statement")
    engine.server.should_exit = True
    thread.join(15)
    response = slow["result"]
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "SHUTTING_DOWN"
    assert int(response.headers["retry-after"]) > 0
    engine.thread.join(15)
    assert not engine.thread.is_alive()
    poll(
        lambda: [pid for pid in sleeping(db) if pid in backends],
        lambda left: not left,
        "pg_sleep cancelled on the server",
    )
