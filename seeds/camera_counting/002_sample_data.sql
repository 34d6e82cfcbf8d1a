-- camera_counting 002: sample data for two tenants.
--
--   tenant 1 (a shopping mall):  cameras 1 Main Entrance, 2 Parking North Gate,
--                                3 Food Court, 4 Old Lobby Camera (soft-deleted)
--   tenant 2 (a retail store):   cameras 5 Store Front, 6 Checkout Area,
--                                7 Warehouse Dock (soft-deleted)
--
-- Every active camera has health reports, streams, detections, counting
-- events (counting_results is filled by the trigger from them), realtime and
-- historical analytics. Times are relative to when the seed is applied
-- (now(), current_date), so "the last hour" always has data on a fresh seed.
--
-- Idempotent: rows carry explicit keys and are inserted only when the key is
-- absent (WHERE NOT EXISTS, so BEFORE INSERT triggers never see a row that
-- already exists) with ON CONFLICT DO NOTHING as a backstop. Rows of tables
-- that only accept data for active cameras are inserted only for cameras that
-- are still active, so re-applying the seed after a camera was soft-deleted
-- through the API still works.

-- ---------------------------------------------------------------------------
-- AI models
-- ---------------------------------------------------------------------------

INSERT INTO ai_detection_models
    (model_id, model_name, model_version, framework, input_width, input_height,
     default_confidence_threshold, is_active)
SELECT v.*
FROM (VALUES
    (1, 'yolov8n-person', '8.1.0', 'ultralytics', 640, 640, 0.50, TRUE),
    (2, 'yolov8s-person', '8.1.0', 'ultralytics', 640, 640, 0.45, TRUE),
    (3, 'rtdetr-l-person', '1.0.0', 'paddle', 640, 640, 0.55, TRUE),
    (4, 'yolov5s-person', '7.0.0', 'ultralytics', 640, 640, 0.50, FALSE)
) AS v (model_id, model_name, model_version, framework, input_width, input_height,
        default_confidence_threshold, is_active)
WHERE NOT EXISTS (SELECT 1 FROM ai_detection_models m WHERE m.model_id = v.model_id)
ON CONFLICT DO NOTHING;

-- ---------------------------------------------------------------------------
-- Cameras
-- ---------------------------------------------------------------------------

INSERT INTO camera_configurations
    (camera_id, tenant_id, camera_name, camera_type, stream_url, location,
     resolution_width, resolution_height, frame_rate, confidence_threshold, ai_model_id,
     is_active, created_at)
SELECT v.camera_id, v.tenant_id, v.camera_name, v.camera_type, v.stream_url, v.location,
       v.resolution_width, v.resolution_height, v.frame_rate, v.confidence_threshold,
       v.ai_model_id, v.is_active, now() - v.age
FROM (VALUES
    (1::BIGINT, 1, 'Main Entrance', 'IP', 'rtsp://10.10.1.11:554/stream1',
     'Building A - ground floor lobby', 1920, 1080, 25, 0.50, 1, TRUE, INTERVAL '120 days'),
    (2, 1, 'Parking North Gate', 'RTSP', 'rtsp://10.10.1.12:554/live',
     'Parking lot - north gate', 2560, 1440, 20, 0.45, 2, TRUE, INTERVAL '90 days'),
    (3, 1, 'Food Court', 'HTTP', 'http://10.10.1.13/mjpeg',
     'Building A - level 3', 1280, 720, 15, 0.60, 1, TRUE, INTERVAL '60 days'),
    (4, 1, 'Old Lobby Camera', 'USB', 'http://edge-01.mall.local:8080/usb/0',
     'Building A - ground floor lobby (removed)', 640, 480, 15, 0.50, NULL, FALSE, INTERVAL '400 days'),
    (5, 2, 'Store Front', 'IP', 'rtsp://192.168.50.21:554/h264',
     'Store 12 - entrance', 1920, 1080, 30, 0.50, 1, TRUE, INTERVAL '45 days'),
    (6, 2, 'Checkout Area', 'WebRTC', 'https://cam.store12.example/webrtc/checkout',
     'Store 12 - checkout', 1280, 720, 25, 0.55, 3, TRUE, INTERVAL '30 days'),
    (7, 2, 'Warehouse Dock', 'RTSP', 'rtsp://192.168.50.23:554/dock',
     'Store 12 - warehouse (decommissioned)', 1920, 1080, 10, 0.40, 2, FALSE, INTERVAL '200 days')
) AS v (camera_id, tenant_id, camera_name, camera_type, stream_url, location,
        resolution_width, resolution_height, frame_rate, confidence_threshold, ai_model_id,
        is_active, age)
