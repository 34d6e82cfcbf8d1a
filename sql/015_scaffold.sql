-- 015: scaffolding endpoint rows from a table (engine/scaffold.py).
--
-- SCAFFOLD_REFUSED: `python -m engine scaffold TABLE` or POST /admin/v1/scaffold was
-- asked for a table it cannot handle (unknown, no primary key, a view, a partition, a
-- key type a path cannot carry), a path that is reserved or already owned by another
-- row, or its generated rows would not pass `engine check`. The detail says which and
-- why; nothing is written. ON CONFLICT DO NOTHING keeps wording an admin already wrote.
-- localized_messages: "vi" Vietnamese, "ru" Russian.

INSERT INTO api_error_codes
    (error_code, http_status_code, error_category, error_message, suggested_action, localized_messages)
VALUES
('SCAFFOLD_REFUSED', 422, 'validation',
 'The endpoints of this table cannot be scaffolded',
 'Read the detail: it names the reason (an unknown table, no primary key, a view, a path already taken) and what to do instead.',
 '{"vi": "Không thể tạo các endpoint cho bảng này", "ru": "Для этой таблицы нельзя сгенерировать эндпоинты"}')
ON CONFLICT (error_code) DO NOTHING;

INSERT INTO engine_required_error_codes (error_code) VALUES ('SCAFFOLD_REFUSED') ON CONFLICT DO NOTHING;
