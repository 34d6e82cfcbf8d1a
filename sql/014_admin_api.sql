-- 014: the admin API under /admin/v1 (engine/admin/): its error codes, the SQL
-- functions behind activate/deactivate/delete, and the mapping rows that serve
-- every admin route a SQL template can do (the engine serving its own rows).
--
-- Every row here has service_name 'admin' (the only service that may publish
-- under /admin/v1, engine/spec.py), requires auth and the role engine_admin, is
-- never cached (an admin reads the state as it is) and has no rate limit. The
-- routes where the engine must act (compiling a proposed row: POST/PATCH of
-- endpoints, schemas and error codes, diff, rollback, scaffold) are built in
-- (engine/admin/api.py) and are not rows. Long lists are keyset-paginated.
--
-- The rows are upserted on (endpoint_path, http_method) so that a later
-- migration can replace one; an admin may edit or deactivate them like any row.
-- localized_messages: "vi" Vietnamese, "ru" Russian; ON CONFLICT DO NOTHING
-- keeps wording an admin already wrote.

INSERT INTO api_error_codes
    (error_code, http_status_code, error_category, error_message, suggested_action, localized_messages)
VALUES
('ENDPOINT_INVALID', 422, 'validation',
 'The change would leave an endpoint that cannot be served',
 'Fix every reason listed in errors (the checks of engine check) and send the change again; add ?dry_run=true to check without writing.',
 '{"vi": "Thay đổi này sẽ tạo ra một điểm cuối không thể phục vụ", "ru": "Это изменение оставит конечную точку, которую невозможно обслуживать"}'),
('ENDPOINT_NOT_CHECKED', 409, 'validation',
 'The endpoint''s current version has not been checked yet',
 'Retry in a second: every running engine checks a changed row within a second of its commit.',
 '{"vi": "Phiên bản hiện tại của điểm cuối chưa được kiểm tra", "ru": "Текущая версия конечной точки ещё не проверена"}'),
('ENDPOINT_NOT_FOUND', 404, 'business',
 'No endpoint mapping has this id',
 'List the endpoint mappings with GET /admin/v1/endpoints.',
 '{"vi": "Không có ánh xạ điểm cuối nào có mã này", "ru": "Сопоставление конечной точки с таким идентификатором не найдено"}'),
('ENDPOINT_VERSION_NOT_FOUND', 404, 'business',
 'This endpoint has no such version',
 'List the versions of the endpoint with GET /admin/v1/endpoints/{id}/versions.',
 '{"vi": "Điểm cuối này không có phiên bản như vậy", "ru": "У этой конечной точки нет такой версии"}'),
('SCHEMA_NOT_FOUND', 404, 'business',
 'No validation schema has this id',
 'List the validation schemas with GET /admin/v1/schemas.',
 '{"vi": "Không có lược đồ kiểm tra nào có mã này", "ru": "Схема проверки с таким идентификатором не найдена"}'),
('ERROR_CODE_NOT_FOUND', 404, 'business',
 'No error code has this name',
 'List the error codes with GET /admin/v1/error-codes.',
 '{"vi": "Không có mã lỗi nào có tên này", "ru": "Код ошибки с таким именем не найден"}'),
('ERROR_CODE_INVALID', 422, 'validation',
 'The error code row cannot be used as written',
 'Fix every reason listed in errors and send the change again.',
 '{"vi": "Không thể sử dụng mã lỗi như đã viết", "ru": "Код ошибки в таком виде использовать нельзя"}')
ON CONFLICT (error_code) DO NOTHING;

INSERT INTO engine_required_error_codes (error_code) VALUES
    ('ENDPOINT_INVALID'), ('ENDPOINT_NOT_CHECKED'), ('ENDPOINT_NOT_FOUND'),
    ('ENDPOINT_VERSION_NOT_FOUND'), ('SCHEMA_NOT_FOUND'), ('ERROR_CODE_NOT_FOUND'),
    ('ERROR_CODE_INVALID')
