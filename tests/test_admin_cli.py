"""``python -m engine endpoints ...``: the admin API's operations at a terminal."""

from __future__ import annotations

from tests.helpers import add_endpoint, run_cli
from tests.pg import DB

ME = {"LOGNAME": "tester", "USER": "tester"}
BOOKS = """
CREATE TABLE lib_books (id serial PRIMARY KEY, title text NOT NULL);
INSERT INTO lib_books (title) VALUES ('Dune');
"""


def cli(db_url: str, *args: str) -> tuple[int, str, str]:
    done = run_cli("endpoints", *args, url=db_url, **ME)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def test_list_and_show(db: DB, db_url: str) -> None:
    mid = add_endpoint(db, "/lib/v1/one", "GET", "SELECT 1 AS one", description="one")
    code, out, _ = cli(db_url, "list")
    assert code == 0
    assert out.splitlines()[0].split() == [
        "id", "state", "method", "path", "version", "service", "reason",
    ]  # fmt: skip
    assert any(
        line.split()[:4] == [str(mid), "pending", "GET", "/lib/v1/one"] for line in out.splitlines()
    )
    assert "/admin/v1/endpoints" in out
    code, out, _ = cli(db_url, "list", "--service", "test_service")
    assert code == 0 and "/admin/v1" not in out and "/lib/v1/one" in out

    code, out, _ = cli(db_url, "show", str(mid))
    assert code == 0
    assert out.splitlines()[0] == f"mapping id={mid}: GET /lib/v1/one v1"
    assert "description: one" in out and "    SELECT 1 AS one" in out
    code, _, err = cli(db_url, "show", "999999")
    assert code == 1 and "ENDPOINT_NOT_FOUND" in err


def test_deactivate_activate_versions_diff_and_rollback(db: DB, db_url: str) -> None:
    db.execute(BOOKS)
    mid = add_endpoint(db, "/lib/v1/books", "GET", "SELECT id, title FROM lib_books ORDER BY id")
    code, out, _ = cli(db_url, "deactivate", str(mid))
    assert code == 0 and f"mapping id={mid} GET /lib/v1/books deactivated (v2)" in out
    code, out, _ = cli(db_url, "activate", str(mid))
    assert code == 0, out
    assert f"mapping id={mid} GET /lib/v1/books activated (v3); state: serving" in out
    db.execute(
        "UPDATE api_endpoint_mappings SET query_template = $2 WHERE id = $1",
        mid,
        "SELECT id, upper(title) AS title FROM lib_books ORDER BY id",
    )

    code, out, _ = cli(db_url, "versions", str(mid))
    assert code == 0
    lines = [line.split() for line in out.splitlines()[2:]]
    assert [(v[0], v[1], v[2]) for v in lines] == [
        ("1", "created", db.fetchval("SELECT current_user")),
        ("2", "deactivated", "cli:tester"),
        ("3", "activated", "cli:tester"),
        ("4", "updated", db.fetchval("SELECT current_user")),
    ]

    code, out, _ = cli(db_url, "diff", str(mid), "--from", "1", "--to", "2")
    assert code == 0 and "mapping.is_active: True -> False" in out
    code, out, _ = cli(db_url, "diff", str(mid))  # the last two
    assert code == 0 and "version 3 -> 4, 1 field(s) changed" in out
    assert "-SELECT id, title FROM lib_books ORDER BY id" in out
    assert "+SELECT id, upper(title) AS title FROM lib_books ORDER BY id" in out

    code, out, _ = cli(db_url, "rollback", str(mid), "--version", "1", "--dry-run")
    assert code == 0 and "would serve; nothing was written" in out
    assert db.fetchval("SELECT version FROM api_endpoint_mappings WHERE id = $1", mid) == 4
    code, out, _ = cli(db_url, "rollback", str(mid), "--version", "1")
    assert code == 0 and "version 1 restored (v5); state: serving" in out
    template = db.fetchval("SELECT query_template FROM api_endpoint_mappings WHERE id = $1", mid)
    assert template == "SELECT id, title FROM lib_books ORDER BY id"
    kind, by = db.fetchrow(
        "SELECT change_kind, changed_by FROM api_endpoint_history "
        "WHERE mapping_id = $1 ORDER BY version DESC LIMIT 1",
        mid,
    )
    assert (kind, by) == ("rollback", "cli:tester")
    code, _, err = cli(db_url, "diff", str(mid), "--from", "1", "--to", "99")
    assert code == 1 and "ENDPOINT_VERSION_NOT_FOUND" in err


def test_refusals_exit_1_with_the_reasons_and_write_nothing(db: DB, db_url: str) -> None:
    db.execute(BOOKS)
    broken = add_endpoint(db, "/lib/v1/broken", "GET", "SELECT * FROM gone", is_active=False)
    code, _, err = cli(db_url, "activate", str(broken))
    assert code == 1
    assert "ENDPOINT_INVALID" in err and "gone" in err
    assert f"mapping id={broken} GET /lib/v1/broken:" in err
    assert not db.fetchval("SELECT is_active FROM api_endpoint_mappings WHERE id = $1", broken)

    mid = add_endpoint(db, "/lib/v1/books", "GET", "SELECT id, title FROM lib_books ORDER BY id")
    db.execute(
        "UPDATE api_endpoint_mappings SET query_template = 'SELECT id FROM lib_books' WHERE id = $1",
        mid,
    )
    db.execute("ALTER TABLE lib_books DROP COLUMN title")
    history = db.fetchval("SELECT count(*) FROM api_endpoint_history")
    code, out, _ = cli(db_url, "rollback", str(mid), "--version", "1", "--dry-run")
    assert code == 1 and "would NOT serve" in out and "title" in out
    code, _, err = cli(db_url, "rollback", str(mid), "--version", "1")
    assert code == 1 and "ENDPOINT_INVALID" in err and "title" in err
    assert db.fetchval("SELECT count(*) FROM api_endpoint_history") == history
    code, _, err = cli(db_url, "activate", "999999")
    assert code == 1 and "ENDPOINT_NOT_FOUND" in err
