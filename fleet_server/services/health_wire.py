"""GetFleetHealth and ListSilentDevices on the wire: windows in, customers' health and silent devices out."""

from __future__ import annotations

from datetime import datetime, timedelta

from fleet.v1 import query_service_pb2 as pb
from google.protobuf import duration_pb2

from fleet_server.domain.fleet_health import (
    CustomerHealth,
    FleetHealth,
    HealthQuery,
    Problem,
    SilentDevice,
    TokenHealth,
)
from fleet_server.domain.paging import Page
from fleet_server.rpc.wellknown import to_timedelta, to_timestamp
from fleet_server.services.paging_wire import Listing, decode_code_token, encode_page
from fleet_server.services.query_wire import sync_message

PROBLEMS = {
    Problem.STALE: pb.HEALTH_PROBLEM_STALE,
    Problem.SILENT_DEVICES: pb.HEALTH_PROBLEM_SILENT_DEVICES,
    Problem.TOKEN_EXPIRING: pb.HEALTH_PROBLEM_TOKEN_EXPIRING,
}


def window(message: object, field: str) -> timedelta | None:
    """A Duration field as a timedelta; None when unset. A Duration outside its documented range
    is INVALID_ARGUMENT (10**15 seconds failed as INTERNAL: a timedelta cannot hold it)."""
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    return to_timedelta(getattr(message, field), field)


def health_query(request: pb.GetFleetHealthRequest) -> HealthQuery:
    after = None if request.code else decode_code_token(request.page_token, Listing.FLEET_HEALTH)
    return HealthQuery(
        code=request.code,
        silent_after=window(request, "silent_after"),
        stale_after=window(request, "stale_after"),
        page_size=request.page_size,
        after_code=after,
    )


def _duration(value: timedelta) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromTimedelta(value)
    return duration


def silent_device_message(device: SilentDevice) -> pb.SilentDevice:
    message = pb.SilentDevice(device_id=device.device_id, name=device.name, site_id=device.site_id)
    if device.last_reading_at is not None:
        message.last_reading_at.CopyFrom(to_timestamp(device.last_reading_at))
    return message


def _token_message(token: TokenHealth) -> pb.TokenHealth:
    message = pb.TokenHealth(
        issued_at=to_timestamp(token.issued_at), previous_used_recently=token.previous_used_recently
    )
    if token.previous_expires_at is not None:
        message.previous_expires_at.CopyFrom(to_timestamp(token.previous_expires_at))
    if token.previous_last_used_at is not None:
        message.previous_last_used_at.CopyFrom(to_timestamp(token.previous_last_used_at))
    return message


def _customer_message(health: CustomerHealth, checked_at: datetime) -> pb.CustomerHealth:
    devices, next_token = silent_devices(health.code, health.silent)
    message = pb.CustomerHealth(
        code=health.code,
        name=health.name,
        is_active=health.is_active,
        token=_token_message(health.token),
        sync=[sync_message(record) for record in health.sync],
        device_count=health.device_count,
        silent_device_count=health.silent_count,
        silent_devices=devices,
        next_silent_devices_page_token=next_token,
        problems=[PROBLEMS[problem] for problem in health.problems],
    )
    if health.last_push_at is not None:
        message.last_push_at.CopyFrom(to_timestamp(health.last_push_at))
    if health.newest_reading_at is not None:
        message.newest_reading_at.CopyFrom(to_timestamp(health.newest_reading_at))
        message.reading_lag.CopyFrom(_duration(checked_at - health.newest_reading_at))
    return message


def silent_devices(code: str, page: Page[SilentDevice]) -> tuple[list[pb.SilentDevice], str]:
    """A page of silent devices and the ListSilentDevices token that continues it."""
    return encode_page(page, silent_device_message, lambda d: d.device_id, Listing.SILENT_DEVICES, code)


def health_response(health: FleetHealth) -> pb.GetFleetHealthResponse:
    customers, next_token = encode_page(
        health.customers,
        lambda c: _customer_message(c, health.checked_at),
        lambda c: c.code,
        Listing.FLEET_HEALTH,
    )
    return pb.GetFleetHealthResponse(
        customers=customers,
        next_page_token=next_token,
        checked_at=to_timestamp(health.checked_at),
        silent_after=_duration(health.silent_after),
        stale_after=_duration(health.stale_after),
    )


def silent_devices_response(code: str, page: Page[SilentDevice]) -> pb.ListSilentDevicesResponse:
    devices, next_token = silent_devices(code, page)
    return pb.ListSilentDevicesResponse(
        devices=devices, next_page_token=next_token, total_size=page.total_size or 0
    )
