"""The camera_counting seed domain at the SQL level: its rows, templates, triggers and data.

Each test gets a fresh database with every migration and seed applied. Templates
are run the way the engine runs them: the row's ``query_template`` prepared on
asyncpg, its ``query_parameters`` bound in order (path, query, body, the
tenant from the principal). HTTP-level behaviour is tested elsewhere.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from jsonschema import Draft202012Validator

from tests.pg import DB

SEED_DIR = Path(__file__).resolve().parent.parent / "seeds" / "camera_counting"
PREFIX = "/api/v1/cameras"

ENDPOINTS = {
    ("GET", "/api/v1/cameras"),
    ("POST", "/api/v1/cameras"),
    ("GET", "/api/v1/cameras/{id}"),
    ("PUT", "/api/v1/cameras/{id}"),
    ("DELETE", "/api/v1/cameras/{id}"),
    ("GET", "/api/v1/cameras/{id}/health"),
    ("POST", "/api/v1/cameras/{id}/health"),
    ("GET", "/api/v1/cameras/{id}/streams"),
    ("POST", "/api/v1/cameras/{id}/streams"),
    ("GET", "/api/v1/cameras/{id}/streams/{stream_id}"),
    ("GET", "/api/v1/cameras/{id}/detections"),
    ("POST", "/api/v1/cameras/{id}/detections"),
    ("GET", "/api/v1/cameras/{id}/detections/{detection_id}"),
    ("GET", "/api/v1/cameras/{id}/counting"),
    ("POST", "/api/v1/cameras/{id}/counting"),
    ("GET", "/api/v1/cameras/{id}/analytics"),
    ("GET", "/api/v1/cameras/{id}/analytics/historical"),
}

# Declared parameter type -> PostgreSQL types the placeholder may be inferred as.
PG_TYPES = {
    "integer": {"int2", "int4", "int8"},
    "number": {"numeric", "float4", "float8"},
    "string": {"text", "varchar"},
    "boolean": {"bool"},
    "uuid": {"uuid"},
    "date": {"date"},
    "timestamp": {"timestamp", "timestamptz"},
    "json": {"json", "jsonb"},
}

DOMAIN_TABLES = (
    "ai_detection_models",
    "camera_configurations",
    "camera_health",
    "video_streams",
    "person_detections",
    "counting_events",
    "counting_results",
    "realtime_analytics",
    "historical_analytics",
)

STREAM_1 = "6f1c0000-0000-4000-8000-000000000101"

T = TypeVar("T")


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def with_conn(db: DB, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run ``work`` on one connection with the engine's json codecs."""

    async def go() -> T:
        conn = await asyncpg.connect(db.url)
        try:
            for name in ("json", "jsonb"):
                await conn.set_type_codec(
                    name, schema="pg_catalog", encoder=json.dumps, decoder=json.loads
                )
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


def mappings(db: DB) -> dict[tuple[str, str], dict[str, Any]]:
    rows = db.fetch(
        "SELECT * FROM api_endpoint_mappings WHERE endpoint_path LIKE $1 || '%' ORDER BY id",
        PREFIX,
    )
    out = {}
    for r in rows:
        row = dict(r)
        for key in ("query_parameters", "result_mapping"):
            row[key] = json.loads(row[key])
        out[(row["http_method"], row["endpoint_path"])] = row
    return out


