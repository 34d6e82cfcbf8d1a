"""The response cache: encoded answers of cacheable GETs, per endpoint, invalidated by table.

Each cacheable endpoint gets a cachetools cache chosen by ``api_cache_config``
(``ttl``, ``lru`` or ``lfu``; size bound ``cache_max_entries``). Keys are
built by the endpoint (its id, version, every bound value, and the principal
when the endpoint requires auth), so answers never cross principals.
Concurrent misses of one key run the query once. A write drops the cached
reads of the tables it touches; a per-table generation makes sure an answer
computed while such a write committed is not stored afterwards.

Over every endpoint, the process keeps at most ``ENGINE_CACHE_MAX_BYTES`` of
answers (each counted as its body, its key's bytes and ``ENTRY_OVERHEAD``): when a
new answer would pass the budget, the least recently used answers of any endpoint
go first, counted as evictions of their endpoint. An answer larger than
``1/LARGEST_SHARE`` of the budget is served but never cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cachetools import LFUCache, LRUCache, TTLCache

from engine.jobs import Periodic

log = logging.getLogger("engine.cache")

DEFAULT_MAX_ENTRIES = 1000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # ENGINE_CACHE_MAX_BYTES's default
ENTRY_OVERHEAD = 200  # bytes counted for each entry beyond its body, headers and key
LARGEST_SHARE = 8  # an answer over 1/8 of the budget is never cached


class _LeaderGone(Exception):
    """The request filling a key was cancelled; its waiters must not inherit that."""


@dataclass(frozen=True)
class CachedAnswer:
    body: bytes
    status: int
    media_type: str
    headers: tuple[tuple[str, str], ...]
    etag: str
    expires_at: float

    @property
    def size(self) -> int:
        """Bytes this answer is counted for (its key's bytes are added when it is stored)."""
        extra = sum(len(name) + len(value) for name, value in self.headers)
        return len(self.body) + len(self.etag) + len(self.media_type) + extra + ENTRY_OVERHEAD


def _key_bytes(key: Any) -> int:
    parts = key if isinstance(key, tuple) else (key,)
    return sum(len(p) for p in parts if isinstance(p, bytes | str))


def etag_of(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    for candidate in if_none_match.split(","):
        tag = candidate.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False


class _Counting:
    """Mixin counting evictions and telling its owner of every entry the store drops by
    itself (its entry bound, an expired TTL), so the byte budget frees its bytes."""

    evictions: int
    dropped: Callable[[Any], None]

    def popitem(self) -> Any:  # called by cachetools when the size bound is hit
        key, value = super().popitem()  # type: ignore[misc]
        self.evictions += 1
        self.dropped(key)
        return key, value


class _TTL(_Counting, TTLCache):
    def expire(self, time: float | None = None) -> Any:
        expired = super().expire(time)
        for key, _ in expired or ():
            self.dropped(key)
        return expired


class _LRU(_Counting, LRUCache):
    pass


class _LFU(_Counting, LFUCache):
    pass


class ByteBudget:
    """The bytes of cached answers one process holds, over every endpoint.

    Entries are kept in the order they were last stored or served; past
    ``max_bytes`` the least recently used go first, whichever endpoint holds them.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0
        self._order: OrderedDict[tuple[int, Any], EndpointCache] = OrderedDict()

    @property
    def largest(self) -> int:
        """The largest answer that is cached; larger ones are served, not kept."""
        return self.max_bytes // LARGEST_SHARE

    @property
    def entries(self) -> int:
        return len(self._order)

    def take(self, owner: EndpointCache, key: Any, size: int) -> None:
        self.bytes += size
        self._order[(owner.endpoint_id, key)] = owner
        while self.bytes > self.max_bytes and len(self._order) > 1:
            (_, oldest), holder = next(iter(self._order.items()))
            holder.evict(oldest)  # gives its bytes back through release()
            self.evictions += 1

    def release(self, owner: EndpointCache, key: Any, size: int) -> None:
        if self._order.pop((owner.endpoint_id, key), None) is not None:
            self.bytes -= size

    def touch(self, owner: EndpointCache, key: Any) -> None:
        entry = (owner.endpoint_id, key)
        if entry in self._order:
            self._order.move_to_end(entry)


@dataclass
class EndpointCache:
    strategy: str
    ttl_seconds: int
    max_entries: int
    tables: frozenset[str]
    endpoint_id: int = 0
    budget: ByteBudget = field(default_factory=lambda: ByteBudget(DEFAULT_MAX_BYTES))
    store: Any = None
    hits: int = 0
    misses: int = 0
    bytes: int = 0  # what its entries are counted for in the budget
    sizes: dict[Any, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.strategy == "lfu":
            self.store = _LFU(self.max_entries)
        elif self.strategy == "lru":
            self.store = _LRU(self.max_entries)
        else:
            self.store = _TTL(self.max_entries, ttl=self.ttl_seconds)
        self.store.evictions = 0
        self.store.dropped = self.forget

    def get(self, key: Any, now: float) -> CachedAnswer | None:
        answer = self.store.get(key)
        if answer is not None and answer.expires_at <= now:
            self.store.pop(key, None)
            self.forget(key)
            return None
        if answer is not None:
            self.budget.touch(self, key)
        return answer

    def put(self, key: Any, answer: CachedAnswer, size: int) -> None:
        """Store ``answer`` counted as ``size`` bytes; older answers may be evicted."""
        self.forget(key)  # an entry replaced gives its bytes back first
        self.store[key] = answer  # the entry bound may push one out (forget, via popitem)
        self.sizes[key] = size
        self.bytes += size
        self.budget.take(self, key, size)

    def forget(self, key: Any) -> None:
        """``key`` left the store (bound, expiry, eviction, invalidation): free its bytes."""
        size = self.sizes.pop(key, None)
        if size is not None:
            self.bytes -= size
            self.budget.release(self, key, size)

    def evict(self, key: Any) -> None:
        """Pushed out by the byte budget: counted as an eviction of this endpoint."""
        if isinstance(self.store, TTLCache):
            self.store.expire()  # an expired entry is still held until it is purged
        self.store.pop(key, None)
        self.store.evictions += 1
        self.forget(key)

    def clear(self) -> int:
        """Drop every entry; how many there were."""
        count = len(self.sizes)
        self.store.clear()
        for key in list(self.sizes):
            self.forget(key)
        return count

    @property
    def evictions(self) -> int:
        return self.store.evictions

    @property
    def size_bytes(self) -> int:
        return self.bytes


@dataclass
class ResponseCache:
    """Every endpoint's cache, the process's byte budget over all of them, and the table
    generations used to invalidate them."""

    default_max_entries: int = DEFAULT_MAX_ENTRIES
    max_bytes: int = DEFAULT_MAX_BYTES  # ENGINE_CACHE_MAX_BYTES
    caches: dict[int, EndpointCache] = field(default_factory=dict)
    generations: dict[str, int] = field(default_factory=dict)
    _inflight: dict[Any, asyncio.Future[CachedAnswer | None]] = field(default_factory=dict)
    invalidations: int = 0
    epoch: int = 0  # bumped by clear(), so in-flight fills of any table are not stored
    too_large: int = 0  # answers served but not cached: over the budget's largest share
    budget: ByteBudget = field(init=False)

    def __post_init__(self) -> None:
        self.budget = ByteBudget(self.max_bytes)

    @property
    def bytes(self) -> int:
        """Bytes of cached answers held, over every endpoint (at most ``max_bytes``)."""
        return self.budget.bytes

    def configure(
        self,
        endpoint_id: int,
        *,
        strategy: str,
        ttl_seconds: int,
        max_entries: int | None,
        tables: Iterable[str],
    ) -> None:
        """(Re)create an endpoint's cache if its settings changed; keep it otherwise."""
        wanted = (strategy, ttl_seconds, max_entries or self.default_max_entries, frozenset(tables))
        current = self.caches.get(endpoint_id)
        if (
            current
            and (current.strategy, current.ttl_seconds, current.max_entries, current.tables)
            == wanted
        ):
            return
        if current is not None:
            current.clear()
        self.caches[endpoint_id] = EndpointCache(
            *wanted, endpoint_id=endpoint_id, budget=self.budget
        )

    def drop(self, endpoint_id: int) -> None:
        """Forget an endpoint's cache (its definition changed); in-flight fills are not kept."""
        cache = self.caches.pop(endpoint_id, None)
        if cache is not None:
            cache.clear()

    def retain(self, endpoint_ids: Iterable[int]) -> None:
        keep = set(endpoint_ids)
        for eid in list(self.caches):
            if eid not in keep:
                self.drop(eid)

    def lookup(self, endpoint_id: int, key: Any) -> CachedAnswer | None:
        cache = self.caches.get(endpoint_id)
        if cache is None:
            return None
        answer = cache.get(key, time.monotonic())
        if answer is None:
            cache.misses += 1
        else:
            cache.hits += 1
        return answer

    def _generation(self, tables: frozenset[str]) -> tuple[int, ...]:
        return (self.epoch, *(self.generations.get(t, 0) for t in sorted(tables)))

    async def fill(
        self,
        endpoint_id: int,
        key: Any,
        compute: Callable[[], Awaitable[CachedAnswer | None]],
    ) -> CachedAnswer | None:
        """Run ``compute`` once for concurrent misses of ``key``; store a 2xx answer."""
        cache = self.caches.get(endpoint_id)
        if cache is None:
            return await compute()
        flight_key = (endpoint_id, key)
        waiting = self._inflight.get(flight_key)
        if waiting is not None:
            try:
                return await asyncio.shield(waiting)
            except _LeaderGone:  # the request computing it was cancelled: compute ourselves
                return await self.fill(endpoint_id, key, compute)
        future: asyncio.Future[CachedAnswer | None] = asyncio.get_running_loop().create_future()
        self._inflight[flight_key] = future
        before = self._generation(cache.tables)
        try:
            answer = await compute()
        except BaseException as exc:
            # waiters share an error answer (a 404, a timeout), never our cancellation
            future.set_exception(_LeaderGone() if isinstance(exc, asyncio.CancelledError) else exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        else:
            future.set_result(answer)
            if (
                answer is not None
                and 200 <= answer.status < 300
                and self._generation(cache.tables) == before
                and self.caches.get(endpoint_id) is cache
            ):
                self._store(cache, key, answer)
            return answer
        finally:
            del self._inflight[flight_key]

    def _store(self, cache: EndpointCache, key: Any, answer: CachedAnswer) -> None:
        size = answer.size + _key_bytes(key)
        if size > self.budget.largest:  # would push out many others: served, not kept
            self.too_large += 1
            return
        cache.put(key, answer, size)

    def invalidate(self, tables: Iterable[str]) -> int:
        """Drop cached answers of every endpoint reading one of ``tables``; count them."""
        names = {t.lower() for t in tables if t}
        if not names:
            return 0
        for name in names:
            self.generations[name] = self.generations.get(name, 0) + 1
        dropped = 0
        for cache in self.caches.values():
            if cache.tables & names:
                dropped += cache.clear()
        self.invalidations += 1
        return dropped

    def follow(self, previous: Any, catalog: Any) -> None:
        """After a reload: drop the answers of endpoints compiled anew, configure the rest.

        An endpoint compiled anew (its row or a row it depends on changed) may answer
        differently; the others keep their answers, and their configuration. A catalogue
        that knows what changed since ``previous`` (:attr:`engine.catalog.Catalog.changes`)
        has only those ids walked: a reload of one row among thousands is not a pass over
        every endpoint on the event loop, which held requests back for milliseconds.
        """
        changes = getattr(catalog, "changes", None)
        if changes is None or changes[0] != previous.generation:
            self._follow_all(previous, catalog)
            return
        for mid in changes[1]:
            self.drop(mid)
            ep = catalog.serving.get(mid)
            if ep is not None and ep.cacheable:
                self._configure_for(ep)

    def _follow_all(self, previous: Any, catalog: Any) -> None:
        before = previous.serving
        for mid, ep in before.items():
            if catalog.serving.get(mid) is not ep:
                self.drop(mid)
        for ep in catalog.endpoints:
            if ep.cacheable and before.get(ep.spec.id) is not ep:
                self._configure_for(ep)
        self.retain(ep.spec.id for ep in catalog.endpoints if ep.cacheable)

    def _configure_for(self, ep: Any) -> None:
        self.configure(
            ep.spec.id,
            strategy=ep.cache.strategy,
            ttl_seconds=ep.cache.ttl_seconds,
            max_entries=ep.cache.max_entries,
            tables=ep.cache.tables,
        )

    def clear(self) -> None:
        """Drop everything (after the listener reconnects, invalidations may be lost)."""
        self.epoch += 1
        for cache in self.caches.values():
            cache.clear()


STATS_CONFIG = """
UPDATE api_cache_config
SET cache_hit_ratio = $2, cache_size_mb = $3, cache_eviction_count = $4, updated_at = now()
WHERE endpoint_mapping_id = $1
"""


async def write_stats(
    cache: ResponseCache, conn: Any, endpoints: Mapping[int, tuple[str, str]]
) -> int:
    """Write each serving endpoint's cache figures to its ``api_cache_config`` row.

    The overall hit ratio, size and evictions; return the endpoints reported. Hits
    and misses per minute go to ``api_performance_metrics`` with the request
    counts (``engine.figures``), so they are never written here as requests.
    """
    configs = []
    for eid, c in list(cache.caches.items()):
        if eid not in endpoints:
            continue
        total = c.hits + c.misses
        overall = round(100 * c.hits / total, 2) if total else 0
        configs.append((eid, overall, round(c.size_bytes / 1_048_576, 2), c.evictions))
    if configs:
        await conn.executemany(STATS_CONFIG, configs)
    return len(configs)


CHANNEL = "engine_cache"


class Publisher:
    """Tells the other processes which tables a write changed: one task, batched, off the
    request path (``NOTIFY engine_cache``; each process's listener invalidates)."""

    name = "cache-invalidation-publisher"

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def publish(self, tables: Iterable[str]) -> None:
        self._pending.update(tables)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            tables = sorted(self._pending)
            self._pending.clear()
            try:
                async with self._pool.acquire(timeout=10) as conn:
                    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, ",".join(tables))
            except Exception as exc:  # keep them: the next write or a retry sends them
                self._pending.update(tables)
                log.warning("could not tell other processes to invalidate %s: %r", tables, exc)
                await asyncio.sleep(1)
                self._wake.set()


def stats_job(
    cache: ResponseCache,
    pool: Any,
    endpoints: Callable[[], Mapping[int, tuple[str, str]]],
    interval_s: float,
) -> Periodic:
    """Write the cache's figures every ``interval_s``."""

    async def work() -> None:
        async with pool.acquire(timeout=10) as conn:
            await write_stats(cache, conn, endpoints())

    return Periodic("cache-stats", interval_s, work)
