"""The admin API's built-in routes under ``/admin/v1``: where the engine must act.

Creating or changing a mapping, a validation schema or an error code compiles
the proposed row with the checks of ``engine check`` before anything is kept;
a diff and a rollback read the history (:mod:`engine.admin.operations` does the
work, so the CLI does the same). The reads a SQL template can do are mapping
rows of ``sql/014`` served by the catalogue; these routes are mounted before it,
so a (method, path) here always wins.

Every route needs the role ``engine_admin`` (a token's ``roles`` claim or an API
key's roles): anonymous 401 ``AUTHENTICATION_REQUIRED``, without the role 403
``INSUFFICIENT_PERMISSIONS``, as the catalogue's routes answer. Bodies are JSON
objects naming columns; ``?dry_run=true`` answers the check without writing.
Errors are ``application/problem+json`` with ``code`` and ``request_id``, and go
to the error log like the catalogue's.

    POST  /admin/v1/endpoints                  201 the saved row and its state
    PATCH /admin/v1/endpoints/{id}             200 the saved row and its state
    GET   /admin/v1/endpoints/{id}/diff        ?from=V1&to=V2 (default: the last two)
    POST  /admin/v1/endpoints/{id}/rollback    {"version": N}
    POST  /admin/v1/schemas                    PATCH /admin/v1/schemas/{id}
    POST  /admin/v1/error-codes                PATCH /admin/v1/error-codes/{code}
    POST  /admin/v1/scaffold                   {"table": ..., "apply": false, ...}
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from engine import pgbouncer, scaffold
from engine.admin import PREFIX, ROLE, SERVICE, operations
from engine.auth import Principal, authorize
from engine.catalog import write_statuses
from engine.cors import catalog_methods
from engine.database import acquire, connect_session, translate
from engine.endpoint import Dispatcher, Services, request_id_of
from engine.errorlog import ErrorEntry, safe_body, safe_headers, safe_query
from engine.errors import PROBLEM_CONTENT_TYPE, ApiError, parse_accept_language, problem_body
from engine.recovery import with_retry_after
from engine.shaping import encode

log = logging.getLogger("engine.admin")

JSON = "application/json"
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off", ""}
_INT4_MAX = 2**31 - 1

Work = Callable[["Call"], Awaitable[tuple[int, Any]]]


class Call:
    """One admin request: who calls, its body and parameters, a connection to work on."""

    def __init__(self, request: Request, services: Services, principal: Principal) -> None:
        self.request = request
        self.services = services
        self.principal = principal
        self.state: dict[str, Any] = {}  # the body as read, for the error log

    @property
    def actor(self) -> str:
        return self.principal.subject

    @property
    def checks(self) -> dict[str, Any]:
        """How a change is checked: against the live catalogue's compiled rows."""
        return {
            "previous": self.services.catalogs.current,
            "default_timeout_ms": self.services.settings.statement_timeout_ms,
        }

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        services = self.services
        if pgbouncer.transaction_pooled(services.settings):
            # a change holds a session advisory lock (engine/admin/change.py), which
            # transaction pooling cannot keep: the direct connection (engine/pgbouncer.py)
            url = pgbouncer.session_url(services.settings, services.db.url)
            own = await connect_session(url, services.settings.pool_timeout_s, "UPDATE")
            try:
                yield own
            finally:
                with contextlib.suppress(Exception):
                    await own.close(timeout=2)
            return
        conn = await acquire(services.db.write, services.settings.pool_timeout_s, "UPDATE")
        try:
            yield conn
        finally:
            await self.services.db.write.release(conn)

    def path_int(self, name: str) -> int:
        raw = self.request.path_params[name]
        if not raw.isascii() or not raw.isdigit() or not 0 < int(raw) <= _INT4_MAX:
            raise _bad_parameter(name, "path", "must be a positive integer")
        return int(raw)

    def query_int(self, name: str) -> int | None:
        raw = self.request.query_params.get(name)
        if raw is None:
            return None
        if not raw.isascii() or not raw.isdigit() or not 0 < int(raw) <= _INT4_MAX:
            raise _bad_parameter(name, "query", "must be a positive integer")
        return int(raw)

    @property
    def dry_run(self) -> bool:
        values = self.request.query_params.getlist("dry_run")
        if not values:
            return False
        if len(values) == 1 and values[0].lower() in _TRUE | _FALSE:
            return values[0].lower() in _TRUE
        raise _bad_parameter("dry_run", "query", "must be true or false, given once")

    async def body(self) -> dict[str, Any]:
        """The JSON object sent (an empty body is ``{}``)."""
        limit = self.services.settings.max_body_bytes
        length = self.request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            raise ApiError("PAYLOAD_TOO_LARGE", f"The body may be at most {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in self.request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError("PAYLOAD_TOO_LARGE", f"The body may be at most {limit} bytes")
            chunks.append(chunk)
        raw = b"".join(chunks)
        self.state["raw"] = raw
        if not raw.strip():
            return {}
        ctype = self.request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype and ctype != JSON and not ctype.endswith("+json"):
            raise ApiError("UNSUPPORTED_MEDIA_TYPE", f"Send the body as {JSON}, not {ctype}")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ApiError(
                "INVALID_JSON", f"The body is not valid JSON ({exc.msg} at byte {exc.pos})"
            ) from None
        self.state["body"] = body
        if not isinstance(body, dict):
            raise ApiError("INVALID_BODY", "The body must be a JSON object naming columns")
        return body


def _bad_parameter(name: str, where: str, message: str) -> ApiError:
    return ApiError(
        "INVALID_PARAMETER",
        f"{name} {message}",
        errors=[{"parameter": name, "in": where, "message": message}],
    )


def _route(path: str, method: str, work: Work) -> Route:
    template = PREFIX + path

    async def endpoint(request: Request) -> Response:
        return await _handle(request, work, template)

    endpoint.__name__ = work.__name__
    return Route(template, endpoint, methods=[method])


async def _handle(request: Request, work: Work, template: str) -> Response:
    services: Services = request.app.state.services
    started = time.perf_counter()
    request_id = request_id_of(request.headers)
    headers = {"X-Request-ID": request_id}
    principal: Principal | None = None
    call: Call | None = None
    try:
        principal = services.authenticator.authenticate(request.headers)
        authorize(principal, requires_auth=True, roles=(ROLE,), permissions=())
        assert principal is not None
        call = Call(request, services, principal)
        status, body = await work(call)
        location = body.pop("_location", None) if isinstance(body, dict) else None
        if location:
            headers["Location"] = location
        return Response(encode(body), status_code=status, headers=headers, media_type=JSON)
    except ApiError as error:
        return _failure(services, request, template, error, request_id, started, principal, call)
    except ClientDisconnect:
        log.info("client left during %s %s", request.method, request.url.path)
        return Response(status_code=400, headers=headers)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        error = translate(exc, "UPDATE", services.catalogs.current.errors)
        if error.schema_drift or error.code == "ENDPOINT_UNAVAILABLE":  # not the row's drift
            error = ApiError("INTERNAL_ERROR", internal=error.internal)
        return _failure(services, request, template, error, request_id, started, principal, call)
    except Exception as exc:  # a bug of ours: still a coded answer
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        error = ApiError("INTERNAL_ERROR", internal="".join(traceback.format_exception(exc)))
        return _failure(services, request, template, error, request_id, started, principal, call)


def _failure(
    services: Services,
    request: Request,
    template: str,
    error: ApiError,
    request_id: str,
    started: float,
    principal: Principal | None,
    call: Call | None,
) -> Response:
    catalog = services.catalogs.current
    entry = catalog.errors.get(error.code)
    if entry.status >= 500 and error.internal:
        log.error("%s %s -> %s: %s", request.method, request.url.path, entry.code, error.internal)
    elif entry.status == 401 and error.internal:
        services.authenticator.log_refusal(
            request_id, request.method, request.url.path, error.internal
        )
    languages = parse_accept_language(request.headers.get("accept-language"))
    body, lang = problem_body(
        error, entry, request_id=request_id, instance=request.url.path, languages=languages
    )
    headers = {"X-Request-ID": request_id, "Content-Language": lang, **error.headers}
    with_retry_after(entry.status, headers)
    envelope = catalog.default_error_envelope
    if envelope is not None:
        body = envelope.extend_problem(body, endpoint=request.url.path)
        headers.update(envelope.headers)
    state = call.state if call is not None else {}
    services.errorlog.submit(
        ErrorEntry(
            request_id=request_id,
            path=template,
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
            operation="UPDATE" if request.method != "GET" else "SELECT",
            database_error=error.database_error,
            principal=principal.subject if principal else None,
        )
    )
    return Response(
        encode(body), status_code=entry.status, headers=headers, media_type=PROBLEM_CONTENT_TYPE
    )


def _saved(outcome: operations.Outcome, location: str | None = None) -> tuple[int, Any]:
    body = outcome.as_dict()
    if outcome.saved and outcome.created:
        if location:
            body = {**body, "_location": location}
        return 201, body
    return 200, body


# ---------------------------------------------------------------------------
# The routes
# ---------------------------------------------------------------------------


async def create_endpoint(call: Call) -> tuple[int, Any]:
    body = await call.body()
    async with call.connection() as conn:
        outcome = await operations.save_endpoint(
            conn, body, actor=call.actor, dry_run=call.dry_run, **call.checks
        )
    return _saved(outcome, f"{PREFIX}/endpoints/{outcome.row['id']}")


async def update_endpoint(call: Call) -> tuple[int, Any]:
    mapping_id = call.path_int("id")
    body = await call.body()
    async with call.connection() as conn:
        outcome = await operations.save_endpoint(
            conn, body, mapping_id=mapping_id, actor=call.actor, dry_run=call.dry_run, **call.checks
        )
    return _saved(outcome)


async def diff_endpoint(call: Call) -> tuple[int, Any]:
    mapping_id = call.path_int("id")
    first, second = call.query_int("from"), call.query_int("to")
    async with call.connection() as conn:
        return 200, await operations.diff(conn, mapping_id, first, second)


async def rollback_endpoint(call: Call) -> tuple[int, Any]:
    mapping_id = call.path_int("id")
    body = await call.body()
    number = body.get("version")
    unknown = sorted(set(body) - {"version"})
    errors = [
        {"pointer": f"/{k}", "message": f"'{k}' is not known (send version)"} for k in unknown
    ]
    if not isinstance(number, int) or isinstance(number, bool) or not 0 < number <= _INT4_MAX:
        errors.append({"pointer": "/version", "message": "version must be a positive integer"})
    if errors:
        raise ApiError("VALIDATION_ERROR", 'Send {"version": N}', errors=errors)
    async with call.connection() as conn:
        outcome = await operations.rollback(
            conn, mapping_id, number, actor=call.actor, dry_run=call.dry_run, **call.checks
        )
    return _saved(outcome)


async def create_schema(call: Call) -> tuple[int, Any]:
    body = await call.body()
    async with call.connection() as conn:
        outcome = await operations.save_schema(
            conn, body, actor=call.actor, dry_run=call.dry_run, **call.checks
        )
    return _saved(outcome, f"{PREFIX}/schemas/{outcome.row['id']}")


async def update_schema(call: Call) -> tuple[int, Any]:
    schema_id = call.path_int("id")
    body = await call.body()
    async with call.connection() as conn:
        outcome = await operations.save_schema(
            conn, body, schema_id=schema_id, actor=call.actor, dry_run=call.dry_run, **call.checks
        )
    return _saved(outcome)


async def create_error_code(call: Call) -> tuple[int, Any]:
    body = await call.body()
    async with call.connection() as conn:
        outcome = await operations.save_error_code(
            conn, body, actor=call.actor, dry_run=call.dry_run, **call.checks
        )
    return _saved(outcome, f"{PREFIX}/error-codes/{outcome.row['error_code']}")


async def update_error_code(call: Call) -> tuple[int, Any]:
    code = call.request.path_params["code"]
    body = await call.body()
    async with call.connection() as conn:
        outcome = await operations.save_error_code(
            conn, body, code=code, actor=call.actor, dry_run=call.dry_run, **call.checks
        )
    return _saved(outcome)


# the body of POST /admin/v1/scaffold: field -> (JSON type, what it must be)
_SCAFFOLD_FIELDS = {
    "table": (str, "a table name (schema.table or table)"),
    "path": (str, "a path such as /api/v1/things"),
    "tenant_column": (str, "a column name"),
    "tenant_claim": (str, "a claim name"),
    "roles": (list, "an array of role names"),
    "apply": (bool, "true or false"),
    "public": (bool, "true or false"),
}


def _scaffold_options(body: dict[str, Any]) -> dict[str, Any]:
    errors = []
    for name, value in body.items():
        known = _SCAFFOLD_FIELDS.get(name)
        if known is None:
            errors.append(
                {
                    "pointer": f"/{name}",
                    "message": f"'{name}' is not known (known: {', '.join(_SCAFFOLD_FIELDS)})",
                }
            )
        elif value is not None and (
            not isinstance(value, known[0])
            or (known[0] is list and not all(isinstance(v, str) for v in value))
            or (known[0] is not bool and isinstance(value, bool))
        ):
            errors.append({"pointer": f"/{name}", "message": f"{name} must be {known[1]}"})
    if not isinstance(body.get("table"), str) or not body["table"].strip():
        errors.append({"pointer": "/table", "message": "table is required"})
    if errors:
        raise ApiError(
            "VALIDATION_ERROR", "The body is not a valid scaffold request", errors=errors
        )
    return {k: v for k, v in body.items() if v is not None}


async def scaffold_table(call: Call) -> tuple[int, Any]:
    options = _scaffold_options(await call.body())
    table = options.pop("table")
    async with call.connection() as conn:
        result = await scaffold.scaffold(
            conn,
            table,
            actor=call.actor,
            default_timeout_ms=call.services.settings.statement_timeout_ms,
            **options,
        )
        if result.applied:  # the drafts' states are known: activating them needs no wait
            await write_statuses(conn, result.states)
    return (201 if result.applied else 200), result.as_dict()


BUILTIN = [
    _route("/endpoints", "POST", create_endpoint),
    _route("/endpoints/{id}", "PATCH", update_endpoint),
    _route("/endpoints/{id}/diff", "GET", diff_endpoint),
    _route("/endpoints/{id}/rollback", "POST", rollback_endpoint),
    _route("/schemas", "POST", create_schema),
    _route("/schemas/{id}", "PATCH", update_schema),
    _route("/error-codes", "POST", create_error_code),
    _route("/error-codes/{code}", "PATCH", update_error_code),
    _route("/scaffold", "POST", scaffold_table),
]


def _builtin_methods(path: str) -> set[str]:
    methods: set[str] = set()
    for route in BUILTIN:
        if route.path_regex.match(path):
            methods |= route.methods or set()
    return methods


def methods_at(path: str, catalog: Any) -> tuple[list[str], list[str]] | None:
    """The methods an admin path answers (built-in and rows together), for OPTIONS and CORS."""
    from_rows = catalog_methods(catalog, path)
    methods = (set(from_rows[0]) if from_rows else set()) | _builtin_methods(path)
    if not methods:
        return None
    methods.add("OPTIONS")
    return sorted(methods), list(from_rows[1]) if from_rows else []


class _Rows:
    """Every other request under /admin/v1: the catalogue's admin rows answer it, except a
    method neither they nor a built-in route answer at a built-in path (405 naming both).

    Only a row of the admin service is dispatched to: a row of another service whose
    pattern matches here (a generic ``/{a}/{b}/{c}``) is not found (404)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        services: Services = scope["app"].state.services
        path, method = scope["path"], scope["method"]
        match = services.catalogs.current.match(path, method)
        builtin = _builtin_methods(path)
        endpoint = match.endpoint if match is not None else None
        spec = getattr(endpoint, "spec", None)
        if spec is not None and spec.service_name != SERVICE:
            error = ApiError("ROUTE_NOT_FOUND", f"No endpoint is published at {method} {path}")
        elif endpoint is not None or not builtin:
            await Dispatcher(lambda: services)(scope, receive, send)
            return
        else:
            allowed = builtin | set(match.allowed if match is not None else ())
            if "GET" in allowed:
                allowed.add("HEAD")
            listed = ", ".join(sorted(allowed))
            error = ApiError(
                "METHOD_NOT_ALLOWED", f"{path} accepts {listed}", headers={"Allow": listed}
            )
        request = Request(scope, receive)
        started = time.perf_counter()
        response = _failure(
            services, request, path, error, request_id_of(request.headers), started, None, None
        )
        await response(scope, receive, send)


# the built-in routes first; the rest of /admin/v1 goes on to the catalogue's rows
routes = [*BUILTIN, Route(PREFIX + "/{rest:path}", _Rows())]


__all__ = ["BUILTIN", "methods_at", "routes"]
