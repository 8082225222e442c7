"""What a portal provides to the pusher (`Source`), and `SqlSource`, which reads the documented schema.

A portal with another schema implements `Source` itself (docs/client.md shows how); the pusher
needs nothing else from it. Every method reads a consistent, complete answer: reference sets are
whole snapshots, and `measurements_after` is a keyset page in `(received_at, device_id, metric,
time)` order that never returns a row received after `until`; `newest_measurement` is the last
key in that order, which the pusher uses to split a back-fill from the live lane
(`fleet_client.lanes`) and to measure the live lag.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Engine, and_, create_engine, func, or_, select

from fleet_client import portal_schema as t
from fleet_client.rows import (
    Cursor,
    DeviceRow,
    MeasurementRow,
    MunicipalityRow,
    PeriodRow,
    SiteRow,
    TariffRow,
)


class Source(Protocol):
    """The portal side of fleet sync."""

    def sites(self) -> Sequence[SiteRow]:
        """Every site (the complete set)."""
        ...

    def devices(self) -> Sequence[DeviceRow]:
        """Every device (the complete set)."""
        ...

    def municipalities(self) -> Sequence[MunicipalityRow]:
        """Every municipality (the complete set)."""
        ...

    def tariffs(self) -> Sequence[TariffRow]:
        """Every tariff, each with its complete period set."""
        ...

    def measurements_after(
        self, cursor: Cursor | None, limit: int, *, until: datetime
    ) -> Sequence[MeasurementRow]:
        """Up to `limit` readings with key > `cursor` (all when None) and `received_at <= until`,
        ordered by `(received_at, device_id, metric, time)`."""
        ...

    def count_measurements_after(self, cursor: Cursor | None, *, until: datetime) -> int | None:
        """How many readings `measurements_after` would still return, for progress; None if unknown."""
        ...

    def newest_measurement(self, *, until: datetime) -> Cursor | None:
        """The key of the last reading in key order with `received_at <= until`; None when there is none."""
        ...


def _after(cursor: Cursor | None, until: datetime) -> ColumnElement[bool]:
    """The keyset predicate, spelled out so every database can use the (received_at, …) index."""
    m = t.measurements.c
    window = m.received_at <= until
    if cursor is None:
        return window
    later = or_(
        m.received_at > cursor.received_at,
        and_(
            m.received_at == cursor.received_at,
            or_(
                m.device_id > cursor.device_id,
                and_(
                    m.device_id == cursor.device_id,
                    or_(
                        m.metric > cursor.metric,
                        and_(m.metric == cursor.metric, m.time > cursor.time),
                    ),
                ),
            ),
        ),
    )
    return and_(window, m.received_at >= cursor.received_at, later)


class SqlSource:
    """Reads the documented portal schema through SQLAlchemy (any URL, or an existing engine).

    `schema` names the database schema the portal tables live in, when not the default one.
    """

    def __init__(self, url_or_engine: str | Engine, *, schema: str | None = None) -> None:
        engine = create_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        self._owns_engine = isinstance(url_or_engine, str)
        self.engine = engine.execution_options(schema_translate_map={None: schema}) if schema else engine

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    def _all(self, stmt: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(stmt))

    def sites(self) -> list[SiteRow]:
        c = t.sites.c
        rows = self._all(
            select(c.id, c.name, c.address, c.timezone, c.municipality_id, c.tariff_id).order_by(c.id)
        )
        return [SiteRow(*r) for r in rows]

    def devices(self) -> list[DeviceRow]:
        c = t.devices.c
        rows = self._all(select(c.id, c.site_id, c.name, c.serial_number, c.kind).order_by(c.id))
        return [DeviceRow(*r) for r in rows]

    def municipalities(self) -> list[MunicipalityRow]:
        c = t.municipalities.c
        return [MunicipalityRow(*r) for r in self._all(select(c.id, c.name, c.region).order_by(c.id))]

    def tariffs(self) -> list[TariffRow]:
        c, p = t.tariffs.c, t.tariff_periods.c
        with self.engine.connect() as conn:  # one connection: periods match the tariffs read
            tariff_rows = list(
                conn.execute(
                    select(
                        c.id,
                        c.municipality_id,
                        c.name,
                        c.is_active,
                        c.effective_from,
                        c.effective_to,
                        c.default_rate,
                        c.fixed_charge,
                        c.vat_percent,
                        c.currency,
                    ).order_by(c.id)
                )
            )
            period_rows = list(
                conn.execute(
                    select(
                        p.tariff_id, p.id, p.name, p.days_of_week, p.start_time, p.end_time, p.rate
                    ).order_by(p.tariff_id, p.id)
                )
            )
        periods: dict[int, list[PeriodRow]] = defaultdict(list)
        for tariff_id, *period in period_rows:
            periods[tariff_id].append(PeriodRow(*period))
        return [_tariff(r, tuple(periods.get(r[0], ()))) for r in tariff_rows]

    def measurements_after(
        self, cursor: Cursor | None, limit: int, *, until: datetime
    ) -> list[MeasurementRow]:
        m = t.measurements.c
        stmt = (
            select(m.device_id, m.metric, m.time, m.value, m.received_at)
            .where(_after(cursor, until))
            .order_by(m.received_at, m.device_id, m.metric, m.time)
            .limit(limit)
        )
        make = MeasurementRow._make
        with self.engine.connect() as conn:
            return [make(r) for r in conn.execute(stmt)]

    def count_measurements_after(self, cursor: Cursor | None, *, until: datetime) -> int:
        stmt = select(func.count()).select_from(t.measurements).where(_after(cursor, until))
        with self.engine.connect() as conn:
            return int(conn.scalar(stmt) or 0)

    def newest_measurement(self, *, until: datetime) -> Cursor | None:
        m = t.measurements.c
        # Every key column descending: the (received_at, …) index read backwards, one row.
        stmt = (
            select(m.received_at, m.device_id, m.metric, m.time)
            .where(m.received_at <= until)
            .order_by(m.received_at.desc(), m.device_id.desc(), m.metric.desc(), m.time.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        return Cursor(*row) if row is not None else None


def _tariff(row: Any, periods: tuple[PeriodRow, ...]) -> TariffRow:
    return TariffRow(
        id=row[0],
        municipality_id=row[1],
        name=row[2],
        is_active=bool(row[3]),
        effective_from=row[4],
        effective_to=row[5],
        default_rate=row[6],
        fixed_charge=row[7],
        vat_percent=row[8],
        currency=row[9],
        periods=periods,
    )
