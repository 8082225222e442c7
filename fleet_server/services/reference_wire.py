"""Reference data wire ⇄ domain: pushed snapshots in, sync summaries and the customer detail out."""

from __future__ import annotations

import logging

from fleet.v1 import query_service_pb2 as query_pb
from fleet.v1 import resources_pb2

from fleet_server.db.models import Site
from fleet_server.domain import sync_status
from fleet_server.domain.detail import CustomerDetail, TariffDetail
from fleet_server.domain.reference import SyncSummary
from fleet_server.domain.reference_validation import (
    DeviceItem,
    MunicipalityItem,
    PeriodItem,
    SiteItem,
    TariffItem,
)
from fleet_server.rpc.wellknown import decimal_text, optional_datetime, to_timestamp
from fleet_server.services.admin_wire import customer_message

_LOGGER = logging.getLogger(__name__)


def site_item(site: resources_pb2.Site) -> SiteItem:
    return SiteItem(
        id=site.id,
        name=site.name,
        address=site.address,
        timezone=site.timezone,
        municipality_id=site.municipality_id if site.HasField("municipality_id") else None,
        tariff_id=site.tariff_id if site.HasField("tariff_id") else None,
    )


def device_item(device: resources_pb2.Device) -> DeviceItem:
    return DeviceItem(
        id=device.id,
        site_id=device.site_id,
        name=device.name,
        serial_number=device.serial_number,
        kind=device.kind,
    )


def municipality_item(municipality: resources_pb2.Municipality) -> MunicipalityItem:
    return MunicipalityItem(id=municipality.id, name=municipality.name, region=municipality.region)


def tariff_item(tariff: resources_pb2.Tariff) -> TariffItem:
    return TariffItem(
        id=tariff.id,
        municipality_id=tariff.municipality_id,
        name=tariff.name,
        is_active=tariff.is_active,
        effective_from=optional_datetime(tariff, "effective_from"),
        effective_to=optional_datetime(tariff, "effective_to"),
        default_rate=tariff.default_rate,
        fixed_charge=tariff.fixed_charge,
        vat_percent=tariff.vat_percent,
        currency=tariff.currency,
        periods=tuple(
            PeriodItem(
                id=p.id,
                name=p.name,
                days_of_week=p.days_of_week,
                start_time=p.start_time,
                end_time=p.end_time,
                rate=p.rate,
            )
            for p in tariff.periods
        ),
    )


def summary_message(summary: SyncSummary) -> resources_pb2.SyncSummary:
    return resources_pb2.SyncSummary(
        received=summary.received,
        inserted=summary.inserted,
        updated=summary.updated,
        deleted=summary.deleted,
        unchanged=summary.unchanged,
    )


def clock_text(minute: int) -> str:
    """Minutes of the day as `HH:MM`; 1440 is `24:00`."""
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _site_message(site: Site) -> resources_pb2.Site:
    message = resources_pb2.Site(id=site.id, name=site.name, address=site.address, timezone=site.timezone)
    if site.municipality_id is not None:
        message.municipality_id = site.municipality_id
    if site.tariff_id is not None:
        message.tariff_id = site.tariff_id
    return message


def _tariff_view(detail: TariffDetail) -> query_pb.TariffView:
    t = detail.tariff
    tariff = resources_pb2.Tariff(
        id=t.id,
        municipality_id=t.municipality_id,
        name=t.name,
        is_active=t.is_active,
        effective_from=to_timestamp(t.effective_from),
        default_rate=decimal_text(t.default_rate),
        fixed_charge=decimal_text(t.fixed_charge),
        vat_percent=decimal_text(t.vat_percent),
        currency=t.currency,
        periods=[
            resources_pb2.TariffPeriod(
                id=p.id,
                name=p.name,
                days_of_week=p.days_of_week,
                start_time=clock_text(p.start_minute),
                end_time=clock_text(p.end_minute),
                rate=decimal_text(p.rate),
            )
            for p in detail.periods
        ],
    )
    if t.effective_to is not None:
        tariff.effective_to.CopyFrom(to_timestamp(t.effective_to))
    return query_pb.TariffView(tariff=tariff, municipality_name=detail.municipality_name)


def _sync_message(record: sync_status.SyncRecord) -> query_pb.SyncStatus:
    message = query_pb.SyncStatus(
        resource=record.resource,
        last_push_at=to_timestamp(record.last_push_at),
        last_received=record.last_received,
    )
    if record.high_water_received_at is not None:
        message.high_water_received_at.CopyFrom(to_timestamp(record.high_water_received_at))
    return message


def detail_message(detail: CustomerDetail) -> query_pb.GetCustomerDetailResponse:
    return query_pb.GetCustomerDetailResponse(
        customer=customer_message(detail.customer),
        sites=[_site_message(s) for s in detail.sites],
        devices=[
            resources_pb2.Device(
                id=d.id, site_id=d.site_id, name=d.name, serial_number=d.serial_number, kind=d.kind
            )
            for d in detail.devices
        ],
        municipalities=[
            resources_pb2.Municipality(id=m.id, name=m.name, region=m.region) for m in detail.municipalities
        ],
        tariffs=[_tariff_view(t) for t in detail.tariffs],
        sync=[_sync_message(r) for r in detail.sync],
    )
