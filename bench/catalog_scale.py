"""Thousands of endpoints: start-up, a one-row reload, and latency during reloads.

    python bench/catalog_scale.py [--rows 10000] [--seconds 10] [--connections 16]

Starts a PostgreSQL of its own (or uses DATABASE_URL: its ``scale_*`` tables and
``/scale/`` rows are replaced), inserts ``--rows`` mapping rows of mixed shapes
(2,000 resources at 10,000 rows, each with a paginated or plain list, one row by
id, a create, an update and a delete; path parameters, JSON Schemas on some
writes, caching and ``api_cache_config`` on some reads) and measures:

- **start-up**: ``python -m engine serve`` from the spawn until ``/health/ready``
  and a catalogue route both answer 200;
- **reload**: after an ``UPDATE`` of one row, the time until the new version
  serves (the answer shows the changed template), several times, median and worst;
- **latency during reloads**: wrk on one route (``GET /scale/.../{id}``) for
  ``--seconds`` without reloads, then as long again while one row is updated
  every ``--reload-every`` seconds; p50/p99 of both, and their ratio.

The issue's targets: start-up under 5 s, a reload under 1 s, p99 during reloads
within 2x of before. The figures go to ``bench/results/catalog_scale.json``; exit
1 when a target is missed (the figures are written either way).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import migrations, pgserver  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TABLES = 20
TARGET_START_S = 5.0
TARGET_RELOAD_S = 1.0
TARGET_P99_RATIO = 2.0

# one resource r (of n) is five rows on table scale_t{r % 20}, under service svc{r % 50}:
#   GET    /scale/svc{s}/res{r}       list (every 4th paginated, every 8th counted too;
#                                     every 3rd cached, every 6th with api_cache_config)
#   GET    /scale/svc{s}/res{r}/{id}  one row, 404 RESOURCE_NOT_FOUND
#   POST   /scale/svc{s}/res{r}       insert from the body (every 2nd with a JSON Schema)
#   PUT    /scale/svc{s}/res{r}/{id}  update from path and body (every 4th with a schema)
#   DELETE /scale/svc{s}/res{r}/{id}  delete by id
SETUP_TABLES = """
DO $$
BEGIN
    FOR t IN 0..{last} LOOP
        EXECUTE format('DROP TABLE IF EXISTS scale_t%s', t);
        EXECUTE format('CREATE TABLE scale_t%s (id serial PRIMARY KEY, tenant_id int NOT NULL,
                        name text NOT NULL, price numeric(10,2) NOT NULL,
                        created_at timestamptz NOT NULL DEFAULT now())', t);
        EXECUTE format('INSERT INTO scale_t%s (tenant_id, name, price)
                        SELECT 1 + g %% 5, ''item '' || g, g %% 1000 / 10.0
                        FROM generate_series(1, 1000) g', t);
        EXECUTE format('ANALYZE scale_t%s', t);
    END LOOP;
END $$;
DELETE FROM api_endpoint_mappings WHERE endpoint_path LIKE '/scale/%';
"""

SETUP_ROWS = """
WITH r AS (SELECT g AS r, g % 20 AS t, g % 50 AS s FROM generate_series(0, $1 - 1) g),
rows AS (
  SELECT r, 1 AS k, format('/scale/svc%s/res%s', s, r) AS path, 'GET' AS method, 'SELECT' AS op,
         CASE WHEN r % 4 = 0
              THEN format('SELECT id, name, price FROM scale_t%s WHERE tenant_id = $1 ORDER BY id', t)
              ELSE format('SELECT id, name, price FROM scale_t%s WHERE tenant_id = $1 ORDER BY id
                           LIMIT $2', t) END AS sql,
         CASE WHEN r % 4 = 0
              THEN '[{"name": "tenant", "in": "query", "type": "integer", "default": 1}]'
              ELSE '[{"name": "tenant", "in": "query", "type": "integer", "default": 1},
                     {"name": "limit", "in": "query", "type": "integer", "default": 20}]'
              END::jsonb AS params,
         CASE WHEN r % 8 = 0 THEN '{"shape": "list", "paginate": {"limit": 20, "count": "exact"}}'
              WHEN r % 4 = 0 THEN '{"shape": "list", "paginate": {"limit": 20}}'
              ELSE '{"shape": "list", "fields": {"price": "unit_price"}}' END::jsonb AS result,
         r % 3 = 0 AS cached
  FROM r
  UNION ALL
  SELECT r, 2, format('/scale/svc%s/res%s/{id}', s, r), 'GET', 'SELECT',
         format('SELECT id, name, price, created_at FROM scale_t%s WHERE id = $1', t),
         '[{"name": "id", "in": "path", "type": "integer"}]',
         '{"shape": "object", "not_found": "RESOURCE_NOT_FOUND"}', false
  FROM r
  UNION ALL
  SELECT r, 3, format('/scale/svc%s/res%s', s, r), 'POST', 'INSERT',
         format('INSERT INTO scale_t%s (tenant_id, name, price) VALUES (1, $1, $2)
                 RETURNING id, name, price', t),
         '[{"name": "name", "in": "body", "type": "string", "required": true},
           {"name": "price", "in": "body", "type": "number", "required": true}]',
         '{"shape": "object", "status": 201}', false
  FROM r
  UNION ALL
  SELECT r, 4, format('/scale/svc%s/res%s/{id}', s, r), 'PUT', 'UPDATE',
         format('UPDATE scale_t%s SET name = $2, price = $3 WHERE id = $1
                 RETURNING id, name, price', t),
         '[{"name": "id", "in": "path", "type": "integer"},
           {"name": "name", "in": "body", "type": "string", "required": true},
           {"name": "price", "in": "body", "type": "number", "required": true}]',
         '{"shape": "object", "not_found": "RESOURCE_NOT_FOUND"}', false
  FROM r
  UNION ALL
  SELECT r, 5, format('/scale/svc%s/res%s/{id}', s, r), 'DELETE', 'DELETE',
         format('DELETE FROM scale_t%s WHERE id = $1 RETURNING id', t),
         '[{"name": "id", "in": "path", "type": "integer"}]',
         '{"shape": "object", "not_found": "RESOURCE_NOT_FOUND"}', false
  FROM r
)
INSERT INTO api_endpoint_mappings (endpoint_path, http_method, service_name, database_operation,
    target_table, query_template, query_parameters, result_mapping, requires_auth,
    cache_enabled, cache_ttl_seconds, rate_limit_per_minute)
SELECT path, method, 'svc' || (r % 50), op, 'scale_t' || (r % 20), sql, params, result, false,
       cached, CASE WHEN cached THEN 60 ELSE 0 END, NULL
FROM rows
ORDER BY r, k
LIMIT $1
"""

SETUP_SIDE_ROWS = """
INSERT INTO api_validation_schemas (endpoint_mapping_id, schema_name, validation_schema)
SELECT id, 'scale ' || id, '{"type": "object", "required": ["name", "price"],
  "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 100},
                 "price": {"type": "number", "minimum": 0}},
  "additionalProperties": false}'
