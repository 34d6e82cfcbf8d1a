"""The camera_counting seed domain over real HTTP: every seeded endpoint, as a consumer sees it.

Each test gets a fresh clone of the migrated and seeded database and its own
engine on a real socket; callers authenticate with real bearer tokens (tenant 1
is the mall with cameras 1-4, camera 4 soft-deleted; tenant 2 the store with
cameras 5-7). Expected values are read from the database, never hard-coded
from the seed's formulas. ``test_every_seeded_camera_endpoint_is_served_and_tested``
fails when a camera row is added without a test here (``@covers``).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx

from tests.engine_server import EngineClient
from tests.helpers import assert_problem, catalog_report, offset_links, serve
from tests.pg import DB

CAMERAS = "/api/v1/cameras"

LIST_CAMERAS = ("GET", "/api/v1/cameras")
CREATE_CAMERA = ("POST", "/api/v1/cameras")
GET_CAMERA = ("GET", "/api/v1/cameras/{id}")
UPDATE_CAMERA = ("PUT", "/api/v1/cameras/{id}")
DELETE_CAMERA = ("DELETE", "/api/v1/cameras/{id}")
LIST_HEALTH = ("GET", "/api/v1/cameras/{id}/health")
CREATE_HEALTH = ("POST", "/api/v1/cameras/{id}/health")
LIST_STREAMS = ("GET", "/api/v1/cameras/{id}/streams")
GET_STREAM = ("GET", "/api/v1/cameras/{id}/streams/{stream_id}")
CREATE_STREAM = ("POST", "/api/v1/cameras/{id}/streams")
LIST_DETECTIONS = ("GET", "/api/v1/cameras/{id}/detections")
GET_DETECTION = ("GET", "/api/v1/cameras/{id}/detections/{detection_id}")
CREATE_DETECTION = ("POST", "/api/v1/cameras/{id}/detections")
LIST_COUNTING = ("GET", "/api/v1/cameras/{id}/counting")
CREATE_COUNTING = ("POST", "/api/v1/cameras/{id}/counting")
REALTIME = ("GET", "/api/v1/cameras/{id}/analytics")
HISTORICAL = ("GET", "/api/v1/cameras/{id}/analytics/historical")

STREAM_101 = "6f1c0000-0000-4000-8000-000000000101"  # camera 1 (tenant 1), main
STREAM_601 = "6f1c0000-0000-4000-8000-000000000601"  # camera 6 (tenant 2), main

CAMERA_COLUMNS = (
    "camera_id, camera_name, camera_type, stream_url, location, resolution_width, "
    "resolution_height, frame_rate, confidence_threshold, ai_model_id, is_active, "
    "created_at, updated_at"
)
HEALTH_COLUMNS = (
    "health_id, camera_id, status, fps, cpu_usage_percent, memory_usage_mb, "
    "temperature_celsius, network_latency_ms, uptime_seconds, error_message, checked_at"
)
STREAM_COLUMNS = (
    "stream_id, camera_id, stream_type, protocol, stream_url, codec, resolution_width, "
    "resolution_height, frame_rate, bitrate_kbps, status, created_at, updated_at"
)
DETECTION_COLUMNS = (
    "detection_id, camera_id, frame_timestamp, track_id, confidence_score, bbox_x, bbox_y, "
    "bbox_width, bbox_height, object_attributes, created_at"
)
COUNTING_COLUMNS = (
    "camera_id, result_timestamp, period_end, total_in, total_out, net_count, "
    "current_occupancy, event_count, last_event_at, updated_at"
)
EVENT_COLUMNS = (
    "event_id, camera_id, event_type, count, event_timestamp, zone_id, track_id, "
    "confidence_score, metadata, created_at"
)
REALTIME_COLUMNS = (
    "camera_id, metric_timestamp, current_count, occupancy, people_in, people_out, "
    "avg_dwell_time_seconds, crowd_density, processing_fps, processing_latency_ms, alert_level"
)
HISTORICAL_COLUMNS = (
    "camera_id, data_date, total_entries, total_exits, unique_visitors, peak_occupancy, "
    "peak_hour, avg_occupancy, avg_dwell_time_seconds"
)
JSONB_COLUMNS = {"object_attributes", "metadata"}

# ---------------------------------------------------------------------------
# coverage registry: every test names the seeded endpoints it exercises
# ---------------------------------------------------------------------------

COVERED: dict[tuple[str, str], set[str]] = {}


def covers(*endpoints: tuple[str, str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        for endpoint in endpoints:
            COVERED.setdefault(endpoint, set()).add(fn.__name__)
        return fn

    return mark


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def admin(client: EngineClient, tenant: int = 1, sub: str = "alice") -> dict[str, str]:
    return client.auth(sub=sub, tenant=tenant, roles=("camera_admin",))


def operator(client: EngineClient, tenant: int = 1) -> dict[str, str]:
    return client.auth(sub="olga", tenant=tenant, roles=("operator",))


def viewer(client: EngineClient, tenant: int = 1) -> dict[str, str]:
    return client.auth(sub="victor", tenant=tenant, roles=("viewer",))


def as_json(name: str, value: Any) -> Any:
    """A database value as the engine writes it in JSON (and httpx reads it back)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if name in JSONB_COLUMNS and isinstance(value, str):
        return json.loads(value)
    return value


def rows(db: DB, sql: str, *args: Any) -> list[dict[str, Any]]:
    return [{k: as_json(k, v) for k, v in r.items()} for r in db.fetch(sql, *args)]


def row(db: DB, sql: str, *args: Any) -> dict[str, Any]:
    found = rows(db, sql, *args)
    assert len(found) == 1, found
    return found[0]


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def page(response: httpx.Response) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    body = ok(response)
    assert set(body) == {"data", "pagination"}, body
    return body["data"], offset_links(response, body["pagination"])


def pagination(limit: int, offset: int, count: int, has_more: bool) -> dict[str, Any]:
    return {
        "limit": limit,
        "offset": offset,
        "count": count,
        "has_more": has_more,
        "next_offset": offset + limit if has_more else None,
    }


def pointers(body: dict[str, Any]) -> dict[str, str]:
    """{pointer: keyword} of a VALIDATION_ERROR body (several keywords joined by '+')."""
    found: dict[str, set[str]] = {}
    for error in body["errors"]:
        assert error["message"], error
        found.setdefault(error["pointer"], set()).add(error["keyword"])
    return {pointer: "+".join(sorted(keywords)) for pointer, keywords in found.items()}


def vi_title(db: DB, code: str) -> str:
    title = db.fetchval(
        "SELECT localized_messages->>'vi' FROM api_error_codes WHERE error_code = $1", code
    )
    assert title
    return title


def assert_vietnamese(db: DB, response: httpx.Response, status: int, code: str) -> None:
    body = assert_problem(response, status, code)
    assert body["title"] == vi_title(db, code)
    assert response.headers["content-language"] == "vi"


def snapshot(db: DB) -> dict[str, Any]:
    """A fingerprint of every table a camera endpoint writes."""
    record = db.fetchrow(
        """
        SELECT (SELECT md5(string_agg(c::text, '|' ORDER BY c.camera_id))
                FROM camera_configurations c) AS cameras,
               (SELECT md5(string_agg(s::text, '|' ORDER BY s.stream_id))
                FROM video_streams s) AS streams,
               (SELECT count(*) FROM camera_health) AS health,
               (SELECT count(*) FROM person_detections) AS detections,
               (SELECT count(*) FROM counting_events) AS events,
               (SELECT md5(string_agg(r::text, '|' ORDER BY r.result_id))
                FROM counting_results r) AS results
        """
    )
    return dict(record)


def camera(db: DB, camera_id: int) -> dict[str, Any]:
    return row(
        db, f"SELECT {CAMERA_COLUMNS} FROM camera_configurations WHERE camera_id = $1", camera_id
    )


def counting_results(db: DB, camera_id: int, limit: int = 1000) -> list[dict[str, Any]]:
    return rows(
        db,
        f"SELECT {COUNTING_COLUMNS} FROM counting_results WHERE camera_id = $1 "
        "ORDER BY result_timestamp DESC LIMIT $2",
        camera_id,
        limit,
    )


def parse_ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---------------------------------------------------------------------------
# the list of seeded endpoints
# ---------------------------------------------------------------------------


