"""Reading measurements and their hourly rollups back: raw points, hour and day buckets, the fleet summary.

Hour buckets come from the rollup table (and compressed units) only and day buckets are summed
from those hours (UTC), so a bucket query never scans raw rows. Bucket queries return whole
buckets: the range is widened to the buckets that overlap `[start, end)` (start floored, end
ceiled to the bucket), because a pre-aggregated hour cannot be split. Raw queries use `[start, end)` exactly.

Cold storage (`cold_reads`, `cold_codec`): a settled day's readings and hours may live in a
compressed unit instead. Every answer is the merge of both places — raw points are unit readings
and hot rows in (device, time) order; an hour is `combine_hours(unit hour, hot rollup hour)`; a
day is its merged hours added left to right in hour order by `day_totals`, the same Python code
whether or not anything is compressed, so answers are bit for bit the same before and after a
compression run.

A query is read in keyset chunks: each chunk is a few short statements in one snapshot that
start after the last point of the chunk before, in (device, time) order, on a connection held
for that chunk only. A client that reads slowly then holds no database connection (see
`db/scheduler.py`), and memory stays bounded by the chunk size however long the range (plus the
few units a chunk decodes). The price: each chunk is its own snapshot, so a point written while
a long query runs may show in a later chunk (never twice, never half an hour's aggregate — each
point is one row, one rollup row or one unit's, merged in one snapshot).
"""

from __future__ import annotations

import enum
import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import repeat
from typing import Any

import numpy as np
import psycopg
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.pq import Format
from sqlalchemy.orm import Session

from fleet_server.db.session import Database
from fleet_server.store import cold_reads
from fleet_server.store.cold_codec import DAY_US, HOUR_US, Float64s, Hours, Int64s, combine_hours
from fleet_server.store.cold_reads import (
    DecodedUnit,
    FloatArray,
    HourColumns,
    IntArray,
    TimeArray,
    collect_hours,
    collect_readings,
    register_array_loaders,
    register_arrays,
    unix_us,
)
from fleet_server.store.timestamps import UNIX_TO_PG_US

_LOGGER = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
_LATEST = datetime.max.replace(tzinfo=UTC)


class Bucket(enum.Enum):
    RAW = "raw"
    HOUR = "hour"
    DAY = "day"


@dataclass(frozen=True)
class MeasurementQuery:
    """One customer's readings of one metric; `device_ids` empty = every device."""

    customer_id: int
    metric: str
    start: datetime
    end: datetime
    bucket: Bucket
    device_ids: tuple[int, ...] = ()


# A point: (device_id, start in microseconds since the Unix epoch, count, sum, min, max).
Point = tuple[int, int, int, float, float, float]


@dataclass(frozen=True)
class CustomerSummary:
    code: str
    devices: int
    devices_seen: int
    rows: int
    sum: float


def floor_to(moment: datetime, bucket: Bucket) -> datetime:
    moment = moment.astimezone(UTC)
    if bucket is Bucket.HOUR:
        return moment.replace(minute=0, second=0, microsecond=0)
    if bucket is Bucket.DAY:
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment


def ceil_to(moment: datetime, bucket: Bucket) -> datetime:
    floored = floor_to(moment, bucket)
    if floored == moment or bucket is Bucket.RAW:
        return moment
    step = HOUR if bucket is Bucket.HOUR else DAY
    # The last bucket of year 9999 ends past what a datetime holds (a caller may ask that far).
    return floored + step if floored <= _LATEST - step else _LATEST


def bucket_range(query: MeasurementQuery) -> tuple[datetime, datetime]:
    """The range actually read: exact for raw, widened to whole buckets otherwise."""
    return floor_to(query.start, query.bucket), ceil_to(query.end, query.bucket)


