"""Prometheus metrics at ``GET /metrics``: what the requests did and what the process holds.

Two kinds of figures, measured two ways:

- **Per request** (counts by route, method and status class, latency, time in
  PostgreSQL, rate-limit refusals): :meth:`Metrics.observe` is a request
  observer (:mod:`engine.observe`). A request adds to a plain tally of its
  (route, method, status), found with one dict look-up; the tallies go into
  prometheus_client's labelled children (bound once per key) when scraped. (In
  multi-process mode, where another worker's scrape reads them from files, they go
  into them every :data:`SETTLE_S` too, and when the process stops: a scrape counts
  every answer sent up to SETTLE_S before it. Into the files at each request, with
  their locks and a loop over the histogram's buckets, was 1.5 % of a worker's
  samples under wrk.)
  prometheus_client's own updates take a lock and
  check the metric each time: five of them were 2.5 us of a cached answer's 30 us
  in process (cProfile), the tally a fifth of that. A path no row serves is labelled
  ``route="(unmatched)"`` and a method outside HTTP's usual ones ``"other"``, so
  nothing a client sends can grow the label sets.
- **Held by the process** (cache figures, pools, catalogue, error log, listener):
  read when scraped from the objects that own them (:func:`process_figures`),
  at no cost to requests.

Each :class:`Metrics` has its own registry (several apps in one process, as in
the tests, do not clash). When ``PROMETHEUS_MULTIPROC_DIR`` is set (several
workers behind one port), prometheus_client keeps every worker's request
metrics in files there and any worker's scrape sums them; this process's held
figures are copied into such files too, every :data:`MIRROR_INTERVAL_S` and at
each scrape, so a scrape answers for every worker (see :class:`_Mirror`).
"""

from __future__ import annotations

import asyncio
import glob
import os
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.requests import Request
from starlette.responses import Response

from engine.cache import ResponseCache
from engine.catalog import CatalogManager
from engine.database import Database, PoolFigures
from engine.errorlog import ErrorLogger
from engine.errors import ApiError
from engine.jobs import Periodic
from engine.listener import Listener
from engine.observe import Exchange
from engine.problems import BEARER_CHALLENGE, bearer_matches, own_route, problem

# prometheus_client decides at import, from this variable, whether values live in
# files shared by processes; read the same variable so the engine never disagrees
MULTIPROC_DIR: str | None = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
MIRROR_INTERVAL_S = 5.0
SETTLE_S = 0.1  # multi-process mode: how long a request's counts wait to reach the files

UNMATCHED = "(unmatched)"  # the route label of every path no row serves
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"
ABANDONED = "abandoned"  # the status label of a request whose client left before the answer
RATE_LIMITED_STATUS = 429  # only RATE_LIMIT_EXCEEDED answers 429 (sql/003)
# 1 ms .. 10 s, about three buckets a decade
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# how a worker's held figures combine in a multi-process scrape (default: summed
# over live workers); generations count each process's own loads, so are kept apart
_MULTIPROCESS_MODES = {
    "engine_catalog_generation": "liveall",
    "engine_catalog_endpoints": "livemax",
    "engine_routes_not_serving": "livemax",
    "engine_replica_lag_seconds": "livemax",
    "engine_replica_healthy": "livemin",
    "engine_replica_in_use": "livemin",
}

_ROUTE = ("route", "method")
_UPPER_BOUNDS = (*DURATION_BUCKETS, float("inf"))  # the histogram's buckets, as it keeps them


class _Tally:
    """One (route, method, status)'s requests since they last went into its children."""

    __slots__ = ("buckets", "children", "count", "db_s", "seconds")

    def __init__(self, children: tuple[Any, Any, Any, Any]) -> None:
        self.children = children  # requests, duration, db_time, rate-limited (or None)
        self.count = 0
        self.seconds = 0.0
        self.db_s = 0.0
        self.buckets = [0] * len(_UPPER_BOUNDS)

    def settle(self) -> None:
        """Into prometheus_client's children: the counts, the sums, the histogram's buckets
        (its own ``observe`` adds one to the bucket of the first bound >= the value)."""
        count = self.count
        if not count:
            return
        requests, duration, db_time, refused = self.children
        requests.inc(count)
        duration._sum.inc(self.seconds)
        for bucket, n in zip(duration._buckets, self.buckets, strict=True):
            if n:
                bucket.inc(n)
        db_time.inc(self.db_s)
        if refused is not None:
            refused.inc(count)
        self.count = 0
        self.seconds = self.db_s = 0.0
        self.buckets = [0] * len(_UPPER_BOUNDS)