def _convert(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "timestamp" and isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    if kind == "date" and isinstance(value, str):
        return dt.date.fromisoformat(value)
    if kind == "number":
        return Decimal(str(value))
    return value


def bind(
    row: dict[str, Any],
    *,
    tenant: int,
    path: dict[str, Any] | None = None,
    query: dict[str, Any] | None = None,
    body: dict[str, Any] | None = None,
) -> list[Any]:
    """The argument list the engine would bind for this request."""
    args = []
    for p in row["query_parameters"]:
        source = p["in"]
        if source == "auth":
            assert p["claim"] == "tenant_id"
            value = tenant
        elif source == "path":
            value = (path or {})[p["name"]]
        elif source in ("query", "body"):
            given = (query if source == "query" else body) or {}
            value = given.get(p["name"], p.get("default"))
        else:  # const
            value = p["value"]
        args.append(_convert(value, p["type"]))
    return args


@contextmanager
def raises_code(code: str) -> Iterator[pytest.ExceptionInfo]:
    """Expect the RAISE EXCEPTION of a stored error code (SQLSTATE P0001, message = code)."""
    with pytest.raises(asyncpg.exceptions.RaiseError) as info:
        yield info
    assert info.value.message == code


class Api:
    """Runs mapping templates on one test database."""

    def __init__(self, db: DB) -> None:
        self.db = db
        self.rows = mappings(db)

    def call(
        self,
        method: str,
        route: str,
        /,
        *,
        tenant: int = 1,
        path: dict[str, Any] | None = None,
        query: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> list[dict]:
        """Run the template of ``method route`` with the values of one request."""
        row = self.rows[(method, route)]
        args = bind(row, tenant=tenant, path=path, query=query, body=body)

        async def work(conn: asyncpg.Connection) -> list[dict]:
            return [dict(r) for r in await conn.fetch(row["query_template"], *args)]

        return with_conn(self.db, work)


@pytest.fixture()
def api(db: DB) -> Api:
    return Api(db)


def table_fingerprints(db: DB) -> dict[str, tuple[int, str]]:
    """Row count and a digest of every row of the domain and the domain's catalogue rows."""
    out = {}
    for table in DOMAIN_TABLES:
        out[table] = tuple(
            db.fetchrow(
                f"SELECT count(*), md5(COALESCE(string_agg(t::text, '|' ORDER BY t::text), '')) "
                f"FROM {table} t"
            )
        )
    catalog = {
        "api_endpoint_mappings": f"endpoint_path LIKE '{PREFIX}%'",
        "api_validation_schemas": "endpoint_mapping_id IN (SELECT id FROM api_endpoint_mappings)",
        "data_sanitization_rules": "TRUE",
        "api_error_codes": "TRUE",
    }
    for table, where in catalog.items():
        out[table] = tuple(
            db.fetchrow(
                f"SELECT count(*), md5(COALESCE(string_agg(t::text, '|' ORDER BY t::text), '')) "
                f"FROM {table} t WHERE {where}"
            )
        )
    return out


# ---------------------------------------------------------------------------
# the mapping rows
# ---------------------------------------------------------------------------


def test_every_guide_endpoint_is_published_with_a_complete_row(db: DB) -> None:
    rows = mappings(db)
    assert set(rows) == ENDPOINTS
    codes = {r["error_code"] for r in db.fetch("SELECT error_code FROM api_error_codes")}
    for (method, path), row in rows.items():
        label = f"{method} {path}"
        sql = row["query_template"]
        params = row["query_parameters"]
        result = row["result_mapping"]
        assert "..." not in sql, label
        assert row["requires_auth"] and row["is_active"], label
        # every endpoint is tenant-isolated through the principal's claim
        assert {"name": "tenant_id", "in": "auth", "claim": "tenant_id"}.items() <= next(
            p for p in params if p["in"] == "auth"
        ).items(), label
        # $1..$n all used, none beyond
        used = {int(n) for n in re.findall(r"\$(\d+)", sql)}
        assert used == set(range(1, len(params) + 1)), label
        # path parameters are declared as such
        for name in re.findall(r"\{(\w+)\}", path):
            assert any(p["in"] == "path" and p["name"] == name for p in params), label
        if method == "GET":
            assert row["database_operation"] == "SELECT", label
            assert row["required_roles"] == [], label
        else:
            assert row["database_operation"] in ("INSERT", "UPDATE"), label
            assert row["required_roles"], label
            assert "camera_admin" in row["required_roles"], label
            assert not row["cache_enabled"], label
            assert "RETURNING" in sql, label
        if result.get("paginate"):
            assert result["shape"] == "list", label
            assert not re.search(r"\bLIMIT\b", sql, re.IGNORECASE), label
        if result.get("not_found"):
            assert result["not_found"] in codes, label
        if path.endswith("{id}") and method in ("GET", "PUT", "DELETE"):
            assert result == {"shape": "object", "not_found": "CAMERA_NOT_FOUND"}, label
        assert row["rate_limit_per_minute"] > 0, label
    # soft delete, caching policy
    assert rows[("DELETE", "/api/v1/cameras/{id}")]["database_operation"] == "UPDATE"
    assert rows[("GET", "/api/v1/cameras/{id}/health")]["cache_ttl_seconds"] <= 5
    assert rows[("GET", "/api/v1/cameras/{id}/analytics")]["cache_ttl_seconds"] <= 5
    assert rows[("GET", "/api/v1/cameras/{id}/analytics/historical")]["cache_ttl_seconds"] >= 300


def test_templates_prepare_with_the_declared_parameter_types(db: DB) -> None:
    rows = mappings(db)

    async def work(conn: asyncpg.Connection) -> dict[str, list[str]]:
        found = {}
        for (method, path), row in rows.items():
            stmt = await conn.prepare(row["query_template"])
            found[f"{method} {path}"] = [t.name for t in stmt.get_parameters()]
        return found

    prepared = with_conn(db, work)
    for (method, path), row in rows.items():
        label = f"{method} {path}"
        declared = [p["type"] for p in row["query_parameters"]]
        inferred = prepared[label]
        assert len(inferred) == len(declared), label
        for i, (want, got) in enumerate(zip(declared, inferred, strict=True), 1):
            assert got in PG_TYPES[want], f"{label} ${i}: declared {want}, PostgreSQL infers {got}"


def test_the_engine_compiles_every_camera_row(db: DB) -> None:
    catalog = pytest.importorskip("engine.catalog")
    database = pytest.importorskip("engine.database")

    async def work(conn: asyncpg.Connection) -> Any:
        await database.init_connection(conn)
        return await catalog.load_catalog(conn)

    loaded = asyncio.run(_on_fresh_conn(db, work))
    problems = [p for p in loaded.problems if str(getattr(p, "path", "") or "").startswith(PREFIX)]
    assert problems == []
    compiled = {(e.spec.method, e.spec.path) for e in loaded.endpoints}
    assert compiled >= ENDPOINTS


async def _on_fresh_conn(db: DB, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    conn = await asyncpg.connect(db.url)
    try:
        return await work(conn)
    finally:
        await conn.close()


# ---------------------------------------------------------------------------
# reads: sample data and tenant isolation
# ---------------------------------------------------------------------------

READS = [
    ("/api/v1/cameras", {}),
    ("/api/v1/cameras/{id}", {}),
    ("/api/v1/cameras/{id}/health", {}),
    ("/api/v1/cameras/{id}/streams", {}),
    ("/api/v1/cameras/{id}/detections", {}),
    ("/api/v1/cameras/{id}/counting", {}),
    ("/api/v1/cameras/{id}/analytics", {}),
    ("/api/v1/cameras/{id}/analytics/historical", {}),
]


@pytest.mark.parametrize(("tenant", "camera"), [(1, 1), (2, 5)])
def test_every_get_returns_the_tenants_own_sample_rows(api: Api, tenant: int, camera: int) -> None:
    for path, query in READS:
        rows = api.call("GET", path, tenant=tenant, path={"id": camera}, query=query)
        assert rows, f"GET {path} as tenant {tenant}"
        if "{id}" in path:
            assert {r["camera_id"] for r in rows} == {camera}, path
    cameras = api.call("GET", "/api/v1/cameras", tenant=tenant)
    expected = {1: [1, 2, 3], 2: [5, 6]}[tenant]  # 4 and 7 are soft-deleted
    assert [c["camera_id"] for c in cameras] == expected
    stream = api.call(
        "GET",
        "/api/v1/cameras/{id}/streams/{stream_id}",
        path={"id": 1, "stream_id": STREAM_1},
    )
    assert [s["stream_type"] for s in stream] == ["main"]
    detection = api.call(
        "GET",
        "/api/v1/cameras/{id}/detections/{detection_id}",
        path={"id": 1, "detection_id": "cam1-det-0000"},
    )
    assert len(detection) == 1 and detection[0]["object_attributes"]["age_group"] == "child"


def test_camera_list_filters_by_type(api: Api) -> None:
    rows = api.call("GET", "/api/v1/cameras", query={"camera_type": "RTSP"})
    assert [r["camera_id"] for r in rows] == [2]


def test_another_tenant_sees_nothing_of_a_camera(api: Api) -> None:
    assert api.call("GET", "/api/v1/cameras/{id}", tenant=2, path={"id": 1}) == []
    for path, query in READS[2:]:
        with raises_code("CAMERA_NOT_FOUND"):
            api.call("GET", path, tenant=2, path={"id": 1}, query=query)
    with raises_code("CAMERA_NOT_FOUND"):
        api.call(
            "GET",
            "/api/v1/cameras/{id}/streams/{stream_id}",
            tenant=2,
            path={"id": 1, "stream_id": STREAM_1},
        )
    # a camera that does not exist answers the same way
    with raises_code("CAMERA_NOT_FOUND"):
        api.call("GET", "/api/v1/cameras/{id}/health", path={"id": 999_999})
    # an own camera without data is an empty list, not an error
    fresh = new_camera(api, "Empty Corridor")
    assert api.call("GET", "/api/v1/cameras/{id}/health", path={"id": fresh}) == []


def test_another_tenant_cannot_write_to_a_camera(api: Api, db: DB) -> None:
    before = table_fingerprints(db)
    writes = [
        ("PUT", "/api/v1/cameras/{id}", {"camera_name": "Hijacked"}),
        ("DELETE", "/api/v1/cameras/{id}", None),
        ("POST", "/api/v1/cameras/{id}/health", {"status": "offline"}),
        ("POST", "/api/v1/cameras/{id}/streams", {"stream_url": "rtsp://evil.example/x"}),
        (
            "POST",
            "/api/v1/cameras/{id}/detections",
            {
                "detection_id": "evil-1",
                "confidence_score": 0.9,
                "bbox_x": 1,
                "bbox_y": 1,
                "bbox_width": 5,
                "bbox_height": 5,
            },
        ),
        ("POST", "/api/v1/cameras/{id}/counting", {"event_type": "entry", "count": 50}),
    ]
    for method, path, body in writes:
        assert api.call(method, path, tenant=2, path={"id": 1}, body=body) == [], path
    assert table_fingerprints(db) == before


# ---------------------------------------------------------------------------
# writes: camera lifecycle, configuration checks, inactive cameras
# ---------------------------------------------------------------------------


def new_camera(api: Api, name: str, tenant: int = 1, **body: Any) -> int:
    rows = api.call(
        "POST",
        "/api/v1/cameras",
        tenant=tenant,
        body={"camera_name": name, "camera_type": "IP", "stream_url": "rtsp://10.9.9.9/s", **body},
    )
    assert len(rows) == 1
    return rows[0]["camera_id"]


def test_camera_create_update_soft_delete_and_reactivate(api: Api) -> None:
    created = api.call(
        "POST",
        "/api/v1/cameras",
        body={
            "camera_name": "Cổng chính",
            "camera_type": "RTSP",
            "stream_url": "rtsp://10.1.1.50:554/main",
            "ai_model_id": 2,
        },
    )[0]
    cid = created["camera_id"]
    assert cid > 7  # the identity continues after the sample ids
    assert (created["resolution_width"], created["resolution_height"]) == (1920, 1080)
    assert created["frame_rate"] == 25 and created["confidence_threshold"] == Decimal("0.50")
    assert created["is_active"] is True
    assert cid in [c["camera_id"] for c in api.call("GET", "/api/v1/cameras")]
    assert api.call("GET", "/api/v1/cameras/{id}", tenant=2, path={"id": cid}) == []

    updated = api.call(
        "PUT", "/api/v1/cameras/{id}", path={"id": cid}, body={"location": "Gate 1"}
    )[0]
    assert updated["location"] == "Gate 1"
    assert updated["camera_name"] == "Cổng chính" and updated["ai_model_id"] == 2
    assert updated["updated_at"] >= created["updated_at"]

    api.call(
        "POST",
        "/api/v1/cameras/{id}/streams",
        path={"id": cid},
        body={"stream_url": "rtsp://10.1.1.50:554/sub", "stream_type": "sub"},
    )
    deleted = api.call("DELETE", "/api/v1/cameras/{id}", path={"id": cid})
    assert deleted[0]["is_active"] is False
    assert cid not in [c["camera_id"] for c in api.call("GET", "/api/v1/cameras")]
    one = api.call("GET", "/api/v1/cameras/{id}", path={"id": cid})
    assert one[0]["is_active"] is False and one[0]["ai_model_name"] == "yolov8s-person"
    streams = api.call("GET", "/api/v1/cameras/{id}/streams", path={"id": cid})
    assert [s["status"] for s in streams] == ["inactive"]

    with raises_code("CAMERA_INACTIVE"):
        api.call(
            "POST", "/api/v1/cameras/{id}/counting", path={"id": cid}, body={"event_type": "entry"}
        )
    # health is still accepted from an inactive camera
    health = api.call(
        "POST", "/api/v1/cameras/{id}/health", path={"id": cid}, body={"status": "offline"}
    )
    assert health[0]["status"] == "offline"

    again = api.call("PUT", "/api/v1/cameras/{id}", path={"id": cid}, body={"is_active": True})
    assert again[0]["is_active"] is True
    assert api.call(
        "POST", "/api/v1/cameras/{id}/counting", path={"id": cid}, body={"event_type": "entry"}
    )


def test_missing_camera_writes_nothing(api: Api) -> None:
    assert (
        api.call("PUT", "/api/v1/cameras/{id}", path={"id": 424242}, body={"frame_rate": 5}) == []
    )
    assert api.call("DELETE", "/api/v1/cameras/{id}", path={"id": 424242}) == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"camera_type": "RTSP", "stream_url": "http://10.0.0.1/x"}, "rtsp://"),
        ({"camera_type": "HTTP", "stream_url": "rtsp://10.0.0.1/x"}, "http://"),
        ({"ai_model_id": 4}, "not active"),
        ({"ai_model_id": 99}, "does not exist"),
    ],
)
def test_incoherent_camera_configuration_is_refused(
    api: Api, body: dict[str, Any], reason: str
) -> None:
    with raises_code("INVALID_CAMERA_CONFIG") as err:
        new_camera(api, "Bad Config", **body)
    assert reason in err.value.detail


