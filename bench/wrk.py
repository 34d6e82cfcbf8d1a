"""Driving Debian's ``wrk`` (a C client, so the cores are left to the servers) through a Lua script.

Each scenario's requests are written to a file, one ``METHOD PATH [BODY]`` a line
(ids drawn at random beforehand); the script formats them once and sends them
in turn from a random start, counts the answers by status, and prints the
latency percentiles, so a run can tell answers it expected from errors.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from bench.sample import Sample

LUA = r"""
local requests = {}
counts = {}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local headers = {}
  for i = 2, #args do
    local name, value = args[i]:match("^([^:]+):%s*(.*)$")
    headers[name] = value
  end
  for line in io.lines(args[1]) do
    local method, path, body = line:match("^(%S+) (%S+) ?(.*)$")
    local h = {}
    for k, v in pairs(headers) do h[k] = v end
    if body ~= "" then h["Content-Type"] = "application/json" else body = nil end
    table.insert(requests, wrk.format(method, path, h, body))
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
    for status, n in pairs(thread:get("counts")) do total[status] = (total[status] or 0) + n end
  end
  local parts = {}
  for status, n in pairs(total) do table.insert(parts, '"' .. status .. '": ' .. n) end
  io.write("STATUS {" .. table.concat(parts, ", ") .. "}\n")
  io.write(string.format("LATENCY %d %d\n", latency:percentile(50), latency:percentile(99)))
  local e = summary.errors
  io.write(string.format("TOTAL %d %d %d\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout))
end
"""


def write_requests(folder: Path, name: str, lines: list[str]) -> Path:
    out = folder / f"{name}.requests"
    out.write_text("\n".join(lines) + "\n")
    return out


def run(
    wrk: str,
    url: str,
    requests: Path,
    *,
    seconds: float,
    connections: int,
    expect: int,
    headers: dict[str, str] | None = None,
) -> Sample:
    """``wrk -t1 -c<connections> -d<seconds>`` over the requests file; errors against ``expect``."""
    script = requests.parent / "bench.lua"
    if not script.exists():
        script.write_text(LUA)
    command = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
        "--",
        str(requests),
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed: {done.stderr or done.stdout}")
    return parse(done.stdout, expect)


def parse(out: str, expect: int) -> Sample:
    def line(tag: str) -> str:
        found = re.search(rf"^{tag} (.*)$", out, re.M)
        if found is None:
            raise RuntimeError(f"wrk printed no {tag} line:\n{out}")
        return found.group(1)

    statuses = {k: v for k, v in sorted(json.loads(line("STATUS")).items())}
    p50, p99 = map(int, line("LATENCY").split())
    total, duration_us, socket_errors = map(int, line("TOTAL").split())
    unexpected = sum(n for status, n in statuses.items() if int(status) != expect)
    return Sample(
        req_s=total / (duration_us / 1e6),
        p50_ms=p50 / 1000,
        p99_ms=p99 / 1000,
        requests=total,
        errors=unexpected + socket_errors,
        statuses=statuses,
        socket_errors=socket_errors,
    )
