"""The one error tree of the engine, and how an error becomes an HTTP answer.

Every failure a client can see is an :class:`ApiError` carrying a ``code`` that
is a row of ``api_error_codes``. The status, title and localized message come
from that row (via :class:`ErrorCatalog`); the engine ships the codes it uses
itself in ``sql/003_builtin_error_codes.sql`` and keeps the same defaults here
so an answer is still right if an admin deletes one of those rows.

    Exception
    ├── ApiError            -> application/problem+json (RFC 9457) with code and request_id
    └── SpecError           -> a mapping row that cannot work (refused and reported; its last
                               good version, if any, keeps serving)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:api-error:"

# code -> (http status, English message): the engine's own codes (sql/003).
BUILTIN_CODES: dict[str, tuple[int, str]] = {
    "VALIDATION_ERROR": (400, "Request validation failed"),
    "INVALID_PARAMETER": (400, "A request parameter is missing or invalid"),
    "INVALID_JSON": (400, "The request body is not valid JSON"),
    "INVALID_BODY": (400, "The request body must be a JSON object"),
    "INVALID_VALUE": (400, "A value was rejected as invalid"),
    "UNSUPPORTED_MEDIA_TYPE": (415, "The request body must be JSON (application/json)"),
    "PAYLOAD_TOO_LARGE": (413, "The request body is too large"),
    "ROUTE_NOT_FOUND": (404, "No endpoint matches this path"),
    "METHOD_NOT_ALLOWED": (405, "This endpoint does not support the HTTP method"),
    "RESOURCE_NOT_FOUND": (404, "The requested resource was not found"),
    "AUTHENTICATION_REQUIRED": (401, "Authentication is required"),
    "INVALID_TOKEN": (401, "The credentials are invalid or expired"),
    "INSUFFICIENT_PERMISSIONS": (403, "Insufficient permissions to access resource"),
    "RATE_LIMIT_EXCEEDED": (429, "Rate limit exceeded"),
    "DUPLICATE_RESOURCE": (409, "A resource with the same unique key already exists"),
    "REFERENCED_RESOURCE_MISSING": (422, "A referenced resource does not exist"),
    "RESOURCE_IN_USE": (409, "The resource is still referenced by other resources"),
    "CONSTRAINT_VIOLATION": (422, "The data violates a constraint"),
    "TRANSACTION_CONFLICT": (503, "The transaction conflicted with another one; retry"),
    "STATEMENT_TIMEOUT": (504, "The database query took too long"),
    "DATABASE_CONNECTION_ERROR": (503, "Database connection error"),
    "DATABASE_BUSY": (503, "Every database connection is busy; retry shortly"),
    "ENDPOINT_BUSY": (503, "This endpoint is answering as many requests as it may; retry shortly"),
    "TOO_MANY_CONNECTIONS": (
        503,
        "The server has as many connections open as it may; retry shortly",
    ),
    "SHUTTING_DOWN": (503, "The server is shutting down; retry"),
    "TOO_MANY_EXPORTS": (503, "Too many exports are running; retry shortly"),
    "INTERNAL_ERROR": (500, "An internal error occurred"),
    "AMBIGUOUS_CREDENTIALS": (400, "Send either an API key or a bearer token, not both"),
    "ENDPOINT_UNAVAILABLE": (503, "This endpoint cannot be served right now; retry later"),
    "COMMIT_OUTCOME_UNKNOWN": (503, "The connection was lost while committing"),
    "IDEMPOTENCY_KEY_REUSED": (422, "This Idempotency-Key was used for a different request"),
    "IDEMPOTENCY_KEY_IN_USE": (409, "A request with this Idempotency-Key is still running"),
    "TEMPLATE_ERROR": (500, "The endpoint's query failed on its own"),
    "READ_ONLY_VIOLATION": (500, "A read-only endpoint tried to write"),
    "INVALID_CURSOR": (400, "The pagination cursor is not valid for this request"),
    "RESULT_TOO_LARGE": (500, "The answer has more rows than an unpaginated list may hold"),
    "BULK_INVALID_RECORDS": (422, "Some records are invalid, so nothing was imported"),
    "REQUEST_TIMEOUT": (408, "The request body did not arrive in time"),
    "MALFORMED_REQUEST": (400, "The request could not be read as HTTP/1.1"),
    # the admin API (sql/014)
    "ENDPOINT_INVALID": (422, "The change would leave an endpoint that cannot be served"),
    "ENDPOINT_NOT_CHECKED": (409, "The endpoint's current version has not been checked yet"),
    "ENDPOINT_NOT_FOUND": (404, "No endpoint mapping has this id"),
    "ENDPOINT_VERSION_NOT_FOUND": (404, "This endpoint has no such version"),
    "SCHEMA_NOT_FOUND": (404, "No validation schema has this id"),
    "ERROR_CODE_NOT_FOUND": (404, "No error code has this name"),
    "ERROR_CODE_INVALID": (422, "The error code row cannot be used as written"),
    "SCAFFOLD_REFUSED": (422, "The endpoints of this table cannot be scaffolded"),
}


class ApiError(Exception):
    """A failure answered to the client with a stored error code.

    ``detail`` is safe to show (never SQL, a table name or a stack trace);
    ``errors`` lists individual problems (each a dict with ``pointer`` or
    ``parameter`` and ``message``); ``internal`` is logged, never answered.
    """

    def __init__(
        self,
        code: str,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        internal: str | None = None,
        database_error: str | None = None,
        schema_drift: bool = False,
    ) -> None:
        super().__init__(f"{code}: {detail or ''}")
        self.code = code
        self.detail = detail
        self.errors = errors
        self.headers = dict(headers or {})
        self.internal = internal
        self.database_error = database_error
        self.schema_drift = schema_drift  # the database changed under the row: re-check it


class SpecError(Exception):
    """A mapping row that cannot be compiled; the message is the reason shown to admins."""


@dataclass(frozen=True)
class ErrorCode:
    code: str
    status: int
    message: str
    category: str = "server"
    localized: Mapping[str, str] = field(default_factory=dict)
    suggested_action: str | None = None

    def message_for(self, languages: tuple[str, ...]) -> tuple[str, str]:
        """(message, language) for the first acceptable language we have."""
        for lang in languages:
            if lang in ("en", "*"):
                return self.message, "en"
            text = self.localized.get(lang)
            if text:
                return text, lang
            primary = lang.split("-", 1)[0]
            text = self.localized.get(primary)
            if text:
                return text, primary
            if primary == "en":
                return self.message, "en"
        return self.message, "en"


class ErrorCatalog:
    """Error codes by name: the rows of ``api_error_codes`` over the builtin defaults."""

    def __init__(self, rows: Mapping[str, ErrorCode] | None = None) -> None:
        self._codes: dict[str, ErrorCode] = {
            code: ErrorCode(code, status, message)
            for code, (status, message) in BUILTIN_CODES.items()
        }
        self._rows = dict(rows or {})
        self._codes.update(self._rows)

    def __contains__(self, code: str) -> bool:
        return code in self._codes

    def defines(self, code: str) -> bool:
        """Whether ``code`` is a row of api_error_codes (not only a builtin default)."""
        return code in self._rows

    def codes(self) -> list[str]:
        """Every code it answers with (rows and builtin defaults), sorted."""
        return sorted(self._codes)

    def get(self, code: str) -> ErrorCode:
        return self._codes.get(code) or self._codes["INTERNAL_ERROR"]


def parse_accept_language(header: str | None) -> tuple[str, ...]:
    """Language tags of an Accept-Language header, best first (q=0 dropped)."""
    if not header:
        return ()
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        piece = part.strip()
        if not piece:
            continue
        tag, _, params = piece.partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        if q > 0:
            weighted.append((-q, index, tag.strip().lower()))
    weighted.sort()
    return tuple(tag for _, _, tag in weighted)


def problem_body(
    error: ApiError,
    entry: ErrorCode,
    *,
    request_id: str,
    instance: str,
    languages: tuple[str, ...] = (),
) -> tuple[dict[str, Any], str]:
    """The RFC 9457 body for ``error`` and the language of its title."""
    title, lang = entry.message_for(languages)
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + entry.code,
        "title": title,
        "status": entry.status,
        "detail": error.detail or title,
        "instance": instance,
        "code": entry.code,
        "request_id": request_id,
    }
    if error.errors:
        body["errors"] = error.errors
    return body, lang
