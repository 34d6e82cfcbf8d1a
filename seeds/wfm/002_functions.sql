-- wfm 002: the computations of the WFM domain, as SQL and plpgsql functions
-- the endpoint templates call (the tables are in 001_tables.sql).
--
--   helpers              wfm_domain_tables, wfm_check_range, wfm_assert_service, wfm_rule_matches,
--                        wfm_non_negative
--   Erlang C             wfm_traffic, wfm_erlang_b, wfm_erlang_c, wfm_service_level,
--                        wfm_average_speed_of_answer, wfm_required_agents, wfm_erlang_staffing,
--                        wfm_staffing_table
--   forecasting          wfm_create_forecast, wfm_calculate_forecast, wfm_forecast_accuracy
--   statistics, SLA      wfm_contact_statistics_summary, wfm_agent_performance, wfm_sla_compliance
--   thresholds, metrics  wfm_traffic_light_level, wfm_traffic_light, wfm_configure_alert,
--                        wfm_threshold_alerts_check (trigger), wfm_database_metrics,
--                        wfm_current_metrics, wfm_realtime_metrics, wfm_realtime_status,
--                        wfm_executive_dashboard, wfm_optimization_suggestions
--   schedules            wfm_schedule_coverage, wfm_schedule_gaps, wfm_schedule_conflicts,
--                        wfm_optimize_schedule
--   integration          wfm_integration_health, wfm_trigger_sync, wfm_complete_sync
--   data quality         wfm_quality_tables, wfm_check_quality_table, wfm_quality_check_rows,
--                        wfm_validate_table, wfm_run_quality_checks
--   bulk, maintenance    wfm_bulk_import, wfm_export_check, wfm_export, wfm_maintenance_cleanup,
--                        wfm_schema_info, wfm_capacity_analysis
--   volumes              wfm_erlang_c_row, wfm_generate (generate.sql)
--
-- Idempotent: CREATE OR REPLACE FUNCTION, DROP TRIGGER IF EXISTS + CREATE
-- TRIGGER. A function whose signature changes must be dropped first (DROP
-- FUNCTION IF EXISTS with the old signature), since CREATE OR REPLACE cannot
-- change argument or result types.
--
-- Conventions:
--   * p_tenant is always the first argument of a function that touches a
--     tenant's data; templates bind it from the caller's tenant_id claim.
--   * Functions a GET calls only read (most are STABLE, which PostgreSQL
--     enforces: a STABLE plpgsql function cannot write), so they run on the
--     engine's read-only sessions. Functions that write are VOLATILE and
--     meant for POST endpoints: wfm_create_forecast, wfm_calculate_forecast,
--     wfm_configure_alert, wfm_optimize_schedule, wfm_trigger_sync,
--     wfm_complete_sync, wfm_run_quality_checks, wfm_bulk_import,
--     wfm_maintenance_cleanup, wfm_generate.
--   * Business errors: RAISE EXCEPTION '<CODE>' USING DETAIL = '...', where
--     CODE is a row of api_error_codes (the endpoint seed defines them):
--     WFM_INVALID_PARAMETER, WFM_INVALID_DATE_RANGE, WFM_SERVICE_NOT_FOUND,
--     WFM_FORECAST_NOT_FOUND, WFM_FORECAST_EMPTY, WFM_FORECAST_PUBLISHED,
--     WFM_NO_HISTORY, WFM_STAFFING_UNREACHABLE, WFM_UNKNOWN_METRIC,
--     WFM_INVALID_THRESHOLDS, WFM_UNSUPPORTED_SL_THRESHOLD, WFM_UNKNOWN_TABLE,
--     WFM_CONNECTION_NOT_FOUND, WFM_CONNECTION_INACTIVE, WFM_SYNC_IN_PROGRESS,
--     WFM_SYNC_JOB_NOT_FOUND, WFM_IMPORT_INVALID, WFM_IMPORT_TOO_LARGE.
--   * Shares are fractions (0.8) in arguments and *_pct columns are percents
--     (80.00) in results, as the column names say.

-- ---------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------

-- The domain's tables (schema info, capacity analysis, allow-lists).
CREATE OR REPLACE FUNCTION wfm_domain_tables()
RETURNS TEXT[]
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
    SELECT ARRAY[
        'wfm_metric_definitions', 'optimization_rules', 'data_quality_checks',
        'services', 'service_groups', 'agents',
        'contact_statistics', 'agent_activity', 'agent_status_history',
        'realtime_queues', 'realtime_agents', 'operational_metrics',
        'threshold_alerts', 'predictive_alerts', 'realtime_alerts',
        'schedule_templates', 'work_schedules', 'break_schedules', 'schedule_optimization_runs',
        'forecasts', 'forecast_data_points', 'staffing_plans',
        'integration_connections', 'sync_jobs', 'integration_sync_logs', 'integration_logs',
        'integration_endpoint_mappings', 'data_quality_results'
    ]::TEXT[]
$$;

-- A period [p_from, p_to): both given, p_from before p_to, at most p_max_days
-- long; WFM_INVALID_DATE_RANGE otherwise.
CREATE OR REPLACE FUNCTION wfm_check_range(p_from TIMESTAMPTZ, p_to TIMESTAMPTZ, p_max_days INTEGER DEFAULT 400)
RETURNS VOID
LANGUAGE plpgsql
IMMUTABLE PARALLEL SAFE
AS $$
BEGIN
    IF p_from IS NULL OR p_to IS NULL THEN
        RAISE EXCEPTION 'WFM_INVALID_DATE_RANGE'
            USING DETAIL = 'Both ends of the period are required';
    END IF;
    IF p_from >= p_to THEN
        RAISE EXCEPTION 'WFM_INVALID_DATE_RANGE'
            USING DETAIL = format('The period start %s is not before its end %s', p_from, p_to);
    END IF;
    IF p_to - p_from > make_interval(days => p_max_days) THEN
        RAISE EXCEPTION 'WFM_INVALID_DATE_RANGE'
            USING DETAIL = format('The period is longer than %s days', p_max_days);
    END IF;
END;
$$;

-- The service must exist and belong to the tenant: WFM_SERVICE_NOT_FOUND.
CREATE OR REPLACE FUNCTION wfm_assert_service(p_tenant INTEGER, p_service_id INTEGER)
RETURNS VOID
LANGUAGE plpgsql
STABLE
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM services s WHERE s.service_id = p_service_id AND s.tenant_id = p_tenant) THEN
        RAISE EXCEPTION 'WFM_SERVICE_NOT_FOUND'
            USING DETAIL = format('Service %s not found', p_service_id);
    END IF;
END;
$$;

-- value <comparison> threshold, for the optimiser's rules.
CREATE OR REPLACE FUNCTION wfm_rule_matches(p_comparison TEXT, p_value NUMERIC, p_threshold NUMERIC)
RETURNS BOOLEAN
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE p_comparison
               WHEN '<' THEN p_value < p_threshold
               WHEN '<=' THEN p_value <= p_threshold
               WHEN '>' THEN p_value > p_threshold
               WHEN '>=' THEN p_value >= p_threshold
           END
$$;

-- x, but never below 0 (NULL stays NULL, unlike GREATEST(0, NULL) = 0).
CREATE OR REPLACE FUNCTION wfm_non_negative(p_value NUMERIC)
RETURNS NUMERIC
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN p_value < 0 THEN 0 ELSE p_value END
$$;

-- ---------------------------------------------------------------------------
-- Erlang C
--
-- Traffic A = calls * AHT / interval (Erlangs). Erlang B by the stable
-- recursion B(0) = 1, B(n) = A B(n-1) / (n + A B(n-1)); the probability that
-- a call waits is Erlang C, C = n B / (n - A (1 - B)) for n > A (1 when
-- n <= A: the queue grows without bound). Service level (share answered
-- within t seconds) = 1 - C exp(-(n - A) t / AHT); ASA = C AHT / (n - A);
-- occupancy = A / n.
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION wfm_erlang_b(p_traffic DOUBLE PRECISION, p_agents INTEGER)
RETURNS DOUBLE PRECISION
LANGUAGE plpgsql
IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    b DOUBLE PRECISION := 1.0;
BEGIN
    IF p_traffic < 0 OR p_agents < 0 THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER'
            USING DETAIL = 'Erlang B needs a traffic >= 0 and an agent count >= 0';
    END IF;
    FOR k IN 1 .. p_agents LOOP
        b := p_traffic * b / (k + p_traffic * b);
    END LOOP;
    RETURN b;
END;
$$;

-- Traffic in Erlangs, after checking the inputs (WFM_INVALID_PARAMETER).
CREATE OR REPLACE FUNCTION wfm_traffic(p_calls NUMERIC, p_interval_seconds INTEGER, p_aht_seconds NUMERIC)
RETURNS DOUBLE PRECISION
LANGUAGE plpgsql
IMMUTABLE STRICT PARALLEL SAFE
AS $$
BEGIN
    IF p_calls < 0 THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER' USING DETAIL = 'calls must be >= 0';
    END IF;
    IF p_interval_seconds <= 0 THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER' USING DETAIL = 'interval_seconds must be > 0';
    END IF;
    IF p_aht_seconds <= 0 THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER' USING DETAIL = 'aht_seconds must be > 0';
    END IF;
    RETURN (p_calls * p_aht_seconds / p_interval_seconds)::DOUBLE PRECISION;
END;
$$;

-- Probability that a call waits (0..1).
CREATE OR REPLACE FUNCTION wfm_erlang_c(p_calls NUMERIC, p_interval_seconds INTEGER, p_aht_seconds NUMERIC,
                                        p_agents INTEGER)
RETURNS DOUBLE PRECISION
LANGUAGE plpgsql
IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    a DOUBLE PRECISION := wfm_traffic(p_calls, p_interval_seconds, p_aht_seconds);
    b DOUBLE PRECISION;
BEGIN
    IF p_agents < 0 THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER' USING DETAIL = 'agents must be >= 0';
    END IF;
    IF a = 0 THEN
        RETURN 0.0;
    END IF;
    IF p_agents <= a THEN
        RETURN 1.0;
    END IF;
    b := wfm_erlang_b(a, p_agents);
    RETURN p_agents * b / (p_agents - a * (1 - b));
END;
$$;

-- Share of calls answered within p_target_seconds (0..1).
CREATE OR REPLACE FUNCTION wfm_service_level(p_calls NUMERIC, p_interval_seconds INTEGER, p_aht_seconds NUMERIC,
                                             p_agents INTEGER, p_target_seconds INTEGER)
RETURNS DOUBLE PRECISION
LANGUAGE plpgsql
IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    a DOUBLE PRECISION := wfm_traffic(p_calls, p_interval_seconds, p_aht_seconds);
    c DOUBLE PRECISION;
BEGIN
    IF p_target_seconds < 0 THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER' USING DETAIL = 'target_seconds must be >= 0';
    END IF;
    c := wfm_erlang_c(p_calls, p_interval_seconds, p_aht_seconds, p_agents);
    IF a = 0 THEN
        RETURN 1.0;
    END IF;
    IF p_agents <= a THEN
        RETURN 0.0;
    END IF;
    RETURN 1 - c * exp(-(p_agents - a) * p_target_seconds / p_aht_seconds::DOUBLE PRECISION);
END;
$$;

-- Average speed of answer in seconds; NULL when agents <= traffic (unbounded).
CREATE OR REPLACE FUNCTION wfm_average_speed_of_answer(p_calls NUMERIC, p_interval_seconds INTEGER,
                                                       p_aht_seconds NUMERIC, p_agents INTEGER)
RETURNS DOUBLE PRECISION
LANGUAGE plpgsql
IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    a DOUBLE PRECISION := wfm_traffic(p_calls, p_interval_seconds, p_aht_seconds);
    c DOUBLE PRECISION := wfm_erlang_c(p_calls, p_interval_seconds, p_aht_seconds, p_agents);
BEGIN
    IF a = 0 THEN
        RETURN 0.0;
    END IF;
    IF p_agents <= a THEN
        RETURN NULL;
    END IF;
    RETURN c * p_aht_seconds / (p_agents - a);
END;
$$;

-- The smallest staffing meeting the service level: traffic, agents, and the
-- figures at that agent count. target_sl is a fraction in (0, 1);
-- max_occupancy a fraction in (0, 1] (A / n must not exceed it). No traffic
-- needs no agent. WFM_STAFFING_UNREACHABLE past 100000 agents.
CREATE OR REPLACE FUNCTION wfm_erlang_staffing(p_calls NUMERIC, p_interval_seconds INTEGER, p_aht_seconds NUMERIC,
                                               p_target_sl NUMERIC, p_target_seconds INTEGER,
                                               p_max_occupancy NUMERIC DEFAULT 1)
RETURNS TABLE (traffic_erlangs DOUBLE PRECISION, required_agents INTEGER, probability_wait DOUBLE PRECISION,
               service_level DOUBLE PRECISION, asa_seconds DOUBLE PRECISION, occupancy DOUBLE PRECISION)
LANGUAGE plpgsql
IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    a   DOUBLE PRECISION := wfm_traffic(p_calls, p_interval_seconds, p_aht_seconds);
    b   DOUBLE PRECISION := 1.0;
    c   DOUBLE PRECISION;
    sl  DOUBLE PRECISION;
    occ DOUBLE PRECISION := COALESCE(p_max_occupancy, 1);
    n   INTEGER := 0;
BEGIN
    IF p_target_sl IS NULL OR p_target_sl <= 0 OR p_target_sl >= 1 THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER'
            USING DETAIL = format('target_sl must be a fraction between 0 and 1 (exclusive), not %s', p_target_sl);
    END IF;
    IF p_target_seconds IS NULL OR p_target_seconds < 0 THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER' USING DETAIL = 'target_seconds must be >= 0';
    END IF;
    IF occ <= 0 OR occ > 1 THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER'
            USING DETAIL = format('max_occupancy must be a fraction in (0, 1], not %s', p_max_occupancy);
    END IF;
    IF a = 0 THEN
        RETURN QUERY SELECT 0.0::DOUBLE PRECISION, 0, 0.0::DOUBLE PRECISION, 1.0::DOUBLE PRECISION,
                            0.0::DOUBLE PRECISION, NULL::DOUBLE PRECISION;
        RETURN;
    END IF;
    LOOP
        n := n + 1;
        IF n > 100000 THEN
            RAISE EXCEPTION 'WFM_STAFFING_UNREACHABLE'
                USING DETAIL = format('No staffing up to 100000 agents reaches %s within %s s at %s Erlangs',
                                      p_target_sl, p_target_seconds, round(a::NUMERIC, 3));
        END IF;
        b := a * b / (n + a * b);
        CONTINUE WHEN n <= a OR a / n > occ;
        c := n * b / (n - a * (1 - b));
        sl := 1 - c * exp(-(n - a) * p_target_seconds / p_aht_seconds::DOUBLE PRECISION);
        IF sl >= p_target_sl::DOUBLE PRECISION - 1e-12 THEN
            RETURN QUERY SELECT a, n, c, sl, c * p_aht_seconds::DOUBLE PRECISION / (n - a), a / n;
            RETURN;
        END IF;
    END LOOP;
END;
$$;

-- The smallest agent count meeting target_sl within target_seconds (and the
-- occupancy cap).
CREATE OR REPLACE FUNCTION wfm_required_agents(p_calls NUMERIC, p_interval_seconds INTEGER, p_aht_seconds NUMERIC,
                                               p_target_sl NUMERIC, p_target_seconds INTEGER,
                                               p_max_occupancy NUMERIC DEFAULT 1)
RETURNS INTEGER
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
    SELECT s.required_agents
    FROM wfm_erlang_staffing(p_calls, p_interval_seconds, p_aht_seconds, p_target_sl, p_target_seconds,
                             p_max_occupancy) s
$$;

-- What-if table: the figures for each agent count from p_min_agents (default:
-- the first count above the traffic) to p_max_agents (default: that + 10).
CREATE OR REPLACE FUNCTION wfm_staffing_table(p_calls NUMERIC, p_interval_seconds INTEGER, p_aht_seconds NUMERIC,
                                              p_target_seconds INTEGER, p_min_agents INTEGER DEFAULT NULL,
                                              p_max_agents INTEGER DEFAULT NULL)
RETURNS TABLE (agents INTEGER, probability_wait DOUBLE PRECISION, service_level DOUBLE PRECISION,
               asa_seconds DOUBLE PRECISION, occupancy DOUBLE PRECISION)
LANGUAGE plpgsql
IMMUTABLE PARALLEL SAFE
AS $$
DECLARE
    a      DOUBLE PRECISION := wfm_traffic(p_calls, p_interval_seconds, p_aht_seconds);
    v_from INTEGER := COALESCE(p_min_agents, floor(a)::INTEGER + 1);
    v_to   INTEGER;
    b      DOUBLE PRECISION := 1.0;
    c      DOUBLE PRECISION;
BEGIN
    v_to := COALESCE(p_max_agents, v_from + 10);
    IF v_from < 0 OR v_to < v_from OR v_to - v_from > 1000 THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER'
            USING DETAIL = 'The agent range must be 0 <= min <= max with at most 1000 rows';
    END IF;
    IF p_target_seconds IS NULL OR p_target_seconds < 0 THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER' USING DETAIL = 'target_seconds must be >= 0';
    END IF;
    FOR n IN 0 .. v_to LOOP
        IF n > 0 THEN
            b := a * b / (n + a * b);
        END IF;
        CONTINUE WHEN n < v_from;
        IF a = 0 THEN
            c := 0;
        ELSIF n <= a THEN
            c := 1;
        ELSE
            c := n * b / (n - a * (1 - b));
        END IF;
        agents := n;
        probability_wait := c;
        service_level := CASE WHEN a = 0 THEN 1.0 WHEN n <= a THEN 0.0
                              ELSE 1 - c * exp(-(n - a) * p_target_seconds / p_aht_seconds::DOUBLE PRECISION) END;
        asa_seconds := CASE WHEN a = 0 THEN 0.0 WHEN n <= a THEN NULL
                            ELSE c * p_aht_seconds::DOUBLE PRECISION / (n - a) END;
        occupancy := CASE WHEN n = 0 THEN NULL ELSE LEAST(a / n, 1.0) END;
        RETURN NEXT;
    END LOOP;
END;
$$;

-- ---------------------------------------------------------------------------
-- Forecasting
-- ---------------------------------------------------------------------------

-- Create (or refresh) a seasonal-average forecast of a service for the UTC
-- days p_period_start .. p_period_end (inclusive, at most 92 days): the volume
-- of each interval is the mean of the offered calls in the same weekday and
-- time of day over the p_history_weeks weeks before p_period_start (over the
-- weeks that have statistics on that weekday; for a weekday without any, the
-- mean at that time of day over the days with statistics), its AHT the
-- handle time of those calls per answered call (the time of day's, then the
-- service's history AHT, then its target AHT when there was no answered call). The same forecast (tenant,
-- service, period, interval length) is refreshed in place unless published
-- (WFM_FORECAST_PUBLISHED). Its status is 'draft' until
-- wfm_calculate_forecast() derives the staffing. Returns the forecast_id.
-- Errors: WFM_SERVICE_NOT_FOUND, WFM_INVALID_DATE_RANGE,
-- WFM_INVALID_PARAMETER, WFM_NO_HISTORY.
CREATE OR REPLACE FUNCTION wfm_create_forecast(p_tenant INTEGER, p_service_id INTEGER, p_period_start DATE,
                                               p_period_end DATE, p_history_weeks INTEGER DEFAULT 4,
                                               p_interval_minutes INTEGER DEFAULT 15,
                                               p_forecast_name TEXT DEFAULT NULL,
                                               p_created_by TEXT DEFAULT NULL)
RETURNS INTEGER
LANGUAGE plpgsql
AS $$
DECLARE
    v_service    services%ROWTYPE;
    v_step       INTERVAL;
    v_hist_from  TIMESTAMPTZ;
    v_hist_to    TIMESTAMPTZ;
    v_weeks      INTEGER;
    v_aht        NUMERIC;
    v_id         INTEGER;
    v_status     TEXT;
