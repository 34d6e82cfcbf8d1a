"""``make bench``: the engine against bare Starlette, hand-written apps, FastAPI and pgbench, in one run.

    python bench/run.py [--seconds 2] [--rounds 9] [--connections 64] [--only S1,S2]

Loads a fixed data set (100,000 cameras, bench/dataset.py) into a PostgreSQL of
its own (or DATABASE_URL), starts every server in a process of its own (the
engine as a user runs it, with its default settings; the baselines in
bench/baselines/ under uvicorn), checks each answers each scenario as
expected, warms each up, then measures every scenario on every server with
``wrk -t1 -c64`` (and S1's SQL with ``pgbench -M prepared``), round after round
with the server order rotated each round, so drift hits all alike (S1a, S1j and
two workers right beside S1 on the engine, the ratios between them). Only the
server measured is loaded; the others sit idle. The medians, the ratios and the
targets go to the terminal and to bench/results/bench.{md,json}. The engine with
``--workers 2`` is one of S1's servers (when the engine has it); after the rounds,
S1 over 1,000 connections at a fixed rate (h2load). Exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import dataset, openloop, pgbench, report, servers, tools, wrk  # noqa: E402
from bench.sample import Sample  # noqa: E402
from bench.scenarios import (  # noqa: E402
    ENGINE,
    ENGINE_W2,
    LABELS,
    PGBENCH,
    Plan,
    Scenario,
    round_order,
    select,
)
from engine import pgserver  # noqa: E402

RESULTS = ROOT / "bench" / "results"
APPS = {
    "typical": "bench.baselines.starlette_typical:app",
    "tuned": "bench.baselines.starlette_tuned:app",
    "fastapi": "bench.baselines.fastapi_app:app",
    "bare": "bench.baselines.bare:app",
}
NO_WORKERS = "skipped: --workers not available"


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # many short rounds rather than a few long ones: one server's 3 s runs move by up to
    # 15 % on a shared machine, and the median of nine paired ratios moves less than five's
    parser.add_argument("--seconds", type=float, default=2.0, help="each measurement (default 2)")
    parser.add_argument("--rounds", type=int, default=9, help="rounds, at least 3 (default 9)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds (default 2)")
    parser.add_argument("--only", help="a subset of scenarios: S1,S2 (S6 is S6-400 and S6-404)")
    parser.add_argument("--pgbench-clients", type=int, default=10, help="pgbench -c (10)")
    parser.add_argument("--open-connections", type=int, default=1000, help="h2load -c (1000)")
    parser.add_argument(
        "--open-rate", type=float, help="req/s over those (default: half of S1's median)"
    )
    parser.add_argument("--open-seconds", type=float, default=10.0, help="(default 10)")
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("--rounds must be at least 3 (the result is a median)")
    return args


def _raise_file_limit() -> None:
    # 1,000 client connections need as many descriptors in h2load and in the engine
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _headers(scenario: Scenario, credentials: dataset.Credentials) -> dict[str, str]:
    if scenario.credential == "key":
        return {"X-API-Key": credentials.api_key}
    if scenario.credential == "token":
        return {"Authorization": f"Bearer {credentials.token}"}
    return {}


def _ask(url: str, line: str, headers: dict[str, str]) -> tuple[int, bytes]:
    method, path, *body = line.split(" ", 2)
    data = body[0].encode() if body else None
    sent = {**headers, **({"Content-Type": "application/json"} if data else {})}
    request = urllib.request.Request(url + path, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as answer:
        return answer.code, answer.read()


def _check_answers(
    plan: Plan,
    running: dict[str, servers.Server],
    lines: dict[str, list[str]],
    credentials: dataset.Credentials,
) -> None:
    """Every server answers the first request of each scenario with the expected status."""
    for scenario, targets in plan:
        for target in targets:
            if target == PGBENCH:
                continue
            server = running[target]
            status, body = _ask(
                server.url, lines[scenario.name][0], _headers(scenario, credentials)
            )
            if status != scenario.expect:
                raise RuntimeError(
                    f"{scenario.name} on {target}: {lines[scenario.name][0]} answered {status}, "
                    f"not {scenario.expect}: {body[:300]!r}\n{server.tail()}"
                )


async def _postgres_version(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return (await conn.fetchval("SHOW server_version")).split()[0]
    finally:
        await conn.close()


def _facts(args: argparse.Namespace, url: str, start: dict[str, Any]) -> dict[str, Any]:
    """The run's facts; ``start``: its date and load average, taken before it began."""

    def git(*command: str) -> str:
        done = subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown cpu",
    )
    dirty = "-dirty" if git("status", "--porcelain", "--untracked-files=no") else ""
    return {
        "date": start["date"],
        "commit": (git("rev-parse", "--short", "HEAD") or "unknown") + dirty,
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgres": "PostgreSQL " + asyncio.run(_postgres_version(url)),
        "load_average_at_start": start["load"],
        "seconds": args.seconds,
        "rounds": args.rounds,
        "connections": args.connections,
        "pgbench_clients": args.pgbench_clients,
    }


