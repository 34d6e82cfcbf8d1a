"""The route table: (method, path) -> the one thing that answers it (pure: no I/O).

A route's owner is either a compiled endpoint or :data:`UNAVAILABLE` (the
owning row cannot serve: the route answers 503, never another row's answer,
never a 404 that reads as "no such API"). Literal paths are found by dict,
the rest by regexes ordered from the most to the least specific.

Which regexes a path is tried against comes from a tree of its segments: a literal
segment of a template is a dict key, any segment with a parameter one wildcard edge,
so a request is tried only against the templates with its number of segments and its
literal segments (and those with a ``{x:path}`` parameter, which can span segments).
With 10,000 rows that is one or two regexes, not 2,000 (180 us a request, and as much
for any unknown path). The order of those tried is the scan's: the same answer.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from engine.errors import SpecError
from engine.spec import path_regex, path_specificity


class _Unavailable:
    def __repr__(self) -> str:
        return "UNAVAILABLE"


UNAVAILABLE: Final = _Unavailable()


@functools.lru_cache(maxsize=65536)  # every load asks it of every row
def route_key(method: str, path: str) -> tuple[str, str]:
    """What makes two rows clash: the method and the path with parameter names and a
    trailing slash ignored (``/a/{id}/`` and ``/a/{x}`` are one route)."""
    segments = [
        "{}" if seg.startswith("{") and seg.endswith("}") else seg
        for seg in path.strip("/").split("/")
    ]
    return (method.upper(), "/" + "/".join(segments))


@dataclass
class _Route:
    path: str
    regex: Any
    methods: dict[str, int] = field(default_factory=dict)  # method -> the owner's slot
    specificity: tuple[int, ...] = ()
    order: int = 0  # its place in the scan: most specific first


class _Node:
    """Templates by segment: ``literal`` by the segment's text, ``param`` for a segment
    with a parameter in it (its regex decides), ``routes`` those ending here."""

    __slots__ = ("literal", "param", "routes")

    def __init__(self) -> None:
        self.literal: dict[str, _Node] = {}
        self.param: _Node | None = None
        self.routes: list[_Route] = []

    def add(self, route: _Route) -> None:
        node = self
        for segment in route.path.split("/"):
            if "{" in segment:
                node.param = node.param or _Node()
                node = node.param
            else:
                node = node.literal.setdefault(segment, _Node())
        node.routes.append(route)  # added in scan order: each list stays ordered

    def ends(self, segments: list[str], start: int = 0) -> list[_Node]:
        """The nodes ``segments[start:]`` lead to, by a literal and the wildcard edge both."""
        node = self
        for n in range(start, len(segments)):
            child = node.literal.get(segments[n])
            param = node.param
            if child is not None and param is not None:  # two ways on
                return child.ends(segments, n + 1) + param.ends(segments, n + 1)
            node = child or param  # type: ignore[assignment]
            if node is None:
                return []
        return [node]


@dataclass(slots=True)  # made per request: frozen fields cost an object.__setattr__ each
class Match:
    """``endpoint`` is a compiled endpoint, :data:`UNAVAILABLE`, or None (see ``allowed``)."""

    endpoint: Any
    path_params: Mapping[str, str]
    allowed: tuple[str, ...] = ()
    route: str | None = None  # the path template matched (for figures and logs)


def _specificity(route: _Route) -> tuple[int, ...]:
    return route.specificity


def _order(route: _Route) -> int:
    return route.order


class RouteTable:
    """Path + method -> owner. Entries are (method, path, owner).

    ``previous``: the table this one replaces, whose compiled path regexes are reused
    (a reload of thousands of routes compiles only the paths that are new).
    """

    def __init__(
        self, entries: Iterable[tuple[str, str, Any]], previous: RouteTable | None = None
    ) -> None:
        for _ in self._build(entries, previous, 0):
            pass

    @classmethod
    def in_steps(
        cls,
        entries: Iterable[tuple[str, str, Any]],
        previous: RouteTable | None = None,
        every: int = 500,
    ) -> Generator[None, None, RouteTable]:
        """The same table built ``every`` entries at a time: a generator whose value is
        the table, so a caller on an event loop can let other work run between steps."""
        table = cls.__new__(cls)
        yield from table._build(entries, previous, every)
        return table

    def _build(
        self, entries: Iterable[tuple[str, str, Any]], previous: RouteTable | None, every: int
    ) -> Iterator[None]:
        # a route names its owners by their place among the entries (a slot), so a table
        # whose (method, path) entries are those of ``previous`` in the same order (a reload
        # that changed templates, not routes) keeps its routes and tree and takes the new
        # owners only: no object per route for the collector, nothing for it to free
        shape: list[tuple[str, str]] = previous._shape if previous is not None else []
        owners: list[Any] = []
        pairs: list[tuple[str, str]] | None = None  # set once the entries differ from shape
        for n, (method, path, owner) in enumerate(entries, 1):
            if every and n % every == 0:
                yield
            if pairs is None:
                if n <= len(shape):
                    seen = shape[n - 1]
                    if seen[0] == method and seen[1] == path:
                        owners.append(owner)
                        continue
                pairs = shape[: n - 1]
            pairs.append((method, path))
            owners.append(owner)
        self._owners = owners
        if pairs is None and previous is not None and len(owners) == len(shape):
            self._shape = shape
            self._routes, self._exact = previous._routes, previous._exact
            self._tree, self._spanning = previous._tree, previous._spanning
            return
        if pairs is None:  # fewer entries than before, each as before
            pairs = shape[: len(owners)]
        yield from self._lay_out(pairs, previous, every)

    def _lay_out(
        self, pairs: list[tuple[str, str]], previous: RouteTable | None, every: int
    ) -> Iterator[None]:
        known = previous._routes if previous is not None else {}
        routes: dict[str, _Route] = {}
        exact: dict[str, _Route] = {}
        patterns: list[_Route] = []
        for slot, (method, path) in enumerate(pairs):
            if every and slot and slot % every == 0:
                yield
            route = routes.get(path)
            if route is None:
                old = known.get(path)
                if old is not None:
                    route = _Route(path, old.regex, specificity=old.specificity)
                else:
                    try:
                        regex = path_regex(path)
                    except (SpecError, KeyError, ValueError, re.error):  # no request reaches it
                        continue
                    route = _Route(path, regex, specificity=path_specificity(path))
                routes[path] = route
                if "{" in path:
                    patterns.append(route)
                else:
                    exact[path] = route
            route.methods[method] = slot
        if every:
            yield  # the sort, then the tree, each a step of its own
        patterns.sort(key=_specificity)  # stable: equally specific routes keep their order
        tree = _Node()
        spanning: list[_Route] = []  # a {x:path} parameter matches across segments
        for order, route in enumerate(patterns):
            if every and order and order % every == 0:
                yield  # the tree too is built in steps: a reload does not stall requests
            route.order = order
            if ":path}" in route.path:
                spanning.append(route)
            else:
                tree.add(route)
        self._shape = pairs
        self._routes = routes
        self._exact = exact
        self._tree = tree
        self._spanning = spanning

    def candidates(self, path: str) -> list[_Route]:
        """The parameterised routes that could match ``path``, in the scan's order."""
        ends = self._tree.ends(path.split("/"))
        if len(ends) == 1 and not self._spanning:
            return ends[0].routes
        found = [route for node in ends for route in node.routes]
        found += self._spanning
        found.sort(key=_order)
        return found

    def match(self, path: str, method: str) -> Match | None:
        if method == "HEAD":
            method = "GET"
        allowed: set[str] = set()
        first: str | None = None  # the most specific route at the path, for a 405
        route = self._exact.get(path)
        if route is not None:
            slot = route.methods.get(method)
            if slot is not None:
                return Match(self._owners[slot], {}, route=route.path)
            allowed.update(route.methods)
            first = route.path
        for route in self.candidates(path):
            m = route.regex.match(path)
            if m is None:
                continue
            slot = route.methods.get(method)
            if slot is not None:
                return Match(self._owners[slot], m.groupdict(), route=route.path)
            allowed.update(route.methods)
            first = first or route.path
        if allowed:
            return Match(None, {}, tuple(sorted(allowed)), route=first)
        return None
