"""Settings, read once from ``ENGINE_*`` environment variables (and ``DATABASE_URL``).

Every setting has a default and help text; the README's settings table must
list each one (a test checks it). Pass a :class:`Settings` explicitly; nothing
else in the engine reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _setting(env: str, default: Any, help: str) -> Any:
    return field(default=default, metadata={"env": env, "help": help})


@dataclass(frozen=True)
class Settings:
    database_url: str | None = _setting(
        "DATABASE_URL",
        None,
        "PostgreSQL URL of the primary. Unset: an embedded PostgreSQL is started with its "
        "data in ENGINE_PGDATA.",
    )
    read_database_url: str | None = _setting(
        "ENGINE_READ_DATABASE_URL",
        None,
        "PostgreSQL URL for reads: a read-only user (SELECT only), on the primary or a "
        "streaming replica. Unset: reads run as engine_reader (sql/019) when it logs in "
        "without a password, else on read-only sessions only.",
    )
    host: str = _setting("ENGINE_HOST", "127.0.0.1", "Address the HTTP server listens on.")
    port: int = _setting("ENGINE_PORT", 8000, "Port the HTTP server listens on.")
    pgdata: str = _setting(
        "ENGINE_PGDATA",
        str(PROJECT_ROOT / ".engine" / "pgdata"),
        "Data folder of the embedded PostgreSQL (used only when DATABASE_URL is unset).",
    )
    pool_min_size: int = _setting("ENGINE_POOL_MIN_SIZE", 1, "Connections kept open per pool.")
    pool_max_size: int = _setting("ENGINE_POOL_MAX_SIZE", 10, "Most connections per pool.")
    statement_timeout_ms: int = _setting(
        "ENGINE_STATEMENT_TIMEOUT_MS",
        30000,
        "Default statement timeout; a row's statement_timeout_ms overrides it.",
    )
    max_body_bytes: int = _setting(
        "ENGINE_MAX_BODY_BYTES", 1048576, "Largest request body accepted (413 above)."
    )
    reload_debounce_ms: int = _setting(
        "ENGINE_RELOAD_DEBOUNCE_MS",
        100,
        "How long a catalogue reload waits for more change notifications before rebuilding.",
    )
    jwt_secret: str | None = _setting(
        "ENGINE_JWT_SECRET", None, "HS256 secret for bearer tokens. Unset: no token is accepted."
    )
    jwt_public_key: str | None = _setting(
        "ENGINE_JWT_PUBLIC_KEY",
        None,
        "PEM public key (or a path to one) for RS256/ES256 bearer tokens; excludes ENGINE_JWT_SECRET.",
    )
    jwt_algorithms: str | None = _setting(
        "ENGINE_JWT_ALGORITHMS",
        None,
        "Comma-separated algorithm allow-list. Default: HS256 with a secret, RS256,ES256 with a key.",
    )
    jwt_audience: str | None = _setting(
        "ENGINE_JWT_AUDIENCE", None, "When set, tokens must carry this aud claim."
    )
    jwt_issuer: str | None = _setting(
        "ENGINE_JWT_ISSUER", None, "When set, tokens must carry this iss claim."
    )
    redis_url: str | None = _setting(
        "ENGINE_REDIS_URL",
        None,
        "redis://host:port/db for rate-limit counters shared by every process. Unset: in-process.",
    )
    trusted_proxies: str | None = _setting(
        "ENGINE_TRUSTED_PROXIES",
        None,
        "Comma-separated proxy addresses/networks whose X-Forwarded-For is believed.",
    )
    cache_max_entries: int = _setting(
        "ENGINE_CACHE_MAX_ENTRIES",
        1000,
        "Answers kept per cacheable endpoint unless api_cache_config.cache_max_entries says otherwise.",
    )
    cache_stats_interval_s: int = _setting(
        "ENGINE_CACHE_STATS_INTERVAL_S",
        30,
        "How often each cacheable endpoint's hit ratio, size and evictions go to api_cache_config.",
    )
    metrics_flush_s: int = _setting(
        "ENGINE_METRICS_FLUSH_S",
        60,
        "How often the per-endpoint, per-minute figures are written to api_performance_metrics "
        "(and once at shutdown).",
    )
    slow_query_ms: int = _setting(
        "ENGINE_SLOW_QUERY_MS",
        500,
        "A statement slower than this is recorded with its plan in query_optimization_tracking "
        "(at most once a minute per endpoint). 0: off.",
    )
    pool_stats_interval_s: int = _setting(
        "ENGINE_POOL_STATS_INTERVAL_S",
        30,
        "How often pool figures go to database_connection_pool and the health probe's to "
        "database_connection_health.",
    )
    stream_max_concurrent: int = _setting(
        "ENGINE_STREAM_MAX_CONCURRENT",
        4,
        "Streamed exports running at once per process (each holds a read connection); more get 503.",
    )
    stream_max_seconds: int = _setting(
        "ENGINE_STREAM_MAX_SECONDS", 300, "A streamed export is cut after this long."
    )
    admin_token: str | None = _setting(
        "ENGINE_ADMIN_TOKEN",
        None,
        "Bearer token for the /_engine/catalog admin endpoint. Unset: that endpoint is off.",
    )
    metrics_token: str | None = _setting(
        "ENGINE_METRICS_TOKEN",
        None,
        "Bearer token GET /metrics asks for (Authorization: Bearer ...). Unset: /metrics is open.",
    )
    log_level: str = _setting("ENGINE_LOG_LEVEL", "INFO", "Python logging level.")
    access_log: str = _setting(
        "ENGINE_ACCESS_LOG",
        "on",
        "on: one JSON line per catalogue request on stdout (buffered); off: no access log.",
    )
    log_format: str = _setting(
        "ENGINE_LOG_FORMAT",
        "text",
        "text: the engine's and uvicorn's logs as readable lines on stderr; json: one JSON "
        "object a line (ts, level, logger, msg, exc).",
    )
    cors_origins: str | None = _setting(
        "ENGINE_CORS_ORIGINS",
        None,
        "Comma-separated origins browsers may call from (https://app.example.com), or *. "
        "Unset: no CORS headers.",
    )
    cors_max_age_s: int = _setting(
        "ENGINE_CORS_MAX_AGE_S", 600, "How long a browser may keep a CORS preflight answer."
    )
    cursor_secret: str | None = _setting(
        "ENGINE_CURSOR_SECRET",
        None,
        "Key that signs keyset pagination cursors (same on every process). Unset: a random "
        "secret kept in the database (engine_secrets), shared by every process on it.",
    )
    idempotency_ttl_s: int = _setting(
        "ENGINE_IDEMPOTENCY_TTL_S",
        86400,
        "How long the answer of a write sent with an Idempotency-Key is kept for replay.",
    )
    error_log_queue_size: int = _setting(
        "ENGINE_ERROR_LOG_QUEUE_SIZE",
        10000,
        "Errors waiting to be written through log_api_error(); more are dropped and counted.",
    )

    pool_timeout_s: float = _setting(
        "ENGINE_POOL_TIMEOUT_S",
        5.0,
        "Longest wait for a free pool connection; then 503 DATABASE_BUSY with Retry-After.",
    )
    header_timeout_s: float = _setting(
        "ENGINE_HEADER_TIMEOUT_S",
        10.0,
        "A connection that has not sent a whole request head this long after opening (or "
        "after its last answer) is closed.",
    )
    max_connections: int = _setting(
        "ENGINE_MAX_CONNECTIONS",
        2000,
        "Open client connections per process; beyond it new connections get 503 (GET "
        "/health/live keeps answering from a reserve).",
    )
    shutdown_grace_s: float = _setting(
        "ENGINE_SHUTDOWN_GRACE_S",
        10.0,
        "On SIGTERM: readiness turns 503, in-flight requests get this long to finish, then "
        "they are cancelled (their statements too) and the process exits 0.",
    )
    listen_ping_s: float = _setting(
        "ENGINE_LISTEN_PING_S",
        2.0,
        "How often the LISTEN connection is pinged; a frozen or half-open one is replaced "
        "and the catalogue reloaded in full.",
    )
    error_log_sample: int = _setting(
        "ENGINE_ERROR_LOG_SAMPLE",
        10,
        "401, 404 (unknown path), 405 and 429 answers written one by one to api_error_logs "
        "per minute and code; the rest are counted in one summary row a minute.",
    )
    error_log_retention_days: int = _setting(
        "ENGINE_ERROR_LOG_RETENTION_DAYS",
        30,
        "Days api_error_logs, api_performance_metrics and the other figure tables keep "
        "their rows; older rows are deleted in batches by a periodic job. 0: kept forever.",
    )
    unknown_path_limit_per_minute: int = _setting(
        "ENGINE_UNKNOWN_PATH_LIMIT_PER_MINUTE",
        120,
        "404s for unknown paths one client address may get a minute; beyond it 429. 0: no limit.",
    )

    workers: int = _setting(
        "ENGINE_WORKERS",
        1,
        "Processes serving the port (serve --workers N); each has its own pools, sized so that "
        "N x ENGINE_POOL_MAX_SIZE stays within the database's max_connections.",
    )
    max_rows: int = _setting(
        "ENGINE_MAX_ROWS",
        10000,
        "Most rows a list answer without pagination may hold; beyond it 500 RESULT_TOO_LARGE "
        "(the endpoint should paginate or stream).",
    )
    cache_max_bytes: int = _setting(
        "ENGINE_CACHE_MAX_BYTES",
        67108864,
        "Bytes of cached answers one process keeps, over every endpoint; beyond it the least "
        "recently used answers are evicted.",
    )
    bulk_max_body_bytes: int = _setting(
        "ENGINE_BULK_MAX_BODY_BYTES",
        1073741824,
        "Largest NDJSON or CSV body a bulk import accepts (a row's bulk_import.max_body_bytes "
        "may lower it); 413 above.",
    )
    bulk_idle_s: float = _setting(
        "ENGINE_BULK_IDLE_S",
        30.0,
        "Longest a bulk import's body may pause between two chunks; then 408 REQUEST_TIMEOUT "
        "and nothing is written. The whole body must arrive within ENGINE_STREAM_MAX_SECONDS.",
    )
    pgbouncer: str = _setting(
        "ENGINE_PGBOUNCER",
        "off",
        "transaction: DATABASE_URL points at PgBouncer in transaction pooling mode (no prepared "
        "statement kept across transactions, session settings per transaction); LISTEN then "
        "uses ENGINE_LISTEN_DATABASE_URL. off: a direct connection.",
    )
    listen_database_url: str | None = _setting(
        "ENGINE_LISTEN_DATABASE_URL",
        None,
        "PostgreSQL URL of a direct connection (not through PgBouncer) for LISTEN. Unset: "
        "DATABASE_URL.",
    )
    max_replica_lag_s: float = _setting(
        "ENGINE_MAX_REPLICA_LAG_S",
        30.0,
        "A read replica (database_failover_config) lagging further behind the primary than "
        "this takes no reads until it catches up.",
    )

    def __post_init__(self) -> None:
        for name in _POSITIVE:
            if getattr(self, name) <= 0:
                env = next(f.metadata["env"] for f in dataclasses.fields(self) if f.name == name)
                raise ValueError(f"{env}={getattr(self, name)!r}: must be greater than 0")
        if self.pgbouncer not in ("off", "transaction"):
            raise ValueError(f"ENGINE_PGBOUNCER={self.pgbouncer!r}: expected off or transaction")
        if self.shutdown_grace_s < 0:
            raise ValueError(f"ENGINE_SHUTDOWN_GRACE_S={self.shutdown_grace_s!r}: must be >= 0")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is None or raw == "":
                continue
            kind = type(f.default) if f.default is not None else str
            try:
                values[f.name] = kind(raw)
            except ValueError as exc:
                raise ValueError(f"{f.metadata['env']}={raw!r}: expected {kind.__name__}") from exc
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def redacted(self) -> dict[str, Any]:
        """Settings safe to log: secrets and passwords hidden."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None and any(s in f.name for s in ("secret", "token", "redis")):
                value = "***"
            elif value and f.name.endswith("database_url"):
                value = _hide_password(value)
            out[f.metadata["env"]] = value
        return out


# settings that mean nothing at 0 or below (a bad value stops the engine at start)
_POSITIVE = (
    "pool_max_size",
    "pool_timeout_s",
    "header_timeout_s",
    "max_connections",
    "listen_ping_s",
    "workers",
    "max_rows",
    "cache_max_bytes",
    "bulk_max_body_bytes",
    "bulk_idle_s",
    "max_replica_lag_s",
)


def _hide_password(url: str) -> str:
    """A database URL without its password (in the userinfo or a ?password= parameter)."""
    url = re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)
    scheme, sep, rest = url.partition("://")
    creds, at, hostpart = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{hostpart}"


def documented_settings() -> list[tuple[str, Any, str]]:
    """(env name, default, help) for every setting, for the README and `engine settings`."""
    return [
        (f.metadata["env"], f.default, f.metadata["help"]) for f in dataclasses.fields(Settings)
    ]
