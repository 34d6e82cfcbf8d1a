"""The request flow of a compiled endpoint: the one place that knows every step.

route -> authenticate -> authorise -> rate limit -> read body -> sanitise ->
validate -> bind -> cache lookup (GET) -> run (read pool for GET, write pool
otherwise, with the row's timeout) -> shape -> envelope -> encode -> store in
cache / invalidate cached reads of written tables. Any failure is an ApiError
answered as ``application/problem+json`` and queued for ``log_api_error()``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson
from starlette.datastructures import Headers, QueryParams
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from engine import bulk
from engine.auth import Authenticator, Principal, authorize
from engine.binding import RequestSource, query_object
from engine.cache import CachedAnswer, ResponseCache, etag_matches, etag_of
from engine.catalog import Catalog, CatalogManager, CompiledEndpoint
from engine.database import (
    RETRY_AFTER_S,
    Database,
    run_page_and_count,
    run_statement,
    run_write,
    translate,
)
from engine.departure import Departure
from engine.errorlog import ErrorEntry, ErrorLogger, safe_body, safe_headers, safe_query
from engine.errors import PROBLEM_CONTENT_TYPE, ApiError, parse_accept_language, problem_body
from engine.hot import HotKey, plain
from engine.idempotency import IDEMPOTENCY_HEADER, IdempotencyGuard, request_fingerprint
from engine.observe import CURRENT, Exchange, Observer, notify, request_id_of
from engine.pagination import (
    Cursors,
    PageRequest,
    cursor_key,
    load_cursor_secret,
    page_request,
    request_path,
)
from engine.ratelimit import Network, RateLimiter, client_address
from engine.recovery import EndpointGates, with_retry_after
from engine.replicas import ReadTarget
from engine.routing import UNAVAILABLE
from engine.settings import Settings
from engine.shaping import Rendered, Shaped, default_page_body, encode
from engine.streaming import StreamAborted, StreamOrigin, Streams, stream_response
from engine.validation import require_object

log = logging.getLogger("engine.endpoint")

JSON = "application/json"
MAX_BODY_DEPTH = 64  # deeper bodies are refused: validating and logging them would recurse


@dataclass
class Services:
    """What the request flow needs, built once by the app's lifespan."""

    settings: Settings
    db: Database
    catalogs: CatalogManager
    authenticator: Authenticator
    errorlog: ErrorLogger
    cache: ResponseCache
    limiter: RateLimiter
    streams: Streams
    trusted_proxies: tuple[Network, ...] = ()
    publish_invalidation: Callable[[Iterable[str]], None] = lambda tables: None
    observers: tuple[Observer, ...] = ()  # told of every answered request (metrics, access log)
    cursor_key: bytes | None = None  # keyset cursors' HMAC key (engine/pagination.py), once read
    gates: EndpointGates = field(default_factory=EndpointGates)  # each row's max_concurrent


_HEADER_NAMES: dict[str, bytes] = {}  # a header name as written -> as sent (lower, bytes)
_HEADER_NAMES_MAX = 1024  # names come from the engine and from rows: bounded all the same


def _header_name(key: str) -> bytes:
    name = key.lower().encode("latin-1")
    if len(_HEADER_NAMES) < _HEADER_NAMES_MAX:
        _HEADER_NAMES[key] = name
    return name


class Reply:
    """An answer written straight to ``send``: Starlette's ``Response`` without its layers
    (the same headers: content-length unless given or bodiless, content-type)."""

    __slots__ = ("body", "headers", "media_type", "status_code")

    def __init__(
        self,
        body: bytes = b"",
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
    ) -> None:
        self.body = body
        self.status_code = status_code
        self.headers = headers or {}
        self.media_type = media_type

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = self.status_code
        raw = []
        length_given = type_given = False
        for key, value in self.headers.items():
            name = _HEADER_NAMES.get(key) or _header_name(key)
            if name == b"content-length":
                length_given = True
            elif name == b"content-type":
                type_given = True
            raw.append((name, value.encode("latin-1")))
        if not length_given and not (status < 200 or status in (204, 304)):
            raw.append((b"content-length", b"%d" % len(self.body)))
        if self.media_type is not None and not type_given:
            raw.append((b"content-type", self.media_type.encode("latin-1")))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": self.body})


