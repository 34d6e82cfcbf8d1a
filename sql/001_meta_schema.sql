-- 001: the engine's meta-schema.
--
-- Every table of the "API database integration guide" (seeds-docs/004), keeping
-- the guide's column names, with its bugs fixed and the columns the engine needs
-- added. Timestamps are TIMESTAMPTZ throughout. Foreign keys say what happens on
-- delete: configuration rows of a mapping go with it (CASCADE), history and
-- metrics rows survive it (SET NULL).
--
-- Fixed against the guide:
--   * `users` and `system_alerts` are referenced (api_error_logs, the error and
--     performance functions) but never created: created here.
--   * api_error_codes.error_code VARCHAR(20) could not hold the guide's own
--     'DATABASE_CONNECTION_ERROR' (25 chars): VARCHAR(64), here and in
--     api_error_logs.
--   * api_performance_metrics had no per-mapping key and no hit/miss counts,
--     though calculate_cache_hit_ratio reads both: endpoint_mapping_id,
--     cache_hits, cache_misses added.
--   * validation schemas and cache configs pointed at hard-coded mapping ids
--     with nullable keys: now NOT NULL foreign keys (seeds use api_mapping_id()).
--   * closed vocabularies written only as comments are CHECK constraints.
--   * the index duplicating UNIQUE(endpoint_path, http_method) is not created.

-- ---------------------------------------------------------------------------
-- Principals and alerts (referenced by the guide, never created there)
-- ---------------------------------------------------------------------------

