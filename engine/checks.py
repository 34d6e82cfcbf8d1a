"""The checks a row must pass to serve, and the warnings of rows that serve but look wrong.

Pure: every fact about the database (returned columns, which functions are
VOLATILE, which tables exist) is looked up by the compiler and handed in. An
error raises :class:`SpecError` (the row does not serve); a warning is a
string in the list returned (the row serves; ``engine check`` prints it).
Messages name the column and the value in the admin's terms.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from engine import sqltext
from engine.errors import SpecError
from engine.spec import EndpointSpec

# sanitization_config keys the sanitizer reads (engine/validation.py)
SANITIZATION_KEYS = frozenset(
    {
        "allowed_protocols",
        "check_url_format",
        "escape_html",
        "escape_sql",
        "max",
        "min",
        "non_negative",
        "precision",
        "regex_replace",
        "remove_extra_spaces",
        "required_fields",
        "strip",
        "to_lowercase",
        "to_uppercase",
    }
)

_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

# a catalogue of thousands of rows holds far fewer distinct templates: read each text once
_statement_kind = functools.lru_cache(maxsize=4096)(sqltext.statement_kind)
_has_own_limit = functools.lru_cache(maxsize=4096)(sqltext.has_own_limit)


def check_statement(spec: EndpointSpec, volatile_calls: Collection[str]) -> None:
    """Errors of the template's text that would otherwise fail (or mislead) at run time."""
    reads = spec.is_read or spec.result.shape == "stream"
    kind = _statement_kind(spec.sql)
    if reads:
        what = "a GET" if spec.is_read else "a stream"
        if kind == "LOCK":
            raise SpecError(
                f"{what} template runs in a read-only transaction, so it cannot lock rows "
                "(FOR UPDATE / FOR SHARE)"
            )
        if kind != "SELECT":
            raise SpecError(
                f"{what} template must only read (SELECT, WITH, VALUES), but this one is {kind}"
            )
        if volatile_calls:
            names = ", ".join(f"{n}()" for n in sorted(volatile_calls))
            raise SpecError(
                f"{what} template calls VOLATILE function(s) {names}; a read may only call "
                "STABLE or IMMUTABLE functions (declare the function STABLE if it only reads, "
                "or publish it with POST)"
            )
    if spec.result.paginate and _has_own_limit(spec.sql):
        raise SpecError(
            "result_mapping.paginate adds LIMIT and OFFSET itself, but the template has its "
            "own LIMIT/OFFSET/FETCH, which would silently cut pages short; remove it (or drop "
            "paginate)"
        )


def check_plan(spec: EndpointSpec, nodes: Collection[str]) -> None:
    """Errors of a read whose generic plan (engine/plans.py) writes or locks rows, which its
    text may not show (a view defined FOR UPDATE, say): it would fail on every call."""
    if not (spec.is_read or spec.result.shape == "stream"):
        return
    what = "a GET" if spec.is_read else "a stream"
    if "ModifyTable" in nodes:
        raise SpecError(
            f"{what} template must only read, but its plan writes (ModifyTable); a read may "
            "not insert, update or delete (publish the write with POST, PUT, PATCH or DELETE)"
        )
    if "LockRows" in nodes:
        raise SpecError(
            f"{what} template runs in a read-only transaction, so it cannot lock rows, but its "
            "plan locks rows (LockRows: FOR UPDATE / FOR SHARE, perhaps in a view it reads)"
        )


# result column types a keyset may order by: their text form reads back exactly, so a
# cursor binds the very value it was made from (enums are allowed too)
KEYSET_TYPES = frozenset(
    {
        "int2", "int4", "int8", "oid", "numeric", "float4", "float8",
        "text", "varchar", "bpchar", "name", "citext",
        "uuid", "date", "timestamp", "timestamptz", "time", "timetz", "interval", "bool",
    }
)  # fmt: skip


