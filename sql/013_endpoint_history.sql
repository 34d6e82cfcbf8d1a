-- 013: endpoint history: every change of a mapping, and of the rows it depends
-- on, kept as a version holding the full definition after the change.
--
-- api_endpoint_history has one row per version of one mapping (mapping_id,
-- version 1, 2, ...). It is filled only by the triggers below, so a change made
-- through psql, a seed, the admin API or `engine endpoints rollback` is recorded
-- alike. It has no foreign key: the history outlives the mapping row.
--
-- definition is the whole definition as it was after the change:
--   {"mapping":            every column of the api_endpoint_mappings row except
--                          id, created_at, updated_at and version,
--    "validation_schemas": its api_validation_schemas rows (ordered by applies_to),
--    "sanitization_rules": the data_sanitization_rules rows that apply to it: the
--                          active global ones (endpoint_mapping_id NULL) and all of
--                          its own (is_active says whether each one applies),
--    "response_templates": the api_response_templates rows that apply to it: its own,
--                          and the default (endpoint_mapping_id NULL) of each
--                          response_type it has none of,
--    "cache_config":       its api_cache_config row without the figures
--                          (cache_hit_ratio, cache_size_mb, cache_eviction_count)
--                          or null}
-- Rows keep their id (and, for rules and templates, endpoint_mapping_id: NULL
-- marks a shared row); created_at and updated_at are left out everywhere.
-- engine_endpoint_definitions(ids) gives the definitions as they are now.
--
-- change_kind:
--   baseline     the row as it was when this migration ran
--   created      the mapping row was inserted
--   updated      mapping columns changed (or several kinds of change in one transaction)
--   activated    only is_active changed, to true
--   deactivated  only is_active changed, to false
--   deleted      the mapping row was deleted; definition is its last one and
--                row_version is NULL
--   schema       one of its validation schemas changed
--   rules        a sanitization rule that applies to it changed
--   templates    a response template that applies to it changed
--   cache        its cache configuration changed
--   rollback     written with engine.change_kind = 'rollback' (engine/history.py restore)
-- changed_table is the table of the first change, changed_tables every table
-- changed by that transaction.
--
-- Rules of recording:
--   * one version per mapping and transaction: later changes of the same
--     transaction are folded into the version it already wrote (so an admin
--     API edit or a rollback is one version, however many rows it writes);
--   * a change that leaves the definition as it was records nothing (an UPDATE
--     that sets the same values, cache figures, updated_at); a transaction that
--     ends where it started removes the version it had written;
--   * a change of a shared row (a global sanitization rule, a default response
--     template) records a version for every mapping whose definition it changes;
--   * changed_by is current_setting('engine.actor') when the transaction set it
--     (the admin API sets it to its caller), else current_user;
--   * version numbers come from engine_history_heads, whose row per mapping is
--     locked until commit: two transactions changing one mapping get distinct
--     numbers (the second waits; under REPEATABLE READ or SERIALIZABLE it fails
--     with a serialization error, to be retried like any conflict).
-- The triggers run as the user making the change: whoever may write the
-- catalogue tables must be able to write api_endpoint_history and
-- engine_history_heads (the same owner, in a default set-up).

CREATE TABLE api_endpoint_history (
    id              BIGSERIAL PRIMARY KEY,
    mapping_id      INTEGER NOT NULL,  -- no foreign key: history outlives the row
    version         INTEGER NOT NULL CHECK (version > 0),
    row_version     INTEGER,           -- api_endpoint_mappings.version then; NULL once deleted
    change_kind     TEXT NOT NULL
                    CHECK (change_kind IN ('baseline', 'created', 'updated', 'activated',
                                           'deactivated', 'deleted', 'schema', 'rules',
                                           'templates', 'cache', 'rollback')),
    changed_table   TEXT NOT NULL,
    changed_tables  TEXT[] NOT NULL,
    changed_by      TEXT NOT NULL,
    changed_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    definition      JSONB NOT NULL CHECK (jsonb_typeof(definition) = 'object'),
    UNIQUE (mapping_id, version)
);

