-- wfm 003: sample data for two tenants.
--
--   tenant 1 (a telecom operator's contact centre):
--     services 1 SUPPORT (voice, 80/20), 2 SALES (voice, 80/20), 3 BILLING
--     (voice, 85/30), 4 CHAT (chat, 80/60), 8 LEGACY (inactive);
--     agents 1-12 (12 has no group and no e-mail), 13 (left, inactive)
--   tenant 2 (a retail bank):
--     services 5 CARDS (voice, 80/20), 6 LOANS (voice, 90/20), 7 EMAIL
--     (e-mail, 90 % within 4 h); agents 14-20 (20 part time)
--
-- Every active service has 15-minute contact statistics from the start of
-- the day before yesterday (UTC) up to the last complete interval, shaped
-- like a contact centre's day and staffed by Erlang C (so the functions of
-- 002 find realistic figures); agents have a week of daily activity, status
-- changes and a live state; queues have a live state; thresholds, alerts,
-- schedule templates, shifts for today and tomorrow (with an overlap and a
-- short rest to find), forecasts with their data points and the staffing
-- plans calculated from them, integration connections with sync jobs, sync
-- logs, an audit trail and endpoint mappings, and metric snapshots for the
-- trend arrows. Times are relative to when the seed is applied (now(), the
-- current UTC day), so the realtime views show current data on a fresh seed.
--
-- Idempotent: rows carry explicit keys and are inserted only when the key is
-- absent (WHERE NOT EXISTS, with ON CONFLICT DO NOTHING as a backstop); the
-- time series of a service or agent are inserted only while it has none, so
-- re-applying the file later (when now() has moved) adds nothing. Child rows
-- join their parents, so a parent deleted through the API is not re-created
-- and does not break the file. Identity sequences are moved past the sample
-- keys at the end.

-- ---------------------------------------------------------------------------
-- Services, groups, agents
-- ---------------------------------------------------------------------------

INSERT INTO services (service_id, tenant_id, service_code, service_name, channel, sl_target_pct,
                      sl_threshold_seconds, target_aht_seconds, is_active, created_at)
SELECT v.service_id, v.tenant_id, v.service_code, v.service_name, v.channel, v.sl_target_pct,
       v.sl_threshold_seconds, v.target_aht_seconds, v.is_active, now() - v.age
FROM (VALUES
    (1, 1, 'SUPPORT', 'Technical support', 'voice', 80.00, 20, 300, TRUE, INTERVAL '400 days'),
    (2, 1, 'SALES', 'Sales line', 'voice', 80.00, 20, 240, TRUE, INTERVAL '400 days'),
    (3, 1, 'BILLING', 'Billing enquiries', 'voice', 85.00, 30, 270, TRUE, INTERVAL '300 days'),
    (4, 1, 'CHAT', 'Web chat', 'chat', 80.00, 60, 480, TRUE, INTERVAL '200 days'),
    (5, 2, 'CARDS', 'Card services', 'voice', 80.00, 20, 270, TRUE, INTERVAL '500 days'),
    (6, 2, 'LOANS', 'Loans and mortgages', 'voice', 90.00, 20, 420, TRUE, INTERVAL '500 days'),
    (7, 2, 'EMAIL', 'E-mail desk', 'email', 90.00, 14400, 600, TRUE, INTERVAL '250 days'),
    (8, 1, 'LEGACY', 'Old IVR line (closed)', 'voice', 80.00, 20, 300, FALSE, INTERVAL '900 days')
) AS v (service_id, tenant_id, service_code, service_name, channel, sl_target_pct, sl_threshold_seconds,
        target_aht_seconds, is_active, age)
WHERE NOT EXISTS (SELECT 1 FROM services s WHERE s.service_id = v.service_id)
ON CONFLICT DO NOTHING;

INSERT INTO service_groups (group_id, tenant_id, service_id, group_name, skill, target_agents)
SELECT v.group_id, s.tenant_id, v.service_id, v.group_name, v.skill, v.target_agents
FROM (VALUES
    (1, 1, 'Support L1', 'internet', 6),
    (2, 1, 'Support L2', 'tv_and_mobile', 3),
    (3, 2, 'Sales team', 'sales', 4),
    (4, 3, 'Billing team', 'billing', 3),
    (5, 4, 'Chat team', 'chat', 2),
    (6, 5, 'Card services', 'cards', 5),
    (7, 6, 'Loan advisers', 'loans', 2),
    (8, 7, 'E-mail desk', 'email', 1)
) AS v (group_id, service_id, group_name, skill, target_agents)
JOIN services s ON s.service_id = v.service_id
WHERE NOT EXISTS (SELECT 1 FROM service_groups g WHERE g.group_id = v.group_id)
ON CONFLICT DO NOTHING;

INSERT INTO agents (agent_id, tenant_id, employee_number, full_name, email, group_id, primary_service_id,
                    employment_type, weekly_hours, hire_date, is_active)
SELECT v.agent_id, v.tenant_id, v.employee_number, v.full_name, v.email,
       (SELECT g.group_id FROM service_groups g WHERE g.group_id = v.group_id),
       (SELECT s.service_id FROM services s WHERE s.service_id = v.service_id),
       v.employment_type, v.weekly_hours, current_date - v.tenure_days, v.is_active
FROM (VALUES
    (1, 1, 'T1-0001', 'Anna Ivanova', 'a.ivanova@telecom.example', 1, 1, 'full_time', 40.0, 1200, TRUE),
    (2, 1, 'T1-0002', 'Dmitry Petrov', 'd.petrov@telecom.example', 1, 1, 'full_time', 40.0, 900, TRUE),
    (3, 1, 'T1-0003', 'Elena Smirnova', 'e.smirnova@telecom.example', 1, 1, 'full_time', 40.0, 640, TRUE),
    (4, 1, 'T1-0004', 'Sergey Kuznetsov', 's.kuznetsov@telecom.example', 2, 1, 'full_time', 40.0, 1500, TRUE),
    (5, 1, 'T1-0005', 'Olga Popova', 'o.popova@telecom.example', 2, 1, 'full_time', 40.0, 300, TRUE),
    (6, 1, 'T1-0006', 'Ivan Sokolov', 'i.sokolov@telecom.example', 3, 2, 'full_time', 40.0, 820, TRUE),
    (7, 1, 'T1-0007', 'Maria Lebedeva', 'm.lebedeva@telecom.example', 3, 2, 'full_time', 40.0, 410, TRUE),
    (8, 1, 'T1-0008', 'Alexey Kozlov', 'a.kozlov@telecom.example', 3, 2, 'part_time', 20.0, 150, TRUE),
    (9, 1, 'T1-0009', 'Natalia Novikova', 'n.novikova@telecom.example', 4, 3, 'full_time', 40.0, 700, TRUE),
    (10, 1, 'T1-0010', 'Pavel Morozov', 'p.morozov@telecom.example', 4, 3, 'full_time', 40.0, 950, TRUE),
    (11, 1, 'T1-0011', 'Svetlana Volkova', 's.volkova@telecom.example', 5, 4, 'full_time', 40.0, 260, TRUE),
    (12, 1, 'T1-0012', 'Andrey Solovyov', NULL, NULL, 1, 'contractor', 30.0, 45, TRUE),
    (13, 1, 'T1-0013', 'Yulia Vasilieva', 'y.vasilieva@telecom.example', 1, 1, 'full_time', 40.0, 2000, FALSE),
    (14, 2, 'B2-0101', 'Tatiana Zaitseva', 't.zaitseva@bank.example', 6, 5, 'full_time', 40.0, 1100, TRUE),
    (15, 2, 'B2-0102', 'Mikhail Pavlov', 'm.pavlov@bank.example', 6, 5, 'full_time', 40.0, 870, TRUE),
    (16, 2, 'B2-0103', 'Irina Semenova', 'i.semenova@bank.example', 6, 5, 'full_time', 40.0, 430, TRUE),
    (17, 2, 'B2-0104', 'Nikolai Golubev', 'n.golubev@bank.example', 7, 6, 'full_time', 40.0, 1900, TRUE),
    (18, 2, 'B2-0105', 'Ekaterina Vinogradova', 'e.vinogradova@bank.example', 7, 6, 'full_time', 40.0, 760, TRUE),
    (19, 2, 'B2-0106', 'Artem Bogdanov', 'a.bogdanov@bank.example', 8, 7, 'full_time', 40.0, 520, TRUE),
    (20, 2, 'B2-0107', 'Daria Fedorova', 'd.fedorova@bank.example', 6, 5, 'part_time', 20.0, 90, TRUE)
) AS v (agent_id, tenant_id, employee_number, full_name, email, group_id, service_id, employment_type,
        weekly_hours, tenure_days, is_active)
