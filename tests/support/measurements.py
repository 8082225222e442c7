"""Helpers shared by the measurement tests: building batches, pushing them, reading the tables back.

(A module of helpers, no tests; named to sit with the measurement tests it serves.)
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from fleet.v1 import ingest_service_pb2 as ipb
from fleet.v1 import resources_pb2 as rpb
from google.protobuf import timestamp_pb2
from sqlalchemy import Engine, text

from tests.support.clients import Stubs, bearer

RECEIVED = datetime(2026, 1, 5, 11, 0, tzinfo=UTC)
Row = tuple[int, str, datetime, float]


def ts(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def reading(
    device_id: int,
    time: datetime,
    value: float,
    metric: str = "energy_kwh",
    received: datetime = RECEIVED,
) -> rpb.Measurement:
    return rpb.Measurement(
        device_id=device_id, metric=metric, time=ts(time), value=value, received_at=ts(received)
    )


def request(batch_id: int, rows: Iterable[rpb.Measurement]) -> ipb.PushMeasurementsRequest:
    return ipb.PushMeasurementsRequest(batch_id=batch_id, measurements=list(rows))


def push(
    stubs: Stubs, token: str, batches: Iterable[ipb.PushMeasurementsRequest]
) -> list[ipb.PushMeasurementsResponse]:
    """Stream `batches`; every acknowledgement, or the call's RpcError."""
    return list(stubs.ingest.PushMeasurements(iter(list(batches)), metadata=bearer(token), timeout=30))


def push_until_error(
    stubs: Stubs, token: str, batches: Iterable[ipb.PushMeasurementsRequest]
) -> tuple[list[ipb.PushMeasurementsResponse], grpc.RpcError | None]:
    """The acknowledgements received before the stream ended, and its error (None when OK)."""
    acks: list[ipb.PushMeasurementsResponse] = []
    try:
        for ack in stubs.ingest.PushMeasurements(iter(list(batches)), metadata=bearer(token), timeout=30):
            acks.append(ack)
    except grpc.RpcError as error:
        return acks, error
    return acks, None


class HeldStream:
    """A stream that sends its first batch, then holds the stream open until `finish`."""

    def __init__(self, stubs: Stubs, token: str, first: ipb.PushMeasurementsRequest) -> None:
        self._release = threading.Event()
        self._first = first
        self._then: list[ipb.PushMeasurementsRequest] = []
        self.call = stubs.ingest.PushMeasurements(self._requests(), metadata=bearer(token), timeout=30)

    def _requests(self) -> Iterator[ipb.PushMeasurementsRequest]:
        yield self._first
        self._release.wait(20)
        yield from self._then

    def first_ack(self) -> ipb.PushMeasurementsResponse:
        ack: ipb.PushMeasurementsResponse = next(self.call)
        return ack

    def finish(
        self, then: Iterable[ipb.PushMeasurementsRequest] = ()
    ) -> tuple[list[ipb.PushMeasurementsResponse], grpc.RpcError | None]:
        """Send `then`, end the stream; the further acknowledgements and the error, if any."""
        self._then = list(then)
        self._release.set()
        acks: list[ipb.PushMeasurementsResponse] = []
        try:
            acks.extend(self.call)
        except grpc.RpcError as error:
            return acks, error
        return acks, None


def stored_rows(engine: Engine, customer_id: int) -> set[Row]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT device_id, metric, time, value FROM fleet.measurements WHERE customer_id = :c"),
            {"c": customer_id},
        )
        return {(int(d), str(m), t, float(v)) for d, m, t, v in rows}


def count_rows(engine: Engine, table: str = "fleet.measurements") -> int:
    with engine.connect() as conn:
        return int(conn.scalar(text(f"SELECT count(*) FROM {table}")) or 0)


def stored_rollups(
    engine: Engine, customer_id: int
) -> dict[tuple[int, str, datetime], tuple[int, float, float, float]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT device_id, metric, bucket, count, sum, min, max "
                "FROM fleet.measurement_rollups_hourly WHERE customer_id = :c"
            ),
            {"c": customer_id},
        )
        return {
            (int(d), str(m), b): (int(c), float(s), float(lo), float(hi)) for d, m, b, c, s, lo, hi in rows
        }


def expected_buckets(
    rows: Iterable[Row], width: timedelta
) -> dict[tuple[int, str, datetime], tuple[int, float, float, float]]:
    """count/sum/min/max of `rows` per device, metric and UTC bucket of `width` (an hour or a day)."""
    grouped: dict[tuple[int, str, datetime], list[float]] = defaultdict(list)
    for device_id, metric, time, value in rows:
        epoch = datetime(2000, 1, 1, tzinfo=UTC)
        start = epoch + ((time - epoch) // width) * width
        grouped[(device_id, metric, start)].append(value)
    return {k: (len(v), sum(v), min(v), max(v)) for k, v in grouped.items()}


def first_wins(rows: Iterable[Row]) -> dict[tuple[int, str, datetime], float]:
    """The stored value per key when the first write wins."""
    kept: dict[tuple[int, str, datetime], float] = {}
    for device_id, metric, time, value in rows:
        kept.setdefault((device_id, metric, time), value)
    return kept


def approx_equal(
    a: dict[Any, tuple[int, float, float, float]], b: dict[Any, tuple[int, float, float, float]]
) -> bool:
    if a.keys() != b.keys():
        return False
    for key, (count, total, low, high) in a.items():
        other = b[key]
        if count != other[0] or low != other[2] or high != other[3]:
            return False
        if abs(total - other[1]) > 1e-9 * max(1.0, abs(total)):
            return False
    return True
