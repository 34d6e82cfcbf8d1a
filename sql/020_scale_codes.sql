-- 020: codes of scale (issue 12).
--
-- RESULT_TOO_LARGE: a list answer without pagination reached ENGINE_MAX_ROWS rows; the
-- endpoint's admin should paginate it (result_mapping.paginate) or stream it (shape
-- "stream"). A 500 like TEMPLATE_ERROR: the client cannot fix it, the row can.
-- ON CONFLICT DO NOTHING keeps wording an admin already wrote.
-- localized_messages: "vi" Vietnamese, "ru" Russian.

INSERT INTO api_error_codes
    (error_code, http_status_code, error_category, error_message, suggested_action, localized_messages)
VALUES
('RESULT_TOO_LARGE', 500, 'server',
 'The answer has more rows than an unpaginated list may hold',
 'Paginate the endpoint (result_mapping.paginate) or stream it (shape "stream"); ENGINE_MAX_ROWS bounds unpaginated lists.',
 '{"vi": "Câu trả lời có nhiều hàng hơn mức một danh sách không phân trang được phép", "ru": "Ответ содержит больше строк, чем допускается для списка без разбиения на страницы"}')
ON CONFLICT (error_code) DO NOTHING;

INSERT INTO engine_required_error_codes (error_code)
VALUES ('RESULT_TOO_LARGE')
ON CONFLICT DO NOTHING;
