"""The bound on measurement values, and cross-customer views that one customer's rows cannot break.

`1e308` twice in one hour used to fail its batch as INTERNAL (the hourly rollup overflowed)
for ever; in different hours it was accepted, and from then on `SummarizeFleet(energy_kwh)` and
`ComputeCosts(codes=[])` were INTERNAL for everyone. Values are now bounded at ingest; rows stored
before the bound existed (written here through the store, as the old server did) still cannot
fail a fleet-wide view.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import grpc
import pytest
from fleet.v1 import query_service_pb2 as pb

from fleet_server.db.session import Database
from fleet_server.domain.measurements import MAX_VALUE_MAGNITUDE, VALUE_RANGE
from fleet_server.rpc.wellknown import to_timestamp
from fleet_server.store.measurements import BatchWriter, MeasurementBatch
from fleet_server.store.partitions import Partitions
from fleet_server.store.timestamps import to_pg_micros
from tests.support.clients import bad_request_fields, bearer, error_reason
from tests.support.costs import PEAK_OFF_PEAK, add_site, add_tariff
from tests.support.fingerprint import fingerprint
from tests.support.measurements import push, push_until_error, reading, request

T0 = datetime(2025, 3, 3, 0, 0, tzinfo=UTC)
NOW = datetime(2025, 3, 10, tzinfo=UTC)


def test_values_beyond_the_bound_are_refused_and_the_batch_writes_nothing(stubs, new_customer, engine):
    customer = new_customer("ACME")
    before = fingerprint(engine)

    acks, error = push_until_error(
        stubs,
        customer.token,
        [request(1, [reading(1, T0, 1e308), reading(1, T0 + timedelta(minutes=15), 1e308)])],
    )

    assert acks == []
    assert error is not None
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == f"measurements[0].value: {VALUE_RANGE} (and 1 more)"
    assert error_reason(error) == "INVALID_ARGUMENT"
    assert bad_request_fields(error) == ["measurements[0].value", "measurements[1].value"]
    assert fingerprint(engine) == before


def test_values_at_the_bound_are_stored_and_sum_without_overflow(stubs, new_customer, admin_token):
    customer = new_customer("ACME")
    big = MAX_VALUE_MAGNITUDE
    rows = [reading(1, T0 + timedelta(minutes=i), big if i % 3 else -big) for i in range(60)]

    (ack,) = push(stubs, customer.token, [request(1, rows)])

    assert ack.accepted == 60
    summary = stubs.query.SummarizeFleet(
        pb.SummarizeFleetRequest(
            metric="energy_kwh", start=to_timestamp(T0), end=to_timestamp(T0 + timedelta(hours=1))
        ),
        metadata=bearer(admin_token),
        timeout=10,
    )
    assert summary.customers[0].sum == 20 * big


def _legacy_rows(database: Database, customer_id: int, readings: list[tuple[int, datetime, float]]) -> None:
    """Rows and rollups as a server without the bound stored them (the store does not validate)."""
    micros = [to_pg_micros(t) for _, t, _ in readings]
    batch = MeasurementBatch(
        [d for d, _, _ in readings], ["energy_kwh"] * len(readings), micros, [v for *_, v in readings], micros
    )
    BatchWriter(database, Partitions(database)).write(customer_id, batch, NOW)


@pytest.fixture
def fleet_with_a_poisoned_customer(db, new_customer, stubs):
    good, evil = new_customer("GOOD"), new_customer("EVIL")
    for customer in (good, evil):

        def seed(session, customer_id=customer.id):
            add_tariff(session, customer_id, PEAK_OFF_PEAK)
            add_site(session, customer_id, 1, tariff_id=PEAK_OFF_PEAK.id, devices=[10])

        db.transaction(seed)
    # Good data, pushed through the server; 1e308 readings in three different hours (one of them
    # at a raw edge of the summary below), stored as the old server stored them.
    push(stubs, good.token, [request(1, [reading(10, T0 + timedelta(hours=h), 1.5) for h in range(6)])])
    legacy = [(10, T0 + timedelta(minutes=40), 1e308), (10, T0 + timedelta(hours=2), 1e308)]
    legacy.append((10, T0 + timedelta(hours=5, minutes=10), 1e308))
    _legacy_rows(db, evil.id, legacy)
    return good, evil


def test_summarize_fleet_survives_one_customers_overflowing_rows(
    stubs, admin_token, fleet_with_a_poisoned_customer
):
    start, end = T0 + timedelta(minutes=30), T0 + timedelta(hours=5, minutes=30)

    reply = stubs.query.SummarizeFleet(
        pb.SummarizeFleetRequest(metric="energy_kwh", start=to_timestamp(start), end=to_timestamp(end)),
        metadata=bearer(admin_token),
        timeout=10,
    )

    by_code = {c.code: c for c in reply.customers}
    assert (by_code["GOOD"].rows, by_code["GOOD"].sum) == (5, 7.5)
    assert by_code["EVIL"].rows == 3
    assert math.isinf(by_code["EVIL"].sum)  # 3e308 is past what a double holds: said, not failed


def test_compute_costs_for_everyone_survives_one_customers_huge_rows(
    stubs, admin_token, fleet_with_a_poisoned_customer
):
    def compute(codes: list[str]) -> pb.ComputeCostsResponse:
        message = pb.ComputeCostsRequest(
            codes=codes, start=to_timestamp(T0), end=to_timestamp(T0 + timedelta(days=1))
        )
        reply: pb.ComputeCostsResponse = stubs.query.ComputeCosts(
            message, metadata=bearer(admin_token), timeout=30
        )
        return reply

    everyone = {c.code: c for c in compute([]).customers}

    assert everyone["GOOD"] == compute(["GOOD"]).customers[0]
    (site,) = everyone["EVIL"].sites
    assert Decimal(site.energy_kwh) == Decimal("3e308")  # exact, however absurd
    assert Decimal(site.total) > Decimal("6e308")
