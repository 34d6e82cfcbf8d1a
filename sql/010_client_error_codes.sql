-- 010: a request body that is not a JSON object where one is needed.
--
-- Body parameters are read from the body by name, and a body schema whose type is
-- "object" expects one: an array, a string, a number, a boolean or null there is
-- INVALID_BODY (an empty body is still "no fields"). ON CONFLICT DO NOTHING keeps
-- wording an admin already wrote. localized_messages: "vi" Vietnamese, "ru" Russian.

INSERT INTO api_error_codes
    (error_code, http_status_code, error_category, error_message, suggested_action, localized_messages)
VALUES
('INVALID_BODY', 400, 'validation',
 'The request body must be a JSON object',
 'Send the fields as one JSON object, for example {"name": "value"}, not an array, a string, a number or null.',
 '{"vi": "Nội dung yêu cầu phải là một đối tượng JSON", "ru": "Тело запроса должно быть объектом JSON"}')
ON CONFLICT (error_code) DO NOTHING;

INSERT INTO engine_required_error_codes (error_code) VALUES ('INVALID_BODY') ON CONFLICT DO NOTHING;
