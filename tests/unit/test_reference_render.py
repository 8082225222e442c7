"""fleetctl's detail rendering: day masks, tariff cards, empty states."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fleet.v1 import query_service_pb2 as query_pb
from fleet.v1 import resources_pb2 as res
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet_server.fleetctl.detail import day_mask, render_detail, tariff_card
from tests.support.reference_data import reference_tariff, ts


@pytest.mark.parametrize(
    ("bits", "mask"),
    [(0b0011111, "MTWTF--"), (0b1100000, "-----SS"), (127, "MTWTFSS"), (1, "M------"), (64, "------S")],
)
def test_day_mask_letters_follow_the_bits(bits, mask):
    assert day_mask(bits) == mask


@settings(max_examples=127, deadline=None)
@given(st.integers(min_value=1, max_value=127))
def test_day_mask_round_trips(bits):
    mask = day_mask(bits)
    assert len(mask) == 7
    assert sum(1 << i for i, letter in enumerate(mask) if letter != "-") == bits


def test_a_tariff_card_shows_terms_and_a_period_table():
    view = query_pb.TariffView(tariff=reference_tariff(), municipality_name="Phase23 Test City")
    card = tariff_card(view).splitlines()
    assert card[0] == "Tariff 10: Domestic TOU"
    assert "Municipality:  Phase23 Test City (id 5)" in card[1]
    assert card[2].split() == ["Active:", "yes"]
    assert card[3].split(maxsplit=1) == ["Effective:", "from 2024-07-01 00:00:00Z, open-ended"]
    assert card[4].split(maxsplit=1) == ["Default", "rate:  2.10 ZAR/kWh"]
    assert "250.00 ZAR/month" in card[5]
    assert card[6].split() == ["VAT:", "15%"]
    assert card[7].split() == ["Period", "Days", "Start", "End", "Rate"]
    assert card[9].split() == ["Peak", "MTWTF--", "17:00", "20:00", "3.75"]
    assert card[10].split() == ["Off-Peak", "-----SS", "00:00", "23:59", "1.20"]


def test_a_closed_window_and_no_periods_are_said_plainly():
    tariff = reference_tariff(effective_to=ts(datetime(2025, 6, 30, tzinfo=UTC)), is_active=False)
    del tariff.periods[:]
    card = tariff_card(query_pb.TariffView(tariff=tariff, municipality_name=""))
    assert "until 2025-06-30 00:00:00Z" in card
    assert "Municipality:  id 5" in card
    assert "Active:        no" in card
    assert "No periods" in card


def test_empty_detail_shows_empty_states():
    detail = query_pb.GetCustomerDetailResponse(customer=res.Customer(id=1, code="ACME", name="Acme"))
    text = render_detail(detail)
    assert text.startswith("Customer ACME: Acme (id 1)")
    for empty in (
        "No sites synced yet.",
        "No devices synced yet.",
        "No tariffs synced yet.",
        "Nothing pushed yet.",
    ):
        assert empty in text


def test_a_large_customer_shows_its_counts_and_where_the_rest_is():
    detail = query_pb.GetCustomerDetailResponse(
        customer=res.Customer(id=1, code="ACME", name="Acme"),
        devices=[res.Device(id=i, site_id=1, name=f"Meter {i}") for i in range(1, 101)],
        device_count=120_000,
        sites=[res.Site(id=1, name="Head office")],
        site_count=1,
        tariff_count=3,
    )
    lines = render_detail(detail).splitlines()
    assert "Devices (120,000)" in lines
    assert "… and 119,900 more devices (fleetctl customers devices ACME)" in lines
    assert "Sites (1)" in lines
    assert not any("more sites" in line for line in lines)
    # Counted but not sent (a page cut short): the section says where they are.
    assert "… and 3 more tariffs (fleetctl customers tariffs ACME)" in lines


def test_an_older_server_without_counts_shows_what_it_sent():
    detail = query_pb.GetCustomerDetailResponse(
        customer=res.Customer(id=1, code="ACME", name="Acme"),
        devices=[res.Device(id=i, site_id=1) for i in (1, 2)],
    )
    text = render_detail(detail)
    assert "Devices (2)" in text
    assert "more devices" not in text