@dataclass(frozen=True)
class CacheFigures:
    """One cacheable endpoint's cache."""

    route: str
    method: str
    hits: int
    misses: int
    evictions: int
    bytes: int


@dataclass(frozen=True)
class ReplicaFigures:
    """One read replica (engine/replicas.py), labelled by its environment variable's name."""

    replica: str
    healthy: bool
    in_use: bool
    lag_s: float | None


@dataclass(frozen=True)
class Figures:
    """What one process holds at one moment, read when scraped."""

    pools: Sequence[PoolFigures] = ()
    caches: Sequence[CacheFigures] = ()
    catalog_generation: int = 0
    catalog_endpoints: int = 0
    catalog_reloads: int = 0
    catalog_reload_failures: int = 0
    routes_not_serving: int = 0
    error_log_queued: int = 0
    error_log_written: int = 0
    error_log_dropped: int = 0
    error_log_failed: int = 0
    listener_reconnects: int = 0
    replicas: Sequence[ReplicaFigures] = ()
    reads: Mapping[str, int] = field(default_factory=dict)  # reads run per target (engine/replicas)
    # (code, route, method) -> 401, 404 (unknown path), 405 and 429 answers (errorlog samples)
    client_errors: Mapping[tuple[str, str, str], int] = field(default_factory=dict)


def process_figures(
    db: Database,
    cache: ResponseCache,
    catalogs: CatalogManager,
    errorlog: ErrorLogger,
    listener: Listener,
) -> Callable[[], Figures]:
    """A reader of this process's figures (call it on the event loop's thread)."""

    def read() -> Figures:
        routes = catalogs.endpoint_routes()
        catalog = catalogs.current
        return Figures(
            pools=db.pool_figures(),
            caches=[
                CacheFigures(*routes[eid], c.hits, c.misses, c.evictions, c.size_bytes)
                for eid, c in list(cache.caches.items())
                if eid in routes
            ],
            catalog_generation=catalog.generation,
            catalog_endpoints=len(catalog.endpoints),
            catalog_reloads=catalogs.reloads,
            catalog_reload_failures=catalogs.reload_failures,
            routes_not_serving=len(catalog.unavailable),
            error_log_queued=errorlog.queued,
            error_log_written=errorlog.written,
            error_log_dropped=errorlog.dropped,
            error_log_failed=errorlog.failed,
            listener_reconnects=listener.reconnects,
            client_errors=dict(errorlog.client_errors),
            replicas=[
                ReplicaFigures(r["replica"], r["healthy"], r["in_use"], r["lag_s"])
                for r in db.replicas.status()
            ],
            reads=db.replicas.reads(),
        )

    return read


