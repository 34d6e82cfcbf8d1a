"""Benchmarks: the engine against a hand-written Starlette app, in the same session.

Both serve the same two endpoints (one row by primary key; a list of 50 rows)
from the same PostgreSQL, each in its own single-worker uvicorn process, driven
by the same small closed-loop HTTP/1.1 load generator. Results are medians of
several rounds, printed as ratios (engine / baseline); absolute numbers on a
noisy 2-core machine mean little, ratios in one session mean more.

    python bench/run.py [--seconds 3] [--rounds 3] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import migrations, pgserver  # noqa: E402

SETUP = """
DROP TABLE IF EXISTS bench_items;
CREATE TABLE bench_items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2) NOT NULL,
                          created_at timestamptz NOT NULL DEFAULT now());
INSERT INTO bench_items (id, name, price)
SELECT g, 'item ' || g, (g % 1000) / 10.0 FROM generate_series(1, 10000) g;
ANALYZE bench_items;
DELETE FROM api_endpoint_mappings WHERE endpoint_path LIKE '/bench/%';
INSERT INTO api_endpoint_mappings (endpoint_path, http_method, service_name, database_operation,
    query_template, query_parameters, result_mapping, requires_auth, cache_enabled,
    rate_limit_per_minute)
VALUES
('/bench/items/{id}', 'GET', 'bench', 'SELECT',
 'SELECT id, name, price, created_at FROM bench_items WHERE id = $1',
 '[{"name": "id", "in": "path", "type": "integer"}]', '{"shape": "object"}', false, false, NULL),
('/bench/items', 'GET', 'bench', 'SELECT',
 'SELECT id, name, price, created_at FROM bench_items ORDER BY id LIMIT $1',
 '[{"name": "limit", "in": "query", "type": "integer", "default": 50}]', '{"shape": "list"}', false, false,
 NULL);
"""

SCENARIOS = {"one row by id": "/bench/items/{n}", "list of 50 rows": "/bench/items?limit=50"}


async def _prepare(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrations.migrate(conn)
        await conn.execute(SETUP)
    finally:
        await conn.close()


async def _one_connection(
    port: int, paths: list[str], deadline: float, latencies: list[float]
) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    try:
        while time.perf_counter() < deadline:
            path = paths[done % len(paths)]
            started = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            status = int(head.split(b" ", 2)[1])
            await reader.readexactly(length)
            if status != 200:
                raise RuntimeError(f"{path} answered {status}")
            latencies.append(time.perf_counter() - started)
            done += 1
    finally:
        writer.close()
    return done


async def load(port: int, template: str, seconds: float, connections: int) -> tuple[float, float]:
    """(requests per second, median latency ms) of a closed-loop run."""
    paths = [template.format(n=1 + (i * 7919) % 10000) for i in range(1000)]
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    counts = await asyncio.gather(
        *(
            _one_connection(port, paths[i:] + paths[:i], deadline, latencies)
            for i in range(connections)
        )
    )
    elapsed = time.perf_counter() - started
    return sum(counts) / elapsed, statistics.median(latencies) * 1000


def _serve(app: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,  # the engine's access log (on by default, as users run it)
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            import socket

            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{app} did not start")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()

    handle = None
    url = os.environ.get("DATABASE_URL")
    if not url:
        handle = pgserver.start(
            Path(tempfile.mkdtemp(prefix="engine-bench-")) / "data", delete_on_exit=True
        )
        url = handle.get_uri()
    asyncio.run(_prepare(url))

    env = {
        **os.environ,
        "DATABASE_URL": url,
        "ENGINE_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    apps = {
        "engine": ("bench.engine_app:app", 18001),
        "baseline": ("bench.baseline_app:app", 18002),
    }
    procs = {name: _serve(app, port, env) for name, (app, port) in apps.items()}
    try:
        print(f"{'scenario':<18}{'server':<10}{'req/s (median)':>16}{'p50 ms':>10}")
        for scenario, template in SCENARIOS.items():
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in apps}
            for _, port in apps.values():  # warm up
                asyncio.run(load(port, template, 0.5, args.connections))
            for _ in range(args.rounds):
                for name, (_, port) in apps.items():  # interleaved, so drift hits both
                    results[name].append(
                        asyncio.run(load(port, template, args.seconds, args.connections))
                    )
            medians = {}
            for name, runs in results.items():
                rps = statistics.median(r for r, _ in runs)
                p50 = statistics.median(p for _, p in runs)
                medians[name] = (rps, p50)
                print(f"{scenario:<18}{name:<10}{rps:>16.0f}{p50:>10.2f}")
            ratio = medians["engine"][0] / medians["baseline"][0]
            print(f"{scenario:<18}{'ratio':<10}{ratio:>15.2f}x  (engine throughput / hand-written)")
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(10)
        if handle is not None:
            handle.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
