"""A mixed load for 60 s: reads, cached reads, writes, 4xx answers and a slow endpoint.

    python bench/mixed.py [--seconds 60] [--warmup 10] [--connections 32]

Starts a PostgreSQL of its own (or uses DATABASE_URL), loads a fixed data set and
a few mapping rows, runs ``python -m engine serve`` with its default settings (as
a user runs it: access log, metrics and all), and drives it with Debian's ``wrk``
(a C client, so the two cores are left to the engine and the database) and a Lua
script that picks each request from a weighted mix. After a warm-up it records
the engine's resident memory, runs the timed load, records it again, and prints:
requests by status, 5xx (must be zero), throughput, latency percentiles, and RSS
at the end against RSS after the warm-up (the target: within 10 %). The figures
go to ``bench/results/mixed.json``. Exit 1 if any 5xx was answered or the RSS
target is missed.
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

SECRET = "bench-secret-bench-secret-bench-secret"
RESULTS = ROOT / "bench" / "results"

SETUP = """
DROP TABLE IF EXISTS mixed_items, mixed_orders;
CREATE TABLE mixed_items (id int PRIMARY KEY, tenant_id int NOT NULL, name text NOT NULL,
                          price numeric(10,2) NOT NULL);
INSERT INTO mixed_items SELECT g, 1 + g % 10, 'item ' || g, (g % 1000) / 10.0
FROM generate_series(1, 100000) g;
CREATE TABLE mixed_orders (order_id bigserial PRIMARY KEY, item_id int NOT NULL,
                           quantity int NOT NULL CHECK (quantity > 0),
                           created_at timestamptz NOT NULL DEFAULT now());
ANALYZE mixed_items;
DELETE FROM api_endpoint_mappings WHERE service_name = 'mixed';
INSERT INTO api_endpoint_mappings (endpoint_path, http_method, service_name, database_operation,
    query_template, query_parameters, result_mapping, requires_auth, cache_enabled,
    cache_ttl_seconds, rate_limit_per_minute)
VALUES
('/mixed/items/{id}', 'GET', 'mixed', 'SELECT',
 'SELECT id, name, price FROM mixed_items WHERE id = $1',
 '[{"name": "id", "in": "path", "type": "integer"}]',
 '{"shape": "object", "not_found": "RESOURCE_NOT_FOUND"}', false, false, 0, NULL),
('/mixed/cached/{id}', 'GET', 'mixed', 'SELECT',
 'SELECT id, name, price FROM mixed_items WHERE id = $1',
 '[{"name": "id", "in": "path", "type": "integer"}]',
 '{"shape": "object", "not_found": "RESOURCE_NOT_FOUND"}', false, true, 300, NULL),
('/mixed/mine', 'GET', 'mixed', 'SELECT',
 'SELECT id, name, price FROM mixed_items WHERE tenant_id = $1 ORDER BY id LIMIT 20',
 '[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer"}]',
 '{"shape": "list"}', true, false, 0, NULL),
('/mixed/orders', 'POST', 'mixed', 'INSERT',
 'INSERT INTO mixed_orders (item_id, quantity) VALUES ($1, $2) RETURNING order_id, quantity',
 '[{"name": "item_id", "in": "body", "type": "integer", "required": true},
   {"name": "quantity", "in": "body", "type": "integer", "required": true}]',
 '{"shape": "object", "status": 201}', false, false, 0, NULL),
('/mixed/slow', 'GET', 'mixed', 'SELECT',
 'SELECT pg_sleep(0.2) IS NULL AS slept',
 '[]', '{"shape": "object"}', false, false, 0, NULL);
INSERT INTO api_validation_schemas (endpoint_mapping_id, schema_name, validation_schema)
SELECT id, 'mixed order', '{"type": "object", "required": ["item_id", "quantity"],
  "properties": {"item_id": {"type": "integer", "minimum": 1},
                 "quantity": {"type": "integer", "minimum": 1, "maximum": 100}},
  "additionalProperties": false}'
FROM api_endpoint_mappings WHERE endpoint_path = '/mixed/orders' AND http_method = 'POST';
"""

# (weight, method, path, body): every wrk connection picks from this mix in turn
MIX = [
    (30, "GET", "/mixed/items/{n}", None),
    (25, "GET", "/mixed/cached/{c}", None),
    (10, "GET", "/mixed/mine", None),
    (10, "POST", "/mixed/orders", '{"item_id": {n}, "quantity": 2}'),
    (5, "POST", "/mixed/orders", '{"item_id": {n}, "quantity": 0}'),  # 400 VALIDATION_ERROR
    (5, "GET", "/mixed/items/not-a-number", None),  # 400 INVALID_PARAMETER
    (5, "GET", "/mixed/items/999999999", None),  # 404 RESOURCE_NOT_FOUND
    (5, "GET", "/mixed/nowhere/{n}", None),  # 404 for an unknown path (rate-limited: 429)
    (3, "DELETE", "/mixed/items/1", None),  # 405
    (2, "GET", "/mixed/slow", None),
]

LUA = r"""
requests = {}
counts = {}
threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local token = args[1]
  for line in io.lines(args[2]) do
    local method, path, body = line:match("^(%S+) (%S+) ?(.*)$")
    local headers = {["Authorization"] = "Bearer " .. token}
    if body ~= "" then headers["Content-Type"] = "application/json" else body = nil end
    table.insert(requests, wrk.format(method, path, headers, body))
  end
  counter = math.random(#requests)
end

function request()
  counter = counter % #requests + 1
  return requests[counter]
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests_)
  local total = {}
  for _, thread in ipairs(threads) do
    local c = thread:get("counts")
    for status, n in pairs(c) do total[status] = (total[status] or 0) + n end
  end
  local parts = {}
  for status, n in pairs(total) do table.insert(parts, '"' .. status .. '": ' .. n) end
  io.write("STATUS {" .. table.concat(parts, ", ") .. "}\n")
  io.write(string.format("LATENCY %d %d %d %d\n", latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max))
  io.write(string.format("TOTAL %d %d %d\n", summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout))
