"""Measurement batches into `fleet.measurements`: one statement per batch, binary arrays, hourly rollups.

A batch travels as columns of plain Python values (see `MeasurementBatch`), never as one object
per row. The write sends each column to PostgreSQL as one binary array parameter of a single
statement that de-duplicates the batch, inserts the rows not stored yet (`… RETURNING`) and folds
exactly the returned rows into the hourly rollups, so a duplicate never counts twice and a
back-fill is in its hour the moment the batch commits. Why this instead of COPY into a staging
table: the arrays travel in the statement itself, so there is no temp table to write, truncate
and vacuum per batch, and the whole batch is one round trip.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.adapt import Dumper
from psycopg.pq import Format

from fleet_server.db.session import Database
from fleet_server.resources import Resource
from fleet_server.store import cold_codec, partitions
from fleet_server.store.customers import (
    HOLD_ACTIVE_CUSTOMER,
    HOLD_MEASUREMENT_WRITER,
    hold_params,
    why_refused,
)
from fleet_server.store.locks import LockSpace, cold_keys
from fleet_server.store.partitions import Partitions
from fleet_server.store.timestamps import UNIX_TO_PG_US, from_pg_micros

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class MeasurementBatch:
    """One pushed batch as columns; row `i` is (`device_ids[i]`, `metrics[i]`, …).

    Times are microseconds since 2000-01-01T00:00:00Z, PostgreSQL's own binary form (see
    `timestamps`). `is_unset(i, field)` tells an unset timestamp from one set to the epoch, for
    the error message only (the wire layer knows).
    """

    device_ids: list[int]
    metrics: list[str]
    times: list[int]
    values: list[float]
    received: list[int]
    is_unset: Callable[[int, str], bool] | None = field(default=None, compare=False)

    def __len__(self) -> int:
        return len(self.device_ids)


@dataclass(frozen=True)
class BatchResult:
    """What the acknowledgement reports: rows stored for the first time, rows ignored."""

    accepted: int
    duplicates: int


_INT8_OID, _FLOAT8_OID, _TEXT_OID, _TIMESTAMPTZ_OID = 20, 701, 25, 1184


class _PackedArray:
    """A one-dimensional array already in PostgreSQL's binary format."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class _Int8Array(_PackedArray):
    __slots__ = ()


class _Float8Array(_PackedArray):
    __slots__ = ()


class _TextArray(_PackedArray):
    __slots__ = ()


class _TimestamptzArray(_PackedArray):
    __slots__ = ()


def _dumper(array_oid: int) -> type[Dumper]:
    class PackedArrayDumper(Dumper):
        format = Format.BINARY
        oid = array_oid

        def dump(self, obj: Any) -> bytes:
            return bytes(obj.data)

    return PackedArrayDumper


_DUMPERS: tuple[tuple[type[_PackedArray], type[Dumper]], ...] = (
    (_Int8Array, _dumper(1016)),
    (_Float8Array, _dumper(1022)),
    (_TextArray, _dumper(1009)),
    (_TimestamptzArray, _dumper(1185)),
)
_prepared_connections: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
_HEADER = struct.Struct(">iiiii")
_LENGTH = struct.Struct(">i")
_structs: dict[tuple[str, int], struct.Struct] = {}
_metric_elements: dict[str, bytes] = {}


def _element_struct(code: str, count: int) -> struct.Struct:
    key = (code, count)
    packer = _structs.get(key)
    if packer is None:
        if len(_structs) > 256:
            _structs.clear()
        packer = _structs[key] = struct.Struct(">" + ("i" + code) * count)
    return packer


def _fixed_width_array(values: list[Any], code: str, element_oid: int) -> bytes:
    """`[v0, v1, …]` as a binary array of 8-byte elements: header, then (length 8, value) pairs."""
    count = len(values)
    interleaved: list[Any] = [8] * (2 * count)
    interleaved[1::2] = values
    return _HEADER.pack(1, 0, element_oid, count, 1) + _element_struct(code, count).pack(*interleaved)


def _text_array(values: list[str]) -> bytes:
    elements = _metric_elements
    for name in set(values) - elements.keys():
        if len(elements) > 4096:
            elements.clear()
        raw = name.encode()
        elements[name] = _LENGTH.pack(len(raw)) + raw
    return _HEADER.pack(1, 0, _TEXT_OID, len(values), 1) + b"".join(map(elements.__getitem__, values))


