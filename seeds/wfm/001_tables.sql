-- wfm 001: the tables of the contact-centre workforce-management (WFM) domain
-- (seeds-docs/000 and 001), their indexes and the global reference rows.
-- The computations the endpoint templates call (Erlang C staffing, SLA
-- compliance, traffic lights, schedule gaps and conflicts, forecasts,
-- optimisation rules, data quality, bulk import, maintenance, capacity, and
-- wfm_generate() behind generate.sql) are in 002_functions.sql.
--
-- Idempotent: CREATE ... IF NOT EXISTS, COMMENT ON (replaces), and reference
-- rows inserted only when their key is absent (an admin may edit them after
-- the first seed; re-applying never overwrites those edits).
--
-- Tenant isolation: every table that holds a contact centre's own data has a
-- tenant_id, bound by the endpoint templates from the caller's `tenant_id`
-- claim and never from the request. A child row's tenant is kept equal to its
-- parent's by a composite foreign key (parent_id, tenant_id) -> parent
-- (id, tenant_id) wherever the reference is mandatory or cascades; the few
-- optional references that are set to NULL when the parent goes
-- (agents.group_id, agents.primary_service_id, agent_activity.service_id,
-- realtime_agents.current_service_id, work_schedules.template_id,
-- integration_logs.connection_id) are plain foreign keys, and the functions
-- that write them check the tenant. Three tables are global on purpose,
-- because they are product knowledge, not a tenant's data:
--   wfm_metric_definitions  what each metric means and which way is better
--   optimization_rules      threshold -> suggestion rules of the optimiser
--   data_quality_checks     the SQL conditions of the data-quality checks
-- They are written by the domain's administrators (like mapping rows) and
-- read by every tenant.
--
-- Times are TIMESTAMPTZ; days and intervals are UTC (an interval_start is
-- aligned to 15 minutes of UTC time).
--
-- Rows made by wfm_generate() (generate.sql) are marked: services.is_generated
-- and agents.is_generated; their statistics and activity hang off them.

-- ---------------------------------------------------------------------------
-- Reference data (global)
-- ---------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS wfm_metric_definitions (
    metric_name               VARCHAR(50) PRIMARY KEY CHECK (metric_name ~ '^[a-z][a-z0-9_]*$'),
    display_name              VARCHAR(100) NOT NULL,
    unit                      VARCHAR(20) NOT NULL CHECK (unit IN ('percent', 'seconds', 'count')),
    direction                 VARCHAR(20) NOT NULL
                              CHECK (direction IN ('higher_is_better', 'lower_is_better')),
    update_frequency_seconds  INTEGER NOT NULL DEFAULT 60 CHECK (update_frequency_seconds > 0),
    description               TEXT
);

CREATE TABLE IF NOT EXISTS optimization_rules (
    rule_code                 VARCHAR(50) PRIMARY KEY,
    metric_name               VARCHAR(50) NOT NULL REFERENCES wfm_metric_definitions (metric_name),
    comparison                VARCHAR(2) NOT NULL CHECK (comparison IN ('<', '<=', '>', '>=')),
    threshold_value           NUMERIC(12, 2) NOT NULL,
    category                  VARCHAR(20) NOT NULL
                              CHECK (category IN ('staffing', 'scheduling', 'process', 'training',
                                                  'technology', 'forecasting')),
    priority                  SMALLINT NOT NULL DEFAULT 3 CHECK (priority BETWEEN 1 AND 5),
    suggestion                TEXT NOT NULL,
    impact                    TEXT NOT NULL,
    cost_impact               VARCHAR(10) NOT NULL DEFAULT 'neutral'
                              CHECK (cost_impact IN ('saving', 'neutral', 'cost')),
    labor_compliance_note     TEXT,
    is_active                 BOOLEAN NOT NULL DEFAULT TRUE
);

-- failing_condition is a SQL boolean expression over the row alias t that is
-- TRUE for a row that fails the check; it is administrator-written SQL, run by
-- wfm_validate_table() only against allow-listed tables, always as one
-- parenthesised condition (no statement separator allowed).
CREATE TABLE IF NOT EXISTS data_quality_checks (
    table_name                VARCHAR(63) NOT NULL CHECK (table_name ~ '^[a-z][a-z0-9_]*$'),
    check_name                VARCHAR(63) NOT NULL CHECK (check_name ~ '^[a-z][a-z0-9_]*$'),
    description               TEXT NOT NULL,
    failing_condition         TEXT NOT NULL CHECK (position(';' IN failing_condition) = 0),
    severity                  VARCHAR(10) NOT NULL DEFAULT 'warning'
                              CHECK (severity IN ('info', 'warning', 'error')),
    is_active                 BOOLEAN NOT NULL DEFAULT TRUE,
    PRIMARY KEY (table_name, check_name)
);

-- ---------------------------------------------------------------------------
-- Organisation: services, groups, agents
-- ---------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS services (
    service_id                INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id                 INTEGER NOT NULL,
    service_code              VARCHAR(30) NOT NULL CHECK (btrim(service_code) <> ''),
    service_name              VARCHAR(200) NOT NULL CHECK (btrim(service_name) <> ''),
    channel                   VARCHAR(20) NOT NULL DEFAULT 'voice'
                              CHECK (channel IN ('voice', 'chat', 'email', 'callback')),
    sl_target_pct             NUMERIC(5, 2) NOT NULL DEFAULT 80
                              CHECK (sl_target_pct > 0 AND sl_target_pct <= 100),
    sl_threshold_seconds      INTEGER NOT NULL DEFAULT 20 CHECK (sl_threshold_seconds > 0),
    target_aht_seconds        INTEGER CHECK (target_aht_seconds > 0),
    is_active                 BOOLEAN NOT NULL DEFAULT TRUE,
    is_generated              BOOLEAN NOT NULL DEFAULT FALSE,  -- made by wfm_generate()
    created_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, service_code),
    UNIQUE (service_id, tenant_id)          -- target of tenant-consistent foreign keys
);

CREATE TABLE IF NOT EXISTS service_groups (
    group_id                  INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id                 INTEGER NOT NULL,
    service_id                INTEGER NOT NULL,
    group_name                VARCHAR(200) NOT NULL,
    skill                     VARCHAR(100),
    target_agents             INTEGER CHECK (target_agents >= 0),
    is_active                 BOOLEAN NOT NULL DEFAULT TRUE,
    FOREIGN KEY (service_id, tenant_id) REFERENCES services (service_id, tenant_id) ON DELETE CASCADE,
    UNIQUE (service_id, group_name)
);

