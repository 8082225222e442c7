"""The reference tables (sites, devices, municipalities, tariffs, tariff periods): snapshot writes and reads.

A snapshot write is set-based: the snapshot travels as one array per column (`unnest`), one
`INSERT … ON CONFLICT DO UPDATE … WHERE <row differs>` writes new and changed rows (`xmax = 0`
tells inserts from updates), one anti-join `DELETE` removes the customer's other rows, so the
cost grows with the rows, not with round trips. Rows are written in id order, so concurrent
writers take row locks in one order. Reads return plain records, each list ordered by id.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select, text, tuple_
from sqlalchemy.orm import Session

from fleet_server.db.models import Device, Municipality, Site, Tariff, TariffPeriod
from fleet_server.resources import Resource


@dataclass(frozen=True)
class SiteRecord:
    id: int
    name: str
    address: str
    timezone: str
    municipality_id: int | None
    tariff_id: int | None


@dataclass(frozen=True)
class DeviceRecord:
    id: int
    site_id: int
    name: str
    serial_number: str
    kind: str


@dataclass(frozen=True)
class MunicipalityRecord:
    id: int
    name: str
    region: str


@dataclass(frozen=True)
class PeriodRecord:
    """A TOU period: minutes of the local day (`24:00` = 1440, `23:59` kept as pushed) and a rate."""

    id: int
    name: str
    days_of_week: int
    start_minute: int
    end_minute: int
    rate: Decimal


@dataclass(frozen=True)
class TariffRecord:
    """A tariff with its periods, ordered by id."""

    id: int
    municipality_id: int
    name: str
    is_active: bool
    effective_from: datetime
    effective_to: datetime | None
    default_rate: Decimal
    fixed_charge: Decimal
    vat_percent: Decimal
    currency: str
    periods: tuple[PeriodRecord, ...]


@dataclass(frozen=True)
class Changes:
    """What a snapshot upsert did: rows inserted, rows updated, rows deleted — counts, not ids, so
    a large snapshot does not hold a second copy of its keys — and which of the ids the caller
    asked to watch were written (inserted or updated)."""

    inserted: int
    updated: int
    deleted: int
    written: frozenset[int] = frozenset()


@dataclass(frozen=True)
class _Table:
    """How one resource's snapshot maps onto its table: key `id`, then these (column, SQL type)."""

    name: str
    columns: tuple[tuple[str, str], ...]

    def upsert_sql(self) -> str:
        names = [c for c, _ in self.columns]
        arrays = ", ".join(f"CAST(:{c} AS {t}[])" for c, t in (("id", "bigint"), *self.columns))
        changed = ", ".join(f"t.{c}" for c in names)
        incoming = ", ".join(f"EXCLUDED.{c}" for c in names)
        assignments = ", ".join(f"{c} = EXCLUDED.{c}" for c in names)
        # ROW(...) keeps the comparison a row comparison even for a single column.
        return (
            f"INSERT INTO fleet.{self.name} AS t (customer_id, id, {', '.join(names)}) "
            f"SELECT :customer_id, s.* FROM unnest({arrays}) AS s(id, {', '.join(names)}) "
            "ORDER BY s.id "
            f"ON CONFLICT (customer_id, id) DO UPDATE SET {assignments} "
            f"WHERE ROW({changed}) IS DISTINCT FROM ROW({incoming}) "
            "RETURNING t.id, (t.xmax = 0) AS inserted"
        )

    def delete_missing_sql(self) -> str:
        return (
            f"DELETE FROM fleet.{self.name} AS t WHERE t.customer_id = :customer_id "
            "AND NOT EXISTS (SELECT 1 FROM unnest(CAST(:id AS bigint[])) AS s(id) WHERE s.id = t.id)"
        )


_TABLES = {
    Resource.SITES: _Table(
        "sites",
        (
            ("name", "text"),
            ("address", "text"),
            ("timezone", "text"),
            ("municipality_id", "bigint"),
            ("tariff_id", "bigint"),
        ),
    ),
    Resource.DEVICES: _Table(
        "devices", (("site_id", "bigint"), ("name", "text"), ("serial_number", "text"), ("kind", "text"))
    ),
    Resource.MUNICIPALITIES: _Table("municipalities", (("name", "text"), ("region", "text"))),
    Resource.TARIFFS: _Table(
        "tariffs",
        (
            ("municipality_id", "bigint"),
            ("name", "text"),
            ("is_active", "boolean"),
            ("effective_from", "timestamptz"),
            ("effective_to", "timestamptz"),
            ("default_rate", "numeric"),
            ("fixed_charge", "numeric"),
            ("vat_percent", "numeric"),
            ("currency", "text"),
        ),
    ),
}
# Rows per upsert statement: a 10,000-row snapshot is still one statement; the largest text
# rows (three 256-character fields) make a few MB of parameters.
ROWS_PER_STATEMENT = 10_000
_SQL = {
    resource: (text(table.upsert_sql()), text(table.delete_missing_sql()))
    for resource, table in _TABLES.items()
}

