-- wfm 004: the rows that publish the WFM API (seeds-docs/000 and 001).
--
--   error codes        every code the functions of 002 raise, plus WFM_AGENT_NOT_FOUND,
--                      in English with Russian localized_messages
--   helpers            wfm_api_scope, wfm_api_period, wfm_api_calculate_forecast,
--                      wfm_api_trigger_syncs, wfm_api_optimization_suggest,
--                      wfm_api_bulk_check: small functions the templates below call (the
--                      computations are part 1's, in 002)
--   endpoints          32 api_endpoint_mappings rows: the 18 of 000 under
--                      /api/v1/db/database/ and the 10 of 001 under /api/v1/performance/
--                      and /api/v1/integration/, and 4 bulk-path imports (bulk_import:
--                      NDJSON or CSV, streamed) under /api/v1/db/database/bulk/import/
--   schemas            JSON Schemas (draft 2020-12) for every POST body (a bulk import's:
--                      one record), and for the query
--                      string of every GET that takes filters (closed: a misspelt filter is
--                      a 400, never silently ignored)
--   sanitization       three rules scoped to WFM endpoints (trim and lower-case names)
--   cache rules        api_cache_config rows: which other tables each cached read depends
--                      on, and which other tables each write changes
--
-- Tenant isolation: every template binds the tenant from the caller's tenant_id
-- claim ("in": "auth"); a service, agent, connection or forecast named in a
-- filter must be the caller's (wfm_api_scope raises the matching *_NOT_FOUND
-- code, as for a row that does not exist). Reads need any authenticated
-- principal; writes need wfm_admin or planner; bulk import and maintenance
-- cleanup need wfm_admin. GET /api/v1/db/database/health is the only endpoint
-- without authentication (it shows no tenant data).
--
-- Every GET is a read-only SELECT (it runs on a read-only session); POSTs that
-- write run on the primary (database_operation INSERT, UPDATE or DELETE), the
-- two POSTs that only compute or export are SELECTs.
--
-- Idempotent: error codes upsert on error_code, mappings on (endpoint_path,
-- http_method), schemas on (endpoint_mapping_id, applies_to), cache rows on
-- endpoint_mapping_id, each only when something differs (re-applying bumps no
-- version); functions are CREATE OR REPLACE; sanitization rules are updated in
-- place or inserted when absent.

-- ---------------------------------------------------------------------------
-- Error codes (before the mappings that name them)
-- ---------------------------------------------------------------------------

INSERT INTO api_error_codes AS e
    (error_code, http_status_code, error_category, error_message, error_details,
     suggested_action, localized_messages)
VALUES
('WFM_INVALID_PARAMETER', 400, 'validation',
 'Invalid parameter value',
 '{"domain": "wfm"}',
 'Read the detail: it names the parameter and the values it accepts.',
 '{"ru": "Недопустимое значение параметра"}'),
('WFM_INVALID_DATE_RANGE', 400, 'validation',
 'Invalid period: the start must be before the end, and the period must not be longer than allowed',
 '{"domain": "wfm", "parameters": ["from", "to"]}',
 'Send both ends as ISO 8601 dates or timestamps, the start before the end; the detail gives the longest period allowed.',
 '{"ru": "Недопустимый период: начало должно быть раньше окончания, а длина периода не должна превышать допустимую"}'),
('WFM_SERVICE_NOT_FOUND', 404, 'business',
 'Service not found',
 '{"domain": "wfm", "resource": "service"}',
 'Check the service_id; GET /api/v1/db/database/realtime-status lists your services.',
 '{"ru": "Сервис (очередь) не найден"}'),
('WFM_AGENT_NOT_FOUND', 404, 'business',
 'Agent not found',
 '{"domain": "wfm", "resource": "agent"}',
 'Check the agent_id; GET /api/v1/db/database/agent-activity lists your agents.',
 '{"ru": "Оператор не найден"}'),
('WFM_FORECAST_NOT_FOUND', 404, 'business',
 'Forecast not found',
 '{"domain": "wfm", "resource": "forecast"}',
 'Check the forecast_id; GET /api/v1/db/database/forecasts lists your forecasts.',
 '{"ru": "Прогноз не найден"}'),
('WFM_FORECAST_EMPTY', 422, 'business',
 'The forecast has no interval data',
 '{"domain": "wfm", "resource": "forecast"}',
 'Create the forecast from history (service_id, period_start, period_end) before calculating it.',
 '{"ru": "В прогнозе нет данных по интервалам"}'),
('WFM_FORECAST_PUBLISHED', 409, 'business',
 'The forecast is published and cannot be changed',
 '{"domain": "wfm", "resource": "forecast"}',
 'Create a new forecast for the period instead of changing the published one.',
 '{"ru": "Прогноз опубликован и не может быть изменён"}'),
('WFM_NO_HISTORY', 422, 'business',
 'Not enough contact history to build a forecast',
 '{"domain": "wfm", "resource": "contact_statistics"}',
 'Load contact statistics for the weeks before the period (POST /api/v1/db/database/bulk/import) or lengthen history_weeks.',
 '{"ru": "Недостаточно исторических данных для построения прогноза"}'),
('WFM_STAFFING_UNREACHABLE', 422, 'business',
 'The service level target cannot be reached with any staffing',
 '{"domain": "wfm", "resource": "forecast"}',
 'Lower the target service level, raise the answer time threshold or the occupancy cap.',
 '{"ru": "Целевой уровень обслуживания недостижим ни при какой численности операторов"}'),
('WFM_UNKNOWN_METRIC', 422, 'validation',
 'Unknown metric',
 '{"domain": "wfm", "resource": "metric"}',
 'Use a metric_name of GET /api/v1/db/database/performance-metrics.',
 '{"ru": "Неизвестный показатель"}'),
('WFM_INVALID_THRESHOLDS', 422, 'validation',
 'Invalid alert thresholds: the green threshold must be on the better side of the yellow one',
 '{"domain": "wfm", "resource": "threshold_alert"}',
 'For a metric that is better when higher, send green >= yellow; when lower, green <= yellow.',
 '{"ru": "Недопустимые пороги оповещения: зелёный порог должен быть лучше жёлтого"}'),
('WFM_UNSUPPORTED_SL_THRESHOLD', 400, 'validation',
 'Unsupported service level threshold: use 10, 20, 30 or 60 seconds',
 '{"domain": "wfm", "parameters": ["threshold_seconds"], "supported": [10, 20, 30, 60]}',
 'Measure against 10, 20, 30 or 60 seconds, or pass own_targets=true for each service''s own threshold.',
 '{"ru": "Неподдерживаемый порог уровня обслуживания: используйте 10, 20, 30 или 60 секунд"}'),
('WFM_UNKNOWN_TABLE', 404, 'business',
 'Unknown or unsupported table',
 '{"domain": "wfm", "resource": "table"}',
 'The detail lists the tables this operation supports.',
 '{"ru": "Неизвестная или неподдерживаемая таблица"}'),
('WFM_CONNECTION_NOT_FOUND', 404, 'business',
 'Integration connection not found',
 '{"domain": "wfm", "resource": "integration_connection"}',
 'Check the connection_id; GET /api/v1/db/database/integrations lists your connections.',
 '{"ru": "Интеграционное подключение не найдено"}'),
('WFM_CONNECTION_INACTIVE', 409, 'business',
 'The integration connection is switched off',
 '{"domain": "wfm", "resource": "integration_connection"}',
 'Switch the connection on before synchronising it.',
 '{"ru": "Интеграционное подключение отключено"}'),
('WFM_SYNC_IN_PROGRESS', 409, 'business',
 'A synchronisation of this connection is already queued or running',
 '{"domain": "wfm", "resource": "sync_job", "retryable": true}',
 'Wait for the job named in the detail to finish (GET /api/v1/integration/health/status), then retry.',
 '{"ru": "Синхронизация этого подключения уже поставлена в очередь или выполняется"}'),
('WFM_SYNC_JOB_NOT_FOUND', 404, 'business',
 'Synchronisation job not found',
 '{"domain": "wfm", "resource": "sync_job"}',
 'Check the job id; GET /api/v1/integration/logs/activity shows the jobs of your connections.',
 '{"ru": "Задание синхронизации не найдено"}'),
('WFM_IMPORT_INVALID', 422, 'validation',
 'Invalid import data',
 '{"domain": "wfm", "resource": "bulk_import"}',
 'The detail names the first bad row (counted from 1); nothing was imported.',
 '{"ru": "Недопустимые данные для импорта"}'),
('WFM_IMPORT_TOO_LARGE', 413, 'validation',
 'Too many rows in one import (at most 10000)',
 '{"domain": "wfm", "resource": "bulk_import", "max_rows": 10000}',
 'Split the rows into imports of at most 10000 rows.',
 '{"ru": "Слишком много строк в одном импорте (не более 10000)"}')
ON CONFLICT (error_code) DO UPDATE SET
    http_status_code   = EXCLUDED.http_status_code,
    error_category     = EXCLUDED.error_category,
    error_message      = EXCLUDED.error_message,
    error_details      = EXCLUDED.error_details,
    suggested_action   = EXCLUDED.suggested_action,
    localized_messages = EXCLUDED.localized_messages
WHERE (e.http_status_code, e.error_category, e.error_message, e.error_details,
       e.suggested_action, e.localized_messages)
      IS DISTINCT FROM
      (EXCLUDED.http_status_code, EXCLUDED.error_category, EXCLUDED.error_message,
       EXCLUDED.error_details, EXCLUDED.suggested_action, EXCLUDED.localized_messages);

-- ---------------------------------------------------------------------------
-- Helpers the templates call
-- ---------------------------------------------------------------------------

-- The caller's tenant, after checking that every id a request names belongs
-- to it (WFM_SERVICE_NOT_FOUND, WFM_AGENT_NOT_FOUND, WFM_CONNECTION_NOT_FOUND,
-- WFM_FORECAST_NOT_FOUND; another tenant's row is reported like a missing
-- one). Templates pass it as the tenant argument of a function (arguments are
-- evaluated before the function runs) or as the first FROM item that a
-- LATERAL subquery references, so the check runs even when no row matches.
CREATE OR REPLACE FUNCTION wfm_api_scope(p_tenant INTEGER, p_service_id INTEGER DEFAULT NULL,
                                         p_agent_id INTEGER DEFAULT NULL,
                                         p_connection_id INTEGER DEFAULT NULL,
                                         p_forecast_id INTEGER DEFAULT NULL)
RETURNS INTEGER
LANGUAGE plpgsql
STABLE
AS $$
BEGIN
    IF p_tenant IS NULL THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER' USING DETAIL = 'A tenant is required';
    END IF;
    IF p_service_id IS NOT NULL THEN
        PERFORM wfm_assert_service(p_tenant, p_service_id);
    END IF;
    IF p_agent_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM agents a WHERE a.agent_id = p_agent_id AND a.tenant_id = p_tenant) THEN
        RAISE EXCEPTION 'WFM_AGENT_NOT_FOUND' USING DETAIL = format('Agent %s not found', p_agent_id);
    END IF;
    IF p_connection_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM integration_connections c
                       WHERE c.connection_id = p_connection_id AND c.tenant_id = p_tenant) THEN
        RAISE EXCEPTION 'WFM_CONNECTION_NOT_FOUND'
            USING DETAIL = format('Integration connection %s not found', p_connection_id);
    END IF;
    IF p_forecast_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM forecasts f WHERE f.forecast_id = p_forecast_id AND f.tenant_id = p_tenant) THEN
        RAISE EXCEPTION 'WFM_FORECAST_NOT_FOUND' USING DETAIL = format('Forecast %s not found', p_forecast_id);
    END IF;
    RETURN p_tenant;
END;
$$;

-- A period [period_start, period_end) from optional ends: the start defaults
-- to the end minus p_default_days, else the start of the current UTC day; the
-- end to the start plus p_default_days. At most p_max_days long
-- (WFM_INVALID_DATE_RANGE).
CREATE OR REPLACE FUNCTION wfm_api_period(p_from TIMESTAMPTZ, p_to TIMESTAMPTZ, p_default_days INTEGER,
                                          p_max_days INTEGER)
RETURNS TABLE (period_start TIMESTAMPTZ, period_end TIMESTAMPTZ)
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    v_from TIMESTAMPTZ := COALESCE(p_from, p_to - make_interval(days => p_default_days),
                                   date_trunc('day', now(), 'UTC'));
    v_to   TIMESTAMPTZ := COALESCE(p_to, v_from + make_interval(days => p_default_days));
BEGIN
    PERFORM wfm_check_range(v_from, v_to, p_max_days);
    RETURN QUERY SELECT v_from, v_to;
END;
$$;

-- POST forecasts/calculate: calculate an existing forecast (p_forecast_id),
-- or create the seasonal-average forecast of a service for a period from its
-- history (refreshing the same draft if there is one) and calculate it. The
-- staffing is Erlang C (wfm_calculate_forecast); the answer is its summary
-- plus forecast_name, status, method and created.
CREATE OR REPLACE FUNCTION wfm_api_calculate_forecast(p_tenant INTEGER, p_forecast_id INTEGER,
                                                      p_service_id INTEGER, p_period_start DATE,
                                                      p_period_end DATE, p_history_weeks INTEGER,
                                                      p_interval_minutes INTEGER, p_forecast_name TEXT,
                                                      p_target_sl NUMERIC, p_target_seconds INTEGER,
                                                      p_max_occupancy NUMERIC, p_shrinkage NUMERIC,
                                                      p_requested_by TEXT)