def families(f: Figures) -> Iterator[Metric]:
    """The held figures as metric families."""
    pool_connections = GaugeMetricFamily(
        "engine_pool_connections", "Open connections of a pool by state.", labels=("pool", "state")
    )
    pool_size = GaugeMetricFamily("engine_pool_size", "Open connections.", labels=("pool",))
    pool_max = GaugeMetricFamily(
        "engine_pool_max_size", "Most connections the pool opens.", labels=("pool",)
    )
    pool_waiting = GaugeMetricFamily(
        "engine_pool_waiting", "Requests waiting for a connection.", labels=("pool",)
    )
    for p in f.pools:
        pool_connections.add_metric((p.name, "in_use"), p.in_use)
        pool_connections.add_metric((p.name, "idle"), p.idle)
        pool_size.add_metric((p.name,), p.size)
        pool_max.add_metric((p.name,), p.max_size)
        pool_waiting.add_metric((p.name,), p.waiting)
    yield from (pool_connections, pool_size, pool_max, pool_waiting)

    hits = CounterMetricFamily(
        "engine_cache_hits",
        "Cached answers served (since the endpoint last changed).",
        labels=_ROUTE,
    )
    misses = CounterMetricFamily(
        "engine_cache_misses", "Cache look-ups that found nothing.", labels=_ROUTE
    )
    evictions = CounterMetricFamily(
        "engine_cache_evictions", "Answers pushed out by the size bound.", labels=_ROUTE
    )
    held = GaugeMetricFamily("engine_cache_bytes", "Bytes of cached answers.", labels=_ROUTE)
    for c in f.caches:
        labels = (c.route, c.method)
        hits.add_metric(labels, c.hits)
        misses.add_metric(labels, c.misses)
        evictions.add_metric(labels, c.evictions)
        held.add_metric(labels, c.bytes)
    yield from (hits, misses, evictions, held)

    yield GaugeMetricFamily(
        "engine_catalog_generation",
        "Catalogue loads of this process; the serving one's number.",
        value=f.catalog_generation,
    )
    yield GaugeMetricFamily(
        "engine_catalog_endpoints", "Endpoints serving.", value=f.catalog_endpoints
    )
    yield CounterMetricFamily(
        "engine_catalog_reloads", "Catalogues built and swapped in.", value=f.catalog_reloads
    )
    yield CounterMetricFamily(
        "engine_catalog_reload_failures",
        "Reloads that failed (the previous catalogue kept serving).",
        value=f.catalog_reload_failures,
    )
    yield GaugeMetricFamily(
        "engine_routes_not_serving",
        "Routes whose owning row cannot serve (they answer 503 ENDPOINT_UNAVAILABLE).",
        value=f.routes_not_serving,
    )
    yield GaugeMetricFamily(
        "engine_error_log_queue_length",
        "Error-log entries waiting to be written.",
        value=f.error_log_queued,
    )
    yield CounterMetricFamily(
        "engine_error_log_written", "Error-log entries written.", value=f.error_log_written
    )
    yield CounterMetricFamily(
        "engine_error_log_dropped",
        "Error-log entries dropped because the queue was full.",
        value=f.error_log_dropped,
    )
    yield CounterMetricFamily(
        "engine_error_log_failed",
        "Error-log entries the database refused or could not take.",
        value=f.error_log_failed,
    )
    client_errors = CounterMetricFamily(
        "engine_client_errors",
        "401, 404 (unknown path), 405 and 429 answers by code and route; the error log "
        "writes at most ENGINE_ERROR_LOG_SAMPLE of each code a minute, then summary rows.",
        labels=("code", *_ROUTE),
    )
    for (code, route, method), count in f.client_errors.items():
        client_errors.add_metric((code, route, method), count)
    yield client_errors
    yield CounterMetricFamily(
        "engine_listener_reconnects",
        "Times the LISTEN connection was lost and made again (notifications may be lost).",
        value=f.listener_reconnects,
    )
    yield from _replica_families(f)


def _replica_families(f: Figures) -> Iterator[Metric]:
    """Read replicas (database_failover_config): health, lag, and where the reads ran."""
    reads = CounterMetricFamily(
        "engine_reads",
        "GET reads run, by target: primary (the primary's read pool) or a replica's name "
        "(a replica's failed read run again on the primary counts on both).",
        labels=("target",),
    )
    for target, count in f.reads.items():
        reads.add_metric((target,), count)
    yield reads
    if not f.replicas:
        return
    healthy = GaugeMetricFamily(
        "engine_replica_healthy",
        "1 while the replica passes its health checks (failover_threshold failures take it out).",
        labels=("replica",),
    )
    in_use = GaugeMetricFamily(
        "engine_replica_in_use",
        "1 when the replica takes reads: healthy and lagging at most ENGINE_MAX_REPLICA_LAG_S.",
        labels=("replica",),
    )
    lag = GaugeMetricFamily(
        "engine_replica_lag_seconds",
        "How far the replica's replay is behind the primary (0 when caught up).",
        labels=("replica",),
    )
    for r in f.replicas:
        healthy.add_metric((r.replica,), 1 if r.healthy else 0)
        in_use.add_metric((r.replica,), 1 if r.in_use else 0)
        if r.lag_s is not None:
            lag.add_metric((r.replica,), r.lag_s)
    yield from (healthy, in_use, lag)