ON CONFLICT DO NOTHING;

-- ---------------------------------------------------------------------------
-- Activating, deactivating and deleting a mapping (POST .../activate,
-- .../deactivate, DELETE /admin/v1/endpoints/{id}; engine/admin/operations.py
-- calls the same functions).
--
-- p_actor is who asks (the caller's sub): set as engine.actor for the
-- transaction, so the history triggers (sql/013) record it.
--
-- Activating a draft is refused unless the engine checked its current version
-- and found it would serve (api_endpoint_status: state draft, reason NULL):
-- a draft that does not compile, or that clashes with the route's owner, would
-- otherwise take its route down (503) or never serve. An unchecked version
-- (changed less than a second ago) is ENDPOINT_NOT_CHECKED: retry. Deactivating
-- a serving row records its new version as a draft that would serve (only
-- is_active changed), so it can be activated again at once.
-- ---------------------------------------------------------------------------
-- The route a row takes, as engine/routing.py route_key makes it: the method in
-- upper case, the path with parameter names and a trailing slash ignored
-- ('/a/{id}/' and '/a/{x}' are one route).
CREATE OR REPLACE FUNCTION engine_route_path(p_path TEXT)
RETURNS TEXT
LANGUAGE sql IMMUTABLE
AS $$
    SELECT '/' || COALESCE(string_agg(CASE WHEN t.seg LIKE '{%}' THEN '{}' ELSE t.seg END, '/'
                                      ORDER BY t.n), '')
    FROM unnest(string_to_array(btrim(p_path, '/'), '/')) WITH ORDINALITY AS t(seg, n)
$$;

CREATE OR REPLACE FUNCTION engine_admin_set_active(p_id INTEGER, p_active BOOLEAN, p_actor TEXT)
RETURNS TABLE (
    id INTEGER, endpoint_path VARCHAR(200), http_method VARCHAR(10), service_name VARCHAR(100),
    is_active BOOLEAN, version INTEGER
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_row    api_endpoint_mappings%ROWTYPE;
    v_status api_endpoint_status%ROWTYPE;
    v_owner  api_endpoint_mappings%ROWTYPE;
BEGIN
    -- one catalogue change at a time (engine.admin.change.CATALOG_WRITE_LOCK): the
    -- statements below see every change committed before this one
    PERFORM pg_advisory_xact_lock(7161132844275689249);
    IF p_actor IS NOT NULL THEN
        PERFORM set_config('engine.actor', p_actor, true);
    END IF;
    SELECT * INTO v_row FROM api_endpoint_mappings m WHERE m.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF p_active AND NOT v_row.is_active THEN
        SELECT * INTO v_status FROM api_endpoint_status s WHERE s.endpoint_mapping_id = p_id;
        IF NOT FOUND OR v_status.version <> v_row.version THEN
            RAISE EXCEPTION 'ENDPOINT_NOT_CHECKED'
                USING DETAIL = format('version %s of mapping id=%s has not been checked by a '
                                      'running engine yet; retry in a second', v_row.version, p_id);
        END IF;
        -- the draft was checked against the rows of its time: another row may own
        -- its route now (activating it would take the route from a serving row)
        SELECT * INTO v_owner FROM api_endpoint_mappings o
        WHERE o.is_active AND o.id <> p_id
          AND upper(o.http_method) = upper(v_row.http_method)
          AND engine_route_path(o.endpoint_path) = engine_route_path(v_row.endpoint_path)
        ORDER BY o.id
        LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'ENDPOINT_INVALID'
                USING DETAIL = format('mapping id=%s (%s %s) would take the route of mapping '
                                      'id=%s (%s %s), which is active: deactivate that one first',
                                      p_id, v_row.http_method, v_row.endpoint_path, v_owner.id,
                                      v_owner.http_method, v_owner.endpoint_path);
        END IF;
        IF v_status.reason IS NOT NULL THEN
            RAISE EXCEPTION 'ENDPOINT_INVALID'
                USING DETAIL = format('mapping id=%s (%s %s, v%s) would not serve: %s', p_id,
                                      v_row.http_method, v_row.endpoint_path, v_row.version,
                                      v_status.reason);
        END IF;
    END IF;
    UPDATE api_endpoint_mappings m SET is_active = p_active
    WHERE m.id = p_id
    RETURNING * INTO v_row;
    IF NOT p_active THEN
        -- a row that served as this very definition would serve again: say so now, so
        -- activating it back needs no wait for the engines to check it
        UPDATE api_endpoint_status s
        SET version = v_row.version, state = 'draft', reason = NULL, serving_version = NULL,
            checked_at = now()
        WHERE s.endpoint_mapping_id = p_id AND s.version = v_row.version - 1
          AND s.state = 'serving';
    END IF;
    RETURN QUERY SELECT v_row.id, v_row.endpoint_path, v_row.http_method, v_row.service_name,
                        v_row.is_active, v_row.version;
END;
$$;

CREATE OR REPLACE FUNCTION engine_admin_delete_endpoint(p_id INTEGER, p_actor TEXT)
RETURNS TABLE (
    id INTEGER, endpoint_path VARCHAR(200), http_method VARCHAR(10), service_name VARCHAR(100),
    is_active BOOLEAN, version INTEGER
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
BEGIN
    IF p_actor IS NOT NULL THEN
        PERFORM set_config('engine.actor', p_actor, true);
    END IF;
    RETURN QUERY
    DELETE FROM api_endpoint_mappings m
    WHERE m.id = p_id
    RETURNING m.id, m.endpoint_path, m.http_method, m.service_name, m.is_active, m.version;
END;
$$;

-- ---------------------------------------------------------------------------
-- The admin rows
-- ---------------------------------------------------------------------------

INSERT INTO api_endpoint_mappings AS m
    (endpoint_path, http_method, service_name, database_operation, target_table,
     query_template, query_parameters, result_mapping,
     cache_enabled, cache_ttl_seconds, rate_limit_per_minute,
     requires_auth, required_roles, required_permissions, is_active, description)
VALUES

-- Endpoints ------------------------------------------------------------------

('/admin/v1/endpoints', 'GET', 'admin', 'SELECT', 'api_endpoint_mappings',
$sql$SELECT m.id, m.http_method, m.endpoint_path, m.service_name, m.database_operation,
       m.is_active, m.version,
       CASE WHEN s.version = m.version THEN s.state ELSE 'pending' END AS state,
       CASE WHEN s.version = m.version THEN s.reason END AS reason,
       s.serving_version, COALESCE(s.warnings, '[]'::jsonb) AS warnings, s.checked_at,
       m.description, m.updated_at
FROM api_endpoint_mappings m
LEFT JOIN api_endpoint_status s ON s.endpoint_mapping_id = m.id
WHERE ($1::text IS NULL OR m.service_name = $1)
  AND ($2::text IS NULL OR (CASE WHEN s.version = m.version THEN s.state ELSE 'pending' END) = $2)
  AND ($3::text IS NULL OR starts_with(m.endpoint_path, $3))
ORDER BY id$sql$,
'[{"name": "service", "in": "query", "type": "string", "description": "only rows of this service_name"},
  {"name": "state", "in": "query", "type": "string",
   "description": "only rows in this state: serving, stale, refused, draft, or pending (changed and not checked yet)"},
  {"name": "path", "in": "query", "type": "string", "description": "only rows whose endpoint_path starts with this"}]',
'{"shape": "list", "paginate": {"limit": 100, "max_limit": 1000, "keyset": ["id"]}}',
FALSE, 0, NULL, TRUE, '{engine_admin}', '{}', TRUE,
'Every endpoint mapping with its state (api_endpoint_status): serving, stale (an older version serves), refused, draft, or pending (changed less than a second ago and not checked yet), with the reason and warnings.'),

('/admin/v1/endpoints/{id}', 'GET', 'admin', 'SELECT', 'api_endpoint_mappings',
$sql$SELECT m.id, m.endpoint_path, m.http_method, m.service_name, m.database_operation,
       m.target_table, m.target_schema, m.query_template, m.query_parameters, m.result_mapping,
       m.cache_enabled, m.cache_ttl_seconds, m.rate_limit_per_minute, m.requires_auth,
       m.required_roles, m.required_permissions, m.is_active, m.statement_timeout_ms,
       m.description, m.version, m.created_at, m.updated_at,
       CASE WHEN s.version = m.version THEN s.state ELSE 'pending' END AS state,
       CASE WHEN s.version = m.version THEN s.reason END AS reason,
       s.serving_version, COALESCE(s.warnings, '[]'::jsonb) AS warnings, s.checked_at
FROM api_endpoint_mappings m
LEFT JOIN api_endpoint_status s ON s.endpoint_mapping_id = m.id
WHERE m.id = $1$sql$,
'[{"name": "id", "in": "path", "type": "integer", "required": true}]',
'{"shape": "object", "not_found": "ENDPOINT_NOT_FOUND"}',
FALSE, 0, NULL, TRUE, '{engine_admin}', '{}', TRUE,
'One endpoint mapping: every column, and its state, reason and warnings.'),

('/admin/v1/endpoints/{id}/activate', 'POST', 'admin', 'UPDATE', 'api_endpoint_mappings',
$sql$SELECT * FROM engine_admin_set_active($1, true, $2)$sql$,
'[{"name": "id", "in": "path", "type": "integer", "required": true},
  {"name": "actor", "in": "auth", "claim": "sub", "type": "string", "required": true}]',
'{"shape": "object", "not_found": "ENDPOINT_NOT_FOUND", "status": 200}',
FALSE, 0, NULL, TRUE, '{engine_admin}', '{}', TRUE,
'Activate a mapping. A draft is activated only when the engine checked its current version and found it would serve (else 422 ENDPOINT_INVALID with the reason, or 409 ENDPOINT_NOT_CHECKED within a second of a change). It serves within a second in every engine process.'),

('/admin/v1/endpoints/{id}/deactivate', 'POST', 'admin', 'UPDATE', 'api_endpoint_mappings',
$sql$SELECT * FROM engine_admin_set_active($1, false, $2)$sql$,
'[{"name": "id", "in": "path", "type": "integer", "required": true},
  {"name": "actor", "in": "auth", "claim": "sub", "type": "string", "required": true}]',
'{"shape": "object", "not_found": "ENDPOINT_NOT_FOUND", "status": 200}',
FALSE, 0, NULL, TRUE, '{engine_admin}', '{}', TRUE,
'Deactivate a mapping (it becomes a draft): its route stops serving at once in every engine process.'),

