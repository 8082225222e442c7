"""The SQL of cold storage's writers: finding settled series-months, compressing one, giving space back.

A *unit* is one (customer, device, metric, UTC month) row of `fleet.measurements_compressed`
holding every reading of the month's days up to `through_day` and their exact hourly rollups
(`cold_codec`). The compression job (`domain/compression.py`) runs on its own connection
(`ColdConnection`), never on the server's pool: it is background work and must never take a
database turn that ingest or an operator is waiting for (docs/DESIGN.md, "Cold storage").

Invariant (docs/DESIGN.md): a reading lives in exactly one place, hot (a row of
`fleet.measurements` and its hour in `fleet.measurement_rollups_hourly`) or in a unit. One unit
is compressed in ONE transaction (`ColdConnection.compress_unit`), so a kill -9 at any moment
leaves either the hot rows or the unit, never both and never neither. Batches and units never
interleave: a batch that reaches into compressed days holds the (customer, month) COLD lock
shared, which the unit's transaction takes exclusive; a live batch (wholly after the customer's
`cold_through`) holds the customer row FOR SHARE, which the unit's transaction takes FOR NO KEY
UPDATE before it reads, and moves `cold_through` before it commits.

Times cross this module as int64 microseconds since the Unix epoch (the codec's unit); rows
are fetched with a binary timestamptz loader that returns PostgreSQL's own int64 (microseconds
since 2000) instead of building a datetime per reading.
"""

from __future__ import annotations

import logging
import re
import struct
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from psycopg import errors as pg_errors
from psycopg.adapt import Loader
from psycopg.pq import Format
from sqlalchemy.engine import URL, make_url

from fleet_server.db.base import PARTITION_SCHEMA
from fleet_server.db.session import CONNECT_TIMEOUT_S, application_name
from fleet_server.store import cold_codec
from fleet_server.store.cold_codec import Hours
from fleet_server.store.locks import LockSpace, cold_key
from fleet_server.store.partitions import PARENT, month_start, partition_name
from fleet_server.store.timestamps import UNIX_TO_PG_US, from_pg_micros

_LOGGER = logging.getLogger(__name__)
_INT8 = struct.Struct(">q")
_PARTITION_NAME = re.compile(r"measurements_p(\d{4})(\d{2})")


class _MicrosLoader(Loader):
    """Binary timestamptz as PostgreSQL's int64 microseconds since 2000 (no datetime per row)."""

    format = Format.BINARY

    def load(self, data: Any) -> int:
        return int(_INT8.unpack(data)[0])


def month_index(month: date) -> int:
    """The month as `year * 12 + month - 1` (`partitions.month_of`), for locks and partitions."""
    return month.year * 12 + month.month - 1


def month_date(index: int) -> date:
    return month_start(index).date()


@dataclass(frozen=True)
class Candidate:
    """A series-month with hot hours before the cutoff: what a run may compress."""

    customer_id: int
    device_id: int
    metric: str
    month: date  # the first day of the UTC month


@dataclass(frozen=True)
class UnitOutcome:
    """What compressing one unit did (or, in a dry run, would do)."""

    readings: int  # hot readings folded in
    unit_readings: int  # readings in the unit afterwards
    bytes_before: int  # the hot rows' and rollups' tuple bytes, plus the unit's previous payload
    bytes_after: int  # the unit's new payload
    through_day: date


class UnitFailed(Exception):
    """A unit could not be compressed this run (timeout, lock wait, customer erased meanwhile)."""


# Distinct (customer, device, metric, month) with hours before the cutoff, walking the rollups'
# primary key by index probes: one probe per candidate month and one per series (to step past
# its hours after the cutoff), however many hours each month holds.
_CANDIDATES = """
WITH RECURSIVE walk(customer_id, device_id, metric, bucket) AS (
    (SELECT customer_id, device_id, metric, bucket
     FROM fleet.measurement_rollups_hourly
     WHERE customer_id BETWEEN %(lo)s AND %(hi)s
     ORDER BY customer_id, device_id, metric, bucket
     LIMIT 1)
    UNION ALL
    SELECT n.customer_id, n.device_id, n.metric, n.bucket
    FROM walk w CROSS JOIN LATERAL (
        SELECT r.customer_id, r.device_id, r.metric, r.bucket
        FROM fleet.measurement_rollups_hourly r
        WHERE (r.customer_id, r.device_id, r.metric, r.bucket) >= (
                  w.customer_id, w.device_id, w.metric,
                  CASE WHEN w.bucket < %(cutoff)s
                       THEN (date_trunc('month', w.bucket AT TIME ZONE 'UTC') + interval '1 month')
                            AT TIME ZONE 'UTC'
                       ELSE timestamptz 'infinity' END)
          AND r.customer_id <= %(hi)s
        ORDER BY r.customer_id, r.device_id, r.metric, r.bucket
        LIMIT 1
    ) n
)
SELECT customer_id, device_id, metric, date_trunc('month', bucket AT TIME ZONE 'UTC')::date
FROM walk
WHERE bucket < %(cutoff)s AND bucket <> timestamptz 'infinity'
"""

