-- 009: the error code of a request that sends two credentials at once.
--
-- An API key (X-API-Key) and a bearer token (Authorization) in one request name
-- two principals; the engine refuses to pick one (which of them decides the
-- tenant, the roles, the rate limit) and answers 400 with this code.
-- ON CONFLICT DO NOTHING keeps a row an admin already wrote.

INSERT INTO api_error_codes
    (error_code, http_status_code, error_category, error_message, suggested_action, localized_messages)
VALUES
('AMBIGUOUS_CREDENTIALS', 400, 'auth',
 'Send either an API key or a bearer token, not both',
 'Remove either the X-API-Key or the Authorization header, then send the request again.',
 '{"vi": "Chỉ gửi khóa API hoặc bearer token, không gửi cả hai", "ru": "Передайте либо API-ключ, либо bearer-токен, но не оба сразу"}')
ON CONFLICT (error_code) DO NOTHING;

INSERT INTO engine_required_error_codes (error_code) VALUES ('AMBIGUOUS_CREDENTIALS')
ON CONFLICT DO NOTHING;
