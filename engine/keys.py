"""API keys: creating, listing, rotating, revoking and deleting them, and checking them from memory.

A key looks like ``ek_<prefix>_<secret>``. The table keeps the prefix (to find
the row) and the SHA-256 of the whole key, never the key. :class:`KeyStore`
holds the keys of the database in memory, reloaded on ``NOTIFY engine_keys``,
so checking a key needs no database connection and a revocation reaches every
process at once. Revoked and expired keys are kept too, so a refusal can say
why (:class:`KeyRefused`: unknown, wrong secret, revoked, expired).
``last_used_at`` is written in batches, off the request path.

Rotating gives a key row a new prefix and secret (same name, roles, permissions,
tenant and expiry): the old key stops matching in every process on the same
``NOTIFY``. Only a revoked or expired key may be deleted, so an admin never
removes a key in use by mistake.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from engine.jobs import Periodic

log = logging.getLogger("engine.keys")

CHANNEL = "engine_keys"
PREFIX = "ek"
LAST_USED_FLUSH_S = 30.0

# instants clamped to what Python's datetime holds: 'infinity' is year 9999 (never),
# '-infinity' and BC are year 1 (long past)
_CLAMP = (
    "CASE WHEN {0} IS NOT NULL THEN "  # GREATEST and LEAST skip NULLs: keep them NULL
    "LEAST(GREATEST({0}, '0001-01-02 00:00:00+00'), '9999-12-31 00:00:00+00') END AS {0}"
)
LOAD_KEYS = f"""
SELECT name, key_prefix, key_hash, roles, permissions, tenant_id,
       {_CLAMP.format("expires_at")}, {_CLAMP.format("revoked_at")}