CREATE TABLE IF NOT EXISTS agents (
    agent_id                  INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id                 INTEGER NOT NULL,
    employee_number           VARCHAR(30) NOT NULL CHECK (btrim(employee_number) <> ''),
    full_name                 VARCHAR(200) NOT NULL CHECK (btrim(full_name) <> ''),
    email                     VARCHAR(255),
    group_id                  INTEGER REFERENCES service_groups (group_id) ON DELETE SET NULL,
    primary_service_id        INTEGER REFERENCES services (service_id) ON DELETE SET NULL,
    employment_type           VARCHAR(20) NOT NULL DEFAULT 'full_time'
                              CHECK (employment_type IN ('full_time', 'part_time', 'contractor')),
    weekly_hours              NUMERIC(4, 1) NOT NULL DEFAULT 40
                              CHECK (weekly_hours > 0 AND weekly_hours <= 60),
    hire_date                 DATE,
    is_active                 BOOLEAN NOT NULL DEFAULT TRUE,
    is_generated              BOOLEAN NOT NULL DEFAULT FALSE,  -- made by wfm_generate()
    created_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, employee_number),
    UNIQUE (agent_id, tenant_id)
);

CREATE INDEX IF NOT EXISTS idx_agents_tenant_service ON agents (tenant_id, primary_service_id);

-- ---------------------------------------------------------------------------
-- Time series: 15-minute contact statistics, agent activity, status history
-- ---------------------------------------------------------------------------

-- One row per service per 15-minute interval (what an ACD reports). Totals,
-- not averages, so any period aggregates exactly: AHT = (talk + hold + wrap)
-- / answered, ASA = wait / answered, service level = answered within the
-- threshold / offered. answered_within_threshold counts against the service's
-- own sl_threshold_seconds; answered_within_10s/20s/30s/60s are the ACD's
-- service-level increments (cumulative; NULL when the ACD does not report
-- them), so the SLA can be measured against a common threshold (80/20) across
-- services with different own thresholds. answered + abandoned may exceed
-- offered for an interval (calls offered in the previous interval carried
-- over); the data-quality check carry_over_exceeds_offered reports such rows.
CREATE TABLE IF NOT EXISTS contact_statistics (
    tenant_id                 INTEGER NOT NULL,
    service_id                INTEGER NOT NULL,
    interval_start            TIMESTAMPTZ NOT NULL
                              CHECK (interval_start = date_bin('15 minutes', interval_start,
                                                               TIMESTAMPTZ '2000-01-01 00:00+00')),
    offered                   INTEGER NOT NULL DEFAULT 0 CHECK (offered >= 0),
    answered                  INTEGER NOT NULL DEFAULT 0 CHECK (answered >= 0),
    abandoned                 INTEGER NOT NULL DEFAULT 0 CHECK (abandoned >= 0),
    answered_within_threshold INTEGER NOT NULL DEFAULT 0
                              CHECK (answered_within_threshold BETWEEN 0 AND answered),
    answered_within_10s       INTEGER CHECK (answered_within_10s BETWEEN 0 AND answered),
    answered_within_20s       INTEGER CHECK (answered_within_20s BETWEEN 0 AND answered),
    answered_within_30s       INTEGER CHECK (answered_within_30s BETWEEN 0 AND answered),
    answered_within_60s       INTEGER CHECK (answered_within_60s BETWEEN 0 AND answered),
    talk_seconds              BIGINT NOT NULL DEFAULT 0 CHECK (talk_seconds >= 0),
    hold_seconds              BIGINT NOT NULL DEFAULT 0 CHECK (hold_seconds >= 0),
    wrap_seconds              BIGINT NOT NULL DEFAULT 0 CHECK (wrap_seconds >= 0),
    wait_seconds              BIGINT NOT NULL DEFAULT 0 CHECK (wait_seconds >= 0),
    max_wait_seconds          INTEGER CHECK (max_wait_seconds >= 0),
    agents_staffed            NUMERIC(7, 2) CHECK (agents_staffed >= 0),
    aht_seconds               NUMERIC(9, 2) GENERATED ALWAYS AS (
                                  CASE WHEN answered > 0
                                       THEN round((talk_seconds + hold_seconds + wrap_seconds)::NUMERIC
                                                  / answered, 2) END) STORED,
    service_level_pct         NUMERIC(5, 2) GENERATED ALWAYS AS (
                                  CASE WHEN offered > 0
                                       THEN round(100.0 * LEAST(answered_within_threshold, offered)
                                                  / offered, 2) END) STORED,
    PRIMARY KEY (service_id, interval_start),   -- the aggregation index (service, interval_start)
    FOREIGN KEY (service_id, tenant_id) REFERENCES services (service_id, tenant_id) ON DELETE CASCADE,
    CHECK (answered_within_10s <= answered_within_20s
           AND answered_within_20s <= answered_within_30s
           AND answered_within_30s <= answered_within_60s)
);

-- A tenant's intervals over a date range (the aggregation without a service).
CREATE INDEX IF NOT EXISTS idx_contact_statistics_tenant_interval
    ON contact_statistics (tenant_id, interval_start);

-- One row per agent per day.
CREATE TABLE IF NOT EXISTS agent_activity (
    tenant_id                 INTEGER NOT NULL,
    agent_id                  INTEGER NOT NULL,
    activity_date             DATE NOT NULL,
    service_id                INTEGER REFERENCES services (service_id) ON DELETE SET NULL,
    login_seconds             INTEGER NOT NULL DEFAULT 0 CHECK (login_seconds BETWEEN 0 AND 86400),
    ready_seconds             INTEGER NOT NULL DEFAULT 0 CHECK (ready_seconds >= 0),
    talk_seconds              INTEGER NOT NULL DEFAULT 0 CHECK (talk_seconds >= 0),
    hold_seconds              INTEGER NOT NULL DEFAULT 0 CHECK (hold_seconds >= 0),
    wrap_seconds              INTEGER NOT NULL DEFAULT 0 CHECK (wrap_seconds >= 0),
    not_ready_seconds         INTEGER NOT NULL DEFAULT 0 CHECK (not_ready_seconds >= 0),
    calls_handled             INTEGER NOT NULL DEFAULT 0 CHECK (calls_handled >= 0),
    transfers                 INTEGER NOT NULL DEFAULT 0 CHECK (transfers >= 0),
    scheduled_seconds         INTEGER NOT NULL DEFAULT 0 CHECK (scheduled_seconds >= 0),
    adherent_seconds          INTEGER NOT NULL DEFAULT 0 CHECK (adherent_seconds >= 0),
    PRIMARY KEY (agent_id, activity_date),
    FOREIGN KEY (agent_id, tenant_id) REFERENCES agents (agent_id, tenant_id) ON DELETE CASCADE
);

