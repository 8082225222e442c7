"""Conversions every servicer shares: protobuf well-known types ⇄ Python values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf import duration_pb2, timestamp_pb2


def to_datetime(ts: timestamp_pb2.Timestamp) -> datetime:
    """A set Timestamp as an aware UTC datetime (microsecond precision)."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def optional_datetime(message: object, field: str) -> datetime | None:
    """`message.field` as a datetime, or None when the field is unset."""
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    return to_datetime(getattr(message, field))


def to_timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def to_timedelta(value: duration_pb2.Duration) -> timedelta:
    return timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)