# The whole batch is ONE write statement, autocommitted (a batch that reaches into compressed
# days is written again in a transaction, see `write_batch`), so the write is one round trip and
# atomic by itself.
# - `owner` is the guard of every writer (`customers.HOLD_ACTIVE_CUSTOMER`): a concurrent
#   erasure waits for this batch, and a batch after it finds no owner and writes nothing. This
#   replaces a foreign key, which checked (and locked) the same row once per inserted row.
# - `batch` keeps the first of rows sharing a key (position breaks ties), in key order, so
#   concurrent writers take row locks in one order.
# - `inserted` returns only rows stored for the first time; exactly those are folded into their
#   UTC hour by `rolled`, so a duplicate never counts twice. The hour is `date_bin` from a UTC
#   midnight (plain arithmetic), not `date_trunc(…, 'UTC')`, which looks the zone up per row
#   and cost 20 times as much.
# - `synced` is the measurement sync status (`sync_status.record_push`'s upsert), inlined to keep
#   the batch at one statement; the high-water mark only moves forward.
# Two forms: `_SAFE_WRITE` skips rows whose key is stored (ON CONFLICT DO NOTHING); `_FAST_WRITE`
# inserts plainly and fails whole on a stored key. ON CONFLICT probes the index once more per row
# before inserting (perf: a fifth of the statement's time); the plain form checks uniqueness in
# the same descent that inserts. A batch of new rows (a back-fill, a steady push: nearly always)
# takes the fast form; on a unique violation it is re-run in the safe form. Concurrent writers
# of one customer's keys cannot race the fast form: a customer has one stream at a time.
_SAFE_WRITE = f"""
WITH owner AS (
    {HOLD_ACTIVE_CUSTOMER}
),
batch AS (
    SELECT DISTINCT ON (b.device_id, b.metric, b.time)
           b.device_id, b.metric, b.time, b.value, b.received_at
    FROM unnest(%(devices)b, %(metrics)b, %(times)b, %(values)b, %(received)b)
         WITH ORDINALITY AS b(device_id, metric, time, value, received_at, position)
    ORDER BY b.device_id, b.metric, b.time, b.position
),
inserted AS (
    INSERT INTO fleet.measurements (customer_id, device_id, metric, time, value, received_at)
    SELECT owner.id, batch.device_id, batch.metric, batch.time, batch.value, batch.received_at
    FROM owner CROSS JOIN batch
    ON CONFLICT DO NOTHING
    RETURNING device_id, metric, time, value
),
rolled AS (
    INSERT INTO fleet.measurement_rollups_hourly AS r
        (customer_id, device_id, metric, bucket, count, sum, min, max)
    SELECT %(customer)s, device_id, metric, date_bin('1 hour', time, timestamptz '2000-01-01Z'),
           count(*), sum(value), min(value), max(value)
    FROM inserted
    GROUP BY device_id, metric, date_bin('1 hour', time, timestamptz '2000-01-01Z')
    ORDER BY 2, 3, 4
    ON CONFLICT (customer_id, device_id, metric, bucket) DO UPDATE SET
        count = r.count + excluded.count,
        sum = r.sum + excluded.sum,
        min = least(r.min, excluded.min),
        max = greatest(r.max, excluded.max)
),
synced AS (
    INSERT INTO fleet.sync_status AS s
        (customer_id, resource, last_push_at, last_received, high_water_received_at)
    SELECT id, '{Resource.MEASUREMENTS}', %(now)s, %(received_count)s, %(high_water)s FROM owner
    ON CONFLICT (customer_id, resource) DO UPDATE SET
        last_push_at = excluded.last_push_at,
        last_received = excluded.last_received,
        high_water_received_at = greatest(s.high_water_received_at, excluded.high_water_received_at)
)
SELECT (SELECT count(*) FROM owner), (SELECT count(*) FROM inserted)
"""
_FAST_WRITE = _SAFE_WRITE.replace("    ON CONFLICT DO NOTHING\n", "", 1)
assert _FAST_WRITE != _SAFE_WRITE

