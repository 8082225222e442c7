"""The pure pricing rules of §9: period edges, wrapping, overlaps, rounding, fixed-charge pro-rata."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest

from fleet_server.domain import tou

WEEKDAYS, WEEKEND, EVERY_DAY, MONDAY = 0b0011111, 0b1100000, 0b1111111, 0b0000001
MON, TUE, SAT, SUN = 0, 1, 5, 6


def period(
    pid: int = 1, days: int = EVERY_DAY, start: str = "00:00", end: str = "23:59", rate: str = "1"
) -> tou.Period:
    return tou.Period(pid, f"P{pid}", days, at(start), at(end), Decimal(rate))


def at(hhmm: str) -> int:
    return int(hhmm[:2]) * 60 + int(hhmm[3:])


@pytest.mark.parametrize(
    ("weekday", "time", "covered"),
    [
        (MON, "17:00", True),  # start is inclusive
        (MON, "16:59", False),
        (MON, "19:59", True),
        (MON, "20:00", False),  # end is exclusive
        (SAT, "17:00", False),  # not a listed day
    ],
)
def test_peak_edges(weekday, time, covered):
    assert tou.period_covers(period(days=WEEKDAYS, start="17:00", end="20:00"), weekday, at(time)) is covered


def test_23_59_means_the_end_of_the_day():
    off_peak = period(days=WEEKEND, start="00:00", end="23:59")
    assert tou.period_covers(off_peak, SAT, at("23:59"))
    assert tou.period_covers(off_peak, SUN, at("23:59"))
    assert not tou.period_covers(off_peak, MON, at("00:00"))
    assert tou.billed_end(1439) == 1440
    assert tou.billed_end(1440) == 1440
    assert tou.billed_end(1200) == 1200


@pytest.mark.parametrize(
    ("weekday", "time", "covered"),
    [
        (MON, "22:00", True),
        (MON, "23:59", True),
        (MON, "00:00", True),  # the after-midnight part belongs to the listed day itself
        (MON, "05:59", True),
        (MON, "06:00", False),
        (MON, "21:59", False),
        (TUE, "02:00", False),  # Tuesday is not listed, even right after Monday night
        (SUN, "23:00", False),
    ],
)
def test_overnight_period_wraps_on_each_listed_day(weekday, time, covered):
    night = period(days=MONDAY, start="22:00", end="06:00")
    assert tou.period_covers(night, weekday, at(time)) is covered


def test_overlapping_periods_the_lowest_id_wins_whatever_the_order():
    late = period(pid=9, start="08:00", end="12:00")
    early = period(pid=4, start="10:00", end="14:00")
    assert tou.match_period([late, early], MON, at("11:00")) == early
    assert tou.match_period([late, early], MON, at("09:00")) == late
    assert tou.match_period([late, early], MON, at("15:00")) is None


def test_local_slot_follows_dst_in_amsterdam():
    # Sunday 2026-03-29: 02:00 CET jumps to 03:00 CEST.
    assert tou.local_slot(datetime(2026, 3, 29, 0, 59, tzinfo=UTC), "Europe/Amsterdam") == (SUN, at("01:59"))
    assert tou.local_slot(datetime(2026, 3, 29, 1, 0, tzinfo=UTC), "Europe/Amsterdam") == (SUN, at("03:00"))
    assert tou.local_slot(datetime(2026, 3, 29, 22, 0, tzinfo=UTC), "Europe/Amsterdam") == (MON, 0)
    assert tou.local_slot(datetime(2026, 3, 29, 1, 0, tzinfo=UTC), "") == (SUN, at("01:00"))
    assert tou.local_slot(datetime(2026, 3, 2, 0, 0, tzinfo=UTC), "Asia/Kolkata") == (MON, at("05:30"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.5, "1.500000"),
        (0.1234565, "0.123457"),  # binary 0.12345649999…: rounded from its shortest decimal form
        (5e-07, "0.000001"),
        (4e-07, "0.000000"),
        (12.34567849999999, "12.345678"),  # 16 digits: a 15-digit conversion would say 12.345679
        (-0.0000015, "-0.000002"),  # half-up rounds ties away from zero
        (1234567890.1234567, "1234567890.123457"),
    ],
)
def test_kwh_is_converted_once_to_6_places(value, expected):
    assert str(tou.kwh(value)) == expected


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