BEGIN
    PERFORM wfm_assert_service(p_tenant, p_service_id);
    SELECT * INTO v_service FROM services WHERE service_id = p_service_id;
    IF p_period_start IS NULL OR p_period_end IS NULL OR p_period_end < p_period_start
       OR p_period_end - p_period_start >= 92 THEN
        RAISE EXCEPTION 'WFM_INVALID_DATE_RANGE'
            USING DETAIL = 'A forecast period is 1 to 92 days, its start not after its end';
    END IF;
    IF p_interval_minutes IS NULL OR p_interval_minutes NOT IN (15, 30, 60) THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER'
            USING DETAIL = 'interval_minutes must be 15, 30 or 60';
    END IF;
    IF p_history_weeks IS NULL OR p_history_weeks NOT BETWEEN 1 AND 52 THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER'
            USING DETAIL = 'history_weeks must be between 1 and 52';
    END IF;

    v_step := make_interval(mins => p_interval_minutes);
    v_hist_to := p_period_start::TIMESTAMP AT TIME ZONE 'UTC';
    v_hist_from := v_hist_to - make_interval(days => 7 * p_history_weeks);

    SELECT count(DISTINCT floor(extract(epoch FROM v_hist_to - cs.interval_start) / 604800)),
           sum(cs.talk_seconds + cs.hold_seconds + cs.wrap_seconds)::NUMERIC / NULLIF(sum(cs.answered), 0)
      INTO v_weeks, v_aht
    FROM contact_statistics cs
    WHERE cs.service_id = p_service_id AND cs.tenant_id = p_tenant
      AND cs.interval_start >= v_hist_from AND cs.interval_start < v_hist_to;
    IF v_weeks = 0 THEN
        RAISE EXCEPTION 'WFM_NO_HISTORY'
            USING DETAIL = format('Service %s has no contact statistics in the %s weeks before %s',
                                  p_service_id, p_history_weeks, p_period_start);
    END IF;
    v_aht := COALESCE(v_aht, v_service.target_aht_seconds, 180);

    SELECT f.forecast_id, f.status INTO v_id, v_status
    FROM forecasts f
    WHERE f.tenant_id = p_tenant AND f.service_id = p_service_id AND f.period_start = p_period_start
      AND f.period_end = p_period_end AND f.interval_minutes = p_interval_minutes
    FOR UPDATE;
    IF v_status = 'published' THEN
        RAISE EXCEPTION 'WFM_FORECAST_PUBLISHED'
            USING DETAIL = format('Forecast %s is published and cannot be changed', v_id);
    END IF;
    IF v_id IS NULL THEN
        INSERT INTO forecasts (tenant_id, service_id, forecast_name, period_start, period_end, interval_minutes,
                               method, history_weeks, sl_target_pct, sl_threshold_seconds, created_by)
        VALUES (p_tenant, p_service_id,
                COALESCE(p_forecast_name, format('%s %s..%s', v_service.service_code, p_period_start, p_period_end)),
                p_period_start, p_period_end, p_interval_minutes, 'seasonal_average', p_history_weeks,
                LEAST(v_service.sl_target_pct, 99.99), v_service.sl_threshold_seconds, p_created_by)
        RETURNING forecast_id INTO v_id;
    ELSE
        UPDATE forecasts
        SET forecast_name = COALESCE(p_forecast_name, forecast_name), method = 'seasonal_average',
            history_weeks = p_history_weeks, status = 'draft', calculated_at = NULL
        WHERE forecast_id = v_id;
        DELETE FROM forecast_data_points WHERE forecast_id = v_id;
    END IF;

    INSERT INTO forecast_data_points (forecast_id, tenant_id, interval_start, forecast_volume, forecast_aht_seconds)
    WITH b AS (
        SELECT date_bin(v_step, cs.interval_start, TIMESTAMPTZ '2000-01-01 00:00+00') AS bin,
               cs.offered, cs.answered, cs.talk_seconds + cs.hold_seconds + cs.wrap_seconds AS handle
        FROM contact_statistics cs
        WHERE cs.service_id = p_service_id AND cs.tenant_id = p_tenant
          AND cs.interval_start >= v_hist_from AND cs.interval_start < v_hist_to
    ),
    h AS (
        SELECT extract(isodow FROM b.bin AT TIME ZONE 'UTC') AS dow, (b.bin AT TIME ZONE 'UTC')::TIME AS tod,
               (b.bin AT TIME ZONE 'UTC')::DATE AS day, b.offered, b.answered, b.handle
        FROM b
    ),
    by_dow AS (   -- weeks with statistics on each weekday
        SELECT h.dow, count(DISTINCT h.day) AS weeks FROM h GROUP BY h.dow
    ),
    slot_dow AS (
        SELECT h.dow, h.tod, sum(h.offered) AS offered, sum(h.answered) AS answered, sum(h.handle) AS handle
        FROM h GROUP BY h.dow, h.tod
    ),
    slot_tod AS (  -- the fallback for a weekday without history: the same time on any day
        SELECT h.tod, sum(h.offered)::NUMERIC / (SELECT count(DISTINCT h2.day) FROM h h2) AS volume,
               sum(h.handle)::NUMERIC / NULLIF(sum(h.answered), 0) AS aht
        FROM h GROUP BY h.tod
    )
    SELECT v_id, p_tenant, s.slot,
           round(CASE WHEN d.weeks > 0 THEN COALESCE(sd.offered, 0)::NUMERIC / d.weeks
                      ELSE COALESCE(st.volume, 0) END, 2),
           round(COALESCE(CASE WHEN d.weeks > 0 THEN sd.handle::NUMERIC / NULLIF(sd.answered, 0) END,
                          st.aht, v_aht), 2)
    FROM generate_series(v_hist_to, (p_period_end + 1)::TIMESTAMP AT TIME ZONE 'UTC' - v_step, v_step) AS s (slot)
    LEFT JOIN by_dow d ON d.dow = extract(isodow FROM s.slot AT TIME ZONE 'UTC')
    LEFT JOIN slot_dow sd ON sd.dow = d.dow AND sd.tod = (s.slot AT TIME ZONE 'UTC')::TIME
    LEFT JOIN slot_tod st ON st.tod = (s.slot AT TIME ZONE 'UTC')::TIME;
    RETURN v_id;
END;
$$;

-- Derive the staffing of every interval of a forecast with Erlang C: traffic,
-- required agents (the fewest meeting the service level, within the occupancy
-- cap), agents to schedule (required / (1 - shrinkage), rounded up), and the
-- expected service level, probability of waiting, ASA and occupancy at the
-- required count; then write the service's staffing_plans for the forecast's
-- period (rows from an earlier forecast calculation are replaced, 'manual'
-- rows are kept) and mark the forecast calculated. Targets left NULL come
-- from the forecast; given ones are stored on it. p_target_sl,
-- p_max_occupancy and p_shrinkage are fractions (0.8, 0.85, 0.3).
-- Returns a summary (jsonb): forecast_id, service_id, period_start, period_end,
-- interval_minutes, target_service_level, target_seconds, max_occupancy,
-- shrinkage, intervals, total_volume, workload_hours, peak_required_agents,
-- peak_interval_start, required_agent_hours, scheduled_agent_hours,
-- expected_service_level (volume-weighted), min_expected_service_level,
-- staffing_plan_rows, manual_rows_kept, calculated_at.
-- Errors: WFM_FORECAST_NOT_FOUND, WFM_FORECAST_PUBLISHED, WFM_FORECAST_EMPTY,
-- WFM_INVALID_PARAMETER, WFM_STAFFING_UNREACHABLE.
CREATE OR REPLACE FUNCTION wfm_calculate_forecast(p_tenant INTEGER, p_forecast_id INTEGER,
                                                  p_target_sl NUMERIC DEFAULT NULL,
                                                  p_target_seconds INTEGER DEFAULT NULL,
                                                  p_max_occupancy NUMERIC DEFAULT NULL,
                                                  p_shrinkage NUMERIC DEFAULT NULL)
RETURNS JSONB
LANGUAGE plpgsql
AS $$
DECLARE
    f            forecasts%ROWTYPE;
    v_sl         NUMERIC;
    v_seconds    INTEGER;
    v_occ        NUMERIC;
    v_shrink     NUMERIC;
    v_step       INTERVAL;
    v_from       TIMESTAMPTZ;
    v_to         TIMESTAMPTZ;
    v_points     INTEGER;
    v_written    INTEGER;
    v_summary    JSONB;
BEGIN
    SELECT * INTO f FROM forecasts WHERE forecast_id = p_forecast_id AND tenant_id = p_tenant FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'WFM_FORECAST_NOT_FOUND'
            USING DETAIL = format('Forecast %s not found', p_forecast_id);
    END IF;
    IF f.status = 'published' THEN
        RAISE EXCEPTION 'WFM_FORECAST_PUBLISHED'
            USING DETAIL = format('Forecast %s is published and cannot be recalculated', p_forecast_id);
    END IF;
    v_sl := COALESCE(p_target_sl, f.sl_target_pct / 100);
    v_seconds := COALESCE(p_target_seconds, f.sl_threshold_seconds);
    v_occ := COALESCE(p_max_occupancy, f.max_occupancy_pct / 100);
    v_shrink := COALESCE(p_shrinkage, f.shrinkage_pct / 100);
    IF v_sl <= 0 OR v_sl >= 1 THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER'
            USING DETAIL = format('target_sl must be a fraction between 0 and 1 (exclusive), not %s', v_sl);
    END IF;
    IF v_seconds <= 0 THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER' USING DETAIL = 'target_seconds must be > 0';
    END IF;
    IF v_occ <= 0 OR v_occ > 1 THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER'
            USING DETAIL = format('max_occupancy must be a fraction in (0, 1], not %s', v_occ);
    END IF;
    IF v_shrink < 0 OR v_shrink >= 1 THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER'
            USING DETAIL = format('shrinkage must be a fraction in [0, 1), not %s', v_shrink);
    END IF;
    SELECT count(*) INTO v_points FROM forecast_data_points WHERE forecast_id = p_forecast_id;
    IF v_points = 0 THEN
        RAISE EXCEPTION 'WFM_FORECAST_EMPTY'
            USING DETAIL = format('Forecast %s has no data points', p_forecast_id);
    END IF;

    v_step := make_interval(mins => f.interval_minutes);
    v_from := f.period_start::TIMESTAMP AT TIME ZONE 'UTC';
    v_to := (f.period_end + 1)::TIMESTAMP AT TIME ZONE 'UTC';

    UPDATE forecast_data_points d
    SET traffic_erlangs = round(s.traffic_erlangs::NUMERIC, 3),
        required_agents = s.required_agents,
        scheduled_agents_needed = ceil(round(s.required_agents / (1 - v_shrink), 6))::INTEGER,
        expected_service_level_pct = round((100 * s.service_level)::NUMERIC, 2),
        probability_wait_pct = round((100 * s.probability_wait)::NUMERIC, 2),
        expected_asa_seconds = round(s.asa_seconds::NUMERIC, 2),
        occupancy_pct = round((100 * s.occupancy)::NUMERIC, 2)
    FROM forecast_data_points p
    CROSS JOIN LATERAL wfm_erlang_staffing(p.forecast_volume, f.interval_minutes * 60, p.forecast_aht_seconds,
                                           v_sl, v_seconds, v_occ) s
    WHERE p.forecast_id = p_forecast_id
      AND d.forecast_id = p.forecast_id AND d.interval_start = p.interval_start;

    DELETE FROM staffing_plans sp
    WHERE sp.service_id = f.service_id AND sp.source = 'forecast'
      AND sp.interval_start < v_to AND sp.interval_end > v_from;
    INSERT INTO staffing_plans (tenant_id, service_id, interval_start, interval_end, required_agents,
                                planned_headcount, forecast_id, source, updated_at)
    SELECT p_tenant, f.service_id, d.interval_start, d.interval_start + v_step, d.required_agents,
           d.scheduled_agents_needed, p_forecast_id, 'forecast', now()
    FROM forecast_data_points d
    WHERE d.forecast_id = p_forecast_id
      AND d.interval_start >= v_from AND d.interval_start < v_to
    ON CONFLICT (service_id, interval_start) DO NOTHING;
    GET DIAGNOSTICS v_written = ROW_COUNT;

    UPDATE forecasts
    SET status = 'calculated', calculated_at = now(),
        sl_target_pct = round(v_sl * 100, 2), sl_threshold_seconds = v_seconds,
        max_occupancy_pct = round(v_occ * 100, 2), shrinkage_pct = round(v_shrink * 100, 2)
    WHERE forecast_id = p_forecast_id;

    SELECT jsonb_build_object(
               'forecast_id', p_forecast_id,
               'service_id', f.service_id,
               'period_start', f.period_start,
               'period_end', f.period_end,
               'interval_minutes', f.interval_minutes,
               'target_service_level', v_sl,
               'target_seconds', v_seconds,
               'max_occupancy', v_occ,
               'shrinkage', v_shrink,
               'intervals', count(*),
               'total_volume', sum(d.forecast_volume),
               'workload_hours', round(sum(d.traffic_erlangs) * f.interval_minutes / 60.0, 2),
               'peak_required_agents', max(d.required_agents),
               'peak_interval_start', (array_agg(d.interval_start ORDER BY d.required_agents DESC,
                                                                        d.interval_start))[1],
               'required_agent_hours', round(sum(d.required_agents) * f.interval_minutes / 60.0, 2),
               'scheduled_agent_hours', round(sum(d.scheduled_agents_needed) * f.interval_minutes / 60.0, 2),
               'expected_service_level',
                   round(sum(d.expected_service_level_pct * d.forecast_volume)
                         / NULLIF(sum(d.forecast_volume), 0) / 100, 4),
               'min_expected_service_level',
                   round(min(d.expected_service_level_pct) FILTER (WHERE d.forecast_volume > 0) / 100, 4),
               'staffing_plan_rows', v_written,
               'manual_rows_kept', count(*) FILTER (WHERE d.interval_start >= v_from AND d.interval_start < v_to)
                                   - v_written,
               'calculated_at', now())
      INTO v_summary
    FROM forecast_data_points d
    WHERE d.forecast_id = p_forecast_id;
    RETURN v_summary;
END;
$$;

-- Forecast accuracy against the actual offered calls, over the forecast's
-- intervals that have statistics and have ended: intervals_compared,
-- forecast_volume, actual_volume, wape_pct (sum |actual - forecast| / sum
-- actual), bias_pct ((forecast - actual) / actual: positive = over-forecast),
-- accuracy_pct (100 - WAPE, not below 0). Figures are NULL without actuals.
-- Errors: WFM_FORECAST_NOT_FOUND.
CREATE OR REPLACE FUNCTION wfm_forecast_accuracy(p_tenant INTEGER, p_forecast_id INTEGER)
RETURNS JSONB
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    f        forecasts%ROWTYPE;
    v_step   INTERVAL;
    v_result JSONB;
BEGIN
    SELECT * INTO f FROM forecasts WHERE forecast_id = p_forecast_id AND tenant_id = p_tenant;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'WFM_FORECAST_NOT_FOUND'
            USING DETAIL = format('Forecast %s not found', p_forecast_id);
    END IF;
    v_step := make_interval(mins => f.interval_minutes);
    SELECT jsonb_build_object(
               'forecast_id', p_forecast_id,
               'service_id', f.service_id,
               'intervals_compared', count(*),
               'forecast_volume', sum(x.forecast),
               'actual_volume', sum(x.actual),
               'wape_pct', round(100 * sum(abs(x.actual - x.forecast)) / NULLIF(sum(x.actual), 0), 2),
               'bias_pct', round(100 * (sum(x.forecast) - sum(x.actual)) / NULLIF(sum(x.actual), 0), 2),
               'accuracy_pct', wfm_non_negative(round(100 - 100 * sum(abs(x.actual - x.forecast))
                                                      / NULLIF(sum(x.actual), 0), 2)))
      INTO v_result
    FROM (
        SELECT d.forecast_volume AS forecast, a.actual
        FROM forecast_data_points d
        JOIN LATERAL (
            SELECT sum(cs.offered)::NUMERIC AS actual
            FROM contact_statistics cs
            WHERE cs.service_id = f.service_id AND cs.tenant_id = p_tenant
              AND cs.interval_start >= d.interval_start AND cs.interval_start < d.interval_start + v_step
        ) a ON a.actual IS NOT NULL
        WHERE d.forecast_id = p_forecast_id AND d.interval_start + v_step <= now()
    ) x;
    RETURN v_result;
END;
$$;

-- ---------------------------------------------------------------------------
-- Contact statistics, agent performance, SLA compliance
-- ---------------------------------------------------------------------------

-- Contact statistics of a tenant aggregated per service and period
-- ('15min', 'hour', 'day', 'week' (ISO, from Monday) or 'month', in UTC) over
-- [p_from, p_to), optionally for one service: the sums, and the ratios
-- recomputed from them (service level and abandon rate per offered call, AHT
-- and ASA per answered call). The period may be at most 31 days long for
-- '15min', 92 for 'hour', 400 otherwise, so an answer stays bounded. Uses the
-- primary key (service_id, interval_start) for one service, the index
-- (tenant_id, interval_start) or a parallel scan otherwise (custom plans
-- only, so a cached generic plan never hides the service's index); its own
-- work_mem keeps the grouping in memory (a hash aggregate).
-- Errors: WFM_INVALID_DATE_RANGE, WFM_INVALID_PARAMETER.
CREATE OR REPLACE FUNCTION wfm_contact_statistics_summary(p_tenant INTEGER, p_from TIMESTAMPTZ, p_to TIMESTAMPTZ,
                                                          p_granularity TEXT DEFAULT 'hour',
                                                          p_service_id INTEGER DEFAULT NULL)
RETURNS TABLE (service_id INTEGER, period_start TIMESTAMPTZ, intervals BIGINT, offered BIGINT, answered BIGINT,
               abandoned BIGINT, answered_within_threshold BIGINT, service_level_pct NUMERIC,
               abandon_rate_pct NUMERIC, aht_seconds NUMERIC, asa_seconds NUMERIC, max_wait_seconds INTEGER,
               avg_agents_staffed NUMERIC)
LANGUAGE plpgsql
STABLE
SET work_mem = '64MB'
SET plan_cache_mode = 'force_custom_plan'
AS $$
DECLARE
    v_granularity TEXT := COALESCE(p_granularity, 'hour');
    v_stride      INTERVAL;
BEGIN
    v_stride := CASE v_granularity
                    WHEN '15min' THEN INTERVAL '15 minutes' WHEN 'hour' THEN INTERVAL '1 hour'
                    WHEN 'day' THEN INTERVAL '1 day' WHEN 'week' THEN INTERVAL '7 days' END;
    IF v_stride IS NULL AND v_granularity <> 'month' THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER'
            USING DETAIL = format('granularity must be 15min, hour, day, week or month, not %s', p_granularity);
    END IF;
    PERFORM wfm_check_range(p_from, p_to, CASE v_granularity WHEN '15min' THEN 31 WHEN 'hour' THEN 92 ELSE 400 END);
    RETURN QUERY
    SELECT cs.service_id,
           -- 2000-01-03 is a Monday at 00:00 UTC: day, hour and ISO-week buckets in UTC
           CASE WHEN v_stride IS NULL THEN date_trunc('month', cs.interval_start, 'UTC')
                ELSE date_bin(v_stride, cs.interval_start, TIMESTAMPTZ '2000-01-03 00:00+00') END AS bucket,
           count(*),
           sum(cs.offered)::BIGINT,
           sum(cs.answered)::BIGINT,
           sum(cs.abandoned)::BIGINT,
           sum(cs.answered_within_threshold)::BIGINT,
           round(100.0 * sum(LEAST(cs.answered_within_threshold, cs.offered)) / NULLIF(sum(cs.offered), 0), 2),
           round(100.0 * sum(cs.abandoned) / NULLIF(sum(cs.offered), 0), 2),
           round(sum(cs.talk_seconds + cs.hold_seconds + cs.wrap_seconds)::NUMERIC
                 / NULLIF(sum(cs.answered), 0), 2),
           round(sum(cs.wait_seconds)::NUMERIC / NULLIF(sum(cs.answered), 0), 2),
           max(cs.max_wait_seconds),
           round(avg(cs.agents_staffed), 2)
    FROM contact_statistics cs
    WHERE cs.tenant_id = p_tenant
      AND cs.interval_start >= p_from AND cs.interval_start < p_to
      AND (p_service_id IS NULL OR cs.service_id = p_service_id)
    GROUP BY 1, 2
    ORDER BY 1, 2;
END;
$$;

-- Agent performance over the UTC days p_from .. p_to (inclusive, at most 400
-- days), optionally for the agents whose activity was on one service: days
-- worked, login hours, calls, AHT, occupancy (handling time / (ready +
-- handling time)), adherence (adherent / scheduled time), not-ready share.
-- Errors: WFM_INVALID_DATE_RANGE.
CREATE OR REPLACE FUNCTION wfm_agent_performance(p_tenant INTEGER, p_from DATE, p_to DATE,
                                                 p_service_id INTEGER DEFAULT NULL)
RETURNS TABLE (agent_id INTEGER, employee_number VARCHAR, full_name VARCHAR, service_id INTEGER, days BIGINT,
               login_hours NUMERIC, calls_handled BIGINT, aht_seconds NUMERIC, occupancy_pct NUMERIC,
               adherence_pct NUMERIC, not_ready_pct NUMERIC)
LANGUAGE plpgsql
STABLE
AS $$
BEGIN
    IF p_from IS NULL OR p_to IS NULL OR p_to < p_from OR p_to - p_from > 400 THEN
        RAISE EXCEPTION 'WFM_INVALID_DATE_RANGE'
            USING DETAIL = 'The day range must be given, its start not after its end, at most 400 days';
    END IF;
    RETURN QUERY
    SELECT a.agent_id, a.employee_number, a.full_name, a.primary_service_id,
           count(*),
           round(sum(aa.login_seconds) / 3600.0, 2),
           sum(aa.calls_handled)::BIGINT,
           round(sum(aa.talk_seconds + aa.hold_seconds + aa.wrap_seconds)::NUMERIC
                 / NULLIF(sum(aa.calls_handled), 0), 2),
           round(100.0 * sum(aa.talk_seconds + aa.hold_seconds + aa.wrap_seconds)
                 / NULLIF(sum(aa.ready_seconds + aa.talk_seconds + aa.hold_seconds + aa.wrap_seconds), 0), 2),
           round(100.0 * sum(aa.adherent_seconds) / NULLIF(sum(aa.scheduled_seconds), 0), 2),
           round(100.0 * sum(aa.not_ready_seconds) / NULLIF(sum(aa.login_seconds), 0), 2)
    FROM agent_activity aa
    JOIN agents a ON a.agent_id = aa.agent_id
    WHERE aa.tenant_id = p_tenant
      AND aa.activity_date BETWEEN p_from AND p_to
      AND (p_service_id IS NULL OR aa.service_id = p_service_id)
    GROUP BY a.agent_id, a.employee_number, a.full_name, a.primary_service_id
    ORDER BY a.agent_id;
END;
$$;

-- SLA compliance per service over [p_from, p_to) (at most 400 days), in the
-- "80/20" format: the share of offered calls answered within
-- p_threshold_seconds, against p_target (a fraction). NULL threshold or
-- target = each service's own (sl_threshold_seconds, sl_target_pct). A
-- service's figures use its answered_within_threshold when the threshold is
-- its own, else the ACD's service-level increment of that many seconds (10,
-- 20, 30 or 60; another threshold that is not every service's own is
-- WFM_UNSUPPORTED_SL_THRESHOLD); service_level is NULL when the increment was
-- not reported for every interval. Every active service of the tenant is
-- listed (offered 0, service_level and compliant NULL without calls).
-- compliant_intervals counts the intervals with calls that met the target.
-- Errors: WFM_INVALID_DATE_RANGE, WFM_INVALID_PARAMETER, WFM_UNSUPPORTED_SL_THRESHOLD.
CREATE OR REPLACE FUNCTION wfm_sla_compliance(p_tenant INTEGER, p_from TIMESTAMPTZ, p_to TIMESTAMPTZ,
                                              p_threshold_seconds INTEGER DEFAULT 20,
                                              p_target NUMERIC DEFAULT 0.8)
