"""The catalogue: mapping rows loaded, checked against the database, compiled into routes.

:func:`load_catalog` reads every active mapping row with its validation
schemas, sanitization rules, response templates, error codes and cache
settings in one snapshot, prepares each template (syntax, placeholder count and
types, read-only for GET) and compiles what can be decided from the row once.
A row that fails is left out and reported as a :class:`Problem`; the rest
serve. :class:`CatalogManager` keeps the current catalogue and rebuilds it when
a trigger on those tables sends ``NOTIFY engine_catalog``, swapping it in
atomically; if its listening connection drops it reconnects and reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import string
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from engine.binding import Binder, PgType, check_types
from engine.database import Database, describe, is_read_only
from engine.errors import ErrorCatalog, ErrorCode, SpecError
from engine.shaping import Envelope, Shaper, compile_envelope
from engine.spec import EndpointSpec, parse_row, path_regex, path_specificity
from engine.validation import (
    SanitizationRule,
    Sanitizer,
    SchemaValidator,
    build_sanitizer,
    compile_rule,
    compile_schema,
)

log = logging.getLogger("engine.catalog")

CHANNEL = "engine_catalog"

LOAD_MAPPINGS = """
SELECT id, endpoint_path, http_method, service_name, database_operation, target_table,
       target_schema, query_template, query_parameters, result_mapping, cache_enabled,
       cache_ttl_seconds, rate_limit_per_minute, requires_auth, required_roles,
       required_permissions, is_active, statement_timeout_ms, version, description
FROM api_endpoint_mappings
WHERE is_active
ORDER BY id
"""
LOAD_SCHEMAS = """
SELECT id, endpoint_mapping_id, schema_name, validation_schema, strict_mode,
       allow_unknown_fields, sanitize_input, applies_to
FROM api_validation_schemas
ORDER BY id
"""
LOAD_RULES = """
SELECT id, endpoint_mapping_id, field_name, field_type, sanitization_type, sanitization_config,
       validation_pattern, min_length, max_length, min_value, max_value, error_message,
       default_value
FROM data_sanitization_rules
WHERE is_active
ORDER BY id
"""
LOAD_TEMPLATES = """
SELECT endpoint_mapping_id, response_type, response_headers, include_metadata,
       include_pagination, include_timestamps
FROM api_response_templates
ORDER BY id
"""
LOAD_ERROR_CODES = """
SELECT error_code, error_message, error_category, http_status_code, suggested_action,
       localized_messages
FROM api_error_codes
"""
LOAD_CACHE_CONFIG = """
SELECT endpoint_mapping_id, cache_enabled, cache_ttl_seconds, cache_key_template,
       cache_invalidation_rules, cache_strategy, cache_max_entries
