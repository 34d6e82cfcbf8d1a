"""Schema drift: a table or column changed under a live route is noticed and reported.

With the event trigger of sql/006 the engine re-checks every row after DDL;
without it (no superuser), the first call that fails on a missing table,
column or function answers 503 and re-checks that row.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.engine_server import EngineClient
from tests.helpers import add_endpoint, assert_problem, poll, run_cli, serve, wait_status
from tests.pg import DB


@pytest.fixture()
def shelves(db: DB) -> int:
    db.execute(
        "CREATE TABLE lib_shelves (shelf_id int PRIMARY KEY, label text);"
        "INSERT INTO lib_shelves VALUES (1, 'A'), (2, 'B')"
    )
    return add_endpoint(
        db, "/lib/v1/shelves", "GET", "SELECT shelf_id, label FROM lib_shelves ORDER BY shelf_id"
    )


def _unwatch(db: DB) -> None:
    db.execute("DROP EVENT TRIGGER engine_ddl_watch; DROP EVENT TRIGGER engine_ddl_drop_watch")


def test_a_renamed_column_is_rechecked_within_a_second_and_the_route_answers_503(
    db: DB, make_client: Callable[..., EngineClient], shelves: int
) -> None:
    client = serve(make_client)
    assert client.get("/lib/v1/shelves").json()[0] == {"shelf_id": 1, "label": "A"}
    db.execute("ALTER TABLE lib_shelves RENAME COLUMN label TO name")
    row = wait_status(db, shelves, "refused", timeout_s=1.5)
    assert "label" in row["reason"] and "does not exist" in row["reason"]
    response = client.get("/lib/v1/shelves")
    assert_problem(response, 503, "ENDPOINT_UNAVAILABLE")
    assert "Retry-After" in response.headers and "lib_shelves" not in response.text
    assert client.get("/_engine/health").json()["routes_not_serving"] == 1

    db.execute("ALTER TABLE lib_shelves RENAME COLUMN name TO label")
    wait_status(db, shelves, "serving", timeout_s=1.5)
    assert client.get("/lib/v1/shelves").status_code == 200


def test_a_dropped_table_is_noticed(
    db: DB, make_client: Callable[..., EngineClient], shelves: int
) -> None:
    client = serve(make_client)
    wait_status(db, shelves, "serving")
    db.execute("DROP TABLE lib_shelves")
    assert "lib_shelves" in wait_status(db, shelves, "refused", timeout_s=1.5)["reason"]
    assert_problem(client.get("/lib/v1/shelves"), 503, "ENDPOINT_UNAVAILABLE")


def test_without_the_event_trigger_a_failing_call_rechecks_its_row(
    db: DB, make_client: Callable[..., EngineClient], shelves: int
) -> None:
    _unwatch(db)
    client = serve(make_client)
    assert client.get("/_engine/health").json()["schema_changes_watched"] is False
    assert client.get("/lib/v1/shelves").status_code == 200
    db.execute("ALTER TABLE lib_shelves RENAME COLUMN label TO name")
    first = client.get("/lib/v1/shelves")  # the database says the column is gone
    assert_problem(first, 503, "ENDPOINT_UNAVAILABLE")
    assert "label" not in first.text
    wait_status(db, shelves, "refused")
    assert client.get("/_engine/health").json()["routes_not_serving"] == 1


def test_check_says_when_drift_is_not_watched(db: DB, db_url: str) -> None:
    assert "not watched" not in run_cli("check", url=db_url).stdout
    _unwatch(db)
    result = run_cli("check", url=db_url)
    assert result.returncode == 0, result.stdout
    assert "WARNING schema drift is not watched" in result.stdout
    assert run_cli("check", "--strict", url=db_url).returncode == 1


def test_a_stale_row_whose_last_good_version_breaks_too_is_refused(
    db: DB, make_client: Callable[..., EngineClient], shelves: int
) -> None:
    client = serve(make_client)
    db.execute("UPDATE api_endpoint_mappings SET query_template = 'SELEC 1' WHERE id = $1", shelves)
    wait_status(db, shelves, "stale")
    assert client.get("/lib/v1/shelves").status_code == 200  # version 1 still serves
    db.execute("DROP TABLE lib_shelves")
    row = wait_status(db, shelves, "refused", timeout_s=1.5)
    assert "the last good version (v1) fails too" in row["reason"]
    assert_problem(client.get("/lib/v1/shelves"), 503, "ENDPOINT_UNAVAILABLE")
    # once the schema is back, the last good version serves again
    db.execute("CREATE TABLE lib_shelves (shelf_id int PRIMARY KEY, label text)")
    assert wait_status(db, shelves, "stale", timeout_s=1.5)["serving_version"] == 1
    assert client.get("/lib/v1/shelves").json() == []


def test_a_missing_column_inside_a_function_is_a_500_after_one_recheck_not_a_reload_storm(
    db: DB, make_client: Callable[..., EngineClient], shelves: int
) -> None:
    db.execute(
        "CREATE FUNCTION lib_labels() RETURNS SETOF text LANGUAGE plpgsql STABLE AS "
        "$$ BEGIN RETURN QUERY EXECUTE 'SELECT label FROM lib_shelves'; END $$"
    )
    mid = add_endpoint(db, "/lib/v1/labels", "GET", "SELECT lib_labels() AS label")
    client = serve(make_client)
    assert client.get("/lib/v1/labels").status_code == 200
    db.execute("ALTER TABLE lib_shelves RENAME COLUMN label TO name")
    wait_status(db, shelves, "refused")  # the event trigger re-checked every row
    # the template itself still prepares: the first failure re-checks it, then it is a bug
    response = poll(
        lambda: client.get("/lib/v1/labels"),
        lambda r: r.status_code == 500,
        "an INTERNAL_ERROR after the re-check",
    )
    assert_problem(response, 500, "INTERNAL_ERROR")
    assert wait_status(db, mid, "serving")["reason"] is None
    catalogs = client.engine.services.catalogs
    before = catalogs.reloads
    for _ in range(20):
        assert client.get("/lib/v1/labels").status_code == 500
    assert catalogs.reloads == before  # no reload per failing call


def test_a_column_type_change_under_a_stale_row_refuses_it(
    db: DB, make_client: Callable[..., EngineClient], shelves: int
) -> None:
    serve(make_client)
    db.execute("UPDATE api_endpoint_mappings SET query_template = 'SELEC 1' WHERE id = $1", shelves)
    wait_status(db, shelves, "stale")
    db.execute("ALTER TABLE lib_shelves ALTER COLUMN shelf_id TYPE text")
    row = wait_status(db, shelves, "refused", timeout_s=1.5)
    assert "types of its placeholders or result columns have changed" in row["reason"]
