"""FleetIngestService on the wire: pushed messages in as domain items and column batches, results out.

Measurements are decoded in bulk: a request becomes columns, never row objects. Reading
protobuf fields from Python costs a few hundred nanoseconds per access, so the decode pulls
each row's five fields with one `attrgetter` call and transposes with `zip`, which is about
twice as fast as a Python loop over the rows (measured on upb 7.x; see DESIGN.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Sequence
from operator import attrgetter

from fleet.v1 import ingest_service_pb2 as ingest_pb
from fleet.v1 import resources_pb2
from google.protobuf import timestamp_pb2

from fleet_server.domain.measurements import FIELD_RECEIVED_AT, FIELD_TIME
from fleet_server.domain.reference import SyncSummary
from fleet_server.domain.reference_validation import (
    DEFAULT_TIMEZONE,
    DeviceItem,
    MunicipalityItem,
    PeriodItem,
    SiteItem,
    TariffItem,
)
from fleet_server.rpc.wellknown import check_timestamp_columns, optional_datetime
from fleet_server.store.measurements import BatchResult, MeasurementBatch
from fleet_server.store.timestamps import UNIX_TO_PG_US, pg_micros_from_unix

_ROW_FIELDS = attrgetter("device_id", "metric", "value", "time", "received_at")
_STAMP_FIELDS = attrgetter("seconds", "nanos")
_DECODE_ROWS = 1000  # rows decoded between two turns of the event loop


def site_item(site: resources_pb2.Site) -> SiteItem:
    return SiteItem(
        id=site.id,
        name=site.name,
        address=site.address,
        # Empty means UTC on the wire; saying so here shares one string among all such sites.
        timezone=site.timezone or DEFAULT_TIMEZONE,
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


def tariff_item(tariff: resources_pb2.Tariff, path: str) -> TariffItem:
    """The tariff as the domain checks it; `path` names it in errors (`tariffs[3]`)."""
    return TariffItem(
        id=tariff.id,
        municipality_id=tariff.municipality_id,
        name=tariff.name,
        is_active=tariff.is_active,
        effective_from=optional_datetime(tariff, "effective_from", f"{path}."),
        effective_to=optional_datetime(tariff, "effective_to", f"{path}."),
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


def decode_batch(request: ingest_pb.PushMeasurementsRequest) -> MeasurementBatch:
    """The request's rows as columns (times in microseconds since 2000-01-01, see the domain)."""
    steps = _decoding(request)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


async def decode_batch_yielding(request: ingest_pb.PushMeasurementsRequest) -> MeasurementBatch:
    """`decode_batch`, giving the event loop a turn between chunks of `_DECODE_ROWS` rows.

    Decoding is Python work, about 7 µs a row on an idle core: a back-fill's 5,000-row batch
    decoded whole held the event loop for 30 ms, and for 100-500 ms on busy cores (`make load`),
    while every other call of the process waited. A chunk at a time, other calls' events run in
    between. Not a thread: one that decodes holds the interpreter lock, and the event loop,
    which lets it go at every poll, waited up to a switch interval (5 ms) at every wake-up to
    get it back. A batch of one chunk (a live portal's) is decoded without a pause.
    """
    steps = _decoding(request)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        await asyncio.sleep(0)


def _decoding(request: ingest_pb.PushMeasurementsRequest) -> Generator[None, None, MeasurementBatch]:
    """Decode `request`, pausing (`yield`) before each chunk after the first.

    Rows are decoded `_DECODE_ROWS` at a time: the transposition makes a tuple and two
    Timestamp objects per row, which for a whole 4 MiB batch (140,000 of the smallest rows)
    would briefly cost more than the columns themselves. The batch keeps no reference to the
    request: it lives until it is written, and the protobuf can go at once.
    """
    rows = request.measurements
    devices: list[int] = []
    metrics: list[str] = []
    values: list[float] = []
    times: list[int] = []
    received: list[int] = []
    for start in range(0, len(rows), _DECODE_ROWS):
        if start:
            yield
        chunk = rows[start : start + _DECODE_ROWS]
        chunk_devices, chunk_metrics, chunk_values, stamps, received_stamps = zip(
            *map(_ROW_FIELDS, chunk), strict=True
        )
        devices += chunk_devices
        metrics += chunk_metrics
        values += chunk_values
        times += _stamp_column(stamps, FIELD_TIME, start)
        received += _stamp_column(received_stamps, FIELD_RECEIVED_AT, start)
    if not devices:
        return MeasurementBatch([], [], [], [], [])
    unset = _unset_stamps(rows, FIELD_TIME, times) | _unset_stamps(rows, FIELD_RECEIVED_AT, received)
    return MeasurementBatch(
        device_ids=devices,
        metrics=metrics,
        times=times,
        values=values,
        received=received,
        is_unset=lambda index, field: (index, field) in unset,
    )


def _stamp_column(stamps: Sequence[timestamp_pb2.Timestamp], field: str, first: int) -> list[int]:
    """A column of Timestamps as PostgreSQL microseconds, refused whole if any is out of its range
    (`first` is the index of the column's first row in the batch, for the error's field path)."""
    seconds, nanos = zip(*map(_STAMP_FIELDS, stamps), strict=True)
    check_timestamp_columns(seconds, nanos, lambda i: f"measurements[{first + i}].{field}")
    return pg_micros_from_unix(zip(seconds, nanos, strict=True))


# An unset Timestamp reads as the Unix epoch: that instant in PostgreSQL microseconds.
UNSET_STAMP = -UNIX_TO_PG_US


def _unset_stamps(
    rows: Sequence[resources_pb2.Measurement], field: str, micros: list[int]
) -> set[tuple[int, str]]:
    """(row, field) of every unset timestamp; rows are looked at only when one reads as the epoch."""
    if min(micros) > UNSET_STAMP:
        return set()
    return {
        (i, field) for i, value in enumerate(micros) if value == UNSET_STAMP and not rows[i].HasField(field)
    }


def ack(batch_id: int, result: BatchResult) -> ingest_pb.PushMeasurementsResponse:
    return ingest_pb.PushMeasurementsResponse(
        batch_id=batch_id, accepted=result.accepted, duplicates=result.duplicates
    )
