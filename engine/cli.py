"""Command line: one subcommand (verb) per operator task; ``python -m engine --help`` lists them.

Help text is plain (no markup): it is read in a terminal. Every verb is added in
:func:`build_parser` with a one-line ``help`` (the top-level listing) and a
``description`` (its own ``--help``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from engine import accesslog, keys, logs, migrations, pgbouncer, pgserver, replicas, roles
from engine.admin import cli as admin_cli
from engine.auth import dev_secret, mint_token
from engine.catalog import Catalog, RowStatus, ddl_watched, load_catalog
from engine.database import init_connection
from engine.scaffold import cli as scaffold_cli
from engine.settings import Settings, documented_settings

log = logging.getLogger("engine")
EMBEDDED_DATABASE = "engine"


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def _ensure_database(url: str, name: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def resolve_database(settings: Settings) -> tuple[str, bool]:
    """(database URL, embedded?) — starting the embedded server when DATABASE_URL is unset."""
    if settings.database_url:
        return settings.database_url, False
    handle = pgserver.start(Path(settings.pgdata))
    base = handle.get_uri()
    asyncio.run(_ensure_database(base, EMBEDDED_DATABASE))
    url = _with_database(base, EMBEDDED_DATABASE)
    log.info("embedded PostgreSQL running, data in %s", settings.pgdata)
    return url, True


def jwt_secret_for(settings: Settings, embedded: bool) -> str | None:
    if settings.jwt_secret:
        return settings.jwt_secret
    if embedded:
        return dev_secret(Path(settings.pgdata).parent)
    return None


async def _connect(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url)
    await init_connection(conn)
    return conn


async def _migrate(url: str) -> int:
    conn = await _connect(url)
    try:
        applied = await migrations.migrate(conn)
    finally:
        await conn.close()
    for name in applied:
        print(f"applied sql/{name}")
    print(f"migrations: {len(applied)} applied, schema up to date")
    return 0


async def _seed(url: str, domains: Sequence[str], scale: int | None = None) -> int:
    conn = await _connect(url)
    try:
        applied = await migrations.seed(conn, domains, scale=scale)
    finally:
        await conn.close()
    for name in applied:
        print(f"seeded seeds/{name}")
    print(f"seeds: {len(applied)} file(s) applied")
    return 0


STATUS_OF_RUNNING = """
SELECT endpoint_mapping_id, version, state, serving_version
FROM api_endpoint_status WHERE state = 'stale'
"""


def _state_label(status: RowStatus, running: dict[int, Any]) -> str:
    """A row's state, noting when the running engine still serves an older version of it."""
    seen = running.get(status.mapping_id)
    if status.state == "refused" and seen is not None and seen["version"] == status.version:
        return f"stale (the running engine still serves v{seen['serving_version']})"
    return status.state


def _print_all_routes(catalog: Catalog, running: dict[int, Any]) -> None:
    """``routes --all``: every mapping row, served or not, with its state and reason."""
    for status in sorted(catalog.statuses, key=lambda s: (s.path, s.method, s.mapping_id)):
        ep = catalog.serving.get(status.mapping_id) or catalog.compiled.get(status.mapping_id)
        about = f"id={status.mapping_id}, v{status.version}"
        if ep is not None:
            about += f", {ep.spec.result.shape}, {'auth' if ep.spec.requires_auth else 'public'}"
        reason = status.reason
        if status.state == "draft":
            reason = "inactive (is_active = false)" + (f"; {reason}" if reason else "")
        state = _state_label(status, running).upper()
        line = f"{state:<8} {status.method:<7}{status.path}  ({about})"
        print(line if reason is None else f"{line}: {reason}")
    for p in catalog.problems:
        if p.source != "api_endpoint_mappings":  # a mapping row's reason is on its line
            print(f"PROBLEM {p}")
    print(
        f"{len(catalog.statuses)} row(s): "
        + ", ".join(f"{n} {state}" for state, n in catalog.state_counts().items())
    )


