"""The SQL and the input schema every server of the benchmark runs: the engine's rows and the baselines.

One place, so the engine's mapping rows and the hand-written apps do the same
work by construction.
"""

from __future__ import annotations

from typing import Any

# S1 (and S1a, S1j, S1c, S6): one camera by primary key, within a tenant
CAMERA = "SELECT * FROM bench_cameras WHERE camera_id = $1 AND tenant_id = $2"
# S2: 50 cameras of a tenant, after a given id
CAMERAS = (
    "SELECT * FROM bench_cameras WHERE tenant_id = $1 AND camera_id > $2 "
    "ORDER BY camera_id LIMIT 50"
)
# S3: a validated people-count reading
READING = (
    "INSERT INTO bench_readings (camera_id, tenant_id, people_count) VALUES ($1, $2, $3) "
    "RETURNING reading_id, camera_id, tenant_id, people_count, recorded_at"
)
# S4: a plpgsql function
CAMERA_STATUS = "SELECT * FROM bench_camera_status($1, $2)"

READING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["camera_id", "tenant_id", "people_count"],
    "properties": {
        "camera_id": {"type": "integer", "minimum": 1},
        "tenant_id": {"type": "integer", "minimum": 1},
        "people_count": {"type": "integer", "minimum": 0, "maximum": 10000},
    },
    "additionalProperties": False,
}
