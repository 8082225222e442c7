"""Ingest figures: rows/s through the real server / rows/s of a binary COPY of the same rows.

Both sides run in their own process, send the same pre-built rows (new keys every round) and
commit every 500 rows; rounds alternate server / COPY so drift on a noisy machine hits both.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

BATCH = 500
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=15)


def make_rows(
    round_index: int, devices: int, steps: int, lane: int = 0
) -> list[tuple[int, str, datetime, float, datetime]]:
    """Rows of one round: `devices` x `steps` 15-minute readings, on times no other round uses."""
    start = EPOCH + STEP * steps * (round_index * 4 + lane)
    received = datetime.now(UTC)
    return [
        (device, "energy_kwh", start + STEP * step, 0.25 + (device * 7 + step) % 13 / 10, received)
        for step in range(steps)
        for device in range(1, devices + 1)
    ]


def _stream_worker(
    target: str, token: str, round_index: int, devices: int, steps: int, lane: int, out: Any
) -> None:
    import grpc
    from fleet.v1 import ingest_service_pb2, ingest_service_pb2_grpc, resources_pb2
    from google.protobuf import timestamp_pb2

    def ts(value: datetime) -> timestamp_pb2.Timestamp:
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(value)
        return stamp

    rows = make_rows(round_index, devices, steps, lane)
    requests = [
        ingest_service_pb2.PushMeasurementsRequest(
            batch_id=i // BATCH + 1,
            measurements=[
                resources_pb2.Measurement(device_id=d, metric=m, time=ts(t), value=v, received_at=ts(r))
                for d, m, t, v, r in rows[i : i + BATCH]
            ],
        )
        for i in range(0, len(rows), BATCH)
    ]
    channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
    stub = ingest_service_pb2_grpc.FleetIngestServiceStub(channel)
    grpc.channel_ready_future(channel).result(timeout=10)
    started = time.perf_counter()
    accepted = 0
    for ack in stub.PushMeasurements(iter(requests), metadata=(("authorization", f"Bearer {token}"),)):
        accepted += ack.accepted
    elapsed = time.perf_counter() - started
    channel.close()
    out.put((accepted, elapsed))


def _copy_worker(url: str, round_index: int, devices: int, steps: int, out: Any) -> None:
    import psycopg

    rows = make_rows(round_index, devices, steps)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        started = time.perf_counter()
        for i in range(0, len(rows), BATCH):
            with (
                conn.cursor() as cur,
                cur.copy(
                    "COPY bench.copy_baseline (customer_id, device_id, metric, time, value, received_at) "
                    "FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(["int8", "int8", "text", "timestamptz", "float8", "timestamptz"])
                for d, m, t, v, r in rows[i : i + BATCH]:
                    copy.write_row((1, d, m, t, v, r))
            conn.commit()
        elapsed = time.perf_counter() - started
    out.put((len(rows), elapsed))


def create_baseline_table(url: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench.copy_baseline (customer_id bigint, device_id bigint, "
            "metric text, time timestamptz, value double precision, received_at timestamptz, "
            "PRIMARY KEY (customer_id, device_id, metric, time))"
        )


def _run(target: Any, *args: Any) -> list[tuple[int, float]]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, out)) for a in args]
    for p in procs:
        p.start()
    results: list[tuple[int, float]] = []
    while len(results) < len(procs):
        try:
            results.append(out.get(timeout=1))
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):
                raise RuntimeError("a benchmark worker failed (its traceback is above)") from None
    for p in procs:
        p.join(30)
    return results


def measure(env: Any, rounds: int, devices: int, steps: int) -> dict[str, Any]:
    """Single-stream and two-customer ingest ratios against COPY, alternating rounds."""
    create_baseline_table(env.url)
    token_a = env.customer("BENCH_A")
    token_b = env.customer("BENCH_B")
    # Warm-up: creates the partitions the rounds touch and warms both paths.
    _run(_stream_worker, (env.target, token_a, rounds, devices, steps, 0))
    metrics_target = env.start_metrics_server()
    _run(_stream_worker, (metrics_target, token_a, rounds + 1, devices, steps, 0))
    single: list[float] = []
    with_metrics: list[float] = []
    double: list[float] = []
    copy_rates: list[float] = []
    for r in range(rounds):
        ((n, s),) = _run(_stream_worker, (env.target, token_a, r, devices, steps, 1))
        server_rate = n / s
        ((c, cs),) = _run(_copy_worker, (env.url, r, devices, steps))
        copy_rate = c / cs
        ((m, ms),) = _run(_stream_worker, (metrics_target, token_a, r, devices, steps, 3))
        with_metrics.append(m / ms / copy_rate)
        if m != devices * steps:
            raise RuntimeError(f"the server with metrics accepted {m} of {devices * steps} new rows")
        pair = _run(
            _stream_worker,
            (env.target, token_a, r, devices, steps, 2),
            (env.target, token_b, r, devices, steps, 2),
        )
        pair_rate = sum(n for n, _ in pair) / max(s for _, s in pair)
        copy_rates.append(copy_rate)
        single.append(server_rate / copy_rate)
        double.append(pair_rate / copy_rate)
        if n != devices * steps:
            raise RuntimeError(f"server accepted {n} of {devices * steps} new rows")
    rows = devices * steps
    return {
        "ingest_ratio": _summary(single, f"{rounds} rounds x {rows} rows, batches of {BATCH}"),
        "ingest_ratio_metrics_on": _summary(
            with_metrics, "as ingest ratio, through a server with --metrics-listen, same rounds"
        ),
        "ingest_2_customers_ratio": _summary(double, f"{rounds} rounds x 2 x {rows} rows"),
        "copy_rows_per_s": _summary(copy_rates, "binary COPY, commit per 500 rows"),
    }


def _summary(values: list[float], what: str) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "rounds": len(values),
        "what": what,
    }
