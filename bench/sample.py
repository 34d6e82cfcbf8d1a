"""One measurement of one server in one scenario, whatever tool made it."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sample:
    req_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # answers other than the expected status, plus socket errors and timeouts
    statuses: dict[str, int] = field(default_factory=dict)
    socket_errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` (0..100) percentile of ``values`` (nearest rank); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]