# FOR NO KEY UPDATE, not the FOR KEY SHARE of other writers: it conflicts with the FOR SHARE of
# a live measurement batch (`customers.HOLD_MEASUREMENT_WRITER`), which reads `cold_through`.
_HOLD_CUSTOMER = "SELECT 1 FROM fleet.customers WHERE id = %(customer)s FOR NO KEY UPDATE"
# The customer's compression frontier moves with each unit, in the unit's transaction.
_MOVE_FRONTIER = """
UPDATE fleet.customers SET cold_through = %(through_day)s
WHERE id = %(customer)s AND (cold_through IS NULL OR cold_through < %(through_day)s)
"""
_SERIES = "customer_id = %(customer)s AND device_id = %(device)s AND metric = %(metric)s"
_UNIT_FOR_UPDATE = f"""
SELECT through_day, payload, octet_length(payload) FROM fleet.measurements_compressed
WHERE {_SERIES} AND month = %(month)s
"""
_HOT_ROWS = f"""
SELECT m.time, m.value, pg_column_size(m.*) FROM fleet.measurements m
WHERE {_SERIES} AND m.time >= %(start)s AND m.time < %(end)s
ORDER BY m.time
"""
_HOT_HOURS = f"""
SELECT r.bucket, r.count, r.sum, r.min, r.max, pg_column_size(r.*)
FROM fleet.measurement_rollups_hourly r
WHERE {_SERIES} AND r.bucket >= %(start)s AND r.bucket < %(end)s
ORDER BY r.bucket
"""
_UPSERT_UNIT = """
INSERT INTO fleet.measurements_compressed AS c
    (customer_id, device_id, metric, month, through_day, readings, first_time, last_time, payload,
     compressed_at)
VALUES (%(customer)s, %(device)s, %(metric)s, %(month)s, %(through_day)s, %(readings)s,
        %(first_time)s, %(last_time)s, %(payload)s, now())
ON CONFLICT (customer_id, device_id, metric, month) DO UPDATE SET
    through_day = greatest(c.through_day, excluded.through_day),
    readings = excluded.readings,
    first_time = excluded.first_time,
    last_time = excluded.last_time,
    payload = excluded.payload,
    compressed_at = excluded.compressed_at
"""
_DELETE_ROWS = f"""
DELETE FROM fleet.measurements
WHERE {_SERIES} AND time >= %(start)s AND time < %(end)s
"""
_DELETE_HOURS = f"""
DELETE FROM fleet.measurement_rollups_hourly
WHERE {_SERIES} AND bucket >= %(start)s AND bucket < %(end)s
"""


def _to_unix(pg_micros: list[int]) -> cold_codec.Int64s:
    return np.asarray(pg_micros, dtype=np.int64) + np.int64(UNIX_TO_PG_US)


def _from_unix(unix_micros: int) -> datetime:
    return from_pg_micros(int(unix_micros) - UNIX_TO_PG_US)


