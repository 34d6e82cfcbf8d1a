"""``GET /docs``: the Swagger UI page, its engine-served assets, and a real browser on it."""

from __future__ import annotations

import http.client
import itertools
import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from engine import docs
from tests.engine_server import EngineClient
from tests.helpers import add_endpoint, assert_problem, poll, serve
from tests.pg import DB

# a camera path and a WFM path of the seeds (seeds/*/0*_endpoints.sql)
SEEDED_PATHS = ("/api/v1/cameras", "/api/v1/db/database/forecasts")
_REFERENCE = re.compile(r'(?:src|href)="([^"]+)"')


def _references(html: str) -> list[str]:
    """The asset URLs the page loads (relative to /docs, so ``docs/...``)."""
    return [ref for ref in _REFERENCE.findall(html) if ref.startswith("docs/")]


def raw_request(client: EngineClient, method: str, path: str) -> httpx.Response:
    """``method path`` sent byte for byte (httpx would resolve ``..`` before sending)."""
    conn = http.client.HTTPConnection("127.0.0.1", client.engine.port, timeout=30)
    try:
        conn.request(method, path)
        answer = conn.getresponse()
        body = answer.read()
        return httpx.Response(answer.status, headers=answer.getheaders(), content=body)
    finally:
        conn.close()


