-- 004: cross-table cache invalidation.
--
-- Deactivating a camera (DELETE, or PUT with is_active false) also marks its
-- video streams inactive, through the trigger camera_deactivate_streams. A
-- write endpoint drops the cached reads of its own target_table only, so these
-- two say that they change video_streams as well: the stream reads are then
-- dropped at once, in every engine process.

INSERT INTO api_cache_config (endpoint_mapping_id, cache_enabled, cache_invalidation_rules)
SELECT api_mapping_id(path, method), FALSE, '{"tables": ["video_streams"]}'::jsonb
FROM (VALUES ('/api/v1/cameras/{id}', 'DELETE'), ('/api/v1/cameras/{id}', 'PUT')) AS w(path, method)
ON CONFLICT (endpoint_mapping_id) DO UPDATE
SET cache_invalidation_rules = EXCLUDED.cache_invalidation_rules
WHERE api_cache_config.cache_invalidation_rules IS DISTINCT FROM EXCLUDED.cache_invalidation_rules;
