"""What measuring a request costs: each request observer timed alone, in microseconds.

The engine hands every answered request to its observers (Prometheus counters,
the per-minute figures, the access log). Their cost is per request, so it is
printed next to the time budget of one request at a given rate: at 5,000 req/s
on one core a request has 200 us in all.

    .venv/bin/python bench/observers.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.accesslog import AccessLog
from engine.figures import Figures
from engine.metrics import Metrics
from engine.observe import Exchange, notify

N = 100_000


def _exchange() -> Exchange:
    return Exchange(
        "0826c28b4995-2",
        "GET",
        "/api/v1/cameras/7",
        0.0,
        route="/api/v1/cameras/{id}",
        endpoint_id=7,
        subject="alice",
        cache="MISS",
        db_s=0.0006,
        statements=1,
        status=200,
        duration_s=0.0021,
    )


def _per_call_us(call) -> float:  # type: ignore[no-untyped-def]
    return min(timeit.repeat(call, number=N, repeat=5)) / N * 1e6


async def main() -> None:
    exchange = _exchange()
    devnull = os.open(os.devnull, os.O_WRONLY)
    access = AccessLog(devnull)
    access.start()
    metrics = Metrics(multiprocess_dir=None)
    figures = Figures("bench:1")
    observers = (access, metrics.observe, figures)
    rows = [
        ("prometheus counters", _per_call_us(lambda: metrics.observe(exchange))),
        ("per-minute figures", _per_call_us(lambda: figures(exchange))),
        ("access log line", _per_call_us(lambda: access(exchange))),
        ("all three (as served)", _per_call_us(lambda: notify(observers, exchange))),
    ]
    await access.stop()
    os.close(devnull)
    budget_us = 1e6 / 5000
    print(f"{'observer':<24} {'us/request':>10} {'of 200 us':>10}")
    for name, us in rows:
        print(f"{name:<24} {us:>10.2f} {us / budget_us:>10.1%}")


if __name__ == "__main__":
    asyncio.run(main())
