"""Many connections: 1,000 client connections at a fixed request rate, with Debian's h2load.

``h2load --h1 --rps`` (package nghttp2-client) holds every connection open and
paces each at ``rate / connections`` requests per second however fast the
server answers (open loop, unlike wrk's closed loop). Connections are opened
spread over one pacing period (``-r`` per 10 ms), so their requests interleave
evenly instead of arriving as one burst of 1,000 every period. Percentiles and
the rate achieved come from h2load's per-request log, after that first period
(the ramp). Any answer but 2xx, and any failed, errored or timed-out request,
is an error.
"""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

from bench.sample import Sample, percentile

PERIOD_S = 0.01  # h2load --rate-period


def run(
    h2load: str,
    base_url: str,
    lines: list[str],
    folder: Path,
    *,
    rate: float,
    connections: int,
    seconds: float,
) -> Sample:
    uris = folder / "openloop.uris"
    uris.write_text("".join(f"{base_url}{line.split(' ', 2)[1]}\n" for line in lines))
    log = folder / "openloop.tsv"
    log.unlink(missing_ok=True)
    per_client = rate / connections
    ramp_s = 1 / per_client
    opened_per_period = math.ceil(connections / max(1, ramp_s / PERIOD_S))
    each = max(1, round(per_client * (seconds + ramp_s)))
    done = subprocess.run(
        [h2load, "--h1", "-t1", f"-c{connections}", f"-n{each * connections}",
         f"--rps={per_client:.4f}", f"-r{opened_per_period}", f"--rate-period={PERIOD_S * 1000:g}ms",
         "-i", str(uris), f"--log-file={log}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + ramp_s + 120,
    )  # fmt: skip
    out = done.stdout
    counts = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        out,
    )
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if done.returncode != 0 or counts is None or codes is None or not log.exists():
        raise RuntimeError(f"h2load failed:\n{done.stderr}\n{out}")
    # failed counts 4xx/5xx and errored requests; errored counts timeouts
    total, _started, _done, _ok, failed, errored, _timeout = map(int, counts.groups())
    rows = [row.split("\t")[:3] for row in log.read_text().splitlines()]
    first = min(int(start) for start, _, _ in rows)
    steady = [(int(s), status, int(us)) for s, status, us in rows if int(s) >= first + ramp_s * 1e6]
    latencies = [us / 1000 for _, _, us in steady]
    statuses: dict[str, int] = {}
    for _, status, _ in steady:
        statuses[status] = statuses.get(status, 0) + 1
    span_s = (max(s for s, _, _ in steady) - min(s for s, _, _ in steady)) / 1e6 if steady else 0
    return Sample(
        req_s=len(steady) / span_s if span_s else 0.0,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        requests=total,
        errors=failed + int(codes.group(2)),
        statuses=dict(sorted(statuses.items())),
        socket_errors=errored,
    )
