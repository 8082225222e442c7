"""Applying a reference-data snapshot (sites, devices, municipalities, tariffs) in one transaction.

A snapshot is the customer's complete set of one resource: rows are upserted by
`(customer_id, id)`, the customer's rows absent from the snapshot are deleted, and the summary
counts what changed. Everything is set-based: the snapshot travels as one array per column
(`unnest`), one `INSERT … ON CONFLICT DO UPDATE … WHERE <row differs>` writes new and changed
rows (`xmax = 0` tells inserts from updates), one anti-join `DELETE` removes the rest, so the
cost grows with the rows, not with round trips.

Snapshots of the same customer and resource are serialised with a transaction-level advisory
lock: two interleaved snapshots would otherwise each delete only what *they* saw, leaving a
union of both (or, for tariff periods, two period sets merged). A push of a child resource
(devices, tariffs) also holds its parent's lock in shared mode, so the parents it was checked
against cannot be deleted under it. Locks are keyed by customer, so two customers never wait
for each other.

Every apply takes `confirm`, called last inside the transaction: it raises (rolling the
snapshot back) when the caller can no longer vouch for the snapshot — the push call ended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from fleet_server.domain import sync_status
from fleet_server.domain.reference_validation import (
    DeviceItem,
    MunicipalityItem,
    PeriodRow,
    SiteItem,
    TariffItem,
    TariffRow,
    validate_devices,
    validate_municipalities,
    validate_sites,
    validate_tariffs,
)
from fleet_server.errors import FailedPrecondition, Reason, Unauthenticated

_LOGGER = logging.getLogger(__name__)

# Advisory-lock namespace per resource (the first key of the two-key form); the second key is
# the customer. Chosen far from small integers so single-key locks elsewhere cannot collide.
_LOCK_SPACE = {
    "sites": 0x464C5301,
    "devices": 0x464C5302,
    "municipalities": 0x464C5303,
    "tariffs": 0x464C5304,
}
# How many missing parents a FAILED_PRECONDITION message names before summarising.
_MAX_NAMED_MISSING = 5


@dataclass(frozen=True)
class SyncSummary:
    """What a snapshot did: `received = inserted + updated + unchanged`; `deleted` counts only
    rows of the pushed resource (children removed by a cascade are not counted)."""

    received: int
    inserted: int
    updated: int
    unchanged: int
    deleted: int
    periods_written: int = 0


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


_SITES = _Table(
    "sites",
    (
        ("name", "text"),
        ("address", "text"),
        ("timezone", "text"),
        ("municipality_id", "bigint"),
        ("tariff_id", "bigint"),
    ),
)
_DEVICES = _Table(
    "devices", (("site_id", "bigint"), ("name", "text"), ("serial_number", "text"), ("kind", "text"))
)
_MUNICIPALITIES = _Table("municipalities", (("name", "text"), ("region", "text")))
_TARIFFS = _Table(
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
)
_SQL = {
    table.name: (table.upsert_sql(), table.delete_missing_sql())
    for table in (_SITES, _DEVICES, _MUNICIPALITIES, _TARIFFS)
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
        f"(SELECT 1 FROM fleet.{parent} AS p WHERE p.customer_id = :customer_id AND p.id = s.id) "
        "ORDER BY s.id"
    )
    for parent in ("sites", "municipalities")
}


def _no_check() -> None:
    """The default `confirm`: nothing can withdraw the snapshot."""


def _hold_customer(session: Session, customer_id: int) -> None:
    """Lock the customer row (FOR KEY SHARE) before touching any of its rows.

    An erasure (`customers.delete_customer`) locks the same row FOR UPDATE before deleting, so
    the two queue on one lock in one order: without this a snapshot that had already updated
    some rows could deadlock with an erasure deleting them. A snapshot that waited for an
    erasure (or a deactivation) finds no active customer and writes nothing.
    """
    held = session.execute(
        text("SELECT 1 FROM fleet.customers WHERE id = :c AND is_active FOR KEY SHARE"), {"c": customer_id}
    ).first()
    if held is None:
        raise Unauthenticated("the customer was deactivated or deleted", reason=Reason.CUSTOMER_INACTIVE)


def _lock(session: Session, customer_id: int, resource: str, *, shared: bool = False) -> None:
    """Serialise with other snapshots of `resource` for this customer until the transaction ends."""
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    key = (customer_id + 2**31) % 2**32 - 2**31  # the int4 key; a wrap only makes locks coarser
    session.execute(text(f"SELECT {function}(:space, :key)"), {"space": _LOCK_SPACE[resource], "key": key})


def _columns(table: _Table, rows: Sequence[Any]) -> dict[str, list[Any]]:
    """The snapshot as one list per column, rows sorted by id (a fixed write order)."""
    ordered = sorted(rows, key=lambda r: r.id)
    return {name: [getattr(r, name) for r in ordered] for name in ("id", *(c for c, _ in table.columns))}


def _upsert(
    session: Session, table: _Table, customer_id: int, rows: Sequence[Any]
) -> tuple[set[int], set[int], int]:
    """Upsert `rows`, delete the customer's other rows: (inserted ids, updated ids, deleted count)."""
    upsert, delete_missing = _SQL[table.name]
    params: dict[str, Any] = {"customer_id": customer_id, **_columns(table, rows)}
    inserted: set[int] = set()
    updated: set[int] = set()
    if rows:
        for row_id, is_new in session.execute(text(upsert), params):
            (inserted if is_new else updated).add(int(row_id))
    deleted = session.execute(text(delete_missing), {"customer_id": customer_id, "id": params["id"]})
    return inserted, updated, int(deleted.rowcount)  # type: ignore[attr-defined]