CREATE INDEX IF NOT EXISTS idx_agent_activity_tenant_date
    ON agent_activity (tenant_id, activity_date);

CREATE TABLE IF NOT EXISTS agent_status_history (
    status_id                 BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id                 INTEGER NOT NULL,
    agent_id                  INTEGER NOT NULL,
    status                    VARCHAR(20) NOT NULL
                              CHECK (status IN ('logged_out', 'available', 'on_call', 'wrap_up',
                                                'break', 'lunch', 'training', 'meeting', 'not_ready')),
    reason_code               VARCHAR(50),
    started_at                TIMESTAMPTZ NOT NULL,
    ended_at                  TIMESTAMPTZ CHECK (ended_at IS NULL OR ended_at >= started_at),
    FOREIGN KEY (agent_id, tenant_id) REFERENCES agents (agent_id, tenant_id) ON DELETE CASCADE
);

CREATE INDEX IF NOT EXISTS idx_agent_status_history_agent
    ON agent_status_history (agent_id, started_at DESC);
CREATE INDEX IF NOT EXISTS idx_agent_status_history_tenant
    ON agent_status_history (tenant_id, started_at);

-- ---------------------------------------------------------------------------
-- Real time: queues, agents, operational metrics
-- ---------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS realtime_queues (
    service_id                INTEGER PRIMARY KEY,
    tenant_id                 INTEGER NOT NULL,
    calls_waiting             INTEGER NOT NULL DEFAULT 0 CHECK (calls_waiting >= 0),
    longest_wait_seconds      INTEGER NOT NULL DEFAULT 0 CHECK (longest_wait_seconds >= 0),
    offered_today             INTEGER NOT NULL DEFAULT 0 CHECK (offered_today >= 0),
    answered_today            INTEGER NOT NULL DEFAULT 0 CHECK (answered_today >= 0),
    abandoned_today           INTEGER NOT NULL DEFAULT 0 CHECK (abandoned_today >= 0),
    answered_within_threshold_today INTEGER NOT NULL DEFAULT 0
                              CHECK (answered_within_threshold_today >= 0),
    updated_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    FOREIGN KEY (service_id, tenant_id) REFERENCES services (service_id, tenant_id) ON DELETE CASCADE
);

CREATE INDEX IF NOT EXISTS idx_realtime_queues_tenant ON realtime_queues (tenant_id);

CREATE TABLE IF NOT EXISTS realtime_agents (
    agent_id                  INTEGER PRIMARY KEY,
    tenant_id                 INTEGER NOT NULL,
    status                    VARCHAR(20) NOT NULL
                              CHECK (status IN ('logged_out', 'available', 'on_call', 'wrap_up',
                                                'break', 'lunch', 'training', 'meeting', 'not_ready')),
    status_since              TIMESTAMPTZ NOT NULL DEFAULT now(),
    current_service_id        INTEGER REFERENCES services (service_id) ON DELETE SET NULL,
    updated_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    FOREIGN KEY (agent_id, tenant_id) REFERENCES agents (agent_id, tenant_id) ON DELETE CASCADE
);

CREATE INDEX IF NOT EXISTS idx_realtime_agents_tenant ON realtime_agents (tenant_id, current_service_id);

-- Snapshots of the key operational metrics (what the ACD integration or a
-- monitoring job writes every update_frequency_seconds). service_id NULL =
-- the whole contact centre. The realtime metrics compare the live value with
-- the latest snapshot for their trend arrow.
CREATE TABLE IF NOT EXISTS operational_metrics (
    metric_id                 BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id                 INTEGER NOT NULL,
    service_id                INTEGER,
    metric_name               VARCHAR(50) NOT NULL REFERENCES wfm_metric_definitions (metric_name),
    metric_value              NUMERIC(12, 2) NOT NULL,
    target_value              NUMERIC(12, 2),
    measured_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    source                    VARCHAR(50) NOT NULL DEFAULT 'acd',
    FOREIGN KEY (service_id, tenant_id) REFERENCES services (service_id, tenant_id) ON DELETE CASCADE
);

CREATE INDEX IF NOT EXISTS idx_operational_metrics_tenant_time
    ON operational_metrics (tenant_id, measured_at DESC);
CREATE INDEX IF NOT EXISTS idx_operational_metrics_latest
    ON operational_metrics (tenant_id, metric_name, service_id, measured_at DESC);

-- ---------------------------------------------------------------------------
-- Alerts: thresholds (green / yellow / red per metric), predictive alerts,
-- alert events
-- ---------------------------------------------------------------------------

-- A value is green when it meets green_threshold, yellow when it meets
-- yellow_threshold, red otherwise; "meets" follows the metric's direction
-- (>= for higher_is_better, <= for lower_is_better), so a value equal to a
-- threshold is on the better side. green must be at least as good as yellow
-- (trigger threshold_alerts_check, WFM_INVALID_THRESHOLDS). service_id NULL
-- is the tenant-wide threshold; a service's own row wins over it.
CREATE TABLE IF NOT EXISTS threshold_alerts (
    alert_id                  INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id                 INTEGER NOT NULL,
    metric_name               VARCHAR(50) NOT NULL REFERENCES wfm_metric_definitions (metric_name),
    service_id                INTEGER,
    green_threshold           NUMERIC(12, 2) NOT NULL,
    yellow_threshold          NUMERIC(12, 2) NOT NULL,
    notification_channels     TEXT[] NOT NULL DEFAULT '{dashboard}'
                              CHECK (notification_channels <@ ARRAY['dashboard', 'email', 'sms',
                                                                    'webhook']::TEXT[]),
    escalation_minutes        INTEGER NOT NULL DEFAULT 15 CHECK (escalation_minutes BETWEEN 1 AND 1440),
    is_active                 BOOLEAN NOT NULL DEFAULT TRUE,
    updated_by                VARCHAR(200),
    created_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    FOREIGN KEY (service_id, tenant_id) REFERENCES services (service_id, tenant_id) ON DELETE CASCADE
);

