"""One customer's reference data a page at a time: sites, devices, municipalities, tariffs (AIP-158).

A customer may hold 120,000 devices; one message with all of them outgrows gRPC's message limit
(4 MiB by default), so the operator's views read these lists in keyset pages by id instead
(`paging.REFERENCE_PAGES`). Each call reads its page and the list's total in one
`REPEATABLE READ READ ONLY` transaction, so the count and the page agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.orm import Session

from fleet_server.domain.customers import customer_id_for
from fleet_server.domain.paging import REFERENCE_PAGES, Page, cut
from fleet_server.resources import Resource
from fleet_server.store import reference
from fleet_server.store.reference import DeviceRecord, MunicipalityRecord, SiteRecord, TariffRecord

T = TypeVar("T")

# A page of tariffs stops before its periods pass this many (it always holds one tariff), so a
# page of 1,000 tariffs with hundreds of periods each is never read into memory at once.
PERIODS_PER_PAGE = 5_000


@dataclass(frozen=True)
class TariffDetail:
    """A tariff with its periods (ordered by id) and its municipality's name resolved."""

    tariff: TariffRecord
    municipality_name: str


def read_consistently(session: Session) -> None:
    """Make the rest of this unit of work one read-only snapshot (counts and pages agree)."""
    session.connection(execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True})


def sites_page(session: Session, customer_id: int, size: int, after: int | None) -> Page[SiteRecord]:
    rows = reference.sites_after(session, customer_id, after, size + 1)
    return cut(rows, size, reference.count(session, Resource.SITES, customer_id))


def devices_page(session: Session, customer_id: int, size: int, after: int | None) -> Page[DeviceRecord]:
    rows = reference.devices_after(session, customer_id, after, size + 1)
    return cut(rows, size, reference.count(session, Resource.DEVICES, customer_id))


def municipalities_page(
    session: Session, customer_id: int, size: int, after: int | None
) -> Page[MunicipalityRecord]:
    rows = reference.municipalities_after(session, customer_id, after, size + 1)
    return cut(rows, size, reference.count(session, Resource.MUNICIPALITIES, customer_id))


def tariffs_page(session: Session, customer_id: int, size: int, after: int | None) -> Page[TariffDetail]:
    """Up to `size` tariffs after `after`, fewer when their periods would pass `PERIODS_PER_PAGE`."""
    sizes = reference.tariff_sizes_after(session, customer_id, after, size + 1)
    kept: list[int] = []
    periods = 0
    for tariff_id, tariff_periods in sizes[:size]:
        if kept and periods + tariff_periods > PERIODS_PER_PAGE:
            break
        kept.append(tariff_id)
        periods += tariff_periods
    tariffs = reference.tariffs_with_ids(session, customer_id, kept)
    names = reference.municipality_names(session, customer_id, [t.municipality_id for t in tariffs])
    return Page(
        items=[TariffDetail(t, names.get(t.municipality_id, "")) for t in tariffs],
        more=len(sizes) > len(kept),
        total_size=reference.count(session, Resource.TARIFFS, customer_id),
    )


def _list(
    session: Session,
    code: str,
    page_size: int,
    after: int | None,
    read: Callable[[Session, int, int, int | None], Page[T]],
) -> Page[T]:
    size = REFERENCE_PAGES.size(page_size)
    read_consistently(session)
    customer_id = customer_id_for(session, code)  # INVALID_ARGUMENT / NOT_FOUND for a bad code
    return read(session, customer_id, size, after)


def list_sites(session: Session, code: str, page_size: int, after: int | None) -> Page[SiteRecord]:
    """The sites of customer `code` after id `after`, by id."""
    return _list(session, code, page_size, after, sites_page)


def list_devices(session: Session, code: str, page_size: int, after: int | None) -> Page[DeviceRecord]:
    """The devices of customer `code` after id `after`, by id."""
    return _list(session, code, page_size, after, devices_page)


def list_municipalities(
    session: Session, code: str, page_size: int, after: int | None
) -> Page[MunicipalityRecord]:
    """The municipalities of customer `code` after id `after`, by id."""
    return _list(session, code, page_size, after, municipalities_page)


def list_tariffs(session: Session, code: str, page_size: int, after: int | None) -> Page[TariffDetail]:
    """The tariffs of customer `code` after id `after`, by id, with periods and municipality names."""
    return _list(session, code, page_size, after, tariffs_page)
