"""``OPTIONS`` and CORS for browser consumers, as one ASGI layer around the engine.

Every ``OPTIONS`` request to a published path is answered here, never by a
route: 204 with ``Allow`` (the methods the path answers, HEAD with GET); a path
where nothing is published gets the engine's usual 404. With ``ENGINE_CORS_ORIGINS`` set, a preflight from an allowed origin
also gets ``Access-Control-Allow-*`` and ``-Max-Age``, and actual requests from
an allowed origin get ``Access-Control-Allow-Origin`` and ``-Expose-Headers``
added to their answer. An origin not allowed gets no CORS header (the browser
then refuses the answer to the page). Credentials are allowed only with an
explicit origin list, never with ``*``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# request headers a browser may send on top of the CORS-safelisted ones
ALLOW_HEADERS = (
    "Authorization",
    "X-API-Key",
    "Idempotency-Key",
    "Content-Type",
    "If-None-Match",
    "Prefer",
    "X-Request-ID",
    "traceparent",
    "Accept-Language",
)
# answer headers of the engine a page may read
EXPOSE_HEADERS = (
    "X-Request-ID",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "Retry-After",
    "ETag",
    "Link",
    "X-Cache",
    "Content-Language",
    "Content-Disposition",
    "Preference-Applied",
    "Location",
)

MethodsFor = Callable[[str], "tuple[Sequence[str], Sequence[str]] | None"]
"""path -> (methods it answers, extra request headers its routes read), or None if unknown."""


@dataclass(frozen=True)
class CorsPolicy:
    origins: frozenset[str]
    any_origin: bool
    max_age_s: int

    @classmethod
    def parse(cls, raw: str | None, max_age_s: int) -> CorsPolicy | None:
        """``ENGINE_CORS_ORIGINS``: comma-separated origins or ``*``; None when unset."""
        if raw is None or not raw.strip():
            return None
        items = {o.strip().rstrip("/") for o in raw.split(",") if o.strip()}
        any_origin = "*" in items
        bad = [o for o in items - {"*"} if "://" not in o]
        if bad:
            raise ValueError(
                f"ENGINE_CORS_ORIGINS: {', '.join(sorted(bad))} is not an origin "
                "(scheme://host[:port]) nor *"
            )
        return cls(frozenset(items - {"*"}), any_origin, max_age_s)

    def allows(self, origin: str) -> bool:
        return self.any_origin or origin in self.origins

    def origin_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        """The headers every answer to an allowed origin carries."""
        if self.any_origin and origin not in self.origins:
            return [(b"access-control-allow-origin", b"*")]
        return [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-credentials", b"true"),
            (b"vary", b"Origin"),
        ]


class Cors:
    """ASGI middleware: OPTIONS for every path, CORS headers when configured."""

    def __init__(self, app: ASGIApp, policy: CorsPolicy | None, methods_for: MethodsFor) -> None:
        self.app = app
        self.policy = policy
        self.methods_for = methods_for
        self._expose = (b"access-control-expose-headers", ", ".join(EXPOSE_HEADERS).encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await self._options(scope, receive, send)
            return
        policy = self.policy
        origin = _origin(scope) if policy is not None else None
        if policy is None or origin is None or not policy.allows(origin):
            await self.app(scope, receive, send)
            return
        extra = [*policy.origin_headers(origin), self._expose]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _options(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        found = self.methods_for(path)
        if found is None:  # the engine's own 404 (coded, with a request id, logged)
            await self.app(scope, receive, send)
            return
        methods, route_headers = found
        allow = ", ".join(methods).encode()
        headers = [(b"allow", allow)]
        policy = self.policy
        origin = _origin(scope) if policy is not None else None
        if policy is not None and origin is not None:
            headers.append((b"vary", b"Origin"))
            if policy.allows(origin):
                asked = Headers(scope=scope).get("access-control-request-method")
                if asked is not None:  # a preflight
                    headers += [
                        *(h for h in policy.origin_headers(origin) if h[0] != b"vary"),
                        (b"access-control-allow-methods", allow),
                        (b"access-control-allow-headers", _allow_headers(route_headers)),
                        (b"access-control-max-age", str(policy.max_age_s).encode()),
                    ]
                else:
                    headers += [h for h in policy.origin_headers(origin) if h[0] != b"vary"]
        await _send(send, 204, headers, b"")


def catalog_methods(catalog: Any, path: str) -> tuple[list[str], list[str]] | None:
    """The methods a catalogue path answers (HEAD with GET, OPTIONS) and the request
    headers its routes bind; None when nothing is published there."""
    match = catalog.match(path, "OPTIONS")
    if match is None:
        return None
    methods = set(match.allowed)
    headers: list[str] = []
    for method in match.allowed:
        found = catalog.match(path, method)
        ep = found.endpoint if found is not None else None
        if ep is not None and hasattr(ep, "spec"):
            headers += [p.name for p in ep.spec.params if p.source == "header"]
    if "GET" in methods:
        methods.add("HEAD")
    methods.add("OPTIONS")
    return sorted(methods), headers


def _origin(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"origin":
            return value.decode("latin-1").rstrip("/")
    return None


def _allow_headers(route_headers: Iterable[str]) -> bytes:
    names = list(ALLOW_HEADERS)
    known = {n.lower() for n in names}
    for name in route_headers:
        if name.lower() not in known:
            known.add(name.lower())
            names.append(name)
    return ", ".join(names).encode()


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    if body:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