async def _check(
    url: str,
    settings: Settings,
    *,
    routes_only: bool = False,
    all_rows: bool = False,
    strict: bool = False,
) -> int:
    conn = await _connect(url)
    try:
        catalog = await load_catalog(conn, default_timeout_ms=settings.statement_timeout_ms)
        watched = await ddl_watched(conn)
        running = {r["endpoint_mapping_id"]: r for r in await conn.fetch(STATUS_OF_RUNNING)}
        reads = None if routes_only else await _read_guarantee(url, settings, conn)
        # database_failover_config: refused rows are problems, a replica down a warning
        lag_s = settings.max_replica_lag_s
        replica_lines = (
            []
            if routes_only
            else await replicas.check_report(
                conn, os.environ, lag_s, pgbouncer.connect_kwargs(settings)
            )
        )
    finally:
        await conn.close()
    if routes_only and all_rows:
        _print_all_routes(catalog, running)
        return 0
    if routes_only:
        for ep in sorted(catalog.endpoints, key=lambda e: (e.spec.path, e.spec.method)):
            s = ep.spec
            auth = "auth" if s.requires_auth else "public"
            print(f"{s.method:<7}{s.path}  (id={s.id}, {s.result.shape}, {auth})")
        for p in catalog.problems:
            print(f"SKIPPED {p}")
        return 0
    for status in catalog.statuses:
        state = _state_label(status, running)
        line = f"{state.upper():<8} {status.method:<7}{status.path}  (id={status.mapping_id}, v{status.version})"
        print(line if status.reason is None else f"{line}: {status.reason}")
    for p in catalog.problems:
        print(f"PROBLEM {p}")
    for p in catalog.warnings:
        print(f"WARNING {p}")
    if not watched:
        print(
            "WARNING schema drift is not watched: the event trigger engine_ddl_watch is missing "
            "(sql/006 creates it when migrations run as a superuser)"
        )
    read_warning = reads is None or not reads.by_database
    print(f"{'WARNING' if read_warning else 'READS'} {reads.line if reads else _NO_READS}")
    for kind, text in replica_lines:
        print(f"{kind} {text}")
    replica_problems = sum(kind == "PROBLEM" for kind, _ in replica_lines)
    replica_warnings = sum(kind == "WARNING" for kind, _ in replica_lines)
    counts = catalog.state_counts()
    print(
        f"{len(catalog.endpoints)} endpoint(s) ok, "
        f"{len(catalog.problems) + replica_problems} problem(s), "
        f"{len(catalog.warnings) + (not watched) + read_warning + replica_warnings} warning(s); "
        "rows: " + ", ".join(f"{n} {state}" for state, n in counts.items())
    )
    if catalog.problems or replica_problems:
        return 1
    warned = catalog.warnings or not watched or read_warning or replica_warnings
    return 1 if strict and warned else 0


_NO_READS = "reads: ENGINE_READ_DATABASE_URL does not connect, so the engine would not start"


async def _read_guarantee(
    url: str, settings: Settings, conn: asyncpg.Connection
) -> roles.ReadGuarantee | None:
    """What keeps reads from writing with these settings (engine/roles.py); None when the
    read URL does not connect."""
    try:
        return await roles.read_guarantee(url, settings, conn)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("ENGINE_READ_DATABASE_URL does not connect: %s", type(exc).__name__)
        return None


