-- camera_counting 003: the rows that publish the camera counting API.
--
-- 17 endpoint mappings (the guide's 15 with every elided template written out,
-- plus one stream and one detection by id), the JSON Schemas of the six POST/PUT
-- bodies, the guide's five sanitization rules (plus one), and the domain's
-- error codes with Vietnamese and Russian messages.
--
-- Tenant isolation: every template binds the tenant from the caller's
-- `tenant_id` JWT claim ("in": "auth"). Reads of a camera's sub-resources call
-- camera_visible_to_tenant(camera, tenant), which raises CAMERA_NOT_FOUND for
-- a camera of another tenant; writes insert from a SELECT on
-- camera_configurations filtered by tenant, so a foreign camera writes nothing
-- and answers 404 (shape "object" with not_found CAMERA_NOT_FOUND).
--
-- Idempotent: mappings upsert on (endpoint_path, http_method), schemas on
-- (endpoint_mapping_id, applies_to), error codes on error_code, each updating
-- only when something differs (so re-applying bumps no version); sanitization
-- rules, which have no unique key, are updated in place or inserted when absent.

-- ---------------------------------------------------------------------------
-- Error codes (before the mappings whose result_mapping.not_found names them)
-- ---------------------------------------------------------------------------

INSERT INTO api_error_codes AS e
    (error_code, http_status_code, error_category, error_message, error_details,
     suggested_action, localized_messages)
VALUES
('CAMERA_NOT_FOUND', 404, 'business',
 'Camera with specified ID not found',
 '{"resource": "camera"}',
 'Check the camera id; list your cameras with GET /api/v1/cameras.',
 '{"vi": "Không tìm thấy camera với ID đã chỉ định",
   "ru": "Камера с указанным идентификатором не найдена"}'),
('CAMERA_INACTIVE', 400, 'business',
 'Camera is currently inactive',
 '{"resource": "camera"}',
 'Reactivate the camera (PUT /api/v1/cameras/{id} with "is_active": true) before sending it data.',
 '{"vi": "Camera hiện đang không hoạt động",
   "ru": "Камера в данный момент неактивна"}'),
('INVALID_CAMERA_CONFIG', 400, 'validation',
 'Invalid camera configuration provided',
 '{"resource": "camera"}',
 'Make the stream URL protocol match the camera type and use an active AI model.',
 '{"vi": "Cấu hình camera không hợp lệ",
   "ru": "Указана недопустимая конфигурация камеры"}'),
('STREAM_CONNECTION_FAILED', 503, 'business',
 'Failed to connect to camera stream',
 '{"resource": "stream", "retryable": true}',
 'Check that the camera is powered and reachable, then retry.',
 '{"vi": "Không thể kết nối tới luồng video của camera",
   "ru": "Не удалось подключиться к видеопотоку камеры"}'),
('DETECTION_FAILED', 500, 'business',
 'Person detection failed',
 '{"resource": "detection"}',
 'Retry; if it keeps failing, check the AI model assigned to the camera.',
 '{"vi": "Nhận diện người thất bại",
   "ru": "Не удалось распознать людей"}'),
('COUNTING_ERROR', 500, 'business',
 'People counting error occurred',
 '{"resource": "counting"}',
 'Retry; if it keeps failing, rebuild the results with counting_rebuild_results(camera_id).',
 '{"vi": "Đã xảy ra lỗi khi đếm người",
   "ru": "Произошла ошибка подсчёта людей"}'),
('STREAM_NOT_FOUND', 404, 'business',
 'Video stream with specified ID not found',
 '{"resource": "stream"}',
 'List the camera''s streams with GET /api/v1/cameras/{id}/streams.',
 '{"vi": "Không tìm thấy luồng video với ID đã chỉ định",
   "ru": "Видеопоток с указанным идентификатором не найден"}'),
('DETECTION_NOT_FOUND', 404, 'business',
 'Detection with specified ID not found',
 '{"resource": "detection"}',
 'List recent detections with GET /api/v1/cameras/{id}/detections.',
 '{"vi": "Không tìm thấy kết quả nhận diện với ID đã chỉ định",
   "ru": "Результат распознавания с указанным идентификатором не найден"}'),
('INVALID_DATE_RANGE', 400, 'validation',
 'Invalid date range: from must not be after to, and the range may span at most 366 days',
 '{"parameters": ["from", "to"], "max_days": 366}',
 'Send from and to as YYYY-MM-DD with from <= to, at most 366 days apart.',
 '{"vi": "Khoảng thời gian không hợp lệ: ngày bắt đầu không được sau ngày kết thúc và khoảng tối đa là 366 ngày",
   "ru": "Недопустимый диапазон дат: начало не может быть позже конца, а диапазон не может превышать 366 дней"}')
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
-- Endpoint mappings
-- ---------------------------------------------------------------------------

