"""Property: the SQL-grouped bill equals a slow, independent pure-Python reading-by-reading bill."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from fleet_server.domain.costs import CostQuery, compute_costs
from tests.support.costs import (
    PeriodSpec,
    TariffSpec,
    add_readings,
    add_site,
    add_tariff,
)

# Zones with DST both ways, half-hour offsets and Lord Howe's half-hour DST shift; the window
# covers spring-forward in the north and fall-back in the south.
ZONES = ["UTC", "Europe/Amsterdam", "Asia/Kolkata", "America/St_Johns", "Australia/Lord_Howe"]
WINDOW_START = datetime(2026, 3, 25, tzinfo=UTC)
WINDOW_DAYS = 14
WINDOW_END = WINDOW_START + timedelta(days=WINDOW_DAYS)
SIX = Decimal("0.000001")
CENT = Decimal("0.01")


# ---- the slow reference: one reading at a time, straight from the pricing rules -----------------


def covered_slots(period: PeriodSpec) -> set[tuple[int, int]]:
    """Every (weekday, minute) the period covers, spelled out."""
    start = int(period.start[:2]) * 60 + int(period.start[3:])
    end = int(period.end[:2]) * 60 + int(period.end[3:])
    end = 1440 if end == 1439 else end
    minutes = range(start, end) if end > start else [*range(start, 1440), *range(0, end)]
    return {(day, minute) for day in range(7) if period.days >> day & 1 for minute in minutes}


def reference_fixed(fixed: Decimal, start: datetime, end: datetime, zone: ZoneInfo) -> Fraction:
    total = Fraction(0)
    day = start.astimezone(zone)
    year, month = day.year, day.month
    while True:
        first = datetime(year, month, 1, tzinfo=zone).timestamp()
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        following = datetime(year, month, 1, tzinfo=zone).timestamp()
        if first >= end.timestamp():
            return total
        covered = min(end.timestamp(), following) - max(start.timestamp(), first)
        if covered > 0:
            total += Fraction(fixed) * Fraction(covered) / Fraction(following - first)


def half_up(value: Fraction | Decimal, places: Decimal) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 80
        exact = (
            Decimal(value.numerator) / Decimal(value.denominator) if isinstance(value, Fraction) else value
        )
        return exact.quantize(places, rounding=ROUND_HALF_UP)


@dataclass
class Case:
    tariff: TariffSpec
    zones: list[str]  # one site per zone; site 1 billed with the tariff, site 2 (if any) without
    readings: list[tuple[int, datetime, float]]  # (site id, time, value)
    start: datetime
    end: datetime


def reference_bill(case: Case) -> dict[int, dict[str, object]]:
    tariff = case.tariff
    ordered = sorted(tariff.periods, key=lambda p: p.id)
    slots = [(p, covered_slots(p)) for p in ordered]
    energy: dict[int, dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    unpriced: dict[int, Decimal] = defaultdict(Decimal)
    for site_id, when, value in case.readings:
        if not case.start <= when < case.end:
            continue
        kwh = Decimal(repr(value)).quantize(SIX, rounding=ROUND_HALF_UP)
        in_window = tariff.effective_from <= when and (
            tariff.effective_to is None or when < tariff.effective_to
        )
        if site_id != 1 or not tariff.is_active or not in_window:
            unpriced[site_id] += kwh
            continue
        local = when.astimezone(ZoneInfo(case.zones[0]))
        key = (local.weekday(), local.hour * 60 + local.minute)
        period_id = next((p.id for p, covered in slots if key in covered), 0)
        energy[site_id][period_id] += kwh
    bills: dict[int, dict[str, object]] = {}
    for index, zone in enumerate(case.zones):
        site_id = index + 1
        lines = {}
        for period_id, kwh in energy[site_id].items():
            rate = Decimal(next((p.rate for p in ordered if p.id == period_id), tariff.default_rate))
            lines[period_id] = (kwh, rate, half_up(kwh * rate, CENT))
        fixed = Decimal("0.00")
        if site_id == 1 and tariff.is_active:
            begin = max(case.start, tariff.effective_from)
            finish = case.end if tariff.effective_to is None else min(case.end, tariff.effective_to)
            if finish > begin:
                fixed = half_up(
                    reference_fixed(Decimal(tariff.fixed_charge), begin, finish, ZoneInfo(zone)), CENT
                )
        energy_cost = sum((cost for _, _, cost in lines.values()), Decimal(0))
        vat = half_up(Decimal(tariff.vat_percent) * (energy_cost + fixed) / 100, CENT) if site_id == 1 else 0
        bills[site_id] = {
            "lines": lines,
            "energy_kwh": sum((kwh for kwh, _, _ in lines.values()), Decimal(0)),
            "energy_cost": energy_cost,
            "fixed": fixed,
            "vat": Decimal(vat),
            "total": energy_cost + fixed + vat,
            "unpriced": unpriced[site_id],
        }
    return bills


# ---- random cases ------------------------------------------------------------------------------

# Period bounds and reading times mostly on the quarter hour, so readings land on period edges.
minutes_of_day = st.one_of(st.integers(0, 95).map(lambda q: q * 15), st.integers(0, 1439))
hhmm = minutes_of_day.map(lambda m: f"{m // 60:02d}:{m % 60:02d}")
ends = st.one_of(hhmm, st.sampled_from(["23:59", "24:00", "00:00"]))
rates = st.decimals(min_value=0, max_value=9, places=4, allow_nan=False, allow_infinity=False).map(str)


@st.composite
def periods(draw):
    ids = draw(st.lists(st.integers(1, 30), min_size=1, max_size=4, unique=True))
    found = []
    for period_id in ids:
        start, end = draw(hhmm), draw(ends)
        if end == start or (start == "00:00" and end in ("24:00", "00:00")):
            end = "23:59" if start != "23:59" else "12:00"
        days = draw(st.one_of(st.integers(1, 127), st.sampled_from([0b0011111, 0b1100000, 0b1111111])))
        found.append(PeriodSpec(period_id, f"P{period_id}", days, start, end, draw(rates)))
    return found


_SECONDS = WINDOW_DAYS * 24 * 3600
instants = st.one_of(
    st.integers(0, WINDOW_DAYS * 96 - 1).map(lambda q: WINDOW_START + timedelta(minutes=15 * q)),
    st.integers(0, _SECONDS - 1).map(lambda s: WINDOW_START + timedelta(seconds=s)),
)
values = st.one_of(
    st.floats(min_value=-5, max_value=50, allow_nan=False, allow_infinity=False),
    st.integers(0, 10**8).map(lambda n: n / 10**7),  # 7-place values: the 6-place rounding decides
    # 16 significant digits just below a tie: a 15-digit conversion would round them up.
    st.tuples(st.integers(10, 50), st.integers(0, 999999)).map(lambda t: float(f"{t[0]}.{t[1]:06d}49999999")),
)
ALWAYS = datetime(2020, 1, 1, tzinfo=UTC)


@st.composite
def cases(draw):
    effective_from = draw(st.sampled_from([ALWAYS, ALWAYS, ALWAYS]) | instants)
    effective_to = draw(st.sampled_from([None, None]) | instants)
    if effective_to is not None and effective_to <= effective_from:
        effective_to = None
    tariff = TariffSpec(
        id=1,
        periods=draw(periods()),
        default_rate=draw(rates),
        fixed_charge=draw(st.sampled_from(["0", "100", "123.45", "999.99"])),
        vat_percent=draw(st.sampled_from(["0", "15", "12.5", "21"])),
        is_active=draw(st.sampled_from([True, True, True, False])),
        effective_from=effective_from,
        effective_to=effective_to,
    )
    zones = draw(st.lists(st.sampled_from(ZONES), min_size=1, max_size=2))
    readings = draw(
        st.lists(
            st.tuples(st.integers(1, len(zones)), instants, values),
            min_size=1,
            max_size=60,
            unique_by=lambda r: r[:2],
        )
    )
    whole = (WINDOW_START, WINDOW_END)
    chosen = sorted(draw(st.lists(instants, min_size=2, max_size=2, unique=True)))
    start, end = draw(st.sampled_from([whole, whole, tuple(chosen)]))
    return Case(tariff, zones, readings, start, end)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases())
def test_sql_bill_equals_the_reading_by_reading_reference(db, engine, new_customer, cost_partitions, case):
    cost_partitions.cover(WINDOW_START, WINDOW_END)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM fleet.measurements"))
        conn.execute(text("DELETE FROM fleet.customers"))  # cascades to the reference data
    customer = new_customer("PROP")

    def seed(session):
        add_tariff(session, customer.id, case.tariff)
        for index, zone in enumerate(case.zones):
            site_id = index + 1
            add_site(
                session,
                customer.id,
                site_id,
                timezone=zone,
                tariff_id=1 if site_id == 1 else None,
                devices=[site_id],
            )
            add_readings(session, customer.id, site_id, [(w, v) for s, w, v in case.readings if s == site_id])

    db.transaction(seed)
    report = db.transaction(compute_costs, CostQuery(codes=(), start=case.start, end=case.end), 400)
    expected = reference_bill(case)

    (bill,) = report.customers
    assert report.readings == sum(1 for _, when, _ in case.readings if case.start <= when < case.end)
    for site in bill.sites:
        want = expected[site.site_id]
        assert {line.period_id: (line.kwh, line.rate, line.cost) for line in site.periods} == want["lines"]
        assert site.energy_kwh == want["energy_kwh"]
        assert site.energy_cost == want["energy_cost"]
        assert site.fixed_charge == want["fixed"]
        assert site.vat == want["vat"]
        assert site.total == want["total"]
        assert site.unpriced_kwh == want["unpriced"]
    assert [s.site_id for s in bill.sites] == sorted(expected)