FROM api_keys
"""
INSERT_KEY = """
INSERT INTO api_keys (name, key_prefix, key_hash, roles, permissions, tenant_id, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING id
"""
LIST_KEYS = f"""
SELECT name, key_prefix, roles, permissions, tenant_id, {_CLAMP.format("expires_at")},
       {_CLAMP.format("revoked_at")}, {_CLAMP.format("last_used_at")}, {_CLAMP.format("created_at")}
FROM api_keys ORDER BY name
"""
REVOKE_KEY = "UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL"
# only a usable key is rotated: a revoked or expired one would get a secret that cannot work
ROTATE_KEY = """
UPDATE api_keys SET key_prefix = $2, key_hash = $3
WHERE name = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
"""
DELETE_KEY = """
DELETE FROM api_keys
WHERE name = $1 AND (revoked_at IS NOT NULL OR (expires_at IS NOT NULL AND expires_at <= now()))
"""
KEY_STATE = f"""
SELECT {_CLAMP.format("expires_at")}, {_CLAMP.format("revoked_at")}
FROM api_keys WHERE name = $1
"""
TOUCH_KEYS = "UPDATE api_keys SET last_used_at = now() WHERE name = ANY($1::text[])"


class KeyError_(Exception):
    """A key command that cannot be done (unknown name, duplicate name)."""


class KeyRefused(Exception):
    """A key that does not authenticate; the message says why (never the key itself)."""


@dataclass(frozen=True)
class StoredKey:
    name: str
    key_hash: bytes
    roles: tuple[str, ...]
    permissions: tuple[str, ...]
    tenant_id: int | None
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None = None

    @property
    def usable(self) -> bool:
        return self.revoked_at is None and (
            self.expires_at is None or self.expires_at > dt.datetime.now(dt.UTC)
        )


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """(full key, prefix)."""
    prefix = secrets.token_hex(6)
    return f"{PREFIX}_{prefix}_{secrets.token_urlsafe(32)}", prefix


def _prefix_of(key: str) -> str | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1]


class KeyStore:
    """The usable API keys, by prefix, kept in memory."""

    def __init__(self) -> None:
        self._by_prefix: dict[str, StoredKey] = {}
        self._used: set[str] = set()
        # reloads may overlap (two NOTIFYs in a row, each on its own pool connection): one at a
        # time, so an older snapshot never replaces a newer one (a revoked key coming back)
        self._loading = asyncio.Lock()

    def replace(self, rows: Iterable[Any]) -> None:
        keys = {}
        for r in rows:
            keys[r["key_prefix"]] = StoredKey(
                name=r["name"],
                key_hash=bytes.fromhex(r["key_hash"]),
                roles=tuple(r["roles"] or ()),
                permissions=tuple(r["permissions"] or ()),
                tenant_id=r["tenant_id"],
                expires_at=r["expires_at"],
                revoked_at=r["revoked_at"],
            )
        self._by_prefix = keys  # one assignment: readers see the old or the new set

    async def load(self, conn: asyncpg.Connection) -> None:
        async with self._loading:
            self.replace(await conn.fetch(LOAD_KEYS))
        usable = sum(k.usable for k in self._by_prefix.values())
        log.info("%d API key(s) loaded (%d usable)", len(self._by_prefix), usable)

    def verify(self, key: str) -> StoredKey:
        """The usable stored key matching ``key``, compared in constant time.

        Raises :class:`KeyRefused` saying why not: not a key, unknown, wrong
        secret, revoked or expired (the last three name the key, never show it).
        """
        prefix = _prefix_of(key.strip())
        stored = self._by_prefix.get(prefix) if prefix else None
        digest = hashlib.sha256(key.strip().encode(errors="surrogatepass")).digest()
        # compare even when no row matched, so timing says nothing about prefixes
        expected = stored.key_hash if stored else b"\0" * 32
        matches = hmac.compare_digest(digest, expected)
        if prefix is None:
            raise KeyRefused(f"not an API key (expected {PREFIX}_<prefix>_<secret>)")
        if stored is None:
            raise KeyRefused("unknown API key: no key has its prefix")
        if not matches:
            raise KeyRefused(f"the secret does not match API key {stored.name!r}")
        if stored.revoked_at is not None:
            raise KeyRefused(
                f"API key {stored.name!r} was revoked at {stored.revoked_at.isoformat()}"
            )
        if stored.expires_at is not None and stored.expires_at <= dt.datetime.now(dt.UTC):
            raise KeyRefused(f"API key {stored.name!r} expired at {stored.expires_at.isoformat()}")
        self._used.add(stored.name)
        return stored

    def check(self, key: str) -> StoredKey | None:
        """The usable stored key matching ``key``; None if none (see :meth:`verify`)."""
        try:
            return self.verify(key)
        except KeyRefused:
            return None

    def last_used_job(self, pool: asyncpg.Pool) -> Periodic:
        """Record which keys were used, every few seconds and once more at stop."""
        return Periodic(
            "api-key-last-used", LAST_USED_FLUSH_S, lambda: self.flush(pool), final=True
        )

    async def reload(self, pool: asyncpg.Pool) -> None:
        """Load the keys again (a key was added, revoked...); on failure keep the ones we have."""
        try:
            async with pool.acquire(timeout=10) as conn:
                await self.load(conn)
        except Exception as exc:
            log.error("could not reload API keys: %s", exc)

    async def flush(self, pool: asyncpg.Pool) -> None:
        used, self._used = self._used, set()
        if not used:
            return
        try:
            async with pool.acquire(timeout=10) as conn:
                await conn.execute(TOUCH_KEYS, sorted(used))
        except BaseException as exc:  # failed or cancelled: try again next time
            self._used |= used
            if not isinstance(exc, Exception):
                raise
            log.warning("could not record API key use: %r", exc)


async def create_key(
    conn: asyncpg.Connection,
    name: str,
    *,
    roles: Sequence[str] = (),
    permissions: Sequence[str] = (),
    tenant_id: int | None = None,
    expires_at: dt.datetime | None = None,
) -> str:
    """Store a new key and return it (the only time it is ever shown)."""
    key, prefix = new_key()
    try:
        await conn.fetchval(
            INSERT_KEY,
            name,
            prefix,
            hash_key(key),
            list(roles),
            list(permissions),
            tenant_id,
            expires_at,
        )
    except asyncpg.UniqueViolationError:
        raise KeyError_(f"a key named {name!r} exists already") from None
    except asyncpg.CheckViolationError:
        raise KeyError_("a key name may use letters, digits and . _ : - only") from None
    return key


async def list_keys(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(LIST_KEYS)


async def revoke_key(conn: asyncpg.Connection, name: str) -> None:
    status = await conn.execute(REVOKE_KEY, name)
    if status.endswith(" 0"):
        raise KeyError_(f"no active key named {name!r}")


async def _why_not(conn: asyncpg.Connection, name: str) -> asyncpg.Record:
    """The key row's state, once an UPDATE/DELETE guarded on it matched nothing."""
    row = await conn.fetchrow(KEY_STATE, name)
    if row is None:
        raise KeyError_(f"no key named {name!r}")
    return row


async def rotate_key(conn: asyncpg.Connection, name: str) -> str:
    """Give key ``name`` a new secret and return it (shown only this once).

    The row keeps its name, roles, permissions, tenant and expiry; the old key
    stops working in every engine process at once (the update sends
    ``NOTIFY engine_keys``). A revoked, expired or unknown key is refused.
    """
    for _ in range(3):  # a new prefix clashing with another key's is all but impossible
        key, prefix = new_key()
        try:
            status = await conn.execute(ROTATE_KEY, name, prefix, hash_key(key))
        except asyncpg.UniqueViolationError:
            continue
        if not status.endswith(" 0"):
            return key
        row = await _why_not(conn, name)
        if row["revoked_at"] is not None:
            raise KeyError_(
                f"key {name!r} was revoked at {row['revoked_at'].isoformat(timespec='seconds')}: "
                "a revoked key cannot be rotated; create a new one"
            )
        if row["expires_at"] is not None and row["expires_at"] <= dt.datetime.now(dt.UTC):
            raise KeyError_(
                f"key {name!r} expired at {row['expires_at'].isoformat(timespec='seconds')}: "
                "an expired key cannot be rotated; create a new one"
            )
        # changed between our UPDATE and SELECT (revoked and restored by hand?): try again
    raise KeyError_(f"could not rotate key {name!r} (it kept changing meanwhile); try again")


async def delete_key(conn: asyncpg.Connection, name: str) -> None:
    """Delete key ``name``, which must be revoked or expired (an active key is refused)."""
    status = await conn.execute(DELETE_KEY, name)
    if status.endswith(" 0"):
        await _why_not(conn, name)
        raise KeyError_(
            f"key {name!r} is active: revoke it first "
            f"(python -m engine keys revoke {name}), then delete it"
        )