FROM api_endpoint_mappings
WHERE endpoint_path LIKE '/scale/%'
  AND ((http_method = 'POST' AND substring(endpoint_path FROM 'res(\\d+)$')::int % 2 = 0)
    OR (http_method = 'PUT' AND substring(endpoint_path FROM 'res(\\d+)/')::int % 4 = 1));
INSERT INTO api_cache_config (endpoint_mapping_id, cache_enabled, cache_ttl_seconds,
                              cache_strategy, cache_max_entries, cache_invalidation_rules)
SELECT id, true, 30, 'lru', 500, '{"tables": ["scale_t0"]}'
FROM api_endpoint_mappings
WHERE endpoint_path LIKE '/scale/%' AND http_method = 'GET' AND cache_enabled
  AND substring(endpoint_path FROM 'res(\\d+)$')::int % 6 = 0;
"""

LOAD_ROUTE = "/scale/svc7/res7/{id}"  # GET one row by id, not cached
LAST_ROUTE = "/scale/svc{s}/res{r}/42"  # the same read of the last resource (rows - 1)
CHANGE_ROUTE = "/scale/svc{s}/res{r}/{{id}}"  # rows whose template the reloads change
CHANGE = """
UPDATE api_endpoint_mappings
SET query_template = 'SELECT id, name, price, created_at, ' || $2::int || ' AS rev FROM '
                     || target_table || ' WHERE id = $1'
