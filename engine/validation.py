"""Input sanitization and JSON Schema validation, compiled once per row (pure: no I/O).

``api_validation_schemas`` gives a draft 2020-12 schema per endpoint (for the
body, or for the query object). ``strict_mode`` turns on format assertions
(``uri``, ``date-time``, ``email``...); ``allow_unknown_fields = false`` rejects
properties a schema does not declare. ``data_sanitization_rules`` clean fields
by name before validation when ``sanitize_input`` is on. Every failing field
is reported with its JSON pointer, and messages spell values as JSON (``null``,
``true``, ``["a", "b"]``), never as Python. A body that must be an object (its
fields are bound, or its schema's type is ``object``) and is not is INVALID_BODY.

Every regular expression a row supplies (``pattern``, ``patternProperties``,
``validation_pattern``, ``regex_replace``) is matched by RE2 in linear time
(engine/patterns.py); a pattern RE2 cannot match refuses its row.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import datetime as dt
import html
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.exceptions import ValidationError as JsonSchemaError

from engine.errors import ApiError, SpecError
from engine.patterns import (
    FORMAT_CHECKER,
    SCHEMA_FORMAT_CHECKER,
    BoundedValidator,
    Pattern,
    PatternError,
    compile_pattern,
    matches_any,
    warm_iri,
)
from engine.quickcheck import FastCheck, compile_fast_check

_MAX_MESSAGE = 200
_MAX_SHOWN = 80  # of a value quoted in a message, so the words after it still show
_COMPOSITION = ("allOf", "anyOf", "oneOf", "$ref", "if", "dependentSchemas")


def _pointer(parts: Sequence[Any]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _close_objects(schema: Any) -> Any:
    """Add additionalProperties: false where a schema lists properties and says nothing."""
    if isinstance(schema, list):
        return [_close_objects(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _close_objects(v) if k in ("items", "prefixItems") else v for k, v in schema.items()}
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _close_objects(v) for k, v in out["properties"].items()}
    if isinstance(out.get("$defs"), dict):
        out["$defs"] = {k: _close_objects(v) for k, v in out["$defs"].items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and "unevaluatedProperties" not in out
        and "patternProperties" not in out
        and not any(k in out for k in _COMPOSITION)
    ):
        out["additionalProperties"] = False
    return out


def _json(value: Any) -> str:
    """``value`` spelled as JSON, the way a client wrote it (messages, not encoding)."""
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def _shown(value: Any) -> str:
    """A client's value in a message: as JSON, cut short when long."""
    if isinstance(value, str) and len(value) > _MAX_SHOWN:
        value = value[:_MAX_SHOWN]  # cut before encoding: a long string is cheap to show
    text = _json(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def require_object(body: Any) -> None:
    """INVALID_BODY unless ``body`` is a JSON object (fields are read from it by name)."""
    if not isinstance(body, dict):
        raise ApiError("INVALID_BODY", f"The body must be a JSON object, not {_kind(body)}")


# jsonschema's messages (jsonschema/_keywords.py) with {i} the instance, {v} the keyword's value
_MESSAGES: dict[str | None, str] = {
    "enum": "{i} is not one of {v}",
    "const": "{v} was expected",
    "minimum": "{i} is less than the minimum of {v}",
    "maximum": "{i} is greater than the maximum of {v}",
    "exclusiveMinimum": "{i} is less than or equal to the minimum of {v}",
    "exclusiveMaximum": "{i} is greater than or equal to the maximum of {v}",
    "multipleOf": "{i} is not a multiple of {v}",
    "minLength": "{i} is too short (at least {n})",
    "maxLength": "{i} is too long (at most {n})",
    "minItems": "{i} has too few items (at least {n})",
    "maxItems": "{i} has too many items (at most {n})",
    "minProperties": "{i} has too few properties (at least {n})",
    "maxProperties": "{i} has too many properties (at most {n})",
    "uniqueItems": "{i} has non-unique elements",
    "pattern": "{i} does not match {v}",
    "format": "{i} is not a valid {v}",
    "anyOf": "{i} is not valid under any of the given schemas",
    "oneOf": "{i} is not valid under any of the given schemas",
    "not": "{i} should not be valid under the given schema",
    "contains": "{i} does not contain items matching the given schema",
    None: "{i} is not allowed",  # the schema `false`
}
_EXTRAS = re.compile(r"\((.*) (was|were) (unexpected|unevaluated and invalid)\)$")


def _message(error: JsonSchemaError) -> str:
    """The failure in words, with values spelled as JSON rather than Python reprs."""
    keyword = error.validator
    value = error.validator_value
    if keyword == "type":
        types = [value] if isinstance(value, str) else value
        return f"{_shown(error.instance)} is not of type {', '.join(map(_json, types))}"
    if keyword == "oneOf" and not error.context:  # it failed by matching several
        return f"{_shown(error.instance)} is valid under more than one of the given schemas"
    if keyword == "items" and isinstance(error.instance, list):  # items: false
        prefix = len(error.schema.get("prefixItems", ())) if isinstance(error.schema, dict) else 0
        return f"{_shown(error.instance)} has more than {prefix} item(s)"
    if keyword in ("unevaluatedItems", "unevaluatedProperties"):
        # jsonschema lists the extras as reprs: read them back and spell them as JSON
        found = _EXTRAS.search(error.message)
        if found:
            with contextlib.suppress(ValueError, SyntaxError):
                extras = ast.literal_eval(f"[{found[1]}]")
                listed = ", ".join(map(_json, extras))
                return f"{error.message[: found.start()]}({listed} {found[2]} {found[3]})"
        return error.message
    template = _MESSAGES.get(keyword)
    if template is None:
        return error.message  # keywords whose messages hold no values (minContains...)
    n = value
    if keyword in ("minLength", "maxLength"):
        n = f"{value} character{'' if value == 1 else 's'}"
    return template.format(i=_shown(error.instance), v=_json(value), n=n)


def _errors_of(error: JsonSchemaError) -> list[dict[str, Any]]:
    base = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, Mapping):
        return [
            {
                "pointer": _pointer([*base, name]),
                "message": f"{_json(name)} is required",
                "keyword": "required",
            }
            for name in error.validator_value
            if name not in error.instance
        ]
    if error.validator == "dependentRequired" and isinstance(error.instance, Mapping):
        return [
            {
                "pointer": _pointer([*base, name]),
                "message": f"{_json(name)} is required when {_json(present)} is present",
                "keyword": "dependentRequired",
            }
            for present, names in error.validator_value.items()
            if present in error.instance
            for name in names
            if name not in error.instance
        ]
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        schema = error.schema if isinstance(error.schema, Mapping) else {}
        declared = set(schema.get("properties", {}))
        patterns = list(schema.get("patternProperties", {}))
        return [
            {
                "pointer": _pointer([*base, name]),
                "message": f"{_json(name)} is not an allowed field",
                "keyword": "additionalProperties",
            }
            for name in error.instance
            if name not in declared and not matches_any(patterns, name)
        ]
    message = _message(error)
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 3] + "..."
    keyword = "false" if error.validator is None else str(error.validator)
    return [{"pointer": _pointer(base), "message": message, "keyword": keyword}]