WHERE NOT EXISTS (SELECT 1 FROM agents a WHERE a.agent_id = v.agent_id)
ON CONFLICT DO NOTHING;

-- ---------------------------------------------------------------------------
-- Contact statistics: every 15 minutes from the start of the day before
-- yesterday (UTC) to the last complete interval, for each active service
-- that has none yet. Volume: two daily peaks, quieter weekends, a little
-- deterministic noise; staffing: the Erlang C requirement give or take an
-- agent; the service levels, waiting and abandonment follow Erlang C at that
-- staffing. The e-mail desk's ACD reports no 10/20/30/60 s increments.
-- SALES carries one interval whose answered + abandoned exceed offered (a
-- carry-over the data-quality checks report).
-- ---------------------------------------------------------------------------

INSERT INTO contact_statistics (tenant_id, service_id, interval_start, offered, answered, abandoned,
                                answered_within_threshold, answered_within_10s, answered_within_20s,
                                answered_within_30s, answered_within_60s, talk_seconds, hold_seconds,
                                wrap_seconds, wait_seconds, max_wait_seconds, agents_staffed)
SELECT s.tenant_id, s.service_id, x.ts, x.offered, x.answered, x.abandoned + x.carry_over,
       round(x.answered * wfm_service_level(x.offered, 900, x.aht, x.agents, s.sl_threshold_seconds)),
       CASE WHEN s.channel <> 'email' THEN round(x.answered * wfm_service_level(x.offered, 900, x.aht, x.agents, 10)) END,
       CASE WHEN s.channel <> 'email' THEN round(x.answered * wfm_service_level(x.offered, 900, x.aht, x.agents, 20)) END,
       CASE WHEN s.channel <> 'email' THEN round(x.answered * wfm_service_level(x.offered, 900, x.aht, x.agents, 30)) END,
       CASE WHEN s.channel <> 'email' THEN round(x.answered * wfm_service_level(x.offered, 900, x.aht, x.agents, 60)) END,
       round(x.answered * x.aht * 0.74), round(x.answered * x.aht * 0.05), round(x.answered * x.aht * 0.21),
       round(x.answered * x.asa),
       CASE WHEN x.answered > 0 THEN round(x.asa * 3 + 5 * x.pw)::INTEGER END,
       x.agents
FROM services s
JOIN (VALUES (1, 20), (2, 12), (3, 10), (4, 6), (5, 16), (6, 5), (7, 6)) AS p (service_id, peak)
  ON p.service_id = s.service_id
CROSS JOIN LATERAL generate_series(date_trunc('day', now(), 'UTC') - INTERVAL '2 days',
                                   date_bin('15 minutes', now(), TIMESTAMPTZ '2000-01-01 00:00+00')
                                       - INTERVAL '15 minutes',
                                   INTERVAL '15 minutes') AS g (ts)
CROSS JOIN LATERAL (
    SELECT (extract(epoch FROM g.ts - (date_trunc('day', now(), 'UTC') - INTERVAL '2 days')) / 900)::INTEGER AS n,
           extract(hour FROM g.ts AT TIME ZONE 'UTC') + extract(minute FROM g.ts AT TIME ZONE 'UTC') / 60 + 0.125 AS h,
           extract(isodow FROM g.ts AT TIME ZONE 'UTC') AS dow
) AS t
CROSS JOIN LATERAL (
    SELECT round(p.peak
                 * (0.04 + exp(-(((t.h - 10.5) / 2.2) ^ 2)) + 0.85 * exp(-(((t.h - 15) / 2.5) ^ 2))
                    + 0.25 * exp(-(((t.h - 20) / 1.5) ^ 2)))
                 * CASE t.dow WHEN 1 THEN 1.18 WHEN 2 THEN 1.08 WHEN 3 THEN 1.02 WHEN 4 THEN 1.0
                              WHEN 5 THEN 0.95 WHEN 6 THEN 0.55 ELSE 0.42 END
                 * (0.92 + 0.16 * ((t.n * 7919 + s.service_id * 104729) % 1000) / 1000.0))::INTEGER AS offered,
           s.target_aht_seconds * (0.95 + 0.1 * ((t.n * 31 + s.service_id * 17) % 100) / 100.0) AS aht
) AS v
CROSS JOIN LATERAL (
    SELECT GREATEST(1, wfm_required_agents(v.offered, 900, v.aht, LEAST(s.sl_target_pct / 100, 0.99),
                                           LEAST(s.sl_threshold_seconds, 3600))
                       + CASE (t.n * 13 + s.service_id) % 5 WHEN 0 THEN -1 WHEN 1 THEN 1 ELSE 0 END) AS agents
) AS st
CROSS JOIN LATERAL (
    SELECT wfm_erlang_c(v.offered, 900, v.aht, st.agents) AS pw,
           COALESCE(wfm_average_speed_of_answer(v.offered, 900, v.aht, st.agents), 240) AS asa
) AS q
CROSS JOIN LATERAL (
    SELECT g.ts, v.offered, v.aht, st.agents, q.pw, q.asa,
           round(v.offered * q.pw * 0.08)::INTEGER AS abandoned,
           v.offered - round(v.offered * q.pw * 0.08)::INTEGER AS answered,
           CASE WHEN s.service_id = 2 AND t.n = 40 THEN 3 ELSE 0 END AS carry_over
) AS x
WHERE s.service_id BETWEEN 1 AND 7 AND s.is_active
  AND NOT EXISTS (SELECT 1 FROM contact_statistics c WHERE c.service_id = s.service_id)
ON CONFLICT DO NOTHING;

-- ---------------------------------------------------------------------------
-- Agent activity: the last 7 days, 5 working days in 7, for each active agent
-- without activity yet. Agent 12 once logged more state time than login time
-- (a data-quality error); the adherence of a few agents is below 90 %.
-- ---------------------------------------------------------------------------

INSERT INTO agent_activity (tenant_id, agent_id, activity_date, service_id, login_seconds, ready_seconds,
                            talk_seconds, hold_seconds, wrap_seconds, not_ready_seconds, calls_handled, transfers,
                            scheduled_seconds, adherent_seconds)
