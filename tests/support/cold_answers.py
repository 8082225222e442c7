"""Every answer a customer's readings feed, over the wire, in a form compared bit for bit.

(A module of helpers, no tests.) The cold-storage tests take `answers(...)` before and after a
compression run and require equality: floats are compared as their IEEE bit patterns (so -0.0
differs from 0.0 and a last-bit change is caught), messages as their deterministic bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import grpc
from fleet.v1 import query_service_pb2 as qpb
from google.protobuf import duration_pb2, timestamp_pb2

from fleet_server.db.session import Database
from fleet_server.store.measurement_reads import Bucket, MeasurementQuery, PointKey, chunk_end, read_chunk
from tests.support.clients import Stubs, bearer

BUCKETS = {Bucket.RAW: qpb.BUCKET_RAW, Bucket.HOUR: qpb.BUCKET_HOUR, Bucket.DAY: qpb.BUCKET_DAY}
_DOUBLE = struct.Struct("<d")


def bits(value: float) -> int:
    """A double's bit pattern: equal bits, equal doubles (and -0.0 != 0.0)."""
    return int.from_bytes(_DOUBLE.pack(value), "little")


def _stamp(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


PointBits = tuple[int, int, int, int, int, int]


def point_bits(points: Sequence[Any]) -> list[PointBits]:
    """Store points `(device, start µs, count, sum, min, max)` with the floats as bits."""
    return [(d, t, c, bits(s), bits(lo), bits(hi)) for d, t, c, s, lo, hi in points]


def wire_points(
    stubs: Stubs, token: str, code: str, metric: str, start: datetime, end: datetime, bucket: Bucket
) -> list[PointBits] | str:
    """QueryMeasurements' points (floats as bits), or the error's details when refused."""
    request = qpb.QueryMeasurementsRequest(
        code=code, metric=metric, start=_stamp(start), end=_stamp(end), bucket=BUCKETS[bucket]
    )
    try:
        chunks = list(stubs.query.QueryMeasurements(request, metadata=bearer(token), timeout=60))
    except grpc.RpcError as exc:  # a refusal is an answer too, compared as its code and text
        return f"{exc.code()}: {exc.details()}"
    return [
        (
            p.device_id,
            p.bucket_start.seconds * 1_000_000 + p.bucket_start.nanos // 1000,
            p.count,
            bits(p.sum),
            bits(p.min),
            bits(p.max),
        )
        for chunk in chunks
        for p in chunk.points
    ]


def chunked_points(db: Database, query: MeasurementQuery, limit: int) -> list[PointBits]:
    """The store's answer read `limit` points at a time, as the query stream reads it."""
    out: list[PointBits] = []
    after: PointKey | None = None
    while True:
        points = read_chunk(db, query, after, limit)
        out.extend(point_bits(points))
        if len(points) < limit:
            return out
        after = chunk_end(points)


def summary(stubs: Stubs, token: str, metric: str, start: datetime, end: datetime) -> list[tuple[Any, ...]]:
    reply = stubs.query.SummarizeFleet(
        qpb.SummarizeFleetRequest(metric=metric, start=_stamp(start), end=_stamp(end)),
        metadata=bearer(token),
        timeout=60,
    )
    return [(c.code, c.devices, c.devices_seen, c.rows, bits(c.sum)) for c in reply.customers]


def costs(stubs: Stubs, token: str, code: str, start: datetime, end: datetime) -> bytes:
    reply = stubs.query.ComputeCosts(
        qpb.ComputeCostsRequest(codes=[code], start=_stamp(start), end=_stamp(end)),
        metadata=bearer(token),
        timeout=60,
    )
    return bytes(reply.SerializeToString(deterministic=True))


def detail(stubs: Stubs, token: str, code: str) -> bytes:
    reply = stubs.query.GetCustomerDetail(
        qpb.GetCustomerDetailRequest(code=code), metadata=bearer(token), timeout=60
    )
    return bytes(reply.SerializeToString(deterministic=True))


def newest_readings(
    stubs: Stubs, token: str, code: str
) -> tuple[tuple[int, int], list[tuple[int, int, int]]]:
    """Fleet health's view of the customer's readings: the newest reading of any device, and
    (device, seconds, nanos) of the newest reading of each device silent for a minute (all of
    them, for readings in the past)."""
    window = duration_pb2.Duration()
    window.FromSeconds(60)
    health = stubs.query.GetFleetHealth(
        qpb.GetFleetHealthRequest(code=code, silent_after=window), metadata=bearer(token), timeout=60
    )
    (customer,) = health.customers
    newest = (customer.newest_reading_at.seconds, customer.newest_reading_at.nanos)
    reply = stubs.query.ListSilentDevices(
        qpb.ListSilentDevicesRequest(code=code, silent_after=window, page_size=1000),
        metadata=bearer(token),
        timeout=60,
    )
    return newest, [(d.device_id, d.last_reading_at.seconds, d.last_reading_at.nanos) for d in reply.devices]