COMMENT ON TABLE api_endpoint_history IS
    'One row per version of an api_endpoint_mappings row: the full definition after each '
    'change (the row and the rows it depends on), who changed it, when and how. Written by triggers.';

-- The latest version of each mapping, and the transaction that wrote it. Its row
-- is the lock that orders the versions of one mapping.
CREATE TABLE engine_history_heads (
    mapping_id  INTEGER PRIMARY KEY,
    version     INTEGER NOT NULL DEFAULT 0,
    history_id  BIGINT,
    xact        xid8
);

-- ---------------------------------------------------------------------------
-- The definition of mappings as they are now (NULL-free: missing mappings are
-- simply not returned).
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION engine_endpoint_definitions(p_ids INTEGER[])
RETURNS TABLE (mapping_id INTEGER, row_version INTEGER, definition JSONB)
LANGUAGE sql
STABLE
AS $$
SELECT m.id, m.version, jsonb_build_object(
    'mapping', to_jsonb(m) - 'id' - 'created_at' - 'updated_at' - 'version',
    'validation_schemas', COALESCE((
        SELECT jsonb_agg(to_jsonb(s) - 'endpoint_mapping_id' - 'created_at' - 'updated_at'
                         ORDER BY s.applies_to, s.id)
        FROM api_validation_schemas s
        WHERE s.endpoint_mapping_id = m.id), '[]'::jsonb),
    'sanitization_rules', COALESCE((
        SELECT jsonb_agg(to_jsonb(r) - 'created_at' - 'updated_at'
                         ORDER BY r.endpoint_mapping_id NULLS FIRST, r.id)
        FROM data_sanitization_rules r
        WHERE r.endpoint_mapping_id = m.id
           OR (r.endpoint_mapping_id IS NULL AND r.is_active)), '[]'::jsonb),
    'response_templates', COALESCE((
        SELECT jsonb_agg(to_jsonb(t) - 'created_at' - 'updated_at'
                         ORDER BY t.response_type, t.id)
        FROM api_response_templates t
        WHERE t.endpoint_mapping_id = m.id
           OR (t.endpoint_mapping_id IS NULL AND NOT EXISTS (
                   SELECT 1 FROM api_response_templates o
                   WHERE o.endpoint_mapping_id = m.id
                     AND o.response_type = t.response_type))), '[]'::jsonb),
    'cache_config', (
        SELECT to_jsonb(c) - 'endpoint_mapping_id' - 'created_at' - 'updated_at'
               - 'cache_hit_ratio' - 'cache_size_mb' - 'cache_eviction_count'
        FROM api_cache_config c
        WHERE c.endpoint_mapping_id = m.id))
FROM api_endpoint_mappings m
WHERE m.id = ANY (p_ids)
$$;

COMMENT ON FUNCTION engine_endpoint_definitions(INTEGER[]) IS
    'The current definition of each mapping (the shape of api_endpoint_history.definition).';

-- The kind of a version that folds a second change of the same transaction in.
CREATE OR REPLACE FUNCTION engine_history_merge_kind(p_old TEXT, p_new TEXT, p_exists BOOLEAN)
RETURNS TEXT
LANGUAGE sql
IMMUTABLE
AS $$
SELECT CASE
    WHEN NOT p_exists THEN 'deleted'
    WHEN 'rollback' IN (p_old, p_new) THEN 'rollback'
    WHEN p_old = 'deleted' THEN 'updated'  -- deleted and inserted again
    WHEN p_old IN ('created', 'baseline') THEN p_old
    WHEN p_old = p_new THEN p_old
    ELSE 'updated'
END
$$;