SELECT a.tenant_id, a.agent_id, (date_trunc('day', now(), 'UTC') AT TIME ZONE 'UTC')::DATE - d,
       a.primary_service_id, x.login,
       x.login - x.handling - x.not_ready + CASE WHEN a.agent_id = 12 AND d = 2 THEN 1800 ELSE 0 END,
       round(x.handling * 0.74), round(x.handling * 0.05),
       x.handling - round(x.handling * 0.74) - round(x.handling * 0.05), x.not_ready,
       round(x.handling / s.target_aht_seconds::NUMERIC)::INTEGER,
       round(x.handling / s.target_aht_seconds::NUMERIC * 0.05)::INTEGER,
       x.scheduled, round(x.scheduled * x.adherence)::INTEGER
FROM agents a
JOIN services s ON s.service_id = a.primary_service_id
CROSS JOIN generate_series(1, 7) AS d
CROSS JOIN LATERAL (
    SELECT CASE WHEN a.weekly_hours >= 40 THEN 28800 WHEN a.weekly_hours >= 30 THEN 21600 ELSE 14400 END AS scheduled,
           (a.agent_id * 37 + d * 11) % 100 / 100.0 AS r
) AS b
CROSS JOIN LATERAL (
    SELECT b.scheduled,
           round(b.scheduled * (0.96 + 0.06 * b.r))::INTEGER AS login,
           round(b.scheduled * (0.58 + 0.22 * b.r))::INTEGER AS handling,
           round(b.scheduled * (0.06 + 0.05 * b.r))::INTEGER AS not_ready,
           CASE WHEN a.agent_id IN (5, 8, 16) THEN 0.82 + 0.06 * b.r ELSE 0.91 + 0.08 * b.r END AS adherence
) AS x
WHERE a.agent_id BETWEEN 1 AND 20 AND a.is_active AND (d + a.agent_id) % 7 < 5
  AND NOT EXISTS (SELECT 1 FROM agent_activity aa WHERE aa.agent_id = a.agent_id)
ON CONFLICT DO NOTHING;

-- ---------------------------------------------------------------------------
-- Agent status: the last two hours of status changes, and the live state
-- ---------------------------------------------------------------------------

INSERT INTO realtime_agents (agent_id, tenant_id, status, status_since, current_service_id, updated_at)
SELECT a.agent_id, a.tenant_id, v.status, now() - v.since, a.primary_service_id, now()
FROM (VALUES
    (1, 'on_call', INTERVAL '3 minutes'), (2, 'on_call', INTERVAL '6 minutes'),
    (3, 'available', INTERVAL '40 seconds'), (4, 'wrap_up', INTERVAL '1 minute'),
    (5, 'break', INTERVAL '9 minutes'), (6, 'on_call', INTERVAL '2 minutes'),
    (7, 'available', INTERVAL '15 seconds'), (8, 'logged_out', INTERVAL '5 hours'),
    (9, 'on_call', INTERVAL '4 minutes'), (10, 'lunch', INTERVAL '20 minutes'),
    (11, 'available', INTERVAL '1 minute'), (12, 'not_ready', INTERVAL '7 minutes'),
    (14, 'on_call', INTERVAL '5 minutes'), (15, 'on_call', INTERVAL '1 minute'),
    (16, 'available', INTERVAL '30 seconds'), (17, 'on_call', INTERVAL '11 minutes'),
    (18, 'logged_out', INTERVAL '3 hours'), (19, 'available', INTERVAL '2 minutes'),
    (20, 'break', INTERVAL '4 minutes')
) AS v (agent_id, status, since)
JOIN agents a ON a.agent_id = v.agent_id AND a.is_active
WHERE NOT EXISTS (SELECT 1 FROM realtime_agents r WHERE r.agent_id = v.agent_id)
ON CONFLICT DO NOTHING;

-- status_id = agent_id * 100 + k: available, on_call, wrap_up (ended), then
-- the live status (open)
INSERT INTO agent_status_history (status_id, tenant_id, agent_id, status, reason_code, started_at, ended_at)
SELECT h.*
FROM (
    SELECT r.agent_id * 100 + k.k AS status_id, r.tenant_id, r.agent_id,
           CASE k.k WHEN 1 THEN 'available' WHEN 2 THEN 'on_call' WHEN 3 THEN 'wrap_up' END AS status,
           NULL::VARCHAR AS reason_code,
           r.status_since - make_interval(mins => 120 - 30 * k.k) - INTERVAL '30 minutes' AS started_at,
           r.status_since - make_interval(mins => 120 - 30 * k.k) AS ended_at
    FROM realtime_agents r
    CROSS JOIN generate_series(1, 3) AS k (k)
    WHERE r.agent_id BETWEEN 1 AND 20
    UNION ALL
    SELECT r.agent_id * 100 + 4, r.tenant_id, r.agent_id, r.status,
           CASE WHEN r.status IN ('break', 'lunch', 'not_ready') THEN 'scheduled_' || r.status END,
           r.status_since - INTERVAL '30 minutes', NULL
    FROM realtime_agents r
    WHERE r.agent_id BETWEEN 1 AND 20
) AS h
JOIN agents a ON a.agent_id = h.agent_id
WHERE NOT EXISTS (SELECT 1 FROM agent_status_history x WHERE x.status_id = h.status_id)
ON CONFLICT DO NOTHING;

-- ---------------------------------------------------------------------------
-- Live queues: today's totals from today's statistics, and what waits now
-- ---------------------------------------------------------------------------

INSERT INTO realtime_queues (service_id, tenant_id, calls_waiting, longest_wait_seconds, offered_today,
                             answered_today, abandoned_today, answered_within_threshold_today, updated_at)
SELECT s.service_id, s.tenant_id, v.waiting, v.longest,
       COALESCE(sum(cs.offered), 0), COALESCE(sum(cs.answered), 0), COALESCE(sum(cs.abandoned), 0),
       COALESCE(sum(cs.answered_within_threshold), 0), now()
FROM (VALUES (1, 4, 95), (2, 1, 35), (3, 0, 0), (4, 2, 50), (5, 3, 70), (6, 0, 0), (7, 12, 5400))
     AS v (service_id, waiting, longest)
JOIN services s ON s.service_id = v.service_id AND s.is_active
LEFT JOIN contact_statistics cs
       ON cs.service_id = s.service_id AND cs.interval_start >= date_trunc('day', now(), 'UTC')
WHERE NOT EXISTS (SELECT 1 FROM realtime_queues q WHERE q.service_id = v.service_id)
GROUP BY s.service_id, s.tenant_id, v.waiting, v.longest
ON CONFLICT DO NOTHING;

-- ---------------------------------------------------------------------------
-- Thresholds (traffic lights), predictive alerts, alert events
-- ---------------------------------------------------------------------------

INSERT INTO threshold_alerts (alert_id, tenant_id, metric_name, service_id, green_threshold, yellow_threshold,
                              notification_channels, escalation_minutes, updated_by)
SELECT v.alert_id, v.tenant_id, v.metric_name, v.service_id, v.green, v.yellow, v.channels::TEXT[], v.escalation,
       'seed'