def test_duplicate_active_camera_name_is_refused(api: Api) -> None:
    with pytest.raises(asyncpg.exceptions.UniqueViolationError):
        new_camera(api, "main entrance")
    # another tenant may use the name, and so may a soft-deleted camera's
    assert new_camera(api, "Main Entrance", tenant=2)
    assert new_camera(api, "Old Lobby Camera")


def test_streams_and_detections_are_written_and_read_back(api: Api) -> None:
    stream = api.call(
        "POST",
        "/api/v1/cameras/{id}/streams",
        path={"id": 3},
        body={"stream_url": "https://10.10.1.13/hls/index.m3u8", "codec": "H.264"},
    )[0]
    assert stream["protocol"] == "https" and stream["stream_type"] == "main"
    assert stream["status"] == "active"
    fetched = api.call(
        "GET",
        "/api/v1/cameras/{id}/streams/{stream_id}",
        path={"id": 3, "stream_id": str(stream["stream_id"])},
    )
    assert fetched[0]["stream_url"] == "https://10.10.1.13/hls/index.m3u8"

    body = {
        "detection_id": "t-det-1",
        "frame_timestamp": "2031-03-04T05:06:07+00:00",
        "confidence_score": 0.87,
        "bbox_x": 10,
        "bbox_y": 20,
        "bbox_width": 30,
        "bbox_height": 90,
        "object_attributes": {"age_group": "adult"},
    }
    made = api.call("POST", "/api/v1/cameras/{id}/detections", path={"id": 3}, body=body)[0]
    assert made["object_attributes"] == {"age_group": "adult"}
    assert made["track_id"] is None
    latest = api.call("GET", "/api/v1/cameras/{id}/detections", path={"id": 3})
    assert latest[0]["detection_id"] == "t-det-1"  # newest first
    with pytest.raises(asyncpg.exceptions.UniqueViolationError):
        api.call("POST", "/api/v1/cameras/{id}/detections", path={"id": 3}, body=body)


