"""What a read template's generic plan does: whether it writes or locks rows.

The text check (engine/sqltext.py) reads the statement as written; the plan shows what
PostgreSQL will run, views included: a GET from a view defined ``FOR UPDATE`` locks rows
(and fails in every read-only transaction) although its text does not say so.

The plan must be the generic one, which does not depend on the values bound: in a
savepoint rolled back, ``plan_cache_mode = force_generic_plan``, ``PREPARE`` the template
and ``EXPLAIN EXECUTE`` it with NULLs, which a generic plan never looks at. The same SQL
works on every supported PostgreSQL (14 and later; ``plan_cache_mode`` is 12+).
``EXPLAIN (GENERIC_PLAN)`` (16+) is not used: its plan is generic only when the
placeholders are left unbound, and the driver binds them (``WHERE id > $1`` with a NULL
bound folds to a one-time-false ``Result``, hiding the ``LockRows`` under it).

The answer is the set of plan node types (``ModifyTable``, ``LockRows``...), which
:func:`engine.checks.check_plan` judges.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import asyncpg
import orjson

PLAN_TIMEOUT_MS = 5000
PREPARED_NAME = "engine_plan_check"


async def plan_nodes(conn: asyncpg.Connection, sql: str, n_params: int) -> frozenset[str]:
    """Node types of the generic plan of ``sql`` (``n_params`` placeholders), never run.

    ``sql`` must be one statement that prepares (the compiler has prepared it). Raises
    ``asyncpg.PostgresError`` when the server will not plan it.
    """
    tx = conn.transaction()  # a savepoint when the caller holds a snapshot: rolled back
    await tx.start()
    prepared = False
    try:
        await conn.execute(
            f"SET LOCAL statement_timeout = {PLAN_TIMEOUT_MS}; "
            "SET LOCAL plan_cache_mode = force_generic_plan"
        )
        await conn.execute(f"PREPARE {PREPARED_NAME} AS {sql}")
        prepared = True
        nulls = f"({', '.join(['NULL'] * n_params)})" if n_params else ""
        plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE {PREPARED_NAME}{nulls}")
    finally:
        await tx.rollback()
        if prepared:  # a prepared statement outlives the rollback
            with contextlib.suppress(asyncpg.PostgresError):
                await conn.execute(f"DEALLOCATE {PREPARED_NAME}")
    if isinstance(plan, str | bytes):
        plan = orjson.loads(plan)
    return frozenset(_node_types(plan))


async def prepared_plan_nodes(
    conn: asyncpg.Connection, stmt: asyncpg.prepared_stmt.PreparedStatement
) -> frozenset[str]:
    """Node types of the generic plan of ``stmt``, a statement the driver prepared, never run.

    For a load's own block (engine/compiler.py's ``Session``), which already has
    ``plan_cache_mode = force_generic_plan`` and a statement timeout: the driver's
    prepared statement is explained by name (``EXPLAIN EXECUTE`` reaches statements
    of the protocol as well as ``PREPARE``'s), so nothing is prepared twice and
    nothing needs a savepoint of its own. Raises ``asyncpg.PostgresError`` when the
    server will not plan it.
    """
    n_params = len(stmt.get_parameters())
    if not stmt.get_name():
        # the driver keeps no named statement (statement_cache_size=0: ENGINE_PGBOUNCER=
        # transaction, engine/pgbouncer.py), so there is none to name: PREPARE the text
        return await plan_nodes(conn, stmt.get_query(), n_params)
    nulls = f"({', '.join(['NULL'] * n_params)})" if n_params else ""
    explain = await conn.prepare(f'EXPLAIN (FORMAT JSON) EXECUTE "{stmt.get_name()}"{nulls}')
    plan = await explain.fetchval()
    if isinstance(plan, str | bytes):
        plan = orjson.loads(plan)
    return frozenset(_node_types(plan))


def _node_types(node: Any) -> Iterator[str]:
    """Every ``Node Type`` in an EXPLAIN (FORMAT JSON) tree: sub-plans, CTEs, init plans."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            kind = item.get("Node Type")
            if isinstance(kind, str):
                yield kind
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