FROM (VALUES
    (1, 1, 'service_level_pct', NULL::INTEGER, 80, 70, '{dashboard,email}', 15),
    (2, 1, 'abandon_rate_pct', NULL, 5, 10, '{dashboard,email}', 15),
    (3, 1, 'acd_rate_pct', NULL, 95, 90, '{dashboard}', 30),
    (4, 1, 'avg_speed_answer_seconds', NULL, 20, 40, '{dashboard}', 15),
    (5, 1, 'aht_seconds', NULL, 360, 420, '{dashboard}', 60),
    (6, 1, 'occupancy_pct', NULL, 85, 90, '{dashboard}', 30),
    (7, 1, 'operators_online_pct', NULL, 90, 80, '{dashboard,sms}', 10),
    (8, 1, 'agents_short', NULL, 0, 2, '{dashboard,sms}', 10),
    (9, 1, 'load_deviation_pct', NULL, 10, 20, '{dashboard}', 30),
    (10, 1, 'longest_wait_seconds', NULL, 60, 120, '{dashboard}', 5),
    (11, 1, 'calls_waiting', NULL, 5, 10, '{dashboard}', 5),
    (12, 1, 'service_level_pct', 3, 85, 75, '{dashboard,email}', 15),
    (13, 2, 'service_level_pct', NULL, 80, 70, '{dashboard,email,webhook}', 15),
    (14, 2, 'abandon_rate_pct', NULL, 4, 8, '{dashboard,email}', 15),
    (15, 2, 'acd_rate_pct', NULL, 96, 92, '{dashboard}', 30),
    (16, 2, 'aht_seconds', NULL, 420, 480, '{dashboard}', 60),
    (17, 2, 'operators_online_pct', NULL, 85, 75, '{dashboard}', 10),
    (18, 2, 'agents_short', NULL, 0, 1, '{dashboard,sms}', 10),
    (19, 2, 'load_deviation_pct', NULL, 10, 25, '{dashboard}', 30),
    (20, 2, 'longest_wait_seconds', 7, 7200, 14400, '{dashboard,email}', 60),
    (21, 2, 'service_level_pct', 6, 90, 80, '{dashboard,email}', 15)
) AS v (alert_id, tenant_id, metric_name, service_id, green, yellow, channels, escalation)
WHERE (v.service_id IS NULL OR EXISTS (SELECT 1 FROM services s WHERE s.service_id = v.service_id))
  AND NOT EXISTS (SELECT 1 FROM threshold_alerts t WHERE t.alert_id = v.alert_id)
  AND NOT EXISTS (SELECT 1 FROM threshold_alerts t
                  WHERE t.tenant_id = v.tenant_id AND t.metric_name = v.metric_name
                    AND COALESCE(t.service_id, 0) = COALESCE(v.service_id, 0))
ON CONFLICT DO NOTHING;

INSERT INTO predictive_alerts (predictive_alert_id, tenant_id, metric_name, service_id, horizon_minutes,
                               min_confidence_pct, accuracy_target_pct, notification_channels, updated_by)
SELECT v.id, v.tenant_id, v.metric_name, v.service_id, v.horizon, v.confidence, v.accuracy, v.channels::TEXT[],
       'seed'
FROM (VALUES
    (1, 1, 'service_level_pct', NULL::INTEGER, 60, 75.00, 85.00, '{dashboard,email}'),
    (2, 1, 'agents_short', 1, 30, 70.00, 80.00, '{dashboard,sms}'),
    (3, 2, 'abandon_rate_pct', NULL, 120, 80.00, 85.00, '{dashboard}')
) AS v (id, tenant_id, metric_name, service_id, horizon, confidence, accuracy, channels)
WHERE (v.service_id IS NULL OR EXISTS (SELECT 1 FROM services s WHERE s.service_id = v.service_id))
  AND NOT EXISTS (SELECT 1 FROM predictive_alerts p WHERE p.predictive_alert_id = v.id)
  AND NOT EXISTS (SELECT 1 FROM predictive_alerts p
                  WHERE p.tenant_id = v.tenant_id AND p.metric_name = v.metric_name
                    AND COALESCE(p.service_id, 0) = COALESCE(v.service_id, 0))
ON CONFLICT DO NOTHING;

INSERT INTO realtime_alerts (alert_event_id, tenant_id, threshold_alert_id, service_id, metric_name, level,
                             metric_value, threshold_value, message, triggered_at, acknowledged_at,
                             acknowledged_by, resolved_at)
SELECT v.id, v.tenant_id, (SELECT t.alert_id FROM threshold_alerts t WHERE t.alert_id = v.threshold_id),
       v.service_id, v.metric_name, v.level, v.value, v.threshold, v.message, now() - v.age,
       now() - v.age + v.ack_after, CASE WHEN v.ack_after IS NOT NULL THEN 'supervisor.t1' END,
       now() - v.age + v.resolve_after
FROM (VALUES
    (1, 1, 1, 2, 'service_level_pct', 'red', 64.20, 70.00,
     'Sales line service level 64.2 % (red below 70 %)', INTERVAL '25 minutes', NULL::INTERVAL, NULL::INTERVAL),
    (2, 1, 4, 1, 'avg_speed_answer_seconds', 'yellow', 31.50, 20.00,
     'Technical support ASA 31.5 s (yellow above 20 s)', INTERVAL '50 minutes', INTERVAL '5 minutes', NULL),
    (3, 1, 10, 1, 'longest_wait_seconds', 'yellow', 95.00, 60.00,
     'Technical support: a call has waited 95 s', INTERVAL '2 minutes', NULL, NULL),
    (4, 1, 2, 3, 'abandon_rate_pct', 'red', 11.40, 10.00,
     'Billing enquiries abandon rate 11.4 % (red above 10 %)', INTERVAL '1 day 3 hours',
     INTERVAL '4 minutes', INTERVAL '40 minutes'),
    (5, 2, 14, 5, 'abandon_rate_pct', 'yellow', 5.10, 4.00,
     'Card services abandon rate 5.1 % (yellow above 4 %)', INTERVAL '35 minutes', NULL, NULL),
    (6, 2, 20, 7, 'longest_wait_seconds', 'yellow', 9000.00, 7200.00,
     'E-mail desk: the oldest e-mail has waited 2.5 h (yellow above 2 h)', INTERVAL '2 days',
     INTERVAL '10 minutes', INTERVAL '2 hours')
) AS v (id, tenant_id, threshold_id, service_id, metric_name, level, value, threshold, message, age, ack_after,
        resolve_after)
JOIN services s ON s.service_id = v.service_id
WHERE NOT EXISTS (SELECT 1 FROM realtime_alerts r WHERE r.alert_event_id = v.id)
ON CONFLICT DO NOTHING;

-- ---------------------------------------------------------------------------
-- Schedule templates, shifts for today and tomorrow (UTC), breaks
-- ---------------------------------------------------------------------------

INSERT INTO schedule_templates (template_id, tenant_id, template_name, shift_start, shift_minutes, break_minutes,
                                days_of_week)
SELECT v.*
FROM (VALUES
    (1, 1, 'Early 07-15', TIME '07:00', 480, 45, '{1,2,3,4,5,6,7}'::SMALLINT[]),
    (2, 1, 'Day 09-17', TIME '09:00', 480, 45, '{1,2,3,4,5}'::SMALLINT[]),
    (3, 1, 'Late 13-21', TIME '13:00', 480, 45, '{1,2,3,4,5,6,7}'::SMALLINT[]),
    (4, 1, 'Peak 10-14', TIME '10:00', 240, 15, '{1,2,3,4,5}'::SMALLINT[]),
    (5, 2, 'Bank day 08-17', TIME '08:00', 540, 60, '{1,2,3,4,5}'::SMALLINT[]),
    (6, 2, 'Bank late 12-20', TIME '12:00', 480, 45, '{1,2,3,4,5,6}'::SMALLINT[]),
    (7, 2, 'Part time 12-16', TIME '12:00', 240, 15, '{1,2,3,4,5}'::SMALLINT[])
) AS v (template_id, tenant_id, template_name, shift_start, shift_minutes, break_minutes, days_of_week)
WHERE NOT EXISTS (SELECT 1 FROM schedule_templates t WHERE t.template_id = v.template_id)
  AND NOT EXISTS (SELECT 1 FROM schedule_templates t
                  WHERE t.tenant_id = v.tenant_id AND t.template_name = v.template_name)