RETURNS JSONB
LANGUAGE plpgsql
AS $$
DECLARE
    v_id      INTEGER := p_forecast_id;
    v_created BOOLEAN := FALSE;
    v_summary JSONB;
BEGIN
    IF v_id IS NULL THEN
        IF p_service_id IS NULL OR p_period_start IS NULL OR p_period_end IS NULL THEN
            RAISE EXCEPTION 'WFM_INVALID_PARAMETER'
                USING DETAIL = 'Send forecast_id, or service_id with period_start and period_end';
        END IF;
        v_created := NOT EXISTS (
            SELECT 1 FROM forecasts f
            WHERE f.tenant_id = p_tenant AND f.service_id = p_service_id AND f.period_start = p_period_start
              AND f.period_end = p_period_end AND f.interval_minutes = COALESCE(p_interval_minutes, 15));
        v_id := wfm_create_forecast(p_tenant, p_service_id, p_period_start, p_period_end,
                                    COALESCE(p_history_weeks, 4), COALESCE(p_interval_minutes, 15),
                                    p_forecast_name, p_requested_by);
    ELSIF p_service_id IS NOT NULL OR p_period_start IS NOT NULL OR p_period_end IS NOT NULL THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER'
            USING DETAIL = 'forecast_id names an existing forecast: leave out service_id and the period';
    END IF;
    v_summary := wfm_calculate_forecast(p_tenant, v_id, p_target_sl, p_target_seconds, p_max_occupancy,
                                        p_shrinkage);
    RETURN v_summary || (SELECT jsonb_build_object('forecast_name', f.forecast_name, 'status', f.status,
                                                   'method', f.method, 'created', v_created)
                         FROM forecasts f WHERE f.forecast_id = v_id);
END;
$$;

-- POST /api/v1/integration/sync/trigger: queue a synchronisation of several
-- connections at once (wfm_trigger_sync for each): the named ones
-- (p_connection_ids, each must be the tenant's: WFM_CONNECTION_NOT_FOUND), or
-- the active ones of a system type, or every active one. A connection that is
-- busy (WFM_SYNC_IN_PROGRESS) or switched off (WFM_CONNECTION_INACTIVE) is
-- skipped and reported, the others are queued; nothing to sync at all is
-- WFM_CONNECTION_NOT_FOUND. Returns jsonb: requested_at, queued_count,
-- skipped_count, jobs (wfm_trigger_sync's answers), skipped (connection_id,
-- connection_name, system_type, reason = the code, detail).
CREATE OR REPLACE FUNCTION wfm_api_trigger_syncs(p_tenant INTEGER, p_connection_ids INTEGER[],
                                                 p_system_type TEXT, p_sync_type TEXT, p_entities TEXT[],
                                                 p_priority TEXT, p_requested_by TEXT)
RETURNS JSONB
LANGUAGE plpgsql
AS $$
DECLARE
    v_missing INTEGER;
    c         RECORD;
    v_jobs    JSONB := '[]';
    v_skipped JSONB := '[]';
    v_code    TEXT;
    v_detail  TEXT;
BEGIN
    IF p_system_type IS NOT NULL AND p_system_type NOT IN ('1c_zup', 'contact_center', 'ldap', 'webhook') THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER'
            USING DETAIL = 'system_type must be 1c_zup, contact_center, ldap or webhook';
    END IF;
    SELECT x.id INTO v_missing
    FROM unnest(p_connection_ids) AS x (id)
    WHERE x.id IS NULL
       OR NOT EXISTS (SELECT 1 FROM integration_connections ic WHERE ic.connection_id = x.id AND ic.tenant_id = p_tenant)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'WFM_CONNECTION_NOT_FOUND'
            USING DETAIL = format('Integration connection %s not found', COALESCE(v_missing::TEXT, 'NULL'));
    END IF;
    FOR c IN
        SELECT ic.connection_id, ic.connection_name, ic.system_type
        FROM integration_connections ic
        WHERE ic.tenant_id = p_tenant
          AND (p_connection_ids IS NULL OR ic.connection_id = ANY (p_connection_ids))
          AND (p_system_type IS NULL OR ic.system_type = p_system_type)
          AND (p_connection_ids IS NOT NULL OR ic.is_active)
        ORDER BY ic.connection_id
    LOOP
        BEGIN
            v_jobs := v_jobs || jsonb_build_array(
                wfm_trigger_sync(p_tenant, c.connection_id, p_sync_type, p_entities, p_priority, p_requested_by));
        EXCEPTION WHEN raise_exception THEN
            GET STACKED DIAGNOSTICS v_code = MESSAGE_TEXT, v_detail = PG_EXCEPTION_DETAIL;
            IF v_code NOT IN ('WFM_SYNC_IN_PROGRESS', 'WFM_CONNECTION_INACTIVE') THEN
                RAISE;
            END IF;
            v_skipped := v_skipped || jsonb_build_array(jsonb_build_object(
                'connection_id', c.connection_id, 'connection_name', c.connection_name,
                'system_type', c.system_type, 'reason', v_code, 'detail', v_detail));
        END;
    END LOOP;
    IF jsonb_array_length(v_jobs) + jsonb_array_length(v_skipped) = 0 THEN
        RAISE EXCEPTION 'WFM_CONNECTION_NOT_FOUND'
            USING DETAIL = format('No active integration connection%s',
                                  CASE WHEN p_system_type IS NOT NULL
                                       THEN format(' of type %s', p_system_type) ELSE '' END);
    END IF;
    RETURN jsonb_build_object('requested_at', now(), 'queued_count', jsonb_array_length(v_jobs),
                              'skipped_count', jsonb_array_length(v_skipped), 'jobs', v_jobs,
                              'skipped', v_skipped);
END;
$$;

-- POST /api/v1/performance/optimization/suggest: the optimiser's rules that
-- fire on the tenant's metrics over [p_from, p_to) (default: the last 7 days)
-- and on the database's own (wfm_optimization_suggestions), filtered by
-- service, categories, priority (1 = most urgent .. p_max_priority) and
-- whether to include the database rules; most urgent first, with a summary
-- (count, by category, by cost impact, how many need a labour-law review).
-- Read-only. Errors: WFM_SERVICE_NOT_FOUND, WFM_INVALID_DATE_RANGE.
CREATE OR REPLACE FUNCTION wfm_api_optimization_suggest(p_tenant INTEGER, p_from TIMESTAMPTZ, p_to TIMESTAMPTZ,
                                                        p_service_id INTEGER, p_categories TEXT[],
                                                        p_max_priority INTEGER, p_include_database BOOLEAN)
RETURNS JSONB
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    v_to     TIMESTAMPTZ := COALESCE(p_to, now());
    v_from   TIMESTAMPTZ := COALESCE(p_from, COALESCE(p_to, now()) - INTERVAL '7 days');
    v_result JSONB;
BEGIN
    PERFORM wfm_api_scope(p_tenant, p_service_id => p_service_id);
    WITH s AS (
        SELECT x.*
        FROM wfm_optimization_suggestions(p_tenant, v_from, v_to) x
        WHERE (p_service_id IS NULL OR x.service_id = p_service_id)
          AND (p_categories IS NULL OR x.category = ANY (p_categories))
          AND x.priority <= COALESCE(p_max_priority, 5)
          AND (COALESCE(p_include_database, TRUE) OR x.metric_name NOT LIKE 'db\_%')
    )
    SELECT jsonb_build_object(
        'period_start', v_from,
        'period_end', v_to,
        'service_id', p_service_id,
        'generated_at', now(),
        'summary', jsonb_build_object(
            'suggestions', (SELECT count(*) FROM s),
            'by_category', COALESCE((SELECT jsonb_object_agg(g.category, g.n)
                                     FROM (SELECT s.category, count(*) AS n FROM s GROUP BY s.category) g),
                                    '{}'::JSONB),
            'by_cost_impact', COALESCE((SELECT jsonb_object_agg(g.cost_impact, g.n)
                                        FROM (SELECT s.cost_impact, count(*) AS n FROM s GROUP BY s.cost_impact) g),
                                       '{}'::JSONB),
            'labor_review_needed', (SELECT count(*) FROM s WHERE s.labor_compliance_note IS NOT NULL)),
        'suggestions', COALESCE((SELECT jsonb_agg(to_jsonb(s.*) ORDER BY s.priority, s.service_id NULLS FIRST,
                                                  s.rule_code, s.metric_name)
                                 FROM s), '[]'::JSONB))
      INTO v_result;
    RETURN v_result;
END;
$$;

-- The bulk-path imports (POST /api/v1/db/database/bulk/import/<table>, NDJSON or
-- CSV): the caller's tenant, after checking the records COPYed into the staging
-- table bulk_records (engine/bulk.py) as wfm_bulk_import checks its JSON rows:
-- every service, agent, group and schedule template named must be the tenant's,
-- and no two records may have the same key (contact_statistics: service_id and
-- interval_start, agent_activity: agent_id and activity_date, agents:
-- employee_number); a statistics interval must start on a 15-minute boundary.
-- The first problem, by line of the body, is WFM_IMPORT_INVALID ("Line 7:
-- service 5 not found"); the import then writes nothing. Required fields and
-- types are the record schemas' (below). Templates call it as their first FROM
-- item, so it runs before any record is written; only the branch of p_table
-- runs, so each reads only the columns its import stages.
CREATE OR REPLACE FUNCTION wfm_api_bulk_check(p_tenant INTEGER, p_table TEXT)
RETURNS INTEGER
LANGUAGE plpgsql
STABLE
AS $$
DECLARE
    v_bad RECORD;
BEGIN
    IF p_tenant IS NULL THEN
        RAISE EXCEPTION 'WFM_INVALID_PARAMETER' USING DETAIL = 'A tenant is required';
    END IF;
    IF p_table = 'contact_statistics' THEN
        SELECT x.line, x.problem INTO v_bad
        FROM (
            SELECT r._line AS line, format('service %s not found', r.service_id) AS problem
            FROM bulk_records r
            WHERE NOT EXISTS (SELECT 1 FROM services s WHERE s.service_id = r.service_id AND s.tenant_id = p_tenant)
            UNION ALL
            SELECT r._line, format('interval_start %s is not on a 15-minute boundary', r.interval_start)
            FROM bulk_records r
            WHERE r.interval_start <> date_bin('15 minutes', r.interval_start, TIMESTAMPTZ '2000-01-01 00:00+00')
            UNION ALL
            SELECT max(r._line), format('the same service_id and interval_start as line %s', min(r._line))
            FROM bulk_records r GROUP BY r.service_id, r.interval_start HAVING count(*) > 1
        ) x
        ORDER BY x.line LIMIT 1;
    ELSIF p_table = 'agent_activity' THEN
        SELECT x.line, x.problem INTO v_bad
        FROM (
            SELECT r._line AS line, format('agent %s not found', r.agent_id) AS problem
            FROM bulk_records r
            WHERE NOT EXISTS (SELECT 1 FROM agents a WHERE a.agent_id = r.agent_id AND a.tenant_id = p_tenant)
            UNION ALL
            SELECT r._line, format('service %s not found', r.service_id)
            FROM bulk_records r
            WHERE r.service_id IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM services s WHERE s.service_id = r.service_id AND s.tenant_id = p_tenant)
            UNION ALL
            SELECT max(r._line), format('the same agent_id and activity_date as line %s', min(r._line))
            FROM bulk_records r GROUP BY r.agent_id, r.activity_date HAVING count(*) > 1
        ) x
        ORDER BY x.line LIMIT 1;
    ELSIF p_table = 'agents' THEN
        SELECT x.line, x.problem INTO v_bad
        FROM (
            SELECT r._line AS line, format('group %s not found', r.group_id) AS problem
            FROM bulk_records r
            WHERE r.group_id IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM service_groups g WHERE g.group_id = r.group_id AND g.tenant_id = p_tenant)
            UNION ALL
            SELECT r._line, format('primary service %s not found', r.primary_service_id)
            FROM bulk_records r
            WHERE r.primary_service_id IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM services s
                              WHERE s.service_id = r.primary_service_id AND s.tenant_id = p_tenant)
            UNION ALL
            SELECT max(r._line), format('the same employee_number as line %s', min(r._line))
            FROM bulk_records r GROUP BY r.employee_number HAVING count(*) > 1
        ) x
        ORDER BY x.line LIMIT 1;
    ELSIF p_table = 'work_schedules' THEN
        SELECT x.line, x.problem INTO v_bad
        FROM (
            SELECT r._line AS line, format('agent %s not found', r.agent_id) AS problem
            FROM bulk_records r
            WHERE NOT EXISTS (SELECT 1 FROM agents a WHERE a.agent_id = r.agent_id AND a.tenant_id = p_tenant)
            UNION ALL
            SELECT r._line, format('service %s not found', r.service_id)
            FROM bulk_records r
            WHERE NOT EXISTS (SELECT 1 FROM services s WHERE s.service_id = r.service_id AND s.tenant_id = p_tenant)
            UNION ALL
            SELECT r._line, format('template %s not found', r.template_id)
            FROM bulk_records r
            WHERE r.template_id IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM schedule_templates t
                              WHERE t.template_id = r.template_id AND t.tenant_id = p_tenant)
        ) x
        ORDER BY x.line LIMIT 1;
    ELSE
        RAISE EXCEPTION 'WFM_UNKNOWN_TABLE'
            USING DETAIL = format('Cannot import into %s; importable tables: contact_statistics, '
                                  'agent_activity, agents, work_schedules',
                                  COALESCE(quote_literal(left(p_table, 80)), 'NULL'));
    END IF;
    IF FOUND THEN  -- the SELECT of p_table's branch found a problem
        RAISE EXCEPTION 'WFM_IMPORT_INVALID' USING DETAIL = format('Line %s: %s', v_bad.line, v_bad.problem);
    END IF;
    RETURN p_tenant;
