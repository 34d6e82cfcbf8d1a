"""Pages a consumer can follow: page requests, their links and signed cursors (pure: no I/O).

``result_mapping.paginate`` pages a list in one of two ways:

- offset pages (the default): ``?limit=&offset=``, bounded by ``max_offset``;
- keyset pages (``keyset``: result columns that order the template and are unique
  together): ``?limit=&after=<cursor>``, where the cursor is the keyset values of
  the last row of the page before, so a deep page costs what the first one does.

Every page answers where the next (and, for offsets, the previous and first) page
is, in the body (``pagination.next``/``prev``) and in an RFC 8288 ``Link`` header:
the same path and query string with only ``limit``/``offset``/``after`` changed.

A cursor is opaque to the client: URL-safe base64 of a version byte, an
HMAC-SHA256 tag and the keyset values as text (each bound back as
``$n::text::<column type>``, so every type reads back exactly). The tag covers the
endpoint, the definition of its pages (template, parameters, keyset and column
types) and the values bound from the request, so a cursor altered, or taken from
another endpoint or from a request with other filter values, is 400
``INVALID_CURSOR``. The key is ``ENGINE_CURSOR_SECRET`` or, unset, the database's
own random secret (``engine_secrets``, made by ``sql/011``): every process on one
database accepts the others' cursors.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote
from uuid import UUID

import orjson

from engine.errors import ApiError

CURSOR_VERSION = b"\x01"
MAC_BYTES = 16  # a truncated HMAC-SHA256 tag (128 bits)
MAX_CURSOR_CHARS = 8192
_CURSOR_TEXT = re.compile(r"[A-Za-z0-9_-]+")
_PATH_SAFE = "/%!$&'()*+,;=:@-._~"  # RFC 3986 pchar and "/"; existing escapes are kept

# the database's own cursor secret, made once (sql/011 makes it; this re-makes a deleted one)
CURSOR_SECRET_SQL = """
WITH made AS (
    INSERT INTO engine_secrets (name, value)
    VALUES ('cursor', replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''))
    ON CONFLICT (name) DO NOTHING
    RETURNING value
)
SELECT value FROM made
UNION ALL
SELECT value FROM engine_secrets WHERE name = 'cursor'
LIMIT 1
"""

INVALID_CURSOR_DETAIL = (
    "The cursor in 'after' is not valid here: it was altered, or it was issued for another "
    "endpoint, for other filter values or for an earlier definition of this endpoint. "
    "Start again from the first page (without 'after')"
)


async def load_cursor_secret(conn: Any) -> bytes:
    """The database's cursor secret (``conn``: a connection or pool of the primary)."""
    value = await conn.fetchval(CURSOR_SECRET_SQL)
    if value is None:  # another process made it a moment ago, after our snapshot
        value = await conn.fetchval(CURSOR_SECRET_SQL)
    if not value:
        raise RuntimeError("engine_secrets has no 'cursor' secret and none could be made")
    return str(value).encode()


def cursor_key(secret: bytes) -> bytes:
    """The HMAC key of cursors, derived from a secret (never the secret itself)."""
    return hmac.new(secret, b"engine cursor key v1", hashlib.sha256).digest()


def cursor_text(value: Any) -> str:
    """A keyset value as PostgreSQL reads it back (``'...'::text::<its type>``)."""
    if isinstance(value, str):  # text, enums, and what the codecs answer as text
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)  # the shortest text that reads back as the same float
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"a {type(value).__name__} cannot be a keyset value")


class Cursors:
    """Signs and checks the cursors of one endpoint for one request's bound values."""

    def __init__(self, key: bytes, endpoint_id: int, scope: str, bound: bytes) -> None:
        self._key = key
        digest = hashlib.sha256(bound).hexdigest()
        self._scope = orjson.dumps(["cursor", endpoint_id, scope, digest]) + b"\n"

    def _tag(self, payload: bytes) -> bytes:
        return hmac.new(self._key, self._scope + payload, hashlib.sha256).digest()[:MAC_BYTES]

    def sign(self, values: Sequence[str]) -> str:
        payload = CURSOR_VERSION + orjson.dumps(list(values))
        blob = payload[:1] + self._tag(payload) + payload[1:]
        token = base64.urlsafe_b64encode(blob).rstrip(b"=").decode()
        if len(token) > MAX_CURSOR_CHARS:  # it could not be sent back: never hand it out
            raise ApiError(
                "TEMPLATE_ERROR",
                "This endpoint's keyset values are too long to page past",
                internal=f"a keyset cursor of {len(token)} characters (at most "
                f"{MAX_CURSOR_CHARS}): page by shorter columns",
            )
        return token

    def verify(self, token: str, width: int) -> tuple[str, ...]:
        """The keyset values of a cursor this endpoint issued for these bound values."""
        if not (0 < len(token) <= MAX_CURSOR_CHARS and _CURSOR_TEXT.fullmatch(token)):
            raise invalid_cursor()
        try:
            blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise invalid_cursor() from None
        if len(blob) <= 1 + MAC_BYTES or blob[:1] != CURSOR_VERSION:
            raise invalid_cursor()
        if base64.urlsafe_b64encode(blob).rstrip(b"=").decode() != token:
            raise invalid_cursor()  # one spelling only: no unused bits in the last character
        tag, payload = blob[1 : 1 + MAC_BYTES], blob[:1] + blob[1 + MAC_BYTES :]
        if not hmac.compare_digest(tag, self._tag(payload)):
            raise invalid_cursor()
        try:
            values = orjson.loads(payload[1:])
        except orjson.JSONDecodeError:
            raise invalid_cursor() from None
        if not (
            isinstance(values, list)
            and len(values) == width
            and all(isinstance(v, str) for v in values)
        ):
            raise invalid_cursor()
        return tuple(values)


