"""Cold storage figures: bytes per reading before and after compression, compress rate, and the
same queries over compressed days as ratios to the same queries over rows, all in one run.

The series is what meters send (issue 14): 15-minute `energy_kwh` rounded to 3 decimals,
`power_w` a random walk rounded to 0.1, 1 % of readings missing, 0-2 s of jitter on every
timestamp at millisecond resolution (a portal's clock; the server keeps microseconds, so the
codec sees millisecond-grained offsets), 90 days x 50 devices from COLD_START, all of it far older
than the hot window. A third metric of full-precision random floats (another customer) shows the
codec's worst case for values.

This section runs first, on an empty database: the row layout is then what every relation
holds (partitions + rollups after VACUUM ANALYZE), and after the compression run everything the
compressed days take is measured the same way: `fleet.measurements_compressed` with its TOAST
and index, plus whatever is left in the partitions and the rollup table, after VACUUM.

Queries are timed through the server (gRPC, the stream read to its end), the same request on the
same data before and after the compression run, several times each; each figure is the median
after over the median before. Their answers are compared too: a figure over different answers
would be meaningless, so a difference fails the section.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import numpy as np
import psycopg
from fleet.v1 import ingest_service_pb2 as ipb
from fleet.v1 import query_service_pb2 as qpb
from fleet.v1 import query_service_pb2_grpc, resources_pb2
from google.protobuf import timestamp_pb2

from bench.dataset import CHUNK, bearer, ingest_stub, push_tou_fleet, ts
from fleet_server.store import cold_codec

COLD_START = datetime(2024, 1, 1, tzinfo=UTC)  # months of their own, apart from the other sections'
STEP_US = 15 * 60 * 1_000_000
DAY_US = 86_400_000_000
HOT_WINDOW = timedelta(days=7)
REALISTIC = ("energy_kwh", "power_w")
RANDOM = "random_float"

Series = dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]


def _unix_us(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000


def series(devices: int, days: int, metrics: tuple[str, ...], seed: int) -> Series:
    """(device, metric) -> (times in Unix microseconds, values), realistic as the module says."""
    rng = np.random.default_rng(seed)
    slots = days * 96
    start = _unix_us(COLD_START)
    hour_of_day = (np.arange(slots) % 96) / 4
    out: Series = {}
    for device in range(1, devices + 1):
        for metric in metrics:
            kept = rng.random(slots) >= 0.01  # 1 % missing
            jitter_ms = rng.integers(0, 2001, slots)  # 0-2 s, millisecond resolution
            times = start + np.arange(slots, dtype=np.int64) * STEP_US + jitter_ms * 1000
            if metric == "energy_kwh":
                base = rng.uniform(0.05, 0.6)
                shape = 1 + 0.6 * np.sin(2 * np.pi * (hour_of_day - 9) / 24)
                raw = base * shape * rng.lognormal(0, 0.25, slots)
                values = np.round(raw * 1000) / 1000
            elif metric == "power_w":
                walk = np.abs(rng.uniform(500, 4000) + np.cumsum(rng.normal(0, 25, slots)))
                values = np.round(walk * 10) / 10
            else:
                values = rng.random(slots) * 10 ** rng.uniform(0, 4)
            out[(device, metric)] = (times[kept], values[kept])
    return out


def _readings(data: Series) -> int:
    return sum(len(t) for t, _ in data.values())


def _stamp(micros: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=micros // 1_000_000, nanos=micros % 1_000_000 * 1000)


def push(target: str, token: str, data: Series) -> int:
    """Push in time order across devices, as a portal does; returns readings accepted."""
    received = ts(datetime.now(UTC))
    keys = sorted(data)
    times = np.concatenate([data[k][0] for k in keys])
    values = np.concatenate([data[k][1] for k in keys])
    devices = np.concatenate([np.full(len(data[k][0]), k[0]) for k in keys])
    metrics = [k[1] for k in keys for _ in range(len(data[k][0]))]
    order = np.argsort(times, kind="stable")

    def requests() -> Iterator[ipb.PushMeasurementsRequest]:
        for batch_id, first in enumerate(range(0, len(order), CHUNK), start=1):
            rows = [
                resources_pb2.Measurement(
                    device_id=int(devices[i]),
                    metric=metrics[i],
                    time=_stamp(int(times[i])),
                    value=float(values[i]),
                    received_at=received,
                )
                for i in order[first : first + CHUNK]
            ]
            yield ipb.PushMeasurementsRequest(batch_id=batch_id, measurements=rows)

    channel, stub = ingest_stub(target)
    accepted = sum(int(ack.accepted) for ack in stub.PushMeasurements(requests(), metadata=bearer(token)))
    channel.close()
    return accepted


# -- the unit: a month or a day, measured on the codec alone ---------------------------------------


def _groups(times: np.ndarray, span: str) -> list[np.ndarray]:
    """Indexes of each UTC day (`day`) or month (`month`) of ascending `times`."""
    if span == "day":
        keys = times // DAY_US
    else:
        keys = times.astype("datetime64[us]").astype("datetime64[M]").astype(np.int64)
    cuts = np.flatnonzero(np.diff(keys)) + 1
    return np.split(np.arange(len(times)), cuts)


def unit_choice(data: Series, repeats: int = 3) -> dict[str, Any]:
    """Bytes per reading and decode time of month units against day units, the same readings."""
    figures: dict[str, Any] = {}
    for span in ("month", "day"):
        payloads: list[bytes] = []
        readings = 0
        for times, values in data.values():
            for index in _groups(times, span):
                t, v = times[index], values[index]
                payloads.append(cold_codec.encode(t, v, cold_codec.derived_hours(t, v)))
                readings += len(t)
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            for payload in payloads:
                cold_codec.decode(payload)
            best = min(best, time.perf_counter() - started)
        figures[span] = {
            "units": len(payloads),
            "readings_per_unit": readings / len(payloads),
            "bytes_per_reading": sum(map(len, payloads)) / readings,
            "decode_us_per_unit": best / len(payloads) * 1e6,
            "decode_ns_per_reading": best / readings * 1e9,
        }
    return figures


# -- sizes ---------------------------------------------------------------------------------------

_SIZES = """
SELECT
  (SELECT coalesce(sum(pg_relation_size(relid)), 0) FROM pg_partition_tree('fleet.measurements')),
  (SELECT coalesce(sum(pg_indexes_size(relid)), 0) FROM pg_partition_tree('fleet.measurements')),
  (SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('fleet.measurements')),
  pg_total_relation_size('fleet.measurement_rollups_hourly'),
  pg_relation_size('fleet.measurement_rollups_hourly'),
  (SELECT count(*) FROM fleet.measurements),
  (SELECT count(*) FROM fleet.measurement_rollups_hourly),
  pg_relation_size('fleet.measurements_compressed'),
  coalesce((SELECT pg_total_relation_size(reltoastrelid) FROM pg_class
            WHERE oid = 'fleet.measurements_compressed'::regclass), 0),
  pg_indexes_size('fleet.measurements_compressed'),
  pg_total_relation_size('fleet.measurements_compressed')