RETURNS TABLE (service_id INTEGER, service_code VARCHAR, service_name VARCHAR, channel VARCHAR,
               threshold_seconds INTEGER, target NUMERIC, offered BIGINT, answered BIGINT, abandoned BIGINT,
               answered_within_threshold BIGINT, service_level NUMERIC, answer_rate NUMERIC,
               abandon_rate NUMERIC, intervals BIGINT, compliant_intervals BIGINT, compliant BOOLEAN)
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    v_odd TEXT;
BEGIN
    PERFORM wfm_check_range(p_from, p_to, 400);
    IF p_target IS NOT NULL AND (p_target <= 0 OR p_target > 1) THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER'
            USING DETAIL = format('target must be a fraction in (0, 1], not %s', p_target);
    END IF;
    IF p_threshold_seconds IS NOT NULL AND p_threshold_seconds NOT IN (10, 20, 30, 60) THEN
        SELECT string_agg(DISTINCT s.service_code, ', ') INTO v_odd
        FROM services s
        WHERE s.tenant_id = p_tenant AND s.is_active AND s.sl_threshold_seconds <> p_threshold_seconds;
        IF v_odd IS NOT NULL THEN
            RAISE EXCEPTION 'WFM_UNSUPPORTED_SL_THRESHOLD'
                USING DETAIL = format('A threshold of %s s is recorded only as a service''s own threshold; '
                                      'use 10, 20, 30 or 60 (services with another threshold: %s)',
                                      p_threshold_seconds, v_odd);
        END IF;
    END IF;
    RETURN QUERY
    WITH svc AS (
        SELECT s.service_id, s.service_code, s.service_name, s.channel,
               COALESCE(p_threshold_seconds, s.sl_threshold_seconds) AS thr,
               COALESCE(p_target, round(s.sl_target_pct / 100, 4)) AS tgt,
               p_threshold_seconds IS NULL OR p_threshold_seconds = s.sl_threshold_seconds AS own
        FROM services s
        WHERE s.tenant_id = p_tenant AND s.is_active
    ),
    iv AS (
        SELECT v.service_id, cs.offered, cs.answered, cs.abandoned,
               CASE WHEN v.own THEN cs.answered_within_threshold
                    WHEN v.thr = 10 THEN cs.answered_within_10s
                    WHEN v.thr = 20 THEN cs.answered_within_20s
                    WHEN v.thr = 30 THEN cs.answered_within_30s
                    WHEN v.thr = 60 THEN cs.answered_within_60s END AS awt,
               v.tgt
        FROM svc v
        JOIN contact_statistics cs
          ON cs.service_id = v.service_id AND cs.tenant_id = p_tenant
         AND cs.interval_start >= p_from AND cs.interval_start < p_to
    ),
    agg AS (
        SELECT iv.service_id,
               sum(iv.offered)::BIGINT AS offered,
               sum(iv.answered)::BIGINT AS answered,
               sum(iv.abandoned)::BIGINT AS abandoned,
               CASE WHEN count(iv.awt) = count(*) THEN sum(LEAST(iv.awt, iv.offered))::BIGINT END AS awt,
               count(*) FILTER (WHERE iv.offered > 0) AS intervals,
               count(*) FILTER (WHERE iv.offered > 0 AND LEAST(iv.awt, iv.offered) >= iv.tgt * iv.offered)
                   AS compliant_intervals
        FROM iv
        GROUP BY iv.service_id
    )
    SELECT v.service_id, v.service_code, v.service_name, v.channel, v.thr, v.tgt,
           COALESCE(g.offered, 0), COALESCE(g.answered, 0), COALESCE(g.abandoned, 0), g.awt,
           round(g.awt::NUMERIC / NULLIF(g.offered, 0), 4),
           round(g.answered::NUMERIC / NULLIF(g.offered, 0), 4),
           round(g.abandoned::NUMERIC / NULLIF(g.offered, 0), 4),
           COALESCE(g.intervals, 0), COALESCE(g.compliant_intervals, 0),
           g.awt::NUMERIC / NULLIF(g.offered, 0) >= v.tgt
    FROM svc v
    LEFT JOIN agg g ON g.service_id = v.service_id
    ORDER BY v.service_id;
END;
$$;

-- ---------------------------------------------------------------------------
-- Thresholds and traffic lights
-- ---------------------------------------------------------------------------

-- The light of a value against green and yellow thresholds: green when it
-- meets green, yellow when it meets yellow, red otherwise, where "meets" is
-- >= for higher_is_better and <= for lower_is_better (a value equal to a
-- threshold is on the better side). NULL value: NULL.
CREATE OR REPLACE FUNCTION wfm_traffic_light_level(p_direction TEXT, p_value NUMERIC, p_green NUMERIC,
                                                   p_yellow NUMERIC)
RETURNS TEXT
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
               WHEN p_value IS NULL OR p_green IS NULL OR p_yellow IS NULL THEN NULL
               WHEN p_direction = 'higher_is_better' THEN
                   CASE WHEN p_value >= p_green THEN 'green' WHEN p_value >= p_yellow THEN 'yellow' ELSE 'red' END
               WHEN p_direction = 'lower_is_better' THEN
                   CASE WHEN p_value <= p_green THEN 'green' WHEN p_value <= p_yellow THEN 'yellow' ELSE 'red' END
           END
$$;

-- The light of a metric's value for a tenant (and service): the service's
-- own active threshold row, else the tenant-wide one; NULL when neither
-- exists or the value is NULL. Errors: WFM_UNKNOWN_METRIC.
CREATE OR REPLACE FUNCTION wfm_traffic_light(p_metric TEXT, p_value NUMERIC, p_tenant INTEGER,
                                             p_service_id INTEGER DEFAULT NULL)
RETURNS TEXT
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    v_direction TEXT;
    v_green     NUMERIC;
    v_yellow    NUMERIC;
BEGIN
    SELECT d.direction INTO v_direction FROM wfm_metric_definitions d WHERE d.metric_name = p_metric;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'WFM_UNKNOWN_METRIC' USING DETAIL = format('Unknown metric %s', p_metric);
    END IF;
    SELECT t.green_threshold, t.yellow_threshold INTO v_green, v_yellow
    FROM threshold_alerts t
    WHERE t.tenant_id = p_tenant AND t.metric_name = p_metric AND t.is_active
      AND (t.service_id = p_service_id OR t.service_id IS NULL)
    ORDER BY t.service_id NULLS LAST
    LIMIT 1;
    RETURN wfm_traffic_light_level(v_direction, p_value, v_green, v_yellow);
END;
$$;

-- Thresholds must put green on the better side of yellow (WFM_INVALID_THRESHOLDS).
CREATE OR REPLACE FUNCTION wfm_threshold_alerts_check()
RETURNS TRIGGER
LANGUAGE plpgsql
AS $$
DECLARE
    v_direction TEXT;
BEGIN
    SELECT d.direction INTO v_direction FROM wfm_metric_definitions d WHERE d.metric_name = NEW.metric_name;
    IF v_direction = 'higher_is_better' AND NEW.green_threshold < NEW.yellow_threshold THEN
        RAISE EXCEPTION 'WFM_INVALID_THRESHOLDS'
            USING DETAIL = format('%s is better when higher: the green threshold (%s) must not be below '
                                  'the yellow one (%s)', NEW.metric_name, NEW.green_threshold, NEW.yellow_threshold);
    END IF;
    IF v_direction = 'lower_is_better' AND NEW.green_threshold > NEW.yellow_threshold THEN
        RAISE EXCEPTION 'WFM_INVALID_THRESHOLDS'
            USING DETAIL = format('%s is better when lower: the green threshold (%s) must not be above '
                                  'the yellow one (%s)', NEW.metric_name, NEW.green_threshold, NEW.yellow_threshold);
    END IF;
    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS trg_threshold_alerts_check ON threshold_alerts;
CREATE TRIGGER trg_threshold_alerts_check
    BEFORE INSERT OR UPDATE ON threshold_alerts
    FOR EACH ROW EXECUTE FUNCTION wfm_threshold_alerts_check();

-- Create or update the threshold alert of a metric (tenant-wide when
-- p_service_id is NULL) and, with p_predictive (an object with any of
-- horizon_minutes, min_confidence_pct, accuracy_target_pct, is_active), its
-- predictive alert. Channels left NULL keep their value (default
-- {dashboard}). Returns {"threshold": row, "predictive": row or null,
-- "created": true when the threshold row is new}.
-- Errors: WFM_UNKNOWN_METRIC, WFM_SERVICE_NOT_FOUND, WFM_INVALID_THRESHOLDS,
-- WFM_INVALID_PARAMETER.
CREATE OR REPLACE FUNCTION wfm_configure_alert(p_tenant INTEGER, p_metric TEXT, p_green NUMERIC, p_yellow NUMERIC,
                                               p_service_id INTEGER DEFAULT NULL,
                                               p_channels TEXT[] DEFAULT NULL,
                                               p_escalation_minutes INTEGER DEFAULT NULL,
                                               p_is_active BOOLEAN DEFAULT TRUE,
                                               p_predictive JSONB DEFAULT NULL,
                                               p_updated_by TEXT DEFAULT NULL)
RETURNS JSONB
LANGUAGE plpgsql
AS $$
DECLARE
    v_threshold JSONB;
    v_channels  TEXT[];
    v_created   BOOLEAN;
    v_pred      JSONB;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM wfm_metric_definitions d WHERE d.metric_name = p_metric) THEN
        RAISE EXCEPTION 'WFM_UNKNOWN_METRIC' USING DETAIL = format('Unknown metric %s', p_metric);
    END IF;
    IF p_service_id IS NOT NULL THEN
        PERFORM wfm_assert_service(p_tenant, p_service_id);
    END IF;
    IF p_green IS NULL OR p_yellow IS NULL THEN
        RAISE EXCEPTION 'WFM_INVALID_THRESHOLDS' USING DETAIL = 'Both green and yellow thresholds are required';
    END IF;
    IF p_channels IS NOT NULL AND NOT p_channels <@ ARRAY['dashboard', 'email', 'sms', 'webhook']::TEXT[] THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER'
            USING DETAIL = 'notification channels are dashboard, email, sms and webhook';
    END IF;
    IF p_escalation_minutes IS NOT NULL AND p_escalation_minutes NOT BETWEEN 1 AND 1440 THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER' USING DETAIL = 'escalation_minutes must be 1 to 1440';
    END IF;
    IF p_predictive IS NOT NULL AND jsonb_typeof(p_predictive) <> 'object' THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER' USING DETAIL = 'predictive must be an object';
    END IF;

    INSERT INTO threshold_alerts AS t (tenant_id, metric_name, service_id, green_threshold, yellow_threshold,
                                       notification_channels, escalation_minutes, is_active, updated_by)
    VALUES (p_tenant, p_metric, p_service_id, p_green, p_yellow, COALESCE(p_channels, '{dashboard}'),
            COALESCE(p_escalation_minutes, 15), COALESCE(p_is_active, TRUE), p_updated_by)
    ON CONFLICT (tenant_id, metric_name, (COALESCE(service_id, 0))) DO UPDATE
    SET green_threshold = EXCLUDED.green_threshold,
        yellow_threshold = EXCLUDED.yellow_threshold,
        notification_channels = COALESCE(p_channels, t.notification_channels),
        escalation_minutes = COALESCE(p_escalation_minutes, t.escalation_minutes),
        is_active = EXCLUDED.is_active,
        updated_by = EXCLUDED.updated_by
    RETURNING to_jsonb(t.*), t.notification_channels, (xmax = 0) INTO v_threshold, v_channels, v_created;

    IF p_predictive IS NOT NULL THEN
        BEGIN
            INSERT INTO predictive_alerts AS pa (tenant_id, metric_name, service_id, horizon_minutes,
                                                 min_confidence_pct, accuracy_target_pct, notification_channels,
                                                 is_active, updated_by)
            VALUES (p_tenant, p_metric, p_service_id,
                    COALESCE((p_predictive ->> 'horizon_minutes')::INTEGER, 60),
                    COALESCE((p_predictive ->> 'min_confidence_pct')::NUMERIC, 70),
                    COALESCE((p_predictive ->> 'accuracy_target_pct')::NUMERIC, 85),
                    v_channels,
                    COALESCE((p_predictive ->> 'is_active')::BOOLEAN, TRUE), p_updated_by)
            ON CONFLICT (tenant_id, metric_name, (COALESCE(service_id, 0))) DO UPDATE
            SET horizon_minutes = COALESCE((p_predictive ->> 'horizon_minutes')::INTEGER, pa.horizon_minutes),
                min_confidence_pct = COALESCE((p_predictive ->> 'min_confidence_pct')::NUMERIC,
                                              pa.min_confidence_pct),
                accuracy_target_pct = COALESCE((p_predictive ->> 'accuracy_target_pct')::NUMERIC,
                                               pa.accuracy_target_pct),
                notification_channels = EXCLUDED.notification_channels,
                is_active = EXCLUDED.is_active,
                updated_by = EXCLUDED.updated_by,
                updated_at = now()
            RETURNING to_jsonb(pa.*) INTO v_pred;
        EXCEPTION
            WHEN check_violation OR invalid_text_representation OR numeric_value_out_of_range THEN
                RAISE EXCEPTION 'WFM_INVALID_PARAMETER'
                    USING DETAIL = 'predictive: horizon_minutes is 15 to 1440, min_confidence_pct and '
                                   'accuracy_target_pct are above 0 and at most 100';
        END;
    END IF;
    RETURN jsonb_build_object('threshold', v_threshold, 'predictive', v_pred, 'created', v_created);
END;
$$;

-- ---------------------------------------------------------------------------
-- Metrics: current values, realtime view, dashboard, optimisation rules
-- ---------------------------------------------------------------------------

