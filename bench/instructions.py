"""Instructions a request, the engine against the tuned hand-written app: a count, not a time.

    python bench/instructions.py [--requests 2000] [--connections 64] [--scenario S1]

On a shared machine req/s move by up to 2x between rounds; the instructions a
server runs for the same requests do not (valgrind's callgrind counts them: the
same total run after run, within 0.3 %). Each server (the engine with its
default settings, the tuned Starlette app of bench/baselines) is started under
``valgrind --tool=callgrind --instr-atstart=no`` on the bench's data set, warmed
up, then counted while ``h2load`` sends ``--requests`` requests of the scenario
over ``--connections`` connections; every thread of the process is counted
(the access log's writer too). Results go to bench/results/instructions.json.

What a count misses: the kernel's work (the system calls, which both servers make
alike) and how fast the instructions run (cache misses): a change that lowers the
count can still be slower, so check a change in time too (bench/run.py).
Installs valgrind and nghttp2-client (h2load) with apt-get when missing, as root.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import dataset, servers, tools  # noqa: E402
from bench.scenarios import SCENARIOS  # noqa: E402
from engine import pgserver  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TUNED = "bench.baselines.starlette_tuned:app"
WARM_REQUESTS = 300


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="counted requests (2000)")
    parser.add_argument("--connections", type=int, default=64, help="h2load -c (64)")
    parser.add_argument("--scenario", default="S1", help="a scenario without credentials (S1)")
    return parser.parse_args()


def _command(name: str, folder: Path) -> list[str]:
    out = folder / f"callgrind.{name}.%p"
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    if name == "engine":
        return [*valgrind, sys.executable, "-m", "engine", "serve"]
    return [*valgrind, sys.executable, "-m", "uvicorn", TUNED, "--no-access-log"]


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer under valgrind:\n{log.read_text()[-2000:]}")
        time.sleep(0.5)


def _h2load(h2load: str, uris: Path, requests: int, connections: int) -> None:
    done = subprocess.run(
        [h2load, "--h1", "-n", str(requests), "-c", str(connections), "-i", str(uris)],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"status codes: (\d+) 2xx", done.stdout)
    if done.returncode != 0 or match is None or int(match[1]) != requests:
        raise RuntimeError(f"h2load: not every answer was 2xx:\n{done.stdout[-1500:]}")


def count(name: str, url: str, scenario: str, args: argparse.Namespace, folder: Path) -> float:
    """Instructions a request of ``scenario`` on the server ``name`` (engine or tuned)."""
    port = servers.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    env.update(DATABASE_URL=url, ENGINE_PORT=str(port), ENGINE_JWT_SECRET=dataset.SECRET)
    env["PYTHONPATH"] = str(ROOT)
    command = _command(name, folder)
    if name != "engine":
        command += ["--port", str(port), "--log-level", "warning"]
    log = folder / f"{name}.log"
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        start_new_session=True,
    )
    h2load = tools.ensure("h2load", "nghttp2-client")
    lines = next(s for s in SCENARIOS if s.name == scenario).lines(seed=1)
    uris = folder / f"{name}.uris"
    uris.write_text("".join(f"http://127.0.0.1:{port}{line.split(' ', 2)[1]}\n" for line in lines))
    try:
        _wait(f"http://127.0.0.1:{port}/health/ready", process, log)
        _h2load(h2load, uris, WARM_REQUESTS, min(args.connections, 8))
        control = ["callgrind_control"]
        subprocess.run([*control, "-i", "on", str(process.pid)], capture_output=True, check=True)
        _h2load(h2load, uris, args.requests, args.connections)
        subprocess.run([*control, "-i", "off", str(process.pid)], capture_output=True, check=True)
        subprocess.run([*control, "-d", str(process.pid)], capture_output=True, check=True)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
    total = 0
    for dump in folder.glob(f"callgrind.{name}.*"):
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith("totals:"):
                total += int(line.split()[1])
    if not total:
        raise RuntimeError(f"no instructions counted for {name}:\n{log.read_text()[-2000:]}")
    return total / args.requests


def main() -> int:
    args = _arguments()
    tools.ensure("valgrind", "valgrind")
    folder = Path(tempfile.mkdtemp(prefix="engine-instructions-"))
    handle = None
    url = os.environ.get("DATABASE_URL")
    try:
        if not url:
            handle = pgserver.start(folder / "data", delete_on_exit=True)
            url = handle.get_uri()
        asyncio.run(dataset.prepare(url))
        found = {}
        for name in ("engine", "tuned"):
            found[name] = count(name, url, args.scenario, args, folder)
            print(f"{name:<7} {found[name]:>10,.0f} instructions a request", flush=True)
    except (RuntimeError, tools.ToolMissing) as exc:
        print(f"instructions: {exc}", file=sys.stderr)
        return 2
    finally:
        if handle is not None:
            handle.cleanup()
    ratio = found["engine"] / found["tuned"]
    print(f"engine / tuned: {ratio:.3f} of the instructions ({args.scenario})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "scenario": args.scenario,
        "requests": args.requests,
        "connections": args.connections,
        "instructions_per_request": {k: round(v) for k, v in found.items()},
        "engine_over_tuned": round(ratio, 3),
    }
    (RESULTS / "instructions.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
