"""The compression run on a real PostgreSQL: settled days move into units, exactly once, space given back."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine, text

from fleet_server.db.session import Database
from fleet_server.domain.compression import compress, settled_cutoff
from fleet_server.domain.customers import delete_customer
from fleet_server.store.cold_codec import derived_hours
from tests.support.cold import NOW, all_readings, fingerprint, hot_readings, series, units, write

START = datetime(2026, 1, 20, tzinfo=UTC)
WEEK = timedelta(days=7)


def _hot_between(engine: Engine, customer_id: int, low: datetime, high: datetime) -> int:
    with engine.connect() as conn:
        return int(
            conn.scalar(
                text(
                    "SELECT count(*) FROM fleet.measurements "
                    "WHERE customer_id = :c AND time >= :low AND time < :high"
                ),
                {"c": customer_id, "low": low, "high": high},
            )
        )


def test_cutoff_is_the_utc_day_floor() -> None:
    now = datetime(2026, 3, 20, 0, 30, tzinfo=UTC)
    assert settled_cutoff(now, WEEK) == datetime(2026, 3, 13, tzinfo=UTC)
    assert settled_cutoff(now, timedelta(hours=1)) == datetime(2026, 3, 19, tzinfo=UTC)


def test_settled_days_move_into_units_and_nothing_else(db: Database, engine: Engine, new_customer) -> None:
    customer = new_customer("ACME")
    other = new_customer("OTHER")
    rows = series(3, START, 60)  # 2026-01-20 .. 2026-03-20
    write(db, customer.id, rows)
    write(db, other.id, series(1, START, 10))
    before = fingerprint(all_readings(engine, customer.id))

    report = compress(db, NOW, WEEK, customer_id=customer.id)

    cutoff = datetime(2026, 3, 13, tzinfo=UTC)
    assert report.units == 3 * 3  # January, February, March (to the 12th) for 3 devices
    assert report.readings == len([r for r in rows if r[2] < cutoff])
    assert report.bytes_after < report.bytes_before / 20
    assert report.skipped == report.failed == 0
    assert _hot_between(engine, customer.id, START, cutoff) == 0
    assert _hot_between(engine, customer.id, cutoff, NOW + WEEK) == len([r for r in rows if r[2] >= cutoff])
    assert fingerprint(all_readings(engine, customer.id)) == before
    through = {(d, month): u for d, _, month, u in units(engine, customer.id)}
    assert set(through) == {(d, date(2026, m, 1)) for d in (1, 2, 3) for m in (1, 2, 3)}
    with engine.connect() as conn:
        days = conn.execute(
            text(
                "SELECT DISTINCT month, through_day FROM fleet.measurements_compressed WHERE customer_id = :c"
            ),
            {"c": customer.id},
        ).all()
        hours_left = conn.scalar(
            text(
                "SELECT count(*) FROM fleet.measurement_rollups_hourly WHERE customer_id = :c AND bucket < :t"
            ),
            {"c": customer.id, "t": cutoff},
        )
    assert sorted(days) == [
        (date(2026, 1, 1), date(2026, 1, 31)),
        (date(2026, 2, 1), date(2026, 2, 28)),
        (date(2026, 3, 1), date(2026, 3, 12)),
    ]
    assert hours_left == 0
    assert len(hot_readings(engine, other.id)) == 10 * 96  # another customer untouched

    again = compress(db, NOW, WEEK, customer_id=customer.id)
    assert (again.units, again.readings) == (0, 0)


def test_dry_run_writes_nothing(db: Database, engine: Engine, new_customer) -> None:
    customer = new_customer("ACME")
    write(db, customer.id, series(2, START, 20))
    report = compress(db, NOW, WEEK, dry_run=True)
    assert report.units == 4
    assert report.readings == 2 * 20 * 96
    assert 0 < report.bytes_after < report.bytes_before
    assert units(engine, customer.id) == []
    assert len(hot_readings(engine, customer.id)) == 2 * 20 * 96


def test_a_later_run_appends_to_the_unit(db: Database, engine: Engine, new_customer) -> None:
    customer = new_customer("ACME")
    write(db, customer.id, series(1, datetime(2026, 3, 1, tzinfo=UTC), 19))
    before = fingerprint(all_readings(engine, customer.id))
    compress(db, NOW - timedelta(days=5), WEEK)  # settles March 1 to 7
    second = compress(db, NOW, WEEK)  # then March 8 to 12
    assert second.units == 1
    assert second.readings == 5 * 96
    ((_, _, month, unit),) = units(engine, customer.id)
    assert month == date(2026, 3, 1)
    assert len(unit) == 12 * 96
    assert fingerprint(all_readings(engine, customer.id)) == before


def test_inconsistent_rollups_are_skipped_not_fatal(
    db: Database, engine: Engine, new_customer, caplog
) -> None:
    customer = new_customer("ACME")
    write(db, customer.id, series(2, START, 5))
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE fleet.measurement_rollups_hourly SET count = count + 1 "
                "WHERE device_id = 1 AND customer_id = :c"
            ),
            {"c": customer.id},
        )
    report = compress(db, NOW, WEEK)
    assert report.skipped == 1
    assert report.units == 1
    assert "rollups disagree" in caplog.text
    assert len(hot_readings(engine, customer.id)) == 5 * 96  # device 1 left hot


def test_unit_rollups_are_the_hot_rollups(db: Database, engine: Engine, new_customer) -> None:
    customer = new_customer("ACME")
    write(db, customer.id, series(1, START, 3))
    with engine.connect() as conn:
        hot = conn.execute(
            text("SELECT bucket, count, sum, min, max FROM fleet.measurement_rollups_hourly ORDER BY bucket")
        ).all()
    compress(db, NOW, WEEK)
    ((_, _, _, unit),) = units(engine, customer.id)
    assert list(unit.hours.counts) == [h[1] for h in hot]
    assert list(unit.hours.sums) == [h[2] for h in hot]
    assert len(derived_hours(unit.times, unit.values)) == len(hot)


def test_two_concurrent_runs_do_not_double(db: Database, engine: Engine, new_customer) -> None:
    customer = new_customer("ACME")
    write(db, customer.id, series(8, START, 40))
    before = fingerprint(all_readings(engine, customer.id))
    reports = []
    threads = [threading.Thread(target=lambda: reports.append(compress(db, NOW, WEEK))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fingerprint(all_readings(engine, customer.id)) == before
    assert sum(r.units for r in reports) == 8 * 2
    assert sum(r.readings for r in reports) == 8 * 40 * 96


@pytest.mark.parametrize("older_than", [timedelta(0), timedelta(days=3650)])
def test_nothing_or_everything_settled(db: Database, engine: Engine, new_customer, older_than) -> None:
    customer = new_customer("ACME")
    write(db, customer.id, series(1, START, 3))
    report = compress(db, datetime(2026, 1, 23, 12, tzinfo=UTC), older_than)
    assert report.readings == (0 if older_than else 3 * 96)
    assert np.isfinite(report.readings_per_s)


def _partition_bytes(engine: Engine, name: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.scalar(text("SELECT pg_relation_size(to_regclass(:n))"), {"n": f"fleet_partitions.{name}"})
        )


def test_an_emptied_month_is_given_back(db: Database, engine: Engine, new_customer) -> None:
    customer = new_customer("ACME")
    write(db, customer.id, series(4, datetime(2025, 11, 1, tzinfo=UTC), 30 + 31 + 10))
    assert _partition_bytes(engine, "measurements_p202511") > 0
    before = fingerprint(all_readings(engine, customer.id))

    held = compress(db, NOW, WEEK)  # the default grace: units were just written
    assert held.truncated == []
    report = compress(db, NOW, WEEK, truncate_grace=timedelta(0))

    assert report.truncated == ["measurements_p202511", "measurements_p202512", "measurements_p202601"]
    assert _partition_bytes(engine, "measurements_p202511") == 0
    assert _partition_bytes(engine, "measurements_p202512") == 0
    assert fingerprint(all_readings(engine, customer.id)) == before


def test_a_month_with_hot_rows_is_not_truncated(db: Database, engine: Engine, new_customer) -> None:
    customer = new_customer("ACME")
    write(db, customer.id, series(1, datetime(2025, 12, 1, tzinfo=UTC), 31))
    with engine.begin() as conn:  # rows without rollups: never compressed, never truncated
        conn.execute(text("DELETE FROM fleet.measurement_rollups_hourly"))
    report = compress(db, NOW, WEEK, truncate_grace=timedelta(0))
    assert report.truncated == []
    assert len(hot_readings(engine, customer.id)) == 31 * 96


def test_erasure_removes_units(db: Database, engine: Engine, new_customer) -> None:
    customer = new_customer("ACME")
    other = new_customer("OTHER")
    write(db, customer.id, series(2, START, 20))
    write(db, other.id, series(1, START, 20))
    compress(db, NOW, WEEK)
    write(db, customer.id, [(1, "energy_kwh", START + timedelta(minutes=1), 1.0)])  # a late reading
    counts = db.transaction(delete_customer, "ACME")
    assert counts["measurements_compressed"] == 4
    assert units(engine, customer.id) == []
    assert hot_readings(engine, customer.id) == []
    assert len(units(engine, other.id)) == 2


def test_an_erasure_during_a_run_neither_deadlocks_nor_leaves_data(
    db: Database, engine: Engine, new_customer
) -> None:
    customer = new_customer("ACME")
    other = new_customer("OTHER")
    write(db, customer.id, series(20, START, 40))
    write(db, other.id, series(1, START, 5))
    reports = []
    run = threading.Thread(target=lambda: reports.append(compress(db, NOW, WEEK)))
    run.start()
    _wait_for_units(engine, customer.id)
    db.transaction(delete_customer, "ACME")
    run.join(120)
    assert len(reports) == 1  # the run ended normally
    assert units(engine, customer.id) == []
    assert hot_readings(engine, customer.id) == []
    assert len(units(engine, other.id)) == 1


def _wait_for_units(engine: Engine, customer_id: int) -> None:
    deadline = time.monotonic() + 60
    while not units(engine, customer_id):
        assert time.monotonic() < deadline
        time.sleep(0.01)
