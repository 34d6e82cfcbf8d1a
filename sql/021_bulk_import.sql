-- 021: bulk import (issue 12).
--
-- api_endpoint_mappings.bulk_import: a POST (or PUT) row whose body is NDJSON or CSV
-- records, each checked against the row's stored JSON Schema (which describes one record),
-- COPYed into the temporary table bulk_records as they stream in, then loaded by the row's
-- query_template in the same transaction (engine/bulk.py). NULL: an ordinary row.
--   {"formats": ["ndjson", "csv"],                   -- default both
--    "columns": {"interval_start": "timestamp", ...}, -- bulk_records' columns (required)
--    "on_invalid": "reject" | "skip",                 -- default reject: all or nothing
--    "max_body_bytes": 104857600,                     -- default ENGINE_BULK_MAX_BODY_BYTES
--    "max_errors": 100}                               -- problems listed in an answer
-- The engine checks the rest (engine/spec.py); the constraint only keeps it an object.
-- Part of the row contract: the history (sql/013) copies mapping rows with to_jsonb, so
-- the column is recorded by every later version without a change there.
--
-- BULK_INVALID_RECORDS: on_invalid "reject" and some records are invalid; the answer lists
-- them (line, JSON pointer, message) and nothing was written.
-- ON CONFLICT DO NOTHING keeps wording an admin already wrote.
-- localized_messages: "vi" Vietnamese, "ru" Russian.

ALTER TABLE api_endpoint_mappings
    ADD COLUMN IF NOT EXISTS bulk_import JSONB
        CONSTRAINT api_endpoint_mappings_bulk_import_check
        CHECK (bulk_import IS NULL OR jsonb_typeof(bulk_import) = 'object');

COMMENT ON COLUMN api_endpoint_mappings.bulk_import IS
    'A bulk import: the body is NDJSON or CSV records, each checked against the row''s schema, '
    'COPYed into the temporary table bulk_records and loaded by query_template in one '
    'transaction. {"formats", "columns", "on_invalid", "max_body_bytes", "max_errors"}; NULL: '
    'an ordinary row.';

-- Versions recorded before the column existed were no bulk import: say so, so that
-- restoring one sets NULL and a diff shows no phantom change.
UPDATE api_endpoint_history
SET definition = jsonb_set(definition, '{mapping,bulk_import}', 'null'::jsonb)
WHERE jsonb_typeof(definition -> 'mapping') = 'object'
  AND NOT (definition -> 'mapping') ? 'bulk_import';

INSERT INTO api_error_codes
    (error_code, http_status_code, error_category, error_message, suggested_action, localized_messages)
VALUES
('BULK_INVALID_RECORDS', 422, 'validation',
 'Some records are invalid, so nothing was imported',
 'Correct the records listed in errors (line, pointer, message) and send the import again.',
 '{"vi": "Một số bản ghi không hợp lệ nên không có gì được nhập", "ru": "Некоторые записи недопустимы, поэтому ничего не импортировано"}')
ON CONFLICT (error_code) DO NOTHING;

INSERT INTO engine_required_error_codes (error_code)
VALUES ('BULK_INVALID_RECORDS')
ON CONFLICT DO NOTHING;
