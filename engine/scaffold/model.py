"""What scaffolding knows about a table: its columns and key (pure: no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.errors import ApiError

REFUSED = "SCAFFOLD_REFUSED"


def refuse(reason: str, errors: list[dict[str, Any]] | None = None) -> ApiError:
    return ApiError(REFUSED, reason, errors=errors)


@dataclass(frozen=True)
class Column:
    name: str
    ident: str  # quote_ident(name)
    not_null: bool  # the column's or its domain's NOT NULL
    default: str | None  # the default expression (the column's, else its domain's)
    identity: bool
    generated: bool
    type_sql: str  # format_type with its typmod: varchar(20), numeric(5,2)
    bare_type_sql: str  # without: character varying, numeric
    param_type: str
    items: str | None
    cast: str | None  # bound as text and cast to this type (types the binder has no rule for)
    schema: dict[str, Any]  # JSON Schema of a non-null value
    comment: str | None
    is_domain: bool = False
    serial: bool = False  # owns its sequence (serial, bigserial): assigned, never written

    @property
    def has_default(self) -> bool:
        return self.default is not None or self.identity

    def placeholder(self, n: int) -> str:
        return f"${n}::text::{self.cast}" if self.cast else f"${n}"


@dataclass
class Table:
    """One table: its name, its columns, its primary key and what was noticed on the way."""

    schema: str
    name: str
    ident: str  # schema.table, quoted by quote_ident
    kind: str  # pg_class.relkind: r (table) or p (partitioned table)
    columns: list[Column]
    key: list[str]  # primary key columns, in key order
    notes: list[str] = field(default_factory=list)

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)
