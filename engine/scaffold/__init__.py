"""Scaffolding: the endpoint rows of one table, generated from the database catalogue.

``python -m engine scaffold TABLE`` and ``POST /admin/v1/scaffold`` call
:func:`scaffold`, which reads the table from ``pg_catalog`` and generates draft
rows for list (keyset pages on the primary key), get, create, partial update
(``COALESCE``) and delete by key, the JSON Schemas of the two bodies and the
``<TABLE>_NOT_FOUND`` error code; it prints them as SQL or inserts them as drafts,
checked as ``engine check`` checks rows.

Handled: tables and partitioned tables with a primary key; a composite key is one
path segment per key column (``/things/{a}/{b}``), the tenant column excepted; key
columns of integer, uuid, text, enum or date types. Refused, with the reason: no
primary key, another key type, views, materialized views, foreign tables,
partitions (scaffold the parent), temporary and system tables, a reserved path or
one another row owns.

    model     (pure) a table's columns and key; refuse()
    table     (I/O)  the table as the catalogue describes it; refusals
    checks    (pure) CHECK constraints as JSON Schema keywords
    rows      (pure) the plan and the generated rows
    seedfile  (pure) the rows as an idempotent SQL file
    drafts    (I/O)  scaffold(): check, insert, commit or roll back
"""

from __future__ import annotations

from engine.scaffold.checks import map_check, merge_facets
from engine.scaffold.drafts import ScaffoldResult, scaffold
from engine.scaffold.model import REFUSED
from engine.scaffold.rows import MAPPING_COLUMNS, SCHEMA_COLUMNS
from engine.scaffold.seedfile import sql_literal

__all__ = [
    "MAPPING_COLUMNS",
    "REFUSED",
    "SCHEMA_COLUMNS",
    "ScaffoldResult",
    "map_check",
    "merge_facets",
    "scaffold",
    "sql_literal",
]