END;
$$;

-- ---------------------------------------------------------------------------
-- Endpoint mappings
-- ---------------------------------------------------------------------------

INSERT INTO api_endpoint_mappings AS m
    (endpoint_path, http_method, service_name, database_operation, target_table, target_schema,
     query_template, query_parameters, result_mapping,
     cache_enabled, cache_ttl_seconds, rate_limit_per_minute,
     requires_auth, required_roles, required_permissions, is_active, statement_timeout_ms,
     description)
VALUES

-- 000: contact statistics and performance -------------------------------------

('/api/v1/db/database/contact-statistics', 'GET', 'wfm_statistics', 'SELECT', 'contact_statistics', 'public',
$sql$SELECT s.service_id, sv.service_code, s.period_start, s.intervals, s.offered, s.answered, s.abandoned,
       s.answered_within_threshold, s.service_level_pct, s.abandon_rate_pct, s.aht_seconds, s.asa_seconds,
       s.max_wait_seconds, s.avg_agents_staffed
FROM wfm_contact_statistics_summary(
         wfm_api_scope($1, p_service_id => $5), $2, $3,
         CASE COALESCE($4::text, 'hour') WHEN 'interval' THEN '15min' ELSE COALESCE($4::text, 'hour') END,
         $5) s
JOIN services sv ON sv.service_id = s.service_id
ORDER BY s.service_id, s.period_start$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "from", "in": "query", "type": "timestamp", "required": true,
   "description": "start of the period, inclusive (ISO 8601 date or timestamp; naive = UTC)"},
  {"name": "to", "in": "query", "type": "timestamp", "required": true,
   "description": "end of the period, exclusive (a date means its midnight UTC)"},
  {"name": "granularity", "in": "query", "type": "string", "default": "hour",
   "description": "interval (15 minutes, periods up to 31 days), hour (up to 92 days), day, week or month (up to 400 days)"},
  {"name": "service_id", "in": "query", "type": "integer", "description": "only this service"}]',
'{"shape": "list", "paginate": {"limit": 1000, "max_limit": 5000}}',
TRUE, 60, 300, TRUE, '{}', '{}', TRUE, 5000,
'Contact statistics summed per service and period (UTC): offered, answered, abandoned, service level, AHT, ASA.'),

('/api/v1/db/database/agent-activity', 'GET', 'wfm_statistics', 'SELECT', 'agent_activity', 'public',
$sql$SELECT p.agent_id, p.employee_number, p.full_name, p.service_id, p.days, p.login_hours, p.calls_handled,
       p.aht_seconds, p.occupancy_pct, p.adherence_pct, p.not_ready_pct
FROM wfm_agent_performance(
         wfm_api_scope($1, p_service_id => $4, p_agent_id => $5),
         COALESCE($2::date, COALESCE($3::date, (now() AT TIME ZONE 'UTC')::date) - 6),
         COALESCE($3::date, (now() AT TIME ZONE 'UTC')::date),
         $4) p
WHERE $5::integer IS NULL OR p.agent_id = $5
ORDER BY p.agent_id$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "from", "in": "query", "type": "date", "description": "first day (default: 6 days before to)"},
  {"name": "to", "in": "query", "type": "date", "description": "last day, inclusive (default: today, UTC)"},
  {"name": "service_id", "in": "query", "type": "integer", "description": "only activity on this service"},
  {"name": "agent_id", "in": "query", "type": "integer", "description": "only this agent"}]',
'{"shape": "list", "paginate": {"limit": 100, "max_limit": 1000}}',
TRUE, 60, 300, TRUE, '{}', '{}', TRUE, 5000,
'Agent performance over UTC days: login hours, calls, AHT, occupancy, adherence, not-ready share.'),

('/api/v1/db/database/performance-metrics', 'GET', 'wfm_statistics', 'SELECT', 'contact_statistics', 'public',
$sql$SELECT m.service_id, s.service_name, m.metric_name, d.display_name, d.unit, d.direction, m.metric_value,
       wfm_traffic_light(m.metric_name, m.metric_value, $1, m.service_id) AS status
FROM wfm_current_metrics(wfm_api_scope($1, p_service_id => $4),
                         COALESCE($2::timestamptz, COALESCE($3::timestamptz, now()) - INTERVAL '7 days'),
                         COALESCE($3::timestamptz, now())) m
JOIN wfm_metric_definitions d ON d.metric_name = m.metric_name
LEFT JOIN services s ON s.service_id = m.service_id
WHERE $4::integer IS NULL OR m.service_id = $4
ORDER BY m.service_id NULLS FIRST, m.metric_name$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "from", "in": "query", "type": "timestamp", "description": "default: 7 days before to"},
  {"name": "to", "in": "query", "type": "timestamp", "description": "exclusive; default: now"},
  {"name": "service_id", "in": "query", "type": "integer",
   "description": "only this service (without it: every service and the centre, service_id null)"}]',
'{"shape": "list"}',
TRUE, 60, 300, TRUE, '{}', '{}', TRUE, 10000,
'Current KPI values per service and for the centre, with their traffic light against the tenant''s thresholds.'),

('/api/v1/db/database/health', 'GET', 'wfm_admin', 'SELECT', NULL, 'public',
$sql$SELECT CASE WHEN cardinality(t.missing) = 0 THEN 'ok' ELSE 'degraded' END AS status,
       'ok' AS database,
       now() AS checked_at,
       cardinality(wfm_domain_tables()) AS tables_expected,
       cardinality(wfm_domain_tables()) - cardinality(t.missing) AS tables_present,
       t.missing AS missing_tables,
       (SELECT count(*) FROM api_endpoint_mappings e
        WHERE e.is_active AND e.service_name LIKE 'wfm\_%') AS endpoints_active
FROM (SELECT ARRAY(SELECT n.name FROM unnest(wfm_domain_tables()) AS n (name)
                   WHERE to_regclass(quote_ident(n.name)) IS NULL
                   ORDER BY n.name) AS missing) t$sql$,
'[]',
'{"shape": "object"}',
FALSE, 0, NULL, FALSE, '{}', '{}', TRUE, 2000,
'Liveness of the WFM domain: the database answers and every domain table exists. No authentication, no tenant data.'),

-- 000: real-time monitoring and alerts ----------------------------------------

('/api/v1/db/database/realtime-status', 'GET', 'wfm_monitoring', 'SELECT', 'realtime_queues', 'public',
$sql$SELECT wfm_realtime_status($1) AS status$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true}]',
'{"shape": "scalar"}',
TRUE, 5, 1200, TRUE, '{}', '{}', TRUE, 2000,
'Live queues (waiting calls, longest wait, today''s service level and lights, agents by state) and totals.'),

('/api/v1/db/database/performance-alerts', 'GET', 'wfm_monitoring', 'SELECT', 'realtime_alerts', 'public',
$sql$SELECT x.*
FROM wfm_api_scope($1, p_service_id => $2) AS scope (tenant_id)
CROSS JOIN LATERAL (
    SELECT a.alert_event_id, a.service_id, s.service_code, s.service_name, a.metric_name, d.display_name,
           a.level, a.metric_value, a.threshold_value, a.message,
           CASE WHEN a.resolved_at IS NOT NULL THEN 'resolved'
                WHEN a.acknowledged_at IS NOT NULL THEN 'acknowledged'
                ELSE 'open' END AS state,
           a.triggered_at, a.acknowledged_at, a.acknowledged_by, a.resolved_at,
           t.escalation_minutes,
           a.triggered_at + make_interval(mins => t.escalation_minutes) AS escalate_at,
           a.acknowledged_at IS NULL AND a.resolved_at IS NULL
               AND a.triggered_at + make_interval(mins => t.escalation_minutes) <= now() AS escalation_due,
           t.notification_channels
    FROM realtime_alerts a
    JOIN wfm_metric_definitions d ON d.metric_name = a.metric_name
    LEFT JOIN services s ON s.service_id = a.service_id
    LEFT JOIN threshold_alerts t ON t.alert_id = a.threshold_alert_id
    WHERE a.tenant_id = scope.tenant_id
      AND ($2::integer IS NULL OR a.service_id = $2)
      AND CASE COALESCE($3::text, 'active')
              WHEN 'active' THEN a.resolved_at IS NULL
              WHEN 'open' THEN a.resolved_at IS NULL AND a.acknowledged_at IS NULL
              WHEN 'acknowledged' THEN a.resolved_at IS NULL AND a.acknowledged_at IS NOT NULL
              WHEN 'resolved' THEN a.resolved_at IS NOT NULL
              ELSE TRUE END
      AND ($4::text IS NULL OR a.level = $4)
    OFFSET 0
) x
ORDER BY x.triggered_at DESC, x.alert_event_id DESC$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "service_id", "in": "query", "type": "integer", "description": "only this service"},
  {"name": "state", "in": "query", "type": "string", "default": "active",
   "description": "active (not resolved, the default), open, acknowledged, resolved or all"},
  {"name": "level", "in": "query", "type": "string", "description": "red or yellow"}]',
'{"shape": "list", "paginate": {"limit": 50, "max_limit": 500}}',
TRUE, 5, 600, TRUE, '{}', '{}', TRUE, 3000,
'Alerts raised when a metric crossed its thresholds, newest first, with their escalation time.'),

-- 000: schedules ----------------------------------------------------------------

('/api/v1/db/database/schedules', 'GET', 'wfm_scheduling', 'SELECT', 'work_schedules', 'public',
$sql$SELECT x.*
FROM wfm_api_scope($1, p_service_id => $4, p_agent_id => $5) AS scope (tenant_id)
CROSS JOIN wfm_api_period($2, $3, 7, 92) AS p
CROSS JOIN LATERAL (
    SELECT w.schedule_id, w.agent_id, a.employee_number, a.full_name AS agent_name, w.service_id, s.service_code,
           w.template_id, t.template_name, w.shift_start, w.shift_end,
           round(extract(epoch FROM w.shift_end - w.shift_start) / 3600, 2) AS shift_hours,
           w.status, w.notes,
           COALESCE((SELECT jsonb_agg(jsonb_build_object('break_id', b.break_id, 'break_type', b.break_type,
                                                         'break_start', b.break_start, 'break_end', b.break_end)
                                      ORDER BY b.break_start, b.break_id)
                     FROM break_schedules b WHERE b.schedule_id = w.schedule_id), '[]'::jsonb) AS breaks
    FROM work_schedules w
    JOIN agents a ON a.agent_id = w.agent_id
    JOIN services s ON s.service_id = w.service_id
    LEFT JOIN schedule_templates t ON t.template_id = w.template_id
    WHERE w.tenant_id = scope.tenant_id
      AND w.shift_start < p.period_end AND w.shift_end > p.period_start
      AND ($4::integer IS NULL OR w.service_id = $4)
      AND ($5::integer IS NULL OR w.agent_id = $5)
      AND ($6::text IS NULL OR w.status = $6)
    OFFSET 0
) x
ORDER BY x.shift_start, x.schedule_id$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "from", "in": "query", "type": "timestamp",
   "description": "shifts ending after this instant (default: the start of today, UTC)"},
  {"name": "to", "in": "query", "type": "timestamp",
   "description": "shifts starting before this instant (default: from + 7 days; at most 92 days)"},
  {"name": "service_id", "in": "query", "type": "integer"},
  {"name": "agent_id", "in": "query", "type": "integer"},
  {"name": "status", "in": "query", "type": "string", "description": "planned, published or cancelled"}]',
'{"shape": "list", "paginate": {"limit": 100, "max_limit": 1000}}',
TRUE, 30, 600, TRUE, '{}', '{}', TRUE, 5000,
'Planned shifts with their breaks, by start; the period defaults to the next 7 days from today (UTC).'),