@dataclass(frozen=True)
class SchemaValidator:
    """A compiled JSON Schema; :meth:`check` raises VALIDATION_ERROR listing every failure."""

    name: str
    validator: Any  # a BoundedValidator (engine/patterns.py)
    applies_to: str = "body"
    expects_object: bool = False  # its top-level type is "object": anything else is INVALID_BODY
    # says "valid" only where ``validator`` would (engine/quickcheck.py); None: no fast check
    fast: FastCheck | None = None

    def errors(self, instance: Any) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        for error in sorted(
            self.validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path))
        ):
            for entry in _errors_of(error):
                key = (entry["pointer"], entry["message"])
                if key not in seen:
                    seen.add(key)
                    found.append(entry)
        return found

    def check(self, instance: Any) -> None:
        if self.applies_to == "query":
            # the query object holds bound values (date, UUID, Decimal...): check them
            # as the JSON a client would write them
            instance = _as_json(instance)
        if type(instance) is dict and self.fast is not None and self.fast(instance):
            return  # surely valid: the full validator would find nothing (S3: 2 against 30 us)
        found = self.errors(instance)
        if found:
            where = "body" if self.applies_to == "body" else "query string"
            raise ApiError(
                "VALIDATION_ERROR",
                f"The request {where} has {len(found)} invalid field(s)",
                errors=found,
            )


def _as_json(value: Any) -> Any:
    """``value`` in the JSON data model: dates and times as ISO text, UUIDs as text."""
    if isinstance(value, Mapping):
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_json(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal) and value.is_finite():
        if value.adjusted() < 19 and value == value.to_integral_value():
            return int(value)
        return float(value)
    return value