-- The database figures behind the db_* metrics (read-only catalog views).
CREATE OR REPLACE FUNCTION wfm_database_metrics()
RETURNS TABLE (metric_name VARCHAR, metric_value NUMERIC)
LANGUAGE sql
STABLE
AS $$
    SELECT 'db_connection_usage_pct'::VARCHAR,
           round(100.0 * (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')
                 / current_setting('max_connections')::INTEGER, 2)
    UNION ALL
    SELECT 'db_cache_hit_pct',
           round(100.0 * d.blks_hit / NULLIF(d.blks_hit + d.blks_read, 0), 2)
    FROM pg_stat_database d
    WHERE d.datname = current_database()
$$;

-- The tenant's current metric values, per service and for the whole centre
-- (service_id NULL): from contact statistics over [p_from, p_to)
-- service_level_pct, abandon_rate_pct, acd_rate_pct,
-- avg_speed_answer_seconds, aht_seconds; from agent activity over the UTC
-- days of the period occupancy_pct and adherence_pct; from the forecasts'
-- ended intervals in the period forecast_error_pct (WAPE) and
-- load_deviation_pct (|actual - forecast| / forecast of the totals); and,
-- whatever the period, the live operators_online_pct (agents logged in per
-- agent scheduled now), agents_short (required now by the staffing plan
-- minus agents available or handling calls), calls_waiting and
-- longest_wait_seconds. Metrics without data are left out. Percents and
-- seconds are rounded to 2 decimals. Errors: WFM_INVALID_DATE_RANGE.
CREATE OR REPLACE FUNCTION wfm_current_metrics(p_tenant INTEGER,
                                               p_from TIMESTAMPTZ DEFAULT now() - INTERVAL '7 days',
                                               p_to TIMESTAMPTZ DEFAULT now())
RETURNS TABLE (service_id INTEGER, metric_name VARCHAR, metric_value NUMERIC)
LANGUAGE plpgsql
STABLE
AS $$
BEGIN
    PERFORM wfm_check_range(p_from, p_to, 400);
    RETURN QUERY
    WITH contact AS (
        SELECT cs.service_id AS sid,
               sum(cs.offered) AS offered, sum(cs.answered) AS answered, sum(cs.abandoned) AS abandoned,
               sum(LEAST(cs.answered_within_threshold, cs.offered)) AS awt,
               sum(cs.talk_seconds + cs.hold_seconds + cs.wrap_seconds) AS handle,
               sum(cs.wait_seconds) AS wait
        FROM contact_statistics cs
        WHERE cs.tenant_id = p_tenant AND cs.interval_start >= p_from AND cs.interval_start < p_to
        GROUP BY GROUPING SETS ((cs.service_id), ())
    ),
    activity AS (
        SELECT aa.service_id AS sid,
               sum(aa.talk_seconds + aa.hold_seconds + aa.wrap_seconds) AS handling,
               sum(aa.ready_seconds + aa.talk_seconds + aa.hold_seconds + aa.wrap_seconds) AS available,
               sum(aa.adherent_seconds) AS adherent, sum(aa.scheduled_seconds) AS scheduled
        FROM agent_activity aa
        WHERE aa.tenant_id = p_tenant
          AND aa.activity_date BETWEEN (p_from AT TIME ZONE 'UTC')::DATE
                                   AND ((p_to - INTERVAL '1 microsecond') AT TIME ZONE 'UTC')::DATE
        GROUP BY GROUPING SETS ((aa.service_id), ())
    ),
    fpoints AS (
        SELECT DISTINCT ON (f.service_id, d.interval_start)
               f.service_id, d.interval_start, make_interval(mins => f.interval_minutes) AS step,
               d.forecast_volume
        FROM forecasts f
        JOIN forecast_data_points d ON d.forecast_id = f.forecast_id
        WHERE f.tenant_id = p_tenant
          AND d.interval_start >= p_from AND d.interval_start < p_to
          AND d.interval_start + make_interval(mins => f.interval_minutes) <= now()
        ORDER BY f.service_id, d.interval_start, f.calculated_at DESC NULLS LAST, f.forecast_id DESC
    ),
    fcmp AS (
        SELECT fp.service_id AS sid, sum(fp.forecast_volume) AS fc, sum(a.actual) AS actual,
               sum(abs(a.actual - fp.forecast_volume)) AS abs_err
        FROM fpoints fp
        JOIN LATERAL (
            SELECT sum(cs.offered)::NUMERIC AS actual
            FROM contact_statistics cs
            WHERE cs.service_id = fp.service_id AND cs.tenant_id = p_tenant
              AND cs.interval_start >= fp.interval_start AND cs.interval_start < fp.interval_start + fp.step
        ) a ON a.actual IS NOT NULL
        GROUP BY GROUPING SETS ((fp.service_id), ())
    ),
    scheduled AS (
        SELECT w.service_id AS sid, count(DISTINCT w.agent_id) AS n
        FROM work_schedules w
        WHERE w.tenant_id = p_tenant AND w.status <> 'cancelled'
          AND w.shift_start <= now() AND w.shift_end > now()
          AND NOT EXISTS (SELECT 1 FROM break_schedules b
                          WHERE b.schedule_id = w.schedule_id AND b.break_start <= now() AND b.break_end > now())
        GROUP BY GROUPING SETS ((w.service_id), ())
    ),
    online AS (
        SELECT COALESCE(ra.current_service_id, a.primary_service_id) AS sid,
               count(*) FILTER (WHERE ra.status <> 'logged_out') AS logged_in,
               count(*) FILTER (WHERE ra.status IN ('available', 'on_call', 'wrap_up')) AS working
        FROM realtime_agents ra
        JOIN agents a ON a.agent_id = ra.agent_id
        WHERE ra.tenant_id = p_tenant
        GROUP BY GROUPING SETS ((COALESCE(ra.current_service_id, a.primary_service_id)), ())
    ),
    required AS (
        SELECT sp.service_id AS sid, sum(sp.required_agents) AS n
        FROM staffing_plans sp
        WHERE sp.tenant_id = p_tenant AND sp.interval_start <= now() AND sp.interval_end > now()
        GROUP BY GROUPING SETS ((sp.service_id), ())
    ),
    queues AS (
        SELECT q.service_id AS sid, sum(q.calls_waiting) AS waiting, max(q.longest_wait_seconds) AS longest
        FROM realtime_queues q
        WHERE q.tenant_id = p_tenant
        GROUP BY GROUPING SETS ((q.service_id), ())
    ),
    all_values (sid, name, value) AS (
        SELECT c.sid, 'service_level_pct', 100.0 * c.awt / NULLIF(c.offered, 0) FROM contact c
        UNION ALL SELECT c.sid, 'abandon_rate_pct', 100.0 * c.abandoned / NULLIF(c.offered, 0) FROM contact c
        UNION ALL SELECT c.sid, 'acd_rate_pct', 100.0 * c.answered / NULLIF(c.offered, 0) FROM contact c
        UNION ALL SELECT c.sid, 'avg_speed_answer_seconds', c.wait::NUMERIC / NULLIF(c.answered, 0) FROM contact c
        UNION ALL SELECT c.sid, 'aht_seconds', c.handle::NUMERIC / NULLIF(c.answered, 0) FROM contact c
        UNION ALL SELECT x.sid, 'occupancy_pct', 100.0 * x.handling / NULLIF(x.available, 0) FROM activity x
        UNION ALL SELECT x.sid, 'adherence_pct', 100.0 * x.adherent / NULLIF(x.scheduled, 0) FROM activity x
        UNION ALL SELECT e.sid, 'forecast_error_pct', 100.0 * e.abs_err / NULLIF(e.actual, 0) FROM fcmp e
        UNION ALL SELECT e.sid, 'load_deviation_pct', 100.0 * abs(e.actual - e.fc) / NULLIF(e.fc, 0) FROM fcmp e
        UNION ALL SELECT s.sid, 'operators_online_pct', 100.0 * COALESCE(o.logged_in, 0) / NULLIF(s.n, 0)
                  FROM scheduled s LEFT JOIN online o ON o.sid IS NOT DISTINCT FROM s.sid
        UNION ALL SELECT r.sid, 'agents_short', (r.n - COALESCE(o.working, 0))::NUMERIC
                  FROM required r LEFT JOIN online o ON o.sid IS NOT DISTINCT FROM r.sid
        UNION ALL SELECT q.sid, 'calls_waiting', q.waiting::NUMERIC FROM queues q
        UNION ALL SELECT q.sid, 'longest_wait_seconds', q.longest::NUMERIC FROM queues q
    )
    SELECT v.sid, v.name::VARCHAR, round(v.value, 2)
    FROM all_values v
    WHERE v.value IS NOT NULL
      AND (v.sid IS NULL OR EXISTS (SELECT 1 FROM services s WHERE s.service_id = v.sid AND s.tenant_id = p_tenant))
    ORDER BY v.sid NULLS FIRST, v.name;
END;
$$;

-- The six key realtime metrics of the operational dashboard, for the UTC day
-- so far, per service and for the centre (service_id NULL):
-- operators_online_pct, load_deviation_pct, agents_short (operator
-- requirement), service_level_pct (80/20 by each service's own threshold),
-- acd_rate_pct and aht_seconds, each with its traffic light (NULL without a
-- threshold row), the previous value (the latest operational_metrics
-- snapshot) and the trend against it ('up', 'down', 'flat'; NULL without a
-- snapshot).
CREATE OR REPLACE FUNCTION wfm_realtime_metrics(p_tenant INTEGER)
RETURNS TABLE (service_id INTEGER, service_name VARCHAR, metric_name VARCHAR, display_name VARCHAR,
               unit VARCHAR, metric_value NUMERIC, status TEXT, previous_value NUMERIC, trend TEXT,
               update_frequency_seconds INTEGER, measured_at TIMESTAMPTZ)
LANGUAGE plpgsql
STABLE
AS $$
BEGIN
    RETURN QUERY
    SELECT m.service_id, s.service_name, m.metric_name, d.display_name, d.unit, m.metric_value,
           wfm_traffic_light(m.metric_name, m.metric_value, p_tenant, m.service_id),
           prev.metric_value,
           CASE WHEN prev.metric_value IS NULL THEN NULL
                WHEN m.metric_value > prev.metric_value THEN 'up'
                WHEN m.metric_value < prev.metric_value THEN 'down'
                ELSE 'flat' END,
           d.update_frequency_seconds, now()
    FROM wfm_current_metrics(p_tenant, date_trunc('day', now(), 'UTC'), now()) m
    JOIN wfm_metric_definitions d ON d.metric_name = m.metric_name
    LEFT JOIN services s ON s.service_id = m.service_id
    LEFT JOIN LATERAL (
        SELECT om.metric_value
        FROM operational_metrics om
        WHERE om.tenant_id = p_tenant AND om.metric_name = m.metric_name
          AND om.service_id IS NOT DISTINCT FROM m.service_id AND om.measured_at <= now()
        ORDER BY om.measured_at DESC
        LIMIT 1
    ) prev ON TRUE
    WHERE m.metric_name IN ('operators_online_pct', 'load_deviation_pct', 'agents_short', 'service_level_pct',
                            'acd_rate_pct', 'aht_seconds')
    ORDER BY m.service_id NULLS FIRST, array_position(ARRAY['operators_online_pct', 'load_deviation_pct',
                                                             'agents_short', 'service_level_pct', 'acd_rate_pct',
                                                             'aht_seconds']::VARCHAR[], m.metric_name);
END;
$$;

-- Live state of the tenant's queues and agents (jsonb): as_of; queues (one
-- per active service: calls waiting, longest wait, today's offered /
-- answered / abandoned, service_level_today_pct, agents by state, the
-- service-level and longest-wait lights, updated_at); agents (count per
-- status); totals (calls_waiting, longest_wait_seconds, agents_logged_in,
-- agents_available).
CREATE OR REPLACE FUNCTION wfm_realtime_status(p_tenant INTEGER)
RETURNS JSONB
LANGUAGE sql
STABLE
AS $$
    WITH ag AS (
        SELECT COALESCE(ra.current_service_id, a.primary_service_id) AS sid, ra.status
        FROM realtime_agents ra
        JOIN agents a ON a.agent_id = ra.agent_id
        WHERE ra.tenant_id = p_tenant
    ),
    q AS (
        SELECT s.service_id, s.service_code, s.service_name, s.channel,
               COALESCE(rq.calls_waiting, 0) AS calls_waiting,
               COALESCE(rq.longest_wait_seconds, 0) AS longest_wait_seconds,
               COALESCE(rq.offered_today, 0) AS offered_today,
               COALESCE(rq.answered_today, 0) AS answered_today,
               COALESCE(rq.abandoned_today, 0) AS abandoned_today,
               round(100.0 * LEAST(rq.answered_within_threshold_today, rq.offered_today)
                     / NULLIF(rq.offered_today, 0), 2) AS service_level_today_pct,
               rq.updated_at
        FROM services s
        LEFT JOIN realtime_queues rq ON rq.service_id = s.service_id
        WHERE s.tenant_id = p_tenant AND s.is_active
    )
    SELECT jsonb_build_object(
        'as_of', now(),
        'queues', COALESCE((
            SELECT jsonb_agg(jsonb_build_object(
                       'service_id', q.service_id, 'service_code', q.service_code,
                       'service_name', q.service_name, 'channel', q.channel,
                       'calls_waiting', q.calls_waiting, 'longest_wait_seconds', q.longest_wait_seconds,
                       'offered_today', q.offered_today, 'answered_today', q.answered_today,
                       'abandoned_today', q.abandoned_today,
                       'service_level_today_pct', q.service_level_today_pct,
                       'service_level_status',
                           wfm_traffic_light('service_level_pct', q.service_level_today_pct, p_tenant, q.service_id),
                       'longest_wait_status',
                           wfm_traffic_light('longest_wait_seconds', q.longest_wait_seconds, p_tenant, q.service_id),
                       'agents', (SELECT jsonb_build_object(
                                      'available', count(*) FILTER (WHERE ag.status = 'available'),
                                      'on_call', count(*) FILTER (WHERE ag.status = 'on_call'),
                                      'wrap_up', count(*) FILTER (WHERE ag.status = 'wrap_up'),
                                      'not_ready', count(*) FILTER (WHERE ag.status IN ('break', 'lunch', 'training',
                                                                                        'meeting', 'not_ready')),
                                      'logged_out', count(*) FILTER (WHERE ag.status = 'logged_out'))
                                  FROM ag WHERE ag.sid = q.service_id),
                       'updated_at', q.updated_at)
                   ORDER BY q.service_id)
            FROM q), '[]'::JSONB),
        'agents', COALESCE((SELECT jsonb_object_agg(x.status, x.n)
                            FROM (SELECT ag.status, count(*) AS n FROM ag GROUP BY ag.status) x), '{}'::JSONB),
        'totals', jsonb_build_object(
            'calls_waiting', (SELECT COALESCE(sum(q.calls_waiting), 0) FROM q),
            'longest_wait_seconds', (SELECT COALESCE(max(q.longest_wait_seconds), 0) FROM q),
            'agents_logged_in', (SELECT count(*) FROM ag WHERE ag.status <> 'logged_out'),
            'agents_available', (SELECT count(*) FROM ag WHERE ag.status = 'available')))
$$;

-- The executive view over [p_from, p_to) (default: the UTC day so far), as
-- jsonb: period; totals (offered, answered, abandoned, service_level_pct,
-- abandon_rate_pct, aht_seconds, asa_seconds); services (per active service:
-- its figures, target_pct and light, agents working now, required now by the
-- staffing plan, and balance = working - required); alerts (open red and
-- yellow, unacknowledged); benchmark (best and worst service by service
-- level); reallocation (moves of surplus agents to the services short of
-- agents now, largest first: from_service_id, to_service_id, agents).
-- Errors: WFM_INVALID_DATE_RANGE.
CREATE OR REPLACE FUNCTION wfm_executive_dashboard(p_tenant INTEGER, p_from TIMESTAMPTZ DEFAULT NULL,
                                                   p_to TIMESTAMPTZ DEFAULT NULL)
RETURNS JSONB
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    v_from   TIMESTAMPTZ := COALESCE(p_from, date_trunc('day', now(), 'UTC'));
    v_to     TIMESTAMPTZ := COALESCE(p_to, now());
    v_result JSONB;
BEGIN
    PERFORM wfm_check_range(v_from, v_to, 400);
    WITH per_service AS (
        SELECT s.service_id, s.service_code, s.service_name, s.channel, s.sl_target_pct,
               COALESCE(sum(cs.offered), 0) AS offered, COALESCE(sum(cs.answered), 0) AS answered,
               COALESCE(sum(cs.abandoned), 0) AS abandoned,
               sum(LEAST(cs.answered_within_threshold, cs.offered)) AS awt,
               sum(cs.talk_seconds + cs.hold_seconds + cs.wrap_seconds) AS handle,
               sum(cs.wait_seconds) AS wait
        FROM services s
        LEFT JOIN contact_statistics cs
               ON cs.service_id = s.service_id AND cs.tenant_id = p_tenant
              AND cs.interval_start >= v_from AND cs.interval_start < v_to
        WHERE s.tenant_id = p_tenant AND s.is_active
        GROUP BY s.service_id
    ),
    staffing AS (
        SELECT ps.service_id,
               (SELECT count(*) FROM realtime_agents ra JOIN agents a ON a.agent_id = ra.agent_id
                WHERE ra.tenant_id = p_tenant AND ra.status IN ('available', 'on_call', 'wrap_up')
                  AND COALESCE(ra.current_service_id, a.primary_service_id) = ps.service_id) AS working,
               (SELECT sum(sp.required_agents) FROM staffing_plans sp
                WHERE sp.service_id = ps.service_id AND sp.tenant_id = p_tenant
                  AND sp.interval_start <= now() AND sp.interval_end > now()) AS required
        FROM per_service ps
    ),
    svc AS (
        SELECT ps.*, st.working, st.required, st.working - st.required AS balance,
               round(100.0 * ps.awt / NULLIF(ps.offered, 0), 2) AS sl_pct
        FROM per_service ps JOIN staffing st ON st.service_id = ps.service_id
    ),
    surplus AS (
        SELECT svc.service_id, sum(svc.balance) OVER w - svc.balance AS lo, sum(svc.balance) OVER w AS hi
        FROM svc WHERE svc.balance > 0
        WINDOW w AS (ORDER BY svc.balance DESC, svc.service_id)
    ),
    deficit AS (
        SELECT svc.service_id, sum(-svc.balance) OVER w + svc.balance AS lo, sum(-svc.balance) OVER w AS hi
        FROM svc WHERE svc.balance < 0
        WINDOW w AS (ORDER BY svc.balance, svc.service_id)
    )
    SELECT jsonb_build_object(
        'period', jsonb_build_object('from', v_from, 'to', v_to),
        'totals', (SELECT jsonb_build_object(
                       'offered', sum(svc.offered), 'answered', sum(svc.answered), 'abandoned', sum(svc.abandoned),
                       'service_level_pct', round(100.0 * sum(svc.awt) / NULLIF(sum(svc.offered), 0), 2),
                       'abandon_rate_pct', round(100.0 * sum(svc.abandoned) / NULLIF(sum(svc.offered), 0), 2),
                       'aht_seconds', round(sum(svc.handle)::NUMERIC / NULLIF(sum(svc.answered), 0), 2),
                       'asa_seconds', round(sum(svc.wait)::NUMERIC / NULLIF(sum(svc.answered), 0), 2))
                   FROM svc),
        'services', COALESCE((SELECT jsonb_agg(jsonb_build_object(
                                  'service_id', svc.service_id, 'service_code', svc.service_code,
                                  'service_name', svc.service_name, 'channel', svc.channel,
                                  'offered', svc.offered, 'answered', svc.answered, 'abandoned', svc.abandoned,
                                  'service_level_pct', svc.sl_pct, 'target_pct', svc.sl_target_pct,
                                  'status', wfm_traffic_light('service_level_pct', svc.sl_pct, p_tenant,
                                                              svc.service_id),
                                  'agents_working', svc.working, 'agents_required', svc.required,
                                  'balance', svc.balance)
                              ORDER BY svc.service_id) FROM svc), '[]'::JSONB),
        'alerts', (SELECT jsonb_build_object(
                       'open_red', count(*) FILTER (WHERE ra.level = 'red'),
                       'open_yellow', count(*) FILTER (WHERE ra.level = 'yellow'),
                       'unacknowledged', count(*) FILTER (WHERE ra.acknowledged_at IS NULL))
                   FROM realtime_alerts ra WHERE ra.tenant_id = p_tenant AND ra.resolved_at IS NULL),
        'benchmark', jsonb_build_object(
            'best_service_id', (SELECT svc.service_id FROM svc WHERE svc.sl_pct IS NOT NULL
                                ORDER BY svc.sl_pct DESC, svc.service_id LIMIT 1),
            'worst_service_id', (SELECT svc.service_id FROM svc WHERE svc.sl_pct IS NOT NULL
                                 ORDER BY svc.sl_pct, svc.service_id LIMIT 1),
            'services_meeting_target', (SELECT count(*) FROM svc WHERE svc.sl_pct >= svc.sl_target_pct),
            'services_with_calls', (SELECT count(*) FROM svc WHERE svc.offered > 0)),
        'reallocation', COALESCE((SELECT jsonb_agg(jsonb_build_object(
                                      'from_service_id', s.service_id, 'to_service_id', d.service_id,
                                      'agents', LEAST(s.hi, d.hi) - GREATEST(s.lo, d.lo))
                                  ORDER BY LEAST(s.hi, d.hi) - GREATEST(s.lo, d.lo) DESC, s.service_id,
                                           d.service_id)
                                  FROM surplus s JOIN deficit d ON s.lo < d.hi AND d.lo < s.hi), '[]'::JSONB))
      INTO v_result;
    RETURN v_result;
END;
$$;

-- The optimiser's rules evaluated against the tenant's current metrics
-- (wfm_current_metrics over [p_from, p_to), per service and for the centre)
-- and the database's own (db_* metrics, service_id NULL): one row per rule
-- that fires, most urgent first. Errors: WFM_INVALID_DATE_RANGE.
CREATE OR REPLACE FUNCTION wfm_optimization_suggestions(p_tenant INTEGER,
                                                        p_from TIMESTAMPTZ DEFAULT now() - INTERVAL '7 days',
                                                        p_to TIMESTAMPTZ DEFAULT now())
RETURNS TABLE (priority SMALLINT, rule_code VARCHAR, category VARCHAR, service_id INTEGER, service_name VARCHAR,
               metric_name VARCHAR, metric_value NUMERIC, comparison VARCHAR, threshold_value NUMERIC,
               suggestion TEXT, impact TEXT, cost_impact VARCHAR, labor_compliance_note TEXT)
LANGUAGE plpgsql
STABLE
AS $$
BEGIN
    RETURN QUERY
    WITH m AS (
        SELECT cm.service_id, cm.metric_name, cm.metric_value FROM wfm_current_metrics(p_tenant, p_from, p_to) cm
        UNION ALL
        SELECT NULL, dm.metric_name, dm.metric_value FROM wfm_database_metrics() dm
    )
    SELECT r.priority, r.rule_code, r.category, m.service_id, s.service_name, m.metric_name, m.metric_value,
           r.comparison, r.threshold_value, r.suggestion, r.impact, r.cost_impact, r.labor_compliance_note
    FROM m
    JOIN optimization_rules r ON r.metric_name = m.metric_name AND r.is_active
    LEFT JOIN services s ON s.service_id = m.service_id
    WHERE wfm_rule_matches(r.comparison, m.metric_value, r.threshold_value)
    ORDER BY r.priority, m.service_id NULLS FIRST, r.rule_code;
END;
$$;

-- ---------------------------------------------------------------------------
-- Schedules: coverage against the staffing plan, gaps, conflicts, optimisation
-- ---------------------------------------------------------------------------

-- Every staffing-plan interval of the tenant starting in [p_from, p_to) (at
-- most 92 days; optionally one service) with the agents scheduled on it:
-- the sum over the service's shifts that are not cancelled of the share of
-- the interval each covers, less the breaks inside it (a shift from 08:05
-- covers 2/3 of 08:00-08:15), rounded to 2 decimals; gap = required -
-- scheduled (negative = surplus). Errors: WFM_INVALID_DATE_RANGE.
CREATE OR REPLACE FUNCTION wfm_schedule_coverage(p_tenant INTEGER, p_from TIMESTAMPTZ, p_to TIMESTAMPTZ,
                                                 p_service_id INTEGER DEFAULT NULL)
RETURNS TABLE (service_id INTEGER, interval_start TIMESTAMPTZ, interval_end TIMESTAMPTZ, required_agents INTEGER,
               scheduled_agents NUMERIC, gap NUMERIC)
LANGUAGE plpgsql
STABLE
AS $$
BEGIN
    PERFORM wfm_check_range(p_from, p_to, 92);
    RETURN QUERY
    SELECT p.service_id, p.interval_start, p.interval_end, p.required_agents,
           round(COALESCE(sum(GREATEST(cov.secs, 0)), 0)::NUMERIC
                 / extract(epoch FROM p.interval_end - p.interval_start), 2) AS scheduled,
           p.required_agents - round(COALESCE(sum(GREATEST(cov.secs, 0)), 0)::NUMERIC
                                     / extract(epoch FROM p.interval_end - p.interval_start), 2)
    FROM staffing_plans p
    LEFT JOIN LATERAL (
        SELECT extract(epoch FROM LEAST(w.shift_end, p.interval_end) - GREATEST(w.shift_start, p.interval_start))
               - COALESCE((
                   SELECT sum(extract(epoch FROM LEAST(b.break_end, w.shift_end, p.interval_end)
                                               - GREATEST(b.break_start, w.shift_start, p.interval_start)))
                   FROM break_schedules b
                   WHERE b.schedule_id = w.schedule_id
                     AND b.break_start < LEAST(w.shift_end, p.interval_end)
                     AND b.break_end > GREATEST(w.shift_start, p.interval_start)), 0) AS secs
        FROM work_schedules w
        WHERE w.service_id = p.service_id AND w.tenant_id = p_tenant AND w.status <> 'cancelled'
          AND w.shift_start < p.interval_end AND w.shift_end > p.interval_start
    ) cov ON TRUE
    WHERE p.tenant_id = p_tenant
      AND p.interval_start >= p_from AND p.interval_start < p_to
      AND (p_service_id IS NULL OR p.service_id = p_service_id)
    GROUP BY p.service_id, p.interval_start, p.interval_end, p.required_agents
    ORDER BY p.service_id, p.interval_start;
END;
$$;

-- The staffing-plan intervals where fewer agents are scheduled than required
-- (gap > 0), with the gap in agents. Errors: WFM_INVALID_DATE_RANGE.
CREATE OR REPLACE FUNCTION wfm_schedule_gaps(p_tenant INTEGER, p_from TIMESTAMPTZ, p_to TIMESTAMPTZ,
                                             p_service_id INTEGER DEFAULT NULL)
RETURNS TABLE (service_id INTEGER, interval_start TIMESTAMPTZ, interval_end TIMESTAMPTZ, required_agents INTEGER,
               scheduled_agents NUMERIC, gap NUMERIC)
LANGUAGE sql
STABLE
AS $$
    SELECT c.service_id, c.interval_start, c.interval_end, c.required_agents, c.scheduled_agents, c.gap
    FROM wfm_schedule_coverage(p_tenant, p_from, p_to, p_service_id) c
    WHERE c.gap > 0
    ORDER BY c.service_id, c.interval_start
$$;

-- Scheduling conflicts of the tenant's agents among the shifts (not
-- cancelled) that touch [p_from, p_to) (at most 92 days):
--   'overlap'     two shifts of one agent overlap (conflict_start/end = the
--                 overlap; minutes = its length);
--   'short_rest'  the rest between one shift's end and the agent's next
--                 shift is shorter than p_min_rest_hours (default 11 h, the
--                 daily rest of labour law; minutes = the rest there was).
-- Errors: WFM_INVALID_DATE_RANGE, WFM_INVALID_PARAMETER.
CREATE OR REPLACE FUNCTION wfm_schedule_conflicts(p_tenant INTEGER, p_from TIMESTAMPTZ, p_to TIMESTAMPTZ,
                                                  p_min_rest_hours NUMERIC DEFAULT 11)