('/admin/v1/endpoints/{id}', 'DELETE', 'admin', 'DELETE', 'api_endpoint_mappings',
$sql$SELECT * FROM engine_admin_delete_endpoint($1, $2)$sql$,
'[{"name": "id", "in": "path", "type": "integer", "required": true},
  {"name": "actor", "in": "auth", "claim": "sub", "type": "string", "required": true}]',
'{"shape": "object", "not_found": "ENDPOINT_NOT_FOUND"}',
FALSE, 0, NULL, TRUE, '{engine_admin}', '{}', TRUE,
'Delete a mapping with its schemas, rules, templates and cache settings. Its history is kept (GET /admin/v1/endpoints/{id}/versions).'),

-- History (api_endpoint_history, sql/013) --------------------------------------------

('/admin/v1/endpoints/{id}/versions', 'GET', 'admin', 'SELECT', 'api_endpoint_history',
$sql$SELECT h.version, h.row_version, h.change_kind, h.changed_table, h.changed_tables,
       h.changed_by, h.changed_at, h.row_version IS NULL AS deleted,
       h.definition -> 'mapping' ->> 'http_method' AS http_method,
       h.definition -> 'mapping' ->> 'endpoint_path' AS endpoint_path,
       (h.definition -> 'mapping' ->> 'is_active')::boolean AS is_active
FROM api_endpoint_history h
WHERE h.mapping_id = $1
ORDER BY version DESC$sql$,
'[{"name": "id", "in": "path", "type": "integer", "required": true}]',
'{"shape": "list", "paginate": {"limit": 100, "max_limit": 1000, "keyset": ["-version"]}}',
FALSE, 0, NULL, TRUE, '{engine_admin}', '{}', TRUE,
'The versions of a mapping, newest first: who changed what and when (kept after the mapping is deleted). Compare two with GET /admin/v1/endpoints/{id}/diff?from=V1&to=V2; restore one with POST /admin/v1/endpoints/{id}/rollback.'),

