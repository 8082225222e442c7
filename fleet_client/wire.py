"""Portal rows → `fleet.v1` messages: the measurement batch for speed, the reference sets for clarity.

A back-fill builds hundreds of thousands of readings per second, so `measurement_batch` sets
fields in place and repeats the timestamp arithmetic inline instead of calling a helper.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from fleet.v1 import ingest_service_pb2 as pb
from fleet.v1 import resources_pb2 as res
from google.protobuf import timestamp_pb2

from fleet_client.rows import DeviceRow, MeasurementRow, MunicipalityRow, PeriodRow, SiteRow, TariffRow

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _set_timestamp(ts: timestamp_pb2.Timestamp, value: datetime) -> None:
    """Exact integer arithmetic (no float seconds); naive datetimes are taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    ts.seconds = delta.days * 86_400 + delta.seconds
    ts.nanos = delta.microseconds * 1000


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    _set_timestamp(ts, value)
    return ts


def site(row: SiteRow) -> res.Site:
    msg = res.Site(id=row.id, name=row.name, address=row.address, timezone=row.timezone)
    if row.municipality_id is not None:
        msg.municipality_id = row.municipality_id
    if row.tariff_id is not None:
        msg.tariff_id = row.tariff_id
    return msg


def device(row: DeviceRow) -> res.Device:
    return res.Device(
        id=row.id, site_id=row.site_id, name=row.name, serial_number=row.serial_number, kind=row.kind
    )


def municipality(row: MunicipalityRow) -> res.Municipality:
    return res.Municipality(id=row.id, name=row.name, region=row.region)


def period(row: PeriodRow) -> res.TariffPeriod:
    return res.TariffPeriod(
        id=row.id,
        name=row.name,
        days_of_week=row.days_of_week,
        start_time=row.start_time,
        end_time=row.end_time,
        rate=str(row.rate),
    )


def tariff(row: TariffRow) -> res.Tariff:
    """A tariff with its periods in id order, so equal period sets give equal messages."""
    msg = res.Tariff(
        id=row.id,
        municipality_id=row.municipality_id,
        name=row.name,
        is_active=row.is_active,
        effective_from=timestamp(row.effective_from),
        default_rate=str(row.default_rate),
        fixed_charge=str(row.fixed_charge),
        vat_percent=str(row.vat_percent),
        currency=row.currency,
        periods=[period(p) for p in sorted(row.periods, key=lambda p: p.id)],
    )
    if row.effective_to is not None:
        _set_timestamp(msg.effective_to, row.effective_to)
    return msg


def measurement_batch(batch_id: int, rows: Sequence[MeasurementRow]) -> pb.PushMeasurementsRequest:
    """One batch request; fields are set in place (no intermediate Timestamp objects)."""
    request = pb.PushMeasurementsRequest(batch_id=batch_id)
    add = request.measurements.add
    epoch = _EPOCH
    for device_id, metric, time, value, received_at in rows:
        m = add(device_id=device_id, metric=metric, value=value)
        delta = time - epoch
        ts = m.time
        ts.seconds = delta.days * 86_400 + delta.seconds
        ts.nanos = delta.microseconds * 1000
        delta = received_at - epoch
        ts = m.received_at
        ts.seconds = delta.days * 86_400 + delta.seconds
        ts.nanos = delta.microseconds * 1000
    return request
