-- 023: a request the HTTP parser cannot read (issue 12).
--
-- MALFORMED_REQUEST: the bytes received are not an HTTP/1.1 request (a bad request line,
-- a header without a colon, a body that does not match its Content-Length or chunks).
-- The engine's own protocol (engine/http1.py) answers it as problem+json and closes the
-- connection: nothing after the malformed bytes can be trusted to start a request.
-- ON CONFLICT DO NOTHING keeps wording an admin already wrote.
-- localized_messages: "vi" Vietnamese, "ru" Russian.

INSERT INTO api_error_codes
    (error_code, http_status_code, error_category, error_message, suggested_action, localized_messages)
VALUES
('MALFORMED_REQUEST', 400, 'validation',
 'The request could not be read as HTTP/1.1',
 'Send a well-formed request: a request line, headers as name: value, and a body that matches its Content-Length or its chunks.',
 '{"vi": "Không thể đọc yêu cầu theo HTTP/1.1", "ru": "Запрос не удалось прочитать как HTTP/1.1"}')
ON CONFLICT (error_code) DO NOTHING;

INSERT INTO engine_required_error_codes (error_code)
VALUES ('MALFORMED_REQUEST')
ON CONFLICT DO NOTHING;
