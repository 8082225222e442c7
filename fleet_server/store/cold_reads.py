"""Compressed readings for the read paths: the units a query overlaps, decoded into numpy columns.

Every read path (points, the fleet summary, costs, the catalog) asks here for the units of
`fleet.measurements_compressed` that overlap its range, and merges what they hold with the hot
rows by the rules of `cold_codec` (one reading lives in one place; an hour in both places is
`combine_hours(cold, hot)`). Units come in primary-key order, `(device_id, month)` for one
customer and metric, fetched a few at a time, so a chunk of a long query decodes only the units
it needs. Readings stay in numpy arrays from the payload to the merge: no Python object per
reading until the caller builds its answer.

Columns travel to and from PostgreSQL as binary arrays: a numpy array is dumped as an `int8[]`,
`float8[]` or `timestamptz[]` parameter in one copy (`IntArray`, …; register with
`register_arrays`), and `array_agg` results load straight into numpy (`register_array_loaders`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from psycopg.abc import Buffer
from psycopg.adapt import Dumper, Loader
from psycopg.pq import Format

from fleet_server.store.cold_codec import Float64s, Hours, Int64s, Unit, decode, decode_readings, hour_starts
from fleet_server.store.timestamps import UNIX_TO_PG_US

UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# Where a series position is: (device_id, microseconds since the Unix epoch).
Key = tuple[int, int]


def unix_us(moment: datetime) -> int:
    """An aware datetime as microseconds since the Unix epoch (exact, any year)."""
    return (moment - UNIX_EPOCH) // _MICROSECOND


def from_unix_us(micros: int) -> datetime:
    return UNIX_EPOCH + timedelta(microseconds=micros)


def month_of(moment: datetime) -> date:
    """The first day of `moment`'s UTC month: the `month` column of the unit holding it."""
    moment = moment.astimezone(UTC)
    return date(moment.year, moment.month, 1)


# --- numpy <-> PostgreSQL binary arrays -------------------------------------------------------

_ARRAY_HEADER = struct.Struct(">iiiii")  # ndim, has-null flag, element oid, length, lower bound
_EMPTY_HEADER = struct.Struct(">iii")
_INT8_OID, _FLOAT8_OID, _TIMESTAMPTZ_OID = 20, 701, 1184
_INT8_ARRAY_OID, _FLOAT8_ARRAY_OID, _TIMESTAMPTZ_ARRAY_OID = 1016, 1022, 1185
_INT_ELEMENTS = np.dtype([("length", ">i4"), ("value", ">i8")])
_FLOAT_ELEMENTS = np.dtype([("length", ">i4"), ("value", ">f8")])


class _Column:
    """A numpy column to send as one binary array parameter."""

    __slots__ = ("values",)

    def __init__(self, values: Int64s | Float64s) -> None:
        self.values = values


class IntArray(_Column):
    """An `int8[]` parameter."""

    __slots__ = ()


class FloatArray(_Column):
    """A `float8[]` parameter (bit for bit: -0.0 stays -0.0)."""

    __slots__ = ()


class TimeArray(_Column):
    """A `timestamptz[]` parameter from microseconds since the Unix epoch."""

    __slots__ = ()


def _pack(values: Any, elements: np.dtype[Any], element_oid: int) -> bytes:
    count = len(values)
    if not count:
        return _EMPTY_HEADER.pack(0, 0, element_oid)
    packed = np.empty(count, dtype=elements)
    packed["length"] = 8
    packed["value"] = values
    return _ARRAY_HEADER.pack(1, 0, element_oid, count, 1) + packed.tobytes()


class _IntArrayDumper(Dumper):
    format = Format.BINARY
    oid = _INT8_ARRAY_OID

    def dump(self, obj: Any) -> bytes:
        return _pack(obj.values, _INT_ELEMENTS, _INT8_OID)


class _FloatArrayDumper(Dumper):
    format = Format.BINARY
    oid = _FLOAT8_ARRAY_OID

    def dump(self, obj: Any) -> bytes:
        return _pack(obj.values, _FLOAT_ELEMENTS, _FLOAT8_OID)


