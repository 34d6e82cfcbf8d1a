"""``python -m engine endpoints ...``: the admin API's operations at a terminal.

    endpoints list [--service S]          every row: id, state, method, path, version, reason
    endpoints show ID                     every column, the state, reason and warnings
    endpoints versions ID                 the history, oldest first
    endpoints diff ID [--from V1] [--to V2]
    endpoints rollback ID --version N [--dry-run]
    endpoints activate ID | deactivate ID

Each does what the admin API does (:mod:`engine.admin.operations`): a rollback
or an activation is checked like any edit and refused (exit 1, the reasons on
stderr) when the row would not serve. Changes are recorded as made by
``cli:$USER``.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
import orjson

from engine.admin import operations
from engine.database import init_connection
from engine.errors import ApiError
from engine.settings import Settings

VERBS = ("list", "show", "versions", "diff", "rollback", "activate", "deactivate")


def actor() -> str | None:
    """``cli:<login name>``; None (the database's current_user is recorded) when unknown."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return None


def add_parser(sub: Any) -> None:
    """The ``endpoints`` verb and its sub-commands, on the CLI's sub-parsers."""
    parser = sub.add_parser(
        "endpoints",
        help="inspect, compare, roll back and (de)activate endpoint rows",
        description="The admin API's operations on endpoint mapping rows, at a terminal. "
        "rollback and activate check the row as engine check would and refuse it (exit 1, "
        "with the reasons) when it would not serve; nothing is written then. Changes are "
        "recorded in the history as made by cli:$USER.",
    )
    verbs = parser.add_subparsers(
        dest="endpoints_command", required=True, title="commands", metavar="COMMAND"
    )
    listing = verbs.add_parser(
        "list",
        help="every row with its state",
        description="Every mapping row: id, state (serving, stale, refused, draft, or pending: "
        "changed and not checked by a running engine yet), method, path, version, service "
        "and, for rows that do not serve, the reason.",
    )
    listing.add_argument("--service", help="only rows of this service_name")
    show = verbs.add_parser(
        "show", help="one row: every column and its state", description="One mapping row."
    )
    show.add_argument("id", type=int, help="the mapping's id")
    versions = verbs.add_parser(
        "versions",
        help="the versions of a row (kept after it is deleted)",
        description="Every version of a mapping's definition, oldest first: the kind of "
        "change, who made it and when.",
    )
    versions.add_argument("id", type=int, help="the mapping's id")
    diff = verbs.add_parser(
        "diff",
        help="what changed between two versions",
        description="The fields that differ between two versions, then a unified diff of "
        "the template. Without --from/--to: the last version against the one before.",
    )
    diff.add_argument("id", type=int, help="the mapping's id")
    diff.add_argument("--from", dest="first", type=int, metavar="V1", help="the older version")
    diff.add_argument("--to", dest="second", type=int, metavar="V2", help="the newer version")
    rollback = verbs.add_parser(
        "rollback",
        help="restore an earlier version as a new one (checked first)",
        description="Write version N's definition back as a new version, checked as engine "
        "check would: refused (exit 1) when it would not serve today.",
    )
    rollback.add_argument("id", type=int, help="the mapping's id")
    rollback.add_argument("--version", type=int, required=True, metavar="N", help="the version")
    rollback.add_argument("--dry-run", action="store_true", help="print the check, write nothing")
    activate = verbs.add_parser(
        "activate",
        help="activate a row (checked first)",
        description="Activate a mapping row; refused (exit 1) when it would not serve.",
    )
    activate.add_argument("id", type=int, help="the mapping's id")
    deactivate = verbs.add_parser(
        "deactivate",
        help="deactivate a row (its route stops at once)",
        description="Deactivate a mapping row: it becomes a draft and its route stops serving "
        "in every engine process.",
    )
    deactivate.add_argument("id", type=int, help="the mapping's id")


async def run(url: str, settings: Settings, args: argparse.Namespace) -> int:
    """Run one ``endpoints`` sub-command; 0 on success, 1 on a refusal or a missing row."""
    conn = await asyncpg.connect(url)
    try:
        await init_connection(conn)
        return await _run(conn, settings, args)
    except ApiError as exc:
        _refused(exc)
        return 1
    finally:
        await conn.close()


async def _run(conn: asyncpg.Connection, settings: Settings, args: argparse.Namespace) -> int:
    verb = args.endpoints_command
    timeout = {"default_timeout_ms": settings.statement_timeout_ms}
    if verb == "list":
        _print_list(await operations.list_endpoints(conn, service=args.service))
    elif verb == "show":
        _print_row(await operations.show_endpoint(conn, args.id))
    elif verb == "versions":
        _print_versions(args.id, await operations.versions(conn, args.id))
    elif verb == "diff":
        _print_diff(await operations.diff(conn, args.id, args.first, args.second))
    elif verb == "rollback":
        outcome = await operations.rollback(
            conn, args.id, args.version, actor=actor(), dry_run=args.dry_run, **timeout
        )
        return _print_outcome(outcome, f"version {args.version} restored")
    elif verb == "activate":
        outcome = await operations.activate(conn, args.id, actor=actor(), **timeout)
        return _print_outcome(outcome, "activated")
    else:
        row = await operations.deactivate(conn, args.id, actor=actor())
        print(
            f"mapping id={row['id']} {row['http_method']} {row['endpoint_path']} deactivated "
            f"(v{row['version']}): it stops serving in every engine process"
        )
    return 0


def _refused(exc: ApiError) -> None:
    print(f"error: {exc.detail or exc.code} ({exc.code})", file=sys.stderr)
    for problem in exc.errors or ():
        where = problem.get("pointer") or problem.get("parameter")
        if problem.get("id") is not None and problem.get("table") == "api_endpoint_mappings":
            where = f"mapping id={problem['id']} {problem.get('method')} {problem.get('path')}"
        print(f"  {where + ': ' if where else ''}{problem.get('message')}", file=sys.stderr)


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _print_list(rows: Sequence[Mapping[str, Any]]) -> None:
    table = [("id", "state", "method", "path", "version", "service", "reason")]
    for r in rows:
        table.append(
            (
                str(r["id"]),
                r["state"],
                r["http_method"],
                r["endpoint_path"],
                f"v{r['version']}",
                r["service_name"],
                r["reason"] or "",
            )
        )
    _table(table)
    if not rows:
        print("(no endpoint rows)")


def _text(value: Any) -> str:
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return "-" if value is None else str(value)


def _print_row(row: Mapping[str, Any]) -> None:
    print(f"mapping id={row['id']}: {row['http_method']} {row['endpoint_path']} v{row['version']}")
    print(f"state: {row['state']}" + (f": {row['reason']}" if row["reason"] else ""))
    for warning in row.get("warnings") or ():
        print(f"warning: {warning}")
    skip = {"id", "http_method", "endpoint_path", "version", "state", "reason", "warnings"}
    for name, value in row.items():
        if name not in skip and name != "query_template":
            print(f"{name}: {_text(value)}")
    print("query_template:")
    for line in str(row["query_template"]).splitlines():
        print(f"    {line}")


def _print_versions(mapping_id: int, rows: Sequence[Mapping[str, Any]]) -> None:
    table = [("version", "kind", "changed by", "changed at", "row version", "tables")]
    for r in rows:
        table.append(
            (
                str(r["version"]),
                r["change_kind"],
                r["changed_by"],
                r["changed_at"].isoformat(timespec="seconds"),
                "deleted" if r["row_version"] is None else f"v{r['row_version']}",
                ",".join(r["changed_tables"]),
            )
        )
    print(f"mapping id={mapping_id}: {len(rows)} version(s)")
    _table(table)


def _print_diff(result: Mapping[str, Any]) -> None:
    changed = result["changed"]
    print(
        f"mapping id={result['id']}: version {result['from']} -> {result['to']}, "
        f"{len(changed)} field(s) changed"
    )
    for name, change in changed.items():
        print(f"  {name}: {_text(change['from'])} -> {_text(change['to'])}")
    if result["template_diff"]:
        print(result["template_diff"], end="" if result["template_diff"].endswith("\n") else "\n")


def _print_outcome(outcome: operations.Outcome, done: str) -> int:
    """Print a change's result; 1 for a dry run that would be refused."""
    row = outcome.row
    what = f"mapping id={row['id']} {row['http_method']} {row['endpoint_path']}"
    if not outcome.saved:
        verdict = "would serve" if outcome.check.ok else "would NOT serve"
        print(f"dry run: {what} {verdict}; nothing was written")
        for problem in outcome.check.problems:
            print(f"  {problem['message']}")
        return 0 if outcome.check.ok else 1
    restored = row.get("restored") or {}
    if restored and restored.get("version") is None:
        done += ": nothing changed, the row was already as in that version"
    print(f"{what} {done} (v{row['version']}); state: {row['state']}")
    for warning in row.get("warnings") or ():
        print(f"warning: {warning}")
    for note in restored.get("notes") or ():
        print(f"note: {note}")
    return 0
