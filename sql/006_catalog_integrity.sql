-- 006: catalogue integrity: every row's state in SQL, guarded error codes, and
-- schema changes reported to the engine.

-- ---------------------------------------------------------------------------
-- api_endpoint_status: what became of each mapping row, written by the engine
-- after every load (so `SELECT * FROM api_endpoint_status` shows the outcome of
-- a COMMIT within a second).
--   serving  this version serves
--   stale    an older version (serving_version) still serves; this one is
--            refused and reason says why
--   refused  nothing serves this row (reason says why); if it owns its route,
--            the route answers 503 ENDPOINT_UNAVAILABLE
--   draft    an inactive row: reason is NULL when it would serve, else why not
-- warnings lists what is probably wrong with a row that serves.
-- ---------------------------------------------------------------------------
CREATE TABLE api_endpoint_status (
    endpoint_mapping_id INTEGER PRIMARY KEY
                        REFERENCES api_endpoint_mappings (id) ON DELETE CASCADE,
    version             INTEGER NOT NULL,
    state               TEXT NOT NULL CHECK (state IN ('serving', 'stale', 'refused', 'draft')),
    reason              TEXT,
    serving_version     INTEGER,
    warnings            JSONB NOT NULL DEFAULT '[]',
    checked_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

COMMENT ON TABLE api_endpoint_status IS
    'One row per api_endpoint_mappings row: its state (serving, stale, refused, draft), '
    'written by the engine after every catalogue load.';

INSERT INTO api_error_codes
    (error_code, http_status_code, error_category, error_message, suggested_action, localized_messages)
VALUES
('ENDPOINT_UNAVAILABLE', 503, 'routing',
 'This endpoint cannot be served right now; retry later',
 'Retry after the number of seconds in Retry-After; if it persists, an administrator should read api_endpoint_status.',
 '{"vi": "Điểm cuối này tạm thời không khả dụng; hãy thử lại sau", "ru": "Эта конечная точка сейчас недоступна; повторите попытку позже"}')
ON CONFLICT (error_code) DO NOTHING;

-- ---------------------------------------------------------------------------
-- Error codes in use cannot be deleted or renamed: the codes the engine answers
-- with itself, and every code an active mapping's result_mapping.not_found names.
-- ---------------------------------------------------------------------------
-- The codes the engine answers with itself (engine/errors.py BUILTIN_CODES); a
-- later migration that adds one inserts it here too.
CREATE TABLE engine_required_error_codes (
    error_code VARCHAR(64) PRIMARY KEY
);
INSERT INTO engine_required_error_codes (error_code) VALUES
    ('VALIDATION_ERROR'), ('INVALID_PARAMETER'), ('INVALID_JSON'), ('INVALID_VALUE'),
    ('UNSUPPORTED_MEDIA_TYPE'), ('PAYLOAD_TOO_LARGE'), ('ROUTE_NOT_FOUND'),
    ('METHOD_NOT_ALLOWED'), ('RESOURCE_NOT_FOUND'), ('AUTHENTICATION_REQUIRED'),
    ('INVALID_TOKEN'), ('INSUFFICIENT_PERMISSIONS'), ('RATE_LIMIT_EXCEEDED'),
    ('DUPLICATE_RESOURCE'), ('REFERENCED_RESOURCE_MISSING'), ('RESOURCE_IN_USE'),
    ('CONSTRAINT_VIOLATION'), ('TRANSACTION_CONFLICT'), ('STATEMENT_TIMEOUT'),
    ('DATABASE_CONNECTION_ERROR'), ('INTERNAL_ERROR'), ('ENDPOINT_UNAVAILABLE');

CREATE OR REPLACE FUNCTION engine_guard_error_code()
RETURNS TRIGGER
LANGUAGE plpgsql
AS $$
DECLARE
    v_users TEXT;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.error_code = OLD.error_code THEN
        RETURN NEW;
    END IF;
    IF EXISTS (SELECT 1 FROM engine_required_error_codes r WHERE r.error_code = OLD.error_code) THEN
        RAISE EXCEPTION 'error code % is used by the engine itself and cannot be %',
            OLD.error_code, CASE TG_OP WHEN 'DELETE' THEN 'deleted' ELSE 'renamed' END
            USING ERRCODE = 'restrict_violation',
                  HINT = 'Change its error_message or localized_messages instead.';
    END IF;
    SELECT string_agg(format('id=%s %s %s', id, http_method, endpoint_path), ', ' ORDER BY id)
    INTO v_users
    FROM api_endpoint_mappings
    WHERE is_active AND result_mapping ->> 'not_found' = OLD.error_code;
    IF v_users IS NOT NULL THEN
        RAISE EXCEPTION 'error code % is named by result_mapping.not_found of active mapping(s) %',
            OLD.error_code, v_users
            USING ERRCODE = 'restrict_violation',
                  HINT = 'Point those mappings at another code (or deactivate them) first.';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END;
$$;

CREATE TRIGGER trg_api_error_codes_guard
    BEFORE DELETE OR UPDATE OF error_code ON api_error_codes
    FOR EACH ROW EXECUTE FUNCTION engine_guard_error_code();

-- A mapping that starts naming a code locks that code's row until it commits, so
-- a concurrent DELETE waits, then sees the mapping and is refused.
CREATE OR REPLACE FUNCTION engine_lock_named_error_code()
RETURNS TRIGGER
LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.is_active AND NEW.result_mapping ->> 'not_found' IS NOT NULL THEN
        PERFORM 1 FROM api_error_codes
        WHERE error_code = NEW.result_mapping ->> 'not_found'
        FOR KEY SHARE;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER trg_api_endpoint_mappings_lock_error_code
    BEFORE INSERT OR UPDATE OF result_mapping, is_active ON api_endpoint_mappings
    FOR EACH ROW EXECUTE FUNCTION engine_lock_named_error_code();

CREATE OR REPLACE FUNCTION engine_guard_error_codes_truncate()
RETURNS TRIGGER
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'api_error_codes cannot be truncated: the engine and active mappings use its codes'
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER trg_api_error_codes_guard_truncate
    BEFORE TRUNCATE ON api_error_codes
    FOR EACH STATEMENT EXECUTE FUNCTION engine_guard_error_codes_truncate();

-- ---------------------------------------------------------------------------
-- Schema drift: after CREATE/ALTER/DROP of anything outside the temporary
-- schemas, NOTIFY engine_catalog 'ddl', and every engine re-checks every row.
-- Creating an event trigger needs a superuser; without one the migration still
-- applies, the engine logs once that drift is not watched, and `engine check`
-- says so.
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION engine_notify_ddl()
RETURNS event_trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_EVENT = 'sql_drop' THEN
        IF EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects()
                   WHERE NOT is_temporary AND object_type IN
                     ('table', 'table column', 'view', 'materialized view', 'foreign table',
                      'function', 'type', 'schema', 'sequence', 'domain')) THEN
            PERFORM pg_notify('engine_catalog', 'ddl');
        END IF;
    ELSIF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands()
                  WHERE schema_name IS NULL OR schema_name NOT LIKE 'pg\_temp%') THEN
        PERFORM pg_notify('engine_catalog', 'ddl');
    END IF;
