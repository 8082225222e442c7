"""Protobuf well-known types ⇄ Python values, for the servicers and for fleetctl alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from google.protobuf import duration_pb2, timestamp_pb2

# The range a google.protobuf.Timestamp may hold (0001-01-01 … 9999-12-31T23:59:59Z).
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_datetime(ts: timestamp_pb2.Timestamp) -> datetime:
    """A Timestamp as an aware UTC datetime (microsecond precision).

    A caller can send seconds outside the Timestamp range, which `datetime` cannot hold; they
    are clamped to that range so the domain's range checks reject them as INVALID_ARGUMENT
    instead of the conversion failing as INTERNAL.
    """
    seconds = min(max(ts.seconds, _MIN_SECONDS), _MAX_SECONDS)
    micros = min(max(ts.nanos, 0), 999_999_999) // 1000
    return _EPOCH + timedelta(seconds=seconds, microseconds=micros)


def optional_datetime(message: object, field: str) -> datetime | None:
    """`message.field` as a datetime, or None when the field is unset (so the domain can name it)."""
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    return to_datetime(getattr(message, field))


def to_timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def to_timedelta(value: duration_pb2.Duration) -> timedelta:
    return timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)


def decimal_text(value: Decimal) -> str:
    """A NUMERIC as plain decimal text (`0.0000001`, never `1E-7`), keeping the value's places."""
    return format(value, "f")
