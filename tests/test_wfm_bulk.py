"""The WFM bulk-path imports (seeds/wfm/004_endpoints.sql, engine/bulk.py) over real HTTP.

``POST /api/v1/db/database/bulk/import/<table>`` takes NDJSON or CSV records of
contact_statistics, agent_activity, agents or work_schedules, streamed and loaded in
one transaction: upsert on the table's key (fields a record leaves out are kept),
the tenant always the caller's, an invalid record or another tenant's reference
and nothing is written. The seeded tenants are those of tests/test_wfm_http.py:
tenant 1 has services 1-4 and 8 and agents 1-13, tenant 2 services 5-7.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.engine_server import EngineClient
from tests.helpers import assert_problem, compile_catalog, run_cli, serve
from tests.pg import DB

DB_API = "/api/v1/db/database"
IMPORT = DB_API + "/bulk/import/"
SEED = Path(__file__).resolve().parent.parent / "seeds" / "wfm" / "004_endpoints.sql"
TABLES = ("contact_statistics", "agent_activity", "agents", "work_schedules")
NDJSON = {"Content-Type": "application/x-ndjson"}
CSV = {"Content-Type": "text/csv"}
DAY = dt.datetime(2031, 3, 3, tzinfo=dt.UTC)  # a Monday with no seeded statistics
STATS = """SELECT tenant_id, service_id, interval_start, offered, answered, abandoned,
                  answered_within_threshold, talk_seconds, wait_seconds, max_wait_seconds
           FROM contact_statistics WHERE interval_start >= $1 ORDER BY service_id, interval_start"""


@pytest.fixture()
def client(make_client: Callable[..., EngineClient]) -> EngineClient:
    return serve(make_client)


def admin(client: EngineClient, tenant: int = 1) -> dict[str, str]:
    return client.auth(sub="ada", tenant=tenant, roles=("wfm_admin",))


def ndjson(*records: dict[str, Any]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


def at(minutes: int) -> str:
    return (DAY + dt.timedelta(minutes=minutes)).isoformat()


def interval(service_id: int, minutes: int, offered: int, **more: Any) -> dict[str, Any]:
    answered = offered - 2
    return {
        "service_id": service_id,
        "interval_start": at(minutes),
        "offered": offered,
        "answered": answered,
        "abandoned": 2,
        "answered_within_threshold": answered - 5,
        "talk_seconds": answered * 180,
        "wait_seconds": offered * 12,
        **more,
    }


def stats(db: DB) -> list[tuple[Any, ...]]:
    return [tuple(r.values()) for r in db.fetch(STATS, DAY)]


def post(
    client: EngineClient, table: str, body: bytes, headers: dict[str, str], media: dict[str, str]
) -> Any:
    return client.post(IMPORT + table, content=body, headers={**media, **headers})


def test_the_bulk_rows_compile_cleanly_and_engine_check_is_silent(db: DB) -> None:
    catalog = compile_catalog(db)
    rows = {
        r["id"]: r["endpoint_path"]
        for r in db.fetch(
            "SELECT id, endpoint_path FROM api_endpoint_mappings WHERE endpoint_path LIKE $1",
            IMPORT + "%",
        )
    }
    assert sorted(rows.values()) == sorted(IMPORT + t for t in TABLES)
    for status in catalog.statuses:
        if status.mapping_id in rows:
            assert status.state == "serving", (rows[status.mapping_id], status.reason)
            assert not status.warnings, (rows[status.mapping_id], status.warnings)
    for ep in catalog.endpoints:
        if ep.spec.id in rows:
            assert ep.bulk is not None and ep.bulk.spec.formats == ("ndjson", "csv")
            assert ep.bulk.reader.fast is not None, rows[ep.spec.id]  # the compiled check
            assert ep.spec.required_roles == ("wfm_admin",)
    checked = run_cli("check", "--strict", url=db.url)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = [line for line in checked.stdout.splitlines() if IMPORT in line]
    assert len(listed) == 4 and all(line.startswith("SERVING") for line in listed), listed
    assert "0 problem(s), 0 warning(s)" in checked.stdout

    # the seed applied again changes nothing: no new version of a row or its schema
    def versions() -> list[tuple[Any, ...]]:
        return [
            tuple(r.values())
            for r in db.fetch(
                "SELECT m.id, m.version, m.updated_at, s.updated_at FROM api_endpoint_mappings m "
                "JOIN api_validation_schemas s ON s.endpoint_mapping_id = m.id "
                "WHERE m.endpoint_path LIKE $1 ORDER BY m.id",
                IMPORT + "%",
            )
        ]

    before = versions()
    db.execute(SEED.read_text())
    assert versions() == before


def test_an_ndjson_import_upserts_and_the_read_endpoint_sees_it(
    client: EngineClient, db: DB
) -> None:
    first = ndjson(interval(1, 0, 40), interval(1, 15, 44, max_wait_seconds=90), interval(2, 0, 9))
    response = post(client, "contact_statistics", first, admin(client), NDJSON)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 3, "inserted": 3, "rejected": 0, "errors": []}

    # the same key again: the stored row is updated, the fields left out are kept
    again = ndjson({"service_id": 1, "interval_start": at(15), "offered": 50, "answered": 49})
    response = post(client, "contact_statistics", again, admin(client), NDJSON)
    assert response.json()["inserted"] == 1
    assert stats(db) == [
        (1, 1, DAY, 40, 38, 2, 33, 38 * 180, 40 * 12, None),
        (1, 1, DAY + dt.timedelta(minutes=15), 50, 49, 2, 37, 42 * 180, 44 * 12, 90),
        (1, 2, DAY, 9, 7, 2, 2, 7 * 180, 9 * 12, None),
    ]
    period = {"from": at(0), "to": at(60), "granularity": "interval", "service_id": "1"}
    read = client.get(DB_API + "/contact-statistics", params=period, headers=admin(client))
    assert read.status_code == 200, read.text
    got = [(r["period_start"], r["offered"], r["answered"]) for r in read.json()["data"]]
    assert got == [(at(0), 40, 38), (at(15), 50, 49)]


def test_a_csv_import_reads_its_header_empty_cells_and_crlf(client: EngineClient, db: DB) -> None:
    text = (
        "service_id,interval_start,offered,answered,abandoned,answered_within_threshold,"
        "agents_staffed\r\n"
        f"3,{at(30)},12,11,1,10,2.5\r\n"
        f"3,{at(45)},7,,,,\r\n"  # empty cells: absent fields, the defaults
    )
    response = post(client, "contact_statistics", text.encode(), admin(client), CSV)
    assert response.status_code == 200, response.text
    assert response.json() == {"received": 2, "inserted": 2, "rejected": 0, "errors": []}
    got = db.fetch(
        "SELECT interval_start, offered, answered, abandoned, agents_staffed::text AS staffed "
        "FROM contact_statistics WHERE service_id = 3 AND interval_start >= $1 "
        "ORDER BY interval_start",
        DAY,
    )
    assert [tuple(r.values()) for r in got] == [
        (DAY + dt.timedelta(minutes=30), 12, 11, 1, "2.50"),
        (DAY + dt.timedelta(minutes=45), 7, 0, 0, None),
    ]


def test_records_land_in_the_callers_tenant_and_never_in_another(
    client: EngineClient, db: DB
) -> None:
    response = post(
        client, "contact_statistics", ndjson(interval(5, 0, 20)), admin(client, 2), NDJSON
    )
    assert response.status_code == 200, response.text
    assert stats(db) == [(2, 5, DAY, 20, 18, 2, 13, 18 * 180, 20 * 12, None)]
    read = client.get(
        DB_API + "/contact-statistics",
        params={"from": at(0), "to": at(60), "granularity": "interval"},
        headers=admin(client, 1),
    )
    assert read.json()["data"] == []  # tenant 1 does not see tenant 2's interval

    # tenant 1's interval, named by tenant 2: refused by line, nothing written or changed
    post(client, "contact_statistics", ndjson(interval(1, 0, 40)), admin(client, 1), NDJSON)
    before = stats(db)
    body = ndjson(interval(6, 15, 30), interval(1, 0, 999))
    problem = assert_problem(
        post(client, "contact_statistics", body, admin(client, 2), NDJSON),
        422,
        "WFM_IMPORT_INVALID",
    )
    assert problem["detail"] == "Line 2: service 1 not found"
    assert stats(db) == before

    # a record cannot name a tenant: the record schema is closed
    spoofed = ndjson(interval(5, 30, 30, tenant_id=1))
    problem = assert_problem(
        post(client, "contact_statistics", spoofed, admin(client, 2), NDJSON),
        422,
        "BULK_INVALID_RECORDS",
    )
    assert [(e["line"], e["pointer"]) for e in problem["errors"]] == [(1, "/tenant_id")]
    assert stats(db) == before


def test_invalid_records_are_reported_by_line_and_pointer_and_nothing_is_written(
    client: EngineClient, db: DB
) -> None:
    records = [interval(1, 15 * i, 10 + i) for i in range(20)]
    records[4]["offered"] = -1
    del records[11]["interval_start"]
    lines = ndjson(*records).split(b"\n")
    lines[16] = b"{not json"
    problem = assert_problem(
        post(client, "contact_statistics", b"\n".join(lines), admin(client), NDJSON),
        422,
        "BULK_INVALID_RECORDS",
    )
    assert [(e["line"], e["pointer"]) for e in problem["errors"]] == [
        (5, "/offered"),
        (12, "/interval_start"),
        (17, ""),
    ]
    assert "nothing was written" in problem["detail"]
    assert stats(db) == []

    csv_text = f"service_id,interval_start,offered\n1,{at(0)},4\n1,not a time,5\n"
    problem = assert_problem(
        post(client, "contact_statistics", csv_text.encode(), admin(client), CSV),
        422,
        "BULK_INVALID_RECORDS",
    )
    assert [(e["line"], e["pointer"]) for e in problem["errors"]] == [(3, "/interval_start")]

    # the checks of wfm_bulk_import: one key twice, a misaligned interval
    twice = ndjson(interval(1, 0, 10), interval(2, 0, 10), interval(1, 0, 11))
    problem = assert_problem(
        post(client, "contact_statistics", twice, admin(client), NDJSON), 422, "WFM_IMPORT_INVALID"
    )
    assert problem["detail"] == "Line 3: the same service_id and interval_start as line 1"
    odd = ndjson(interval(1, 7, 10))
    problem = assert_problem(
        post(client, "contact_statistics", odd, admin(client), NDJSON), 422, "WFM_IMPORT_INVALID"
    )
    assert problem["detail"].startswith("Line 1: interval_start")
    assert stats(db) == []


def test_only_wfm_admin_imports_and_only_ndjson_or_csv(client: EngineClient, db: DB) -> None:
    body = ndjson(interval(1, 0, 4))
    planner = client.auth(sub="pat", tenant=1, roles=("planner",))
    assert_problem(
        post(client, "contact_statistics", body, planner, NDJSON), 403, "INSUFFICIENT_PERMISSIONS"
    )
    assert_problem(
        client.post(IMPORT + "contact_statistics", content=body, headers=NDJSON),
        401,
        "AUTHENTICATION_REQUIRED",
    )
    wrong = post(client, "contact_statistics", body, admin(client), {"Content-Type": "text/plain"})
    assert_problem(wrong, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert wrong.headers["accept-post"] == "application/x-ndjson, text/csv"
    assert stats(db) == []


def test_agents_activity_and_shifts_import_through_their_rows(client: EngineClient, db: DB) -> None:
    h = admin(client)
    agents = (
        "employee_number,full_name,email,group_id,primary_service_id,weekly_hours,is_active\n"
        "T1-0012,Andrey Solovyov,a.s@example.org,1,,,\n"  # seeded: an update
        "T1-0900,Nina Bulk,n.bulk@example.org,2,1,30,yes\n"
    )
    response = post(client, "agents", agents.encode(), h, CSV)
    assert response.status_code == 200, response.text
    assert response.json()["inserted"] == 2
    kept = db.fetchrow(
        "SELECT tenant_id, email, employment_type FROM agents WHERE employee_number = 'T1-0012'"
    )
    assert tuple(kept.values()) == (1, "a.s@example.org", "contractor")  # left out: kept
    new = db.fetchrow(
        "SELECT agent_id, tenant_id, weekly_hours FROM agents WHERE employee_number = 'T1-0900'"
    )
    assert (new["tenant_id"], float(new["weekly_hours"])) == (1, 30.0)

    activity = ndjson(
        {"agent_id": new["agent_id"], "activity_date": "2031-03-03", "login_seconds": 28800,
         "calls_handled": 61, "service_id": 1},
        {"agent_id": 1, "activity_date": "2031-03-03", "calls_handled": 12},
    )  # fmt: skip
    response = post(client, "agent_activity", activity, h, NDJSON)
    assert response.status_code == 200, response.text
    assert (
        db.fetchval(
            "SELECT sum(calls_handled) FROM agent_activity WHERE activity_date = '2031-03-03'"
        )
        == 73
    )
    foreign = ndjson({"agent_id": new["agent_id"], "activity_date": "2031-03-04"})
    problem = assert_problem(post(client, "agent_activity", foreign, admin(client, 2), NDJSON),
                             422, "WFM_IMPORT_INVALID")  # fmt: skip
    assert problem["detail"] == f"Line 1: agent {new['agent_id']} not found"

    shifts = (
        "agent_id,service_id,shift_start,shift_end,notes\n"
        f'{new["agent_id"]},1,2031-03-03T08:00:00Z,2031-03-03T16:00:00Z,"first, bulk"\n'
    )
    response = post(client, "work_schedules", shifts.encode(), h, CSV)
    assert response.status_code == 200, response.text
    shift = db.fetchrow(
        "SELECT tenant_id, status, notes FROM work_schedules WHERE agent_id = $1", new["agent_id"]
    )
    assert tuple(shift.values()) == (1, "planned", "first, bulk")
