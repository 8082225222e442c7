"""Applying a reference-data snapshot (sites, devices, municipalities, tariffs) in one transaction.

A snapshot is the customer's complete set of one resource: rows are upserted by
`(customer_id, id)`, the customer's rows absent from the snapshot are deleted, and the summary
counts what changed. The set-based SQL is `store.reference`'s; this module holds the order of
the steps and what their results mean.

Every apply first holds the customer (`store.customers.hold_active`, the guard of every writer):
a snapshot racing an erasure queues behind it and then writes nothing.

Snapshots of the same customer and resource are serialised with a transaction-level advisory
lock: two interleaved snapshots would otherwise each delete only what *they* saw, leaving a
union of both (or, for tariff periods, two period sets merged). A push of a child resource
(devices, tariffs) also holds its parent's lock in shared mode, so the parents it was checked
against cannot be deleted under it. Locks are keyed by customer, so two customers never wait
for each other.

Every apply takes `confirm`, called last inside the transaction: it raises (rolling the
snapshot back) when the caller can no longer vouch for the snapshot — the push call ended —
and `token_hash`, the push's token: a snapshot is applied only while that token is still valid
(a zero-grace rotation while the stream was open refuses it, UNAUTHENTICATED).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy.orm import Session

from fleet_server.domain.reference_validation import (
    DeviceItem,
    MunicipalityItem,
    SiteItem,
    TariffItem,
    validate_devices,
    validate_municipalities,
    validate_sites,
    validate_tariffs,
)
from fleet_server.errors import FailedPrecondition, Reason
from fleet_server.resources import Resource
from fleet_server.store import customers, reference, sync_status
from fleet_server.store.locks import lock_snapshot

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


def _no_check() -> None:
    """The default `confirm`: nothing can withdraw the snapshot."""


def _require_parents(
    session: Session,
    customer_id: int,
    parent: Resource,
    children: Sequence[tuple[int, int]],
    describe: Callable[[int, int, int], str],
    reason: Reason,
) -> None:
    """FAILED_PRECONDITION when a child names a parent the customer does not have.

    `children` are (child id, parent id) in snapshot order; `describe(index, parent, child)`
    words one offender.
    """
    missing = reference.missing_parents(session, customer_id, parent, [p for _, p in children])
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


def _summary(received: int, changes: reference.Changes, periods: int = 0) -> SyncSummary:
    return SyncSummary(
        received=received,
        inserted=changes.inserted,
        updated=changes.updated,
        unchanged=received - changes.inserted - changes.updated,
        deleted=changes.deleted,
        periods_written=periods,
    )


def apply_sites(
    session: Session,
    customer_id: int,
    snapshot: Sequence[SiteItem],
    now: datetime,
    confirm: Callable[[], None] = _no_check,
    token_hash: str | None = None,
) -> SyncSummary:
    """Make `snapshot` the customer's sites. Deleting a site deletes its devices (cascade).

    A site's `municipality_id` and `tariff_id` are soft references: sites are pushed before
    municipalities and tariffs (docs/client.md), so requiring them would fail every first sync.
    """
    rows = validate_sites(snapshot)
    customers.hold_active(session, customer_id, token_hash, now)
    lock_snapshot(session, customer_id, Resource.SITES)
    changes = reference.upsert_snapshot(session, Resource.SITES, customer_id, rows)
    sync_status.record_push(session, customer_id, Resource.SITES, len(rows), now)
    confirm()
    return _summary(len(rows), changes)


def apply_devices(
    session: Session,
    customer_id: int,
    snapshot: Sequence[DeviceItem],
    now: datetime,
    confirm: Callable[[], None] = _no_check,
    token_hash: str | None = None,
) -> SyncSummary:
    """Make `snapshot` the customer's devices; every device must name a stored site."""
    rows = validate_devices(snapshot)
    customers.hold_active(session, customer_id, token_hash, now)
    lock_snapshot(session, customer_id, Resource.DEVICES)
    lock_snapshot(session, customer_id, Resource.SITES, shared=True)
    _require_parents(
        session,
        customer_id,
        Resource.SITES,
        [(d.id, d.site_id) for d in rows],
        lambda i, site, device: f"devices[{i}]: site {site} does not exist for device {device}",
        Reason.SITE_NOT_FOUND,
    )
    changes = reference.upsert_snapshot(session, Resource.DEVICES, customer_id, rows)
    sync_status.record_push(session, customer_id, Resource.DEVICES, len(rows), now)
    confirm()
    return _summary(len(rows), changes)


def apply_municipalities(
    session: Session,
    customer_id: int,
    snapshot: Sequence[MunicipalityItem],
    now: datetime,
    confirm: Callable[[], None] = _no_check,
    token_hash: str | None = None,
) -> SyncSummary:
    """Make `snapshot` the customer's municipalities. Deleting one deletes its tariffs and periods."""
    rows = validate_municipalities(snapshot)
    customers.hold_active(session, customer_id, token_hash, now)
    lock_snapshot(session, customer_id, Resource.MUNICIPALITIES)
    changes = reference.upsert_snapshot(session, Resource.MUNICIPALITIES, customer_id, rows)
    sync_status.record_push(session, customer_id, Resource.MUNICIPALITIES, len(rows), now)
    confirm()
    return _summary(len(rows), changes)


def apply_tariffs(
    session: Session,
    customer_id: int,
    snapshot: Sequence[TariffItem],
    now: datetime,
    confirm: Callable[[], None] = _no_check,
    token_hash: str | None = None,
) -> SyncSummary:
    """Make `snapshot` the customer's tariffs, each with exactly its pushed period set.

    A tariff whose row is the same but whose periods differ counts as updated. Periods are
    rewritten (all deleted, the pushed set inserted) only for tariffs whose set changed, so
    re-sending an unchanged snapshot writes nothing; `periods_written` counts the rows inserted.
    """
    rows = validate_tariffs(snapshot, now)
    customers.hold_active(session, customer_id, token_hash, now)
    lock_snapshot(session, customer_id, Resource.TARIFFS)
    lock_snapshot(session, customer_id, Resource.MUNICIPALITIES, shared=True)
    _require_parents(
        session,
        customer_id,
        Resource.MUNICIPALITIES,
        [(t.id, t.municipality_id) for t in rows],
        lambda i, municipality, tariff: (
            f"tariffs[{i}]: municipality {municipality} does not exist for tariff {tariff}"
        ),
        Reason.MUNICIPALITY_NOT_FOUND,
    )
    changed_sets = reference.changed_period_sets(session, customer_id, rows)
    changes = reference.upsert_snapshot(session, Resource.TARIFFS, customer_id, rows, watched=changed_sets)
    # A tariff whose row is unchanged but whose periods changed counts as updated too.
    changes = replace(changes, updated=changes.updated + len(changed_sets - changes.written))
    written = reference.replace_periods(session, customer_id, [t for t in rows if t.id in changed_sets])
    sync_status.record_push(session, customer_id, Resource.TARIFFS, len(rows), now)
    confirm()
    return _summary(len(rows), changes, written)