('/admin/v1/endpoints/{id}/versions/{version}', 'GET', 'admin', 'SELECT', 'api_endpoint_history',
$sql$SELECT h.mapping_id, h.version, h.row_version, h.change_kind, h.changed_table,
       h.changed_tables, h.changed_by, h.changed_at, h.row_version IS NULL AS deleted,
       h.definition
FROM api_endpoint_history h
WHERE h.mapping_id = $1 AND h.version = $2$sql$,
'[{"name": "id", "in": "path", "type": "integer", "required": true},
  {"name": "version", "in": "path", "type": "integer", "required": true}]',
'{"shape": "object", "not_found": "ENDPOINT_VERSION_NOT_FOUND"}',
FALSE, 0, NULL, TRUE, '{engine_admin}', '{}', TRUE,
'One version of a mapping: its full definition as it was after that change (the mapping row, its validation schemas, the sanitization rules and response templates that applied to it, its cache settings).'),

-- Validation schemas and error codes -------------------------------------------

('/admin/v1/schemas', 'GET', 'admin', 'SELECT', 'api_validation_schemas',
$sql$SELECT v.id, v.endpoint_mapping_id, m.http_method, m.endpoint_path, v.schema_name,
       v.applies_to, v.validation_schema, v.validation_rules, v.strict_mode,
       v.allow_unknown_fields, v.sanitize_input, v.created_at, v.updated_at
FROM api_validation_schemas v
JOIN api_endpoint_mappings m ON m.id = v.endpoint_mapping_id
WHERE ($1::int IS NULL OR v.endpoint_mapping_id = $1)
ORDER BY id$sql$,
'[{"name": "endpoint_id", "in": "query", "type": "integer", "description": "only the schemas of this mapping"}]',
'{"shape": "list", "paginate": {"limit": 100, "max_limit": 1000, "keyset": ["id"]}}',
FALSE, 0, NULL, TRUE, '{engine_admin}', '{}', TRUE,
'Every validation schema (api_validation_schemas) with the mapping it checks.'),