class _UnixMicrosLoader(Loader):
    """Binary timestamptz → microseconds since the Unix epoch, without a `datetime` per point.

    PostgreSQL sends a binary timestamptz as int64 microseconds since 2000-01-01; shifting it
    here is cheaper than `extract(epoch …)` in SQL (numeric arithmetic, half of an hour
    query's execution time) and than building a `datetime` per point in Python.
    """

    format = Format.BINARY

    def load(self, data: Buffer) -> int:
        return int(_INT8.unpack(data)[0]) + UNIX_TO_PG_US


_INT8 = struct.Struct("!q")

_RAW_SQL = """
SELECT device_id, time, 1::int8, value, value, value
FROM fleet.measurements
WHERE customer_id = %(customer)s AND metric = %(metric)s
  AND time >= %(start)s AND time < %(end)s {devices}
  {after}
ORDER BY device_id, time
{limit}
"""

_HOUR_SQL = """
SELECT device_id, bucket, count, sum, min, max
FROM fleet.measurement_rollups_hourly
WHERE customer_id = %(customer)s AND metric = %(metric)s
  AND bucket >= %(start)s AND bucket < %(end)s {devices}
  {after}
ORDER BY device_id, bucket
{limit}
"""

# A day point is summed in Python from the merged hours of its day (`day_totals`), compressed or
# not, so its hours are read as columns: `array_agg` in binary loads straight into numpy.
_DAY_HOURS_SQL = """
SELECT array_agg(device_id ORDER BY device_id, bucket), array_agg(bucket ORDER BY device_id, bucket),
       array_agg(count ORDER BY device_id, bucket), array_agg(sum ORDER BY device_id, bucket),
       array_agg(min ORDER BY device_id, bucket), array_agg(max ORDER BY device_id, bucket)
FROM (
    SELECT device_id, bucket, count::int8 AS count, sum, min, max
    FROM fleet.measurement_rollups_hourly
    WHERE customer_id = %(customer)s AND metric = %(metric)s
      AND bucket >= %(start)s AND bucket < %(end)s {devices}
      {after}
    ORDER BY device_id, bucket
    {limit}
) AS hours
"""

_SQL = {Bucket.RAW: _RAW_SQL, Bucket.HOUR: _HOUR_SQL, Bucket.DAY: _DAY_HOURS_SQL}
# Where the next chunk starts: after the last point's (device, time). The metric sits between
# device and time in both primary keys, so the row comparison names it too and stays one index
# range. A day point stands for its whole day: the next chunk starts at the following day.
_AFTER = {
    Bucket.RAW: "AND (device_id, metric, time) > (%(after_device)s, %(metric)s, %(after_time)s)",
    Bucket.HOUR: "AND (device_id, metric, bucket) > (%(after_device)s, %(metric)s, %(after_time)s)",
    Bucket.DAY: "AND (device_id, metric, bucket) >= "
    "(%(after_device)s, %(metric)s, %(after_time)s + interval '1 day')",
}
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Where a chunk ended: (device_id, start in microseconds since the Unix epoch) of its last point.
PointKey = tuple[int, int]


def _hours_for_days(days: int) -> int:
    """Hours read for a chunk of `days` day points: enough whole days whatever a cut leaves."""
    return 24 * (days + 1)


def point_statement(
    query: MeasurementQuery, after: PointKey | None = None, limit: int | None = None
) -> tuple[str, dict[str, Any]]:
    """The SQL and parameters reading the hot side (rows, hot rollups) of a point query, or of
    its chunk of `limit` points after `after`. A day query reads the hours of its days.

    (Tests EXPLAIN it to prove what it reads; the benchmark times it.)
    """
    start, end = bucket_range(query)
    devices = "AND device_id = ANY(%(devices)s)" if query.device_ids else ""
    params: dict[str, Any] = {
        "customer": query.customer_id,
        "metric": query.metric,
        "start": start,
        "end": end,
        "devices": list(query.device_ids),
    }
    if after is not None:
        params["after_device"] = after[0]
        params["after_time"] = _UNIX_EPOCH + timedelta(microseconds=after[1])
    if limit is not None:
        params["limit"] = _hours_for_days(limit) if query.bucket is Bucket.DAY else limit
    sql = _SQL[query.bucket].format(
        devices=devices,
        after=_AFTER[query.bucket] if after is not None else "",
        limit="LIMIT %(limit)s" if limit is not None else "",
    )
    return sql, params


