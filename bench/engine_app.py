"""The engine as an ASGI app for the benchmark (settings from the environment)."""

from __future__ import annotations

import os

from engine.app import create_app
from engine.settings import Settings

app = create_app(Settings.from_env(), os.environ["DATABASE_URL"])