end
"""


def _requests_file(folder: Path) -> Path:
    """The mix expanded to 1,000 concrete requests (ids spread over the data set)."""
    lines = []
    i = 0
    while len(lines) < 1000:
        for weight, method, path, body in MIX:
            for _ in range(weight):
                n = 1 + (i * 7919) % 100000
                c = 1 + i % 500  # cached reads repeat over 500 ids: mostly hits
                i += 1
                text = path.format(n=n, c=c)
                if body is not None:
                    text += " " + body.replace("{n}", str(n))
                lines.append(f"{method} {text}")
    out = folder / "requests.txt"
    out.write_text("\n".join(lines[:1000]) + "\n")
    return out


async def _prepare(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrations.migrate(conn)
        await conn.execute(SETUP)
    finally:
        await conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_kb(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1))


def _wrk(port: int, seconds: float, connections: int, token: str, requests: Path) -> dict:
    script = requests.parent / "mixed.lua"
    script.write_text(LUA)
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{int(seconds)}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
            "--",
            token,
            str(requests),
        ],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr or out.stdout}")
    out = out.stdout
    status = json.loads(re.search(r"^STATUS (.*)$", out, re.M).group(1))
    p50, p90, p99, worst = map(int, re.search(r"^LATENCY (.*)$", out, re.M).group(1).split())
    total, duration_us, socket_errors = map(
        int, re.search(r"^TOTAL (.*)$", out, re.M).group(1).split()
    )
    return {
        "requests": total,
        "req_per_s": round(total / (duration_us / 1e6)),
        "by_status": dict(sorted(status.items())),
        "5xx": sum(n for s, n in status.items() if s.startswith("5")),
        "socket_errors": socket_errors,
        "latency_ms": {
            "p50": p50 / 1000,
            "p90": p90 / 1000,
            "p99": p99 / 1000,
            "max": worst / 1000,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2

    handle = None
    url = os.environ.get("DATABASE_URL")
    folder = Path(tempfile.mkdtemp(prefix="engine-mixed-"))
    if not url:
        handle = pgserver.start(folder / "data", delete_on_exit=True)
        url = handle.get_uri()
    asyncio.run(_prepare(url))
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "ENGINE_PORT": str(port),
        "ENGINE_JWT_SECRET": SECRET,
        "PYTHONPATH": str(ROOT),
    }
    engine = subprocess.Popen(
        [sys.executable, "-m", "engine", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,  # the access log, on by default as users run it
        stderr=(folder / "engine.log").open("w"),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or engine.poll() is not None:
                print((folder / "engine.log").read_text(), file=sys.stderr)
                raise RuntimeError("the engine did not become ready")
            time.sleep(0.2)
        token = mint_token(SECRET, subject="bench", roles=[], tenant_id=3, ttl_s=3600)
        requests = _requests_file(folder)
        warm = _wrk(port, args.warmup, args.connections, token, requests)
        rss_warm = _rss_kb(engine.pid)
        run = _wrk(port, args.seconds, args.connections, token, requests)
        rss_end = _rss_kb(engine.pid)
    finally:
        engine.send_signal(signal.SIGTERM)
        engine.wait(30)
        if handle is not None:
            handle.cleanup()
    growth = (rss_end - rss_warm) / rss_warm
    result = {
        "seconds": args.seconds,
        "connections": args.connections,
        "warmup": {"seconds": args.warmup, "by_status": warm["by_status"], "5xx": warm["5xx"]},
        **run,
        "rss_kb_after_warmup": rss_warm,
        "rss_kb_at_end": rss_end,
        "rss_growth": round(growth, 4),
        "mix": [{"weight": w, "method": m, "path": p} for w, m, p, _ in MIX],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mixed.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"mixed load, {args.seconds:.0f} s, {args.connections} connections (wrk -t1)")
    print(f"  requests     {run['requests']:>10,}  ({run['req_per_s']:,} req/s)")
    print(f"  by status    {run['by_status']}")
    print(f"  5xx          {run['5xx']:>10}  (socket errors {run['socket_errors']})")
    lat = run["latency_ms"]
    print(f"  latency ms   p50 {lat['p50']:.2f}  p90 {lat['p90']:.2f}  p99 {lat['p99']:.2f}")
    print(
        f"  RSS          {rss_warm / 1024:.1f} MB after warm-up, {rss_end / 1024:.1f} MB at the "
        f"end ({growth:+.1%}; target within 10 %)"
    )
    ok = run["5xx"] == 0 and warm["5xx"] == 0 and abs(growth) <= 0.10
    print("  result       " + ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