def test_the_page_is_swagger_ui_over_the_relative_openapi_document(client: EngineClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    html = response.text
    assert f"<title>{docs.PAGE_TITLE}</title>" in html
    assert 'data-openapi-url="openapi.json"' in html  # relative: works behind a path prefix
    refs = _references(html)
    assert any(r.startswith("docs/swagger-ui-bundle.js?v=") for r in refs), refs
    assert any(r.startswith("docs/swagger-ui.css?v=") for r in refs), refs
    assert any(r.startswith(f"docs/{docs.INITIALIZER}?v=") for r in refs), refs
    assert "<script>" not in html  # nothing inline: the policy allows only 'self'
    assert not re.search(r"https?://", html), "the page names no other host"
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "default-src 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-cache"

    head = client.head("/docs")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == response.headers["content-type"]
    assert int(head.headers["content-length"]) == len(response.content)

    again = client.get("/docs", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


def test_docs_with_a_slash_lands_on_the_page(client: EngineClient) -> None:
    response = client.get("/docs/?x=1")
    assert response.status_code == 308
    assert response.headers["location"] == "../docs?x=1"  # relative: behind a prefix too
    followed = client.get("/docs/", follow_redirects=True)
    assert followed.status_code == 200
    assert followed.url.path == "/docs"
    assert followed.text == client.get("/docs").text


def test_the_initializer_configures_swagger_ui(client: EngineClient) -> None:
    response = client.get(f"/docs/{docs.INITIALIZER}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    script = response.text
    for option in (
        "deepLinking: true",
        "tryItOutEnabled: true",
        "persistAuthorization: true",
        "displayRequestDuration: true",
        "validatorUrl: null",  # the default validator badge would call an outside service
    ):
        assert option in script


BUNDLE_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "swagger-ui-bundle.js.map": "application/json; charset=utf-8",
    "oauth2-redirect.html": "text/html; charset=utf-8",
}


def test_bundle_files_are_served_with_type_and_long_caching(client: EngineClient) -> None:
    for name, content_type in BUNDLE_FILES.items():
        response = client.get(f"/docs/{name}?v=anything")
        assert response.status_code == 200, name
        assert response.headers["content-type"] == content_type, name
        assert response.content == docs.asset(name).body, name  # type: ignore[union-attr]
        assert response.headers["cache-control"] == "public, max-age=31536000"
        assert response.headers["x-content-type-options"] == "nosniff"
        etag = response.headers["etag"]
        assert re.fullmatch(r'"[0-9a-f]{32}"', etag)

        head = client.head(f"/docs/{name}")
        assert head.status_code == 200, name
        assert head.content == b""
        assert head.headers["etag"] == etag
        assert head.headers["content-type"] == content_type
        assert int(head.headers["content-length"]) == len(response.content)

        cached = client.get(f"/docs/{name}", headers={"If-None-Match": f"W/{etag}"})
        assert cached.status_code == 304, name
        assert cached.content == b""
        assert cached.headers["etag"] == etag


def test_every_asset_the_page_references_loads(client: EngineClient) -> None:
    for ref in _references(client.get("/docs").text):
        response = client.get(f"/{ref}")
        assert response.status_code == 200, ref
        assert response.content, ref


NOT_ANSWERED = (
    "/docs/../../etc/passwd",
    "/docs/..%2f..%2fetc%2fpasswd",
    "/docs/%2e%2e/%2e%2e/etc/passwd",
    "/docs/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/docs/%252e%252e%252fetc%252fpasswd",
    "/docs/..%5c..%5cetc%5cpasswd",
    "/docs//etc/passwd",
    "/docs/swagger-ui.css/../../../etc/passwd",
    "/docs/./swagger-ui.css",
    "/docs/%00",
    "/docs/index.j2",  # files of the bundle's folder that are not this page's
    "/docs/swagger-initializer.js",
    "/docs/index.html",
    "/docs/no-such-file.js",
)


def test_only_the_bundles_own_files_are_answered(client: EngineClient) -> None:
    for path in NOT_ANSWERED:
        response = raw_request(client, "GET", path)
        body = assert_problem(response, 404, "ROUTE_NOT_FOUND")
        assert "root:" not in response.text, path
        assert body["instance"].startswith("/docs/"), path


def _kept_entries() -> int:
    """Entries held by every ``functools`` cache of engine.docs."""
    caches = [f for f in vars(docs).values() if hasattr(f, "cache_info")]
    assert caches, "engine.docs keeps its assets in a functools cache"
    return sum(f.cache_info().currsize for f in caches)


def test_unknown_names_are_never_kept(client: EngineClient) -> None:
    """``GET /docs/<random>`` cannot grow the process: only the bundle's files are kept."""
    for ref in _references(client.get("/docs").text):  # whatever a real visit loads
        assert client.get(f"/{ref}").status_code == 200
    before = _kept_entries()
    for _ in range(200):
        unknown = f"/docs/{uuid.uuid4().hex}.js"
        assert_problem(client.get(unknown), 404, "ROUTE_NOT_FOUND")
    for _ in range(10_000):
        assert docs.asset(uuid.uuid4().hex) is None
    assert _kept_entries() == before
    assert docs.asset("swagger-ui.css") is docs.asset("swagger-ui.css")  # known: read once


def test_head_of_an_unknown_asset_is_a_bodiless_404(client: EngineClient) -> None:
    response = client.head("/docs/no-such-file.js")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.content == b""


def test_other_methods_are_refused(client: EngineClient) -> None:
    for path in ("/docs", "/docs/swagger-ui.css", "/docs/nothing"):
        for method in ("POST", "PUT", "PATCH", "DELETE", "PROPFIND"):  # OPTIONS: engine.cors
            response = raw_request(client, method, path)
            assert_problem(response, 405, "METHOD_NOT_ALLOWED")
            assert response.headers["allow"] == "GET, HEAD", (method, path)


def test_the_catalogue_never_sees_docs_paths(
    db: DB, make_client: Callable[..., EngineClient]
) -> None:
    """A row published under /docs cannot take the page's paths over."""
    add_endpoint(db, "/docs/secret", sql="SELECT 'the row answered' AS who")
    add_endpoint(db, "/docs", method="POST", sql="SELECT 'the row answered' AS who")
    client = serve(make_client)
    assert_problem(client.get("/docs/secret"), 404, "ROUTE_NOT_FOUND")
    assert_problem(client.post("/docs"), 405, "METHOD_NOT_ALLOWED")
    assert client.get("/docs").headers["content-type"].startswith("text/html")


def test_the_documents_server_is_where_the_page_found_it(client: EngineClient) -> None:
    """Swagger UI's "Try it out" resolves the server URL against the document's URL:
    behind a path prefix (a proxy serving the engine at /prefix/) calls stay under it."""
    (server,) = _documented(client)["servers"]
    for document in (
        f"http://127.0.0.1:{client.engine.port}/openapi.json",
        "https://example.test/prefix/openapi.json",
    ):
        base = urllib.parse.urljoin(document, server["url"])
        assert base == document.removesuffix("openapi.json"), (document, base)


# --- a real browser -----------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Keep the browser itself off the network: its own background calls (updates, sign-in)
# go to a closed local port and no name but the engine's resolves.
_OFFLINE = (
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-domain-reliability",
    "--no-pings",
    "--disable-client-side-phishing-detection",
    "--disable-features=AutofillServerCommunication,OptimizationHints,Translate,MediaRouter",
    "--proxy-server=http://127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


def _page_requests(net_log: Path, site: str) -> list[str]:
    """URLs the page (not the browser's own services) asked for, from Chromium's NetLog."""
    log = json.loads(net_log.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log["events"]:
        params = event.get("params") or {}
        if event["type"] == start and params.get("network_isolation_key", "").startswith(site):
            urls.append(params["url"])
    return urls


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary on PATH (Debian's `chromium` package; .ci/run installs it "
    "when it runs as root with apt-get)",
)


def _browser(profile: Path, *args: str) -> list[str]:
    return [
        str(CHROMIUM),
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        *_OFFLINE,
        *args,
    ]


def _documented(client: EngineClient) -> dict[str, Any]:
    spec = client.get("/openapi.json")
    assert spec.status_code == 200, "the page shows /openapi.json, which the engine must serve"
    return spec.json()


@needs_chromium
def test_a_browser_lists_the_seeded_endpoints_offline(client: EngineClient, tmp_path: Path) -> None:
    documented = set(_documented(client)["paths"])
    expected = {p for p in SEEDED_PATHS if p in documented}
    assert expected, f"none of {SEEDED_PATHS} is in /openapi.json"

    base = f"http://127.0.0.1:{client.engine.port}"
    net_log = tmp_path / "net.json"
    run = subprocess.run(
        _browser(
            tmp_path / "profile",
            "--enable-logging=stderr",
            "--v=1",  # console messages (CSP violations among them) reach stderr
            f"--log-net-log={net_log}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            f"{base}/docs",
        ),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    dom = run.stdout
    assert "Failed to load API definition" not in dom, dom[:3000]
    listed = set(re.findall(r'data-path="([^"]+)"', dom))
    assert expected <= listed, f"missing {expected - listed}"
    assert documented <= listed, f"documented but not shown: {documented - listed}"

    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    refused = [line for line in console if "Content Security Policy" in line]
    assert not refused, refused
    failed = [line for line in console if "Failed to load resource" in line]
    assert not failed, failed

    requested = _page_requests(net_log, "http://127.0.0.1")
    assert f"{base}/openapi.json" in requested, requested
    outside = [url for url in requested if not url.startswith(f"{base}/")]
    assert not outside, f"the page fetched from elsewhere: {outside}"


class _DevTools:
    """The smallest Chrome DevTools Protocol client: call a method, await its answer."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:  # events in between are not needed here
            message = json.loads(self.ws.recv(timeout=30))
            if message.get("id") == call_id:
                assert "error" not in message, message
                return message["result"]

    def js(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in answer, answer
        return answer["result"].get("value")


@needs_chromium
def test_try_it_out_calls_the_engine_from_the_page(client: EngineClient, tmp_path: Path) -> None:
    operation = _documented(client)["paths"]["/_engine/health"]["get"]
    # Swagger UI's element id of an operation, which deep linking also opens
    block = f"#operations-{operation['tags'][0]}-{operation['operationId']}"
    link = f"#/{operation['tags'][0]}/{operation['operationId']}"
    base = f"http://127.0.0.1:{client.engine.port}"
    profile = tmp_path / "profile"
    browser = subprocess.Popen(
        _browser(profile, "--remote-debugging-port=0", f"{base}/docs{link}"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        poll(port_file.exists, bool, "chromium's DevTools port", timeout_s=60)
        port = poll(lambda: port_file.read_text().split(), bool, "DevTools port", 10)[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=30) as answer:
            pages = [t for t in json.load(answer) if t["type"] == "page"]
        with ws_connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=30) as ws:
            tools = _DevTools(ws)
            execute = f"document.querySelector('{block} .btn.execute')"
            poll(lambda: tools.js(f"!!{execute}"), bool, "the Execute button", timeout_s=60)
            tools.js(f"{execute}.click(), true")
            status = f"{block} .live-responses-table tr.response .response-col_status"
            shown = poll(
                lambda: tools.js(f"(document.querySelector('{status}') || {{}}).textContent"),
                bool,
                "the live response",
                timeout_s=60,
            )
            assert shown.strip().startswith("200"), shown
            text = tools.js(f"document.querySelector('{block}').innerText")
            assert "Request duration" in text
            assert "catalog_generation" in text  # the engine's own answer, shown on the page
    finally:
        browser.terminate()
        browser.wait(30)
