-- 004: catalogue change notification, version history counters, and a lookup
-- helper for seeds.
--
-- Every engine process LISTENs on the channel 'engine_catalog' and rebuilds its
-- catalogue when a catalogue table changes; the payload is the table name.
-- Triggers are statement-level, so a bulk edit sends one notification, and
-- PostgreSQL folds identical notifications of one transaction into one.

CREATE OR REPLACE FUNCTION engine_notify_catalog()
RETURNS TRIGGER
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('engine_catalog', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;

CREATE TRIGGER trg_api_endpoint_mappings_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_endpoint_mappings
    FOR EACH STATEMENT EXECUTE FUNCTION engine_notify_catalog();

CREATE TRIGGER trg_api_validation_schemas_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_validation_schemas
    FOR EACH STATEMENT EXECUTE FUNCTION engine_notify_catalog();

CREATE TRIGGER trg_data_sanitization_rules_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON data_sanitization_rules
    FOR EACH STATEMENT EXECUTE FUNCTION engine_notify_catalog();

CREATE TRIGGER trg_api_response_templates_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_response_templates
    FOR EACH STATEMENT EXECUTE FUNCTION engine_notify_catalog();

CREATE TRIGGER trg_api_error_codes_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_error_codes
    FOR EACH STATEMENT EXECUTE FUNCTION engine_notify_catalog();

-- api_cache_config also holds statistics (cache_hit_ratio, written by
-- calculate_cache_hit_ratio; cache_size_mb; cache_eviction_count). Updating
-- only those must not make every engine process rebuild its catalogue, so
-- UPDATE notifies only when a configuration column is a target of the SET.
-- A later migration adding a configuration column must list it here too.
CREATE TRIGGER trg_api_cache_config_notify
    AFTER INSERT OR DELETE OR TRUNCATE ON api_cache_config
    FOR EACH STATEMENT EXECUTE FUNCTION engine_notify_catalog();

CREATE TRIGGER trg_api_cache_config_notify_update
    AFTER UPDATE OF endpoint_mapping_id, cache_enabled, cache_ttl_seconds, cache_key_template,
                    cache_invalidation_rules, cache_strategy, cache_distribution,
                    cache_max_entries
    ON api_cache_config
    FOR EACH STATEMENT EXECUTE FUNCTION engine_notify_catalog();

-- ---------------------------------------------------------------------------
-- Mapping versions: every real change of a mapping bumps its version and
-- updated_at. The version moves only here; an UPDATE that changes nothing but
-- version/updated_at keeps the old version.
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION engine_bump_mapping_version()
RETURNS TRIGGER
LANGUAGE plpgsql
AS $$
BEGIN
    IF (to_jsonb(NEW) - 'version' - 'updated_at')
       IS DISTINCT FROM (to_jsonb(OLD) - 'version' - 'updated_at') THEN
        NEW.version := OLD.version + 1;
        NEW.updated_at := now();
    ELSE
        NEW.version := OLD.version;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER trg_api_endpoint_mappings_version
    BEFORE UPDATE ON api_endpoint_mappings
    FOR EACH ROW EXECUTE FUNCTION engine_bump_mapping_version();

-- updated_at on every other table that has one.
CREATE OR REPLACE FUNCTION engine_touch_updated_at()
RETURNS TRIGGER
LANGUAGE plpgsql
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER trg_users_updated_at
    BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION engine_touch_updated_at();

CREATE TRIGGER trg_api_response_templates_updated_at
    BEFORE UPDATE ON api_response_templates
    FOR EACH ROW EXECUTE FUNCTION engine_touch_updated_at();

CREATE TRIGGER trg_api_error_codes_updated_at
    BEFORE UPDATE ON api_error_codes
    FOR EACH ROW EXECUTE FUNCTION engine_touch_updated_at();

CREATE TRIGGER trg_api_validation_schemas_updated_at
    BEFORE UPDATE ON api_validation_schemas
    FOR EACH ROW EXECUTE FUNCTION engine_touch_updated_at();

CREATE TRIGGER trg_data_sanitization_rules_updated_at
    BEFORE UPDATE ON data_sanitization_rules
    FOR EACH ROW EXECUTE FUNCTION engine_touch_updated_at();

CREATE TRIGGER trg_api_cache_config_updated_at
    BEFORE UPDATE ON api_cache_config
    FOR EACH ROW EXECUTE FUNCTION engine_touch_updated_at();

CREATE TRIGGER trg_database_connection_health_updated_at
    BEFORE UPDATE ON database_connection_health
    FOR EACH ROW EXECUTE FUNCTION engine_touch_updated_at();

CREATE TRIGGER trg_database_failover_config_updated_at
    BEFORE UPDATE ON database_failover_config
    FOR EACH ROW EXECUTE FUNCTION engine_touch_updated_at();

-- ---------------------------------------------------------------------------
-- api_mapping_id: seeds reference mappings by path and method, never by id.
-- ---------------------------------------------------------------------------

-- Raises (SQLSTATE P0002, no_data_found) when no mapping has that path and
-- method: a typo in a seed must fail loudly, not store NULL, which in
-- data_sanitization_rules and api_response_templates would mean "every endpoint".
CREATE OR REPLACE FUNCTION api_mapping_id(p_path TEXT, p_method TEXT)
RETURNS INTEGER
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    v_id INTEGER;
BEGIN
    SELECT id INTO v_id
    FROM api_endpoint_mappings
    WHERE endpoint_path = p_path
      AND http_method = upper(p_method);
    IF v_id IS NULL THEN
        RAISE EXCEPTION 'api_mapping_id: no api_endpoint_mappings row for % %',
            upper(p_method), p_path
            USING ERRCODE = 'no_data_found',
                  HINT = 'Insert the mapping before the rows that reference it.';
    END IF;
    RETURN v_id;
END;
$$;
