"""GetCustomerDetail: the customer's mirrored tree and sync status, as operators see it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest

from fleet_server.resources import Resource
from fleet_server.store.sync_status import record_push
from tests.support.clients import Stubs, customer_detail, error_reason
from tests.support.reference_data import (
    WEEKDAYS,
    device,
    municipality,
    period,
    push,
    reference_tariff,
    site,
    tariff,
    ts,
)

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def stubs(clocked: Stubs) -> Stubs:
    """Stubs of a server on `fake_clock`, which stands at NOW until a test moves it."""
    return clocked


def test_detail_returns_the_whole_tree_ordered_by_id(stubs, new_customer, admin_token):
    acme = new_customer("ACME", "Acme Energy")
    push(stubs, acme.token, "sites", [site(3, address="1 Main Rd"), site(1, municipality_id=6, tariff_id=11)])
    push(stubs, acme.token, "devices", [device(9, 3), device(2, 1, serial_number="", kind="inverter")])
    push(
        stubs,
        acme.token,
        "municipalities",
        [municipality(6, "Second City"), municipality(5, "Phase23 Test City")],
    )
    night = period(1, "Night", WEEKDAYS, "22:00", "24:00", "0.0000001")
    open_ended = tariff(11, 6, [night], name="Flat", effective_to=ts(datetime(2027, 6, 30, 22, tzinfo=UTC)))
    push(stubs, acme.token, "tariffs", [open_ended, reference_tariff(is_active=False)])

    detail = customer_detail(stubs, admin_token, "ACME")

    assert (detail.customer.code, detail.customer.name, detail.customer.is_active) == (
        "ACME",
        "Acme Energy",
        True,
    )
    assert [s.id for s in detail.sites] == [1, 3]
    assert detail.sites[0].municipality_id == 6
    assert detail.sites[0].tariff_id == 11
    assert not detail.sites[1].HasField("municipality_id")
    assert not detail.sites[1].HasField("tariff_id")
    assert detail.sites[1].address == "1 Main Rd"
    assert [(d.id, d.site_id, d.kind) for d in detail.devices] == [(2, 1, "inverter"), (9, 3, "meter")]
    assert [(m.id, m.name) for m in detail.municipalities] == [(5, "Phase23 Test City"), (6, "Second City")]

    domestic, flat = detail.tariffs
    assert (domestic.tariff.id, domestic.municipality_name, domestic.tariff.is_active) == (
        10,
        "Phase23 Test City",
        False,
    )
    assert domestic.tariff.effective_from.ToDatetime(tzinfo=UTC) == datetime(2024, 7, 1, tzinfo=UTC)
    assert not domestic.tariff.HasField("effective_to")
    assert (domestic.tariff.default_rate, domestic.tariff.fixed_charge, domestic.tariff.vat_percent) == (
        "2.10",
        "250.00",
        "15",
    )
    assert domestic.tariff.currency == "ZAR"
    assert [p.id for p in domestic.tariff.periods] == [1, 2]
    assert flat.municipality_name == "Second City"
    assert flat.tariff.effective_to.ToDatetime(tzinfo=UTC) == datetime(2027, 6, 30, 22, tzinfo=UTC)
    (night_view,) = flat.tariff.periods
    assert (night_view.start_time, night_view.end_time, night_view.rate) == ("22:00", "24:00", "0.0000001")

    assert [(s.resource, s.last_received) for s in detail.sync] == [
        ("sites", 2),
        ("devices", 2),
        ("municipalities", 2),
        ("tariffs", 2),
    ]


def test_detail_maps_the_measurement_high_water_mark(stubs, db, new_customer, admin_token):
    acme = new_customer("ACME")
    high_water = NOW - timedelta(minutes=3)
    db.transaction(record_push, acme.id, Resource.MEASUREMENTS, 500, NOW, high_water)
    (status,) = customer_detail(stubs, admin_token, "ACME").sync
    assert (status.resource, status.last_received) == ("measurements", 500)
    assert status.last_push_at.ToDatetime(tzinfo=UTC) == NOW
    assert status.high_water_received_at.ToDatetime(tzinfo=UTC) == high_water


def test_a_customer_with_nothing_synced_has_an_empty_detail(stubs, new_customer, admin_token):
    new_customer("ACME")
    detail = customer_detail(stubs, admin_token, "ACME")
    assert detail.customer.code == "ACME"
    assert (len(detail.sites), len(detail.devices), len(detail.tariffs), len(detail.sync)) == (0, 0, 0, 0)


def test_detail_shows_only_that_customers_rows(stubs, new_customer, admin_token):
    acme, globex = new_customer("ACME"), new_customer("GLOBEX")
    push(stubs, acme.token, "sites", [site(1, name="acme")])
    push(stubs, globex.token, "sites", [site(1, name="globex"), site(2)])
    assert [s.name for s in customer_detail(stubs, admin_token, "ACME").sites] == ["acme"]


def test_unknown_code_is_not_found(stubs, admin_token):
    with pytest.raises(grpc.RpcError) as info:
        customer_detail(stubs, admin_token, "NOPE")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "NOPE" in info.value.details()
    assert error_reason(info.value) == "CUSTOMER_NOT_FOUND"


@pytest.mark.parametrize("code", ["", "lower", "X"])
def test_a_code_that_cannot_exist_is_invalid(stubs, admin_token, code):
    with pytest.raises(grpc.RpcError) as info:
        customer_detail(stubs, admin_token, code)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details().startswith("code: ")


def test_a_customer_token_cannot_read_the_detail(stubs, new_customer):
    acme = new_customer("ACME")
    with pytest.raises(grpc.RpcError) as info:
        customer_detail(stubs, acme.token, "ACME")
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
