-- 002: the guide's plpgsql functions, with their bugs fixed.
--
-- Fixed against the guide (seeds-docs/004):
--   * log_api_error failed on an error code missing from api_error_codes (FK),
--     on a user id missing from users (FK), on over-long path/request id/method
--     (VARCHAR parameters do not enforce their length, the columns do), and
--     whenever pattern checking failed. It now never fails for those reasons.
--   * check_error_patterns matched by pattern_regex but counted by error_pattern,
--     looked only at error_message, raised one alert per logged error above the
--     threshold (an alert storm), wrote to a system_alerts table that did not
--     exist, and an invalid regex in any row broke every call.
--   * monitor_query_performance computed an average it never used and had a
--     hard-coded threshold.
--   * calculate_cache_hit_ratio read columns api_performance_metrics did not have
--     (endpoint_mapping_id, cache_hit) and counted rows instead of requests.
--   * check_database_health could not run at all: RETURN QUERY returned text
--     where VARCHAR was declared, its ORDER BY was ambiguous with the OUT
--     parameters, and a pool with zero connections divided by zero.
--   * optimize_connection_pool read total_connections without selecting it,
--     returned nonsense with no metrics, divided by zero, and produced
--     fractional connection counts.

-- ---------------------------------------------------------------------------
-- check_error_patterns: alert when a known database error pattern recurs
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION check_error_patterns(p_error_message TEXT)
RETURNS VOID
LANGUAGE plpgsql
AS $$
DECLARE
    v_pattern      RECORD;
    v_regex        TEXT;
    v_matches      BOOLEAN;
    v_error_count  INTEGER;
    v_threshold    INTEGER;
BEGIN
    IF p_error_message IS NULL OR p_error_message = '' THEN
        RETURN;
    END IF;

    FOR v_pattern IN SELECT * FROM database_error_patterns ORDER BY id LOOP
        -- One regex per row, used both to match and to count.
        v_regex := COALESCE(NULLIF(v_pattern.pattern_regex, ''), v_pattern.error_pattern);

        -- A row with an invalid regex is skipped, never fatal for the caller.
        BEGIN
            v_matches := p_error_message ~ v_regex;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'check_error_patterns: skipping database_error_patterns row % (%): %',
                v_pattern.id, v_regex, SQLERRM;
            CONTINUE;
        END;

        IF NOT v_matches THEN
            CONTINUE;
        END IF;

        -- Recent occurrences, in either the API message or the database error.
        SELECT count(*) INTO v_error_count
        FROM api_error_logs
        WHERE error_timestamp > now() - INTERVAL '1 hour'
          AND (error_message ~ v_regex OR database_error ~ v_regex);

        v_threshold := COALESCE(v_pattern.alert_threshold, 10);
        IF v_error_count < v_threshold THEN
            CONTINUE;
        END IF;

        -- One open alert per pattern and hour: serialise concurrent loggers on
        -- the pattern, then look for an unresolved alert from the last hour.
        PERFORM pg_advisory_xact_lock(hashtext('engine.check_error_patterns'), v_pattern.id);
        IF EXISTS (
            SELECT 1
            FROM system_alerts
            WHERE alert_type = 'database_error_pattern'
              AND NOT is_resolved
              AND created_at > now() - INTERVAL '1 hour'
              AND alert_data ->> 'pattern_id' = v_pattern.id::TEXT
        ) THEN
            CONTINUE;
        END IF;

        INSERT INTO system_alerts (alert_type, alert_message, alert_severity, alert_data)
        VALUES (
            'database_error_pattern',
            'Database error pattern detected: ' || v_pattern.error_pattern,
            COALESCE(v_pattern.alert_severity, 'warning'),
            jsonb_build_object(
                'pattern_id', v_pattern.id,
                'error_type', v_pattern.error_type,
                'pattern_regex', v_regex,
                'error_count', v_error_count,
                'alert_threshold', v_threshold,
                'window_minutes', 60,
                'suggested_action', v_pattern.suggested_action,
                'last_error_message', left(p_error_message, 1000)
            )
        );
    END LOOP;
END;
$$;

