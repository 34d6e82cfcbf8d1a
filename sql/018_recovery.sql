-- 018: per-endpoint concurrency, and recovery from connection errors driven by the rows
-- (issue 11).
--
-- api_endpoint_mappings.max_concurrent: at most this many requests of the endpoint run
-- at once in one engine process; one more is answered 503 ENDPOINT_BUSY (Retry-After)
-- at once, without queueing, so one slow endpoint cannot take the whole pool. NULL: no
-- limit. Part of the row contract: the history (sql/013) copies mapping rows with
-- to_jsonb, so the column is recorded by every later version without a change there.
--
-- error_recovery_strategies joined to database_error_patterns with error_type
-- 'connection_error' drive what the engine does on connection-class errors
-- (engine/recovery.py):
--   recovery_action 'retry': an idempotent read (GET) that failed on a connection error is
--     tried again after retry_delay_ms, doubled each time (recovery_config "backoff":
--     "constant" keeps it flat, "max_delay_ms" caps it), at most max_retry_attempts more
--     times (0: never). Writes are never retried.
--   recovery_action 'circuit_breaker': after circuit_breaker_threshold consecutive
--     connection failures of a pool (read, write), its statements are answered 503
--     DATABASE_CONNECTION_ERROR at once for recovery_config "cooldown_ms" (else
--     retry_delay_ms); then one trial request runs: success closes it, failure reopens it.
-- The first row of each action (lowest id) applies; an action without a row keeps the
-- engine's built-in default (the values below). The rows below are inserted only when no
-- such row exists, so an admin's edits survive; engines read them at their first statement
-- and again every minute.

ALTER TABLE api_endpoint_mappings
    ADD COLUMN IF NOT EXISTS max_concurrent INTEGER
        CONSTRAINT api_endpoint_mappings_max_concurrent_check
        CHECK (max_concurrent IS NULL OR max_concurrent > 0);

COMMENT ON COLUMN api_endpoint_mappings.max_concurrent IS
    'At most this many requests of the endpoint at once per engine process; one more is '
    'answered 503 ENDPOINT_BUSY with Retry-After at once. NULL: no limit.';

-- Versions recorded before the column existed had no limit: say so, so that restoring one
-- sets NULL (rather than keeping the current limit) and a diff shows no phantom change.
UPDATE api_endpoint_history
SET definition = jsonb_set(definition, '{mapping,max_concurrent}', 'null'::jsonb)
WHERE jsonb_typeof(definition -> 'mapping') = 'object'
  AND NOT (definition -> 'mapping') ? 'max_concurrent';

INSERT INTO database_error_patterns
    (error_pattern, error_type, pattern_regex, pattern_description, suggested_action,
     retry_strategy, max_retries)
SELECT 'connection to server at .* failed', 'connection_error',
       'connection to server at .* failed|connection refused|terminating connection|'
       'the database system is (shutting down|starting up|in recovery mode)',
       'The database cannot be reached, or a connection was lost (SQLSTATE class 08, 57P01-57P03).',
       'Check database connectivity',
       'exponential_backoff', 2
WHERE NOT EXISTS (SELECT 1 FROM database_error_patterns WHERE error_type = 'connection_error');

INSERT INTO error_recovery_strategies
    (error_pattern_id, strategy_name, recovery_action, recovery_config, retry_delay_ms,
     max_retry_attempts, circuit_breaker_threshold)
SELECT p.id, 'retry idempotent reads', 'retry',
       '{"backoff": "exponential", "max_delay_ms": 1000}'::jsonb, 100, 2, 5
FROM (SELECT min(id) AS id FROM database_error_patterns WHERE error_type = 'connection_error') p
WHERE p.id IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM error_recovery_strategies s
      JOIN database_error_patterns d ON d.id = s.error_pattern_id
      WHERE d.error_type = 'connection_error' AND s.recovery_action = 'retry');

INSERT INTO error_recovery_strategies
    (error_pattern_id, strategy_name, recovery_action, recovery_config, retry_delay_ms,
     max_retry_attempts, circuit_breaker_threshold)
SELECT p.id, 'circuit breaker per pool', 'circuit_breaker',
       '{"cooldown_ms": 2000}'::jsonb, 2000, 0, 5
FROM (SELECT min(id) AS id FROM database_error_patterns WHERE error_type = 'connection_error') p
WHERE p.id IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM error_recovery_strategies s
      JOIN database_error_patterns d ON d.id = s.error_pattern_id
      WHERE d.error_type = 'connection_error' AND s.recovery_action = 'circuit_breaker');

-- a change of the strategies is a catalogue change: engines that follow catalogue reloads
-- read them again within a second (the others within a minute)
CREATE OR REPLACE TRIGGER trg_error_recovery_strategies_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON error_recovery_strategies
    FOR EACH STATEMENT EXECUTE FUNCTION engine_notify_catalog();

CREATE OR REPLACE TRIGGER trg_database_error_patterns_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON database_error_patterns
    FOR EACH STATEMENT EXECUTE FUNCTION engine_notify_catalog();