class _TimeArrayDumper(Dumper):
    format = Format.BINARY
    oid = _TIMESTAMPTZ_ARRAY_OID

    def dump(self, obj: Any) -> bytes:
        return _pack(np.asarray(obj.values, dtype=np.int64) - UNIX_TO_PG_US, _INT_ELEMENTS, _TIMESTAMPTZ_OID)


def register_arrays(context: psycopg.Connection[Any] | psycopg.Cursor[Any]) -> None:
    """Let `context` send `IntArray`, `FloatArray` and `TimeArray` parameters."""
    context.adapters.register_dumper(IntArray, _IntArrayDumper)
    context.adapters.register_dumper(FloatArray, _FloatArrayDumper)
    context.adapters.register_dumper(TimeArray, _TimeArrayDumper)


def _unpack(data: Buffer, elements: np.dtype[Any]) -> Any:
    ndim, has_null, _ = _EMPTY_HEADER.unpack_from(data)
    if ndim == 0:
        return np.zeros(0, dtype=elements["value"].newbyteorder("="))
    if ndim != 1 or has_null:
        raise ValueError("only one-dimensional arrays without NULLs load as numpy columns")
    count = _ARRAY_HEADER.unpack_from(data)[3]
    raw = np.frombuffer(data, dtype=elements, count=count, offset=_ARRAY_HEADER.size)
    return raw["value"].astype(elements["value"].newbyteorder("="))


class _IntArrayLoader(Loader):
    format = Format.BINARY

    def load(self, data: Buffer) -> Int64s:
        values: Int64s = _unpack(data, _INT_ELEMENTS)
        return values


class _FloatArrayLoader(Loader):
    format = Format.BINARY

    def load(self, data: Buffer) -> Float64s:
        values: Float64s = _unpack(data, _FLOAT_ELEMENTS)
        return values


class _TimeArrayLoader(Loader):
    format = Format.BINARY

    def load(self, data: Buffer) -> Int64s:
        values: Int64s = _unpack(data, _INT_ELEMENTS) + UNIX_TO_PG_US
        return values


def register_array_loaders(cursor: psycopg.Cursor[Any]) -> None:
    """Load binary `int8[]`, `float8[]` and `timestamptz[]` results (no NULL elements) as numpy
    arrays; timestamps as microseconds since the Unix epoch."""
    cursor.adapters.register_loader(_INT8_ARRAY_OID, _IntArrayLoader)
    cursor.adapters.register_loader(_FLOAT8_ARRAY_OID, _FloatArrayLoader)
    cursor.adapters.register_loader(_TIMESTAMPTZ_ARRAY_OID, _TimeArrayLoader)


# --- the units of a query ---------------------------------------------------------------------


class _UnixMicrosLoader(Loader):
    format = Format.BINARY
    _INT8 = struct.Struct("!q")

    def load(self, data: Buffer) -> int:
        return int(self._INT8.unpack(data)[0]) + UNIX_TO_PG_US


# The units of one customer's metric that overlap [start, end), in key order, from a position on.
# The primary key leads (customer_id, device_id, metric, month): with the row comparison the scan
# starts where the last group ended and stops after `units` matches.
_UNITS_SQL = """
SELECT device_id, month, last_time, payload
FROM fleet.measurements_compressed
WHERE customer_id = %(customer)s AND metric = %(metric)s {devices}
  AND (device_id, metric, month) {op} (%(from_device)s, %(metric)s, %(from_month)s)
  AND month >= %(start_month)s AND month <= %(end_month)s
  AND first_time < %(end)s AND last_time >= %(start)s
ORDER BY device_id, metric, month
LIMIT %(units)s
"""


_MAX_GROUP = 256
# A unit holds at most 31 * 24 hours; a full month of hours is the usual.
HOURS_PER_UNIT = 720


@dataclass(frozen=True)
class DecodedUnit:
    device_id: int
    last_time: int  # microseconds since the Unix epoch: no reading of the series-month is later
    unit: Unit