WHERE NOT EXISTS (SELECT 1 FROM camera_configurations c WHERE c.camera_id = v.camera_id)
ON CONFLICT DO NOTHING;

-- ---------------------------------------------------------------------------
-- Health: every 5 minutes for the last hour; camera 2 degraded lately;
-- the soft-deleted cameras went offline long ago.
-- ---------------------------------------------------------------------------

INSERT INTO camera_health
    (health_id, camera_id, status, fps, cpu_usage_percent, memory_usage_mb,
     temperature_celsius, network_latency_ms, uptime_seconds, error_message, checked_at)
SELECT h.health_id, h.camera_id, h.status, h.fps, h.cpu, h.mem, h.temp, h.latency,
       h.uptime, h.error_message, h.checked_at
FROM (
    SELECT c.camera_id * 100 + n AS health_id,
           c.camera_id,
           CASE WHEN c.camera_id = 2 AND n < 3 THEN 'degraded' ELSE 'online' END AS status,
           (c.frame_rate - CASE WHEN c.camera_id = 2 AND n < 3 THEN 8 ELSE n % 2 END)::NUMERIC AS fps,
           (20 + (c.camera_id * 7 + n * 3) % 45)::NUMERIC AS cpu,
           (512 + c.camera_id * 64 + n * 4)::NUMERIC AS mem,
           (38 + (c.camera_id + n) % 9)::NUMERIC AS temp,
           (8 + (c.camera_id * 11 + n * 5) % 40)
             + CASE WHEN c.camera_id = 2 AND n < 3 THEN 250 ELSE 0 END AS latency,
           (86400 * 3 - n * 300)::BIGINT AS uptime,
           CASE WHEN c.camera_id = 2 AND n < 3 THEN 'Packet loss above 5% on the uplink' END
             AS error_message,
           now() - make_interval(mins => 5 * n) AS checked_at
    FROM camera_configurations c
    CROSS JOIN generate_series(0, 11) AS n
    WHERE c.camera_id IN (1, 2, 3, 5, 6)
    UNION ALL
    SELECT c.camera_id * 100 + n, c.camera_id, 'offline', 0, NULL, NULL, NULL, NULL, 0,
           'Camera decommissioned', now() - make_interval(days => 30 + n)
    FROM camera_configurations c
    CROSS JOIN generate_series(0, 2) AS n
    WHERE c.camera_id IN (4, 7)
) AS h
WHERE NOT EXISTS (SELECT 1 FROM camera_health x WHERE x.health_id = h.health_id)
ON CONFLICT DO NOTHING;

-- ---------------------------------------------------------------------------
-- Streams
-- ---------------------------------------------------------------------------

INSERT INTO video_streams
    (stream_id, camera_id, stream_type, protocol, stream_url, codec,
     resolution_width, resolution_height, frame_rate, bitrate_kbps, status, created_at)
SELECT v.stream_id, v.camera_id, v.stream_type, v.protocol, v.stream_url, v.codec,
       v.resolution_width, v.resolution_height, v.frame_rate, v.bitrate_kbps, v.status,
       now() - v.age
FROM (VALUES
    ('6f1c0000-0000-4000-8000-000000000101'::UUID, 1::BIGINT, 'main', 'rtsp',
     'rtsp://10.10.1.11:554/stream1', 'H.264', 1920, 1080, 25, 4096, 'active', INTERVAL '120 days'),
    ('6f1c0000-0000-4000-8000-000000000102', 1, 'sub', 'rtsp',
     'rtsp://10.10.1.11:554/stream2', 'H.264', 640, 360, 15, 512, 'active', INTERVAL '120 days'),
    ('6f1c0000-0000-4000-8000-000000000201', 2, 'main', 'rtsp',
     'rtsp://10.10.1.12:554/live', 'H.265', 2560, 1440, 20, 6144, 'active', INTERVAL '90 days'),
    ('6f1c0000-0000-4000-8000-000000000301', 3, 'main', 'http',
     'http://10.10.1.13/mjpeg', 'MJPEG', 1280, 720, 15, 8192, 'active', INTERVAL '60 days'),
    ('6f1c0000-0000-4000-8000-000000000501', 5, 'main', 'rtsp',
     'rtsp://192.168.50.21:554/h264', 'H.264', 1920, 1080, 30, 4096, 'active', INTERVAL '45 days'),
    ('6f1c0000-0000-4000-8000-000000000601', 6, 'main', 'webrtc',
     'https://cam.store12.example/webrtc/checkout', 'VP9', 1280, 720, 25, 2048, 'active',
     INTERVAL '30 days'),
    ('6f1c0000-0000-4000-8000-000000000602', 6, 'analytics', 'https',
     'https://cam.store12.example/analytics/checkout', 'H.264', 640, 360, 10, 768, 'connecting',
     INTERVAL '2 days')
) AS v (stream_id, camera_id, stream_type, protocol, stream_url, codec,
        resolution_width, resolution_height, frame_rate, bitrate_kbps, status, age)
