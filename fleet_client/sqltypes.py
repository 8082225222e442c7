"""Column types that behave the same on SQLite and on real databases (portal and push-state tables).

SQLite has neither a timestamp nor an exact decimal type. Timestamps are kept there as
fixed-width UTC text (`YYYY-MM-DD HH:MM:SS.ffffff`, which sorts in time order, so keyset
cursors work) and decimals as text. Elsewhere they are `TIMESTAMP WITH TIME ZONE` and `NUMERIC`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, Dialect, Numeric, String
from sqlalchemy.types import TypeDecorator, TypeEngine

_SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in Python; `timestamptz` in PostgreSQL, sortable text in SQLite.

    A naive value coming in is taken as UTC (that is what the portal schema documents).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(26))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.strftime(_SQLITE_FORMAT)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            # The documented SQLite form has no offset and means UTC; appending one is much
            # faster than `.replace(tzinfo=UTC)` on the hot read path of a back-fill.
            if len(value) <= 26:
                return datetime.fromisoformat(value + "+00:00")
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ExactDecimal(TypeDecorator[Decimal]):
    """A `Decimal` in Python; `NUMERIC` where the database has it exactly, text in SQLite."""

    impl = Numeric(asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric(asdecimal=True))

    def process_bind_param(self, value: Decimal | str | int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        exact = Decimal(str(value))
        return str(exact) if dialect.name == "sqlite" else exact

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(str(value))
