"""Per customer and resource: when the last successful push ended and how much it carried."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from fleet_server.db.models import SyncStatus

RESOURCES = ("sites", "devices", "municipalities", "tariffs", "measurements")


@dataclass(frozen=True)
class SyncRecord:
    resource: str
    last_push_at: datetime
    last_received: int
    high_water_received_at: datetime | None


def record_push(
    session: Session,
    customer_id: int,
    resource: str,
    received: int,
    now: datetime,
    high_water_received_at: datetime | None = None,
) -> None:
    """Note a successful push, in the push's own transaction (so it is true exactly when the data is).

    The measurement high-water mark only ever moves forward: a back-fill of old rows does not
    pull it back.
    """
    if resource not in RESOURCES:
        raise ValueError(f"unknown resource {resource!r}")
    stmt = insert(SyncStatus).values(
        customer_id=customer_id,
        resource=resource,
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
    order = {name: i for i, name in enumerate(RESOURCES)}
    records = [
        SyncRecord(r.resource, r.last_push_at, r.last_received, r.high_water_received_at) for r in rows
    ]
    return sorted(records, key=lambda r: order[r.resource])