def read_chunk(db: Database, query: MeasurementQuery, after: PointKey | None, limit: int) -> list[Point]:
    """Up to `limit` points of `query` after `after`, in key order; blocking, one short read.

    Hot rows and compressed units are merged (`cold_reads`): a chunk is exactly the first
    `limit` merged points after `after`. Its statements share one REPEATABLE READ snapshot, so a
    compression run committing between them cannot show a reading twice or not at all. The
    connection is checked out for this chunk only, read-only, and given back before the points
    go to the client.
    """
    options = {"postgresql_readonly": True, "isolation_level": "REPEATABLE READ"}
    with db.engine.connect().execution_options(**options) as connection:
        driver = connection.connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        with driver.cursor(binary=True) as cursor:
            cursor.adapters.register_loader("timestamptz", _UnixMicrosLoader)
            if query.bucket is Bucket.RAW:
                return _raw_chunk(cursor, query, after, limit)
            if query.bucket is Bucket.HOUR:
                return _hour_chunk(cursor, query, after, limit)
            return _day_chunk(cursor, query, after, limit)


def _units(
    cursor: psycopg.Cursor[Any], query: MeasurementQuery, after: PointKey | None, hours: int = 0
) -> Iterator[DecodedUnit]:
    """The query's units from `after` on; fetched enough at once for `hours` hours, if given."""
    start, end = bucket_range(query)
    group = 2 + hours // cold_reads.HOURS_PER_UNIT
    customer, metric, devices = query.customer_id, query.metric, query.device_ids
    return cold_reads.units(cursor, customer, metric, devices, start, end, after, group)


def _range_us(query: MeasurementQuery) -> tuple[int, int]:
    start, end = bucket_range(query)
    return unix_us(start), unix_us(end)


def _hot_points(
    cursor: psycopg.Cursor[Any], query: MeasurementQuery, after: PointKey | None, limit: int
) -> list[Point]:
    sql, params = point_statement(query, after, limit)
    cursor.execute(sql, params)
    points: list[Point] = cursor.fetchall()
    return points


def _raw_chunk(
    cursor: psycopg.Cursor[Any], query: MeasurementQuery, after: PointKey | None, limit: int
) -> list[Point]:
    start_us, end_us = _range_us(query)
    cold = collect_readings(_units(cursor, query, after), start_us, end_us, after, limit)
    hot = _hot_points(cursor, query, after, limit)
    if not len(cold.devices):
        return hot
    hot_horizon = (hot[-1][0], hot[-1][1]) if len(hot) == limit else None
    devices = np.concatenate([np.fromiter((p[0] for p in hot), np.int64, len(hot)), cold.devices])
    times = np.concatenate([np.fromiter((p[1] for p in hot), np.int64, len(hot)), cold.times])
    values = np.concatenate([np.fromiter((p[3] for p in hot), np.float64, len(hot)), cold.values])
    if len(hot):
        order = np.lexsort((times, devices))
        devices, times, values = devices[order], times[order], values[order]
    n = min(limit, _known(devices, times, _earlier(hot_horizon, cold.horizon)))
    listed = values[:n].tolist()
    return list(
        zip(devices[:n].tolist(), times[:n].tolist(), repeat(1, n), listed, listed, listed, strict=False)
    )