def test_detections_since_and_min_confidence(api: Api, db: DB) -> None:
    newest = db.fetchval("SELECT max(frame_timestamp) FROM person_detections WHERE camera_id = 1")
    assert len(api.call("GET", "/api/v1/cameras/{id}/detections", path={"id": 1})) == 30
    recent = api.call(
        "GET",
        "/api/v1/cameras/{id}/detections",
        path={"id": 1},
        query={"since": (newest - dt.timedelta(minutes=10)).isoformat()},
    )
    # one every 2 minutes: offsets 0, 2, 4, 6, 8 are after newest - 10 min
    assert len(recent) == 5
    stamps = [r["frame_timestamp"] for r in recent]
    assert stamps == sorted(stamps, reverse=True)
    confident = api.call(
        "GET", "/api/v1/cameras/{id}/detections", path={"id": 1}, query={"min_confidence": 0.9}
    )
    expected = db.fetchval(
        "SELECT count(*) FROM person_detections WHERE camera_id = 1 AND confidence_score >= 0.9"
    )
    assert 0 < len(confident) == expected < 30


# ---------------------------------------------------------------------------
# counting: the trigger behind POST /counting
# ---------------------------------------------------------------------------


def test_counting_events_fold_into_hourly_results(api: Api, db: DB) -> None:
    cid = new_camera(api, "Counting Door")
    events = [  # (UTC time, type, count), deliberately out of order
        ("2030-01-15T09:10:00+00:00", "entry", 5),
        ("2030-01-15T09:40:00+00:00", "exit", 2),
        ("2030-01-15T10:05:00+00:00", "entry", 3),
        ("2030-01-15T10:50:00+00:00", "exit", 1),
        ("2030-01-15T08:30:00+00:00", "entry", 4),  # an earlier hour, arriving late
        ("2030-01-15T11:15:00+00:00", "exit", 20),  # more exits than people inside
        ("2030-01-16T00:20:00+00:00", "entry", 2),  # the next UTC day starts from zero
    ]
    for stamp, kind, count in events:
        made = api.call(
            "POST",
            "/api/v1/cameras/{id}/counting",
            path={"id": cid},
            body={"event_type": kind, "count": count, "event_timestamp": stamp},
        )
        assert made[0]["count"] == count and made[0]["event_type"] == kind

    utc = dt.UTC
    expected = [
        # bucket start, in, out, net, occupancy, events
        (dt.datetime(2030, 1, 15, 8, tzinfo=utc), 4, 0, 4, 4, 1),
        (dt.datetime(2030, 1, 15, 9, tzinfo=utc), 5, 2, 3, 7, 2),
        (dt.datetime(2030, 1, 15, 10, tzinfo=utc), 3, 1, 2, 9, 2),
        (dt.datetime(2030, 1, 15, 11, tzinfo=utc), 0, 20, -20, 0, 1),
        (dt.datetime(2030, 1, 16, 0, tzinfo=utc), 2, 0, 2, 2, 1),
    ]
    got = api.call("GET", "/api/v1/cameras/{id}/counting", path={"id": cid})
    assert [
        (
            r["result_timestamp"],
            r["total_in"],
            r["total_out"],
            r["net_count"],
            r["current_occupancy"],
            r["event_count"],
        )
        for r in got
    ] == expected[::-1]
    assert got[0]["period_end"] - got[0]["result_timestamp"] == dt.timedelta(hours=1)
    assert got[0]["last_event_at"] == dt.datetime(2030, 1, 16, 0, 20, tzinfo=utc)

    two = api.call("GET", "/api/v1/cameras/{id}/counting", path={"id": cid}, query={"limit": 2})
    assert [r["result_timestamp"] for r in two] == [expected[4][0], expected[3][0]]

    # the incremental trigger agrees with a rebuild from the events
    def snapshot() -> list[tuple]:
        return [
            tuple(r)
            for r in db.fetch(
                "SELECT result_timestamp, total_in, total_out, day_running_net, event_count, "
                "last_event_at FROM counting_results WHERE camera_id = $1 ORDER BY 1",
                cid,
            )
        ]

    incremental = snapshot()
    assert db.fetchval("SELECT counting_rebuild_results($1)", cid) == len(expected)
    assert snapshot() == incremental