RETURNS TABLE (agent_id INTEGER, full_name VARCHAR, conflict_type TEXT, schedule_id BIGINT,
               other_schedule_id BIGINT, conflict_start TIMESTAMPTZ, conflict_end TIMESTAMPTZ, minutes NUMERIC)
LANGUAGE plpgsql
STABLE
AS $$
BEGIN
    PERFORM wfm_check_range(p_from, p_to, 92);
    IF p_min_rest_hours IS NULL OR p_min_rest_hours < 0 OR p_min_rest_hours > 24 THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER' USING DETAIL = 'min_rest_hours must be 0 to 24';
    END IF;
    RETURN QUERY
    WITH shifts AS (
        SELECT w.schedule_id, w.agent_id, w.shift_start, w.shift_end
        FROM work_schedules w
        WHERE w.tenant_id = p_tenant AND w.status <> 'cancelled'
          AND w.shift_start < p_to AND w.shift_end > p_from
    ),
    overlapping AS (
        SELECT a.agent_id, 'overlap'::TEXT AS kind, a.schedule_id, b.schedule_id AS other,
               GREATEST(a.shift_start, b.shift_start) AS c_start, LEAST(a.shift_end, b.shift_end) AS c_end
        FROM shifts a
        JOIN shifts b ON b.agent_id = a.agent_id AND b.schedule_id > a.schedule_id
                     AND b.shift_start < a.shift_end AND a.shift_start < b.shift_end
    ),
    ordered AS (
        SELECT s.agent_id, s.schedule_id, s.shift_end,
               lead(s.schedule_id) OVER w AS next_id, lead(s.shift_start) OVER w AS next_start
        FROM shifts s
        WINDOW w AS (PARTITION BY s.agent_id ORDER BY s.shift_start, s.schedule_id)
    ),
    rests AS (
        SELECT o.agent_id, 'short_rest'::TEXT AS kind, o.schedule_id, o.next_id AS other,
               o.shift_end AS c_start, o.next_start AS c_end
        FROM ordered o
        WHERE o.next_id IS NOT NULL AND o.next_start >= o.shift_end
          AND o.next_start - o.shift_end < make_interval(secs => p_min_rest_hours * 3600)
    )
    SELECT x.agent_id, a.full_name, x.kind, x.schedule_id, x.other, x.c_start, x.c_end,
           round(extract(epoch FROM x.c_end - x.c_start) / 60, 2)
    FROM (SELECT * FROM overlapping UNION ALL SELECT * FROM rests) x
    JOIN agents a ON a.agent_id = x.agent_id
    ORDER BY x.agent_id, x.c_start, x.kind;
END;
$$;

-- Optimise the schedule of [p_from, p_to) (at most 92 days; optionally one
-- service): measure coverage against the staffing plan, list the gaps and
-- the conflicts, and suggest extra shifts: for each service and UTC day with
-- gaps, the active schedule template (working that weekday) whose shift
-- covers the most gap agent-hours, how many extra shifts of it close the
-- largest gap it covers, and candidate agents of the service (active, with
-- no shift that day). The run is recorded in schedule_optimization_runs.
-- Returns jsonb: run_id, period_start, period_end, service_id,
-- intervals_checked, gap_intervals, surplus_intervals (at least one agent
-- over), conflict_count, coverage_pct (required agent-time covered),
-- shortfall_agent_hours, gaps, conflicts, suggestions.
-- Errors: WFM_INVALID_DATE_RANGE, WFM_SERVICE_NOT_FOUND.
CREATE OR REPLACE FUNCTION wfm_optimize_schedule(p_tenant INTEGER, p_from TIMESTAMPTZ, p_to TIMESTAMPTZ,
                                                 p_service_id INTEGER DEFAULT NULL,
                                                 p_requested_by TEXT DEFAULT NULL)
RETURNS JSONB
LANGUAGE plpgsql
AS $$
DECLARE
    v_summary     JSONB;
    v_gaps        JSONB;
    v_conflicts   JSONB;
    v_suggestions JSONB;
    v_run_id      BIGINT;
BEGIN
    PERFORM wfm_check_range(p_from, p_to, 92);
    IF p_service_id IS NOT NULL THEN
        PERFORM wfm_assert_service(p_tenant, p_service_id);
    END IF;
    WITH cov AS MATERIALIZED (
        SELECT * FROM wfm_schedule_coverage(p_tenant, p_from, p_to, p_service_id)
    ),
    gap_days AS (
        SELECT DISTINCT c.service_id, (c.interval_start AT TIME ZONE 'UTC')::DATE AS day
        FROM cov c
        WHERE c.gap > 0
    ),
    options AS (
        SELECT g.service_id, g.day, t.template_id, t.template_name,
               (g.day + t.shift_start) AT TIME ZONE 'UTC' AS shift_start,
               (g.day + t.shift_start) AT TIME ZONE 'UTC' + make_interval(mins => t.shift_minutes) AS shift_end
        FROM gap_days g
        JOIN schedule_templates t
          ON t.tenant_id = p_tenant AND t.is_active
         AND extract(isodow FROM g.day)::SMALLINT = ANY (t.days_of_week)
    ),
    scored AS (
        SELECT o.service_id, o.day, o.template_id, o.template_name, o.shift_start, o.shift_end,
               sum(c.gap * extract(epoch FROM c.interval_end - c.interval_start)) / 3600 AS covered_hours,
               ceil(max(c.gap))::INTEGER AS extra_shifts
        FROM options o
        JOIN cov c
          ON c.service_id = o.service_id AND c.gap > 0
         AND c.interval_start >= o.shift_start AND c.interval_end <= o.shift_end
        GROUP BY o.service_id, o.day, o.template_id, o.template_name, o.shift_start, o.shift_end
    ),
    best AS (
        SELECT DISTINCT ON (s.service_id, s.day) s.*
        FROM scored s
        ORDER BY s.service_id, s.day, s.covered_hours DESC, s.template_id
    )
    SELECT
        (SELECT jsonb_build_object(
                    'intervals_checked', count(*),
                    'gap_intervals', count(*) FILTER (WHERE c.gap > 0),
                    'surplus_intervals', count(*) FILTER (WHERE c.gap <= -1),
                    'coverage_pct', round(100 * sum(LEAST(c.scheduled_agents, c.required_agents)
                                                    * extract(epoch FROM c.interval_end - c.interval_start))
                                          / NULLIF(sum(c.required_agents
                                                       * extract(epoch FROM c.interval_end - c.interval_start)),
                                                   0), 2),
                    'shortfall_agent_hours',
                        COALESCE(round(sum(GREATEST(c.gap, 0) * extract(epoch FROM c.interval_end - c.interval_start))
                                       / 3600, 2), 0))
         FROM cov c),
        (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                    'service_id', c.service_id, 'interval_start', c.interval_start,
                    'interval_end', c.interval_end, 'required_agents', c.required_agents,
                    'scheduled_agents', c.scheduled_agents, 'gap', c.gap)
                    ORDER BY c.service_id, c.interval_start), '[]'::JSONB)
         FROM cov c WHERE c.gap > 0),
        (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                    'service_id', b.service_id, 'date', b.day, 'template_id', b.template_id,
                    'template_name', b.template_name, 'shift_start', b.shift_start, 'shift_end', b.shift_end,
                    'extra_shifts', b.extra_shifts, 'covered_gap_agent_hours', round(b.covered_hours, 2),
                    'candidate_agent_ids', COALESCE((
                        SELECT jsonb_agg(c.agent_id ORDER BY c.agent_id)
                        FROM (SELECT a.agent_id
                              FROM agents a
                              WHERE a.tenant_id = p_tenant AND a.is_active AND a.primary_service_id = b.service_id
                                AND NOT EXISTS (
                                    SELECT 1 FROM work_schedules w
                                    WHERE w.agent_id = a.agent_id AND w.status <> 'cancelled'
                                      AND w.shift_start < (b.day + 1)::TIMESTAMP AT TIME ZONE 'UTC'
                                      AND w.shift_end > b.day::TIMESTAMP AT TIME ZONE 'UTC')
                              ORDER BY a.agent_id
                              LIMIT b.extra_shifts) c), '[]'::JSONB))
                    ORDER BY b.service_id, b.day), '[]'::JSONB)
         FROM best b)
      INTO v_summary, v_gaps, v_suggestions;

    SELECT COALESCE(jsonb_agg(to_jsonb(x.*) ORDER BY x.agent_id, x.conflict_start, x.conflict_type), '[]'::JSONB)
      INTO v_conflicts
    FROM wfm_schedule_conflicts(p_tenant, p_from, p_to) x
    WHERE p_service_id IS NULL
       OR EXISTS (SELECT 1 FROM work_schedules w
                  WHERE w.schedule_id IN (x.schedule_id, x.other_schedule_id) AND w.service_id = p_service_id);

    INSERT INTO schedule_optimization_runs (tenant_id, service_id, period_start, period_end, intervals_checked,
                                            gap_intervals, surplus_intervals, conflict_count, coverage_pct,
                                            shortfall_agent_hours, result, requested_by)
    VALUES (p_tenant, p_service_id, p_from, p_to, (v_summary ->> 'intervals_checked')::INTEGER,
            (v_summary ->> 'gap_intervals')::INTEGER, (v_summary ->> 'surplus_intervals')::INTEGER,
            jsonb_array_length(v_conflicts), (v_summary ->> 'coverage_pct')::NUMERIC,
            (v_summary ->> 'shortfall_agent_hours')::NUMERIC,
            jsonb_build_object('gaps', v_gaps, 'conflicts', v_conflicts, 'suggestions', v_suggestions),
            p_requested_by)
    RETURNING run_id INTO v_run_id;

    RETURN jsonb_build_object('run_id', v_run_id, 'period_start', p_from, 'period_end', p_to,
                              'service_id', p_service_id)
           || v_summary
           || jsonb_build_object('conflict_count', jsonb_array_length(v_conflicts), 'gaps', v_gaps,
                                 'conflicts', v_conflicts, 'suggestions', v_suggestions);
END;
$$;

-- ---------------------------------------------------------------------------
-- Integration: health, synchronisation jobs
-- ---------------------------------------------------------------------------

-- Health of the tenant's integrations (jsonb): status ('healthy', 'degraded',
-- 'down'; 'degraded' when any active component is not healthy, 'down' when
-- none is healthy), checked_at, components (per connection: its status,
-- last sync and success, seconds_since_success, syncs_24h, failed_24h,
-- success_rate_24h_pct, avg_duration_seconds_24h, records_24h, queued_jobs),
-- and data_quality (the latest data-quality run: run_id, checked_at, checks,
-- failed). A connection is 'inactive' when switched off; 'down' without a
-- success or with none for 3 sync intervals; 'degraded' when its last sync
-- failed, a success is older than one sync interval plus the 30 s sync
-- target, or more than 20 % of the last 24 h syncs failed; else 'healthy'.
CREATE OR REPLACE FUNCTION wfm_integration_health(p_tenant INTEGER)
RETURNS JSONB
LANGUAGE sql
STABLE
AS $$
    WITH c AS (
        SELECT ic.*,
               (SELECT count(*) FROM integration_sync_logs l
                WHERE l.connection_id = ic.connection_id AND l.started_at > now() - INTERVAL '24 hours') AS syncs,
               (SELECT count(*) FROM integration_sync_logs l
                WHERE l.connection_id = ic.connection_id AND l.started_at > now() - INTERVAL '24 hours'
                  AND l.status = 'failed') AS failed,
               (SELECT round(avg(extract(epoch FROM l.finished_at - l.started_at))::NUMERIC, 2)
                FROM integration_sync_logs l
                WHERE l.connection_id = ic.connection_id AND l.started_at > now() - INTERVAL '24 hours'
                  AND l.finished_at IS NOT NULL) AS avg_duration,
               (SELECT COALESCE(sum(l.records_processed), 0) FROM integration_sync_logs l
                WHERE l.connection_id = ic.connection_id AND l.started_at > now() - INTERVAL '24 hours') AS records,
               (SELECT l.status FROM integration_sync_logs l
                WHERE l.connection_id = ic.connection_id ORDER BY l.started_at DESC LIMIT 1) AS last_status,
               (SELECT count(*) FROM sync_jobs j
                WHERE j.connection_id = ic.connection_id AND j.status IN ('queued', 'running')) AS queued
        FROM integration_connections ic
        WHERE ic.tenant_id = p_tenant
    ),
    s AS (
        SELECT c.*,
               CASE
                   WHEN NOT c.is_active THEN 'inactive'
                   WHEN c.last_success_at IS NULL
                        OR c.last_success_at < now() - 3 * make_interval(secs => c.sync_interval_seconds) THEN 'down'
                   WHEN c.last_status = 'failed'
                        OR c.last_success_at < now() - make_interval(secs => c.sync_interval_seconds + 30)
                        OR c.failed > 0.2 * c.syncs THEN 'degraded'
                   ELSE 'healthy'
               END AS health
        FROM c
    ),
    dq AS (
        SELECT r.run_id, max(r.checked_at) AS checked_at, count(*) AS checks, count(*) FILTER (WHERE NOT r.passed) AS failed
        FROM data_quality_results r
        WHERE r.tenant_id = p_tenant
          AND r.run_id = (SELECT r2.run_id FROM data_quality_results r2 WHERE r2.tenant_id = p_tenant
                          ORDER BY r2.checked_at DESC, r2.result_id DESC LIMIT 1)
        GROUP BY r.run_id
    )
    SELECT jsonb_build_object(
        'status', CASE
                      WHEN NOT EXISTS (SELECT 1 FROM s WHERE s.health <> 'inactive') THEN 'healthy'
                      WHEN NOT EXISTS (SELECT 1 FROM s WHERE s.health = 'healthy') THEN 'down'
                      WHEN EXISTS (SELECT 1 FROM s WHERE s.health IN ('down', 'degraded')) THEN 'degraded'
                      ELSE 'healthy' END,
        'checked_at', now(),
        'components', COALESCE((SELECT jsonb_agg(jsonb_build_object(
                           'connection_id', s.connection_id, 'connection_name', s.connection_name,
                           'system_type', s.system_type, 'status', s.health, 'is_active', s.is_active,
                           'last_sync_at', s.last_sync_at, 'last_success_at', s.last_success_at,
                           'last_sync_status', s.last_status,
                           'seconds_since_success', round(extract(epoch FROM now() - s.last_success_at)),
                           'sync_interval_seconds', s.sync_interval_seconds,
                           'syncs_24h', s.syncs, 'failed_24h', s.failed,
                           'success_rate_24h_pct', round(100.0 * (s.syncs - s.failed) / NULLIF(s.syncs, 0), 2),
                           'avg_duration_seconds_24h', s.avg_duration, 'records_24h', s.records,
                           'queued_jobs', s.queued)
                           ORDER BY s.connection_id) FROM s), '[]'::JSONB),
        'data_quality', (SELECT jsonb_build_object('run_id', dq.run_id, 'checked_at', dq.checked_at,
                                                   'checks', dq.checks, 'failed', dq.failed) FROM dq))
$$;

