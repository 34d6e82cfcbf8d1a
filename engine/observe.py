"""What one request did, recorded along the flow and handed to observers once answered.

The request flow fills an :class:`Exchange` (route, endpoint, caller, cache
outcome, time spent in PostgreSQL); when the answer has been sent, every
observer (Prometheus counters, the per-minute figures, the access log) reads it.
Observers do a few counter updates each: anything slower is queued and done in
the background by the module that owns it.

The statements of a request add their time through :func:`record_statement`,
which finds the request's exchange in a context variable, so the database layer
needs no extra argument.
"""

from __future__ import annotations

import itertools
import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("engine.observe")


@dataclass(slots=True)
class Exchange:
    """One request, as the observers see it."""

    request_id: str
    method: str
    path: str
    started: float  # time.perf_counter() when the request arrived
    route: str | None = None  # the route template (the row's endpoint_path)
    endpoint_id: int | None = None
    subject: str | None = None  # the caller's subject, never a credential
    cache: str | None = None  # "HIT" or "MISS" on a cacheable read
    db_s: float = 0.0  # time spent running statements
    statements: int = 0
    slowest_s: float = 0.0
    slowest_sql: str | None = None  # the slowest statement of the request and its values
    slowest_args: Sequence[Any] = ()
    status: int = 0
    duration_s: float = 0.0
    abandoned: bool = False  # the client left before the answer was sent


Observer = Callable[[Exchange], None]

CURRENT: ContextVar[Exchange | None] = ContextVar("engine_exchange", default=None)


def record_statement(
    elapsed_s: float, sql: str, args: Sequence[Any], *, more_of_the_last: bool = False
) -> None:
    """Add one statement's time to the current request's exchange (if any);
    ``more_of_the_last``: more time of the statement recorded before (a cursor's fetch)."""
    exchange = CURRENT.get()
    if exchange is None:
        return
    exchange.db_s += elapsed_s
    if not more_of_the_last:
        exchange.statements += 1
    if elapsed_s > exchange.slowest_s:
        exchange.slowest_s = elapsed_s
        exchange.slowest_sql = sql
        exchange.slowest_args = args


def notify(observers: Sequence[Observer], exchange: Exchange) -> None:
    """Hand a finished exchange to every observer; one failing never stops the others."""
    for observer in observers:
        try:
            observer(exchange)
        except Exception:  # an observer's bug must not fail the request
            log.exception("request observer %r failed", observer)


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,100}")
# W3C Trace Context: version-traceid-parentid-flags (version ff is invalid)
_TRACEPARENT = re.compile(r"(?!ff)[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(?:-.*)?")

# request ids: a random per-process prefix and a counter (uuid4 per request costs a syscall)
_ID_PREFIX = uuid.uuid4().hex[:12]
_ids = itertools.count(1)


def request_id_of(headers: Mapping[str, str]) -> str:
    """The client's X-Request-ID when well-formed, else ``<trace id>-<parent id>`` of a W3C
    ``traceparent``, else a new one."""
    given = headers.get("x-request-id")
    if given and _REQUEST_ID.fullmatch(given):
        return given
    parent = headers.get("traceparent")
    if parent:
        found = _TRACEPARENT.fullmatch(parent.strip().lower())
        if found and found[1] != "0" * 32 and found[2] != "0" * 16:
            # the trace id (shared by every call of the trace) and the caller's span id
            # (this call's own): correlated with the trace, yet one request's own id
            return f"{found[1]}-{found[2]}"
    return f"{_ID_PREFIX}-{next(_ids):x}"
