"""QueryMeasurements and SummarizeFleet through the wire: buckets, ranges, filters, chunks, errors."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from fleet.v1 import query_service_pb2 as qpb
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from fleet_server.db.session import Database
from fleet_server.rpc.wellknown import TIMESTAMP_RANGE
from fleet_server.store import measurement_reads as mq
from tests.support.clients import Stubs, bad_request_fields, bearer, error_reason
from tests.support.measurements import push, reading, request, ts

T0 = datetime(2025, 10, 1, 0, 0, tzinfo=UTC)
Q = timedelta(minutes=15)
H = timedelta(hours=1)


def _query(stubs: Stubs, token: str, **fields: Any) -> list[qpb.QueryMeasurementsResponse]:
    fields.setdefault("metric", "energy_kwh")
    call = stubs.query.QueryMeasurements(
        qpb.QueryMeasurementsRequest(**fields), metadata=bearer(token), timeout=30
    )
    return list(call)


def _points(
    chunks: list[qpb.QueryMeasurementsResponse],
) -> list[tuple[int, datetime, int, float, float, float]]:
    return [
        (p.device_id, p.bucket_start.ToDatetime(tzinfo=UTC), p.count, p.sum, p.min, p.max)
        for chunk in chunks
        for p in chunk.points
    ]


@pytest.fixture
def two_days(stubs, new_customer):
    """Devices 1 and 2, a reading every 15 minutes for 48 hours; value = hour of the day."""
    customer = new_customer("ACME")
    rows = [
        reading(d, T0 + i * Q, float((i // 4) % 24), metric="energy_kwh") for i in range(192) for d in (1, 2)
    ]
    rows.append(reading(1, T0, 100.0, metric="power_w"))
    push(stubs, customer.token, [request(b + 1, rows[b * 100 : (b + 1) * 100]) for b in range(4)])
    return customer


def test_raw_points_in_start_end_order_by_device_then_time(stubs, admin_token, two_days):
    points = _points(
        _query(stubs, admin_token, code="ACME", start=ts(T0 + H), end=ts(T0 + 2 * H), bucket=qpb.BUCKET_RAW)
    )
    expected = [(d, T0 + H + i * Q, 1, 1.0, 1.0, 1.0) for d in (1, 2) for i in range(4)]
    assert points == expected  # start included, end excluded


def test_hour_buckets_come_from_the_rollups(stubs, admin_token, two_days):
    points = _points(
        _query(stubs, admin_token, code="ACME", start=ts(T0), end=ts(T0 + 3 * H), bucket=qpb.BUCKET_HOUR)
    )
    assert points == [(d, T0 + h * H, 4, 4.0 * h, float(h), float(h)) for d in (1, 2) for h in range(3)]


def test_day_buckets_are_utc_days_summed_from_hours(stubs, admin_token, two_days):
    points = _points(
        _query(
            stubs,
            admin_token,
            code="ACME",
            start=ts(T0),
            end=ts(T0 + timedelta(days=2)),
            bucket=qpb.BUCKET_DAY,
            device_ids=[2],
        )
    )
    day_sum = 4.0 * sum(range(24))
    assert points == [(2, T0, 96, day_sum, 0.0, 23.0), (2, T0 + timedelta(days=1), 96, day_sum, 0.0, 23.0)]


def test_bucket_queries_widen_a_partial_range_to_whole_buckets(stubs, admin_token, two_days):
    hours = _points(
        _query(
            stubs,
            admin_token,
            code="ACME",
            start=ts(T0 + H + 20 * timedelta(minutes=1)),
            end=ts(T0 + 2 * H + timedelta(minutes=1)),
            bucket=qpb.BUCKET_HOUR,
            device_ids=[1],
        )
    )
    assert [(d, t, c) for d, t, c, *_ in hours] == [(1, T0 + H, 4), (1, T0 + 2 * H, 4)]
    days = _points(
        _query(
            stubs,
            admin_token,
            code="ACME",
            start=ts(T0 + timedelta(hours=23)),
            end=ts(T0 + timedelta(hours=25)),
            bucket=qpb.BUCKET_DAY,
            device_ids=[1],
        )
    )
    assert [(t, c) for _, t, c, *_ in days] == [(T0, 96), (T0 + timedelta(days=1), 96)]


def test_device_and_metric_filters(stubs, admin_token, two_days):
    power = _points(
        _query(
            stubs,
            admin_token,
            code="ACME",
            metric="power_w",
            start=ts(T0),
            end=ts(T0 + timedelta(days=2)),
            bucket=qpb.BUCKET_RAW,
        )
    )
    assert power == [(1, T0, 1, 100.0, 100.0, 100.0)]
    nobody = _query(
        stubs,
        admin_token,
        code="ACME",
        start=ts(T0),
        end=ts(T0 + timedelta(days=2)),
        bucket=qpb.BUCKET_HOUR,
        device_ids=[9],
    )
    assert _points(nobody) == []


def test_long_answers_arrive_in_chunks_of_at_most_5000_points(stubs, admin_token, new_customer):
    customer = new_customer("BULK")
    rows = [reading(1 + i % 3, T0 + (i // 3) * timedelta(minutes=1), 1.0) for i in range(5_600)]
    push(stubs, customer.token, [request(b + 1, rows[b * 500 : (b + 1) * 500]) for b in range(12)])

    chunks = _query(
        stubs, admin_token, code="BULK", start=ts(T0), end=ts(T0 + timedelta(days=30)), bucket=qpb.BUCKET_RAW
    )

    assert [len(c.points) for c in chunks] == [5_000, 600]
    points = _points(chunks)
    assert points == sorted(points)


def _plan(db: Database, query: mq.MeasurementQuery) -> str:
    sql, params = mq.point_statement(query)

    def explain(session: Session) -> str:
        conn = session.connection().connection.driver_connection
        assert conn is not None
        return "\n".join(row[0] for row in conn.execute("EXPLAIN " + sql, params))

    return db.transaction(explain)


def test_hour_and_day_queries_never_read_raw_rows(db, stubs, new_customer):
    customer = new_customer("ACME")
    push(
        stubs,
        customer.token,
        [request(1, [reading(1, T0 + timedelta(days=d), 1.0) for d in range(0, 90, 20)])],
    )
    window = (customer.id, "energy_kwh", T0, T0 + timedelta(days=90))
    raw_plan = _plan(db, mq.MeasurementQuery(*window, mq.Bucket.RAW, (1, 2)))
    assert "measurements_p202510" in raw_plan  # the control: raw reads do show up in a plan

    for bucket in (mq.Bucket.HOUR, mq.Bucket.DAY):
        plan = _plan(db, mq.MeasurementQuery(*window, bucket, (1, 2)))
        assert "on measurement_rollups_hourly" in plan
        assert "measurements_p" not in plan  # no partition of the raw table
        assert not re.search(r"\bon measurements\b", plan)


def test_the_raw_query_reads_only_the_months_in_range(db, stubs, new_customer):
    customer = new_customer("ACME")
    push(
        stubs,
        customer.token,
        [request(1, [reading(1, datetime(2022, m, 2, tzinfo=UTC), 1.0) for m in (1, 2, 3)])],
    )
    query = mq.MeasurementQuery(
        customer.id,
        "energy_kwh",
        datetime(2022, 2, 1, tzinfo=UTC),
        datetime(2022, 3, 1, tzinfo=UTC),
        mq.Bucket.RAW,
    )
    plan = _plan(db, query)
    assert "measurements_p202202" in plan
    assert "measurements_p202201" not in plan
    assert "measurements_p202203" not in plan


def test_unknown_customer_is_not_found(stubs, admin_token):
    with pytest.raises(grpc.RpcError) as raised:
        _query(stubs, admin_token, code="NOPE", start=ts(T0), end=ts(T0 + H), bucket=qpb.BUCKET_RAW)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(raised.value) == "CUSTOMER_NOT_FOUND"
    assert "NOPE" in raised.value.details()


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"start": ts(T0 + H), "end": ts(T0 + H), "bucket": qpb.BUCKET_RAW}, "end", "must be after start"),
        ({"start": ts(T0 + H), "end": ts(T0), "bucket": qpb.BUCKET_HOUR}, "end", "must be after start"),
        ({"end": ts(T0), "bucket": qpb.BUCKET_RAW}, "start", "must be set"),
        ({"start": ts(T0), "bucket": qpb.BUCKET_RAW}, "end", "must be set"),
        ({"start": ts(T0), "end": ts(T0 + H)}, "bucket", "must be BUCKET_RAW, BUCKET_HOUR or BUCKET_DAY"),
        (
            {"start": ts(T0), "end": ts(T0 + H), "bucket": qpb.BUCKET_RAW, "metric": "Bad!"},
            "metric",
            "must match",
        ),
        (
            {"start": ts(T0), "end": ts(T0 + H), "bucket": qpb.BUCKET_RAW, "device_ids": [3, 0]},
            "device_ids[1]",
            "must be positive",
        ),
        ({"start": ts(T0), "end": ts(T0 + H), "bucket": qpb.BUCKET_RAW, "code": ""}, "code", "must be set"),
        (
            {"start": ts(T0), "end": ts(T0 + H), "bucket": qpb.BUCKET_RAW, "code": "acme"},
            "code",
            "must match [A-Z0-9_-]{2,32}",
        ),
    ],
)
def test_bad_queries_are_invalid_arguments_naming_the_field(
    stubs, admin_token, new_customer, fields, field, message
):
    new_customer("ACME")
    fields.setdefault("code", "ACME")
    with pytest.raises(grpc.RpcError) as raised:
        _query(stubs, admin_token, **fields)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details().startswith(f"{field}: {message}")
    assert bad_request_fields(raised.value) == [field]


def test_timestamps_beyond_the_timestamp_range_are_invalid_arguments_not_internal(
    stubs, admin_token, new_customer
):
    new_customer("ACME")
    start, end = qpb.QueryMeasurementsRequest().start, qpb.QueryMeasurementsRequest().end
    start.seconds, end.seconds = 10**15, 10**15 + 5
    with pytest.raises(grpc.RpcError) as raised:
        _query(stubs, admin_token, code="ACME", start=start, end=end, bucket=qpb.BUCKET_HOUR)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == f"start: {TIMESTAMP_RANGE}"
    assert bad_request_fields(raised.value) == ["start"]


def test_a_bucket_query_may_end_in_the_last_day_a_timestamp_holds(stubs, admin_token, two_days):
    end = datetime(9999, 12, 31, 23, 30, tzinfo=UTC)
    for bucket in (qpb.BUCKET_HOUR, qpb.BUCKET_DAY):
        points = _points(_query(stubs, admin_token, code="ACME", start=ts(T0), end=ts(end), bucket=bucket))
        assert sum(count for _, _, count, *_ in points) == 2 * 192  # every reading, none lost


def test_a_customer_token_cannot_query(stubs, new_customer):
    customer = new_customer("ACME")
    with pytest.raises(grpc.RpcError) as raised:
        _query(stubs, customer.token, code="ACME", start=ts(T0), end=ts(T0 + H), bucket=qpb.BUCKET_RAW)
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED


def _add_devices(engine: Engine, customer_id: int, count: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO fleet.sites (customer_id, id, name, address, timezone) "
                "VALUES (:c, 1, 's', '', 'UTC')"
            ),
            {"c": customer_id},
        )
        for i in range(1, count + 1):
            conn.execute(
                text(
                    "INSERT INTO fleet.devices (customer_id, id, site_id, name, serial_number, kind) "
                    "VALUES (:c, :i, 1, 'd', 'sn', 'meter')"
                ),
                {"c": customer_id, "i": i},
            )


def test_fleet_summary_per_customer_exact_at_partial_hour_edges(stubs, admin_token, new_customer, engine):
    alpha, bravo = new_customer("ALPHA"), new_customer("BRAVO")
    new_customer("IDLE")
    _add_devices(engine, alpha.id, 3)
    rows = [(d, T0 + i * Q, float(i)) for i in range(12) for d in (1, 2)]
    push(
        stubs,
        alpha.token,
        [request(1, [reading(d, t, v) for d, t, v in rows] + [reading(4, T0, 5.0, metric="power_w")])],
    )
    push(stubs, bravo.token, [request(1, [reading(7, T0 + 5 * Q, 2.5)])])
    start, end = T0 + 20 * timedelta(minutes=1), T0 + 2 * H + 10 * timedelta(minutes=1)

    reply = stubs.query.SummarizeFleet(
        qpb.SummarizeFleetRequest(metric="energy_kwh", start=ts(start), end=ts(end)),
        metadata=bearer(admin_token),
        timeout=30,
    )

    inside = [(d, v) for d, t, v in rows if start <= t < end]
    got = [(c.code, c.devices, c.devices_seen, c.rows, c.sum) for c in reply.customers]
    assert got == [
        ("ALPHA", 3, 2, len(inside), sum(v for _, v in inside)),
        ("BRAVO", 0, 1, 1, 2.5),
        ("IDLE", 0, 0, 0, 0.0),
    ]


def test_fleet_summary_inside_one_hour_reads_raw_rows(stubs, admin_token, new_customer):
    alpha = new_customer("ALPHA")
    push(stubs, alpha.token, [request(1, [reading(1, T0 + i * Q, 1.0) for i in range(4)])])
    reply = stubs.query.SummarizeFleet(
        qpb.SummarizeFleetRequest(metric="energy_kwh", start=ts(T0 + Q), end=ts(T0 + 3 * Q)),
        metadata=bearer(admin_token),
        timeout=30,
    )
    assert [(c.code, c.rows, c.sum) for c in reply.customers] == [("ALPHA", 2, 2.0)]


def test_fleet_summary_validates_its_range(stubs, admin_token):
    with pytest.raises(grpc.RpcError) as raised:
        stubs.query.SummarizeFleet(
            qpb.SummarizeFleetRequest(metric="energy_kwh", start=ts(T0 + H), end=ts(T0)),
            metadata=bearer(admin_token),
            timeout=30,
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(raised.value) == ["end"]
