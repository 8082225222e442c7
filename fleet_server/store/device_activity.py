"""When each of a customer's devices last reported: read from the hourly rollups, exact from the hour's rows.

Nothing is written for this on the ingest path. The rollup key `(customer_id, device_id, metric,
bucket)` already orders every device's hours, so a backward walk over it (a recursive query, one
index descent per step) meets each (device, metric) exactly once, at its newest hour: the cost
is one descent per (device, metric) pair, however long the history. The newest reading inside
that hour is then one more descent into the measurements partition holding the hour. A day that
cold storage moved out of the row table has no rows to look into: its device's newest reading
is then given as the start of its newest hour (it is days old either way).

Rejected: a per-device "last reading" row kept by the measurement batch statement (one more
upsert per batch on the hottest path, for a view read a few times a day), and an index on
`(customer_id, bucket)` (every rollup update is a non-HOT update, so every index costs on every
batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

# For each of the given customers, walk the rollup key backwards (each step is the first key
# below the current (device, metric) pair: the next pair's newest hour), keep each device's newest
# hour, and look its newest reading up among that hour's rows. One statement for a whole page of
# customers, one row per device.
_NEWEST_READINGS = text(
    """
WITH pairs AS (
    SELECT c.id AS customer_id, w.device_id, w.metric, w.bucket
    FROM unnest(CAST(:customers AS bigint[])) AS c(id)
    CROSS JOIN LATERAL (
        WITH RECURSIVE walk(device_id, metric, bucket) AS (
            (SELECT device_id, metric, bucket FROM fleet.measurement_rollups_hourly
             WHERE customer_id = c.id
             ORDER BY device_id DESC, metric DESC, bucket DESC LIMIT 1)
          UNION ALL
            SELECT step.device_id, step.metric, step.bucket
            FROM walk CROSS JOIN LATERAL (
                SELECT r.device_id, r.metric, r.bucket FROM fleet.measurement_rollups_hourly r
                WHERE r.customer_id = c.id AND (r.device_id, r.metric) < (walk.device_id, walk.metric)
                ORDER BY r.device_id DESC, r.metric DESC, r.bucket DESC LIMIT 1
            ) step
        )
        SELECT device_id, metric, bucket FROM walk
    ) w
),
newest AS (
    SELECT *, max(bucket) OVER (PARTITION BY customer_id, device_id) AS hour FROM pairs
)
SELECT n.customer_id, n.device_id, n.hour,
       max((SELECT max(m.time) FROM fleet.measurements m
            WHERE m.customer_id = n.customer_id AND m.device_id = n.device_id AND m.metric = n.metric
              AND m.time >= n.hour AND m.time < n.hour + interval '1 hour'))
FROM newest n
WHERE n.bucket = n.hour
GROUP BY n.customer_id, n.device_id, n.hour
"""
)


def newest_readings(session: Session, customer_ids: Sequence[int]) -> dict[tuple[int, int], datetime]:
    """The newest reading of every device with readings of each customer, by (customer id, device id).

    A device whose newest hour has no rows left (compressed by cold storage) gets the hour's start.
    """
    if not customer_ids:
        return {}
    rows = session.execute(_NEWEST_READINGS, {"customers": list(customer_ids)}).all()
    return {(customer_id, device_id): exact or hour for customer_id, device_id, hour, exact in rows}