class _Held:
    """A collector of the held figures, read at each scrape (single-process mode)."""

    def __init__(self, read: Callable[[], Figures]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        return list(families(self._read()))


class _Mirror:
    """This process's held figures, written where every worker's scrape reads them.

    Gauges become multi-process gauges (summed over live workers unless
    :data:`_MULTIPROCESS_MODES` says otherwise; a dead worker's are dropped at
    the next scrape); counters become counters raised by what changed since the
    last copy, so a worker's counts stay in the sum after it exits.
    """

    def __init__(self) -> None:
        self._metrics: dict[str, Gauge | Counter] = {}
        self._last: dict[tuple[str, tuple[str, ...]], float] = {}
        self._gauges: dict[tuple[str, tuple[str, ...]], Any] = {}

    def _metric(self, family: Metric, labelnames: tuple[str, ...]) -> Gauge | Counter:
        metric = self._metrics.get(family.name)
        if metric is None:
            if family.type == "counter":
                metric = Counter(family.name, family.documentation, labelnames, registry=None)
            else:
                mode = _MULTIPROCESS_MODES.get(family.name, "livesum")
                metric = Gauge(
                    family.name,
                    family.documentation,
                    labelnames,
                    registry=None,
                    multiprocess_mode=mode,  # type: ignore[arg-type]
                )
            self._metrics[family.name] = metric
        return metric

    def update(self, figures: Figures) -> None:
        seen: set[tuple[str, tuple[str, ...]]] = set()
        for family in families(figures):
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                names = tuple(sample.labels)
                values = tuple(sample.labels.values())
                metric = self._metric(family, names)
                child = metric.labels(*values) if names else metric
                key = (family.name, values)
                if family.type == "counter":
                    last = self._last.get(key, 0.0)
                    # smaller than last time: the source was reset (a recompiled endpoint)
                    grown = sample.value - last if sample.value >= last else sample.value
                    if grown > 0:
                        child.inc(grown)  # type: ignore[union-attr]
                    self._last[key] = sample.value
                else:
                    child.set(sample.value)  # type: ignore[union-attr]
                    self._gauges[key] = child
                    seen.add(key)
        for key in [k for k in self._gauges if k not in seen]:  # an endpoint gone
            self._gauges.pop(key).set(0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def prune_dead(path: str) -> None:
    """Drop the live gauges of workers that exited (nothing else is told when they do)."""
    pids = {
        name.rsplit("_", 1)[-1][:-3] for name in glob.glob(os.path.join(path, "gauge_live*.db"))
    }
    for pid in pids:
        if pid.isdigit() and not _alive(int(pid)):
            mark_process_dead(int(pid), path)


class Metrics:
    """The process's Prometheus metrics: a request observer and the ``/metrics`` body.

    ``figures`` reads what the process holds (:func:`process_figures`); ``token``
    is the bearer token ``/metrics`` asks for. Also a job (start/stop): in
    multi-process mode it copies the held figures every :data:`MIRROR_INTERVAL_S`.
    """

    name = "metrics-mirror"

    def __init__(
        self,
        figures: Callable[[], Figures] | None = None,
        *,
        token: str | None = None,
        multiprocess_dir: str | None = MULTIPROC_DIR,
    ) -> None:
        self.token = token or None
        self._figures = figures
        self._dir = multiprocess_dir
        self.registry = CollectorRegistry()
        # in multi-process mode the values live in files, collected from there at scrape
        owned = None if multiprocess_dir else self.registry
        self._requests = Counter(
            "engine_http_requests",
            "Catalogue requests answered, by route template, method and status class.",
            ("route", "method", "status"),
            registry=owned,
        )
        self._duration = Histogram(
            "engine_http_request_duration_seconds",
            "Time from a catalogue request's arrival to its answer sent.",
            _ROUTE,
            buckets=DURATION_BUCKETS,
            registry=owned,
        )
        self._db_time = Counter(
            "engine_db_time_seconds",
            "Time catalogue requests spent running statements in PostgreSQL.",
            _ROUTE,
            registry=owned,
        )
        self._rate_limited = Counter(
            "engine_rate_limited",
            "Catalogue requests refused by the endpoint's rate limit (429).",
            _ROUTE,
            registry=owned,
        )
        self._children: dict[tuple[str | None, str, int], _Tally] = {}
        self._settling: asyncio.TimerHandle | None = None  # multi-process mode's next settle
        self._stopped = False
        self._mirror: _Mirror | None = None
        self._job: Periodic | None = None
        if multiprocess_dir:
            MultiProcessCollector(self.registry, path=multiprocess_dir)
            if figures is not None:
                self._mirror = _Mirror()
                self._job = Periodic(self.name, MIRROR_INTERVAL_S, self._copy, final=True)
        elif figures is not None:
            self.registry.register(_Held(figures))

    # the hot path: one dict look-up and a few additions to plain numbers
    def observe(self, exchange: Exchange) -> None:
        """Count one answered catalogue request (a request observer)."""
        status = -1 if exchange.abandoned else exchange.status
        key = (exchange.route, exchange.method, status)
        tally = self._children.get(key)
        if tally is None:
            tally = self._bind(*key)
        seconds = exchange.duration_s
        tally.count += 1
        tally.seconds += seconds
        tally.buckets[bisect_left(_UPPER_BOUNDS, seconds)] += 1
        tally.db_s += exchange.db_s
        if key not in self._children:  # an odd method, never kept: into the children at once
            tally.settle()
        elif self._dir and self._settling is None:  # shared files: soon, for every worker
            self._arm()

    def _arm(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a script): at once
            loop = None
        if loop is None or self._stopped:
            self.settle()
            return
        self._settling = loop.call_later(SETTLE_S, self._settle_due)

    def _settle_due(self) -> None:
        self._settling = None
        self.settle()

    def settle(self) -> None:
        """Every tally into prometheus_client's children (before a scrape reads them)."""
        for tally in self._children.values():
            tally.settle()

    def _bind(self, route: str | None, method: str, status: int) -> _Tally:
        labels = (
            UNMATCHED if route is None else route,
            method if method in METHODS else OTHER_METHOD,
        )
        status_class = ABANDONED if status < 0 else f"{status // 100}xx"
        children = (
            self._requests.labels(*labels, status_class),
            self._duration.labels(*labels),
            self._db_time.labels(*labels),
            self._rate_limited.labels(*labels) if status == RATE_LIMITED_STATUS else None,
        )
        tally = _Tally(children)
        if method in METHODS:  # any method token may arrive: keep the dict bounded
            self._children[(route, method, status)] = tally
        return tally

    def render(self) -> bytes:
        """The text exposition of every metric (call it on the event loop's thread)."""
        self.settle()
        if self._dir:
            if self._mirror is not None:
                self._mirror.update(self._read())
            prune_dead(self._dir)
        return generate_latest(self.registry)

    def authorized(self, authorization: str | None) -> bool:
        """Whether an Authorization header lets its sender read the metrics."""
        return self.token is None or bearer_matches(authorization, self.token)

    def _read(self) -> Figures:
        assert self._figures is not None
        return self._figures()

    async def _copy(self) -> None:
        assert self._mirror is not None
        self._mirror.update(self._read())

    def start(self) -> None:
        if self._job is not None:
            self._job.start()

    async def stop(self) -> None:
        if self._settling is not None:
            self._settling.cancel()
            self._settling = None
        self._stopped = True
        self.settle()  # the last requests' counts: into the files, which outlive the process
        if self._job is not None:
            await self._job.stop()  # a last copy: the counts stay in the sum
        if self._dir is not None:
            mark_process_dead(os.getpid(), self._dir)  # this process's gauges go


async def metrics_page(request: Request) -> Response:
    """``GET /metrics``: the Prometheus text exposition (bearer token when one is set)."""
    metrics: Metrics = request.app.state.metrics
    if not metrics.authorized(request.headers.get("authorization")):
        error = ApiError(
            "INVALID_TOKEN", "The metrics token is missing or wrong", headers=BEARER_CHALLENGE
        )
        return problem(request, error)
    body = metrics.render()
    headers = {"Cache-Control": "no-store"}
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(body))
        return Response(status_code=200, headers=headers, media_type=CONTENT_TYPE_LATEST)
    return Response(body, headers=headers, media_type=CONTENT_TYPE_LATEST)


# every method of /metrics is answered here (405 for all but GET and HEAD), so the
# catalogue's dispatcher never sees it and it is never counted as a catalogue request
routes = [own_route("/metrics", metrics_page)]
