"""FleetQueryService on the wire: queries in as domain requests, records out as messages.

Points and summaries for QueryMeasurements and SummarizeFleet, the customer detail view and
the pages of its lists (ComputeCosts has its own module, `cost_wire`; page tokens and the byte
budget of a page are `paging_wire`'s).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter

from fleet.v1 import query_service_pb2 as query_pb
from fleet.v1 import resources_pb2
from google.protobuf import timestamp_pb2

from fleet_server.domain.detail import CustomerDetail
from fleet_server.domain.listings import TariffDetail
from fleet_server.domain.measurement_queries import PointsRequest, SummaryRequest
from fleet_server.domain.paging import Page
from fleet_server.rpc.wellknown import decimal_text, optional_datetime, to_timestamp
from fleet_server.services.admin_wire import customer_message
from fleet_server.services.paging_wire import Listing, encode_page
from fleet_server.store.measurement_reads import Bucket, CustomerSummary, Point
from fleet_server.store.reference import DeviceRecord, MunicipalityRecord, SiteRecord
from fleet_server.store.sync_status import SyncRecord

# Points per QueryMeasurementsResponse: about 200 KB, far below any message limit.
POINTS_PER_CHUNK = 5_000

BUCKETS = {
    query_pb.BUCKET_RAW: Bucket.RAW,
    query_pb.BUCKET_HOUR: Bucket.HOUR,
    query_pb.BUCKET_DAY: Bucket.DAY,
}


def points_response(points: Sequence[Point]) -> query_pb.QueryMeasurementsResponse:
    """One chunk of the query stream."""
    point = query_pb.MeasurementPoint
    stamp = timestamp_pb2.Timestamp
    return query_pb.QueryMeasurementsResponse(
        points=[
            point(
                device_id=d,
                bucket_start=stamp(seconds=us // 1_000_000, nanos=us % 1_000_000 * 1000),
                count=c,
                sum=total,
                min=low,
                max=high,
            )
            for d, us, c, total, low, high in points
        ]
    )


def points_request(request: query_pb.QueryMeasurementsRequest) -> PointsRequest:
    """The request as the domain checks it: unset timestamps and unknown buckets become None."""
    return PointsRequest(
        code=request.code,
        metric=request.metric,
        start=optional_datetime(request, "start"),
        end=optional_datetime(request, "end"),
        bucket=BUCKETS.get(request.bucket),
        device_ids=tuple(request.device_ids),
    )


def summary_request(request: query_pb.SummarizeFleetRequest) -> SummaryRequest:
    return SummaryRequest(
        metric=request.metric,
        start=optional_datetime(request, "start"),
        end=optional_datetime(request, "end"),
    )


def summary_response(summaries: Sequence[CustomerSummary]) -> query_pb.SummarizeFleetResponse:
    return query_pb.SummarizeFleetResponse(
        customers=[
            query_pb.CustomerSummary(
                code=s.code, devices=s.devices, devices_seen=s.devices_seen, rows=s.rows, sum=s.sum
            )
            for s in summaries
        ]
    )


def clock_text(minute: int) -> str:
    """Minutes of the day as `HH:MM`; 1440 is `24:00`."""
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _site_message(site: SiteRecord) -> resources_pb2.Site:
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
            for p in t.periods
        ],
    )
    if t.effective_to is not None:
        tariff.effective_to.CopyFrom(to_timestamp(t.effective_to))
    return query_pb.TariffView(tariff=tariff, municipality_name=detail.municipality_name)


def sync_message(record: SyncRecord) -> query_pb.SyncStatus:
    message = query_pb.SyncStatus(
        resource=record.resource.value,
        last_push_at=to_timestamp(record.last_push_at),
        last_received=record.last_received,
    )
    if record.high_water_received_at is not None:
        message.high_water_received_at.CopyFrom(to_timestamp(record.high_water_received_at))
    return message


def _device_message(device: DeviceRecord) -> resources_pb2.Device:
    return resources_pb2.Device(
        id=device.id,
        site_id=device.site_id,
        name=device.name,
        serial_number=device.serial_number,
        kind=device.kind,
    )


def _municipality_message(municipality: MunicipalityRecord) -> resources_pb2.Municipality:
    return resources_pb2.Municipality(id=municipality.id, name=municipality.name, region=municipality.region)


_by_id = attrgetter("id")


def _tariff_id(detail: TariffDetail) -> int:
    return detail.tariff.id


def sites_response(code: str, page: Page[SiteRecord]) -> query_pb.ListSitesResponse:
    sites, token = encode_page(page, _site_message, _by_id, Listing.SITES, code)
    return query_pb.ListSitesResponse(sites=sites, next_page_token=token, total_size=page.total_size or 0)


def devices_response(code: str, page: Page[DeviceRecord]) -> query_pb.ListDevicesResponse:
    devices, token = encode_page(page, _device_message, _by_id, Listing.DEVICES, code)
    return query_pb.ListDevicesResponse(
        devices=devices, next_page_token=token, total_size=page.total_size or 0
    )


def municipalities_response(code: str, page: Page[MunicipalityRecord]) -> query_pb.ListMunicipalitiesResponse:
    municipalities, token = encode_page(page, _municipality_message, _by_id, Listing.MUNICIPALITIES, code)
    return query_pb.ListMunicipalitiesResponse(
        municipalities=municipalities, next_page_token=token, total_size=page.total_size or 0
    )


def tariffs_response(code: str, page: Page[TariffDetail]) -> query_pb.ListTariffsResponse:
    tariffs, token = encode_page(page, _tariff_view, _tariff_id, Listing.TARIFFS, code)
    return query_pb.ListTariffsResponse(
        tariffs=tariffs, next_page_token=token, total_size=page.total_size or 0
    )


def detail_message(detail: CustomerDetail) -> query_pb.GetCustomerDetailResponse:
    """The detail with the first page of each list; their tokens continue with the List RPCs."""
    code = detail.customer.code
    sites, next_sites = encode_page(detail.sites, _site_message, _by_id, Listing.SITES, code)
    devices, next_devices = encode_page(detail.devices, _device_message, _by_id, Listing.DEVICES, code)
    municipalities, next_municipalities = encode_page(
        detail.municipalities, _municipality_message, _by_id, Listing.MUNICIPALITIES, code
    )
    tariffs, next_tariffs = encode_page(detail.tariffs, _tariff_view, _tariff_id, Listing.TARIFFS, code)
    return query_pb.GetCustomerDetailResponse(
        customer=customer_message(detail.customer),
        sites=sites,
        devices=devices,
        municipalities=municipalities,
        tariffs=tariffs,
        sync=[sync_message(r) for r in detail.sync],
        site_count=detail.sites.total_size or 0,
        device_count=detail.devices.total_size or 0,
        municipality_count=detail.municipalities.total_size or 0,
        tariff_count=detail.tariffs.total_size or 0,
        next_sites_page_token=next_sites,
        next_devices_page_token=next_devices,
        next_municipalities_page_token=next_municipalities,
        next_tariffs_page_token=next_tariffs,
    )
