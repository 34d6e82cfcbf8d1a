-- 007: a write answers 2xx exactly when it committed; idempotent retries.
--
-- engine_idempotency_keys keeps, per caller, endpoint and Idempotency-Key, the
-- answer of a write that committed (stored in the same transaction as the write),
-- so a retry gets the same answer instead of writing twice. Rows expire after
-- ENGINE_IDEMPOTENCY_TTL_S and are purged by the engine.

CREATE TABLE engine_idempotency_keys (
    principal            TEXT NOT NULL,
    endpoint_mapping_id  INTEGER NOT NULL REFERENCES api_endpoint_mappings (id) ON DELETE CASCADE,
    idempotency_key      TEXT NOT NULL,
    request_fingerprint  TEXT NOT NULL,
    status               INTEGER NOT NULL,
    headers              JSONB NOT NULL DEFAULT '{}',
    body                 BYTEA NOT NULL,
    empty                BOOLEAN NOT NULL DEFAULT FALSE,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at           TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (principal, endpoint_mapping_id, idempotency_key)
);

CREATE INDEX engine_idempotency_keys_expires ON engine_idempotency_keys (expires_at);

INSERT INTO api_error_codes
    (error_code, http_status_code, error_category, error_message, suggested_action, localized_messages)
VALUES
('COMMIT_OUTCOME_UNKNOWN', 503, 'database',
 'The connection was lost while committing: the change may or may not have been saved',
 'Retry with the same Idempotency-Key to learn the outcome without writing twice, or check before retrying.',
 '{"vi": "Mất kết nối khi đang lưu: thay đổi có thể đã hoặc chưa được lưu", "ru": "Соединение потеряно во время фиксации: изменение могло быть сохранено или нет"}'),
('IDEMPOTENCY_KEY_REUSED', 422, 'validation',
 'This Idempotency-Key was already used for a different request',
 'Use a new Idempotency-Key for a new request.',
 '{"vi": "Idempotency-Key này đã được dùng cho một yêu cầu khác", "ru": "Этот Idempotency-Key уже использован для другого запроса"}'),
('IDEMPOTENCY_KEY_IN_USE', 409, 'validation',
 'A request with this Idempotency-Key is still being processed',
 'Wait for the first request to finish, then retry with the same key.',
 '{"vi": "Một yêu cầu với Idempotency-Key này vẫn đang được xử lý", "ru": "Запрос с этим Idempotency-Key ещё обрабатывается"}'),
('TEMPLATE_ERROR', 500, 'server',
 'The endpoint''s query failed on its own',
 'Report the request_id to the administrator: the endpoint''s template needs a fix.',
 '{"vi": "Truy vấn của điểm cuối bị lỗi", "ru": "Запрос конечной точки завершился ошибкой"}'),
('READ_ONLY_VIOLATION', 500, 'server',
 'A read-only endpoint tried to write',
 'Report the request_id to the administrator: the endpoint must be published as a write.',
 '{"vi": "Điểm cuối chỉ đọc đã cố gắng ghi dữ liệu", "ru": "Конечная точка только для чтения попыталась записать данные"}')
ON CONFLICT (error_code) DO NOTHING;

INSERT INTO engine_required_error_codes (error_code) VALUES
    ('COMMIT_OUTCOME_UNKNOWN'), ('IDEMPOTENCY_KEY_REUSED'), ('IDEMPOTENCY_KEY_IN_USE'),
    ('TEMPLATE_ERROR'), ('READ_ONLY_VIOLATION')
ON CONFLICT DO NOTHING;
