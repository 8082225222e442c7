"""Which metrics a customer has readings of, asked of the hourly rollups' and the compressed units' keys.

PostgreSQL 16 has no skip scan, and the key leads with (customer_id, device_id, metric), so
"any reading of metric M" is one index descent per device of the customer: a recursive walk
visits each distinct device once (including devices never pushed as reference data) and stops
at the first that has M. It is asked only when a measurement query found nothing, to tell an
unknown metric from an empty range; for a known metric it stops at the first device that has it.

Cold storage moves settled hours out of the rollup table into units
(`fleet.measurements_compressed`), whose key leads with the same (customer_id, device_id,
metric): the same walks over it answer for a customer whose readings are all compressed.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

_HAS_METRIC_IN = """
WITH RECURSIVE device AS (
    (SELECT device_id FROM fleet.measurement_rollups_hourly
     WHERE customer_id = :customer ORDER BY device_id LIMIT 1)
    UNION ALL
    SELECT (SELECT r.device_id FROM fleet.measurement_rollups_hourly r
            WHERE r.customer_id = :customer AND r.device_id > device.device_id
            ORDER BY r.device_id LIMIT 1)
    FROM device WHERE device.device_id IS NOT NULL
)
SELECT EXISTS (
    SELECT 1 FROM device
    WHERE device.device_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM fleet.measurement_rollups_hourly r
        WHERE r.customer_id = :customer AND r.device_id = device.device_id AND r.metric = :metric
    )
)
"""

# Each step jumps to the next (device, metric) pair: one descent per pair, not per hour.
_METRICS_IN = """
WITH RECURSIVE pair AS (
    (SELECT device_id, metric FROM fleet.measurement_rollups_hourly
     WHERE customer_id = :customer ORDER BY device_id, metric LIMIT 1)
    UNION ALL
    SELECT following.device_id, following.metric
    FROM pair, LATERAL (
        SELECT r.device_id, r.metric FROM fleet.measurement_rollups_hourly r
        WHERE r.customer_id = :customer AND (r.device_id, r.metric) > (pair.device_id, pair.metric)
        ORDER BY r.device_id, r.metric LIMIT 1
    ) AS following
)
SELECT DISTINCT metric FROM (SELECT metric FROM pair LIMIT :pairs) AS seen ORDER BY metric
"""
_HOT = "fleet.measurement_rollups_hourly"
_TABLES = (_HOT, "fleet.measurements_compressed")
_HAS_METRIC = [text(_HAS_METRIC_IN.replace(_HOT, table)) for table in _TABLES]
_METRICS = [text(_METRICS_IN.replace(_HOT, table)) for table in _TABLES]


def has_metric(session: Session, customer_id: int, metric: str) -> bool:
    """Whether the customer has any reading of `metric`, at any time, of any device."""
    params = {"customer": customer_id, "metric": metric}
    return any(session.scalar(statement, params) for statement in _HAS_METRIC)


def metrics_of(session: Session, customer_id: int, pairs: int = 10_000) -> list[str]:
    """The metrics the customer has readings of, from its first `pairs` (device, metric) pairs of
    the hot hours and as many of the compressed units."""
    params = {"customer": customer_id, "pairs": pairs}
    return sorted({metric for statement in _METRICS for metric in session.scalars(statement, params)})
