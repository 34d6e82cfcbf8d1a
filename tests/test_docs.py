"""The README documents every setting, CLI verb and make target (Datasette's test_docs habit)."""

from __future__ import annotations

from pathlib import Path

from engine.cli import build_parser
from engine.settings import documented_settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_documented():
    missing = [env for env, _, _ in documented_settings() if f"`{env}`" not in README]
    assert not missing, f"settings missing from README.md: {missing}"


def test_every_cli_verb_is_documented():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    missing = [verb for verb in sub.choices if f"python -m engine {verb}" not in README]
    assert not missing, f"CLI verbs missing from README.md: {missing}"


def test_the_two_setup_commands_and_targets_are_documented():
    for target in (
        "make run",
        "make test",
        "make migrate",
        "make seed",
        "make check",
        "make bench",
        "make lint",
    ):
        assert target in README, target
