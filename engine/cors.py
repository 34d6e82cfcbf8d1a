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
from urllib.parse import urlsplit

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
    "Idempotent-Replayed",
)

MethodsFor = Callable[[str], "tuple[Sequence[str], Sequence[str]] | None"]
"""path -> (methods it answers, extra request headers its routes read), or None if unknown."""


# the engine's operator paths: never readable by a page on another origin
NO_CORS_PREFIXES = ("/metrics", "/_engine/", "/health/")
# answer headers a page may read without being exposed (Fetch: CORS-safelisted), and
# the ones that make no sense to expose
_NOT_EXPOSED = frozenset(
    (
        b"cache-control",
        b"content-language",
        b"content-length",
        b"content-type",
        b"expires",
        b"last-modified",
        b"pragma",
        b"vary",
        b"date",
        b"server",
        b"set-cookie",
    )
)
_STATIC_EXPOSED = frozenset(h.lower().encode() for h in EXPOSE_HEADERS)


@dataclass(frozen=True)
class CorsPolicy:
    origins: frozenset[str]  # lower-case scheme://host[:port]
    any_origin: bool
    max_age_s: int

    @classmethod
    def parse(cls, raw: str | None, max_age_s: int) -> CorsPolicy | None:
        """``ENGINE_CORS_ORIGINS``: comma-separated origins or ``*``; None when unset."""
        if raw is None or not raw.strip():
            return None
        origins: set[str] = set()
        any_origin = False
        bad: list[str] = []
        for item in (o.strip() for o in raw.split(",")):
            if not item:
                continue
            if item == "*":
                any_origin = True
                continue
            parts = urlsplit(item.lower())
            if (
                parts.scheme not in ("http", "https")
                or not parts.hostname
                or parts.path not in ("", "/")
                or parts.query
                or parts.fragment
                or parts.username
            ):
                bad.append(item)
                continue
            origins.add(f"{parts.scheme}://{parts.netloc}")
        if bad:
            raise ValueError(
                f"ENGINE_CORS_ORIGINS: {', '.join(sorted(bad))} is not an origin "
                "(http(s)://host[:port], no path) nor *"
            )
        return cls(frozenset(origins), any_origin, max_age_s)

    @property
    def varies(self) -> bool:
        """Whether answers depend on the Origin (explicit origins are echoed back)."""
        return bool(self.origins)

    def allows(self, origin: str) -> bool:
        return self.any_origin or origin in self.origins

    def origin_headers(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        """The CORS headers of an answer to ``origin`` (none when it is not allowed)."""
        if origin is not None and origin in self.origins:
            return [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-credentials", b"true"),
            ]
        if self.any_origin:
            return [(b"access-control-allow-origin", b"*")]
        return []


class Cors:
    """ASGI middleware: OPTIONS for every path, CORS headers when configured."""

    def __init__(self, app: ASGIApp, policy: CorsPolicy | None, methods_for: MethodsFor) -> None:
        self.app = app
        self.policy = policy
        self.methods_for = methods_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await self._options(scope, receive, send)
            return
        policy = self.policy
        if policy is None or scope["path"].startswith(NO_CORS_PREFIXES):
            await self.app(scope, receive, send)
            return
        extra = policy.origin_headers(_origin(scope))
        varies = policy.varies
        if not extra and not varies:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if varies:  # caches must keep one answer per Origin
                    headers = _vary_origin(headers)
                if extra:
                    headers += [*extra, _expose(headers)]
                message = {**message, "headers": headers}
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
        if policy is not None and not path.startswith(NO_CORS_PREFIXES):
            if policy.varies:
                headers.append((b"vary", b"Origin"))
            allowed = policy.origin_headers(origin) if origin is not None else []
            headers += allowed
            if allowed and Headers(scope=scope).get("access-control-request-method"):
                headers += [  # a preflight
                    (b"access-control-allow-methods", allow),
                    (b"access-control-allow-headers", _allow_headers(route_headers)),
                    (b"access-control-max-age", str(policy.max_age_s).encode()),
                ]
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
            return value.decode("latin-1").lower()
    return None


def _vary_origin(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` with Origin added to their Vary (one header, merged)."""
    for i, (name, value) in enumerate(headers):
        if name.lower() == b"vary":
            if b"origin" not in value.lower():
                headers[i] = (name, value + b", Origin")
            return headers
    return [*headers, (b"vary", b"Origin")]


def _expose(headers: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
    """Access-Control-Expose-Headers: the engine's headers and any other this answer has
    (a response template's own, Idempotent-Replayed...)."""
    names = list(EXPOSE_HEADERS)
    for name, _ in headers:
        low = name.lower()
        if low in _NOT_EXPOSED or low in _STATIC_EXPOSED or low.startswith(b"access-control-"):
            continue
        names.append(name.decode("latin-1"))
    return (b"access-control-expose-headers", ", ".join(dict.fromkeys(names)).encode())


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