# the names the flow asks headers for (a few, all ours) -> their lower-case latin-1 bytes
_HEADER_KEYS: dict[str, bytes] = {}
HEADER_KEYS_MAX = 256


class IndexedHeaders(Headers):
    """Starlette's request ``Headers``, looked up in a dict made at the first look-up (the
    first value of a repeated name, as Starlette's ``get``): each absent header (most of
    those a request is asked for) costs a dict miss, not a scan ending in a KeyError."""

    _index: dict[bytes, bytes] | None = None

    def _made(self) -> dict[bytes, bytes]:
        index = dict(reversed(self._list))  # reversed: the first of a repeated name wins
        self._index = index
        return index

    def get(self, key: str, default: Any = None) -> Any:
        index = self._index if self._index is not None else self._made()
        name = _HEADER_KEYS.get(key)
        if name is None:
            name = key.lower().encode("latin-1")
            if len(_HEADER_KEYS) < HEADER_KEYS_MAX:
                _HEADER_KEYS[key] = name
        value = index.get(name)
        return default if value is None else value.decode("latin-1")

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: Any) -> bool:
        return isinstance(key, str) and self.get(key) is not None


_NO_QUERY = QueryParams()


def query_of(raw: bytes) -> QueryParams:
    """``QueryParams(raw)``, the same pairs in the same order, without ``parse_qsl`` when
    there is nothing to decode (no ``%``, no ``+``): split on ``&`` and the first ``=``,
    empty items skipped, a name without ``=`` an empty value (keep_blank_values)."""
    if not raw:
        return _NO_QUERY
    if raw.find(b"%") >= 0 or raw.find(b"+") >= 0:  # ``b"%" in raw`` makes a TypeError first
        return QueryParams(raw)
    pairs = []
    for item in raw.decode("latin-1").split("&"):
        if item:
            name, _, value = item.partition("=")
            pairs.append((name, value))
    params = QueryParams.__new__(QueryParams)
    params._list = pairs
    params._dict = dict(pairs)  # the last value of a repeated name, as Starlette's
    return params


class Dispatcher:
    """ASGI app serving every path of the live catalogue."""

    def __init__(self, services_getter: Any) -> None:
        self._services = services_getter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services: Services = self._services()
        hot = services.catalogs.current.hot
        if hot and scope["method"] == "GET":  # a request line answered from cache before
            known = hot.get(scope["path"], scope["query_string"])
            if known is not None and plain(scope["headers"]):
                answer = services.cache.lookup(known.endpoint.spec.id, known.key)
                if answer is not None:
                    return await _answer_hot(services, known, answer, scope, receive, send)
        departure = Departure(scope, receive)  # a client that leaves cancels handle()
        request = Request(scope, receive if departure.direct else departure.receive)
        request._query_params = query_of(scope["query_string"])  # as Starlette's, faster
        request._headers = headers = IndexedHeaders(scope=scope)
        exchange = Exchange(
            request_id_of(headers), scope["method"], scope["path"], time.perf_counter()
        )
        token = CURRENT.set(exchange)  # statements add their time to it
        try:
            try:
                response = await handle(services, request, exchange)
            finally:
                departure.stop()
            exchange.status = response.status_code
            if isinstance(response, StreamingResponse):
                await response(scope, *_watched(exchange, receive, send))
            else:
                await response(scope, receive, send)
        except StreamAborted:  # the export failed after it started: a failure, not a 200
            exchange.status = 500
            raise
        except asyncio.CancelledError:
            exchange.abandoned = True
            if departure.absorb():  # the client left: statement cancelled, nobody to answer
                return
            raise  # cancelled by someone else (a shutdown): go on being cancelled
        except BaseException:  # the answer could not be sent (the socket closed meanwhile)
            exchange.abandoned = True
            raise
        finally:
            CURRENT.reset(token)
            exchange.duration_s = time.perf_counter() - exchange.started
            notify(services.observers, exchange)