-- ---------------------------------------------------------------------------
-- log_api_error: the guide's ten parameters, then the engine's six
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION log_api_error(
    p_request_id            VARCHAR(100),
    p_endpoint_path         VARCHAR(200),
    p_http_method           VARCHAR(10),
    p_error_code            VARCHAR(64),
    p_error_message         TEXT,
    p_error_stack_trace     TEXT DEFAULT NULL,
    p_request_body          TEXT DEFAULT NULL,
    p_user_id               INTEGER DEFAULT NULL,
    p_database_operation    VARCHAR(50) DEFAULT NULL,
    p_database_error        TEXT DEFAULT NULL,
    p_error_category        VARCHAR(50) DEFAULT NULL,
    p_request_headers       JSONB DEFAULT NULL,
    p_request_params        JSONB DEFAULT NULL,
    p_response_status_code  INTEGER DEFAULT NULL,
    p_response_time_ms      INTEGER DEFAULT NULL,
    p_principal             TEXT DEFAULT NULL
)
RETURNS INTEGER
LANGUAGE plpgsql
AS $$
DECLARE
    v_error_log_id  INTEGER;
    v_code          api_error_codes%ROWTYPE;
    v_known_code    BOOLEAN := FALSE;
    v_message       TEXT := p_error_message;
    v_user_id       INTEGER;
BEGIN
    IF p_error_code IS NOT NULL THEN
        SELECT * INTO v_code FROM api_error_codes WHERE error_code = p_error_code;
        v_known_code := FOUND;
        IF NOT v_known_code THEN
            -- Unknown code: keep its text in the message instead of failing the FK.
            v_message := '[' || p_error_code || '] ' || COALESCE(p_error_message, '');
        END IF;
    END IF;

    -- A user id that is not (or no longer) a users row is dropped, not fatal;
    -- p_principal still says who it was.
    IF p_user_id IS NOT NULL AND EXISTS (SELECT 1 FROM users WHERE id = p_user_id) THEN
        v_user_id := p_user_id;
    END IF;

    INSERT INTO api_error_logs (
        request_id, endpoint_path, http_method, error_code, error_message,
        error_stack_trace, request_body, user_id, database_operation, database_error,
        error_category, request_headers, request_params, response_status_code,
        response_time_ms, principal
    ) VALUES (
        left(COALESCE(p_request_id, ''), 100),
        left(COALESCE(p_endpoint_path, ''), 200),
        left(upper(COALESCE(p_http_method, '')), 10),
        CASE WHEN v_known_code THEN v_code.error_code END,
        v_message,
        p_error_stack_trace,
        p_request_body,
        v_user_id,
        left(p_database_operation, 50),
        p_database_error,
        left(COALESCE(p_error_category, v_code.error_category), 50),
        p_request_headers,
        p_request_params,
        COALESCE(p_response_status_code, v_code.http_status_code),
        p_response_time_ms,
        p_principal
    ) RETURNING id INTO v_error_log_id;

    -- Alerting must never lose the log row: a failure in pattern checking is
    -- reported as a warning and rolled back to this point only.
    BEGIN
        PERFORM check_error_patterns(COALESCE(p_database_error, v_message));
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'log_api_error: error pattern check failed for log %: % (SQLSTATE %)',
            v_error_log_id, SQLERRM, SQLSTATE;
    END;

    RETURN v_error_log_id;
END;
$$;

-- ---------------------------------------------------------------------------
-- monitor_query_performance: record slow queries, alert once per hour
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION monitor_query_performance(
    p_endpoint_mapping_id  INTEGER,
    p_query_hash           VARCHAR(64),
    p_execution_time_ms    INTEGER,
    p_query_plan           JSONB DEFAULT NULL,
    p_threshold_ms         INTEGER DEFAULT 1000
)
RETURNS VOID
LANGUAGE plpgsql
AS $$
DECLARE
    v_threshold        INTEGER := COALESCE(p_threshold_ms, 1000);
    v_mapping_id       INTEGER;
    v_query_template   TEXT;
    v_previous_avg_ms  NUMERIC;
    v_previous_count   INTEGER;
