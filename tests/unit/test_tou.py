"""The pure pricing arithmetic: rounding, period lines, VAT, fixed-charge pro-rata.

Period matching and the per-reading kWh conversion happen in SQL; `test_costs_compute` checks
their edges against the database and `test_costs_property` against a slow reference.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from fleet_server.domain import tou


@pytest.mark.parametrize(
    ("value", "expected"),
    [("12.375", "12.38"), ("0.885", "0.89"), ("2.1849", "2.18"), ("-0.005", "-0.01"), ("7", "7.00")],
)
def test_money_rounds_half_up_to_cents(value, expected):
    assert str(tou.round_money(Decimal(value))) == expected


def test_money_from_an_exact_fraction_rounds_half_up():
    assert str(tou.round_money_fraction(Fraction(885, 1000))) == "0.89"
    assert str(tou.round_money_fraction(Fraction(1, 3))) == "0.33"
    assert str(tou.round_money_fraction(Fraction(-885, 1000))) == "-0.89"
    assert str(tou.round_money_fraction(Fraction(0))) == "0.00"


def test_period_line_rounds_once():
    line = tou.price_line(1, "Peak", Decimal("2.750000"), Decimal("4.50"))
    assert (str(line.kwh), str(line.cost)) == ("2.750000", "12.38")


def test_site_amounts_vat_on_energy_plus_fixed():
    lines = [
        tou.price_line(1, "Peak", Decimal("2.75"), Decimal("4.50")),  # 12.38
        tou.price_line(2, "Off-Peak", Decimal("1.75"), Decimal("1.25")),  # 2.19
        tou.price_line(0, "default", Decimal("5"), Decimal("2.00")),  # 10.00
    ]
    amounts = tou.site_amounts(lines, Decimal("70.00"), Decimal("15"))
    assert (amounts.energy_kwh, amounts.energy_cost, amounts.vat, amounts.total) == (
        Decimal("9.5"),
        Decimal("24.57"),
        Decimal("14.19"),
        Decimal("108.76"),
    )
    assert [line.period_id for line in tou.ordered_lines(reversed(lines))] == [1, 2, 0]


def utc(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


def test_month_shares_by_elapsed_time():
    assert tou.month_shares(utc(2026, 2, 1), utc(2026, 3, 1), "UTC") == 1
    assert tou.month_shares(utc(2026, 2, 1), utc(2026, 2, 8), "UTC") == Fraction(1, 4)
    assert tou.month_shares(utc(2026, 1, 25), utc(2026, 2, 8), "UTC") == Fraction(7, 31) + Fraction(1, 4)
    assert tou.month_shares(utc(2026, 1, 1), utc(2027, 1, 1), "UTC") == 12
    assert tou.month_shares(utc(2026, 2, 8), utc(2026, 2, 8), "UTC") == 0


def test_month_shares_follow_the_site_local_calendar_and_dst():
    amsterdam = ZoneInfo("Europe/Amsterdam")
    march = (datetime(2026, 3, 1, tzinfo=amsterdam), datetime(2026, 4, 1, tzinfo=amsterdam))
    assert tou.month_shares(*march, "Europe/Amsterdam") == 1  # 743 hours make a whole month
    assert tou.month_shares(
        datetime(2026, 3, 29, tzinfo=amsterdam), march[1], "Europe/Amsterdam"
    ) == Fraction(71, 743)
    # UTC February is not Johannesburg's (UTC+2): it misses the site's first 2 hours of February
    # and takes the first 2 of its March.
    shares = tou.month_shares(utc(2026, 2, 1), utc(2026, 3, 1), "Africa/Johannesburg")
    assert shares == Fraction(2, 31 * 24) + Fraction(28 * 24 - 2, 28 * 24)


def test_fixed_charge_only_inside_an_active_window():
    start, end = utc(2026, 3, 1), utc(2026, 4, 1)
    open_window = (utc(2020, 1, 1), None)
    assert tou.prorated_fixed_charge(Decimal("310"), start, end, "UTC", open_window) == Decimal("310.00")
    ending = (utc(2020, 1, 1), utc(2026, 3, 16))
    assert tou.prorated_fixed_charge(Decimal("310"), start, end, "UTC", ending) == Decimal("150.00")
    later = (utc(2026, 5, 1), None)
    assert tou.prorated_fixed_charge(Decimal("310"), start, end, "UTC", later) == Decimal("0.00")
    assert tou.prorated_fixed_charge(Decimal("310"), start, end, "UTC", None) == Decimal("0.00")
    third = (utc(2020, 1, 1), start + timedelta(days=31) / 3)
    assert tou.prorated_fixed_charge(Decimal("100"), start, end, "UTC", third) == Decimal("33.33")