_PERIOD_COLUMNS = ("tariff_id", "id", "name", "days_of_week", "start_minute", "end_minute", "rate")
_PERIODS_SELECT = (
    "SELECT * FROM unnest(CAST(:tariff_id AS bigint[]), CAST(:id AS bigint[]), CAST(:name AS text[]), "
    "CAST(:days_of_week AS smallint[]), CAST(:start_minute AS smallint[]), "
    "CAST(:end_minute AS smallint[]), CAST(:rate AS numeric[])) "
    "AS p(tariff_id, id, name, days_of_week, start_minute, end_minute, rate)"
)
# Tariffs (of the snapshot) whose stored period set differs from the pushed one, in either direction.
_CHANGED_PERIOD_SETS = text(
    f"WITH pushed AS ({_PERIODS_SELECT}), "
    "stored AS (SELECT tariff_id, id, name, days_of_week, start_minute, end_minute, rate "
    "FROM fleet.tariff_periods WHERE customer_id = :customer_id "
    "AND tariff_id = ANY(CAST(:tariff_ids AS bigint[]))) "
    "SELECT DISTINCT tariff_id FROM ((TABLE pushed EXCEPT TABLE stored) "
    "UNION ALL (TABLE stored EXCEPT TABLE pushed)) AS d"
)
_DELETE_PERIODS = text(
    "DELETE FROM fleet.tariff_periods WHERE customer_id = :customer_id "
    "AND tariff_id = ANY(CAST(:tariff_ids AS bigint[]))"
)
_INSERT_PERIODS = text(
    f"INSERT INTO fleet.tariff_periods (customer_id, {', '.join(_PERIOD_COLUMNS)}) "
    f"SELECT :customer_id, p.* FROM ({_PERIODS_SELECT}) AS p ORDER BY p.tariff_id, p.id"
)
_MISSING_PARENTS = {
    parent: text(
        "SELECT s.id FROM unnest(CAST(:ids AS bigint[])) AS s(id) WHERE NOT EXISTS "
        f"(SELECT 1 FROM fleet.{_TABLES[parent].name} AS p "
        "WHERE p.customer_id = :customer_id AND p.id = s.id) "
        "ORDER BY s.id"
    )
    for parent in (Resource.SITES, Resource.MUNICIPALITIES)
}


def _columns(resource: Resource, rows: Sequence[Any]) -> dict[str, list[Any]]:
    """The rows as one list per column, in the order given."""
    names = ("id", *(c for c, _ in _TABLES[resource].columns))
    return {name: [getattr(r, name) for r in rows] for name in names}


def upsert_snapshot(
    session: Session,
    resource: Resource,
    customer_id: int,
    rows: Sequence[Any],
    watched: AbstractSet[int] = frozenset(),
) -> Changes:
    """Upsert `rows` (anything with the table's columns as attributes), delete the customer's others.

    Rows go in id order (a fixed lock order), in statements of at most `ROWS_PER_STATEMENT`:
    the driver renders a statement's arrays whole in memory, about twice the size of the values
    again, so one statement for a snapshot of a million rows would double what the snapshot
    costs the process while it is written.
    """
    upsert, delete_missing = _SQL[resource]
    ordered = sorted(rows, key=lambda r: r.id)
    inserted = updated = 0
    written: set[int] = set()
    for start in range(0, len(ordered), ROWS_PER_STATEMENT):
        chunk = ordered[start : start + ROWS_PER_STATEMENT]
        params: dict[str, Any] = {"customer_id": customer_id, **_columns(resource, chunk)}
        for row_id, is_new in session.execute(upsert, params):
            if is_new:
                inserted += 1
            else:
                updated += 1
            if row_id in watched:
                written.add(int(row_id))
    ids = [r.id for r in ordered]
    deleted = session.execute(delete_missing, {"customer_id": customer_id, "id": ids})
    return Changes(inserted, updated, int(deleted.rowcount), frozenset(written))  # type: ignore[attr-defined]