-- Queue a synchronisation with an external system: a sync_jobs row (status
-- 'queued', target 30 s) and its 'sync_requested' audit row in
-- integration_logs, both under a new correlation id. p_entities names what
-- to sync (default: the connection's settings.entities, else everything).
-- Returns jsonb: job_id, correlation_id, connection_id, connection_name,
-- system_type, sync_type, entities, priority, status, target_seconds,
-- requested_at, log_id. Errors: WFM_CONNECTION_NOT_FOUND,
-- WFM_CONNECTION_INACTIVE, WFM_SYNC_IN_PROGRESS (a job of the connection is
-- queued or running; the detail names it), WFM_INVALID_PARAMETER.
CREATE OR REPLACE FUNCTION wfm_trigger_sync(p_tenant INTEGER, p_connection_id INTEGER,
                                            p_sync_type TEXT DEFAULT 'incremental',
                                            p_entities TEXT[] DEFAULT NULL,
                                            p_priority TEXT DEFAULT 'normal',
                                            p_requested_by TEXT DEFAULT NULL)
RETURNS JSONB
LANGUAGE plpgsql
AS $$
DECLARE
    c          integration_connections%ROWTYPE;
    v_job      sync_jobs%ROWTYPE;
    v_busy     UUID;
    v_entities TEXT[];
    v_log_id   BIGINT;
BEGIN
    IF COALESCE(p_sync_type, 'incremental') NOT IN ('incremental', 'full') THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER' USING DETAIL = 'sync_type must be incremental or full';
    END IF;
    IF COALESCE(p_priority, 'normal') NOT IN ('low', 'normal', 'high') THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER' USING DETAIL = 'priority must be low, normal or high';
    END IF;
    SELECT * INTO c FROM integration_connections
    WHERE connection_id = p_connection_id AND tenant_id = p_tenant
    FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'WFM_CONNECTION_NOT_FOUND'
            USING DETAIL = format('Integration connection %s not found', p_connection_id);
    END IF;
    IF NOT c.is_active THEN
        RAISE EXCEPTION 'WFM_CONNECTION_INACTIVE'
            USING DETAIL = format('Integration connection %s (%s) is switched off', c.connection_id,
                                  c.connection_name);
    END IF;
    SELECT j.job_id INTO v_busy FROM sync_jobs j
    WHERE j.connection_id = c.connection_id AND j.status IN ('queued', 'running')
    LIMIT 1;
    IF v_busy IS NOT NULL THEN
        RAISE EXCEPTION 'WFM_SYNC_IN_PROGRESS'
            USING DETAIL = format('Sync job %s of connection %s is still queued or running', v_busy,
                                  c.connection_id);
    END IF;
    v_entities := COALESCE(p_entities,
                           ARRAY(SELECT jsonb_array_elements_text(
                                            CASE WHEN jsonb_typeof(c.settings -> 'entities') = 'array'
                                                 THEN c.settings -> 'entities' ELSE '[]'::JSONB END)),
                           '{}');

    INSERT INTO sync_jobs (tenant_id, connection_id, correlation_id, sync_type, entities, priority, status,
                           target_seconds, requested_by)
    VALUES (p_tenant, c.connection_id, gen_random_uuid(), COALESCE(p_sync_type, 'incremental'), v_entities,
            COALESCE(p_priority, 'normal'), 'queued', 30, p_requested_by)
    RETURNING * INTO v_job;

    INSERT INTO integration_logs (tenant_id, connection_id, job_id, correlation_id, event_type, direction, level,
                                  message, entity_type, actor)
    VALUES (p_tenant, c.connection_id, v_job.job_id, v_job.correlation_id, 'sync_requested', 'internal', 'info',
            format('%s sync of %s requested (%s priority)%s', v_job.sync_type, c.connection_name, v_job.priority,
                   CASE WHEN cardinality(v_entities) > 0 THEN ': ' || array_to_string(v_entities, ', ') ELSE '' END),
            CASE WHEN cardinality(v_entities) = 1 THEN v_entities[1] END, p_requested_by)
    RETURNING log_id INTO v_log_id;

    RETURN jsonb_build_object('job_id', v_job.job_id, 'correlation_id', v_job.correlation_id,
                              'connection_id', c.connection_id, 'connection_name', c.connection_name,
                              'system_type', c.system_type, 'sync_type', v_job.sync_type,
                              'entities', to_jsonb(v_job.entities), 'priority', v_job.priority,
                              'status', v_job.status, 'target_seconds', v_job.target_seconds,
                              'requested_at', v_job.requested_at, 'log_id', v_log_id);
END;
$$;

-- Record the outcome of a sync job (what the integration worker calls):
-- p_status 'running' marks it started; 'completed' or 'failed' finishes it,
-- writes its integration_sync_logs row (success / partial when some records
-- failed / failed), an integration_logs row under the job's correlation id,
-- and the connection's last_sync_at (and last_success_at unless failed).
-- Personal-data systems (1c_zup, ldap) log the transfer with legal basis
-- 'contract'. Returns the job (jsonb) with within_target (finished within
-- target_seconds of the request). Errors: WFM_SYNC_JOB_NOT_FOUND,
-- WFM_INVALID_PARAMETER (unknown status, or a job already finished).
CREATE OR REPLACE FUNCTION wfm_complete_sync(p_tenant INTEGER, p_job_id UUID, p_status TEXT,
                                             p_records_processed INTEGER DEFAULT 0,
                                             p_records_failed INTEGER DEFAULT 0,
                                             p_error TEXT DEFAULT NULL)
RETURNS JSONB
LANGUAGE plpgsql
AS $$
DECLARE
    j        sync_jobs%ROWTYPE;
    c        integration_connections%ROWTYPE;
    v_status TEXT;
BEGIN
    IF p_status IS NULL OR p_status NOT IN ('running', 'completed', 'failed') THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER' USING DETAIL = 'status must be running, completed or failed';
    END IF;
    IF COALESCE(p_records_processed, 0) < 0 OR COALESCE(p_records_failed, 0) < 0 THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER' USING DETAIL = 'record counts must be >= 0';
    END IF;
    SELECT * INTO j FROM sync_jobs WHERE job_id = p_job_id AND tenant_id = p_tenant FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'WFM_SYNC_JOB_NOT_FOUND' USING DETAIL = format('Sync job %s not found', p_job_id);
    END IF;
    IF j.status NOT IN ('queued', 'running') THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER'
            USING DETAIL = format('Sync job %s is already %s', p_job_id, j.status);
    END IF;
    SELECT * INTO c FROM integration_connections WHERE connection_id = j.connection_id;

    IF p_status = 'running' THEN
        UPDATE sync_jobs SET status = 'running', started_at = COALESCE(started_at, now())
        WHERE job_id = p_job_id RETURNING * INTO j;
        INSERT INTO integration_logs (tenant_id, connection_id, job_id, correlation_id, event_type, direction,
                                      message)
        VALUES (p_tenant, j.connection_id, j.job_id, j.correlation_id, 'sync_started', 'outbound',
                format('Sync with %s started', c.connection_name));
    ELSE
        UPDATE sync_jobs
        SET status = p_status, started_at = COALESCE(started_at, now()), finished_at = now(),
            records_processed = COALESCE(p_records_processed, 0), error_message = p_error
        WHERE job_id = p_job_id RETURNING * INTO j;
        v_status := CASE WHEN p_status = 'failed' THEN 'failed'
                         WHEN COALESCE(p_records_failed, 0) > 0 THEN 'partial' ELSE 'success' END;
        INSERT INTO integration_sync_logs (tenant_id, connection_id, job_id, started_at, finished_at, status,
                                           records_processed, records_failed, error_message)
        VALUES (p_tenant, j.connection_id, j.job_id, j.started_at, j.finished_at, v_status,
                COALESCE(p_records_processed, 0), COALESCE(p_records_failed, 0), p_error);
        INSERT INTO integration_logs (tenant_id, connection_id, job_id, correlation_id, event_type, direction,
                                      level, message, records_count, duration_ms, contains_personal_data,
                                      legal_basis)
        VALUES (p_tenant, j.connection_id, j.job_id, j.correlation_id,
                CASE WHEN p_status = 'failed' THEN 'sync_failed' ELSE 'sync_completed' END, 'inbound',
                CASE WHEN p_status = 'failed' THEN 'error' WHEN v_status = 'partial' THEN 'warning' ELSE 'info' END,
                CASE WHEN p_status = 'failed'
                     THEN format('Sync with %s failed: %s', c.connection_name, COALESCE(p_error, 'unknown error'))
                     ELSE format('Sync with %s completed: %s records, %s failed', c.connection_name,
                                 COALESCE(p_records_processed, 0), COALESCE(p_records_failed, 0)) END,
                COALESCE(p_records_processed, 0),
                GREATEST(0, round(extract(epoch FROM j.finished_at - j.started_at) * 1000))::INTEGER,
                c.system_type IN ('1c_zup', 'ldap') AND COALESCE(p_records_processed, 0) > 0,
                CASE WHEN c.system_type IN ('1c_zup', 'ldap') AND COALESCE(p_records_processed, 0) > 0
                     THEN 'contract' END);
        UPDATE integration_connections
        SET last_sync_at = now(),
            last_success_at = CASE WHEN p_status = 'failed' THEN last_success_at ELSE now() END
        WHERE connection_id = j.connection_id;
    END IF;
    RETURN to_jsonb(j) || jsonb_build_object(
        'within_target', CASE WHEN j.finished_at IS NOT NULL
                              THEN j.finished_at - j.requested_at <= make_interval(secs => j.target_seconds) END);
END;
$$;

-- ---------------------------------------------------------------------------
-- Data quality
--
-- The allow-list of tables that can be validated is the active
-- data_quality_checks rows' table_name values that are domain tables
-- (wfm_domain_tables()) and ordinary tables of the current search path with
-- a tenant_id column. A name outside it is refused with WFM_UNKNOWN_TABLE
-- before any SQL touches it; allowed names only ever reach dynamic SQL
-- through format('%I').
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION wfm_quality_tables()
RETURNS SETOF TEXT
LANGUAGE sql
STABLE
AS $$
    SELECT DISTINCT q.table_name::TEXT
    FROM data_quality_checks q
    JOIN pg_class c ON c.oid = to_regclass(quote_ident(q.table_name)) AND c.relkind IN ('r', 'p')
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
    WHERE q.is_active AND q.table_name = ANY (wfm_domain_tables())
    ORDER BY 1
$$;

-- p_table if it is on the allow-list, else WFM_UNKNOWN_TABLE.
CREATE OR REPLACE FUNCTION wfm_check_quality_table(p_table TEXT)
RETURNS TEXT
LANGUAGE plpgsql
STABLE
AS $$
BEGIN
    IF p_table IS NULL OR NOT EXISTS (SELECT 1 FROM wfm_quality_tables() t WHERE t = p_table) THEN
        RAISE EXCEPTION 'WFM_UNKNOWN_TABLE'
            USING DETAIL = format('No data-quality checks for table %s; known tables: %s',
                                  COALESCE(quote_literal(left(p_table, 80)), 'NULL'),
                                  (SELECT string_agg(t, ', ') FROM wfm_quality_tables() t));
    END IF;
    RETURN p_table;
END;
$$;

-- Run the active checks of one allow-listed table on the tenant's rows, in
-- one scan of the table: per check its failing row count and passed (no
-- failing row). Read-only (STABLE: it cannot write). A check whose SQL fails
-- is reported with its error message (failed_rows and passed NULL) instead of
-- failing the others. Errors: WFM_UNKNOWN_TABLE.
CREATE OR REPLACE FUNCTION wfm_quality_check_rows(p_tenant INTEGER, p_table TEXT)
RETURNS TABLE (table_name TEXT, check_name VARCHAR, description TEXT, severity VARCHAR, checked_rows BIGINT,
               failed_rows BIGINT, passed BOOLEAN, error TEXT)
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    v_table  TEXT := wfm_check_quality_table(p_table);
    v_names  TEXT[];
    v_exprs  TEXT;
    v_total  BIGINT;
    v_counts BIGINT[];
    v_errors TEXT[];
    v_count  BIGINT;
    q        RECORD;
BEGIN
    SELECT array_agg(dq.check_name::TEXT ORDER BY dq.check_name),
           string_agg(format('count(*) FILTER (WHERE (%s))', dq.failing_condition), ', ' ORDER BY dq.check_name)
      INTO v_names, v_exprs
    FROM data_quality_checks dq
    WHERE dq.table_name = v_table AND dq.is_active;

    EXECUTE format('SELECT count(*) FROM %I t WHERE t.tenant_id = $1', v_table) INTO v_total USING p_tenant;
    BEGIN
        EXECUTE format('SELECT ARRAY[%s]::BIGINT[] FROM %I t WHERE t.tenant_id = $1', v_exprs, v_table)
            INTO v_counts USING p_tenant;
        v_errors := array_fill(NULL::TEXT, ARRAY[cardinality(v_names)]);
    EXCEPTION WHEN OTHERS THEN
        -- one check is broken: run them one by one to keep the others' answers
        v_counts := '{}';
        v_errors := '{}';
        FOR q IN SELECT dq.failing_condition FROM data_quality_checks dq
                 WHERE dq.table_name = v_table AND dq.is_active ORDER BY dq.check_name LOOP
            BEGIN
                EXECUTE format('SELECT count(*) FROM %I t WHERE t.tenant_id = $1 AND (%s)', v_table,
                               q.failing_condition)
                    INTO v_count USING p_tenant;
                v_counts := v_counts || v_count;
                v_errors := v_errors || NULL::TEXT;
            EXCEPTION WHEN OTHERS THEN
                v_counts := v_counts || NULL::BIGINT;
                v_errors := v_errors || SQLERRM;
            END;
        END LOOP;
    END;

    RETURN QUERY
    SELECT v_table, dq.check_name, dq.description, dq.severity, v_total, v_counts[n.ord],
           v_counts[n.ord] = 0, v_errors[n.ord]
    FROM unnest(v_names) WITH ORDINALITY AS n (name, ord)
    JOIN data_quality_checks dq ON dq.table_name = v_table AND dq.check_name = n.name
    ORDER BY n.ord;
END;
$$;

-- Validate one table of the tenant without writing anything (a GET): jsonb
-- with table_name, checked_rows, checks (check_name, description, severity,
-- failed_rows, passed, error), checks_run, failed_checks, quality_score_pct
-- (100 - failing rows per checked row and check, in percent; NULL without
-- rows), validated_at. Errors: WFM_UNKNOWN_TABLE.
CREATE OR REPLACE FUNCTION wfm_validate_table(p_tenant INTEGER, p_table TEXT)
RETURNS JSONB
LANGUAGE sql
STABLE
AS $$
    SELECT jsonb_build_object(
        'table_name', wfm_check_quality_table(p_table),
        'checked_rows', COALESCE(max(r.checked_rows), 0),
        'checks', COALESCE(jsonb_agg(jsonb_build_object(
                      'check_name', r.check_name, 'description', r.description, 'severity', r.severity,
                      'failed_rows', r.failed_rows, 'passed', r.passed, 'error', r.error)
                      ORDER BY r.check_name) FILTER (WHERE r.check_name IS NOT NULL), '[]'::JSONB),
        'checks_run', count(r.check_name),
        'failed_checks', count(*) FILTER (WHERE r.passed IS NOT TRUE AND r.check_name IS NOT NULL),
        'quality_score_pct', wfm_non_negative(round(100 - 100.0 * sum(r.failed_rows)
                                                     / NULLIF(max(r.checked_rows) * count(r.failed_rows), 0), 2)),
        'validated_at', now())
    FROM wfm_quality_check_rows(p_tenant, p_table) r
$$;

-- Run the checks of the given tables (default: every allow-listed table) and
-- record each result in data_quality_results under one run id (checks whose
-- SQL failed are reported, not recorded). Returns jsonb: run_id, checked_at,
-- tables (one wfm_validate_table-like object each), checks_run,
-- failed_checks, quality_score_pct (over all tables). Errors: WFM_UNKNOWN_TABLE.
CREATE OR REPLACE FUNCTION wfm_run_quality_checks(p_tenant INTEGER, p_tables TEXT[] DEFAULT NULL,
                                                  p_requested_by TEXT DEFAULT NULL)
RETURNS JSONB
LANGUAGE plpgsql
AS $$
DECLARE
    v_run    UUID := gen_random_uuid();
    v_tables TEXT[];
    v_table  TEXT;
    v_out    JSONB := '[]';
BEGIN
    v_tables := COALESCE(p_tables, ARRAY(SELECT wfm_quality_tables()));
    FOREACH v_table IN ARRAY v_tables LOOP
        PERFORM wfm_check_quality_table(v_table);
    END LOOP;
    CREATE TEMP TABLE IF NOT EXISTS wfm_quality_run (
        table_name TEXT, check_name VARCHAR, description TEXT, severity VARCHAR, checked_rows BIGINT,
        failed_rows BIGINT, passed BOOLEAN, error TEXT
    ) ON COMMIT DROP;
    DELETE FROM wfm_quality_run;
    FOREACH v_table IN ARRAY ARRAY(SELECT DISTINCT unnest(v_tables) ORDER BY 1) LOOP
        INSERT INTO wfm_quality_run SELECT * FROM wfm_quality_check_rows(p_tenant, v_table);
    END LOOP;
    INSERT INTO data_quality_results (tenant_id, run_id, table_name, check_name, severity, checked_rows,
                                      failed_rows, passed, requested_by)
    SELECT p_tenant, v_run, r.table_name, r.check_name, r.severity, r.checked_rows, r.failed_rows, r.passed,
           p_requested_by
    FROM wfm_quality_run r
    WHERE r.error IS NULL;

    SELECT jsonb_build_object(
        'run_id', v_run,
        'checked_at', now(),
        'tables', COALESCE((
            SELECT jsonb_agg(jsonb_build_object(
                       'table_name', t.table_name, 'checked_rows', t.checked_rows, 'checks', t.checks,
                       'checks_run', t.checks_run, 'failed_checks', t.failed_checks,
                       'quality_score_pct', t.score)
                       ORDER BY t.table_name)
            FROM (SELECT r.table_name, max(r.checked_rows) AS checked_rows,
                         jsonb_agg(jsonb_build_object('check_name', r.check_name, 'description', r.description,
                                                      'severity', r.severity, 'failed_rows', r.failed_rows,
                                                      'passed', r.passed, 'error', r.error)
                                   ORDER BY r.check_name) AS checks,
                         count(*) AS checks_run, count(*) FILTER (WHERE r.passed IS NOT TRUE) AS failed_checks,
                         wfm_non_negative(round(100 - 100.0 * sum(r.failed_rows)
                                                 / NULLIF(max(r.checked_rows) * count(r.failed_rows), 0), 2)) AS score
                  FROM wfm_quality_run r
                  GROUP BY r.table_name) t), '[]'::JSONB),
        'checks_run', (SELECT count(*) FROM wfm_quality_run),
        'failed_checks', (SELECT count(*) FROM wfm_quality_run r WHERE r.passed IS NOT TRUE),
        'quality_score_pct', (SELECT wfm_non_negative(round(100 - 100.0 * sum(r.failed_rows)
                                                             / NULLIF(sum(r.checked_rows)
                                                                      FILTER (WHERE r.failed_rows IS NOT NULL), 0),
                                                       2))
                              FROM wfm_quality_run r))
      INTO v_out;
    DROP TABLE wfm_quality_run;
    RETURN v_out;
END;
$$;

-- ---------------------------------------------------------------------------
-- Bulk import and export
-- ---------------------------------------------------------------------------

-- Import a JSON array of row objects into one table of the tenant (at most
-- 10000 rows; fields not listed below are ignored; tenant_id always comes
-- from p_tenant, never from the rows):
--   contact_statistics  key service_id + interval_start; offered, answered, abandoned,
--                       answered_within_threshold, answered_within_10s/20s/30s/60s,
--                       talk/hold/wrap/wait_seconds, max_wait_seconds, agents_staffed
--   agent_activity      key agent_id + activity_date; service_id, login/ready/talk/hold/
--                       wrap/not_ready/scheduled/adherent_seconds, calls_handled, transfers
--   agents              key employee_number; full_name, email, group_id,
--                       primary_service_id, employment_type, weekly_hours, hire_date, is_active
--   work_schedules      agent_id, service_id, shift_start, shift_end, template_id,
--                       status, notes (always inserted)
-- p_mode 'upsert' (default) updates rows whose key exists (the fields a row
-- leaves out keep their stored value), 'insert' skips them. A key may appear
-- once per import. Every referenced service, agent, group and template must
-- be the tenant's. The import is all or nothing. Returns jsonb: table_name, mode,
-- received, inserted, updated, skipped.
-- Errors: WFM_UNKNOWN_TABLE, WFM_IMPORT_INVALID (not an array, a row that is
-- not an object, a missing key field, a key twice, another tenant's reference; the detail
-- names the row, counted from 1), WFM_IMPORT_TOO_LARGE, WFM_INVALID_PARAMETER;
-- bad values are the database's own errors (INVALID_VALUE, CONSTRAINT_VIOLATION).
CREATE OR REPLACE FUNCTION wfm_bulk_import(p_tenant INTEGER, p_table TEXT, p_rows JSONB,
                                           p_mode TEXT DEFAULT 'upsert')
RETURNS JSONB
LANGUAGE plpgsql
AS $$
DECLARE
    v_n        INTEGER;
    v_bad      RECORD;
    v_required TEXT[];
    v_inserted INTEGER := 0;
    v_updated  INTEGER := 0;
    v_mode     TEXT := COALESCE(p_mode, 'upsert');
    v_rows     JSONB;
BEGIN
    IF p_table IS NULL OR p_table NOT IN ('contact_statistics', 'agent_activity', 'agents', 'work_schedules') THEN
        RAISE EXCEPTION 'WFM_UNKNOWN_TABLE'
            USING DETAIL = format('Cannot import into %s; importable tables: contact_statistics, '
                                  'agent_activity, agents, work_schedules',
                                  COALESCE(quote_literal(left(p_table, 80)), 'NULL'));
    END IF;
    IF v_mode NOT IN ('upsert', 'insert') THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER' USING DETAIL = 'mode must be upsert or insert';
    END IF;
    IF p_rows IS NULL OR jsonb_typeof(p_rows) <> 'array' THEN
        RAISE EXCEPTION 'WFM_IMPORT_INVALID' USING DETAIL = 'rows must be a JSON array of objects';
    END IF;
    v_n := jsonb_array_length(p_rows);
    IF v_n > 10000 THEN
        RAISE EXCEPTION 'WFM_IMPORT_TOO_LARGE'
            USING DETAIL = format('%s rows sent; at most 10000 rows per import', v_n);
    END IF;
    SELECT e.ord INTO v_bad FROM jsonb_array_elements(p_rows) WITH ORDINALITY AS e (r, ord)
    WHERE jsonb_typeof(e.r) <> 'object' ORDER BY e.ord LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'WFM_IMPORT_INVALID' USING DETAIL = format('Row %s is not an object', v_bad.ord);
    END IF;
    v_required := CASE p_table
                      WHEN 'contact_statistics' THEN ARRAY['service_id', 'interval_start']
                      WHEN 'agent_activity' THEN ARRAY['agent_id', 'activity_date']
                      WHEN 'agents' THEN ARRAY['employee_number', 'full_name']
                      ELSE ARRAY['agent_id', 'service_id', 'shift_start', 'shift_end'] END;
    SELECT e.ord, k.key INTO v_bad
    FROM jsonb_array_elements(p_rows) WITH ORDINALITY AS e (r, ord)
    CROSS JOIN unnest(v_required) AS k (key)
    WHERE e.r -> k.key IS NULL OR e.r -> k.key = 'null'::JSONB
    ORDER BY e.ord, k.key LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'WFM_IMPORT_INVALID' USING DETAIL = format('Row %s has no %s', v_bad.ord, v_bad.key);
    END IF;

    -- references must be the tenant's own
    SELECT x.ord, x.what, x.id INTO v_bad
    FROM (
        SELECT e.ord, 'service' AS what, e.r ->> 'service_id' AS id
        FROM jsonb_array_elements(p_rows) WITH ORDINALITY AS e (r, ord)
        WHERE p_table IN ('contact_statistics', 'agent_activity', 'work_schedules')
          AND e.r ? 'service_id' AND e.r -> 'service_id' <> 'null'::JSONB
          AND NOT EXISTS (SELECT 1 FROM services s
                          WHERE s.service_id::TEXT = e.r ->> 'service_id' AND s.tenant_id = p_tenant)
        UNION ALL
        SELECT e.ord, 'primary service', e.r ->> 'primary_service_id'
        FROM jsonb_array_elements(p_rows) WITH ORDINALITY AS e (r, ord)
        WHERE p_table = 'agents' AND e.r ? 'primary_service_id' AND e.r -> 'primary_service_id' <> 'null'::JSONB
          AND NOT EXISTS (SELECT 1 FROM services s
                          WHERE s.service_id::TEXT = e.r ->> 'primary_service_id' AND s.tenant_id = p_tenant)
        UNION ALL
        SELECT e.ord, 'group', e.r ->> 'group_id'
        FROM jsonb_array_elements(p_rows) WITH ORDINALITY AS e (r, ord)
        WHERE p_table = 'agents' AND e.r ? 'group_id' AND e.r -> 'group_id' <> 'null'::JSONB
          AND NOT EXISTS (SELECT 1 FROM service_groups g
                          WHERE g.group_id::TEXT = e.r ->> 'group_id' AND g.tenant_id = p_tenant)
        UNION ALL
        SELECT e.ord, 'agent', e.r ->> 'agent_id'
        FROM jsonb_array_elements(p_rows) WITH ORDINALITY AS e (r, ord)
        WHERE p_table IN ('agent_activity', 'work_schedules')
          AND NOT EXISTS (SELECT 1 FROM agents a
                          WHERE a.agent_id::TEXT = e.r ->> 'agent_id' AND a.tenant_id = p_tenant)
        UNION ALL
        SELECT e.ord, 'template', e.r ->> 'template_id'
        FROM jsonb_array_elements(p_rows) WITH ORDINALITY AS e (r, ord)
        WHERE p_table = 'work_schedules' AND e.r ? 'template_id' AND e.r -> 'template_id' <> 'null'::JSONB
          AND NOT EXISTS (SELECT 1 FROM schedule_templates t
                          WHERE t.template_id::TEXT = e.r ->> 'template_id' AND t.tenant_id = p_tenant)
    ) x
    ORDER BY x.ord, x.what LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'WFM_IMPORT_INVALID' USING DETAIL = format('Row %s: %s %s not found', v_bad.ord, v_bad.what,
                                                                  v_bad.id);
    END IF;

    -- one row per key, and each row laid over the stored one it updates (so an
    -- upsert keeps the fields a row leaves out)
    SELECT min(k.ord), max(k.ord) INTO v_bad
    FROM (
        SELECT e.ord,
               CASE p_table
                   WHEN 'contact_statistics'
                       THEN (e.r ->> 'service_id') || '|' || ((e.r ->> 'interval_start')::TIMESTAMPTZ)::TEXT
                   WHEN 'agent_activity' THEN (e.r ->> 'agent_id') || '|' || ((e.r ->> 'activity_date')::DATE)::TEXT
                   WHEN 'agents' THEN e.r ->> 'employee_number'
               END AS key
        FROM jsonb_array_elements(p_rows) WITH ORDINALITY AS e (r, ord)
    ) k
    WHERE k.key IS NOT NULL
    GROUP BY k.key
    HAVING count(*) > 1
    ORDER BY min(k.ord)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'WFM_IMPORT_INVALID'
            USING DETAIL = format('Rows %s and %s have the same key', v_bad.min, v_bad.max);
    END IF;
    SELECT jsonb_agg(COALESCE(x.stored, '{}'::JSONB) || e.r ORDER BY e.ord) INTO v_rows
    FROM jsonb_array_elements(p_rows) WITH ORDINALITY AS e (r, ord)
    LEFT JOIN LATERAL (
        SELECT to_jsonb(t.*) AS stored FROM contact_statistics t
        WHERE p_table = 'contact_statistics' AND v_mode = 'upsert' AND t.tenant_id = p_tenant
          AND t.service_id = (e.r ->> 'service_id')::INTEGER
          AND t.interval_start = (e.r ->> 'interval_start')::TIMESTAMPTZ
        UNION ALL
        SELECT to_jsonb(t.*) FROM agent_activity t
        WHERE p_table = 'agent_activity' AND v_mode = 'upsert' AND t.tenant_id = p_tenant
          AND t.agent_id = (e.r ->> 'agent_id')::INTEGER AND t.activity_date = (e.r ->> 'activity_date')::DATE
        UNION ALL
        SELECT to_jsonb(t.*) FROM agents t
        WHERE p_table = 'agents' AND v_mode = 'upsert' AND t.tenant_id = p_tenant
          AND t.employee_number = e.r ->> 'employee_number'
    ) x ON TRUE;
    v_rows := COALESCE(v_rows, '[]'::JSONB);

    IF p_table = 'contact_statistics' THEN
        WITH src AS (
            SELECT * FROM jsonb_to_recordset(v_rows) AS r (
                service_id INTEGER, interval_start TIMESTAMPTZ, offered INTEGER, answered INTEGER,
                abandoned INTEGER, answered_within_threshold INTEGER, answered_within_10s INTEGER,
                answered_within_20s INTEGER, answered_within_30s INTEGER, answered_within_60s INTEGER,
                talk_seconds BIGINT, hold_seconds BIGINT, wrap_seconds BIGINT, wait_seconds BIGINT,
                max_wait_seconds INTEGER, agents_staffed NUMERIC)
        ),
        ins AS (
            INSERT INTO contact_statistics AS t (
                tenant_id, service_id, interval_start, offered, answered, abandoned, answered_within_threshold,
                answered_within_10s, answered_within_20s, answered_within_30s, answered_within_60s,
                talk_seconds, hold_seconds, wrap_seconds, wait_seconds, max_wait_seconds, agents_staffed)
            SELECT p_tenant, s.service_id, s.interval_start, COALESCE(s.offered, 0), COALESCE(s.answered, 0),
                   COALESCE(s.abandoned, 0), COALESCE(s.answered_within_threshold, 0), s.answered_within_10s,
                   s.answered_within_20s, s.answered_within_30s, s.answered_within_60s,
                   COALESCE(s.talk_seconds, 0), COALESCE(s.hold_seconds, 0), COALESCE(s.wrap_seconds, 0),
                   COALESCE(s.wait_seconds, 0), s.max_wait_seconds, s.agents_staffed
            FROM src s
            ON CONFLICT (service_id, interval_start) DO UPDATE
            SET offered = EXCLUDED.offered, answered = EXCLUDED.answered, abandoned = EXCLUDED.abandoned,
                answered_within_threshold = EXCLUDED.answered_within_threshold,
                answered_within_10s = EXCLUDED.answered_within_10s,
                answered_within_20s = EXCLUDED.answered_within_20s,
                answered_within_30s = EXCLUDED.answered_within_30s,
                answered_within_60s = EXCLUDED.answered_within_60s,
                talk_seconds = EXCLUDED.talk_seconds, hold_seconds = EXCLUDED.hold_seconds,
                wrap_seconds = EXCLUDED.wrap_seconds, wait_seconds = EXCLUDED.wait_seconds,
                max_wait_seconds = EXCLUDED.max_wait_seconds, agents_staffed = EXCLUDED.agents_staffed
            WHERE v_mode = 'upsert'
            RETURNING (xmax = 0) AS is_new
        )
        SELECT count(*) FILTER (WHERE is_new), count(*) FILTER (WHERE NOT is_new) INTO v_inserted, v_updated
        FROM ins;
    ELSIF p_table = 'agent_activity' THEN
        WITH src AS (
            SELECT * FROM jsonb_to_recordset(v_rows) AS r (
                agent_id INTEGER, activity_date DATE, service_id INTEGER, login_seconds INTEGER,
                ready_seconds INTEGER, talk_seconds INTEGER, hold_seconds INTEGER, wrap_seconds INTEGER,
                not_ready_seconds INTEGER, calls_handled INTEGER, transfers INTEGER, scheduled_seconds INTEGER,
                adherent_seconds INTEGER)
        ),
        ins AS (
            INSERT INTO agent_activity AS t (
                tenant_id, agent_id, activity_date, service_id, login_seconds, ready_seconds, talk_seconds,
                hold_seconds, wrap_seconds, not_ready_seconds, calls_handled, transfers, scheduled_seconds,
                adherent_seconds)
            SELECT p_tenant, s.agent_id, s.activity_date, s.service_id, COALESCE(s.login_seconds, 0),
                   COALESCE(s.ready_seconds, 0), COALESCE(s.talk_seconds, 0), COALESCE(s.hold_seconds, 0),
                   COALESCE(s.wrap_seconds, 0), COALESCE(s.not_ready_seconds, 0), COALESCE(s.calls_handled, 0),
                   COALESCE(s.transfers, 0), COALESCE(s.scheduled_seconds, 0), COALESCE(s.adherent_seconds, 0)
            FROM src s
            ON CONFLICT (agent_id, activity_date) DO UPDATE
            SET service_id = EXCLUDED.service_id, login_seconds = EXCLUDED.login_seconds,
                ready_seconds = EXCLUDED.ready_seconds, talk_seconds = EXCLUDED.talk_seconds,
                hold_seconds = EXCLUDED.hold_seconds, wrap_seconds = EXCLUDED.wrap_seconds,
                not_ready_seconds = EXCLUDED.not_ready_seconds, calls_handled = EXCLUDED.calls_handled,
                transfers = EXCLUDED.transfers, scheduled_seconds = EXCLUDED.scheduled_seconds,
                adherent_seconds = EXCLUDED.adherent_seconds
            WHERE v_mode = 'upsert'
            RETURNING (xmax = 0) AS is_new
        )
        SELECT count(*) FILTER (WHERE is_new), count(*) FILTER (WHERE NOT is_new) INTO v_inserted, v_updated
        FROM ins;
    ELSIF p_table = 'agents' THEN
        WITH src AS (
            SELECT * FROM jsonb_to_recordset(v_rows) AS r (
                employee_number VARCHAR, full_name VARCHAR, email VARCHAR, group_id INTEGER,
                primary_service_id INTEGER, employment_type VARCHAR, weekly_hours NUMERIC, hire_date DATE,
                is_active BOOLEAN)
        ),
        ins AS (
            INSERT INTO agents AS t (tenant_id, employee_number, full_name, email, group_id, primary_service_id,
                                     employment_type, weekly_hours, hire_date, is_active)
            SELECT p_tenant, s.employee_number, s.full_name, s.email, s.group_id, s.primary_service_id,
                   COALESCE(s.employment_type, 'full_time'), COALESCE(s.weekly_hours, 40), s.hire_date,
                   COALESCE(s.is_active, TRUE)
            FROM src s
            ON CONFLICT (tenant_id, employee_number) DO UPDATE
            SET full_name = EXCLUDED.full_name, email = EXCLUDED.email, group_id = EXCLUDED.group_id,
                primary_service_id = EXCLUDED.primary_service_id, employment_type = EXCLUDED.employment_type,
                weekly_hours = EXCLUDED.weekly_hours, hire_date = EXCLUDED.hire_date,
                is_active = EXCLUDED.is_active
            WHERE v_mode = 'upsert'
            RETURNING (xmax = 0) AS is_new
        )
        SELECT count(*) FILTER (WHERE is_new), count(*) FILTER (WHERE NOT is_new) INTO v_inserted, v_updated
        FROM ins;
    ELSE
        INSERT INTO work_schedules (tenant_id, agent_id, service_id, template_id, shift_start, shift_end, status,
                                    notes)
        SELECT p_tenant, s.agent_id, s.service_id, s.template_id, s.shift_start, s.shift_end,
               COALESCE(s.status, 'planned'), s.notes
        FROM jsonb_to_recordset(p_rows) AS s (
            agent_id INTEGER, service_id INTEGER, template_id INTEGER, shift_start TIMESTAMPTZ,
            shift_end TIMESTAMPTZ, status VARCHAR, notes TEXT);
        GET DIAGNOSTICS v_inserted = ROW_COUNT;
    END IF;
    RETURN jsonb_build_object('table_name', p_table, 'mode', v_mode, 'received', v_n, 'inserted', v_inserted,
                              'updated', v_updated, 'skipped', v_n - v_inserted - v_updated);
END;
$$;

-- WFM_UNKNOWN_TABLE unless p_table can be exported (used by wfm_export).
CREATE OR REPLACE FUNCTION wfm_export_check(p_table TEXT)
RETURNS BOOLEAN
LANGUAGE plpgsql
STABLE
AS $$
BEGIN
    IF p_table IS NULL OR p_table NOT IN ('contact_statistics', 'agent_activity', 'agents', 'work_schedules',
                                          'forecast_data_points', 'staffing_plans', 'integration_logs',
                                          'realtime_alerts') THEN
        RAISE EXCEPTION 'WFM_UNKNOWN_TABLE'
            USING DETAIL = format('Cannot export %s; exportable tables: contact_statistics, agent_activity, '
                                  'agents, work_schedules, forecast_data_points, staffing_plans, '
                                  'integration_logs, realtime_alerts',
                                  COALESCE(quote_literal(left(p_table, 80)), 'NULL'));
    END IF;
    RETURN TRUE;
END;
$$;

-- The tenant's rows of one table as jsonb, one per row, in time (or key)
-- order, optionally within [p_from, p_to) of the table's time column
-- (interval_start, activity_date, shift_start, created_at, triggered_at;
-- agents have none): for a streamed export (result_mapping shape 'stream').
-- A plain SQL function, so the planner inlines it and a server-side cursor
-- streams the rows; only the branch of p_table runs. Errors: WFM_UNKNOWN_TABLE.
CREATE OR REPLACE FUNCTION wfm_export(p_tenant INTEGER, p_table TEXT, p_from TIMESTAMPTZ DEFAULT NULL,
                                      p_to TIMESTAMPTZ DEFAULT NULL)
RETURNS SETOF JSONB
LANGUAGE sql
STABLE
AS $$
    SELECT NULL::JSONB WHERE NOT wfm_export_check(p_table)
    UNION ALL
    (SELECT to_jsonb(t) - 'tenant_id' FROM contact_statistics t
     WHERE p_table = 'contact_statistics' AND t.tenant_id = p_tenant
       AND (p_from IS NULL OR t.interval_start >= p_from) AND (p_to IS NULL OR t.interval_start < p_to)
     ORDER BY t.interval_start, t.service_id)
    UNION ALL
    (SELECT to_jsonb(t) - 'tenant_id' FROM agent_activity t
     WHERE p_table = 'agent_activity' AND t.tenant_id = p_tenant
       AND (p_from IS NULL OR t.activity_date >= (p_from AT TIME ZONE 'UTC')::DATE)
       AND (p_to IS NULL OR t.activity_date < (p_to AT TIME ZONE 'UTC')::DATE)
     ORDER BY t.activity_date, t.agent_id)
    UNION ALL
    (SELECT to_jsonb(t) - 'tenant_id' FROM agents t
     WHERE p_table = 'agents' AND t.tenant_id = p_tenant
     ORDER BY t.agent_id)
    UNION ALL
    (SELECT to_jsonb(t) - 'tenant_id' FROM work_schedules t
     WHERE p_table = 'work_schedules' AND t.tenant_id = p_tenant
       AND (p_from IS NULL OR t.shift_start >= p_from) AND (p_to IS NULL OR t.shift_start < p_to)
     ORDER BY t.shift_start, t.schedule_id)
    UNION ALL
    (SELECT to_jsonb(t) - 'tenant_id' FROM forecast_data_points t
     WHERE p_table = 'forecast_data_points' AND t.tenant_id = p_tenant
       AND (p_from IS NULL OR t.interval_start >= p_from) AND (p_to IS NULL OR t.interval_start < p_to)
     ORDER BY t.forecast_id, t.interval_start)
    UNION ALL
    (SELECT to_jsonb(t) - 'tenant_id' FROM staffing_plans t
     WHERE p_table = 'staffing_plans' AND t.tenant_id = p_tenant
       AND (p_from IS NULL OR t.interval_start >= p_from) AND (p_to IS NULL OR t.interval_start < p_to)
     ORDER BY t.interval_start, t.service_id)
    UNION ALL
    (SELECT to_jsonb(t) - 'tenant_id' FROM integration_logs t
     WHERE p_table = 'integration_logs' AND t.tenant_id = p_tenant
       AND (p_from IS NULL OR t.created_at >= p_from) AND (p_to IS NULL OR t.created_at < p_to)
     ORDER BY t.created_at, t.log_id)
    UNION ALL
    (SELECT to_jsonb(t) - 'tenant_id' FROM realtime_alerts t
     WHERE p_table = 'realtime_alerts' AND t.tenant_id = p_tenant
       AND (p_from IS NULL OR t.triggered_at >= p_from) AND (p_to IS NULL OR t.triggered_at < p_to)
     ORDER BY t.triggered_at, t.alert_event_id)
$$;

-- ---------------------------------------------------------------------------
-- Maintenance, schema information, capacity
-- ---------------------------------------------------------------------------

-- Delete the tenant's operational history older than p_retention_days (at
-- least 7): agent status changes that ended, metric snapshots, resolved
-- alerts, integration activity and sync logs, finished sync jobs,
-- data-quality results and optimisation runs; contact statistics and agent
-- activity only when p_statistics_retention_days is given (at least 90: they
-- feed the forecasts). p_dry_run counts without deleting. Returns jsonb:
-- retention_days, statistics_retention_days, cutoff, dry_run, deleted (rows
-- per table), total. Errors: WFM_INVALID_PARAMETER.
CREATE OR REPLACE FUNCTION wfm_maintenance_cleanup(p_tenant INTEGER, p_retention_days INTEGER DEFAULT 90,
                                                   p_dry_run BOOLEAN DEFAULT FALSE,
                                                   p_statistics_retention_days INTEGER DEFAULT NULL)
