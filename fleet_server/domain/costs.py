"""Cross-customer cost compute: every site's energy priced with its tariff's TOU periods.

The database groups the raw `energy_kwh` readings of the range into slots — (customer, site,
priced or not, period) — with the period chosen in SQL from each reading's local weekday and
time of day (`store.costs`). This module then does the exact decimal arithmetic of
`fleet_server.domain.tou` over that small result. Hourly rollups are not used: a period may
start off the hour and a site may sit in a half-hour-offset timezone, so an hour bucket can
straddle two periods.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.orm import Session

from fleet_server.domain import tou
from fleet_server.domain.customers import check_code, unknown_customers
from fleet_server.domain.rules import check_range
from fleet_server.errors import FailedPrecondition, Reason, Violations
from fleet_server.store import costs, reference
from fleet_server.store import customers as customer_store
from fleet_server.store.costs import EnergySlot, UnconvertibleTimezones
from fleet_server.store.reference import PeriodRecord, SiteRecord, TariffRecord

_LOGGER = logging.getLogger(__name__)

# Readings of a device the customer never pushed belong to no site; they are reported on this
# pseudo-site (ids pushed by portals are always > 0) instead of being dropped.
UNKNOWN_DEVICES_SITE_ID = 0
UNKNOWN_DEVICES_SITE_NAME = "(readings of unknown devices)"
# A bill is priced per site-local calendar month, and the month after December 9999 is past
# what a `datetime` holds: a range must end a year before that (ranges of year 9999 failed as
# INTERNAL, OverflowError).
LATEST_COST_TIME = datetime(9999, 1, 1, tzinfo=UTC)
# How many unpriceable sites an error names before it only counts the rest.
MAX_NAMED = 10
_ZERO_KWH = Decimal("0.000000")
_ZERO_MONEY = Decimal("0.00")


@dataclass(frozen=True)
class CostQuery:
    """What the caller asked for; `start`/`end` are None when the request left them unset."""

    codes: tuple[str, ...]
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True)
class SiteCost:
    """One site's bill; money rounded to cents, kWh to 6 places (docs/DESIGN.md, pricing rules)."""

    site_id: int
    site_name: str
    tariff_id: int | None
    currency: str
    periods: tuple[tou.PeriodLine, ...]
    energy_kwh: Decimal
    energy_cost: Decimal
    fixed_charge: Decimal
    vat: Decimal
    total: Decimal
    unpriced_kwh: Decimal
    tariff_name: str = ""  # empty when the site names no tariff, or one never pushed


@dataclass(frozen=True)
class CustomerCost:
    """One customer's sites (by id, the unknown-devices line first) and totals per currency."""

    code: str
    sites: tuple[SiteCost, ...]
    # (currency, total), ordered by currency.
    totals: tuple[tuple[str, Decimal], ...]


@dataclass(frozen=True)
class CostReport:
    """The bills of every requested customer (by code); `readings` feeds the access log."""

    customers: tuple[CustomerCost, ...]
    start: datetime
    end: datetime
    readings: int


def check_query(
    query: CostQuery, max_span_days: int, session: Session | None = None
) -> tuple[datetime, datetime]:
    """The validated `[start, end)`; every problem with the request reported at once.

    A range may reach into the future (a month's bill while the month runs). With a `session`,
    a malformed code is answered with the code it probably meant.
    """
    problems = Violations()
    for index, code in enumerate(query.codes):
        check_code(code, f"codes[{index}]", problems, session)
    check_range(
        query.start, query.end, problems, latest=LATEST_COST_TIME, max_span=timedelta(days=max_span_days)
    )
    problems.raise_if_any()
    assert query.start is not None
    assert query.end is not None
    return query.start, query.end


def compute_costs(
    session: Session, query: CostQuery, max_span_days: int, timeout_s: float | None = None
) -> CostReport:
    """Price `[start, end)` for the customers named by `query.codes` (all when empty).

    Runs in one REPEATABLE READ snapshot so the sites, tariffs and periods read here are the
    ones the aggregation prices with, even while a portal pushes. `timeout_s` is the pricing
    query's own statement timeout (None: the session's).
    """
    start, end = check_query(query, max_span_days, session)
    session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    customers = _customers(session, query.codes)
    ids = [customer_id for customer_id, _ in customers]
    sites = reference.sites_of(session, ids)
    _check_timezones(sites, dict(customers))
    try:
        slots = costs.energy_slots(session, ids, start, end, timeout_s)
    except UnconvertibleTimezones as exc:
        raise _unknown_timezones(exc.sites, "the database's timezone data") from exc
    tariffs = {(customer_id, t.id): t for customer_id, t in reference.tariffs_of(session, ids)}

    slots_by_site: dict[tuple[int, int | None], list[EnergySlot]] = defaultdict(list)
    for slot in slots:
        slots_by_site[(slot.customer_id, slot.site_id)].append(slot)
    sites_by_customer: dict[int, list[SiteRecord]] = defaultdict(list)
    for customer_id, site in sites:
        sites_by_customer[customer_id].append(site)

    bills: list[CustomerCost] = []
    for customer_id, code in customers:
        lines: list[SiteCost] = []
        orphans = slots_by_site.get((customer_id, None))
        if orphans:
            lines.append(
                _unbilled(UNKNOWN_DEVICES_SITE_ID, UNKNOWN_DEVICES_SITE_NAME, None, _kwh_sum(orphans))
            )
        for site in sites_by_customer[customer_id]:
            tariff = tariffs.get((customer_id, site.tariff_id)) if site.tariff_id is not None else None
            site_slots = slots_by_site.get((customer_id, site.id), [])
            lines.append(_bill_site(site, tariff, site_slots, start, end))
        bills.append(CustomerCost(code=code, sites=tuple(lines), totals=_currency_totals(lines)))
    readings = sum(slot.readings for slot in slots)
    _LOGGER.debug("priced %d readings of %d customers", readings, len(bills))
    return CostReport(customers=tuple(bills), start=start, end=end, readings=readings)


