"""Reference-data rejections beyond single fields: positions, caps, parents, limits, edge values."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import grpc
import pytest
from fleet.v1 import ingest_service_pb2 as ingest_pb

from fleet_server.domain.reference import apply_sites
from fleet_server.domain.reference_validation import SiteItem
from fleet_server.errors import MAX_LISTED_VIOLATIONS, StreamBroken
from tests.support.clients import Stubs, bad_request_fields, bearer, error_reason, rejected
from tests.support.inprocess import InProcessServer
from tests.support.reference_data import (
    counts,
    db_state,
    device,
    municipality,
    period,
    push,
    reference_tariff,
    renumbered_tariff,
    site,
    ts,
)

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def stubs(clocked: Stubs) -> Stubs:
    """Stubs of a server on `fake_clock`, which stands at NOW until a test moves it."""
    return clocked


@pytest.fixture
def acme(stubs, new_customer):
    """A customer with one stored tree, so a wrongly applied snapshot would show."""
    customer = new_customer("ACME")
    push(stubs, customer.token, "sites", [site(1), site(2)])
    push(stubs, customer.token, "devices", [device(1, 1), device(2, 2)])
    push(stubs, customer.token, "municipalities", [municipality(5)])
    push(stubs, customer.token, "tariffs", [reference_tariff()])
    return customer


def test_every_violation_is_listed_with_its_position_across_messages(stubs, acme, engine):
    before = db_state(engine)
    sites = [site(i) for i in range(1, 8)]
    sites[2].name = ""
    sites[5].timezone = "Nowhere/Special"
    sites[6].id = 1
    error = rejected(lambda: push(stubs, acme.token, "sites", sites, chunk=2))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(error) == ["sites[2].name", "sites[5].timezone", "sites[6].id"]
    assert error.details() == "sites[2].name: must not be empty (and 2 more)"
    assert db_state(engine) == before


def test_thousands_of_violations_are_capped_so_the_status_still_arrives(stubs, acme, engine):
    before = db_state(engine)
    devices = [device(i, 1, name="") for i in range(1, 5_001)]
    error = rejected(lambda: push(stubs, acme.token, "devices", devices, chunk=1_000))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = bad_request_fields(error)
    assert fields[:2] == ["devices[0].name", "devices[1].name"]
    assert len(fields) == MAX_LISTED_VIOLATIONS
    assert error.details() == "devices[0].name: must not be empty (and 4999 more)"
    assert db_state(engine) == before


def test_valid_edge_values_are_accepted(stubs, acme, engine):
    edge = reference_tariff(
        vat_percent="100",
        default_rate="0",
        fixed_charge=".5",
        effective_to=ts(datetime(2099, 12, 31, tzinfo=UTC)),
        effective_from=ts(datetime(2026, 7, 1, tzinfo=UTC)),  # published ahead of its start
    )
    edge.periods[0].start_time, edge.periods[0].end_time = "22:00", "00:00"  # wraps to midnight
    edge.periods[1].start_time, edge.periods[1].end_time = "00:00", "24:00"
    reply = push(stubs, acme.token, "tariffs", [edge])
    assert counts(reply) == (1, 0, 1, 0, 0)
    periods = [row for row in db_state(engine)["tariff_periods"] if row[0] == acme.id]
    assert [(r[5], r[6]) for r in periods] == [(22 * 60, 1440), (0, 1440)]


def test_device_naming_a_missing_site_fails_precondition_naming_both_ids(stubs, acme, engine):
    before = db_state(engine)
    devices = [device(1, 1), device(9, 17), device(10, 2)]
    error = rejected(lambda: push(stubs, acme.token, "devices", devices))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "devices[1]: site 17 does not exist for device 9"
    assert error_reason(error) == "SITE_NOT_FOUND"
    assert db_state(engine) == before


def test_device_naming_another_customers_site_fails_precondition(stubs, acme, new_customer, engine):
    globex = new_customer("GLOBEX")
    push(stubs, globex.token, "sites", [site(42)])
    before = db_state(engine)
    error = rejected(lambda: push(stubs, acme.token, "devices", [device(1, 42)]))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "site 42 does not exist for device 1" in error.details()
    assert db_state(engine) == before


def test_tariff_naming_a_missing_municipality_fails_precondition_naming_both_ids(stubs, acme, engine):
    before = db_state(engine)
    orphan = reference_tariff(municipality_id=99)
    error = rejected(lambda: push(stubs, acme.token, "tariffs", [orphan]))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "tariffs[0]: municipality 99 does not exist for tariff 10"
    assert error_reason(error) == "MUNICIPALITY_NOT_FOUND"
    assert db_state(engine) == before


def test_many_missing_parents_are_summarised(stubs, acme):
    devices = [device(i, 100 + i) for i in range(1, 9)]
    error = rejected(lambda: push(stubs, acme.token, "devices", devices))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details().endswith("(and 3 more)")


def test_snapshot_over_the_row_limit_is_refused(make_server, new_customer, engine):
    stubs = Stubs.connect(make_server(max_snapshot_rows=5).target)
    try:
        acme = new_customer("ACME")
        before = db_state(engine)
        error = rejected(lambda: push(stubs, acme.token, "sites", [site(i) for i in range(1, 7)], chunk=2))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "exceeds 5 rows" in error.details()
        # A tariff weighs one row plus its periods: 1 + 2 + 1 + 2 = 6.
        error = rejected(
            lambda: push(stubs, acme.token, "tariffs", [reference_tariff(), renumbered_tariff(11)], chunk=1)
        )
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert db_state(engine) == before
    finally:
        stubs.close()


def test_oversized_message_is_rejected_by_the_transport(make_server, new_customer, engine):
    stubs = Stubs.connect(make_server(max_message_bytes=4096).target)
    try:
        acme = new_customer("ACME")
        before = db_state(engine)
        error = rejected(lambda: push(stubs, acme.token, "sites", [site(1, address="x" * 8192)]))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert db_state(engine) == before
    finally:
        stubs.close()


def test_periods_out_of_order_and_wrapping_are_stored_as_pushed(stubs, acme, engine):
    tariff = reference_tariff()
    del tariff.periods[:]
    tariff.periods.extend(
        [period(9, "Late", 1, "23:00", "02:00", "1"), period(3, "Early", 2, "05:00", "06:00", "2")]
    )
    reply = push(stubs, acme.token, "tariffs", [tariff])
    assert reply.periods_written == 2
    periods = [row[2:7] for row in db_state(engine)["tariff_periods"] if row[0] == acme.id]
    assert periods == [(3, "Early", 2, 300, 360), (9, "Late", 1, 1380, 120)]


def _wait_for_access_line(caplog: pytest.LogCaptureFixture, method: str, count: int) -> None:
    """Block until the server has logged `count` finished calls of `method` (bounded)."""
    deadline = time.monotonic() + 10
    while sum(method in r.getMessage() for r in caplog.records) < count:
        assert time.monotonic() < deadline, f"{method} never finished"
        time.sleep(0.01)


@pytest.mark.parametrize("ending", ["cancel", "deadline"])
def test_a_stream_that_breaks_before_half_close_writes_nothing(
    make_server, new_customer, engine, caplog, ending
):
    """grpc.aio ends the request iterator quietly when a stream breaks; the snapshot must not apply.

    One database thread makes the follow-up read queue behind anything the broken call queued.
    """
    caplog.set_level(logging.INFO, logger="fleet_server.access")
    server = make_server(db_pool_size=1)
    stubs = Stubs.connect(server.target)
    try:
        acme = new_customer("ACME")
        push(stubs, acme.token, "sites", [site(1), site(2), site(3)])
        before = db_state(engine)
        release = threading.Event()

        def stalled() -> Iterator[ingest_pb.PushSitesRequest]:
            yield ingest_pb.PushSitesRequest(sites=[site(1)])
            release.wait(10)

        timeout = 0.5 if ending == "deadline" else 30
        call = stubs.ingest.PushSites.future(stalled(), metadata=bearer(acme.token), timeout=timeout)
        call.initial_metadata()  # the handler is running and reading
        if ending == "cancel":
            assert call.cancel()
        else:
            with pytest.raises(grpc.RpcError) as info:
                call.result()
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        release.set()
        _wait_for_access_line(caplog, "PushSites", 2)
        _wait_until_no_database_work(server)  # any write of the broken call has ended
        assert db_state(engine) == before
    finally:
        stubs.close()


def _wait_until_no_database_work(server: InProcessServer) -> None:
    deadline = time.monotonic() + 10
    while any(running or queued for running, queued in server.app.db.turns.load().values()):
        assert time.monotonic() < deadline, "database work never ended"
        time.sleep(0.01)


def test_apply_rolls_back_when_the_call_can_no_longer_vouch_for_the_snapshot(db, new_customer, engine):
    acme = new_customer("ACME")
    db.transaction(apply_sites, acme.id, [SiteItem(1, "HQ", "", "", None, None)], NOW)
    before = db_state(engine)

    def call_ended() -> None:
        raise StreamBroken("gone")

    with pytest.raises(StreamBroken):
        db.transaction(apply_sites, acme.id, [], NOW, call_ended)
    assert db_state(engine) == before