async def _answer_hot(
    services: Services,
    known: HotKey,
    answer: CachedAnswer,
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """The cached answer of a request line seen before (engine/hot.py): what ``_cached``
    answers a hit, headers in the same order, observed as every request is."""
    exchange = Exchange(request_id_of(_NO_HEADERS), "GET", scope["path"], time.perf_counter())
    exchange.route = known.route
    exchange.endpoint_id = known.endpoint.spec.id
    exchange.cache = "HIT"
    exchange.status = answer.status
    headers = {
        "X-Request-ID": exchange.request_id,
        "X-Cache": "HIT",
        "ETag": answer.etag,
        "Cache-Control": known.cache_control,
    }
    headers.update(answer.headers)
    reply = Reply(answer.body, answer.status, headers, answer.media_type)
    try:
        await reply(scope, receive, send)
    except BaseException:  # the answer could not be sent (the socket closed meanwhile)
        exchange.abandoned = True
        raise
    finally:
        exchange.duration_s = time.perf_counter() - exchange.started
        notify(services.observers, exchange)


_NO_HEADERS: Mapping[str, str] = {}


def _watched(exchange: Exchange, receive: Receive, send: Send) -> tuple[Receive, Send]:
    """``receive`` and ``send`` of a stream, marking the exchange abandoned when the client
    disconnects before the last chunk went out (Starlette listens for it while streaming)."""
    done = False

    async def watched_receive() -> Message:
        message = await receive()
        if message["type"] == "http.disconnect" and not done:
            exchange.abandoned = True
        return message

    async def watched_send(message: Message) -> None:
        nonlocal done
        await send(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            done = True

    return watched_receive, watched_send


async def handle(services: Services, request: Request, exchange: Exchange) -> Reply | Response:
    started = exchange.started
    request_id = exchange.request_id
    catalog = services.catalogs.current  # this request finishes on this generation
    method = request.scope["method"]  # Request.method: a property and a typing.cast call
    path = request.scope["path"]  # decoded as sent: url.path re-escapes ?, # and \
    ep: CompiledEndpoint | None = None
    principal: Principal | None = None
    state: dict[str, Any] = {"headers": {"X-Request-ID": request_id}}
    try:
        match = catalog.match(path, method)
        if match is None:  # anyone can send these: limited per address, body without the path
            address = _caller(services, request, None).removeprefix("ip:")
            wait = services.errorlog.unknown_paths.hit(address)
            if wait is not None:
                raise ApiError(
                    "RATE_LIMIT_EXCEEDED",
                    f"Too many requests for unknown paths; retry in {wait} s",
                    headers={"Retry-After": str(wait)},
                )
            raise ApiError("ROUTE_NOT_FOUND", "No endpoint is published at this path")
        exchange.route = match.route
        if match.endpoint is None:
            raise ApiError(
                "METHOD_NOT_ALLOWED",
                f"{path} accepts {', '.join(match.allowed)}",
                headers={"Allow": ", ".join(match.allowed)},
            )
        if match.endpoint is UNAVAILABLE:  # the owning row cannot serve: never another's answer
            raise ApiError(
                "ENDPOINT_UNAVAILABLE",
                "This endpoint's definition cannot be served right now",
                headers={"Retry-After": RETRY_AFTER_S},
            )
        ep = match.endpoint
        spec = ep.spec
        exchange.endpoint_id = spec.id
        received = request.headers  # Starlette's property: read once
        principal = services.authenticator.authenticate(received)
        if principal is not None:
            exchange.subject = principal.subject
        authorize(
            principal,
            requires_auth=spec.requires_auth,
            roles=spec.required_roles,
            permissions=spec.required_permissions,
        )
        if spec.rate_limit_per_minute:
            await _limit(services, request, ep, principal, state)
        if ep.bulk is not None:  # an NDJSON/CSV import: streamed, its own transaction
            where = (request, match.path_params, principal, state["headers"])
            return await bulk.handle(services, catalog.errors, ep, *where)
        body = None
        if ep.needs_body:
            schema = ep.body_schema  # fields bound by name, or an object schema: only an object
            whole = ep.binder.uses_body or (schema is not None and schema.expects_object)
            body = await _read_body(request, services.settings.max_body_bytes, state, whole)
            state["body"] = body  # logged (masked) even when sanitizing fails
            if ep.sanitizer is not None:
                body = ep.sanitizer.apply({} if body is None else body)
            if ep.body_schema is not None:
                ep.body_schema.check({} if body is None else body)
        source = RequestSource(
            match.path_params,
            request.query_params,
            received,
            body,
            principal.claims if principal else None,
        )
        args = ep.binder.bind(source)
        if ep.query_schema is not None:
            ep.query_schema.check(_query_object(ep, request, args))
        headers = state["headers"]
        if spec.result.shape == "stream":  # HEAD: the export's headers, without running it
            who = principal.subject if principal else None
            origin = StreamOrigin(request, request_id, started, services.errorlog, who)
            return await stream_response(
                services.streams, ep, args, catalog.errors, headers, origin
            )
        page = await _page_args(services, ep, request, args) if ep.page_sql is not None else None
        if page is not None:
            args = [*args, *page.args]
        if ep.cacheable:
            try:
                key = _cache_key(ep, args, page, principal)
                reply = await _cached(
                    services, catalog, ep, args, page, request, principal, headers, key
                )
            finally:  # HIT or MISS (a 404 computed is a miss too), without parsing the answer
                exchange.cache = headers.get("X-Cache")
            if principal is None and catalog.hot.admits(ep) and plain(request.scope["headers"]):
                hot = HotKey(ep, match.route, key, headers["Cache-Control"])
                catalog.hot.record(path, request.scope["query_string"], hot)
            return reply
        if spec.is_read:
            shaped = await _execute(services, catalog, ep, args, page)
            return _answer(_render(ep, shaped, request_id), request, headers)
        guard = _idempotency(services, ep, request, principal, state, args)
        rendered = await _write(services, catalog, ep, args, page, request_id, guard)
        if ep.invalidates and not rendered.replayed:
            services.cache.invalidate(ep.invalidates)
            services.publish_invalidation(ep.invalidates)
        return _answer(rendered, request, headers)
    except ApiError as error:
        if error.schema_drift and ep is not None and not services.catalogs.report_drift(ep):
            # re-checked already and the template still prepares: the missing table,
            # column or function is inside a function it calls, which is a bug to fix
            error = ApiError(
                "INTERNAL_ERROR", internal=error.internal, database_error=error.database_error
            )
        return _failure(
            services, catalog, ep, error, request, request_id, started, principal, state
        )
    except ClientDisconnect:  # the caller left while sending its body: nobody to answer
        exchange.abandoned = True
        log.info("client left during %s %s", method, path)
        return Reply(status_code=400, headers=state["headers"])
    except Exception as exc:  # a bug of ours: still a coded answer, never a bare 500
        log.exception("unexpected error on %s %s", method, path)
        error = ApiError("INTERNAL_ERROR", internal="".join(traceback.format_exception(exc)))
        return _failure(
            services, catalog, ep, error, request, request_id, started, principal, state
        )


async def _limit(
    services: Services,
    request: Request,
    ep: CompiledEndpoint,
    principal: Principal | None,
    state: dict[str, Any],
) -> None:
    who = _caller(services, request, principal)
    limit = ep.spec.rate_limit_per_minute or 0
    rate = await services.limiter.hit(ep.spec.id, limit, who)
    if rate is None:
        return
    state["headers"].update(rate.headers())
    if not rate.allowed:
        raise ApiError(
            "RATE_LIMIT_EXCEEDED",
            f"At most {limit} calls a minute; retry in {max(rate.reset_s, 1)} s",
        )


def _caller(services: Services, request: Request, principal: Principal | None) -> str:
    """Who is calling: the principal, else the client's address (behind trusted proxies)."""
    if principal is not None:
        return principal.identity
    peer = request.client.host if request.client else None
    forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
    return "ip:" + client_address(peer, forwarded, services.trusted_proxies)


def _cache_key(
    ep: CompiledEndpoint, args: list[Any], page: PageRequest | None, principal: Principal | None
) -> tuple[Any, ...]:
    """The response cache's key: the row's version, whose answer (a personal row's caller),
    the values bound (those the row keys on) and the page asked for."""
    spec = ep.spec
    positions = ep.cache.key_positions
    keyed = args if positions is None else [args[i] for i in positions]
    if page is not None:  # a page's values, its count and its links (from the request's URL)
        paging = args[len(spec.params) :] if positions is not None else []
        keyed = [*keyed, *paging, page.cache_key]
    subject = principal.identity if (spec.requires_auth and principal) else None
    return (spec.version, subject, encode(keyed))


async def _cached(
    services: Services,
    catalog: Catalog,
    ep: CompiledEndpoint,
    args: list[Any],
    page: PageRequest | None,
    request: Request,
    principal: Principal | None,
    headers: dict[str, str],
    key: tuple[Any, ...],
) -> Reply:
    spec = ep.spec
    answer = services.cache.lookup(spec.id, key)
    headers["X-Cache"] = "HIT" if answer is not None else "MISS"
    if answer is None:

        async def compute() -> CachedAnswer:
            shaped = await _execute(services, catalog, ep, args, page, primary=True)
            rendered = _render(ep, shaped, headers["X-Request-ID"])
            return CachedAnswer(
                body=rendered.body,
                status=rendered.status_code,
                media_type=JSON,
                headers=tuple(rendered.headers.items()),
                etag=etag_of(rendered.body),
                expires_at=time.monotonic() + ep.cache.ttl_seconds,
            )

        answer = await services.cache.fill(spec.id, key, compute)
        assert answer is not None
    headers["ETag"] = answer.etag
    personal = (
        principal is not None
        or spec.requires_auth
        or ep.binder.uses_auth
        or spec.required_roles
        or spec.required_permissions
    )
    scope = "private" if personal else "public"
    headers["Cache-Control"] = f"{scope}, max-age={ep.cache.ttl_seconds}"
    headers.update(answer.headers)
    if etag_matches(request.headers.get("if-none-match"), answer.etag):
        return Reply(status_code=304, headers=headers)
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(answer.body))
        return Reply(status_code=answer.status, headers=headers, media_type=answer.media_type)
    return Reply(
        answer.body, status_code=answer.status, headers=headers, media_type=answer.media_type
    )


async def _read_body(request: Request, limit: int, state: dict[str, Any], whole: bool) -> Any:
    """The parsed JSON body, None when there is none; ``whole``: it must be an object."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise ApiError("PAYLOAD_TOO_LARGE", f"The body may be at most {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError("PAYLOAD_TOO_LARGE", f"The body may be at most {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    state["raw"] = raw
    if not raw.strip():
        return None
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype and ctype != JSON and not ctype.endswith("+json"):
        raise ApiError("UNSUPPORTED_MEDIA_TYPE", f"Send the body as {JSON}, not {ctype}")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(
            "INVALID_JSON", f"The body is not valid JSON ({exc.msg} at byte {exc.pos})"
        ) from None
    if isinstance(body, dict | list) and _deeper_than(body, MAX_BODY_DEPTH):
        raise ApiError(
            "INVALID_BODY", f"The body nests objects and arrays deeper than {MAX_BODY_DEPTH} levels"
        )
    if whole:  # `null` too: an empty body is no fields, a JSON null is not an object
        state["body"] = body  # logged with the refusal
        require_object(body)
    return body


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether objects and arrays nest deeper than ``limit`` (no recursion: any depth)."""
    level: list[Any] = [value]
    for _ in range(limit):
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True


def _query_object(ep: CompiledEndpoint, request: Request, args: list[Any]) -> dict[str, Any]:
    query = query_object(ep.spec.params, request.query_params, args)
    if ep.page_sql is not None:
        for name in ("limit", "offset", "after"):
            if name in query and (name != "after" or ep.after_sql is not None):
                query.pop(name)
    return query


async def _page_args(
    services: Services, ep: CompiledEndpoint, request: Request, args: list[Any]
) -> PageRequest:
    """The page asked for (limit, offset or after, count) and how to link to the others."""
    paginate = ep.spec.result.paginate
    assert paginate is not None
    cursors = None
    if paginate.keyset:  # a cursor is signed for this endpoint and these bound values
        cursors = Cursors(await _cursor_key(services), ep.spec.id, ep.cursor_scope, encode(args))
    return page_request(
        paginate,
        request.query_params,
        request.headers.getlist("prefer"),
        request_path(request.scope.get("raw_path"), request.url.path),
        cursors,
    )


async def _cursor_key(services: Services) -> bytes:
    """ENGINE_CURSOR_SECRET, else the database's own secret (read once per process)."""
    if services.cursor_key is None and services.settings.cursor_secret:
        services.cursor_key = cursor_key(services.settings.cursor_secret.encode())
    if services.cursor_key is None:
        pool = services.db.write
        try:
            secret = await load_cursor_secret(pool)
        except Exception as exc:
            error = translate(exc, "SELECT", client_values=False)
            if error.code != "DATABASE_CONNECTION_ERROR":  # a missing table is not drift
                error = ApiError(
                    "INTERNAL_ERROR",
                    internal=f"cannot read the cursor secret (engine_secrets, sql/011): {exc!r}",
                )
            raise error from exc
        services.cursor_key = cursor_key(secret)
    return services.cursor_key


async def _execute(
    services: Services,
    catalog: Catalog,
    ep: CompiledEndpoint,
    args: list[Any],
    page: PageRequest | None,
    *,
    primary: bool = False,
) -> Shaped:
    """A read (a page and, when asked, its count) on a replica or the primary's read pool
    (engine/replicas.py); retried after a connection failure, at most ``max_concurrent`` at
    once (engine/recovery.py). ``primary``: never on a replica (a cache fill: a lagging
    replica's answer would be served for the whole TTL, past the invalidation of a write)."""
    limit = ep.spec.max_concurrent
    if limit is None:  # no gate to pass (its context manager costs a generator a request)
        return await _read_on(services, catalog, ep, args, page, primary)
    with services.gates.enter(ep.spec.id, limit):
        return await _read_on(services, catalog, ep, args, page, primary)


async def _read_on(
    services: Services,
    catalog: Catalog,
    ep: CompiledEndpoint,
    args: list[Any],
    page: PageRequest | None,
    primary: bool,
) -> Shaped:
    """The read on the primary when asked (and replicas exist), else where replicas decide;
    on the primary itself at once (no replica to fall back from)."""
    replicas = services.db.replicas
    if primary and replicas.replicas:
        replicas.primary.reads += 1
        return await _read(services, catalog, ep, args, page, replicas.primary)
    target = replicas.choose()
    if target.replica is None:
        return await _read(services, catalog, ep, args, page, target)
    return await replicas.read_on(target, partial(_read, services, catalog, ep, args, page))


async def _read(
    services: Services,
    catalog: Catalog,
    ep: CompiledEndpoint,
    args: list[Any],
    page: PageRequest | None,
    to: ReadTarget,
) -> Shaped:
    spec = ep.spec
    pool = to.pool
    paged = page is not None and ep.page_sql is not None
    if not paged and spec.result.shape != "none":  # most reads: one statement, its rows
        bound = services.settings.max_rows  # an unpaginated list: RESULT_TOO_LARGE past it
        rows, _ = await run_statement(
            pool,
            ep.sql,
            args,
            timeout_s=ep.timeout_s,
            operation=spec.operation,
            known_codes=catalog.errors,
            client_values=ep.client_values,
            params=ep.param_names,
            acquire_timeout_s=services.settings.pool_timeout_s,
            recovery=to.recovery,
            idempotent=True,
            limit=ep.shaper.fetch_limit(bound),
        )
        shaper = ep.shaper
        if shaper.sliced(rows):
            return await shaper.shape_read(rows, max_rows=bound)
        return shaper.shape(rows, max_rows=bound)
    common = {
        "timeout_s": ep.timeout_s,
        "operation": spec.operation,
        "known_codes": catalog.errors,
        "client_values": ep.client_values,
        "params": ep.param_names,
        "acquire_timeout_s": services.settings.pool_timeout_s,
        "recovery": to.recovery,
    }
    if paged:
        assert page is not None
        sql = ep.page_sql if page.after is None or ep.after_sql is None else ep.after_sql
        if page.counted and ep.count_sql is not None:  # in one snapshot: the total agrees
            own = args[: len(spec.params)]
            rows, total = await run_page_and_count(pool, sql, args, ep.count_sql, own, **common)
            return ep.shaper.page(rows, page, total=total)
        rows, _ = await run_statement(pool, sql, args, idempotent=True, **common)
        return ep.shaper.page(rows, page)
    _, affected = await run_statement(pool, ep.sql, args, rows=False, idempotent=True, **common)
    return ep.shaper.shape((), affected=affected)


async def _write(
    services: Services,
    catalog: Catalog,
    ep: CompiledEndpoint,
    args: list[Any],
    page: PageRequest | None,
    request_id: str,
    guard: IdempotencyGuard | None,
) -> Rendered:
    """A write, in its own transaction on the primary; answered only once committed."""
    paged = page is not None and ep.page_sql is not None

    def finish(rows: list[Any], affected: int | None) -> Rendered:
        if paged:
            assert page is not None
            return _render(ep, ep.shaper.page(rows, page), request_id)
        if ep.spec.result.shape == "none":
            return _render(ep, ep.shaper.shape((), affected=affected), request_id)
        # past ENGINE_MAX_ROWS: RESULT_TOO_LARGE, rolled back (a write answers 2xx iff committed)
        return _render(ep, ep.shaper.shape(rows, max_rows=services.settings.max_rows), request_id)

    with services.gates.enter(ep.spec.id, ep.spec.max_concurrent):
        return await run_write(
            services.db.write,
            ep.page_sql if paged and ep.page_sql else ep.sql,
            args,
            finish,
            timeout_s=ep.timeout_s,
            operation=ep.spec.operation,
            known_codes=catalog.errors,
            rows=paged or ep.spec.result.shape != "none",
            guard=guard,
            client_values=ep.client_values,
            params=ep.param_names,
            acquire_timeout_s=services.settings.pool_timeout_s,
            recovery=services.db.recovery,
            limit=None if paged else ep.shaper.fetch_limit(services.settings.max_rows, read=False),
        )


def _idempotency(
    services: Services,
    ep: CompiledEndpoint,
    request: Request,
    principal: Principal | None,
    state: dict[str, Any],
    args: list[Any],
) -> IdempotencyGuard | None:
    """The Idempotency-Key guard of a write, when the client sent the header."""
    header = request.headers.get(IDEMPOTENCY_HEADER)
    if header is None:
        return None
    if principal is None:  # keyed by the caller: an address is shared (NAT, proxies)
        raise ApiError(
            "INVALID_PARAMETER",
            "Idempotency-Key needs an authenticated caller (a bearer token or an API key)",
            errors=[{"parameter": "Idempotency-Key", "in": "header", "message": "needs auth"}],
        )
    return IdempotencyGuard.for_request(
        header,
        principal=principal.identity,
        endpoint_id=ep.spec.id,
        # the request as sent and every value bound from it (headers and claims included)
        fingerprint=request_fingerprint(
            request.method,
            request.url.path,
            request.url.query,
            state.get("raw", b""),
            encode(args),
        ),
        ttl_s=services.settings.idempotency_ttl_s,
    )


def _render(ep: CompiledEndpoint, shaped: Shaped, request_id: str) -> Rendered:
    """The encoded success body and the template's headers."""
    headers: dict[str, str] = {}
    envelope = ep.paginated if shaped.pagination is not None and ep.paginated else ep.success
    if envelope is not None:
        headers.update(envelope.headers)
    for name, value in shaped.headers:  # a page's Link, Vary, Preference-Applied
        known = next((k for k in headers if k.lower() == name.lower()), None)
        if known is not None and name.lower() == "vary":
            headers[known] = f"{headers[known]}, {value}"
        else:
            headers[known or name] = value
    if shaped.empty:
        return Rendered(b"", shaped.status, headers, True)
    if envelope is not None:
        body: Any = envelope.wrap(shaped, request_id=request_id, endpoint=ep.spec.label)
    elif shaped.pagination is not None:
        body = default_page_body(shaped)
    else:
        body = shaped.payload
    return Rendered(encode(body), shaped.status, headers, False)


def _answer(rendered: Rendered, request: Request, headers: dict[str, str]) -> Reply:
    headers.update(rendered.headers)
    if rendered.empty:
        return Reply(status_code=rendered.status_code, headers=headers)
    if request.scope["method"] == "HEAD":
        headers["Content-Length"] = str(len(rendered.body))
        return Reply(status_code=rendered.status_code, headers=headers, media_type=JSON)
    return Reply(rendered.body, status_code=rendered.status_code, headers=headers, media_type=JSON)


def _failure(
    services: Services,
    catalog: Catalog,
    ep: CompiledEndpoint | None,
    error: ApiError,
    request: Request,
    request_id: str,
    started: float,
    principal: Principal | None,
    state: dict[str, Any],
) -> Reply:
    entry = catalog.errors.get(error.code)
    if entry.status >= 500 and error.internal:
        log.error("%s %s -> %s: %s", request.method, request.url.path, entry.code, error.internal)
    elif entry.status == 401 and error.internal:  # why a credential was refused, never itself
        services.authenticator.log_refusal(
            request_id, request.method, request.url.path, error.internal
        )
    languages = parse_accept_language(request.headers.get("accept-language"))
    exchange = CURRENT.get()
    route = ep.spec.path if ep else (exchange.route if exchange else None)
    # a path no row publishes is the client's text: never echoed (instance, meta.endpoint)
    where = request.url.path if route is not None else None
    body, lang = problem_body(
        error,
        entry,
        request_id=request_id,
        instance=where or f"urn:engine:request:{request_id}",
        languages=languages,
    )
    envelope = (ep.error if ep else None) or catalog.default_error_envelope
    headers = {**state["headers"], "Content-Language": lang, **error.headers}
    with_retry_after(entry.status, headers)  # every 503 and 429 says when to retry
    if envelope is not None:
        endpoint = ep.spec.label if ep else (where or "(unmatched)")  # the metrics' label
        body = envelope.extend_problem(body, endpoint=endpoint)
        headers.update(envelope.headers)
    services.errorlog.submit(
        ErrorEntry(
            request_id=request_id,
            path=ep.spec.path if ep else request.url.path,
            method=request.method,
            code=entry.code,
            message=error.detail or entry.message,
            status=entry.status,
            elapsed_ms=int((time.perf_counter() - started) * 1000),
            category=entry.category,
            stack=error.internal,
            body=safe_body(state.get("body"), state.get("raw")),
            headers=safe_headers(request.headers),
            params=safe_query(request.query_params.multi_items()) if request.url.query else None,
            operation=ep.spec.operation if ep else None,
            database_error=error.database_error,
            principal=principal.subject if principal else None,
            route=route,
        )
    )
    if request.method == "HEAD":
        return Reply(status_code=entry.status, headers=headers, media_type=PROBLEM_CONTENT_TYPE)
    return Reply(
        encode(body), status_code=entry.status, headers=headers, media_type=PROBLEM_CONTENT_TYPE
    )
