-- 017: a bounded error log.
--
-- log_api_error() wrote its row and then ran check_error_patterns() on it: every
-- logged error (404s for unknown paths included) matched every stored pattern
-- against its message, which holds text the client chose (a request to
-- "/table x does not exist" raised a schema_error alert), and counted the last
-- hour's rows, so each call cost more as the log grew (3 ms on an empty log,
-- 223 ms with 100,000 rows).
--
-- Now:
--   * log_api_error() only writes its row (same signature and row as before).
--   * check_error_patterns(p_error_message) takes a database error message
--     (the database_error column: PostgreSQL's SQLSTATE and message), never an
--     API message, and counts only the last hour's rows whose database_error
--     matches. The guide's behaviour is kept otherwise: one regex per row for
--     matching and counting, an alert at the threshold, at most one open alert
--     per pattern and hour, invalid regexes skipped.
--   * scan_error_patterns() is what the engine's periodic job runs (every
--     minute): the rows logged since the previous scan (by id, a watermark in
--     engine_error_pattern_scan shared by every process) that carry a database
--     error are matched against each pattern; a pattern that matched any is
--     counted over the last hour and alerted as above. A row whose id was taken
--     before the previous scan but committed after it is not matched (ids are
--     taken at insert, not at commit); it still counts towards the next alert
--     of its pattern within the hour.
--
-- Indexes for the retention job (engine/retention.py), which deletes rows older
-- than ENGINE_ERROR_LOG_RETENTION_DAYS in batches, and for the pattern scan.

-- ---------------------------------------------------------------------------
-- Indexes
-- ---------------------------------------------------------------------------

-- api_error_logs (error_timestamp), database_connection_pool (metric_timestamp)
-- and database_connection_health (last_activity_time) have theirs since 001.
CREATE INDEX IF NOT EXISTS idx_api_performance_metrics_timestamp
    ON api_performance_metrics (metric_timestamp);
CREATE INDEX IF NOT EXISTS idx_query_optimization_tracking_created
    ON query_optimization_tracking (created_at);
CREATE INDEX IF NOT EXISTS idx_system_alerts_created ON system_alerts (created_at);

-- The pattern scan and count read only rows with a database error.
CREATE INDEX IF NOT EXISTS idx_api_error_logs_database_error_id
    ON api_error_logs (id) WHERE database_error IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_api_error_logs_database_error_timestamp
    ON api_error_logs (error_timestamp) WHERE database_error IS NOT NULL;

-- ---------------------------------------------------------------------------
-- The scan's watermark: one row
-- ---------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS engine_error_pattern_scan (
    id           BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    last_log_id  BIGINT NOT NULL DEFAULT 0,
    scanned_at   TIMESTAMPTZ
);

-- Rows logged before this migration were checked when they were written.
INSERT INTO engine_error_pattern_scan (last_log_id)
SELECT COALESCE(max(id), 0) FROM api_error_logs
ON CONFLICT (id) DO NOTHING;

-- ---------------------------------------------------------------------------
-- engine_alert_error_pattern: count one pattern over the last hour, alert once
-- ---------------------------------------------------------------------------

-- Whether an alert was raised: at least alert_threshold (default 10) rows of
-- the last hour whose database_error matches p_regex, and no open alert of the
-- pattern from the last hour.
CREATE OR REPLACE FUNCTION engine_alert_error_pattern(
    p_pattern         database_error_patterns,
    p_regex           TEXT,
    p_database_error  TEXT
)
RETURNS BOOLEAN
LANGUAGE plpgsql
AS $$
DECLARE
    v_error_count  INTEGER;
    v_threshold    INTEGER := COALESCE(p_pattern.alert_threshold, 10);
BEGIN
    SELECT count(*) INTO v_error_count
    FROM api_error_logs
    WHERE error_timestamp > now() - INTERVAL '1 hour'
      AND database_error IS NOT NULL
      AND database_error ~ p_regex;

    IF v_error_count < v_threshold THEN
        RETURN FALSE;
    END IF;

    -- One open alert per pattern and hour: serialise concurrent checks on the
    -- pattern, then look for an unresolved alert from the last hour.
    PERFORM pg_advisory_xact_lock(hashtext('engine.check_error_patterns'), p_pattern.id);
    IF EXISTS (
        SELECT 1
        FROM system_alerts
        WHERE alert_type = 'database_error_pattern'
          AND NOT is_resolved
          AND created_at > now() - INTERVAL '1 hour'
          AND alert_data ->> 'pattern_id' = p_pattern.id::TEXT
    ) THEN
        RETURN FALSE;
    END IF;

    INSERT INTO system_alerts (alert_type, alert_message, alert_severity, alert_data)
    VALUES (
        'database_error_pattern',
        'Database error pattern detected: ' || p_pattern.error_pattern,
        COALESCE(p_pattern.alert_severity, 'warning'),
        jsonb_build_object(
            'pattern_id', p_pattern.id,
            'error_type', p_pattern.error_type,
            'pattern_regex', p_regex,
            'error_count', v_error_count,
            'alert_threshold', v_threshold,
            'window_minutes', 60,
            'suggested_action', p_pattern.suggested_action,
            'last_database_error', left(p_database_error, 1000)
        )
    );
    RETURN TRUE;
