"""One consistent read of the catalogue tables, with each mapping's dependencies and digest.

:func:`read_snapshot` reads the mapping rows (active and drafts), their
validation schemas, sanitization rules, response templates, cache settings and
the error codes, inside the caller's repeatable-read transaction, and gathers
for each mapping a :class:`~engine.compiler.RowInputs` whose fingerprint changes
whenever the row or anything it depends on changes. Rows of the side tables
that are wrong are reported as :class:`Problem` (errors or warnings).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from engine import checks
from engine.compiler import RowInputs, fingerprint
from engine.errors import ErrorCode, SpecError
from engine.shaping import Envelope, compile_envelope
from engine.validation import SanitizationRule, compile_rule

LOAD_MAPPINGS = """
SELECT id, endpoint_path, http_method, service_name, database_operation, target_table,
       target_schema, query_template, query_parameters, result_mapping, cache_enabled,
       cache_ttl_seconds, rate_limit_per_minute, requires_auth, required_roles,
       required_permissions, is_active, statement_timeout_ms, version, description,
       max_concurrent
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
    mappings: list[asyncpg.Record]
    inputs: dict[int, RowInputs]
    codes: dict[str, ErrorCode]
    problems: list[Problem]
    warnings: list[Problem]
    default_error_envelope: Envelope | None


def _plain(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if record is None else dict(record.items())


async def read_snapshot(conn: asyncpg.Connection) -> Snapshot:
    mappings = await conn.fetch(LOAD_MAPPINGS)
    schema_rows = await conn.fetch(LOAD_SCHEMAS)
    rule_rows = await conn.fetch(LOAD_RULES)
    template_rows = await conn.fetch(LOAD_TEMPLATES)
    codes, warnings = _error_codes(await conn.fetch(LOAD_ERROR_CODES))
    cache_rows = {r["endpoint_mapping_id"]: r for r in await conn.fetch(LOAD_CACHE_CONFIG)}
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

    shared = fingerprint(
        [_plain(r) for r in rule_rows if r["endpoint_mapping_id"] is None],
        [_plain(r) for r in templates_by_id.get(None, [])],
    )
    inputs: dict[int, RowInputs] = {}
    for row in mappings:
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
            fingerprint=fingerprint(
                shared,
                _plain(row),
                {k: _plain(v) for k, v in own_schemas.items()},
                [_plain(r) for r in rows_of_mine],
                [_plain(r) for r in templates_by_id.get(mid, [])],
                _plain(cache_row),
                has_not_found,
            ),
        )
    return Snapshot(mappings, inputs, codes, problems, warnings, defaults.get("error"))


def _not_found(row: Mapping[str, Any]) -> str | None:
    result = row["result_mapping"]
    if isinstance(result, str):
        with contextlib.suppress(orjson.JSONDecodeError):
            result = orjson.loads(result)
    value = result.get("not_found") if isinstance(result, Mapping) else None
    return value if isinstance(value, str) else None
