"""Who the reads run as, and which guarantee keeps a GET from writing.

A read-only session (``default_transaction_read_only``) is a setting the session may
change itself: a GET template running ``set_config('default_transaction_read_only',
'off', false)`` switches its pooled connection (the read pool skips asyncpg's reset) to
writing, and the next GET on it writes. A role without write privileges, or a standby
server, cannot be talked out of it: the database refuses the write. So the read pool
connects, in this order, as:

1. ``ENGINE_READ_DATABASE_URL``'s user, when set (a read-only user, on a replica or not);
2. the role ``engine_reader`` (made by ``sql/019``) on the main server and database, when
   it exists and logs in from here without a password (the embedded server and the
   tests' servers trust their socket; a server that asks for a password falls back);
3. the main URL's user, on read-only sessions only.

Whatever is chosen is inspected once at start (superuser? a table or sequence it may
write? a standby?) and the guarantee in force is said in one line, at start and by
``engine check``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from engine.settings import Settings

log = logging.getLogger("engine.database")

READER = "engine_reader"
CONNECT_TIMEOUT_S = 10.0
SESSION_ONLY = "reads run on read-only sessions only (a template can switch its session to writing)"
ADVICE = "set ENGINE_READ_DATABASE_URL to a read-only role"

READER_CAN_LOG_IN = "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1"
# what the connected user could write: a superuser anything; else the first table, view
# or sequence outside the system schemas it may change (through PUBLIC, a role it is a
# member of or pg_write_all_data too: has_*_privilege follows them all)
WHAT_USER_CAN_WRITE = """
SELECT current_user::text AS name,
       r.rolsuper AS superuser,
       pg_is_in_recovery() AS standby,
       (SELECT c.oid::regclass::text
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg\\_%'
          AND CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'USAGE, UPDATE')
                   WHEN c.relkind IN ('r', 'p', 'v', 'f')
                   THEN has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
                   ELSE false END
        ORDER BY 1
        LIMIT 1) AS writable
FROM pg_roles r
WHERE r.rolname = current_user
"""


@dataclass(frozen=True)
class ReadGuarantee:
    """What keeps a read from writing, as found on the read pool's server."""

    user: str
    by_database: bool  # the role or the server refuses writes; else only the session does
    line: str  # one sentence for the log and engine check

    def log(self) -> None:
        """The one start-up line: info when the database guarantees it, else a warning."""
        if self.by_database:
            log.info("%s", self.line)
        else:
            log.warning("%s", self.line)


def url_as(url: str, user: str) -> str:
    """The same server and database as ``url``, as ``user`` without a password."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    kept = [
        item
        for item in parts.query.split("&")
        if item and item.split("=", 1)[0] not in ("user", "password")
    ]
    return urlunsplit(
        (parts.scheme, f"{quote(user, safe='')}@{host}", parts.path, "&".join(kept), parts.fragment)
    )


def url_user(url: str) -> str | None:
    """The user a URL names, if it names one."""
    return urlsplit(url).username


async def inspect(conn: asyncpg.Connection, *, note: str = "") -> ReadGuarantee:
    """The guarantee of reads run on ``conn``: its user's privileges, or its server."""
    r = await conn.fetchrow(WHAT_USER_CAN_WRITE)
    assert r is not None  # current_user is always a row of pg_roles
    user = r["name"]
    if r["standby"]:
        return ReadGuarantee(user, True, f"reads run on a standby server (as role {user})")
    if not r["superuser"] and r["writable"] is None:
        return ReadGuarantee(user, True, f"reads run as role {user} without write privileges")
    why = "a superuser" if r["superuser"] else f"which may write {r['writable']}"
    about = f"reads connect as {user}, {why}" + (f"; {note}" if note else "")
    return ReadGuarantee(user, False, f"{SESSION_ONLY}; {ADVICE} ({about})")


async def _connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_S)


async def choose(url: str, settings: Settings, lookup: asyncpg.Connection) -> tuple[str, str]:
    """(URL the read pool connects with, why it is not the reader role, or '').

    ``lookup``: a connection to the main database, to see whether the reader role
    exists. Only a reader role that exists is tried, so a server without one never
    logs a failed login for it.
    """
    if settings.read_database_url:
        return settings.read_database_url, ""
    if url_user(url) == READER:
        return url, ""
    if not await lookup.fetchval(READER_CAN_LOG_IN, READER):
        return url, f"there is no role {READER} that can log in (sql/019 makes it)"
    candidate = url_as(url, READER)
    try:
        conn = await _connect(candidate)
    except Exception as exc:  # asked for a password, refused by pg_hba...: sessions it is
        return url, f"role {READER} cannot log in without a password here: {type(exc).__name__}"
    await conn.close()
    return candidate, ""


async def read_guarantee(url: str, settings: Settings, lookup: asyncpg.Connection) -> ReadGuarantee:
    """The guarantee reads would run under with these settings (what ``engine check`` says),
    found on a connection of their own."""
    read_url, note = await choose(url, settings, lookup)
    conn = await _connect(read_url)
    try:
        return await inspect(conn, note=note)
    finally:
        await conn.close()
