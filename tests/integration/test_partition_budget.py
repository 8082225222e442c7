"""What one customer may open: monthly measurement partitions within a per-customer budget.

One batch of 323 readings, one a month since 2000, made 300 tables appear in a second. Now a
customer opens at most `new_partitions_burst` at once and `new_partitions_per_hour` after that;
a batch that needs more is RESOURCE_EXHAUSTED with a retry hint and writes no reading, while
the months it could open stay open, so a genuine back-fill goes through after a few retries.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from fleet.v1 import ingest_service_pb2 as ipb
from sqlalchemy import Engine, text

from fleet_server.store.partitions import partition_name
from tests.support.clients import Stubs, error_info, error_reason
from tests.support.fingerprint import fingerprint
from tests.support.measurements import count_rows, push, push_until_error, reading, request

YEAR = 2001  # months no other test writes to; their partitions are dropped before each test


def _month(index: int) -> int:
    return YEAR * 12 + index


def _months_with_partition(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        names = set(
            conn.execute(
                text("SELECT relname FROM pg_class WHERE relnamespace = 'fleet_partitions'::regnamespace")
            ).scalars()
        )
    return [i for i in range(12) if partition_name(_month(i)) in names]


@pytest.fixture
def year_without_partitions(engine: Engine) -> Iterator[None]:
    def drop() -> None:
        with engine.begin() as conn:
            for i in range(12):
                conn.execute(text(f"DROP TABLE IF EXISTS fleet_partitions.{partition_name(_month(i))}"))

    drop()
    yield
    drop()


@pytest.fixture
def budgeted(make_server, fake_clock, year_without_partitions) -> Iterator[Stubs]:
    server = make_server(clock=fake_clock, new_partitions_burst=3, new_partitions_per_hour=60)
    stubs = Stubs.connect(server.target)
    yield stubs
    stubs.close()


def _year_batch(batch_id: int, months: range = range(12)) -> list[ipb.PushMeasurementsRequest]:
    return [request(batch_id, [reading(1, datetime(YEAR, m + 1, 15, tzinfo=UTC), 1.0) for m in months])]


def test_a_batch_reaching_more_new_months_than_the_budget_is_refused_and_opens_only_the_budget(
    budgeted, new_customer, engine
):
    customer = new_customer("ACME")
    before = fingerprint(engine)

    acks, error = push_until_error(budgeted, customer.token, _year_batch(1))

    assert acks == []
    assert error is not None
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_reason(error) == "PARTITION_BUDGET_EXHAUSTED"
    assert error.details().startswith(
        "the batch reaches 9 more months without a measurement partition than this customer may open now "
        "(3 at once, 60 per hour; 3 opened for this batch); nothing of it was written"
    )
    assert ("retry-after-ms", "180000") in tuple(error.trailing_metadata() or ())  # 3 more, one a minute
    assert error_info(error).metadata["months_without_partition"] == "9"
    assert fingerprint(engine) == before
    assert _months_with_partition(engine) == [0, 1, 2]  # oldest first


def test_retries_after_the_hint_go_through_and_open_the_rest(budgeted, new_customer, engine, fake_clock):
    customer = new_customer("ACME")
    for _ in range(3):
        _, error = push_until_error(budgeted, customer.token, _year_batch(1))
        assert error is not None
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        fake_clock.advance(timedelta(minutes=3))

    (ack,) = push(budgeted, customer.token, _year_batch(2))

    assert ack.accepted == 12
    assert _months_with_partition(engine) == list(range(12))
    assert count_rows(engine) == 12


def test_the_budget_is_per_customer_and_existing_months_cost_nothing(budgeted, new_customer, engine):
    first, second = new_customer("ACME"), new_customer("BETA")
    _, error = push_until_error(budgeted, first.token, _year_batch(1))
    assert error is not None  # ACME spent its three

    (ack,) = push(budgeted, second.token, _year_batch(1, range(6)))  # 3 exist, BETA opens 3 more

    assert ack.accepted == 6
    assert _months_with_partition(engine) == list(range(6))
    (again,) = push(budgeted, first.token, _year_batch(2, range(6)))  # all exist: free for ACME
    assert again.accepted == 6


def test_a_rate_of_zero_switches_the_budget_off(make_server, new_customer, engine, year_without_partitions):
    stubs = Stubs.connect(make_server(new_partitions_burst=1, new_partitions_per_hour=0).target)
    try:
        (ack,) = push(stubs, new_customer("ACME").token, _year_batch(1))
    finally:
        stubs.close()
    assert ack.accepted == 12