def _require_parents(
    session: Session,
    customer_id: int,
    parent: str,
    children: Sequence[tuple[int, int]],
    describe: Callable[[int, int, int], str],
    reason: Reason,
) -> None:
    """FAILED_PRECONDITION when a child names a parent the customer does not have.

    `children` are (child id, parent id) in snapshot order; `describe(index, parent, child)`
    words one offender.
    """
    wanted = sorted({parent_id for _, parent_id in children})
    if not wanted:
        return
    result = session.execute(_MISSING_PARENTS[parent], {"customer_id": customer_id, "ids": wanted})
    missing = {int(row_id) for (row_id,) in result}
    if not missing:
        return
    offenders = [
        describe(index, parent_id, child_id)
        for index, (child_id, parent_id) in enumerate(children)
        if parent_id in missing
    ]
    message = "; ".join(offenders[:_MAX_NAMED_MISSING])
    if len(offenders) > _MAX_NAMED_MISSING:
        message += f" (and {len(offenders) - _MAX_NAMED_MISSING} more)"
    raise FailedPrecondition(
        message,
        reason=reason,
        metadata={f"missing_{parent}": ",".join(str(i) for i in sorted(missing)[:20])},
    )


def _summary(received: int, inserted: int, updated: int, deleted: int, periods: int = 0) -> SyncSummary:
    return SyncSummary(
        received=received,
        inserted=inserted,
        updated=updated,
        unchanged=received - inserted - updated,
        deleted=deleted,
        periods_written=periods,
    )


def apply_sites(
    session: Session,
    customer_id: int,
    snapshot: Sequence[SiteItem],
    now: datetime,
    confirm: Callable[[], None] = _no_check,
) -> SyncSummary:
    """Make `snapshot` the customer's sites. Deleting a site deletes its devices (cascade).

    A site's `municipality_id` and `tariff_id` are soft references: sites are pushed before
    municipalities and tariffs (§7), so requiring them would fail every first sync.
    """
    rows = validate_sites(snapshot)
    _hold_customer(session, customer_id)
    _lock(session, customer_id, "sites")
    inserted, updated, deleted = _upsert(session, _SITES, customer_id, rows)
    sync_status.record_push(session, customer_id, "sites", len(rows), now)
    confirm()
    return _summary(len(rows), len(inserted), len(updated), deleted)