-- ---------------------------------------------------------------------------
-- engine_history_write: record one change of one mapping. The definition is read
-- after the mapping's head is locked, so under READ COMMITTED it includes what a
-- concurrent transaction that held the lock committed meanwhile.
--   p_deleted_row  to_jsonb of the deleted mapping row: the version records the
--                  last definition with this row as its mapping part
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION engine_history_write(
    p_mapping_id   INTEGER,
    p_kind         TEXT,
    p_table        TEXT,
    p_deleted_row  JSONB DEFAULT NULL
)
RETURNS VOID
LANGUAGE plpgsql
AS $$
DECLARE
    v_actor        TEXT := COALESCE(NULLIF(current_setting('engine.actor', true), ''),
                                    current_user::text);
    v_explicit     TEXT := NULLIF(current_setting('engine.change_kind', true), '');
    v_exists       BOOLEAN := p_deleted_row IS NULL;
    v_kind         TEXT := p_kind;
    v_def          JSONB;
    v_row_version  INTEGER;
    v_head         engine_history_heads%ROWTYPE;
    v_latest       api_endpoint_history%ROWTYPE;
    v_before       api_endpoint_history%ROWTYPE;  -- the version before this transaction's
    v_id           BIGINT;
BEGIN
    IF v_explicit IS NOT NULL AND v_exists THEN
        IF v_explicit NOT IN ('created', 'updated', 'activated', 'deactivated', 'schema',
                              'rules', 'templates', 'cache', 'rollback') THEN
            RAISE EXCEPTION 'engine.change_kind % is not a change kind', quote_literal(v_explicit)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use rollback (or leave it unset: the triggers name the kind).';
        END IF;
        v_kind := v_explicit;
    END IF;

    -- lock this mapping's head (waits for a concurrent writer of the same mapping)
    INSERT INTO engine_history_heads AS h (mapping_id) VALUES (p_mapping_id)
    ON CONFLICT (mapping_id) DO UPDATE SET version = h.version
    RETURNING h.* INTO v_head;

    IF v_head.history_id IS NOT NULL THEN
        SELECT * INTO v_latest FROM api_endpoint_history WHERE id = v_head.history_id;
    END IF;

    IF v_exists THEN
        SELECT d.definition, d.row_version INTO v_def, v_row_version
        FROM engine_endpoint_definitions(ARRAY[p_mapping_id]) d;
        IF v_def IS NULL THEN
            RETURN;  -- the mapping is gone (its own deletion records that)
        END IF;
    ELSE
        v_def := COALESCE(v_latest.definition, jsonb_build_object(
                     'validation_schemas', '[]'::jsonb, 'sanitization_rules', '[]'::jsonb,
                     'response_templates', '[]'::jsonb, 'cache_config', NULL))
                 || jsonb_build_object('mapping', p_deleted_row - 'id' - 'created_at'
                                                  - 'updated_at' - 'version');
    END IF;

    IF v_head.xact IS NOT DISTINCT FROM pg_current_xact_id() THEN
        -- this transaction already wrote the latest version: fold this change into it
        SELECT * INTO v_before FROM api_endpoint_history
        WHERE mapping_id = p_mapping_id AND version = v_head.version - 1;
        IF (v_before.id IS NULL AND NOT v_exists)
           OR (v_before.id IS NOT NULL AND v_before.definition = v_def
               AND (v_before.row_version IS NOT NULL) = v_exists) THEN
            -- back where it was before this transaction: nothing to record
            DELETE FROM api_endpoint_history WHERE id = v_latest.id;
            UPDATE engine_history_heads
            SET version = v_head.version - 1, history_id = v_before.id, xact = NULL
            WHERE mapping_id = p_mapping_id;
            RETURN;
        END IF;
        UPDATE api_endpoint_history
        SET definition = v_def,
            row_version = v_row_version,
            change_kind = engine_history_merge_kind(change_kind, v_kind, v_exists),
            changed_tables = CASE WHEN p_table = ANY (changed_tables) THEN changed_tables
                                  ELSE changed_tables || p_table END,
            changed_by = v_actor
        WHERE id = v_latest.id;
        RETURN;
    END IF;

    IF v_latest.id IS NOT NULL AND v_latest.definition = v_def
       AND (v_latest.row_version IS NOT NULL) = v_exists THEN
        RETURN;  -- nothing changed
    END IF;
    IF v_latest.id IS NULL AND NOT v_exists THEN
        RETURN;  -- a row without history deleted: nothing is known to keep
    END IF;

    INSERT INTO api_endpoint_history
        (mapping_id, version, row_version, change_kind, changed_table, changed_tables,
         changed_by, definition)
    VALUES (p_mapping_id, v_head.version + 1, v_row_version, v_kind, p_table, ARRAY[p_table],
            v_actor, v_def)
    RETURNING id INTO v_id;
    UPDATE engine_history_heads
    SET version = v_head.version + 1, history_id = v_id, xact = pg_current_xact_id()
    WHERE mapping_id = p_mapping_id;
