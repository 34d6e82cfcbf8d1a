-- 012: per-minute endpoint figures and pool figures written by every engine process.
--
-- Each engine process names itself (host:pid) in engine_instance, so that:
--   * api_performance_metrics holds one row per endpoint, minute and process:
--     the process's figures job upserts that row while the minute fills, so a
--     minute's percentiles are over the whole minute, not over a flush window.
--     Rows written by anything else (engine_instance NULL) never conflict.
--   * database_connection_pool rows of several processes sharing a pool name
--     (engine-write, engine-read) are told apart: check_database_health and
--     optimize_connection_pool add up each process's latest row instead of
--     reading one process's row as the whole pool.
--
-- Fixed in the functions: utilisation was active / total_connections, but a
-- pool opens connections lazily, so one busy connection of a pool that had
-- opened one read as 100 %. It is now active / max_connections (the pool's
-- capacity) when the row says it, else total_connections as before; requests
-- waiting for a connection make a pool critical whatever the ratio.

ALTER TABLE api_performance_metrics ADD COLUMN engine_instance VARCHAR(100);

CREATE UNIQUE INDEX api_performance_metrics_minute_key
    ON api_performance_metrics (endpoint_mapping_id, metric_timestamp, engine_instance);

ALTER TABLE database_connection_pool ADD COLUMN engine_instance VARCHAR(100);

-- ---------------------------------------------------------------------------
-- check_database_health: each pool from the latest row of every process
-- ---------------------------------------------------------------------------

-- Statuses: 'critical' above 80 % utilisation or with requests waiting for a
-- connection, 'warning' above 60 %, else 'healthy'; 'unknown' when the pool
-- reports no (or zero) capacity, where utilisation cannot be computed (NULL).
-- active_connections and total_connections (connections open) are summed over
-- the processes that reported the pool in the last 5 minutes.
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
        SELECT DISTINCT ON (dcp.pool_name, dcp.engine_instance)
               dcp.pool_name AS pname,
               dcp.active_connections AS active,
               dcp.total_connections AS total,
               COALESCE(dcp.max_connections, dcp.total_connections) AS capacity,
               COALESCE(dcp.waiting_connections, 0) AS waiting
        FROM database_connection_pool dcp
        WHERE dcp.metric_timestamp > now() - INTERVAL '5 minutes'
        ORDER BY dcp.pool_name, dcp.engine_instance, dcp.metric_timestamp DESC, dcp.id DESC
    ),
    pools AS (
        SELECT l.pname,
               sum(l.active)::INTEGER AS active,
               sum(l.total)::INTEGER AS total,
               sum(l.capacity) AS capacity,
               sum(l.waiting) AS waiting
        FROM latest l
        GROUP BY l.pname
    ),
    rated AS (
        SELECT p.*,
               -- NULL without capacity (no division by zero); capped so that bad
               -- data (active > 10 x capacity) cannot overflow DECIMAL(5,2).
               CASE WHEN p.capacity > 0 THEN
                   LEAST(round(100.0 * COALESCE(p.active, 0) / p.capacity, 2), 999.99)
               END AS utilization
        FROM pools p
    )
    SELECT r.pname::VARCHAR(100),
           (CASE
                WHEN r.utilization IS NULL THEN 'unknown'
                WHEN r.utilization > 80 OR r.waiting > 0 THEN 'critical'
                WHEN r.utilization > 60 THEN 'warning'
                ELSE 'healthy'
            END)::VARCHAR(20),
           r.active,
           r.total,
           r.utilization::DECIMAL(5, 2)
    FROM rated r
    ORDER BY r.utilization DESC NULLS LAST, r.pname;
END;
$$;

-- ---------------------------------------------------------------------------
-- optimize_connection_pool: per-process size advice from the latest figures
-- ---------------------------------------------------------------------------