INSERT INTO api_endpoint_mappings AS m
    (endpoint_path, http_method, service_name, database_operation, target_table, target_schema,
     query_template, query_parameters, result_mapping,
     cache_enabled, cache_ttl_seconds, rate_limit_per_minute,
     requires_auth, required_roles, required_permissions, is_active, statement_timeout_ms,
     description)
VALUES

-- Camera management ---------------------------------------------------------

('/api/v1/cameras', 'GET', 'camera_service', 'SELECT', 'camera_configurations', 'public',
$sql$SELECT c.camera_id, c.camera_name, c.camera_type, c.stream_url, c.location,
       c.resolution_width, c.resolution_height, c.frame_rate, c.confidence_threshold,
       c.ai_model_id, c.is_active, c.created_at, c.updated_at
FROM camera_configurations c
WHERE c.tenant_id = $1
  AND c.is_active
  AND ($2::text IS NULL OR c.camera_type = $2)
ORDER BY c.camera_id$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "camera_type", "in": "query", "type": "string",
   "description": "only cameras of this type (IP, USB, RTSP, HTTP, WebRTC)"}]',
'{"shape": "list", "paginate": {"limit": 50, "max_limit": 500}}',
TRUE, 60, 600, TRUE, '{}', '{}', TRUE, 5000,
'The caller''s active cameras, by id; ?camera_type= filters, ?limit=&offset= page.'),