def _earlier(a: PointKey | None, b: PointKey | None) -> PointKey | None:
    """The nearer of two horizons (None: no limit)."""
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _known(devices: Int64s, times: Int64s, horizon: PointKey | None) -> int:
    """How many of the sorted keys are at or before `horizon`."""
    if horizon is None:
        return len(devices)
    device, time = horizon
    return int(np.count_nonzero((devices < device) | ((devices == device) & (times <= time))))


def _hour_columns(points: list[Point], horizon: PointKey | None) -> HourColumns:
    n = len(points)
    return HourColumns(
        np.fromiter((p[0] for p in points), np.int64, n),
        np.fromiter((p[1] for p in points), np.int64, n),
        np.fromiter((p[2] for p in points), np.int64, n),
        np.fromiter((p[3] for p in points), np.float64, n),
        np.fromiter((p[4] for p in points), np.float64, n),
        np.fromiter((p[5] for p in points), np.float64, n),
        horizon,
    )


def merge_hours(hot: HourColumns, cold: HourColumns) -> HourColumns:
    """Hot and compressed hours as one (device, start)-ordered series, cut at the nearer horizon.

    An hour in both (a late reading for a compressed day) is `combine_hours(cold, hot)`, the one
    merge rule, so it reads the same before and after the next run folds the reading in.
    """
    horizon = _earlier(hot.horizon, cold.horizon)
    if not len(cold):
        merged = hot
    elif not len(hot):
        merged = cold
    else:
        source = np.r_[np.zeros(len(cold), dtype=np.int8), np.ones(len(hot), dtype=np.int8)]
        devices = np.r_[cold.devices, hot.devices]
        starts = np.r_[cold.starts, hot.starts]
        order = np.lexsort((source, starts, devices))
        devices, starts = devices[order], starts[order]
        counts = np.r_[cold.counts, hot.counts][order]
        sums = np.r_[cold.sums, hot.sums][order]
        mins = np.r_[cold.mins, hot.mins][order]
        maxs = np.r_[cold.maxs, hot.maxs][order]
        both = np.flatnonzero((devices[1:] == devices[:-1]) & (starts[1:] == starts[:-1]))
        if len(both):  # at `i` the compressed hour (source 0 sorts first), at `i + 1` the hot one
            same = np.arange(len(both), dtype=np.int64)
            combined = combine_hours(
                Hours(same, counts[both], sums[both], mins[both], maxs[both]),
                Hours(same, counts[both + 1], sums[both + 1], mins[both + 1], maxs[both + 1]),
            )
            counts[both], sums[both] = combined.counts, combined.sums
            mins[both], maxs[both] = combined.mins, combined.maxs
            keep = np.ones(len(devices), dtype=bool)
            keep[both + 1] = False
            devices, starts, counts = devices[keep], starts[keep], counts[keep]
            sums, mins, maxs = sums[keep], mins[keep], maxs[keep]
        merged = HourColumns(devices, starts, counts, sums, mins, maxs, None)
    n = _known(merged.devices, merged.starts, horizon)
    return HourColumns(
        merged.devices[:n],
        merged.starts[:n],
        merged.counts[:n],
        merged.sums[:n],
        merged.mins[:n],
        merged.maxs[:n],
        horizon,
    )


def _hour_chunk(
    cursor: psycopg.Cursor[Any], query: MeasurementQuery, after: PointKey | None, limit: int
) -> list[Point]:
    start_us, end_us = _range_us(query)
    cold = collect_hours(_units(cursor, query, after, limit), start_us, end_us, after, limit)
    hot = _hot_points(cursor, query, after, limit)
    if not len(cold):
        return hot
    hot_horizon = (hot[-1][0], hot[-1][1]) if len(hot) == limit else None
    merged = merge_hours(_hour_columns(hot, hot_horizon), cold)
    return _points(merged.devices, merged.starts, merged.counts, merged.sums, merged.mins, merged.maxs, limit)