CREATE UNIQUE INDEX IF NOT EXISTS ux_threshold_alerts_scope
    ON threshold_alerts (tenant_id, metric_name, (COALESCE(service_id, 0)));

-- Predictive alerts: warn horizon_minutes ahead when the forecast (staffing
-- plan against scheduled agents) says the metric will cross its red
-- threshold; only raised when the forecast's confidence reaches
-- min_confidence_pct, and the prediction's measured accuracy should stay at
-- or above accuracy_target_pct.
CREATE TABLE IF NOT EXISTS predictive_alerts (
    predictive_alert_id       INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id                 INTEGER NOT NULL,
    metric_name               VARCHAR(50) NOT NULL REFERENCES wfm_metric_definitions (metric_name),
    service_id                INTEGER,
    horizon_minutes           INTEGER NOT NULL DEFAULT 60 CHECK (horizon_minutes BETWEEN 15 AND 1440),
    min_confidence_pct        NUMERIC(5, 2) NOT NULL DEFAULT 70
                              CHECK (min_confidence_pct > 0 AND min_confidence_pct <= 100),
    accuracy_target_pct       NUMERIC(5, 2) NOT NULL DEFAULT 85
                              CHECK (accuracy_target_pct > 0 AND accuracy_target_pct <= 100),
    notification_channels     TEXT[] NOT NULL DEFAULT '{dashboard}'
                              CHECK (notification_channels <@ ARRAY['dashboard', 'email', 'sms',
                                                                    'webhook']::TEXT[]),
    is_active                 BOOLEAN NOT NULL DEFAULT TRUE,
    updated_by                VARCHAR(200),
    created_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    FOREIGN KEY (service_id, tenant_id) REFERENCES services (service_id, tenant_id) ON DELETE CASCADE
);

CREATE UNIQUE INDEX IF NOT EXISTS ux_predictive_alerts_scope
    ON predictive_alerts (tenant_id, metric_name, (COALESCE(service_id, 0)));

CREATE TABLE IF NOT EXISTS realtime_alerts (
    alert_event_id            BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id                 INTEGER NOT NULL,
    threshold_alert_id        INTEGER REFERENCES threshold_alerts (alert_id) ON DELETE SET NULL,
    service_id                INTEGER,
    metric_name               VARCHAR(50) NOT NULL REFERENCES wfm_metric_definitions (metric_name),
    level                     VARCHAR(10) NOT NULL CHECK (level IN ('yellow', 'red')),
    metric_value              NUMERIC(12, 2) NOT NULL,
    threshold_value           NUMERIC(12, 2),
    message                   TEXT NOT NULL,
    triggered_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    acknowledged_at           TIMESTAMPTZ,
    acknowledged_by           VARCHAR(200),
    resolved_at               TIMESTAMPTZ,
    FOREIGN KEY (service_id, tenant_id) REFERENCES services (service_id, tenant_id) ON DELETE CASCADE,
    CHECK (resolved_at IS NULL OR resolved_at >= triggered_at)
);

CREATE INDEX IF NOT EXISTS idx_realtime_alerts_tenant_time
    ON realtime_alerts (tenant_id, triggered_at DESC);

-- ---------------------------------------------------------------------------
-- Schedules: templates, shifts, breaks, optimisation runs
-- ---------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS schedule_templates (
    template_id               INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id                 INTEGER NOT NULL,
    template_name             VARCHAR(100) NOT NULL,
    shift_start               TIME NOT NULL,
    shift_minutes             INTEGER NOT NULL CHECK (shift_minutes BETWEEN 60 AND 720),
    break_minutes             INTEGER NOT NULL DEFAULT 0 CHECK (break_minutes BETWEEN 0 AND 120),
    days_of_week              SMALLINT[] NOT NULL DEFAULT '{1,2,3,4,5}'
                              CHECK (days_of_week <@ ARRAY[1, 2, 3, 4, 5, 6, 7]::SMALLINT[]),
    is_active                 BOOLEAN NOT NULL DEFAULT TRUE,
    UNIQUE (tenant_id, template_name)
);

-- Overlapping shifts of one agent are not refused here: a WFM import may
-- bring them in, and the optimiser reports them as conflicts.
CREATE TABLE IF NOT EXISTS work_schedules (
    schedule_id               BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id                 INTEGER NOT NULL,
    agent_id                  INTEGER NOT NULL,
    service_id                INTEGER NOT NULL,
    template_id               INTEGER REFERENCES schedule_templates (template_id) ON DELETE SET NULL,
    shift_start               TIMESTAMPTZ NOT NULL,
    shift_end                 TIMESTAMPTZ NOT NULL,
    status                    VARCHAR(20) NOT NULL DEFAULT 'planned'
                              CHECK (status IN ('planned', 'published', 'cancelled')),
    notes                     TEXT,
    created_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (shift_end > shift_start AND shift_end - shift_start <= INTERVAL '16 hours'),
    FOREIGN KEY (agent_id, tenant_id) REFERENCES agents (agent_id, tenant_id) ON DELETE CASCADE,
    FOREIGN KEY (service_id, tenant_id) REFERENCES services (service_id, tenant_id) ON DELETE CASCADE,
    UNIQUE (schedule_id, tenant_id)
);

CREATE INDEX IF NOT EXISTS idx_work_schedules_tenant_start ON work_schedules (tenant_id, shift_start);
CREATE INDEX IF NOT EXISTS idx_work_schedules_agent_start ON work_schedules (agent_id, shift_start);
CREATE INDEX IF NOT EXISTS idx_work_schedules_service_start ON work_schedules (service_id, shift_start);

CREATE TABLE IF NOT EXISTS break_schedules (
    break_id                  BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id                 INTEGER NOT NULL,
    schedule_id               BIGINT NOT NULL,
    break_type                VARCHAR(20) NOT NULL DEFAULT 'break'
                              CHECK (break_type IN ('break', 'lunch', 'training', 'meeting')),
    break_start               TIMESTAMPTZ NOT NULL,
    break_end                 TIMESTAMPTZ NOT NULL,
    CHECK (break_end > break_start),
    FOREIGN KEY (schedule_id, tenant_id) REFERENCES work_schedules (schedule_id, tenant_id)
        ON DELETE CASCADE
);