def invalid_cursor() -> ApiError:
    return ApiError(
        "INVALID_CURSOR",
        INVALID_CURSOR_DETAIL,
        errors=[{"parameter": "after", "in": "query", "message": "after is not a valid cursor"}],
    )


def request_path(raw_path: bytes | None, path: str) -> str:
    """The request's path as sent (percent-encoded), for links back to the same route."""
    text = raw_path.decode("latin-1") if raw_path else path
    return quote(text, safe=_PATH_SAFE, encoding="utf-8")


@dataclass(frozen=True)
class PageUrl:
    """The request's path and query items, in order: links change only paging parameters."""

    path: str
    query: tuple[tuple[str, str], ...] = ()

    def link(self, **changes: str | None) -> str:
        """The same URL with ``changes`` (None: removed) in place, new ones at the end."""
        items: list[tuple[str, str]] = []
        placed: set[str] = set()
        for name, value in self.query:
            if name in changes:
                if name in placed:
                    continue
                placed.add(name)
                new = changes[name]
                if new is None:
                    continue
                value = new
            items.append((name, value))
        items.extend(
            (name, value)
            for name, value in changes.items()
            if name not in placed and value is not None
        )
        if not items:
            return self.path
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in items)
        return f"{self.path}?{query}"


def link_header(links: Iterable[tuple[str, str | None]]) -> str | None:
    """An RFC 8288 ``Link`` value from (relation, URL) pairs; None URLs are left out."""
    parts = [f'<{url}>; rel="{rel}"' for rel, url in links if url is not None]
    return ", ".join(parts) or None


def prefers_exact_count(headers: Iterable[str]) -> bool:
    """Whether ``Prefer`` headers (RFC 7240) ask for ``count=exact``."""
    for header in headers:
        for preference in header.split(","):
            token = preference.split(";", 1)[0]
            name, _, value = token.partition("=")
            if name.strip().lower() == "count" and value.strip().strip('"').lower() == "exact":
                return True
    return False


@dataclass(frozen=True)
class PageRequest:
    """One request's page: what to fetch, and how to say where the other pages are."""

    limit: int
    url: PageUrl
    offset: int = 0  # offset pages
    max_offset: int = 10_000
    keyset: tuple[str, ...] = ()  # keyset pages: the columns a cursor holds
    after: tuple[str, ...] | None = None  # the keyset values of the cursor given
    cursors: Cursors | None = None
    counted: bool = False  # run the count: pagination.total
    count_mode: str = "none"
    asked_count: bool = False  # the client sent Prefer: count=exact

    @property
    def args(self) -> tuple[Any, ...]:
        """Values appended after the template's own: one more row than the page shows."""
        if not self.keyset:
            return (self.limit + 1, self.offset)
        return (*(self.after or ()), self.limit + 1)

    @property
    def cache_key(self) -> tuple[Any, ...]:
        """What the answer depends on besides the bound values: its links and its count."""
        return (self.counted, self.url.path, self.url.query)

    def describe(
        self, rows: Sequence[Mapping[str, Any]], *, total: int | None = None
    ) -> tuple[dict[str, Any], tuple[tuple[str, str], ...]]:
        """The ``pagination`` object and the headers of a page fetched as ``rows``
        (one row more than the page when there is a next page)."""
        has_more = len(rows) > self.limit
        count = min(len(rows), self.limit)
        if self.keyset:
            info, links = self._keyset(rows, count, has_more)
        else:
            info, links = self._offset(count, has_more)
        if total is not None:
            info["total"] = total
        headers: list[tuple[str, str]] = []
        link = link_header(links)
        if link:
            headers.append(("Link", link))
        if self.count_mode == "on_request":
            headers.append(("Vary", "Prefer"))
            if self.asked_count and total is not None:
                headers.append(("Preference-Applied", "count=exact"))
        return info, tuple(headers)

    def _offset(
        self, count: int, has_more: bool
    ) -> tuple[dict[str, Any], list[tuple[str, str | None]]]:
        following = self.offset + self.limit
        # past max_offset the next page cannot be asked for by offset (that needs keyset)
        reachable = has_more and following <= self.max_offset
        next_url = self.url.link(offset=str(following)) if reachable else None
        prev_url = None
        if self.offset > 0:
            prev_url = self.url.link(offset=str(max(0, self.offset - self.limit)))
        info = {
            "limit": self.limit,
            "offset": self.offset,
            "count": count,
            "has_more": has_more,
            "next_offset": following if reachable else None,
            "next": next_url,
            "prev": prev_url,
        }
        links = [("next", next_url), ("prev", prev_url), ("first", self.url.link(offset="0"))]
        return info, links

    def _keyset(
        self, rows: Sequence[Mapping[str, Any]], count: int, has_more: bool
    ) -> tuple[dict[str, Any], list[tuple[str, str | None]]]:
        for row in rows:
            for column in self.keyset:
                if row[column] is None:
                    raise ApiError(
                        "TEMPLATE_ERROR",
                        "This endpoint's keyset pagination met a NULL it cannot page past",
                        internal=(
                            f"keyset column '{column}' is NULL in a row: keyset columns must "
                            "never be NULL (coalesce it in the template, or page by NOT NULL "
                            "columns)"
                        ),
                    )
        cursor = next_url = None
        if has_more:
            assert self.cursors is not None
            last = rows[count - 1]
            if all(last[c] == rows[count][c] for c in self.keyset):
                # the next page would start after these values and skip the tied rows
                raise ApiError(
                    "TEMPLATE_ERROR",
                    "This endpoint's keyset pagination met two rows it cannot tell apart",
                    internal=(
                        f"keyset {', '.join(self.keyset)} is not unique: two rows share "
                        "its values at a page boundary, so the rows after the first would be "
                        "skipped; end the keyset with a unique column (the primary key)"
                    ),
                )
            cursor = self.cursors.sign([cursor_text(last[c]) for c in self.keyset])
            next_url = self.url.link(after=cursor)
        info = {
            "limit": self.limit,
            "count": count,
            "has_more": has_more,
            "next": next_url,
            "next_cursor": cursor,
        }
        return info, [("next", next_url), ("first", self.url.link(after=None))]