class Bench:
    """The servers of one run, and how one (scenario, server) is measured."""

    def __init__(self, args: argparse.Namespace, url: str, folder: Path) -> None:
        self.args, self.url, self.folder = args, url, folder
        self.wrk = tools.ensure("wrk", "wrk")
        self.pgbench = pgbench.find()
        self.running: dict[str, servers.Server] = {}
        self.files: dict[str, Path] = {}
        self.lines: dict[str, list[str]] = {}
        self.credentials = dataset.Credentials("", "")

    def start(self, names: set[str]) -> None:
        print(f"starting {', '.join(sorted(names - {PGBENCH}))}", flush=True)
        for name in sorted(names - {PGBENCH}):
            if name in APPS:
                server = servers.start_app(name, APPS[name], self.url, self.folder)
                servers.wait_ready(server, "/", ok_only=False)
            else:
                workers = 2 if name == ENGINE_W2 else None
                server = servers.start_engine(
                    name, self.url, dataset.SECRET, self.folder, workers=workers
                )
                servers.wait_ready(server, "/health/ready", ok_only=True)
            self.running[name] = server

    def stop(self) -> None:
        for server in self.running.values():
            servers.stop(server)

    def measure(self, scenario: Scenario, target: str, seconds: float) -> Sample:
        if target == PGBENCH:
            return pgbench.run(
                self.pgbench, self.url, self.folder,
                seconds=seconds, clients=self.args.pgbench_clients,
            )  # fmt: skip
        return wrk.run(
            self.wrk,
            self.running[target].url,
            self.files[scenario.name],
            seconds=seconds,
            connections=self.args.connections,
            expect=scenario.expect,
            headers=_headers(scenario, self.credentials),
        )


def _plan(chosen: tuple[Scenario, ...], with_workers: bool) -> Plan:
    return [(s, [t for t in s.targets if t != ENGINE_W2 or with_workers]) for s in chosen]


def _rounds(bench: Bench, plan: Plan) -> report.Results:
    args = bench.args
    results: report.Results = {s.name: {t: [] for t in targets} for s, targets in plan}
    print(f"warming up each server on each scenario ({args.warmup:g} s each)", flush=True)
    for scenario, targets in plan:
        for target in targets:
            bench.measure(scenario, target, args.warmup)
    for r in range(args.rounds):
        for scenario, target in round_order(plan, r):  # each round, another order
            sample = bench.measure(scenario, target, args.seconds)
            results[scenario.name][target].append(sample)
            print(
                f"round {r + 1}/{args.rounds}  {scenario.name:<7} {LABELS[target]:<20} "
                f"{sample.req_s:>9,.0f} req/s  p50 {sample.p50_ms:6.2f}  "
                f"p99 {sample.p99_ms:6.2f} ms  errors {sample.errors}",
                flush=True,
            )
    return results


def _open_loop(bench: Bench, s1_rate: float | None) -> tuple[Sample, dict[str, Any]]:
    args = bench.args
    h2load = tools.ensure("h2load", "nghttp2-client")
    rate = args.open_rate or max(100.0, math.floor((s1_rate or 200) / 2 / 100) * 100)
    sample = openloop.run(
        h2load,
        bench.running[ENGINE].url,
        bench.lines["S1"],
        bench.folder,
        rate=rate,
        connections=args.open_connections,
        seconds=args.open_seconds,
    )
    return sample, {
        "what": f"S1 on the engine, {args.open_connections:,} connections at a fixed rate, "
        f"{args.open_seconds:g} s",
        "tool": "h2load --h1 --rps (nghttp2-client)",
        "rate": rate,
        **sample.as_dict(),
    }


def main() -> int:
    try:
        return _main(_arguments())
    except (tools.ToolMissing, RuntimeError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    start = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load": [round(x, 2) for x in os.getloadavg()],
    }
    _raise_file_limit()
    chosen = select(args.only)
    folder = Path(tempfile.mkdtemp(prefix="engine-bench-"))
    handle = None
    url = os.environ.get("DATABASE_URL")
    if not url:
        handle = pgserver.start(folder / "data", delete_on_exit=True)
        url = handle.get_uri()
    print(f"work folder (logs of every server): {folder}", flush=True)
    try:
        bench = Bench(args, url, folder)
        bench.credentials = asyncio.run(dataset.prepare(url))
        has_workers = servers.workers_available()
        plan = _plan(chosen, has_workers)
        for n, (scenario, _) in enumerate(plan):
            bench.lines[scenario.name] = scenario.lines(seed=n + 1)
            bench.files[scenario.name] = wrk.write_requests(
                folder, scenario.name, bench.lines[scenario.name]
            )
        runs = sum(len(t) for _, t in plan)
        minutes = (runs * (args.rounds * args.seconds + args.warmup)) / 60
        print(f"{runs} (scenario, server) pairs x {args.rounds} rounds: about {minutes:.0f} min")
        try:
            bench.start({t for _, targets in plan for t in targets})
            _check_answers(plan, bench.running, bench.lines, bench.credentials)
            results = _rounds(bench, plan)
            m = report.medians(results)
            loop_sample, open_loop = None, None
            if "S1" in bench.lines:
                s1 = m["S1"].get(ENGINE)
                loop_sample, open_loop = _open_loop(bench, s1.req_s if s1 else None)
        finally:
            bench.stop()
        facts = _facts(args, url, start)
        facts["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        if handle is not None:
            handle.cleanup()
    found = report.checks(m, None if has_workers else NO_WORKERS)
    found.append(report.open_loop_check(loop_sample, "not measured (S1 not selected)"))
    text = report.markdown(m, found, open_loop, facts)
    print("\n" + text)
    report.write(RESULTS, results, found, open_loop, facts, text)
    print(f"written: {RESULTS / 'bench.md'}, {RESULTS / 'bench.json'}")
    shutil.rmtree(folder, ignore_errors=True)
    return 1 if any(c.passed is False for c in found) else 0


if __name__ == "__main__":
    sys.exit(main())
