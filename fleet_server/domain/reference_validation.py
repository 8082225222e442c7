"""Reference-data snapshots as received, and the rules every item must pass before anything is written.

Validation is pure (no database): it sees the whole snapshot at once, so it reports every bad
field and every duplicate id with the path the caller used (`tariffs[3].periods[1].rate`, the
index counting across all messages of the stream) instead of one problem per retry. Checks
that need stored state (a device's site, a tariff's municipality) live with the apply code.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from fleet_server.domain.rules import check_range, check_text
from fleet_server.errors import Violations
from fleet_server.store.reference import PeriodRecord, TariffRecord

_DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
# Money and rates are NUMERIC without a fixed scale; a bound keeps absurd strings out of it.
MAX_INTEGER_DIGITS = 15
MAX_FRACTION_DIGITS = 10
_CURRENCY = re.compile(r"[A-Z]{3}")
_CLOCK_TIME = re.compile(r"([0-9]{2}):([0-9]{2})")
MINUTES_PER_DAY = 1440
ALL_DAYS = 127
DEFAULT_TIMEZONE = "UTC"
# A time-of-use schedule with a period for every quarter hour of every weekday has 672; more is
# no schedule but a flood. The bound keeps one tariff — which a view must show whole, periods
# and all — far below gRPC's message limit (ListTariffs, GetCustomerDetail).
MAX_PERIODS_PER_TARIFF = 1000
# IANA zone names are short (the longest, America/Argentina/ComodRivadavia, has 32 characters).
MAX_TIMEZONE_LENGTH = 64


@dataclass(frozen=True, slots=True)
class SiteItem:
    id: int
    name: str
    address: str
    timezone: str
    municipality_id: int | None
    tariff_id: int | None


@dataclass(frozen=True, slots=True)
class DeviceItem:
    id: int
    site_id: int
    name: str
    serial_number: str
    kind: str


@dataclass(frozen=True, slots=True)
class MunicipalityItem:
    id: int
    name: str
    region: str


@dataclass(frozen=True, slots=True)
class PeriodItem:
    """A TOU period as pushed: times and rate still as the caller's strings."""

    id: int
    name: str
    days_of_week: int
    start_time: str
    end_time: str
    rate: str


@dataclass(frozen=True, slots=True)
class TariffItem:
    """A tariff as pushed; `effective_from`/`effective_to` are None when unset on the wire."""

    id: int
    municipality_id: int
    name: str
    is_active: bool
    effective_from: datetime | None
    effective_to: datetime | None
    default_rate: str
    fixed_charge: str
    vat_percent: str
    currency: str
    periods: tuple[PeriodItem, ...]


def _check_id(value: int, path: str, problems: Violations) -> None:
    if value <= 0:
        problems.add(path, "must be > 0")


def _check_optional_id(value: int | None, path: str, problems: Violations) -> None:
    if value is not None and value <= 0:
        problems.add(path, "must be > 0 when set")


def _check_name(value: str, path: str, problems: Violations) -> None:
    if not value.strip():
        problems.add(path, "must not be empty")
    else:
        check_text(value, path, problems)


def _check_timezone(value: str, path: str, problems: Violations) -> None:
    """Empty (= UTC) or an IANA name; a long value is refused before it is looked up or echoed."""
    if value and check_text(value, path, problems, max_length=MAX_TIMEZONE_LENGTH) and not is_timezone(value):
        problems.add(path, f"unknown IANA time zone {value!r}")


def _check_unique(ids: Sequence[int], prefix: str, problems: Violations) -> None:
    """`prefix[i].id: duplicate id N (also at prefix[j])` for every repeat after the first."""
    if len(set(ids)) == len(ids):
        return  # the usual case, at a fraction of the memory of the positions below
    first_at: dict[int, int] = {}
    for index, value in enumerate(ids):
        if value in first_at:
            first = f"{prefix}[{first_at[value]}]"
            problems.add(f"{prefix}[{index}].id", f"duplicate id {value} (also at {first})")
        else:
            first_at[value] = index


@functools.cache
def _known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_timezone(name: str) -> bool:
    """True for an IANA zone name this machine's tz database knows."""
    zones = _known_timezones()
    if zones:
        return name in zones
    try:  # no listable tz database (e.g. only the tzdata wheel): ask zoneinfo directly
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def parse_decimal(value: str, path: str, problems: Violations) -> Decimal:
    """A non-negative decimal string as a Decimal; on a violation, Decimal(0) (never stored)."""
    if not _DECIMAL.fullmatch(value):
        problems.add(path, 'must be a decimal number such as "3.75"')
        return Decimal(0)
    digits = value.lstrip("-")
    whole, _, fraction = digits.partition(".")
    if len(whole.lstrip("0")) > MAX_INTEGER_DIGITS or len(fraction) > MAX_FRACTION_DIGITS:
        problems.add(
            path,
            f"must have at most {MAX_INTEGER_DIGITS} digits before and "
            f"{MAX_FRACTION_DIGITS} after the decimal point",
        )
        return Decimal(0)
    number = Decimal(value)
    if number < 0:
        problems.add(path, "must not be negative")
        return Decimal(0)
    return number


def parse_clock(value: str, path: str, problems: Violations, *, is_end: bool) -> int:
    """`HH:MM` as minutes of the day; `24:00` (1440) only as an end. On a violation, -1."""
    match = _CLOCK_TIME.fullmatch(value)
    if match is not None:
        hours, minutes = int(match.group(1)), int(match.group(2))
        if hours < 24 and minutes < 60:
            return hours * 60 + minutes
        if is_end and hours == 24 and minutes == 0:
            return MINUTES_PER_DAY
    allowed = "00:00..24:00" if is_end else "00:00..23:59"
    problems.add(path, f"must be HH:MM in {allowed}")
    return -1


