"""The customer detail view: one customer's mirrored reference data and sync status, read consistently."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from fleet_server.domain.customers import CustomerRecord, get_customer
from fleet_server.store import reference, sync_status
from fleet_server.store.reference import DeviceRecord, MunicipalityRecord, SiteRecord, TariffRecord
from fleet_server.store.sync_status import SyncRecord


@dataclass(frozen=True)
class TariffDetail:
    """A tariff with its periods (ordered by id) and its municipality's name resolved."""

    tariff: TariffRecord
    municipality_name: str


@dataclass(frozen=True)
class CustomerDetail:
    customer: CustomerRecord
    sites: list[SiteRecord]
    devices: list[DeviceRecord]
    municipalities: list[MunicipalityRecord]
    tariffs: list[TariffDetail]
    sync: list[SyncRecord]


def load_customer_detail(session: Session, code: str, now: datetime) -> CustomerDetail:
    """Everything the operator sees for customer `code`, each list ordered by id.

    The reads run in one REPEATABLE READ snapshot, so a push committing half-way through cannot
    show a tariff whose municipality the same view no longer lists.
    """
    session.connection(execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True})
    customer = get_customer(session, code, now)  # INVALID_ARGUMENT / NOT_FOUND for a bad code
    municipalities = reference.municipalities(session, customer.id)
    names = {m.id: m.name for m in municipalities}
    return CustomerDetail(
        customer=customer,
        sites=reference.sites(session, customer.id),
        devices=reference.devices(session, customer.id),
        municipalities=municipalities,
        tariffs=[
            TariffDetail(t, names.get(t.municipality_id, "")) for t in reference.tariffs(session, customer.id)
        ],
        sync=sync_status.list_status(session, customer.id),
    )