def units(
    cursor: psycopg.Cursor[Any],
    customer_id: int,
    metric: str,
    device_ids: Sequence[int],
    start: datetime,
    end: datetime,
    after: Key | None = None,
    first_group: int = 2,
) -> Iterator[DecodedUnit]:
    """The decoded units of the customer's `metric` overlapping `[start, end)`, in (device, month)
    order, from the device and month of `after` on (None: from the first).

    Lazy: units are fetched in groups of `first_group`, then four times as many each time, as
    the caller takes them, so a caller that stops early reads and decodes little, and one that
    needs many units takes few statements. Run on the cursor of the caller's transaction,
    between its other statements (each group is fetched whole before it is yielded).
    """
    cursor.adapters.register_loader("timestamptz", _UnixMicrosLoader)
    devices = "AND device_id = ANY(%(devices)s)" if device_ids else ""
    params: dict[str, Any] = {
        "customer": customer_id,
        "metric": metric,
        "devices": list(device_ids),
        "start": start,
        "end": end,
        "start_month": month_of(start),
        "end_month": month_of(end),
        "from_device": after[0] if after is not None else -(2**63),
        "from_month": month_of(from_unix_us(after[1])) if after is not None else date.min,
    }
    op, group = ">=", max(1, first_group)
    while True:
        cursor.execute(_UNITS_SQL.format(devices=devices, op=op), {**params, "units": group})
        rows = cursor.fetchall()
        for device_id, _month, last_time, payload in rows:
            yield DecodedUnit(int(device_id), int(last_time), decode(payload))
        if len(rows) < group:
            return
        params["from_device"], params["from_month"] = rows[-1][0], rows[-1][1]
        op, group = ">", min(group * 4, _MAX_GROUP)


# Every customer's units of `metric` overlapping [start, end) (the fleet summary, costs).
_FLEET_UNITS_SQL = """
SELECT customer_id, device_id, payload
FROM fleet.measurements_compressed
WHERE metric = %(metric)s {customers}
  AND month >= %(start_month)s AND month <= %(end_month)s
  AND first_time < %(end)s AND last_time >= %(start)s
ORDER BY customer_id, device_id, month
"""


def fleet_units(
    cursor: psycopg.Cursor[Any],
    metric: str,
    start: datetime,
    end: datetime,
    customer_ids: Sequence[int] | None = None,
    *,
    hours: bool = True,
) -> Iterator[tuple[int, int, Unit]]:
    """(customer id, device id, decoded unit) of every unit of `metric` overlapping `[start, end)`,
    of the given customers (None: of all), in (customer, device, month) order. `hours=False`
    leaves the units' hours empty (a third of decoding a unit is deriving them)."""
    customers = "AND customer_id = ANY(%(customers)s)" if customer_ids is not None else ""
    params = {
        "metric": metric,
        "customers": list(customer_ids or ()),
        "start": start,
        "end": end,
        "start_month": month_of(start),
        "end_month": month_of(end),
    }
    cursor.execute(_FLEET_UNITS_SQL.format(customers=customers), params)
    decoder = decode if hours else decode_readings
    for customer_id, device_id, payload in cursor.fetchall():
        yield int(customer_id), int(device_id), decoder(payload)


@dataclass(frozen=True)
class FleetReadings:
    """Readings of several customers' devices as columns (times in Unix microseconds)."""

    customers: Int64s
    devices: Int64s
    times: Int64s
    values: Float64s


def fleet_readings(
    units_: Iterator[tuple[int, int, Unit]], ranges: Sequence[tuple[int, int]]
) -> FleetReadings:
    """The units' readings with times in any of the `[start, end)` ranges (microseconds)."""
    customers: list[Int64s] = []
    devices: list[Int64s] = []
    times: list[Int64s] = []
    values: list[Float64s] = []
    for customer_id, device_id, unit in units_:
        for start_us, end_us in ranges:
            lo, hi = np.searchsorted(unit.times, [start_us, end_us])
            if hi > lo:
                customers.append(np.full(hi - lo, customer_id, dtype=np.int64))
                devices.append(np.full(hi - lo, device_id, dtype=np.int64))
                times.append(unit.times[lo:hi])
                values.append(unit.values[lo:hi])
    if not times:
        return FleetReadings(_NO_INTS, _NO_INTS, _NO_INTS, _NO_FLOATS)
    return FleetReadings(
        np.concatenate(customers), np.concatenate(devices), np.concatenate(times), np.concatenate(values)
    )


# --- collecting columns -------------------------------------------------------------------------