CREATE INDEX IF NOT EXISTS idx_break_schedules_schedule ON break_schedules (schedule_id);

CREATE TABLE IF NOT EXISTS schedule_optimization_runs (
    run_id                    BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id                 INTEGER NOT NULL,
    service_id                INTEGER,
    period_start              TIMESTAMPTZ NOT NULL,
    period_end                TIMESTAMPTZ NOT NULL,
    intervals_checked         INTEGER NOT NULL,
    gap_intervals             INTEGER NOT NULL,
    surplus_intervals         INTEGER NOT NULL,
    conflict_count            INTEGER NOT NULL,
    coverage_pct              NUMERIC(5, 2),
    shortfall_agent_hours     NUMERIC(10, 2) NOT NULL,
    result                    JSONB NOT NULL,
    requested_by              VARCHAR(200),
    created_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    FOREIGN KEY (service_id, tenant_id) REFERENCES services (service_id, tenant_id) ON DELETE CASCADE
);

CREATE INDEX IF NOT EXISTS idx_schedule_optimization_runs_tenant
    ON schedule_optimization_runs (tenant_id, created_at DESC);

-- ---------------------------------------------------------------------------
-- Forecasting and staffing plans
-- ---------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS forecasts (
    forecast_id               INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id                 INTEGER NOT NULL,
    service_id                INTEGER NOT NULL,
    forecast_name             VARCHAR(200) NOT NULL,
    period_start              DATE NOT NULL,
    period_end                DATE NOT NULL,   -- inclusive
    interval_minutes          SMALLINT NOT NULL DEFAULT 15 CHECK (interval_minutes IN (15, 30, 60)),
    method                    VARCHAR(20) NOT NULL DEFAULT 'seasonal_average'
                              CHECK (method IN ('seasonal_average', 'manual')),
    history_weeks             SMALLINT CHECK (history_weeks BETWEEN 1 AND 52),
    sl_target_pct             NUMERIC(5, 2) NOT NULL CHECK (sl_target_pct > 0 AND sl_target_pct < 100),
    sl_threshold_seconds      INTEGER NOT NULL CHECK (sl_threshold_seconds > 0),
    max_occupancy_pct         NUMERIC(5, 2) NOT NULL DEFAULT 100
                              CHECK (max_occupancy_pct > 0 AND max_occupancy_pct <= 100),
    shrinkage_pct             NUMERIC(5, 2) NOT NULL DEFAULT 0 CHECK (shrinkage_pct >= 0 AND shrinkage_pct < 100),
    status                    VARCHAR(20) NOT NULL DEFAULT 'draft'
                              CHECK (status IN ('draft', 'calculated', 'published')),
    created_by                VARCHAR(200),
    created_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    calculated_at             TIMESTAMPTZ,
    CHECK (period_end >= period_start),
    FOREIGN KEY (service_id, tenant_id) REFERENCES services (service_id, tenant_id) ON DELETE CASCADE,
    UNIQUE (tenant_id, service_id, period_start, period_end, interval_minutes),
    UNIQUE (forecast_id, tenant_id)
);

CREATE INDEX IF NOT EXISTS idx_forecasts_tenant_period ON forecasts (tenant_id, period_start DESC);

-- Forecast volume and AHT per interval, and what wfm_calculate_forecast()
-- derives from them with Erlang C.
CREATE TABLE IF NOT EXISTS forecast_data_points (
    forecast_id               INTEGER NOT NULL,
    tenant_id                 INTEGER NOT NULL,
    interval_start            TIMESTAMPTZ NOT NULL,
    forecast_volume           NUMERIC(10, 2) NOT NULL CHECK (forecast_volume >= 0),
    forecast_aht_seconds      NUMERIC(8, 2) NOT NULL CHECK (forecast_aht_seconds > 0),
    traffic_erlangs           NUMERIC(10, 3),
    required_agents           INTEGER CHECK (required_agents >= 0),
    scheduled_agents_needed   INTEGER CHECK (scheduled_agents_needed >= 0),
    expected_service_level_pct NUMERIC(5, 2),
    probability_wait_pct      NUMERIC(5, 2),
    expected_asa_seconds      NUMERIC(10, 2),
    occupancy_pct             NUMERIC(5, 2),
    PRIMARY KEY (forecast_id, interval_start),
    FOREIGN KEY (forecast_id, tenant_id) REFERENCES forecasts (forecast_id, tenant_id) ON DELETE CASCADE
);

-- Required agents (on the phones) per service per interval, written by the
-- forecast calculation (source 'forecast') or by hand (source 'manual', which
-- a recalculation never overwrites); planned_headcount adds shrinkage.
CREATE TABLE IF NOT EXISTS staffing_plans (
    tenant_id                 INTEGER NOT NULL,
    service_id                INTEGER NOT NULL,
    interval_start            TIMESTAMPTZ NOT NULL,
    interval_end              TIMESTAMPTZ NOT NULL,
    required_agents           INTEGER NOT NULL CHECK (required_agents >= 0),
    planned_headcount         INTEGER NOT NULL CHECK (planned_headcount >= 0),
    forecast_id               INTEGER REFERENCES forecasts (forecast_id) ON DELETE SET NULL,
    source                    VARCHAR(20) NOT NULL DEFAULT 'forecast' CHECK (source IN ('forecast', 'manual')),
    updated_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (service_id, interval_start),
    FOREIGN KEY (service_id, tenant_id) REFERENCES services (service_id, tenant_id) ON DELETE CASCADE,
    CHECK (interval_end > interval_start),
    CHECK (planned_headcount >= required_agents)
);

CREATE INDEX IF NOT EXISTS idx_staffing_plans_tenant ON staffing_plans (tenant_id, interval_start);

-- ---------------------------------------------------------------------------
-- Integration: connections, sync jobs and logs, activity logs, field mappings
-- ---------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS integration_connections (
    connection_id             INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id                 INTEGER NOT NULL,
    connection_name           VARCHAR(200) NOT NULL,
    system_type               VARCHAR(20) NOT NULL
                              CHECK (system_type IN ('1c_zup', 'contact_center', 'ldap', 'webhook')),
    endpoint_url              VARCHAR(500),
    auth_type                 VARCHAR(20) NOT NULL DEFAULT 'api_key'
                              CHECK (auth_type IN ('api_key', 'basic', 'oauth2', 'kerberos', 'none')),
    sync_interval_seconds     INTEGER NOT NULL DEFAULT 300 CHECK (sync_interval_seconds BETWEEN 10 AND 86400),
    settings                  JSONB NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    is_active                 BOOLEAN NOT NULL DEFAULT TRUE,
    last_sync_at              TIMESTAMPTZ,
    last_success_at           TIMESTAMPTZ,
    created_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, connection_name),
    UNIQUE (connection_id, tenant_id)
);

