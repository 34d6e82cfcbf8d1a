"""The command line an operator uses: migrate, seed, check, routes, token, settings."""

from __future__ import annotations

import jwt

from tests.helpers import add_endpoint, run_cli


def test_check_passes_on_the_seeded_catalogue_and_fails_on_a_bad_row(db, db_url):
    ok = run_cli("check", url=db_url)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "0 problem(s)" in ok.stdout

    bad = add_endpoint(db, "/broken", "GET", "SELECT * FROM missing_table", [])
    add_endpoint(
        db,
        "/mistyped",
        "GET",
        "SELECT $1::date AS d",
        [{"name": "d", "in": "query", "type": "uuid"}],
    )
    result = run_cli("check", url=db_url)
    assert result.returncode == 1
    assert f"api_endpoint_mappings id={bad} GET /broken" in result.stdout
    assert "missing_table" in result.stdout  # the admin sees the real reason
    assert "GET /mistyped" in result.stdout and "infers date" in result.stdout
    assert "2 problem(s)" in result.stdout


def test_routes_lists_the_served_endpoints(db_url):
    result = run_cli("routes", url=db_url)
    assert result.returncode == 0, result.stderr
    assert "GET    /api/v1/cameras " in result.stdout
    assert "POST   /api/v1/cameras/{id}/counting" in result.stdout


def test_migrate_and_seed_are_idempotent_from_the_cli(empty_db_url):
    first = run_cli("migrate", url=empty_db_url)
    assert first.returncode == 0, first.stderr
    assert "applied sql/001_meta_schema.sql" in first.stdout
    again = run_cli("migrate", url=empty_db_url)
    assert again.returncode == 0 and "0 applied" in again.stdout

    seeded = run_cli("seed", "camera_counting", url=empty_db_url)
    assert seeded.returncode == 0, seeded.stderr
    assert "seeded seeds/camera_counting/" in seeded.stdout
    assert "seeds/wfm/" not in seeded.stdout  # only the domain named
    assert "0 file(s) applied" in run_cli("seed", "camera_counting", url=empty_db_url).stdout

    unknown = run_cli("seed", "no_such_domain", url=empty_db_url)
    assert unknown.returncode == 1 and "unknown seed domain" in unknown.stderr


def test_unreachable_database_is_a_clear_error(tmp_path):
    result = run_cli("check", url=f"postgresql://nobody@/nodb?host={tmp_path}")
    assert result.returncode == 1
    assert "cannot reach the database" in result.stderr
    assert "Traceback" not in result.stderr


def test_token_mints_a_verifiable_jwt():
    result = run_cli(
        "token",
        "--sub",
        "alice",
        "--tenant",
        "7",
        "--roles",
        "a,b",
        url="postgresql://unused/x",
        ENGINE_JWT_SECRET="s" * 32,
    )
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), "s" * 32, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["tenant_id"] == 7 and claims["roles"] == ["a", "b"]
    refused = run_cli("token", url="postgresql://unused/x")
    assert refused.returncode == 2 and "ENGINE_JWT_SECRET" in refused.stderr


def test_settings_lists_every_setting():
    result = run_cli("settings")
    assert result.returncode == 0
    for name in ("DATABASE_URL", "ENGINE_PORT", "ENGINE_STATEMENT_TIMEOUT_MS", "ENGINE_JWT_SECRET"):
        assert name in result.stdout


def test_bad_settings_are_clear_errors_not_tracebacks():
    port = run_cli("settings", ENGINE_PORT="eighty")
    assert port.returncode == 2 and "ENGINE_PORT" in port.stderr and "Traceback" not in port.stderr
    proxies = run_cli(
        "serve",
        url="postgresql://nobody@/nodb?host=/nonexistent",
        ENGINE_TRUSTED_PROXIES="not-an-ip",
    )
    assert proxies.returncode == 2 and "not-an-ip" in proxies.stderr
    assert "Traceback" not in proxies.stderr
    both = run_cli(
        "serve",
        url="postgresql://nobody@/nodb?host=/nonexistent",
        ENGINE_JWT_SECRET="s",
        ENGINE_JWT_PUBLIC_KEY="-----BEGIN PUBLIC KEY-----",
    )
    assert both.returncode == 2 and "not both" in both.stderr
