"""The route table: (method, path) -> the one thing that answers it (pure: no I/O).

A route's owner is either a compiled endpoint or :data:`UNAVAILABLE` (the
owning row cannot serve: the route answers 503, never another row's answer,
never a 404 that reads as "no such API"). Literal paths are found by dict,
the rest by regexes ordered from the most to the least specific.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from engine.errors import SpecError
from engine.spec import path_regex, path_specificity


class _Unavailable:
    def __repr__(self) -> str:
        return "UNAVAILABLE"


UNAVAILABLE: Final = _Unavailable()


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
    methods: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Match:
    """``endpoint`` is a compiled endpoint, :data:`UNAVAILABLE`, or None (see ``allowed``)."""

    endpoint: Any
    path_params: Mapping[str, str]
    allowed: tuple[str, ...] = ()
    route: str | None = None  # the path template matched (for figures and logs)


class RouteTable:
    """Path + method -> owner. Entries are (method, path, owner)."""

    def __init__(self, entries: Iterable[tuple[str, str, Any]]) -> None:
        routes: dict[str, _Route] = {}
        for method, path, owner in entries:
            route = routes.get(path)
            if route is None:
                try:
                    regex = path_regex(path)
                except (SpecError, KeyError, ValueError, re.error):  # a path no request can reach
                    continue
                route = routes[path] = _Route(path, regex)
            route.methods[method] = owner
        self._exact = {p: r for p, r in routes.items() if "{" not in p}
        self._patterns = sorted(
            (r for p, r in routes.items() if "{" in p), key=lambda r: path_specificity(r.path)
        )

    def match(self, path: str, method: str) -> Match | None:
        if method == "HEAD":
            method = "GET"
        allowed: set[str] = set()
        first: str | None = None  # the most specific route at the path, for a 405
        route = self._exact.get(path)
        if route is not None:
            owner = route.methods.get(method)
            if owner is not None:
                return Match(owner, {}, route=route.path)
            allowed.update(route.methods)
            first = route.path
        for route in self._patterns:
            m = route.regex.match(path)
            if m is None:
                continue
            owner = route.methods.get(method)
            if owner is not None:
                return Match(owner, m.groupdict(), route=route.path)
            allowed.update(route.methods)
            first = first or route.path
        if allowed:
            return Match(None, {}, tuple(sorted(allowed)), route=first)
        return None
