-- 008: the error code of a streamed export refused because enough are running.
--
-- ENGINE_STREAM_MAX_CONCURRENT bounds the exports one process runs at once (each
-- holds a read connection while its client reads); one more is refused with this
-- code and Retry-After, rather than blaming the database, which is fine.
-- ON CONFLICT DO NOTHING keeps a row an admin already wrote.

INSERT INTO api_error_codes
    (error_code, http_status_code, error_category, error_message, suggested_action, localized_messages)
VALUES
('TOO_MANY_EXPORTS', 503, 'server',
 'Too many exports are running; retry shortly',
 'Retry after the number of seconds in the Retry-After header.',
 '{"vi": "Có quá nhiều lượt xuất dữ liệu đang chạy; hãy thử lại sau ít phút", "ru": "Выполняется слишком много выгрузок; повторите попытку чуть позже"}')
ON CONFLICT (error_code) DO NOTHING;

INSERT INTO engine_required_error_codes (error_code) VALUES ('TOO_MANY_EXPORTS')
ON CONFLICT DO NOTHING;
