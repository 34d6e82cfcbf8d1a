"""Regular expressions from rows, matched in linear time by RE2 (pure: no I/O).

Stored JSON Schemas (``pattern``, ``patternProperties``) and sanitization rules
(``validation_pattern``, ``regex_replace``) are written by admins and matched
against what clients send. Python's ``re`` backtracks: ``^(a+)+$`` against 35
characters that do not match runs for minutes inside one C call that holds the
GIL, so the event loop stalls (every other request, and SIGTERM, wait). RE2
matches in time linear in the input, whatever the pattern. What it cannot do
(backreferences, lookaround, atomic groups, possessive quantifiers) has no
linear-time algorithm, so a pattern using it is refused when its row is
compiled (``engine check`` names it), never served with a backtracking matcher:
a time bound on ``re`` cannot be had inside the event loop (``re`` cannot be
interrupted), and a process per match would cost more than the request.

A pattern keeps the meaning it had under Python's ``re``, which the engine used
before (and the seeds rely on: ``\\w`` matches letters of any script):
``\\w \\d \\s`` and their negations are rewritten to the same Unicode classes,
``\\Z`` to ``\\z``, and ECMA-262's ``\\uXXXX`` / ``\\u{X}`` to RE2's ``\\x{X}``.
One difference is deliberate: ``$`` matches only at the end of the text (as in
ECMA-262, which JSON Schema names), not also before a final newline, so
``^[a-z]+$`` no longer accepts ``"abc\\n"``. ``\\b`` is ASCII in RE2.

The JSON Schema keywords that match patterns (``pattern``, ``patternProperties``,
and ``additionalProperties`` / ``unevaluatedProperties``, which consult
``patternProperties``) are replaced in :data:`BoundedValidator`, a draft
2020-12 validator; :data:`FORMAT_CHECKER` checks ``format: regex`` with RE2 too.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import re2
from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError

# Python's \w (str.isalnum() or "_"), \d (Unicode decimal digits) and \s (str.isspace())
_WORD = r"\p{L}\p{N}_"
_DIGIT = r"\p{Nd}"
_SPACE = (
    r"\t\n\x0b\f\r\x1c-\x20\x85\xa0\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}"
    r"\x{202f}\x{205f}\x{3000}"
)
_OUTSIDE = {
    "w": f"[{_WORD}]",
    "W": f"[^{_WORD}]",
    "d": _DIGIT,
    "D": r"\P{Nd}",
    "s": f"[{_SPACE}]",
    "S": f"[^{_SPACE}]",
    "Z": r"\z",
}
_INSIDE = {"w": _WORD, "d": _DIGIT, "D": r"\P{Nd}", "s": _SPACE}
_HEX = re.compile(r"[0-9A-Fa-f]+")
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print every refused pattern on stderr


class PatternError(ValueError):
    """A pattern RE2 cannot match; the message quotes it and says why (the row's problem)."""


def translate(pattern: str) -> str:
    """``pattern`` (Python ``re`` / ECMA-262 syntax) as RE2 syntax with the same meaning."""
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    class_start = -1  # index where the class's members begin (a "]" there is literal)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            e = pattern[i + 1]
            if e in "uU":
                code, used = _code_point(pattern, i + 2, 8 if e == "U" else 4)
                if code is not None:
                    out.append(f"\\x{{{code}}}")
                    i += 2 + used
                    continue
            if in_class and e in "WS":
                raise PatternError(
                    f"\\{e} inside [...] has no RE2 equivalent with Unicode meaning; "
                    f"write the class negated instead ([^...])"
                )
            table = _INSIDE if in_class else _OUTSIDE
            out.append(table.get(e, c + e))
            i += 2
            continue
        if in_class:
            if c == "]" and i != class_start:
                in_class = False
        elif c == "[":
            in_class = True
            class_start = i + 1
            if pattern.startswith("^", class_start):
                out.append("[^")
                i += 2
                class_start = i
                continue
        out.append(c)
        i += 1
    return "".join(out)


def _code_point(pattern: str, start: int, width: int) -> tuple[str | None, int]:
    """The hex code point of ``\\uXXXX`` (or ``\\UXXXXXXXX``, ``\\u{X}``) after ``start``."""
    if pattern.startswith("{", start):
        end = pattern.find("}", start)
        digits = pattern[start + 1 : end] if end > 0 else ""
        if _HEX.fullmatch(digits):
            return digits, len(digits) + 2
        return None, 0
    digits = pattern[start : start + width]
    if len(digits) == width and _HEX.fullmatch(digits):
        return digits, width
    return None, 0


class Pattern:
    """One compiled pattern: :meth:`search` and :meth:`sub` take linear time."""

    __slots__ = ("_regex", "source")

    def __init__(self, source: str, regex: Any) -> None:
        self.source = source
        self._regex = regex

    def search(self, text: str) -> bool:
        # as UTF-8 bytes: no character offsets to map back; a lone surrogate (which
        # no decoder here produces, but a str may hold) matches as its bytes
        return self._regex.search(text.encode("utf-8", "surrogatepass")) is not None

    def sub(self, replacement: str, text: str) -> str:
        """``re.sub`` semantics (``\\1``, ``\\g<name>`` in the replacement)."""
        return self._regex.sub(replacement, text)


@functools.lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> Pattern:
    """``pattern`` compiled for RE2, or PatternError saying why it cannot be.

    Only patterns from rows come here (a row's few patterns, cached across reloads);
    a client's string checked as ``format: regex`` goes through :func:`is_pattern`.
    """
    try:
        regex = re2.compile(translate(pattern), _OPTIONS)
    except PatternError as exc:
        raise PatternError(f"{pattern!r}: {exc}") from None
    except re2.error as exc:
        raise PatternError(f"{pattern!r} {_reason(pattern, exc)}") from None
    return Pattern(pattern, regex)


def _reason(pattern: str, exc: Exception) -> str:
    said = exc.args[0] if exc.args else exc
    said = said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)
    try:
        re.compile(pattern)  # an admin's pattern, compiled (never matched) to tell why
    except Exception:
        return f"is not a valid regular expression ({said})"
    return (
        f"cannot be matched in linear time by RE2 ({said}): backreferences, lookaround, "
        "atomic groups and possessive quantifiers are not supported, so that no input "
        "can stall the engine; rewrite the pattern without them"
    )