('/admin/v1/error-codes', 'GET', 'admin', 'SELECT', 'api_error_codes',
$sql$SELECT e.error_code, e.http_status_code, e.error_category, e.error_message,
       e.suggested_action, e.error_details, e.localized_messages,
       EXISTS (SELECT 1 FROM engine_required_error_codes r WHERE r.error_code = e.error_code)
           AS engine_code,
       e.created_at, e.updated_at
FROM api_error_codes e
WHERE ($1::text IS NULL OR e.error_category = $1)
ORDER BY error_code$sql$,
'[{"name": "category", "in": "query", "type": "string", "description": "only codes of this error_category"}]',
'{"shape": "list", "paginate": {"limit": 200, "max_limit": 1000, "keyset": ["error_code"]}}',
FALSE, 0, NULL, TRUE, '{engine_admin}', '{}', TRUE,
'Every error code (api_error_codes); engine_code marks the codes the engine answers with itself, which cannot be deleted or renamed.'),

-- Logs, figures, alerts ------------------------------------------------------------

('/admin/v1/error-logs', 'GET', 'admin', 'SELECT', 'api_error_logs',
$sql$SELECT l.id, l.error_timestamp, l.request_id, l.http_method, l.endpoint_path, l.error_code,
       l.error_category, l.error_message, l.response_status_code, l.response_time_ms,
       l.principal, l.database_operation, l.database_error, l.request_params,
       l.request_headers, l.request_body, l.error_stack_trace
FROM api_error_logs l
WHERE ($1::text IS NULL OR l.endpoint_path = $1)
  AND ($2::text IS NULL OR l.http_method = upper($2))
  AND ($3::text IS NULL OR l.error_code = $3)
  AND ($4::timestamptz IS NULL OR l.error_timestamp >= $4)
  AND ($5::timestamptz IS NULL OR l.error_timestamp < $5)
  AND ($6::int IS NULL OR l.response_status_code = $6)
ORDER BY error_timestamp DESC, id DESC$sql$,
'[{"name": "endpoint", "in": "query", "type": "string",
   "description": "only errors of this endpoint path, as the mapping writes it (/api/v1/cameras/{id}), or the path requested when no endpoint matched"},
  {"name": "method", "in": "query", "type": "string", "description": "only errors of this HTTP method"},
  {"name": "code", "in": "query", "type": "string", "description": "only errors with this error code"},
  {"name": "from", "in": "query", "type": "timestamp", "description": "only errors at or after this time (ISO 8601)"},
  {"name": "to", "in": "query", "type": "timestamp", "description": "only errors before this time (ISO 8601)"},
  {"name": "status", "in": "query", "type": "integer", "description": "only errors answered with this HTTP status"}]',
