"""The catalogue: every mapping row read in one snapshot, compiled, owned, and reported.

:func:`load_catalog` reads the mapping rows (active and drafts) with the rows
they depend on (:mod:`engine.snapshot`), compiles each one whose definition or dependencies changed
since the previous generation (:mod:`engine.compiler`), and decides who
answers each route:

- **Ownership.** A (method, path with parameter names and trailing slash
  ignored) belongs to the *active row with the lowest id* at it, whether that
  row compiles or not. Any other active row there is ``refused`` and never
  serves, whatever happens to the owner.
- **Last good version.** When the owner's new definition (or a row it depends
  on) does not compile, the version that served before keeps serving
  (``stale``); with none (a cold start), the route answers 503
  ``ENDPOINT_UNAVAILABLE``. Deactivating or deleting a row takes effect at once.
- **Drafts.** Inactive rows are compiled too, never served, and reported
  (``draft``), so an admin can check a row before activating it.

Each row's state goes to ``api_endpoint_status`` after every load.
:class:`CatalogManager` keeps the live catalogue and rebuilds it when a
trigger sends ``NOTIFY engine_catalog`` (payload ``ddl`` after a schema change:
every row is re-checked against the database), swapping it in atomically.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import InitVar, dataclass, field
from typing import Any, TypeVar

import asyncpg
import orjson

from engine.compiler import LOCK_TIMEOUT_MS, CacheConfig, CompiledEndpoint, Compiler, RowInputs
from engine.database import Database
from engine.errors import ErrorCatalog, SpecError
from engine.hot import HotKeys
from engine.routing import UNAVAILABLE, Match, RouteTable, route_key
from engine.shaping import Envelope
from engine.snapshot import Problem, read_snapshot
from engine.spec import EndpointSpec

__all__ = [
    "CacheConfig",
    "Catalog",
    "CatalogManager",
    "CompiledEndpoint",
    "Problem",
    "load_catalog",
]

log = logging.getLogger("engine.catalog")
T = TypeVar("T")

CHANNEL = "engine_catalog"
DDL_PAYLOAD = "ddl"  # sent by the event trigger of sql/006 after CREATE/ALTER/DROP

DDL_WATCH = "SELECT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'engine_ddl_watch' AND evtenabled <> 'D')"
WRITE_STATUS = """
INSERT INTO api_endpoint_status AS s
    (endpoint_mapping_id, version, state, reason, serving_version, warnings, checked_at)
SELECT u.id, u.version, u.state, u.reason, u.serving_version, u.warnings::jsonb, now()
FROM unnest($1::int[], $2::int[], $3::text[], $4::text[], $5::int[], $6::text[])
     AS u(id, version, state, reason, serving_version, warnings)
WHERE EXISTS (SELECT 1 FROM api_endpoint_mappings m WHERE m.id = u.id)
ON CONFLICT (endpoint_mapping_id) DO UPDATE
SET version = EXCLUDED.version, state = EXCLUDED.state, reason = EXCLUDED.reason,
    serving_version = EXCLUDED.serving_version, warnings = EXCLUDED.warnings,
    checked_at = EXCLUDED.checked_at
WHERE s.version <= EXCLUDED.version  -- a process on an older snapshot never wins
"""

# what a row's compilation may raise besides SpecError (a driver or data surprise)
_COMPILE_ERRORS = (SpecError, asyncpg.InterfaceError, ValueError, TypeError, KeyError)

SERVING, STALE, REFUSED, DRAFT = "serving", "stale", "refused", "draft"
STEP_ROWS = 250  # CPU work over every row yields to requests this often
SLICE_S = 0.002  # compiling yields to requests at least this often
PARALLEL_ROWS = 200  # a load compiling at least this many rows uses extra connections too
# a catalogue of this many rows is kept out of the garbage collector's full passes: they
# would walk every compiled endpoint, stalling requests for a tenth of a second and more
FREEZE_ROWS = 2000
DRIFT_RECHECK_S = 30.0  # a row re-checked for drift that still prepares is not re-checked
# again for this long (its "missing column" comes from inside a function it calls)


@dataclass(frozen=True)
class RowStatus:
    """One mapping row's outcome, as written to ``api_endpoint_status``."""

    mapping_id: int
    version: int
    state: str  # serving | stale | refused | draft
    reason: str | None
    method: str
    path: str
    serving_version: int | None = None
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.mapping_id,
            "method": self.method,
            "path": self.path,
            "version": self.version,
            "state": self.state,
            "reason": self.reason,
            "serving_version": self.serving_version,
            "warnings": list(self.warnings),
        }