WHERE endpoint_path = $1 AND http_method = 'GET'
"""

LOG_LINE = re.compile(
    r"catalogue generation (\d+): (\d+) endpoint\(s\), (\d+) problem\(s\), (\d+) row\(s\) "
    r"compiled, (\d+) prepare\(s\), (\d+) ms"
)


async def _prepare(url: str, rows: int) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        await migrations.migrate(conn)
        await conn.execute(SETUP_TABLES.replace("{last}", str(TABLES - 1)))
        await conn.execute(SETUP_ROWS, rows)
        await conn.execute(SETUP_SIDE_ROWS)
        await conn.execute("ANALYZE")
        return {
            "mappings": await conn.fetchval(
                "SELECT count(*) FROM api_endpoint_mappings WHERE endpoint_path LIKE '/scale/%'"
            ),
            "validation_schemas": await conn.fetchval(
                "SELECT count(*) FROM api_validation_schemas"
            ),
            "cache_config": await conn.fetchval("SELECT count(*) FROM api_cache_config"),
        }
    finally:
        await conn.close()


async def _change(url: str, path: str, rev: int) -> float:
    """Update one row's template; the wall-clock time of the commit."""
    conn = await asyncpg.connect(url)
    try:
        status = await conn.execute(CHANGE, path, rev)
        if status != "UPDATE 1":
            raise RuntimeError(f"no row at GET {path}: {status}")
        return time.perf_counter()
    finally:
        await conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(url: str, port: int, log_path: Path, profile: Path | None) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "ENGINE_PORT": str(port),
        "ENGINE_LOG_LEVEL": "INFO",
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "engine", "serve"]
    if profile is not None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        command = [spy, "record", "-f", "raw", "-r", "200", "-o", str(profile), "--", *command]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,  # the access log
        stderr=log_path.open("w"),
    )


def _wait_start(port: int, engine: subprocess.Popen, log_path: Path, route: str) -> float:
    """Seconds from now until /health/ready and ``route`` both answer 200."""
    started = time.perf_counter()
    ready = served = False
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        while not (ready and served):
            if time.perf_counter() - started > 120 or engine.poll() is not None:
                print(log_path.read_text()[-4000:], file=sys.stderr)
                raise RuntimeError("the engine did not start")
            try:
                ready = ready or client.get("/health/ready").status_code == 200
                served = served or client.get(route).status_code == 200
            except httpx.HTTPError:
                pass
            if not (ready and served):
                time.sleep(0.01)
    return time.perf_counter() - started


def _wait_rev(client: httpx.Client, route: str, rev: int, since: float) -> float:
    while True:
        try:
            body = client.get(route).json()
            if isinstance(body, dict) and body.get("rev") == rev:
                return time.perf_counter() - since
        except (httpx.HTTPError, ValueError):
            pass
        if time.perf_counter() - since > 60:
            raise RuntimeError(f"rev {rev} never served at {route}")
        time.sleep(0.005)


def _reloads(url: str, port: int, n: int, first_rev: int) -> list[float]:
    """Update one row n times (another row each time); seconds until each serves."""
    out = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        for i in range(n):
            r = 100 + 7 * i
            path = CHANGE_ROUTE.format(s=r % 50, r=r)
            since = asyncio.run(_change(url, path, first_rev + i))
            out.append(_wait_rev(client, path.replace("{id}", "1"), first_rev + i, since))
            time.sleep(0.3)  # let the status write of this reload finish
    return out


