"""A 1,000,000-row export, NDJSON and CSV, over HTTP: the engine's memory and rows/s.

    python bench/export.py [--rows 1000000] [--runs 3]

Starts a PostgreSQL of its own (or uses DATABASE_URL), fills a realistic table
(bigint, int, text, timestamptz, numeric(12,2), a nullable text), publishes it as
two ``shape: stream`` rows (NDJSON and CSV), and runs ``python -m engine serve``
at its default settings (as a user runs it). Each export is downloaded by
``curl -o /dev/null`` (a separate process that reads and discards), while this
script samples the engine's resident memory (``VmRSS`` of /proc/<pid>/status)
every 100 ms. It prints and writes to ``bench/results/export.json``, per format:
the rows and bytes received, wall time, rows/s, and the peak RSS growth of the
engine over its RSS just before the export; the summary is the median rows/s of the
runs (three by default, the formats alternating) and the worst growth. Targets:
under 50 MB of growth and over 200,000 rows/s; exit 1 when one is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
SECRET = "export-bench-secret-export-bench-secret"  # the exports need no token; serve needs one
sys.path.insert(0, str(ROOT))

from bench.servers import RssSampler, rss_kb, start_engine, stop, wait_ready  # noqa: E402
from engine import migrations, pgserver  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MAX_GROWTH_MB = 50.0
MIN_ROWS_PER_S = 200_000

SETUP = """
DROP TABLE IF EXISTS export_rows;
CREATE TABLE export_rows (
    id bigint PRIMARY KEY,
    tenant_id int NOT NULL,
    name text NOT NULL,
    created_at timestamptz NOT NULL,
    amount numeric(12,2) NOT NULL,
    note text
);
INSERT INTO export_rows
SELECT g, 1 + g % 50, 'customer ' || g || ' ' || md5(g::text),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '17 seconds',
       (g % 100000) / 100.0 + 0.01,
       CASE WHEN g % 3 = 0 THEN NULL ELSE 'order #' || (g * 7) % 9973 END
FROM generate_series(1, $ROWS) g;
ANALYZE export_rows;
DELETE FROM api_endpoint_mappings WHERE service_name = 'export_bench';
INSERT INTO api_endpoint_mappings (endpoint_path, http_method, service_name, database_operation,
    query_template, query_parameters, result_mapping, requires_auth, cache_enabled)
VALUES
('/bench/export/rows.ndjson', 'GET', 'export_bench', 'SELECT',
 'SELECT id, tenant_id, name, created_at, amount, note FROM export_rows ORDER BY id',
 '[]', '{"shape": "stream", "format": "ndjson"}', false, false),
('/bench/export/rows.csv', 'GET', 'export_bench', 'SELECT',
 'SELECT id, tenant_id, name, created_at, amount, note FROM export_rows ORDER BY id',
 '[]', '{"shape": "stream", "format": "csv"}', false, false);
"""


async def _prepare(url: str, rows: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrations.migrate(conn)
        await conn.execute(SETUP.replace("$ROWS", str(int(rows))))
    finally:
        await conn.close()


def _download(url: str) -> tuple[int, float, int]:
    """(bytes, seconds, HTTP status) of one download by curl, discarding the body."""
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "--max-time",
            "600",
            "-w",
            "%{size_download} %{time_total} %{http_code}",
            url,
        ],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"curl failed ({out.returncode}): {out.stderr.strip()}")
    size, seconds, status = out.stdout.split()
    return int(size), float(seconds), int(status)


def _count_rows(url: str, fmt: str) -> int:
    """Rows of one export, counted by a streaming reader (after the timed curl runs)."""
    lines = 0
    with httpx.stream("GET", url, timeout=600) as r:
        for chunk in r.iter_raw():
            lines += chunk.count(b"\n")
    return lines - (1 if fmt == "csv" else 0)  # the CSV header line


def _export(port: int, pid: int, fmt: str, rows: int) -> dict:
    url = f"http://127.0.0.1:{port}/bench/export/rows.{fmt}"
    before = rss_kb(pid)
    with RssSampler(pid) as sampler:
        size, seconds, status = _download(url)
    peak = sampler.peak
    if status != 200:
        raise RuntimeError(f"{url} answered {status}")
    return {
        "format": fmt,
        "rows": rows,
        "bytes": size,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds),
        "mb_per_s": round(size / seconds / 1e6, 1),
        "rss_kb_before": before,
        "rss_kb_peak": peak,
        "rss_growth_mb": round((peak - before) / 1024, 1),
        "samples": len(sampler.samples),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--runs", type=int, default=3, help="downloads of each format (default 3: the median)"
    )
    args = parser.parse_args()
    if shutil.which("curl") is None:
        print("curl is needed: apt-get install curl", file=sys.stderr)
        return 2

    handle = None
    url = os.environ.get("DATABASE_URL")
    folder = Path(tempfile.mkdtemp(prefix="engine-export-"))
    if not url:
        handle = pgserver.start(folder / "data", delete_on_exit=True)
        url = handle.get_uri()
    asyncio.run(_prepare(url, args.rows))
    engine = start_engine("engine", url, SECRET, folder)  # default settings, as users run it
    port = engine.port
    runs = []
    try:
        wait_ready(engine, "/health/ready", ok_only=True, timeout_s=60)
        # the first export starts from the idle engine: its growth is the honest one
        for _ in range(args.runs):
            for fmt in ("ndjson", "csv"):
                runs.append(_export(port, engine.process.pid, fmt, args.rows))
        base = f"http://127.0.0.1:{port}/bench/export/rows"
        counted = {fmt: _count_rows(f"{base}.{fmt}", fmt) for fmt in ("ndjson", "csv")}
        if any(n != args.rows for n in counted.values()):
            raise RuntimeError(f"an export lost rows: {counted} (expected {args.rows})")
    finally:
        stop(engine)
        if handle is not None:
            handle.cleanup()

    summary = {}
    for fmt in ("ndjson", "csv"):  # the median speed of the runs, their worst growth
        mine = [run for run in runs if run["format"] == fmt]
        summary[fmt] = {
            "rows_per_s": round(statistics.median(run["rows_per_s"] for run in mine)),
            "rss_growth_mb": max(run["rss_growth_mb"] for run in mine),
        }
    ok = all(
        b["rows_per_s"] >= MIN_ROWS_PER_S and b["rss_growth_mb"] < MAX_GROWTH_MB
        for b in summary.values()
    )
    result = {
        "rows": args.rows,
        "settings": "defaults",
        "client": "curl -o /dev/null (a separate process)",
        "rss_sampled_every_s": 0.1,
        "targets": {"rss_growth_mb_below": MAX_GROWTH_MB, "rows_per_s_above": MIN_ROWS_PER_S},
        "summary": summary,
        "runs": runs,
        "ok": ok,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "export.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"export of {args.rows:,} rows over HTTP (engine at default settings, curl client)")
    for run in runs:
        print(
            f"  {run['format']:<7} {run['seconds']:>7.2f} s  {run['rows_per_s']:>9,} rows/s"
            f"  {run['mb_per_s']:>6.1f} MB/s  RSS {run['rss_kb_before'] / 1024:.1f} MB"
            f" -> peak {run['rss_kb_peak'] / 1024:.1f} MB (+{run['rss_growth_mb']:.1f} MB)"
        )
    print(
        f"  targets: growth < {MAX_GROWTH_MB:.0f} MB, > {MIN_ROWS_PER_S:,} rows/s: "
        + ("ok" if ok else "MISSED")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
