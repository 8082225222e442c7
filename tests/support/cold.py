"""Helpers of the cold-storage tests: write readings straight through the store, read every reading back.

(A module of helpers, no tests.) `all_readings` is the ground truth the tests compare: every
reading of a customer, hot rows and decoded units together, so "exactly once" is checkable.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from fleet_server.db.session import Database
from fleet_server.store import cold_codec
from fleet_server.store.measurements import BatchResult, BatchWriter, MeasurementBatch
from fleet_server.store.partitions import Partitions
from fleet_server.store.timestamps import UNIX_TO_PG_US, to_pg_micros

Reading = tuple[int, str, int, float]  # device, metric, unix microseconds, value
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


def batch(rows: list[tuple[int, str, datetime, float]], received: datetime = NOW) -> MeasurementBatch:
    got = to_pg_micros(received)
    return MeasurementBatch(
        device_ids=[r[0] for r in rows],
        metrics=[r[1] for r in rows],
        times=[to_pg_micros(r[2]) for r in rows],
        values=[r[3] for r in rows],
        received=[got] * len(rows),
    )


def write(db: Database, customer_id: int, rows: list[tuple[int, str, datetime, float]]) -> BatchResult:
    """Write rows through `BatchWriter` in batches of 500; the totals of accepted and duplicates."""
    writer = BatchWriter(db, Partitions(db))
    accepted = duplicates = 0
    for i in range(0, len(rows), 500):
        result = writer.write(customer_id, batch(rows[i : i + 500]), NOW)
        accepted += result.accepted
        duplicates += result.duplicates
    return BatchResult(accepted, duplicates)


def series(
    devices: int, start: datetime, days: int, metric: str = "energy_kwh", step_min: int = 15
) -> list[tuple[int, str, datetime, float]]:
    """Regular readings: `devices` x every `step_min` minutes for `days` days from `start`."""
    steps = days * 24 * 60 // step_min
    return [
        (device, metric, start + timedelta(minutes=step_min * i), round(0.1 * device + (i % 97) * 0.013, 3))
        for i in range(steps)
        for device in range(1, devices + 1)
    ]


def hot_readings(engine: Engine, customer_id: int) -> list[Reading]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT device_id, metric, time, value FROM fleet.measurements WHERE customer_id = :c"),
            {"c": customer_id},
        ).all()
    return [(int(d), str(m), _unix_us(t), float(v)) for d, m, t, v in rows]


def cold_readings(engine: Engine, customer_id: int) -> list[Reading]:
    out: list[Reading] = []
    for device, metric, _month, unit in units(engine, customer_id):
        out.extend((device, metric, int(t), float(v)) for t, v in zip(unit.times, unit.values, strict=True))
    return out


def units(engine: Engine, customer_id: int) -> list[tuple[int, str, object, cold_codec.Unit]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT device_id, metric, month, payload FROM fleet.measurements_compressed "
                "WHERE customer_id = :c ORDER BY device_id, metric, month"
            ),
            {"c": customer_id},
        ).all()
    return [(int(d), str(m), month, cold_codec.decode(bytes(p))) for d, m, month, p in rows]


def all_readings(engine: Engine, customer_id: int) -> list[Reading]:
    return hot_readings(engine, customer_id) + cold_readings(engine, customer_id)


def fingerprint(readings: list[Reading]) -> tuple[int, str, int]:
    """(count, checksum of the sorted readings, most times one key occurs): equal iff same multiset."""
    ordered = sorted(readings)
    digest = hashlib.sha256(repr(ordered).encode()).hexdigest()
    most = max(Counter((d, m, t) for d, m, t, _ in ordered).values(), default=0)
    return len(ordered), digest, most


def _unix_us(moment: datetime) -> int:
    return to_pg_micros(moment) + UNIX_TO_PG_US


def unix_us(moment: datetime) -> int:
    return _unix_us(moment)