('/api/v1/db/database/schedules/optimize', 'POST', 'wfm_scheduling', 'INSERT', 'schedule_optimization_runs',
 'public',
$sql$SELECT wfm_optimize_schedule($1, $2, $3, $4, $5) AS result$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "period_start", "in": "body", "type": "timestamp", "required": true},
  {"name": "period_end", "in": "body", "type": "timestamp", "required": true},
  {"name": "service_id", "in": "body", "type": "integer"},
  {"name": "requested_by", "in": "auth", "claim": "sub", "type": "string", "required": true}]',
'{"shape": "scalar", "status": 201}',
FALSE, 0, 30, TRUE, '{wfm_admin,planner}', '{}', TRUE, 15000,
'Coverage of the staffing plan by the shifts, gaps, conflicts (overlaps, rest under 11 h) and suggested extra shifts; the run is recorded.'),

-- 000: forecasting ----------------------------------------------------------------

('/api/v1/db/database/forecasts', 'GET', 'wfm_forecasting', 'SELECT', 'forecasts', 'public',
$sql$SELECT x.*
FROM wfm_api_scope($1, p_service_id => $2, p_forecast_id => $4) AS scope (tenant_id)
CROSS JOIN LATERAL (
    SELECT f.forecast_id, f.service_id, s.service_code, s.service_name, f.forecast_name, f.period_start,
           f.period_end, f.interval_minutes, f.method, f.history_weeks, f.status, f.sl_target_pct,
           f.sl_threshold_seconds, f.max_occupancy_pct, f.shrinkage_pct, f.created_by, f.created_at,
           f.calculated_at, g.intervals, g.total_volume, g.peak_required_agents, g.required_agent_hours,
           g.scheduled_agent_hours, g.expected_service_level_pct,
           wfm_forecast_accuracy(scope.tenant_id, f.forecast_id) - 'forecast_id' - 'service_id' AS accuracy,
           CASE WHEN $5::boolean THEN
               (SELECT COALESCE(jsonb_agg(jsonb_build_object(
                           'interval_start', d.interval_start, 'forecast_volume', d.forecast_volume,
                           'forecast_aht_seconds', d.forecast_aht_seconds, 'traffic_erlangs', d.traffic_erlangs,
                           'required_agents', d.required_agents,
                           'scheduled_agents_needed', d.scheduled_agents_needed,
                           'expected_service_level_pct', d.expected_service_level_pct,
                           'probability_wait_pct', d.probability_wait_pct,
                           'expected_asa_seconds', d.expected_asa_seconds, 'occupancy_pct', d.occupancy_pct)
                           ORDER BY d.interval_start), '[]'::jsonb)
                FROM forecast_data_points d WHERE d.forecast_id = f.forecast_id)
           END AS data_points
    FROM forecasts f
    JOIN services s ON s.service_id = f.service_id
    CROSS JOIN LATERAL (
        SELECT count(*) AS intervals, sum(d.forecast_volume) AS total_volume,
               max(d.required_agents) AS peak_required_agents,
               round(sum(d.required_agents) * f.interval_minutes / 60.0, 2) AS required_agent_hours,
               round(sum(d.scheduled_agents_needed) * f.interval_minutes / 60.0, 2) AS scheduled_agent_hours,
               round(sum(d.expected_service_level_pct * d.forecast_volume) / NULLIF(sum(d.forecast_volume), 0), 2)
                   AS expected_service_level_pct
        FROM forecast_data_points d WHERE d.forecast_id = f.forecast_id
    ) g
    WHERE f.tenant_id = scope.tenant_id
      AND ($2::integer IS NULL OR f.service_id = $2)
      AND ($3::text IS NULL OR f.status = $3)
      AND ($4::integer IS NULL OR f.forecast_id = $4)
    OFFSET 0
) x
ORDER BY x.period_start DESC, x.forecast_id DESC$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "service_id", "in": "query", "type": "integer"},
  {"name": "status", "in": "query", "type": "string", "description": "draft, calculated or published"},
  {"name": "forecast_id", "in": "query", "type": "integer"},
  {"name": "include_intervals", "in": "query", "type": "boolean", "default": false,
   "description": "add each forecast''s interval data (volume, AHT, Erlang C staffing) as data_points"}]',
'{"shape": "list", "paginate": {"limit": 50, "max_limit": 200}}',
TRUE, 60, 300, TRUE, '{}', '{}', TRUE, 10000,
'Forecasts with their totals, peak staffing and accuracy against the actual calls (WAPE), newest period first.'),

('/api/v1/db/database/forecasts/calculate', 'POST', 'wfm_forecasting', 'UPDATE', 'forecasts', 'public',
$sql$SELECT wfm_api_calculate_forecast($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) AS result$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "forecast_id", "in": "body", "type": "integer"},
  {"name": "service_id", "in": "body", "type": "integer"},
  {"name": "period_start", "in": "body", "type": "date"},
  {"name": "period_end", "in": "body", "type": "date"},
  {"name": "history_weeks", "in": "body", "type": "integer"},
  {"name": "interval_minutes", "in": "body", "type": "integer"},
  {"name": "forecast_name", "in": "body", "type": "string"},
  {"name": "target_service_level", "in": "body", "type": "number"},
  {"name": "target_seconds", "in": "body", "type": "integer"},
  {"name": "max_occupancy", "in": "body", "type": "number"},
  {"name": "shrinkage", "in": "body", "type": "number"},
  {"name": "requested_by", "in": "auth", "claim": "sub", "type": "string", "required": true}]',
'{"shape": "scalar", "status": 200}',
FALSE, 0, 30, TRUE, '{wfm_admin,planner}', '{}', TRUE, 30000,
'Erlang C staffing of a forecast (existing, or created from the service''s history) into the staffing plan.'),

-- 000: integrations -----------------------------------------------------------------

('/api/v1/db/database/integrations', 'GET', 'wfm_integration', 'SELECT', 'integration_connections', 'public',
$sql$WITH h AS (SELECT wfm_integration_health($1) AS health)
SELECT c.connection_id, c.connection_name, c.system_type, c.endpoint_url, c.auth_type, c.sync_interval_seconds,
       (SELECT COALESCE(jsonb_object_agg(k.key, k.value), '{}'::jsonb)
        FROM jsonb_each(c.settings) AS k
        WHERE k.key !~* '(password|secret|token|credential|api_?key)') AS settings,
       c.is_active, comp.value ->> 'status' AS status, c.last_sync_at, c.last_success_at,
       comp.value ->> 'last_sync_status' AS last_sync_status,
       (comp.value ->> 'syncs_24h')::integer AS syncs_24h,
       (comp.value ->> 'failed_24h')::integer AS failed_24h,
       (comp.value ->> 'success_rate_24h_pct')::numeric AS success_rate_24h_pct,
       (comp.value ->> 'avg_duration_seconds_24h')::numeric AS avg_duration_seconds_24h,
       (comp.value ->> 'records_24h')::bigint AS records_24h,
       (comp.value ->> 'queued_jobs')::integer AS queued_jobs,
       (SELECT jsonb_build_object('job_id', j.job_id, 'status', j.status, 'sync_type', j.sync_type,
                                  'priority', j.priority, 'requested_at', j.requested_at,
                                  'finished_at', j.finished_at, 'records_processed', j.records_processed,
                                  'error_message', j.error_message)
        FROM sync_jobs j WHERE j.connection_id = c.connection_id
        ORDER BY j.requested_at DESC LIMIT 1) AS last_job,
       c.created_at
FROM integration_connections c
CROSS JOIN h
LEFT JOIN LATERAL jsonb_array_elements(h.health -> 'components') AS comp (value)
       ON (comp.value ->> 'connection_id')::integer = c.connection_id
WHERE c.tenant_id = $1
  AND ($2::text IS NULL OR c.system_type = $2)
ORDER BY c.connection_id$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "system_type", "in": "query", "type": "string",
   "description": "1c_zup, contact_center, ldap or webhook"}]',
'{"shape": "list"}',
TRUE, 30, 300, TRUE, '{}', '{}', TRUE, 5000,
'External systems (1C ZUP, ACD, LDAP, webhooks) with their health, last 24 h of syncs and latest job; secrets are never shown.'),

('/api/v1/db/database/integrations/sync', 'POST', 'wfm_integration', 'INSERT', 'sync_jobs', 'public',
$sql$SELECT wfm_trigger_sync($1, $2, $3, $4, $5, $6) AS result$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "connection_id", "in": "body", "type": "integer", "required": true},
  {"name": "sync_type", "in": "body", "type": "string", "default": "incremental"},
  {"name": "entities", "in": "body", "type": "array", "items": "string"},
  {"name": "priority", "in": "body", "type": "string", "default": "normal"},
  {"name": "requested_by", "in": "auth", "claim": "sub", "type": "string", "required": true}]',
'{"shape": "scalar", "status": 202}',
FALSE, 0, 30, TRUE, '{wfm_admin,planner}', '{}', TRUE, 5000,
'Queue a synchronisation of one connection (30 s target); 409 when it is switched off or already syncing.'),

-- 000: data validation and quality --------------------------------------------------

('/api/v1/db/database/validation/{table_name}', 'GET', 'wfm_quality', 'SELECT', 'data_quality_checks', 'public',
$sql$SELECT wfm_validate_table($1, $2) AS result$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "table_name", "in": "path", "type": "string", "required": true}]',
'{"shape": "scalar"}',
TRUE, 60, 120, TRUE, '{}', '{}', TRUE, 15000,
'Run the data-quality checks of one table on the caller''s rows without recording them; 404 for a table without checks.'),

('/api/v1/db/database/validation/run-checks', 'POST', 'wfm_quality', 'INSERT', 'data_quality_results', 'public',
$sql$SELECT wfm_run_quality_checks($1, $2, $3) AS result$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "tables", "in": "body", "type": "array", "items": "string",
   "description": "tables to check (default: every table with checks)"},
  {"name": "requested_by", "in": "auth", "claim": "sub", "type": "string", "required": true}]',
'{"shape": "scalar", "status": 201}',
FALSE, 0, 10, TRUE, '{wfm_admin,planner}', '{}', TRUE, 30000,
'Run the data-quality checks of some or all tables and record the results under one run id.'),

-- 000: bulk operations ----------------------------------------------------------------

('/api/v1/db/database/bulk/export', 'POST', 'wfm_bulk', 'SELECT', NULL, 'public',
$sql$SELECT e.record FROM wfm_export($1, $2, $3, $4) AS e (record)$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "table", "in": "body", "type": "string", "required": true},
  {"name": "from", "in": "body", "type": "timestamp", "description": "rows from this instant (the table''s time column)"},
  {"name": "to", "in": "body", "type": "timestamp", "description": "rows before this instant"}]',
'{"shape": "stream", "format": "ndjson"}',
FALSE, 0, 10, TRUE, '{wfm_admin,planner}', '{}', TRUE, 60000,
'Stream the caller''s rows of one table as NDJSON, one {"record": {...}} per line, from a server-side cursor.'),

('/api/v1/db/database/bulk/import', 'POST', 'wfm_bulk', 'INSERT', 'contact_statistics', 'public',
$sql$SELECT wfm_bulk_import($1, $2, $3, $4) AS result$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "table", "in": "body", "type": "string", "required": true},
  {"name": "rows", "in": "body", "type": "json", "required": true},
  {"name": "mode", "in": "body", "type": "string", "default": "upsert"}]',
'{"shape": "scalar", "status": 200}',
FALSE, 0, 20, TRUE, '{wfm_admin}', '{}', TRUE, 60000,
'Import up to 10000 rows into contact_statistics, agent_activity, agents or work_schedules, all or nothing.'),
-- (the bulk-path imports, NDJSON or CSV and unbounded, are the next statement's rows:
-- POST /api/v1/db/database/bulk/import/<table>, one row per table)

-- 000: administration ---------------------------------------------------------------

('/api/v1/db/database/maintenance/cleanup', 'POST', 'wfm_admin', 'DELETE', 'integration_logs', 'public',
$sql$SELECT wfm_maintenance_cleanup($1, $2, $3, $4) AS result$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "retention_days", "in": "body", "type": "integer", "default": 90},
  {"name": "dry_run", "in": "body", "type": "boolean", "default": false},
  {"name": "statistics_retention_days", "in": "body", "type": "integer"}]',
'{"shape": "scalar", "status": 200}',
FALSE, 0, 5, TRUE, '{wfm_admin}', '{}', TRUE, 60000,
'Delete the caller''s operational history older than the retention (statistics only when asked); dry_run counts.'),

('/api/v1/db/database/schema/info', 'GET', 'wfm_admin', 'SELECT', NULL, 'public',
$sql$SELECT i.table_name, i.description, i.column_count, i.columns, i.primary_key, i.row_estimate, i.total_bytes
FROM wfm_schema_info() i$sql$,
'[]',
'{"shape": "list"}',
TRUE, 300, 120, TRUE, '{}', '{}', TRUE, 5000,
'The WFM tables as the database describes them: comment, columns, primary key, row estimate, size.'),

-- 001: performance monitoring -------------------------------------------------------