# The series-months of the batch: per (device, metric, UTC month), the batch's earliest day
# there. Days are `date_bin` arithmetic per row; the zone-aware month is computed once per
# distinct day.
_BATCH_MONTHS = """
days AS (
    SELECT b.device_id, b.metric, date_bin('1 day', b.time, timestamptz '2000-01-01Z') AS day
    FROM unnest(%(devices)b, %(metrics)b, %(times)b) AS b(device_id, metric, time)
    GROUP BY 1, 2, 3
),
months AS (
    SELECT device_id, metric, date_trunc('month', day AT TIME ZONE 'UTC')::date AS month,
           min(day AT TIME ZONE 'UTC')::date AS first_day
    FROM days
    GROUP BY 1, 2, 3
)"""
# The units (`store/cold.py`) a batch that reaches into compressed days may collide with: per
# series-month of the batch, the unit whose `through_day` reaches the batch's earliest day there.
_UNITS_FOR_BATCH = f"""WITH {_BATCH_MONTHS}
SELECT c.device_id, c.metric, c.payload
FROM months m
JOIN fleet.measurements_compressed c
  ON c.customer_id = %(customer)s AND c.device_id = m.device_id AND c.metric = m.metric
 AND c.month = m.month AND c.through_day >= m.first_day"""


def _guarded(write: str) -> str:
    """`write` as a live batch's statement: it writes nothing (and says so) unless every day of
    the batch comes after the customer's compression frontier (`customers.cold_through`).

    The frontier is read from the owner row, locked FOR SHARE (`HOLD_MEASUREMENT_WRITER`) before
    any row is inserted: a unit being written holds that row FOR NO KEY UPDATE from before it
    reads the hot rows until it commits, so either this batch commits first and the unit reads
    its rows, or this batch waits and then reads the frontier the unit moved.
    """
    guarded = write.replace(HOLD_ACTIVE_CUSTOMER, HOLD_MEASUREMENT_WRITER, 1)
    guarded = guarded.replace(
        "\n),\nbatch AS (",
        "\n),\nhits AS (SELECT 1 FROM owner WHERE owner.cold_through >= %(first_day)s),\nbatch AS (",
        1,
    )
    guarded = guarded.replace(
        "    ORDER BY b.device_id, b.metric, b.time, b.position",
        "    WHERE NOT EXISTS (SELECT 1 FROM hits)\n    ORDER BY b.device_id, b.metric, b.time, b.position",
        1,
    )
    guarded = guarded.replace(
        "%(high_water)s FROM owner", "%(high_water)s FROM owner WHERE NOT EXISTS (SELECT 1 FROM hits)", 1
    )
    guarded = guarded.replace(
        "(SELECT count(*) FROM inserted)\n",
        "(SELECT count(*) FROM inserted), EXISTS (SELECT 1 FROM hits)\n",
        1,
    )
    assert guarded.count("hits") == 4, "the write statement changed shape"
    assert HOLD_MEASUREMENT_WRITER in guarded, "the write statement changed shape"
    return guarded


_WRITES = {
    # (fast form, guarded): the statement
    (True, True): _guarded(_FAST_WRITE),
    (False, True): _guarded(_SAFE_WRITE),
    (True, False): _FAST_WRITE.replace(
        "(SELECT count(*) FROM inserted)\n", "(SELECT count(*) FROM inserted), false\n"
    ),
    (False, False): _SAFE_WRITE.replace(
        "(SELECT count(*) FROM inserted)\n", "(SELECT count(*) FROM inserted), false\n"
    ),
}


def _lock_statement(customer_id: int, months: set[int]) -> str:
    """`BEGIN` and the batch's shared COLD locks as one simple query: one round trip for both.

    The keys are integers computed here (never caller text), inlined in sorted order.
    """
    keys = cold_keys(customer_id, months)
    if len(keys) == 1:
        return f"BEGIN; SELECT pg_advisory_xact_lock_shared({int(LockSpace.COLD)}, {keys[0]})"
    listed = ",".join(str(int(k)) for k in keys)
    return (
        f"BEGIN; SELECT count(pg_advisory_xact_lock_shared({int(LockSpace.COLD)}, k)) "
        f"FROM unnest(ARRAY[{listed}]::int4[]) AS k"
    )