class ColdConnection:
    """The compression job's own database connection (autocommit between unit transactions).

    One plain psycopg connection, opened from the server's URL but outside its pool, so a run
    never holds a connection, a thread or a turn that RPCs are scheduled on. Each unit is one
    explicit transaction with its own `statement_timeout` (SET LOCAL): a month of a dense
    series can take longer to read and delete than the pool's 30 s default allows an RPC.
    """

    def __init__(self, url: str | URL, statement_timeout_s: float) -> None:
        parsed = make_url(url) if isinstance(url, str) else url
        if parsed.drivername != "postgresql+psycopg":
            parsed = parsed.set(drivername="postgresql+psycopg")
        params: dict[str, Any] = {
            "host": parsed.host,
            "port": parsed.port,
            "dbname": parsed.database,
            "user": parsed.username,
            "password": parsed.password,
            **{k: v for k, v in parsed.query.items() if isinstance(v, str)},
        }
        params = {k: v for k, v in params.items() if v is not None}
        params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        params.setdefault("fallback_application_name", application_name())
        self.statement_timeout_ms = max(1, int(statement_timeout_s * 1000))
        self.conn: psycopg.Connection[Any] = psycopg.connect(**params, autocommit=True)
        self.conn.adapters.register_loader("timestamptz", _MicrosLoader)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> ColdConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def try_lock_job(self) -> bool:
        """The fleet's compression-job lock for this connection's life; False when another holds it."""
        row = self.conn.execute(
            "SELECT pg_try_advisory_lock(%s, 0)", (int(LockSpace.COMPRESS_JOB),)
        ).fetchone()
        return bool(row and row[0])

    def unlock_job(self) -> None:
        self.conn.execute("SELECT pg_advisory_unlock(%s, 0)", (int(LockSpace.COMPRESS_JOB),))

    def now(self) -> datetime:
        row = self.conn.execute("SELECT now()", binary=False).fetchone()
        assert row is not None
        value = row[0]
        return value if isinstance(value, datetime) else from_pg_micros(int(value))

    def candidates(self, cutoff: datetime, customer_id: int | None = None) -> list[Candidate]:
        """Every series-month with hot hours before `cutoff`, in key order."""
        lo, hi = (-(2**63), 2**63 - 1) if customer_id is None else (customer_id, customer_id)
        with self.conn.cursor() as cursor:
            rows = cursor.execute(_CANDIDATES, {"lo": lo, "hi": hi, "cutoff": cutoff}).fetchall()
        return [Candidate(int(c), int(d), str(m), month) for c, d, m, month in rows]

    def compress_unit(
        self, unit: Candidate, settled_end: datetime, *, dry_run: bool = False
    ) -> UnitOutcome | None:
        """Fold the hot readings of `unit`'s days before `settled_end` into its unit, in one transaction.

        Under the exclusive COLD lock no batch of this customer and month is between its lock
        and its commit, so what is read here is exactly what is deleted (checked: a count that
        differs rolls the transaction back). Raises `cold_codec.InconsistentRollups` (rows and
        rollups disagree; nothing written) and `UnitFailed` (timeout, customer erased). None when
        nothing of it is hot (another run folded it first).
        """
        start = datetime(unit.month.year, unit.month.month, 1, tzinfo=UTC)
        end = min(settled_end, month_start(month_index(unit.month) + 1))
        through_day = (end - timedelta(days=1)).date()
        params = {
            "customer": unit.customer_id,
            "device": unit.device_id,
            "metric": unit.metric,
            "month": unit.month,
            "start": start,
            "end": end,
        }
        try:
            with self.conn.transaction(force_rollback=dry_run), self.conn.cursor(binary=True) as cursor:
                cursor.execute(f"SET LOCAL statement_timeout = {self.statement_timeout_ms}")
                if not dry_run:
                    cursor.execute(
                        "SELECT pg_advisory_xact_lock(%s, %s)",
                        (int(LockSpace.COLD), cold_key(unit.customer_id, month_index(unit.month))),
                    )
                    # The customer row next, as every writer does: an erasure (FOR UPDATE on it)
                    # and this run wait for each other instead of deadlocking over the unit row.
                    # Held until commit, before the hot rows are read: a live batch in flight
                    # (which skips the COLD lock) is committed first, and one arriving later
                    # waits, then sees the frontier this unit moves.
                    if cursor.execute(_HOLD_CUSTOMER, params).fetchone() is None:
                        return None  # erased meanwhile: its rows went with it
                lock = "" if dry_run else " FOR UPDATE"
                stored = cursor.execute(_UNIT_FOR_UPDATE + lock, params).fetchone()
                rows = cursor.execute(_HOT_ROWS, params).fetchall()
                hours = cursor.execute(_HOT_HOURS, params).fetchall()
                if not rows and not hours:
                    return None
                outcome, payload, merged = self._encode(stored, rows, hours, through_day)
                if dry_run:
                    return outcome
                times = merged[0]
                cursor.execute(
                    _UPSERT_UNIT,
                    {
                        **params,
                        "through_day": through_day,
                        "readings": len(times),
                        "first_time": _from_unix(times[0]),
                        "last_time": _from_unix(times[-1]),
                        "payload": payload,
                    },
                )
                deleted_rows = cursor.execute(_DELETE_ROWS, params).rowcount
                deleted_hours = cursor.execute(_DELETE_HOURS, params).rowcount
                if deleted_rows != len(rows) or deleted_hours != len(hours):
                    raise UnitFailed(
                        f"deleted {deleted_rows} rows and {deleted_hours} hours, "
                        f"read {len(rows)} and {len(hours)}"
                    )
                cursor.execute(_MOVE_FRONTIER, {**params, "through_day": outcome.through_day})
                return outcome
        except (
            pg_errors.QueryCanceled,
            pg_errors.LockNotAvailable,
            pg_errors.ForeignKeyViolation,
            pg_errors.DeadlockDetected,
            pg_errors.SerializationFailure,
        ) as exc:
            raise UnitFailed(f"{type(exc).__name__}: {exc}".strip()) from exc

    @staticmethod
    def _encode(
        stored: Any, rows: list[Any], hours: list[Any], through_day: date
    ) -> tuple[UnitOutcome, bytes, tuple[cold_codec.Int64s, cold_codec.Float64s]]:
        hot_times = _to_unix([r[0] for r in rows])
        hot_values = np.asarray([r[1] for r in rows], dtype=np.float64)
        hot_hours = Hours(
            _to_unix([h[0] for h in hours]),
            np.asarray([h[1] for h in hours], dtype=np.int64),
            np.asarray([h[2] for h in hours], dtype=np.float64),
            np.asarray([h[3] for h in hours], dtype=np.float64),
            np.asarray([h[4] for h in hours], dtype=np.float64),
        )
        bytes_before = sum(r[2] for r in rows) + sum(h[5] for h in hours)
        if stored is not None:
            previous = cold_codec.decode(bytes(stored[1]))
            bytes_before += int(stored[2])
            through_day = max(through_day, stored[0])
        else:
            previous = cold_codec.Unit(hot_times[:0], hot_values[:0], Hours.empty())
        times, values = cold_codec.merge_readings(previous, hot_times, hot_values)
        payload = cold_codec.encode(times, values, cold_codec.combine_hours(previous.hours, hot_hours))
        outcome = UnitOutcome(
            readings=len(rows),
            unit_readings=len(times),
            bytes_before=bytes_before,
            bytes_after=len(payload),
            through_day=through_day,
        )
        return outcome, payload, (times, values)

    def truncate_emptied(self, cutoff: datetime, grace: timedelta) -> list[str]:
        """TRUNCATE each month partition wholly before `cutoff` that is empty and settled for `grace`.

        Deleted rows leave their pages behind until VACUUM, and VACUUM gives a table's space back
        to the system only from its end; a month emptied by compression is given back whole by
        TRUNCATE. TRUNCATE is not MVCC-safe: a transaction whose snapshot predates the commit of
        the month's last unit would see neither the rows (truncated) nor the unit (too new). So
        a month is truncated only once its newest unit is older than `grace` (longer than any
        statement may live), under an ACCESS EXCLUSIVE lock taken with a short `lock_timeout`
        (busy: skipped until the next run), after checking under that lock that it is empty.
        """
        done: list[str] = []
        partitions = self.conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(%s) AND pg_relation_size(c.oid) > 0 ORDER BY c.relname",
            (PARENT,),
        ).fetchall()
        names = {str(r[0]) for r in partitions}
        candidates = []
        for name in sorted(names):
            match = _PARTITION_NAME.fullmatch(name)
            if match is None:
                continue  # not one of ours
            index = int(match.group(1)) * 12 + int(match.group(2)) - 1
            if partition_name(index) == name and month_start(index + 1) <= cutoff:
                candidates.append(index)
        for index in candidates:
            name = partition_name(index)
            qualified = f"{PARTITION_SCHEMA}.{name}"
            try:
                with self.conn.transaction(), self.conn.cursor() as cursor:
                    cursor.execute("SET LOCAL lock_timeout = 1000")
                    cursor.execute(f"SET LOCAL statement_timeout = {self.statement_timeout_ms}")
                    row = cursor.execute(
                        "SELECT max(compressed_at) > now() - %s FROM fleet.measurements_compressed "
                        "WHERE month = %s",
                        (grace, month_date(index)),
                        binary=False,
                    ).fetchone()
                    if row is not None and row[0]:
                        _LOGGER.info("partition %s: emptied too recently to truncate; next run", name)
                        continue
                    cursor.execute(f"LOCK TABLE {qualified} IN ACCESS EXCLUSIVE MODE")
                    if cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {qualified})").fetchone() != (False,):
                        continue
                    cursor.execute(f"TRUNCATE {qualified}")
                    done.append(name)
                    _LOGGER.info("partition %s was emptied by compression: truncated", name)
            except (pg_errors.LockNotAvailable, pg_errors.QueryCanceled) as exc:
                _LOGGER.info("partition %s busy, not truncated this run: %s", name, exc)
        return done
