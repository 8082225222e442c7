"""Timestamps and durations outside their documented ranges, over the wire: INVALID_ARGUMENT naming
the field, never INTERNAL, and nothing written.

Each case used to fail as INTERNAL (OverflowError) or to be accepted with a shifted value
(`nanos=-1` stored a reading a microsecond early, `nanos=2**31-1` 2.1 s late).
"""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from fleet.v1 import admin_service_pb2 as admin_pb
from fleet.v1 import query_service_pb2 as query_pb
from google.protobuf import duration_pb2, timestamp_pb2

from fleet_server.rpc.wellknown import DURATION_RANGE, TIMESTAMP_RANGE
from tests.support.clients import bad_request_fields, bearer, error_reason, rejected
from tests.support.fingerprint import fingerprint
from tests.support.measurements import push_until_error, reading, request
from tests.support.reference_data import municipality, push, reference_tariff, site

T0 = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)


def _invalid(error: grpc.RpcError, field: str, description: str) -> None:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == f"{field}: {description}"
    assert error_reason(error) == "INVALID_ARGUMENT"
    assert bad_request_fields(error) == [field]


@pytest.mark.parametrize(
    ("field", "seconds", "nanos"),
    [
        ("time", 2**62, 0),
        ("time", 253_402_300_800, 0),
        ("time", -62_135_596_801, 0),
        ("time", -(2**62), 0),
        ("time", int(T0.timestamp()), -1),
        ("time", int(T0.timestamp()), 2**31 - 1),
        ("time", int(T0.timestamp()), 1_000_000_000),
        ("received_at", int(T0.timestamp()), -1),
        ("received_at", 2**62, 0),
    ],
)
def test_a_measurement_time_outside_the_timestamp_range_is_refused(
    stubs, new_customer, engine, field, seconds, nanos
):
    customer = new_customer("ACME")
    good = reading(1, T0, 1.0)
    bad = reading(1, T0, 2.0)
    stamp = getattr(bad, field)
    stamp.seconds, stamp.nanos = seconds, nanos
    before = fingerprint(engine)

    acks, error = push_until_error(stubs, customer.token, [request(1, [good, bad])])

    assert acks == []
    assert error is not None
    _invalid(error, f"measurements[1].{field}", TIMESTAMP_RANGE)
    assert fingerprint(engine) == before


def test_a_negative_time_inside_the_timestamp_range_is_refused_by_the_domain(stubs, new_customer, engine):
    customer = new_customer("ACME")
    bad = reading(1, T0, 1.0)
    bad.time.seconds = -5
    before = fingerprint(engine)

    _, error = push_until_error(stubs, customer.token, [request(1, [bad])])

    assert error is not None
    _invalid(error, "measurements[0].time", "must not be before 2000-01-01T00:00:00Z")
    assert fingerprint(engine) == before


def test_a_tariff_window_with_bad_nanos_is_refused(stubs, new_customer, engine):
    customer = new_customer("ACME")
    push(stubs, customer.token, "municipalities", [municipality(5)])
    tariffs = [reference_tariff(), reference_tariff()]
    tariffs[0].id = 9
    tariffs[1].effective_from.nanos = 2**31 - 1
    before = fingerprint(engine)

    error = rejected(lambda: push(stubs, customer.token, "tariffs", tariffs))

    _invalid(error, "tariffs[1].effective_from", TIMESTAMP_RANGE)
    assert fingerprint(engine) == before


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(10**15, 0), (-(10**15), 0), (0, 2_147_483_647), (0, -1_000_000_000), (5, -1), (-5, 1)],
)
def test_a_grace_period_outside_the_duration_range_is_refused(
    stubs, new_customer, admin_token, engine, seconds, nanos
):
    new_customer("ACME")
    before = fingerprint(engine)

    error = rejected(
        lambda: stubs.admin.RotateCustomerToken(
            admin_pb.RotateCustomerTokenRequest(
                code="ACME", grace_period=duration_pb2.Duration(seconds=seconds, nanos=nanos)
            ),
            metadata=bearer(admin_token),
            timeout=10,
        )
    )

    _invalid(error, "grace_period", DURATION_RANGE)
    assert fingerprint(engine) == before


def test_a_grace_period_in_range_but_too_long_is_refused_by_the_domain(stubs, new_customer, admin_token):
    new_customer("ACME")
    error = rejected(
        lambda: stubs.admin.RotateCustomerToken(
            admin_pb.RotateCustomerTokenRequest(
                code="ACME", grace_period=duration_pb2.Duration(seconds=10**10)
            ),
            metadata=bearer(admin_token),
            timeout=10,
        )
    )
    _invalid(error, "grace_period", "must be at most 30 days")


def test_costs_in_the_last_year_a_calendar_holds_are_refused(stubs, new_customer, admin_token, engine):
    customer = new_customer("ACME")
    push(stubs, customer.token, "sites", [site(1, tariff_id=10)])
    push(stubs, customer.token, "municipalities", [municipality(5)])
    push(stubs, customer.token, "tariffs", [reference_tariff()])
    start = datetime(9999, 12, 11, tzinfo=UTC)
    end = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    before = fingerprint(engine)

    error = rejected(
        lambda: stubs.query.ComputeCosts(
            query_pb.ComputeCostsRequest(
                start=timestamp_pb2.Timestamp(seconds=int(start.timestamp())),
                end=timestamp_pb2.Timestamp(seconds=int(end.timestamp())),
            ),
            metadata=bearer(admin_token),
            timeout=10,
        )
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "start: must not be after 9999-01-01T00:00:00Z (and 1 more)"
    assert bad_request_fields(error) == ["start", "end"]
    assert fingerprint(engine) == before


@pytest.mark.parametrize("method", ["QueryMeasurements", "SummarizeFleet", "ComputeCosts"])
def test_a_query_range_with_bad_nanos_is_refused(stubs, new_customer, admin_token, method):
    new_customer("ACME")
    start = timestamp_pb2.Timestamp(seconds=int(T0.timestamp()), nanos=-1)
    end = timestamp_pb2.Timestamp(seconds=int(T0.timestamp()) + 3600)
    messages = {
        "QueryMeasurements": query_pb.QueryMeasurementsRequest(
            code="ACME", metric="energy_kwh", start=start, end=end, bucket=query_pb.BUCKET_RAW
        ),
        "SummarizeFleet": query_pb.SummarizeFleetRequest(metric="energy_kwh", start=start, end=end),
        "ComputeCosts": query_pb.ComputeCostsRequest(start=start, end=end),
    }

    def call():
        result = getattr(stubs.query, method)(messages[method], metadata=bearer(admin_token), timeout=10)
        return list(result) if method == "QueryMeasurements" else result

    _invalid(rejected(call), "start", TIMESTAMP_RANGE)


@pytest.mark.parametrize("method", ["GetFleetHealth", "ListSilentDevices"])
@pytest.mark.parametrize(("seconds", "nanos"), [(10**15, 0), (315_576_000_001, 1), (0, 2_147_483_647)])
def test_a_health_window_outside_the_duration_range_is_refused(
    stubs, new_customer, admin_token, method, seconds, nanos
):
    """Found by the fuzzer: 10**15 seconds failed as INTERNAL (OverflowError)."""
    new_customer("ACME")
    window = duration_pb2.Duration(seconds=seconds, nanos=nanos)
    request = getattr(query_pb, f"{method}Request")(code="ACME", silent_after=window)

    error = rejected(lambda: getattr(stubs.query, method)(request, metadata=bearer(admin_token), timeout=10))

    _invalid(error, "silent_after", DURATION_RANGE)
