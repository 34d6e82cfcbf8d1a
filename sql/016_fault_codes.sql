-- 016: codes of back-pressure (issue 11).
--
-- DATABASE_BUSY: no pool connection became free within ENGINE_POOL_TIMEOUT_S (the
-- database answers, but every connection is in use). Distinct from
-- DATABASE_CONNECTION_ERROR (the database cannot be reached, or the pool's circuit
-- breaker is open after repeated connection failures). Answered with Retry-After.
-- ENDPOINT_BUSY: the row's max_concurrent requests are already running; answered with
-- Retry-After, so one slow endpoint cannot take the whole pool.
-- TOO_MANY_CONNECTIONS: the process holds ENGINE_MAX_CONNECTIONS client connections;
-- a new one is answered this (with Retry-After) and closed.
-- SHUTTING_DOWN: the process drained on SIGTERM and ENGINE_SHUTDOWN_GRACE_S ran out
-- before this request finished: it was cancelled (its statement too) and may be retried
-- on another process.
-- ON CONFLICT DO NOTHING keeps wording an admin already wrote.
-- localized_messages: "vi" Vietnamese, "ru" Russian.

INSERT INTO api_error_codes
    (error_code, http_status_code, error_category, error_message, suggested_action, localized_messages)
VALUES
('DATABASE_BUSY', 503, 'database',
 'Every database connection is busy; retry shortly',
 'Retry after the number of seconds in Retry-After; if it persists, raise ENGINE_POOL_MAX_SIZE or find the slow queries.',
 '{"vi": "Mọi kết nối cơ sở dữ liệu đều đang bận; hãy thử lại sau giây lát", "ru": "Все соединения с базой данных заняты; повторите попытку чуть позже"}'),
('ENDPOINT_BUSY', 503, 'database',
 'This endpoint is answering as many requests as it may; retry shortly',
 'Retry after the number of seconds in Retry-After; the endpoint''s max_concurrent limits how many of its requests run at once.',
 '{"vi": "Endpoint này đang xử lý số yêu cầu tối đa cho phép; hãy thử lại sau giây lát", "ru": "Эндпоинт обрабатывает максимально допустимое число запросов; повторите попытку чуть позже"}'),
('TOO_MANY_CONNECTIONS', 503, 'server',
 'The server has as many connections open as it may; retry shortly',
 'Retry after the number of seconds in Retry-After; reuse connections (keep-alive) instead of opening many.',
 '{"vi": "Máy chủ đang mở số kết nối tối đa cho phép; hãy thử lại sau giây lát", "ru": "Сервер держит максимально допустимое число соединений; повторите попытку чуть позже"}'),
('SHUTTING_DOWN', 503, 'server',
 'The server is shutting down; retry',
 'Retry the request; another process (or this one, once restarted) will answer it.',
 '{"vi": "Máy chủ đang tắt; hãy thử lại", "ru": "Сервер завершает работу; повторите попытку"}')
ON CONFLICT (error_code) DO NOTHING;

INSERT INTO engine_required_error_codes (error_code)
VALUES ('DATABASE_BUSY'), ('ENDPOINT_BUSY'), ('TOO_MANY_CONNECTIONS'), ('SHUTTING_DOWN')
ON CONFLICT DO NOTHING;