'{"shape": "list", "paginate": {"limit": 50, "max_limit": 500, "keyset": ["-error_timestamp", "-id"]}}',
FALSE, 0, NULL, TRUE, '{engine_admin}', '{}', TRUE,
'The error log (api_error_logs), newest first; follow pagination.next for older entries.'),

('/admin/v1/alerts', 'GET', 'admin', 'SELECT', 'system_alerts',
$sql$SELECT a.id, a.created_at, a.alert_type, a.alert_severity, a.alert_message, a.alert_data,
       a.is_resolved, a.resolved_at
FROM system_alerts a
WHERE ($1::boolean IS NULL OR a.is_resolved = $1)
  AND ($2::text IS NULL OR a.alert_severity = $2)
  AND ($3::text IS NULL OR a.alert_type = $3)
ORDER BY id DESC$sql$,
'[{"name": "resolved", "in": "query", "type": "boolean", "description": "only resolved (true) or open (false) alerts"},
  {"name": "severity", "in": "query", "type": "string", "description": "info, warning, error or critical"},
  {"name": "type", "in": "query", "type": "string", "description": "only alerts of this alert_type"}]',
'{"shape": "list", "paginate": {"limit": 50, "max_limit": 500, "keyset": ["-id"]}}',
FALSE, 0, NULL, TRUE, '{engine_admin}', '{}', TRUE,
'System alerts (error patterns, slow queries), newest first.'),

('/admin/v1/metrics', 'GET', 'admin', 'SELECT', 'api_performance_metrics',
$sql$SELECT p.id, p.metric_timestamp, p.endpoint_mapping_id, p.http_method, p.endpoint_path,
       p.engine_instance, p.request_count, p.success_count, p.error_count,
       p.avg_response_time_ms, p.min_response_time_ms, p.max_response_time_ms,
       p.p95_response_time_ms, p.p99_response_time_ms, p.requests_per_second,
       p.database_query_count, p.database_query_time_ms, p.cache_hits, p.cache_misses,
       p.cache_hit_ratio
FROM api_performance_metrics p
WHERE ($1::int IS NULL OR p.endpoint_mapping_id = $1)
  AND ($2::timestamptz IS NULL OR p.metric_timestamp >= $2)
  AND ($3::timestamptz IS NULL OR p.metric_timestamp < $3)
ORDER BY metric_timestamp DESC, id DESC$sql$,
'[{"name": "endpoint_id", "in": "query", "type": "integer", "description": "only the figures of this mapping"},
  {"name": "from", "in": "query", "type": "timestamp", "description": "only minutes at or after this time"},
  {"name": "to", "in": "query", "type": "timestamp", "description": "only minutes before this time"}]',
