"""One serving route as an OpenAPI operation (pure: it reads compiled endpoints).

:class:`Operations` turns a compiled endpoint into its operation object:

- its path, query and header parameters typed from ``query_parameters``
  (``in: auth`` and ``in: const`` are not client inputs and never appear), the
  pagination parameters, and the stored query schema's constraints;
- its request body: the stored ``api_validation_schemas`` schema as the engine
  enforces it (draft 2020-12 is 3.1's own dialect), else an object of its
  ``in: body`` parameters;
- its success answer: shape, envelope (``api_response_templates``), page body,
  and the result columns typed by how the engine encodes each PostgreSQL type;
- every error answer the request flow can give it (:func:`route_codes`), as
  ``application/problem+json`` with the catalogue's codes as examples, and
  ``default`` for a code raised by a function the template calls;
- its security (:func:`needs_auth`), tag (``service_name``) and notes.

What several operations share (a body schema, a page body, an error answer, an
example) is collected in :attr:`Operations.components`, once.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from engine.errors import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_PREFIX, ErrorCatalog
from engine.openapi_schemas import (
    AUTH,
    CONVERTERS,
    INTEGER,
    JSON,
    NULL,
    OWN_SCHEMAS,
    PARAMETERS,
    STRING,
    column_property,
    has_links,
    header_object,
    narrowed,
    nullable,
    pagination_schema,
    param_schema,
    phrase,
    rebased,
    ref,
)
from engine.shaping import Envelope, encode
from engine.spec import ParamSpec

if TYPE_CHECKING:  # the builder reads compiled objects; it never loads or runs anything
    from engine.catalog import Catalog
    from engine.compiler import CompiledEndpoint

# a path's placeholders, as the router reads them: {name} or {name:converter}
PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::(str|int|float|uuid|path))?\}")
_NOT_KEY = re.compile(r"[^A-Za-z0-9._-]+")
_LITERAL = re.compile(r"'([A-Z][A-Z0-9_]{2,63})'")  # a code a template names itself
_MAX_OFFSET = 2**62  # what the engine accepts when the row sets no bound


def needs_auth(ep: CompiledEndpoint) -> bool:
    """Whether an anonymous call is refused (401): required, roles, or ``in: auth`` values."""
    spec = ep.spec
    return bool(
        spec.requires_auth
        or spec.required_roles
        or spec.required_permissions
        or ep.binder.uses_auth
    )


def route_codes(ep: CompiledEndpoint, errors: ErrorCatalog) -> list[str]:
    """The codes the request flow can answer ``ep`` with, in the order of the flow.

    A code raised by a function the template calls is known only to the
    database; codes the template names as literals are listed.
    """
    spec, result = ep.spec, ep.spec.result
    write = not spec.is_read and result.shape != "stream"
    codes = ["AMBIGUOUS_CREDENTIALS", "INVALID_TOKEN"]  # a credential is checked when sent
    if needs_auth(ep):
        codes.append("AUTHENTICATION_REQUIRED")
    if spec.required_roles or spec.required_permissions or ep.binder.uses_auth:
        codes.append("INSUFFICIENT_PERMISSIONS")
    if spec.rate_limit_per_minute:
        codes.append("RATE_LIMIT_EXCEEDED")
    if ep.needs_body:
        codes += ["PAYLOAD_TOO_LARGE", "UNSUPPORTED_MEDIA_TYPE", "INVALID_JSON"]
        if ep.binder.uses_body or (ep.body_schema is not None and ep.body_schema.expects_object):
            codes.append("INVALID_BODY")
    if ep.body_schema is not None or ep.query_schema is not None or ep.sanitizer is not None:
        codes.append("VALIDATION_ERROR")
    client = any(p.source in ("path", "query", "header", "body") for p in spec.params)
    if client or ep.page_sql is not None or write:  # writes: a bad Idempotency-Key
        codes.append("INVALID_PARAMETER")
    if ep.page_sql is not None and getattr(result.paginate, "keyset", None):
        codes.append("INVALID_CURSOR")
    if ep.client_values:
        codes.append("INVALID_VALUE")
    if result.shape == "object":
        codes.append(result.not_found or "RESOURCE_NOT_FOUND")
    elif result.not_found and result.shape in ("scalar", "none"):
        codes.append(result.not_found)
    if write:
        codes += ["DUPLICATE_RESOURCE", "REFERENCED_RESOURCE_MISSING", "CONSTRAINT_VIOLATION"]
        if spec.operation == "DELETE":
            codes.append("RESOURCE_IN_USE")
        codes += ["IDEMPOTENCY_KEY_IN_USE", "IDEMPOTENCY_KEY_REUSED"]
    codes += [code for code in _LITERAL.findall(spec.sql) if errors.defines(code)]
    codes += ["INTERNAL_ERROR", "TEMPLATE_ERROR"]
    if spec.is_read:
        codes.append("READ_ONLY_VIOLATION")
    if spec.max_concurrent is not None:
        codes.append("ENDPOINT_BUSY")
    codes += ["ENDPOINT_UNAVAILABLE", "DATABASE_CONNECTION_ERROR", "DATABASE_BUSY"]
    codes.append("TRANSACTION_CONFLICT")
    if write:
        codes.append("COMMIT_OUTCOME_UNKNOWN")
    if result.shape == "stream":
        codes.append("TOO_MANY_EXPORTS")
    codes.append("STATEMENT_TIMEOUT")
    return list(dict.fromkeys(codes))


def _summary(text: str | None, fallback: str) -> str:
    first = (text or "").strip().split("\n", 1)[0]
    cut = first.find(". ")
    first = first[: cut + 1] if 0 < cut < 120 else first
    return (first if len(first) <= 120 else first[:117] + "...") or fallback


def _ndjson(ep: CompiledEndpoint) -> bool:
    return ep.spec.result.stream_format != "csv"


class Operations:
    """Builds the operations of one catalogue generation, collecting the components
    they share (body schemas, page bodies, error answers, examples) as it goes."""

    def __init__(self, catalog: Catalog, max_body_bytes: int | None) -> None:
        self.catalog = catalog
        self.errors = catalog.errors
        self.max_body_bytes = max_body_bytes
        self.components: dict[str, dict[str, Any]] = {
            "schemas": {},
            "responses": {},
            "examples": {},
        }

    def operation(self, ep: CompiledEndpoint, template: str, name: str) -> dict[str, Any]:
        """The operation of ``ep`` at the document path ``template``, its operationId ``name``."""
        spec = ep.spec
        op: dict[str, Any] = {
            "tags": [spec.service_name or "default"],
            "summary": _summary(spec.description, spec.label),
            "description": self._notes(ep),
            "operationId": name,
            "parameters": self._parameters(ep, template),
        }
        body = self._request_body(ep)
        if body is not None:
            op["requestBody"] = body
        op["responses"] = {**self._success(ep), **self._errors(ep)}
        # anonymous calls are served, but a credential, when sent, is checked and used
        op["security"] = copy.deepcopy(AUTH) if needs_auth(ep) else [{}, *copy.deepcopy(AUTH)]
        if spec.required_roles:
            op["x-required-roles"] = list(spec.required_roles)
        if spec.required_permissions:
            op["x-required-permissions"] = list(spec.required_permissions)
        op["x-mapping-id"] = spec.id
        op["x-mapping-version"] = spec.version
        return op

    def _notes(self, ep: CompiledEndpoint) -> str:
        spec = ep.spec
        notes = [spec.description.strip()] if spec.description else []
        if spec.required_roles:
            notes.append(f"Needs one of the roles: {', '.join(spec.required_roles)}.")
        if spec.required_permissions:
            notes.append(f"Needs every permission: {', '.join(spec.required_permissions)}.")
        if needs_auth(ep) and not (spec.required_roles or spec.required_permissions):
            notes.append("Needs an authenticated caller.")
        notes += [
            f"`{p.name}` is the caller's `{p.claim}` claim (of the token or the API key), "
            "never a value of the request."
            for p in spec.params
            if p.source == "auth"
        ]
        if spec.rate_limit_per_minute:
            notes.append(f"At most {spec.rate_limit_per_minute} calls a minute per caller.")
        if ep.cacheable:
            notes.append(f"Answers are cached for {ep.cache.ttl_seconds} s (ETag, 304).")
        if ep.timeout_s:
            notes.append(f"The statement may run {ep.timeout_s:g} s, then 504.")
        if spec.result.shape == "stream":
            last = ', after a last line `{"error": <problem>}`' if _ndjson(ep) else ""
            notes.append(f"A stream that fails once started ends incomplete{last}.")
        return "\n\n".join(notes)

    # -- the request ---------------------------------------------------------

    def _parameters(self, ep: CompiledEndpoint, template: str) -> list[dict[str, Any]]:
        spec = ep.spec
        oids = ep.signature[0] if ep.signature else ()

        def oid(p: ParamSpec) -> int | None:
            return oids[p.position - 1] if p.position <= len(oids) else None

        out: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()
        # the document's path names its parameters as the path's oldest row does: a client
        # sends values only, so another row's names are said in the description
        names = [m[1] for m in PATH_PARAM.finditer(template)]
        for name, m in zip(names, PATH_PARAM.finditer(spec.path), strict=True):
            bound = next((p for p in spec.params if p.source == "path" and p.name == m[1]), None)
            schema = (
                param_schema(bound, oid(bound))
                if bound
                else dict(CONVERTERS.get(m[2] or "", STRING))
            )
            notes = [bound.description] if bound and bound.description else []
            if name != m[1]:
                notes.append(f"(bound as `{m[1]}`)")
            if m[2] == "path":
                notes.append("It may hold `/`: it is the rest of the path.")
            param = {"name": name, "in": "path", "required": True, "schema": schema}
            out.append({**param, "description": " ".join(notes)} if notes else param)
            seen.add(("path", name))

        query = ep.query_schema.validator.schema if ep.query_schema is not None else {}
        stored = query.get("properties") if isinstance(query, Mapping) else None
        stored = stored if isinstance(stored, Mapping) else {}
        stored_required = set(query.get("required") or ()) if stored else set()
        for p in spec.params:
            key = (p.source, p.name.lower() if p.source == "header" else p.name)
            if p.source not in ("query", "header") or key in seen:
                continue
            seen.add(key)
            schema = param_schema(p, oid(p))
            if p.source == "query":
                schema = narrowed(schema, stored.get(p.name))
            param = {"name": p.name, "in": p.source}
            if p.required or (p.source == "query" and p.name in stored_required):
                param["required"] = True
            notes = [p.description] if p.description else []
            if p.type == "array":
                notes.append(
                    "Values separated by commas"
                    + (", or the parameter repeated." if p.source == "query" else ".")
                )
            if notes:
                param["description"] = " ".join(notes)
            # a json parameter is JSON text in the query string or header
            param["content" if p.type == "json" else "schema"] = (
                {JSON: {"schema": schema}} if p.type == "json" else schema
            )
            out.append(param)

        paginate = spec.result.paginate if ep.page_sql is not None else None
        if paginate is not None:
            out += [p for p in self._page_parameters(paginate) if ("query", p["name"]) not in seen]
        refs = ["RequestId", "AcceptLanguage"]
        if ep.cacheable:
            refs.append("IfNoneMatch")
        if not spec.is_read and spec.result.shape != "stream":
            refs.append("IdempotencyKey")
        if paginate is not None and getattr(paginate, "count", None) == "on_request":
            refs.append("PreferCount")
        out += [
            ref("parameters", r)
            for r in refs
            if ("header", PARAMETERS[r]["name"].lower()) not in seen
        ]
        return out

    def _page_parameters(self, paginate: Any) -> list[dict[str, Any]]:
        limit = {
            "type": "integer",
            "minimum": 1,
            "maximum": paginate.max_limit,
            "default": paginate.limit,
        }
        out = [{"name": "limit", "in": "query", "description": "Rows per page.", "schema": limit}]
        if getattr(paginate, "keyset", None):
            out.append(
                {
                    "name": "after",
                    "in": "query",
                    "description": "The opaque cursor of the next page (`pagination.next` or the "
                    "`Link` header); none for the first page.",
                    "schema": dict(STRING),
                }
            )
        else:
            high = getattr(paginate, "max_offset", None)
            if high is None:
                high = _MAX_OFFSET
            offset = {"type": "integer", "minimum": 0, "maximum": high, "default": 0}
            out.append(
                {"name": "offset", "in": "query", "description": "Rows to skip.", "schema": offset}
            )
        return out

    @staticmethod
    def _stored(schema: Any, key: str) -> Any:
        """A stored schema as components/schemas/``key`` (a schema with an ``$id`` is its
        own resource: its references resolve against that, wherever it is)."""
        if isinstance(schema, Mapping) and "$id" in schema:
            return copy.deepcopy(dict(schema))
        return rebased(schema, f"#/components/schemas/{key}")

    def _request_body(self, ep: CompiledEndpoint) -> dict[str, Any] | None:
        if not ep.needs_body:
            return None
        if ep.body_schema is not None:
            # the schema as enforced: with additionalProperties false where the row
            # does not allow unknown fields
            enforced = ep.body_schema.validator.schema
            schemas = self.components["schemas"]
            key = _NOT_KEY.sub("_", ep.body_schema.name) or "body"
            stored = self._stored(enforced, key)
            if key in OWN_SCHEMAS or schemas.get(key, stored) != stored:
                key = f"{key}_{ep.spec.id}"  # another row's schema of the same name
                stored = self._stored(enforced, key)
            schemas[key] = stored
            return {
                "description": f"Checked against the schema `{ep.body_schema.name}`; an empty "
                "body counts as `{}`.",
                "required": bool(isinstance(enforced, Mapping) and enforced.get("required")),
                "content": {JSON: {"schema": ref("schemas", key)}},
            }
        properties: dict[str, Any] = {}
        required: list[str] = []
        for p in ep.spec.params:
            if p.source != "body" or p.name in properties:
                continue
            schema = param_schema(p)
            if p.required:
                required.append(p.name)
            else:
                schema = nullable(schema)  # null is the same as leaving it out
            properties[p.name] = (
                {**schema, "description": p.description} if p.description else schema
            )
        body: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            body["required"] = required
        return {
            "description": "A JSON object (other fields are ignored); an empty body counts as `{}`.",
            "required": bool(required),
            "content": {JSON: {"schema": body}},
        }

    # -- the answers -----------------------------------------------------------

    def _row(self, ep: CompiledEndpoint) -> dict[str, Any]:
        names = dict(ep.spec.result.fields)
        properties = {names.get(c, c): column_property(t) for c, t in ep.columns}
        return {"type": "object", "required": list(properties), "properties": properties}

    def _payload(self, ep: CompiledEndpoint) -> dict[str, Any]:
        shape = ep.spec.result.shape
        if shape == "list":
            return {"type": "array", "items": self._row(ep)}
        if shape == "object":
            return self._row(ep)
        return column_property(ep.columns[0][1]) if ep.columns else dict(NULL)  # scalar

    @staticmethod
    def _wrapped(
        envelope: Envelope, payload: dict[str, Any], pagination: dict[str, Any] | None, count: bool
    ) -> dict[str, Any]:
        """The body of :meth:`Envelope.wrap` around ``payload``."""
        properties: dict[str, Any] = {"data": payload}
        if envelope.include_metadata:
            meta = {
                "request_id": STRING,
                "endpoint": {"type": "string", "description": "method and path"},
            }
            if count:
                meta["count"] = INTEGER
            properties["meta"] = {"type": "object", "required": list(meta), "properties": meta}
        if pagination is not None:
            properties["pagination"] = pagination
        if envelope.include_timestamps:
            properties["timestamp"] = {"type": "string", "format": "date-time"}
        return {"type": "object", "required": list(properties), "properties": properties}

    def _success(self, ep: CompiledEndpoint) -> dict[str, Any]:
        spec, shape = ep.spec, ep.spec.result.shape
        headers: dict[str, Any] = {"X-Request-ID": ref("headers", "X-Request-ID")}
        if spec.rate_limit_per_minute:
            headers |= {
                h: ref("headers", h)
                for h in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
            }
        if shape == "stream":
            headers["Content-Disposition"] = ref("headers", "Content-Disposition")
            if _ndjson(ep):
                line = {**self._row(ep), "description": "one line of the export"}
                content = {"application/x-ndjson": {"schema": line}}
                text = "An NDJSON export: one JSON object a line."
            else:
                names = [dict(spec.result.fields).get(c, c) for c, _ in ep.columns]
                content = {"text/csv": {"schema": dict(STRING)}}
                text = f"A CSV export with a header row: {', '.join(names)}."
            return {"200": {"description": text, "headers": headers, "content": content}}

        paged = ep.page_sql is not None
        envelope = ep.paginated if paged and ep.paginated else ep.success  # as the engine renders
        for name, value in envelope.headers if envelope is not None else ():
            headers[name] = header_object("From the response template.", {"enum": [value]})
        paginate = spec.result.paginate
        if paged and has_links(paginate):
            headers["Link"] = ref("headers", "Link")
        if paged and getattr(paginate, "count", None) == "on_request":
            headers["Vary"] = header_object("`Prefer`: the answer depends on it.")
            headers["Preference-Applied"] = header_object(
                "`count=exact` when `pagination.total` was added.", {"enum": ["count=exact"]}
            )
        if ep.cacheable:
            headers |= {h: ref("headers", h) for h in ("ETag", "X-Cache", "Cache-Control")}
        if not spec.is_read:
            headers["Idempotent-Replayed"] = ref("headers", "Idempotent-Replayed")
        status = ep.shaper.status
        answer: dict[str, Any] = {"description": f"{phrase(status)}: no body.", "headers": headers}
        if shape != "none":
            payload = self._payload(ep)
            if paged:
                name, schema = pagination_schema(paginate)
                self.components["schemas"][name] = schema  # one per kind
                pagination = ref("schemas", name)
                if getattr(paginate, "count", None) == "exact":
                    pagination = {"allOf": [pagination, {"required": ["total"]}]}
                if envelope is not None:
                    body = self._wrapped(envelope, payload, pagination, count=True)
                else:  # shaping.default_page_body
                    properties = {"data": payload, "pagination": pagination}
                    body = {
                        "type": "object",
                        "required": list(properties),
                        "properties": properties,
                    }
            elif envelope is not None:
                body = self._wrapped(envelope, payload, None, count=shape == "list")
            else:
                body = payload
            what = (
                "a page of the rows"
                if paged
                else {"list": "the rows", "object": "the row"}.get(shape, "the value")
            )
            answer["description"] = f"{phrase(status)}: {what}."
            answer["content"] = {JSON: {"schema": body}}
        out = {str(status): answer}
        if ep.cacheable:
            out["304"] = {
                "description": "Not Modified: the ETag in If-None-Match still holds.",
                "headers": {h: ref("headers", h) for h in ("ETag", "X-Request-ID")},
            }
        return out

    def _errors(self, ep: CompiledEndpoint) -> dict[str, Any]:
        return self._answers(ep, route_codes(ep, self.errors))

    def _answers(
        self,
        ep: CompiledEndpoint,
        codes_of_route: Iterable[str],
        extra_headers: Mapping[int, Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """One shared answer per status listing its codes, and ``default``; ``extra_headers``:
        status -> headers those answers carry besides the usual ones."""
        by_status: dict[int, list[str]] = {}
        for code in codes_of_route:
            by_status.setdefault(self.errors.get(code).status, []).append(code)
        envelope = ep.error or self.catalog.default_error_envelope
        limited = (
            ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
            if ep.spec.rate_limit_per_minute
            else ()
        )
        out: dict[str, Any] = {}
        for status in sorted(by_status):
            codes = by_status[status]
            names = ["X-Request-ID", "Content-Language", *limited]
            if status == 401:
                names.append("WWW-Authenticate")
            if status in (429, 503):
                names.append("Retry-After")
            headers: dict[str, Any] = {h: ref("headers", h) for h in names}
            headers.update((extra_headers or {}).get(status, {}))
            for name, value in envelope.headers if envelope is not None else ():
                headers[name] = header_object("From the response template.", {"enum": [value]})
            listed = "; ".join(f"`{c}`: {self.errors.get(c).message}" for c in codes)
            if status == 413 and self.max_body_bytes:
                listed += f" (at most {self.max_body_bytes} bytes)"
            examples = {c: ref("examples", self._example(c)) for c in codes}
            response = {
                "description": f"{phrase(status)}. {listed}",
                "headers": headers,
                "content": {
                    PROBLEM_CONTENT_TYPE: {
                        "schema": ref("schemas", "Problem"),
                        "examples": examples,
                    }
                },
            }
            out[str(status)] = ref("responses", self._shared(f"E{status}", response))
        out["default"] = ref("responses", self._other_error())
        return out

    def _other_error(self) -> str:
        """The ``default`` answer, the same for every route: made once, with the table of
        every code (a catalogue of thousands of rows would rebuild it for each)."""
        responses = self.components["responses"]
        if "OtherError" not in responses:
            responses["OtherError"] = {
                "description": "Another code of api_error_codes, raised by a function the "
                "template calls; its status is the code's:\n\n" + self._code_table(),
                "content": {PROBLEM_CONTENT_TYPE: {"schema": ref("schemas", "Problem")}},
            }
        return "OtherError"

    def _code_table(self) -> str:
        lines = ["| code | status | message |", "|---|---|---|"]
        for code in self.errors.codes():
            entry = self.errors.get(code)
            message = entry.message.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| `{code}` | {entry.status} | {message} |")
        return "\n".join(lines)

    def _shared(self, prefix: str, response: dict[str, Any]) -> str:
        """The name of ``response`` under components/responses (one entry per content)."""
        digest = hashlib.blake2b(encode(response), digest_size=4).hexdigest()
        name = f"{prefix}.{digest}"
        self.components["responses"].setdefault(name, response)
        return name

    def _example(self, code: str) -> str:
        examples = self.components["examples"]
        if code not in examples:
            entry = self.errors.get(code)
            example: dict[str, Any] = {
                "summary": f"{code} ({entry.status})",
                "value": {
                    "type": PROBLEM_TYPE_PREFIX + code,
                    "title": entry.message,
                    "status": entry.status,
                    "detail": entry.message,
                    "instance": "/path/of/the/request",
                    "code": code,
                    "request_id": "4f3c2a1b0e9d-1",
                },
            }
            if entry.suggested_action:
                example["description"] = entry.suggested_action
            examples[code] = example
        return code