BEGIN
    IF p_execution_time_ms IS NULL OR p_execution_time_ms <= v_threshold THEN
        RETURN;
    END IF;

    -- A mapping deleted meanwhile must not make monitoring fail (FK).
    SELECT id, query_template INTO v_mapping_id, v_query_template
    FROM api_endpoint_mappings
    WHERE id = p_endpoint_mapping_id;

    -- History of this query's slow runs, before this one: tells a one-off
    -- spike from a query that is slow every time.
    SELECT avg(original_execution_time_ms), count(*)
    INTO v_previous_avg_ms, v_previous_count
    FROM query_optimization_tracking
    WHERE endpoint_mapping_id IS NOT DISTINCT FROM v_mapping_id
      AND query_hash = p_query_hash;

    INSERT INTO query_optimization_tracking (
        endpoint_mapping_id, query_hash, original_query,
        original_execution_time_ms, query_plan, optimization_reason
    ) VALUES (
        v_mapping_id, p_query_hash, v_query_template,
        p_execution_time_ms, p_query_plan,
        format('execution time %s ms exceeded the %s ms threshold', p_execution_time_ms, v_threshold)
    );

    -- Every slow run is recorded above; the alert is raised once per mapping
    -- and query while an unresolved one from the last hour exists.
    PERFORM pg_advisory_xact_lock(hashtext('engine.monitor_query_performance'),
                                  hashtext(COALESCE(p_endpoint_mapping_id::TEXT, '') || ':' || p_query_hash));
    IF EXISTS (
        SELECT 1
        FROM system_alerts
        WHERE alert_type = 'slow_query_detected'
          AND NOT is_resolved
          AND created_at > now() - INTERVAL '1 hour'
          AND alert_data ->> 'query_hash' = p_query_hash
          AND alert_data ->> 'endpoint_mapping_id' IS NOT DISTINCT FROM p_endpoint_mapping_id::TEXT
    ) THEN
        RETURN;
    END IF;

    INSERT INTO system_alerts (alert_type, alert_message, alert_severity, alert_data)
    VALUES (
        'slow_query_detected',
        'Slow query detected for endpoint mapping ID: ' || COALESCE(p_endpoint_mapping_id::TEXT, 'none'),
        'warning',
        jsonb_build_object(
            'endpoint_mapping_id', p_endpoint_mapping_id,
            'query_hash', p_query_hash,
            'execution_time_ms', p_execution_time_ms,
            'threshold_ms', v_threshold,
            'previous_slow_count', v_previous_count,
            'previous_avg_execution_time_ms', round(v_previous_avg_ms, 2)
        )
    );
END;
$$;

-- ---------------------------------------------------------------------------
-- calculate_cache_hit_ratio: hits / (hits + misses) over a time window
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION calculate_cache_hit_ratio(
    p_endpoint_mapping_id  INTEGER,
    p_time_window_minutes  INTEGER DEFAULT 60
)
RETURNS DECIMAL(5, 2)
LANGUAGE plpgsql
AS $$
DECLARE
    v_cache_hits  BIGINT;
    v_lookups     BIGINT;
    v_hit_ratio   DECIMAL(5, 2);
BEGIN
    SELECT COALESCE(sum(cache_hits), 0), COALESCE(sum(cache_hits + cache_misses), 0)
    INTO v_cache_hits, v_lookups
    FROM api_performance_metrics
    WHERE endpoint_mapping_id = p_endpoint_mapping_id
      AND metric_timestamp > now() - make_interval(mins => COALESCE(p_time_window_minutes, 60));

    IF v_lookups > 0 THEN
        v_hit_ratio := round(100.0 * v_cache_hits / v_lookups, 2);
    ELSE
        v_hit_ratio := 0;
    END IF;

    UPDATE api_cache_config
    SET cache_hit_ratio = v_hit_ratio,
        updated_at = now()
    WHERE endpoint_mapping_id = p_endpoint_mapping_id;

    RETURN v_hit_ratio;
END;
$$;

-- ---------------------------------------------------------------------------
-- check_database_health: latest metrics of each pool from the last 5 minutes
-- ---------------------------------------------------------------------------