def _wrk(port: int, seconds: float, connections: int, route: str) -> dict:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{int(seconds)}s",
            "--latency",
            "--timeout",
            "10s",
            f"http://127.0.0.1:{port}{route}",
        ],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr or out.stdout}")
    text = out.stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return round(value / 1000 if unit == "us" else value * 1000 if unit == "s" else value, 3)

    total = int(re.search(r"(\d+) requests in", text).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    return {
        "requests": total,
        "req_per_s": round(rps),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "latency_ms": {"p50": ms("50"), "p90": ms("90"), "p99": ms("99")},
    }


def _load_during_reloads(
    url: str, port: int, seconds: float, connections: int, every_s: float, first_rev: int
) -> tuple[dict, int]:
    stop = threading.Event()
    count = [0]

    def churn() -> None:
        i = 0
        while not stop.wait(every_s):
            r = 1000 + 3 * i
            asyncio.run(_change(url, CHANGE_ROUTE.format(s=r % 50, r=r), first_rev + i))
            count[0] += 1
            i += 1

    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    try:
        result = _wrk(port, seconds, connections, LOAD_ROUTE.replace("{id}", "42"))
    finally:
        stop.set()
        thread.join()
    return result, count[0]


def _generations(log_path: Path) -> list[dict]:
    return [
        {
            "generation": int(m.group(1)),
            "endpoints": int(m.group(2)),
            "compiled": int(m.group(4)),
            "prepares": int(m.group(5)),
            "ms": int(m.group(6)),
        }
        for m in LOG_LINE.finditer(log_path.read_text())
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--reloads", type=int, default=7, help="timed one-row reloads")
    parser.add_argument("--reload-every", type=float, default=1.0)
    parser.add_argument(
        "--profile", type=Path, help="run the engine under py-spy, raw output to this file"
    )
    parser.add_argument("--keep", action="store_true", help="leave the engine log in /tmp")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2

    handle = None
    url = os.environ.get("DATABASE_URL")
    folder = Path(tempfile.mkdtemp(prefix="engine-scale-"))
    if not url:
        handle = pgserver.start(folder / "data", delete_on_exit=True)
        url = handle.get_uri()
    log_path = folder / "engine.log"
    try:
        t0 = time.perf_counter()
        counts = asyncio.run(_prepare(url, args.rows))
        setup_s = time.perf_counter() - t0
        print(f"{counts['mappings']:,} rows inserted in {setup_s:.1f} s ({counts})", flush=True)
        port = _free_port()
        engine = _start(url, port, log_path, args.profile)
        try:
            start_s = _wait_start(port, engine, log_path, LOAD_ROUTE.replace("{id}", "1"))
            print(f"start-up      {start_s:.2f} s", flush=True)
            reloads = _reloads(url, port, args.reloads, first_rev=1)
            print("reloads       " + ", ".join(f"{s * 1000:.0f}" for s in reloads) + " ms")
            before = _wrk(port, args.seconds, args.connections, LOAD_ROUTE.replace("{id}", "42"))
            last = (counts["mappings"] // 5) - 1  # the route a scan of the table found last
            last_route = LAST_ROUTE.format(s=last % 50, r=last)
            at_last = _wrk(port, args.seconds / 2, args.connections, last_route)
            during, changed = _load_during_reloads(
                url, port, args.seconds, args.connections, args.reload_every, first_rev=1000
            )
        finally:
            engine.send_signal(signal.SIGINT if args.profile else signal.SIGTERM)
            engine.wait(60)
        generations = _generations(log_path)
    finally:
        if handle is not None:
            handle.cleanup()
    ratio = during["latency_ms"]["p99"] / max(before["latency_ms"]["p99"], 0.001)
    reload_median = statistics.median(reloads)
    result = {
        "rows": counts,
        "start_s": round(start_s, 3),
        "reload_s": {
            "median": round(reload_median, 3),
            "max": round(max(reloads), 3),
            "each": [round(s, 3) for s in reloads],
        },
        "load_route": f"GET {LOAD_ROUTE}",
        "connections": args.connections,
        "seconds": args.seconds,
        "before_reloads": before,
        "last_route": {"route": f"GET {last_route}", **at_last},
        "during_reloads": {**during, "reloads": changed, "every_s": args.reload_every},
        "p99_ratio": round(ratio, 2),
        "generations": {
            "first": generations[0] if generations else None,
            "reloads_ms": [g["ms"] for g in generations[1:]],
            "reloads_compiled": sorted({g["compiled"] for g in generations[1:]}),
        },
        "targets": {
            "start_s": TARGET_START_S,
            "reload_s": TARGET_RELOAD_S,
            "p99_ratio": TARGET_P99_RATIO,
        },
    }
    ok = start_s < TARGET_START_S and max(reloads) < TARGET_RELOAD_S and ratio <= TARGET_P99_RATIO
    result["ok"] = ok
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "catalog_scale.json").write_text(json.dumps(result, indent=2) + "\n")
    b, d = before["latency_ms"], during["latency_ms"]
    print(f"catalogue of {counts['mappings']:,} rows")
    print(f"  start-up          {start_s:.2f} s (target < {TARGET_START_S:.0f} s)")
    print(
        f"  one-row reload    median {reload_median * 1000:.0f} ms, worst "
        f"{max(reloads) * 1000:.0f} ms (target < {TARGET_RELOAD_S * 1000:.0f} ms)"
    )
    print(
        f"  p99 before        {b['p99']:.2f} ms (p50 {b['p50']:.2f}, {before['req_per_s']:,} req/s)"
    )
    n = at_last["latency_ms"]
    print(
        f"  last route        p99 {n['p99']:.2f} ms (p50 {n['p50']:.2f}, {at_last['req_per_s']:,}"
        f" req/s: GET {last_route})"
    )
    print(
        f"  p99 during        {d['p99']:.2f} ms (p50 {d['p50']:.2f}, {during['req_per_s']:,} "
        f"req/s, {changed} reloads)  ratio {ratio:.2f} (target <= {TARGET_P99_RATIO:.0f})"
    )
    if before["non_2xx"] or during["non_2xx"]:
        print(f"  non-2xx           {before['non_2xx']} before, {during['non_2xx']} during")
        ok = False
    print("  result            " + ("ok" if ok else "MISSED"))
    if args.keep:
        kept = Path("/tmp") / "catalog_scale_engine.log"
        shutil.copy(log_path, kept)
        print(f"  engine log        {kept}")
    shutil.rmtree(folder, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