CREATE TABLE IF NOT EXISTS sync_jobs (
    job_id                    UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id                 INTEGER NOT NULL,
    connection_id             INTEGER NOT NULL,
    correlation_id            UUID NOT NULL,
    sync_type                 VARCHAR(20) NOT NULL DEFAULT 'incremental'
                              CHECK (sync_type IN ('incremental', 'full')),
    entities                  TEXT[] NOT NULL DEFAULT '{}',
    priority                  VARCHAR(10) NOT NULL DEFAULT 'normal'
                              CHECK (priority IN ('low', 'normal', 'high')),
    status                    VARCHAR(20) NOT NULL DEFAULT 'queued'
                              CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    target_seconds            INTEGER NOT NULL DEFAULT 30 CHECK (target_seconds > 0),
    requested_by              VARCHAR(200),
    requested_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at                TIMESTAMPTZ,
    finished_at               TIMESTAMPTZ,
    records_processed         INTEGER CHECK (records_processed >= 0),
    error_message             TEXT,
    FOREIGN KEY (connection_id, tenant_id) REFERENCES integration_connections (connection_id, tenant_id)
        ON DELETE CASCADE
);

-- At most one queued or running job per connection.
CREATE UNIQUE INDEX IF NOT EXISTS ux_sync_jobs_active
    ON sync_jobs (connection_id) WHERE status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS idx_sync_jobs_tenant_time ON sync_jobs (tenant_id, requested_at DESC);

CREATE TABLE IF NOT EXISTS integration_sync_logs (
    sync_log_id               BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id                 INTEGER NOT NULL,
    connection_id             INTEGER NOT NULL,
    job_id                    UUID REFERENCES sync_jobs (job_id) ON DELETE SET NULL,
    started_at                TIMESTAMPTZ NOT NULL,
    finished_at               TIMESTAMPTZ,
    status                    VARCHAR(20) NOT NULL CHECK (status IN ('success', 'partial', 'failed')),
    records_processed         INTEGER NOT NULL DEFAULT 0 CHECK (records_processed >= 0),
    records_failed            INTEGER NOT NULL DEFAULT 0 CHECK (records_failed >= 0),
    error_message             TEXT,
    FOREIGN KEY (connection_id, tenant_id) REFERENCES integration_connections (connection_id, tenant_id)
        ON DELETE CASCADE,
    CHECK (finished_at IS NULL OR finished_at >= started_at)
);

CREATE INDEX IF NOT EXISTS idx_integration_sync_logs_connection
    ON integration_sync_logs (connection_id, started_at DESC);
CREATE INDEX IF NOT EXISTS idx_integration_sync_logs_tenant
    ON integration_sync_logs (tenant_id, started_at DESC);

-- The cross-system audit trail: every exchange with an external system,
-- chained by correlation_id; contains_personal_data marks GDPR-relevant events.
CREATE TABLE IF NOT EXISTS integration_logs (
    log_id                    BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id                 INTEGER NOT NULL,
    connection_id             INTEGER REFERENCES integration_connections (connection_id) ON DELETE SET NULL,
    job_id                    UUID REFERENCES sync_jobs (job_id) ON DELETE SET NULL,
    correlation_id            UUID NOT NULL,
    event_type                VARCHAR(30) NOT NULL
                              CHECK (event_type IN ('sync_requested', 'sync_started', 'sync_completed',
                                                    'sync_failed', 'record_rejected', 'data_access',
                                                    'data_export', 'data_erasure', 'auth')),
    direction                 VARCHAR(10) NOT NULL DEFAULT 'internal'
                              CHECK (direction IN ('inbound', 'outbound', 'internal')),
    level                     VARCHAR(10) NOT NULL DEFAULT 'info' CHECK (level IN ('info', 'warning', 'error')),
    message                   TEXT NOT NULL,
    entity_type               VARCHAR(50),
    records_count             INTEGER CHECK (records_count >= 0),
    duration_ms               INTEGER CHECK (duration_ms >= 0),
    contains_personal_data    BOOLEAN NOT NULL DEFAULT FALSE,
    legal_basis               VARCHAR(30)
                              CHECK (legal_basis IN ('contract', 'legal_obligation', 'consent',
                                                     'legitimate_interest')),
    actor                     VARCHAR(200),
    created_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (NOT contains_personal_data OR legal_basis IS NOT NULL)
);

CREATE INDEX IF NOT EXISTS idx_integration_logs_tenant_time ON integration_logs (tenant_id, created_at DESC);
CREATE INDEX IF NOT EXISTS idx_integration_logs_correlation ON integration_logs (correlation_id);

-- Which external endpoint feeds (or is fed from) which WFM table, field by
-- field, and the engine route that serves that exchange.
CREATE TABLE IF NOT EXISTS integration_endpoint_mappings (
    mapping_id                INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id                 INTEGER NOT NULL,
    connection_id             INTEGER NOT NULL,
    external_endpoint         VARCHAR(300) NOT NULL,
    external_method           VARCHAR(10) NOT NULL DEFAULT 'GET'
                              CHECK (external_method IN ('GET', 'POST', 'PUT', 'PATCH')),
    direction                 VARCHAR(10) NOT NULL CHECK (direction IN ('import', 'export')),
    source_entity             VARCHAR(100) NOT NULL,
    target_table              VARCHAR(63) NOT NULL,
    field_mappings            JSONB NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(field_mappings) = 'object'),
    workflow_stage            VARCHAR(50),
    api_endpoint_path         VARCHAR(200),
    api_http_method           VARCHAR(10)
                              CHECK (api_http_method IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE')),
    is_active                 BOOLEAN NOT NULL DEFAULT TRUE,
    FOREIGN KEY (connection_id, tenant_id) REFERENCES integration_connections (connection_id, tenant_id)
        ON DELETE CASCADE,
    UNIQUE (connection_id, external_endpoint, external_method)
);