END;
$$;

-- ---------------------------------------------------------------------------
-- check_error_patterns: one database error message against every pattern
-- ---------------------------------------------------------------------------

-- p_error_message is a database error (what api_error_logs.database_error
-- holds), not an API message: the parameter keeps the guide's name.
CREATE OR REPLACE FUNCTION check_error_patterns(p_error_message TEXT)
RETURNS VOID
LANGUAGE plpgsql
AS $$
DECLARE
    v_pattern  database_error_patterns%ROWTYPE;
    v_regex    TEXT;
    v_matches  BOOLEAN;
BEGIN
    IF p_error_message IS NULL OR p_error_message = '' THEN
        RETURN;
    END IF;

    FOR v_pattern IN SELECT * FROM database_error_patterns ORDER BY id LOOP
        v_regex := COALESCE(NULLIF(v_pattern.pattern_regex, ''), v_pattern.error_pattern);
        -- A row with an invalid regex is skipped, never fatal for the caller.
        BEGIN
            v_matches := p_error_message ~ v_regex;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'check_error_patterns: skipping database_error_patterns row % (%): %',
                v_pattern.id, v_regex, SQLERRM;
            CONTINUE;
        END;
        IF v_matches THEN
            PERFORM engine_alert_error_pattern(v_pattern, v_regex, p_error_message);
        END IF;
    END LOOP;
END;
$$;

-- ---------------------------------------------------------------------------
-- scan_error_patterns: the periodic job's work
-- ---------------------------------------------------------------------------

-- The alerts raised. Scans run one at a time (the watermark row is locked);
-- only rows of the last hour are matched: older ones cannot reach a threshold.
CREATE OR REPLACE FUNCTION scan_error_patterns()
RETURNS INTEGER
LANGUAGE plpgsql
AS $$
DECLARE
    v_from     BIGINT;
    v_to       BIGINT;
    v_pattern  database_error_patterns%ROWTYPE;
    v_regex    TEXT;
    v_last     TEXT;
    v_raised   INTEGER := 0;
BEGIN
    SELECT last_log_id INTO v_from FROM engine_error_pattern_scan FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO engine_error_pattern_scan (last_log_id) VALUES (0)
        ON CONFLICT (id) DO NOTHING;
        SELECT last_log_id INTO v_from FROM engine_error_pattern_scan FOR UPDATE;
    END IF;
    SELECT COALESCE(max(id), 0) INTO v_to FROM api_error_logs;

    IF v_to > v_from THEN
        FOR v_pattern IN SELECT * FROM database_error_patterns ORDER BY id LOOP
            v_regex := COALESCE(NULLIF(v_pattern.pattern_regex, ''), v_pattern.error_pattern);
            BEGIN
                SELECT l.database_error INTO v_last
                FROM api_error_logs l
                WHERE l.id > v_from AND l.id <= v_to
                  AND l.database_error IS NOT NULL
                  AND l.error_timestamp > now() - INTERVAL '1 hour'
                  AND l.database_error ~ v_regex
                ORDER BY l.id DESC
                LIMIT 1;
            EXCEPTION WHEN OTHERS THEN
                RAISE WARNING 'scan_error_patterns: skipping database_error_patterns row % (%): %',
                    v_pattern.id, v_regex, SQLERRM;
                CONTINUE;
            END;
            IF v_last IS NOT NULL
               AND engine_alert_error_pattern(v_pattern, v_regex, v_last) THEN
                v_raised := v_raised + 1;
            END IF;
        END LOOP;
    END IF;

    UPDATE engine_error_pattern_scan SET last_log_id = GREATEST(v_to, v_from), scanned_at = now();
    RETURN v_raised;
END;
$$;

-- ---------------------------------------------------------------------------
-- log_api_error: the row only (patterns: scan_error_patterns, from a job)
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

    RETURN v_error_log_id;
END;
$$;