-- The latest row of each process that reported the pool within 5 minutes of
-- its newest row. Utilisation is their active connections over their capacity;
-- the recommended sizes are per process (what ENGINE_POOL_MAX_SIZE and
-- ENGINE_POOL_MIN_SIZE set), from the largest capacity a process reported.
CREATE OR REPLACE FUNCTION optimize_connection_pool(p_pool_name VARCHAR(100))
RETURNS JSONB
LANGUAGE plpgsql
AS $$
DECLARE
    v_newest        TIMESTAMPTZ;
    v_processes     INTEGER;
    v_active        INTEGER;
    v_total         INTEGER;
    v_waiting       INTEGER;
    v_capacity      INTEGER;
    v_sum_capacity  INTEGER;
    v_utilization   DECIMAL(5, 2);
    v_max           INTEGER;
    v_min           INTEGER;
    v_reason        TEXT;
BEGIN
    SELECT max(metric_timestamp) INTO v_newest
    FROM database_connection_pool
    WHERE pool_name = p_pool_name;

    IF v_newest IS NULL THEN
        RETURN jsonb_build_object(
            'pool_name', p_pool_name,
            'status', 'no_metrics',
            'current_utilization_percent', NULL,
            'recommended_max_connections', NULL,
            'recommended_min_connections', NULL,
            'optimization_reason', 'No metrics recorded for this pool'
        );
    END IF;

    WITH latest AS (
        SELECT DISTINCT ON (dcp.engine_instance) dcp.*
        FROM database_connection_pool dcp
        WHERE dcp.pool_name = p_pool_name
          AND dcp.metric_timestamp > v_newest - INTERVAL '5 minutes'
        ORDER BY dcp.engine_instance, dcp.metric_timestamp DESC, dcp.id DESC
    )
    SELECT count(*)::INTEGER,
           sum(COALESCE(l.active_connections, 0))::INTEGER,
           sum(l.total_connections)::INTEGER,
           sum(COALESCE(l.waiting_connections, 0))::INTEGER,
           max(COALESCE(l.max_connections, l.total_connections))::INTEGER,
           sum(COALESCE(l.max_connections, l.total_connections))::INTEGER
    INTO v_processes, v_active, v_total, v_waiting, v_capacity, v_sum_capacity
    FROM latest l;

    IF COALESCE(v_sum_capacity, 0) = 0 THEN
        RETURN jsonb_build_object(
            'pool_name', p_pool_name,
            'status', 'no_connections',
            'metric_timestamp', v_newest,
            'total_connections', v_total,
            'active_connections', v_active,
            'current_utilization_percent', NULL,
            'recommended_max_connections', NULL,
            'recommended_min_connections', NULL,
            'optimization_reason',
                'The pool reports zero connections: utilization cannot be computed'
        );
    END IF;

    v_utilization := LEAST(round(100.0 * v_active / v_sum_capacity, 2), 999.99);

    IF v_utilization > 80 THEN
        v_max := ceil(v_capacity * 1.5)::INTEGER;
        v_min := round(v_capacity * 0.3)::INTEGER;
        v_reason := 'High utilization detected';
    ELSIF v_waiting > 0 THEN
        v_max := ceil(v_capacity * 1.5)::INTEGER;
        v_min := round(v_capacity * 0.3)::INTEGER;
        v_reason := 'Requests are waiting for a connection';
    ELSIF v_utilization < 30 THEN
        v_max := GREATEST(1, round(v_capacity * 0.8))::INTEGER;
        v_min := round(v_capacity * 0.2)::INTEGER;
        v_reason := 'Low utilization detected';
    ELSE
        v_max := v_capacity;
        v_min := round(v_capacity * 0.25)::INTEGER;
        v_reason := 'Optimal utilization';
    END IF;

    RETURN jsonb_build_object(
        'pool_name', p_pool_name,
        'status', 'ok',
        'metric_timestamp', v_newest,
        'processes', v_processes,
        'total_connections', v_total,
        'active_connections', v_active,
        'waiting_connections', v_waiting,
        'max_connections', v_capacity,
        'current_utilization_percent', v_utilization,
        'recommended_max_connections', v_max,
        'recommended_min_connections', LEAST(v_min, v_max),
        'optimization_reason', v_reason
    );
END;
$$;