ON CONFLICT DO NOTHING;

-- Shifts are anchored on the hour the seed runs, so someone is always on
-- shift "now": today's shift of each agent started hours_ago hours before
-- the current hour (agent 18 starts in an hour) and lasts its template's
-- length; tomorrow's starts 24 hours later. schedule_id = 1000 + 100 * day
-- (0 today, 1 tomorrow) + agent_id. Agent 5 comes back 10 hours after
-- today's shift (a short_rest conflict); agent 3 also got an extra shift
-- 4 hours into today's (1903, an overlap conflict); agent 10's shift
-- tomorrow is cancelled.
INSERT INTO work_schedules (schedule_id, tenant_id, agent_id, service_id, template_id, shift_start, shift_end,
                            status, notes)
SELECT x.schedule_id, a.tenant_id, a.agent_id, a.primary_service_id, t.template_id, x.shift_start,
       x.shift_start + make_interval(mins => t.shift_minutes), x.status, x.notes
FROM (
    SELECT 1000 + 100 * d.d + v.agent_id AS schedule_id, v.agent_id, v.template_id,
           date_trunc('hour', now()) - make_interval(hours => v.hours_ago)
             + CASE WHEN d.d = 0 THEN INTERVAL '0 hours'
                    WHEN v.agent_id = 5 THEN make_interval(mins => tt.shift_minutes) + INTERVAL '10 hours'
                    ELSE INTERVAL '24 hours' END AS shift_start,
           CASE WHEN d.d = 1 AND v.agent_id = 10 THEN 'cancelled'
                WHEN d.d = 0 THEN 'published' ELSE 'planned' END AS status,
           CASE WHEN d.d = 1 AND v.agent_id = 10 THEN 'Vacation approved in 1C ZUP' END AS notes
    FROM (VALUES (1, 1, 5), (2, 1, 3), (3, 2, 2), (4, 2, 1), (5, 3, 7), (12, 2, 0), (6, 1, 4), (7, 2, 2),
                 (8, 4, 1), (9, 2, 3), (10, 2, 6), (11, 2, 2), (14, 5, 4), (15, 5, 2), (16, 6, 1), (17, 5, 3),
                 (18, 6, -1), (19, 5, 5), (20, 7, 1))
         AS v (agent_id, template_id, hours_ago)
    JOIN schedule_templates tt ON tt.template_id = v.template_id
    CROSS JOIN (VALUES (0), (1)) AS d (d)
    UNION ALL
    SELECT 1903, 3, 2, date_trunc('hour', now()) - INTERVAL '2 hours' + INTERVAL '4 hours', 'planned',
           'Extra evening cover (overlaps the day shift)'
) AS x
JOIN agents a ON a.agent_id = x.agent_id AND a.is_active
JOIN services s ON s.service_id = a.primary_service_id
JOIN schedule_templates t ON t.template_id = x.template_id AND t.tenant_id = a.tenant_id
WHERE NOT EXISTS (SELECT 1 FROM work_schedules w WHERE w.schedule_id = x.schedule_id)
ON CONFLICT DO NOTHING;

-- break_id = schedule_id * 10 + 1 (a 15-minute break 2.5 hours in) and + 2
-- (a 30-minute lunch 4.5 hours in), for shifts of 6 hours or more (off the
-- hour, so the live views never see every agent on a break at once)
INSERT INTO break_schedules (break_id, tenant_id, schedule_id, break_type, break_start, break_end)
SELECT b.*
FROM (
    SELECT w.schedule_id * 10 + 1 AS break_id, w.tenant_id, w.schedule_id, 'break' AS break_type,
           w.shift_start + INTERVAL '2 hours 30 minutes' AS break_start,
           w.shift_start + INTERVAL '2 hours 45 minutes' AS break_end
    FROM work_schedules w
    WHERE w.schedule_id BETWEEN 1000 AND 1999 AND w.shift_end - w.shift_start >= INTERVAL '6 hours'
    UNION ALL
    SELECT w.schedule_id * 10 + 2, w.tenant_id, w.schedule_id, 'lunch',
           w.shift_start + INTERVAL '4 hours 30 minutes', w.shift_start + INTERVAL '5 hours'
    FROM work_schedules w
    WHERE w.schedule_id BETWEEN 1000 AND 1999 AND w.shift_end - w.shift_start >= INTERVAL '6 hours'
) AS b
WHERE NOT EXISTS (SELECT 1 FROM break_schedules x WHERE x.break_id = b.break_id)
ON CONFLICT DO NOTHING;

-- ---------------------------------------------------------------------------
-- Forecasts: 1 (SUPPORT, today and tomorrow) and 2 (CARDS, today) are
-- calculated into the staffing plans; 3 (SALES, today) is a draft whose
-- staffing is not calculated yet.
-- ---------------------------------------------------------------------------

INSERT INTO forecasts (forecast_id, tenant_id, service_id, forecast_name, period_start, period_end,
                       interval_minutes, method, history_weeks, sl_target_pct, sl_threshold_seconds,
                       max_occupancy_pct, shrinkage_pct, status, created_by)
SELECT v.forecast_id, s.tenant_id, s.service_id, v.name, p.period_start, p.period_end, 15, 'manual', NULL,
       v.sl_target, v.sl_threshold, v.max_occupancy, v.shrinkage, 'draft', 'planner.seed'
FROM (VALUES
    (1, 1, 'Technical support - today and tomorrow', 0, 1, 80.00, 20, 85.00, 30.00),
    (2, 5, 'Card services - today', 0, 0, 80.00, 20, 90.00, 25.00),
    (3, 2, 'Sales line - today (draft)', 0, 0, 80.00, 20, 100.00, 30.00)
) AS v (forecast_id, service_id, name, start_offset, end_offset, sl_target, sl_threshold, max_occupancy, shrinkage)
JOIN services s ON s.service_id = v.service_id
CROSS JOIN LATERAL (
    SELECT (date_trunc('day', now(), 'UTC') AT TIME ZONE 'UTC')::DATE + v.start_offset AS period_start,
           (date_trunc('day', now(), 'UTC') AT TIME ZONE 'UTC')::DATE + v.end_offset AS period_end
) AS p (period_start, period_end)
WHERE NOT EXISTS (SELECT 1 FROM forecasts f WHERE f.forecast_id = v.forecast_id)
  AND NOT EXISTS (SELECT 1 FROM forecasts f
                  WHERE f.tenant_id = s.tenant_id AND f.service_id = s.service_id
                    AND f.period_start = p.period_start AND f.period_end = p.period_end AND f.interval_minutes = 15)
ON CONFLICT DO NOTHING;

-- Volumes: the services' daily shape, a few percent above what comes in.
INSERT INTO forecast_data_points (forecast_id, tenant_id, interval_start, forecast_volume, forecast_aht_seconds)
SELECT f.forecast_id, f.tenant_id, g.ts,
       round(v.peak * v.bias
             * (0.04 + exp(-(((t.h - 10.5) / 2.2) ^ 2)) + 0.85 * exp(-(((t.h - 15) / 2.5) ^ 2))
                + 0.25 * exp(-(((t.h - 20) / 1.5) ^ 2)))
             * CASE extract(isodow FROM g.ts AT TIME ZONE 'UTC')
                   WHEN 1 THEN 1.18 WHEN 2 THEN 1.08 WHEN 3 THEN 1.02 WHEN 4 THEN 1.0
                   WHEN 5 THEN 0.95 WHEN 6 THEN 0.55 ELSE 0.42 END, 2),
       s.target_aht_seconds