JOIN camera_configurations c ON c.camera_id = v.camera_id AND c.is_active
WHERE NOT EXISTS (SELECT 1 FROM video_streams s WHERE s.stream_id = v.stream_id)
ON CONFLICT DO NOTHING;

-- ---------------------------------------------------------------------------
-- Detections: one every 2 minutes over the last hour (fewer on some cameras)
-- ---------------------------------------------------------------------------

INSERT INTO person_detections
    (id, detection_id, camera_id, frame_timestamp, track_id, confidence_score,
     bbox_x, bbox_y, bbox_width, bbox_height, object_attributes)
SELECT d.id, d.detection_id, d.camera_id, d.frame_timestamp, d.track_id, d.confidence_score,
       d.bbox_x, d.bbox_y, d.bbox_width, d.bbox_height, d.object_attributes
FROM (
    SELECT c.camera_id * 1000 + n AS id,
           format('cam%s-det-%s', c.camera_id, lpad(n::TEXT, 4, '0')) AS detection_id,
           c.camera_id,
           now() - make_interval(mins => 2 * n) AS frame_timestamp,
           n / 3 AS track_id,
           round(0.55 + ((c.camera_id * 13 + n * 37) % 45) / 100.0, 3) AS confidence_score,
           (n * 53 + c.camera_id * 17) % (c.resolution_width - 200) AS bbox_x,
           (n * 29 + c.camera_id * 11) % (c.resolution_height - 400) AS bbox_y,
           80 + (n * 7) % 60 AS bbox_width,
           200 + (n * 13) % 120 AS bbox_height,
           jsonb_build_object(
               'age_group', (ARRAY['child', 'adult', 'adult', 'senior'])[1 + n % 4],
               'carrying_bag', n % 3 = 0,
               'direction', CASE WHEN n % 2 = 0 THEN 'in' ELSE 'out' END
           ) AS object_attributes
    FROM camera_configurations c
    CROSS JOIN LATERAL generate_series(
        0, CASE c.camera_id WHEN 1 THEN 29 WHEN 5 THEN 14 ELSE 9 END) AS n
    WHERE c.camera_id IN (1, 2, 3, 5, 6) AND c.is_active
) AS d
WHERE NOT EXISTS (SELECT 1 FROM person_detections x WHERE x.id = d.id)
ON CONFLICT DO NOTHING;

-- ---------------------------------------------------------------------------
-- Counting events: one every 10 minutes over the last hours; the trigger
-- turns them into counting_results.
-- ---------------------------------------------------------------------------

INSERT INTO counting_events
    (event_id, camera_id, event_type, count, event_timestamp, zone_id, track_id,
     confidence_score)
SELECT e.event_id, e.camera_id, e.event_type, e.count, e.event_timestamp, e.zone_id,
       e.track_id, e.confidence_score
FROM (
    SELECT c.camera_id * 1000 + n AS event_id,
           c.camera_id,
           CASE WHEN n % 3 = 0 THEN 'exit' ELSE 'entry' END AS event_type,
           1 + (n + c.camera_id) % 4 AS count,
           now() - make_interval(mins => 10 * n) AS event_timestamp,
           CASE WHEN n % 2 = 0 THEN 'line-a' ELSE 'line-b' END AS zone_id,
           100 + n AS track_id,
           round(0.70 + ((n * 17 + c.camera_id) % 30) / 100.0, 3) AS confidence_score
    FROM camera_configurations c
    CROSS JOIN LATERAL generate_series(
        0, CASE c.camera_id WHEN 1 THEN 29 WHEN 5 THEN 19 ELSE 7 END) AS n
    WHERE c.camera_id IN (1, 2, 3, 5, 6) AND c.is_active
) AS e
WHERE NOT EXISTS (SELECT 1 FROM counting_events x WHERE x.event_id = e.event_id)
ON CONFLICT DO NOTHING;

