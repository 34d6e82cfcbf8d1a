"""A fast "surely valid" check of a flat object schema, beside jsonschema's full validator.

jsonschema walks a schema keyword by keyword through its generic machinery: about
30 us for an object of three bounded integers, tens of microseconds for a bulk
record. :func:`compile_fast_check` turns a flat object schema (``type``, bounds,
lengths, ``enum``, ``const``, ``pattern`` (RE2), ``format``, ``required``, closed
properties) into one generated function that can only say "valid" when the full
validator would (a few microseconds); anything it is unsure of, and every schema it
cannot read, goes to the full validator, whose messages are the ones reported. So
the fast check changes no answer, it only skips work on valid input. A request's
body and query object (engine/validation.py) and each record of a bulk import
(engine/records.py) pass through it first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from engine.patterns import compile_pattern

_TOP_KEYS = {
    "type", "properties", "required", "additionalProperties", "title", "description",
    "$comment", "examples", "$id",
}  # fmt: skip
_PROPERTY_KEYS = {
    "type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength",
    "maxLength", "enum", "const", "format", "pattern", "title", "description", "$comment",
    "examples", "default", "deprecated", "readOnly", "writeOnly",
}  # fmt: skip
# JSON Schema type -> the Python types (as orjson makes them) that are surely of it
# (a float 3.0 is an "integer" too, but left to the full validator)
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
    "object": (dict,),
    "array": (list,),
}
FastCheck = Callable[[Mapping[str, Any]], bool]


_MISSING = object()


def _is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


def _property_lines(i: int, sub: Any, env: dict[str, Any], format_checker: Any) -> list[str] | None:
    """Source lines checking property ``i`` (its value is ``v``, its type ``t``), each
    returning False unless the value is surely valid; None when ``sub`` is not readable.
    Values of the schema reach the code only as names bound in ``env``, never as text."""
    if sub is True or sub == {}:
        return []
    if sub is False:
        return ["return False"]
    if not isinstance(sub, Mapping) or set(sub) - _PROPERTY_KEYS:
        return None
    lines: list[str] = []
    kinds = sub.get("type")
    if kinds is not None:
        names = [kinds] if isinstance(kinds, str) else kinds
        if not isinstance(names, list) or not all(n in _PY_TYPES for n in names):
            return None
        env[f"types{i}"] = frozenset(t for n in names for t in _PY_TYPES[n])
        lines.append(f"if t not in types{i}: return False")
    numeric = []
    for key, op in (
        ("minimum", "<"),
        ("maximum", ">"),
        ("exclusiveMinimum", "<="),
        ("exclusiveMaximum", ">="),
    ):
        if key in sub:
            if not _is_number(sub[key]):
                return None
            env[f"{key}{i}"] = sub[key]
            numeric.append(f"v {op} {key}{i}")
    if numeric:  # bounds apply to numbers only (a boolean is no number)
        lines.append(f"if (t is int or t is float) and ({' or '.join(numeric)}): return False")
    text = []
    for key, op in (("minLength", "<"), ("maxLength", ">")):
        if key in sub:
            if type(sub[key]) is not int:
                return None
            env[f"{key}{i}"] = sub[key]
            text.append(f"len(v) {op} {key}{i}")
    if "pattern" in sub:
        if not isinstance(sub["pattern"], str):
            return None
        env[f"pattern{i}"] = compile_pattern(sub["pattern"])
        text.append(f"not pattern{i}.search(v)")
    if text:  # lengths and patterns apply to strings only
        lines.append(f"if t is str and ({' or '.join(text)}): return False")
    if "enum" in sub and "const" in sub:
        return None  # each narrows the other: left to the full validator
    if "enum" in sub or "const" in sub:
        values = sub["enum"] if "enum" in sub else [sub["const"]]
        if not isinstance(values, list):
            return None
        # only text and null are compared here (1 == True == 1.0 in Python, not in JSON)
        env[f"enum{i}"] = frozenset(v for v in values if isinstance(v, str))
        null = any(v is None for v in values)
        lines.append(
            f"if not ((t is str and v in enum{i})"
            + (" or v is None" if null else "")
            + "): return False"
        )
    if "format" in sub and format_checker is not None:
        checker = format_checker.checkers.get(sub["format"])
        if checker is not None:  # an unknown format asserts nothing (as in jsonschema)
            env[f"format{i}"], env[f"raises{i}"] = checker
            lines += [
                "try:",
                f"    if not format{i}(v): return False",
                f"except raises{i}:",
                "    return False",
            ]
    return lines


def compile_fast_check(inner: Any) -> FastCheck | None:
    """A quick "surely valid" check of a flat record schema, or None when it cannot read it.

    ``inner`` is the full (jsonschema) validator: its schema (closed unless
    allow_unknown_fields) and its format checker are read. The check is generated code:
    one straight function per schema, no call per keyword.
    """
    schema = getattr(inner, "schema", None)
    if not isinstance(schema, Mapping) or set(schema) - _TOP_KEYS - {"$schema"}:
        return None
    if schema.get("type", "object") not in ("object", ["object"]):
        return None
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    closed = schema.get("additionalProperties", True)
    if (
        not isinstance(properties, Mapping)
        or not isinstance(required, list)
        or not all(isinstance(r, str) for r in required)
        or closed not in (True, False)
    ):
        return None
    format_checker = getattr(inner, "format_checker", None)
    env: dict[str, Any] = {
        "MISSING": _MISSING,
        "required": tuple(required),
        "names": frozenset(properties),
    }
    body = ["for name in required:", "    if name not in record: return False"]
    if closed is False:
        body.append("if not names.issuperset(record): return False")
    for i, (name, sub) in enumerate(properties.items()):
        lines = _property_lines(i, sub, env, format_checker)
        if lines is None:
            return None
        if not lines:
            continue
        env[f"name{i}"] = name
        body += [f"v = record.get(name{i}, MISSING)", "if v is not MISSING:", "    t = type(v)"]
        body += ["    " + line for line in lines]
    body.append("return True")
    source = "def fast(record):\n" + "".join(f"    {line}\n" for line in body)
    exec(compile(source, "<fast record check>", "exec"), env)  # the source holds no text of the row
    fast: FastCheck = env["fast"]
    return fast
