"""Pure validation of reference snapshots: clock times, money, zones, duplicates, the violation cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet_server.domain.reference_validation import (
    MAX_PERIODS_PER_TARIFF,
    DeviceItem,
    PeriodItem,
    SiteItem,
    TariffItem,
    is_timezone,
    parse_clock,
    parse_decimal,
    validate_devices,
    validate_sites,
    validate_tariffs,
)
from fleet_server.errors import MAX_LISTED_VIOLATIONS, InvalidArgument, Violations

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _period(**fields: object) -> PeriodItem:
    values: dict[str, object] = {
        "id": 1,
        "name": "Peak",
        "days_of_week": 31,
        "start_time": "17:00",
        "end_time": "20:00",
        "rate": "3.75",
    }
    values.update(fields)
    return PeriodItem(**values)  # type: ignore[arg-type]


def _tariff(**fields: object) -> TariffItem:
    values: dict[str, object] = {
        "id": 10,
        "municipality_id": 5,
        "name": "Domestic TOU",
        "is_active": True,
        "effective_from": datetime(2024, 7, 1, tzinfo=UTC),
        "effective_to": None,
        "default_rate": "2.10",
        "fixed_charge": "250.00",
        "vat_percent": "15",
        "currency": "ZAR",
        "periods": (_period(),),
    }
    values.update(fields)
    return TariffItem(**values)  # type: ignore[arg-type]


def _fields(error: pytest.ExceptionInfo[InvalidArgument]) -> list[str]:
    return [v.field for v in error.value.violations]


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=23), st.integers(min_value=0, max_value=59))
def test_every_clock_time_of_the_day_parses_as_start_and_end(hours, minutes):
    text = f"{hours:02d}:{minutes:02d}"
    problems = Violations()
    assert parse_clock(text, "t", problems, is_end=False) == hours * 60 + minutes
    assert parse_clock(text, "t", problems, is_end=True) == hours * 60 + minutes
    assert not problems


@pytest.mark.parametrize("text", ["24:00"])
def test_midnight_as_24_00_is_only_an_end(text):
    problems = Violations()
    assert parse_clock(text, "end", problems, is_end=True) == 1440
    assert parse_clock(text, "start", problems, is_end=False) == -1
    assert [v.field for v in problems.items] == ["start"]


@pytest.mark.parametrize(
    "text", ["", "7:00", "07:0", "0700", "07:00:00", "24:30", "25:00", "12:60", " 07:00", "-1:00"]
)
def test_malformed_clock_times_are_violations(text):
    problems = Violations()
    assert parse_clock(text, "t", problems, is_end=True) == -1
    assert len(problems.items) == 1


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=0, max_value=Decimal("999999999999999"), places=4, allow_nan=False))
def test_non_negative_decimals_parse_to_themselves(value):
    problems = Violations()
    assert parse_decimal(format(value, "f"), "rate", problems) == value
    assert not problems


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "decimal number"),
        ("1e3", "decimal number"),
        ("Infinity", "decimal number"),
        ("NaN", "decimal number"),
        ("1,5", "decimal number"),
        ("+1", "decimal number"),
        (" 1", "decimal number"),
        ("-0.01", "must not be negative"),
        ("1" * 16, "at most 15 digits"),
        ("0." + "1" * 11, "at most 15 digits"),
    ],
)
def test_bad_money_is_a_violation(text, message):
    problems = Violations()
    parse_decimal(text, "rate", problems)
    assert [v.field for v in problems.items] == ["rate"]
    assert message in problems.items[0].description


def test_leading_zeros_do_not_count_against_the_digit_limit():
    problems = Violations()
    assert parse_decimal("000000000000000001.5", "rate", problems) == Decimal("1.5")
    assert not problems


@pytest.mark.parametrize(
    "zone", ["UTC", "Africa/Johannesburg", "America/Argentina/Buenos_Aires", "Etc/GMT+2"]
)
def test_iana_zones_are_known(zone):
    assert is_timezone(zone)


@pytest.mark.parametrize("zone", ["Mars/Olympus", "utc ", "/etc/passwd", "../zoneinfo/UTC", "Africa/"])
def test_other_names_are_not_zones(zone):
    assert not is_timezone(zone)


def test_an_empty_timezone_becomes_utc():
    (validated,) = validate_sites([SiteItem(1, "HQ", "", "", None, None)])
    assert validated.timezone == "UTC"


def test_every_repeat_of_an_id_is_named_with_its_first_position():
    devices = [DeviceItem(i % 3 + 1, 1, "m", "", "") for i in range(5)]
    with pytest.raises(InvalidArgument) as error:
        validate_devices(devices)
    assert [(v.field, v.description) for v in error.value.violations] == [
        ("devices[3].id", "duplicate id 1 (also at devices[0])"),
        ("devices[4].id", "duplicate id 2 (also at devices[1])"),
    ]


def test_violations_beyond_the_cap_are_counted_not_listed():
    with pytest.raises(InvalidArgument) as error:
        validate_devices([DeviceItem(-i, 1, "m", "", "") for i in range(MAX_LISTED_VIOLATIONS + 7)])
    assert [v.field for v in error.value.violations] == [
        f"devices[{i}].id" for i in range(MAX_LISTED_VIOLATIONS)
    ]
    assert error.value.message == f"devices[0].id: must be > 0 (and {MAX_LISTED_VIOLATIONS + 6} more)"


def test_a_valid_tariff_parses_money_and_minutes():
    (row,) = validate_tariffs([_tariff(periods=(_period(start_time="22:00", end_time="00:00"),))], NOW)
    assert (row.default_rate, row.fixed_charge, row.vat_percent) == (
        Decimal("2.10"),
        Decimal("250.00"),
        Decimal(15),
    )
    (period,) = row.periods
    assert (period.start_minute, period.end_minute, period.rate) == (22 * 60, 1440, Decimal("3.75"))


def test_a_tariff_window_may_lie_in_the_future():
    published = _tariff(effective_from=NOW + timedelta(days=180), effective_to=NOW + timedelta(days=3650))
    assert validate_tariffs([published], NOW)[0].effective_from == NOW + timedelta(days=180)


def test_a_tariff_with_everything_wrong_reports_everything():
    broken = _tariff(
        id=0,
        municipality_id=-1,
        name="",
        effective_from=None,
        default_rate="x",
        fixed_charge="-1",
        vat_percent="101",
        currency="R",
        periods=(_period(days_of_week=0, start_time="9", end_time="25:00", rate=""), _period(name="")),
    )
    with pytest.raises(InvalidArgument) as error:
        validate_tariffs([broken], NOW)
    assert _fields(error) == [
        "tariffs[0].id",
        "tariffs[0].municipality_id",
        "tariffs[0].name",
        "tariffs[0].effective_from",
        "tariffs[0].default_rate",
        "tariffs[0].fixed_charge",
        "tariffs[0].vat_percent",
        "tariffs[0].currency",
        "tariffs[0].periods[0].days_of_week",
        "tariffs[0].periods[0].start_time",
        "tariffs[0].periods[0].end_time",
        "tariffs[0].periods[0].rate",
        "tariffs[0].periods[1].name",
        "tariffs[0].periods[1].id",
    ]


def test_a_tariff_holds_at_most_the_period_cap():
    at_cap = tuple(_period(id=i) for i in range(1, MAX_PERIODS_PER_TARIFF + 1))
    (row,) = validate_tariffs([_tariff(periods=at_cap)], NOW)
    assert len(row.periods) == MAX_PERIODS_PER_TARIFF
    over = (*at_cap, _period(id=MAX_PERIODS_PER_TARIFF + 1))
    with pytest.raises(InvalidArgument) as error:
        validate_tariffs([_tariff(), _tariff(id=11, periods=over)], NOW)
    assert _fields(error) == ["tariffs[1].periods"]
    assert error.value.message == "tariffs[1].periods: must hold at most 1000 periods (has 1001)"


def test_effective_to_before_2000_is_caught_even_without_effective_from():
    with pytest.raises(InvalidArgument) as error:
        validate_tariffs([_tariff(effective_from=None, effective_to=datetime(1999, 1, 1, tzinfo=UTC))], NOW)
    assert _fields(error) == ["tariffs[0].effective_from", "tariffs[0].effective_to"]
