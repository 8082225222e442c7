"""The customer detail view: sync status, counts and the first page of each reference list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from fleet_server.domain import listings
from fleet_server.domain.customers import CustomerRecord, get_customer
from fleet_server.domain.listings import TariffDetail
from fleet_server.domain.paging import REFERENCE_PAGES, Page
from fleet_server.store import sync_status
from fleet_server.store.reference import DeviceRecord, MunicipalityRecord, SiteRecord
from fleet_server.store.sync_status import SyncRecord


@dataclass(frozen=True)
class CustomerDetail:
    """The customer, the first page of each list with its total, and the sync status per resource."""

    customer: CustomerRecord
    sites: Page[SiteRecord]
    devices: Page[DeviceRecord]
    municipalities: Page[MunicipalityRecord]
    tariffs: Page[TariffDetail]
    sync: list[SyncRecord]


def load_customer_detail(session: Session, code: str, now: datetime) -> CustomerDetail:
    """What the operator sees first for customer `code`: bounded however much the customer holds.

    Each list is its first page of the default size (the List RPCs continue it), so the view of
    a customer with 120,000 devices is as large as that of one with 100. The reads run in one
    REPEATABLE READ snapshot, so a push committing half-way through cannot make a count disagree
    with its page.
    """
    listings.read_consistently(session)
    customer = get_customer(session, code, now)  # INVALID_ARGUMENT / NOT_FOUND for a bad code
    size = REFERENCE_PAGES.default
    return CustomerDetail(
        customer=customer,
        sites=listings.sites_page(session, customer.id, size, None),
        devices=listings.devices_page(session, customer.id, size, None),
        municipalities=listings.municipalities_page(session, customer.id, size, None),
        tariffs=listings.tariffs_page(session, customer.id, size, None),
        sync=sync_status.list_status(session, customer.id),
    )