FROM api_cache_config
"""


@dataclass(frozen=True)
class Problem:
    """A row the engine could not serve, and why."""

    source: str  # table the row lives in
    row_id: int | None
    reason: str
    path: str | None = None
    method: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.source,
            "id": self.row_id,
            "method": self.method,
            "path": self.path,
            "reason": self.reason,
        }

    def __str__(self) -> str:
        where = f"{self.method} {self.path} " if self.path else ""
        return f"{self.source} id={self.row_id} {where}: {self.reason}"


@dataclass(frozen=True)
class CacheConfig:
    """How one endpoint is cached (reads) or which cached reads it invalidates (writes)."""

    enabled: bool
    ttl_seconds: int
    strategy: str = "ttl"
    max_entries: int | None = None
    key_positions: tuple[int, ...] | None = None  # bound values in the key; None: all
    tables: frozenset[str] = frozenset()  # read: depends on; write: invalidates


def _rule_tables(rules: Any) -> list[str]:
    if rules is None:
        return []
    if isinstance(rules, Mapping):
        rules = rules.get("tables", [])
    if not isinstance(rules, list) or not all(isinstance(t, str) and t for t in rules):
        raise SpecError(
            'cache_invalidation_rules must be {"tables": ["table", ...]} or a list of table names'
        )
    return rules


def _key_positions(template: str | None, spec: EndpointSpec) -> tuple[int, ...] | None:
    """Bound values named by cache_key_template (auth-bound ones always stay in the key)."""
    if not template:
        return None
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    except ValueError as exc:
        raise SpecError(f"cache_key_template is malformed: {exc}") from None
    known = {p.name for p in spec.params}
    unknown = names - known
    if unknown:
        raise SpecError(
            f"cache_key_template names unknown parameter(s): {', '.join(sorted(unknown))}"
        )
    return tuple(p.position - 1 for p in spec.params if p.name in names or p.source == "auth")


def cache_config(spec: EndpointSpec, row: Mapping[str, Any] | None) -> CacheConfig:
    tables = {spec.target_table.lower()} if spec.target_table else set()
    if row is None:
        return CacheConfig(
            enabled=spec.cache_enabled, ttl_seconds=spec.cache_ttl_seconds, tables=frozenset(tables)
        )
    tables.update(t.lower() for t in _rule_tables(row["cache_invalidation_rules"]))
    ttl = row["cache_ttl_seconds"] or spec.cache_ttl_seconds
    if ttl <= 0:
        raise SpecError("cache_ttl_seconds must be positive")
    return CacheConfig(
        enabled=bool(row["cache_enabled"]) and spec.cache_enabled,
        ttl_seconds=ttl,
        strategy=row["cache_strategy"] or "ttl",
        max_entries=row["cache_max_entries"],
        key_positions=_key_positions(row["cache_key_template"], spec),
        tables=frozenset(tables),
    )


@dataclass(frozen=True)
class CompiledEndpoint:
    """Everything decided from one row, ready for the request path."""

    spec: EndpointSpec
    binder: Binder
    shaper: Shaper
    sql: str
    page_sql: str | None
    body_schema: SchemaValidator | None
    query_schema: SchemaValidator | None
    sanitizer: Sanitizer | None
    success: Envelope | None
    paginated: Envelope | None
    error: Envelope | None
    timeout_s: float | None
    cache: CacheConfig
    columns: tuple[tuple[str, str], ...] = ()

    @property
    def needs_body(self) -> bool:
        return self.binder.uses_body or self.body_schema is not None

    @property
    def cacheable(self) -> bool:
        return self.spec.is_read and self.cache.enabled and self.spec.result.shape != "stream"

    @property
    def invalidates(self) -> frozenset[str]:
        """Tables whose cached reads a successful call of this (write) endpoint drops."""
        return frozenset() if self.spec.is_read else self.cache.tables


@dataclass
class Route:
    path: str
    regex: Any
    methods: dict[str, CompiledEndpoint] = field(default_factory=dict)


@dataclass(frozen=True)
class Match:
    endpoint: CompiledEndpoint | None
    path_params: Mapping[str, str]
    allowed: tuple[str, ...] = ()


class RouteTable:
    """Path + method -> endpoint. Literal paths by dict, the rest by ordered regexes."""

    def __init__(self, endpoints: Iterable[CompiledEndpoint]) -> None:
        routes: dict[str, Route] = {}
        for ep in endpoints:
            route = routes.setdefault(ep.spec.path, Route(ep.spec.path, path_regex(ep.spec.path)))
            route.methods[ep.spec.method] = ep
        self._exact = {p: r for p, r in routes.items() if "{" not in p}
        self._patterns = sorted(
            (r for p, r in routes.items() if "{" in p), key=lambda r: path_specificity(r.path)
        )

    def match(self, path: str, method: str) -> Match | None:
        if method == "HEAD":
            method = "GET"
        allowed: set[str] = set()
        route = self._exact.get(path)
        if route is not None:
            ep = route.methods.get(method)
            if ep is not None:
                return Match(ep, {})
            allowed.update(route.methods)
        for route in self._patterns:
            m = route.regex.match(path)
            if m is None:
                continue
            ep = route.methods.get(method)
            if ep is not None:
                return Match(ep, m.groupdict())
            allowed.update(route.methods)
        if allowed:
            return Match(None, {}, tuple(sorted(allowed)))
        return None


@dataclass
class Catalog:
    """One immutable generation of compiled endpoints."""

    endpoints: tuple[CompiledEndpoint, ...]
    errors: ErrorCatalog
    problems: tuple[Problem, ...]
    default_error_envelope: Envelope | None = None
    loaded_at: float = field(default_factory=time.time)
    generation: int = 0

    def __post_init__(self) -> None:
        self.routes = RouteTable(self.endpoints)

    def match(self, path: str, method: str) -> Match | None:
        return self.routes.match(path, method)


def empty_catalog() -> Catalog:
    return Catalog(endpoints=(), errors=ErrorCatalog(), problems=())


def _error_codes(rows: Iterable[Mapping[str, Any]]) -> ErrorCatalog:
    codes = {}
    for r in rows:
        localized = r["localized_messages"] or {}
        codes[r["error_code"]] = ErrorCode(
            code=r["error_code"],
            status=int(r["http_status_code"]),
            message=r["error_message"],
            category=r["error_category"] or "server",
            localized={str(k).lower(): str(v) for k, v in localized.items()}
            if isinstance(localized, Mapping)
            else {},
            suggested_action=r["suggested_action"],
        )
    return ErrorCatalog(codes)


class _Compiler:
    """Compiles rows against one connection (used only while loading)."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        server_version: int,
        errors: ErrorCatalog,
        default_timeout_ms: int,
    ) -> None:
        self.conn = conn
        self.server_version = server_version
        self.errors = errors
        self.default_timeout_ms = default_timeout_ms

    async def prepare(self, sql: str) -> Any:
        """describe() inside a savepoint, so a failure leaves the snapshot usable."""
        async with self.conn.transaction():
            return await describe(self.conn, sql)

    async def compile(
        self,
        row: Mapping[str, Any],
        schemas: Mapping[str, Mapping[str, Any]],
        rules: list[SanitizationRule],
        templates: Mapping[str, Envelope],
        cache_row: Mapping[str, Any] | None,
    ) -> CompiledEndpoint:
        spec = parse_row(row)
        if spec.result.not_found and spec.result.not_found not in self.errors:
            raise SpecError(
                f"result_mapping.not_found names unknown error code '{spec.result.not_found}'"
            )

        body_schema = query_schema = None
        sanitize = True
        for applies_to, srow in schemas.items():
            compiled = compile_schema(
                srow["schema_name"],
                srow["validation_schema"],
                strict_mode=bool(srow["strict_mode"]),
                allow_unknown_fields=bool(srow["allow_unknown_fields"]),
                applies_to=applies_to,
            )
            if applies_to == "body":
                body_schema = compiled
                sanitize = srow["sanitize_input"] is not False
            else:
                query_schema = compiled

        try:
            prepared = await self.prepare(spec.sql)
        except asyncpg.PostgresError as exc:
            raise SpecError(f"the template does not prepare: {exc.sqlstate} {exc}") from None
        pg_types = [PgType(name, kind, element) for name, kind, element in prepared.param_types]
        type_problems = check_types(spec.params, pg_types)
        if type_problems:
            raise SpecError("; ".join(type_problems))
        if spec.is_read:
            try:
                async with self.conn.transaction():
                    reads_only = await is_read_only(self.conn, spec.sql, self.server_version)
            except (asyncpg.PostgresError, asyncpg.InterfaceError):
                reads_only = None
            if reads_only is False:
                raise SpecError("a GET template must only read, but this one modifies data")

        page_sql = None
        if spec.result.paginate:
            n = len(spec.params)
            page_sql = f"SELECT * FROM ({spec.sql}) AS _page LIMIT ${n + 1} OFFSET ${n + 2}"
            try:
                await self.prepare(page_sql)
            except asyncpg.PostgresError as exc:
                raise SpecError(f"a paginated template must be a plain SELECT: {exc}") from None

        binder = Binder(spec.params, pg_types)
        timeout_ms = spec.statement_timeout_ms or self.default_timeout_ms
        cache = cache_config(spec, cache_row)
        if spec.is_read and cache.enabled and spec.cache_ttl_seconds <= 0 and cache_row is None:
            raise SpecError("cache_ttl_seconds must be positive when cache_enabled")
        return CompiledEndpoint(
            spec=spec,
            binder=binder,
            shaper=Shaper(spec.result, spec.method),
            sql=spec.sql,
            page_sql=page_sql,
            body_schema=body_schema,
            query_schema=query_schema,
            sanitizer=build_sanitizer(rules) if sanitize and rules else None,
            success=templates.get("success"),
            paginated=templates.get("paginated"),
            error=templates.get("error"),
            timeout_s=timeout_ms / 1000 if timeout_ms else None,
            cache=cache,
            columns=prepared.columns,
        )


