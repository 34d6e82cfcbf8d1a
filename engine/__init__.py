"""A database-driven endpoint engine: mapping rows in PostgreSQL become live HTTP endpoints."""

__version__ = "0.1.0"