END;
$$;

-- Record a change of each of p_ids (mappings that no longer exist are skipped),
-- in id order so that concurrent writers lock heads in one order.
CREATE OR REPLACE FUNCTION engine_history_record(p_ids INTEGER[], p_kind TEXT, p_table TEXT)
RETURNS VOID
LANGUAGE plpgsql
AS $$
DECLARE
    v_id INTEGER;
BEGIN
    FOR v_id IN SELECT DISTINCT u.id FROM unnest(p_ids) AS u(id) WHERE u.id IS NOT NULL ORDER BY 1
    LOOP
        PERFORM engine_history_write(v_id, p_kind, p_table);
    END LOOP;
END;
$$;

-- ---------------------------------------------------------------------------
-- Triggers on api_endpoint_mappings: statement-level AFTER triggers, so they run
-- after every row trigger of sql/004 and sql/006 (version bump, error-code lock)
-- and see the final rows. One trigger per event, as transition tables allow only
-- one event per trigger.
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION engine_history_mappings()
RETURNS TRIGGER
LANGUAGE plpgsql
AS $$
DECLARE
    r RECORD;
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM engine_history_record(ARRAY(SELECT n.id FROM new_rows n), 'created', TG_TABLE_NAME);
    ELSIF TG_OP = 'DELETE' THEN
        FOR r IN SELECT o.id, to_jsonb(o) AS old_row FROM old_rows o ORDER BY o.id LOOP
            PERFORM engine_history_write(r.id, 'deleted', TG_TABLE_NAME, r.old_row);
        END LOOP;
    ELSIF TG_OP = 'UPDATE' THEN
        FOR r IN
            SELECT COALESCE(n.id, o.id) AS id,
                   to_jsonb(o) AS old_row,
                   n.id IS NOT NULL AS present,
                   CASE
                       WHEN o.id IS NULL THEN 'created'
                       WHEN n.id IS NULL THEN 'deleted'
                       WHEN (to_jsonb(n) - 'is_active' - 'version' - 'updated_at')
                            = (to_jsonb(o) - 'is_active' - 'version' - 'updated_at')
                            AND n.is_active IS DISTINCT FROM o.is_active
                           THEN CASE WHEN n.is_active THEN 'activated' ELSE 'deactivated' END
                       ELSE 'updated'
                   END AS kind
            FROM old_rows o
            FULL JOIN new_rows n ON n.id = o.id
            WHERE o.id IS NULL OR n.id IS NULL
               OR (to_jsonb(n) - 'version' - 'updated_at')
                  IS DISTINCT FROM (to_jsonb(o) - 'version' - 'updated_at')
            ORDER BY 1
        LOOP
            IF r.present THEN
                PERFORM engine_history_write(r.id, r.kind, TG_TABLE_NAME);
            ELSE  -- its id was changed away
                PERFORM engine_history_write(r.id, 'deleted', TG_TABLE_NAME, r.old_row);
            END IF;
        END LOOP;
    ELSIF TG_OP = 'TRUNCATE' THEN  -- BEFORE TRUNCATE: every row is about to go
        FOR r IN SELECT m.id, to_jsonb(m) AS old_row FROM api_endpoint_mappings m ORDER BY m.id LOOP
            PERFORM engine_history_write(r.id, 'deleted', TG_TABLE_NAME, r.old_row);
        END LOOP;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER trg_api_endpoint_mappings_history_insert
    AFTER INSERT ON api_endpoint_mappings
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION engine_history_mappings();

