"""Writes into compressed days: first write wins across hot and compressed, late readings hot at once."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import Engine, text

from fleet_server.db.session import Database
from fleet_server.domain.compression import compress
from fleet_server.store import cold_codec
from fleet_server.store.measurements import BatchWriter
from fleet_server.store.partitions import Partitions
from tests.support.cold import (
    NOW,
    all_readings,
    batch,
    fingerprint,
    hot_readings,
    series,
    units,
    unix_us,
    write,
)

START = datetime(2026, 2, 1, tzinfo=UTC)
WEEK = timedelta(days=7)


def _payloads(engine: Engine, customer_id: int) -> list[bytes]:
    with engine.connect() as conn:
        return [
            bytes(p)
            for (p,) in conn.execute(
                text(
                    "SELECT payload FROM fleet.measurements_compressed WHERE customer_id = :c "
                    "ORDER BY device_id, metric, month"
                ),
                {"c": customer_id},
            )
        ]


def _hot_hours(engine: Engine, customer_id: int) -> list[tuple[datetime, int, float, float, float]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT bucket, count, sum, min, max FROM fleet.measurement_rollups_hourly "
                "WHERE customer_id = :c ORDER BY device_id, metric, bucket"
            ),
            {"c": customer_id},
        ).all()
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def test_a_repush_of_a_compressed_day_is_all_duplicates(db: Database, engine: Engine, new_customer) -> None:
    customer = new_customer("ACME")
    rows = series(3, START, 20)
    write(db, customer.id, rows)
    compress(db, NOW, WEEK)
    before = (fingerprint(all_readings(engine, customer.id)), _payloads(engine, customer.id))
    hours_before = _hot_hours(engine, customer.id)

    result = write(db, customer.id, rows)  # the same rows again, values and all
    changed = write(db, customer.id, [(d, m, t, v + 1.0) for d, m, t, v in rows[:700]])

    assert (result.accepted, result.duplicates) == (0, len(rows))
    assert (changed.accepted, changed.duplicates) == (0, 700)
    assert (fingerprint(all_readings(engine, customer.id)), _payloads(engine, customer.id)) == before
    assert _hot_hours(engine, customer.id) == hours_before == []


def test_a_late_reading_is_hot_at_once_and_folded_next_run(
    db: Database, engine: Engine, new_customer
) -> None:
    customer = new_customer("ACME")
    write(db, customer.id, series(1, START, 20))  # every 15 minutes
    compress(db, NOW, WEEK)
    late_time = START + timedelta(days=3, hours=5, minutes=7)  # between two stored readings
    ((_, _, _, unit_before),) = units(engine, customer.id)
    hour_us = unix_us(START + timedelta(days=3, hours=5))
    at = int(np.searchsorted(unit_before.hours.starts, hour_us))

    result = write(db, customer.id, [(1, "energy_kwh", late_time, 42.5)])

    assert (result.accepted, result.duplicates) == (1, 0)
    assert hot_readings(engine, customer.id) == [(1, "energy_kwh", unix_us(late_time), 42.5)]
    ((bucket, count, total, low, high),) = _hot_hours(engine, customer.id)
    assert (bucket, count, total, low, high) == (START + timedelta(days=3, hours=5), 1, 42.5, 42.5, 42.5)
    hot = cold_codec.Hours(
        np.array([hour_us]), np.array([1]), np.array([42.5]), np.array([42.5]), np.array([42.5])
    )
    answer = cold_codec.combine_hours(unit_before.hours, hot)
    assert answer.counts[at] == 5
    assert answer.sums[at] == unit_before.hours.sums[at] + 42.5
    before = fingerprint(all_readings(engine, customer.id))

    again = write(db, customer.id, [(1, "energy_kwh", late_time, 1.0)])  # late, and now stored
    report = compress(db, NOW, WEEK)

    assert (again.accepted, again.duplicates) == (0, 1)
    assert (report.units, report.readings) == (1, 1)
    assert hot_readings(engine, customer.id) == []
    assert _hot_hours(engine, customer.id) == []
    ((_, _, _, unit_after),) = units(engine, customer.id)
    assert len(unit_after) == len(unit_before) + 1
    for field in ("starts", "counts", "sums", "mins", "maxs"):
        assert np.array_equal(getattr(unit_after.hours, field), getattr(answer, field)), field
    assert fingerprint(all_readings(engine, customer.id)) == before


def test_a_mixed_batch_keeps_first_writes_everywhere(db: Database, engine: Engine, new_customer) -> None:
    customer = new_customer("ACME")
    write(db, customer.id, series(2, START, 20))
    compress(db, NOW, WEEK)
    old = series(2, START, 2)[:50]  # compressed
    late = [(1, "energy_kwh", START + timedelta(days=1, minutes=1), 7.0)]  # new, for a compressed day
    live = [(2, "energy_kwh", NOW - timedelta(minutes=m), 1.5) for m in (1, 2)]  # hot days
    hot_dup = series(2, START + timedelta(days=19), 1)[:10]  # after the cutoff: still hot rows
    result = write(db, customer.id, old + late + live + hot_dup + late)
    assert (result.accepted, result.duplicates) == (3, 50 + 10 + 1)


def test_the_fast_form_falls_back_inside_the_transaction(db: Database, engine: Engine, new_customer) -> None:
    customer = new_customer("ACME")
    rows = series(2, NOW - timedelta(days=1), 1)[:100]
    writer = BatchWriter(db, Partitions(db))
    assert writer.write(customer.id, batch(rows[:60]), NOW).accepted == 60
    fresh = BatchWriter(db, Partitions(db))  # does not expect duplicates: tries the fast form first
    result = fresh.write(customer.id, batch(rows), NOW)
    assert (result.accepted, result.duplicates) == (40, 60)
    assert len(hot_readings(engine, customer.id)) == 100


def test_ingest_during_compression_keeps_every_reading_once(
    db: Database, engine: Engine, new_customer
) -> None:
    customer = new_customer("ACME")
    base = series(6, START, 24)
    write(db, customer.id, base)
    rng = random.Random(14)
    # Late readings for compressed-to-be days (odd minutes: new keys), re-pushes of stored ones,
    # and live readings, pushed while two runs compress.
    extra = [
        (
            rng.randint(1, 6),
            "energy_kwh",
            START + timedelta(minutes=rng.randrange(0, 24 * 24 * 60, 2) + 1),
            0.5,
        )
        for _ in range(3000)
    ]
    repush = rng.sample(base, 2000)
    acknowledged: list[tuple[int, str, datetime, float]] = []
    stop = threading.Event()

    def pusher() -> None:
        writer = BatchWriter(db, Partitions(db))
        pending = extra + repush
        rng.shuffle(pending)
        for i in range(0, len(pending), 100):
            chunk = pending[i : i + 100]
            writer.write(customer.id, batch(chunk), NOW)
            acknowledged.extend(chunk)
        stop.set()

    runs: list[int] = []

    def compressor() -> None:
        while not stop.is_set():
            runs.append(compress(db, NOW, WEEK).readings)
        runs.append(compress(db, NOW, WEEK).readings)

    threads = [threading.Thread(target=pusher), threading.Thread(target=compressor)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    expected: dict[tuple[int, str, int], float] = {}
    for d, m, t, v in base + acknowledged:
        expected.setdefault((d, m, unix_us(t)), v)  # first write wins
    stored = all_readings(engine, customer.id)
    assert fingerprint(stored)[2] == 1  # no key twice
    assert {(d, m, t): v for d, m, t, v in stored} == expected
    assert len(runs) >= 1


def _waiting_for_a_lock(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            )
        )


def test_a_live_batch_and_a_unit_being_written_wait_for_each_other(
    db: Database, engine: Engine, new_customer, monkeypatch
) -> None:
    """A re-push of hot rows that a unit is compressing at that moment, and a new reading of the
    same day: the batch skips the COLD lock (no unit yet: the customer's frontier is unset), so
    the customer row must hold it until the unit commits; then it reads the moved frontier and
    writes around the unit. Without that the re-push would land hot beside its compressed twin."""
    from fleet_server.store import cold

    customer = new_customer("ACME")
    rows = series(2, START, 3)
    write(db, customer.id, rows)
    with engine.connect() as conn:
        assert (
            conn.scalar(text("SELECT cold_through FROM fleet.customers WHERE id = :c"), {"c": customer.id})
            is None
        )
    reached, go = threading.Event(), threading.Event()
    encode = cold.ColdConnection._encode

    def paused_encode(*args, **kwargs):  # after the customer lock and the hot reads, before any write
        reached.set()
        assert go.wait(30)
        return encode(*args, **kwargs)

    monkeypatch.setattr(cold.ColdConnection, "_encode", staticmethod(paused_encode))
    compressor = threading.Thread(target=lambda: compress(db, NOW, WEEK, customer.id))
    compressor.start()
    assert reached.wait(30)
    late = (1, "energy_kwh", START + timedelta(minutes=7), 9.5)  # a new key of a day being compressed
    results = []
    pusher = threading.Thread(target=lambda: results.append(write(db, customer.id, [*rows[:50], late])))
    pusher.start()
    deadline = time.monotonic() + 10
    while _waiting_for_a_lock(engine) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pusher.is_alive(), "the batch did not wait for the unit"
    assert _waiting_for_a_lock(engine) == 1
    go.set()
    compressor.join(30)
    pusher.join(30)

    assert (results[0].accepted, results[0].duplicates) == (1, 50)
    stored = all_readings(engine, customer.id)
    assert fingerprint(stored)[2] == 1  # no key twice
    assert len(stored) == len(rows) + 1
    assert hot_readings(engine, customer.id) == [(1, "energy_kwh", unix_us(late[2]), 9.5)]
    with engine.connect() as conn:
        frontier = conn.scalar(
            text("SELECT cold_through FROM fleet.customers WHERE id = :c"), {"c": customer.id}
        )
    with engine.connect() as conn:
        newest = conn.scalar(
            text("SELECT max(through_day) FROM fleet.measurements_compressed WHERE customer_id = :c"),
            {"c": customer.id},
        )
    assert frontier == newest is not None


def test_a_live_batch_never_waits_for_compression_of_older_months(
    db: Database, engine: Engine, new_customer
) -> None:
    """While a unit of February is being written (its COLD lock held exclusive), a batch of days
    after the customer's frontier goes through at once; a batch into February waits for it."""
    from fleet_server.store.locks import LockSpace, cold_key

    customer = new_customer("ACME")
    write(db, customer.id, series(2, START, 20))
    compress(db, NOW, WEEK)
    live = series(2, NOW - timedelta(hours=2), 1)[:20]
    with engine.connect() as holder:
        holder.execute(
            text("SELECT pg_advisory_lock(:space, :key)"),
            {"space": int(LockSpace.COLD), "key": cold_key(customer.id, START.year * 12 + START.month - 1)},
        )
        live_results = []
        live_pusher = threading.Thread(target=lambda: live_results.append(write(db, customer.id, live)))
        live_pusher.start()
        live_pusher.join(10)
        assert not live_pusher.is_alive(), "a live batch waited for compression of an older month"
        assert live_results[0].accepted == len(live)
        late = [(1, "energy_kwh", START + timedelta(minutes=7), 1.0)]
        results = []
        pusher = threading.Thread(target=lambda: results.append(write(db, customer.id, late)))
        pusher.start()
        pusher.join(1.0)
        assert pusher.is_alive(), "a batch into a month being compressed must wait for its unit"
        holder.execute(
            text("SELECT pg_advisory_unlock(:space, :key)"),
            {"space": int(LockSpace.COLD), "key": cold_key(customer.id, START.year * 12 + START.month - 1)},
        )
        pusher.join(30)
    assert (results[0].accepted, results[0].duplicates) == (1, 0)
