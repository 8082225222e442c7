"""Every PostgreSQL advisory lock the server takes: one namespace per purpose, one customer-key fold.

Advisory locks use the two-key form `(namespace, key)`. Namespaces are chosen far from small
integers ("FLT" in ASCII), so a single-key lock taken elsewhere cannot collide with them; the
second key is the customer (or 0 for process-wide work), folded into int4 by `customer_key`.

- `PARTITIONS`: transaction-level; creators of monthly measurement partitions, across processes.
- `MEASUREMENT_STREAM`: session-level, held for a PushMeasurements stream's life (`StreamLocks`).
- one per reference resource: transaction-level; snapshots of one customer's resource serialise,
  and a child's snapshot holds its parent's lock shared (see `lock_snapshot`).
- `COLD`: transaction-level, per (customer, UTC month) (`cold_key`): a compression transaction
  holds it exclusive (`store/cold.py`), a measurement batch shared for every month it writes
  (`store/measurements.py`), in `cold_keys` order.
- `COMPRESS_JOB`: session-level, (space, 0): at most one background compression job per fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from enum import IntEnum
from typing import Any

import psycopg
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from fleet_server.db.session import CONNECT_TIMEOUT_S, application_name
from fleet_server.errors import Reason, Unavailable
from fleet_server.resources import Resource

_LOGGER = logging.getLogger(__name__)


class LockSpace(IntEnum):
    """The first key of every advisory lock the server takes."""

    PARTITIONS = 0x464C5450  # "FLTP"
    MEASUREMENT_STREAM = 0x464C5453  # "FLTS"
    SITES = 0x464C5301
    DEVICES = 0x464C5302
    MUNICIPALITIES = 0x464C5303
    TARIFFS = 0x464C5304
    COLD = 0x464C5443  # "FLTC"
    COMPRESS_JOB = 0x464C544A  # "FLTJ"


_SNAPSHOT_SPACES = {
    Resource.SITES: LockSpace.SITES,
    Resource.DEVICES: LockSpace.DEVICES,
    Resource.MUNICIPALITIES: LockSpace.MUNICIPALITIES,
    Resource.TARIFFS: LockSpace.TARIFFS,
}


def customer_key(customer_id: int) -> int:
    """The customer id as the lock's int4 second key; ids past 2**31 wrap (locks only get coarser)."""
    return (customer_id + 2**31) % 2**32 - 2**31


def cold_key(customer_id: int, month: int) -> int:
    """(customer, month) as one int4 key; `month` is `year * 12 + month - 1` (`partitions.month_of`).

    The customer goes to the high bits and the month to the low 16 (65,536 months: 5,000 years),
    folded like `customer_key`: two customers far apart may share a key, which only makes the
    lock coarser, never wrong.
    """
    return customer_key(customer_id * 65_536 + month % 65_536)


def cold_keys(customer_id: int, months: Iterable[int]) -> list[int]:
    """The sorted, distinct keys of a customer's months: the order every multi-month locker uses."""
    return sorted({cold_key(customer_id, month) for month in months})


def lock_partition_creation(session: Session) -> None:
    """Serialise with every other partition creator until the transaction ends."""
    session.execute(text("SELECT pg_advisory_xact_lock(:space, 0)"), {"space": int(LockSpace.PARTITIONS)})


def lock_snapshot(session: Session, customer_id: int, resource: Resource, *, shared: bool = False) -> None:
    """Serialise with other snapshots of `resource` for this customer until the transaction ends.

    Two interleaved snapshots would otherwise each delete only what *they* saw, leaving a union
    of both. `shared` is for a child's snapshot holding its parent's lock: the parents it was
    checked against cannot be deleted under it, while other children's snapshots still run.
    """
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    session.execute(
        text(f"SELECT {function}(:space, :key)"),
        {"space": int(_SNAPSHOT_SPACES[resource]), "key": customer_key(customer_id)},
    )


