"""The customer detail view: one customer's mirrored reference data and sync status, read consistently."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.db.models import Device, Municipality, Site, Tariff, TariffPeriod
from fleet_server.domain import sync_status
from fleet_server.domain.customers import CustomerRecord, get_customer

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class TariffDetail:
    """A tariff with its periods (ordered by id) and its municipality's name resolved."""

    tariff: Tariff
    periods: list[TariffPeriod]
    municipality_name: str


@dataclass(frozen=True)
class CustomerDetail:
    customer: CustomerRecord
    sites: list[Site]
    devices: list[Device]
    municipalities: list[Municipality]
    tariffs: list[TariffDetail]
    sync: list[sync_status.SyncRecord]


def load_customer_detail(session: Session, code: str, now: datetime) -> CustomerDetail:
    """Everything the operator sees for customer `code`, each list ordered by id.

    The reads run in one REPEATABLE READ snapshot, so a push committing half-way through cannot
    show a tariff whose municipality the same view no longer lists.
    """
    session.connection(execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True})
    customer = get_customer(session, code, now)  # INVALID_ARGUMENT / NOT_FOUND for a bad code
    cid = customer.id
    sites = list(session.scalars(select(Site).where(Site.customer_id == cid).order_by(Site.id)))
    devices = list(session.scalars(select(Device).where(Device.customer_id == cid).order_by(Device.id)))
    municipalities = list(
        session.scalars(select(Municipality).where(Municipality.customer_id == cid).order_by(Municipality.id))
    )
    names = {m.id: m.name for m in municipalities}
    periods: dict[int, list[TariffPeriod]] = {}
    for period in session.scalars(
        select(TariffPeriod)
        .where(TariffPeriod.customer_id == cid)
        .order_by(TariffPeriod.tariff_id, TariffPeriod.id)
    ):
        periods.setdefault(period.tariff_id, []).append(period)
    tariffs = [
        TariffDetail(t, periods.get(t.id, []), names.get(t.municipality_id, ""))
        for t in session.scalars(select(Tariff).where(Tariff.customer_id == cid).order_by(Tariff.id))
    ]
    return CustomerDetail(
        customer=customer,
        sites=sites,
        devices=devices,
        municipalities=municipalities,
        tariffs=tariffs,
        sync=sync_status.list_status(session, cid),
    )
