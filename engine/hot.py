"""The cache keys of request lines already answered from the response cache.

A cached read whose answer depends on nothing but its path and query string (a public
GET row, its values from the path, the query or constants; no rate limit, no page
links) reaches the same cache key every time the same request line comes without
credentials. The first answer records ``(path, query) -> (endpoint, key)`` here; the
next identical request skips routing, binding, validation and key encoding and asks
the response cache (engine/cache.py) for that key at once. The answer still comes
from the one cache, so its TTL, invalidations and byte bound hold as before, and
anything not cached (expired, invalidated, evicted) takes the whole request flow.

One memo per catalogue generation (engine/catalog.py): a reload starts an empty one,
so a changed row is never answered through a key of its old version. A request with
credentials, a client request id, a trace or a conditional header never takes it: the
whole flow answers those (a bad token is a 401 even on a public row).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.compiler import CompiledEndpoint

MAX_ENTRIES = 10_000  # past it the memo starts again, empty: bounded, and no LRU to keep
MAX_LINE = 512  # longer paths and queries are not recorded (the memo's bytes stay bounded)
# headers that change the answer, or its X-Request-ID, before the cache look-up
_PERSONAL = frozenset(
    {b"authorization", b"x-api-key", b"x-request-id", b"traceparent", b"if-none-match"}
)
_PLAIN_SOURCES = frozenset({"path", "query", "const"})


@dataclass(frozen=True, slots=True)
class HotKey:
    """What the whole flow found for a request line: the row, its route, the cache key."""

    endpoint: CompiledEndpoint
    route: str
    key: Any
    cache_control: str


def plain(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """No header the answer or its request id depends on (names are lower case in ASGI)."""
    return all(name not in _PERSONAL for name, _ in headers)


def memoable(ep: CompiledEndpoint) -> bool:
    """A row whose cache key follows from the path and the query string alone."""
    spec = ep.spec
    return (
        spec.method == "GET"
        and ep.cacheable
        and not spec.requires_auth
        and not spec.required_roles
        and not spec.required_permissions
        and not spec.rate_limit_per_minute
        and ep.page_sql is None
        and ep.bulk is None
        and not ep.needs_body
        and spec.result.shape != "stream"
        and all(p.source in _PLAIN_SOURCES for p in spec.params)
    )


class HotKeys:
    """``(path, query string) -> HotKey`` of one catalogue generation."""

    __slots__ = ("_admitted", "_keys")

    def __init__(self) -> None:
        self._keys: dict[tuple[str, bytes], HotKey] = {}
        self._admitted: dict[tuple[int, int], bool] = {}  # (row id, version) -> memoable()

    def admits(self, ep: CompiledEndpoint) -> bool:
        """:func:`memoable`, decided once per row of this generation."""
        row = (ep.spec.id, ep.spec.version)
        admitted = self._admitted.get(row)
        if admitted is None:
            admitted = self._admitted[row] = memoable(ep)
        return admitted

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, path: str, query: bytes) -> HotKey | None:
        return self._keys.get((path, query))

    def record(self, path: str, query: bytes, hot: HotKey) -> None:
        if len(path) + len(query) > MAX_LINE:
            return
        if len(self._keys) >= MAX_ENTRIES:
            self._keys.clear()
        self._keys[(path, query)] = hot