-- Statuses: 'critical' above 80 % utilisation, 'warning' above 60 %, else
-- 'healthy'; 'unknown' when the pool reports no (or zero) total connections,
-- where utilisation cannot be computed (NULL).
CREATE OR REPLACE FUNCTION check_database_health()
RETURNS TABLE (
    pool_name                       VARCHAR(100),
    health_status                   VARCHAR(20),
    active_connections              INTEGER,
    total_connections               INTEGER,
    connection_utilization_percent  DECIMAL(5, 2)
)
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY
    WITH latest AS (
        SELECT DISTINCT ON (dcp.pool_name)
               dcp.pool_name AS pname,
               dcp.active_connections AS active,
               dcp.total_connections AS total,
               -- NULL without connections (no division by zero); capped so that
               -- bad data (active > 10 x total) cannot overflow DECIMAL(5,2).
               CASE WHEN dcp.total_connections > 0 THEN
                   LEAST(round(100.0 * COALESCE(dcp.active_connections, 0)
                               / dcp.total_connections, 2), 999.99)
               END AS utilization
        FROM database_connection_pool dcp
        WHERE dcp.metric_timestamp > now() - INTERVAL '5 minutes'
        ORDER BY dcp.pool_name, dcp.metric_timestamp DESC, dcp.id DESC
    )
    SELECT l.pname::VARCHAR(100),
           (CASE
                WHEN l.utilization IS NULL THEN 'unknown'
                WHEN l.utilization > 80 THEN 'critical'
                WHEN l.utilization > 60 THEN 'warning'
                ELSE 'healthy'
            END)::VARCHAR(20),
           l.active,
           l.total,
           l.utilization::DECIMAL(5, 2)
    FROM latest l
    ORDER BY l.utilization DESC NULLS LAST, l.pname;
END;
$$;

-- ---------------------------------------------------------------------------
-- optimize_connection_pool: size recommendations from the latest metrics
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION optimize_connection_pool(p_pool_name VARCHAR(100))
RETURNS JSONB
LANGUAGE plpgsql
AS $$
DECLARE
    v_row          database_connection_pool%ROWTYPE;
    v_total        INTEGER;
    v_utilization  DECIMAL(5, 2);
    v_max          INTEGER;
    v_min          INTEGER;
    v_reason       TEXT;
BEGIN
    SELECT * INTO v_row
    FROM database_connection_pool
    WHERE pool_name = p_pool_name
    ORDER BY metric_timestamp DESC, id DESC
    LIMIT 1;

    IF NOT FOUND THEN
        RETURN jsonb_build_object(
            'pool_name', p_pool_name,
            'status', 'no_metrics',
            'current_utilization_percent', NULL,
            'recommended_max_connections', NULL,
            'recommended_min_connections', NULL,
            'optimization_reason', 'No metrics recorded for this pool'
        );
    END IF;

    v_total := v_row.total_connections;
    IF COALESCE(v_total, 0) = 0 THEN
        RETURN jsonb_build_object(
            'pool_name', p_pool_name,
            'status', 'no_connections',
            'metric_timestamp', v_row.metric_timestamp,
            'total_connections', v_total,
            'active_connections', v_row.active_connections,
            'current_utilization_percent', NULL,
            'recommended_max_connections', NULL,
            'recommended_min_connections', NULL,
            'optimization_reason',
                'The pool reports zero connections: utilization cannot be computed'
        );
    END IF;

    v_utilization := LEAST(round(100.0 * COALESCE(v_row.active_connections, 0) / v_total, 2), 999.99);

    IF v_utilization > 80 THEN
        v_max := ceil(v_total * 1.5)::INTEGER;
        v_min := round(v_total * 0.3)::INTEGER;
        v_reason := 'High utilization detected';
    ELSIF v_utilization < 30 THEN
        v_max := GREATEST(1, round(v_total * 0.8))::INTEGER;
        v_min := round(v_total * 0.2)::INTEGER;
        v_reason := 'Low utilization detected';
    ELSE
        v_max := v_total;
        v_min := round(v_total * 0.25)::INTEGER;
        v_reason := 'Optimal utilization';
    END IF;

    RETURN jsonb_build_object(
        'pool_name', p_pool_name,
        'status', 'ok',
        'metric_timestamp', v_row.metric_timestamp,
        'total_connections', v_total,
        'active_connections', v_row.active_connections,
        'current_utilization_percent', v_utilization,
        'recommended_max_connections', v_max,
        'recommended_min_connections', LEAST(v_min, v_max),
        'optimization_reason', v_reason
    );
END;
$$;
