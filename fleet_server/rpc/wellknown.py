"""Protobuf well-known types ⇄ Python values, for the servicers and for fleetctl alike.

A Timestamp or Duration a caller sends is checked against the range its type documents before
it becomes a `datetime` or `timedelta`: seconds a `datetime` cannot hold used to fail as
INTERNAL (OverflowError), and `nanos` outside 0..999,999,999 used to be folded into the seconds
(`nanos=-1` stored a reading a microsecond early). Both are INVALID_ARGUMENT naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from google.protobuf import duration_pb2, timestamp_pb2

from fleet_server.errors import FieldViolation, InvalidArgument

# The range a google.protobuf.Timestamp may hold (0001-01-01 … 9999-12-31T23:59:59Z).
TIMESTAMP_MIN_SECONDS = -62_135_596_800
TIMESTAMP_MAX_SECONDS = 253_402_300_799
MAX_NANOS = 999_999_999
# The range a google.protobuf.Duration may hold: about ±10,000 years.
DURATION_MAX_SECONDS = 315_576_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

TIMESTAMP_RANGE = (
    "must be a valid Timestamp: seconds within 0001-01-01..9999-12-31T23:59:59Z, nanos 0..999999999"
)
DURATION_RANGE = (
    f"must be a valid Duration: seconds within ±{DURATION_MAX_SECONDS}, nanos within ±{MAX_NANOS} "
    "with the sign of seconds"
)


def timestamp_ok(seconds: int, nanos: int) -> bool:
    return TIMESTAMP_MIN_SECONDS <= seconds <= TIMESTAMP_MAX_SECONDS and 0 <= nanos <= MAX_NANOS


def to_datetime(ts: timestamp_pb2.Timestamp, path: str) -> datetime:
    """A Timestamp as an aware UTC datetime (microsecond precision); INVALID_ARGUMENT at `path`
    when it is outside the Timestamp range."""
    if not timestamp_ok(ts.seconds, ts.nanos):
        raise InvalidArgument.single(path, TIMESTAMP_RANGE)
    return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)


def optional_datetime(message: object, field: str, prefix: str = "") -> datetime | None:
    """`message.field` as a datetime, or None when the field is unset (so the domain can name it).

    `prefix` is the path of `message` in the request (`tariffs[3].`), for the error's field path.
    """
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    return to_datetime(getattr(message, field), prefix + field)


def check_timestamp_columns(
    seconds: Sequence[int], nanos: Sequence[int], path_of: Callable[[int], str]
) -> None:
    """INVALID_ARGUMENT naming every Timestamp out of range in a column of them (a batch's `time`).

    The whole column is checked at C speed (`min`, `max`); the rows are walked only to name them.
    """
    if not seconds:
        return
    if (
        min(nanos) >= 0
        and max(nanos) <= MAX_NANOS
        and min(seconds) >= TIMESTAMP_MIN_SECONDS
        and max(seconds) <= TIMESTAMP_MAX_SECONDS
    ):
        return
    raise InvalidArgument(
        FieldViolation(path_of(i), TIMESTAMP_RANGE)
        for i, (s, n) in enumerate(zip(seconds, nanos, strict=True))
        if not timestamp_ok(s, n)
    )


def to_timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def to_timedelta(value: duration_pb2.Duration, path: str) -> timedelta:
    """A Duration as a timedelta (microsecond precision); INVALID_ARGUMENT at `path` outside its range."""
    seconds, nanos = value.seconds, value.nanos
    in_range = abs(seconds) <= DURATION_MAX_SECONDS and abs(nanos) <= MAX_NANOS
    if not in_range or (seconds > 0 > nanos) or (seconds < 0 < nanos):
        raise InvalidArgument.single(path, DURATION_RANGE)
    return timedelta(seconds=seconds, microseconds=nanos // 1000)


def decimal_text(value: Decimal) -> str:
    """A NUMERIC as plain decimal text (`0.0000001`, never `1E-7`), keeping the value's places."""
    return format(value, "f")