RETURNS JSONB
LANGUAGE plpgsql
AS $$
DECLARE
    v_cutoff    TIMESTAMPTZ;
    v_stats_cut TIMESTAMPTZ;
    v_counts    JSONB := '{}';
    v_n         BIGINT;
    t           RECORD;
BEGIN
    IF p_retention_days IS NULL OR p_retention_days < 7 OR p_retention_days > 3650 THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER' USING DETAIL = 'retention_days must be 7 to 3650';
    END IF;
    IF p_statistics_retention_days IS NOT NULL
       AND (p_statistics_retention_days < 90 OR p_statistics_retention_days > 3650) THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER' USING DETAIL = 'statistics_retention_days must be 90 to 3650';
    END IF;
    v_cutoff := now() - make_interval(days => p_retention_days);
    v_stats_cut := now() - make_interval(days => COALESCE(p_statistics_retention_days, 0));
    -- table, condition on alias t ($1 = tenant, $2 = cutoff); children before parents
    FOR t IN
        SELECT * FROM (VALUES
            (1, 'integration_logs', 't.created_at < $2'),
            (2, 'integration_sync_logs', 't.started_at < $2'),
            (3, 'sync_jobs', 't.status IN (''completed'', ''failed'', ''cancelled'') AND t.finished_at < $2'),
            (4, 'agent_status_history', 't.ended_at < $2'),
            (5, 'operational_metrics', 't.measured_at < $2'),
            (6, 'realtime_alerts', 't.resolved_at < $2'),
            (7, 'data_quality_results', 't.checked_at < $2'),
            (8, 'schedule_optimization_runs', 't.created_at < $2'),
            (9, 'contact_statistics', 't.interval_start < $2'),
            (10, 'agent_activity', 't.activity_date < ($2 AT TIME ZONE ''UTC'')::DATE')
        ) AS v (ord, tbl, cond)
        ORDER BY ord
    LOOP
        IF t.tbl IN ('contact_statistics', 'agent_activity') AND p_statistics_retention_days IS NULL THEN
            CONTINUE;
        END IF;
        IF p_dry_run THEN
            EXECUTE format('SELECT count(*) FROM %I t WHERE t.tenant_id = $1 AND %s', t.tbl, t.cond)
                INTO v_n
                USING p_tenant, CASE WHEN t.ord >= 9 THEN v_stats_cut ELSE v_cutoff END;
        ELSE
            EXECUTE format('DELETE FROM %I t WHERE t.tenant_id = $1 AND %s', t.tbl, t.cond)
                USING p_tenant, CASE WHEN t.ord >= 9 THEN v_stats_cut ELSE v_cutoff END;
            GET DIAGNOSTICS v_n = ROW_COUNT;
        END IF;
        v_counts := v_counts || jsonb_build_object(t.tbl, v_n);
    END LOOP;
    RETURN jsonb_build_object(
        'retention_days', p_retention_days,
        'statistics_retention_days', p_statistics_retention_days,
        'cutoff', v_cutoff,
        'dry_run', COALESCE(p_dry_run, FALSE),
        'deleted', v_counts,
        'total', (SELECT COALESCE(sum(value::BIGINT), 0) FROM jsonb_each_text(v_counts)));
