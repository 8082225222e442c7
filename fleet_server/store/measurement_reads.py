"""Reading measurements and their hourly rollups back: raw points, hour and day buckets, the fleet summary.

Hour buckets come from the rollup table only and day buckets are summed from those hours (UTC),
so a bucket query never scans raw rows. Bucket queries return whole buckets: the range is
widened to the buckets that overlap `[start, end)` (start floored, end ceiled to the bucket),
because a pre-aggregated hour cannot be split. Raw queries use `[start, end)` exactly.

A query is read in keyset chunks: each chunk is one short statement that starts after the last
point of the chunk before, in (device, time) order, on a connection held for that chunk only.
A client that reads slowly then holds no database connection (see `db/scheduler.py`), and
memory stays bounded by the chunk size however long the range. The price: each chunk is its
own snapshot, so a point written while a long query runs may show in a later chunk (never
twice, never half an hour's aggregate — each point is one row or one rollup row).
"""

from __future__ import annotations

import enum
import logging
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.pq import Format
from sqlalchemy.orm import Session

from fleet_server.db.session import Database
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

_DAY_SQL = """
SELECT device_id, day, sum(count)::int8, sum(sum), min(min), max(max)
FROM (
    SELECT device_id, date_bin('1 day', bucket, timestamptz '2000-01-01Z') AS day, count, sum, min, max
    FROM fleet.measurement_rollups_hourly
    WHERE customer_id = %(customer)s AND metric = %(metric)s
      AND bucket >= %(start)s AND bucket < %(end)s {devices}
      {after}
) AS hours
GROUP BY device_id, day
ORDER BY device_id, day
{limit}
"""

_SQL = {Bucket.RAW: _RAW_SQL, Bucket.HOUR: _HOUR_SQL, Bucket.DAY: _DAY_SQL}
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


def point_statement(
    query: MeasurementQuery, after: PointKey | None = None, limit: int | None = None
) -> tuple[str, dict[str, Any]]:
    """The SQL and parameters of a point query, or of its chunk of `limit` points after `after`.

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
        params["limit"] = limit
    sql = _SQL[query.bucket].format(
        devices=devices,
        after=_AFTER[query.bucket] if after is not None else "",
        limit="LIMIT %(limit)s" if limit is not None else "",
    )
    return sql, params


def read_chunk(db: Database, query: MeasurementQuery, after: PointKey | None, limit: int) -> list[Point]:
    """Up to `limit` points of `query` after `after`, in key order; blocking, one short read.

    The connection is checked out for this chunk only, read-only, and given back before the
    points go to the client.
    """
    sql, params = point_statement(query, after, limit)
    with db.engine.connect().execution_options(postgresql_readonly=True) as connection:
        driver = connection.connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        with driver.cursor(binary=True) as cursor:
            cursor.adapters.register_loader("timestamptz", _UnixMicrosLoader)
            cursor.execute(sql, params)
            points: list[Point] = cursor.fetchall()
    return points


def chunk_end(points: list[Point]) -> PointKey:
    """The key the chunk after `points` starts after."""
    return points[-1][0], points[-1][1]


# Full hours inside [start, end) come from the rollups; the partial hours at either edge, if
# any, from raw rows, so the summary is exact for any range and cheap for long ones.
_SUMMARY_SQL = """
WITH readings AS (
    SELECT customer_id, device_id, count AS rows, sum
    FROM fleet.measurement_rollups_hourly
    WHERE metric = %(metric)s AND bucket >= %(full_start)s AND bucket < %(full_end)s
    UNION ALL
    SELECT customer_id, device_id, 1, value
    FROM fleet.measurements
    WHERE metric = %(metric)s
      AND ((time >= %(start)s AND time < %(head_end)s) OR (time >= %(tail_start)s AND time < %(end)s))
),
per_device AS (
    SELECT customer_id, device_id, sum(rows) AS rows, sum(sum) AS sum
    FROM readings GROUP BY customer_id, device_id
),
per_customer AS (
    SELECT customer_id, count(*) AS seen, sum(rows) AS rows, sum(sum) AS sum
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


def summary_segments(start: datetime, end: datetime) -> dict[str, datetime]:
    """Split `[start, end)` into whole hours (rollups) and the raw edges around them."""
    full_start, full_end = ceil_to(start, Bucket.HOUR), floor_to(end, Bucket.HOUR)
    if full_start >= full_end:  # no whole hour inside: read the range raw
        return {"full_start": start, "full_end": start, "head_end": end, "tail_start": end}
    return {"full_start": full_start, "full_end": full_end, "head_end": full_start, "tail_start": full_end}


# The same summary with the sums in NUMERIC, which cannot overflow: for rows stored before values
# were bounded (`domain.measurements.MAX_VALUE_MAGNITUDE`), whose double sums can.
_EXACT_SUMMARY_SQL = _SUMMARY_SQL.replace(
    "count AS rows, sum\n", "count AS rows, sum::numeric AS sum\n"
).replace("SELECT customer_id, device_id, 1, value\n", "SELECT customer_id, device_id, 1, value::numeric\n")
assert _EXACT_SUMMARY_SQL.count("::numeric") == 2


def summarize_fleet(session: Session, metric: str, start: datetime, end: datetime) -> list[CustomerSummary]:
    """One summary per customer (every customer, ordered by code) of `metric` over `[start, end)`.

    Summed in doubles, as fast as it gets. If that overflows — only rows stored before values
    were bounded can make it — the summary is summed again in NUMERIC, so one customer's rows
    never fail everyone's summary: that customer's sum is reported as infinite, the others'
    as they are.
    """
    conn = session.connection().connection.driver_connection
    assert isinstance(conn, psycopg.Connection)
    params = {"metric": metric, "start": start, "end": end, **summary_segments(start, end)}
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