CREATE INDEX IF NOT EXISTS idx_integration_endpoint_mappings_tenant
    ON integration_endpoint_mappings (tenant_id, connection_id);

-- ---------------------------------------------------------------------------
-- Data quality results
-- ---------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS data_quality_results (
    result_id                 BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id                 INTEGER NOT NULL,
    run_id                    UUID NOT NULL,
    table_name                VARCHAR(63) NOT NULL,
    check_name                VARCHAR(63) NOT NULL,
    severity                  VARCHAR(10) NOT NULL,
    checked_rows              BIGINT NOT NULL,
    failed_rows               BIGINT NOT NULL,
    passed                    BOOLEAN NOT NULL,
    checked_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    requested_by              VARCHAR(200)
);

CREATE INDEX IF NOT EXISTS idx_data_quality_results_tenant ON data_quality_results (tenant_id, checked_at DESC);
CREATE INDEX IF NOT EXISTS idx_data_quality_results_run ON data_quality_results (run_id);

-- ---------------------------------------------------------------------------
-- What each table is (GET /schema/info shows these)
-- ---------------------------------------------------------------------------

COMMENT ON TABLE wfm_metric_definitions IS 'Global: what each WFM metric means, its unit and which direction is better';
COMMENT ON TABLE optimization_rules IS 'Global: optimiser rules, metric threshold -> suggestion and impact';
COMMENT ON TABLE data_quality_checks IS 'Global: data-quality checks, a failing-row SQL condition per table';
COMMENT ON TABLE services IS 'Contact-centre services (queues) with their service-level target';
COMMENT ON TABLE service_groups IS 'Agent groups (skills) serving a service';
COMMENT ON TABLE agents IS 'Agents (operators) of a tenant';
COMMENT ON TABLE contact_statistics IS '15-minute contact statistics per service (ACD interval data)';
COMMENT ON TABLE agent_activity IS 'Daily agent activity: login, state times, calls, adherence';
COMMENT ON TABLE agent_status_history IS 'Agent status changes';
COMMENT ON TABLE realtime_queues IS 'Live queue state per service';
COMMENT ON TABLE realtime_agents IS 'Live agent state';
COMMENT ON TABLE operational_metrics IS 'Snapshots of the key operational metrics';
COMMENT ON TABLE threshold_alerts IS 'Green/yellow/red thresholds per metric (tenant-wide or per service)';
COMMENT ON TABLE predictive_alerts IS 'Forecast-based alerts: horizon, confidence and accuracy targets per metric';
COMMENT ON TABLE realtime_alerts IS 'Alerts raised when a metric crossed its thresholds';
COMMENT ON TABLE schedule_templates IS 'Reusable shift templates';
COMMENT ON TABLE work_schedules IS 'Planned shifts of agents';
COMMENT ON TABLE break_schedules IS 'Breaks within planned shifts';
COMMENT ON TABLE schedule_optimization_runs IS 'Results of schedule optimisation runs (gaps, conflicts)';
COMMENT ON TABLE forecasts IS 'Forecast definitions per service and period';
COMMENT ON TABLE forecast_data_points IS 'Forecast volume, AHT and Erlang C staffing per interval';
COMMENT ON TABLE staffing_plans IS 'Required agents per service per interval';
COMMENT ON TABLE integration_connections IS 'External systems (1C ZUP, contact centre ACD, LDAP, webhooks)';
COMMENT ON TABLE sync_jobs IS 'Synchronisation jobs queued for external systems';
COMMENT ON TABLE integration_sync_logs IS 'Synchronisation history per connection';
COMMENT ON TABLE integration_logs IS 'Cross-system audit trail with correlation ids';
COMMENT ON TABLE integration_endpoint_mappings IS 'External endpoints mapped to WFM tables and engine routes';
COMMENT ON TABLE data_quality_results IS 'Results of data-quality check runs';

-- ---------------------------------------------------------------------------
-- Reference rows (global), inserted when absent
-- ---------------------------------------------------------------------------

INSERT INTO wfm_metric_definitions
    (metric_name, display_name, unit, direction, update_frequency_seconds, description)
VALUES
('service_level_pct', 'Service level', 'percent', 'higher_is_better', 60,
 'Share of offered calls answered within the service''s threshold (80/20)'),
('abandon_rate_pct', 'Abandon rate', 'percent', 'lower_is_better', 60,
 'Share of offered calls abandoned by the caller'),
('acd_rate_pct', 'ACD rate', 'percent', 'higher_is_better', 60,
 'Share of offered calls answered'),
('avg_speed_answer_seconds', 'Average speed of answer', 'seconds', 'lower_is_better', 60,
 'Average queue time of answered calls'),
('aht_seconds', 'Average handle time', 'seconds', 'lower_is_better', 300,
 'Talk + hold + wrap-up time per answered call'),
('occupancy_pct', 'Occupancy', 'percent', 'lower_is_better', 300,
 'Share of ready time spent handling calls; above 85-90 % burns agents out'),
('operators_online_pct', 'Operators online', 'percent', 'higher_is_better', 30,
 'Agents logged in as a share of the agents scheduled now'),
('agents_short', 'Operator requirement gap', 'count', 'lower_is_better', 60,
 'Agents the staffing plan requires now minus the agents logged in (negative = surplus)'),
('load_deviation_pct', 'Load deviation', 'percent', 'lower_is_better', 300,
 'Absolute deviation of actual from forecast call volume'),
('adherence_pct', 'Schedule adherence', 'percent', 'higher_is_better', 900,
 'Share of scheduled time the agents worked as planned'),
('forecast_error_pct', 'Forecast error (WAPE)', 'percent', 'lower_is_better', 3600,
 'Weighted absolute percentage error of the forecast volume against actual offered calls'),
('calls_waiting', 'Calls waiting', 'count', 'lower_is_better', 10,
 'Calls in queue now'),
('longest_wait_seconds', 'Longest wait', 'seconds', 'lower_is_better', 10,
 'Wait of the oldest call in queue'),
('db_connection_usage_pct', 'Database connections in use', 'percent', 'lower_is_better', 60,
 'Client connections as a share of max_connections'),
('db_cache_hit_pct', 'Database buffer cache hit ratio', 'percent', 'higher_is_better', 60,
 'Blocks found in shared buffers as a share of blocks read')
ON CONFLICT (metric_name) DO NOTHING;