def _register_dumpers(conn: psycopg.Connection[Any]) -> None:
    if conn not in _prepared_connections:
        for cls, dumper in _DUMPERS:
            conn.adapters.register_dumper(cls, dumper)
        _prepared_connections.add(conn)


def _compressed_keys(rows: list[Any]) -> set[tuple[int, str, int]]:
    """(device, metric, PostgreSQL microseconds) of every reading in the units `rows` returned."""
    keys: set[tuple[int, str, int]] = set()
    for device, metric, payload in rows:
        times = cold_codec.decode_times(bytes(payload)) - UNIX_TO_PG_US
        keys.update((int(device), str(metric), int(t)) for t in times.tolist())
    return keys


def _without(batch: MeasurementBatch, keys: set[tuple[int, str, int]]) -> MeasurementBatch:
    """The batch's rows whose key is in no unit (first write wins across hot and compressed)."""
    keep = [
        i
        for i, key in enumerate(zip(batch.device_ids, batch.metrics, batch.times, strict=True))
        if key not in keys
    ]
    return MeasurementBatch(
        device_ids=[batch.device_ids[i] for i in keep],
        metrics=[batch.metrics[i] for i in keep],
        times=[batch.times[i] for i in keep],
        values=[batch.values[i] for i in keep],
        received=[batch.received[i] for i in keep],
    )


def _columns(batch: MeasurementBatch) -> dict[str, Any]:
    return {
        "devices": _Int8Array(_fixed_width_array(batch.device_ids, "q", _INT8_OID)),
        "metrics": _TextArray(_text_array(batch.metrics)),
        "times": _TimestamptzArray(_fixed_width_array(batch.times, "q", _TIMESTAMPTZ_OID)),
        "values": _Float8Array(_fixed_width_array(batch.values, "d", _FLOAT8_OID)),
        "received": _TimestamptzArray(_fixed_width_array(batch.received, "q", _TIMESTAMPTZ_OID)),
    }


def write_batch(
    conn: psycopg.Connection[Any],
    customer_id: int,
    batch: MeasurementBatch,
    now: datetime,
    *,
    expect_duplicates: bool = False,
    stream_rows: int | None = None,
    token_hash: str | None = None,
) -> BatchResult:
    """Store a validated batch, its rollups and the sync status in one transaction.

    `conn` must be in autocommit mode; the partitions for the batch's months must exist
    (`BatchWriter` sees to both). `expect_duplicates` skips the fast form's attempt.
    `token_hash` (the call's token) must still be valid at `now`, or the batch writes nothing.
    `stream_rows` is what the sync status records as the push's size: the rows the stream has
    delivered so far, this batch included (an operator asks "how much did the last push
    carry", not "how big was its last batch"); it defaults to this batch alone.

    A live batch (every day after the customer's compression frontier) is one autocommitted
    statement, guarded: it writes nothing when the batch reaches the frontier. Such a batch is
    then written in a transaction: `BEGIN` with the shared COLD locks of its (customer, month)s,
    in a statement of their own (a READ COMMITTED statement takes its snapshot before the locks
    it takes itself, so a check in the locking statement could miss a unit committed while it
    waited); the units' times decoded, the rows whose key a unit holds dropped, the rest
    written; `COMMIT`. A row whose key is in a unit is a duplicate, exactly like a row whose key
    is hot: first write wins, wherever the first write now lives.
    """
    if not len(batch):
        return BatchResult(0, 0)
    _register_dumpers(conn)
    base = {
        **hold_params(customer_id, token_hash, now),
        "received_count": len(batch) if stream_rows is None else stream_rows,
        "high_water": from_pg_micros(max(batch.received)),
        "first_day": from_pg_micros(min(batch.times)).date(),
    }
    fast = not expect_duplicates
    while True:
        try:
            accepted = _write_once(conn, customer_id, batch, base, fast)
        except pg_errors.UniqueViolation:
            if not fast:
                raise
            fast = False  # a stored key: the transaction is rolled back; redo it in the safe form
            continue
        return BatchResult(accepted=accepted, duplicates=len(batch) - accepted)


