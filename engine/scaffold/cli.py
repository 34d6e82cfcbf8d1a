"""``python -m engine scaffold TABLE ...``: the rows that publish a table, at a terminal.

Without ``--apply`` the SQL is printed (for a seed file); with ``--apply`` the rows
are inserted as drafts and their states printed. A table that cannot be scaffolded
is refused (exit 1) with the reason on stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import asyncpg

from engine.admin.cli import actor
from engine.database import init_connection
from engine.errors import ApiError
from engine.scaffold import scaffold
from engine.settings import Settings


def add_parser(sub: Any) -> None:
    """The ``scaffold`` verb of the engine's command line."""
    scaffold_parser = sub.add_parser(
        "scaffold",
        help="generate the endpoint rows of a table (list, get, create, update, delete)",
        description="Read TABLE from the database catalogue and generate its endpoint rows: "
        "list (keyset pages on the primary key), get, create, partial update and delete by "
        "key, with JSON Schemas of the bodies from the columns and a <TABLE>_NOT_FOUND error "
        "code. The rows are checked as engine check would. Without --apply the SQL is printed "
        "(for a seed file); with --apply the rows are inserted as drafts (is_active = false) "
        "and their states printed. A table it cannot handle is refused (exit 1) with the reason.",
    )
    scaffold_parser.add_argument(
        "table", metavar="TABLE", help="the table, e.g. things or public.things"
    )
    scaffold_parser.add_argument("--path", help="collection path (default: /api/v1/TABLE)")
    scaffold_parser.add_argument(
        "--tenant-column", help="bind this column from the caller's claim in every statement"
    )
    scaffold_parser.add_argument(
        "--tenant-claim", help="the claim the tenant comes from (default: tenant_id)"
    )
    scaffold_parser.add_argument("--roles", help="comma-separated roles, any one suffices")
    scaffold_parser.add_argument(
        "--public", action="store_true", help="no authentication (default: requires_auth)"
    )
    scaffold_parser.add_argument(
        "--apply", action="store_true", help="insert the rows as drafts and print their states"
    )


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


async def run(url: str, settings: Settings, args: argparse.Namespace) -> int:
    """Scaffold as the arguments say; 0, or 1 with the reason on stderr."""
    conn = await asyncpg.connect(url)
    await init_connection(conn)
    try:
        result = await scaffold(
            conn,
            args.table,
            path=args.path,
            tenant_column=args.tenant_column,
            tenant_claim=args.tenant_claim,
            roles=_split(args.roles),
            apply=args.apply,
            public=args.public,
            actor=actor() if args.apply else None,
            default_timeout_ms=settings.statement_timeout_ms,
        )
    except ApiError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        for problem in exc.errors or ():
            if str(problem.get("message")) not in str(exc.detail):
                print(f"  {problem.get('endpoint')}: {problem.get('message')}", file=sys.stderr)
        return 1
    finally:
        await conn.close()
    print(result.report() if args.apply else result.sql, end="")
    return 0
