"""The pricing rules of §9 as pure functions: period matching, kWh and money rounding, fixed-charge pro-rata.

The database does the heavy lifting of `ComputeCosts` (it groups millions of readings into a few
hundred slots); these functions are the rules themselves, shared by the SQL path's final
arithmetic and readable on their own. Everything here is exact: `Decimal` for money and kWh,
`Fraction` for the pro-rata shares, so a bill never depends on float rounding.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from fractions import Fraction
from math import floor
from zoneinfo import ZoneInfo

_LOGGER = logging.getLogger(__name__)

MINUTES_PER_DAY = 1440
# Portals write "23:59" for "until midnight": a stored end of 1439 is billed as 24:00.
_END_OF_DAY_AS_PUSHED = 1439
KWH_PLACES = Decimal("0.000001")
MONEY_PLACES = Decimal("0.01")
DEFAULT_PERIOD_ID = 0
DEFAULT_PERIOD_NAME = "default"
# Enough digits that no product or sum on the money path is ever rounded before the one
# rounding §9 prescribes (kWh with 6 places times rates with any scale a tariff carries).
_EXACT = Context(prec=60, rounding=ROUND_HALF_UP)
_ONE_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class Period:
    """A TOU window as stored: minutes of the local day, `end_minute` exactly as pushed."""

    id: int
    name: str
    days_of_week: int
    start_minute: int
    end_minute: int
    rate: Decimal


def billed_end(end_minute: int) -> int:
    """The end minute used for pricing: `23:59` (1439) means the end of the day (1440)."""
    return MINUTES_PER_DAY if end_minute == _END_OF_DAY_AS_PUSHED else end_minute


def period_covers(period: Period, weekday: int, minute: int) -> bool:
    """Whether `period` contains local `minute` (0..1439) of a day with `weekday` (0 = Monday).

    A wrapping period (end before start) is the union of `[start, 24:00)` and `[00:00, end)` on
    each listed day itself, literally as §9 words it: "22:00-06:00 on Monday" covers Monday 00:00-06:00 and
    Monday 22:00-24:00, not Tuesday morning.
    """
    if not (period.days_of_week >> weekday) & 1:
        return False
    start, end = period.start_minute, billed_end(period.end_minute)
    if end > start:
        return start <= minute < end
    return minute >= start or minute < end


def match_period(periods: Iterable[Period], weekday: int, minute: int) -> Period | None:
    """The period a local weekday/minute is billed under: the lowest id among those covering it."""
    for period in sorted(periods, key=lambda p: p.id):
        if period_covers(period, weekday, minute):
            return period
    return None


def local_slot(moment: datetime, timezone: str) -> tuple[int, int]:
    """(weekday 0 = Monday, minute of the day) of `moment` on the wall clock of `timezone` ('' = UTC).

    Periods start and end on whole minutes, so a reading's seconds never change its period.
    """
    local = moment.astimezone(ZoneInfo(timezone or "UTC"))
    return local.weekday(), local.hour * 60 + local.minute


def kwh(value: float) -> Decimal:
    """A reading as billed kWh: the double's shortest round-trip decimal, rounded half-up to 6 places.

    The shortest round-trip form (Python's `repr`, PostgreSQL's float8 text output) is the decimal
    the portal meant; rounding the exact binary expansion instead would let binary noise decide
    ties, and PostgreSQL's direct float8→numeric cast keeps only 15 significant digits.
    """
    return Decimal(repr(value)).quantize(KWH_PLACES, rounding=ROUND_HALF_UP)


def round_kwh(value: Decimal) -> Decimal:
    return value.quantize(KWH_PLACES, rounding=ROUND_HALF_UP, context=_EXACT)


def round_money(value: Decimal) -> Decimal:
    """Half-up to 2 places: the one rounding of a period line, a fixed charge or a VAT amount."""
    return value.quantize(MONEY_PLACES, rounding=ROUND_HALF_UP, context=_EXACT)


def round_money_fraction(value: Fraction) -> Decimal:
    """An exact rational amount rounded half-up (away from zero on a tie) to 2 places."""
    scaled = abs(value) * 100
    cents = floor(scaled + Fraction(1, 2))
    return Decimal(-cents if value < 0 else cents).scaleb(-2)


@dataclass(frozen=True)
class PeriodLine:
    """Energy billed under one period (or the default rate, id 0) of a site's tariff."""

    period_id: int
    period_name: str
    kwh: Decimal
    rate: Decimal
    cost: Decimal


