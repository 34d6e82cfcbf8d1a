"""A database-driven endpoint engine: mapping rows in PostgreSQL become live HTTP endpoints."""

__version__ = "0.1.0"

import sys as _sys

# jsonschema imports rfc3987_syntax (its "iri" and "iri-reference" formats) when it is first
# imported, and that builds a Lark grammar: 1.4 s of every engine start and every CLI call.
# Hidden from that import, the same checks are registered by engine.patterns and loaded on
# first need (engine.patterns.warm_iri: a schema naming those formats loads it in a thread).
if "jsonschema" not in _sys.modules:
    _sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