def test_a_counting_post_shows_in_the_next_get(api: Api) -> None:
    before = api.call("GET", "/api/v1/cameras/{id}/counting", path={"id": 1}, query={"limit": 1})
    made = api.call(
        "POST", "/api/v1/cameras/{id}/counting", path={"id": 1}, body={"event_type": "entry"}
    )[0]
    assert made["count"] == 1  # the default
    after = api.call("GET", "/api/v1/cameras/{id}/counting", path={"id": 1}, query={"limit": 1})
    bucket = after[0]
    assert bucket["result_timestamp"] <= made["event_timestamp"] < bucket["period_end"]
    if before and before[0]["result_timestamp"] == bucket["result_timestamp"]:
        assert bucket["total_in"] == before[0]["total_in"] + 1
        assert bucket["event_count"] == before[0]["event_count"] + 1
    else:
        assert (bucket["total_in"], bucket["event_count"]) == (1, 1)
    # tenant 2 does not see it
    with raises_code("CAMERA_NOT_FOUND"):
        api.call("GET", "/api/v1/cameras/{id}/counting", tenant=2, path={"id": 1})


# ---------------------------------------------------------------------------
# analytics
# ---------------------------------------------------------------------------


def test_realtime_analytics_limit(api: Api) -> None:
    rows = api.call("GET", "/api/v1/cameras/{id}/analytics", path={"id": 1})
    assert len(rows) == 60  # the default limit, one sample a minute
    assert (
        len(api.call("GET", "/api/v1/cameras/{id}/analytics", path={"id": 1}, query={"limit": 5}))
        == 5
    )
    stamps = [r["metric_timestamp"] for r in rows]
    assert stamps == sorted(stamps, reverse=True)