def _write_once(
    conn: psycopg.Connection[Any],
    customer_id: int,
    batch: MeasurementBatch,
    base: dict[str, Any],
    fast: bool,
) -> int:
    """Accepted rows of one try; a failure rolls back a transaction it opened before it propagates."""
    try:
        with conn.cursor() as cursor:
            params = {**base, **_columns(batch)}
            row = cursor.execute(_WRITES[fast, True], params, prepare=True).fetchone()
            assert row is not None
            if row[0] and row[2]:  # it reaches compressed days: nothing written; go around the units
                cursor.execute(_lock_statement(customer_id, months_of(batch)))
                units = cursor.execute(_UNITS_FOR_BATCH, params, prepare=True).fetchall()
                kept = {**base, **_columns(_without(batch, _compressed_keys(units)))}
                row = cursor.execute(_WRITES[fast, False], kept, prepare=True).fetchone()
                assert row is not None
                cursor.execute("COMMIT")
            owners, accepted = int(row[0]), int(row[1])
            if owners == 0:
                raise why_refused(cursor, customer_id)
    except BaseException:
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")
        raise
    return accepted


def check_writer(
    conn: psycopg.Connection[Any], customer_id: int, token_hash: str | None, now: datetime
) -> None:
    """Refuse, as a batch would be refused, a writer whose customer or token stopped being valid."""
    with conn.cursor() as cursor:
        if cursor.execute(HOLD_ACTIVE_CUSTOMER, hold_params(customer_id, token_hash, now)).fetchone() is None:
            raise why_refused(cursor, customer_id)


def months_of(batch: MeasurementBatch) -> set[int]:
    """The months (see `partitions.month_of`) the batch's readings fall in."""
    offset = UNIX_TO_PG_US
    low, high = min(batch.times), max(batch.times)
    if partitions.month_of(low + offset) == partitions.month_of(high + offset):
        return {partitions.month_of(low + offset)}
    return partitions.months_touched([t + offset for t in batch.times])


class BatchWriter:
    """Writes one stream's batches, in order, each on a pooled connection in autocommit mode.

    Partitions are created before a batch's statement, in their own transaction, never inside
    it: attaching one while the batch holds locks on the parent could wait on itself.

    Holds no connection between batches: each `write` checks one out and gives it back before
    it returns, so a stream that waits for its client holds nothing another caller needs (see
    `db/scheduler.py`; the pool has no liveness ping, which was a fifth of a 500-row batch).
    What it keeps is what the next batch should know: whether the stream is re-sending stored
    rows, and how many rows the stream delivered so far. Every method blocks (call them on a
    database thread), one at a time.
    """

    def __init__(self, db: Database, partitions: Partitions) -> None:
        self._db = db
        self._partitions = partitions
        # A stream re-sending stored rows would fail the fast form batch after batch.
        self._expect_duplicates = False
        self._stream_rows = 0

    def write(
        self, customer_id: int, batch: MeasurementBatch, now: datetime, token_hash: str | None = None
    ) -> BatchResult:
        """Create the batch's missing partitions, then store it atomically.

        `token_hash` is the stream's token: once it is no longer valid at `now` (or the customer
        is no longer active), the batch is refused as UNAUTHENTICATED and writes nothing. An
        empty batch writes nothing either, but is refused the same way, so a stream on a
        revoked token cannot go on being acknowledged.
        """
        if not len(batch):
            self._with_connection(lambda driver: check_writer(driver, customer_id, token_hash, now))
            return BatchResult(0, 0)
        months = months_of(batch)
        self._partitions.ensure(months)
        try:
            return self._write(customer_id, batch, now, token_hash)
        except pg_errors.CheckViolation as exc:
            if "no partition" not in str(exc):
                raise
            _LOGGER.warning("a measurement partition vanished; re-creating %s", sorted(months))
            self._partitions.forget()
            self._partitions.ensure(months)
            return self._write(customer_id, batch, now, token_hash)

    def _with_connection(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        return self._db.autocommit(work)

    def _write(
        self, customer_id: int, batch: MeasurementBatch, now: datetime, token_hash: str | None
    ) -> BatchResult:
        result = self._with_connection(
            lambda driver: write_batch(
                driver,
                customer_id,
                batch,
                now,
                expect_duplicates=self._expect_duplicates,
                stream_rows=self._stream_rows + len(batch),
                token_hash=token_hash,
            )
        )
        self._expect_duplicates = result.duplicates > 0
        self._stream_rows += len(batch)
        return result