('/api/v1/performance/metrics/realtime', 'GET', 'wfm_performance', 'SELECT', 'operational_metrics', 'public',
$sql$SELECT m.service_id, m.service_name, m.metric_name, m.display_name, m.unit, m.metric_value, m.status,
       m.previous_value, m.trend, m.update_frequency_seconds, m.measured_at
FROM wfm_realtime_metrics(wfm_api_scope($1, p_service_id => $2)) m
WHERE $2::integer IS NULL OR m.service_id = $2$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "service_id", "in": "query", "type": "integer",
   "description": "only this service (without it: every service and the centre, service_id null)"}]',
'{"shape": "list"}',
TRUE, 5, 1200, TRUE, '{}', '{}', TRUE, 5000,
'The six key realtime metrics of the UTC day so far with traffic light, previous value and trend arrow.'),

('/api/v1/performance/sla/compliance', 'GET', 'wfm_performance', 'SELECT', 'contact_statistics', 'public',
$sql$SELECT c.service_id, c.service_code, c.service_name, c.channel,
       round(c.target * 100)::integer || '/' || c.threshold_seconds AS sla_format,
       c.threshold_seconds, c.target, c.offered, c.answered, c.abandoned, c.answered_within_threshold,
       c.service_level, c.answer_rate, c.abandon_rate, c.intervals, c.compliant_intervals,
       round(100.0 * c.compliant_intervals / NULLIF(c.intervals, 0), 2) AS compliant_intervals_pct,
       c.compliant,
       wfm_traffic_light('service_level_pct', round(100 * c.service_level, 2), $1, c.service_id) AS status
FROM wfm_sla_compliance($1,
                        COALESCE($2::timestamptz, date_trunc('day', now(), 'UTC')),
                        COALESCE($3::timestamptz, now()),
                        CASE WHEN $6::boolean THEN NULL ELSE $4::integer END,
                        CASE WHEN $6::boolean THEN NULL ELSE $5::numeric END) c
ORDER BY c.service_id$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "from", "in": "query", "type": "timestamp", "description": "default: the start of today (UTC)"},
  {"name": "to", "in": "query", "type": "timestamp", "description": "exclusive; default: now"},
  {"name": "threshold_seconds", "in": "query", "type": "integer", "default": 20,
   "description": "answer time threshold: 10, 20, 30 or 60 (or a threshold every service has as its own)"},
  {"name": "target", "in": "query", "type": "number", "default": 0.8,
   "description": "target share answered within the threshold, a fraction (0.8 = 80 %)"},
  {"name": "own_targets", "in": "query", "type": "boolean", "default": false,
   "description": "measure each service against its own threshold and target instead"}]',
'{"shape": "list"}',
TRUE, 60, 300, TRUE, '{}', '{}', TRUE, 10000,
'SLA compliance per service in the 80/20 format (default), with compliant intervals and the service-level light.'),

('/api/v1/performance/alerts/configure', 'POST', 'wfm_performance', 'INSERT', 'threshold_alerts', 'public',
$sql$SELECT wfm_configure_alert($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) AS result$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "metric_name", "in": "body", "type": "string", "required": true},
  {"name": "green_threshold", "in": "body", "type": "number", "required": true},
  {"name": "yellow_threshold", "in": "body", "type": "number", "required": true},
  {"name": "service_id", "in": "body", "type": "integer",
   "description": "the service''s own thresholds; without it the tenant-wide ones"},
  {"name": "notification_channels", "in": "body", "type": "array", "items": "string"},
  {"name": "escalation_minutes", "in": "body", "type": "integer"},
  {"name": "is_active", "in": "body", "type": "boolean", "default": true},
  {"name": "predictive", "in": "body", "type": "json",
   "description": "predictive alert: horizon_minutes, min_confidence_pct, accuracy_target_pct, is_active"},
  {"name": "updated_by", "in": "auth", "claim": "sub", "type": "string", "required": true}]',
'{"shape": "scalar", "status": 200}',
FALSE, 0, 60, TRUE, '{wfm_admin,planner}', '{}', TRUE, 5000,
'Create or update the green/yellow thresholds of a metric (and its predictive alert); the traffic lights follow at once.'),

('/api/v1/performance/dashboard/executive', 'GET', 'wfm_performance', 'SELECT', 'contact_statistics', 'public',
$sql$SELECT wfm_executive_dashboard($1, $2, $3) AS dashboard$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "from", "in": "query", "type": "timestamp", "description": "default: the start of today (UTC)"},
  {"name": "to", "in": "query", "type": "timestamp", "description": "exclusive; default: now"}]',
'{"shape": "scalar"}',
TRUE, 30, 300, TRUE, '{}', '{}', TRUE, 10000,
'Executive view: totals, every service against its target, open alerts, best and worst service, agent reallocation.'),

-- 001: integration monitoring ---------------------------------------------------------

('/api/v1/integration/health/status', 'GET', 'wfm_integration', 'SELECT', 'integration_connections', 'public',
$sql$SELECT wfm_integration_health($1) AS health$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true}]',
'{"shape": "scalar"}',
TRUE, 15, 600, TRUE, '{}', '{}', TRUE, 5000,
'Health of every integration (healthy, degraded, down, inactive), overall status and the latest data-quality run.'),

('/api/v1/integration/sync/trigger', 'POST', 'wfm_integration', 'INSERT', 'sync_jobs', 'public',
$sql$SELECT wfm_api_trigger_syncs($1, $2, $3, $4, $5, $6, $7) AS result$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "connection_ids", "in": "body", "type": "array", "items": "integer",
   "description": "these connections (default: every active one, or those of system_type)"},
  {"name": "system_type", "in": "body", "type": "string"},
  {"name": "sync_type", "in": "body", "type": "string", "default": "incremental"},
  {"name": "entities", "in": "body", "type": "array", "items": "string"},
  {"name": "priority", "in": "body", "type": "string", "default": "normal"},
  {"name": "requested_by", "in": "auth", "claim": "sub", "type": "string", "required": true}]',
'{"shape": "scalar", "status": 202}',
FALSE, 0, 30, TRUE, '{wfm_admin,planner}', '{}', TRUE, 10000,
'Queue synchronisations of several connections; busy or switched-off ones are skipped and reported.'),

('/api/v1/integration/logs/activity', 'GET', 'wfm_integration', 'SELECT', 'integration_logs', 'public',
$sql$SELECT x.*
FROM wfm_api_scope($1, p_connection_id => $2) AS scope (tenant_id)
CROSS JOIN LATERAL (
    SELECT l.log_id, l.created_at, l.correlation_id, l.event_type, l.direction, l.level, l.message,
           l.connection_id, c.connection_name, c.system_type, l.job_id, l.entity_type, l.records_count,
           l.duration_ms, l.contains_personal_data, l.legal_basis, l.actor
    FROM integration_logs l
    LEFT JOIN integration_connections c ON c.connection_id = l.connection_id
    WHERE l.tenant_id = scope.tenant_id
      AND ($2::integer IS NULL OR l.connection_id = $2)
      AND ($3::uuid IS NULL OR l.correlation_id = $3)
      AND ($4::text IS NULL OR l.event_type = $4)
      AND ($5::text IS NULL OR l.level = $5)
      AND ($6::boolean IS NULL OR l.contains_personal_data = $6)
      AND ($7::timestamptz IS NULL OR l.created_at >= $7)
      AND ($8::timestamptz IS NULL OR l.created_at < $8)
    OFFSET 0
) x
ORDER BY x.created_at DESC, x.log_id DESC$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "connection_id", "in": "query", "type": "integer"},
  {"name": "correlation_id", "in": "query", "type": "uuid", "description": "one exchange, end to end"},
  {"name": "event_type", "in": "query", "type": "string"},
  {"name": "level", "in": "query", "type": "string", "description": "info, warning or error"},
  {"name": "personal_data", "in": "query", "type": "boolean",
   "description": "true: only GDPR-relevant events (personal data, with their legal basis)"},
  {"name": "since", "in": "query", "type": "timestamp"},
  {"name": "until", "in": "query", "type": "timestamp"}]',
'{"shape": "list", "paginate": {"limit": 100, "max_limit": 1000}}',
TRUE, 10, 600, TRUE, '{}', '{}', TRUE, 5000,
'The cross-system audit trail, newest first: filter by connection, correlation id, event, level, personal data, time.'),

-- 001: capacity and optimisation --------------------------------------------------------

('/api/v1/performance/capacity/analysis', 'GET', 'wfm_performance', 'SELECT', NULL, 'public',
$sql$SELECT wfm_capacity_analysis() AS analysis$sql$,
'[]',
'{"shape": "scalar"}',
TRUE, 60, 120, TRUE, '{}', '{}', TRUE, 5000,
'Database capacity from PostgreSQL''s statistics: connections, storage, cache hit ratio, transactions, recommendations.'),

('/api/v1/performance/optimization/suggest', 'POST', 'wfm_performance', 'SELECT', NULL, 'public',
$sql$SELECT wfm_api_optimization_suggest($1, $2, $3, $4, $5, $6, $7) AS result$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "period_start", "in": "body", "type": "timestamp", "description": "default: 7 days before period_end"},
  {"name": "period_end", "in": "body", "type": "timestamp", "description": "default: now"},
  {"name": "service_id", "in": "body", "type": "integer"},
  {"name": "categories", "in": "body", "type": "array", "items": "string"},
  {"name": "max_priority", "in": "body", "type": "integer", "default": 5},
  {"name": "include_database", "in": "body", "type": "boolean", "default": true}]',
'{"shape": "scalar", "status": 200}',
FALSE, 0, 60, TRUE, '{}', '{}', TRUE, 10000,
'Optimisation suggestions from the rules table on the current metrics: impact, cost impact, labour-law notes. Read-only.'),

('/api/v1/integration/mapping/endpoints', 'GET', 'wfm_integration', 'SELECT', 'integration_endpoint_mappings',
 'public',
$sql$SELECT x.*
FROM wfm_api_scope($1, p_connection_id => $2) AS scope (tenant_id)
CROSS JOIN LATERAL (
    SELECT m.mapping_id, m.connection_id, c.connection_name, c.system_type, m.direction, m.external_method,
           m.external_endpoint, c.endpoint_url || m.external_endpoint AS external_url, m.source_entity,
           m.target_table, m.field_mappings, (SELECT count(*) FROM jsonb_object_keys(m.field_mappings)) AS field_count,
           m.workflow_stage, m.api_http_method, m.api_endpoint_path,
           CASE WHEN m.api_endpoint_path IS NOT NULL THEN COALESCE(e.is_active, FALSE) END AS api_route_active,
           m.is_active
    FROM integration_endpoint_mappings m
    JOIN integration_connections c ON c.connection_id = m.connection_id
    LEFT JOIN api_endpoint_mappings e
           ON e.endpoint_path = m.api_endpoint_path AND e.http_method = m.api_http_method
    WHERE m.tenant_id = scope.tenant_id
      AND ($2::integer IS NULL OR m.connection_id = $2)
      AND ($3::text IS NULL OR m.direction = $3)
    OFFSET 0
) x
ORDER BY x.connection_id, x.mapping_id$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "connection_id", "in": "query", "type": "integer"},
  {"name": "direction", "in": "query", "type": "string", "description": "import or export"}]',
'{"shape": "list", "paginate": {"limit": 100, "max_limit": 500}}',
TRUE, 300, 300, TRUE, '{}', '{}', TRUE, 5000,
'External endpoints mapped field by field to WFM tables, and whether the engine route serving each is active.')

ON CONFLICT (endpoint_path, http_method) DO UPDATE SET
    service_name          = EXCLUDED.service_name,
    database_operation    = EXCLUDED.database_operation,
    target_table          = EXCLUDED.target_table,
    target_schema         = EXCLUDED.target_schema,
    query_template        = EXCLUDED.query_template,
    query_parameters      = EXCLUDED.query_parameters,
    result_mapping        = EXCLUDED.result_mapping,
    cache_enabled         = EXCLUDED.cache_enabled,
    cache_ttl_seconds     = EXCLUDED.cache_ttl_seconds,
    rate_limit_per_minute = EXCLUDED.rate_limit_per_minute,
    requires_auth         = EXCLUDED.requires_auth,
    required_roles        = EXCLUDED.required_roles,
    required_permissions  = EXCLUDED.required_permissions,
    is_active             = EXCLUDED.is_active,
    statement_timeout_ms  = EXCLUDED.statement_timeout_ms,
    description           = EXCLUDED.description
WHERE (m.service_name, m.database_operation, m.target_table, m.target_schema, m.query_template,
       m.query_parameters, m.result_mapping, m.cache_enabled, m.cache_ttl_seconds,
       m.rate_limit_per_minute, m.requires_auth, m.required_roles, m.required_permissions,
       m.is_active, m.statement_timeout_ms, m.description)
      IS DISTINCT FROM
      (EXCLUDED.service_name, EXCLUDED.database_operation, EXCLUDED.target_table,
       EXCLUDED.target_schema, EXCLUDED.query_template, EXCLUDED.query_parameters,
       EXCLUDED.result_mapping, EXCLUDED.cache_enabled, EXCLUDED.cache_ttl_seconds,
       EXCLUDED.rate_limit_per_minute, EXCLUDED.requires_auth, EXCLUDED.required_roles,
       EXCLUDED.required_permissions, EXCLUDED.is_active, EXCLUDED.statement_timeout_ms,
       EXCLUDED.description);