def test_every_seeded_camera_endpoint_is_served_and_tested(
    make_client: Callable[..., EngineClient], db: DB
) -> None:
    seeded = {
        (r["http_method"], r["endpoint_path"])
        for r in db.fetch(
            "SELECT http_method, endpoint_path FROM api_endpoint_mappings "
            "WHERE endpoint_path = $1 OR endpoint_path LIKE $1 || '/%'",
            CAMERAS,
        )
    }
    untested = seeded - set(COVERED)
    assert not untested, f"seeded camera endpoints without an HTTP test: {sorted(untested)}"
    stale = set(COVERED) - seeded
    assert not stale, f"tests name endpoints that are not seeded: {sorted(stale)}"
    assert all(COVERED.values())

    client = serve(make_client)
    report = catalog_report(client)
    served = {(e["method"], e["path"]) for e in report["endpoints"]}
    assert seeded <= served, sorted(seeded - served)
    assert not [p for p in report["problems"] if (p.get("path") or "").startswith(CAMERAS)]


# ---------------------------------------------------------------------------
# cameras
# ---------------------------------------------------------------------------


@covers(LIST_CAMERAS)
def test_list_cameras_pages_filters_and_isolates_tenants(client: EngineClient, db: DB) -> None:
    active = (
        f"SELECT {CAMERA_COLUMNS} FROM camera_configurations "
        "WHERE tenant_id = $1 AND is_active ORDER BY camera_id"
    )
    tenant_1 = rows(db, active, 1)
    assert len(tenant_1) >= 3 and 4 not in [c["camera_id"] for c in tenant_1]
    h = admin(client)

    data, meta = page(client.get(CAMERAS, headers=h))
    assert data == tenant_1
    assert meta == pagination(50, 0, len(tenant_1), False)

    data, meta = page(client.get(CAMERAS, params={"limit": 2, "offset": 0}, headers=h))
    assert data == tenant_1[:2]
    assert meta == pagination(2, 0, 2, True)
    data, meta = page(client.get(CAMERAS, params={"limit": 2, "offset": 2}, headers=h))
    assert data == tenant_1[2:4]
    assert meta == pagination(2, 2, len(tenant_1[2:4]), len(tenant_1) > 4)

    data, _ = page(client.get(CAMERAS, params={"camera_type": "RTSP"}, headers=h))
    assert data == [c for c in tenant_1 if c["camera_type"] == "RTSP"] and data

    # any role reads; tenant 2 sees only its own active cameras
    data, _ = page(client.get(CAMERAS, headers=viewer(client, tenant=2)))
    assert data == rows(db, active, 2)
    assert {c["camera_id"] for c in data}.isdisjoint({c["camera_id"] for c in tenant_1})

    body = assert_problem(
        client.get(CAMERAS, params={"limit": 501, "offset": -1}, headers=h),
        400,
        "INVALID_PARAMETER",
    )
    assert {e["parameter"] for e in body["errors"]} == {"limit", "offset"}
    response = client.get(CAMERAS)
    assert_problem(response, 401, "AUTHENTICATION_REQUIRED")
    assert response.headers["www-authenticate"].startswith("Bearer")


@covers(GET_CAMERA)
def test_get_camera_with_model_soft_deleted_and_not_found(client: EngineClient, db: DB) -> None:
    sql = (
        "SELECT c.camera_id, c.camera_name, c.camera_type, c.stream_url, c.location, "
        "c.resolution_width, c.resolution_height, c.frame_rate, c.confidence_threshold, "
        "c.ai_model_id, m.model_name AS ai_model_name, m.model_version AS ai_model_version, "
        "c.is_active, c.created_at, c.updated_at FROM camera_configurations c "
        "LEFT JOIN ai_detection_models m ON m.model_id = c.ai_model_id WHERE c.camera_id = $1"
    )
    h = admin(client)
    body = ok(client.get(f"{CAMERAS}/1", headers=h))
    assert body == row(db, sql, 1)
    assert body["ai_model_name"] and body["is_active"] is True

    # a soft-deleted camera is still readable, flagged inactive, with no model
    body = ok(client.get(f"{CAMERAS}/4", headers=viewer(client)))
    assert body == row(db, sql, 4)
    assert body["is_active"] is False and body["ai_model_name"] is None

    # another tenant's camera is reported exactly like a missing one
    for camera_id in (5, 7, 999):
        body = assert_problem(
            client.get(f"{CAMERAS}/{camera_id}", headers=h), 404, "CAMERA_NOT_FOUND"
        )
        assert body["instance"] == f"{CAMERAS}/{camera_id}"
        assert body["type"] == "urn:api-error:CAMERA_NOT_FOUND"
    assert_vietnamese(
        db,
        client.get(f"{CAMERAS}/5", headers={**h, "Accept-Language": "vi"}),
        404,
        "CAMERA_NOT_FOUND",
    )
    assert ok(client.get(f"{CAMERAS}/5", headers=admin(client, tenant=2)))["camera_id"] == 5

    body = assert_problem(client.get(f"{CAMERAS}/abc", headers=h), 400, "INVALID_PARAMETER")
    assert [e["parameter"] for e in body["errors"]] == ["id"]


@covers(CREATE_CAMERA, LIST_CAMERAS, GET_CAMERA)
def test_create_camera_applies_defaults_and_sanitization(client: EngineClient, db: DB) -> None:
    h = admin(client)
    page(client.get(CAMERAS, headers=h))  # fill the list cache: the POST must drop it

    response = client.post(
        CAMERAS,
        json={
            "camera_name": "  Lobby   East  ",
            "camera_type": "HTTP",
            "stream_url": "https://cam.mall.example/lobby-east",
            "location": "Building B - lobby",
        },
        headers=h,
    )
    created = ok(response, 201)
    assert created["camera_name"] == "Lobby East"  # trimmed, inner runs of spaces collapsed
    assert created["resolution_width"] == 1920 and created["resolution_height"] == 1080
    assert created["frame_rate"] == 25 and created["confidence_threshold"] == 0.5
    assert created["ai_model_id"] is None and created["is_active"] is True
    assert created == camera(db, created["camera_id"])
    assert (
        db.fetchval(
            "SELECT tenant_id FROM camera_configurations WHERE camera_id = $1",
            created["camera_id"],
        )
        == 1
    )
    assert created["camera_id"] > 7  # after the sample ids

    # a Vietnamese name, explicit settings and an AI model
    vn = ok(
        client.post(
            CAMERAS,
            json={
                "camera_name": "Cổng chính",
                "camera_type": "RTSP",
                "stream_url": "rtsp://10.10.9.1:554/main",
                "resolution_width": 1280,
                "resolution_height": 720,
                "frame_rate": 12,
                "confidence_threshold": 0.35,
                "ai_model_id": 3,
            },
            headers=h,
        ),
        201,
    )
    assert vn == camera(db, vn["camera_id"])
    assert vn["camera_name"] == "Cổng chính" and vn["confidence_threshold"] == 0.35
    single = ok(client.get(f"{CAMERAS}/{vn['camera_id']}", headers=h))
    assert single["ai_model_name"] == db.fetchval(
        "SELECT model_name FROM ai_detection_models WHERE model_id = 3"
    )

    data, _ = page(client.get(CAMERAS, headers=h))
    ids = [c["camera_id"] for c in data]
    assert created["camera_id"] in ids and vn["camera_id"] in ids
    assert ids == sorted(ids)

    # names are unique per tenant only: tenant 2 may use the same one
    other = ok(
        client.post(
            CAMERAS,
            json={"camera_name": "Lobby East", "camera_type": "IP", "stream_url": "rtsp://s/1"},
            headers=admin(client, tenant=2),
        ),
        201,
    )
    assert (
        db.fetchval(
            "SELECT tenant_id FROM camera_configurations WHERE camera_id = $1", other["camera_id"]
        )
        == 2
    )