-- ---------------------------------------------------------------------------
-- Realtime analytics: one row a minute for the last hour
-- ---------------------------------------------------------------------------

INSERT INTO realtime_analytics
    (id, camera_id, metric_timestamp, current_count, occupancy, people_in, people_out,
     avg_dwell_time_seconds, crowd_density, processing_fps, processing_latency_ms, alert_level)
SELECT a.*
FROM (
    SELECT c.camera_id * 1000 + n AS id,
           c.camera_id,
           now() - make_interval(mins => n) AS metric_timestamp,
           (c.camera_id * 3 + n * 7) % 25 AS current_count,
           20 + (c.camera_id * 5 + n * 3) % 60 AS occupancy,
           (n * 5 + c.camera_id) % 6 AS people_in,
           (n * 3 + c.camera_id) % 5 AS people_out,
           (90 + (n * 13) % 240)::NUMERIC AS avg_dwell_time_seconds,
           round(((c.camera_id * 3 + n * 7) % 25) / 20.0, 3) AS crowd_density,
           (c.frame_rate - 0.5)::NUMERIC AS processing_fps,
           35 + (n * 11) % 40 AS processing_latency_ms,
           CASE WHEN (c.camera_id * 3 + n * 7) % 25 >= 22 THEN 'warning' ELSE 'normal' END
             AS alert_level
    FROM camera_configurations c
    CROSS JOIN generate_series(0, 59) AS n
    WHERE c.camera_id IN (1, 2, 3, 5, 6)
) AS a
WHERE NOT EXISTS (SELECT 1 FROM realtime_analytics x WHERE x.id = a.id)
ON CONFLICT DO NOTHING;

-- ---------------------------------------------------------------------------
-- Historical analytics: one row a day for the last 30 days (the soft-deleted
-- camera 4 only has older days, from before it was removed)
-- ---------------------------------------------------------------------------

INSERT INTO historical_analytics
    (id, camera_id, data_date, total_entries, total_exits, unique_visitors, peak_occupancy,
     peak_hour, avg_occupancy, avg_dwell_time_seconds)
SELECT h.*
FROM (
    SELECT c.camera_id * 1000 + n AS id,
           c.camera_id,
           current_date - n AS data_date,
           base.entries AS total_entries,
           base.entries - (n * 7 + c.camera_id) % 15 AS total_exits,
           (base.entries * 0.85)::INTEGER AS unique_visitors,
           40 + (n * 17 + c.camera_id * 23) % 120 AS peak_occupancy,
           (11 + (n + c.camera_id) % 9)::SMALLINT AS peak_hour,
           round((25 + (n * 13 + c.camera_id * 7) % 50)::NUMERIC, 2) AS avg_occupancy,
           round((240 + (n * 31 + c.camera_id * 5) % 600)::NUMERIC, 2) AS avg_dwell_time_seconds
    FROM camera_configurations c
    CROSS JOIN LATERAL generate_series(
        CASE WHEN c.camera_id = 4 THEN 40 ELSE 1 END,
        CASE WHEN c.camera_id = 4 THEN 45 ELSE 30 END) AS n
    CROSS JOIN LATERAL (
        SELECT 300 * (CASE c.tenant_id WHEN 1 THEN 3 ELSE 1 END)
               + (n * 97 + c.camera_id * 41) % 400
               + CASE WHEN extract(isodow FROM current_date - n) IN (6, 7) THEN 250 ELSE 0 END
               AS entries
    ) AS base
    WHERE c.camera_id IN (1, 2, 3, 4, 5, 6)
) AS h
WHERE NOT EXISTS (SELECT 1 FROM historical_analytics x WHERE x.id = h.id)
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
            ('camera_configurations', 'camera_id'),
            ('camera_health', 'health_id'),
            ('person_detections', 'id'),
            ('counting_events', 'event_id'),
            ('realtime_analytics', 'id'),
            ('historical_analytics', 'id')
        ) AS t (tbl, col)
    LOOP
        v_seq := pg_get_serial_sequence(r.tbl, r.col);
        EXECUTE format('SELECT max(%I) FROM %I', r.col, r.tbl) INTO v_max;
        EXECUTE format('SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM %s', v_seq)
            INTO v_last;
        IF v_max IS NOT NULL AND v_max > v_last THEN
            PERFORM setval(v_seq, v_max);
        END IF;
    END LOOP;
END;
$$;
