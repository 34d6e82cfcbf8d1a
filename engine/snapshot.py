"""One consistent read of the catalogue tables, with each mapping's dependencies and digest.

:func:`read_snapshot` reads the mapping rows (active and drafts), their
validation schemas, sanitization rules, response templates, cache settings and
the error codes, inside the caller's repeatable-read transaction, and gathers
for each mapping a :class:`~engine.compiler.RowInputs` whose fingerprint changes
whenever the row or anything it depends on changes. Rows of the side tables
that are wrong are reported as :class:`Problem` (errors or warnings).

The fingerprints are digests PostgreSQL computes (:data:`DIGESTS`, over what the
``LOAD_*`` queries read), so a reload of thousands of rows transfers and decodes
only the rows whose digest changed: ``keep`` names the rows (and the digest) the
caller still holds compiled, and those come back as digests alone. Digesting every
row costs the server a tenth of a second at 10,000 rows, so a reload first reads
each row's stamp (:data:`STAMPS`: the row versions its digest reads) and digests
only the rows whose stamp changed since the previous snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from engine import checks
from engine.compiler import RowInputs
from engine.errors import ErrorCode, SpecError
from engine.shaping import Envelope, compile_envelope
from engine.validation import SanitizationRule, compile_rule

LOAD_MAPPINGS = """
SELECT id, endpoint_path, http_method, service_name, database_operation, target_table,
       target_schema, query_template, query_parameters, result_mapping, cache_enabled,
       cache_ttl_seconds, rate_limit_per_minute, requires_auth, required_roles,
       required_permissions, is_active, statement_timeout_ms, version, description,
       max_concurrent, bulk_import
FROM api_endpoint_mappings
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
SELECT id, endpoint_mapping_id, response_type, response_headers, include_metadata,
       include_pagination, include_timestamps
FROM api_response_templates
ORDER BY id
"""
LOAD_ERROR_CODES = """
SELECT error_code, error_message, error_category, http_status_code, suggested_action,
       localized_messages
FROM api_error_codes
ORDER BY error_code
"""
LOAD_CACHE_CONFIG = """
SELECT endpoint_mapping_id, cache_enabled, cache_ttl_seconds, cache_key_template,
       cache_invalidation_rules, cache_strategy, cache_max_entries
FROM api_cache_config
"""
# per mapping, a digest of everything the queries above read for it: its row, its own
# schemas, rules, templates and cache settings, the global rules and default templates,
# and whether the error code its result_mapping.not_found names exists (built from the
# LOAD_* queries, so a column one of them gains is in the digest too)
_DIGESTS = """
WITH m AS ({m}),
     s AS ({s}),
     r AS ({r}),
     t AS ({t}),
     c AS ({c}),
     shared AS (
         SELECT coalesce((SELECT json_agg(to_jsonb(r) ORDER BY r.id)::text
                          FROM r WHERE r.endpoint_mapping_id IS NULL), '-')
             || coalesce((SELECT json_agg(to_jsonb(t) ORDER BY t.id)::text
                          FROM t WHERE t.endpoint_mapping_id IS NULL), '-') AS doc),
     own_s AS (SELECT endpoint_mapping_id AS id, json_agg(to_jsonb(s) ORDER BY s.id)::text AS doc
               FROM s GROUP BY 1),
     own_r AS (SELECT endpoint_mapping_id AS id, json_agg(to_jsonb(r) ORDER BY r.id)::text AS doc
               FROM r WHERE r.endpoint_mapping_id IS NOT NULL GROUP BY 1),
     own_t AS (SELECT endpoint_mapping_id AS id, json_agg(to_jsonb(t) ORDER BY t.id)::text AS doc
               FROM t WHERE t.endpoint_mapping_id IS NOT NULL GROUP BY 1)