def _named(items: Sequence[str]) -> str:
    """The first `MAX_NAMED` items, and how many more there are: an error travels in trailing
    metadata, which a default client caps at 16 KiB (see `customers.unknown_customers`)."""
    named = ", ".join(items[:MAX_NAMED])
    return named if len(items) <= MAX_NAMED else f"{named} (and {len(items) - MAX_NAMED} more)"


def _customers(session: Session, codes: Sequence[str]) -> list[tuple[int, str]]:
    """(id, code) of the named customers, by code; all customers when none are named."""
    wanted = sorted(set(codes))
    found = customer_store.ids_by_code(session, wanted)
    missing = sorted(set(wanted) - {code for _, code in found})
    if missing:
        raise unknown_customers(session, missing)
    return found


def _unknown_timezones(sites: Sequence[tuple[str, int, str]], where: str) -> FailedPrecondition:
    named = _named([f"{code} site {site_id} ({zone})" for code, site_id, zone in sites])
    return FailedPrecondition(
        f"timezone not found in {where}: {named}; the site cannot be priced in local time",
        reason=Reason.UNKNOWN_TIMEZONE,
    )


def _check_timezones(sites: Iterable[tuple[int, SiteRecord]], codes: dict[int, str]) -> None:
    """Refuse, naming them, sites whose timezone Python's tz data does not know.

    Pushes are validated, so this only happens when the server's tz data is older than the
    pusher's; a clear FAILED_PRECONDITION beats an INTERNAL from deep inside the arithmetic.
    """
    unknown = []
    for customer_id, site in sites:
        try:
            ZoneInfo(site.timezone or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            unknown.append((codes[customer_id], site.id, site.timezone))
    if unknown:
        raise _unknown_timezones(unknown, "the server's timezone data")


def _kwh_sum(slots: Iterable[EnergySlot]) -> Decimal:
    return tou.round_kwh(tou.exact_sum((slot.kwh for slot in slots), _ZERO_KWH))


def _unbilled(site_id: int, name: str, tariff_id: int | None, unpriced_kwh: Decimal) -> SiteCost:
    """A site line with nothing to bill: no tariff (or one never pushed), so no currency either."""
    return SiteCost(
        site_id=site_id,
        site_name=name,
        tariff_id=tariff_id,
        currency="",
        periods=(),
        energy_kwh=_ZERO_KWH,
        energy_cost=_ZERO_MONEY,
        fixed_charge=_ZERO_MONEY,
        vat=_ZERO_MONEY,
        total=_ZERO_MONEY,
        unpriced_kwh=unpriced_kwh,
    )


def _bill_site(
    site: SiteRecord,
    tariff: TariffRecord | None,
    slots: list[EnergySlot],
    start: datetime,
    end: datetime,
) -> SiteCost:
    """One site's bill: a line per period its priced readings fell in, fixed charge and VAT."""
    unpriced = _kwh_sum(slot for slot in slots if not slot.priced)
    if tariff is None:
        return _unbilled(site.id, site.name, site.tariff_id, unpriced)
    by_period: dict[int, list[EnergySlot]] = defaultdict(list)
    for slot in slots:
        if slot.priced:
            by_period[slot.period_id or tou.DEFAULT_PERIOD_ID].append(slot)
    periods: dict[int, PeriodRecord] = {p.id: p for p in tariff.periods}
    lines = []
    for period_id, group in by_period.items():
        period = periods.get(period_id)
        if period is None:
            name, rate = tou.DEFAULT_PERIOD_NAME, tariff.default_rate
        else:
            name, rate = period.name, period.rate
        lines.append(tou.price_line(period_id, name, _kwh_sum(group), rate))
    # An inactive tariff bills nothing, fixed charge included; an active one only inside its window.
    window = (tariff.effective_from, tariff.effective_to) if tariff.is_active else None
    fixed = tou.prorated_fixed_charge(tariff.fixed_charge, start, end, site.timezone, window)
    amounts = tou.site_amounts(lines, fixed, tariff.vat_percent)
    return SiteCost(
        site_id=site.id,
        site_name=site.name,
        tariff_id=site.tariff_id,
        currency=tariff.currency,
        periods=tuple(tou.ordered_lines(lines)),
        energy_kwh=amounts.energy_kwh,
        energy_cost=amounts.energy_cost,
        fixed_charge=amounts.fixed_charge,
        vat=amounts.vat,
        total=amounts.total,
        unpriced_kwh=unpriced,
        tariff_name=tariff.name,
    )


def _currency_totals(sites: Iterable[SiteCost]) -> tuple[tuple[str, Decimal], ...]:
    """Sum of site totals per currency; sites without a tariff (no currency) add nothing."""
    totals: dict[str, list[Decimal]] = {}
    for site in sites:
        if site.currency:
            totals.setdefault(site.currency, []).append(site.total)
    return tuple(
        sorted((currency, tou.exact_sum(amounts, _ZERO_MONEY)) for currency, amounts in totals.items())
    )
