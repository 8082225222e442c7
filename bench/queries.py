"""Rollup query figure: the server's hour-bucket SQL / the same aggregation over raw rows.

The figure compares database execution time (EXPLAIN ANALYZE, which runs the whole query but
sends no rows): both queries return the same points, so shipping them to a client costs the
same on either side and would only blur what the rollup table saves. The fetch-inclusive ratio
is reported alongside.
"""

from __future__ import annotations

import statistics
import time
from datetime import timedelta
from typing import Any

import psycopg

from bench.dataset import SERIES_START
from fleet_server.store.measurement_reads import Bucket, MeasurementQuery, point_statement

# The same points as the server's hour query, in the same form.
_RAW_HOURLY = """
SELECT device_id, date_trunc('hour', time) AS bucket, count(*), sum(value), min(value), max(value)
FROM fleet.measurements
WHERE customer_id = %(customer)s AND metric = %(metric)s AND time >= %(start)s AND time < %(end)s
GROUP BY device_id, bucket
ORDER BY device_id, bucket
"""


def _fetch_all(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> tuple[float, int]:
    started = time.perf_counter()
    with conn.cursor(binary=True) as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    return time.perf_counter() - started, len(rows)


def _execute_only(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> float:
    with conn.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + sql, params)
        plan = cur.fetchone()
    assert plan is not None
    return float(plan[0][0]["Execution Time"]) / 1000


def measure(url: str, customer_id: int, days: int, rounds: int = 5) -> dict[str, Any]:
    query = MeasurementQuery(
        customer_id=customer_id,
        metric="energy_kwh",
        start=SERIES_START,
        end=SERIES_START + timedelta(days=days),
        bucket=Bucket.HOUR,
    )
    hour_sql, params = point_statement(query)
    ratios: list[float] = []
    fetch_ratios: list[float] = []
    points = 0
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as vacuum:
        # The steady state autovacuum keeps a live database in, for both tables alike.
        vacuum.execute("VACUUM ANALYZE fleet.measurements")
        vacuum.execute("VACUUM ANALYZE fleet.measurement_rollups_hourly")
    with psycopg.connect(dsn) as conn:
        _fetch_all(conn, hour_sql, params)  # warm both caches
        _fetch_all(conn, _RAW_HOURLY, params)
        for _ in range(rounds):
            rollup_s, points = _fetch_all(conn, hour_sql, params)
            raw_s, raw_points = _fetch_all(conn, _RAW_HOURLY, params)
            if raw_points != points:
                raise RuntimeError(f"rollup gave {points} points, raw {raw_points}")
            fetch_ratios.append(rollup_s / raw_s)
            ratios.append(_execute_only(conn, hour_sql, params) / _execute_only(conn, _RAW_HOURLY, params))
    return {
        "median": statistics.median(ratios),
        "min": min(ratios),
        "max": max(ratios),
        "rounds": rounds,
        "fetch_inclusive_median": statistics.median(fetch_ratios),
        "what": f"{days} days x 15-min, {points:,} hour points; rollup SQL / raw GROUP BY, "
        f"DB execution (with fetch: {statistics.median(fetch_ratios):.2f})",
    }