def _known_seed_domains(domains: Sequence[str]) -> None:
    """Refuse an unknown ``serve --seed`` domain now: the boot would retry it for ever."""
    available = migrations.seed_domains() if migrations.SEEDS_DIR.exists() else []
    unknown = [d for d in domains if d not in available]
    if unknown:
        raise migrations.MigrationError(
            f"unknown seed domain(s): {', '.join(unknown)}; available: {', '.join(available)}"
        )


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from engine import boot
    from engine.app import create_app
    from engine.server import EngineServer, engine_config

    accesslog.enabled(settings.access_log)  # a bad value stops here, before any work
    pgbouncer.check(settings)  # transaction pooling without a direct URL: refused here
    _known_seed_domains(args.seed or ())
    url, embedded = resolve_database(settings)  # the embedded server: once, whatever N
    secret = jwt_secret_for(settings, embedded)
    count = args.workers or settings.workers
    if count > 1:
        return _serve_workers(settings, args, count, url, secret, embedded=embedded)
    # --migrate and --seed are the boot's first steps (engine/boot.py): retried until the
    # database answers, so a database down at start does not stop serve
    app = create_app(
        settings, url, jwt_secret=secret, migrate=args.migrate, seed=args.seed, settle_heap=True
    )
    urls = {"DATABASE_URL": url}
    if settings.read_database_url:
        urls["ENGINE_READ_DATABASE_URL"] = settings.read_database_url
    if settings.listen_database_url:
        urls["ENGINE_LISTEN_DATABASE_URL"] = settings.listen_database_url
    refused = asyncio.run(boot.preflight(urls))
    if refused is not None:  # wrong password, unknown role or database: waiting cannot help
        print(f"error: {refused}", file=sys.stderr)
        return 1
    if embedded and not settings.jwt_secret:
        log.warning(
            "development JWT secret in use (ENGINE_JWT_SECRET unset); mint a token with: "
            "python -m engine token --sub demo --tenant 1 --roles camera_admin"
        )
    log.info("settings: %s", settings.redacted())
    host = args.host or settings.host
    port = args.port or settings.port
    sys.stdout.flush()  # what was printed goes out before the access log's first lines
    # engine_config: the engine's protocol (header timeout, connection cap), the lifespan
    # on, uvicorn's access log off (ENGINE_ACCESS_LOG is the engine's) and proxy headers
    # off (X-Forwarded-For is ENGINE_TRUSTED_PROXIES' business)
    config = engine_config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        # json: no uvicorn handlers, its records reach the root logger's JSON handler
        log_config=None if logs.is_json(settings.log_format) else uvicorn.config.LOGGING_CONFIG,
    )
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C before the signal handlers are set
        EngineServer(config, settings).run()  # drains on SIGTERM/SIGINT, then returns
    log.info("engine stopped")
    return 0


def _stop_waiting(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _serve_workers(
    settings: Settings,
    args: argparse.Namespace,
    count: int,
    url: str,
    secret: str | None,
    *,
    embedded: bool,
) -> int:
    """``serve --workers N`` (N > 1): what must run once runs here, then uvicorn's
    supervisor runs N workers on one socket (engine/workers.py)."""
    from engine import boot, workers

    log.info("settings: %s", settings.redacted())
    # no worker runs yet: SIGTERM while the database is waited for is a plain exit
    previous = signal.signal(signal.SIGTERM, _stop_waiting)
    try:
        sized = asyncio.run(
            workers.prepare(url, settings, count, migrate=args.migrate, seed=args.seed)
        )
        urls = (
            {"ENGINE_READ_DATABASE_URL": settings.read_database_url}
            if settings.read_database_url
            else {}
        )
        refused = asyncio.run(boot.preflight(urls))
    except workers.WorkersRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        log.info("engine stopped before its workers started")
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    if refused is not None:
        print(f"error: {refused}", file=sys.stderr)
        return 1
    if embedded and not settings.jwt_secret:
        log.warning(
            "development JWT secret in use (ENGINE_JWT_SECRET unset); mint a token with: "
            "python -m engine token --sub demo --tenant 1 --roles camera_admin"
        )
    sys.stdout.flush()
    spec = workers.WorkerSpec(
        settings=sized,
        database_url=url,
        jwt_secret=secret,
        host=args.host or settings.host,
        port=args.port or settings.port,
    )
    status = workers.run(spec, count)
    log.info("engine stopped")
    return status


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be 1 or more")
    return number


def _token(settings: Settings, args: argparse.Namespace) -> int:
    secret = settings.jwt_secret
    if not secret:
        if settings.database_url:
            print("set ENGINE_JWT_SECRET to mint tokens", file=sys.stderr)
            return 2
        secret = dev_secret(Path(settings.pgdata).parent)
    tenant: Any = args.tenant
    if tenant is not None and tenant.isdigit():
        tenant = int(tenant)
    print(
        mint_token(
            secret,
            subject=args.sub,
            roles=_split(args.roles),
            permissions=_split(args.permissions),
            tenant_id=tenant,
            ttl_s=args.ttl,
        )
    )
    return 0


async def _keys(url: str, args: argparse.Namespace) -> int:
    conn = await _connect(url)
    try:
        if args.keys_command == "create":
            expires = None
            if args.expires_days:
                expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=args.expires_days)
            key = await keys.create_key(
                conn,
                args.name,
                roles=_split(args.roles),
                permissions=_split(args.permissions),
                tenant_id=args.tenant,
                expires_at=expires,
            )
            print(key)
            print(f"(key {args.name!r} created; it is shown only this once)", file=sys.stderr)
        elif args.keys_command == "list":
            _print_keys(await keys.list_keys(conn))
        elif args.keys_command == "rotate":
            key = await keys.rotate_key(conn, args.name)
            print(key)
            print(
                f"(key {args.name!r} rotated: its old secret no longer works; "
                "the new one is shown only this once)",
                file=sys.stderr,
            )
        elif args.keys_command == "delete":
            await keys.delete_key(conn, args.name)
            print(f"key {args.name!r} deleted")
        else:
            await keys.revoke_key(conn, args.name)
            print(f"key {args.name!r} revoked")
    except keys.KeyError_ as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        await conn.close()
    return 0


