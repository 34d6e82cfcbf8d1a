-- 011: pagination a consumer can follow (engine/pagination.py).
--
-- INVALID_CURSOR: a keyset page's ?after= cursor that this endpoint did not issue
-- for these filter values (altered, copied from another endpoint or another filter,
-- or from an earlier definition of the endpoint). ON CONFLICT DO NOTHING keeps
-- wording an admin already wrote. localized_messages: "vi" Vietnamese, "ru" Russian.
--
-- engine_secrets: per-database secrets of the engine. 'cursor' signs keyset cursors
-- (HMAC-SHA256) when ENGINE_CURSOR_SECRET is not set, so every engine process on
-- this database accepts the cursors of the others. gen_random_uuid() is core since
-- PostgreSQL 13 and draws from the server's strong random source (244 random bits
-- for two). Deleting the row makes a new secret on the next read (and invalidates
-- every cursor handed out before, once the processes restart).

INSERT INTO api_error_codes
    (error_code, http_status_code, error_category, error_message, suggested_action, localized_messages)
VALUES
('INVALID_CURSOR', 400, 'validation',
 'The pagination cursor is not valid for this request',
 'Follow the next link of the previous page as given, with the same filters; or start again from the first page without after.',
 '{"vi": "Con trỏ phân trang không hợp lệ cho yêu cầu này", "ru": "Курсор пагинации недействителен для этого запроса"}')
ON CONFLICT (error_code) DO NOTHING;

INSERT INTO engine_required_error_codes (error_code) VALUES ('INVALID_CURSOR') ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS engine_secrets (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL CHECK (length(value) >= 32),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
REVOKE ALL ON engine_secrets FROM PUBLIC;

INSERT INTO engine_secrets (name, value)
VALUES ('cursor', replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''))
ON CONFLICT (name) DO NOTHING;