FROM (VALUES (1, 20, 1.04), (2, 16, 0.97), (3, 12, 1.10)) AS v (forecast_id, peak, bias)
JOIN forecasts f ON f.forecast_id = v.forecast_id
JOIN services s ON s.service_id = f.service_id
CROSS JOIN LATERAL generate_series(f.period_start::TIMESTAMP AT TIME ZONE 'UTC',
                                   (f.period_end + 1)::TIMESTAMP AT TIME ZONE 'UTC' - INTERVAL '15 minutes',
                                   INTERVAL '15 minutes') AS g (ts)
CROSS JOIN LATERAL (
    SELECT extract(hour FROM g.ts AT TIME ZONE 'UTC') + extract(minute FROM g.ts AT TIME ZONE 'UTC') / 60 + 0.125
) AS t (h)
WHERE NOT EXISTS (SELECT 1 FROM forecast_data_points d WHERE d.forecast_id = f.forecast_id)
ON CONFLICT DO NOTHING;

-- Staffing by Erlang C (once: a calculated forecast is left as it is)
SELECT wfm_calculate_forecast(f.tenant_id, f.forecast_id)
FROM forecasts f
WHERE f.forecast_id IN (1, 2) AND f.calculated_at IS NULL AND f.status = 'draft'
  AND EXISTS (SELECT 1 FROM forecast_data_points d WHERE d.forecast_id = f.forecast_id);

-- ---------------------------------------------------------------------------
-- Integration: connections, sync jobs, sync logs, audit trail, mappings
-- ---------------------------------------------------------------------------

INSERT INTO integration_connections (connection_id, tenant_id, connection_name, system_type, endpoint_url,
                                     auth_type, sync_interval_seconds, settings, is_active, last_sync_at,
                                     last_success_at, created_at)
SELECT v.connection_id, v.tenant_id, v.name, v.system_type, v.url, v.auth_type, v.sync_interval,
       v.settings::JSONB, v.is_active, now() - v.last_sync, now() - v.last_success, now() - INTERVAL '180 days'
FROM (VALUES
    (1, 1, '1C ZUP (HR and payroll)', '1c_zup', 'https://zup.telecom.example/hs/wfm/v1', 'basic', 3600,
     '{"entities": ["employees", "vacations", "timesheets"], "organization": "Telecom LLC"}', TRUE,
     INTERVAL '20 minutes', INTERVAL '20 minutes'),
    (2, 1, 'Avaya CMS (ACD)', 'contact_center', 'https://cms.telecom.example/api', 'api_key', 60,
     '{"entities": ["interval_stats", "agent_states", "queue_states"], "splits": [101, 102, 103, 104]}', TRUE,
     INTERVAL '40 seconds', INTERVAL '40 seconds'),
    (3, 1, 'Corporate LDAP', 'ldap', 'ldaps://ldap.telecom.example:636', 'kerberos', 900,
     '{"entities": ["users"], "base_dn": "ou=contact-centre,dc=telecom,dc=example"}', TRUE,
     INTERVAL '5 minutes', INTERVAL '2 hours 10 minutes'),
    (4, 1, 'HR portal webhook', 'webhook', NULL, 'none', 300, '{}', FALSE, NULL, NULL),
    (5, 2, 'Genesys Cloud', 'contact_center', 'https://api.mypurecloud.de/api/v2', 'oauth2', 30,
     '{"entities": ["queue_observations", "conversation_aggregates"], "region": "eu-central-1"}', TRUE,
     INTERVAL '20 seconds', INTERVAL '20 seconds'),
    (6, 2, '1C ZUP (bank)', '1c_zup', 'https://zup.bank.example/hs/wfm/v1', 'basic', 3600,
     '{"entities": ["employees", "vacations"]}', TRUE, INTERVAL '15 minutes', INTERVAL '75 minutes')
) AS v (connection_id, tenant_id, name, system_type, url, auth_type, sync_interval, settings, is_active,
        last_sync, last_success)
WHERE NOT EXISTS (SELECT 1 FROM integration_connections c WHERE c.connection_id = v.connection_id)
  AND NOT EXISTS (SELECT 1 FROM integration_connections c
                  WHERE c.tenant_id = v.tenant_id AND c.connection_name = v.name)
ON CONFLICT DO NOTHING;

-- Jobs: finished ones, and one still running on Genesys Cloud (5).
INSERT INTO sync_jobs (job_id, tenant_id, connection_id, correlation_id, sync_type, entities, priority, status,
                       target_seconds, requested_by, requested_at, started_at, finished_at, records_processed,
                       error_message)
SELECT v.job_id, c.tenant_id, c.connection_id, v.correlation_id, v.sync_type, v.entities::TEXT[], v.priority,
       v.status, 30, v.requested_by, now() - v.age, now() - v.age + INTERVAL '2 seconds',
       CASE WHEN v.duration IS NOT NULL THEN now() - v.age + INTERVAL '2 seconds' + v.duration END,
       v.records, v.error
FROM (VALUES
    ('7a3e0000-0000-4000-8000-000000000101'::UUID, 1, 'c0de0000-0000-4000-8000-000000000101'::UUID, 'incremental',
     '{employees,vacations}', 'normal', 'completed', 'scheduler', INTERVAL '20 minutes 30 seconds',
     INTERVAL '18 seconds', 214, NULL),
    ('7a3e0000-0000-4000-8000-000000000201', 2, 'c0de0000-0000-4000-8000-000000000201', 'incremental',
     '{interval_stats}', 'high', 'completed', 'scheduler', INTERVAL '1 minute 10 seconds',
     INTERVAL '4 seconds', 28, NULL),
    ('7a3e0000-0000-4000-8000-000000000301', 3, 'c0de0000-0000-4000-8000-000000000301', 'full', '{users}',
     'low', 'failed', 'scheduler', INTERVAL '5 minutes 20 seconds', INTERVAL '31 seconds', 0,
     'LDAP bind failed: KDC has no support for encryption type'),
    ('7a3e0000-0000-4000-8000-000000000501', 5, 'c0de0000-0000-4000-8000-000000000501', 'incremental',
     '{queue_observations}', 'high', 'running', 'scheduler', INTERVAL '12 seconds', NULL, NULL, NULL),
    ('7a3e0000-0000-4000-8000-000000000601', 6, 'c0de0000-0000-4000-8000-000000000601', 'incremental',
     '{employees}', 'normal', 'failed', 'hr.admin', INTERVAL '15 minutes 40 seconds', INTERVAL '45 seconds',
     0, 'HTTP 503 from 1C: the infobase is locked for maintenance')
) AS v (job_id, connection_id, correlation_id, sync_type, entities, priority, status, requested_by, age,
        duration, records, error)
JOIN integration_connections c ON c.connection_id = v.connection_id
WHERE NOT EXISTS (SELECT 1 FROM sync_jobs j WHERE j.job_id = v.job_id)
  AND NOT (v.status IN ('queued', 'running')
           AND EXISTS (SELECT 1 FROM sync_jobs j
                       WHERE j.connection_id = v.connection_id AND j.status IN ('queued', 'running')))
ON CONFLICT DO NOTHING;

-- Sync history of the last day: sync_log_id = connection_id * 100 + k.
INSERT INTO integration_sync_logs (sync_log_id, tenant_id, connection_id, job_id, started_at, finished_at, status,
                                   records_processed, records_failed, error_message)