async def load_catalog(
    conn: asyncpg.Connection, *, default_timeout_ms: int = 30000, generation: int = 0
) -> Catalog:
    """Read and compile every active row in one consistent snapshot."""
    problems: list[Problem] = []
    server_version = conn.get_server_version().major
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        mappings = await conn.fetch(LOAD_MAPPINGS)
        schema_rows = await conn.fetch(LOAD_SCHEMAS)
        rule_rows = await conn.fetch(LOAD_RULES)
        template_rows = await conn.fetch(LOAD_TEMPLATES)
        errors = _error_codes(await conn.fetch(LOAD_ERROR_CODES))
        cache_rows = {r["endpoint_mapping_id"]: r for r in await conn.fetch(LOAD_CACHE_CONFIG)}

        schemas: dict[int, dict[str, Mapping[str, Any]]] = {}
        for r in schema_rows:
            schemas.setdefault(r["endpoint_mapping_id"], {})[r["applies_to"] or "body"] = r

        global_rules: list[SanitizationRule] = []
        own_rules: dict[int, list[SanitizationRule]] = {}
        for r in rule_rows:
            try:
                rule = compile_rule(r)
            except SpecError as exc:
                problems.append(Problem("data_sanitization_rules", r["id"], str(exc)))
                continue
            if r["endpoint_mapping_id"] is None:
                global_rules.append(rule)
            else:
                own_rules.setdefault(r["endpoint_mapping_id"], []).append(rule)

        defaults: dict[str, Envelope] = {}
        own_templates: dict[int, dict[str, Envelope]] = {}
        for r in template_rows:
            env = compile_envelope(r)
            if r["endpoint_mapping_id"] is None:
                defaults[env.response_type] = env
            else:
                own_templates.setdefault(r["endpoint_mapping_id"], {})[env.response_type] = env

        compiler = _Compiler(conn, server_version, errors, default_timeout_ms)
        endpoints: list[CompiledEndpoint] = []
        seen: dict[tuple[str, str], int] = {}
        for row in mappings:
            mid = row["id"]
            try:
                key = (row["http_method"].upper(), _normalise(row["endpoint_path"]))
                if key in seen:
                    raise SpecError(
                        f"its path and method clash with mapping id={seen[key]} "
                        "(same path with other parameter names)"
                    )
                ep = await compiler.compile(
                    row,
                    schemas.get(mid, {}),
                    [*global_rules, *own_rules.get(mid, [])],
                    {**defaults, **own_templates.get(mid, {})},
                    cache_rows.get(mid),
                )
            except (SpecError, asyncpg.InterfaceError, ValueError, TypeError, KeyError) as exc:
                reason = str(exc) if isinstance(exc, SpecError) else f"cannot compile: {exc}"
                problems.append(
                    Problem(
                        "api_endpoint_mappings",
                        mid,
                        reason,
                        path=row["endpoint_path"],
                        method=row["http_method"],
                    )
                )
                continue
            seen[key] = mid
            endpoints.append(ep)
    return Catalog(
        endpoints=tuple(endpoints),
        errors=errors,
        problems=tuple(problems),
        default_error_envelope=defaults.get("error"),
        generation=generation,
    )