INSERT INTO optimization_rules
    (rule_code, metric_name, comparison, threshold_value, category, priority, suggestion, impact,
     cost_impact, labor_compliance_note)
VALUES
('SL_BELOW_TARGET', 'service_level_pct', '<', 80, 'staffing', 1,
 'Add agents in the peak intervals (re-run the Erlang C staffing for them) or open overflow to a back-up group',
 'Each extra agent at peak lifts the service level by 5 to 10 points', 'cost',
 'Extra hours must stay within the agents'' weekly contract hours; overtime needs consent'),
('SL_FAR_ABOVE_TARGET', 'service_level_pct', '>', 95, 'staffing', 3,
 'Reduce scheduled headcount in low-traffic intervals or move agents to back-office work',
 'Over-delivery costs 5 to 8 % of labour without a customer benefit', 'saving', NULL),
('ABANDON_HIGH', 'abandon_rate_pct', '>', 5, 'technology', 1,
 'Offer a callback and announce the expected wait time in the queue',
 'Callbacks typically cut abandonment by a third', 'neutral', NULL),
('ASA_HIGH', 'avg_speed_answer_seconds', '>', 30, 'scheduling', 2,
 'Move breaks and lunches out of the peak intervals',
 'Break placement alone often recovers 10 to 20 seconds of ASA', 'neutral',
 'Breaks stay within the legal window of the shift'),
('AHT_HIGH', 'aht_seconds', '>', 360, 'training', 2,
 'Coach on wrap-up and publish knowledge-base answers for the top contact reasons',
 'Every 10 % of AHT saved is 10 % of workload', 'saving', NULL),
('OCCUPANCY_HIGH', 'occupancy_pct', '>', 90, 'staffing', 1,
 'Add relief staff: occupancy above 90 % burns agents out and raises absence',
 'Lower attrition and absence; steadier service level', 'cost',
 'Check rest-period rules: high occupancy over a full shift breaches recovery-time agreements'),
('OCCUPANCY_LOW', 'occupancy_pct', '<', 65, 'process', 3,
 'Give idle agents deferred work (e-mail, back office) or reduce scheduled hours',
 'Better use of 10 to 20 % of paid time', 'saving', NULL),
('ADHERENCE_LOW', 'adherence_pct', '<', 90, 'scheduling', 2,
 'Turn on real-time adherence alerts and review shift swaps with team leads',
 'Each adherence point is roughly one point of service level at peak', 'neutral', NULL),
('FORECAST_ERROR_HIGH', 'forecast_error_pct', '>', 15, 'forecasting', 2,
 'Recalibrate the forecast: shorten the history window and mark special days',
 'A forecast within 10 % avoids both idle time and missed service level', 'neutral', NULL),
('AGENTS_SHORT', 'agents_short', '>', 0, 'staffing', 1,
 'Fewer agents are logged in than the staffing plan requires: call in stand-by agents or cancel non-urgent training',
 'Each missing agent at peak costs several points of service level', 'cost',
 'Calling agents in outside their schedule needs their consent and counts as overtime'),
('DB_CONNECTIONS_HIGH', 'db_connection_usage_pct', '>', 80, 'technology', 2,
 'Put a connection pooler in front of the database or lower the pool sizes of idle services',
 'Avoids refused connections at peak load', 'neutral', NULL),
('DB_CACHE_LOW', 'db_cache_hit_pct', '<', 95, 'technology', 3,
 'Raise shared_buffers or add memory: reads are hitting the disk',
 'Faster reports and realtime views', 'cost', NULL)
ON CONFLICT (rule_code) DO NOTHING;

INSERT INTO data_quality_checks (table_name, check_name, description, failing_condition, severity)
VALUES
('contact_statistics', 'carry_over_exceeds_offered',
 'Answered plus abandoned calls exceed the calls offered in the interval',
 't.answered + t.abandoned > t.offered', 'warning'),
('contact_statistics', 'aht_outlier',
 'Average handle time above one hour',
 't.aht_seconds > 3600', 'warning'),
('contact_statistics', 'future_interval',
 'Interval starts in the future',
 't.interval_start > now()', 'error'),
('contact_statistics', 'asa_without_answers',
 'Queue time reported for an interval without answered calls',
 't.answered = 0 AND t.wait_seconds > 0', 'warning'),
('agent_activity', 'states_exceed_login',
 'Ready, talk, hold, wrap and not-ready time add up to more than the login time',
 't.ready_seconds + t.talk_seconds + t.hold_seconds + t.wrap_seconds + t.not_ready_seconds > t.login_seconds',
 'error'),
('agent_activity', 'calls_without_talk_time',
 'Calls handled but no talk time',
 't.calls_handled > 0 AND t.talk_seconds = 0', 'warning'),
('agent_activity', 'adherence_above_schedule',
 'Adherent time exceeds scheduled time',
 't.adherent_seconds > t.scheduled_seconds', 'error'),
('agents', 'active_without_group',
 'Active agent assigned to no group',
 't.is_active AND t.group_id IS NULL', 'warning'),
('agents', 'missing_email',
 'Agent without an e-mail address (needed for the 1C ZUP sync)',
 't.email IS NULL OR btrim(t.email) = ''''', 'info'),
('work_schedules', 'overlapping_shift',
 'Shift overlaps another shift of the same agent',
 't.status <> ''cancelled'' AND EXISTS (SELECT 1 FROM work_schedules o WHERE o.agent_id = t.agent_id AND o.schedule_id <> t.schedule_id AND o.status <> ''cancelled'' AND o.shift_start < t.shift_end AND t.shift_start < o.shift_end)',
 'error'),
('work_schedules', 'shift_longer_than_12h',
 'Shift longer than 12 hours',
 't.shift_end - t.shift_start > INTERVAL ''12 hours''', 'warning'),
('forecast_data_points', 'missing_staffing',
 'Forecast interval without a required-agents figure',
 't.required_agents IS NULL', 'warning'),
('integration_connections', 'missing_endpoint',
 'Active connection without an endpoint URL',
 't.is_active AND t.endpoint_url IS NULL', 'error'),
('integration_connections', 'stale_sync',
 'Active connection without a successful sync for 3 sync intervals',
 't.is_active AND (t.last_success_at IS NULL OR t.last_success_at < now() - 3 * make_interval(secs => t.sync_interval_seconds))',
 'warning')
ON CONFLICT (table_name, check_name) DO NOTHING;
