"""GetFleetStorage on the wire: a page of customers' storage and the fleet's, in StorageUse messages."""

from __future__ import annotations

from fleet.v1 import query_service_pb2 as pb

from fleet_server.domain.storage import FleetStorage, StorageUse
from fleet_server.rpc.wellknown import to_timestamp
from fleet_server.services.paging_wire import Listing, decode_code_token, encode_page


def after_code(request: pb.GetFleetStorageRequest) -> str | None:
    """Where the page starts; a token is only read when every customer is listed (as GetFleetHealth)."""
    return None if request.code else decode_code_token(request.page_token, Listing.FLEET_STORAGE)


def _use(use: StorageUse) -> pb.StorageUse:
    return pb.StorageUse(
        hot_readings=use.hot_readings,
        compressed_readings=use.compressed_readings,
        hot_bytes=use.hot_bytes,
        compressed_bytes=use.compressed_bytes,
        compressed_units=use.compressed_units,
    )


def storage_response(report: FleetStorage) -> pb.GetFleetStorageResponse:
    customers, next_token = encode_page(
        report.customers,
        lambda c: pb.CustomerStorage(code=c.code, use=_use(c.use)),
        lambda c: c.code,
        Listing.FLEET_STORAGE,
    )
    return pb.GetFleetStorageResponse(
        customers=customers,
        next_page_token=next_token,
        fleet=_use(report.fleet),
        measured_at=to_timestamp(report.measured_at),
    )
