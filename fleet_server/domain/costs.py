"""Cross-customer cost compute (§9): every site's energy priced with its tariff's TOU periods.

The database groups the raw `energy_kwh` readings of the range into slots — (customer, site,
priced or not, period) — with the period chosen in SQL from each reading's local weekday and
time of day (`time AT TIME ZONE site.timezone`, DST-correct). Python then does the exact
decimal arithmetic of `fleet_server.domain.tou` over that small result. Hourly rollups are not
used: a period may start off the hour and a site may sit in a half-hour-offset timezone, so an
hour bucket can straddle two periods.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.types import BigInteger, Text

from fleet_server.db.models import Customer, Site, Tariff, TariffPeriod
from fleet_server.domain import tou
from fleet_server.domain.customers import check_code
from fleet_server.domain.rules import EARLIEST_TIME
from fleet_server.errors import FailedPrecondition, NotFound, Reason, Violations

_LOGGER = logging.getLogger(__name__)

ENERGY_METRIC = "energy_kwh"
# Readings of a device the customer never pushed belong to no site; they are reported on this
# pseudo-site (ids pushed by portals are always > 0) instead of being dropped.
UNKNOWN_DEVICES_SITE_ID = 0
UNKNOWN_DEVICES_SITE_NAME = "(readings of unknown devices)"
_ZERO_KWH = Decimal("0.000000")
_ZERO_MONEY = Decimal("0.00")
_INVALID_PARAMETER_VALUE = "22023"  # SQLSTATE raised by AT TIME ZONE for a zone it does not know


@dataclass(frozen=True)
class CostQuery:
    """What the caller asked for; `start`/`end` are None when the request left them unset."""

    codes: tuple[str, ...]
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True)
class SiteCost:
    """One site's bill; money rounded to cents, kWh to 6 places, exactly as §9 prescribes."""

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


def check_range(query: CostQuery, max_span_days: int) -> tuple[datetime, datetime]:
    """The validated `[start, end)`; every problem with the request reported at once."""
    problems = Violations()
    for index, code in enumerate(query.codes):
        check_code(code, f"codes[{index}]", problems)
    for name, value in (("start", query.start), ("end", query.end)):
        if value is None:
            problems.add(name, "must be set")
        elif value < EARLIEST_TIME:
            problems.add(name, "must not be before 2000-01-01T00:00:00Z")
    start, end = query.start, query.end
    if start is not None and end is not None and not problems:
        if end <= start:
            problems.add("end", "must be after start")
        elif end - start > timedelta(days=max_span_days):
            problems.add("end", f"range must not span more than {max_span_days} days")
    problems.raise_if_any()
    assert start is not None
    assert end is not None
    return start, end


def compute_costs(session: Session, query: CostQuery, max_span_days: int) -> CostReport:
    """Price `[start, end)` for the customers named by `query.codes` (all when empty).

    Runs in one REPEATABLE READ snapshot so the sites, tariffs and periods read here are the
    ones the aggregation prices with, even while a portal pushes.
    """
    start, end = check_range(query, max_span_days)
    session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    customers = _customers(session, query.codes)
    ids = [customer_id for customer_id, _ in customers]
    sites = session.scalars(select(Site).where(Site.customer_id.in_(ids)).order_by(Site.id)).all()
    _check_timezones(sites, dict(customers))
    slots = _aggregate(session, ids, start, end)
    tariffs = {
        (t.customer_id, t.id): t for t in session.scalars(select(Tariff).where(Tariff.customer_id.in_(ids)))
    }
    periods: dict[tuple[int, int], dict[int, TariffPeriod]] = defaultdict(dict)
    for period in session.scalars(select(TariffPeriod).where(TariffPeriod.customer_id.in_(ids))):
        periods[(period.customer_id, period.tariff_id)][period.id] = period

    slots_by_site: dict[tuple[int, int | None], list[_Slot]] = defaultdict(list)
    for slot in slots:
        slots_by_site[(slot.customer_id, slot.site_id)].append(slot)
    sites_by_customer: dict[int, list[Site]] = defaultdict(list)
    for site in sites:
        sites_by_customer[site.customer_id].append(site)

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
            tariff_periods = periods[(customer_id, tariff.id)] if tariff is not None else {}
            site_slots = slots_by_site.get((customer_id, site.id), [])
            lines.append(_bill_site(site, tariff, tariff_periods, site_slots, start, end))
        bills.append(CustomerCost(code=code, sites=tuple(lines), totals=_currency_totals(lines)))
    readings = sum(slot.readings for slot in slots)
    _LOGGER.debug("priced %d readings of %d customers", readings, len(bills))
    return CostReport(customers=tuple(bills), start=start, end=end, readings=readings)


