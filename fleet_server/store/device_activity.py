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

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

HOUR = timedelta(hours=1)

# Newest hour of every (device, metric) pair of a customer with device_id > :after, walking the
# rollup key backwards: each step is the first key below the current pair, i.e. the next pair's
# newest hour.
_NEWEST_HOURS = text(
    """
WITH RECURSIVE walk(device_id, metric, bucket) AS (
    (SELECT device_id, metric, bucket FROM fleet.measurement_rollups_hourly
     WHERE customer_id = :customer AND device_id > :after
     ORDER BY device_id DESC, metric DESC, bucket DESC LIMIT 1)
  UNION ALL
    SELECT step.device_id, step.metric, step.bucket
    FROM walk CROSS JOIN LATERAL (
        SELECT r.device_id, r.metric, r.bucket FROM fleet.measurement_rollups_hourly r
        WHERE r.customer_id = :customer AND (r.device_id, r.metric) < (walk.device_id, walk.metric)
          AND r.device_id > :after
        ORDER BY r.device_id DESC, r.metric DESC, r.bucket DESC LIMIT 1
    ) step
)
SELECT device_id, metric, bucket FROM walk
"""
)

# The newest reading of each (device, metric) inside the given hour.
_NEWEST_IN_HOUR = text(
    """
SELECT h.device_id,
       (SELECT max(m.time) FROM fleet.measurements m
        WHERE m.customer_id = :customer AND m.device_id = h.device_id AND m.metric = h.metric
          AND m.time >= h.bucket AND m.time < h.bucket + interval '1 hour')
FROM unnest(CAST(:devices AS bigint[]), CAST(:metrics AS text[]), CAST(:buckets AS timestamptz[]))
     AS h(device_id, metric, bucket)
"""
)


@dataclass(frozen=True)
class NewestHour:
    """A device's newest rollup hour, and the metrics that have a reading in it."""

    device_id: int
    bucket: datetime
    metrics: tuple[str, ...]


def newest_hours(session: Session, customer_id: int, after: int = 0) -> dict[int, NewestHour]:
    """Every device of the customer with readings (id > `after`), with its newest hour."""
    newest: dict[int, tuple[datetime, list[str]]] = {}
    rows = session.execute(_NEWEST_HOURS, {"customer": customer_id, "after": after})
    for device_id, metric, bucket in rows:
        known = newest.get(device_id)
        if known is None or bucket > known[0]:
            newest[device_id] = (bucket, [metric])
        elif bucket == known[0]:
            known[1].append(metric)
    return {d: NewestHour(d, bucket, tuple(metrics)) for d, (bucket, metrics) in newest.items()}


def newest_readings(session: Session, customer_id: int, hours: Iterable[NewestHour]) -> dict[int, datetime]:
    """The exact newest reading of each device, looked up inside its newest hour.

    A device whose hour has no rows left (compressed by cold storage) gets the hour's start.
    """
    devices: list[int] = []
    metrics: list[str] = []
    buckets: list[datetime] = []
    fallback: dict[int, datetime] = {}
    for hour in hours:
        fallback[hour.device_id] = hour.bucket
        for metric in hour.metrics:
            devices.append(hour.device_id)
            metrics.append(metric)
            buckets.append(hour.bucket)
    if not devices:
        return {}
    found: dict[int, datetime] = {}
    params = {"customer": customer_id, "devices": devices, "metrics": metrics, "buckets": buckets}
    for device_id, newest in session.execute(_NEWEST_IN_HOUR, params):
        if newest is not None and (device_id not in found or newest > found[device_id]):
            found[device_id] = newest
    return {device_id: found.get(device_id, bucket) for device_id, bucket in fallback.items()}