@dataclass(frozen=True)
class Readings:
    """Readings of several devices in (device, time) order, and how far they are known.

    `horizon` None: every reading of the source after the start is here. Otherwise every reading
    with key <= `horizon` is here, and none later is known.
    """

    devices: Int64s
    times: Int64s
    values: Float64s
    horizon: Key | None


@dataclass(frozen=True)
class HourColumns:
    """Hours of several devices in (device, start) order; `horizon` as in `Readings`."""

    devices: Int64s
    starts: Int64s
    counts: Int64s
    sums: Float64s
    mins: Float64s
    maxs: Float64s
    horizon: Key | None

    def __len__(self) -> int:
        return len(self.starts)

    def hours(self, selection: slice | Int64s) -> Hours:
        return Hours(
            self.starts[selection],
            self.counts[selection],
            self.sums[selection],
            self.mins[selection],
            self.maxs[selection],
        )


def _after_mask(device_id: int, times: Int64s, after: Key | None, inclusive: bool) -> Any:
    """Which of one device's `times` come after `after` (or at it, when `inclusive`)."""
    if after is None or device_id > after[0]:
        return None
    if inclusive:
        return times >= after[1]
    return times > after[1]


def collect_readings(
    source: Iterator[DecodedUnit], start_us: int, end_us: int, after: Key | None, need: int
) -> Readings:
    """At least `need` readings with times in `[start_us, end_us)` after `after` (all there are,
    if fewer), taken from `source` in order."""
    devices: list[Int64s] = []
    times: list[Int64s] = []
    values: list[Float64s] = []
    taken = 0
    horizon: Key | None = None
    for decoded in source:
        unit = decoded.unit
        lo, hi = np.searchsorted(unit.times, [start_us, end_us])
        t, v = unit.times[lo:hi], unit.values[lo:hi]
        mask = _after_mask(decoded.device_id, t, after, inclusive=False)
        if mask is not None:
            t, v = t[mask], v[mask]
        if len(t):
            devices.append(np.full(len(t), decoded.device_id, dtype=np.int64))
            times.append(t)
            values.append(v)
            taken += len(t)
        if taken >= need:
            horizon = (decoded.device_id, decoded.last_time)
            break
    if not devices:
        return Readings(_NO_INTS, _NO_INTS, _NO_FLOATS, horizon)
    return Readings(np.concatenate(devices), np.concatenate(times), np.concatenate(values), horizon)


def collect_hours(
    source: Iterator[DecodedUnit],
    start_us: int,
    end_us: int,
    after: Key | None,
    need: int,
    *,
    inclusive: bool = False,
) -> HourColumns:
    """At least `need` unit hours starting in `[start_us, end_us)` after `after` (at or after, when
    `inclusive`), all there are if fewer, taken from `source` in order."""
    parts: list[tuple[int, Hours]] = []
    taken = 0
    horizon: Key | None = None
    for decoded in source:
        hours = decoded.unit.hours
        lo, hi = np.searchsorted(hours.starts, [start_us, end_us])
        selection: slice | Int64s = slice(lo, hi)
        starts = hours.starts[selection]
        mask = _after_mask(decoded.device_id, starts, after, inclusive)
        if mask is not None:
            selection = np.arange(lo, hi)[mask]
        picked = Hours(
            hours.starts[selection],
            hours.counts[selection],
            hours.sums[selection],
            hours.mins[selection],
            hours.maxs[selection],
        )
        if len(picked):
            parts.append((decoded.device_id, picked))
            taken += len(picked)
        if taken >= need:
            horizon = (decoded.device_id, int(hour_starts(np.array([decoded.last_time]))[0]))
            break
    if not parts:
        return HourColumns(_NO_INTS, _NO_INTS, _NO_INTS, _NO_FLOATS, _NO_FLOATS, _NO_FLOATS, horizon)
    return HourColumns(
        np.concatenate([np.full(len(h), d, dtype=np.int64) for d, h in parts]),
        np.concatenate([h.starts for _, h in parts]),
        np.concatenate([h.counts for _, h in parts]),
        np.concatenate([h.sums for _, h in parts]),
        np.concatenate([h.mins for _, h in parts]),
        np.concatenate([h.maxs for _, h in parts]),
        horizon,
    )


_NO_INTS: Int64s = np.zeros(0, dtype=np.int64)
_NO_FLOATS: Float64s = np.zeros(0, dtype=np.float64)
