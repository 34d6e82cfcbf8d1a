"""A change to the catalogue, kept only if the catalogue still serves: the checks of ``engine check``.

:func:`checked_change` writes a change inside one REPEATABLE READ transaction
between two loads of the catalogue on the same connection
(:func:`engine.catalog.load_catalog` sees the uncommitted rows) and
:func:`judge` compares them: the change is refused when a row it writes would
not serve as written (an active row that is not ``serving``: ``stale`` means its
last good version would keep serving in its place; a draft with a reason), or
when any other row that served before would not after. A refusal rolls back and
raises :func:`refusal` (422 ``ENDPOINT_INVALID`` with every reason); a dry run
rolls back either way and returns the verdict.

Checked changes run one at a time: each takes the advisory lock
:data:`CATALOG_WRITE_LOCK` before its transaction (so before its snapshot),
else two concurrent changes would each be checked against a catalogue without
the other's rows (two clashing creates would both be kept). The SQL function
``engine_admin_set_active`` (sql/014) takes the same lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

from engine.catalog import DRAFT, SERVING, Catalog, RowStatus, load_catalog, write_statuses
from engine.errors import ApiError

T = TypeVar("T")

SET_ACTOR = "SELECT set_config('engine.actor', $1, true)"

# the advisory lock key every change of the catalogue holds while it checks and
# writes ("catalog!"); sql/014 engine_admin_set_active uses the same number
CATALOG_WRITE_LOCK = 0x636174616C6F6721


@contextlib.asynccontextmanager
async def catalog_write_lock(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """Hold :data:`CATALOG_WRITE_LOCK` on ``conn`` (waiting for any other change to end).

    Enter it before the transaction starts: a REPEATABLE READ snapshot taken
    before the lock was granted would miss the change that held it. Outside a
    transaction it is a session lock released on exit (the pool's reset releases
    it too); inside one, a transaction lock released at its end.
    """
    if conn.is_in_transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CATALOG_WRITE_LOCK)
        yield
        return
    await conn.execute("SELECT pg_advisory_lock($1)", CATALOG_WRITE_LOCK)
    try:
        yield
    finally:
        if not conn.is_closed():
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await conn.execute("SELECT pg_advisory_unlock($1)", CATALOG_WRITE_LOCK)


@dataclass(frozen=True)
class Check:
    """What the catalogue makes of a change."""

    problems: tuple[dict[str, Any], ...]  # why it is refused (empty: it may be kept)
    statuses: Mapping[int, RowStatus] = field(default_factory=dict)  # the rows it writes, after

    @property
    def ok(self) -> bool:
        return not self.problems

    def state_of(self, mapping_id: int) -> dict[str, Any]:
        """The state columns of one written row, as the check found them."""
        s = self.statuses.get(mapping_id)
        if s is None:
            return {"state": None, "reason": None, "serving_version": None, "warnings": []}
        return {
            "state": s.state,
            "reason": s.reason,
            "serving_version": s.serving_version,
            "warnings": list(s.warnings),
        }


class _Undo(Exception):
    """Rolls the change's transaction back (a refusal or a dry run)."""

    def __init__(self, result: Any, check: Check) -> None:
        super().__init__("undo")
        self.result = result
        self.check = check


def would_serve(status: RowStatus) -> bool:
    """An active row that serves as written, or a draft that would."""
    return status.state == SERVING or (status.state == DRAFT and status.reason is None)


def _problem(status: RowStatus, message: str) -> dict[str, Any]:
    return {
        "table": "api_endpoint_mappings",
        "id": status.mapping_id,
        "method": status.method,
        "path": status.path,
        "state": status.state,
        "message": message,
    }


def judge(before: Catalog, after: Catalog, targets: Iterable[int], *, strict: bool) -> Check:
    """Whether the change that turned ``before`` into ``after`` may be kept.

    ``targets``: the mappings it writes (or whose schema it writes). ``strict``:
    each must serve after; otherwise each must not be broken by it (it served
    before, or its reason is unchanged).
    """
    old = {s.mapping_id: s for s in before.statuses}
    new = {s.mapping_id: s for s in after.statuses}
    wanted = set(targets)
    problems: list[dict[str, Any]] = []
    for mid, status in sorted(new.items()):
        if would_serve(status):
            continue
        was = old.get(mid)
        reason = status.reason or f"it is {status.state}"
        if mid in wanted:
            if strict or was is None or would_serve(was) or was.reason != status.reason:
                problems.append(_problem(status, reason))
        elif was is not None and would_serve(was):
            problems.append(
                _problem(
                    status,
                    f"mapping id={mid} ({status.method} {status.path}) would stop serving: "
                    f"{reason}",
                )
            )
    return Check(tuple(problems), {mid: new[mid] for mid in wanted if mid in new})


def refusal(check: Check) -> ApiError:
    """The 422 of a refused change: every reason, first one in the detail."""
    first = check.problems[0]["message"]
    more = len(check.problems) - 1
    detail = f"Nothing was written: {first}" + (f" (and {more} more, see errors)" if more else "")
    return ApiError("ENDPOINT_INVALID", detail, errors=list(check.problems))


async def checked_change(
    conn: asyncpg.Connection,
    write: Callable[[asyncpg.Connection], Awaitable[T]],
    targets: Callable[[T], Iterable[int]],
    *,
    actor: str | None,
    dry_run: bool = False,
    strict: bool = True,
    previous: Catalog | None = None,
    default_timeout_ms: int = 30000,
) -> tuple[T, Check]:
    """Write a change and keep it only if the catalogue still serves (see the module doc).

    ``write`` runs inside the transaction and returns what the caller answers
    (read before a rollback); ``targets`` names the mappings it writes.
    ``previous``: a catalogue to reuse compiled rows from (the live one); None
    compiles every row cold, as ``engine check`` does. Raises the 422 of
    :func:`refusal`, unless ``dry_run`` (then the check is returned either way).
    """
    try:
        async with catalog_write_lock(conn), conn.transaction(isolation="repeatable_read"):
            if actor:
                await conn.execute(SET_ACTOR, actor)
            before = await load_catalog(
                conn, default_timeout_ms=default_timeout_ms, previous=previous
            )
            result = await write(conn)
            after = await load_catalog(conn, default_timeout_ms=default_timeout_ms, previous=before)
            check = judge(before, after, targets(result), strict=strict)
            if dry_run or not check.ok:
                raise _Undo(result, check)
            # a draft's state is known now: activating it needs no wait for a reload
            # (a serving row's is written by the engines once they serve it)
            drafts = [s for s in check.statuses.values() if s.state == DRAFT]
            if drafts:
                await write_statuses(conn, drafts)
    except _Undo as undo:
        if not undo.check.ok and not dry_run:
            raise refusal(undo.check) from None
        return undo.result, undo.check
    return result, check
