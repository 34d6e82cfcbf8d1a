-- 019: reads run as a role that cannot write (engine/roles.py).
--
-- A read-only session (default_transaction_read_only) is a setting the session may
-- change itself: a GET template running set_config('default_transaction_read_only',
-- 'off', false) switched its pooled connection to writing. A role without write
-- privileges cannot be talked out of them: the database refuses the write (42501).
--
-- engine_reader: LOGIN without a password (it logs in where the server trusts the
-- connection, as the embedded server's socket does; elsewhere give it a password and
-- name it in ENGINE_READ_DATABASE_URL), NOSUPERUSER, NOCREATEDB, NOCREATEROLE. Roles
-- belong to the whole cluster: it is created once, only if missing, and only when the
-- migrating user may create roles; otherwise a NOTICE says so and reads stay on
-- read-only sessions (the engine says which guarantee is in force at start and in
-- engine check).
--
-- In each database: CONNECT, USAGE on public, SELECT on every table and view of public
-- except the engine's secrets: engine_secrets (the cursor key) is not readable at all,
-- and api_keys only without key_hash (a GET may list keys, never their hashes). Default
-- privileges make tables and schemas the migrating user creates later (seeds, an
-- admin's tables) readable too; tables created by another user need their own GRANT
-- SELECT ... TO engine_reader. Functions keep PUBLIC's EXECUTE: a function that writes
-- fails on the role's privileges, which is the point. No sequence is granted: nextval()
-- in a read is refused (42501). Each grant the migrating user may not give is skipped
-- with a NOTICE, so the migration never fails for want of privileges.

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'engine_reader') THEN
        RETURN;
    END IF;
    IF NOT (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
        RAISE NOTICE 'role engine_reader not created: % may not create roles; reads run on '
            'read-only sessions only until a read-only role is named in ENGINE_READ_DATABASE_URL',
            current_user;
        RETURN;
    END IF;
    BEGIN
        CREATE ROLE engine_reader LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    EXCEPTION WHEN duplicate_object THEN
        RETURN;  -- a migration of another database on this server made it meanwhile
    END;
    ALTER ROLE engine_reader SET default_transaction_read_only = on;
    COMMENT ON ROLE engine_reader IS
        'engine: GET endpoints read as this role (sql/019); it may not write';
END
$$;

DO $$
DECLARE
    t regclass;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'engine_reader') THEN
        RETURN;
    END IF;
    BEGIN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO engine_reader', current_database());
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE NOTICE 'engine_reader: CONNECT on this database not granted (%)', SQLERRM;
    END;
    BEGIN
        GRANT USAGE ON SCHEMA public TO engine_reader;
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE NOTICE 'engine_reader: USAGE on schema public not granted (%)', SQLERRM;
    END;
    FOR t IN
        SELECT c.oid::regclass
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public'
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND c.relname NOT IN ('engine_secrets', 'api_keys')
        ORDER BY c.relname
    LOOP
        IF has_table_privilege(t, 'SELECT WITH GRANT OPTION') THEN
            EXECUTE format('GRANT SELECT ON %s TO engine_reader', t);
        ELSE
            RAISE NOTICE 'engine_reader: SELECT on % not granted (% may not grant it)',
                t, current_user;
        END IF;
    END LOOP;
    IF to_regclass('public.api_keys') IS NOT NULL
       AND has_table_privilege('public.api_keys', 'SELECT WITH GRANT OPTION') THEN
        GRANT SELECT (id, name, key_prefix, roles, permissions, tenant_id, expires_at,
                      revoked_at, last_used_at, created_at)
            ON public.api_keys TO engine_reader;
    END IF;
    IF to_regclass('public.engine_secrets') IS NOT NULL
       AND has_table_privilege('public.engine_secrets', 'SELECT WITH GRANT OPTION') THEN
        REVOKE ALL ON public.engine_secrets FROM engine_reader;
    END IF;
    ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO engine_reader;
    ALTER DEFAULT PRIVILEGES GRANT USAGE ON SCHEMAS TO engine_reader;
END
$$;
