"""Property: whatever the rows, duplicates and batch splits, buckets equal Python's aggregation.

Random readings over five years (many months, so many partitions), drawn from a small pool of
keys so duplicates happen inside and across batches, pushed in random splits; the hour and day
buckets the server answers must equal an aggregation, in Python, of the distinct rows where
the first write of each key wins, and the raw query must return exactly those rows.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from fleet.v1 import query_service_pb2 as qpb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.clients import Stubs, bearer, error_reason
from tests.support.measurements import (
    expected_buckets,
    first_wins,
    push,
    reading,
    request,
    ts,
)

START = datetime(2021, 1, 1, tzinfo=UTC)
END = datetime(2026, 2, 1, tzinfo=UTC)
SPAN_MINUTES = int((END - START).total_seconds() // 60) - 1
_codes = itertools.count(1)


@st.composite
def pushes(draw: st.DrawFn) -> tuple[list[tuple[int, str, datetime, float]], list[int]]:
    moments = draw(st.lists(st.integers(0, SPAN_MINUTES), min_size=1, max_size=12))
    keys = st.tuples(st.integers(1, 3), st.sampled_from(["energy_kwh", "power_w"]), st.sampled_from(moments))
    rows = draw(
        st.lists(
            st.tuples(keys, st.integers(-4000, 4000)),
            min_size=1,
            max_size=80,
        )
    )
    readings = [(d, m, START + timedelta(minutes=t), v / 4) for (d, m, t), v in rows]
    cuts = sorted(draw(st.lists(st.integers(1, max(1, len(readings) - 1)), max_size=4)))
    return readings, cuts


def _points(
    stubs: Stubs, admin_token: str, code: str, metric: str, bucket: qpb.Bucket
) -> dict[tuple[int, str, datetime], tuple[int, float, float, float]]:
    answer = stubs.query.QueryMeasurements(
        qpb.QueryMeasurementsRequest(code=code, metric=metric, start=ts(START), end=ts(END), bucket=bucket),
        metadata=bearer(admin_token),
        timeout=30,
    )
    return {
        (p.device_id, metric, p.bucket_start.ToDatetime(tzinfo=UTC)): (p.count, p.sum, p.min, p.max)
        for chunk in answer
        for p in chunk.points
    }


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=pushes())
def test_hour_and_day_buckets_equal_python_over_distinct_rows(stubs, new_customer, admin_token, case):
    readings, cuts = case
    customer = new_customer(f"P{next(_codes)}")
    bounds = [0, *cuts, len(readings)]
    batches = [
        request(i + 1, [reading(d, t, v, metric=m) for d, m, t, v in readings[a:b]])
        for i, (a, b) in enumerate(itertools.pairwise(bounds))
        if b > a
    ]
    acks = push(stubs, customer.token, batches)

    kept = first_wins(readings)
    assert sum(a.accepted for a in acks) == len(kept)
    assert sum(a.duplicates for a in acks) == len(readings) - len(kept)
    distinct = [(d, m, t, v) for (d, m, t), v in kept.items()]
    for metric in ("energy_kwh", "power_w"):
        mine = [r for r in distinct if r[1] == metric]
        if not mine:  # a metric the customer never had is refused, not answered empty
            with pytest.raises(grpc.RpcError) as refused:
                _points(stubs, admin_token, customer.code, metric, qpb.BUCKET_RAW)
            assert error_reason(refused.value) == "METRIC_UNKNOWN"
            continue
        raw = _points(stubs, admin_token, customer.code, metric, qpb.BUCKET_RAW)
        assert raw == {(d, m, t): (1, v, v, v) for d, m, t, v in mine}
        assert _points(stubs, admin_token, customer.code, metric, qpb.BUCKET_HOUR) == expected_buckets(
            mine, timedelta(hours=1)
        )
        assert _points(stubs, admin_token, customer.code, metric, qpb.BUCKET_DAY) == expected_buckets(
            mine, timedelta(days=1)
        )