('/api/v1/cameras/{id}', 'GET', 'camera_service', 'SELECT', 'camera_configurations', 'public',
$sql$SELECT c.camera_id, c.camera_name, c.camera_type, c.stream_url, c.location,
       c.resolution_width, c.resolution_height, c.frame_rate, c.confidence_threshold,
       c.ai_model_id, m.model_name AS ai_model_name, m.model_version AS ai_model_version,
       c.is_active, c.created_at, c.updated_at
FROM camera_configurations c
LEFT JOIN ai_detection_models m ON m.model_id = c.ai_model_id
WHERE c.camera_id = $1
  AND c.tenant_id = $2$sql$,
'[{"name": "id", "in": "path", "type": "integer", "required": true},
  {"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true}]',
'{"shape": "object", "not_found": "CAMERA_NOT_FOUND"}',
TRUE, 60, 600, TRUE, '{}', '{}', TRUE, 5000,
'One camera of the caller (soft-deleted cameras too, with is_active false).'),

('/api/v1/cameras', 'POST', 'camera_service', 'INSERT', 'camera_configurations', 'public',
$sql$INSERT INTO camera_configurations (
    tenant_id, camera_name, camera_type, stream_url, location,
    resolution_width, resolution_height, frame_rate, confidence_threshold, ai_model_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING camera_id, camera_name, camera_type, stream_url, location,
          resolution_width, resolution_height, frame_rate, confidence_threshold,
          ai_model_id, is_active, created_at, updated_at$sql$,
'[{"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "camera_name", "in": "body", "type": "string", "required": true},
  {"name": "camera_type", "in": "body", "type": "string", "required": true},
  {"name": "stream_url", "in": "body", "type": "string", "required": true},
  {"name": "location", "in": "body", "type": "string"},
  {"name": "resolution_width", "in": "body", "type": "integer", "default": 1920},
  {"name": "resolution_height", "in": "body", "type": "integer", "default": 1080},
  {"name": "frame_rate", "in": "body", "type": "integer", "default": 25},
  {"name": "confidence_threshold", "in": "body", "type": "number", "default": 0.5},
  {"name": "ai_model_id", "in": "body", "type": "integer"}]',
'{"shape": "object", "status": 201}',
FALSE, 0, 60, TRUE, '{camera_admin}', '{}', TRUE, 5000,
'Register a camera for the caller''s tenant.'),

('/api/v1/cameras/{id}', 'PUT', 'camera_service', 'UPDATE', 'camera_configurations', 'public',
$sql$UPDATE camera_configurations c SET
    camera_name          = COALESCE($3, c.camera_name),
    camera_type          = COALESCE($4, c.camera_type),
    stream_url           = COALESCE($5, c.stream_url),
    location             = COALESCE($6, c.location),
    resolution_width     = COALESCE($7, c.resolution_width),
    resolution_height    = COALESCE($8, c.resolution_height),
    frame_rate           = COALESCE($9, c.frame_rate),
    confidence_threshold = COALESCE($10, c.confidence_threshold),
    ai_model_id          = COALESCE($11, c.ai_model_id),
    is_active            = COALESCE($12, c.is_active)
WHERE c.camera_id = $1
  AND c.tenant_id = $2
RETURNING c.camera_id, c.camera_name, c.camera_type, c.stream_url, c.location,
          c.resolution_width, c.resolution_height, c.frame_rate, c.confidence_threshold,
          c.ai_model_id, c.is_active, c.created_at, c.updated_at$sql$,
'[{"name": "id", "in": "path", "type": "integer", "required": true},
  {"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "camera_name", "in": "body", "type": "string"},
  {"name": "camera_type", "in": "body", "type": "string"},
  {"name": "stream_url", "in": "body", "type": "string"},
  {"name": "location", "in": "body", "type": "string"},
  {"name": "resolution_width", "in": "body", "type": "integer"},
  {"name": "resolution_height", "in": "body", "type": "integer"},
  {"name": "frame_rate", "in": "body", "type": "integer"},
  {"name": "confidence_threshold", "in": "body", "type": "number"},
  {"name": "ai_model_id", "in": "body", "type": "integer"},
  {"name": "is_active", "in": "body", "type": "boolean"}]',
'{"shape": "object", "not_found": "CAMERA_NOT_FOUND"}',
FALSE, 0, 60, TRUE, '{camera_admin}', '{}', TRUE, 5000,
'Partial update: fields left out keep their value; "is_active": true reactivates.'),

('/api/v1/cameras/{id}', 'DELETE', 'camera_service', 'UPDATE', 'camera_configurations', 'public',
$sql$UPDATE camera_configurations c
SET is_active = FALSE
WHERE c.camera_id = $1
  AND c.tenant_id = $2
RETURNING c.camera_id, c.camera_name, c.is_active, c.updated_at$sql$,
'[{"name": "id", "in": "path", "type": "integer", "required": true},
  {"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true}]',
'{"shape": "object", "not_found": "CAMERA_NOT_FOUND"}',
FALSE, 0, 30, TRUE, '{camera_admin}', '{}', TRUE, 5000,
'Soft delete: sets is_active false (its streams become inactive); the data stays.'),

-- Camera health -------------------------------------------------------------

('/api/v1/cameras/{id}/health', 'GET', 'camera_service', 'SELECT', 'camera_health', 'public',
$sql$SELECT h.health_id, h.camera_id, h.status, h.fps, h.cpu_usage_percent, h.memory_usage_mb,
       h.temperature_celsius, h.network_latency_ms, h.uptime_seconds, h.error_message,
       h.checked_at
FROM camera_health h
WHERE camera_visible_to_tenant($1, $2)
  AND h.camera_id = $1
  AND ($3::text IS NULL OR h.status = $3)
ORDER BY h.checked_at DESC, h.health_id DESC$sql$,
'[{"name": "id", "in": "path", "type": "integer", "required": true},
  {"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "status", "in": "query", "type": "string",
   "description": "only reports with this status (online, offline, degraded, error, maintenance)"}]',
'{"shape": "list", "paginate": {"limit": 20, "max_limit": 500}}',
TRUE, 5, 600, TRUE, '{}', '{}', TRUE, 5000,
'Health reports of one camera, newest first.'),

('/api/v1/cameras/{id}/health', 'POST', 'camera_service', 'INSERT', 'camera_health', 'public',
$sql$INSERT INTO camera_health (
    camera_id, status, fps, cpu_usage_percent, memory_usage_mb, temperature_celsius,
    network_latency_ms, uptime_seconds, error_message, checked_at)
SELECT c.camera_id, $3::text, $4::numeric, $5::numeric, $6::numeric, $7::numeric,
       $8::integer, $9::bigint, $10::text, COALESCE($11::timestamptz, now())
FROM camera_configurations c
WHERE c.camera_id = $1
  AND c.tenant_id = $2
RETURNING health_id, camera_id, status, fps, cpu_usage_percent, memory_usage_mb,
          temperature_celsius, network_latency_ms, uptime_seconds, error_message, checked_at$sql$,
'[{"name": "id", "in": "path", "type": "integer", "required": true},
  {"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "status", "in": "body", "type": "string", "required": true},
  {"name": "fps", "in": "body", "type": "number"},
  {"name": "cpu_usage_percent", "in": "body", "type": "number"},
  {"name": "memory_usage_mb", "in": "body", "type": "number"},
  {"name": "temperature_celsius", "in": "body", "type": "number"},
  {"name": "network_latency_ms", "in": "body", "type": "integer"},
  {"name": "uptime_seconds", "in": "body", "type": "integer"},
  {"name": "error_message", "in": "body", "type": "string"},
  {"name": "checked_at", "in": "body", "type": "timestamp"}]',
'{"shape": "object", "not_found": "CAMERA_NOT_FOUND", "status": 201}',
FALSE, 0, 1200, TRUE, '{camera_admin,operator}', '{}', TRUE, 5000,
'Record a health report (accepted for inactive cameras too: they may report offline).'),

-- Stream management ---------------------------------------------------------

('/api/v1/cameras/{id}/streams', 'GET', 'camera_service', 'SELECT', 'video_streams', 'public',
$sql$SELECT s.stream_id, s.camera_id, s.stream_type, s.protocol, s.stream_url, s.codec,
       s.resolution_width, s.resolution_height, s.frame_rate, s.bitrate_kbps, s.status,
       s.created_at, s.updated_at
FROM video_streams s
WHERE camera_visible_to_tenant($1, $2)
  AND s.camera_id = $1
ORDER BY s.created_at, s.stream_id$sql$,
'[{"name": "id", "in": "path", "type": "integer", "required": true},
  {"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true}]',
'{"shape": "list", "paginate": {"limit": 50, "max_limit": 200}}',
TRUE, 30, 600, TRUE, '{}', '{}', TRUE, 5000,
'Video streams of one camera, oldest first.'),

('/api/v1/cameras/{id}/streams/{stream_id}', 'GET', 'camera_service', 'SELECT', 'video_streams',
 'public',
$sql$SELECT s.stream_id, s.camera_id, s.stream_type, s.protocol, s.stream_url, s.codec,
       s.resolution_width, s.resolution_height, s.frame_rate, s.bitrate_kbps, s.status,
       s.created_at, s.updated_at
FROM video_streams s
WHERE camera_visible_to_tenant($1, $2)
  AND s.camera_id = $1
  AND s.stream_id = $3$sql$,
'[{"name": "id", "in": "path", "type": "integer", "required": true},
  {"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "stream_id", "in": "path", "type": "uuid", "required": true}]',
'{"shape": "object", "not_found": "STREAM_NOT_FOUND"}',
TRUE, 30, 600, TRUE, '{}', '{}', TRUE, 5000,
'One video stream of one camera.'),

('/api/v1/cameras/{id}/streams', 'POST', 'camera_service', 'INSERT', 'video_streams', 'public',
$sql$INSERT INTO video_streams (
    stream_id, camera_id, stream_type, protocol, stream_url, codec,
    resolution_width, resolution_height, frame_rate, bitrate_kbps, status)
SELECT COALESCE($3::uuid, gen_random_uuid()), c.camera_id, $4::text,
       COALESCE($5::text, lower(split_part($6::text, '://', 1))), $6::text, $7::text,
       $8::integer, $9::integer, $10::integer, $11::integer, $12::text
FROM camera_configurations c
WHERE c.camera_id = $1
  AND c.tenant_id = $2
RETURNING stream_id, camera_id, stream_type, protocol, stream_url, codec,
          resolution_width, resolution_height, frame_rate, bitrate_kbps, status,
          created_at, updated_at$sql$,
'[{"name": "id", "in": "path", "type": "integer", "required": true},
  {"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "stream_id", "in": "body", "type": "uuid"},
  {"name": "stream_type", "in": "body", "type": "string", "default": "main"},
  {"name": "protocol", "in": "body", "type": "string"},
  {"name": "stream_url", "in": "body", "type": "string", "required": true},
  {"name": "codec", "in": "body", "type": "string"},
  {"name": "resolution_width", "in": "body", "type": "integer"},
  {"name": "resolution_height", "in": "body", "type": "integer"},
  {"name": "frame_rate", "in": "body", "type": "integer"},
  {"name": "bitrate_kbps", "in": "body", "type": "integer"},
  {"name": "status", "in": "body", "type": "string", "default": "active"}]',
'{"shape": "object", "not_found": "CAMERA_NOT_FOUND", "status": 201}',
FALSE, 0, 60, TRUE, '{camera_admin}', '{}', TRUE, 5000,
'Add a stream to an active camera; stream_id is generated when left out, protocol is taken from the URL.'),

-- Detection results ---------------------------------------------------------

('/api/v1/cameras/{id}/detections', 'GET', 'detection_service', 'SELECT', 'person_detections',
 'public',
$sql$SELECT d.detection_id, d.camera_id, d.frame_timestamp, d.track_id, d.confidence_score,
       d.bbox_x, d.bbox_y, d.bbox_width, d.bbox_height, d.object_attributes, d.created_at
FROM person_detections d
WHERE camera_visible_to_tenant($1, $3)
  AND d.camera_id = $1
  AND ($2::timestamptz IS NULL OR d.frame_timestamp > $2)
  AND ($4::numeric IS NULL OR d.confidence_score >= $4)
ORDER BY d.frame_timestamp DESC, d.id DESC$sql$,
'[{"name": "id", "in": "path", "type": "integer", "required": true},
  {"name": "since", "in": "query", "type": "timestamp",
   "description": "only detections after this instant (ISO 8601); all when left out"},
  {"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "min_confidence", "in": "query", "type": "number",
   "description": "only detections with at least this confidence score"}]',
'{"shape": "list", "paginate": {"limit": 100, "max_limit": 1000}}',
TRUE, 5, 1200, TRUE, '{}', '{}', TRUE, 5000,
'Detections of one camera, newest first; ?since= and ?min_confidence= filter.'),

('/api/v1/cameras/{id}/detections/{detection_id}', 'GET', 'detection_service', 'SELECT',
 'person_detections', 'public',
$sql$SELECT d.detection_id, d.camera_id, d.frame_timestamp, d.track_id, d.confidence_score,
       d.bbox_x, d.bbox_y, d.bbox_width, d.bbox_height, d.object_attributes, d.created_at
FROM person_detections d
WHERE camera_visible_to_tenant($1, $2)
  AND d.camera_id = $1
  AND d.detection_id = $3$sql$,
'[{"name": "id", "in": "path", "type": "integer", "required": true},
  {"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "detection_id", "in": "path", "type": "string", "required": true}]',
'{"shape": "object", "not_found": "DETECTION_NOT_FOUND"}',
TRUE, 60, 600, TRUE, '{}', '{}', TRUE, 5000,
'One detection of one camera, by the detector''s detection_id.'),

('/api/v1/cameras/{id}/detections', 'POST', 'detection_service', 'INSERT', 'person_detections',
 'public',
$sql$INSERT INTO person_detections (
    camera_id, detection_id, frame_timestamp, track_id, confidence_score,
    bbox_x, bbox_y, bbox_width, bbox_height, object_attributes)
SELECT c.camera_id, $3::text, COALESCE($4::timestamptz, now()), $5::integer, $6::numeric,
       $7::integer, $8::integer, $9::integer, $10::integer, COALESCE($11::jsonb, '{}'::jsonb)
FROM camera_configurations c
WHERE c.camera_id = $1
  AND c.tenant_id = $2
RETURNING detection_id, camera_id, frame_timestamp, track_id, confidence_score,
          bbox_x, bbox_y, bbox_width, bbox_height, object_attributes, created_at$sql$,
'[{"name": "id", "in": "path", "type": "integer", "required": true},
  {"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "detection_id", "in": "body", "type": "string", "required": true},
  {"name": "frame_timestamp", "in": "body", "type": "timestamp"},
  {"name": "track_id", "in": "body", "type": "integer"},
  {"name": "confidence_score", "in": "body", "type": "number", "required": true},
  {"name": "bbox_x", "in": "body", "type": "integer", "required": true},
  {"name": "bbox_y", "in": "body", "type": "integer", "required": true},
  {"name": "bbox_width", "in": "body", "type": "integer", "required": true},
  {"name": "bbox_height", "in": "body", "type": "integer", "required": true},
  {"name": "object_attributes", "in": "body", "type": "json"}]',
'{"shape": "object", "not_found": "CAMERA_NOT_FOUND", "status": 201}',
FALSE, 0, 3000, TRUE, '{camera_admin,operator}', '{}', TRUE, 5000,
'Record one person detection of an active camera; detection_id is unique per camera.'),

-- Counting results ----------------------------------------------------------

('/api/v1/cameras/{id}/counting', 'GET', 'counting_service', 'SELECT', 'counting_results',
 'public',
$sql$SELECT r.camera_id, r.result_timestamp, r.period_end, r.total_in, r.total_out,
       r.net_count, r.current_occupancy, r.event_count, r.last_event_at, r.updated_at
FROM counting_results r
WHERE camera_visible_to_tenant($1, $3)
  AND r.camera_id = $1
ORDER BY r.result_timestamp DESC
LIMIT LEAST(GREATEST($2::integer, 1), 1000)$sql$,
'[{"name": "id", "in": "path", "type": "integer", "required": true},
  {"name": "limit", "in": "query", "type": "integer", "default": 10,
   "description": "how many hourly buckets, newest first (1..1000)"},
  {"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true}]',
'{"shape": "list"}',
FALSE, 0, 600, TRUE, '{}', '{}', TRUE, 5000,
'Hourly counting results (in, out, occupancy), newest first. Not cached: POST /counting '
'writes counting_events and a trigger updates counting_results, so a cached answer would '
'not be invalidated by that write.'),

('/api/v1/cameras/{id}/counting', 'POST', 'counting_service', 'INSERT', 'counting_events',
 'public',
$sql$INSERT INTO counting_events (
    camera_id, event_type, count, event_timestamp, zone_id, track_id, confidence_score, metadata)
SELECT c.camera_id, $3::text, $4::integer, COALESCE($5::timestamptz, now()), $6::text,
       $7::integer, $8::numeric, COALESCE($9::jsonb, '{}'::jsonb)
FROM camera_configurations c
WHERE c.camera_id = $1
  AND c.tenant_id = $2
RETURNING event_id, camera_id, event_type, count, event_timestamp, zone_id, track_id,
          confidence_score, metadata, created_at$sql$,
'[{"name": "id", "in": "path", "type": "integer", "required": true},
  {"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true},
  {"name": "event_type", "in": "body", "type": "string", "required": true},
  {"name": "count", "in": "body", "type": "integer", "default": 1},
  {"name": "event_timestamp", "in": "body", "type": "timestamp"},
  {"name": "zone_id", "in": "body", "type": "string"},
  {"name": "track_id", "in": "body", "type": "integer"},
  {"name": "confidence_score", "in": "body", "type": "number"},
  {"name": "metadata", "in": "body", "type": "json"}]',
'{"shape": "object", "not_found": "CAMERA_NOT_FOUND", "status": 201}',
FALSE, 0, 3000, TRUE, '{camera_admin,operator}', '{}', TRUE, 5000,
'Record an entry or exit of count people at an active camera; counting_results follows at once.'),

-- Analytics -----------------------------------------------------------------

('/api/v1/cameras/{id}/analytics', 'GET', 'analytics_service', 'SELECT', 'realtime_analytics',
 'public',
$sql$SELECT a.camera_id, a.metric_timestamp, a.current_count, a.occupancy, a.people_in,
       a.people_out, a.avg_dwell_time_seconds, a.crowd_density, a.processing_fps,
       a.processing_latency_ms, a.alert_level
FROM realtime_analytics a
WHERE camera_visible_to_tenant($1, $3)
  AND a.camera_id = $1
ORDER BY a.metric_timestamp DESC
LIMIT LEAST(GREATEST($2::integer, 1), 1440)$sql$,
'[{"name": "id", "in": "path", "type": "integer", "required": true},
  {"name": "limit", "in": "query", "type": "integer", "default": 60,
   "description": "how many per-minute samples, newest first (1..1440)"},
  {"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true}]',
'{"shape": "list"}',
TRUE, 5, 1200, TRUE, '{}', '{}', TRUE, 5000,
'Realtime analytics samples of one camera, newest first.'),

('/api/v1/cameras/{id}/analytics/historical', 'GET', 'analytics_service', 'SELECT',
 'historical_analytics', 'public',
$sql$SELECT h.camera_id, h.data_date, h.total_entries, h.total_exits, h.unique_visitors,
       h.peak_occupancy, h.peak_hour, h.avg_occupancy, h.avg_dwell_time_seconds
FROM historical_analytics h
WHERE camera_visible_to_tenant($1, $4)
  AND camera_analytics_range_valid($2, $3)
  AND h.camera_id = $1
  AND h.data_date BETWEEN COALESCE($2, COALESCE($3, current_date) - 30)
                      AND COALESCE($3, current_date)
ORDER BY h.data_date$sql$,
'[{"name": "id", "in": "path", "type": "integer", "required": true},
  {"name": "from", "in": "query", "type": "date",
   "description": "first day (YYYY-MM-DD); default 30 days before to"},
  {"name": "to", "in": "query", "type": "date",
   "description": "last day (YYYY-MM-DD); default today"},
  {"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer", "required": true}]',
'{"shape": "list"}',
TRUE, 300, 300, TRUE, '{}', '{}', TRUE, 10000,
'Daily analytics of one camera between from and to (inclusive, at most 366 days), oldest first.')

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

-- ---------------------------------------------------------------------------
-- Validation schemas (draft 2020-12). Fixed against the guide: they reference
-- their mapping by path and method (not ids 3, 4, 9); camera_update checks
-- names like camera_create does and needs at least one field; stream URLs
-- must use a protocol the stream_url sanitization rule allows (the "uri"
-- format alone is only an annotation unless a format checker is installed);
-- every object is closed (additionalProperties false). Camera names accept
-- letters of any script (\w is Unicode-aware in the engine's regex engine),
-- so Vietnamese names such as "Cổng chính" pass. In these SQL literals a
-- backslash is literal (standard_conforming_strings), so JSON "\\w" is the
-- regex \w.
-- ---------------------------------------------------------------------------

INSERT INTO api_validation_schemas AS s
    (endpoint_mapping_id, schema_name, validation_schema, validation_rules,
     strict_mode, allow_unknown_fields, sanitize_input, applies_to)
VALUES
(api_mapping_id('/api/v1/cameras', 'POST'), 'camera_create', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["camera_name", "camera_type", "stream_url"],
  "additionalProperties": false,
  "properties": {
    "camera_name": {"type": "string", "minLength": 1, "maxLength": 200,
                    "pattern": "^[\\w\\s\\-]+$"},
    "camera_type": {"type": "string", "enum": ["IP", "USB", "RTSP", "HTTP", "WebRTC"]},
    "stream_url": {"type": "string", "format": "uri", "maxLength": 500,
                   "pattern": "^(rtsp|https?)://[^\\s/?#]+\\S*$"},
    "location": {"type": "string", "maxLength": 200},
    "resolution_width": {"type": "integer", "minimum": 320, "maximum": 7680},
    "resolution_height": {"type": "integer", "minimum": 240, "maximum": 4320},
    "frame_rate": {"type": "integer", "minimum": 1, "maximum": 120},
    "confidence_threshold": {"type": "number", "minimum": 0.1, "maximum": 1.0},
    "ai_model_id": {"type": "integer", "minimum": 1}
  }
}', NULL, TRUE, FALSE, TRUE, 'body'),

(api_mapping_id('/api/v1/cameras/{id}', 'PUT'), 'camera_update', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "minProperties": 1,
  "additionalProperties": false,
  "properties": {
    "camera_name": {"type": "string", "minLength": 1, "maxLength": 200,
                    "pattern": "^[\\w\\s\\-]+$"},
    "camera_type": {"type": "string", "enum": ["IP", "USB", "RTSP", "HTTP", "WebRTC"]},
    "stream_url": {"type": "string", "format": "uri", "maxLength": 500,
                   "pattern": "^(rtsp|https?)://[^\\s/?#]+\\S*$"},
    "location": {"type": "string", "maxLength": 200},
    "resolution_width": {"type": "integer", "minimum": 320, "maximum": 7680},
    "resolution_height": {"type": "integer", "minimum": 240, "maximum": 4320},
    "frame_rate": {"type": "integer", "minimum": 1, "maximum": 120},
    "confidence_threshold": {"type": "number", "minimum": 0.1, "maximum": 1.0},
    "is_active": {"type": "boolean"},
    "ai_model_id": {"type": "integer", "minimum": 1}
  }
}', NULL, TRUE, FALSE, TRUE, 'body'),

(api_mapping_id('/api/v1/cameras/{id}/health', 'POST'), 'camera_health_create', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["status"],
  "additionalProperties": false,
  "properties": {
    "status": {"type": "string", "enum": ["online", "offline", "degraded", "error", "maintenance"]},
    "fps": {"type": "number", "minimum": 0, "maximum": 240},
    "cpu_usage_percent": {"type": "number", "minimum": 0, "maximum": 100},
    "memory_usage_mb": {"type": "number", "minimum": 0, "maximum": 1048576},
    "temperature_celsius": {"type": "number", "minimum": -50, "maximum": 150},
    "network_latency_ms": {"type": "integer", "minimum": 0, "maximum": 600000},
    "uptime_seconds": {"type": "integer", "minimum": 0},
    "error_message": {"type": "string", "maxLength": 1000},
    "checked_at": {"type": "string", "format": "date-time"}
  }
}', NULL, TRUE, FALSE, TRUE, 'body'),

(api_mapping_id('/api/v1/cameras/{id}/streams', 'POST'), 'video_stream_create', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["stream_url"],
  "additionalProperties": false,
  "properties": {
    "stream_id": {"type": "string", "format": "uuid",
                  "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"},
    "stream_type": {"type": "string", "enum": ["main", "sub", "analytics", "recording"]},
    "protocol": {"type": "string", "enum": ["rtsp", "rtsps", "http", "https", "webrtc", "rtmp"]},
    "stream_url": {"type": "string", "format": "uri", "maxLength": 500,
                   "pattern": "^(rtsp|https?)://[^\\s/?#]+\\S*$"},
    "codec": {"type": "string", "enum": ["H.264", "H.265", "MJPEG", "VP8", "VP9", "AV1"]},
    "resolution_width": {"type": "integer", "minimum": 320, "maximum": 7680},
    "resolution_height": {"type": "integer", "minimum": 240, "maximum": 4320},
    "frame_rate": {"type": "integer", "minimum": 1, "maximum": 120},
    "bitrate_kbps": {"type": "integer", "minimum": 1, "maximum": 1000000},
    "status": {"type": "string", "enum": ["active", "inactive", "connecting", "error"]}
  }
}', NULL, TRUE, FALSE, TRUE, 'body'),

(api_mapping_id('/api/v1/cameras/{id}/detections', 'POST'), 'detection_create', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["detection_id", "confidence_score", "bbox_x", "bbox_y", "bbox_width", "bbox_height"],
  "additionalProperties": false,
  "properties": {
    "detection_id": {"type": "string", "minLength": 1, "maxLength": 100,
                     "pattern": "^[a-zA-Z0-9\\-_]+$"},
    "frame_timestamp": {"type": "string", "format": "date-time"},
    "track_id": {"type": "integer", "minimum": 0},
    "confidence_score": {"type": "number", "minimum": 0.0, "maximum": 1.0},
    "bbox_x": {"type": "integer", "minimum": 0},
    "bbox_y": {"type": "integer", "minimum": 0},
    "bbox_width": {"type": "integer", "minimum": 1},
    "bbox_height": {"type": "integer", "minimum": 1},
    "object_attributes": {"type": "object", "maxProperties": 50, "additionalProperties": true}
  }
}', NULL, TRUE, FALSE, TRUE, 'body'),

(api_mapping_id('/api/v1/cameras/{id}/counting', 'POST'), 'counting_event_create', '{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["event_type"],
  "additionalProperties": false,
  "properties": {
    "event_type": {"type": "string", "enum": ["entry", "exit"]},
    "count": {"type": "integer", "minimum": 1, "maximum": 1000},
    "event_timestamp": {"type": "string", "format": "date-time"},
    "zone_id": {"type": "string", "minLength": 1, "maxLength": 100,
                "pattern": "^[a-zA-Z0-9\\-_.:]+$"},
    "track_id": {"type": "integer", "minimum": 0},
    "confidence_score": {"type": "number", "minimum": 0.0, "maximum": 1.0},
    "metadata": {"type": "object", "maxProperties": 50, "additionalProperties": true}
  }
}', NULL, TRUE, FALSE, TRUE, 'body')

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
-- Sanitization rules: the guide's five (for every endpoint, endpoint_mapping_id
-- NULL) and a zone_id trim scoped to POST /counting. No unique key exists, so
-- a rule is identified by (field_name, sanitization_type, endpoint): updated in
-- place when it differs, inserted when absent. escape_sql is kept as the guide
-- wrote it; the engine ignores it (values only reach SQL as bound parameters).
-- ---------------------------------------------------------------------------

WITH wanted (field_name, field_type, sanitization_type, sanitization_config, validation_pattern,
             min_length, max_length, min_value, max_value, error_message, endpoint_mapping_id) AS (
    VALUES
    ('camera_name', 'string', 'trim',
     '{"remove_extra_spaces": true, "to_lowercase": false}'::jsonb,
     NULL::varchar, 1, 200, NULL::numeric, NULL::numeric,
     'camera_name must be 1 to 200 characters after trimming', NULL::integer),
    ('stream_url', 'string', 'validate',
     '{"check_url_format": true, "allowed_protocols": ["rtsp", "http", "https"]}',
     NULL, NULL, 500, NULL, NULL,
     'stream_url must be an absolute rtsp://, http:// or https:// URL', NULL),
    ('confidence_score', 'float', 'validate',
     '{"min": 0.0, "max": 1.0, "precision": 2}',
     NULL, NULL, NULL, 0, 1,
     'confidence_score must be a number between 0 and 1', NULL),
    ('bbox_coordinates', 'json', 'validate',
     '{"required_fields": ["x", "y", "width", "height"], "non_negative": true}',
     NULL, NULL, NULL, NULL, NULL,
     'bbox_coordinates needs non-negative x, y, width and height', NULL),
    ('user_input', 'string', 'escape',
     '{"escape_html": true, "escape_sql": true}',
     NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    ('zone_id', 'string', 'trim',
     '{"remove_extra_spaces": true}',
     NULL, 1, 100, NULL, NULL,
     'zone_id must be 1 to 100 characters after trimming',
     api_mapping_id('/api/v1/cameras/{id}/counting', 'POST'))
),
updated AS (
    UPDATE data_sanitization_rules r
    SET field_type          = w.field_type,
        sanitization_config = w.sanitization_config,
        validation_pattern  = w.validation_pattern,
        min_length          = w.min_length,
        max_length          = w.max_length,
        min_value           = w.min_value,
        max_value           = w.max_value,
        error_message       = w.error_message,
        is_active           = TRUE
    FROM wanted w
    WHERE r.field_name = w.field_name
      AND r.sanitization_type = w.sanitization_type
      AND r.endpoint_mapping_id IS NOT DISTINCT FROM w.endpoint_mapping_id
      AND (r.field_type, r.sanitization_config, r.validation_pattern, r.min_length,
           r.max_length, r.min_value, r.max_value, r.error_message, r.is_active)
          IS DISTINCT FROM
          (w.field_type, w.sanitization_config, w.validation_pattern, w.min_length,
           w.max_length, w.min_value, w.max_value, w.error_message, TRUE)
    RETURNING r.id
)
INSERT INTO data_sanitization_rules
    (field_name, field_type, sanitization_type, sanitization_config, validation_pattern,
     min_length, max_length, min_value, max_value, error_message, endpoint_mapping_id, is_active)
SELECT w.field_name, w.field_type, w.sanitization_type, w.sanitization_config,
       w.validation_pattern, w.min_length, w.max_length, w.min_value, w.max_value,
       w.error_message, w.endpoint_mapping_id, TRUE
FROM wanted w
WHERE NOT EXISTS (
    SELECT 1 FROM data_sanitization_rules r
    WHERE r.field_name = w.field_name
      AND r.sanitization_type = w.sanitization_type
      AND r.endpoint_mapping_id IS NOT DISTINCT FROM w.endpoint_mapping_id
);
