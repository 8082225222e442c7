"""Every PostgreSQL advisory lock the server takes: one namespace per purpose, one customer-key fold.

Advisory locks use the two-key form `(namespace, key)`. Namespaces are chosen far from small
integers ("FLT" in ASCII), so a single-key lock taken elsewhere cannot collide with them; the
second key is the customer (or 0 for process-wide work), folded into int4 by `customer_key`.

- `PARTITIONS`: transaction-level; creators of monthly measurement partitions, across processes.
- `MEASUREMENT_STREAM`: session-level, held for a PushMeasurements stream's life (`StreamLocks`).
- one per reference resource: transaction-level; snapshots of one customer's resource serialise,
  and a child's snapshot holds its parent's lock shared (see `lock_snapshot`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from enum import IntEnum
from typing import Any

import psycopg
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from fleet_server.db.session import CONNECT_TIMEOUT_S
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


_SNAPSHOT_SPACES = {
    Resource.SITES: LockSpace.SITES,
    Resource.DEVICES: LockSpace.DEVICES,
    Resource.MUNICIPALITIES: LockSpace.MUNICIPALITIES,
    Resource.TARIFFS: LockSpace.TARIFFS,
}


def customer_key(customer_id: int) -> int:
    """The customer id as the lock's int4 second key; ids past 2**31 wrap (locks only get coarser)."""
    return (customer_id + 2**31) % 2**32 - 2**31


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
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._active: set[int] = set()  # streams running in this process
        self._held: set[int] = set()  # advisory locks held on the current connection
        self._connection: psycopg.Connection[Any] | None = None

    def try_acquire(self, customer_id: int) -> bool:
        """Blocking (runs on a database thread): True when the caller now owns the customer's stream."""
        with self._lock:
            if customer_id in self._active:
                return False
            locked = self._run(_TRY_LOCK, customer_id)
            if locked:
                self._active.add(customer_id)
                self._held.add(customer_id)
            elif not self._active:
                self._discard_connection()
            return locked

    def release(self, customer_id: int) -> None:
        """Blocking: give the stream up; closes the lock connection after the last stream."""
        with self._lock:
            self._active.discard(customer_id)
            if customer_id in self._held:
                self._held.discard(customer_id)
                try:
                    self._run(_UNLOCK, customer_id, reconnect=False)
                except psycopg.Error as exc:  # the connection is gone, and the lock with it
                    _LOGGER.info("stream lock of customer %d went with its connection: %s", customer_id, exc)
            if not self._active:
                self._discard_connection()

    def active(self) -> set[int]:
        with self._lock:
            return set(self._active)

    def _run(self, sql: str, customer_id: int, *, reconnect: bool = True) -> bool:
        for attempt in (1, 2):
            conn = self._open()
            try:
                row = conn.execute(
                    sql, (int(LockSpace.MEASUREMENT_STREAM), customer_key(customer_id))
                ).fetchone()
                return bool(row and row[0])
            except psycopg.OperationalError:
                self._discard_connection()
                if not reconnect or attempt == 2:
                    raise
                _LOGGER.warning("stream lock connection lost; reconnecting")
        raise AssertionError("unreachable")

    def _open(self) -> psycopg.Connection[Any]:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        cargs, cparams = self._engine.dialect.create_connect_args(self._engine.url)
        cparams.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        conn: psycopg.Connection[Any] = psycopg.connect(*cargs, **cparams, autocommit=True)
        self._connection = conn
        # A lost connection took the locks of the streams still running here: take them back.
        for customer_id in sorted(self._held):
            row = conn.execute(
                _TRY_LOCK, (int(LockSpace.MEASUREMENT_STREAM), customer_key(customer_id))
            ).fetchone()
            if not (row and row[0]):
                self._held.discard(customer_id)
                _LOGGER.warning("customer %d: stream lock taken elsewhere during a reconnect", customer_id)
        return conn

    def _discard_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(psycopg.Error):
                self._connection.close()
        self._connection = None
