"""The pricing arithmetic, pure: kWh and money rounding, period lines, fixed-charge pro-rata.

The database does the heavy lifting of `ComputeCosts`: it converts each reading to kWh and
matches it to its TOU period while grouping millions of readings into a few hundred slots
(`store.costs`). These functions do the arithmetic on those slots. Everything here is exact:
`Decimal` for money and kWh, `Fraction` for the pro-rata shares, so a bill never depends on
float rounding.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from fractions import Fraction
from math import floor
from zoneinfo import ZoneInfo

KWH_PLACES = Decimal("0.000001")
MONEY_PLACES = Decimal("0.01")
DEFAULT_PERIOD_ID = 0
DEFAULT_PERIOD_NAME = "default"
# Enough digits that no product or sum on the money path is ever rounded before the one
# rounding the pricing rules prescribe (kWh with 6 places times rates with any scale a tariff
# carries), and that quantizing never fails, even for readings stored before values were
# bounded: a double holds up to 309 integer digits, a sum of fewer than 2**63 of them 328, times
# a rate of at most 15 + 10 digits 359. Small numbers cost no more for it; one customer's `1e308`
# readings no longer fail everyone's ComputeCosts (decimal.InvalidOperation, then INTERNAL).
_EXACT = Context(prec=400, rounding=ROUND_HALF_UP)
_ONE_MICROSECOND = timedelta(microseconds=1)


def exact_sum(values: Iterable[Decimal], start: Decimal) -> Decimal:
    """A sum never rounded along the way (the default context would keep only 28 digits)."""
    with localcontext(_EXACT):
        return sum(values, start)


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
    """A site's bill totals, each already rounded as the pricing rules prescribe."""

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