END;
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND rolsuper) THEN
        CREATE EVENT TRIGGER engine_ddl_watch ON ddl_command_end
            WHEN TAG IN ('ALTER TABLE', 'DROP TABLE', 'CREATE TABLE', 'ALTER VIEW', 'DROP VIEW',
                         'CREATE VIEW', 'CREATE FUNCTION',
                         'ALTER FUNCTION', 'DROP FUNCTION', 'CREATE TYPE', 'ALTER TYPE',
                         'DROP TYPE', 'DROP SCHEMA', 'ALTER SCHEMA', 'CREATE MATERIALIZED VIEW',
                         'DROP MATERIALIZED VIEW', 'ALTER MATERIALIZED VIEW', 'CREATE DOMAIN',
                         'ALTER DOMAIN', 'DROP DOMAIN', 'DROP SEQUENCE', 'ALTER SEQUENCE',
                         'CREATE FOREIGN TABLE', 'ALTER FOREIGN TABLE', 'DROP FOREIGN TABLE')
            EXECUTE FUNCTION engine_notify_ddl();
        CREATE EVENT TRIGGER engine_ddl_drop_watch ON sql_drop
            EXECUTE FUNCTION engine_notify_ddl();
    ELSE
        RAISE NOTICE 'not a superuser: schema changes will not be reported to the engine';
    END IF;
END;
$$;