def _points(
    devices: Int64s,
    starts: Int64s,
    counts: Int64s,
    sums: Float64s,
    mins: Float64s,
    maxs: Float64s,
    limit: int,
) -> list[Point]:
    n = min(limit, len(devices))
    return list(
        zip(
            devices[:n].tolist(),
            starts[:n].tolist(),
            counts[:n].tolist(),
            sums[:n].tolist(),
            mins[:n].tolist(),
            maxs[:n].tolist(),
            strict=True,
        )
    )


def day_totals(hours: HourColumns) -> HourColumns:
    """Day points (UTC days) from (device, start)-ordered hours: THE day aggregation.

    Each day's hours are added left to right in hour order (count added, min of mins, max of
    maxs), vectorised across days and sequential within one, so a day reads the same bits
    whether its hours came from the rollup table, a compressed unit or both. (PostgreSQL's
    `sum` over a GROUP BY adds in whatever order its hash table yields, which a merge of two
    sources cannot reproduce.) `horizon` is kept: days ending after it are not complete.
    """
    if not len(hours):
        return hours
    days = np.floor_divide(hours.starts, DAY_US) * DAY_US
    first = np.flatnonzero(np.r_[True, (hours.devices[1:] != hours.devices[:-1]) | (days[1:] != days[:-1])])
    sizes = np.diff(np.r_[first, len(days)])
    counts = np.add.reduceat(hours.counts, first)
    sums = hours.sums[first].copy()
    mins = hours.mins[first].copy()
    maxs = hours.maxs[first].copy()
    for k in range(1, int(sizes.max())):
        more = sizes > k
        at = first[more] + k
        sums[more] += hours.sums[at]
        mins[more] = np.minimum(mins[more], hours.mins[at])
        maxs[more] = np.maximum(maxs[more], hours.maxs[at])
    return HourColumns(hours.devices[first], days[first], counts, sums, mins, maxs, hours.horizon)


def _day_chunk(
    cursor: psycopg.Cursor[Any], query: MeasurementQuery, after: PointKey | None, limit: int
) -> list[Point]:
    start_us, end_us = _range_us(query)
    need = _hours_for_days(limit)
    # After a day point: from the next day's first hour on.
    resume = (after[0], after[1] + DAY_US) if after is not None else None
    cold = collect_hours(_units(cursor, query, resume, need), start_us, end_us, resume, need, inclusive=True)
    sql, params = point_statement(query, after, limit)
    register_array_loaders(cursor)
    cursor.execute(sql, params)
    row = cursor.fetchone()
    assert row is not None
    devices, starts, counts, sums, mins, maxs = row
    hot = _NO_HOURS if devices is None else HourColumns(devices, starts, counts, sums, mins, maxs, None)
    if len(hot) == need:
        hot = replace(hot, horizon=(int(hot.devices[-1]), int(hot.starts[-1])))
    days = day_totals(merge_hours(hot, cold))
    if days.horizon is not None:  # only days whose last hour is known are whole
        n = _known(days.devices, days.starts + 23 * HOUR_US, days.horizon)
    else:
        n = len(days)
    return _points(days.devices, days.starts, days.counts, days.sums, days.mins, days.maxs, min(n, limit))


_NO_HOURS = HourColumns(
    np.zeros(0, dtype=np.int64),
    np.zeros(0, dtype=np.int64),
    np.zeros(0, dtype=np.int64),
    np.zeros(0, dtype=np.float64),
    np.zeros(0, dtype=np.float64),
    np.zeros(0, dtype=np.float64),
    None,
)


def chunk_end(points: list[Point]) -> PointKey:
    """The key the chunk after `points` starts after."""
    return points[-1][0], points[-1][1]


