"""ComputeCosts rejects bad requests over the wire: status, message with the field path, nothing changed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from fleet.v1 import query_service_pb2 as pb
from sqlalchemy import text

from fleet_server.rpc.wellknown import TIMESTAMP_RANGE, to_timestamp
from fleet_server.store.costs import database_unknown_timezones
from tests.support.clients import Stubs, bad_request_fields, bearer, error_info, error_reason
from tests.support.costs import (
    PEAK_OFF_PEAK,
    add_readings,
    add_site,
    add_tariff,
    table_counts,
)

START = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def seeded(db, engine, new_customer, cost_partitions):
    """A customer with a site, a tariff and a reading, so "nothing changed" has something to check."""
    acme = new_customer("ACME")
    cost_partitions.cover(START, START + timedelta(days=31))

    def seed(session):
        add_tariff(session, acme.id, PEAK_OFF_PEAK)
        add_site(session, acme.id, 1, tariff_id=7, devices=[10])
        add_readings(session, acme.id, 10, [(START + timedelta(hours=1), 1.0)])

    db.transaction(seed)
    return table_counts(engine)


def request(
    codes: Sequence[str] = (),
    start: datetime | None = START,
    end: datetime | None = START + timedelta(days=7),
) -> pb.ComputeCostsRequest:
    message = pb.ComputeCostsRequest(codes=list(codes))
    if start is not None:
        message.start.CopyFrom(to_timestamp(start))
    if end is not None:
        message.end.CopyFrom(to_timestamp(end))
    return message


def _beyond_timestamp_range(message: pb.ComputeCostsRequest) -> pb.ComputeCostsRequest:
    """A start outside the Timestamp range: refused as such, never an INTERNAL conversion failure."""
    message.start.seconds = -(10**14)
    return message


def rejected(stubs: Stubs, token: str, message: pb.ComputeCostsRequest) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        stubs.query.ComputeCosts(message, metadata=bearer(token), timeout=10)
    return err.value


@pytest.mark.parametrize(
    ("message", "details", "fields"),
    [
        (request(start=None), "start: must be set", ["start"]),
        (request(end=None), "end: must be set", ["end"]),
        (request(start=None, end=None), "start: must be set (and 1 more)", ["start", "end"]),
        (request(end=START), "end: must be after start", ["end"]),
        (request(end=START - timedelta(hours=1)), "end: must be after start", ["end"]),
        (request(end=START + timedelta(days=401)), "end: range must not span more than 400 days", ["end"]),
        (
            request(start=datetime(1999, 12, 31, tzinfo=UTC)),
            "start: must not be before 2000-01-01T00:00:00Z",
            ["start"],
        ),
        (
            request(codes=["ACME", "acme"]),
            "codes[1]: must match [A-Z0-9_-]{2,32} (did you mean ACME?)",
            ["codes[1]"],
        ),
        (_beyond_timestamp_range(request()), f"start: {TIMESTAMP_RANGE}", ["start"]),
    ],
)
def test_bad_ranges_and_codes_are_invalid_arguments(
    engine, stubs, admin_token, seeded, message, details, fields
):
    error = rejected(stubs, admin_token, message)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == details
    assert bad_request_fields(error) == fields
    assert table_counts(engine) == seeded


def test_the_span_limit_is_a_setting(engine, make_server, admin_token, seeded):
    stubs = Stubs.connect(make_server(max_cost_span_days=31).target)
    try:
        assert stubs.query.ComputeCosts(
            request(end=START + timedelta(days=31)), metadata=bearer(admin_token), timeout=10
        ).customers
        error = rejected(stubs, admin_token, request(end=START + timedelta(days=31, seconds=1)))
    finally:
        stubs.close()
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "end: range must not span more than 31 days"
    assert table_counts(engine) == seeded


def test_unknown_codes_are_not_found_and_named(engine, stubs, admin_token, seeded):
    error = rejected(stubs, admin_token, request(codes=["ZZZ", "ACME", "NOPE"]))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "no customers with codes NOPE, ZZZ"
    assert error_reason(error) == "CUSTOMER_NOT_FOUND"
    assert table_counts(engine) == seeded


def test_a_thousand_unknown_codes_are_not_found_and_the_list_is_capped(engine, stubs, admin_token, seeded):
    """Named in full, they overflowed a default client's 16 KiB metadata limit (RESOURCE_EXHAUSTED)."""
    codes = [f"C{i:05d}" for i in range(1000)] + ["ACME"]

    error = rejected(stubs, admin_token, request(codes=codes))

    assert error.code() == grpc.StatusCode.NOT_FOUND
    named = ", ".join(f"C{i:05d}" for i in range(10))
    assert error.details() == f"no customers with codes {named} (and 990 more)"
    assert error_reason(error) == "CUSTOMER_NOT_FOUND"
    info = error_info(error)
    assert info.metadata["codes"] == named.replace(", ", ",")
    assert info.metadata["unknown"] == "1000"
    assert table_counts(engine) == seeded


def test_a_customer_token_may_not_compute_costs(engine, stubs, new_customer, seeded):
    beta = new_customer("BETA")
    error = rejected(stubs, beta.token, request())
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


def test_no_customers_is_an_empty_bill(db, stubs, admin_token):
    reply = stubs.query.ComputeCosts(request(), metadata=bearer(admin_token), timeout=10)
    assert list(reply.customers) == []


def test_a_site_timezone_the_server_does_not_know_is_named(db, engine, stubs, admin_token, seeded):
    acme_id = db.transaction(lambda session: session.scalar(text("SELECT id FROM fleet.customers")))
    db.transaction(lambda session: add_site(session, acme_id, 2, timezone="Mars/Olympus"))
    before = table_counts(engine)
    error = rejected(stubs, admin_token, request())
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == (
        "timezone not found in the server's timezone data: ACME site 2 (Mars/Olympus); "
        "the site cannot be priced in local time"
    )
    assert error_reason(error) == "UNKNOWN_TIMEZONE"
    assert table_counts(engine) == before


def test_zones_the_database_cannot_convert_to_are_found_one_by_one(db, seeded):
    acme_id = db.transaction(lambda session: session.scalar(text("SELECT id FROM fleet.customers")))

    def add_sites(session):
        add_site(session, acme_id, 2, timezone="Mars/Olympus")
        add_site(session, acme_id, 3, timezone="Europe/Amsterdam")
        add_site(session, acme_id, 4, timezone="")

    db.transaction(add_sites)
    found = db.transaction(database_unknown_timezones, [acme_id])
    assert found == [("ACME", 2, "Mars/Olympus")]