"""
_SIZE_NAMES = (
    "partitions_heap",
    "partitions_indexes",
    "partitions",
    "rollups",
    "rollups_heap",
    "rows_left",
    "rollup_rows_left",
    "compressed_heap",
    "compressed_toast",
    "compressed_indexes",
    "compressed",
)


def sizes(dsn: str) -> dict[str, int]:
    """Every relation that holds readings, after VACUUM ANALYZE (the steady state autovacuum keeps)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in ("measurements", "measurement_rollups_hourly", "measurements_compressed"):
            conn.execute(f"VACUUM ANALYZE fleet.{table}")
        row = conn.execute(_SIZES).fetchone()
    assert row is not None
    return dict(zip(_SIZE_NAMES, (int(v) for v in row), strict=True))


# -- queries -------------------------------------------------------------------------------------


def _query_stub(target: str) -> tuple[grpc.Channel, query_service_pb2_grpc.FleetQueryServiceStub]:
    channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    return channel, query_service_pb2_grpc.FleetQueryServiceStub(channel)


def _points(
    stub: Any, meta: Any, code: str, bucket: Any, start: datetime, end: datetime
) -> Callable[[], Any]:
    request = qpb.QueryMeasurementsRequest(
        code=code, metric="energy_kwh", start=ts(start), end=ts(end), bucket=bucket
    )

    def call() -> list[tuple[int, int, int, float, float, float]]:
        return [
            (p.device_id, p.bucket_start.ToMicroseconds(), p.count, p.sum, p.min, p.max)
            for reply in stub.QueryMeasurements(request, metadata=meta, timeout=300)
            for p in reply.points
        ]

    return call