END;
$$;

-- The domain's tables as the database describes them: comment, columns
-- (name, type, nullable, default, generated), primary key, estimated rows
-- (NULL before the table was ever analysed), total size with indexes.
CREATE OR REPLACE FUNCTION wfm_schema_info()
RETURNS TABLE (table_name TEXT, description TEXT, column_count INTEGER, columns JSONB, primary_key TEXT[],
               row_estimate BIGINT, total_bytes BIGINT)
LANGUAGE sql
STABLE
AS $$
    SELECT c.relname::TEXT,
           obj_description(c.oid, 'pg_class'),
           (SELECT count(*)::INTEGER FROM pg_attribute a
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
           (SELECT jsonb_agg(jsonb_build_object(
                       'name', col.column_name, 'type', col.data_type, 'nullable', col.is_nullable = 'YES',
                       'default', col.column_default, 'generated', col.is_generated = 'ALWAYS')
                       ORDER BY col.ordinal_position)
            FROM information_schema.columns col
            WHERE col.table_schema = n.nspname AND col.table_name = c.relname),
           (SELECT array_agg(a.attname::TEXT ORDER BY k.ord)
            FROM pg_constraint pk
            CROSS JOIN LATERAL unnest(pk.conkey) WITH ORDINALITY AS k (attnum, ord)
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
            WHERE pk.conrelid = c.oid AND pk.contype = 'p'),
           CASE WHEN c.reltuples >= 0 THEN c.reltuples::BIGINT END,
           pg_total_relation_size(c.oid)
    FROM unnest(wfm_domain_tables()) WITH ORDINALITY AS t (name, ord)
    JOIN pg_class c ON c.oid = to_regclass(quote_ident(t.name))
    JOIN pg_namespace n ON n.oid = c.relnamespace
    ORDER BY t.ord
$$;

-- Capacity of the database, from PostgreSQL's own statistics (read-only, so
-- a GET can call it): jsonb with database, server_version, measured_at;
-- connections (max_connections, reserved, in_use = client backends,
-- active, idle, idle_in_transaction, waiting, usage_pct); storage
-- (database_bytes, database_size, largest_tables: the ten largest domain
-- tables with total_bytes, size, row_estimate); cache (blks_hit,
-- blks_read, hit_ratio_pct); transactions (commits, rollbacks,
-- rollback_pct, deadlocks); rows (returned, fetched, inserted, updated,
-- deleted); temp_files, temp_bytes, stats_reset; settings (shared_buffers,
-- work_mem, maintenance_work_mem, effective_cache_size); recommendations
-- (the db_* optimisation rules that fire).
CREATE OR REPLACE FUNCTION wfm_capacity_analysis()
RETURNS JSONB
LANGUAGE sql
STABLE
AS $$
    WITH act AS (
        SELECT count(*) AS in_use,
               count(*) FILTER (WHERE a.state = 'active') AS active,
               count(*) FILTER (WHERE a.state = 'idle') AS idle,
               count(*) FILTER (WHERE a.state LIKE 'idle in transaction%') AS idle_in_transaction,
               count(*) FILTER (WHERE a.wait_event_type = 'Lock') AS waiting
        FROM pg_stat_activity a
        WHERE a.backend_type = 'client backend'
    ),
    db AS (
        SELECT * FROM pg_stat_database d WHERE d.datname = current_database()
    ),
    max_conn AS (
        SELECT current_setting('max_connections')::INTEGER AS n,
               current_setting('superuser_reserved_connections')::INTEGER AS reserved
    )
    SELECT jsonb_build_object(
        'database', current_database(),
        'server_version', current_setting('server_version'),
        'measured_at', now(),
        'connections', (SELECT jsonb_build_object(
                            'max_connections', m.n, 'reserved', m.reserved, 'in_use', act.in_use,
                            'active', act.active, 'idle', act.idle,
                            'idle_in_transaction', act.idle_in_transaction, 'waiting', act.waiting,
                            'usage_pct', round(100.0 * act.in_use / m.n, 2))
                        FROM act, max_conn m),
        'storage', jsonb_build_object(
            'database_bytes', pg_database_size(current_database()),
            'database_size', pg_size_pretty(pg_database_size(current_database())),
            'largest_tables', (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                                          'table_name', x.table_name, 'total_bytes', x.total_bytes,
                                          'size', pg_size_pretty(x.total_bytes), 'row_estimate', x.row_estimate)
                                          ORDER BY x.total_bytes DESC, x.table_name), '[]'::JSONB)
                               FROM (SELECT s.table_name, s.total_bytes, s.row_estimate
                                     FROM wfm_schema_info() s
                                     ORDER BY s.total_bytes DESC, s.table_name
                                     LIMIT 10) x)),
        'cache', (SELECT jsonb_build_object(
                      'blks_hit', db.blks_hit, 'blks_read', db.blks_read,
                      'hit_ratio_pct', round(100.0 * db.blks_hit / NULLIF(db.blks_hit + db.blks_read, 0), 2))
                  FROM db),
        'transactions', (SELECT jsonb_build_object(
                             'commits', db.xact_commit, 'rollbacks', db.xact_rollback,
                             'rollback_pct', round(100.0 * db.xact_rollback
                                                   / NULLIF(db.xact_commit + db.xact_rollback, 0), 2),
                             'deadlocks', db.deadlocks)
                         FROM db),
        'rows', (SELECT jsonb_build_object(
                     'returned', db.tup_returned, 'fetched', db.tup_fetched, 'inserted', db.tup_inserted,
                     'updated', db.tup_updated, 'deleted', db.tup_deleted)
                 FROM db),
        'temp_files', (SELECT db.temp_files FROM db),
        'temp_bytes', (SELECT db.temp_bytes FROM db),
        'stats_reset', (SELECT db.stats_reset FROM db),
        'settings', (SELECT jsonb_object_agg(s.name, s.setting || COALESCE(s.unit, ''))
                     FROM pg_settings s
                     WHERE s.name IN ('shared_buffers', 'work_mem', 'maintenance_work_mem', 'effective_cache_size')),
        'recommendations', (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                                       'rule_code', r.rule_code, 'metric_name', r.metric_name,
                                       'metric_value', m.metric_value, 'comparison', r.comparison,
                                       'threshold_value', r.threshold_value, 'priority', r.priority,
                                       'suggestion', r.suggestion, 'impact', r.impact)
                                       ORDER BY r.priority, r.rule_code), '[]'::JSONB)
                            FROM wfm_database_metrics() m
                            JOIN optimization_rules r ON r.metric_name = m.metric_name AND r.is_active
                            WHERE wfm_rule_matches(r.comparison, m.metric_value, r.threshold_value)))
$$;

-- ---------------------------------------------------------------------------
-- Volumes: wfm_generate (generate.sql calls it with numbers from the scale)
-- ---------------------------------------------------------------------------

-- Erlang C of p_traffic Erlangs for 1 .. p_max_agents agents (1 where the
-- agents cannot carry the traffic), by one Erlang B recursion: a row of the
-- lookup grid of wfm_generate.
CREATE OR REPLACE FUNCTION wfm_erlang_c_row(p_traffic DOUBLE PRECISION, p_max_agents INTEGER)
RETURNS DOUBLE PRECISION[]
LANGUAGE plpgsql
IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    b   DOUBLE PRECISION := 1.0;
    out DOUBLE PRECISION[] := '{}';
BEGIN
    FOR n IN 1 .. p_max_agents LOOP
        b := p_traffic * b / (n + p_traffic * b);
        out := out || CASE WHEN n <= p_traffic THEN 1.0::DOUBLE PRECISION
                           ELSE n * b / (n - p_traffic * (1 - b)) END;
    END LOOP;
    RETURN out;
END;
$$;

-- Replace the generated data set of the tenant by p_services voice services
-- (service_code GEN-0001..., is_generated) with p_days days of 15-minute
-- contact statistics up to the start of the current UTC day (p_services x
-- p_days x 96 rows), and p_agents_per_service agents each (is_generated)
-- with one agent_activity row per working day (5 days in 7). Everything
-- generated before, for any tenant, is deleted first (p_services or p_days 0
-- only deletes). The series is reproducible (setseed) and shaped like a
-- contact centre: two daily peaks (10:30 and 15:00 UTC) and a small evening
-- one, busy Mondays and quiet weekends, a yearly swell and slight growth,
-- +-10 % noise; staffing follows the square-root rule with a random safety
-- margin, and the probability of waiting is Erlang C (from a grid of exact
-- values by traffic in tenths of an Erlang and agents), from which answers
-- within 10/20/30/60 s, abandonment and ASA follow. Set-based INSERT ...
-- SELECT over one generate_series, in time order (interval, then service),
-- as an ACD delivers intervals: the rows of a period lie together on disk. Returns jsonb: tenant_id, services, agents,
-- days, contact_statistics_rows, agent_activity_rows, deleted_contact_statistics_rows,
-- from, to, seconds. Errors: WFM_INVALID_PARAMETER.
CREATE OR REPLACE FUNCTION wfm_generate(p_days INTEGER, p_services INTEGER, p_tenant INTEGER DEFAULT 1,
                                        p_agents_per_service INTEGER DEFAULT 10)
RETURNS JSONB
LANGUAGE plpgsql
AS $$
DECLARE
    v_started  TIMESTAMPTZ := clock_timestamp();
    v_to       TIMESTAMPTZ := date_trunc('day', now(), 'UTC');
    v_from     TIMESTAMPTZ;
    v_deleted  BIGINT;
    v_stats    BIGINT := 0;
    v_activity BIGINT := 0;
    v_agents   BIGINT := 0;
    v_sids     INTEGER[];
    v_ahts     INTEGER[];
    v_grid     DOUBLE PRECISION[];
    v_max_tenths INTEGER;
    v_max_agents INTEGER;
BEGIN
    IF p_days IS NULL OR p_days NOT BETWEEN 0 AND 3660 THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER' USING DETAIL = 'days must be 0 to 3660';
    END IF;
    IF p_services IS NULL OR p_services NOT BETWEEN 0 AND 10000 THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER' USING DETAIL = 'services must be 0 to 10000';
    END IF;
    IF p_tenant IS NULL OR p_agents_per_service IS NULL OR p_agents_per_service NOT BETWEEN 0 AND 1000 THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER' USING DETAIL = 'a tenant and 0 to 1000 agents per service';
    END IF;
    v_from := v_to - make_interval(days => p_days);

    -- what was generated before (the bulk rows first: cheaper than cascades)
    DELETE FROM agent_activity aa USING agents a WHERE a.agent_id = aa.agent_id AND a.is_generated;
    DELETE FROM contact_statistics cs USING services s WHERE s.service_id = cs.service_id AND s.is_generated;
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    DELETE FROM agents WHERE is_generated;
    DELETE FROM services WHERE is_generated;
    IF p_services = 0 OR p_days = 0 THEN
        RETURN jsonb_build_object('tenant_id', p_tenant, 'services', 0, 'agents', 0, 'days', p_days,
                                  'contact_statistics_rows', 0, 'agent_activity_rows', 0,
                                  'deleted_contact_statistics_rows', v_deleted, 'from', v_from, 'to', v_to,
                                  'seconds', round(extract(epoch FROM clock_timestamp() - v_started)::NUMERIC, 2));
    END IF;

    PERFORM setseed(0.4242);
    INSERT INTO services (tenant_id, service_code, service_name, channel, sl_target_pct, sl_threshold_seconds,
                          target_aht_seconds, is_generated)
    SELECT p_tenant, format('GEN-%s', lpad(i::TEXT, 4, '0')), format('Generated service %s', i), 'voice', 80, 20,
           180 + (i * 37) % 240, TRUE
    FROM generate_series(1, p_services) AS i;

    -- Exact Erlang C by traffic (in tenths of an Erlang, up to what the volume formula below can
    -- reach) and agent count: v_grid[tenths][agents].
    v_max_tenths := ceil(10 * 84 * 1.13 * 1.18 * (1.09 + 0.0003 * p_days) * 1.1 * 1.1 * 419 / 900)::INTEGER;
    v_max_agents := ceil(v_max_tenths / 10.0 + 3 * sqrt(v_max_tenths / 10.0) + 5)::INTEGER;
    SELECT array_agg(wfm_erlang_c_row(k / 10.0, v_max_agents) ORDER BY k) INTO v_grid
    FROM generate_series(1, v_max_tenths) AS k;
    SELECT array_agg(sv.service_id ORDER BY sv.service_id), array_agg(sv.target_aht_seconds ORDER BY sv.service_id)
      INTO v_sids, v_ahts
    FROM services sv WHERE sv.is_generated;

    -- One series over (interval, service), time-major like an ACD's interval feed, so the rows of
    -- a period lie together on disk.
    INSERT INTO contact_statistics (tenant_id, service_id, interval_start, offered, answered, abandoned,
                                    answered_within_threshold, answered_within_10s, answered_within_20s,
                                    answered_within_30s, answered_within_60s, talk_seconds, hold_seconds,
                                    wrap_seconds, wait_seconds, max_wait_seconds, agents_staffed)
    SELECT p_tenant, v_sids[t.k], t.ts, v.offered, v.offered - ab.abandoned, ab.abandoned,
           w.w20, w.w10, w.w20, w.w30, w.w60,
           round((v.offered - ab.abandoned) * v.aht * 0.72), round((v.offered - ab.abandoned) * v.aht * 0.06),
           round((v.offered - ab.abandoned) * v.aht * 0.22),
           round((v.offered - ab.abandoned) * q.asa),
           CASE WHEN v.offered - ab.abandoned > 0 THEN round(q.asa * (2 + 3 * random()) + 30 * q.pw)::INTEGER END,
           st.agents
    FROM generate_series(0, p_days * 96 * p_services - 1) AS i
    CROSS JOIN LATERAL (
        SELECT i % p_services + 1 AS k,
               v_from + (i / p_services) * INTERVAL '15 minutes' AS ts,
               ((i / p_services) % 96) / 4.0 + 0.125 AS h,
               i / p_services / 96 AS d
    ) AS t
    CROSS JOIN LATERAL (
        SELECT round((25 + (t.k * 17) % 60)
                     * (0.04 + exp(-(((t.h - 10.5) / 2.2) ^ 2)) + 0.85 * exp(-(((t.h - 15) / 2.5) ^ 2))
                        + 0.25 * exp(-(((t.h - 20) / 1.5) ^ 2)))
                     * CASE extract(isodow FROM t.ts AT TIME ZONE 'UTC')
                           WHEN 1 THEN 1.18 WHEN 2 THEN 1.08 WHEN 3 THEN 1.02 WHEN 4 THEN 1.0
                           WHEN 5 THEN 0.95 WHEN 6 THEN 0.55 ELSE 0.42 END
                     * (1 + 0.08 * sin(2 * pi() * (t.d + extract(doy FROM v_from)) / 365.25) + 0.0003 * t.d)
                     * (0.9 + 0.2 * random()))::INTEGER AS offered,
               v_ahts[t.k] * (0.9 + 0.2 * random()) AS aht
    ) AS v
    CROSS JOIN LATERAL (
        SELECT v.offered * v.aht / 900.0 AS a
    ) AS tr
    CROSS JOIN LATERAL (
        -- square-root staffing with a random safety margin
        SELECT CASE WHEN tr.a = 0 THEN 1
                    ELSE ceil(tr.a + sqrt(tr.a) * (0.2 + 1.4 * random()) + 0.5)::INTEGER END AS agents
    ) AS st
    CROSS JOIN LATERAL (
        -- waiting time is exponential with rate (n - A) / AHT for the calls that wait
        SELECT CASE WHEN v.offered = 0 THEN 0.0
                    ELSE COALESCE(v_grid[GREATEST(1, round(tr.a * 10))::INTEGER][st.agents], 1.0) END AS pw,
               GREATEST(st.agents - tr.a, 0.01) / v.aht AS rate
    ) AS q0
    CROSS JOIN LATERAL (
        SELECT q0.pw, q0.rate, q0.pw / q0.rate AS asa
    ) AS q
    CROSS JOIN LATERAL (
        SELECT LEAST(v.offered, round(v.offered * q.pw * (0.04 + 0.1 * random())))::INTEGER AS abandoned
    ) AS ab
    CROSS JOIN LATERAL (
        SELECT round((v.offered - ab.abandoned) * (1 - q.pw * exp(-q.rate * 10)))::INTEGER AS w10,
               round((v.offered - ab.abandoned) * (1 - q.pw * exp(-q.rate * 20)))::INTEGER AS w20,
               round((v.offered - ab.abandoned) * (1 - q.pw * exp(-q.rate * 30)))::INTEGER AS w30,
               round((v.offered - ab.abandoned) * (1 - q.pw * exp(-q.rate * 60)))::INTEGER AS w60
    ) AS w;
    GET DIAGNOSTICS v_stats = ROW_COUNT;

    IF p_agents_per_service > 0 THEN
        INSERT INTO agents (tenant_id, employee_number, full_name, email, primary_service_id, employment_type,
                            weekly_hours, hire_date, is_generated)
        SELECT p_tenant, format('GEN-%s-%s', lpad(s.k::TEXT, 4, '0'), lpad(j::TEXT, 3, '0')),
               format('Generated agent %s-%s', s.k, j),
               format('gen.%s.%s@wfm.example', s.k, j), s.service_id,
               CASE WHEN j % 5 = 0 THEN 'part_time' ELSE 'full_time' END,
               CASE WHEN j % 5 = 0 THEN 20 ELSE 40 END,
               (v_to AT TIME ZONE 'UTC')::DATE - (400 + (s.k * 31 + j * 17) % 900)::INTEGER, TRUE
        FROM (SELECT sv.service_id, row_number() OVER (ORDER BY sv.service_id) AS k
              FROM services sv WHERE sv.is_generated) AS s
        CROSS JOIN generate_series(1, p_agents_per_service) AS j;
        GET DIAGNOSTICS v_agents = ROW_COUNT;

        INSERT INTO agent_activity (tenant_id, agent_id, activity_date, service_id, login_seconds, ready_seconds,
                                    talk_seconds, hold_seconds, wrap_seconds, not_ready_seconds, calls_handled,
                                    transfers, scheduled_seconds, adherent_seconds)
        SELECT p_tenant, a.agent_id, x.day, a.primary_service_id, x.login,
               x.login - x.handling - x.not_ready, round(x.handling * 0.72), round(x.handling * 0.06),
               x.handling - round(x.handling * 0.72) - round(x.handling * 0.06), x.not_ready,
               GREATEST(1, round(x.handling / svc.target_aht_seconds::NUMERIC))::INTEGER,
               round(x.handling / svc.target_aht_seconds::NUMERIC * 0.04)::INTEGER,
               x.scheduled, LEAST(x.scheduled, round(x.scheduled * (0.86 + 0.12 * random())))::INTEGER
        FROM agents a
        JOIN services svc ON svc.service_id = a.primary_service_id
        CROSS JOIN generate_series(0, p_days - 1) AS d
        CROSS JOIN LATERAL (
            SELECT (v_from AT TIME ZONE 'UTC')::DATE + d AS day,
                   CASE WHEN a.weekly_hours >= 40 THEN 28800 ELSE 14400 END AS scheduled
        ) AS base
        CROSS JOIN LATERAL (
            SELECT base.day, base.scheduled,
                   round(base.scheduled * (0.95 + 0.08 * random()))::INTEGER AS login,
                   round(base.scheduled * (0.55 + 0.25 * random()))::INTEGER AS handling,
                   round(base.scheduled * (0.05 + 0.06 * random()))::INTEGER AS not_ready
        ) AS x
        WHERE a.is_generated AND (d + a.agent_id) % 7 < 5;
        GET DIAGNOSTICS v_activity = ROW_COUNT;
    END IF;

    RETURN jsonb_build_object('tenant_id', p_tenant, 'services', p_services, 'agents', v_agents, 'days', p_days,
                              'contact_statistics_rows', v_stats, 'agent_activity_rows', v_activity,
                              'deleted_contact_statistics_rows', v_deleted, 'from', v_from, 'to', v_to,
                              'seconds', round(extract(epoch FROM clock_timestamp() - v_started)::NUMERIC, 2));
END;
$$;