def check_keyset(spec: EndpointSpec, columns: Sequence[tuple[str, str, bool]]) -> None:
    """A keyset must name result columns (once, of a type it can page by) and be the
    template's ORDER BY, so a page never reorders what the template says.

    ``columns``: (name, type name, is an enum) of each result column, in order.
    """
    paginate = spec.result.paginate
    if paginate is None or not paginate.keyset:
        return
    where = "result_mapping.paginate.keyset"
    names = [name for name, _, _ in columns]
    returned = ", ".join(names) or "nothing"
    for column in paginate.keyset:
        found = [c for c in columns if c[0] == column]
        if not found:
            raise SpecError(
                f"{where} names '{column}', which the template does not return (it returns: "
                f"{returned}); keyset columns are result column names, spelled as returned"
            )
        if len(found) > 1:
            raise SpecError(
                f"{where} names '{column}', which the template returns {len(found)} times; "
                "give the columns distinct names (AS)"
            )
        _, type_name, is_enum = found[0]
        if type_name not in KEYSET_TYPES and not is_enum:
            raise SpecError(
                f"{where} column '{column}' is of type {type_name}, which cannot order keyset "
                f"pages (use numbers, text, uuid, dates, times, timestamps, intervals, booleans "
                "or enums)"
            )
    wanted = ", ".join(
        f"{c} DESC" if desc else c
        for c, desc in zip(paginate.keyset, paginate.descending, strict=True)
    )
    order = sqltext.order_by(spec.sql)
    if order is None:
        raise SpecError(
            f"{where} pages in the template's order, but the template has no ORDER BY of its "
            f"own: end it with ORDER BY {wanted}"
        )
    written = ", ".join(item.text for item in order)
    mismatch = len(order) != len(paginate.keyset)
    hint = ""
    for item, column, desc in zip(order, paginate.keyset, paginate.descending, strict=False):
        named = item.column
        if item.ordinal is not None and 0 < item.ordinal <= len(names):
            named = names[item.ordinal - 1]
        if named is None:
            hint = f"; '{item.text}' is an expression: order by a result column"
        elif item.qualified:  # t.id may be another column than the result's id
            hint = (
                f"; '{item.text}' names a table's column: order by the result column's "
                "name (or its position), which is what the pages compare"
            )
        elif named != column or item.descending != desc:
            mismatch = True
        elif item.nulls is not None and item.nulls != ("FIRST" if desc else "LAST"):
            hint = (
                f"; '{item.text}' puts NULLs where keyset pages cannot follow them (keyset "
                "columns must never be NULL): drop NULLS FIRST/LAST"
            )
        if hint:
            mismatch = True
            break
    if mismatch:
        raise SpecError(
            f"{where} ({wanted}) must be the template's ORDER BY, but the template orders by "
            f"{written}{hint}; end the template with ORDER BY {wanted}"
        )


def row_warnings(
    spec: EndpointSpec,
    *,
    columns: Sequence[str],
    missing_tables: Iterable[str],
    body_fields: Collection[str] | None,
    own_rules: Iterable[Mapping[str, Any]],
    calls_functions: bool,
) -> list[str]:
    """What is probably wrong with a row that serves."""
    out: list[str] = []
    seen: dict[str, int] = {}
    for p in spec.params:
        if p.name in seen:
            out.append(
                f"query_parameters: the name '{p.name}' is used by ${seen[p.name]} and "
                f"${p.position}; the client can only send one value for both"
            )
        seen.setdefault(p.name, p.position)
    bound = {p.name for p in spec.params if p.source == "path"}
    for name in spec.path_params():
        if name not in bound:
            out.append(
                f"endpoint_path has {{{name}}} but no query_parameters entry with "
                f'"in": "path" binds it: the value is matched and ignored'
            )
    out.extend(
        f"table '{t}' (target_table or cache_invalidation_rules) does not exist: cached reads "
        "of it are never invalidated"
        for t in sorted(missing_tables)
    )
    returned = set(columns)
    for column, json_name in spec.result.fields:
        if column not in returned:
            out.append(
                f"result_mapping.fields renames '{column}' to '{json_name}', but the template "
                f"returns no column '{column}' (it returns: {', '.join(columns) or 'nothing'})"
            )
    for rule in own_rules:
        name = rule.get("field_name") or ""
        if body_fields is not None and name and name not in body_fields:
            out.append(
                f"data_sanitization_rules id={rule.get('id')}: field_name '{name}' is not a "
                "parameter or a property of the endpoint's schema, so the rule never applies"
            )
    if (
        not spec.is_read
        and spec.result.shape != "stream"
        and _statement_kind(spec.sql) == "SELECT"
        and not calls_functions
    ):
        out.append(
            f"a {spec.method} endpoint (database_operation {spec.operation}) whose template "
            "only reads (SELECT) and calls no function: it changes nothing"
        )
    if not spec.requires_auth and (spec.required_roles or spec.required_permissions):
        out.append(
            "required_roles/required_permissions are set but requires_auth is false: "
            "anonymous callers are refused anyway; set requires_auth = true to say so"
        )
    if spec.cache_enabled and spec.cache_ttl_seconds == 0:
        out.append("cache_enabled with cache_ttl_seconds = 0: answers are not cached")
    return out


