"""``engine keys``: rotating, deleting and listing API keys from the command line.

A rotation keeps the row (name, roles, permissions, tenant, expiry) and swaps its
secret: the old key is refused by every running engine at once, the new one
works. Only a revoked or expired key may be deleted. The listing shows every
grant and date, never the secret or its hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from tests.engine_server import EngineClient
from tests.helpers import assert_problem, poll, run_cli
from tests.pg import DB

CAMERAS = "/api/v1/cameras"
ROW = (
    "SELECT id, name, key_prefix, key_hash, roles, permissions, tenant_id, expires_at, "
    "revoked_at, created_at FROM api_keys WHERE name = $1"
)


def create(url: str, name: str, *options: str) -> str:
    result = run_cli("keys", "create", "--name", name, *options, url=url)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def rotate(url: str, name: str) -> str:
    result = run_cli("keys", "rotate", name, url=url)
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert key.startswith("ek_") and "\n" not in key, result.stdout
    assert "shown only this once" in result.stderr
    return key


def listing(url: str) -> dict[str, dict[str, str]]:
    """``keys list`` parsed: name -> {column: value}."""
    result = run_cli("keys", "list", url=url)
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    columns = [c.strip() for c in header.split("  ") if c.strip()]
    assert columns == [
        "name",
        "status",
        "prefix",
        "tenant",
        "roles",
        "permissions",
        "created",
        "expires",
        "last used",
        "revoked",
    ]
    rows = {}
    for line in lines:
        values = line.split()
        assert len(values) == len(columns), line
        rows[values[0]] = dict(zip(columns, values, strict=True))
    return rows


def test_rotate_keeps_the_row_and_its_grants_and_changes_only_the_secret(
    db: DB, db_url: str
) -> None:
    old = create(
        db_url,
        "ci",
        "--roles",
        "engine_admin,viewer",
        "--permissions",
        "reports:read",
        "--tenant",
        "3",
        "--expires-days",
        "30",
    )
    before = db.fetchrow(ROW, "ci")
    new = rotate(db_url, "ci")
    after = db.fetchrow(ROW, "ci")
    assert new != old
    assert after["key_prefix"] == new.split("_")[1] != before["key_prefix"]
    assert after["key_hash"] == hashlib.sha256(new.encode()).hexdigest() != before["key_hash"]
    unchanged = ("id", "name", "roles", "permissions", "tenant_id", "expires_at", "created_at")
    assert {c: after[c] for c in unchanged} == {c: before[c] for c in unchanged}
    assert after["revoked_at"] is None
    # rotating again works too, and each time only the newest secret is stored
    newer = rotate(db_url, "ci")
    assert db.fetchval("SELECT key_hash FROM api_keys WHERE name = 'ci'") == (
        hashlib.sha256(newer.encode()).hexdigest()
    )
    assert db.fetchval("SELECT count(*) FROM api_keys") == 1


def test_rotating_an_unknown_revoked_or_expired_key_is_refused(db: DB, db_url: str) -> None:
    create(db_url, "gone")
    assert run_cli("keys", "revoke", "gone", url=db_url).returncode == 0
    create(db_url, "old")
    db.execute("UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE name = 'old'")
    stored = {r["name"]: r["key_hash"] for r in db.fetch("SELECT name, key_hash FROM api_keys")}

    unknown = run_cli("keys", "rotate", "nobody", url=db_url)
    assert unknown.returncode == 1 and "no key named 'nobody'" in unknown.stderr
    revoked = run_cli("keys", "rotate", "gone", url=db_url)
    assert revoked.returncode == 1
    assert "was revoked at" in revoked.stderr and "create a new one" in revoked.stderr
    expired = run_cli("keys", "rotate", "old", url=db_url)
    assert expired.returncode == 1 and "expired at" in expired.stderr
    for result in (unknown, revoked, expired):
        assert result.stdout == "" and "Traceback" not in result.stderr
    after = {r["name"]: r["key_hash"] for r in db.fetch("SELECT name, key_hash FROM api_keys")}
    assert after == stored  # nothing was changed


def test_delete_refuses_an_active_key_and_removes_a_revoked_or_expired_one(
    db: DB, db_url: str
) -> None:
    create(db_url, "live")
    create(db_url, "done")
    create(db_url, "lapsed", "--expires-days", "1")
    db.execute("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE name = 'lapsed'")

    active = run_cli("keys", "delete", "live", url=db_url)
    assert active.returncode == 1
    assert "is active: revoke it first" in active.stderr and "keys revoke live" in active.stderr
    unknown = run_cli("keys", "delete", "nobody", url=db_url)
    assert unknown.returncode == 1 and "no key named 'nobody'" in unknown.stderr

    assert run_cli("keys", "revoke", "done", url=db_url).returncode == 0
    for name in ("done", "lapsed"):
        deleted = run_cli("keys", "delete", name, url=db_url)
        assert deleted.returncode == 0, deleted.stderr
        assert f"key {name!r} deleted" in deleted.stdout
    assert [r["name"] for r in db.fetch("SELECT name FROM api_keys")] == ["live"]
    again = run_cli("keys", "delete", "done", url=db_url)
    assert again.returncode == 1 and "no key named 'done'" in again.stderr


def test_list_shows_grants_and_dates_but_never_the_secret(db: DB, db_url: str) -> None:
    full = create(
        db_url,
        "reporter",
        "--roles",
        "analyst,admin",
        "--permissions",
        "reports:read,reports:export",
        "--tenant",
        "2",
        "--expires-days",
        "10",
    )
    create(db_url, "bare")
    create(db_url, "revoked-one")
    assert run_cli("keys", "revoke", "revoked-one", url=db_url).returncode == 0
    db.execute("UPDATE api_keys SET last_used_at = '2030-01-02 03:04:05+00' WHERE name = 'bare'")
    row = db.fetchrow(ROW, "reporter")

    rows = listing(db_url)
    assert list(rows) == ["bare", "reporter", "revoked-one"]
    reporter = rows["reporter"]
    assert reporter["status"] == "active"
    assert reporter["prefix"] == f"ek_{row['key_prefix']}" and full.startswith(reporter["prefix"])
    assert reporter["tenant"] == "2"
    assert reporter["roles"] == "analyst,admin"
    assert reporter["permissions"] == "reports:read,reports:export"
    assert reporter["expires"] == row["expires_at"].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert reporter["created"] == row["created_at"].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert reporter["last used"] == "-" and reporter["revoked"] == "-"
    bare = rows["bare"]
    assert (bare["tenant"], bare["roles"], bare["permissions"]) == ("-", "-", "-")
    assert bare["expires"] == "never" and bare["last used"] == "2030-01-02T03:04:05Z"
    gone = rows["revoked-one"]
    assert gone["status"] == "revoked" and gone["revoked"].endswith("Z")

    printed = run_cli("keys", "list", url=db_url).stdout
    secret = full.split("_", 2)[2]
    assert secret[:8] not in printed
    assert row["key_hash"] not in printed and row["key_hash"][:16] not in printed


def test_a_rotated_key_is_refused_at_once_by_every_running_engine(
    make_client: Callable[..., EngineClient], db_url: str
) -> None:
    engines = [make_client(), make_client()]
    old = create(db_url, "store-1", "--roles", "viewer", "--tenant", "1")
    answers: list[Any] = []
    for engine in engines:
        r = engine.wait_for("GET", CAMERAS, 200, headers={"X-API-Key": old})
        assert r.status_code == 200, r.text
        answers.append(r.json()["data"])

    new = rotate(db_url, "store-1")
    for engine, before in zip(engines, answers, strict=True):
        poll(
            lambda engine=engine: engine.get(CAMERAS, headers={"X-API-Key": old}).status_code,
            lambda status: status == 401,
            "the old secret refused after rotation",
        )
        refused = engine.get(CAMERAS, headers={"X-API-Key": old})
        assert_problem(refused, 401, "INVALID_TOKEN")
        # the same grants: the new key reads the same tenant's cameras
        r = engine.wait_for("GET", CAMERAS, 200, headers={"X-API-Key": new})
        assert r.status_code == 200, r.text
        assert r.json()["data"] == before