-- 000: bulk operations, the bulk path (engine/bulk.py) ------------------------------
-- POST /api/v1/db/database/bulk/import/<table>: the same four tables as the JSON
-- import above, the body NDJSON (Content-Type application/x-ndjson, one record a
-- line) or CSV (text/csv, a header line naming the fields, an empty cell = an
-- absent field), streamed: each record is checked against the row's record schema
-- (the validation schemas below) as it arrives and COPYed into the temporary table
-- bulk_records; the template then loads them all in one statement of the same
-- transaction. An invalid record: 422 BULK_INVALID_RECORDS listing line, pointer
-- and message, and nothing is written; a reference to another tenant's service,
-- agent, group or template, or two records with one key: 422 WFM_IMPORT_INVALID
-- naming the line (wfm_api_bulk_check); no limit of rows, the body at most
-- ENGINE_BULK_MAX_BODY_BYTES (413). As wfm_bulk_import's default mode (upsert):
-- a record whose key is stored updates that row, keeping the fields it leaves out
-- (the LEFT JOIN of the stored row); a new one gets the defaults. Work schedules
-- have no natural key: each record is a new shift. The tenant is always the
-- caller's (in: auth); a record has no tenant_id field (its schema is closed).
-- The answer: {"received", "inserted" (rows written, new or updated), "rejected",
-- "errors"}. Roles as the JSON import: wfm_admin.

INSERT INTO api_endpoint_mappings AS m
    (endpoint_path, http_method, service_name, database_operation, target_table, target_schema,
     query_template, query_parameters, result_mapping, bulk_import,
     cache_enabled, cache_ttl_seconds, rate_limit_per_minute,
     requires_auth, required_roles, required_permissions, is_active, statement_timeout_ms,
     description)
VALUES
('/api/v1/db/database/bulk/import/contact_statistics', 'POST', 'wfm_bulk', 'INSERT', 'contact_statistics',
 'public',
$sql$INSERT INTO contact_statistics AS t (
    tenant_id, service_id, interval_start, offered, answered, abandoned, answered_within_threshold,
    answered_within_10s, answered_within_20s, answered_within_30s, answered_within_60s,
    talk_seconds, hold_seconds, wrap_seconds, wait_seconds, max_wait_seconds, agents_staffed)
SELECT scope.tenant_id, r.service_id, r.interval_start,
       COALESCE(r.offered, cur.offered, 0), COALESCE(r.answered, cur.answered, 0),
       COALESCE(r.abandoned, cur.abandoned, 0),
       COALESCE(r.answered_within_threshold, cur.answered_within_threshold, 0),
       COALESCE(r.answered_within_10s, cur.answered_within_10s),
       COALESCE(r.answered_within_20s, cur.answered_within_20s),
       COALESCE(r.answered_within_30s, cur.answered_within_30s),
       COALESCE(r.answered_within_60s, cur.answered_within_60s),
       COALESCE(r.talk_seconds, cur.talk_seconds, 0), COALESCE(r.hold_seconds, cur.hold_seconds, 0),
       COALESCE(r.wrap_seconds, cur.wrap_seconds, 0), COALESCE(r.wait_seconds, cur.wait_seconds, 0),
       COALESCE(r.max_wait_seconds, cur.max_wait_seconds), COALESCE(r.agents_staffed, cur.agents_staffed)
FROM wfm_api_bulk_check($1, 'contact_statistics') AS scope (tenant_id)
CROSS JOIN bulk_records r
LEFT JOIN contact_statistics cur
       ON cur.tenant_id = scope.tenant_id AND cur.service_id = r.service_id
      AND cur.interval_start = r.interval_start
ON CONFLICT (service_id, interval_start) DO UPDATE
SET offered = EXCLUDED.offered, answered = EXCLUDED.answered, abandoned = EXCLUDED.abandoned,
    answered_within_threshold = EXCLUDED.answered_within_threshold,
    answered_within_10s = EXCLUDED.answered_within_10s, answered_within_20s = EXCLUDED.answered_within_20s,
    answered_within_30s = EXCLUDED.answered_within_30s, answered_within_60s = EXCLUDED.answered_within_60s,
    talk_seconds = EXCLUDED.talk_seconds, hold_seconds = EXCLUDED.hold_seconds,
    wrap_seconds = EXCLUDED.wrap_seconds, wait_seconds = EXCLUDED.wait_seconds,
    max_wait_seconds = EXCLUDED.max_wait_seconds, agents_staffed = EXCLUDED.agents_staffed
WHERE t.tenant_id = EXCLUDED.tenant_id$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true}]',
'{"shape": "none", "status": 200}',
'{"formats": ["ndjson", "csv"], "on_invalid": "reject", "max_errors": 100,
  "description": "contact statistics per service and 15-minute interval",
  "columns": {"service_id": "integer", "interval_start": "timestamp", "offered": "integer",
              "answered": "integer", "abandoned": "integer", "answered_within_threshold": "integer",
              "answered_within_10s": "integer", "answered_within_20s": "integer",
              "answered_within_30s": "integer", "answered_within_60s": "integer",
              "talk_seconds": "integer", "hold_seconds": "integer", "wrap_seconds": "integer",
              "wait_seconds": "integer", "max_wait_seconds": "integer", "agents_staffed": "number"}}',
FALSE, 0, 20, TRUE, '{wfm_admin}', '{}', TRUE, 120000,
'Import contact statistics as NDJSON or CSV, streamed, all or nothing: upsert on service and interval.'),

('/api/v1/db/database/bulk/import/agent_activity', 'POST', 'wfm_bulk', 'INSERT', 'agent_activity', 'public',
$sql$INSERT INTO agent_activity AS t (
    tenant_id, agent_id, activity_date, service_id, login_seconds, ready_seconds, talk_seconds,
    hold_seconds, wrap_seconds, not_ready_seconds, calls_handled, transfers, scheduled_seconds,
    adherent_seconds)
SELECT scope.tenant_id, r.agent_id, r.activity_date, COALESCE(r.service_id, cur.service_id),
       COALESCE(r.login_seconds, cur.login_seconds, 0), COALESCE(r.ready_seconds, cur.ready_seconds, 0),
       COALESCE(r.talk_seconds, cur.talk_seconds, 0), COALESCE(r.hold_seconds, cur.hold_seconds, 0),
       COALESCE(r.wrap_seconds, cur.wrap_seconds, 0), COALESCE(r.not_ready_seconds, cur.not_ready_seconds, 0),
       COALESCE(r.calls_handled, cur.calls_handled, 0), COALESCE(r.transfers, cur.transfers, 0),
       COALESCE(r.scheduled_seconds, cur.scheduled_seconds, 0),
       COALESCE(r.adherent_seconds, cur.adherent_seconds, 0)
FROM wfm_api_bulk_check($1, 'agent_activity') AS scope (tenant_id)
CROSS JOIN bulk_records r
LEFT JOIN agent_activity cur
       ON cur.tenant_id = scope.tenant_id AND cur.agent_id = r.agent_id AND cur.activity_date = r.activity_date
ON CONFLICT (agent_id, activity_date) DO UPDATE
SET service_id = EXCLUDED.service_id, login_seconds = EXCLUDED.login_seconds,
    ready_seconds = EXCLUDED.ready_seconds, talk_seconds = EXCLUDED.talk_seconds,
    hold_seconds = EXCLUDED.hold_seconds, wrap_seconds = EXCLUDED.wrap_seconds,
    not_ready_seconds = EXCLUDED.not_ready_seconds, calls_handled = EXCLUDED.calls_handled,
    transfers = EXCLUDED.transfers, scheduled_seconds = EXCLUDED.scheduled_seconds,
    adherent_seconds = EXCLUDED.adherent_seconds
WHERE t.tenant_id = EXCLUDED.tenant_id$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true}]',
'{"shape": "none", "status": 200}',
'{"formats": ["ndjson", "csv"], "on_invalid": "reject", "max_errors": 100,
  "description": "agent activity per agent and UTC day",
  "columns": {"agent_id": "integer", "activity_date": "date", "service_id": "integer",
              "login_seconds": "integer", "ready_seconds": "integer", "talk_seconds": "integer",
              "hold_seconds": "integer", "wrap_seconds": "integer", "not_ready_seconds": "integer",
              "calls_handled": "integer", "transfers": "integer", "scheduled_seconds": "integer",
              "adherent_seconds": "integer"}}',
FALSE, 0, 20, TRUE, '{wfm_admin}', '{}', TRUE, 120000,
'Import agent activity as NDJSON or CSV, streamed, all or nothing: upsert on agent and day.'),

('/api/v1/db/database/bulk/import/agents', 'POST', 'wfm_bulk', 'INSERT', 'agents', 'public',
$sql$INSERT INTO agents AS t (tenant_id, employee_number, full_name, email, group_id, primary_service_id,
                         employment_type, weekly_hours, hire_date, is_active)
SELECT scope.tenant_id, r.employee_number, COALESCE(r.full_name, cur.full_name), COALESCE(r.email, cur.email),
       COALESCE(r.group_id, cur.group_id), COALESCE(r.primary_service_id, cur.primary_service_id),
       COALESCE(r.employment_type, cur.employment_type, 'full_time'),
       COALESCE(r.weekly_hours, cur.weekly_hours, 40), COALESCE(r.hire_date, cur.hire_date),
       COALESCE(r.is_active, cur.is_active, TRUE)
FROM wfm_api_bulk_check($1, 'agents') AS scope (tenant_id)
CROSS JOIN bulk_records r
LEFT JOIN agents cur ON cur.tenant_id = scope.tenant_id AND cur.employee_number = r.employee_number
ON CONFLICT (tenant_id, employee_number) DO UPDATE
SET full_name = EXCLUDED.full_name, email = EXCLUDED.email, group_id = EXCLUDED.group_id,
    primary_service_id = EXCLUDED.primary_service_id, employment_type = EXCLUDED.employment_type,
    weekly_hours = EXCLUDED.weekly_hours, hire_date = EXCLUDED.hire_date, is_active = EXCLUDED.is_active$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true}]',
'{"shape": "none", "status": 200}',
'{"formats": ["ndjson", "csv"], "on_invalid": "reject", "max_errors": 100,
  "description": "agents, keyed by employee_number",
  "columns": {"employee_number": "string", "full_name": "string", "email": "string",
              "group_id": "integer", "primary_service_id": "integer", "employment_type": "string",
              "weekly_hours": "number", "hire_date": "date", "is_active": "boolean"}}',
FALSE, 0, 20, TRUE, '{wfm_admin}', '{}', TRUE, 120000,
'Import agents as NDJSON or CSV, streamed, all or nothing: upsert on employee_number.'),

('/api/v1/db/database/bulk/import/work_schedules', 'POST', 'wfm_bulk', 'INSERT', 'work_schedules', 'public',
$sql$INSERT INTO work_schedules (tenant_id, agent_id, service_id, template_id, shift_start, shift_end, status, notes)
SELECT scope.tenant_id, r.agent_id, r.service_id, r.template_id, r.shift_start, r.shift_end,
       COALESCE(r.status, 'planned'), r.notes
FROM wfm_api_bulk_check($1, 'work_schedules') AS scope (tenant_id)
CROSS JOIN bulk_records r$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true}]',
'{"shape": "none", "status": 200}',
'{"formats": ["ndjson", "csv"], "on_invalid": "reject", "max_errors": 100,
  "description": "shifts, each record a new one",
  "columns": {"agent_id": "integer", "service_id": "integer", "template_id": "integer",
              "shift_start": "timestamp", "shift_end": "timestamp", "status": "string", "notes": "string"}}',
FALSE, 0, 20, TRUE, '{wfm_admin}', '{}', TRUE, 120000,
'Import shifts as NDJSON or CSV, streamed, all or nothing; each record is a new shift.')

ON CONFLICT (endpoint_path, http_method) DO UPDATE SET
    service_name          = EXCLUDED.service_name,
    database_operation    = EXCLUDED.database_operation,
    target_table          = EXCLUDED.target_table,
    target_schema         = EXCLUDED.target_schema,
    query_template        = EXCLUDED.query_template,
    query_parameters      = EXCLUDED.query_parameters,
    result_mapping        = EXCLUDED.result_mapping,
    bulk_import           = EXCLUDED.bulk_import,
    cache_enabled         = EXCLUDED.cache_enabled,
    cache_ttl_seconds     = EXCLUDED.cache_ttl_seconds,
    rate_limit_per_minute = EXCLUDED.rate_limit_per_minute,
    requires_auth         = EXCLUDED.requires_auth,
    required_roles        = EXCLUDED.required_roles,
    required_permissions  = EXCLUDED.required_permissions,
    is_active             = EXCLUDED.is_active,
    statement_timeout_ms  = EXCLUDED.statement_timeout_ms,
    description           = EXCLUDED.description