@dataclass
class Catalog:
    """One immutable generation of compiled endpoints and the state of every row."""

    endpoints: tuple[CompiledEndpoint, ...]  # what serves (stale ones included)
    errors: ErrorCatalog
    problems: tuple[Problem, ...]  # active rows that do not serve as written, broken side rows
    statuses: tuple[RowStatus, ...] = ()
    status_of: Mapping[int, RowStatus] = field(default_factory=dict)  # the same, by mapping id
    warnings: tuple[Problem, ...] = ()
    unavailable: tuple[tuple[str, str], ...] = ()  # (method, path) routes answering 503
    compiled: Mapping[int, CompiledEndpoint] = field(default_factory=dict)  # drafts too
    # per owning row, the version that last served: kept while schema drift breaks it too,
    # so it serves again (stale) once the schema is back
    last_good: Mapping[int, CompiledEndpoint] = field(default_factory=dict)
    failed: Mapping[int, tuple[str, str]] = field(default_factory=dict)  # id -> (digest, why)
    stamps: Mapping[int, tuple[str, str]] = field(default_factory=dict)  # engine/snapshot.py
    default_error_envelope: Envelope | None = None
    loaded_at: float = field(default_factory=time.time)
    generation: int = 0
    compiled_rows: int = 0  # rows compiled by this load (the others were reused)
    prepares: int = 0  # statements prepared by this load
    # (the generation this one was built from, the mapping ids whose serving endpoint is
    # not the same object in both): what a reload changed, so that those who follow the
    # catalogue (the response cache) walk only that, not every row
    changes: tuple[int, frozenset[int]] | None = None
    routes_from: InitVar[RouteTable | None] = None  # the table replaced (its regexes reused)
    route_table: InitVar[RouteTable | None] = None  # built already (from these endpoints)
    serving_map: InitVar[dict[int, CompiledEndpoint] | None] = None  # built already too

    def __post_init__(
        self,
        routes_from: RouteTable | None,
        route_table: RouteTable | None,
        serving_map: dict[int, CompiledEndpoint] | None,
    ) -> None:
        if route_table is None:
            route_table = RouteTable(_route_entries(self.endpoints, self.unavailable), routes_from)
        self.routes = route_table
        self.serving = (
            serving_map if serving_map is not None else {ep.spec.id: ep for ep in self.endpoints}
        )
        if self.statuses and not self.status_of:  # made without the loader's map: the same
            self.status_of = {s.mapping_id: s for s in self.statuses}
        self.hot = HotKeys()  # this generation's request lines -> cache keys (engine/hot.py)

    def match(self, path: str, method: str) -> Match | None:
        return self.routes.match(path, method)

    def state_counts(self) -> dict[str, int]:
        counts = dict.fromkeys((SERVING, STALE, REFUSED, DRAFT), 0)
        for s in self.statuses:
            counts[s.state] += 1
        return counts


def _route_entries(
    endpoints: Iterable[CompiledEndpoint], unavailable: Iterable[tuple[str, str]]
) -> Iterator[tuple[str, str, Any]]:
    for ep in endpoints:
        yield ep.spec.method, ep.spec.path, ep
    for method, path in unavailable:
        yield method, path, UNAVAILABLE


def empty_catalog() -> Catalog:
    return Catalog(endpoints=(), errors=ErrorCatalog(), problems=())


def _access_of_spec(spec: EndpointSpec) -> tuple[Any, ...]:
    """Who may call an endpoint, how often, and which values come from the caller."""
    auth = sorted((p.name, p.claim or p.name) for p in spec.params if p.source == "auth")
    return (
        spec.requires_auth,
        sorted(spec.required_roles),
        sorted(spec.required_permissions),
        spec.rate_limit_per_minute,
        auth,
    )