def test_historical_analytics_date_range(api: Api, db: DB) -> None:
    today = db.fetchval("SELECT current_date")
    path = "/api/v1/cameras/{id}/analytics/historical"
    default = api.call("GET", path, path={"id": 1})
    assert len(default) == 30  # the last 30 days
    week = api.call(
        "GET",
        path,
        path={"id": 1},
        query={
            "from": (today - dt.timedelta(days=7)).isoformat(),
            "to": (today - dt.timedelta(days=1)).isoformat(),
        },
    )
    assert [r["data_date"] for r in week] == [today - dt.timedelta(days=n) for n in range(7, 0, -1)]
    tenant2 = api.call("GET", path, tenant=2, path={"id": 5})
    assert {r["camera_id"] for r in tenant2} == {5}
    assert [r["total_entries"] for r in tenant2] != [r["total_entries"] for r in default]

    with raises_code("INVALID_DATE_RANGE"):
        api.call("GET", path, path={"id": 1}, query={"from": "2025-02-01", "to": "2025-01-01"})
    with raises_code("INVALID_DATE_RANGE"):
        api.call("GET", path, path={"id": 1}, query={"from": "2023-01-01", "to": "2025-01-01"})
    # checked even for a camera without any daily rows
    with raises_code("INVALID_DATE_RANGE"):
        api.call(
            "GET", path, tenant=2, path={"id": 7}, query={"from": "2025-02-01", "to": "2025-01-01"}
        )


# ---------------------------------------------------------------------------
# validation schemas, sanitization rules, error codes
# ---------------------------------------------------------------------------

