"""Fleet storage per customer: readings hot and compressed, the disk they take (`fleetctl fleet storage`).

An operator keeping ten years of readings plans disk from this view, so its bytes are the real
sizes of the relations, shared out so that the customers' bytes add up to them:

- hot bytes: every measurement partition and the hourly rollup table, with indexes, TOAST and
  free space, shared by hot readings (a hot reading costs the same whoever pushed it: one row,
  its index entry, its share of a rollup row);
- compressed bytes: each customer's unit payloads as stored, plus a share by units of the rest of
  `fleet.measurements_compressed` (row headers and keys, TOAST chunk headers, the primary key
  index, free space).

Bytes left in emptied partitions until they are truncated count as hot: they are on disk. When
no reading is hot anywhere, nobody is charged for the empty relations (the fleet line still
shows them). Everything is read in one REPEATABLE READ snapshot, so readings and the page agree;
relation sizes are not transactional and are taken at the same moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from fleet_server.domain.customers import customer_id_for
from fleet_server.domain.listings import read_consistently
from fleet_server.domain.paging import Page, PageSizes
from fleet_server.store import customers, storage
from fleet_server.store.storage import Holdings, RelationBytes

STORAGE_PAGES = PageSizes(default=100, maximum=1000)


@dataclass(frozen=True)
class StorageUse:
    """Readings in each form and the bytes they take on disk."""

    hot_readings: int
    compressed_readings: int
    hot_bytes: int
    compressed_bytes: int
    compressed_units: int


@dataclass(frozen=True)
class CustomerStorage:
    code: str
    use: StorageUse


@dataclass(frozen=True)
class FleetStorage:
    measured_at: datetime
    fleet: StorageUse
    customers: Page[CustomerStorage]


def _share(total: int, part: int, whole: int) -> int:
    """`total` * part / whole, rounded, in integers (bytes of 10-year fleets pass 2**53)."""
    if whole <= 0:
        return 0
    return (2 * total * part + whole) // (2 * whole)


def _use(held: Holdings, fleet: Holdings, sizes: RelationBytes) -> StorageUse:
    overhead = sizes.compressed - fleet.payload_bytes
    return StorageUse(
        hot_readings=held.hot_readings,
        compressed_readings=held.compressed_readings,
        hot_bytes=_share(sizes.hot, held.hot_readings, fleet.hot_readings),
        compressed_bytes=held.payload_bytes + _share(overhead, held.compressed_units, fleet.compressed_units),
        compressed_units=held.compressed_units,
    )


def fleet_storage(
    session: Session, code: str, page_size: int, after_code: str | None, now: datetime
) -> FleetStorage:
    """The storage of one customer (`code`), or of a page of customers by code, and the fleet's."""
    size = STORAGE_PAGES.size(page_size)
    read_consistently(session)
    if code:
        page = [(customer_id_for(session, code), code)]
        more = False
    else:
        rows = customers.page(session, after_code, size + 1)
        page = [(row.id, row.code) for row in rows[:size]]
        more = len(rows) > size
    fleet = storage.fleet_holdings(session)
    sizes = storage.relation_bytes(session)
    held = storage.holdings_of(session, [customer_id for customer_id, _ in page])
    listed = [CustomerStorage(c, _use(held[customer_id], fleet, sizes)) for customer_id, c in page]
    whole = StorageUse(
        hot_readings=fleet.hot_readings,
        compressed_readings=fleet.compressed_readings,
        hot_bytes=sizes.hot,
        compressed_bytes=sizes.compressed,
        compressed_units=fleet.compressed_units,
    )
    return FleetStorage(measured_at=now, fleet=whole, customers=Page(listed, more=more))