_DIGITS = re.compile(r"[0-9]{1,19}")


def page_request(
    paginate: Any,
    query: Any,
    prefer: Iterable[str],
    path: str,
    cursors: Cursors | None,
) -> PageRequest:
    """The page a request asks for, from its query (``limit``, ``offset`` or ``after``),
    its ``Prefer`` headers and its path; 400 ``INVALID_PARAMETER`` / ``INVALID_CURSOR``.

    ``paginate`` is the row's ``result_mapping.paginate``; ``query`` the request's
    query parameters (``get``, ``getlist``, ``multi_items``); ``cursors`` signs and
    checks this request's cursors on a keyset endpoint.
    """
    errors = []
    limit, offset = paginate.limit, 0
    for name in paginate.params:
        given = len(query.getlist(name))
        if given > 1:  # never silently the last one
            errors.append(
                {
                    "parameter": name,
                    "in": "query",
                    "message": f"{name} must be given once, not {given} times",
                }
            )
    raw_limit = query.get("limit")
    raw_offset = query.get("offset")
    if raw_limit is not None:
        if _DIGITS.fullmatch(raw_limit) and 1 <= int(raw_limit) <= paginate.max_limit:
            limit = int(raw_limit)
        else:
            errors.append(
                {
                    "parameter": "limit",
                    "in": "query",
                    "message": f"limit must be an integer from 1 to {paginate.max_limit}",
                }
            )
    if paginate.keyset and raw_offset is not None:
        errors.append(
            {
                "parameter": "offset",
                "in": "query",
                "message": "this endpoint pages by keyset, not by offset: follow "
                "pagination.next (or the Link rel=next), which carries ?after=<cursor>",
            }
        )
    elif raw_offset is not None:
        if _DIGITS.fullmatch(raw_offset) and int(raw_offset) <= paginate.max_offset:
            offset = int(raw_offset)
        elif _DIGITS.fullmatch(raw_offset):
            errors.append(
                {
                    "parameter": "offset",
                    "in": "query",
                    "message": f"offset may be at most {paginate.max_offset}: deeper pages need "
                    "keyset pagination (result_mapping.paginate.keyset), which pages with "
                    "?after=<cursor> instead of offset",
                }
            )
        else:
            errors.append(
                {
                    "parameter": "offset",
                    "in": "query",
                    "message": "offset must be a non-negative integer",
                }
            )
    if errors:
        raise ApiError("INVALID_PARAMETER", "Invalid pagination parameter(s)", errors=errors)
    asked = paginate.count != "none" and prefers_exact_count(prefer)
    after = None
    if paginate.keyset:
        assert cursors is not None
        raw_after = query.get("after")
        if raw_after is not None:
            after = cursors.verify(raw_after, len(paginate.keyset))
    return PageRequest(
        limit=limit,
        url=PageUrl(path, tuple(query.multi_items())),
        offset=offset,
        max_offset=paginate.max_offset,
        keyset=paginate.keyset,
        after=after,
        cursors=cursors,
        counted=paginate.count == "exact" or asked,
        count_mode=paginate.count,
        asked_count=asked,
    )