def _costs(stub: Any, meta: Any, code: str, start: datetime, end: datetime) -> Callable[[], Any]:
    request = qpb.ComputeCostsRequest(codes=[code], start=ts(start), end=ts(end))

    def call() -> bytes:
        return bytes(stub.ComputeCosts(request, metadata=meta, timeout=300).SerializeToString())

    return call


def _time(call: Callable[[], Any], rounds: int) -> tuple[list[float], Any]:
    answer = call()  # warm-up, and the answer to compare
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return seconds, answer


def ratio_figure(before: list[float], after: list[float], what: str) -> dict[str, Any]:
    base = statistics.median(before)
    ratios = [a / base for a in after]
    return {
        "median": statistics.median(after) / base,
        "min": min(ratios),
        "max": max(ratios),
        "rows_median_s": base,
        "compressed_median_s": statistics.median(after),
        "rounds": len(after),
        "what": what,
    }


def _customer_id(dsn: str, code: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT id FROM fleet.customers WHERE code = %s", (code,)).fetchone()
    assert row is not None
    return int(row[0])


# -- the section ---------------------------------------------------------------------------------


def measure(env: Any, devices: int, days: int, rounds: int) -> dict[str, Any]:
    from fleet_server.db.session import Database
    from fleet_server.domain.compression import compress
    from fleet_server.domain.storage import fleet_storage

    dsn = env.url.replace("postgresql+psycopg://", "postgresql://")
    code, random_code = "BENCH_COLD", "BENCH_RAND"
    token = env.customer(code)
    push_tou_fleet(env.target, token, devices=devices)
    data = series(devices, days, REALISTIC, seed=14)
    readings = _readings(data)
    accepted = push(env.target, token, data)
    if accepted != readings:
        raise RuntimeError(f"pushed {readings} readings, {accepted} accepted")
    rows = sizes(dsn)

    channel, stub = _query_stub(env.target)
    meta = bearer(env.admin_token)
    end = COLD_START + timedelta(days=days)
    week = COLD_START + timedelta(days=min(days - 7, 38))  # a week inside a month unit
    month = COLD_START + timedelta(days=min(days - 30, 31))
    calls = {
        "hour": _points(stub, meta, code, qpb.BUCKET_HOUR, COLD_START, end),
        "raw": _points(stub, meta, code, qpb.BUCKET_RAW, week, week + timedelta(days=7)),
        "costs": _costs(stub, meta, code, month, month + timedelta(days=30)),
    }
    before = {name: _time(call, rounds) for name, call in calls.items()}

    started = time.perf_counter()
    report = compress(
        env.url, datetime.now(UTC), HOT_WINDOW, _customer_id(dsn, code), truncate_grace=timedelta(0)
    )
    compress_s = time.perf_counter() - started
    cold = sizes(dsn)
    after = {name: _time(call, rounds) for name, call in calls.items()}
    for name in calls:
        if before[name][1] != after[name][1]:
            raise RuntimeError(f"the {name} answer changed with compression")

    # Random floats: another customer, compressed on its own; its share of the compressed table
    # is read the way `fleetctl fleet storage` reads it (payloads + a share of the rest by units).
    random_token = env.customer(random_code)
    random_data = series(max(devices // 5, 1), days, (RANDOM,), seed=15)
    random_readings = push(env.target, random_token, random_data)
    compress(
        env.url, datetime.now(UTC), HOT_WINDOW, _customer_id(dsn, random_code), truncate_grace=timedelta(0)
    )
    sizes(dsn)
    db = Database.from_url(env.url, 1)
    shown = db.transaction(fleet_storage, random_code, 0, None, datetime.now(UTC))
    random_use = shown.customers.items[0].use
    db.close()
    channel.close()

    row_bytes = rows["partitions"] + rows["rollups"]
    # What still holds those days: the unit table, what is left of their month partitions, and
    # the rollup rows left for them (none once every unit is written), at the row layout's size.
    rollup_row_bytes = rows["rollups"] / max(rows["rollup_rows_left"], 1)
    held = cold["compressed"] + cold["partitions"] + cold["rollup_rows_left"] * rollup_row_bytes
    # The rollup table is shared by every customer's hot hours: VACUUM gives its emptied heap
    # back, but a B-tree keeps its emptied pages for new entries (new hot hours reuse them).
    rollup_free = cold["rollups"] - cold["rollup_rows_left"] * rollup_row_bytes
    series_what = f"{days} d x {devices} devices x 15 min, energy_kwh + power_w, {readings:,} readings"
    compressed_readings = report.readings
    return {
        "cold_bytes_per_reading": {
            "value": held / readings,
            "rows": row_bytes / readings,
            "compressed_table": cold["compressed"] / readings,
            "left_in_rows": (held - cold["compressed"]) / readings,
            "rollup_index_free": rollup_free / readings,
            "strict": (cold["compressed"] + cold["partitions"] + cold["rollups"]) / readings,
            "sizes_rows": rows,
            "sizes_compressed": cold,
            "what": f"{series_what}; compressed table with TOAST and index + what is left of the "
            f"partitions and rollup rows for those days, after VACUUM; rows = partitions + rollups after "
            f"VACUUM ANALYZE; the rollup index keeps {rollup_free / readings:.1f} B/reading of emptied "
            f"pages for new hot hours (counting them: {(held + rollup_free) / readings:.1f} B)",
        },
        "cold_random_bytes_per_reading": {
            "value": random_use.compressed_bytes / max(random_use.compressed_readings, 1),
            "readings": random_readings,
            "what": f"{random_readings:,} full-precision random floats (plus jittered times), payload + "
            "share of the table's overhead as fleetctl fleet storage counts it",
        },
        "cold_compress_rate": {
            "readings_per_s": compressed_readings / compress_s,
            "units": report.units,
            "truncated_partitions": len(report.truncated),
            "seconds": compress_s,
            "readings": compressed_readings,
            "portal_year_minutes": 500 * 35_040 * len(REALISTIC) / (compressed_readings / compress_s) / 60,
            "what": "one compress run over every settled day, in-process against the bench database",
        },
        "cold_hour_query_ratio": ratio_figure(
            before["hour"][0], after["hour"][0], f"QueryMeasurements HOUR, {days} d x {devices} devices"
        ),
        "cold_raw_query_ratio": ratio_figure(
            before["raw"][0], after["raw"][0], f"QueryMeasurements RAW, 7 d x {devices} devices"
        ),
        "cold_costs_ratio": ratio_figure(
            before["costs"][0], after["costs"][0], f"ComputeCosts, 30 d x {devices} devices"
        ),
        "cold_unit_choice": unit_choice({k: v for k, v in data.items() if k[0] <= 10}),
    }