VALID_BODIES = {
    ("POST", "/api/v1/cameras"): {
        "camera_name": "Cổng chính - Tòa A",
        "camera_type": "RTSP",
        "stream_url": "rtsp://10.0.0.5:554/live",
        "resolution_width": 1280,
        "resolution_height": 720,
        "frame_rate": 15,
        "confidence_threshold": 0.6,
    },
    ("PUT", "/api/v1/cameras/{id}"): {"is_active": False},
    ("POST", "/api/v1/cameras/{id}/health"): {"status": "online", "fps": 24.5},
    ("POST", "/api/v1/cameras/{id}/streams"): {
        "stream_url": "http://10.0.0.5/mjpeg",
        "stream_id": STREAM_1,
    },
    ("POST", "/api/v1/cameras/{id}/detections"): {
        "detection_id": "det_01-a",
        "confidence_score": 0.5,
        "bbox_x": 0,
        "bbox_y": 0,
        "bbox_width": 1,
        "bbox_height": 1,
        "object_attributes": {"anything": [1, 2]},
    },
    ("POST", "/api/v1/cameras/{id}/counting"): {"event_type": "exit", "zone_id": "line-a"},
}

INVALID_BODIES = [
    (("POST", "/api/v1/cameras"), {"camera_name": "X", "camera_type": "IP"}),  # no stream_url
    (("POST", "/api/v1/cameras"), {**VALID_BODIES[("POST", "/api/v1/cameras")], "oops": 1}),
    (
        ("POST", "/api/v1/cameras"),
        {**VALID_BODIES[("POST", "/api/v1/cameras")], "camera_name": "<script>"},
    ),
    (
        ("POST", "/api/v1/cameras"),
        {**VALID_BODIES[("POST", "/api/v1/cameras")], "camera_type": "Analog"},
    ),
    (
        ("POST", "/api/v1/cameras"),
        {**VALID_BODIES[("POST", "/api/v1/cameras")], "stream_url": "ftp://x/y"},
    ),
    (
        ("POST", "/api/v1/cameras"),
        {**VALID_BODIES[("POST", "/api/v1/cameras")], "confidence_threshold": 0.05},
    ),
    (("PUT", "/api/v1/cameras/{id}"), {}),
    (("PUT", "/api/v1/cameras/{id}"), {"camera_name": "bad/name"}),
    (("POST", "/api/v1/cameras/{id}/health"), {"status": "sleeping"}),
    (("POST", "/api/v1/cameras/{id}/streams"), {"stream_url": "rtsp://x/y", "codec": "DivX"}),
    (
        ("POST", "/api/v1/cameras/{id}/detections"),
        {**VALID_BODIES[("POST", "/api/v1/cameras/{id}/detections")], "confidence_score": 1.5},
    ),
    (
        ("POST", "/api/v1/cameras/{id}/detections"),
        {**VALID_BODIES[("POST", "/api/v1/cameras/{id}/detections")], "detection_id": "a b"},
    ),
    (("POST", "/api/v1/cameras/{id}/counting"), {"event_type": "entry", "count": 0}),
    (("POST", "/api/v1/cameras/{id}/counting"), {"event_type": "enter"}),
]


def schemas(db: DB) -> dict[tuple[str, str], dict[str, Any]]:
    rows = db.fetch(
        """SELECT m.http_method, m.endpoint_path, s.schema_name, s.validation_schema,
                  s.strict_mode, s.allow_unknown_fields, s.sanitize_input, s.applies_to
           FROM api_validation_schemas s JOIN api_endpoint_mappings m ON m.id = s.endpoint_mapping_id
           WHERE m.endpoint_path LIKE $1 || '%'""",
        PREFIX,
    )
    out = {}
    for r in rows:
        row = dict(r)
        row["validation_schema"] = json.loads(row["validation_schema"])
        out[(r["http_method"], r["endpoint_path"])] = row
    return out


def test_every_body_has_a_closed_schema_matching_its_parameters(db: DB) -> None:
    found = schemas(db)
    rows = mappings(db)
    with_body = {
        k for k, r in rows.items() if any(p["in"] == "body" for p in r["query_parameters"])
    }
    assert set(found) == with_body == set(VALID_BODIES)
    names = {k: v["schema_name"] for k, v in found.items()}
    assert names[("POST", "/api/v1/cameras")] == "camera_create"
    assert names[("PUT", "/api/v1/cameras/{id}")] == "camera_update"
    assert names[("POST", "/api/v1/cameras/{id}/detections")] == "detection_create"
    for key, s in found.items():
        schema = s["validation_schema"]
        Draft202012Validator.check_schema(schema)
        assert s["applies_to"] == "body" and s["allow_unknown_fields"] is False, key
        assert s["strict_mode"] and s["sanitize_input"], key
        assert schema["additionalProperties"] is False, key
        body_params = [p for p in rows[key]["query_parameters"] if p["in"] == "body"]
        assert {p["name"] for p in body_params} == set(schema["properties"]), key
        assert {p["name"] for p in body_params if p.get("required")} == set(
            schema.get("required", [])
        ), key


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def test_schemas_accept_good_bodies_and_refuse_bad_ones(db: DB) -> None:
    found = schemas(db)
    for key, body in VALID_BODIES.items():
        errors = list(_validator(found[key]["validation_schema"]).iter_errors(body))
        assert errors == [], (key, [e.message for e in errors])
    for key, body in INVALID_BODIES:
        assert not _validator(found[key]["validation_schema"]).is_valid(body), (key, body)


