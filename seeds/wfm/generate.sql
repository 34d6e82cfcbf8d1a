-- wfm generate.sql: volumes on request (`python -m engine seed wfm --scale N`).
--
-- Runs in one transaction with engine.seed_scale = N and replaces what it
-- generated before (wfm_generate() deletes the rows marked is_generated
-- first). Scale N: 30 x N generated services of tenant 1 with 350 days of
-- 15-minute contact statistics each (N x 1,008,000 rows) and 10 agents per
-- service with their daily activity (about N x 75,000 rows); scale 0 removes
-- the generated data. The statistics ANALYZE follows, so the planner knows
-- the volumes at once.

SELECT wfm_generate(350, 30 * GREATEST(current_setting('engine.seed_scale')::INTEGER, 0), 1, 10);

ANALYZE services;
ANALYZE agents;
ANALYZE contact_statistics;
ANALYZE agent_activity;