'{"shape": "list", "paginate": {"limit": 60, "max_limit": 1440, "keyset": ["-metric_timestamp", "-id"]}}',
FALSE, 0, NULL, TRUE, '{engine_admin}', '{}', TRUE,
'Per-minute figures of each endpoint and engine process (api_performance_metrics), newest first.'),

('/admin/v1/cache', 'GET', 'admin', 'SELECT', 'api_cache_config',
$sql$SELECT m.id AS endpoint_id, m.http_method, m.endpoint_path, m.cache_enabled,
       COALESCE(c.cache_ttl_seconds, m.cache_ttl_seconds) AS cache_ttl_seconds,
       c.cache_strategy, c.cache_max_entries, c.cache_hit_ratio, c.cache_size_mb,
       c.cache_eviction_count, c.updated_at AS figures_at,
       COALESCE(h.hits, 0) AS hits_last_hour, COALESCE(h.misses, 0) AS misses_last_hour
FROM api_endpoint_mappings m
LEFT JOIN api_cache_config c ON c.endpoint_mapping_id = m.id
LEFT JOIN LATERAL (
    SELECT sum(p.cache_hits)::bigint AS hits, sum(p.cache_misses)::bigint AS misses
    FROM api_performance_metrics p
    WHERE p.endpoint_mapping_id = m.id AND p.metric_timestamp > now() - interval '1 hour'
) h ON true
WHERE m.http_method = 'GET' AND (m.cache_enabled OR c.id IS NOT NULL)
  AND ($1::int IS NULL OR m.id = $1)
ORDER BY endpoint_id$sql$,
'[{"name": "endpoint_id", "in": "query", "type": "integer", "description": "only this mapping"}]',
'{"shape": "list", "paginate": {"limit": 100, "max_limit": 1000, "keyset": ["endpoint_id"]}}',
FALSE, 0, NULL, TRUE, '{engine_admin}', '{}', TRUE,
'Cache figures of each cached endpoint: its settings, the hit ratio, size and evictions the engine last wrote (api_cache_config), and its hits and misses of the last hour (api_performance_metrics).'),

-- Database actions -------------------------------------------------------------------

('/admin/v1/database/health-check', 'POST', 'admin', 'SELECT', NULL,
$sql$SELECT * FROM check_database_health()$sql$,
'[]',
'{"shape": "list", "status": 200}',
FALSE, 0, NULL, TRUE, '{engine_admin}', '{}', TRUE,
'check_database_health(): each pool''s connections and utilisation from the latest figures of every engine process, and its status (healthy, warning, critical, unknown).'),

('/admin/v1/database/pool-advice', 'POST', 'admin', 'SELECT', NULL,
$sql$SELECT p.pool_name, optimize_connection_pool(p.pool_name) AS advice
FROM (
    SELECT DISTINCT d.pool_name::text AS pool_name
    FROM database_connection_pool d
    WHERE $1::text IS NULL
    UNION
    SELECT $1::text WHERE $1::text IS NOT NULL
) p
ORDER BY p.pool_name$sql$,
'[{"name": "pool", "in": "body", "type": "string", "description": "only this pool (engine-write, engine-read, ...); every pool with figures when omitted"}]',
'{"shape": "list", "status": 200}',
FALSE, 0, NULL, TRUE, '{engine_admin}', '{}', TRUE,
'optimize_connection_pool(): size advice for each pool (or the one named) from the latest figures.')

ON CONFLICT (endpoint_path, http_method) DO UPDATE SET
    service_name          = EXCLUDED.service_name,
    database_operation    = EXCLUDED.database_operation,
    target_table          = EXCLUDED.target_table,
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
    description           = EXCLUDED.description;