# Full hours inside [start, end) come from the rollups; the partial hours at either edge, if
# any, from raw rows, so the summary is exact for any range and cheap for long ones. Compressed
# hours and edge readings arrive as arrays (`cold_*`, `edge_*`); an hour both compressed and hot
# (a late reading) is combined first (cold sum + hot sum, as `cold_codec.combine_hours`). Sums
# are then taken in a defined order — each device's hours and readings by time, each
# customer's devices by id — so the bits do not depend on where an hour lives nor on the plan.
# `{n}` is empty, or `::numeric` for the exact form below.
_SUMMARY_TEMPLATE = """
WITH cold_hours AS (
    SELECT * FROM unnest(%(cold_customers)s, %(cold_devices)s, %(cold_times)s, %(cold_counts)s, %(cold_sums)s)
        AS c(customer_id, device_id, time, rows, sum)
),
hot_hours AS (
    SELECT customer_id, device_id, bucket AS time, count::int8 AS rows, sum
    FROM fleet.measurement_rollups_hourly
    WHERE metric = %(metric)s AND bucket >= %(full_start)s AND bucket < %(full_end)s
),
readings AS (
    SELECT coalesce(c.customer_id, h.customer_id) AS customer_id,
           coalesce(c.device_id, h.device_id) AS device_id,
           coalesce(c.time, h.time) AS time,
           coalesce(c.rows, 0) + coalesce(h.rows, 0) AS rows,
           CASE WHEN h.rows IS NULL THEN c.sum{n}
                WHEN c.rows IS NULL THEN h.sum{n}
                ELSE c.sum{n} + h.sum{n} END AS sum
    FROM cold_hours c
    FULL JOIN hot_hours h ON h.customer_id = c.customer_id AND h.device_id = c.device_id AND h.time = c.time
    UNION ALL
    SELECT customer_id, device_id, time, 1, value{n}
    FROM fleet.measurements
    WHERE metric = %(metric)s
      AND ((time >= %(start)s AND time < %(head_end)s) OR (time >= %(tail_start)s AND time < %(end)s))
    UNION ALL
    SELECT customer_id, device_id, time, 1, value{n}
    FROM unnest(%(edge_customers)s, %(edge_devices)s, %(edge_times)s, %(edge_values)s)
        AS e(customer_id, device_id, time, value)
),
per_device AS (
    SELECT customer_id, device_id, sum(rows) AS rows, sum(sum ORDER BY time) AS sum
    FROM readings GROUP BY customer_id, device_id
),
per_customer AS (
    SELECT customer_id, count(*) AS seen, sum(rows) AS rows, sum(sum ORDER BY device_id) AS sum
    FROM per_device GROUP BY customer_id
),
devices AS (
    SELECT customer_id, count(*) AS devices FROM fleet.devices GROUP BY customer_id
)
SELECT c.code, coalesce(d.devices, 0), coalesce(p.seen, 0), coalesce(p.rows, 0)::int8, coalesce(p.sum, 0)
FROM fleet.customers c
LEFT JOIN per_customer p ON p.customer_id = c.id
LEFT JOIN devices d ON d.customer_id = c.id
ORDER BY c.code
"""
_SUMMARY_SQL = _SUMMARY_TEMPLATE.format(n="")
# The same summary with the sums in NUMERIC, which cannot overflow: for rows stored before values
# were bounded (`domain.measurements.MAX_VALUE_MAGNITUDE`), whose double sums can.
_EXACT_SUMMARY_SQL = _SUMMARY_TEMPLATE.format(n="::numeric")


def summary_segments(start: datetime, end: datetime) -> dict[str, datetime]:
    """Split `[start, end)` into whole hours (rollups) and the raw edges around them."""
    full_start, full_end = ceil_to(start, Bucket.HOUR), floor_to(end, Bucket.HOUR)
    if full_start >= full_end:  # no whole hour inside: read the range raw
        return {"full_start": start, "full_end": start, "head_end": end, "tail_start": end}
    return {"full_start": full_start, "full_end": full_end, "head_end": full_start, "tail_start": full_end}