def missing_parents(session: Session, customer_id: int, parent: Resource, ids: Sequence[int]) -> set[int]:
    """Those of `ids` that name no `parent` row (a site, a municipality) of the customer."""
    if not ids:
        return set()
    wanted = sorted(set(ids))
    result = session.execute(_MISSING_PARENTS[parent], {"customer_id": customer_id, "ids": wanted})
    return {int(row_id) for (row_id,) in result}


def _period_columns(tariffs: Sequence[TariffRecord]) -> dict[str, list[Any]]:
    periods: list[tuple[int, PeriodRecord]] = sorted(
        ((t.id, p) for t in tariffs for p in t.periods), key=lambda tp: (tp[0], tp[1].id)
    )
    columns: dict[str, list[Any]] = {"tariff_id": [tariff_id for tariff_id, _ in periods]}
    for name in _PERIOD_COLUMNS[1:]:
        columns[name] = [getattr(p, name) for _, p in periods]
    return columns


def changed_period_sets(session: Session, customer_id: int, tariffs: Sequence[TariffRecord]) -> set[int]:
    """Ids of the tariffs whose stored period set differs from the one in `tariffs`."""
    params = {
        "customer_id": customer_id,
        "tariff_ids": sorted(t.id for t in tariffs),
        **_period_columns(tariffs),
    }
    return {int(tariff_id) for (tariff_id,) in session.execute(_CHANGED_PERIOD_SETS, params)}


def replace_periods(session: Session, customer_id: int, tariffs: Sequence[TariffRecord]) -> int:
    """Delete every period of `tariffs`, insert their pushed sets; the periods written."""
    if not tariffs:
        return 0
    session.execute(
        _DELETE_PERIODS, {"customer_id": customer_id, "tariff_ids": sorted(t.id for t in tariffs)}
    )
    rewrite = _period_columns(tariffs)
    written = len(rewrite["id"])
    if written:
        session.execute(_INSERT_PERIODS, {"customer_id": customer_id, **rewrite})
    return written


# --- reads -------------------------------------------------------------------------------------
# A customer's rows are read in keyset pages (`id > :after ORDER BY id LIMIT n`), each a range
# scan of the primary key (customer_id, id): a page deep in 120,000 devices costs what the first does.

_MODELS: dict[Resource, Any] = {
    Resource.SITES: Site,
    Resource.DEVICES: Device,
    Resource.MUNICIPALITIES: Municipality,
    Resource.TARIFFS: Tariff,
}


def count(session: Session, resource: Resource, customer_id: int) -> int:
    """How many rows of `resource` the customer has."""
    model = _MODELS[resource]
    total = session.scalar(select(func.count()).select_from(model).where(model.customer_id == customer_id))
    return int(total or 0)


def _after(resource: Resource, customer_id: int, after: int | None, limit: int) -> Select[Any]:
    """The customer's rows of `resource` after id `after` (None: from the first), by id, at most `limit`."""
    model = _MODELS[resource]
    query = select(model).where(model.customer_id == customer_id).order_by(model.id).limit(limit)
    return query if after is None else query.where(model.id > after)


def _site(s: Site) -> SiteRecord:
    return SiteRecord(s.id, s.name, s.address, s.timezone, s.municipality_id, s.tariff_id)


def sites_after(session: Session, customer_id: int, after: int | None, limit: int) -> list[SiteRecord]:
    return [_site(s) for s in session.scalars(_after(Resource.SITES, customer_id, after, limit))]


def devices_after(session: Session, customer_id: int, after: int | None, limit: int) -> list[DeviceRecord]:
    rows = session.scalars(_after(Resource.DEVICES, customer_id, after, limit))
    return [DeviceRecord(d.id, d.site_id, d.name, d.serial_number, d.kind) for d in rows]


def municipalities_after(
    session: Session, customer_id: int, after: int | None, limit: int
) -> list[MunicipalityRecord]:
    rows = session.scalars(_after(Resource.MUNICIPALITIES, customer_id, after, limit))
    return [MunicipalityRecord(m.id, m.name, m.region) for m in rows]


def municipality_names(session: Session, customer_id: int, ids: Sequence[int]) -> dict[int, str]:
    """Names of those of `ids` that name a municipality of the customer."""
    if not ids:
        return {}
    rows = session.execute(
        select(Municipality.id, Municipality.name).where(
            Municipality.customer_id == customer_id, Municipality.id.in_(sorted(set(ids)))
        )
    )
    return {row.id: row.name for row in rows}