def test_the_guides_sanitization_rules(db: DB) -> None:
    rows = db.fetch(
        "SELECT field_name, field_type, sanitization_type, sanitization_config, "
        "endpoint_mapping_id, is_active FROM data_sanitization_rules ORDER BY id"
    )
    by_field: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        row = dict(r)
        row["sanitization_config"] = json.loads(row["sanitization_config"])
        by_field.setdefault(r["field_name"], []).append(row)
    guide = {
        "camera_name": ("trim", {"remove_extra_spaces": True, "to_lowercase": False}),
        "stream_url": (
            "validate",
            {"check_url_format": True, "allowed_protocols": ["rtsp", "http", "https"]},
        ),
        "confidence_score": ("validate", {"min": 0.0, "max": 1.0, "precision": 2}),
        "bbox_coordinates": (
            "validate",
            {"required_fields": ["x", "y", "width", "height"], "non_negative": True},
        ),
        "user_input": ("escape", {"escape_html": True, "escape_sql": True}),
    }
    for field, (kind, config) in guide.items():
        assert len(by_field[field]) == 1, field
        rule = by_field[field][0]
        assert rule["sanitization_type"] == kind and rule["sanitization_config"] == config, field
        assert rule["endpoint_mapping_id"] is None and rule["is_active"], field
    zone = by_field["zone_id"]
    assert len(zone) == 1
    assert zone[0]["endpoint_mapping_id"] == db.fetchval(
        "SELECT api_mapping_id('/api/v1/cameras/{id}/counting', 'POST')"
    )


def test_domain_error_codes_and_the_codes_the_sql_raises(db: DB) -> None:
    rows = {
        r["error_code"]: r
        for r in db.fetch(
            "SELECT error_code, http_status_code, error_message, localized_messages "
            "FROM api_error_codes"
        )
    }
    wanted = {
        "CAMERA_NOT_FOUND": 404,
        "CAMERA_INACTIVE": 400,
        "INVALID_CAMERA_CONFIG": 400,
        "STREAM_CONNECTION_FAILED": 503,
        "DETECTION_FAILED": 500,
        "COUNTING_ERROR": 500,
        "STREAM_NOT_FOUND": 404,
        "DETECTION_NOT_FOUND": 404,
        "INVALID_DATE_RANGE": 400,
    }
    vietnamese = re.compile(r"[ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ]", re.I)
    for code, status in wanted.items():
        row = rows[code]
        assert row["http_status_code"] == status, code
        assert row["error_message"], code
        vi = json.loads(row["localized_messages"]).get("vi", "")
        assert vietnamese.search(vi), (code, vi)
    raised = set()
    for f in SEED_DIR.glob("*.sql"):
        raised |= set(re.findall(r"RAISE EXCEPTION '([A-Z_]+)'", f.read_text(encoding="utf-8")))
    assert raised and raised <= set(rows)


# ---------------------------------------------------------------------------
# idempotence
# ---------------------------------------------------------------------------


def test_reapplying_every_seed_file_changes_nothing(db: DB) -> None:
    files = sorted(SEED_DIR.glob("*.sql"))
    assert [f.name for f in files] == [
        "001_tables.sql",
        "002_sample_data.sql",
        "003_endpoints.sql",
        "004_cache_rules.sql",
    ]
    before = table_fingerprints(db)
    versions = db.fetch("SELECT id, version, updated_at FROM api_endpoint_mappings ORDER BY id")
    assert before["camera_configurations"][0] == 7
    assert before["counting_results"][0] > 0
    for f in files:
        db.execute(f.read_text(encoding="utf-8"))
    assert table_fingerprints(db) == before
    assert db.fetch("SELECT id, version, updated_at FROM api_endpoint_mappings ORDER BY id") == (
        versions
    )


def test_reapplying_the_sample_data_after_a_soft_delete_still_works(api: Api, db: DB) -> None:
    api.call("DELETE", "/api/v1/cameras/{id}", path={"id": 1})
    before = table_fingerprints(db)
    db.execute((SEED_DIR / "002_sample_data.sql").read_text(encoding="utf-8"))
    assert table_fingerprints(db) == before