def summarize_fleet(session: Session, metric: str, start: datetime, end: datetime) -> list[CustomerSummary]:
    """One summary per customer (every customer, ordered by code) of `metric` over `[start, end)`.

    Summed in doubles, as fast as it gets. If that overflows — only rows stored before values
    were bounded can make it — the summary is summed again in NUMERIC, so one customer's rows
    never fail everyone's summary: that customer's sum is reported as infinite, the others'
    as they are.
    """
    # The units are read and decoded before the statement that sums: both in one snapshot, so a
    # compression run committing in between cannot move an hour out of sight or show it twice.
    connection = session.connection(
        execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
    )
    conn = connection.connection.driver_connection
    assert isinstance(conn, psycopg.Connection)
    segments = summary_segments(start, end)
    params: dict[str, Any] = {"metric": metric, "start": start, "end": end, **segments}
    with conn.cursor(binary=True) as cursor:
        params.update(_compressed_summary_inputs(cursor, metric, start, end, segments))
    register_arrays(conn)
    try:
        with conn.transaction(), conn.cursor(binary=True) as cursor:  # a savepoint: the session's is open
            cursor.execute(_SUMMARY_SQL, params)
            rows = cursor.fetchall()
    except psycopg.errors.NumericValueOutOfRange:
        _LOGGER.warning("the fleet summary of %s overflowed a double; summing it exactly", metric)
        with conn.cursor(binary=True) as cursor:
            cursor.execute(_EXACT_SUMMARY_SQL, params)
            rows = cursor.fetchall()
    return [CustomerSummary(str(c), int(d), int(s), int(r), float(t)) for c, d, s, r, t in rows]


def _compressed_summary_inputs(
    cursor: psycopg.Cursor[Any], metric: str, start: datetime, end: datetime, segments: dict[str, datetime]
) -> dict[str, Any]:
    """The summary's compressed side as array parameters: the whole hours of the units in
    `[full_start, full_end)` (`cold_*`) and their readings in the raw edges (`edge_*`)."""
    full_start, full_end = unix_us(segments["full_start"]), unix_us(segments["full_end"])
    edges = [(unix_us(start), unix_us(segments["head_end"])), (unix_us(segments["tail_start"]), unix_us(end))]
    hour_parts: list[tuple[int, int, Int64s, Int64s, Float64s]] = []
    reading_parts: list[tuple[int, int, Int64s, Float64s]] = []
    for customer_id, device_id, unit in cold_reads.fleet_units(cursor, metric, start, end):
        hours = unit.hours
        lo, hi = np.searchsorted(hours.starts, [full_start, full_end])
        if hi > lo:
            hour_parts.append(
                (customer_id, device_id, hours.starts[lo:hi], hours.counts[lo:hi], hours.sums[lo:hi])
            )
        for edge_start, edge_end in edges:
            lo, hi = np.searchsorted(unit.times, [edge_start, edge_end])
            if hi > lo:
                reading_parts.append((customer_id, device_id, unit.times[lo:hi], unit.values[lo:hi]))

    def ids(parts: list[Any], position: int) -> IntArray:
        return IntArray(
            np.concatenate([np.full(len(p[2]), p[position], dtype=np.int64) for p in parts])
            if parts
            else np.zeros(0, dtype=np.int64)
        )

    def column(arrays: list[Any], dtype: type) -> Any:
        return np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)

    return {
        "cold_customers": ids(hour_parts, 0),
        "cold_devices": ids(hour_parts, 1),
        "cold_times": TimeArray(column([p[2] for p in hour_parts], np.int64)),
        "cold_counts": IntArray(column([p[3] for p in hour_parts], np.int64)),
        "cold_sums": FloatArray(column([p[4] for p in hour_parts], np.float64)),
        "edge_customers": ids(reading_parts, 0),
        "edge_devices": ids(reading_parts, 1),
        "edge_times": TimeArray(column([p[2] for p in reading_parts], np.int64)),
        "edge_values": FloatArray(column([p[3] for p in reading_parts], np.float64)),
    }