def compile_schema(
    name: str,
    schema: Any,
    *,
    strict_mode: bool = True,
    allow_unknown_fields: bool = False,
    applies_to: str = "body",
) -> SchemaValidator:
    if not isinstance(schema, dict):
        raise SpecError(f"validation schema '{name}' must be a JSON object")
    try:
        # its patterns must compile for RE2 (format: regex, as RE2 reads it)
        Draft202012Validator.check_schema(schema, format_checker=SCHEMA_FORMAT_CHECKER)
    except SchemaError as exc:
        if isinstance(exc.cause, PatternError):
            raise SpecError(
                f"validation schema '{name}' cannot be used: at "
                f"{_pointer(exc.absolute_path) or '/'} the pattern {exc.cause}"
            ) from None
        raise SpecError(
            f"validation schema '{name}' is not a valid JSON Schema: {exc.message}"
        ) from None
    # "format": "iri" or "iri-reference", maybe (json, not orjson: a bound may pass 64 bits)
    if '"iri' in json.dumps(schema):
        warm_iri()
    nested = _nested_dialect(schema)
    if nested is not None:
        raise SpecError(
            f"validation schema '{name}' cannot be used: $schema at {nested}; only the top "
            "of a stored schema may name its dialect (draft 2020-12)"
        )
    effective = copy.deepcopy(schema) if allow_unknown_fields else _close_objects(schema)
    # jsonschema picks the class named by $schema when it descends (a `$ref: "#"`
    # reaches the root again): without it every subschema keeps the bounded validator
    effective.pop("$schema", None)
    checker = FORMAT_CHECKER if strict_mode else None
    try:
        validator = BoundedValidator(effective, format_checker=checker)
        validator.is_valid({})  # resolve $refs and compile regexes now, not on the first request
    except Exception as exc:  # a bad pattern or unresolvable $ref
        raise SpecError(f"validation schema '{name}' cannot be used: {exc}") from None
    types = schema.get("type")
    return SchemaValidator(
        name=name,
        validator=validator,
        applies_to=applies_to,
        expects_object=types == "object" or types == ["object"],
        fast=compile_fast_check(validator),
    )


def _nested_dialect(schema: Mapping[str, Any]) -> str | None:
    """The pointer of a ``$schema`` below the top of ``schema``, if any (no recursion)."""
    stack: list[tuple[Any, list[Any]]] = [(v, [k]) for k, v in schema.items()]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            if "$schema" in node:
                return _pointer([*path, "$schema"])
            stack.extend((v, [*path, k]) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, [*path, i]) for i, v in enumerate(node))
    return None


@dataclass(frozen=True)
class SanitizationRule:
    field_name: str
    field_type: str
    kind: str
    config: Mapping[str, Any] = field(default_factory=dict)
    pattern: Pattern | None = None
    min_length: int | None = None
    max_length: int | None = None
    min_value: Decimal | None = None
    max_value: Decimal | None = None
    error_message: str | None = None
    default_value: Any = None


def compile_rule(row: Mapping[str, Any]) -> SanitizationRule:
    name = row.get("field_name") or ""
    kind = row.get("sanitization_type") or ""
    if kind not in ("trim", "escape", "validate", "transform"):
        raise SpecError(f"sanitization rule for '{name}': unknown sanitization_type {kind!r}")
    config = row.get("sanitization_config") or {}
    if not isinstance(config, Mapping):
        raise SpecError(f"sanitization rule for '{name}': sanitization_config must be an object")
    replace = config.get("regex_replace")
    if replace is not None:
        if not (isinstance(replace, list) and len(replace) == 2):
            raise SpecError(
                f"sanitization rule for '{name}': regex_replace is [pattern, replacement]"
            )
        try:
            config = {
                **config,
                "regex_replace": [compile_pattern(str(replace[0])), str(replace[1])],
            }
        except PatternError as exc:
            raise SpecError(f"sanitization rule for '{name}': bad regex_replace: {exc}") from None
    pattern = None
    if row.get("validation_pattern"):
        try:
            pattern = compile_pattern(row["validation_pattern"])
        except PatternError as exc:
            raise SpecError(
                f"sanitization rule for '{name}': bad validation_pattern: {exc}"
            ) from None
    default = row.get("default_value")
    if isinstance(default, str):
        with contextlib.suppress(orjson.JSONDecodeError):
            default = orjson.loads(default)
    return SanitizationRule(
        field_name=name,
        field_type=row.get("field_type") or "string",
        kind=kind,
        config=config,
        pattern=pattern,
        min_length=row.get("min_length"),
        max_length=row.get("max_length"),
        min_value=row.get("min_value"),
        max_value=row.get("max_value"),
        error_message=row.get("error_message"),
        default_value=default,
    )


_SPACES = re.compile(r"\s+")