@covers(CREATE_CAMERA)
def test_create_camera_rejects_bad_bodies(client: EngineClient, db: DB) -> None:
    h = admin(client)
    before = snapshot(db)

    body = assert_problem(
        client.post(
            CAMERAS,
            json={
                "camera_name": "Bad!",
                "camera_type": "Foo",
                "resolution_width": 10,
                "frame_rate": 0,
                "confidence_threshold": 0.05,
            },
            headers=h,
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert pointers(body) == {
        "/stream_url": "required",
        "/camera_name": "pattern",
        "/camera_type": "enum",
        "/resolution_width": "minimum",
        "/frame_rate": "minimum",
        "/confidence_threshold": "minimum",
    }

    valid = {"camera_name": "Side Door", "camera_type": "IP", "stream_url": "rtsp://10.0.0.9/s"}
    body = assert_problem(
        client.post(CAMERAS, json={**valid, "tenant_id": 2, "colour": "red"}, headers=h),
        400,
        "VALIDATION_ERROR",
    )
    assert pointers(body) == {
        "/tenant_id": "additionalProperties",
        "/colour": "additionalProperties",
    }

    # the stream_url sanitization rule: absolute URL with rtsp, http or https
    rule_message = db.fetchval(
        "SELECT error_message FROM data_sanitization_rules WHERE field_name = 'stream_url'"
    )
    for url in ("rtmp://10.0.0.9/live", "10.0.0.9/live"):
        body = assert_problem(
            client.post(CAMERAS, json={**valid, "stream_url": url}, headers=h),
            400,
            "VALIDATION_ERROR",
        )
        assert body["errors"] == [
            {"pointer": "/stream_url", "message": rule_message, "keyword": "sanitize:validate"}
        ]
    # a name that is empty once trimmed
    body = assert_problem(
        client.post(CAMERAS, json={**valid, "camera_name": "   "}, headers=h),
        400,
        "VALIDATION_ERROR",
    )
    assert pointers(body) == {"/camera_name": "sanitize:trim"}

    response = client.post(
        CAMERAS, content=b"{not json", headers={**h, "Content-Type": "application/json"}
    )
    assert_problem(response, 400, "INVALID_JSON")

    # configuration checks of the trigger
    body = assert_problem(
        client.post(
            CAMERAS,
            json={**valid, "camera_type": "RTSP", "stream_url": "http://10.0.0.9/s"},
            headers=h,
        ),
        400,
        "INVALID_CAMERA_CONFIG",
    )
    assert "rtsp://" in body["detail"]
    body = assert_problem(
        client.post(CAMERAS, json={**valid, "ai_model_id": 4}, headers=h),
        400,
        "INVALID_CAMERA_CONFIG",
    )
    assert "4" in body["detail"]

    # an active camera of the tenant already has this name (trimmed, any case)
    body = assert_problem(
        client.post(CAMERAS, json={**valid, "camera_name": " main   ENTRANCE "}, headers=h),
        409,
        "DUPLICATE_RESOURCE",
    )
    assert "camera_configurations" not in json.dumps(body)

    assert snapshot(db) == before


@covers(UPDATE_CAMERA, GET_CAMERA, LIST_CAMERAS)
def test_update_camera_is_partial_and_reactivates(client: EngineClient, db: DB) -> None:
    h = admin(client)
    before = camera(db, 2)
    ok(client.get(f"{CAMERAS}/2", headers=h))  # cached: the PUT must drop it

    updated = ok(
        client.put(
            f"{CAMERAS}/2",
            json={"camera_name": "  Parking   North Gate B ", "frame_rate": 30},
            headers=h,
        )
    )
    assert updated == camera(db, 2)
    assert updated["camera_name"] == "Parking North Gate B" and updated["frame_rate"] == 30
    unchanged = {
        k: v for k, v in before.items() if k not in ("camera_name", "frame_rate", "updated_at")
    }
    assert {k: updated[k] for k in unchanged} == unchanged
    assert parse_ts(updated["updated_at"]) > parse_ts(before["updated_at"])
    got = ok(client.get(f"{CAMERAS}/2", headers=h))
    assert got["camera_name"] == "Parking North Gate B" and got["frame_rate"] == 30

    # "is_active": true brings a soft-deleted camera back into the list
    data, _ = page(client.get(CAMERAS, headers=h))
    assert 4 not in [c["camera_id"] for c in data]
    revived = ok(client.put(f"{CAMERAS}/4", json={"is_active": True, "ai_model_id": 2}, headers=h))
    assert revived["is_active"] is True and revived["ai_model_id"] == 2
    assert revived == camera(db, 4)
    data, _ = page(client.get(CAMERAS, headers=h))
    assert 4 in [c["camera_id"] for c in data]


@covers(UPDATE_CAMERA)
def test_update_camera_rejects_bad_bodies_and_foreign_cameras(client: EngineClient, db: DB) -> None:
    h = admin(client)
    before = snapshot(db)

    body = assert_problem(client.put(f"{CAMERAS}/1", json={}, headers=h), 400, "VALIDATION_ERROR")
    assert pointers(body) == {"": "minProperties"}
    body = assert_problem(
        client.put(
            f"{CAMERAS}/1",
            json={
                "camera_type": "Foo",
                "is_active": "yes",
                "resolution_height": 5000,
                "tenant_id": 2,
            },
            headers=h,
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert pointers(body) == {
        "/camera_type": "enum",
        "/is_active": "type",
        "/resolution_height": "maximum",
        "/tenant_id": "additionalProperties",
    }
    body = assert_problem(
        client.put(f"{CAMERAS}/1", json={"stream_url": "ftp://10.0.0.1/x"}, headers=h),
        400,
        "VALIDATION_ERROR",
    )
    assert pointers(body) == {"/stream_url": "sanitize:validate"}

    # tenant 2's camera and a missing one: 404, nothing changes
    for camera_id in (5, 999):
        assert_problem(
            client.put(f"{CAMERAS}/{camera_id}", json={"location": "Hijacked"}, headers=h),
            404,
            "CAMERA_NOT_FOUND",
        )

    # the trigger's configuration checks see the merged row
    body = assert_problem(
        client.put(f"{CAMERAS}/3", json={"camera_type": "RTSP"}, headers=h),
        400,
        "INVALID_CAMERA_CONFIG",
    )
    assert "RTSP" in body["detail"]
    assert_problem(
        client.put(f"{CAMERAS}/1", json={"ai_model_id": 4}, headers=h), 400, "INVALID_CAMERA_CONFIG"
    )
    # names stay unique among the tenant's active cameras
    assert_problem(
        client.put(f"{CAMERAS}/1", json={"camera_name": "FOOD COURT"}, headers=h),
        409,
        "DUPLICATE_RESOURCE",
    )
    assert snapshot(db) == before

    # reactivating a camera whose name an active camera took meanwhile
    ok(
        client.post(
            CAMERAS,
            json={
                "camera_name": "Old Lobby Camera",
                "camera_type": "IP",
                "stream_url": "rtsp://n/1",
            },
            headers=h,
        ),
        201,
    )
    assert_problem(
        client.put(f"{CAMERAS}/4", json={"is_active": True}, headers=h), 409, "DUPLICATE_RESOURCE"
    )
    assert camera(db, 4)["is_active"] is False


@covers(
    DELETE_CAMERA,
    GET_CAMERA,
    LIST_CAMERAS,
    CREATE_STREAM,
    CREATE_DETECTION,
    CREATE_COUNTING,
    CREATE_HEALTH,
)
def test_delete_camera_soft_deletes_and_blocks_new_data(client: EngineClient, db: DB) -> None:
    h = admin(client)
    data, _ = page(client.get(CAMERAS, headers=h))
    assert 3 in [c["camera_id"] for c in data]
    assert ok(client.get(f"{CAMERAS}/3", headers=h))["is_active"] is True  # cached now
    assert db.fetchval(
        "SELECT count(*) FROM video_streams WHERE camera_id = 3 AND status = 'active'"
    )

    deleted = ok(client.delete(f"{CAMERAS}/3", headers=h))
    stored = camera(db, 3)
    assert deleted == {
        "camera_id": 3,
        "camera_name": stored["camera_name"],
        "is_active": False,
        "updated_at": stored["updated_at"],
    }
    assert stored["is_active"] is False
    got = ok(client.get(f"{CAMERAS}/3", headers=h))
    assert got["is_active"] is False and got["camera_name"] == stored["camera_name"]
    data, _ = page(client.get(CAMERAS, headers=h))
    assert 3 not in [c["camera_id"] for c in data]
    assert {
        r["status"] for r in db.fetch("SELECT status FROM video_streams WHERE camera_id = 3")
    } == {"inactive"}
    # its data stays readable
    health, _ = page(client.get(f"{CAMERAS}/3/health", headers=h))
    assert len(health) == min(
        20, db.fetchval("SELECT count(*) FROM camera_health WHERE camera_id = 3")
    )

    # deleting again is harmless; another tenant's or a missing camera is 404
    assert ok(client.delete(f"{CAMERAS}/3", headers=h))["is_active"] is False
    for camera_id in (5, 999):
        assert_problem(client.delete(f"{CAMERAS}/{camera_id}", headers=h), 404, "CAMERA_NOT_FOUND")
    assert camera(db, 5)["is_active"] is True

    # new streams, detections and counting events are refused; health reports are not
    before = snapshot(db)
    writes = [
        (f"{CAMERAS}/3/streams", {"stream_url": "http://10.10.1.13/alt"}),
        (
            f"{CAMERAS}/3/detections",
            {
                "detection_id": "late-1",
                "confidence_score": 0.9,
                "bbox_x": 1,
                "bbox_y": 1,
                "bbox_width": 10,
                "bbox_height": 10,
            },
        ),
        (f"{CAMERAS}/3/counting", {"event_type": "entry"}),
    ]
    for path, payload in writes:
        body = assert_problem(client.post(path, json=payload, headers=h), 400, "CAMERA_INACTIVE")
        assert body["detail"] == "Camera 3 is inactive"
    assert_vietnamese(
        db,
        client.post(
            f"{CAMERAS}/3/counting",
            json={"event_type": "exit"},
            headers={**h, "Accept-Language": "vi,en;q=0.5"},
        ),
        400,
        "CAMERA_INACTIVE",
    )
    assert snapshot(db) == before
    report = ok(client.post(f"{CAMERAS}/3/health", json={"status": "offline"}, headers=h), 201)
    assert report["camera_id"] == 3 and report["status"] == "offline"


@covers(DELETE_CAMERA, LIST_STREAMS, GET_STREAM)
def test_delete_camera_shows_its_streams_inactive_at_once(client: EngineClient, db: DB) -> None:
    """The trigger writes video_streams; the rows say so, so cached stream reads are dropped."""
    h = admin(client)
    data, _ = page(client.get(f"{CAMERAS}/1/streams", headers=h))
    assert {s["status"] for s in data} == {"active"}
    assert ok(client.get(f"{CAMERAS}/1/streams/{STREAM_101}", headers=h))["status"] == "active"

    ok(client.delete(f"{CAMERAS}/1", headers=h))
    expected = rows(
        db,
        f"SELECT {STREAM_COLUMNS} FROM video_streams WHERE camera_id = 1 "
        "ORDER BY created_at, stream_id",
    )
    assert {s["status"] for s in expected} == {"inactive"}
    data, _ = page(client.get(f"{CAMERAS}/1/streams", headers=h))
    assert data == expected
    assert ok(client.get(f"{CAMERAS}/1/streams/{STREAM_101}", headers=h))["status"] == "inactive"


@covers(
    CREATE_CAMERA,
    UPDATE_CAMERA,
    DELETE_CAMERA,
    CREATE_HEALTH,
    CREATE_STREAM,
    CREATE_DETECTION,
    CREATE_COUNTING,
)
def test_writes_need_one_of_the_required_roles(client: EngineClient, db: DB) -> None:
    detection = {
        "detection_id": "roles-1",
        "confidence_score": 0.9,
        "bbox_x": 1,
        "bbox_y": 1,
        "bbox_width": 10,
        "bbox_height": 10,
    }
    new_camera = {"camera_name": "Role Cam", "camera_type": "IP", "stream_url": "rtsp://r/1"}
    # (method, path, body, roles that are refused)
    cases = [
        ("POST", CAMERAS, new_camera, [(), ("operator",), ("viewer",)]),
        ("PUT", f"{CAMERAS}/1", {"location": "Nope"}, [(), ("operator",)]),
        ("DELETE", f"{CAMERAS}/1", None, [(), ("operator",)]),
        ("POST", f"{CAMERAS}/1/streams", {"stream_url": "rtsp://r/2"}, [(), ("operator",)]),
        ("POST", f"{CAMERAS}/1/health", {"status": "online"}, [(), ("viewer",)]),
        ("POST", f"{CAMERAS}/1/detections", detection, [(), ("viewer", "analyst")]),
        ("POST", f"{CAMERAS}/1/counting", {"event_type": "entry"}, [(), ("CAMERA_ADMIN",)]),
    ]
    before = snapshot(db)
    for method, path, payload, refused in cases:
        for roles in refused:
            headers = client.auth(sub="nobody", tenant=1, roles=roles)
            response = client.request(method, path, json=payload, headers=headers)
            assert_problem(response, 403, "INSUFFICIENT_PERMISSIONS")
    assert snapshot(db) == before

    # operators may report health, detections and counting
    op = operator(client)
    ok(client.post(f"{CAMERAS}/1/health", json={"status": "online"}, headers=op), 201)
    ok(client.post(f"{CAMERAS}/1/detections", json=detection, headers=op), 201)
    ok(client.post(f"{CAMERAS}/1/counting", json={"event_type": "entry"}, headers=op), 201)


@covers(
    GET_CAMERA,
    UPDATE_CAMERA,
    DELETE_CAMERA,
    LIST_HEALTH,
    CREATE_HEALTH,
    LIST_STREAMS,
    GET_STREAM,
    CREATE_STREAM,
    LIST_DETECTIONS,
    GET_DETECTION,
    CREATE_DETECTION,
    LIST_COUNTING,
    CREATE_COUNTING,
    REALTIME,
    HISTORICAL,
)
def test_another_tenants_camera_is_not_found_everywhere(client: EngineClient, db: DB) -> None:
    """Tenant 2's admin reaches tenant 1's camera 1 by no endpoint; its own camera works."""
    t2 = admin(client, tenant=2, sub="bob")
    detection = {
        "detection_id": "t2-1",
        "confidence_score": 0.9,
        "bbox_x": 1,
        "bbox_y": 1,
        "bbox_width": 10,
        "bbox_height": 10,
    }
    requests = [
        ("GET", "", None),
        ("PUT", "", {"location": "Stolen"}),
        ("DELETE", "", None),
        ("GET", "/health", None),
        ("POST", "/health", {"status": "error"}),
        ("GET", "/streams", None),
        ("GET", f"/streams/{STREAM_101}", None),
        ("POST", "/streams", {"stream_url": "rtsp://evil/1"}),
        ("GET", "/detections", None),
        ("GET", "/detections/cam1-det-0000", None),
        ("POST", "/detections", detection),
        ("GET", "/counting", None),
        ("POST", "/counting", {"event_type": "entry", "count": 50}),
        ("GET", "/analytics", None),
        ("GET", "/analytics/historical", None),
    ]
    before = snapshot(db)
    for method, suffix, payload in requests:
        response = client.request(method, f"{CAMERAS}/1{suffix}", json=payload, headers=t2)
        assert_problem(response, 404, "CAMERA_NOT_FOUND")
    assert snapshot(db) == before

    # the same requests on its own camera 5 succeed
    for method, suffix, _ in requests:
        if method != "GET":
            continue
        suffix = suffix.replace(STREAM_101, "6f1c0000-0000-4000-8000-000000000501").replace(
            "cam1-", "cam5-"
        )
        response = client.get(f"{CAMERAS}/5{suffix}", headers=t2)
        assert response.status_code == 200, (suffix, response.text)


# ---------------------------------------------------------------------------
# health
# ---------------------------------------------------------------------------


@covers(LIST_HEALTH)
def test_list_health_newest_first_with_filter_and_pages(client: EngineClient, db: DB) -> None:
    sql = (
        f"SELECT {HEALTH_COLUMNS} FROM camera_health WHERE camera_id = $1 "
        "AND ($2::text IS NULL OR status = $2) ORDER BY checked_at DESC, health_id DESC"
    )
    h = viewer(client)
    expected = rows(db, sql, 2, None)
    assert 20 > len(expected) > 10
    data, meta = page(client.get(f"{CAMERAS}/2/health", headers=h))
    assert data == expected
    assert meta == pagination(20, 0, len(expected), False)

    data, meta = page(
        client.get(f"{CAMERAS}/2/health", params={"limit": 5, "offset": 5}, headers=h)
    )
    assert data == expected[5:10]
    assert meta == pagination(5, 5, 5, True)
    data, meta = page(
        client.get(f"{CAMERAS}/2/health", params={"limit": 5, "offset": 10}, headers=h)
    )
    assert data == expected[10:15]
    assert meta["has_more"] is False and meta["next_offset"] is None

    degraded = rows(db, sql, 2, "degraded")
    assert degraded
    data, _ = page(client.get(f"{CAMERAS}/2/health", params={"status": "degraded"}, headers=h))
    assert data == degraded
    data, _ = page(client.get(f"{CAMERAS}/2/health", params={"status": "maintenance"}, headers=h))
    assert data == []

    # a soft-deleted camera's reports stay readable
    data, _ = page(client.get(f"{CAMERAS}/4/health", headers=h))
    assert data == rows(db, sql, 4, None) and {r["status"] for r in data} == {"offline"}

    for camera_id in (5, 999):
        body = assert_problem(
            client.get(f"{CAMERAS}/{camera_id}/health", headers=h), 404, "CAMERA_NOT_FOUND"
        )
        assert body["detail"] == f"No camera with id {camera_id}"
    assert_problem(
        client.get(f"{CAMERAS}/2/health", params={"limit": 501}, headers=h),
        400,
        "INVALID_PARAMETER",
    )


@covers(CREATE_HEALTH, LIST_HEALTH)
def test_create_health_report(client: EngineClient, db: DB) -> None:
    h = operator(client)
    page(client.get(f"{CAMERAS}/2/health", headers=h))  # cached: the POST must drop it
    report = {
        "status": "degraded",
        "fps": 12.5,
        "cpu_usage_percent": 91.25,
        "memory_usage_mb": 2048,
        "temperature_celsius": 71.5,
        "network_latency_ms": 340,
        "uptime_seconds": 3600,
        "error_message": "Fan failure",
        "checked_at": "2030-01-01T08:00:00Z",
    }
    created = ok(client.post(f"{CAMERAS}/2/health", json=report, headers=h), 201)
    stored = row(
        db, f"SELECT {HEALTH_COLUMNS} FROM camera_health WHERE health_id = $1", created["health_id"]
    )
    assert created == stored
    assert created["camera_id"] == 2
    assert {k: created[k] for k in report if k != "checked_at"} == {
        k: v for k, v in report.items() if k != "checked_at"
    }
    assert parse_ts(created["checked_at"]) == dt.datetime(2030, 1, 1, 8, tzinfo=dt.UTC)
    data, _ = page(client.get(f"{CAMERAS}/2/health", headers=h))
    assert data[0] == created  # the newest report

    # only status is needed; checked_at defaults to the database's now
    minimal = ok(client.post(f"{CAMERAS}/2/health", json={"status": "online"}, headers=h), 201)
    now = db.fetchval("SELECT now()")
    assert abs((now - parse_ts(minimal["checked_at"])).total_seconds()) < 60
    assert minimal["fps"] is None and minimal["error_message"] is None

    before = snapshot(db)
    body = assert_problem(
        client.post(
            f"{CAMERAS}/2/health",
            json={
                "status": "broken",
                "cpu_usage_percent": 150,
                "checked_at": "yesterday",
                "extra": 1,
            },
            headers=h,
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert pointers(body) == {
        "/status": "enum",
        "/cpu_usage_percent": "maximum",
        "/checked_at": "format",
        "/extra": "additionalProperties",
    }
    body = assert_problem(
        client.post(f"{CAMERAS}/2/health", json={"fps": 10}, headers=h), 400, "VALIDATION_ERROR"
    )
    assert pointers(body) == {"/status": "required"}
    for camera_id in (5, 999):
        assert_problem(
            client.post(f"{CAMERAS}/{camera_id}/health", json={"status": "online"}, headers=h),
            404,
            "CAMERA_NOT_FOUND",
        )
    assert snapshot(db) == before


# ---------------------------------------------------------------------------
# streams
# ---------------------------------------------------------------------------


@covers(LIST_STREAMS)
def test_list_streams_pages_and_isolates(client: EngineClient, db: DB) -> None:
    sql = (
        f"SELECT {STREAM_COLUMNS} FROM video_streams WHERE camera_id = $1 "
        "ORDER BY created_at, stream_id"
    )
    h1 = viewer(client)
    expected = rows(db, sql, 1)
    assert len(expected) == 2
    data, meta = page(client.get(f"{CAMERAS}/1/streams", headers=h1))
    assert data == expected
    assert meta == pagination(50, 0, 2, False)

    h2 = viewer(client, tenant=2)
    expected = rows(db, sql, 6)
    data, meta = page(client.get(f"{CAMERAS}/6/streams", params={"limit": 1}, headers=h2))
    assert data == expected[:1] and meta == pagination(1, 0, 1, True)
    data, meta = page(
        client.get(f"{CAMERAS}/6/streams", params={"limit": 1, "offset": 1}, headers=h2)
    )
    assert data == expected[1:2] and meta == pagination(1, 1, 1, False)

    # the tenant's own camera without streams: an empty page, not a 404
    data, meta = page(client.get(f"{CAMERAS}/4/streams", headers=h1))
    assert data == [] and meta == pagination(50, 0, 0, False)

    assert_problem(client.get(f"{CAMERAS}/6/streams", headers=h1), 404, "CAMERA_NOT_FOUND")
    assert_problem(client.get(f"{CAMERAS}/999/streams", headers=h1), 404, "CAMERA_NOT_FOUND")
    assert_problem(
        client.get(f"{CAMERAS}/1/streams", params={"limit": 201}, headers=h1),
        400,
        "INVALID_PARAMETER",
    )


@covers(GET_STREAM)
def test_get_stream_by_id(client: EngineClient, db: DB) -> None:
    h = viewer(client)
    body = ok(client.get(f"{CAMERAS}/1/streams/{STREAM_101}", headers=h))
    assert body == row(
        db,
        f"SELECT {STREAM_COLUMNS} FROM video_streams WHERE stream_id = $1",
        uuid.UUID(STREAM_101),
    )
    # upper-case UUID text names the same stream
    assert ok(client.get(f"{CAMERAS}/1/streams/{STREAM_101.upper()}", headers=h)) == body

    # a stream of another camera of the tenant, and an unknown id
    for stream_id in ("6f1c0000-0000-4000-8000-000000000201", str(uuid.uuid4())):
        body = assert_problem(
            client.get(f"{CAMERAS}/1/streams/{stream_id}", headers=h), 404, "STREAM_NOT_FOUND"
        )
    assert_vietnamese(
        db,
        client.get(
            f"{CAMERAS}/1/streams/{uuid.uuid4()}", headers={**h, "Accept-Language": "vi-VN"}
        ),
        404,
        "STREAM_NOT_FOUND",
    )
    # tenant 2's stream, through its own camera id: the camera is not found
    assert_problem(
        client.get(f"{CAMERAS}/6/streams/{STREAM_601}", headers=h), 404, "CAMERA_NOT_FOUND"
    )
    body = assert_problem(
        client.get(f"{CAMERAS}/1/streams/not-a-uuid", headers=h), 400, "INVALID_PARAMETER"
    )
    assert [e["parameter"] for e in body["errors"]] == ["stream_id"]


@covers(CREATE_STREAM, LIST_STREAMS, GET_STREAM)
def test_create_stream_generates_id_and_protocol(client: EngineClient, db: DB) -> None:
    h = admin(client)
    sql = f"SELECT {STREAM_COLUMNS} FROM video_streams WHERE stream_id = $1"
    data, _ = page(client.get(f"{CAMERAS}/2/streams", headers=h))  # cached: the POST must drop it
    count_before = len(data)

    created = ok(
        client.post(
            f"{CAMERAS}/2/streams",
            json={
                "stream_url": "https://10.10.1.12/hls/main.m3u8",
                "stream_type": "sub",
                "codec": "H.264",
                "bitrate_kbps": 1024,
            },
            headers=h,
        ),
        201,
    )
    stream_id = uuid.UUID(created["stream_id"])  # generated
    assert created == row(db, sql, stream_id)
    assert created["protocol"] == "https"  # from the URL
    assert created["status"] == "active" and created["camera_id"] == 2
    assert created["stream_type"] == "sub" and created["codec"] == "H.264"

    given = "0b5e0000-0000-4000-8000-00000000abcd"
    explicit = ok(
        client.post(
            f"{CAMERAS}/2/streams",
            json={
                "stream_id": given,
                "stream_url": "rtsp://10.10.1.12:554/analytics",
                "protocol": "rtsps",
                "resolution_width": 640,
                "resolution_height": 360,
                "frame_rate": 10,
                "status": "connecting",
            },
            headers=h,
        ),
        201,
    )
    assert explicit["stream_id"] == given and explicit["protocol"] == "rtsps"
    assert explicit["stream_type"] == "main"  # the default
    assert explicit == row(db, sql, uuid.UUID(given))

    assert ok(client.get(f"{CAMERAS}/2/streams/{given}", headers=h)) == explicit
    data, _ = page(client.get(f"{CAMERAS}/2/streams", headers=h))
    assert len(data) == count_before + 2
    assert {created["stream_id"], given} <= {s["stream_id"] for s in data}


@covers(CREATE_STREAM)
def test_create_stream_rejects_bad_bodies(client: EngineClient, db: DB) -> None:
    h = admin(client)
    before = snapshot(db)
    body = assert_problem(
        client.post(
            f"{CAMERAS}/2/streams",
            json={
                "stream_type": "thumbnail",
                "codec": "H.266",
                "stream_id": "not-a-uuid",
                "frame_rate": 0,
            },
            headers=h,
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert pointers(body) == {
        "/stream_url": "required",
        "/stream_type": "enum",
        "/codec": "enum",
        "/stream_id": "format+pattern",
        "/frame_rate": "minimum",
    }
    # the stream_url protocol rule
    body = assert_problem(
        client.post(f"{CAMERAS}/2/streams", json={"stream_url": "rtmp://10.0.0.1/live"}, headers=h),
        400,
        "VALIDATION_ERROR",
    )
    assert pointers(body) == {"/stream_url": "sanitize:validate"}
    # a stream id that exists
    assert_problem(
        client.post(
            f"{CAMERAS}/2/streams",
            json={"stream_id": STREAM_101, "stream_url": "rtsp://10.10.1.12/dup"},
            headers=h,
        ),
        409,
        "DUPLICATE_RESOURCE",
    )
    # a soft-deleted camera, another tenant's camera, a missing camera
    assert_problem(
        client.post(f"{CAMERAS}/4/streams", json={"stream_url": "http://x/1"}, headers=h),
        400,
        "CAMERA_INACTIVE",
    )
    for camera_id in (6, 999):
        assert_problem(
            client.post(
                f"{CAMERAS}/{camera_id}/streams", json={"stream_url": "http://x/1"}, headers=h
            ),
            404,
            "CAMERA_NOT_FOUND",
        )
    assert snapshot(db) == before


# ---------------------------------------------------------------------------
# detections
# ---------------------------------------------------------------------------


@covers(LIST_DETECTIONS)
def test_list_detections_filters_and_pages(client: EngineClient, db: DB) -> None:
    sql = (
        f"SELECT {DETECTION_COLUMNS} FROM person_detections WHERE camera_id = $1 "
        "AND ($2::timestamptz IS NULL OR frame_timestamp > $2) "
        "AND ($3::numeric IS NULL OR confidence_score >= $3) "
        "ORDER BY frame_timestamp DESC, id DESC"
    )
    h = viewer(client)
    expected = rows(db, sql, 1, None, None)
    assert 100 > len(expected) > 20
    data, meta = page(client.get(f"{CAMERAS}/1/detections", headers=h))
    assert data == expected and meta == pagination(100, 0, len(expected), False)

    data, meta = page(client.get(f"{CAMERAS}/1/detections", params={"limit": 10}, headers=h))
    assert data == expected[:10] and meta == pagination(10, 0, 10, True)
    last = len(expected) - 5
    data, meta = page(
        client.get(f"{CAMERAS}/1/detections", params={"limit": 10, "offset": last}, headers=h)
    )
    assert data == expected[last:] and meta == pagination(10, last, 5, False)

    since = parse_ts(expected[9]["frame_timestamp"])
    data, _ = page(
        client.get(f"{CAMERAS}/1/detections", params={"since": since.isoformat()}, headers=h)
    )
    assert data == rows(db, sql, 1, since, None) == expected[:9]
    data, _ = page(
        client.get(f"{CAMERAS}/1/detections", params={"min_confidence": "0.9"}, headers=h)
    )
    high = rows(db, sql, 1, None, Decimal("0.9"))
    assert data == high and 0 < len(high) < len(expected)
    data, _ = page(
        client.get(
            f"{CAMERAS}/1/detections",
            params={"since": "2000-01-01T00:00:00Z", "min_confidence": "0.9", "limit": 2},
            headers=h,
        )
    )
    assert data == high[:2]

    body = assert_problem(
        client.get(
            f"{CAMERAS}/1/detections",
            params={"since": "yesterday", "min_confidence": "high"},
            headers=h,
        ),
        400,
        "INVALID_PARAMETER",
    )
    assert {e["parameter"] for e in body["errors"]} == {"since", "min_confidence"}
    assert_problem(client.get(f"{CAMERAS}/5/detections", headers=h), 404, "CAMERA_NOT_FOUND")


@covers(GET_DETECTION)
def test_get_detection_by_detector_id(client: EngineClient, db: DB) -> None:
    sql = (
        f"SELECT {DETECTION_COLUMNS} FROM person_detections "
        "WHERE camera_id = $1 AND detection_id = $2"
    )
    h = viewer(client)
    body = ok(client.get(f"{CAMERAS}/1/detections/cam1-det-0003", headers=h))
    assert body == row(db, sql, 1, "cam1-det-0003")
    assert isinstance(body["object_attributes"], dict) and body["object_attributes"]

    # unknown, and one of another camera of the same tenant
    for detection_id in ("cam1-det-9999", "cam2-det-0000"):
        assert_problem(
            client.get(f"{CAMERAS}/1/detections/{detection_id}", headers=h),
            404,
            "DETECTION_NOT_FOUND",
        )
    assert_vietnamese(
        db,
        client.get(f"{CAMERAS}/1/detections/nope", headers={**h, "Accept-Language": "vi"}),
        404,
        "DETECTION_NOT_FOUND",
    )
    assert_problem(
        client.get(f"{CAMERAS}/5/detections/cam5-det-0000", headers=h), 404, "CAMERA_NOT_FOUND"
    )
    t2 = ok(client.get(f"{CAMERAS}/5/detections/cam5-det-0000", headers=viewer(client, tenant=2)))
    assert t2 == row(db, sql, 5, "cam5-det-0000")


@covers(CREATE_DETECTION, GET_DETECTION, LIST_DETECTIONS)
def test_create_detection(client: EngineClient, db: DB) -> None:
    h = operator(client)
    sql = (
        f"SELECT {DETECTION_COLUMNS} FROM person_detections "
        "WHERE camera_id = $1 AND detection_id = $2"
    )
    page(client.get(f"{CAMERAS}/2/detections", headers=h))  # cached: the POST must drop it
    payload = {
        "detection_id": "edge-7_track-42",
        "frame_timestamp": "2030-01-01T08:00:00Z",
        "track_id": 42,
        "confidence_score": 0.876,
        "bbox_x": 10,
        "bbox_y": 20,
        "bbox_width": 64,
        "bbox_height": 180,
        "object_attributes": {"age_group": "adult", "carrying_bag": True},
    }
    created = ok(client.post(f"{CAMERAS}/2/detections", json=payload, headers=h), 201)
    assert created == row(db, sql, 2, "edge-7_track-42")
    # the confidence_score sanitization rule keeps 2 decimals
    assert created["confidence_score"] == 0.88
    assert created["object_attributes"] == payload["object_attributes"]
    assert created["camera_id"] == 2 and created["track_id"] == 42

    assert ok(client.get(f"{CAMERAS}/2/detections/edge-7_track-42", headers=h)) == created
    data, _ = page(client.get(f"{CAMERAS}/2/detections", headers=h))
    assert data[0] == created  # the newest frame

    # the same detector id on another camera is another detection; defaults apply
    minimal = ok(
        client.post(
            f"{CAMERAS}/3/detections",
            json={
                k: v
                for k, v in payload.items()
                if k
                in (
                    "detection_id",
                    "confidence_score",
                    "bbox_x",
                    "bbox_y",
                    "bbox_width",
                    "bbox_height",
                )
            },
            headers=h,
        ),
        201,
    )
    assert minimal == row(db, sql, 3, "edge-7_track-42")
    assert minimal["object_attributes"] == {} and minimal["track_id"] is None
    now = db.fetchval("SELECT now()")
    assert abs((now - parse_ts(minimal["frame_timestamp"])).total_seconds()) < 60


@covers(CREATE_DETECTION)
def test_create_detection_rejects_bad_bodies(client: EngineClient, db: DB) -> None:
    h = admin(client)
    before = snapshot(db)
    body = assert_problem(
        client.post(
            f"{CAMERAS}/1/detections",
            json={
                "detection_id": "bad id!",
                "confidence_score": "x",
                "bbox_x": -1,
                "object_attributes": [1],
            },
            headers=h,
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert pointers(body) == {
        "/detection_id": "pattern",
        "/confidence_score": "type",
        "/bbox_x": "minimum",
        "/bbox_y": "required",
        "/bbox_width": "required",
        "/bbox_height": "required",
        "/object_attributes": "type",
    }
    valid = {
        "detection_id": "d-1",
        "confidence_score": 0.5,
        "bbox_x": 0,
        "bbox_y": 0,
        "bbox_width": 1,
        "bbox_height": 1,
    }
    body = assert_problem(
        client.post(f"{CAMERAS}/1/detections", json={**valid, "confidence_score": 1.5}, headers=h),
        400,
        "VALIDATION_ERROR",
    )
    assert body["errors"] == [
        {
            "pointer": "/confidence_score",
            "message": db.fetchval(
                "SELECT error_message FROM data_sanitization_rules "
                "WHERE field_name = 'confidence_score'"
            ),
            "keyword": "sanitize:validate",
        }
    ]
    body = assert_problem(
        client.post(
            f"{CAMERAS}/1/detections",
            json={**valid, "bbox_width": 0, "frame_timestamp": "now"},
            headers=h,
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert pointers(body) == {"/bbox_width": "minimum", "/frame_timestamp": "format"}

    assert_problem(
        client.post(
            f"{CAMERAS}/1/detections", json={**valid, "detection_id": "cam1-det-0003"}, headers=h
        ),
        409,
        "DUPLICATE_RESOURCE",
    )
    assert_problem(
        client.post(f"{CAMERAS}/4/detections", json=valid, headers=h), 400, "CAMERA_INACTIVE"
    )
    for camera_id in (5, 999):
        assert_problem(
            client.post(f"{CAMERAS}/{camera_id}/detections", json=valid, headers=h),
            404,
            "CAMERA_NOT_FOUND",
        )
    assert snapshot(db) == before


# ---------------------------------------------------------------------------
# counting
# ---------------------------------------------------------------------------


@covers(LIST_COUNTING)
def test_list_counting_results(client: EngineClient, db: DB) -> None:
    h = viewer(client)
    everything = counting_results(db, 1)
    assert len(everything) >= 2
    assert ok(client.get(f"{CAMERAS}/1/counting", headers=h)) == everything[:10]
    assert ok(client.get(f"{CAMERAS}/1/counting", params={"limit": 2}, headers=h)) == everything[:2]
    # out-of-range limits are clamped to 1..1000
    assert ok(client.get(f"{CAMERAS}/1/counting", params={"limit": 0}, headers=h)) == everything[:1]
    assert ok(client.get(f"{CAMERAS}/1/counting", params={"limit": 5000}, headers=h)) == everything
    for r in everything:
        assert r["net_count"] == r["total_in"] - r["total_out"]
        assert r["current_occupancy"] >= 0

    assert ok(client.get(f"{CAMERAS}/4/counting", headers=h)) == []
    body = assert_problem(
        client.get(f"{CAMERAS}/1/counting", params={"limit": "ten"}, headers=h),
        400,
        "INVALID_PARAMETER",
    )
    assert [e["parameter"] for e in body["errors"]] == ["limit"]
    assert_problem(client.get(f"{CAMERAS}/6/counting", headers=h), 404, "CAMERA_NOT_FOUND")


@covers(CREATE_COUNTING, LIST_COUNTING)
def test_counting_post_is_reflected_by_the_next_get(client: EngineClient, db: DB) -> None:
    h = operator(client)
    newest = db.fetchrow(
        "SELECT result_timestamp, total_in, total_out, event_count, day_running_net, last_event_at "
        "FROM counting_results WHERE camera_id = 3 ORDER BY result_timestamp DESC LIMIT 1"
    )
    assert newest is not None
    at = newest["result_timestamp"] + dt.timedelta(minutes=1)  # inside the newest bucket

    event = ok(
        client.post(
            f"{CAMERAS}/3/counting",
            json={
                "event_type": "entry",
                "count": 4,
                "event_timestamp": at.isoformat(),
                "zone_id": "  line-c  ",
                "track_id": 7,
                "confidence_score": 0.9,
                "metadata": {"source": "edge-3"},
            },
            headers=h,
        ),
        201,
    )
    assert event == row(
        db, f"SELECT {EVENT_COLUMNS} FROM counting_events WHERE event_id = $1", event["event_id"]
    )
    assert event["zone_id"] == "line-c"  # the endpoint's zone_id trim rule
    assert event["count"] == 4 and event["event_type"] == "entry" and event["camera_id"] == 3
    assert parse_ts(event["event_timestamp"]) == at

    [bucket] = ok(client.get(f"{CAMERAS}/3/counting", params={"limit": 1}, headers=h))
    assert parse_ts(bucket["result_timestamp"]) == newest["result_timestamp"]
    assert bucket["total_in"] == newest["total_in"] + 4
    assert bucket["total_out"] == newest["total_out"]
    assert bucket["net_count"] == newest["total_in"] + 4 - newest["total_out"]
    assert bucket["event_count"] == newest["event_count"] + 1
    assert bucket["current_occupancy"] == max(newest["day_running_net"] + 4, 0)
    assert parse_ts(bucket["last_event_at"]) == max(newest["last_event_at"], at)

    # an exit larger than the occupancy: never below zero
    ok(
        client.post(
            f"{CAMERAS}/3/counting",
            json={"event_type": "exit", "count": 1000, "event_timestamp": at.isoformat()},
            headers=h,
        ),
        201,
    )
    [bucket] = ok(client.get(f"{CAMERAS}/3/counting", params={"limit": 1}, headers=h))
    assert bucket["total_out"] == newest["total_out"] + 1000
    assert bucket["event_count"] == newest["event_count"] + 2
    assert bucket["current_occupancy"] == max(newest["day_running_net"] + 4 - 1000, 0) == 0

    # defaults: one person, now
    snapshot_before = {r["result_timestamp"]: r for r in counting_results(db, 3)}
    event = ok(client.post(f"{CAMERAS}/3/counting", json={"event_type": "entry"}, headers=h), 201)
    assert event["count"] == 1 and event["metadata"] == {} and event["zone_id"] is None
    hour = (
        parse_ts(event["event_timestamp"])
        .astimezone(dt.UTC)
        .replace(minute=0, second=0, microsecond=0)
    )
    answer = ok(client.get(f"{CAMERAS}/3/counting", params={"limit": 1000}, headers=h))
    assert answer == counting_results(db, 3)
    [bucket] = [b for b in answer if parse_ts(b["result_timestamp"]) == hour]
    old = snapshot_before.get(hour.isoformat(), {"total_in": 0, "event_count": 0})
    assert bucket["total_in"] == old["total_in"] + 1
    assert bucket["event_count"] == old["event_count"] + 1


@covers(CREATE_COUNTING, LIST_COUNTING)
def test_counting_events_out_of_order_correct_later_buckets(client: EngineClient, db: DB) -> None:
    h = admin(client)

    def post(event_type: str, count: int, at: str) -> None:
        ok(
            client.post(
                f"{CAMERAS}/2/counting",
                json={"event_type": event_type, "count": count, "event_timestamp": at},
                headers=h,
            ),
            201,
        )

    def buckets() -> list[tuple[str, int, int, int, int]]:
        answer = ok(client.get(f"{CAMERAS}/2/counting", params={"limit": 1000}, headers=h))
        assert answer == counting_results(db, 2)
        return [
            (
                b["result_timestamp"],
                b["total_in"],
                b["total_out"],
                b["current_occupancy"],
                b["event_count"],
            )
            for b in answer
            if b["result_timestamp"].startswith("2030-01-01")
        ]

    post("entry", 5, "2030-01-01T10:15:00Z")
    assert buckets() == [("2030-01-01T10:00:00+00:00", 5, 0, 5, 1)]
    post("exit", 2, "2030-01-01T09:30:00Z")  # earlier: the 10:00 bucket is corrected
    assert buckets() == [
        ("2030-01-01T10:00:00+00:00", 5, 0, 3, 1),
        ("2030-01-01T09:00:00+00:00", 0, 2, 0, 1),
    ]
    post("entry", 1, "2030-01-01T08:05:00+00:00")
    post("entry", 2, "2030-01-01T10:45:00+02:00")  # 08:45 UTC
    assert buckets() == [
        ("2030-01-01T10:00:00+00:00", 5, 0, 6, 1),
        ("2030-01-01T09:00:00+00:00", 0, 2, 1, 1),
        ("2030-01-01T08:00:00+00:00", 3, 0, 3, 2),
    ]


@covers(CREATE_COUNTING)
def test_create_counting_rejects_bad_bodies(client: EngineClient, db: DB) -> None:
    h = admin(client)
    before = snapshot(db)
    body = assert_problem(
        client.post(
            f"{CAMERAS}/1/counting",
            json={
                "event_type": "enter",
                "count": 0,
                "zone_id": "a b",
                "metadata": "x",
                "camera_id": 5,
            },
            headers=h,
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert pointers(body) == {
        "/event_type": "enum",
        "/count": "minimum",
        "/zone_id": "pattern",
        "/metadata": "type",
        "/camera_id": "additionalProperties",
    }
    body = assert_problem(
        client.post(
            f"{CAMERAS}/1/counting", json={"count": 1001, "event_timestamp": "soon"}, headers=h
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert pointers(body) == {
        "/event_type": "required",
        "/count": "maximum",
        "/event_timestamp": "format",
    }
    body = assert_problem(
        client.post(
            f"{CAMERAS}/1/counting", json={"event_type": "entry", "zone_id": "   "}, headers=h
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert pointers(body) == {"/zone_id": "sanitize:trim"}
    assert_problem(
        client.post(
            f"{CAMERAS}/1/counting", content=b"entry", headers={**h, "Content-Type": "text/plain"}
        ),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    assert_problem(
        client.post(f"{CAMERAS}/4/counting", json={"event_type": "entry"}, headers=h),
        400,
        "CAMERA_INACTIVE",
    )
    for camera_id in (5, 999):
        assert_problem(
            client.post(f"{CAMERAS}/{camera_id}/counting", json={"event_type": "entry"}, headers=h),
            404,
            "CAMERA_NOT_FOUND",
        )
    assert snapshot(db) == before


# ---------------------------------------------------------------------------
# analytics
# ---------------------------------------------------------------------------


@covers(REALTIME)
def test_realtime_analytics(client: EngineClient, db: DB) -> None:
    sql = (
        f"SELECT {REALTIME_COLUMNS} FROM realtime_analytics WHERE camera_id = $1 "
        "ORDER BY metric_timestamp DESC LIMIT $2"
    )
    h = viewer(client)
    expected = rows(db, sql, 1, 1440)
    assert len(expected) >= 60
    assert ok(client.get(f"{CAMERAS}/1/analytics", headers=h)) == expected[:60]
    assert ok(client.get(f"{CAMERAS}/1/analytics", params={"limit": 5}, headers=h)) == expected[:5]
    assert ok(client.get(f"{CAMERAS}/1/analytics", params={"limit": 0}, headers=h)) == expected[:1]
    assert ok(client.get(f"{CAMERAS}/1/analytics", params={"limit": 99999}, headers=h)) == expected
    assert ok(client.get(f"{CAMERAS}/4/analytics", headers=h)) == rows(db, sql, 4, 60)

    assert_problem(
        client.get(f"{CAMERAS}/1/analytics", params={"limit": "1.5"}, headers=h),
        400,
        "INVALID_PARAMETER",
    )
    assert_problem(client.get(f"{CAMERAS}/5/analytics", headers=h), 404, "CAMERA_NOT_FOUND")
    t2 = ok(
        client.get(f"{CAMERAS}/5/analytics", params={"limit": 3}, headers=viewer(client, tenant=2))
    )
    assert t2 == rows(db, sql, 5, 3)


@covers(HISTORICAL)
def test_historical_analytics_ranges(client: EngineClient, db: DB) -> None:
    sql = (
        f"SELECT {HISTORICAL_COLUMNS} FROM historical_analytics WHERE camera_id = $1 "
        "AND data_date BETWEEN $2 AND $3 ORDER BY data_date"
    )
    h = viewer(client)
    today: dt.date = db.fetchval("SELECT current_date")
    day = dt.timedelta(days=1)

    default = ok(client.get(f"{CAMERAS}/2/analytics/historical", headers=h))
    assert default == rows(db, sql, 2, today - 30 * day, today)
    assert len(default) >= 28

    params = {"from": (today - 10 * day).isoformat(), "to": (today - 5 * day).isoformat()}
    answer = ok(client.get(f"{CAMERAS}/2/analytics/historical", params=params, headers=h))
    assert answer == rows(db, sql, 2, today - 10 * day, today - 5 * day)
    assert [a["data_date"] for a in answer] == [
        (today - n * day).isoformat() for n in range(10, 4, -1)
    ]

    # only "to": the 30 days before it
    to = today - 20 * day
    answer = ok(
        client.get(f"{CAMERAS}/2/analytics/historical", params={"to": to.isoformat()}, headers=h)
    )
    assert answer == rows(db, sql, 2, to - 30 * day, to)

    # the soft-deleted camera's older history, and exactly 366 days
    params = {"from": (today - 400 * day).isoformat(), "to": (today - 34 * day).isoformat()}
    answer = ok(client.get(f"{CAMERAS}/4/analytics/historical", params=params, headers=h))
    assert answer == rows(db, sql, 4, today - 400 * day, today - 34 * day) and answer

    assert_problem(
        client.get(f"{CAMERAS}/5/analytics/historical", headers=h), 404, "CAMERA_NOT_FOUND"
    )


@covers(HISTORICAL)
def test_historical_analytics_rejects_bad_ranges(client: EngineClient, db: DB) -> None:
    h = viewer(client)
    path = f"{CAMERAS}/2/analytics/historical"
    body = assert_problem(
        client.get(path, params={"from": "2026-01-10", "to": "2026-01-01"}, headers=h),
        400,
        "INVALID_DATE_RANGE",
    )
    assert body["detail"] == "from (2026-01-10) is after to (2026-01-01)"
    assert body["title"] == db.fetchval(
        "SELECT error_message FROM api_error_codes WHERE error_code = 'INVALID_DATE_RANGE'"
    )
    body = assert_problem(
        client.get(path, params={"from": "2025-01-01", "to": "2026-01-03"}, headers=h),
        400,
        "INVALID_DATE_RANGE",
    )
    assert "366" in body["detail"]
    # 366 days is still fine; only "from", a year and more ago, is too long up to today
    ok(client.get(path, params={"from": "2025-01-01", "to": "2026-01-02"}, headers=h))
    today: dt.date = db.fetchval("SELECT current_date")
    assert_problem(
        client.get(path, params={"from": (today - dt.timedelta(days=367)).isoformat()}, headers=h),
        400,
        "INVALID_DATE_RANGE",
    )
    assert_vietnamese(
        db,
        client.get(
            path,
            params={"from": "2026-02-01", "to": "2026-01-01"},
            headers={**h, "Accept-Language": "vi"},
        ),
        400,
        "INVALID_DATE_RANGE",
    )
    body = assert_problem(
        client.get(path, params={"from": "2026-13-01", "to": "01/02/2026"}, headers=h),
        400,
        "INVALID_PARAMETER",
    )
    assert {e["parameter"] for e in body["errors"]} == {"from", "to"}
    assert {e["in"] for e in body["errors"]} == {"query"}