SELECT m.id,
       md5(concat_ws(E'\\n', (SELECT doc FROM shared), to_jsonb(m)::text,
                     coalesce(own_s.doc, '-'), coalesce(own_r.doc, '-'), coalesce(own_t.doc, '-'),
                     coalesce(to_jsonb(c)::text, '-'),
                     (m.result_mapping ->> 'not_found' IS NULL OR EXISTS (
                         SELECT 1 FROM api_error_codes e
                         WHERE e.error_code = m.result_mapping ->> 'not_found'))::text)) AS digest
FROM m
LEFT JOIN own_s ON own_s.id = m.id
LEFT JOIN own_r ON own_r.id = m.id
LEFT JOIN own_t ON own_t.id = m.id
LEFT JOIN c ON c.endpoint_mapping_id = m.id
ORDER BY m.id
"""


STEP_ROWS = 1000  # a loop over every mapping yields to requests this often


def _of(query: str, column: str, shared: bool = False) -> str:
    """``query`` narrowed to the rows whose ``column`` is in ``$1`` (an int[]); with
    ``shared``, the rows of every mapping (``column`` NULL) too."""
    where = f"q.{column} = ANY($1::int[])"
    if shared:
        where += f" OR q.{column} IS NULL"
    return f"SELECT q.* FROM ({query}) AS q WHERE {where} ORDER BY q.{column}"


DIGESTS = _DIGESTS.format(
    m=LOAD_MAPPINGS, s=LOAD_SCHEMAS, r=LOAD_RULES, t=LOAD_TEMPLATES, c=LOAD_CACHE_CONFIG
)
# the same for the mappings whose ids are in $1
DIGESTS_OF = _DIGESTS.format(
    m=_of(LOAD_MAPPINGS, "id"),
    s=_of(LOAD_SCHEMAS, "endpoint_mapping_id"),
    r=_of(LOAD_RULES, "endpoint_mapping_id", shared=True),
    t=_of(LOAD_TEMPLATES, "endpoint_mapping_id", shared=True),
    c=_of(LOAD_CACHE_CONFIG, "endpoint_mapping_id"),
)
# per mapping, what routing needs and a stamp: the row versions (xmin) of everything its
# digest reads. Any write of one of those rows changes its stamp, so a mapping whose stamp
# is the one seen before has the digest seen before, and only the others are digested
# (xmin changes with every new row version; an update that changes nothing the digest
# reads, such as api_cache_config's figures, costs a digest and no compile)
STAMPS = """
WITH side AS (
    SELECT 's' AS k, endpoint_mapping_id AS mid, id, xmin::text AS x FROM api_validation_schemas
    UNION ALL
    SELECT 'r', endpoint_mapping_id, id, xmin::text FROM data_sanitization_rules WHERE is_active
    UNION ALL
    SELECT 't', endpoint_mapping_id, id, xmin::text FROM api_response_templates
    UNION ALL
    SELECT 'c', endpoint_mapping_id, 0, xmin::text FROM api_cache_config
),
own AS (SELECT mid, string_agg(k || id || ':' || x, ',' ORDER BY k, id) AS x
        FROM side WHERE mid IS NOT NULL GROUP BY mid),
shared AS (SELECT coalesce(string_agg(k || id || ':' || x, ',' ORDER BY k, id), '-') AS x
           FROM side WHERE mid IS NULL AND k IN ('r', 't'))
SELECT m.id, m.endpoint_path, m.http_method, m.is_active, m.version,
       m.xmin::text || '|' || coalesce(own.x, '-') || '|' || shared.x || '|'
           || coalesce(e.xmin::text, '-') AS stamp
