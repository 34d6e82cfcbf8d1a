"""What every one of the engine's own paths answers the same way.

The engine's own paths (``/health/*``, ``/_engine/*``, ``/metrics``, ``/docs``) are
not catalogue routes, yet a client must not tell them apart by their errors:

- :func:`problem`: an :class:`~engine.errors.ApiError` as the engine's
  ``application/problem+json`` (the catalogue's wording of the code when one is
  loaded), with the request's id (:func:`engine.endpoint.request_id_of`: the
  client's ``X-Request-ID``, else its ``traceparent`` trace id, else a new one) in
  the body and the ``X-Request-ID`` header, and the path as ``instance``.
- :func:`own_route`: a route that answers every method itself (405
  ``METHOD_NOT_ALLOWED`` with ``Allow: GET, HEAD`` for all but GET and HEAD), so
  the catalogue's dispatcher never sees one of these paths: an odd method is
  neither a 404 of the catalogue, nor counted as a catalogue request, nor written
  to the error log. ``OPTIONS`` never gets here (``engine.cors`` answers it).
- :func:`bearer_matches`: ``Authorization: Bearer <token>`` checked against a
  configured token, the scheme case-insensitively (RFC 9110, section 11.1), the
  token in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from engine.endpoint import request_id_of
from engine.errors import (
    PROBLEM_CONTENT_TYPE,
    ApiError,
    ErrorCatalog,
    parse_accept_language,
    problem_body,
)
from engine.recovery import with_retry_after
from engine.shaping import encode

ALLOW = "GET, HEAD"
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="engine"'}

Handler = Callable[[Request], Awaitable[Response]]


def problem(request: Request, error: ApiError) -> Response:
    """``error`` as the engine's problem+json answer to ``request`` (bodiless for HEAD)."""
    services = getattr(request.app.state, "services", None)
    errors = services.catalogs.current.errors if services is not None else ErrorCatalog()
    entry = errors.get(error.code)
    request_id = request_id_of(request.headers)
    body, lang = problem_body(
        error,
        entry,
        request_id=request_id,
        instance=request.url.path,
        languages=parse_accept_language(request.headers.get("accept-language")),
    )
    headers = {"X-Request-ID": request_id, "Content-Language": lang, **error.headers}
    with_retry_after(entry.status, headers)  # every 503 and 429 says when to retry
    content = b"" if request.method == "HEAD" else encode(body)
    return Response(
        content, status_code=entry.status, headers=headers, media_type=PROBLEM_CONTENT_TYPE
    )


def method_not_allowed(request: Request) -> Response:
    """405 ``METHOD_NOT_ALLOWED`` for a path that answers GET and HEAD only."""
    error = ApiError(
        "METHOD_NOT_ALLOWED", f"{request.url.path} accepts {ALLOW}", headers={"Allow": ALLOW}
    )
    return problem(request, error)


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header is ``Bearer <token>`` (any case of the scheme)."""
    scheme, _, credential = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credential.strip().encode(), token.encode())


class EveryMethod:
    """An ASGI endpoint, which Starlette routes every method to (a function gets GET/HEAD
    only): GET and HEAD go to ``handler``, any other method is answered 405 here."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if request.method in ("GET", "HEAD"):
            response = await self.handler(request)
        else:
            response = method_not_allowed(request)
        await response(scope, receive, send)


def own_route(path: str, handler: Handler) -> Route:
    """A route of the engine's own: GET and HEAD to ``handler``, 405 for anything else."""
    return Route(path, EveryMethod(handler))
