"""The engine through a real PgBouncer in transaction mode (``ENGINE_PGBOUNCER=transaction``).

A PgBouncer of the test's own (Debian's ``/usr/sbin/pgbouncer``) sits in front of the
test database with ``pool_mode = transaction`` and three server connections per pool,
fewer than the engine's client connections, so consecutive transactions of one engine
connection land on different server connections. The engine's ``DATABASE_URL`` goes
through it; ``ENGINE_LISTEN_DATABASE_URL`` is the direct connection (LISTEN). Reads run as
the superuser through PgBouncer here, so only the per-transaction read-only guarantee
keeps a GET from writing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pytest

from engine import pgbouncer
from engine.admin import ROLE as ADMIN_ROLE
from engine.listener import listen_url
from engine.settings import Settings
from tests.engine_server import EngineClient, free_port
from tests.helpers import (
    add_endpoint,
    add_schema,
    assert_problem,
    poll,
    run_cli,
    serve,
    wait_status,
)
from tests.pg import DB, database_name

Maker = Callable[..., EngineClient]
POOL_SIZE = 3  # server connections per (database, user): fewer than the engine's clients


def _pgbouncer_binary() -> str | None:
    found = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    return found if os.access(found, os.X_OK) else None


@dataclass
class Bouncer:
    url: str  # the test database through PgBouncer
    version: str


def _server_of(url: str) -> tuple[str, int, str, str]:
    """(host or socket folder, port, user, password) of a PostgreSQL URL."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "localhost"])[0]
    port = int(query.get("port", [parts.port or 5432])[0])
    return host, port, parts.username or "postgres", parts.password or ""


def _run_as(host: str) -> str | None:
    """The user PgBouncer runs as: it refuses root. The owner of the server's socket folder
    may reach the socket; over TCP anyone may."""
    if os.geteuid() != 0:
        return None
    if host.startswith("/"):
        return pwd.getpwuid(os.stat(host).st_uid).pw_name
    return "nobody"


