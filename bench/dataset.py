"""Loading benchmark data through the real server: reference data and 15-minute series."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
from fleet.v1 import ingest_service_pb2 as ipb
from fleet.v1 import ingest_service_pb2_grpc, resources_pb2
from google.protobuf import timestamp_pb2

SERIES_START = datetime(2025, 3, 1, tzinfo=UTC)
STEP = timedelta(minutes=15)
CHUNK = 5_000


def ts(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def ingest_stub(target: str) -> tuple[grpc.Channel, ingest_service_pb2_grpc.FleetIngestServiceStub]:
    channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
    return channel, ingest_service_pb2_grpc.FleetIngestServiceStub(channel)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def push_tou_fleet(target: str, token: str, devices: int, sites: int = 5) -> None:
    """A municipality, a Peak/Off-Peak TOU tariff, `sites` sites on it and `devices` devices."""
    channel, stub = ingest_stub(target)
    meta = bearer(token)
    stub.PushMunicipalities(
        iter(
            [
                ipb.PushMunicipalitiesRequest(
                    municipalities=[resources_pb2.Municipality(id=1, name="Bench City")]
                )
            ]
        ),
        metadata=meta,
    )
    tariff = resources_pb2.Tariff(
        id=1,
        municipality_id=1,
        name="Bench TOU",
        is_active=True,
        effective_from=ts(datetime(2024, 1, 1, tzinfo=UTC)),
        default_rate="2.10",
        fixed_charge="450.00",
        vat_percent="15",
        currency="ZAR",
        periods=[
            resources_pb2.TariffPeriod(
                id=1, name="Peak", days_of_week=0b0011111, start_time="17:00", end_time="20:00", rate="3.75"
            ),
            resources_pb2.TariffPeriod(
                id=2,
                name="Off-Peak",
                days_of_week=0b1100000,
                start_time="00:00",
                end_time="23:59",
                rate="1.20",
            ),
            resources_pb2.TariffPeriod(
                id=3, name="Night", days_of_week=0b0011111, start_time="22:00", end_time="06:00", rate="0.95"
            ),
        ],
    )
    stub.PushTariffs(iter([ipb.PushTariffsRequest(tariffs=[tariff])]), metadata=meta)
    stub.PushSites(
        iter(
            [
                ipb.PushSitesRequest(
                    sites=[
                        resources_pb2.Site(
                            id=s,
                            name=f"Site {s}",
                            timezone="Africa/Johannesburg",
                            municipality_id=1,
                            tariff_id=1,
                        )
                        for s in range(1, sites + 1)
                    ]
                )
            ]
        ),
        metadata=meta,
    )
    stub.PushDevices(
        iter(
            [
                ipb.PushDevicesRequest(
                    devices=[
                        resources_pb2.Device(id=d, site_id=(d - 1) % sites + 1, name=f"Meter {d}")
                        for d in range(1, devices + 1)
                    ]
                )
            ]
        ),
        metadata=meta,
    )
    channel.close()


def _series(devices: int, days: int, metric: str) -> Iterator[resources_pb2.Measurement]:
    received = ts(datetime.now(UTC) - timedelta(minutes=1))
    for step in range(days * 96):
        moment = ts(SERIES_START + STEP * step)
        for device in range(1, devices + 1):
            yield resources_pb2.Measurement(
                device_id=device,
                metric=metric,
                time=moment,
                value=0.2 + (device + step) % 7 / 20,
                received_at=received,
            )


def push_series(target: str, token: str, devices: int, days: int, metric: str = "energy_kwh") -> int:
    """`days` of 15-minute readings for `devices` devices from SERIES_START; returns rows accepted."""
    channel, stub = ingest_stub(target)

    def requests() -> Iterator[ipb.PushMeasurementsRequest]:
        batch: list[resources_pb2.Measurement] = []
        batch_id = 0
        for row in _series(devices, days, metric):
            batch.append(row)
            if len(batch) == CHUNK:
                batch_id += 1
                yield ipb.PushMeasurementsRequest(batch_id=batch_id, measurements=batch)
                batch = []
        if batch:
            yield ipb.PushMeasurementsRequest(batch_id=batch_id + 1, measurements=batch)

    accepted = sum(int(ack.accepted) for ack in stub.PushMeasurements(requests(), metadata=bearer(token)))
    channel.close()
    return accepted