def apply_devices(
    session: Session,
    customer_id: int,
    snapshot: Sequence[DeviceItem],
    now: datetime,
    confirm: Callable[[], None] = _no_check,
) -> SyncSummary:
    """Make `snapshot` the customer's devices; every device must name a stored site."""
    rows = validate_devices(snapshot)
    _hold_customer(session, customer_id)
    _lock(session, customer_id, "devices")
    _lock(session, customer_id, "sites", shared=True)
    _require_parents(
        session,
        customer_id,
        "sites",
        [(d.id, d.site_id) for d in rows],
        lambda i, site, device: f"devices[{i}]: site {site} does not exist for device {device}",
        Reason.SITE_NOT_FOUND,
    )
    inserted, updated, deleted = _upsert(session, _DEVICES, customer_id, rows)
    sync_status.record_push(session, customer_id, "devices", len(rows), now)
    confirm()
    return _summary(len(rows), len(inserted), len(updated), deleted)


def apply_municipalities(
    session: Session,
    customer_id: int,
    snapshot: Sequence[MunicipalityItem],
    now: datetime,
    confirm: Callable[[], None] = _no_check,
) -> SyncSummary:
    """Make `snapshot` the customer's municipalities. Deleting one deletes its tariffs and periods."""
    rows = validate_municipalities(snapshot)
    _hold_customer(session, customer_id)
    _lock(session, customer_id, "municipalities")
    inserted, updated, deleted = _upsert(session, _MUNICIPALITIES, customer_id, rows)
    sync_status.record_push(session, customer_id, "municipalities", len(rows), now)
    confirm()
    return _summary(len(rows), len(inserted), len(updated), deleted)


def _period_columns(tariffs: Sequence[TariffRow]) -> dict[str, list[Any]]:
    periods: list[tuple[int, PeriodRow]] = sorted(
        ((t.id, p) for t in tariffs for p in t.periods), key=lambda tp: (tp[0], tp[1].id)
    )
    columns: dict[str, list[Any]] = {"tariff_id": [tariff_id for tariff_id, _ in periods]}
    for name in _PERIOD_COLUMNS[1:]:
        columns[name] = [getattr(p, name) for _, p in periods]
    return columns


def apply_tariffs(
    session: Session,
    customer_id: int,
    snapshot: Sequence[TariffItem],
    now: datetime,
    confirm: Callable[[], None] = _no_check,
) -> SyncSummary:
    """Make `snapshot` the customer's tariffs, each with exactly its pushed period set.

    A tariff whose row is the same but whose periods differ counts as updated. Periods are
    rewritten (all deleted, the pushed set inserted) only for tariffs whose set changed, so
    re-sending an unchanged snapshot writes nothing; `periods_written` counts the rows inserted.
    """
    rows = validate_tariffs(snapshot, now)
    _hold_customer(session, customer_id)
    _lock(session, customer_id, "tariffs")
    _lock(session, customer_id, "municipalities", shared=True)
    _require_parents(
        session,
        customer_id,
        "municipalities",
        [(t.id, t.municipality_id) for t in rows],
        lambda i, municipality, tariff: (
            f"tariffs[{i}]: municipality {municipality} does not exist for tariff {tariff}"
        ),
        Reason.MUNICIPALITY_NOT_FOUND,
    )
    tariff_ids = sorted(t.id for t in rows)
    periods = _period_columns(rows)
    changed_sets = {
        int(tariff_id)
        for (tariff_id,) in session.execute(
            _CHANGED_PERIOD_SETS, {"customer_id": customer_id, "tariff_ids": tariff_ids, **periods}
        )
    }
    inserted, updated, deleted = _upsert(session, _TARIFFS, customer_id, rows)
    updated |= changed_sets - inserted
    written = 0
    if changed_sets:
        session.execute(_DELETE_PERIODS, {"customer_id": customer_id, "tariff_ids": sorted(changed_sets)})
        rewrite = _period_columns([t for t in rows if t.id in changed_sets])
        written = len(rewrite["id"])
        if written:
            session.execute(_INSERT_PERIODS, {"customer_id": customer_id, **rewrite})
    sync_status.record_push(session, customer_id, "tariffs", len(rows), now)
    confirm()
    return _summary(len(rows), len(inserted), len(updated), deleted, written)