KEY_COLUMNS = (
    "name",
    "status",
    "prefix",
    "tenant",
    "roles",
    "permissions",
    "created",
    "expires",
    "last used",
    "revoked",
)


def _instant(value: dt.datetime | None, none: str = "-") -> str:
    if value is None:
        return none
    if value.year >= 9999:  # 'infinity' and beyond, clamped by keys.LIST_KEYS
        return "never"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _print_keys(rows: Sequence[Any]) -> None:
    """One line per key, in aligned columns with no spaces inside a value (never the secret)."""
    now = dt.datetime.now(dt.UTC)
    table = [KEY_COLUMNS]
    for r in rows:
        expired = r["expires_at"] is not None and r["expires_at"] <= now
        status = "revoked" if r["revoked_at"] else "expired" if expired else "active"
        table.append(
            (
                r["name"],
                status,
                f"{keys.PREFIX}_{r['key_prefix']}",
                "-" if r["tenant_id"] is None else str(r["tenant_id"]),
                ",".join(r["roles"]) or "-",
                ",".join(r["permissions"]) or "-",
                _instant(r["created_at"]),
                _instant(r["expires_at"], "never"),
                _instant(r["last_used_at"]),
                _instant(r["revoked_at"]),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(KEY_COLUMNS))]
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        print("(no keys; create one with: python -m engine keys create --name NAME)")


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