def is_pattern(instance: object) -> bool:
    """``format: regex``: a string RE2 compiles (a client's, so nothing is cached)."""
    if not isinstance(instance, str):
        return True
    try:
        translated = translate(instance)
    except PatternError:
        return False
    # a client's string: compiled and dropped, never kept in re2's module cache
    return bool(re2._re2.RE2(translated.encode("utf-8", "surrogatepass"), _OPTIONS).ok())


def _schema_pattern(instance: object) -> bool:
    """``format: regex`` in the meta-schema: a stored pattern, with the reason kept."""
    if isinstance(instance, str):
        compile_pattern(instance)
    return True


if sys.modules.get("rfc3987_syntax", False) is None:  # hidden from jsonschema (engine/__init__)
    del sys.modules["rfc3987_syntax"]
_IRI_FORMATS = {"iri": "iri", "iri-reference": "iri_reference"}
_HAVE_IRI = importlib.util.find_spec("rfc3987_syntax") is not None
_warming: list[threading.Thread] = []


def warm_iri() -> None:
    """Load the "iri" formats' parser (1.4 s of CPU) in a thread, once: called when a
    schema names them, so the first request that checks one does not wait that long."""
    if _HAVE_IRI and not _warming and "rfc3987_syntax" not in sys.modules:
        thread = threading.Thread(
            target=importlib.import_module, args=("rfc3987_syntax",), daemon=True
        )
        _warming.append(thread)
        thread.start()


def _iri(term: str) -> Callable[[object], bool]:
    def check(instance: object) -> bool:
        if not isinstance(instance, str):
            return True
        from rfc3987_syntax import is_valid_syntax  # loaded on first use

        return bool(is_valid_syntax(term, instance))

    return check


def _format_checker(regex: Any) -> FormatChecker:
    checker = FormatChecker(())
    checker.checkers = dict(Draft202012Validator.FORMAT_CHECKER.checkers)
    checker.checks("regex", raises=PatternError)(regex)
    if _HAVE_IRI:  # jsonschema's own, registered as it registers them
        for name, term in _IRI_FORMATS.items():
            checker.checkers.setdefault(name, (_iri(term), ValueError))
    return checker


FORMAT_CHECKER = _format_checker(is_pattern)
"""Draft 2020-12's format assertions, with ``regex`` meaning "RE2 compiles it"."""
SCHEMA_FORMAT_CHECKER = _format_checker(_schema_pattern)
"""For checking a stored schema against the meta-schema: its patterns must compile."""


# -- the JSON Schema keywords that match patterns ----------------------------------------


def _pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not compile_pattern(patrn).search(instance):
        yield ValidationError(f"{instance!r} does not match {patrn!r}")


