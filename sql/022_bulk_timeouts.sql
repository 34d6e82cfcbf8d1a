-- 022: the time a bulk import's body may take (issue 12).
--
-- REQUEST_TIMEOUT: the request body stopped arriving: a bulk import's body paused longer
-- than ENGINE_BULK_IDLE_S between two chunks, or had not all arrived within
-- ENGINE_STREAM_MAX_SECONDS. Nothing was written and the database connection was given
-- back; the client may send the whole body again (faster).
-- ON CONFLICT DO NOTHING keeps wording an admin already wrote.
-- localized_messages: "vi" Vietnamese, "ru" Russian.

INSERT INTO api_error_codes
    (error_code, http_status_code, error_category, error_message, suggested_action, localized_messages)
VALUES
('REQUEST_TIMEOUT', 408, 'validation',
 'The request body did not arrive in time',
 'Send the whole body again without long pauses; ENGINE_BULK_IDLE_S bounds a pause between chunks and ENGINE_STREAM_MAX_SECONDS the whole body.',
 '{"vi": "Nội dung yêu cầu không đến kịp thời hạn", "ru": "Тело запроса не поступило вовремя"}')
ON CONFLICT (error_code) DO NOTHING;

INSERT INTO engine_required_error_codes (error_code)
VALUES ('REQUEST_TIMEOUT')
ON CONFLICT DO NOTHING;