def _access_of_row(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The same as :func:`_access_of_spec`, read from a row that may not parse."""
    raw = row["query_parameters"]
    params = raw if isinstance(raw, list) else []
    auth = sorted(
        (str(p.get("name")), str(p.get("claim") or p.get("name")))
        for p in params
        if isinstance(p, Mapping) and p.get("in") == "auth"
    )
    return (
        bool(row["requires_auth"]),
        sorted(v for v in row["required_roles"] or () if v),
        sorted(v for v in row["required_permissions"] or () if v),
        row["rate_limit_per_minute"],
        auth,
    )


async def _fall_back(
    compiler: Compiler,
    row: Mapping[str, Any],
    fingerprint: str,
    last: CompiledEndpoint | None,
    reason: str,
    verify: bool,
) -> tuple[CompiledEndpoint | None, str]:
    """(the version to serve in place of a row that fails, or None; the row's reason)."""
    version = int(row["version"] or 1)
    if last is None:
        return None, reason
    if route_key(last.spec.method, last.spec.path) != route_key(
        row["http_method"], row["endpoint_path"]
    ):
        return None, reason  # the row moved: its old route is not its to keep
    if last.fingerprint == fingerprint:
        # the very definition that compiled before fails now: the database changed
        return None, reason
    if _access_of_row(row) != _access_of_spec(last.spec):
        return None, (
            f"{reason}; its last good version (v{last.spec.version}) is not served in its "
            "place, because this version changes who may call it (requires_auth, "
            "required_roles, required_permissions, rate_limit_per_minute or in: auth "
            "parameters)"
        )
    broken = await compiler.still_prepares(last) if verify else None
    if broken:
        return None, f"{reason}; the last good version (v{last.spec.version}) fails too: {broken}"
    return last, (
        f"version {version} is refused and version {last.spec.version} still serves: {reason}"
    )


def _clash_reason(row: Mapping[str, Any], owner: Mapping[str, Any]) -> str:
    same = row["endpoint_path"] == owner["endpoint_path"]
    a, b = row["endpoint_path"].rstrip("/"), owner["endpoint_path"].rstrip("/")
    how = (
        "the same path"
        if same
        else "the same path but for a trailing slash"
        if a == b
        else "the same path with other parameter names"
    )
    return (
        f"{row['http_method'].upper()} {row['endpoint_path']} is {how} as mapping "
        f"id={owner['id']} ({owner['endpoint_path']}), which owns the route: the active row with "
        "the lowest id owns a route, and this row never serves while that one is active"
    )


async def _compile_rows(
    compilers: list[Compiler], todo: list[RowInputs]
) -> dict[int, CompiledEndpoint | str]:
    """Each row compiled (or why not), the rows shared out over the compilers' connections."""
    results: dict[int, CompiledEndpoint | str] = {}
    rows = iter(todo)

    async def work(compiler: Compiler) -> None:
        slice_end = time.perf_counter() + SLICE_S
        for inputs in rows:  # one iterator: each row goes to whichever connection is free
            if time.perf_counter() > slice_end:
                # rows sharing a prepared template compile without waiting on the
                # database: let requests in now and then
                await asyncio.sleep(0)
                slice_end = time.perf_counter() + SLICE_S
            try:
                results[inputs.mapping_id] = await compiler.compile(inputs)
            except asyncpg.LockNotAvailableError:
                raise  # not the row's fault: the whole load is retried
            except _COMPILE_ERRORS as exc:
                results[inputs.mapping_id] = (
                    str(exc) if isinstance(exc, SpecError) else f"cannot compile: {exc}"
                )

    if len(compilers) == 1:
        await work(compilers[0])
        return results
    tasks = [asyncio.create_task(work(c)) for c in compilers]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()  # the first failure, as raised
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return results


async def load_catalog(
    conn: asyncpg.Connection,
    *,
    default_timeout_ms: int = 30000,
    generation: int = 0,
    previous: Catalog | None = None,
    recheck: Iterable[int] = (),
    recheck_all: bool = False,
    workers: Iterable[asyncpg.Connection] = (),
) -> Catalog:
    """Read every row in one snapshot and build the next catalogue.

    With ``previous``, rows whose definition and dependencies are unchanged reuse
    its compiled endpoints (unless named in ``recheck`` or ``recheck_all``): only
    their digests are read. An owner whose new definition fails keeps serving its
    previous version. ``workers``: connections of the caller's (not in a
    transaction) on which a load of many rows compiles too, in parallel.
    """
    prev_compiled = previous.compiled if previous else {}
    prev_failed = previous.failed if previous else {}
    prev_serving = previous.serving if previous else {}
    prev_last_good = previous.last_good if previous else {}
    last_good: dict[int, CompiledEndpoint] = {}
    forced = set(recheck)
    keep = (
        {}
        if recheck_all
        else {mid: ep.fingerprint for mid, ep in prev_compiled.items() if mid not in forced}
    )
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        # a table locked by DDL must not stall every reload: give up, retry, keep serving
        await conn.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
        snap = await read_snapshot(conn, keep, previous.stamps if previous else None)
        compiler = Compiler(conn, default_timeout_ms=default_timeout_ms)
        by_id: dict[int, Any] = {}
        keys: dict[int, tuple[str, str]] = {}  # mapping id -> its route key
        owners: dict[tuple[str, str], int] = {}
        for n, row in enumerate(snap.mappings, 1):
            if n % STEP_ROWS == 0:
                await asyncio.sleep(0)
            mid = row["id"]
            by_id[mid] = row
            key = keys[mid] = route_key(row["http_method"], row["endpoint_path"])
            if row["is_active"]:
                owners.setdefault(key, mid)

        compiled: dict[int, CompiledEndpoint] = {}
        failed: dict[int, tuple[str, str]] = {}  # id -> (fingerprint, reason)
        todo: list[RowInputs] = []
        for n, row in enumerate(snap.mappings, 1):
            if n % STEP_ROWS == 0:
                await asyncio.sleep(0)
            mid = row["id"]
            fp = snap.digests[mid]
            old = prev_compiled.get(mid)
            again = recheck_all or mid in forced
            if old is not None and old.fingerprint == fp and not again:
                compiled[mid] = old
                continue
            if not again and prev_failed.get(mid, ("", ""))[0] == fp:
                failed[mid] = prev_failed[mid]  # the same definition failed before
                continue
            todo.append(snap.inputs[mid])
        compilers = [compiler]
        if len(todo) >= PARALLEL_ROWS:
            compilers.extend(compiler.fork(c) for c in workers)
        try:
            results = await _compile_rows(compilers, todo)
        finally:
            for c in compilers:
                await c.close()
        for inputs in todo:
            mid, fp = inputs.mapping_id, inputs.fingerprint
            new = results[mid]
            if isinstance(new, str):
                failed[mid] = (fp, new)
                continue
            old = prev_compiled.get(mid)
            # a re-check that finds the same types keeps the old object (and its cache)
            same = old is not None and old.fingerprint == fp and old.signature == new.signature
            compiled[mid] = old if same and old.warnings == new.warnings else new
        failures = {mid: why for mid, (_, why) in failed.items()}

        # the owners whose definition fails: their last good version, or 503 (this may
        # prepare the old version again, so it is done here, in the snapshot)
        fallbacks: dict[int, tuple[CompiledEndpoint | None, str]] = {}
        try:
            for row in snap.mappings:
                mid = row["id"]
                if not row["is_active"] or owners.get(keys[mid]) != mid:
                    continue
                if mid in compiled:
                    continue
                last = prev_last_good.get(mid)
                verify = recheck_all or mid in forced or prev_serving.get(mid) is not last
                fallbacks[mid] = await _fall_back(
                    compiler,
                    snap.inputs[mid].row,
                    snap.digests[mid],
                    last,
                    failures.get(mid) or "",
                    verify,
                )
        finally:
            await compiler.close()

    codes = dict(snap.codes)
    errors_before = previous.errors if previous is not None else None
    return await _in_steps(
        _assemble(
            previous,
            snap,
            owners,
            keys,
            by_id,
            compiled,
            failed,
            failures,
            fallbacks,
            prev_last_good,
            last_good,
            codes,
            errors_before,
            generation,
            compiler.compiled + sum(c.compiled for c in compilers[1:]),
            compiler.prepares + sum(c.prepares for c in compilers[1:]),
        )
    )


async def _in_steps(steps: Generator[None, None, T]) -> T:
    """Run a generator of CPU work to its value, letting requests in between its steps
    (a thread would not help: it holds the interpreter as long, in 5 ms slices)."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value
        await asyncio.sleep(0)


def _assemble(
    previous: Catalog | None,
    snap: Any,
    owners: Mapping[tuple[str, str], int],
    keys: Mapping[int, tuple[str, str]],
    by_id: Mapping[int, Any],
    compiled: dict[int, CompiledEndpoint],
    failed: dict[int, tuple[str, str]],
    failures: Mapping[int, str],
    fallbacks: Mapping[int, tuple[CompiledEndpoint | None, str]],
    prev_last_good: Mapping[int, CompiledEndpoint],
    last_good: dict[int, CompiledEndpoint],
    codes: dict[str, Any],
    errors_before: ErrorCatalog | None,
    generation: int,
    compiled_rows: int,
    prepares: int,
) -> Generator[None, None, Catalog]:
    """Who answers each route and every row's state: pure, and in steps of
    :data:`STEP_ROWS` rows (a catalogue of thousands of rows takes a while, and requests
    keep being answered in between)."""
    endpoints: list[CompiledEndpoint] = []
    unavailable: list[tuple[str, str]] = []
    statuses: list[RowStatus] = []
    status_of: dict[int, RowStatus] = {}
    status_before = previous.status_of if previous is not None else {}
    problems = list(snap.problems)
    warnings = list(snap.warnings)
    for n, row in enumerate(snap.mappings, 1):
        if n % STEP_ROWS == 0:
            yield
        mid, version = row["id"], int(row["version"] or 1)
        method, path = row["http_method"].upper(), row["endpoint_path"]
        owner_id = owners.get(keys[mid])
        ep = compiled.get(mid)
        reason = failures.get(mid)
        row_warnings = ep.warnings if ep is not None else ()
        serving_version = None
        if not row["is_active"]:
            state = DRAFT
            if reason is None and owner_id is not None and owner_id < mid:
                reason = _clash_reason(row, by_id[owner_id])
            elif reason is None and owner_id is not None:
                row_warnings = (
                    *row_warnings,
                    f"activating it takes {method} {path} over from mapping id={owner_id} "
                    "(the active row with the lowest id owns a route)",
                )
        elif owner_id != mid:
            state, reason = REFUSED, _clash_reason(row, by_id[owner_id])
        elif ep is not None:
            state, serving_version = SERVING, version
            endpoints.append(ep)
            last_good[mid] = ep
        else:  # the owner's definition fails: its last good version, or 503
            last, reason = fallbacks[mid]
            if last is not None:
                state, serving_version = STALE, last.spec.version
                endpoints.append(last)
                last_good[mid] = last
            else:
                state = REFUSED
                unavailable.append((method, path))
                if mid in prev_last_good and mid not in last_good:
                    last_good[mid] = prev_last_good[mid]  # may serve again after drift
        if state in (REFUSED, STALE):
            problems.append(
                Problem("api_endpoint_mappings", mid, reason or "", path=path, method=method)
            )
        warnings.extend(
            Problem("api_endpoint_mappings", mid, w, path=path, method=method, severity="warning")
            for w in row_warnings
        )
        status = RowStatus(
            mid, version, state, reason, method, path, serving_version, tuple(row_warnings)
        )
        before = status_before.get(mid)
        if before == status:
            status = before  # kept: one object less for the collector, and `is` says "same"
        statuses.append(status)
        status_of[mid] = status

    if errors_before is not None:  # a stale endpoint may name a code since deleted: keep its text
        for n, ep in enumerate(endpoints, 1):
            if n % STEP_ROWS == 0:
                yield
            name = ep.spec.result.not_found
            if name and name not in codes and errors_before.defines(name):
                codes[name] = errors_before.get(name)
    serving, changes = yield from _changes(previous, endpoints)
    routes_from = previous.routes if previous is not None else None
    table = yield from RouteTable.in_steps(_route_entries(endpoints, unavailable), routes_from)
    yield  # the catalogue's own containers take a while too
    return Catalog(
        endpoints=tuple(endpoints),
        errors=ErrorCatalog(codes),
        problems=tuple(problems),
        statuses=tuple(statuses),
        status_of=status_of,
        warnings=tuple(warnings),
        unavailable=tuple(unavailable),
        compiled=compiled,
        failed=failed,
        last_good=last_good,
        default_error_envelope=snap.default_error_envelope,
        stamps=snap.stamps,
        generation=generation,
        compiled_rows=compiled_rows,
        prepares=prepares,
        changes=changes,
        route_table=table,
        serving_map=serving,
    )


def _changes(
    previous: Catalog | None, endpoints: list[CompiledEndpoint]
) -> Generator[None, None, tuple[dict[int, CompiledEndpoint], tuple[int, frozenset[int]] | None]]:
    """(mapping id -> serving endpoint, :attr:`Catalog.changes` against ``previous``), in
    steps of :data:`STEP_ROWS`."""
    serving: dict[int, CompiledEndpoint] = {}
    changed: set[int] = set()
    kept = 0  # ids serving before and now
    before = previous.serving if previous is not None else {}
    for n, ep in enumerate(endpoints, 1):
        if n % STEP_ROWS == 0:
            yield
        mid = ep.spec.id
        serving[mid] = ep
        old = before.get(mid)
        if old is not None:
            kept += 1
        if old is not ep:
            changed.add(mid)
    if len(before) > kept:  # some that served serve no more
        for n, mid in enumerate(before, 1):
            if n % STEP_ROWS == 0:
                yield
            if mid not in serving:
                changed.add(mid)
    if previous is None:
        return serving, None
    return serving, (previous.generation, frozenset(changed))


async def ddl_watched(conn: asyncpg.Connection) -> bool:
    """Whether the event trigger that reports schema changes (sql/006) is installed."""
    return bool(await conn.fetchval(DDL_WATCH))


async def write_statuses(conn: asyncpg.Connection, statuses: Iterable[RowStatus]) -> None:
    rows = sorted(statuses, key=lambda s: s.mapping_id)  # one lock order in every process
    await conn.execute(
        WRITE_STATUS,
        [s.mapping_id for s in rows],
        [s.version for s in rows],
        [s.state for s in rows],
        [s.reason for s in rows],
        [s.serving_version for s in rows],
        [orjson.dumps(s.warnings).decode() for s in rows],
    )


class CatalogManager:
    """Holds the live catalogue and rebuilds it when asked (NOTIFY, a reconnect, drift)."""

    def __init__(
        self,
        db: Database,
        *,
        debounce_s: float = 0.1,
        default_timeout_ms: int = 30000,
        on_reload: Callable[[Catalog, Catalog], None] | None = None,
    ) -> None:
        self.db = db
        self.current: Catalog = empty_catalog()
        self._debounce = debounce_s
        self._default_timeout_ms = default_timeout_ms
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._generation = 0
        self._on_reload = on_reload
        self._recheck: set[int] = set()
        self._recheck_all = False
        # endpoints a drift report made us re-check and that still prepare: a later
        # "missing table/column/function" from them comes from inside a function body
        self._cleared: dict[int, tuple[CompiledEndpoint, float]] = {}
        self._written: Mapping[int, RowStatus] = {}  # what this process last wrote
        self.ddl_watched: bool | None = None
        self.reloads = 0
        self.reload_failures = 0
        self._frozen = False  # this manager moved the live objects out of the collector's way
        self._churn = 0  # rows compiled since then (their old versions stay frozen)

    async def load(self) -> Catalog:
        """Build a new catalogue and swap it in; the old one stays on failure."""
        recheck, recheck_all = self._recheck, self._recheck_all
        self._recheck, self._recheck_all = set(), False
        self._generation += 1
        previous = self.current
        started = time.perf_counter()
        # a load that compiles every row makes objects for each: the collector's passes
        # over the growing heap on the way were a third of a 10,000-row start-up (py-spy);
        # _settle collects once at the end
        paused = gc.isenabled() and (recheck_all or not previous.statuses)
        if paused:
            gc.disable()
        try:
            async with self.db.write.acquire() as conn:
                catalog = await load_catalog(
                    conn,
                    default_timeout_ms=self._default_timeout_ms,
                    generation=self._generation,
                    previous=previous,
                    recheck=recheck,
                    recheck_all=recheck_all,
                )
                if self.ddl_watched is None or recheck_all:
                    was, self.ddl_watched = self.ddl_watched, await ddl_watched(conn)
                    if not self.ddl_watched and was is not False:
                        log.warning(
                            "schema changes are not watched: the event trigger engine_ddl_watch "
                            "is missing (creating it needs a superuser; see sql/006); a dropped "
                            "table or column is noticed only when a call fails"
                        )
        except BaseException:
            self._recheck |= recheck  # not done: ask again next time
            self._recheck_all |= recheck_all
            raise
        finally:
            if paused:
                gc.enable()
        self.current = catalog
        self.reloads += 1
        for problem in catalog.problems:
            log.warning("not serving as written: %s", problem)
        log.info(
            "catalogue generation %d: %d endpoint(s), %d problem(s), %d row(s) compiled, "
            "%d prepare(s), %.0f ms",
            catalog.generation,
            len(catalog.endpoints),
            len(catalog.problems),
            catalog.compiled_rows,
            catalog.prepares,
            (time.perf_counter() - started) * 1000,
        )
        if recheck_all:
            self._cleared.clear()
        for mid in recheck:
            if mid in catalog.serving:
                self._cleared[mid] = (catalog.serving[mid], time.monotonic())
        if self._on_reload:
            self._on_reload(previous, catalog)
        await asyncio.sleep(0)
        self._settle(catalog)
        changed = []
        for n, s in enumerate(catalog.statuses, 1):
            if n % STEP_ROWS == 0:
                await asyncio.sleep(0)
            written = self._written.get(s.mapping_id)
            if written is not s and written != s:
                changed.append(s)
        if changed:
            try:
                async with self.db.write.acquire(timeout=10) as conn:
                    await write_statuses(conn, changed)
                self._written = catalog.status_of
            except Exception as exc:  # the catalogue serves; only the report is late
                log.warning("could not write api_endpoint_status: %s", exc)
        return catalog

    def _settle(self, catalog: Catalog) -> None:
        """Freeze what is alive after a load of a large catalogue (``gc.freeze``), so the
        collector's full passes walk only what changed since, not every compiled endpoint.

        Objects frozen are not collected even once unreachable, unless freed by reference
        counting (compiled endpoints are): after replacing a quarter of the catalogue the
        freeze is lifted and a full pass done once; :meth:`stop` lifts it too.
        """
        if len(catalog.statuses) < FREEZE_ROWS and not self._frozen:
            return
        self._churn += catalog.compiled_rows
        if not self._frozen or self._churn > len(catalog.statuses) // 4:
            gc.unfreeze()
            gc.collect()
            self._churn = 0
        else:
            gc.collect(1)  # the young: what the load left behind
        gc.freeze()
        self._frozen = True

    def endpoint_routes(self) -> dict[int, tuple[str, str]]:
        """mapping id -> (path, method) of every serving endpoint."""
        return {ep.spec.id: (ep.spec.path, ep.spec.method) for ep in self.current.endpoints}

    def request_reload(self, payload: str = "") -> None:
        if payload == DDL_PAYLOAD:
            self._recheck_all = True
        self._wake.set()

    def report_drift(self, ep: CompiledEndpoint) -> bool:
        """A call of ``ep`` failed on a missing table, column or function: re-check it.

        False when ``ep`` was already re-checked for that and its template still
        prepares: the failure is then inside a function it calls, not drift.
        """
        cleared = self._cleared.get(ep.spec.id)
        if cleared is not None and cleared[0] is ep:
            if time.monotonic() - cleared[1] < DRIFT_RECHECK_S:
                return False
            del self._cleared[ep.spec.id]  # long ago: the schema may have changed since
        self._recheck.add(ep.spec.id)
        self._wake.set()
        return True

    async def start(self) -> None:
        await self.load()
        self._task = asyncio.create_task(self._run(), name="catalog-reloader")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._frozen:
            gc.unfreeze()
            self._frozen = False

    async def _run(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._debounce)  # let a burst of changes settle
            self._wake.clear()
            try:
                await self.load()
                failures = 0
            except Exception as exc:  # whatever it was, keep serving the previous catalogue
                self.reload_failures += 1
                failures += 1
                log.error("catalogue reload failed, keeping the previous one: %r", exc)
                await asyncio.sleep(min(0.1 * 2**failures, 5.0))
                self._wake.set()