def _normalise(path: str) -> str:
    out = []
    for seg in path.strip("/").split("/"):
        out.append("{}" if seg.startswith("{") and seg.endswith("}") else seg)
    return "/" + "/".join(out)


class CatalogManager:
    """Holds the live catalogue and rebuilds it when asked (by NOTIFY or a reconnect)."""

    def __init__(
        self,
        db: Database,
        *,
        debounce_s: float = 0.1,
        default_timeout_ms: int = 30000,
        on_reload: Callable[[Catalog], None] | None = None,
    ) -> None:
        self.db = db
        self.current: Catalog = empty_catalog()
        self._debounce = debounce_s
        self._default_timeout_ms = default_timeout_ms
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._generation = 0
        self._on_reload = on_reload
        self.reloads = 0
        self.reload_failures = 0

    async def load(self) -> Catalog:
        """Build a new catalogue and swap it in; the old one stays on failure."""
        self._generation += 1
        async with self.db.write.acquire() as conn:
            catalog = await load_catalog(
                conn, default_timeout_ms=self._default_timeout_ms, generation=self._generation
            )
        self.current = catalog
        self.reloads += 1
        for problem in catalog.problems:
            log.warning("skipped %s", problem)
        log.info(
            "catalogue generation %d: %d endpoint(s), %d problem(s)",
            catalog.generation,
            len(catalog.endpoints),
            len(catalog.problems),
        )
        if self._on_reload:
            self._on_reload(catalog)
        return catalog

    def request_reload(self, _payload: str = "") -> None:
        self._wake.set()

    async def start(self) -> None:
        await self.load()
        self._task = asyncio.create_task(self._run(), name="catalog-reloader")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

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
