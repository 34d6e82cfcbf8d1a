"""A 1,000,000-record NDJSON bulk import through HTTP, against the engine's defaults.

    python bench/bulk.py [--records 1000000] [--runs 1]

Starts a PostgreSQL of its own (or uses DATABASE_URL), creates a fresh table and one
bulk row (``bulk_import``: a timestamp, integers, text and a numeric, checked by a
JSON Schema of one record), runs ``python -m engine serve`` with its default
settings, writes the records to a file first (generating them is not timed) and
uploads it with curl (a C client, so the two cores are left to the engine and the
database). Prints records/s and the engine's resident memory before, at its peak
during, and after the import; the figures go to ``bench/results/bulk.json``. The
target: over 50,000 records/s, and memory that does not grow with the body (the
body is streamed, never held). Exit 1 when the import fails or the target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.servers import RssSampler, rss_kb, start_engine, stop, wait_ready  # noqa: E402
from engine import migrations, pgserver  # noqa: E402
from engine.auth import mint_token  # noqa: E402

SECRET = "bench-secret-bench-secret-bench-secret"
RESULTS = ROOT / "bench" / "results"
PATH = "/bench/bulk/contact-statistics"
TARGET = 50_000

SETUP = """
DROP TABLE IF EXISTS bench_contact_statistics;
CREATE TABLE bench_contact_statistics (
    tenant_id integer NOT NULL,
    service_id integer NOT NULL,
    interval_start timestamptz NOT NULL,
    calls_offered integer NOT NULL,
    calls_handled integer NOT NULL,
    aht_seconds numeric(10, 2),
    queue text NOT NULL,
    PRIMARY KEY (service_id, interval_start)
);
DELETE FROM api_endpoint_mappings WHERE service_name = 'bench_bulk';
"""
ROW = """
INSERT INTO api_endpoint_mappings (endpoint_path, http_method, service_name, database_operation,
    target_table, query_template, query_parameters, result_mapping, requires_auth,
    cache_enabled, rate_limit_per_minute, bulk_import, statement_timeout_ms)
VALUES ($1, 'POST', 'bench_bulk', 'INSERT', 'bench_contact_statistics',
$sql$INSERT INTO bench_contact_statistics
    (tenant_id, service_id, interval_start, calls_offered, calls_handled, aht_seconds, queue)
SELECT $1, service_id, interval_start, calls_offered, calls_handled, aht_seconds, queue
FROM bulk_records$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer"}]',
'{"shape": "none", "status": 201}', TRUE, FALSE, NULL,
'{"formats": ["ndjson", "csv"], "columns": {"interval_start": "timestamp", "service_id": "integer",
  "calls_offered": "integer", "calls_handled": "integer", "aht_seconds": "number",
  "queue": "string"}}', 120000)
