"""engine/quickcheck.py: the fast check says "valid" only where the full validator does
(pure: no database, no server)."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from engine.errors import ApiError
from engine.validation import SchemaValidator, compile_schema

SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "required": ["a", "b"], "properties": {
        "a": {"type": "integer", "minimum": 1},
        "b": {"type": "integer", "minimum": 0, "maximum": 10},
        "c": {"type": ["number", "null"], "exclusiveMinimum": 0, "exclusiveMaximum": 2.5}}},
    {"type": "object", "properties": {
        "a": {"type": "string", "minLength": 2, "maxLength": 4, "pattern": "^[a-z]+$"},
        "b": {"enum": ["x", "y", None, 1, True]},
        "c": {"const": "k"},
        "d": {"type": "string", "format": "date-time"},
        "e": {"type": "string", "format": "email"},
        "f": {"type": "boolean"}, "g": {"type": "array"}, "h": {"type": "object"}}},
    {"properties": {"a": {"maximum": 3}, "b": {"minLength": 1}, "c": True, "d": {}}},
    {"type": "object", "additionalProperties": True, "properties": {"a": {"type": "null"}}},
]  # fmt: skip
VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 2, 3, 10, 11, 1.0, 2.5, 0.5, -0.5, 2**70, "", "a", "ab",
    "abcd", "abcde", "AB", "x", "y", "k", "2026-03-02T08:00:00Z", "2026-02-30T08:00:00Z",
    "a@b.example", "nope", [], [1], {}, {"a": 1}, "é" * 3,
]  # fmt: skip


def _candidates(rng: random.Random, names: list[str]) -> list[dict[str, Any]]:
    # each field alone, then a valid-looking base ({"a": 1, "b": 2} for the first schema)
    # with a few fields changed, dropped or added
    base = {"a": 1, "b": 2}
    out = [{name: value} for name, value in itertools.product(names, VALUES)]
    out += [{**base, name: value} for name, value in itertools.product(names, VALUES)]
    for _ in range(2000):
        candidate = dict(base) if rng.random() < 0.5 else {}
        for name in rng.sample([*names, "zz"], rng.randint(0, len(names) + 1)):
            candidate[name] = rng.choice(VALUES)
        out.append(candidate)
    return out


def test_the_fast_check_never_says_valid_where_the_validator_finds_an_error() -> None:
    rng = random.Random(12)
    for schema, strict, unknown in itertools.product(SCHEMAS, (True, False), (True, False)):
        validator = compile_schema("s", schema, strict_mode=strict, allow_unknown_fields=unknown)
        assert validator.fast is not None, schema
        accepted = refused = 0
        for candidate in _candidates(rng, list(schema.get("properties", {}))):
            errors = validator.errors(candidate)
            if validator.fast(candidate):
                accepted += 1
                assert errors == [], (schema, strict, unknown, candidate)
            elif errors:
                refused += 1
        assert accepted > 20 and refused > 20, (schema, accepted, refused)  # it reads both ways


def _refused(validator: SchemaValidator, instance: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        validator.check(instance)
    assert caught.value.code == "VALIDATION_ERROR"
    return caught.value


def test_check_answers_as_before_on_either_side_of_the_fast_check() -> None:
    validator = compile_schema("s", SCHEMAS[0])
    assert validator.fast is not None and validator.fast({"a": 1, "b": 2})
    validator.check({"a": 1, "b": 2})  # surely valid: no error
    for bad in ({"a": 0, "b": 2}, {"a": 1.5, "b": 2}, {"a": 1}, {"a": 1, "b": 2, "z": 0}):
        assert _refused(validator, bad).errors == validator.errors(bad)  # the full validator's
    # 1.0 is an integer: the fast check defers, jsonschema agrees
    validator.check({"a": 1.0, "b": 2})


def test_a_schema_beyond_the_fast_check_has_none_and_still_validates() -> None:
    for schema in (
        {"type": "object", "anyOf": [{"required": ["a"]}]},
        {"type": "object", "properties": {"a": {"type": "object", "properties": {}}}},
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/x"}}, "$defs": {"x": {}}},
        {"type": "array", "items": {"type": "integer"}},
    ):
        validator = compile_schema("s", schema)
        assert validator.fast is None, schema
    assert compile_schema("s", {"type": "array"}).errors({"a": 1})  # not an array: refused


def test_enum_and_const_together_are_both_kept() -> None:
    # each keyword narrows the other: a value in the enum but not the const is refused
    schema = {"type": "object", "properties": {"s": {"enum": ["open", "closed"], "const": "open"}}}
    for applies_to in ("body", "query"):
        validator = compile_schema("s", schema, applies_to=applies_to)
        assert validator.errors({"s": "closed"})
        assert not (validator.fast and validator.fast({"s": "closed"}))
        _refused(validator, {"s": "closed"})
        validator.check({"s": "open"})


def test_a_bound_beyond_64_bits_compiles_and_checks() -> None:
    validator = compile_schema("s", {"type": "object", "properties": {"n": {"maximum": 2**70}}})
    assert validator.errors({"n": 2**71}) and not validator.errors({"n": 2**69})
    assert validator.fast is not None and validator.fast({"n": 2**69})
    assert not validator.fast({"n": 2**71})