# A stream lock statement is instant on a live database; this long means it is not answering.
LOCK_TIMEOUT_S = 5.0
LOCK_RETRY_MS = 2_000
_TRY_LOCK = "SELECT pg_try_advisory_lock(%s, %s)"
_UNLOCK = "SELECT pg_advisory_unlock(%s, %s)"


class StreamLocks:
    """At most one measurement stream per customer, across every process on the database.

    A session-level lock `(MEASUREMENT_STREAM, customer)` is held for the stream's life. All
    streams of one process share one lock connection (advisory locks are per session and
    re-entrant within it), so an in-process registry refuses a second stream of the same
    customer in this process, and the advisory lock refuses it in any other. A killed process
    loses its connection and with it its locks, so a crash never leaves a customer locked out.
    The connection is opened for the first stream and closed after the last, so an idle server
    holds no extra connection.

    The connection is an async one, used on the event loop: taking or giving back a stream
    lock never needs a database thread, so it can neither wait behind database work nor hold
    a thread that database work waits for (see `db/scheduler.py`). Each statement is bounded
    by `LOCK_TIMEOUT_S`: a database that stops answering refuses new streams as UNAVAILABLE.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = asyncio.Lock()
        self._active: set[int] = set()  # streams running in this process
        self._held: set[int] = set()  # advisory locks held on the current connection
        self._connection: psycopg.AsyncConnection[Any] | None = None

    async def try_acquire(self, customer_id: int) -> bool:
        """True when the caller now owns the customer's stream."""
        async with self._lock:
            if customer_id in self._active:
                return False
            locked = await self._run(_TRY_LOCK, customer_id)
            if locked:
                self._active.add(customer_id)
                self._held.add(customer_id)
            elif not self._active:
                await self._discard_connection()
            return locked

    async def release(self, customer_id: int) -> None:
        """Give the stream up; closes the lock connection after the last stream."""
        async with self._lock:
            self._active.discard(customer_id)
            if customer_id in self._held:
                self._held.discard(customer_id)
                try:
                    await self._run(_UNLOCK, customer_id, reconnect=False)
                except Unavailable as exc:  # the connection is gone, and the lock with it
                    _LOGGER.info("stream lock of customer %d went with its connection: %s", customer_id, exc)
            if not self._active:
                await self._discard_connection()

    def active(self) -> set[int]:
        return set(self._active)

    async def _run(self, sql: str, customer_id: int, *, reconnect: bool = True) -> bool:
        for attempt in (1, 2):
            try:
                async with asyncio.timeout(LOCK_TIMEOUT_S):
                    conn = await self._open()
                    cursor = await conn.execute(
                        sql, (int(LockSpace.MEASUREMENT_STREAM), customer_key(customer_id))
                    )
                    row = await cursor.fetchone()
                return bool(row and row[0])
            except (psycopg.OperationalError, TimeoutError) as exc:
                await self._discard_connection()
                if not reconnect or attempt == 2:
                    raise Unavailable(
                        "the database did not answer the stream lock; retry later",
                        reason=Reason.DATABASE_UNAVAILABLE,
                        retry_after_ms=LOCK_RETRY_MS,
                    ) from exc
                _LOGGER.warning("stream lock connection lost; reconnecting")
        raise AssertionError("unreachable")

    async def _open(self) -> psycopg.AsyncConnection[Any]:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        cargs, cparams = self._engine.dialect.create_connect_args(self._engine.url)
        cparams.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        cparams.setdefault("fallback_application_name", application_name())
        conn: psycopg.AsyncConnection[Any] = await psycopg.AsyncConnection.connect(
            *cargs, **cparams, autocommit=True
        )
        self._connection = conn
        # A lost connection took the locks of the streams still running here: take them back.
        for customer_id in sorted(self._held):
            cursor = await conn.execute(
                _TRY_LOCK, (int(LockSpace.MEASUREMENT_STREAM), customer_key(customer_id))
            )
            row = await cursor.fetchone()
            if not (row and row[0]):
                self._held.discard(customer_id)
                _LOGGER.warning("customer %d: stream lock taken elsewhere during a reconnect", customer_id)
        return conn

    async def _discard_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(psycopg.Error):
                await connection.close()
