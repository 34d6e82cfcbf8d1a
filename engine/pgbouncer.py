"""What PgBouncer's transaction pooling changes (``ENGINE_PGBOUNCER=transaction``).

Through PgBouncer in transaction mode a client's statements run on whichever server
connection is free when its transaction starts: between two transactions the server
connection may change, and nothing a session keeps (a named prepared statement, a
setting, a LISTEN, a session advisory lock) follows the client. So, in that mode:

- asyncpg's statement cache is off (``statement_cache_size=0``) on every connection
  through ``DATABASE_URL``: asyncpg then sends unnamed statements and parses them again
  in the same round trip as their execution, so no prepared statement outlives a
  transaction (engine/plans.py's ``PREPARE`` runs inside the load's snapshot and is
  deallocated there);
- PgBouncer 1.18 refuses every startup parameter but those it tracks itself
  (:data:`TRACKED`), so session settings become per-transaction ones: a read on the
  read pool runs in a read-only transaction of its own with its timeout ``SET LOCAL``
  (engine/database.py), where a direct connection has ``default_transaction_read_only``
  on its session;
- asyncpg's reset on release (``RESET ALL``, ``UNLISTEN *``, ``pg_advisory_unlock_all()``)
  would run on whichever server connection serves it, undoing nothing of ours: skipped;
- LISTEN, migrations and seeds (session advisory locks) and the command-line verbs need a
  session: they use the direct connection of ``ENGINE_LISTEN_DATABASE_URL``. Without it
  the engine refuses to start (:data:`NEEDS_DIRECT`): a LISTEN through transaction
  pooling is accepted and then never hears a notification.
"""

from __future__ import annotations

from typing import Any, ClassVar

import asyncpg

from engine.settings import Settings

TRANSACTION = "transaction"
# the startup parameters PgBouncer 1.18 accepts and keeps per client; any other is refused
TRACKED = frozenset(
    {"application_name", "client_encoding", "datestyle", "timezone", "standard_conforming_strings"}
)
NEEDS_DIRECT = (
    "ENGINE_PGBOUNCER=transaction needs ENGINE_LISTEN_DATABASE_URL, a direct connection "
    "(not through PgBouncer) for LISTEN and migrations: a LISTEN through transaction "
    "pooling never hears a notification"
)


def transaction_pooled(settings: Settings) -> bool:
    """Whether DATABASE_URL points at PgBouncer in transaction pooling mode."""
    return settings.pgbouncer == TRANSACTION


def check(settings: Settings) -> None:
    """Refuse transaction mode without a direct URL: ``ValueError`` (:data:`NEEDS_DIRECT`)."""
    if transaction_pooled(settings) and not settings.listen_database_url:
        raise ValueError(NEEDS_DIRECT)


def session_url(settings: Settings, url: str) -> str:
    """The URL for work that keeps session state (migrations, seeds, command-line verbs):
    ``url`` itself unless it goes through PgBouncer, else the direct connection.

    Raises ``ValueError`` (:data:`NEEDS_DIRECT`) in transaction mode without one.
    """
    check(settings)
    if not transaction_pooled(settings) or not settings.listen_database_url:
        return url
    return settings.listen_database_url


def connect_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``asyncpg.connect`` on a connection of its own through
    ``DATABASE_URL`` (the health probe, the figures): no statement cache through PgBouncer."""
    return {"statement_cache_size": 0} if transaction_pooled(settings) else {}


def startup_settings(settings: Settings, wanted: dict[str, str]) -> dict[str, str]:
    """The part of ``wanted`` that may be sent at connect time; through PgBouncer the rest
    must be set per transaction by the caller."""
    if not transaction_pooled(settings):
        return dict(wanted)
    return {k: v for k, v in wanted.items() if k.lower() in TRACKED}


class EngineConnection(asyncpg.Connection):
    """The pools' connection class: a direct session, or one through PgBouncer."""

    # reads on it need a read-only transaction of their own (engine/database.py)
    read_only_per_transaction: ClassVar[bool] = False


class ReadOnlyPerTransaction(EngineConnection):
    """A read pool's connection through PgBouncer in transaction mode: the session cannot
    be read-only, so each read is a read-only transaction."""

    read_only_per_transaction: ClassVar[bool] = True


def read_only_per_transaction(conn: Any) -> bool:
    """Whether a read on ``conn`` (a pool's connection) must be its own read-only
    transaction."""
    # the connection behind a pool's proxy: the proxy's own look-up fails (an
    # AttributeError made) before its __getattr__ asks the connection
    return getattr(getattr(conn, "_con", None) or conn, "read_only_per_transaction", False)