FROM api_endpoint_mappings m
CROSS JOIN shared
LEFT JOIN own ON own.mid = m.id
LEFT JOIN api_error_codes e ON e.error_code = m.result_mapping ->> 'not_found'
ORDER BY m.id
"""


@dataclass(frozen=True)
class Problem:
    """A row the engine could not serve (or, with severity ``warning``, that looks wrong)."""

    source: str  # table the row lives in
    row_id: int | str | None
    reason: str
    path: str | None = None
    method: str | None = None
    severity: str = "error"

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.source,
            "id": self.row_id,
            "method": self.method,
            "path": self.path,
            "reason": self.reason,
            "severity": self.severity,
        }

    def __str__(self) -> str:
        where = f"{self.method} {self.path} " if self.path else ""
        return f"{self.source} id={self.row_id} {where}: {self.reason}"


def _error_codes(rows: Iterable[Mapping[str, Any]]) -> tuple[dict[str, ErrorCode], list[Problem]]:
    codes: dict[str, ErrorCode] = {}
    warnings: list[Problem] = []
    for r in rows:
        localized = r["localized_messages"] or {}
        codes[r["error_code"]] = ErrorCode(
            code=r["error_code"],
            status=int(r["http_status_code"]),
            message=r["error_message"],
            category=r["error_category"] or "server",
            localized={
                str(k).lower(): v for k, v in localized.items() if isinstance(v, str) and v.strip()
            }
            if isinstance(localized, Mapping)
            else {},
            suggested_action=r["suggested_action"],
        )
        warnings.extend(
            Problem("api_error_codes", r["error_code"], w, severity="warning")
            for w in checks.error_code_warnings(r)
        )
    return codes, warnings


@dataclass
class Snapshot:
    # every mapping row, as STAMPS reads it: id, endpoint_path, http_method, is_active,
    # version and stamp
    mappings: list[asyncpg.Record]
    digests: dict[int, str]  # mapping id -> digest (its fingerprint)
    stamps: dict[int, tuple[str, str]]  # mapping id -> (stamp, digest), for the next read
    inputs: dict[int, RowInputs]  # the rows read in full (all but those the caller keeps)
    codes: dict[str, ErrorCode]
    problems: list[Problem]
    warnings: list[Problem]
    default_error_envelope: Envelope | None


async def read_snapshot(
    conn: asyncpg.Connection,
    keep: Mapping[int, str] | None = None,
    stamps: Mapping[int, tuple[str, str]] | None = None,
) -> Snapshot:
    """Every mapping's digest, and in full the rows not in ``keep`` with that same digest.

    ``keep``: mapping id -> the fingerprint of the compiled version the caller holds.
    ``stamps``: the previous snapshot's :attr:`Snapshot.stamps`; a mapping whose stamp
    (:data:`STAMPS`) has not changed since keeps its digest, the others are digested.
    """
    mappings = await conn.fetch(STAMPS)
    stamps = stamps or {}
    digests: dict[int, str] = {}
    unknown: list[int] = []
    for n, r in enumerate(mappings, 1):
        if n % STEP_ROWS == 0:
            await asyncio.sleep(0)  # thousands of rows: let requests in between
        seen = stamps.get(r["id"])
        if seen is not None and seen[0] == r["stamp"]:
            digests[r["id"]] = seen[1]
        else:
            unknown.append(r["id"])
    if unknown:
        found = await (
            conn.fetch(DIGESTS)
            if len(unknown) == len(mappings)
            else conn.fetch(DIGESTS_OF, unknown)
        )
        digests.update((r["id"], r["digest"]) for r in found)
    if len(digests) < len(mappings):  # cannot happen in one snapshot; be safe
        mappings = [r for r in mappings if r["id"] in digests]
    keep = keep or {}
    new_stamps: dict[int, tuple[str, str]] = {}
    wanted: Sequence[int] | None = []
    for n, r in enumerate(mappings, 1):
        if n % STEP_ROWS == 0:
            await asyncio.sleep(0)
        mid = r["id"]
        digest = digests[mid]
        seen = stamps.get(mid)
        # the same pair kept, not a new tuple: a reload of one row among thousands makes
        # few objects for the collector to walk
        if seen is None or seen[1] != digest or seen[0] != r["stamp"]:
            seen = (r["stamp"], digest)
        new_stamps[mid] = seen
        if keep.get(mid) != digest:
            wanted.append(mid)
    if len(wanted) == len(mappings):
        wanted = None  # every row: no need to name them
    if wanted is None:
        full = await conn.fetch(LOAD_MAPPINGS)
        schema_rows = await conn.fetch(LOAD_SCHEMAS)
        cache_list = await conn.fetch(LOAD_CACHE_CONFIG)
    else:
        full, schema_rows, cache_list = [], [], []
        if wanted:
            full = await conn.fetch(_of(LOAD_MAPPINGS, "id"), wanted)
            schema_rows = await conn.fetch(_of(LOAD_SCHEMAS, "endpoint_mapping_id"), wanted)
            cache_list = await conn.fetch(_of(LOAD_CACHE_CONFIG, "endpoint_mapping_id"), wanted)
    rule_rows = await conn.fetch(LOAD_RULES)
    template_rows = await conn.fetch(LOAD_TEMPLATES)
    codes, warnings = _error_codes(await conn.fetch(LOAD_ERROR_CODES))
    cache_rows = {r["endpoint_mapping_id"]: r for r in cache_list}
    digest_of = digests
    problems: list[Problem] = []

    schemas: dict[int, dict[str, Mapping[str, Any]]] = {}
    for r in schema_rows:
        schemas.setdefault(r["endpoint_mapping_id"], {})[r["applies_to"] or "body"] = r

    global_rules: list[SanitizationRule] = []
    global_errors: list[tuple[str, str]] = []
    own_rules: dict[int, list[SanitizationRule]] = {}
    own_errors: dict[int, list[tuple[str, str]]] = {}
    own_rule_rows: dict[int, list[Mapping[str, Any]]] = {}
    for r in rule_rows:
        mid = r["endpoint_mapping_id"]
        warnings.extend(
            Problem("data_sanitization_rules", r["id"], w, severity="warning")
            for w in checks.rule_warnings(r)
        )
        if mid is not None:
            own_rule_rows.setdefault(mid, []).append(r)
        try:
            rule = compile_rule(r)
        except SpecError as exc:
            problems.append(Problem("data_sanitization_rules", r["id"], str(exc)))
            (global_errors if mid is None else own_errors.setdefault(mid, [])).append(
                (r["field_name"] or "", f"data_sanitization_rules id={r['id']}: {exc}")
            )
            continue
        (global_rules if mid is None else own_rules.setdefault(mid, [])).append(rule)

    defaults: dict[str, Envelope] = {}
    own_templates: dict[int, dict[str, Envelope]] = {}
    templates_by_id: dict[int | None, list[Mapping[str, Any]]] = {}
    for r in template_rows:
        env = compile_envelope(r)
        mid = r["endpoint_mapping_id"]
        templates_by_id.setdefault(mid, []).append(r)
        if mid is None:
            defaults[env.response_type] = env
        else:
            own_templates.setdefault(mid, {})[env.response_type] = env

    inputs: dict[int, RowInputs] = {}
    for row in full:
        if row["id"] not in digest_of:  # cannot happen in one snapshot; be safe
            continue
        mid = row["id"]
        own_schemas = schemas.get(mid, {})
        cache_row = cache_rows.get(mid)
        not_found = _not_found(row)
        has_not_found = not_found is None or not_found in codes
        rows_of_mine = own_rule_rows.get(mid, [])
        inputs[mid] = RowInputs(
            row=row,
            schemas=own_schemas,
            rules=[*global_rules, *own_rules.get(mid, [])],
            own_rule_rows=rows_of_mine,
            rule_errors=[*global_errors, *own_errors.get(mid, [])],
            templates={**defaults, **own_templates.get(mid, {})},
            cache_row=cache_row,
            has_not_found=has_not_found,
            fingerprint=digest_of[mid],
        )
    return Snapshot(
        mappings,
        digests,
        new_stamps,
        inputs,
        codes,
        problems,
        warnings,
        defaults.get("error"),
    )


def _not_found(row: Mapping[str, Any]) -> str | None:
    result = row["result_mapping"]
    if isinstance(result, str):
        with contextlib.suppress(orjson.JSONDecodeError):
            result = orjson.loads(result)
    value = result.get("not_found") if isinstance(result, Mapping) else None
    return value if isinstance(value, str) else None
