"""``GET /docs``: Swagger UI over the live ``/openapi.json``, served by the engine itself.

The page's scripts and styles come from the ``swagger-ui-bundle-v2`` wheel (Swagger
UI 5, which renders OpenAPI 3.1) and are answered from memory under ``/docs/``: no
CDN, so the page works offline and its Content-Security-Policy can say
``script-src 'self'``. Only the files of the bundle's own folder (plus the page's
small initializer) can be answered: a name is looked up in a fixed table, never
joined onto a filesystem path, so ``..`` in any spelling is simply an unknown name.

Every reference on the page is relative (``docs/...``, ``openapi.json``) so it
works behind a path prefix; asset URLs carry a content hash (``?v=``) so they can
be cached for a year and still change when the bundle is upgraded.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources.abc import Traversable

from starlette.requests import Request
from starlette.responses import Response
from swagger_ui_bundle import swagger_ui_path

from engine.cache import etag_matches, etag_of
from engine.errors import ApiError
from engine.problems import own_route, problem

PAGE_TITLE = "API documentation"
OPENAPI_URL = "openapi.json"  # relative to /docs: the engine's /openapi.json, under any prefix
INITIALIZER = "engine-docs.js"

ASSET_CACHE_CONTROL = "public, max-age=31536000"
PAGE_CACHE_CONTROL = "no-cache"  # always revalidated (ETag), so new asset hashes are seen
# Everything from this origin, nothing inline, nothing from elsewhere; data: images are
# the SVG icons inside swagger-ui.css.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'self'; "
    "frame-ancestors 'none'"
)

_CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json; charset=utf-8",
    ".png": "image/png",
    ".html": "text/html; charset=utf-8",
}
# the bundle's demo page and its petstore configuration: not this engine's page
_NOT_SERVED = frozenset({"index.html", "index.j2", "swagger-initializer.js"})

_INITIALIZER_JS = """\
"use strict";
// Swagger UI over this engine's live OpenAPI description (see engine/docs.py).
(function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: new URL(root.dataset.openapiUrl, document.baseURI).href,
    dom_id: "#swagger-ui",
    deepLinking: true,
    tryItOutEnabled: true,
    persistAuthorization: true,
    displayRequestDuration: true,
    filter: true,
    validatorUrl: null,
    oauth2RedirectUrl: new URL("docs/oauth2-redirect.html", document.baseURI).href,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
})();
"""

_PAGE_HTML = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="{swagger_ui_css}">
<link rel="stylesheet" href="{index_css}">
<link rel="icon" type="image/png" sizes="32x32" href="{favicon_32}">
<link rel="icon" type="image/png" sizes="16x16" href="{favicon_16}">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
<noscript>This page needs JavaScript. The API description is at
<a href="{openapi_url}">{openapi_url}</a>.</noscript>
<script src="{bundle_js}"></script>
<script src="{initializer_js}"></script>
</body>
</html>
"""


@dataclass(frozen=True)
class Asset:
    """One answerable file: its bytes, type and strong ETag."""

    body: bytes
    content_type: str
    etag: str
    cache_control: str = ASSET_CACHE_CONTROL

    @classmethod
    def of(cls, body: bytes, content_type: str, cache_control: str = ASSET_CACHE_CONTROL) -> Asset:
        return cls(body, content_type, etag_of(body), cache_control)


def _bundle_files(folder: Traversable) -> dict[str, Traversable]:
    return {
        entry.name: entry
        for entry in folder.iterdir()
        if entry.is_file()
        and entry.name not in _NOT_SERVED
        and _suffix(entry.name) in _CONTENT_TYPES
    }


def _suffix(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:] if dot > 0 else ""


_FILES: Mapping[str, Traversable] = _bundle_files(swagger_ui_path)


_NAMES: frozenset[str] = frozenset({*_FILES, INITIALIZER})


def asset(name: str) -> Asset | None:
    """The asset answered at ``/docs/<name>``, or None; read once, then kept.

    Only names of :data:`_NAMES` reach the cache: a client sending random names
    must not grow it (an unknown name is never kept, not even as None).
    """
    return _load(name) if name in _NAMES else None


@functools.cache
def _load(name: str) -> Asset:
    if name == INITIALIZER:
        return Asset.of(_INITIALIZER_JS.encode(), _CONTENT_TYPES[".js"])
    return Asset.of(_FILES[name].read_bytes(), _CONTENT_TYPES[_suffix(name)])


def asset_names() -> frozenset[str]:
    """Every name answered under ``/docs/``."""
    return _NAMES


def _versioned(name: str) -> str:
    found = asset(name)
    if found is None:  # a bundle without this file: the reference 404s, the page still loads
        return f"docs/{name}"
    version = hashlib.blake2b(found.body, digest_size=6).hexdigest()
    return f"docs/{name}?v={version}"


@functools.cache
def page() -> Asset:
    """The HTML of ``/docs``."""
    html = _PAGE_HTML.format(
        title=PAGE_TITLE,
        openapi_url=OPENAPI_URL,
        swagger_ui_css=_versioned("swagger-ui.css"),
        index_css=_versioned("index.css"),
        favicon_32=_versioned("favicon-32x32.png"),
        favicon_16=_versioned("favicon-16x16.png"),
        bundle_js=_versioned("swagger-ui-bundle.js"),
        initializer_js=_versioned(INITIALIZER),
    )
    return Asset.of(html.encode(), _CONTENT_TYPES[".html"], PAGE_CACHE_CONTROL)


def _send(request: Request, found: Asset) -> Response:
    headers = {
        "ETag": found.etag,
        "Cache-Control": found.cache_control,
        "X-Content-Type-Options": "nosniff",
    }
    if found.content_type.startswith("text/html"):
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    if etag_matches(request.headers.get("if-none-match"), found.etag):
        return Response(status_code=304, headers=headers)
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(found.body))
        return Response(status_code=200, headers=headers, media_type=found.content_type)
    return Response(found.body, headers=headers, media_type=found.content_type)


async def docs_page(request: Request) -> Response:
    """``GET /docs``: the Swagger UI page."""
    return _send(request, page())


async def docs_asset(request: Request) -> Response:
    """``GET /docs/<name>``: a file of the bundle; ``/docs/`` goes to the page."""
    name = request.path_params["name"]
    if name == "":
        # relative, so that it lands on the page behind any path prefix too
        query = request.url.query
        location = "../docs" + (f"?{query}" if query else "")
        return Response(status_code=308, headers={"Location": location})
    found = asset(name)
    if found is None:
        return problem(
            request,
            ApiError(
                "ROUTE_NOT_FOUND", f"No documentation asset is published at {request.url.path}"
            ),
        )
    return _send(request, found)


# every method of a /docs path is answered here (405 for all but GET and HEAD), so the
# catalogue's dispatcher never sees one
routes = [
    own_route("/docs", docs_page),
    own_route("/docs/{name:path}", docs_asset),
]
