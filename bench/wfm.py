"""The WFM domain at volume: generating scale-1 data, and the contact-statistics aggregation.

    python bench/wfm.py [--scale 1] [--runs 7]

Loads ``seed wfm --scale N`` into a fresh embedded PostgreSQL (or DATABASE_URL),
then asks ``GET /api/v1/db/database/contact-statistics`` for distinct 30-day and
whole-year windows (so every call misses the cache) through a running engine,
and runs the same template directly with asyncpg. Prints medians and the
ratio engine / direct SQL; the document's target is well under 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import migrations, pgserver  # noqa: E402
from engine.auth import mint_token  # noqa: E402
from engine.database import init_connection  # noqa: E402

PATH = "/api/v1/db/database/contact-statistics"
SECRET = "bench-secret-bench-secret-bench-secret"


async def _load(url: str, scale: int) -> tuple[float, int, dict]:
    conn = await asyncpg.connect(url)
    try:
        await init_connection(conn)
        await migrations.migrate(conn)
        await migrations.seed(conn, ["wfm"])
        started = time.perf_counter()
        await migrations.seed(conn, ["wfm"], scale=scale)
        seconds = time.perf_counter() - started
        rows = await conn.fetchval("SELECT count(*) FROM contact_statistics")
        row = await conn.fetchrow(
            "SELECT query_template, query_parameters FROM api_endpoint_mappings "
            "WHERE endpoint_path = $1 AND http_method = 'GET'",
            PATH,
        )
        span = await conn.fetchrow(
            "SELECT min(interval_start) AS first, max(interval_start) AS last FROM contact_statistics"
        )
    finally:
        await conn.close()
    return (
        seconds,
        rows,
        {"sql": row["query_template"], "first": span["first"], "last": span["last"]},
    )


def _windows(first: dt.datetime, last: dt.datetime, days: int, runs: int) -> list[tuple[str, str]]:
    out = []
    step = max(1, ((last - first).days - days) // max(runs, 1))
    for i in range(runs):
        start = (first + dt.timedelta(days=i * step)).date()
        out.append((start.isoformat(), (start + dt.timedelta(days=days)).isoformat()))
    return out


async def _direct(
    url: str, sql: str, windows: list[tuple[str, str]], granularity: str
) -> list[float]:
    conn = await asyncpg.connect(url)
    times = []
    try:
        for start, end in windows:
            args = [
                1,
                dt.datetime.fromisoformat(start).replace(tzinfo=dt.UTC),
                dt.datetime.fromisoformat(end).replace(tzinfo=dt.UTC),
                granularity,
                None,
            ]
            began = time.perf_counter()
            await conn.fetch(f"SELECT * FROM ({sql}) AS q LIMIT 5001", *args)
            times.append(time.perf_counter() - began)
    finally:
        await conn.close()
    return times


def _engine(url: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "ENGINE_JWT_SECRET": SECRET,
        "ENGINE_PORT": str(port),
        "ENGINE_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(  # stdout: the access log, on by default as users run it
        [sys.executable, "-m", "engine", "serve"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_engine/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("engine did not start")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    handle = None
    url = os.environ.get("DATABASE_URL")
    if not url:
        handle = pgserver.start(
            Path(tempfile.mkdtemp(prefix="engine-bench-wfm-")) / "data", delete_on_exit=True
        )
        url = handle.get_uri()
    try:
        seconds, rows, info = asyncio.run(_load(url, args.scale))
        print(
            f"seed wfm --scale {args.scale}: {rows:,} contact_statistics rows, generated in {seconds:.1f} s"
        )
        port = 18021
        proc = _engine(url, port)
        token = mint_token(SECRET, subject="bench", tenant_id=1, roles=["wfm_admin"])
        headers = {"Authorization": f"Bearer {token}"}
        try:
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60
            ) as http:
                for label, days, granularity in (
                    ("30 days by hour", 30, "hour"),
                    ("whole year by day", 350, "day"),
                ):
                    windows = _windows(info["first"], info["last"], days, args.runs)
                    engine_times = []
                    for start, end in windows:
                        began = time.perf_counter()
                        r = http.get(
                            PATH,
                            params={
                                "from": start,
                                "to": end,
                                "granularity": granularity,
                                "limit": 5000,
                            },
                        )
                        engine_times.append(time.perf_counter() - began)
                        if r.status_code != 200 or r.headers.get("x-cache") != "MISS":
                            raise RuntimeError(
                                f"{r.status_code} {r.headers.get('x-cache')} {r.text[:200]}"
                            )
                    direct = asyncio.run(_direct(url, info["sql"], windows, granularity))
                    e, d = statistics.median(engine_times), statistics.median(direct)
                    print(
                        f"{label:<20} engine p50 {e * 1000:8.1f} ms   direct SQL p50 {d * 1000:8.1f} ms   "
                        f"ratio {e / d:5.2f}x   ({len(r.json()['data'])} rows/answer)"
                    )
                warm = []
                for _ in range(args.runs):
                    began = time.perf_counter()
                    http.get(
                        PATH,
                        params={
                            "from": windows[0][0],
                            "to": windows[0][1],
                            "granularity": "day",
                            "limit": 5000,
                        },
                    )
                    warm.append(time.perf_counter() - began)
                print(
                    f"{'cached (same call)':<20} engine p50 {statistics.median(warm) * 1000:8.1f} ms"
                )
        finally:
            proc.terminate()
            proc.wait(15)
    finally:
        if handle is not None:
            handle.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
