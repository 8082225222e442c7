"""Seeding helpers for the cost tests: reference data and energy readings written straight to the DB.

The ingest RPCs are not what these tests are about, so rows are inserted with SQLAlchemy. Monthly
measurement partitions are created here when none covers a month yet (and dropped again by the
`cost_partitions` fixture), so the tests do not depend on the ingest path's partition helper.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from fleet_server.db.models import Device, Measurement, Municipality, Site, Tariff, TariffPeriod

ENERGY = "energy_kwh"
RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class PeriodSpec:
    id: int
    name: str
    days: int
    start: str  # "HH:MM"
    end: str
    rate: str


@dataclass(frozen=True)
class TariffSpec:
    id: int
    periods: Sequence[PeriodSpec] = ()
    default_rate: str = "2.00"
    fixed_charge: str = "0"
    vat_percent: str = "0"
    currency: str = "ZAR"
    is_active: bool = True
    effective_from: datetime = datetime(2020, 1, 1, tzinfo=UTC)
    effective_to: datetime | None = None
    name: str = "Tariff"


def minutes(hhmm: str) -> int:
    hours, mins = hhmm.split(":")
    return int(hours) * 60 + int(mins)


# The reference scenario's Peak/Off-Peak tariff: weekday evening peak, weekend off-peak all day
# (written "00:00-23:59" as portals do), every other weekday hour at the default rate.
PEAK_OFF_PEAK = TariffSpec(
    id=7,
    name="Peak/Off-Peak",
    periods=(
        PeriodSpec(1, "Peak", 0b0011111, "17:00", "20:00", "4.50"),
        PeriodSpec(2, "Off-Peak", 0b1100000, "00:00", "23:59", "1.25"),
    ),
    default_rate="2.00",
    fixed_charge="310.00",
    vat_percent="15",
    currency="ZAR",
)


def add_tariff(session: Session, customer_id: int, spec: TariffSpec, municipality_id: int = 1) -> None:
    if session.get(Municipality, (customer_id, municipality_id)) is None:
        session.add(Municipality(customer_id=customer_id, id=municipality_id, name="Metro", region="R"))
        session.flush()
    session.add(
        Tariff(
            customer_id=customer_id,
            id=spec.id,
            municipality_id=municipality_id,
            name=spec.name,
            is_active=spec.is_active,
            effective_from=spec.effective_from,
            effective_to=spec.effective_to,
            default_rate=Decimal(spec.default_rate),
            fixed_charge=Decimal(spec.fixed_charge),
            vat_percent=Decimal(spec.vat_percent),
            currency=spec.currency,
        )
    )
    session.flush()
    for period in spec.periods:
        session.add(
            TariffPeriod(
                customer_id=customer_id,
                tariff_id=spec.id,
                id=period.id,
                name=period.name,
                days_of_week=period.days,
                start_minute=minutes(period.start),
                end_minute=minutes(period.end) or 1440,  # an end of 00:00 is stored as 24:00
                rate=Decimal(period.rate),
            )
        )
    session.flush()


def add_site(
    session: Session,
    customer_id: int,
    site_id: int,
    *,
    timezone: str = "UTC",
    tariff_id: int | None = None,
    devices: Iterable[int] = (),
    name: str | None = None,
) -> None:
    session.add(
        Site(
            customer_id=customer_id,
            id=site_id,
            name=name or f"Site {site_id}",
            address="",
            timezone=timezone,
            tariff_id=tariff_id,
        )
    )
    session.flush()
    for device_id in devices:
        session.add(
            Device(customer_id=customer_id, id=device_id, site_id=site_id, name="", serial_number="", kind="")
        )
    session.flush()


def add_readings(
    session: Session,
    customer_id: int,
    device_id: int,
    readings: Iterable[tuple[datetime, float]],
    metric: str = ENERGY,
) -> None:
    rows = [
        {
            "customer_id": customer_id,
            "device_id": device_id,
            "metric": metric,
            "time": when,
            "value": value,
            "received_at": RECEIVED,
        }
        for when, value in readings
    ]
    if rows:
        session.execute(insert(Measurement), rows)


def _months(start: datetime, end: datetime) -> Iterator[datetime]:
    year, month = start.year, start.month
    while datetime(year, month, 1, tzinfo=UTC) < end:
        yield datetime(year, month, 1, tzinfo=UTC)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


class Partitions:
    """Creates monthly measurement partitions no existing partition covers; drops only its own."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.created: list[str] = []
        self._seen: set[datetime] = set()

    def cover(self, start: datetime, end: datetime) -> None:
        for month in _months(start, end):
            if month in self._seen:
                continue
            self._seen.add(month)
            following = datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)
            name = f"fleet_partitions.cost_test_{month:%Y_%m}"
            with self._engine.connect() as conn:
                try:
                    with conn.begin():
                        conn.execute(
                            text(
                                f"CREATE TABLE {name} PARTITION OF fleet.measurements "
                                f"FOR VALUES FROM ('{month.isoformat()}') TO ('{following.isoformat()}')"
                            )
                        )
                    self.created.append(name)
                except DBAPIError:
                    pass  # a partition (ours or the ingest path's) already covers this month

    def drop(self) -> None:
        with self._engine.begin() as conn:
            for name in self.created:
                conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
        self.created.clear()
        self._seen.clear()


def table_counts(engine: Engine) -> dict[str, int]:
    """Rows per fleet table: what a read-only RPC must leave exactly as it found it."""
    counts: dict[str, int] = {}
    with engine.connect() as conn:
        for model in (Site, Device, Municipality, Tariff, TariffPeriod, Measurement):
            counts[model.__tablename__] = conn.scalar(select(func.count()).select_from(model)) or 0
    return counts