DESCRIPTION = """\
A database-driven HTTP endpoint engine: rows of the PostgreSQL table
api_endpoint_mappings become live routes. These commands set up the database,
serve the routes and administer them."""
EPILOG = """\
examples:
  python -m engine migrate                    apply the engine's sql/ migrations
  python -m engine seed camera_counting       load one example domain
  python -m engine check                      compile every row; exit 1 on a problem
  python -m engine routes --all               every row with its state and reason
  python -m engine serve --port 8000          serve the routes over HTTP
  python -m engine serve --workers 2          the same with two processes on one port
  python -m engine keys create --name ci --roles engine_admin
  python -m engine keys rotate ci             new secret, same name and grants

environment:
  DATABASE_URL   PostgreSQL to use, e.g. postgresql://user:password@host:5432/db;
                 unset: an embedded PostgreSQL is started, its data in ENGINE_PGDATA
  ENGINE_*       every other setting (port, JWT secret, pools, timeouts...);
                 python -m engine settings lists each with its default

Run python -m engine COMMAND --help for the options of one command.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="serve the catalogue over HTTP",
        description="Serve every active mapping row over HTTP (uvicorn), reloading the routes "
        "when rows change. Without DATABASE_URL an embedded PostgreSQL is started and a "
        "development JWT secret is used unless ENGINE_JWT_SECRET is set.",
    )
    serve.add_argument("--host", help="address to listen on (overrides ENGINE_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (overrides ENGINE_PORT)")
    serve.add_argument("--migrate", action="store_true", help="apply pending migrations first")
    serve.add_argument(
        "--workers",
        type=_positive,
        metavar="N",
        help="processes serving the port, each with its own pools sized to fit the "
        "database's max_connections (overrides ENGINE_WORKERS; default 1: one process)",
    )
    serve.add_argument(
        "--seed", nargs="*", metavar="DOMAIN", help="load seed domains first (none named: all)"
    )
    sub.add_parser(
        "migrate",
        help="apply pending sql/ migrations",
        description="Apply the engine's pending sql/ migrations in order, each once "
        "(applied ones are recorded in the database). Safe to run again.",
    )
    seed = sub.add_parser(
        "seed",
        help="load seed domains (all when none is named)",
        description="Load example domains from seeds/ (their tables, data and mapping rows), "
        "each file once. With no DOMAIN every domain is loaded.",
    )
    seed.add_argument(
        "domains", nargs="*", metavar="DOMAIN", help="a folder of seeds/, e.g. camera_counting"
    )
    seed.add_argument(
        "--scale", type=int, help="also run each domain's generate.sql at this scale (volumes)"
    )
    check = sub.add_parser(
        "check",
        help="compile every row and print its state; exit 1 on a problem",
        description="Compile every row of api_endpoint_mappings as the engine would and print "
        "each row's state (serving, stale, refused, draft) with the reason, then the "
        "problems and warnings. Exit 1 on a problem: an active row that cannot be served "
        "as written, or a broken row it depends on.",
    )
    check.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    routes = sub.add_parser(
        "routes",
        help="list the served routes (--all: every row, with its state)",
        description="List the routes the mapping rows compile to now: method, path, mapping "
        "id, result shape and whether a caller must authenticate; rows that cannot be served "
        "follow as SKIPPED lines. With --all, list every row instead, served or not (draft, "
        "refused, stale), with its state, version and reason.",
    )
    routes.add_argument(
        "--all",
        action="store_true",
        help="every row, including inactive (draft) and refused ones, with state and reason",
    )
    token = sub.add_parser(
        "token",
        help="mint a bearer token (development and tests)",
        description="Print a signed JWT for calling the engine. Signed with ENGINE_JWT_SECRET; "
        "without DATABASE_URL the embedded server's development secret is used instead.",
    )
    token.add_argument("--sub", default="demo", help="subject (default: demo)")
    token.add_argument("--tenant", help="tenant_id claim")
    token.add_argument("--roles", help="comma-separated roles")
    token.add_argument("--permissions", help="comma-separated permissions")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default: 3600)")
    sub.add_parser(
        "settings",
        help="list every setting with its default",
        description="List every setting (DATABASE_URL and ENGINE_* environment variables) with "
        "its default and what it means. Settings are read once, at start.",
    )
    keys_parser = sub.add_parser(
        "keys",
        help="create, list, rotate, revoke and delete API keys",
        description="Manage API keys (sent as the X-API-Key header). The database keeps only "
        "a key's prefix and SHA-256; every change reaches every engine process at once.",
    )
    keys_sub = keys_parser.add_subparsers(
        dest="keys_command", required=True, title="commands", metavar="COMMAND"
    )
    create = keys_sub.add_parser(
        "create",
        help="create a key and print it (once)",
        description="Create a key and print it on stdout; it is shown only this once. A "
        "request carrying it gets its roles, permissions and tenant.",
    )
    create.add_argument(
        "--name", required=True, help="a unique name (letters, digits and . _ : - only)"
    )
    create.add_argument("--roles", help="comma-separated roles")
    create.add_argument("--permissions", help="comma-separated permissions")
    create.add_argument("--tenant", type=int, help="tenant_id the key acts for")
    create.add_argument("--expires-days", type=int, help="expire after this many days")
    keys_sub.add_parser(
        "list",
        help="list keys, their grants and dates (never the keys)",
        description="List every key: name, status (active, expired, revoked), prefix, tenant, "
        "roles, permissions, created, expires (never when unset), last used and revoked "
        "(times in UTC). Never the key, its secret or its hash.",
    )
    rotate = keys_sub.add_parser(
        "rotate",
        help="new secret for a key, same name and grants (printed once)",
        description="Give a key a new secret, keeping its name, roles, permissions, tenant and "
        "expiry. The old secret stops working at once in every engine process; the new key "
        "is printed on stdout, only this once. A revoked, expired or unknown key is refused "
        "(exit 1).",
    )
    rotate.add_argument("name", help="the key's name")
    revoke = keys_sub.add_parser(
        "revoke",
        help="revoke a key at once, in every process",
        description="Revoke a key at once, in every engine process. Its row is kept, so a "
        "refused request can say why, until you delete it.",
    )
    revoke.add_argument("name", help="the key's name")
    delete = keys_sub.add_parser(
        "delete",
        help="delete a revoked or expired key",
        description="Delete a revoked or expired key for good. An active key is refused "
        "(exit 1): revoke it first.",
    )
    delete.add_argument("name", help="the key's name")
    scaffold_cli.add_parser(sub)
    admin_cli.add_parser(sub)  # endpoints list|show|versions|diff|rollback|activate|deactivate
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"error: bad setting: {exc}", file=sys.stderr)
        return 2
    try:
        logs.configure(settings.log_level, settings.log_format)
    except ValueError as exc:
        print(f"error: bad setting: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "serve":
            try:
                return _serve(settings, args)
            except ValueError as exc:  # e.g. ENGINE_TRUSTED_PROXIES or JWT settings
                print(f"error: bad setting: {exc}", file=sys.stderr)
                return 2
        if args.command == "token":
            return _token(settings, args)
        if args.command == "settings":
            for env, default, help_text in documented_settings():
                print(f"{env}={'' if default is None else default}\n    {help_text}")
            return 0
        url, _ = resolve_database(settings)
        try:  # the verbs keep session state (advisory locks): never through PgBouncer
            url = pgbouncer.session_url(settings, url)
        except ValueError as exc:
            print(f"error: bad setting: {exc}", file=sys.stderr)
            return 2
        if args.command == "migrate":
            return asyncio.run(_migrate(url))
        if args.command == "seed":
            return asyncio.run(_seed(url, args.domains, args.scale))
        if args.command == "check":
            return asyncio.run(_check(url, settings, strict=args.strict))
        if args.command == "keys":
            return asyncio.run(_keys(url, args))
        if args.command == "routes":
            return asyncio.run(_check(url, settings, routes_only=True, all_rows=args.all))
        if args.command == "scaffold":
            return asyncio.run(scaffold_cli.run(url, settings, args))
        if args.command == "endpoints":
            return asyncio.run(admin_cli.run(url, settings, args))
    except migrations.MigrationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (asyncpg.UndefinedTableError, asyncpg.UndefinedFunctionError) as exc:
        print(
            f"error: {exc}: the meta-schema is missing or out of date; "
            "run `python -m engine migrate`",
            file=sys.stderr,
        )
        return 1
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
        print(f"error: cannot reach the database: {exc}", file=sys.stderr)
        return 1
    except asyncpg.PostgresError as exc:
        print(f"error: the database refused: {exc.sqlstate} {exc}", file=sys.stderr)
        return 1
    return 2
