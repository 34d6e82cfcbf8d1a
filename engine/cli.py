"""Command line: ``python -m engine serve | migrate | seed [DOMAIN...] | check | routes | token``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from engine import accesslog, keys, logs, migrations, pgserver
from engine.auth import dev_secret, mint_token
from engine.catalog import ddl_watched, load_catalog
from engine.database import init_connection
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


async def _check(
    url: str, settings: Settings, *, routes_only: bool = False, strict: bool = False
) -> int:
    conn = await _connect(url)
    try:
        catalog = await load_catalog(conn, default_timeout_ms=settings.statement_timeout_ms)
        watched = await ddl_watched(conn)
        running = {r["endpoint_mapping_id"]: r for r in await conn.fetch(STATUS_OF_RUNNING)}
    finally:
        await conn.close()
    if routes_only:
        for ep in sorted(catalog.endpoints, key=lambda e: (e.spec.path, e.spec.method)):
            s = ep.spec
            auth = "auth" if s.requires_auth else "public"
            print(f"{s.method:<7}{s.path}  (id={s.id}, {s.result.shape}, {auth})")
        for p in catalog.problems:
            print(f"SKIPPED {p}")
        return 0
    for status in catalog.statuses:
        state = status.state
        seen = running.get(status.mapping_id)
        if state == "refused" and seen is not None and seen["version"] == status.version:
            state = f"stale (the running engine still serves v{seen['serving_version']})"
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
    counts = catalog.state_counts()
    print(
        f"{len(catalog.endpoints)} endpoint(s) ok, {len(catalog.problems)} problem(s), "
        f"{len(catalog.warnings) + (not watched)} warning(s); rows: "
        + ", ".join(f"{n} {state}" for state, n in counts.items())
    )
    if catalog.problems:
        return 1
    return 1 if strict and (catalog.warnings or not watched) else 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from engine.app import create_app

    accesslog.enabled(settings.access_log)  # a bad value stops here, before any work
    url, embedded = resolve_database(settings)
    if args.migrate:
        asyncio.run(_migrate(url))
    if args.seed is not None:
        asyncio.run(_seed(url, args.seed))
    secret = jwt_secret_for(settings, embedded)
    if embedded and not settings.jwt_secret:
        log.warning(
            "development JWT secret in use (ENGINE_JWT_SECRET unset); mint a token with: "
            "python -m engine token --sub demo --tenant 1 --roles camera_admin"
        )
    log.info("settings: %s", settings.redacted())
    app = create_app(settings, url, jwt_secret=secret)
    host = args.host or settings.host
    port = args.port or settings.port
    sys.stdout.flush()  # what was printed goes out before the access log's first lines
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        # json: no uvicorn handlers, its records reach the root logger's JSON handler
        log_config=None if logs.is_json(settings.log_format) else uvicorn.config.LOGGING_CONFIG,
        # the engine writes its own access log (ENGINE_ACCESS_LOG); uvicorn's never
        access_log=False,
        lifespan="on",
        # X-Forwarded-For is the engine's business (ENGINE_TRUSTED_PROXIES); uvicorn
        # would otherwise believe it from any local peer
        proxy_headers=False,
    )
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C after shutdown
        uvicorn.Server(config).run()
    log.info("engine stopped")
    return 0


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
            rows = await keys.list_keys(conn)
            print(f"{'name':<24}{'status':<10}{'tenant':<8}{'roles':<28}{'last used':<26}")
            now = dt.datetime.now(dt.UTC)
            for r in rows:
                status = (
                    "revoked"
                    if r["revoked_at"]
                    else "expired"
                    if r["expires_at"] and r["expires_at"] <= now
                    else "active"
                )
                last = r["last_used_at"].isoformat(timespec="seconds") if r["last_used_at"] else "-"
                tenant = "-" if r["tenant_id"] is None else str(r["tenant_id"])
                print(f"{r['name']:<24}{status:<10}{tenant:<8}{','.join(r['roles']):<28}{last:<26}")
        else:
            await keys.revoke_key(conn, args.name)
            print(f"key {args.name!r} revoked")
    except keys.KeyError_ as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        await conn.close()
    return 0


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the catalogue over HTTP")
    serve.add_argument("--host", help="override ENGINE_HOST")
    serve.add_argument("--port", type=int, help="override ENGINE_PORT")
    serve.add_argument("--migrate", action="store_true", help="apply pending migrations first")
    serve.add_argument(
        "--seed", nargs="*", metavar="DOMAIN", help="load seed domains first (none named: all)"
    )
    sub.add_parser("migrate", help="apply pending sql/ migrations")
    seed = sub.add_parser("seed", help="load seed domains (all when none is named)")
    seed.add_argument("domains", nargs="*", metavar="DOMAIN")
    seed.add_argument(
        "--scale", type=int, help="also run each domain's generate.sql at this scale (volumes)"
    )
    check = sub.add_parser(
        "check", help="compile every mapping row; exit 1 if an active one cannot be served"
    )
    check.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    sub.add_parser("routes", help="list the served routes")
    token = sub.add_parser("token", help="mint a bearer token (development and tests)")
    token.add_argument("--sub", default="demo", help="subject")
    token.add_argument("--tenant", help="tenant_id claim")
    token.add_argument("--roles", help="comma-separated roles")
    token.add_argument("--permissions", help="comma-separated permissions")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    sub.add_parser("settings", help="list every setting with its default")
    keys_parser = sub.add_parser("keys", help="create, list and revoke API keys")
    keys_sub = keys_parser.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--name", required=True)
    create.add_argument("--roles", help="comma-separated roles")
    create.add_argument("--permissions", help="comma-separated permissions")
    create.add_argument("--tenant", type=int, help="tenant_id the key acts for")
    create.add_argument("--expires-days", type=int, help="expire after this many days")
    keys_sub.add_parser("list", help="list keys (never the keys themselves)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key at once, in every process")
    revoke.add_argument("name")
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
        if args.command == "migrate":
            return asyncio.run(_migrate(url))
        if args.command == "seed":
            return asyncio.run(_seed(url, args.domains, args.scale))
        if args.command == "check":
            return asyncio.run(_check(url, settings, strict=args.strict))
        if args.command == "keys":
            return asyncio.run(_keys(url, args))
        if args.command == "routes":
            return asyncio.run(_check(url, settings, routes_only=True))
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