CREATE TRIGGER trg_api_endpoint_mappings_history_update
    AFTER UPDATE ON api_endpoint_mappings
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION engine_history_mappings();

CREATE TRIGGER trg_api_endpoint_mappings_history_delete
    AFTER DELETE ON api_endpoint_mappings
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION engine_history_mappings();

CREATE TRIGGER trg_api_endpoint_mappings_history_truncate
    BEFORE TRUNCATE ON api_endpoint_mappings
    FOR EACH STATEMENT EXECUTE FUNCTION engine_history_mappings();

-- ---------------------------------------------------------------------------
-- Triggers on the rows a mapping depends on. Arguments: the change kind, and
-- the columns whose change alone does not change a definition.
-- A row with endpoint_mapping_id NULL (a global rule, a default template) may
-- apply to every mapping: every mapping's definition is looked at, and those
-- it changed get a version.
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION engine_history_dependents()
RETURNS TRIGGER
LANGUAGE plpgsql
AS $$
DECLARE
    v_kind    TEXT := TG_ARGV[0];
    v_ignore  TEXT[] := TG_ARGV[1]::TEXT[];
    v_ids     INTEGER[];
    v_all     BOOLEAN := false;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(DISTINCT n.endpoint_mapping_id)
                   FILTER (WHERE n.endpoint_mapping_id IS NOT NULL),
               COALESCE(bool_or(n.endpoint_mapping_id IS NULL), false)
        INTO v_ids, v_all
        FROM new_rows n;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT o.endpoint_mapping_id)
                   FILTER (WHERE o.endpoint_mapping_id IS NOT NULL),
               COALESCE(bool_or(o.endpoint_mapping_id IS NULL), false)
        INTO v_ids, v_all
        FROM old_rows o;
    ELSIF TG_OP = 'UPDATE' THEN
        SELECT array_agg(DISTINCT x.mid) FILTER (WHERE x.mid IS NOT NULL),
               COALESCE(bool_or(x.mid IS NULL), false)
        INTO v_ids, v_all
        FROM old_rows o
        FULL JOIN new_rows n ON n.id = o.id
        CROSS JOIN LATERAL (VALUES (o.endpoint_mapping_id, o.id IS NOT NULL),
                                   (n.endpoint_mapping_id, n.id IS NOT NULL)) AS x(mid, present)
        WHERE x.present
          AND (o.id IS NULL OR n.id IS NULL
               OR (to_jsonb(n) - v_ignore) IS DISTINCT FROM (to_jsonb(o) - v_ignore));
    ELSE  -- TRUNCATE (AFTER): every mapping's definition may have changed
        v_all := true;
    END IF;
    IF v_all THEN
        v_ids := ARRAY(SELECT m.id FROM api_endpoint_mappings m);
    END IF;
    PERFORM engine_history_record(v_ids, v_kind, TG_TABLE_NAME);
    RETURN NULL;
END;
$$;

CREATE TRIGGER trg_api_validation_schemas_history_insert
    AFTER INSERT ON api_validation_schemas
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION engine_history_dependents('schema', '{created_at,updated_at}');
CREATE TRIGGER trg_api_validation_schemas_history_update
    AFTER UPDATE ON api_validation_schemas
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION engine_history_dependents('schema', '{created_at,updated_at}');
CREATE TRIGGER trg_api_validation_schemas_history_delete
    AFTER DELETE ON api_validation_schemas
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION engine_history_dependents('schema', '{created_at,updated_at}');
CREATE TRIGGER trg_api_validation_schemas_history_truncate
    AFTER TRUNCATE ON api_validation_schemas
    FOR EACH STATEMENT EXECUTE FUNCTION engine_history_dependents('schema', '{created_at,updated_at}');