@pytest.fixture()
def bouncer(db_url: str) -> Iterator[Bouncer]:
    binary = _pgbouncer_binary()
    if binary is None:
        pytest.skip("pgbouncer is not installed (Debian: apt-get install pgbouncer; .ci/run does)")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    host, port, user, password = _server_of(db_url)
    folder = Path(tempfile.mkdtemp(prefix="engine-test-pgbouncer-"))
    listen = free_port()
    users = [user, "engine_reader"]
    (folder / "users.txt").write_text("".join(f'"{u}" "{password}"\n' for u in users))
    (folder / "pgbouncer.ini").write_text(
        f"""[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = trust
auth_file = {folder / "users.txt"}
pool_mode = transaction
default_pool_size = {POOL_SIZE}
max_client_conn = 200
server_lifetime = 3600
"""
    )
    command = [binary, str(folder / "pgbouncer.ini")]
    owner = _run_as(host)
    if owner is not None:
        entry = pwd.getpwnam(owner)
        for path in (folder, *folder.iterdir()):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        command[1:1] = ["-u", owner]
    log = (folder / "pgbouncer.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def listening() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"pgbouncer exited: {(folder / 'pgbouncer.log').read_text()}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", listen)) == 0

    try:
        poll(listening, bool, "pgbouncer listening", timeout_s=10)
        netloc = (
            f"{user}:{password}@127.0.0.1:{listen}" if password else f"{user}@127.0.0.1:{listen}"
        )
        url = urlunsplit(("postgresql", netloc, "/" + database_name(db_url), "", ""))
        yield Bouncer(url=url, version=version.splitlines()[0] if version else "?")
    finally:
        process.terminate()
        process.wait(10)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
def shop(db: DB) -> DB:
    """A table and the rows of the smoke set."""
    db.execute(
        """
        CREATE TABLE pb_items (
            id SERIAL PRIMARY KEY,
            tenant_id INTEGER NOT NULL DEFAULT 1,
            name TEXT NOT NULL UNIQUE,
            qty INTEGER NOT NULL
        );
        INSERT INTO pb_items (tenant_id, name, qty)
        SELECT 1 + (g % 2), 'item-' || g, g FROM generate_series(1, 5) AS g;
        CREATE VIEW pb_locked AS SELECT * FROM pb_items FOR UPDATE;
        CREATE TABLE pb_victims (id SERIAL PRIMARY KEY);
        CREATE FUNCTION pb_write() RETURNS INTEGER LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            INSERT INTO pb_victims DEFAULT VALUES;
            RETURN 1;
        END $$;
        CREATE FUNCTION pb_sneak() RETURNS INTEGER LANGUAGE plpgsql STABLE AS $$
        BEGIN
            RETURN pb_write();
        END $$;
        """
    )
    by_id = [{"name": "id", "in": "path", "type": "integer", "required": True}]
    add_endpoint(
        db,
        "/pb/items/{id}",
        "GET",
        "SELECT id, name, qty FROM pb_items WHERE id = $1",
        by_id,
        {"shape": "object", "not_found": "RESOURCE_NOT_FOUND"},
    )
    add_endpoint(
        db,
        "/pb/items",
        "GET",
        "SELECT id, name FROM pb_items ORDER BY id",
        result={"shape": "list", "paginate": {"limit": 2, "max_limit": 10}},
        target_table="pb_items",
        cache_enabled=True,
        cache_ttl_seconds=300,
    )
    add_endpoint(
        db,
        "/pb/names",
        "GET",
        "SELECT name FROM pb_items ORDER BY id",
        target_table="pb_items",
        cache_enabled=True,
        cache_ttl_seconds=300,
    )
    created = add_endpoint(
        db,
        "/pb/items",
        "POST",
        "INSERT INTO pb_items (name, qty) VALUES ($1, $2) RETURNING id, name, qty",
        [
            {"name": "name", "in": "body", "type": "string", "required": True},
            {"name": "qty", "in": "body", "type": "integer", "required": True},
        ],
        {"shape": "object", "status": 201},
        target_table="pb_items",
    )
    add_schema(
        db,
        created,
        {
            "type": "object",
            "required": ["name", "qty"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "qty": {"type": "integer", "minimum": 0},
            },
        },
    )
    add_endpoint(
        db,
        "/pb/export.ndjson",
        "GET",
        "SELECT g AS n FROM generate_series(1, 3000) AS g",
        result={"shape": "stream", "format": "ndjson"},
    )
    add_endpoint(
        db,
        "/pb/mine",
        "GET",
        "SELECT name FROM pb_items WHERE tenant_id = $1 ORDER BY id",
        [{"name": "tenant", "in": "auth", "type": "integer", "claim": "tenant_id"}],
        requires_auth=True,
    )
    add_endpoint(
        db,
        "/pb/sleep",
        "GET",
        "SELECT pg_sleep($1::float8) IS NULL AS slept",
        [{"name": "s", "in": "query", "type": "number", "required": True}],
        {"shape": "object"},
        statement_timeout_ms=300,
    )
    add_endpoint(
        db,
        "/pb/timeout",
        "GET",
        "SELECT current_setting('statement_timeout') AS limit, "
        "current_setting('transaction_read_only') AS read_only",
        result={"shape": "object"},
        statement_timeout_ms=1234,
    )
    add_endpoint(
        db,
        "/pb/switch",
        "GET",
        "SELECT set_config('default_transaction_read_only', 'off', false) AS s",
        result={"shape": "object"},
    )
    add_endpoint(db, "/pb/write", "GET", "SELECT pb_sneak() AS n", result={"shape": "object"})
    add_endpoint(db, "/pb/locked", "GET", "SELECT id FROM pb_locked")  # its plan locks rows
    return db


def test_the_smoke_set_through_pgbouncer_in_transaction_mode(
    shop: DB, bouncer: Bouncer, db_url: str, make_client: Maker
) -> None:
    print(f"through {bouncer.version}")
    client = serve(
        make_client,
        url=bouncer.url,
        pgbouncer="transaction",
        listen_database_url=db_url,
        read_database_url=bouncer.url,  # the superuser: only the transaction is read-only
    )
    services = client.engine.services
    assert services.db.read_guarantee.by_database is False
    assert client.get("/health/ready").status_code == 200
    # every row compiled in full through PgBouncer: its plan checked too
    warned = shop.fetch(
        "SELECT m.endpoint_path, s.warnings::text AS warnings FROM api_endpoint_status s "
        "JOIN api_endpoint_mappings m ON m.id = s.endpoint_mapping_id "
        "WHERE m.endpoint_path LIKE '/pb/%' AND s.warnings <> '[]'::jsonb"
    )
    assert [tuple(r) for r in warned] == []
    states = dict(
        shop.fetch(
            "SELECT m.endpoint_path, s.state FROM api_endpoint_status s "
            "JOIN api_endpoint_mappings m ON m.id = s.endpoint_mapping_id "
            "WHERE m.endpoint_path LIKE '/pb/%'"
        )
    )
    assert states.pop("/pb/locked") == "refused"
    assert set(states.values()) == {"serving"}

    # a GET by id with a path parameter, and its 404
    assert client.get("/pb/items/3").json() == {"id": 3, "name": "item-3", "qty": 3}
    assert_problem(client.get("/pb/items/999"), 404, "RESOURCE_NOT_FOUND")

    # a paginated list
    page = client.get("/pb/items", params={"limit": 2, "offset": 2}).json()
    assert [r["id"] for r in page["data"]] == [3, 4]

    # a cached read, invalidated by a write through the engine
    first = client.get("/pb/names")
    assert first.headers["x-cache"] == "MISS"
    assert client.get("/pb/names").headers["x-cache"] == "HIT"

    # a validated POST, a bad one, and one violating the unique name
    created = client.post("/pb/items", json={"name": "new", "qty": 7})
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "new"
    assert_problem(client.post("/pb/items", json={"name": "", "qty": -1}), 400, "VALIDATION_ERROR")
    assert_problem(
        client.post("/pb/items", json={"name": "new", "qty": 1}), 409, "DUPLICATE_RESOURCE"
    )
    names = poll(
        lambda: client.get("/pb/names"),
        lambda r: {"name": "new"} in r.json(),
        "the cached read invalidated by the POST",
    )
    assert names.headers["x-cache"] == "MISS"

    # a streamed export (a cursor in one transaction)
    with client.stream("GET", "/pb/export.ndjson") as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line]
    assert len(lines) == 3000 and lines[-1] == '{"n":3000}'

    # an authenticated call: the tenant comes from the token
    assert_problem(client.get("/pb/mine"), 401, "AUTHENTICATION_REQUIRED")
    mine = client.get("/pb/mine", headers=client.auth(tenant=2))
    assert mine.status_code == 200 and mine.json() == [{"name": f"item-{i}"} for i in (1, 3, 5)]

    # the statement timeout, per transaction: set on the server and enforced
    assert client.get("/pb/timeout").json() == {"limit": "1234ms", "read_only": "on"}
    assert_problem(client.get("/pb/sleep", params={"s": 5}), 504, "STATEMENT_TIMEOUT")
    assert client.get("/pb/sleep", params={"s": 0}).status_code == 200  # usable again

    # the read-only guarantee: a GET that writes is refused, even after a template switched
    # its session's default to writing
    assert_problem(client.get("/pb/write"), 500, "READ_ONLY_VIOLATION")
    assert client.get("/pb/switch").json() == {"s": "off"}
    for _ in range(2 * POOL_SIZE):  # whichever server connection the next reads land on
        assert_problem(client.get("/pb/write"), 500, "READ_ONLY_VIOLATION")
    assert shop.fetchval("SELECT count(*) FROM pb_victims") == 0

    # a reload after a row change, heard through LISTEN on the direct connection
    shop.execute(
        "UPDATE api_endpoint_mappings SET query_template = "
        "'SELECT id, upper(name) AS name, qty FROM pb_items WHERE id = $1' "
        "WHERE endpoint_path = '/pb/items/{id}'"
    )
    poll(
        lambda: client.get("/pb/items/3").json(),
        lambda body: body.get("name") == "ITEM-3",
        "the changed row served",
    )

    # admin API changes, each under a session advisory lock: on a direct connection, and
    # no lock is left behind on a server connection of PgBouncer's
    mid = shop.fetchval("SELECT id FROM api_endpoint_mappings WHERE endpoint_path = '/pb/switch'")
    admin = client.auth(sub="admin", roles=(ADMIN_ROLE,))
    for _ in range(2):
        off = client.post(f"/admin/v1/endpoints/{mid}/deactivate", headers=admin)
        assert off.status_code == 200 and off.json()["is_active"] is False, off.text
        wait_status(shop, mid, "draft")
        on = client.post(f"/admin/v1/endpoints/{mid}/activate", headers=admin)
        assert on.status_code == 200 and on.json()["is_active"] is True, on.text
        wait_status(shop, mid, "serving")
    assert not shop.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )

    # more concurrent requests than PgBouncer has server connections: every one 2xx
    paths = ["/pb/items/1", "/pb/names", "/pb/sleep?s=0.05", "/pb/items?limit=2"] * 15
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda p: client.get(p).status_code, paths))
    assert statuses == [200] * len(paths)
    created = list(
        ThreadPoolExecutor(max_workers=8).map(
            lambda i: client.post("/pb/items", json={"name": f"many-{i}", "qty": i}).status_code,
            range(16),
        )
    )
    assert created == [201] * 16
    assert client.get("/health/ready").status_code == 200