WHERE (m.service_name, m.database_operation, m.target_table, m.target_schema, m.query_template,
       m.query_parameters, m.result_mapping, m.bulk_import, m.cache_enabled, m.cache_ttl_seconds,
       m.rate_limit_per_minute, m.requires_auth, m.required_roles, m.required_permissions,
       m.is_active, m.statement_timeout_ms, m.description)
      IS DISTINCT FROM
      (EXCLUDED.service_name, EXCLUDED.database_operation, EXCLUDED.target_table,
       EXCLUDED.target_schema, EXCLUDED.query_template, EXCLUDED.query_parameters,
       EXCLUDED.result_mapping, EXCLUDED.bulk_import, EXCLUDED.cache_enabled,
       EXCLUDED.cache_ttl_seconds, EXCLUDED.rate_limit_per_minute, EXCLUDED.requires_auth,
       EXCLUDED.required_roles, EXCLUDED.required_permissions, EXCLUDED.is_active,
       EXCLUDED.statement_timeout_ms, EXCLUDED.description);

-- ---------------------------------------------------------------------------
-- Validation schemas (draft 2020-12). Bodies: every POST; every object is
-- closed (unknown fields are refused). Query strings: every GET with filters,
-- so a misspelt filter (?servce_id=) is a 400 instead of an unfiltered answer;
-- the query object holds the bound values (numbers, booleans, ISO text).
-- Timestamps are checked by the binder (ISO 8601, naive = UTC, a date =
-- its midnight), dates by "format": "date". In these SQL literals a
-- backslash is literal, so JSON "\\d" is the regex \d.
-- ---------------------------------------------------------------------------

INSERT INTO api_validation_schemas AS s
    (endpoint_mapping_id, schema_name, validation_schema, validation_rules,
     strict_mode, allow_unknown_fields, sanitize_input, applies_to)
VALUES
-- bodies --------------------------------------------------------------------
(api_mapping_id('/api/v1/db/database/schedules/optimize', 'POST'), 'wfm_schedule_optimize', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["period_start", "period_end"],
  "properties": {
    "period_start": {"type": "string", "minLength": 10, "maxLength": 40},
    "period_end": {"type": "string", "minLength": 10, "maxLength": 40},
    "service_id": {"type": "integer", "minimum": 1}
  }
}', NULL, TRUE, FALSE, TRUE, 'body'),

(api_mapping_id('/api/v1/db/database/forecasts/calculate', 'POST'), 'wfm_forecast_calculate', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "forecast_id": {"type": "integer", "minimum": 1},
    "service_id": {"type": "integer", "minimum": 1},
    "period_start": {"type": "string", "format": "date"},
    "period_end": {"type": "string", "format": "date"},
    "history_weeks": {"type": "integer", "minimum": 1, "maximum": 52},
    "interval_minutes": {"enum": [15, 30, 60]},
    "forecast_name": {"type": "string", "minLength": 1, "maxLength": 200},
    "target_service_level": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
    "target_seconds": {"type": "integer", "minimum": 1, "maximum": 86400},
    "max_occupancy": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "shrinkage": {"type": "number", "minimum": 0, "exclusiveMaximum": 1}
  },
  "oneOf": [
    {"required": ["forecast_id"],
     "not": {"anyOf": [{"required": ["service_id"]}, {"required": ["period_start"]},
                       {"required": ["period_end"]}, {"required": ["history_weeks"]},
                       {"required": ["interval_minutes"]}, {"required": ["forecast_name"]}]}},
    {"required": ["service_id", "period_start", "period_end"],
     "not": {"required": ["forecast_id"]}}
  ]
}', NULL, TRUE, FALSE, TRUE, 'body'),

(api_mapping_id('/api/v1/db/database/integrations/sync', 'POST'), 'wfm_integration_sync', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["connection_id"],
  "properties": {
    "connection_id": {"type": "integer", "minimum": 1},
    "sync_type": {"enum": ["incremental", "full"]},
    "entities": {"type": "array", "minItems": 1, "maxItems": 20, "uniqueItems": true,
                 "items": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "maxLength": 50}},
    "priority": {"enum": ["low", "normal", "high"]}
  }
}', NULL, TRUE, FALSE, TRUE, 'body'),

(api_mapping_id('/api/v1/db/database/validation/run-checks', 'POST'), 'wfm_quality_run', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "tables": {"type": "array", "minItems": 1, "maxItems": 50, "uniqueItems": true,
               "items": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "maxLength": 63}}
  }
}', NULL, TRUE, FALSE, TRUE, 'body'),

(api_mapping_id('/api/v1/db/database/bulk/export', 'POST'), 'wfm_bulk_export', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["table"],
  "properties": {
    "table": {"enum": ["contact_statistics", "agent_activity", "agents", "work_schedules",
                       "forecast_data_points", "staffing_plans", "integration_logs", "realtime_alerts"]},
    "from": {"type": "string", "minLength": 10, "maxLength": 40},
    "to": {"type": "string", "minLength": 10, "maxLength": 40}
  }
}', NULL, TRUE, FALSE, TRUE, 'body'),

(api_mapping_id('/api/v1/db/database/bulk/import', 'POST'), 'wfm_bulk_import', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["table", "rows"],
  "properties": {
    "table": {"enum": ["contact_statistics", "agent_activity", "agents", "work_schedules"]},
    "rows": {"type": "array", "minItems": 1, "maxItems": 10000,
             "items": {"type": "object", "minProperties": 1}},
    "mode": {"enum": ["upsert", "insert"]}
  }
}', NULL, TRUE, FALSE, TRUE, 'body'),

-- the bulk-path imports: each schema describes one record (an NDJSON line, a CSV
-- row), closed like the bodies; no "$schema" key, which would send every record
-- to the full validator instead of the compiled fast check (engine/records.py).
-- Timestamps are checked by the column's coercion (ISO 8601, naive = UTC).
(api_mapping_id('/api/v1/db/database/bulk/import/contact_statistics', 'POST'), 'wfm_bulk_contact_statistics', '{
  "type": "object",
  "required": ["service_id", "interval_start"],
  "properties": {
    "service_id": {"type": "integer", "minimum": 1, "maximum": 2147483647},
    "interval_start": {"type": "string", "minLength": 10, "maxLength": 40},
    "offered": {"type": "integer", "minimum": 0, "maximum": 2147483647},
    "answered": {"type": "integer", "minimum": 0, "maximum": 2147483647},
    "abandoned": {"type": "integer", "minimum": 0, "maximum": 2147483647},
    "answered_within_threshold": {"type": "integer", "minimum": 0, "maximum": 2147483647},
    "answered_within_10s": {"type": "integer", "minimum": 0, "maximum": 2147483647},
    "answered_within_20s": {"type": "integer", "minimum": 0, "maximum": 2147483647},
    "answered_within_30s": {"type": "integer", "minimum": 0, "maximum": 2147483647},
    "answered_within_60s": {"type": "integer", "minimum": 0, "maximum": 2147483647},
    "talk_seconds": {"type": "integer", "minimum": 0, "maximum": 9007199254740991},
    "hold_seconds": {"type": "integer", "minimum": 0, "maximum": 9007199254740991},
    "wrap_seconds": {"type": "integer", "minimum": 0, "maximum": 9007199254740991},
    "wait_seconds": {"type": "integer", "minimum": 0, "maximum": 9007199254740991},
    "max_wait_seconds": {"type": "integer", "minimum": 0, "maximum": 2147483647},
    "agents_staffed": {"type": "number", "minimum": 0, "maximum": 99999.99}
  }
}', NULL, TRUE, FALSE, TRUE, 'body'),

(api_mapping_id('/api/v1/db/database/bulk/import/agent_activity', 'POST'), 'wfm_bulk_agent_activity', '{
  "type": "object",
  "required": ["agent_id", "activity_date"],
  "properties": {
    "agent_id": {"type": "integer", "minimum": 1, "maximum": 2147483647},
    "activity_date": {"type": "string", "format": "date"},
    "service_id": {"type": "integer", "minimum": 1, "maximum": 2147483647},
    "login_seconds": {"type": "integer", "minimum": 0, "maximum": 86400},
    "ready_seconds": {"type": "integer", "minimum": 0, "maximum": 2147483647},
    "talk_seconds": {"type": "integer", "minimum": 0, "maximum": 2147483647},
    "hold_seconds": {"type": "integer", "minimum": 0, "maximum": 2147483647},
    "wrap_seconds": {"type": "integer", "minimum": 0, "maximum": 2147483647},
    "not_ready_seconds": {"type": "integer", "minimum": 0, "maximum": 2147483647},
    "calls_handled": {"type": "integer", "minimum": 0, "maximum": 2147483647},
    "transfers": {"type": "integer", "minimum": 0, "maximum": 2147483647},
    "scheduled_seconds": {"type": "integer", "minimum": 0, "maximum": 2147483647},
    "adherent_seconds": {"type": "integer", "minimum": 0, "maximum": 2147483647}
  }
}', NULL, TRUE, FALSE, TRUE, 'body'),

(api_mapping_id('/api/v1/db/database/bulk/import/agents', 'POST'), 'wfm_bulk_agents', '{
  "type": "object",
  "required": ["employee_number", "full_name"],
  "properties": {
    "employee_number": {"type": "string", "minLength": 1, "maxLength": 30, "pattern": "\\S"},
    "full_name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"},
    "email": {"type": "string", "maxLength": 255},
    "group_id": {"type": "integer", "minimum": 1, "maximum": 2147483647},
    "primary_service_id": {"type": "integer", "minimum": 1, "maximum": 2147483647},
    "employment_type": {"enum": ["full_time", "part_time", "contractor"]},
    "weekly_hours": {"type": "number", "exclusiveMinimum": 0, "maximum": 60},
    "hire_date": {"type": "string", "format": "date"},
    "is_active": {"type": "boolean"}
  }
}', NULL, TRUE, FALSE, TRUE, 'body'),

(api_mapping_id('/api/v1/db/database/bulk/import/work_schedules', 'POST'), 'wfm_bulk_work_schedules', '{
  "type": "object",
  "required": ["agent_id", "service_id", "shift_start", "shift_end"],
  "properties": {
    "agent_id": {"type": "integer", "minimum": 1, "maximum": 2147483647},
    "service_id": {"type": "integer", "minimum": 1, "maximum": 2147483647},
    "template_id": {"type": "integer", "minimum": 1, "maximum": 2147483647},
    "shift_start": {"type": "string", "minLength": 10, "maxLength": 40},
    "shift_end": {"type": "string", "minLength": 10, "maxLength": 40},
    "status": {"enum": ["planned", "published", "cancelled"]},
    "notes": {"type": "string", "maxLength": 2000}
  }
}', NULL, TRUE, FALSE, TRUE, 'body'),

(api_mapping_id('/api/v1/db/database/maintenance/cleanup', 'POST'), 'wfm_maintenance_cleanup', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "retention_days": {"type": "integer", "minimum": 7, "maximum": 3650},
    "dry_run": {"type": "boolean"},
    "statistics_retention_days": {"type": "integer", "minimum": 90, "maximum": 3650}
  }
}', NULL, TRUE, FALSE, TRUE, 'body'),

(api_mapping_id('/api/v1/performance/alerts/configure', 'POST'), 'wfm_alert_configure', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["metric_name", "green_threshold", "yellow_threshold"],
  "properties": {
    "metric_name": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "maxLength": 50},
    "green_threshold": {"type": "number", "minimum": -1000000000, "maximum": 1000000000},
    "yellow_threshold": {"type": "number", "minimum": -1000000000, "maximum": 1000000000},
    "service_id": {"type": "integer", "minimum": 1},
    "notification_channels": {"type": "array", "minItems": 1, "uniqueItems": true,
                              "items": {"enum": ["dashboard", "email", "sms", "webhook"]}},
    "escalation_minutes": {"type": "integer", "minimum": 1, "maximum": 1440},
    "is_active": {"type": "boolean"},
    "predictive": {
      "type": "object",
      "minProperties": 1,
      "properties": {
        "horizon_minutes": {"type": "integer", "minimum": 15, "maximum": 1440},
        "min_confidence_pct": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
        "accuracy_target_pct": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
        "is_active": {"type": "boolean"}
      }
    }
  }
}', NULL, TRUE, FALSE, TRUE, 'body'),

(api_mapping_id('/api/v1/integration/sync/trigger', 'POST'), 'wfm_sync_trigger', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "connection_ids": {"type": "array", "minItems": 1, "maxItems": 100, "uniqueItems": true,
                       "items": {"type": "integer", "minimum": 1}},
    "system_type": {"enum": ["1c_zup", "contact_center", "ldap", "webhook"]},
    "sync_type": {"enum": ["incremental", "full"]},
    "entities": {"type": "array", "minItems": 1, "maxItems": 20, "uniqueItems": true,
                 "items": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "maxLength": 50}},
    "priority": {"enum": ["low", "normal", "high"]}
  }
}', NULL, TRUE, FALSE, TRUE, 'body'),

(api_mapping_id('/api/v1/performance/optimization/suggest', 'POST'), 'wfm_optimization_suggest', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "period_start": {"type": "string", "minLength": 10, "maxLength": 40},
    "period_end": {"type": "string", "minLength": 10, "maxLength": 40},
    "service_id": {"type": "integer", "minimum": 1},
    "categories": {"type": "array", "minItems": 1, "uniqueItems": true,
                   "items": {"enum": ["staffing", "scheduling", "process", "training", "technology",
                                      "forecasting"]}},
    "max_priority": {"type": "integer", "minimum": 1, "maximum": 5},
    "include_database": {"type": "boolean"}
  }
}', NULL, TRUE, FALSE, TRUE, 'body'),