CREATE TRIGGER trg_data_sanitization_rules_history_insert
    AFTER INSERT ON data_sanitization_rules
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION engine_history_dependents('rules', '{created_at,updated_at}');
CREATE TRIGGER trg_data_sanitization_rules_history_update
    AFTER UPDATE ON data_sanitization_rules
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION engine_history_dependents('rules', '{created_at,updated_at}');
CREATE TRIGGER trg_data_sanitization_rules_history_delete
    AFTER DELETE ON data_sanitization_rules
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION engine_history_dependents('rules', '{created_at,updated_at}');
CREATE TRIGGER trg_data_sanitization_rules_history_truncate
    AFTER TRUNCATE ON data_sanitization_rules
    FOR EACH STATEMENT EXECUTE FUNCTION engine_history_dependents('rules', '{created_at,updated_at}');

CREATE TRIGGER trg_api_response_templates_history_insert
    AFTER INSERT ON api_response_templates
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION engine_history_dependents('templates', '{created_at,updated_at}');
CREATE TRIGGER trg_api_response_templates_history_update
    AFTER UPDATE ON api_response_templates
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION engine_history_dependents('templates', '{created_at,updated_at}');
CREATE TRIGGER trg_api_response_templates_history_delete
    AFTER DELETE ON api_response_templates
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION engine_history_dependents('templates', '{created_at,updated_at}');
CREATE TRIGGER trg_api_response_templates_history_truncate
    AFTER TRUNCATE ON api_response_templates
    FOR EACH STATEMENT EXECUTE FUNCTION engine_history_dependents('templates', '{created_at,updated_at}');

-- the cache figures (written by the engine and calculate_cache_hit_ratio) are not
-- configuration: updating only them records nothing and costs one comparison
CREATE TRIGGER trg_api_cache_config_history_insert
    AFTER INSERT ON api_cache_config
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION engine_history_dependents(
        'cache', '{created_at,updated_at,cache_hit_ratio,cache_size_mb,cache_eviction_count}');
CREATE TRIGGER trg_api_cache_config_history_update
    AFTER UPDATE ON api_cache_config
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION engine_history_dependents(
        'cache', '{created_at,updated_at,cache_hit_ratio,cache_size_mb,cache_eviction_count}');
CREATE TRIGGER trg_api_cache_config_history_delete
    AFTER DELETE ON api_cache_config
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION engine_history_dependents(
        'cache', '{created_at,updated_at,cache_hit_ratio,cache_size_mb,cache_eviction_count}');
CREATE TRIGGER trg_api_cache_config_history_truncate
    AFTER TRUNCATE ON api_cache_config
    FOR EACH STATEMENT EXECUTE FUNCTION engine_history_dependents(
        'cache', '{created_at,updated_at,cache_hit_ratio,cache_size_mb,cache_eviction_count}');

-- ---------------------------------------------------------------------------
-- Baseline: every row existing now gets version 1, so every row has history.
-- ---------------------------------------------------------------------------
WITH baseline AS (
    INSERT INTO api_endpoint_history
        (mapping_id, version, row_version, change_kind, changed_table, changed_tables,
         changed_by, definition)
    SELECT d.mapping_id, 1, d.row_version, 'baseline', 'api_endpoint_mappings',
           ARRAY['api_endpoint_mappings'],
           COALESCE(NULLIF(current_setting('engine.actor', true), ''), current_user::text),
           d.definition
    FROM engine_endpoint_definitions(ARRAY(SELECT id FROM api_endpoint_mappings)) d
    RETURNING id, mapping_id, version
)
INSERT INTO engine_history_heads (mapping_id, version, history_id)
SELECT mapping_id, version, id FROM baseline;

CREATE INDEX idx_api_endpoint_history_changed_at ON api_endpoint_history (changed_at DESC);