def tariff_sizes_after(
    session: Session, customer_id: int, after: int | None, limit: int
) -> list[tuple[int, int]]:
    """(tariff id, periods it has) of the customer's tariffs after id `after`, by id, at most `limit`.

    Read before the tariffs themselves, so a page of tariffs can stop before its periods grow too
    many to read at once.
    """
    periods = (
        select(func.count())
        .where(TariffPeriod.customer_id == Tariff.customer_id, TariffPeriod.tariff_id == Tariff.id)
        .scalar_subquery()
    )
    query = (
        select(Tariff.id, periods).where(Tariff.customer_id == customer_id).order_by(Tariff.id).limit(limit)
    )
    if after is not None:
        query = query.where(Tariff.id > after)
    return [(int(tariff_id), int(size)) for tariff_id, size in session.execute(query)]


def _tariffs(
    session: Session, tariff_filter: ColumnElement[bool], period_filter: ColumnElement[bool]
) -> list[tuple[int, TariffRecord]]:
    """(customer id, tariff with its periods) of the tariffs `tariff_filter` selects, by id."""
    periods: dict[tuple[int, int], list[PeriodRecord]] = {}
    for p in session.scalars(
        select(TariffPeriod).where(period_filter).order_by(TariffPeriod.tariff_id, TariffPeriod.id)
    ):
        periods.setdefault((p.customer_id, p.tariff_id), []).append(
            PeriodRecord(p.id, p.name, p.days_of_week, p.start_minute, p.end_minute, p.rate)
        )
    tariffs = session.scalars(select(Tariff).where(tariff_filter).order_by(Tariff.id))
    return [
        (
            t.customer_id,
            TariffRecord(
                id=t.id,
                municipality_id=t.municipality_id,
                name=t.name,
                is_active=t.is_active,
                effective_from=t.effective_from,
                effective_to=t.effective_to,
                default_rate=t.default_rate,
                fixed_charge=t.fixed_charge,
                vat_percent=t.vat_percent,
                currency=t.currency,
                periods=tuple(periods.get((t.customer_id, t.id), ())),
            ),
        )
        for t in tariffs
    ]


def tariffs_with_ids(session: Session, customer_id: int, ids: Sequence[int]) -> list[TariffRecord]:
    """The customer's tariffs among `ids`, with their periods, by id."""
    if not ids:
        return []
    wanted = sorted(set(ids))
    rows = _tariffs(
        session,
        (Tariff.customer_id == customer_id) & Tariff.id.in_(wanted),
        (TariffPeriod.customer_id == customer_id) & TariffPeriod.tariff_id.in_(wanted),
    )
    return [tariff for _, tariff in rows]


def sites_of(session: Session, customer_ids: Sequence[int]) -> list[tuple[int, SiteRecord]]:
    """(customer id, site) of every site of the customers, by id (for costs, which price every site)."""
    rows = session.scalars(select(Site).where(Site.customer_id.in_(customer_ids)).order_by(Site.id))
    return [(s.customer_id, _site(s)) for s in rows]


def tariffs_of(session: Session, customer_ids: Sequence[int]) -> list[tuple[int, TariffRecord]]:
    """(customer id, tariff with its periods) of every tariff of the customers, by id."""
    return _tariffs(session, Tariff.customer_id.in_(customer_ids), TariffPeriod.customer_id.in_(customer_ids))


def device_ids(session: Session, customer_ids: Sequence[int]) -> dict[int, list[int]]:
    """Ids of each customer's devices, ascending (an index-only scan of the key)."""
    found: dict[int, list[int]] = {customer_id: [] for customer_id in customer_ids}
    if not customer_ids:
        return found
    rows = session.execute(
        select(Device.customer_id, Device.id)
        .where(Device.customer_id.in_(list(customer_ids)))
        .order_by(Device.customer_id, Device.id)
    )
    for customer_id, device_id in rows:
        found[customer_id].append(int(device_id))
    return found


def devices_with_keys(
    session: Session, keys: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], DeviceRecord]:
    """The devices named by (customer id, device id) that exist."""
    if not keys:
        return {}
    rows = session.execute(
        select(Device).where(tuple_(Device.customer_id, Device.id).in_(sorted(set(keys))))
    ).scalars()
    return {
        (d.customer_id, d.id): DeviceRecord(d.id, d.site_id, d.name, d.serial_number, d.kind) for d in rows
    }