def _pattern_properties(
    validator: Any, patterns: Mapping[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        regex = compile_pattern(pattern)
        for k, v in instance.items():
            if regex.search(k):
                yield from validator.descend(v, subschema, path=k, schema_path=pattern)


def matches_any(patterns: Any, name: str) -> bool:
    """Whether ``name`` matches one of ``patterns`` (a schema's patternProperties keys)."""
    return any(compile_pattern(p).search(name) for p in patterns)


def _additional(instance: Mapping[str, Any], schema: Mapping[str, Any]) -> Iterator[str]:
    properties = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    for name in instance:
        if name not in properties and not matches_any(patterns, name):
            yield name


def _extras(extras: list[Any]) -> tuple[str, str]:
    return ", ".join(repr(extra) for extra in extras), "was" if len(extras) == 1 else "were"


def _additional_properties(
    validator: Any, ap: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    extras = set(_additional(instance, schema))
    if validator.is_type(ap, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], ap, path=extra)
    elif not ap and extras:
        if "patternProperties" in schema:
            verb = "does" if len(extras) == 1 else "do"
            joined = ", ".join(repr(each) for each in sorted(extras))
            patterns = ", ".join(repr(each) for each in sorted(schema["patternProperties"]))
            yield ValidationError(f"{joined} {verb} not match any of the regexes: {patterns}")
        else:
            listed, verb = _extras(sorted(extras, key=str))
            yield ValidationError(
                f"Additional properties are not allowed ({listed} {verb} unexpected)"
            )


def _valid(errors: Iterator[ValidationError]) -> bool:
    return next(errors, None) is None


def _evaluated_keys(validator: Any, instance: Any, schema: Any) -> list[str]:
    """jsonschema's ``find_evaluated_property_keys_by_schema``, matching with RE2."""
    if validator.is_type(schema, "boolean"):
        return []
    keys: list[str] = []
    for keyword in ("$ref", "$dynamicRef"):
        ref = schema.get(keyword)
        if ref is not None:
            resolved = validator._resolver.lookup(ref)
            evolved = validator.evolve(schema=resolved.contents, _resolver=resolved.resolver)
            keys.extend(_evaluated_keys(evolved, instance, resolved.contents))
    properties = schema.get("properties")
    if validator.is_type(properties, "object"):
        keys += properties.keys() & instance.keys()
    for keyword in ("additionalProperties", "unevaluatedProperties"):
        subschema = schema.get(keyword)
        if subschema is not None:
            keys += (k for k, v in instance.items() if _valid(validator.descend(v, subschema)))
    if "patternProperties" in schema:
        keys += (k for k in instance if matches_any(schema["patternProperties"], k))
    for name, subschema in schema.get("dependentSchemas", {}).items():
        if name in instance:
            keys += _evaluated_keys(validator, instance, subschema)
    for keyword in ("allOf", "oneOf", "anyOf"):
        for subschema in schema.get(keyword, []):
            if _valid(validator.descend(instance, subschema)):
                keys += _evaluated_keys(validator, instance, subschema)
    if "if" in schema:
        if validator.evolve(schema=schema["if"]).is_valid(instance):
            keys += _evaluated_keys(validator, instance, schema["if"])
            if "then" in schema:
                keys += _evaluated_keys(validator, instance, schema["then"])
        elif "else" in schema:
            keys += _evaluated_keys(validator, instance, schema["else"])
    return keys


def _unevaluated_properties(
    validator: Any, unevaluated: Any, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    evaluated = _evaluated_keys(validator, instance, schema)
    failing = [
        name
        for name in instance
        if name not in evaluated
        and not _valid(validator.descend(instance[name], unevaluated, path=name, schema_path=name))
    ]
    if not failing:
        return
    if unevaluated is False:
        listed, verb = _extras(sorted(failing, key=str))
        yield ValidationError(
            f"Unevaluated properties are not allowed ({listed} {verb} unexpected)"
        )
    else:
        listed, verb = _extras(failing)
        yield ValidationError(
            "Unevaluated properties are not valid under the given schema "
            f"({listed} {verb} unevaluated and invalid)"
        )


BoundedValidator: Any = validators.extend(
    Draft202012Validator,
    {
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
        "unevaluatedProperties": _unevaluated_properties,
    },
    format_checker=FORMAT_CHECKER,
)
"""Draft 2020-12 with every pattern matched by RE2 (not registered for any ``$schema``:
a subschema naming a dialect would switch jsonschema back to its own class, so
:func:`engine.validation.compile_schema` refuses ``$schema`` below the top)."""
