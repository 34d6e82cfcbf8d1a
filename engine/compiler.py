"""One mapping row (with the rows it depends on) compiled into a ready-to-call endpoint.

Everything that can be decided from the rows is decided here, once: the
spec, the binder and its PostgreSQL types, the validators, the SQL (and its
paginated form), the cache policy, the envelopes, and the checks of
:mod:`engine.checks` with the facts they need (returned columns, VOLATILE
functions, which tables exist), looked up in batches and remembered for the
whole load. A row that cannot work raises :class:`SpecError` with the reason.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import string
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import asyncpg
import orjson

from engine import checks, plans, records, sqltext
from engine.binding import Binder, PgType, check_types
from engine.errors import SpecError
from engine.shaping import Envelope, Shaper
from engine.spec import EndpointSpec, parse_row
from engine.validation import SanitizationRule, Sanitizer, SchemaValidator, build_sanitizer
from engine.validation import compile_schema as compile_json_schema

T = TypeVar("T")

CLIENT_SOURCES = frozenset({"path", "query", "body", "header"})
LOCK_TIMEOUT_MS = 5000  # a table locked by DDL fails the load (retried), never stalls it
# what every statement of a load runs under: the plan check's generic plans, and a statement
# timeout that leaves the lock timeout to fire first (a lock wait retries the whole load)
SESSION_SETTINGS = (
    f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}; "
    f"SET LOCAL statement_timeout = {LOCK_TIMEOUT_MS + plans.PLAN_TIMEOUT_MS}; "
    "SET LOCAL plan_cache_mode = force_generic_plan"
)
TYPE_INFO = """
SELECT t.oid, t.typtype::text AS typtype, e.typname::text AS element
FROM pg_type t
LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typlen = -1 AND t.typcategory = 'A'
WHERE t.oid = ANY($1::oid[])
"""
# user-defined functions (not built in, not from an extension) by name: is any overload
# VOLATILE, and is the schema on the search path (where an unqualified call looks)?
USER_FUNCTIONS = """
SELECT n.nspname::text AS schema, p.proname::text AS name,
       bool_or(p.provolatile = 'v') AS volatile,
       n.nspname = ANY (current_schemas(true)) AS on_path
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%'
  AND p.prokind = 'f'
  AND NOT EXISTS (
      SELECT 1 FROM pg_depend d
      WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
GROUP BY n.nspname, p.proname
"""
TABLES_EXIST = """
SELECT t.name, EXISTS (
    SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
      AND n.nspname NOT LIKE 'pg\\_temp%'
      AND lower(c.relname) = CASE WHEN position('.' IN t.name) > 0
                                  THEN split_part(t.name, '.', 2) ELSE t.name END
      AND (position('.' IN t.name) = 0 OR lower(n.nspname) = split_part(t.name, '.', 1))
) AS found
FROM unnest($1::text[]) AS t(name)
"""


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
            'api_cache_config.cache_invalidation_rules must be {"tables": ["table", ...]} '
            f"or a list of table names, not {orjson.dumps(rules).decode()}"
        )
    return rules


def _key_positions(template: str | None, spec: EndpointSpec) -> tuple[int, ...] | None:
    """Bound values named by cache_key_template (auth-bound ones always stay in the key)."""
    if not template:
        return None
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    except ValueError as exc:
        raise SpecError(
            f"api_cache_config.cache_key_template {template!r} is malformed: {exc}"
        ) from None
    known = {p.name for p in spec.params}
    unknown = names - known
    if unknown:
        raise SpecError(
            f"api_cache_config.cache_key_template {template!r} names unknown parameter(s) "
            f"{', '.join(sorted(unknown))} (the row's parameters: "
            f"{', '.join(sorted(known)) or 'none'})"
        )
    return tuple(p.position - 1 for p in spec.params if p.name in names or p.source == "auth")


def cache_config(spec: EndpointSpec, row: Mapping[str, Any] | None) -> CacheConfig:
    """The cache policy; a TTL of 0 (in the mapping or api_cache_config) means "not cached"."""
    tables = {spec.target_table.lower()} if spec.target_table else set()
    if row is None:
        return CacheConfig(
            enabled=spec.cache_enabled and spec.cache_ttl_seconds > 0,
            ttl_seconds=spec.cache_ttl_seconds,
            tables=frozenset(tables),
        )
    tables.update(t.lower() for t in _rule_tables(row["cache_invalidation_rules"]))
    ttl = row["cache_ttl_seconds"]
    if ttl is None:
        ttl = spec.cache_ttl_seconds
    return CacheConfig(
        enabled=bool(row["cache_enabled"]) and spec.cache_enabled and ttl > 0,
        ttl_seconds=ttl,
        strategy=row["cache_strategy"] or "ttl",
        max_entries=row["cache_max_entries"],
        key_positions=_key_positions(row["cache_key_template"], spec),
        tables=frozenset(tables),
    )


@dataclass(frozen=True)
class RowInputs:
    """One mapping row and everything it depends on, as read in one snapshot."""

    row: Mapping[str, Any]
    schemas: Mapping[str, Mapping[str, Any]]  # applies_to -> api_validation_schemas row
    rules: Sequence[SanitizationRule]  # global and own, compiled
    own_rule_rows: Sequence[Mapping[str, Any]]
    rule_errors: Sequence[tuple[str, str]]  # (field_name, why) of its rules that do not compile
    templates: Mapping[str, Envelope]  # response_type -> envelope (own over defaults)
    cache_row: Mapping[str, Any] | None
    has_not_found: bool  # the error code result_mapping.not_found names exists
    fingerprint: str  # changes whenever any of the above changes

    @property
    def mapping_id(self) -> int:
        return int(self.row["id"])


def fingerprint(*parts: Any) -> str:
    """A digest of rows as read (any change of a column changes it)."""
    blob = orjson.dumps(parts, default=str, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


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
    fingerprint: str = ""  # digest of the rows it was compiled from
    signature: tuple[Any, ...] = ()  # placeholder and column types PostgreSQL reported
    client_values: bool = True  # binds values the client sends (path, query, body, header)
    param_names: tuple[tuple[str, str], ...] = ()  # (name, in) of $1..$n, to name a bad one
    warnings: tuple[str, ...] = field(default=(), compare=False)
    after_sql: str | None = None  # keyset pages after the first: page_sql with the cursor
    count_sql: str | None = None  # paginate.count: the template's rows, counted
    cursor_scope: str = ""  # digest of what a keyset cursor depends on (engine/pagination.py)
    # bulk_import: the request is engine/bulk.py's; ``sql`` is then the form checked (an
    # empty bulk_records in front), and the plan holds the template that runs
    bulk: records.BulkPlan | None = None

    # decided once per compiled row (asked on every request, and for every row a reload walks)
    @functools.cached_property
    def needs_body(self) -> bool:
        return self.binder.uses_body or self.body_schema is not None

    @functools.cached_property
    def cacheable(self) -> bool:
        return self.spec.is_read and self.cache.enabled and self.spec.result.shape != "stream"

    @functools.cached_property
    def invalidates(self) -> frozenset[str]:
        """Tables whose cached reads a successful call of this (write) endpoint drops."""
        return frozenset() if self.spec.is_read else self.cache.tables


class Session:
    """One connection's statements during a load, in one block that only ever prepares.

    The block is a savepoint inside the load's snapshot (or a transaction, on a
    connection of the load's own), with :data:`SESSION_SETTINGS`. A statement that
    fails rolls the block back (so the snapshot stays usable) and the next one opens
    another; so a template costs one round trip, not three (SAVEPOINT, Parse,
    RELEASE). Statements prepared survive the rollbacks; the block is rolled back at
    :meth:`close`, so no setting outlives the load.
    """

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._block: Any = None  # the open asyncpg Transaction, or None

    async def run(self, call: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        if self._block is None:
            block = self.conn.transaction()
            await block.start()
            self._block = block
            try:
                await self.conn.execute(SESSION_SETTINGS)
            except BaseException:
                await self.close()
                raise
        try:
            return await call(self.conn)
        except asyncpg.PostgresError:
            await self.close()
            raise

    async def close(self) -> None:
        block, self._block = self._block, None
        if block is not None and not self.conn.is_closed():
            await block.rollback()


@dataclass(frozen=True)
class _Described:
    """What PostgreSQL said of one statement's text: the same for every row that has it."""

    params: tuple[Any, ...]
    attributes: tuple[Any, ...]
    stmt: Any  # the driver's statement, on the connection ``conn``
    conn: asyncpg.Connection

    @property
    def signature(self) -> tuple[Any, ...]:
        return (
            tuple(t.oid for t in self.params),
            tuple((a.name, a.type.oid) for a in self.attributes),
        )


@dataclass
class _Facts:
    """What a load looks up once, shared by the compilers of its connections.

    In one snapshot a statement's text prepares (and plans) the same way for every row
    that has it, so rows sharing a template (or its paginated forms) share one prepare
    and one plan check; rows sharing a JSON Schema share one compiled schema.
    """

    types: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    functions: dict[tuple[str | None, str], bool] | None = None
    tables: dict[str, bool] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    explain_by_name: bool = True  # EXPLAIN EXECUTE the driver's statement (plans.py)
    described: dict[str, asyncio.Future[_Described]] = field(default_factory=dict)
    plans: dict[str, asyncio.Future[frozenset[str]]] = field(default_factory=dict)
    schemas: dict[tuple[Any, ...], SchemaValidator] = field(default_factory=dict)
    calls: dict[str, set[tuple[str | None, str]]] = field(default_factory=dict)


async def _once(
    table: dict[str, asyncio.Future[T]], key: str, make: Callable[[], Awaitable[T]]
) -> T:
    """``make()``'s answer for ``key``, made once per load however many rows ask (its
    error too: a template that does not prepare fails the same way for every row)."""
    fut = table.get(key)
    if fut is not None:
        if fut.done():
            return fut.result()
        return await asyncio.shield(fut)  # a waiter cancelled leaves the answer to others
    fut = table[key] = asyncio.get_running_loop().create_future()
    try:
        value = await make()
    except asyncpg.PostgresError as exc:
        fut.set_exception(exc)
        fut.exception()  # retrieved: nobody else may ask
        raise
    except BaseException as exc:  # not the statement's answer: the next asker tries again
        del table[key]
        if isinstance(exc, asyncio.CancelledError):
            fut.cancel()
        else:
            fut.set_exception(exc)
            fut.exception()
        raise
    fut.set_result(value)
    return value


class Compiler:
    """Compiles rows on one connection during a load, counting its prepares.

    :meth:`fork` gives a compiler on another connection that shares what this one
    looked up (types, functions, tables), so a large load can compile on several.
    """

    def __init__(
        self, conn: asyncpg.Connection, *, default_timeout_ms: int, facts: _Facts | None = None
    ) -> None:
        self.conn = conn
        self.session = Session(conn)
        self.default_timeout_ms = default_timeout_ms
        self.prepares = 0
        self.compiled = 0
        self._facts = facts if facts is not None else _Facts()
        self._types = self._facts.types
        self._tables = self._facts.tables

    def fork(self, conn: asyncpg.Connection) -> Compiler:
        """A compiler on ``conn`` (not in a transaction) sharing this one's look-ups."""
        return Compiler(conn, default_timeout_ms=self.default_timeout_ms, facts=self._facts)

    async def close(self) -> None:
        """Roll back what the session set (its statements stay prepared until released)."""
        await self.session.close()

    async def prepare(self, sql: str) -> asyncpg.prepared_stmt.PreparedStatement:
        """Prepare in the session's block, so a failure leaves the snapshot usable."""
        self.prepares += 1
        return await self.session.run(lambda conn: conn.prepare(sql))

    async def describe(self, sql: str) -> _Described:
        """``sql`` prepared once per load (on whichever connection asks first)."""

        async def make() -> _Described:
            stmt = await self.prepare(sql)
            return _Described(
                tuple(stmt.get_parameters()), tuple(stmt.get_attributes()), stmt, self.conn
            )

        return await _once(self._facts.described, sql, make)

    def _schema(self, srow: Mapping[str, Any], applies_to: str) -> SchemaValidator:
        """A row's JSON Schema compiled, once per load for every row holding the same one."""
        name = srow["schema_name"]
        strict, unknown = bool(srow["strict_mode"]), bool(srow["allow_unknown_fields"])
        schema = srow["validation_schema"]
        try:
            text = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
        except TypeError:
            text = None
        key = (text, strict, unknown, applies_to)
        known = self._facts.schemas.get(key) if text is not None else None
        if known is not None:
            return known if known.name == name else replace(known, name=name)
        compiled = compile_json_schema(
            name, schema, strict_mode=strict, allow_unknown_fields=unknown, applies_to=applies_to
        )
        if text is not None:
            self._facts.schemas[key] = compiled
        return compiled

    def _called(self, sql: str) -> set[tuple[str | None, str]]:
        calls = self._facts.calls.get(sql)
        if calls is None:
            calls = self._facts.calls[sql] = sqltext.called_functions(sql)
        return calls

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self.session.run(lambda conn: conn.fetch(query, *args))

    async def _type_info(self, oids: Iterable[int]) -> None:
        missing = sorted({o for o in oids if o not in self._types})
        if missing:
            for r in await self._fetch(TYPE_INFO, missing):
                self._types[r["oid"]] = (r["typtype"], r["element"])

    async def _user_functions(self) -> dict[tuple[str | None, str], bool]:
        """(schema or None, name) -> whether a call may reach a VOLATILE overload."""
        async with self._facts.lock:  # once per load, whichever connection asks first
            if self._facts.functions is None:
                functions: dict[tuple[str | None, str], bool] = {}
                for r in await self._fetch(USER_FUNCTIONS):
                    functions[(r["schema"], r["name"])] = r["volatile"]
                    if r["on_path"]:
                        unqualified = (None, r["name"])
                        functions[unqualified] = functions.get(unqualified, False) or r["volatile"]
                self._facts.functions = functions
        return self._facts.functions

    async def missing_tables(self, names: Iterable[str]) -> set[str]:
        wanted = sorted({n.lower() for n in names if n})
        unknown = [n for n in wanted if n not in self._tables]
        if unknown:
            for r in await self._fetch(TABLES_EXIST, unknown):
                self._tables[r["name"]] = r["found"]
        return {n for n in wanted if not self._tables.get(n, False)}

    async def compile(self, inputs: RowInputs) -> CompiledEndpoint:
        self.compiled += 1
        spec = parse_row(inputs.row)
        if spec.result.not_found and not inputs.has_not_found:
            raise SpecError(
                f"result_mapping.not_found names the error code '{spec.result.not_found}', "
                "which is not in api_error_codes"
            )
        body_schema = query_schema = None
        sanitize = True
        for applies_to, srow in inputs.schemas.items():
            compiled = self._schema(srow, applies_to)
            if applies_to == "body":
                body_schema = compiled
                sanitize = srow["sanitize_input"] is not False
            else:
                query_schema = compiled

        checked_sql = records.check_sql(spec.sql, spec.bulk) if spec.bulk else spec.sql
        try:
            stmt = await self.describe(checked_sql)
        except asyncpg.LockNotAvailableError:
            raise
        except asyncpg.PostgresError as exc:
            raise SpecError(f"the template does not prepare: {exc.sqlstate} {exc}") from None
        params = stmt.params
        attributes = stmt.attributes
        await self._type_info([t.oid for t in params])
        pg_types = [self._pg_type(t) for t in params]
        type_problems = check_types(spec.params, pg_types)
        if type_problems:
            raise SpecError("; ".join(type_problems))

        functions = await self._user_functions()
        calls = [
            (schema, name) for schema, name in self._called(spec.sql) if (schema, name) in functions
        ]
        volatile = {name for schema, name in calls if functions[(schema, name)]}
        checks.check_statement(spec, volatile)
        plan_skipped = await self._check_plan(spec, stmt)

        page_sql = after_sql = count_sql = None
        cursor_scope = ""
        paginate = spec.result.paginate
        if paginate:
            n = len(spec.params)
            if paginate.keyset:
                await self._type_info([a.type.oid for a in attributes])
                checks.check_keyset(
                    spec,
                    [
                        (a.name, a.type.name, self._types.get(a.type.oid, ("b", None))[0] == "e")
                        for a in attributes
                    ],
                )
                types = {a.name: a.type for a in attributes}
                keyset = [
                    (column, desc, _type_sql(types[column]))
                    for column, desc in zip(paginate.keyset, paginate.descending, strict=True)
                ]
                page_sql, after_sql = keyset_sql(spec.sql, n, keyset)
                cursor_scope = fingerprint(spec.sql, spec.params, keyset)
                what = "the keyset page query"
            else:
                page_sql = f"SELECT * FROM (\n{spec.sql}\n) AS _page LIMIT ${n + 1} OFFSET ${n + 2}"
                what = "the paginated query"
            if paginate.count != "none":
                count_sql = f"SELECT count(*) AS total FROM (\n{spec.sql}\n) AS _count"
            for sql in (page_sql, after_sql, count_sql):
                if sql is None:
                    continue
                try:
                    await self.describe(sql)
                except asyncpg.LockNotAvailableError:
                    raise
                except asyncpg.PostgresError as exc:
                    if sql is count_sql:
                        what = "the count query"
                    raise SpecError(
                        f"a paginated template must be a plain SELECT; {what} does not "
                        f"prepare: {exc.sqlstate} {exc}"
                    ) from None

        binder = Binder(spec.params, pg_types)
        body_fields: set[str] | None = {p.name for p in spec.params if p.source == "body"}
        if body_schema is not None:
            body_fields |= checks.schema_fields(inputs.schemas["body"]["validation_schema"])
        elif any(p.source == "body" and p.type in ("json", "array") for p in spec.params):
            body_fields = None  # a free-form body: any field name may occur
        if binder.uses_body or body_schema is not None:
            broken = [
                why
                for name, why in inputs.rule_errors
                if body_fields is None or name in body_fields
            ]
            if broken:
                raise SpecError(
                    "a sanitization rule for one of its body fields does not compile: "
                    + "; ".join(broken)
                )
        cache = cache_config(spec, inputs.cache_row)
        columns = tuple((a.name, a.type.name) for a in attributes)
        warnings = checks.row_warnings(
            spec,
            columns=[c for c, _ in columns],
            missing_tables=await self.missing_tables(cache.tables),
            body_fields=body_fields,
            own_rules=inputs.own_rule_rows,
            calls_functions=bool(calls),
        )
        warnings.extend(plan_skipped)
        sanitizer = build_sanitizer(inputs.rules) if sanitize and inputs.rules else None
        bulk = None
        if spec.bulk is not None:
            bulk = records.compile_plan(spec.bulk, spec.sql, body_schema, sanitizer)
            warnings.extend(
                checks.bulk_warnings(spec, inputs.schemas.get("body"), calls_functions=bool(calls))
            )
        timeout_ms = spec.statement_timeout_ms or self.default_timeout_ms
        return CompiledEndpoint(
            spec=spec,
            binder=binder,
            shaper=Shaper(spec.result, spec.method),
            sql=checked_sql,
            page_sql=page_sql,
            body_schema=body_schema,
            query_schema=query_schema,
            sanitizer=sanitizer,
            success=inputs.templates.get("success"),
            paginated=inputs.templates.get("paginated"),
            error=inputs.templates.get("error"),
            timeout_s=timeout_ms / 1000 if timeout_ms else None,
            cache=cache,
            columns=columns,
            fingerprint=inputs.fingerprint,
            signature=stmt.signature,
            client_values=any(p.source in CLIENT_SOURCES for p in spec.params),
            param_names=tuple((p.name, p.source) for p in spec.params),
            warnings=tuple(warnings),
            after_sql=after_sql,
            count_sql=count_sql,
            cursor_scope=cursor_scope,
            bulk=bulk,
        )

    async def _check_plan(self, spec: EndpointSpec, stmt: _Described) -> list[str]:
        """Refuse a read whose generic plan writes or locks rows (engine/plans.py, every
        supported PostgreSQL); a warning when the server would not plan it."""
        if not (spec.is_read or spec.result.shape == "stream"):
            return []
        try:
            sql = stmt.stmt.get_query()
            nodes = await _once(self._facts.plans, sql, lambda: self._plan(sql, stmt))
        except asyncpg.LockNotAvailableError:
            raise
        except asyncpg.PostgresError as exc:
            return [f"the plan check was skipped (EXPLAIN refused it: {exc.sqlstate} {exc})"]
        checks.check_plan(spec, nodes)
        return []

    async def _plan(self, sql: str, stmt: _Described) -> frozenset[str]:
        if self._facts.explain_by_name and stmt.conn is self.conn:
            try:
                return await self.session.run(
                    lambda conn: plans.prepared_plan_nodes(conn, stmt.stmt)
                )
            except asyncpg.InvalidSQLStatementNameError:
                # a pooler that renames the driver's statements (PgBouncer's
                # max_prepared_statements): PREPARE the text again, as plans.py does
                self._facts.explain_by_name = False
        return await self.session.run(lambda conn: plans.plan_nodes(conn, sql, len(stmt.params)))

    def _pg_type(self, t: Any) -> PgType:
        typtype, element = self._types.get(t.oid, ("b", None))
        if t.kind == "array":
            return PgType(t.name, "array", element)
        if t.kind == "scalar" and typtype == "e":
            return PgType(t.name, "enum", None)
        return PgType(t.name, t.kind, None)

    async def still_prepares(self, ep: CompiledEndpoint) -> str | None:
        """Why an already compiled endpoint no longer works here (schema drift), or None."""
        try:
            stmt = await self.prepare(ep.sql)
            for sql in (ep.page_sql, ep.after_sql, ep.count_sql):
                if sql is not None:
                    await self.prepare(sql)
        except asyncpg.LockNotAvailableError:
            raise
        except asyncpg.PostgresError as exc:
            return f"the template no longer prepares: {exc.sqlstate} {exc}"
        if _signature(stmt) != ep.signature:
            return "the types of its placeholders or result columns have changed"
        return None


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _type_sql(t: Any) -> str:
    """A column's type as SQL names it (schema-qualified, quoted), for a cast."""
    return f"{_quote_ident(t.schema)}.{_quote_ident(t.name)}" if t.schema else _quote_ident(t.name)


def keyset_sql(template: str, n: int, keyset: Sequence[tuple[str, bool, str]]) -> tuple[str, str]:
    """(first page, page after a cursor) of a template with ``n`` placeholders.

    ``keyset``: (result column, descending, its type as SQL). The cursor's values
    bind ``$n+1..`` as text cast to the column's type, so each reads back exactly;
    the page size (one more row than shown) is the last placeholder. One direction
    throughout compares rows, ``(a, b) > ($1, $2)``, which an index on (a, b) serves;
    mixed directions spell the comparison out column by column, after a bound on the
    first column that an index on it can start from.
    """
    columns = [_quote_ident(c) for c, _, _ in keyset]
    order = ", ".join(
        f"{c} DESC" if desc else c for c, (_, desc, _) in zip(columns, keyset, strict=True)
    )
    values = [f"${n + 1 + i}::text::{t}" for i, (_, _, t) in enumerate(keyset)]
    directions = {desc for _, desc, _ in keyset}
    if len(directions) == 1:
        op = "<" if directions.pop() else ">"
        condition = f"({', '.join(columns)}) {op} ({', '.join(values)})"
    else:
        terms = []
        for i, (column, value) in enumerate(zip(columns, values, strict=True)):
            same = [f"{c} = {v}" for c, v in zip(columns[:i], values[:i], strict=True)]
            op = "<" if keyset[i][1] else ">"
            terms.append("(" + " AND ".join([*same, f"{column} {op} {value}"]) + ")")
        # the first column's bound on its own, redundant but one an index can start from
        bound = f"{columns[0]} {'<' if keyset[0][1] else '>'}= {values[0]}"
        condition = f"{bound} AND ({' OR '.join(terms)})"
    wrapped = f"SELECT * FROM (\n{template}\n) AS _page"
    first = f"{wrapped} ORDER BY {order} LIMIT ${n + 1}"
    after = f"{wrapped} WHERE {condition} ORDER BY {order} LIMIT ${n + len(keyset) + 1}"
    return first, after


def _signature(stmt: Any) -> tuple[Any, ...]:
    return (
        tuple(t.oid for t in stmt.get_parameters()),
        tuple((a.name, a.type.oid) for a in stmt.get_attributes()),
    )
