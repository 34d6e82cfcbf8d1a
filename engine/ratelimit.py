"""Rate limits per endpoint and caller, counted by the ``limits`` library (a moving window)
or, between the workers of one server, in a shared table (engine/sharedrate.py).

Counters live in the process by default; the workers of ``serve --workers N`` share
theirs through one mapped file (engine/sharedrate.py); with ``ENGINE_REDIS_URL`` they
live in Redis, so every process and host shares one limit. The caller is the API key
or token subject, else the client address (``X-Forwarded-For`` is believed only
from ``ENGINE_TRUSTED_PROXIES``). If Redis cannot be reached the request is let
through and the failure logged: a counter outage must not take the API down.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from engine.sharedrate import SharedCounters

log = logging.getLogger("engine.ratelimit")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class RateState:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int

    def headers(self) -> dict[str, str]:
        out = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }
        if not self.allowed:
            out["Retry-After"] = str(max(self.reset_s, 1))
        return out


def parse_networks(spec: str | None) -> tuple[Network, ...]:
    """'10.0.0.1, 192.168.0.0/16' -> networks; a bad entry is a startup error."""
    if not spec:
        return ()
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()
    )


def client_address(peer: str | None, forwarded: str | None, trusted: Sequence[Network]) -> str:
    """The caller's address: the peer, or from X-Forwarded-For when the peer is a trusted proxy.

    ``forwarded`` is every X-Forwarded-For line joined with commas (a proxy may append
    its own line after one the client forged).
    """
    address = peer or "unknown"
    if not trusted or not _in(address, trusted):
        return address
    if not forwarded:
        return address
    # walk right to left past our own proxies; the first other hop is the client
    for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
        if not _in(hop, trusted):
            return hop
    return address


def _in(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


class RateLimiter:
    """Counts calls in Redis (``redis_url``), else in the file the workers share
    (``shared_path``), else in this process."""

    def __init__(self, redis_url: str | None = None, shared_path: str | None = None) -> None:
        # Redis wins over the shared file: it is shared by every host, the file by one's workers
        self.shared = SharedCounters(shared_path) if shared_path and not redis_url else None
        self.storage: MemoryStorage | RedisStorage
        if redis_url:
            self.storage = RedisStorage(
                f"async+{redis_url}" if not redis_url.startswith("async+") else redis_url
            )
            self.backend = "redis"
        else:
            self.storage = MemoryStorage()  # the workers' file when shared: this stays empty
            self.backend = "memory" if self.shared is None else "shared"
        self._limiter = MovingWindowRateLimiter(self.storage)
        self._items: dict[int, RateLimitItemPerMinute] = {}
        self.failures = 0

    async def hit(self, endpoint_id: int, per_minute: int, who: str) -> RateState | None:
        """Count one call; None when the counter store is unavailable (fail open)."""
        if self.shared is not None:
            try:
                counted = self.shared.hit(f"ep{endpoint_id}/{per_minute}/{who}", per_minute)
            except OSError as exc:  # the file went away (a temp cleaner): let the call through
                self.failures += 1
                log.warning("rate limit file unavailable, not limiting: %s", exc)
                return None
            return RateState(counted.allowed, per_minute, counted.remaining, counted.reset_s)
        item = self._items.get(per_minute)
        if item is None:
            item = self._items[per_minute] = RateLimitItemPerMinute(per_minute)
        key = f"ep{endpoint_id}"
        try:
            allowed = await self._limiter.hit(item, key, who)
            stats = await self._limiter.get_window_stats(item, key, who)
        except Exception as exc:  # redis down, timeouts: let the call through
            self.failures += 1
            log.warning("rate limit store unavailable, not limiting: %s", exc)
            return None
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        return RateState(allowed, per_minute, max(0, stats.remaining), reset)