-- query strings -------------------------------------------------------------
(api_mapping_id('/api/v1/db/database/contact-statistics', 'GET'), 'wfm_contact_statistics_query', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "from": {"type": "string"},
    "to": {"type": "string"},
    "granularity": {"enum": ["interval", "15min", "hour", "day", "week", "month"]},
    "service_id": {"type": "integer", "minimum": 1}
  }
}', NULL, TRUE, FALSE, TRUE, 'query'),

(api_mapping_id('/api/v1/db/database/agent-activity', 'GET'), 'wfm_agent_activity_query', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "from": {"type": "string"},
    "to": {"type": "string"},
    "service_id": {"type": "integer", "minimum": 1},
    "agent_id": {"type": "integer", "minimum": 1}
  }
}', NULL, TRUE, FALSE, TRUE, 'query'),

(api_mapping_id('/api/v1/db/database/performance-metrics', 'GET'), 'wfm_performance_metrics_query', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "from": {"type": "string"},
    "to": {"type": "string"},
    "service_id": {"type": "integer", "minimum": 1}
  }
}', NULL, TRUE, FALSE, TRUE, 'query'),

(api_mapping_id('/api/v1/db/database/performance-alerts', 'GET'), 'wfm_performance_alerts_query', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "service_id": {"type": "integer", "minimum": 1},
    "state": {"enum": ["active", "open", "acknowledged", "resolved", "all"]},
    "level": {"enum": ["red", "yellow"]}
  }
}', NULL, TRUE, FALSE, TRUE, 'query'),

(api_mapping_id('/api/v1/db/database/schedules', 'GET'), 'wfm_schedules_query', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "from": {"type": "string"},
    "to": {"type": "string"},
    "service_id": {"type": "integer", "minimum": 1},
    "agent_id": {"type": "integer", "minimum": 1},
    "status": {"enum": ["planned", "published", "cancelled"]}
  }
}', NULL, TRUE, FALSE, TRUE, 'query'),

(api_mapping_id('/api/v1/db/database/forecasts', 'GET'), 'wfm_forecasts_query', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "service_id": {"type": "integer", "minimum": 1},
    "status": {"enum": ["draft", "calculated", "published"]},
    "forecast_id": {"type": "integer", "minimum": 1},
    "include_intervals": {"type": "boolean"}
  }
}', NULL, TRUE, FALSE, TRUE, 'query'),

(api_mapping_id('/api/v1/db/database/integrations', 'GET'), 'wfm_integrations_query', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "system_type": {"enum": ["1c_zup", "contact_center", "ldap", "webhook"]}
  }
}', NULL, TRUE, FALSE, TRUE, 'query'),

(api_mapping_id('/api/v1/performance/metrics/realtime', 'GET'), 'wfm_realtime_metrics_query', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "service_id": {"type": "integer", "minimum": 1}
  }
}', NULL, TRUE, FALSE, TRUE, 'query'),

(api_mapping_id('/api/v1/performance/sla/compliance', 'GET'), 'wfm_sla_compliance_query', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "from": {"type": "string"},
    "to": {"type": "string"},
    "threshold_seconds": {"type": "integer", "minimum": 1, "maximum": 86400},
    "target": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "own_targets": {"type": "boolean"}
  }
}', NULL, TRUE, FALSE, TRUE, 'query'),

(api_mapping_id('/api/v1/performance/dashboard/executive', 'GET'), 'wfm_executive_dashboard_query', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "from": {"type": "string"},
    "to": {"type": "string"}
  }
}', NULL, TRUE, FALSE, TRUE, 'query'),

(api_mapping_id('/api/v1/integration/logs/activity', 'GET'), 'wfm_integration_logs_query', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "connection_id": {"type": "integer", "minimum": 1},
    "correlation_id": {"type": "string"},
    "event_type": {"enum": ["sync_requested", "sync_started", "sync_completed", "sync_failed",
                            "record_rejected", "data_access", "data_export", "data_erasure", "auth"]},
    "level": {"enum": ["info", "warning", "error"]},
    "personal_data": {"type": "boolean"},
    "since": {"type": "string"},
    "until": {"type": "string"}
  }
}', NULL, TRUE, FALSE, TRUE, 'query'),

(api_mapping_id('/api/v1/integration/mapping/endpoints', 'GET'), 'wfm_mapping_endpoints_query', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "connection_id": {"type": "integer", "minimum": 1},
    "direction": {"enum": ["import", "export"]}
  }
}', NULL, TRUE, FALSE, TRUE, 'query')

ON CONFLICT (endpoint_mapping_id, applies_to) DO UPDATE SET
    schema_name          = EXCLUDED.schema_name,
    validation_schema    = EXCLUDED.validation_schema,
    validation_rules     = EXCLUDED.validation_rules,
    strict_mode          = EXCLUDED.strict_mode,
    allow_unknown_fields = EXCLUDED.allow_unknown_fields,
    sanitize_input       = EXCLUDED.sanitize_input
WHERE (s.schema_name, s.validation_schema, s.validation_rules, s.strict_mode,
       s.allow_unknown_fields, s.sanitize_input)
      IS DISTINCT FROM
      (EXCLUDED.schema_name, EXCLUDED.validation_schema, EXCLUDED.validation_rules,
       EXCLUDED.strict_mode, EXCLUDED.allow_unknown_fields, EXCLUDED.sanitize_input);

-- ---------------------------------------------------------------------------
-- Sanitization rules, each scoped to one WFM endpoint (applied before the
-- schema): metric and table names are trimmed and lower-cased (" Agents "
-- imports into agents), forecast names lose repeated spaces. No unique key
-- exists, so a rule is identified by (field_name, sanitization_type,
-- endpoint): updated in place when it differs, inserted when absent.
-- ---------------------------------------------------------------------------

WITH wanted (field_name, field_type, sanitization_type, sanitization_config, max_length, error_message,
             endpoint_mapping_id) AS (
    VALUES
    ('metric_name', 'string', 'trim', '{"to_lowercase": true}'::jsonb, 50,
     'metric_name must be at most 50 characters', api_mapping_id('/api/v1/performance/alerts/configure', 'POST')),
    ('table', 'string', 'trim', '{"to_lowercase": true}'::jsonb, 63,
     'table must be at most 63 characters', api_mapping_id('/api/v1/db/database/bulk/import', 'POST')),
    ('table', 'string', 'trim', '{"to_lowercase": true}'::jsonb, 63,
     'table must be at most 63 characters', api_mapping_id('/api/v1/db/database/bulk/export', 'POST')),
    ('forecast_name', 'string', 'trim', '{"remove_extra_spaces": true}'::jsonb, 200,
     'forecast_name must be at most 200 characters',
     api_mapping_id('/api/v1/db/database/forecasts/calculate', 'POST'))
),
updated AS (
    UPDATE data_sanitization_rules r
    SET field_type          = w.field_type,
        sanitization_config = w.sanitization_config,
        max_length          = w.max_length,
        error_message       = w.error_message,
        is_active           = TRUE
    FROM wanted w
    WHERE r.field_name = w.field_name
      AND r.sanitization_type = w.sanitization_type
      AND r.endpoint_mapping_id IS NOT DISTINCT FROM w.endpoint_mapping_id
      AND (r.field_type, r.sanitization_config, r.max_length, r.error_message, r.is_active)
          IS DISTINCT FROM
          (w.field_type, w.sanitization_config, w.max_length, w.error_message, TRUE)
    RETURNING r.id
)
INSERT INTO data_sanitization_rules
    (field_name, field_type, sanitization_type, sanitization_config, max_length, error_message,
     endpoint_mapping_id, is_active)
SELECT w.field_name, w.field_type, w.sanitization_type, w.sanitization_config, w.max_length,
       w.error_message, w.endpoint_mapping_id, TRUE
FROM wanted w
WHERE NOT EXISTS (
    SELECT 1 FROM data_sanitization_rules r
    WHERE r.field_name = w.field_name
      AND r.sanitization_type = w.sanitization_type
      AND r.endpoint_mapping_id IS NOT DISTINCT FROM w.endpoint_mapping_id
);

-- ---------------------------------------------------------------------------
-- Cache rules. A cached read depends on its target_table and on the tables
-- of its rules; a write drops the cached reads of its target_table and of the
-- tables of its rules (in every engine process). So a bulk import of agent
-- activity drops the cached agent-activity, validation and metrics reads at
-- once, a forecast calculation the cached forecasts and realtime metrics, a
-- sync trigger the integration list, health and activity log. Reads keep
-- their row's TTL (cache_ttl_seconds NULL here); realtime reads have 5 s.
-- ---------------------------------------------------------------------------

INSERT INTO api_cache_config AS c (endpoint_mapping_id, cache_enabled, cache_ttl_seconds, cache_invalidation_rules)
SELECT api_mapping_id(r.path, 'GET'), TRUE, NULL, jsonb_build_object('tables', r.tables)
FROM (VALUES
    ('/api/v1/db/database/contact-statistics', ARRAY['services']),
    ('/api/v1/db/database/agent-activity', ARRAY['agents']),
    ('/api/v1/db/database/performance-metrics',
     ARRAY['agent_activity', 'forecasts', 'forecast_data_points', 'work_schedules', 'break_schedules',
           'realtime_agents', 'realtime_queues', 'staffing_plans', 'threshold_alerts']),
    ('/api/v1/db/database/realtime-status', ARRAY['realtime_agents', 'threshold_alerts', 'services']),
    ('/api/v1/db/database/performance-alerts', ARRAY['threshold_alerts']),
    ('/api/v1/db/database/schedules', ARRAY['break_schedules', 'agents']),
    ('/api/v1/db/database/forecasts', ARRAY['forecast_data_points', 'staffing_plans', 'contact_statistics']),
    ('/api/v1/db/database/integrations', ARRAY['sync_jobs', 'integration_sync_logs']),
    ('/api/v1/db/database/validation/{table_name}',
     ARRAY['contact_statistics', 'agent_activity', 'agents', 'work_schedules', 'forecast_data_points',
           'integration_connections']),
    ('/api/v1/performance/metrics/realtime',
     ARRAY['contact_statistics', 'agent_activity', 'forecasts', 'forecast_data_points', 'work_schedules',
           'break_schedules', 'realtime_agents', 'realtime_queues', 'staffing_plans', 'threshold_alerts']),
    ('/api/v1/performance/sla/compliance', ARRAY['services', 'threshold_alerts']),
    ('/api/v1/performance/dashboard/executive',
     ARRAY['realtime_agents', 'staffing_plans', 'realtime_alerts', 'threshold_alerts']),
    ('/api/v1/integration/health/status', ARRAY['sync_jobs', 'integration_sync_logs', 'data_quality_results'])
) AS r (path, tables)
ON CONFLICT (endpoint_mapping_id) DO UPDATE
SET cache_enabled = EXCLUDED.cache_enabled,
    cache_ttl_seconds = EXCLUDED.cache_ttl_seconds,
    cache_invalidation_rules = EXCLUDED.cache_invalidation_rules
WHERE (c.cache_enabled, c.cache_ttl_seconds, c.cache_invalidation_rules)
      IS DISTINCT FROM
      (EXCLUDED.cache_enabled, EXCLUDED.cache_ttl_seconds, EXCLUDED.cache_invalidation_rules);

-- Writes (never cached; the row's TTL column keeps its default, unused).
INSERT INTO api_cache_config AS c (endpoint_mapping_id, cache_enabled, cache_invalidation_rules)
SELECT api_mapping_id(w.path, 'POST'), FALSE, jsonb_build_object('tables', w.tables)
FROM (VALUES
    ('/api/v1/db/database/forecasts/calculate', ARRAY['forecast_data_points', 'staffing_plans']),
    ('/api/v1/db/database/integrations/sync', ARRAY['integration_logs']),
    ('/api/v1/integration/sync/trigger', ARRAY['integration_logs']),
    ('/api/v1/db/database/bulk/import', ARRAY['agent_activity', 'agents', 'work_schedules']),
    ('/api/v1/db/database/maintenance/cleanup',
     ARRAY['integration_sync_logs', 'sync_jobs', 'agent_status_history', 'operational_metrics',
           'realtime_alerts', 'data_quality_results', 'schedule_optimization_runs', 'contact_statistics',
           'agent_activity']),
    ('/api/v1/performance/alerts/configure', ARRAY['predictive_alerts'])
) AS w (path, tables)
ON CONFLICT (endpoint_mapping_id) DO UPDATE
SET cache_enabled = EXCLUDED.cache_enabled,
    cache_invalidation_rules = EXCLUDED.cache_invalidation_rules
WHERE (c.cache_enabled, c.cache_invalidation_rules)
      IS DISTINCT FROM
      (EXCLUDED.cache_enabled, EXCLUDED.cache_invalidation_rules);
