"""The sync_status table: per customer and resource, when the last successful push ended and its size.

A push records its status in its own transaction, so the record is true exactly when the data
is. (The measurement batch statement inlines the same upsert, to stay one statement.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from fleet_server.db.models import Customer, SyncStatus
from fleet_server.resources import Resource


@dataclass(frozen=True)
class SyncRecord:
    resource: Resource
    last_push_at: datetime
    last_received: int
    high_water_received_at: datetime | None


def record_push(
    session: Session,
    customer_id: int,
    resource: Resource,
    received: int,
    now: datetime,
    high_water_received_at: datetime | None = None,
) -> None:
    """Note a successful push of `received` rows; the measurement high-water mark only moves forward.

    A back-fill of old rows does not pull the high-water mark back.
    """
    stmt = insert(SyncStatus).values(
        customer_id=customer_id,
        resource=Resource(resource).value,
        last_push_at=now,
        last_received=received,
        high_water_received_at=high_water_received_at,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[SyncStatus.customer_id, SyncStatus.resource],
        set_={
            "last_push_at": stmt.excluded.last_push_at,
            "last_received": stmt.excluded.last_received,
            "high_water_received_at": func.greatest(
                SyncStatus.high_water_received_at, stmt.excluded.high_water_received_at
            ),
        },
    )
    session.execute(stmt)


def list_status(session: Session, customer_id: int) -> list[SyncRecord]:
    """Every resource the customer has pushed at least once, in push order of the pipeline."""
    rows = session.execute(select(SyncStatus).where(SyncStatus.customer_id == customer_id)).scalars()
    order = list(Resource)
    records = [
        SyncRecord(Resource(r.resource), r.last_push_at, r.last_received, r.high_water_received_at)
        for r in rows
    ]
    return sorted(records, key=lambda r: order.index(r.resource))


@dataclass(frozen=True)
class LastPush:
    """A customer's last successful push of one resource, by customer code (for metrics)."""

    code: str
    resource: Resource
    at: datetime


def all_last_pushes(session: Session) -> list[LastPush]:
    """Every customer's last push of every resource it has pushed: one row per (customer, resource)."""
    rows = session.execute(
        select(Customer.code, SyncStatus.resource, SyncStatus.last_push_at)
        .select_from(SyncStatus)
        .join(Customer, Customer.id == SyncStatus.customer_id)
    )
    return [LastPush(code, Resource(resource), at) for code, resource, at in rows]


def status_of(session: Session, customer_ids: Sequence[int]) -> dict[int, list[SyncRecord]]:
    """`list_status` of several customers in one query, by customer id."""
    found: dict[int, list[SyncRecord]] = {customer_id: [] for customer_id in customer_ids}
    if not customer_ids:
        return found
    order = list(Resource)
    rows = session.execute(select(SyncStatus).where(SyncStatus.customer_id.in_(list(customer_ids)))).scalars()
    for r in rows:
        found[r.customer_id].append(
            SyncRecord(Resource(r.resource), r.last_push_at, r.last_received, r.high_water_received_at)
        )
    for records in found.values():
        records.sort(key=lambda r: order.index(r.resource))
    return found