def validate_sites(items: Sequence[SiteItem]) -> list[SiteItem]:
    """The snapshot with empty timezones made explicit (`UTC`), or InvalidArgument."""
    problems = Violations()
    for i, site in enumerate(items):
        path = f"sites[{i}]"
        _check_id(site.id, f"{path}.id", problems)
        _check_name(site.name, f"{path}.name", problems)
        check_text(site.address, f"{path}.address", problems)
        _check_timezone(site.timezone, f"{path}.timezone", problems)
        _check_optional_id(site.municipality_id, f"{path}.municipality_id", problems)
        _check_optional_id(site.tariff_id, f"{path}.tariff_id", problems)
    _check_unique([s.id for s in items], "sites", problems)
    problems.raise_if_any()
    return [s if s.timezone else replace(s, timezone=DEFAULT_TIMEZONE) for s in items]


def validate_devices(items: Sequence[DeviceItem]) -> list[DeviceItem]:
    problems = Violations()
    for i, device in enumerate(items):
        path = f"devices[{i}]"
        _check_id(device.id, f"{path}.id", problems)
        _check_id(device.site_id, f"{path}.site_id", problems)
        _check_name(device.name, f"{path}.name", problems)
        check_text(device.serial_number, f"{path}.serial_number", problems)
        check_text(device.kind, f"{path}.kind", problems)
    _check_unique([d.id for d in items], "devices", problems)
    problems.raise_if_any()
    return list(items)


def validate_municipalities(items: Sequence[MunicipalityItem]) -> list[MunicipalityItem]:
    problems = Violations()
    for i, municipality in enumerate(items):
        path = f"municipalities[{i}]"
        _check_id(municipality.id, f"{path}.id", problems)
        _check_name(municipality.name, f"{path}.name", problems)
        check_text(municipality.region, f"{path}.region", problems)
    _check_unique([m.id for m in items], "municipalities", problems)
    problems.raise_if_any()
    return list(items)


def _validate_period(period: PeriodItem, path: str, problems: Violations) -> PeriodRecord:
    _check_id(period.id, f"{path}.id", problems)
    _check_name(period.name, f"{path}.name", problems)
    if not 1 <= period.days_of_week <= ALL_DAYS:
        problems.add(f"{path}.days_of_week", f"must be 1..{ALL_DAYS}")
    start = parse_clock(period.start_time, f"{path}.start_time", problems, is_end=False)
    end = parse_clock(period.end_time, f"{path}.end_time", problems, is_end=True)
    if start >= 0 and end >= 0 and start == end:
        problems.add(f"{path}.end_time", "must differ from start_time")
    rate = parse_decimal(period.rate, f"{path}.rate", problems)
    # An end of 00:00 after a later start wraps to midnight: the same window as 24:00, which is
    # how it is stored (the schema keeps end minutes in 1..1440).
    return PeriodRecord(period.id, period.name, period.days_of_week, start, end or MINUTES_PER_DAY, rate)


def _validate_tariff(tariff: TariffItem, path: str, now: datetime, problems: Violations) -> TariffRecord:
    _check_id(tariff.id, f"{path}.id", problems)
    _check_id(tariff.municipality_id, f"{path}.municipality_id", problems)
    _check_name(tariff.name, f"{path}.name", problems)
    # A window may lie in the future: tariffs are published before they apply.
    check_range(
        tariff.effective_from,
        tariff.effective_to,
        problems,
        paths=(f"{path}.effective_from", f"{path}.effective_to"),
        end_optional=True,
    )
    default_rate = parse_decimal(tariff.default_rate, f"{path}.default_rate", problems)
    fixed_charge = parse_decimal(tariff.fixed_charge, f"{path}.fixed_charge", problems)
    vat = parse_decimal(tariff.vat_percent, f"{path}.vat_percent", problems)
    if vat > 100:
        problems.add(f"{path}.vat_percent", "must be between 0 and 100")
    if not _CURRENCY.fullmatch(tariff.currency):
        problems.add(f"{path}.currency", "must be an ISO 4217 code of three capital letters, e.g. ZAR")
    if len(tariff.periods) > MAX_PERIODS_PER_TARIFF:
        problems.add(
            f"{path}.periods",
            f"must hold at most {MAX_PERIODS_PER_TARIFF} periods (has {len(tariff.periods)})",
        )
    periods = tuple(
        _validate_period(p, f"{path}.periods[{j}]", problems) for j, p in enumerate(tariff.periods)
    )
    _check_unique([p.id for p in tariff.periods], f"{path}.periods", problems)
    return TariffRecord(
        id=tariff.id,
        municipality_id=tariff.municipality_id,
        name=tariff.name,
        is_active=tariff.is_active,
        effective_from=tariff.effective_from or now,
        effective_to=tariff.effective_to,
        default_rate=default_rate,
        fixed_charge=fixed_charge,
        vat_percent=vat,
        currency=tariff.currency,
        periods=periods,
    )


def validate_tariffs(items: Sequence[TariffItem], now: datetime) -> list[TariffRecord]:
    """Validated tariffs with parsed money and period minutes, or InvalidArgument listing every problem."""
    problems = Violations()
    rows = [_validate_tariff(t, f"tariffs[{i}]", now, problems) for i, t in enumerate(items)]
    _check_unique([t.id for t in items], "tariffs", problems)
    problems.raise_if_any()
    return rows