def rule_warnings(row: Mapping[str, Any]) -> list[str]:
    """Unknown ``sanitization_config`` keys (a typo silently does nothing)."""
    config = row.get("sanitization_config")
    if not isinstance(config, Mapping):
        return []
    unknown = sorted(set(config) - SANITIZATION_KEYS)
    if not unknown:
        return []
    return [
        f"sanitization_config has unknown key(s) {', '.join(unknown)} (known: "
        f"{', '.join(sorted(SANITIZATION_KEYS))})"
    ]


def error_code_warnings(row: Mapping[str, Any]) -> list[str]:
    """What is wrong with one ``api_error_codes`` row (it is still used)."""
    out = []
    code = row.get("error_code") or ""
    if not _CODE.fullmatch(code):
        out.append(
            f"error_code {code!r} is not a valid URN segment (letters, digits, '.', '_', '-'): "
            f"the problem type urn:api-error:{code} is malformed"
        )
    if not str(row.get("error_message") or "").strip():
        out.append("error_message is empty: clients get an empty title")
    localized = row.get("localized_messages")
    if isinstance(localized, Mapping):
        for lang, text in localized.items():
            if not isinstance(text, str):
                out.append(
                    f"localized_messages.{lang} is a JSON {type(text).__name__}, not a string"
                )
            elif not text.strip():
                out.append(f"localized_messages.{lang} is empty")
    return out


def schema_fields(schema: Any) -> set[str]:
    """Every property name a JSON Schema mentions, at any depth."""
    out: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            props = node.get("properties")
            if isinstance(props, Mapping):
                out.update(str(k) for k in props)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return out


def bulk_warnings(
    spec: EndpointSpec, schema_row: Mapping[str, Any] | None, *, calls_functions: bool
) -> list[str]:
    """What is probably wrong with a bulk row (``bulk_import``) that serves."""
    bulk = spec.bulk
    if bulk is None:
        return []
    out: list[str] = []
    named = {w.name for w in sqltext.words(spec.sql)}
    if "bulk_records" not in named and not calls_functions:
        out.append(
            "bulk_import: the template never reads bulk_records (and calls no function that "
            "could): the records are loaded and dropped"
        )
    columns = [name for name, _ in bulk.columns]
    if schema_row is None:
        return out
    schema = schema_row.get("validation_schema")
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    if isinstance(properties, Mapping):
        unloaded = [p for p in properties if p not in columns]
        if unloaded:
            out.append(
                f"bulk_import: the record schema checks {', '.join(map(str, unloaded))}, which "
                "bulk_import.columns does not load (the values are checked, then dropped)"
            )
        if not schema_row.get("allow_unknown_fields"):
            unsendable = [c for c in columns if c not in properties]
            if unsendable:
                out.append(
                    f"bulk_import.columns {', '.join(unsendable)} are not properties of the "
                    "record schema, which is closed (allow_unknown_fields false): a record "
                    "can never carry them, so they are always NULL"
                )
    return out
