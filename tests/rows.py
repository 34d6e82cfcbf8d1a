"""Inserting mapping rows in tests, the way an admin would."""

from __future__ import annotations

import json
from typing import Any

from tests.pg import DB


def add_endpoint(
    db: DB,
    path: str,
    method: str,
    sql: str,
    params: list[dict[str, Any]] | None = None,
    result: dict[str, Any] | None = None,
    *,
    operation: str | None = None,
    requires_auth: bool = False,
    **columns: Any,
) -> int:
    """Insert one api_endpoint_mappings row; returns its id."""
    values: dict[str, Any] = {
        "endpoint_path": path,
        "http_method": method,
        "service_name": "test_service",
        "database_operation": operation or ("SELECT" if method == "GET" else "INSERT"),
        "query_template": sql,
        "query_parameters": json.dumps(params or []),
        "result_mapping": json.dumps(result or {"shape": "list"}),
        "requires_auth": requires_auth,
        **columns,
    }
    names = ", ".join(values)
    casts = {"query_parameters": "::jsonb", "result_mapping": "::jsonb"}
    placeholders = ", ".join(f"${i}{casts.get(k, '')}" for i, k in enumerate(values, 1))
    return db.fetchval(
        f"INSERT INTO api_endpoint_mappings ({names}) VALUES ({placeholders}) RETURNING id",
        *values.values(),
    )