SELECT l.*
FROM (
    SELECT c.connection_id * 100 + k AS sync_log_id, c.tenant_id, c.connection_id,
           CASE WHEN k = 1 THEN (SELECT j.job_id FROM sync_jobs j
                                 WHERE j.connection_id = c.connection_id AND j.status IN ('completed', 'failed')
                                 ORDER BY j.requested_at DESC LIMIT 1) END AS job_id,
           c.last_sync_at - make_interval(secs => (k - 1) * p.every) AS started_at,
           c.last_sync_at - make_interval(secs => (k - 1) * p.every) + make_interval(secs => p.took) AS finished_at,
           CASE WHEN k <= p.failed_first THEN 'failed'
                WHEN k % 7 = 0 THEN 'partial' ELSE 'success' END AS status,
           CASE WHEN k <= p.failed_first THEN 0 ELSE p.records + (k * 13) % 20 END AS records_processed,
           CASE WHEN k <= p.failed_first THEN 0 WHEN k % 7 = 0 THEN 2 ELSE 0 END AS records_failed,
           CASE WHEN k <= p.failed_first THEN p.error END AS error_message
    FROM integration_connections c
    JOIN (VALUES (1, 3600, 18, 0, 200, NULL::TEXT, 6),
                 (2, 60, 4, 0, 25, NULL, 12),
                 (3, 900, 31, 8, 40, 'LDAP bind failed: KDC has no support for encryption type', 12),
                 (5, 30, 2, 0, 12, NULL, 12),
                 (6, 3600, 45, 1, 150, 'HTTP 503 from 1C: the infobase is locked for maintenance', 4))
         AS p (connection_id, every, took, failed_first, records, error, n)
      ON p.connection_id = c.connection_id
    CROSS JOIN LATERAL generate_series(1, p.n) AS k
    WHERE c.last_sync_at IS NOT NULL
) AS l
WHERE NOT EXISTS (SELECT 1 FROM integration_sync_logs x WHERE x.sync_log_id = l.sync_log_id)
ON CONFLICT DO NOTHING;

-- The audit trail: each job's requested / started / completed (or failed)
-- events under its correlation id; a GDPR-relevant read of personal data
-- (employees from 1C ZUP, legal basis: the employment contract) and an
-- export to the ACD; a rejected record. log_id = 100 * connection_id + k for
-- the events of the sample jobs (one per connection), 901.. for the others.
INSERT INTO integration_logs (log_id, tenant_id, connection_id, job_id, correlation_id, event_type, direction,
                              level, message, entity_type, records_count, duration_ms, contains_personal_data,
                              legal_basis, actor, created_at)
SELECT l.*
FROM (
    SELECT 100 * j.connection_id + e.k AS log_id, j.tenant_id, j.connection_id,
           j.job_id, j.correlation_id, e.event_type,
           CASE e.k WHEN 1 THEN 'internal' WHEN 2 THEN 'outbound' ELSE 'inbound' END AS direction,
           CASE WHEN e.event_type = 'sync_failed' THEN 'error' ELSE 'info' END AS level,
           CASE e.event_type
               WHEN 'sync_requested' THEN format('%s sync of %s requested', j.sync_type, c.connection_name)
               WHEN 'sync_started' THEN format('Sync with %s started', c.connection_name)
               WHEN 'sync_completed' THEN format('Sync with %s completed: %s records', c.connection_name,
                                                 j.records_processed)
               ELSE format('Sync with %s failed: %s', c.connection_name, j.error_message) END AS message,
           j.entities[1] AS entity_type,
           CASE WHEN e.k = 3 THEN j.records_processed END AS records_count,
           CASE WHEN e.k = 3 THEN (extract(epoch FROM j.finished_at - j.started_at) * 1000)::INTEGER END AS duration_ms,
           e.k = 3 AND c.system_type IN ('1c_zup', 'ldap') AND COALESCE(j.records_processed, 0) > 0
               AS contains_personal_data,
           CASE WHEN e.k = 3 AND c.system_type IN ('1c_zup', 'ldap') AND COALESCE(j.records_processed, 0) > 0
                THEN 'contract' END AS legal_basis,
           j.requested_by AS actor,
           CASE e.k WHEN 1 THEN j.requested_at WHEN 2 THEN j.started_at ELSE j.finished_at END AS created_at
    FROM sync_jobs j
    JOIN integration_connections c ON c.connection_id = j.connection_id
    CROSS JOIN LATERAL (
        SELECT k, CASE k WHEN 1 THEN 'sync_requested' WHEN 2 THEN 'sync_started'
                         ELSE CASE WHEN j.status = 'failed' THEN 'sync_failed' ELSE 'sync_completed' END END
        FROM generate_series(1, CASE WHEN j.finished_at IS NULL THEN 2 ELSE 3 END) AS k
    ) AS e (k, event_type)
    WHERE j.job_id::TEXT LIKE '7a3e0000-0000-4000-8000-000000000%'
    UNION ALL
    SELECT v.log_id, c.tenant_id, c.connection_id, NULL, v.correlation_id, v.event_type, v.direction, v.level,
           v.message, v.entity_type, v.records, NULL, v.personal, v.legal_basis, v.actor, now() - v.age
    FROM (VALUES
        (901, 1, 'c0de0000-0000-4000-8000-000000000901'::UUID, 'data_access', 'inbound', 'info',
         'Employee master data read from 1C ZUP for schedule planning', 'employees', 214, TRUE, 'contract',
         'planner.seed', INTERVAL '3 hours'),
        (902, 2, 'c0de0000-0000-4000-8000-000000000902', 'data_export', 'outbound', 'info',
         'Published schedules exported to the ACD', 'work_schedules', 38, FALSE, NULL, 'planner.seed',
         INTERVAL '2 hours'),
        (903, 2, 'c0de0000-0000-4000-8000-000000000903', 'record_rejected', 'inbound', 'warning',
         'Interval record for unknown split 199 rejected', 'interval_stats', 1, FALSE, NULL, 'scheduler',
         INTERVAL '95 minutes'),
        (904, 6, 'c0de0000-0000-4000-8000-000000000904', 'auth', 'outbound', 'warning',
         'Basic authentication to 1C ZUP retried after HTTP 401', NULL, NULL, FALSE, NULL, 'scheduler',
         INTERVAL '16 minutes')
    ) AS v (log_id, connection_id, correlation_id, event_type, direction, level, message, entity_type, records,
            personal, legal_basis, actor, age)
    JOIN integration_connections c ON c.connection_id = v.connection_id
) AS l
WHERE NOT EXISTS (SELECT 1 FROM integration_logs x WHERE x.log_id = l.log_id)
ON CONFLICT DO NOTHING;

INSERT INTO integration_endpoint_mappings (mapping_id, tenant_id, connection_id, external_endpoint,
                                           external_method, direction, source_entity, target_table,
                                           field_mappings, workflow_stage, api_endpoint_path, api_http_method)
SELECT v.mapping_id, c.tenant_id, c.connection_id, v.endpoint, v.method, v.direction, v.entity, v.target,
       v.fields::JSONB, v.stage, v.api_path, v.api_method