def _clean_text(value: str, config: Mapping[str, Any], strip: bool) -> str:
    if strip or config.get("strip"):
        value = value.strip()
    if config.get("remove_extra_spaces"):
        value = _SPACES.sub(" ", value).strip()
    if config.get("to_lowercase"):
        value = value.lower()
    if config.get("to_uppercase"):
        value = value.upper()
    replace = config.get("regex_replace")
    if replace:  # compiled by compile_rule (RE2)
        value = replace[0].sub(replace[1], value)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _apply(rule: SanitizationRule, value: Any) -> tuple[Any, str | None]:
    """(new value, problem or None) for one field."""
    cfg = rule.config
    if rule.kind in ("trim", "transform") and isinstance(value, str):
        value = _clean_text(value, cfg, strip=rule.kind == "trim")
    elif rule.kind == "escape" and isinstance(value, str):
        # escape_sql needs no work: values only ever reach SQL as bound parameters.
        if cfg.get("escape_html", True):
            value = html.escape(value, quote=True)
    elif rule.kind == "validate":
        problem = _validate(rule, value)
        if problem:
            return value, problem
        precision = cfg.get("precision")
        if isinstance(precision, int) and _is_number(value) and isinstance(value, float):
            value = round(value, precision)
    # column-level checks apply to every kind
    if isinstance(value, str):
        if rule.min_length is not None and len(value) < rule.min_length:
            return value, f"must be at least {rule.min_length} characters"
        if rule.max_length is not None and len(value) > rule.max_length:
            return value, f"must be at most {rule.max_length} characters"
        if rule.pattern is not None and not rule.pattern.search(value):
            return value, "has an invalid format"
    if _is_number(value):
        if rule.min_value is not None and value < rule.min_value:
            return value, f"must be at least {rule.min_value}"
        if rule.max_value is not None and value > rule.max_value:
            return value, f"must be at most {rule.max_value}"
    return value, None


def _validate(rule: SanitizationRule, value: Any) -> str | None:
    cfg = rule.config
    if cfg.get("check_url_format") or cfg.get("allowed_protocols"):
        if not isinstance(value, str):
            return "must be a URL"
        parts = urlsplit(value)
        if not parts.scheme or not parts.netloc:
            return "must be an absolute URL"
        allowed = cfg.get("allowed_protocols")
        if allowed and parts.scheme.lower() not in [str(a).lower() for a in allowed]:
            return f"must use one of the protocols: {', '.join(map(str, allowed))}"
    if _is_number(value):
        if "min" in cfg and value < cfg["min"]:
            return f"must be at least {cfg['min']}"
        if "max" in cfg and value > cfg["max"]:
            return f"must be at most {cfg['max']}"
        if cfg.get("non_negative") and value < 0:
            return "must not be negative"
    if isinstance(value, Mapping):
        missing = [f for f in cfg.get("required_fields", []) if f not in value]
        if missing:
            return f"is missing field(s): {', '.join(map(str, missing))}"
        if cfg.get("non_negative") and any(_is_number(v) and v < 0 for v in value.values()):
            return "must not contain negative numbers"
    return None


@dataclass(frozen=True)
class Sanitizer:
    """The sanitization rules that apply to one endpoint, by field name."""

    rules: Mapping[str, tuple[SanitizationRule, ...]]

    def __bool__(self) -> bool:
        return bool(self.rules)

    def apply(self, body: Any) -> Any:
        """A cleaned copy of ``body``; raises VALIDATION_ERROR for a rule's failure."""
        errors: list[dict[str, Any]] = []
        cleaned = self._walk(body, [], errors)
        if errors:
            raise ApiError(
                "VALIDATION_ERROR",
                f"The request body has {len(errors)} invalid field(s)",
                errors=errors,
            )
        return cleaned

    def _walk(self, node: Any, path: list[Any], errors: list[dict[str, Any]]) -> Any:
        if isinstance(node, list):
            return [self._walk(v, [*path, i], errors) for i, v in enumerate(node)]
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            for rule in self.rules.get(key, ()):
                value, problem = _apply(rule, value)
                if problem:
                    errors.append(
                        {
                            "pointer": _pointer([*path, key]),
                            "message": rule.error_message or f"{_json(key)} {problem}",
                            "keyword": f"sanitize:{rule.kind}",
                        }
                    )
                    break
            out[key] = self._walk(value, [*path, key], errors)
        if not path:
            for name, rules in self.rules.items():
                for rule in rules:
                    if rule.default_value is not None and out.get(name) is None:
                        out[name] = rule.default_value
        return out


def build_sanitizer(rules: Sequence[SanitizationRule]) -> Sanitizer:
    grouped: dict[str, list[SanitizationRule]] = {}
    for rule in rules:
        grouped.setdefault(rule.field_name, []).append(rule)
    return Sanitizer({k: tuple(v) for k, v in grouped.items()})