def _customers(session: Session, codes: Sequence[str]) -> list[tuple[int, str]]:
    """(id, code) of the named customers, by code; all customers when none are named."""
    statement = select(Customer.id, Customer.code).order_by(Customer.code)
    wanted = sorted(set(codes))
    if wanted:
        statement = statement.where(Customer.code.in_(wanted))
    found = [(row.id, row.code) for row in session.execute(statement)]
    missing = sorted(set(wanted) - {code for _, code in found})
    if missing:
        raise NotFound(
            f"unknown customer code{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
            reason=Reason.CUSTOMER_NOT_FOUND,
            metadata={"codes": ",".join(missing)},
        )
    return found


@dataclass(frozen=True)
class _Slot:
    """Readings of one site grouped by what they are billed under."""

    customer_id: int
    site_id: int | None
    priced: bool
    period_id: int | None  # None = default rate (when priced)
    kwh: Decimal
    readings: int


# The whole pricing match in one pass over the range's partitions. Readings are first grouped by
# site and local minute of the week — at most 7 * 1440 groups per site whatever the number of
# readings — and only then is the period looked up, lowest id first, once per group. Each reading
# is converted to 6-place kWh before summing (float8 -> shortest text -> numeric, as `tou.kwh`
# does). `OFFSET 0` keeps `readings` a separate subquery so each reading's local time is computed
# once, not once per expression that uses it (that alone halves the query's time).
_AGGREGATE = text(
    """
    WITH readings AS (
        SELECT m.customer_id,
               d.site_id,
               s.tariff_id,
               coalesce(t.is_active
                        AND m.time >= t.effective_from
                        AND (t.effective_to IS NULL OR m.time < t.effective_to), false) AS priced,
               m.time AT TIME ZONE coalesce(nullif(s.timezone, ''), 'UTC') AS local_time,
               round(m.value::text::numeric, 6) AS kwh
        FROM fleet.measurements AS m
        LEFT JOIN fleet.devices AS d ON d.customer_id = m.customer_id AND d.id = m.device_id
        LEFT JOIN fleet.sites AS s ON s.customer_id = d.customer_id AND s.id = d.site_id
        LEFT JOIN fleet.tariffs AS t ON t.customer_id = s.customer_id AND t.id = s.tariff_id
        WHERE m.customer_id = ANY(:customer_ids)
          AND m.metric = :metric
          AND m.time >= :start AND m.time < :end
        OFFSET 0
    ),
    slots AS (
        SELECT customer_id, site_id, tariff_id, priced,
               CASE WHEN priced
                    THEN (date_part('isodow', local_time)::int - 1) * 1440
                         + date_part('hour', local_time)::int * 60
                         + date_part('minute', local_time)::int
               END AS minute_of_week,
               sum(kwh) AS kwh,
               count(*) AS readings
        FROM readings
        GROUP BY customer_id, site_id, tariff_id, priced, minute_of_week
    )
    SELECT sl.customer_id, sl.site_id, sl.priced, p.id AS period_id,
           sum(sl.kwh) AS kwh, sum(sl.readings)::bigint AS readings
    FROM slots AS sl
    LEFT JOIN LATERAL (
        SELECT tp.id
        FROM fleet.tariff_periods AS tp
        CROSS JOIN LATERAL (
            SELECT sl.minute_of_week / 1440 AS weekday,
                   sl.minute_of_week % 1440 AS minute,
                   CASE WHEN tp.end_minute = 1439 THEN 1440 ELSE tp.end_minute END AS end_minute
        ) AS slot
        WHERE sl.priced
          AND tp.customer_id = sl.customer_id
          AND tp.tariff_id = sl.tariff_id
          AND (tp.days_of_week & (1 << slot.weekday)) <> 0
          AND CASE WHEN slot.end_minute > tp.start_minute
                   THEN slot.minute >= tp.start_minute AND slot.minute < slot.end_minute
                   ELSE slot.minute >= tp.start_minute OR slot.minute < slot.end_minute
              END
        ORDER BY tp.id
        LIMIT 1
    ) AS p ON true
    GROUP BY sl.customer_id, sl.site_id, sl.priced, p.id
    """
).bindparams(bindparam("customer_ids", type_=ARRAY(BigInteger)), bindparam("metric", type_=Text))


