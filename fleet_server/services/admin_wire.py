"""FleetAdminService wire ⇄ domain: `Customer` messages, the grace duration (page tokens: `paging_wire`)."""

from __future__ import annotations

from datetime import timedelta

from fleet.v1 import admin_service_pb2 as pb
from fleet.v1 import resources_pb2

from fleet_server.domain.customers import CustomerRecord
from fleet_server.rpc.wellknown import to_timedelta, to_timestamp


def customer_message(record: CustomerRecord) -> resources_pb2.Customer:
    """The wire `Customer`; `previous_token_expires_at` is set only while the grace window is open."""
    message = resources_pb2.Customer(
        id=record.id,
        code=record.code,
        name=record.name,
        is_active=record.is_active,
        created_at=to_timestamp(record.created_at),
        token_issued_at=to_timestamp(record.token_issued_at),
    )
    if record.previous_token_expires_at is not None:
        message.previous_token_expires_at.CopyFrom(to_timestamp(record.previous_token_expires_at))
    return message


def requested_grace(request: pb.RotateCustomerTokenRequest) -> timedelta | None:
    """The grace window asked for; None when unset (the server default applies)."""
    if not request.HasField("grace_period"):
        return None
    return to_timedelta(request.grace_period, "grace_period")


def deleted_rows_message(counts: dict[str, int]) -> pb.DeleteCustomerResponse:
    return pb.DeleteCustomerResponse(deleted_rows=counts)
