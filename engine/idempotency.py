"""``Idempotency-Key`` for writes: a retry gets the first answer again, never a second write.

The semantics of the IETF httpapi draft "The Idempotency-Key HTTP Header
Field": a non-GET request carrying the header stores its answer in the *same
transaction* as its write, keyed by the caller (an authenticated one: an address is shared), the endpoint
and the key, for
``ENGINE_IDEMPOTENCY_TTL_S``. Then:

- the same key with the same request (method, path, query, body, and every value
  bound from it, headers and claims included) replays the
  stored status, headers and body with ``Idempotent-Replayed: true``, without
  running the statement;
- the same key with another request is 422 ``IDEMPOTENCY_KEY_REUSED``;
- a retry while the first is still running is 409 ``IDEMPOTENCY_KEY_IN_USE``
  (a transaction-scoped advisory lock, so this holds across processes).

Only answers that committed are stored; a failed write can be retried with the
same key. :func:`purge_expired` is run periodically by the app.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from engine.errors import ApiError
from engine.jobs import Periodic
from engine.shaping import Rendered

log = logging.getLogger("engine.idempotency")

IDEMPOTENCY_HEADER = "idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"
PURGE_INTERVAL_S = 600.0
_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # visible ASCII, as an sf-string allows

# the lock first, in a statement of its own: the lookup's snapshot must be taken after the
# lock is held, or it could miss the answer of the request that held it just before
LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended($1 || chr(31) || $2::int::text || chr(31) || $3, 7))"
LOOKUP = """
SELECT request_fingerprint, status, headers, body, empty
FROM engine_idempotency_keys
WHERE principal = $1 AND endpoint_mapping_id = $2 AND idempotency_key = $3 AND expires_at > now()
"""
STORE = """
INSERT INTO engine_idempotency_keys
    (principal, endpoint_mapping_id, idempotency_key, request_fingerprint, status, headers,
     body, empty, expires_at)
VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, now() + make_interval(secs => $9))
ON CONFLICT (principal, endpoint_mapping_id, idempotency_key) DO UPDATE
SET request_fingerprint = EXCLUDED.request_fingerprint, status = EXCLUDED.status,
    headers = EXCLUDED.headers, body = EXCLUDED.body, empty = EXCLUDED.empty,
    created_at = now(), expires_at = EXCLUDED.expires_at
WHERE engine_idempotency_keys.expires_at <= now()  -- never over a live answer
"""
PURGE = "DELETE FROM engine_idempotency_keys WHERE expires_at <= now()"


def request_fingerprint(method: str, path: str, query: str, body: bytes, bound: bytes) -> str:
    """What makes two requests "the same request" for a key (``bound``: the bound values)."""
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query.encode(), body, bound):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


@dataclass(frozen=True)
class IdempotencyGuard:
    """Runs inside a write's transaction (see :func:`engine.database.run_write`)."""

    key: str
    principal: str
    endpoint_id: int
    fingerprint: str
    ttl_s: int

    @classmethod
    def for_request(
        cls, header: str, *, principal: str, endpoint_id: int, fingerprint: str, ttl_s: int
    ) -> IdempotencyGuard:
        key = header.strip()
        if len(key) >= 2 and key[0] == key[-1] == '"':  # an sf-string: "abc"
            key = key[1:-1]
        if not _KEY.fullmatch(key):
            raise ApiError(
                "INVALID_PARAMETER",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
                errors=[{"parameter": "Idempotency-Key", "in": "header", "message": "invalid"}],
            )
        return cls(key, principal, endpoint_id, fingerprint, ttl_s)

    async def before(self, conn: asyncpg.Connection) -> Rendered | None:
        if not await conn.fetchval(LOCK, self.principal, self.endpoint_id, self.key):
            raise ApiError(
                "IDEMPOTENCY_KEY_IN_USE",
                "A request with this Idempotency-Key is still being processed; retry later",
                headers={"Retry-After": "1"},
            )
        row = await conn.fetchrow(LOOKUP, self.principal, self.endpoint_id, self.key)
        if row is None:
            return None
        if row["request_fingerprint"] != self.fingerprint:
            raise ApiError(
                "IDEMPOTENCY_KEY_REUSED",
                "This Idempotency-Key was used for a different request",
            )
        headers = _decode_headers(row["headers"])
        headers[REPLAYED_HEADER] = "true"
        return Rendered(bytes(row["body"]), row["status"], headers, row["empty"], replayed=True)

    async def after(self, conn: asyncpg.Connection, result: Rendered) -> None:
        status = await conn.execute(
            STORE,
            self.principal,
            self.endpoint_id,
            self.key,
            self.fingerprint,
            result.status_code,
            result.headers,  # the pool's jsonb codec encodes it
            result.body,
            result.empty,
            float(self.ttl_s),
        )
        if status.split()[-1] == "0":  # a live answer appeared meanwhile: do not write twice
            raise ApiError(
                "IDEMPOTENCY_KEY_IN_USE",
                "A request with this Idempotency-Key has just been answered; retry to get it",
                headers={"Retry-After": "1"},
            )


def _decode_headers(value: Any) -> dict[str, str]:
    if isinstance(value, str):
        value = orjson.loads(value)
    return {str(k): str(v) for k, v in (value or {}).items()}


async def purge_expired(conn: asyncpg.Connection) -> int:
    """Remove expired keys; how many."""
    status = await conn.execute(PURGE)
    return int(status.split()[-1])


def purge_job(pool: Any) -> Periodic:
    """Remove expired keys every :data:`PURGE_INTERVAL_S`."""

    async def work() -> None:
        async with pool.acquire(timeout=10) as conn:
            purged = await purge_expired(conn)
        if purged:
            log.info("purged %d expired idempotency key(s)", purged)

    return Periodic("idempotency-purge", PURGE_INTERVAL_S, work)