def _aggregate(session: Session, customer_ids: list[int], start: datetime, end: datetime) -> list[_Slot]:
    if not customer_ids:
        return []
    # float8 -> text must be the shortest round-trip form whatever the server's default. JIT is
    # off because the planner cannot foresee how far the grouping shrinks the rows and compiles
    # for the raw row count: ~0.9 s of compiling for a ~0.3 s query. The hash aggregate over the
    # raw readings gets memory enough not to spill.
    session.execute(text("SET LOCAL extra_float_digits = 1"))
    session.execute(text("SET LOCAL jit = off"))
    session.execute(text("SET LOCAL work_mem = '64MB'"))
    params = {"customer_ids": customer_ids, "metric": ENERGY_METRIC, "start": start, "end": end}
    try:
        with session.begin_nested():
            rows = session.execute(_AGGREGATE, params).all()
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == _INVALID_PARAMETER_VALUE:
            unknown = database_unknown_timezones(session, customer_ids)
            if unknown:
                raise _unknown_timezones(unknown, "the database's timezone data") from exc
        raise
    return [
        _Slot(
            customer_id=row.customer_id,
            site_id=row.site_id,
            priced=row.priced,
            period_id=row.period_id,
            kwh=row.kwh,
            readings=row.readings,
        )
        for row in rows
    ]


def _unknown_timezones(sites: Sequence[tuple[str, int, str]], where: str) -> FailedPrecondition:
    named = ", ".join(f"{code} site {site_id} ({zone})" for code, site_id, zone in sites)
    return FailedPrecondition(
        f"timezone not found in {where}: {named}; the site cannot be priced in local time",
        reason=Reason.UNKNOWN_TIMEZONE,
    )


def _check_timezones(sites: Iterable[Site], codes: dict[int, str]) -> None:
    """Refuse, naming them, sites whose timezone Python's tz data does not know.

    Pushes are validated, so this only happens when the server's tz data is older than the
    pusher's; a clear FAILED_PRECONDITION beats an INTERNAL from deep inside the arithmetic.
    """
    unknown = []
    for site in sites:
        try:
            ZoneInfo(site.timezone or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            unknown.append((codes[site.customer_id], site.id, site.timezone))
    if unknown:
        raise _unknown_timezones(unknown, "the server's timezone data")


def database_unknown_timezones(session: Session, customer_ids: list[int]) -> list[tuple[str, int, str]]:
    """(code, site id, timezone) of the sites whose timezone PostgreSQL cannot convert to.

    Each distinct zone is tried for real (`AT TIME ZONE`) in its own savepoint: the catalogue view
    `pg_timezone_names` omits some zones that conversions accept (`right/UTC`).
    """
    rows = session.execute(
        text(
            """
            SELECT c.code, s.id, s.timezone
            FROM fleet.sites AS s JOIN fleet.customers AS c ON c.id = s.customer_id
            WHERE s.customer_id = ANY(:customer_ids) AND s.timezone <> ''
            ORDER BY c.code, s.id
            """
        ).bindparams(bindparam("customer_ids", type_=ARRAY(BigInteger))),
        {"customer_ids": customer_ids},
    ).all()
    rejected: set[str] = set()
    for zone in sorted({row.timezone for row in rows}):
        try:
            with session.begin_nested():
                session.execute(text("SELECT now() AT TIME ZONE :zone"), {"zone": zone})
        except DBAPIError:
            rejected.add(zone)
    return [(row.code, row.id, row.timezone) for row in rows if row.timezone in rejected]


def _kwh_sum(slots: Iterable[_Slot]) -> Decimal:
    return tou.round_kwh(sum((slot.kwh for slot in slots), _ZERO_KWH))


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
    site: Site,
    tariff: Tariff | None,
    periods: dict[int, TariffPeriod],
    slots: list[_Slot],
    start: datetime,
    end: datetime,
) -> SiteCost:
    """One site's bill: a line per period its priced readings fell in, fixed charge and VAT."""
    unpriced = _kwh_sum(slot for slot in slots if not slot.priced)
    if tariff is None:
        return _unbilled(site.id, site.name, site.tariff_id, unpriced)
    by_period: dict[int, list[_Slot]] = defaultdict(list)
    for slot in slots:
        if slot.priced:
            by_period[slot.period_id or tou.DEFAULT_PERIOD_ID].append(slot)
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
    )


def _currency_totals(sites: Iterable[SiteCost]) -> tuple[tuple[str, Decimal], ...]:
    """Sum of site totals per currency; sites without a tariff (no currency) add nothing."""
    totals: dict[str, Decimal] = {}
    for site in sites:
        if site.currency:
            totals[site.currency] = totals.get(site.currency, _ZERO_MONEY) + site.total
    return tuple(sorted(totals.items()))
