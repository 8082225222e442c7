"""When each of a customer's devices last reported: from the hourly rollups and the compressed units, exact.

Nothing is written for this on the ingest path. The rollup key `(customer_id, device_id, metric,
bucket)` already orders every device's hours, so a backward walk over it (a recursive query, one
index descent per step) meets each (device, metric) exactly once, at its newest hour: the cost
is one descent per (device, metric) pair, however long the history. The newest reading inside
that hour is then one more descent into the measurements partition holding the hour (an hour in
the rollup table always has its rows: compression moves both together). Compressed units
(`fleet.measurements_compressed`, keyed the same way with a month for the hour) are walked the
same way; a unit's `last_time` is its newest reading, so a device whose readings are all
compressed still reports its exact newest reading. The newer of the two is the answer.

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


# The same walk over the compressed units: the newest unit of each (device, metric) pair, whose
# `last_time` is the pair's newest compressed reading.
_NEWEST_COMPRESSED = text(
    """
SELECT c.id, w.device_id, max(w.last_time)
FROM unnest(CAST(:customers AS bigint[])) AS c(id)
CROSS JOIN LATERAL (
    WITH RECURSIVE walk(device_id, metric, last_time) AS (
        (SELECT device_id, metric, last_time FROM fleet.measurements_compressed
         WHERE customer_id = c.id
         ORDER BY device_id DESC, metric DESC, month DESC LIMIT 1)
      UNION ALL
        SELECT step.device_id, step.metric, step.last_time
        FROM walk CROSS JOIN LATERAL (
            SELECT u.device_id, u.metric, u.last_time FROM fleet.measurements_compressed u
            WHERE u.customer_id = c.id AND (u.device_id, u.metric) < (walk.device_id, walk.metric)
            ORDER BY u.device_id DESC, u.metric DESC, u.month DESC LIMIT 1
        ) step
    )
    SELECT device_id, last_time FROM walk
) w
GROUP BY c.id, w.device_id
"""
)


def newest_readings(session: Session, customer_ids: Sequence[int]) -> dict[tuple[int, int], datetime]:
    """The newest reading of every device with readings of each customer, by (customer id, device id),
    hot or compressed.

    The hot walk runs first: a compression run committing between the two statements moves
    readings from the first's sight into the second's, never the other way.
    """
    if not customer_ids:
        return {}
    params = {"customers": list(customer_ids)}
    newest: dict[tuple[int, int], datetime] = {}
    for customer_id, device_id, hour, exact in session.execute(_NEWEST_READINGS, params).all():
        newest[(customer_id, device_id)] = exact or hour  # an hour always has its rows; defensive
    for customer_id, device_id, last_time in session.execute(_NEWEST_COMPRESSED, params).all():
        key = (customer_id, device_id)
        newest[key] = max(newest[key], last_time) if key in newest else last_time
    return newest