FROM (VALUES
    (1, 1, '/employees', 'GET', 'import', 'Сотрудники', 'agents',
     '{"ТабельныйНомер": "employee_number", "ФИО": "full_name", "ЭлектроннаяПочта": "email", "ДатаПриема": "hire_date", "ВидЗанятости": "employment_type"}',
     'personnel_sync', '/api/v1/db/database/bulk/import', 'POST'),
    (2, 1, '/timesheet', 'POST', 'export', 'ТабельУчетаРабочегоВремени', 'agent_activity',
     '{"employee_number": "ТабельныйНомер", "activity_date": "Дата", "login_seconds": "ОтработаноСекунд"}',
     'timesheet_export', '/api/v1/db/database/bulk/export', 'POST'),
    (3, 1, '/vacations', 'GET', 'import', 'ОтпускаСотрудников', 'work_schedules',
     '{"ТабельныйНомер": "employee_number", "ДатаНачала": "shift_start", "ДатаОкончания": "shift_end"}',
     'absence_import', NULL, NULL),
    (4, 2, '/historical/interval', 'GET', 'import', 'split interval report', 'contact_statistics',
     '{"split": "service_code", "row_date": "interval_start", "callsoffered": "offered", "acdcalls": "answered", "abncalls": "abandoned", "acceptable": "answered_within_threshold", "acdtime": "talk_seconds", "holdtime": "hold_seconds", "acwtime": "wrap_seconds", "anstime": "wait_seconds", "maxocwtime": "max_wait_seconds"}',
     'interval_load', '/api/v1/db/database/contact-statistics', 'GET'),
    (5, 2, '/realtime/agents', 'GET', 'import', 'agent states', 'realtime_agents',
     '{"logid": "employee_number", "aux_state": "status", "split": "current_service_id"}',
     'realtime_monitoring', '/api/v1/db/database/realtime-status', 'GET'),
    (6, 3, '/users', 'GET', 'import', 'inetOrgPerson', 'agents',
     '{"employeeNumber": "employee_number", "cn": "full_name", "mail": "email"}',
     'identity_sync', NULL, NULL),
    (7, 5, '/analytics/queues/observations/query', 'POST', 'import', 'queue observations', 'realtime_queues',
     '{"queueId": "service_code", "oWaiting": "calls_waiting", "oLongestWaiting": "longest_wait_seconds"}',
     'realtime_monitoring', '/api/v1/db/database/realtime-status', 'GET'),
    (8, 5, '/analytics/conversations/aggregates/query', 'POST', 'import', 'conversation aggregates',
     'contact_statistics',
     '{"queueId": "service_code", "interval": "interval_start", "nOffered": "offered", "tAnswered": "answered", "tAbandon": "abandoned", "oServiceLevel": "answered_within_threshold", "tTalk": "talk_seconds", "tHeld": "hold_seconds", "tAcw": "wrap_seconds", "tWait": "wait_seconds"}',
     'interval_load', '/api/v1/db/database/contact-statistics', 'GET'),
    (9, 6, '/employees', 'GET', 'import', 'Сотрудники', 'agents',
     '{"ТабельныйНомер": "employee_number", "ФИО": "full_name", "ЭлектроннаяПочта": "email"}',
     'personnel_sync', '/api/v1/db/database/bulk/import', 'POST')
) AS v (mapping_id, connection_id, endpoint, method, direction, entity, target, fields, stage, api_path, api_method)
JOIN integration_connections c ON c.connection_id = v.connection_id
WHERE NOT EXISTS (SELECT 1 FROM integration_endpoint_mappings m WHERE m.mapping_id = v.mapping_id)
  AND NOT EXISTS (SELECT 1 FROM integration_endpoint_mappings m
                  WHERE m.connection_id = v.connection_id AND m.external_endpoint = v.endpoint
                    AND m.external_method = v.method)
ON CONFLICT DO NOTHING;

-- ---------------------------------------------------------------------------
-- Metric snapshots (the previous values behind the trend arrows): the key
-- metrics of each tenant over the 24 hours up to an hour ago, measured 5
-- minutes ago; metric_id = 1000 * tenant + n, written once per tenant.
-- ---------------------------------------------------------------------------

INSERT INTO operational_metrics (metric_id, tenant_id, service_id, metric_name, metric_value, measured_at, source)
SELECT 1000 * t.tenant_id + row_number() OVER (PARTITION BY t.tenant_id ORDER BY m.service_id NULLS FIRST,
                                                                                 m.metric_name),
       t.tenant_id, m.service_id, m.metric_name, m.metric_value, now() - INTERVAL '5 minutes', 'monitoring'
FROM (VALUES (1), (2)) AS t (tenant_id)
CROSS JOIN LATERAL wfm_current_metrics(t.tenant_id, now() - INTERVAL '25 hours', now() - INTERVAL '1 hour') AS m
WHERE m.metric_name IN ('service_level_pct', 'acd_rate_pct', 'aht_seconds', 'abandon_rate_pct',
                        'avg_speed_answer_seconds')
  AND EXISTS (SELECT 1 FROM services s WHERE s.tenant_id = t.tenant_id AND s.service_id BETWEEN 1 AND 8)
  AND NOT EXISTS (SELECT 1 FROM operational_metrics o
                  WHERE o.metric_id BETWEEN 1000 * t.tenant_id AND 1000 * t.tenant_id + 999)
ON CONFLICT DO NOTHING;

-- ---------------------------------------------------------------------------
-- A data-quality run of yesterday (tenant 1), as wfm_run_quality_checks
-- records one.
-- ---------------------------------------------------------------------------

INSERT INTO data_quality_results (result_id, tenant_id, run_id, table_name, check_name, severity, checked_rows,
                                  failed_rows, passed, checked_at, requested_by)
SELECT v.result_id, 1, 'd9a10000-0000-4000-8000-000000000001'::UUID, v.table_name, v.check_name, q.severity,
       v.checked, v.failed, v.failed = 0, now() - INTERVAL '1 day', 'scheduler'
FROM (VALUES
    (1, 'agents', 'active_without_group', 12, 1),
    (2, 'agents', 'missing_email', 12, 1),
    (3, 'integration_connections', 'missing_endpoint', 4, 0),
    (4, 'integration_connections', 'stale_sync', 4, 0)
) AS v (result_id, table_name, check_name, checked, failed)
JOIN data_quality_checks q ON q.table_name = v.table_name AND q.check_name = v.check_name
WHERE NOT EXISTS (SELECT 1 FROM data_quality_results r WHERE r.result_id = v.result_id)
ON CONFLICT DO NOTHING;

-- ---------------------------------------------------------------------------
-- Identity sequences: continue after the explicit sample keys
-- ---------------------------------------------------------------------------

DO $$
DECLARE
    r      RECORD;
    v_seq  TEXT;
    v_max  BIGINT;
    v_last BIGINT;
BEGIN
    FOR r IN
        SELECT * FROM (VALUES
            ('services', 'service_id'),
            ('service_groups', 'group_id'),
            ('agents', 'agent_id'),
            ('agent_status_history', 'status_id'),
            ('operational_metrics', 'metric_id'),
            ('threshold_alerts', 'alert_id'),
            ('predictive_alerts', 'predictive_alert_id'),
            ('realtime_alerts', 'alert_event_id'),
            ('schedule_templates', 'template_id'),
            ('work_schedules', 'schedule_id'),
            ('break_schedules', 'break_id'),
            ('forecasts', 'forecast_id'),
            ('integration_connections', 'connection_id'),
            ('integration_sync_logs', 'sync_log_id'),
            ('integration_logs', 'log_id'),
            ('integration_endpoint_mappings', 'mapping_id'),
            ('data_quality_results', 'result_id')
        ) AS t (tbl, col)
    LOOP
        v_seq := pg_get_serial_sequence(r.tbl, r.col);
        EXECUTE format('SELECT max(%I) FROM %I', r.col, r.tbl) INTO v_max;
        EXECUTE format('SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM %s', v_seq) INTO v_last;
        IF v_max IS NOT NULL AND v_max > v_last THEN
            PERFORM setval(v_seq, v_max);
        END IF;
    END LOOP;
END;
$$;