CREATE TABLE users (
    id          SERIAL PRIMARY KEY,
    username    VARCHAR(100) UNIQUE NOT NULL,
    email       VARCHAR(255),
    full_name   VARCHAR(200),
    tenant_id   INTEGER,
    roles       TEXT[] NOT NULL DEFAULT '{}',
    is_active   BOOLEAN NOT NULL DEFAULT TRUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE system_alerts (
    id              SERIAL PRIMARY KEY,
    alert_type      VARCHAR(100) NOT NULL,
    alert_message   TEXT NOT NULL,
    alert_severity  VARCHAR(20) NOT NULL DEFAULT 'warning'
                    CHECK (alert_severity IN ('info', 'warning', 'error', 'critical')),
    alert_data      JSONB,
    is_resolved     BOOLEAN NOT NULL DEFAULT FALSE,
    resolved_at     TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Open alerts by type, newest first: what the de-duplication checks look up.
CREATE INDEX idx_system_alerts_open ON system_alerts (alert_type, created_at DESC)
    WHERE NOT is_resolved;

-- ---------------------------------------------------------------------------
-- The row contract: endpoints, their schemas, sanitisation, responses, errors
-- ---------------------------------------------------------------------------

CREATE TABLE api_endpoint_mappings (
    id                    SERIAL PRIMARY KEY,
    endpoint_path         VARCHAR(200) NOT NULL CHECK (endpoint_path LIKE '/%'),
    http_method           VARCHAR(10) NOT NULL
                          CHECK (http_method IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE')),
    service_name          VARCHAR(100) NOT NULL,

    -- Database mapping
    database_operation    VARCHAR(50) NOT NULL
                          CHECK (database_operation IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE', 'CALL')),
    target_table          VARCHAR(100),
    target_schema         VARCHAR(100),

    -- Query configuration: one statement with $1..$n; element i of
    -- query_parameters binds $i+1; result_mapping shapes the answer.
    query_template        TEXT NOT NULL,
    query_parameters      JSONB NOT NULL DEFAULT '[]'
                          CHECK (jsonb_typeof(query_parameters) = 'array'),
    result_mapping        JSONB NOT NULL DEFAULT '{}'
                          CHECK (jsonb_typeof(result_mapping) = 'object'),

    -- Performance settings (rate_limit_per_minute NULL = no limit)
    cache_enabled         BOOLEAN NOT NULL DEFAULT TRUE,
    cache_ttl_seconds     INTEGER DEFAULT 300 CHECK (cache_ttl_seconds >= 0),
    rate_limit_per_minute INTEGER DEFAULT 100 CHECK (rate_limit_per_minute > 0),

    -- Security settings
    requires_auth         BOOLEAN NOT NULL DEFAULT TRUE,
    required_roles        TEXT[] NOT NULL DEFAULT '{}',
    required_permissions  TEXT[] NOT NULL DEFAULT '{}',

    -- Added for the engine
    is_active             BOOLEAN NOT NULL DEFAULT TRUE,
    statement_timeout_ms  INTEGER CHECK (statement_timeout_ms > 0),  -- NULL = engine default
    description           TEXT,
    version               INTEGER NOT NULL DEFAULT 1,  -- bumped by a trigger (004)

    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),

    UNIQUE (endpoint_path, http_method)
);

-- endpoint_mapping_id NULL = the default template for every endpoint.
CREATE TABLE api_response_templates (
    id                   SERIAL PRIMARY KEY,
    endpoint_mapping_id  INTEGER REFERENCES api_endpoint_mappings (id) ON DELETE CASCADE,
    response_type        VARCHAR(50) NOT NULL
                         CHECK (response_type IN ('success', 'error', 'paginated')),

    -- Response structure
    response_schema      JSONB NOT NULL,
    response_example     JSONB,
    response_headers     JSONB,

    -- Response configuration
    include_metadata     BOOLEAN DEFAULT TRUE,
    include_pagination   BOOLEAN DEFAULT FALSE,
    include_timestamps   BOOLEAN DEFAULT TRUE,

    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One template per (endpoint or default, type). COALESCE because NULLs are
-- distinct in a plain unique constraint (NULLS NOT DISTINCT is PG15+).
CREATE UNIQUE INDEX ux_api_response_templates_mapping_type
    ON api_response_templates ((COALESCE(endpoint_mapping_id, 0)), response_type);

CREATE TABLE api_error_codes (
    id                  SERIAL PRIMARY KEY,
    error_code          VARCHAR(64) UNIQUE NOT NULL,
    error_message       TEXT NOT NULL,
    error_category      VARCHAR(50) NOT NULL,  -- validation, database, auth, business, routing, server

    -- Error details
    http_status_code    INTEGER NOT NULL CHECK (http_status_code BETWEEN 400 AND 599),
    error_details       JSONB,
    suggested_action    TEXT,

    -- Localization: language tag -> message, e.g. {"vi": "...", "ru": "..."}
    localized_messages  JSONB NOT NULL DEFAULT '{}'
                        CHECK (jsonb_typeof(localized_messages) = 'object'),

    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE api_validation_schemas (
    id                    SERIAL PRIMARY KEY,
    endpoint_mapping_id   INTEGER NOT NULL
                          REFERENCES api_endpoint_mappings (id) ON DELETE CASCADE,
    schema_name           VARCHAR(100) NOT NULL,

    -- Validation schema
    validation_schema     JSONB NOT NULL,  -- JSON Schema (draft 2020-12)
    validation_rules      JSONB,           -- custom validation rules

    -- Validation configuration
    strict_mode           BOOLEAN DEFAULT TRUE,
    allow_unknown_fields  BOOLEAN DEFAULT FALSE,
    sanitize_input        BOOLEAN DEFAULT TRUE,

    -- Added: which part of the request the schema checks
    applies_to            VARCHAR(10) NOT NULL DEFAULT 'body'
                          CHECK (applies_to IN ('body', 'query')),

    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),

    UNIQUE (endpoint_mapping_id, applies_to)
);

-- endpoint_mapping_id NULL = applies to that field on every endpoint whose
-- schema has sanitize_input.
CREATE TABLE data_sanitization_rules (
    id                   SERIAL PRIMARY KEY,
    field_name           VARCHAR(100) NOT NULL,
    field_type           VARCHAR(50) NOT NULL,  -- string, integer, float, boolean, json

    -- Sanitization rules
    sanitization_type    VARCHAR(50) NOT NULL
                         CHECK (sanitization_type IN ('trim', 'escape', 'validate', 'transform')),
    sanitization_config  JSONB,

    -- Validation rules
    validation_pattern   VARCHAR(200),
    min_length           INTEGER,
    max_length           INTEGER,
    min_value            NUMERIC,
    max_value            NUMERIC,

    -- Error handling
    error_message        TEXT,
    default_value        TEXT,

    -- Added for the engine
    endpoint_mapping_id  INTEGER REFERENCES api_endpoint_mappings (id) ON DELETE CASCADE,
    is_active            BOOLEAN NOT NULL DEFAULT TRUE,

    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX idx_data_sanitization_rules_mapping
    ON data_sanitization_rules (endpoint_mapping_id);

-- ---------------------------------------------------------------------------
-- Error handling
-- ---------------------------------------------------------------------------

CREATE TABLE api_error_logs (
    id                    SERIAL PRIMARY KEY,
    request_id            VARCHAR(100) NOT NULL,
    endpoint_path         VARCHAR(200) NOT NULL,
    http_method           VARCHAR(10) NOT NULL,

    -- Error details
    error_code            VARCHAR(64)
                          REFERENCES api_error_codes (error_code)
                          ON UPDATE CASCADE ON DELETE SET NULL,
    error_message         TEXT,
    error_stack_trace     TEXT,
    error_category        VARCHAR(50),

    -- Request details
    request_headers       JSONB,
    request_body          TEXT,
    request_params        JSONB,
    user_id               INTEGER REFERENCES users (id) ON DELETE SET NULL,
    principal             TEXT,  -- the authenticated subject as text (JWT sub, API key name)

    -- Response details
    response_status_code  INTEGER,
    response_body         TEXT,
    response_time_ms      INTEGER,

    -- Database context
    database_operation    VARCHAR(50),
    database_error        TEXT,
    affected_tables       TEXT[],

    error_timestamp       TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX idx_api_error_logs_timestamp ON api_error_logs (error_timestamp DESC);
CREATE INDEX idx_api_error_logs_error_code ON api_error_logs (error_code);
CREATE INDEX idx_api_error_logs_user_id ON api_error_logs (user_id);
CREATE INDEX idx_api_error_logs_request_id ON api_error_logs (request_id);

CREATE TABLE database_error_patterns (
    id                   SERIAL PRIMARY KEY,
    error_pattern        VARCHAR(200) NOT NULL,
    error_type           VARCHAR(50) NOT NULL,  -- constraint_violation, connection_error, timeout, ...

    -- Pattern matching (a POSIX regex; error_pattern is used when this is NULL)
    pattern_regex        VARCHAR(500),
    pattern_description  TEXT,

    -- Error handling
    suggested_action     TEXT,
    retry_strategy       VARCHAR(50)
                         CHECK (retry_strategy IN ('immediate', 'exponential_backoff', 'none')),
    max_retries          INTEGER DEFAULT 3 CHECK (max_retries >= 0),

    -- Monitoring
    alert_threshold      INTEGER DEFAULT 10 CHECK (alert_threshold > 0),
    alert_severity       VARCHAR(20) DEFAULT 'warning'
                         CHECK (alert_severity IN ('info', 'warning', 'error', 'critical')),

    created_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The guide's six patterns. Where the guide's text is not what PostgreSQL
-- actually says, the regex also matches the server's real message, so the
-- pattern can fire (the guide's own phrase still matches too).
INSERT INTO database_error_patterns (error_pattern, error_type, pattern_regex, suggested_action) VALUES
('duplicate key value violates unique constraint', 'constraint_violation',
 'duplicate key value violates unique constraint',
 'Check for existing record before insert'),
('foreign key constraint violation', 'constraint_violation',
 'foreign key constraint violation|violates foreign key constraint',
 'Verify referenced record exists'),
('connection to server at .* failed', 'connection_error',
 'connection to server at .* failed',
 'Check database connectivity'),
('query execution timeout', 'timeout',
 'query execution timeout|canceling statement due to statement timeout',
 'Optimize query or increase timeout'),
('insufficient memory', 'resource_error',
 'insufficient memory|out of memory',
 'Check database memory usage'),
('table .* does not exist', 'schema_error',
 'table .* does not exist|relation .* does not exist',
 'Verify database schema');

CREATE TABLE error_recovery_strategies (
    id                         SERIAL PRIMARY KEY,
    error_pattern_id           INTEGER REFERENCES database_error_patterns (id) ON DELETE CASCADE,
    strategy_name              VARCHAR(100) NOT NULL,

    -- Recovery configuration
    recovery_action            VARCHAR(50) NOT NULL
                               CHECK (recovery_action IN
                                      ('retry', 'fallback', 'circuit_breaker', 'manual_intervention')),
    recovery_config            JSONB,

    -- Timing
    retry_delay_ms             INTEGER DEFAULT 1000 CHECK (retry_delay_ms >= 0),
    max_retry_attempts         INTEGER DEFAULT 3 CHECK (max_retry_attempts >= 0),
    circuit_breaker_threshold  INTEGER DEFAULT 5 CHECK (circuit_breaker_threshold > 0),

    -- Fallback options
    fallback_endpoint          VARCHAR(200),
    fallback_data              JSONB,

    created_at                 TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX idx_error_recovery_strategies_pattern ON error_recovery_strategies (error_pattern_id);

-- ---------------------------------------------------------------------------
-- Performance
-- ---------------------------------------------------------------------------

CREATE TABLE api_performance_metrics (
    id                        SERIAL PRIMARY KEY,
    endpoint_path             VARCHAR(200) NOT NULL,
    http_method               VARCHAR(10) NOT NULL,
    metric_timestamp          TIMESTAMPTZ NOT NULL DEFAULT now(),

    -- Response time metrics
    avg_response_time_ms      INTEGER,
    min_response_time_ms      INTEGER,
    max_response_time_ms      INTEGER,
    p95_response_time_ms      INTEGER,
    p99_response_time_ms      INTEGER,

    -- Throughput metrics
    request_count             INTEGER,
    success_count             INTEGER,
    error_count               INTEGER,
    requests_per_second       DECIMAL(8, 2),

    -- Database metrics
    database_query_count      INTEGER,
    database_query_time_ms    INTEGER,
    database_connection_count INTEGER,
    cache_hit_ratio           DECIMAL(5, 2),

    -- Resource usage
    cpu_usage_percent         DECIMAL(5, 2),
    memory_usage_mb           DECIMAL(8, 2),
    network_bandwidth_mbps    DECIMAL(8, 2),

    -- Added: which mapping, and the counts calculate_cache_hit_ratio sums
    endpoint_mapping_id       INTEGER REFERENCES api_endpoint_mappings (id) ON DELETE SET NULL,
    cache_hits                INTEGER NOT NULL DEFAULT 0 CHECK (cache_hits >= 0),
    cache_misses              INTEGER NOT NULL DEFAULT 0 CHECK (cache_misses >= 0),

    created_at                TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX idx_api_performance_metrics_endpoint_timestamp
    ON api_performance_metrics (endpoint_path, metric_timestamp DESC);
CREATE INDEX idx_api_performance_metrics_response_time
    ON api_performance_metrics (avg_response_time_ms DESC);
CREATE INDEX idx_api_performance_metrics_mapping_timestamp
    ON api_performance_metrics (endpoint_mapping_id, metric_timestamp DESC);

CREATE TABLE api_cache_config (
    id                        SERIAL PRIMARY KEY,
    endpoint_mapping_id       INTEGER NOT NULL UNIQUE
                              REFERENCES api_endpoint_mappings (id) ON DELETE CASCADE,

    -- Cache settings
    cache_enabled             BOOLEAN DEFAULT TRUE,
    cache_ttl_seconds         INTEGER DEFAULT 300 CHECK (cache_ttl_seconds >= 0),
    cache_key_template        VARCHAR(500),
    cache_invalidation_rules  JSONB,

    -- Cache performance (written by calculate_cache_hit_ratio and the engine)
    cache_hit_ratio           DECIMAL(5, 2),
    cache_size_mb             DECIMAL(8, 2),
    cache_eviction_count      INTEGER,

    -- Cache strategy
    cache_strategy            VARCHAR(50) DEFAULT 'lru'
                              CHECK (cache_strategy IN ('lru', 'lfu', 'ttl')),
    cache_distribution        BOOLEAN DEFAULT FALSE,  -- distributed caching

    -- Added: size bound in entries (NULL = engine default)
    cache_max_entries         INTEGER CHECK (cache_max_entries > 0),

    created_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE query_optimization_tracking (
    id                               SERIAL PRIMARY KEY,
    endpoint_mapping_id              INTEGER REFERENCES api_endpoint_mappings (id) ON DELETE CASCADE,
    query_hash                       VARCHAR(64) NOT NULL,

    -- Query details
    original_query                   TEXT,
    optimized_query                  TEXT,
    query_plan                       JSONB,

    -- Performance metrics
    original_execution_time_ms       INTEGER,
    optimized_execution_time_ms      INTEGER,
    performance_improvement_percent  DECIMAL(5, 2),

    -- Optimization details
    optimization_type                VARCHAR(50),  -- indexing, query_rewrite, caching
    optimization_reason              TEXT,
    optimization_applied_at          TIMESTAMPTZ,

    created_at                       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX idx_query_optimization_tracking_endpoint
    ON query_optimization_tracking (endpoint_mapping_id);
CREATE INDEX idx_query_optimization_tracking_hash
    ON query_optimization_tracking (query_hash);

-- ---------------------------------------------------------------------------
-- Connection management
-- ---------------------------------------------------------------------------

CREATE TABLE database_connection_pool (
    id                          SERIAL PRIMARY KEY,
    pool_name                   VARCHAR(100) NOT NULL,
    metric_timestamp            TIMESTAMPTZ NOT NULL DEFAULT now(),

    -- Pool metrics
    total_connections           INTEGER CHECK (total_connections >= 0),
    active_connections          INTEGER CHECK (active_connections >= 0),
    idle_connections            INTEGER CHECK (idle_connections >= 0),
    waiting_connections         INTEGER CHECK (waiting_connections >= 0),

    -- Connection performance
    avg_connection_time_ms      INTEGER,
    avg_query_time_ms           INTEGER,
    connection_errors           INTEGER,

    -- Pool configuration
    max_connections             INTEGER,
    min_connections             INTEGER,
    connection_timeout_seconds  INTEGER,
    idle_timeout_seconds        INTEGER,

    created_at                  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX idx_database_connection_pool_timestamp
    ON database_connection_pool (metric_timestamp DESC);
CREATE INDEX idx_database_connection_pool_name_timestamp
    ON database_connection_pool (pool_name, metric_timestamp DESC);

CREATE TABLE database_connection_health (
    id                     SERIAL PRIMARY KEY,
    connection_id          VARCHAR(100) UNIQUE NOT NULL,
    pool_name              VARCHAR(100) NOT NULL,

    -- Connection status
    connection_status      VARCHAR(20) DEFAULT 'active'
                           CHECK (connection_status IN ('active', 'idle', 'error', 'closed')),
    connection_start_time  TIMESTAMPTZ DEFAULT now(),
    last_activity_time     TIMESTAMPTZ DEFAULT now(),

    -- Connection metrics
    query_count            INTEGER DEFAULT 0,
    total_query_time_ms    BIGINT DEFAULT 0,
    error_count            INTEGER DEFAULT 0,

    -- Connection details
    client_host            VARCHAR(100),
    client_port            INTEGER,
    database_name          VARCHAR(100),

    created_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at             TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX idx_database_connection_health_status
    ON database_connection_health (connection_status);
CREATE INDEX idx_database_connection_health_last_activity
    ON database_connection_health (last_activity_time DESC);

CREATE TABLE database_failover_config (
    id                              SERIAL PRIMARY KEY,
    primary_database                VARCHAR(100) NOT NULL,
    replica_database                VARCHAR(100) NOT NULL,

    -- Failover settings
    failover_enabled                BOOLEAN DEFAULT TRUE,
    health_check_interval_seconds   INTEGER DEFAULT 30 CHECK (health_check_interval_seconds > 0),
    failover_threshold              INTEGER DEFAULT 3 CHECK (failover_threshold > 0),

    -- Connection settings
    connection_timeout_seconds      INTEGER DEFAULT 10 CHECK (connection_timeout_seconds > 0),
    read_timeout_seconds            INTEGER DEFAULT 30 CHECK (read_timeout_seconds > 0),
    write_timeout_seconds           INTEGER DEFAULT 30 CHECK (write_timeout_seconds > 0),

    -- Load balancing
    read_distribution_percent       INTEGER DEFAULT 80    -- percentage of reads to the replica
                                    CHECK (read_distribution_percent BETWEEN 0 AND 100),
    write_distribution_percent      INTEGER DEFAULT 100   -- percentage of writes to the primary
                                    CHECK (write_distribution_percent BETWEEN 0 AND 100),

    created_at                      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                      TIMESTAMPTZ NOT NULL DEFAULT now()
);
