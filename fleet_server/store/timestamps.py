"""PostgreSQL's binary time origin: timestamps travel to and from the database as int64 microseconds.

PostgreSQL counts binary `timestamptz` values in microseconds from 2000-01-01T00:00:00Z. A
measurement batch carries its times in that unit already, so the write sends them without a
conversion per row; this module is the only place that knows the origin.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
UNIX_TO_PG_S = 946_684_800
UNIX_TO_PG_US = UNIX_TO_PG_S * 1_000_000


def to_pg_micros(moment: datetime) -> int:
    """An aware datetime as microseconds since PostgreSQL's epoch."""
    delta = moment - PG_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_pg_micros(micros: int) -> datetime:
    return PG_EPOCH + timedelta(microseconds=micros)


def pg_micros_from_unix(stamps: Iterable[tuple[int, int]]) -> list[int]:
    """Unix `(seconds, nanos)` pairs (as a protobuf Timestamp holds them) as PostgreSQL microseconds."""
    offset = UNIX_TO_PG_S
    return [(s - offset) * 1_000_000 + n // 1000 for s, n in stamps]