def test_reads_as_the_reader_role_through_pgbouncer(
    shop: DB, bouncer: Bouncer, db_url: str, make_client: Maker
) -> None:
    """Without ENGINE_READ_DATABASE_URL the reads log in as engine_reader through PgBouncer,
    when it lets that role in: the database refuses the write, as on a direct connection."""
    client = serve(
        make_client, url=bouncer.url, pgbouncer="transaction", listen_database_url=db_url
    )
    guarantee = client.engine.services.db.read_guarantee
    if not guarantee.by_database:
        pytest.skip(f"engine_reader cannot log in through PgBouncer here: {guarantee.line}")
    assert client.get("/pb/items/2").json()["name"] == "item-2"
    assert_problem(client.get("/pb/write"), 500, "READ_ONLY_VIOLATION")
    assert shop.fetchval("SELECT count(*) FROM pb_victims") == 0


def test_transaction_pooling_without_a_direct_url_is_refused_by_every_session_user() -> None:
    pooled = Settings(pgbouncer="transaction")
    for choose in (listen_url, pgbouncer.session_url):
        with pytest.raises(ValueError, match=r"^ENGINE_PGBOUNCER=transaction needs ENGINE_LISTEN"):
            choose(pooled, "postgresql://bouncer/db")
    direct = pooled.replace(listen_database_url="postgresql://direct/db")
    assert listen_url(direct, "postgresql://bouncer/db") == "postgresql://direct/db"
    assert pgbouncer.session_url(direct, "postgresql://bouncer/db") == "postgresql://direct/db"
    off = Settings(listen_database_url="postgresql://direct/db")
    assert listen_url(off, "postgresql://main/db") == "postgresql://direct/db"
    assert pgbouncer.session_url(off, "postgresql://main/db") == "postgresql://main/db"


def test_serve_refuses_transaction_pooling_without_a_direct_url() -> None:
    """One line, exit 2, before anything connects (nothing listens at this URL)."""
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/engine"
    done = run_cli("serve", "--port", str(free_port()), url=url, ENGINE_PGBOUNCER="transaction")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: bad setting: ENGINE_PGBOUNCER=transaction needs ENGINE_LISTEN_DATABASE_URL, a "
        "direct connection (not through PgBouncer) for LISTEN and migrations: a LISTEN through "
        "transaction pooling never hears a notification"
    ]


def test_migrate_goes_over_the_direct_connection(bouncer: Bouncer, db_url: str) -> None:
    """The command-line verbs hold session advisory locks: never through PgBouncer."""
    done = run_cli(
        "migrate",
        url=bouncer.url,
        ENGINE_PGBOUNCER="transaction",
        ENGINE_LISTEN_DATABASE_URL=db_url,
    )
    assert done.returncode == 0, done.stderr
    assert "schema up to date" in done.stdout