RETURNING id
"""
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["interval_start", "service_id", "calls_offered", "calls_handled", "queue"],
    "properties": {
        "interval_start": {"type": "string", "format": "date-time"},
        "service_id": {"type": "integer", "minimum": 1},
        "calls_offered": {"type": "integer", "minimum": 0, "maximum": 1000000},
        "calls_handled": {"type": "integer", "minimum": 0, "maximum": 1000000},
        "aht_seconds": {"type": "number", "minimum": 0, "maximum": 86400},
        "queue": {"type": "string", "minLength": 1, "maxLength": 40},
    },
}


async def _prepare(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrations.migrate(conn)
        await conn.execute(SETUP)
        mid = await conn.fetchval(ROW, PATH)
        await conn.execute(
            "INSERT INTO api_validation_schemas (endpoint_mapping_id, schema_name, "
            "validation_schema, applies_to) VALUES ($1, 'bench_bulk_record', $2::jsonb, 'body')",
            mid,
            json.dumps(SCHEMA),
        )
    finally:
        await conn.close()


async def _reset(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        count = await conn.fetchval("SELECT count(*) FROM bench_contact_statistics")
        await conn.execute("TRUNCATE bench_contact_statistics")
        return int(count)
    finally:
        await conn.close()


def _write_records(path: Path, n: int, first_service: int = 1) -> int:
    """n records: 300 services x 15-minute intervals, realistic values."""
    base = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    queues = ("support", "sales", "billing", "retention", "technical", "vip")
    with path.open("wb") as out:
        buffer = []
        for i in range(n):
            offered = (i * 7919) % 400
            buffer.append(
                orjson.dumps(
                    {
                        "interval_start": (
                            base + dt.timedelta(minutes=15 * (i // 300))
                        ).isoformat(),
                        "service_id": first_service + i % 300,
                        "calls_offered": offered,
                        "calls_handled": offered - offered // 9,
                        "aht_seconds": round(120 + (i * 31) % 600 + (i % 100) / 100, 2),
                        "queue": queues[i % len(queues)],
                    }
                )
            )
            if len(buffer) == 10_000:
                out.write(b"\n".join(buffer) + b"\n")
                buffer = []
        if buffer:
            out.write(b"\n".join(buffer) + b"\n")
    return path.stat().st_size


def _upload(port: int, token: str, path: Path) -> tuple[int, dict, float]:
    started = time.perf_counter()
    out = subprocess.run(
        [
            "curl", "-sS", "--max-time", "900", "-o", "-", "-w", "\n%{http_code}",
            "-H", f"Authorization: Bearer {token}",
            "-H", "Content-Type: application/x-ndjson",
            "-H", "Expect:",
            "--data-binary", f"@{path}",
            f"http://127.0.0.1:{port}{PATH}",
        ],
        capture_output=True,
        text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    body, _, status = out.stdout.rpartition("\n")
    try:
        answer = json.loads(body)
    except json.JSONDecodeError:
        answer = {"raw": body[:500], "stderr": out.stderr[:500]}
    return int(status or 0), answer, seconds


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    if shutil.which("curl") is None:
        print("curl is needed: apt-get install curl", file=sys.stderr)
        return 2

    handle = None
    url = os.environ.get("DATABASE_URL")
    folder = Path(tempfile.mkdtemp(prefix="engine-bulk-"))
    if not url:
        handle = pgserver.start(folder / "data", delete_on_exit=True)
        url = handle.get_uri()
    asyncio.run(_prepare(url))
    warm_file, big_file = folder / "warm.ndjson", folder / "records.ndjson"
    _write_records(warm_file, 20_000, first_service=10_000)
    size = _write_records(big_file, args.records)
    engine = start_engine("engine", url, SECRET, folder)  # default settings, as users run it
    port, pid = engine.port, engine.process.pid
    runs = []
    try:
        wait_ready(engine, "/health/ready", ok_only=True, timeout_s=60)
        token = mint_token(SECRET, subject="bench", roles=[], tenant_id=3, ttl_s=3600)
        status, answer, _ = _upload(port, token, warm_file)  # warm-up: code paths, pool
        if status != 201:
            raise RuntimeError(f"the warm-up import failed: {status} {answer}")
        asyncio.run(_reset(url))
        for _ in range(args.runs):
            rss_before = rss_kb(pid)
            with RssSampler(pid, every_s=0.05) as sampler:
                status, answer, seconds = _upload(port, token, big_file)
            rss_after = rss_kb(pid)
            stored = asyncio.run(_reset(url))
            runs.append(
                {
                    "status": status,
                    "answer": answer,
                    "seconds": round(seconds, 2),
                    "records_per_s": round(args.records / seconds),
                    "stored": stored,
                    "rss_kb_before": rss_before,
                    "rss_kb_peak": sampler.peak,
                    "rss_kb_after": rss_after,
                }
            )
    finally:
        stop(engine)
        if handle is not None:
            handle.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
    best = max(runs, key=lambda r: r["records_per_s"])
    ok = all(r["status"] == 201 and r["stored"] == args.records for r in runs)
    result = {
        "records": args.records,
        "body_bytes": size,
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "runs": runs,
        "best_records_per_s": best["records_per_s"],
        "target_records_per_s": TARGET,
        "rss_growth_kb": best["rss_kb_peak"] - best["rss_kb_before"],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bulk.json").write_text(json.dumps(result, indent=2) + "\n")
    for r in runs:
        print(
            f"{args.records:,} records ({size / 1e6:.0f} MB NDJSON): HTTP {r['status']} in "
            f"{r['seconds']} s = {r['records_per_s']:,} records/s; stored {r['stored']:,}; "
            f"engine RSS {r['rss_kb_before'] / 1024:.1f} MB before, "
            f"{r['rss_kb_peak'] / 1024:.1f} MB at peak, {r['rss_kb_after'] / 1024:.1f} MB after"
        )
    print(f"target {TARGET:,} records/s: {'met' if best['records_per_s'] > TARGET else 'MISSED'}")
    return 0 if ok and best["records_per_s"] > TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
