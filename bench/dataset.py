"""The benchmark's fixed data set and the engine rows that publish it.

100,000 cameras over 10 tenants (``tenant_id = 1 + camera_id % 10``), an empty
readings table for the INSERT scenario, a plpgsql function, and the mapping rows
of every engine scenario, inserted through SQL as an admin would. The API key
is made with ``python -m engine keys create`` and the bearer token is minted
with ``ENGINE_JWT_SECRET``, as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from bench.baselines import sql
from engine import migrations
from engine.auth import mint_token

ROOT = Path(__file__).resolve().parent.parent
CAMERAS = 100_000
TENANTS = 10
KEY_TENANT = 3  # the tenant of the API key and the bearer token (S1a, S1j)
SECRET = "bench-secret-bench-secret-bench-secret"
KEY_NAME = "bench-s1a"


def tenant_of(camera_id: int) -> int:
    return 1 + camera_id % TENANTS


TABLES = f"""
DROP TABLE IF EXISTS bench_readings, bench_cameras CASCADE;
CREATE TABLE bench_cameras (
    camera_id            bigint PRIMARY KEY,
    tenant_id            int NOT NULL,
    camera_name          text NOT NULL,
    location             text,
    camera_type          text NOT NULL,
    resolution_width     int NOT NULL,
    resolution_height    int NOT NULL,
    frame_rate           int NOT NULL,
    confidence_threshold numeric(3, 2) NOT NULL,
    is_active            boolean NOT NULL,
    created_at           timestamptz NOT NULL
);
INSERT INTO bench_cameras
SELECT g, 1 + g % {TENANTS}, 'camera ' || g, 'site ' || g % 250 || ', gate ' || g % 7,
       (ARRAY['IP', 'USB', 'RTSP', 'HTTP'])[1 + g % 4], 1920, 1080, 25,
       0.50 + (g % 40) / 100.0, g % 13 <> 0, timestamptz '2024-01-01' + g * interval '1 minute'
FROM generate_series(1, {CAMERAS}) g;
CREATE INDEX bench_cameras_tenant ON bench_cameras (tenant_id, camera_id);
CREATE TABLE bench_readings (
    reading_id   bigserial PRIMARY KEY,
    camera_id    bigint NOT NULL,
    tenant_id    int NOT NULL,
    people_count int NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE OR REPLACE FUNCTION bench_camera_status(p_camera_id bigint, p_tenant_id int)
RETURNS TABLE (camera_id bigint, camera_name text, state text, age_days int)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
    SELECT c.camera_id, c.camera_name,
           CASE WHEN c.is_active THEN 'online' ELSE 'offline' END,
           (current_date - c.created_at::date)::int
    FROM bench_cameras c
    WHERE c.camera_id = p_camera_id AND c.tenant_id = p_tenant_id;
END
$$;
ANALYZE bench_cameras;
"""

_ID = {"name": "camera_id", "in": "path", "type": "integer"}
_TENANT = {"name": "tenant_id", "in": "query", "type": "integer", "required": True}
_TENANT_AUTH = {"name": "tenant_id", "in": "auth", "claim": "tenant_id", "type": "integer"}
_ONE = {"shape": "object", "not_found": "RESOURCE_NOT_FOUND"}

# (path, method, operation, sql, parameters, result mapping, requires_auth, cache_enabled)
ROWS = [
    ("/bench/cameras/{camera_id}", "GET", "SELECT", sql.CAMERA, [_ID, _TENANT], _ONE, False, False),
    ("/bench/mine/cameras/{camera_id}", "GET", "SELECT", sql.CAMERA, [_ID, _TENANT_AUTH], _ONE,
     True, False),
    ("/bench/cached/cameras/{camera_id}", "GET", "SELECT", sql.CAMERA, [_ID, _TENANT], _ONE, False,
     True),
    ("/bench/cameras", "GET", "SELECT", sql.CAMERAS,
     [_TENANT, {"name": "after", "in": "query", "type": "integer", "default": 0}],
     {"shape": "list"}, False, False),
    ("/bench/readings", "POST", "INSERT", sql.READING,
     [{"name": n, "in": "body", "type": "integer", "required": True}
      for n in ("camera_id", "tenant_id", "people_count")],
     {"shape": "object", "status": 201}, False, False),
    ("/bench/cameras/{camera_id}/status", "GET", "SELECT", sql.CAMERA_STATUS, [_ID, _TENANT], _ONE,
     False, False),
]  # fmt: skip

INSERT_ROW = """
INSERT INTO api_endpoint_mappings (endpoint_path, http_method, service_name, database_operation,
    query_template, query_parameters, result_mapping, requires_auth, cache_enabled,
    cache_ttl_seconds, rate_limit_per_minute)
VALUES ($1, $2, 'bench', $3, $4, $5::jsonb, $6::jsonb, $7, $8, 3600, NULL)
RETURNING id
"""
INSERT_SCHEMA = """
INSERT INTO api_validation_schemas (endpoint_mapping_id, schema_name, validation_schema)
VALUES ($1, 'bench reading', $2::jsonb)
"""


@dataclass(frozen=True)
class Credentials:
    api_key: str
    token: str


async def _load(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrations.migrate(conn)
        async with conn.transaction():
            await conn.execute(TABLES)
            await conn.execute("DELETE FROM api_endpoint_mappings WHERE service_name = 'bench'")
            for path, method, op, text, params, result, auth, cache in ROWS:
                mapping_id = await conn.fetchval(
                    INSERT_ROW,
                    path,
                    method,
                    op,
                    text,
                    json.dumps(params),
                    json.dumps(result),
                    auth,
                    cache,
                )
                if op == "INSERT":
                    await conn.execute(INSERT_SCHEMA, mapping_id, json.dumps(sql.READING_SCHEMA))
            await conn.execute("DELETE FROM api_keys WHERE name = $1", KEY_NAME)
    finally:
        await conn.close()


def _create_key(url: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "engine", "keys", "create", "--name", KEY_NAME,
         "--tenant", str(KEY_TENANT)],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"engine keys create failed: {out.stderr.strip()}")
    return out.stdout.strip().splitlines()[-1]


async def prepare(url: str) -> Credentials:
    """Load the data set and the rows; an API key and a token for tenant ``KEY_TENANT``."""
    await _load(url)
    token = mint_token(SECRET, subject="bench", tenant_id=KEY_TENANT, ttl_s=12 * 3600)
    return Credentials(api_key=_create_key(url), token=token)
