"""Well-known type conversions at the edges of their documented ranges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from fleet_server.errors import InvalidArgument
from fleet_server.rpc.wellknown import (
    DURATION_MAX_SECONDS,
    TIMESTAMP_MAX_SECONDS,
    TIMESTAMP_MIN_SECONDS,
    check_timestamp_columns,
    to_datetime,
    to_timedelta,
)


def test_the_ends_of_the_timestamp_range_convert():
    low = to_datetime(timestamp_pb2.Timestamp(seconds=TIMESTAMP_MIN_SECONDS), "t")
    high = to_datetime(timestamp_pb2.Timestamp(seconds=TIMESTAMP_MAX_SECONDS, nanos=999_999_999), "t")
    assert low == datetime(1, 1, 1, tzinfo=UTC)
    assert high == datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(TIMESTAMP_MIN_SECONDS - 1, 0), (TIMESTAMP_MAX_SECONDS + 1, 0), (0, -1), (0, 10**9), (2**63 - 1, 0)],
)
def test_a_timestamp_out_of_range_names_its_path(seconds, nanos):
    with pytest.raises(InvalidArgument) as raised:
        to_datetime(timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos), "tariffs[2].effective_to")
    assert [v.field for v in raised.value.violations] == ["tariffs[2].effective_to"]


def test_a_column_names_every_bad_row_and_passes_a_good_one():
    check_timestamp_columns([0, 1, 2], [0, 5, 999_999_999], lambda i: f"m[{i}]")
    with pytest.raises(InvalidArgument) as raised:
        check_timestamp_columns([0, 2**62, 2], [-1, 0, 7], lambda i: f"m[{i}]")
    assert [v.field for v in raised.value.violations] == ["m[0]", "m[1]"]


def test_durations_convert_with_their_sign():
    assert to_timedelta(duration_pb2.Duration(seconds=-2, nanos=-500_000_000), "g") == timedelta(seconds=-2.5)
    assert to_timedelta(duration_pb2.Duration(nanos=-1), "g") < timedelta(0)  # never rounded to 0s
    assert to_timedelta(duration_pb2.Duration(seconds=DURATION_MAX_SECONDS), "g").days == 3_652_500


@pytest.mark.parametrize(
    ("seconds", "nanos"), [(DURATION_MAX_SECONDS + 1, 0), (0, 2**31 - 1), (1, -1), (-1, 1), (0, -(10**9))]
)
def test_a_duration_out_of_range_is_invalid(seconds, nanos):
    with pytest.raises(InvalidArgument):
        to_timedelta(duration_pb2.Duration(seconds=seconds, nanos=nanos), "grace_period")
