-- 005: API keys, and cache invalidation for writes that bypass the API.
--
-- API keys are stored only as a SHA-256 hash of the whole key (keys are 256-bit
-- random strings, so a slow password hash adds nothing) with a short public
-- prefix to find the row. Every engine process keeps the usable keys in memory
-- and reloads them on NOTIFY engine_keys, so a revocation takes effect at once
-- everywhere and checking a key never takes a database connection.

CREATE TABLE api_keys (
    id           SERIAL PRIMARY KEY,
    name         VARCHAR(100) UNIQUE NOT NULL CHECK (name ~ '^[A-Za-z0-9._:-]+$'),
    key_prefix   VARCHAR(32) UNIQUE NOT NULL,
    key_hash     CHAR(64) NOT NULL,
    roles        TEXT[] NOT NULL DEFAULT '{}',
    permissions  TEXT[] NOT NULL DEFAULT '{}',
    tenant_id    INTEGER,
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ,
    last_used_at TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION engine_notify_keys()
RETURNS TRIGGER
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('engine_keys', TG_OP);
    RETURN NULL;
END;
$$;

-- last_used_at is bookkeeping written by the engine itself: it must not make
-- every process reload its keys.
CREATE TRIGGER trg_api_keys_notify
    AFTER INSERT OR DELETE OR TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION engine_notify_keys();

CREATE TRIGGER trg_api_keys_notify_update
    AFTER UPDATE OF name, key_prefix, key_hash, roles, permissions, tenant_id, expires_at,
                    revoked_at
    ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION engine_notify_keys();

-- A table opts into cache invalidation for direct writes (psql, ETL, other
-- services) with:
--   CREATE TRIGGER my_table_cache AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
--       ON my_table FOR EACH STATEMENT EXECUTE FUNCTION engine_invalidate_cache();
-- Every engine process then drops cached reads whose target_table (or
-- cache_invalidation_rules) names that table.
CREATE OR REPLACE FUNCTION engine_invalidate_cache()
RETURNS TRIGGER
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('engine_cache', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;
