"""The command line an operator uses: help, migrate, seed, check, routes, token, settings."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import jwt

from engine.cli import build_parser
from tests.helpers import add_endpoint, run_cli


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The verbs registered directly under ``parser``, by name."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def every_parser(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for name, child in subcommands(parser).items():
        yield from every_parser(child, (*path, name))


def listed_commands(help_text: str) -> dict[str, str]:
    """The ``commands:`` section of a --help text: verb -> its one-line description."""
    section = help_text.split("\ncommands:\n", 1)[1].split("\n\n", 1)[0]
    return dict(re.findall(r"^    (\S+)\s+(\S.*)$", section, flags=re.MULTILINE))


def test_help_lists_every_verb_in_plain_text():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "`" not in text
    parser = build_parser()
    listed = listed_commands(text)
    assert set(listed) == set(subcommands(parser)), listed
    for name in ("keys", "settings", "routes", "check", "serve"):
        assert name in listed
    # the epilog: examples and the variable that matters most
    assert "examples:" in text and "python -m engine routes --all" in text
    assert "DATABASE_URL" in text and "python -m engine settings" in text


def test_every_verbs_help_is_plain_and_describes_it():
    for path, parser in every_parser(build_parser()):
        text = parser.format_help()
        where = " ".join(path) or "(top level)"
        assert "`" not in text and "**" not in text, where
        assert parser.description, f"{where} --help has no description"
        children = subcommands(parser)
        if children:
            assert set(listed_commands(text)) == set(children), where
    keys_help = run_cli("keys", "--help")
    assert keys_help.returncode == 0
    for verb in ("create", "list", "rotate", "revoke", "delete"):
        assert verb in listed_commands(keys_help.stdout)


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


def test_routes_all_lists_drafts_and_refused_rows_with_their_reasons(db, db_url):
    draft = add_endpoint(db, "/t/draft", sql="SELECT 1 AS one", is_active=False)
    broken = add_endpoint(db, "/t/broken", sql="SELECT * FROM missing_table")
    owner = add_endpoint(db, "/t/owned", sql="SELECT 1 AS one")
    clash = add_endpoint(db, "/t/owned/", sql="SELECT 2 AS two")
    every = run_cli("routes", "--all", url=db_url)
    assert every.returncode == 0, every.stderr

    def line_of(mapping_id: int) -> str:
        (line,) = [x for x in every.stdout.splitlines() if f"(id={mapping_id}, v" in x]
        return line

    assert line_of(draft).startswith("DRAFT    GET    /t/draft  ")
    assert line_of(draft).endswith(": inactive (is_active = false)")
    assert line_of(broken).startswith("REFUSED  GET    /t/broken  (id=")
    assert "missing_table" in line_of(broken)
    assert line_of(owner) == f"SERVING  GET    /t/owned  (id={owner}, v1, list, public)"
    assert line_of(clash).startswith("REFUSED  GET    /t/owned/  ")
    assert f"as mapping id={owner} (/t/owned)" in line_of(clash)
    assert "GET    /api/v1/cameras  (id=" in every.stdout  # the seeded rows too
    total = db.fetchval("SELECT count(*) FROM api_endpoint_mappings")
    assert f"{total} row(s): " in every.stdout and "2 refused" in every.stdout

    served = run_cli("routes", url=db_url)  # without --all: what serves, as before
    assert served.returncode == 0, served.stderr
    assert "GET    /t/owned  " in served.stdout
    assert "/t/draft" not in served.stdout
    assert f"SKIPPED api_endpoint_mappings id={broken} GET /t/broken" in served.stdout


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