def price_line(period_id: int, period_name: str, energy: Decimal, rate: Decimal) -> PeriodLine:
    """A period line: kWh * rate, rounded once to cents."""
    with localcontext(_EXACT):
        cost = round_money(energy * rate)
    return PeriodLine(period_id, period_name, round_kwh(energy), rate, cost)


def ordered_lines(lines: Iterable[PeriodLine]) -> list[PeriodLine]:
    """Period lines by period id, the default-rate line last (as the contract orders them)."""
    return sorted(lines, key=lambda line: (line.period_id == DEFAULT_PERIOD_ID, line.period_id))


@dataclass(frozen=True)
class SiteAmounts:
    """A site's bill totals, each already rounded as §9 prescribes."""

    energy_kwh: Decimal
    energy_cost: Decimal
    fixed_charge: Decimal
    vat: Decimal
    total: Decimal


def site_amounts(lines: Sequence[PeriodLine], fixed_charge: Decimal, vat_percent: Decimal) -> SiteAmounts:
    """Energy = sum of the rounded lines; VAT = round(vat% * (energy + fixed)); total = the three."""
    with localcontext(_EXACT):
        energy_kwh = round_kwh(sum((line.kwh for line in lines), Decimal(0)))
        energy_cost = sum((line.cost for line in lines), Decimal("0.00"))
        vat = round_money(vat_percent * (energy_cost + fixed_charge) / 100)
        total = energy_cost + fixed_charge + vat
    return SiteAmounts(energy_kwh, energy_cost, fixed_charge, vat, total)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def local_months(start: datetime, end: datetime, timezone: str) -> Iterator[tuple[datetime, datetime]]:
    """The site-local calendar months `[start, end)` touches, as UTC `(month start, next month start)`.

    Bounds are converted to UTC before any arithmetic: Python subtracts two datetimes sharing one
    `ZoneInfo` by wall clock, which would make a DST month an hour too long or too short.
    """
    zone = ZoneInfo(timezone or "UTC")
    local = start.astimezone(zone)
    year, month = local.year, local.month
    while True:
        begin = _utc(datetime(year, month, 1, tzinfo=zone))
        if begin >= end:
            return
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        yield begin, _utc(datetime(year, month, 1, tzinfo=zone))


def month_shares(start: datetime, end: datetime, timezone: str) -> Fraction:
    """How many site-local calendar months `[start, end)` covers, by elapsed time, exactly.

    A whole month counts 1 whatever its length (a DST month too); 7 days of a 28-day month, 1/4.
    """
    start, end = _utc(start), _utc(end)
    if end <= start:
        return Fraction(0)
    total = Fraction(0)
    for begin, finish in local_months(start, end, timezone):
        covered = min(end, finish) - max(start, begin)
        if covered > timedelta(0):
            total += Fraction(covered // _ONE_MICROSECOND, (finish - begin) // _ONE_MICROSECOND)
    return total


def prorated_fixed_charge(
    fixed_charge: Decimal,
    start: datetime,
    end: datetime,
    timezone: str,
    window: tuple[datetime, datetime | None] | None,
) -> Decimal:
    """The monthly fixed charge over `[start, end)`, pro-rated per site-local month, rounded once.

    `window` is the tariff's effective window `[from, to)` (to None = open); None when the site
    has no billable tariff (none, unknown, or inactive), which bills no fixed charge. Only the
    part of the range inside the window is charged, consistently with energy outside it being
    unpriced.
    """
    if window is None:
        return Decimal("0.00")
    window_from, window_to = window
    begin = max(start, window_from)
    finish = end if window_to is None else min(end, window_to)
    shares = month_shares(begin, finish, timezone)
    return round_money_fraction(Fraction(fixed_charge) * shares)
