"""Ingest fairness (§6): one measurement stream per customer, and a per-customer row budget.

Exclusivity must hold across every server process behind the load balancer, so it is a
PostgreSQL session-level advisory lock `(namespace, customer_id)` held for the stream's life.
All streams of one process share one lock connection (advisory locks are per session and
re-entrant within it), so an in-process registry refuses a second stream of the same customer
in this process, and the advisory lock refuses it in any other. A killed process loses its
connection and with it its locks, so a crash never leaves a customer locked out. The lock
connection is opened for the first stream and closed after the last, so an idle server holds
no extra connection.

The row budget is a token bucket per customer, on the injected monotonic clock (tests move it
without sleeping). It lives in the process: since a customer's only stream lives in one
process, that process's bucket is the customer's budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Engine

from fleet_server.clock import Clock
from fleet_server.config import Settings
from fleet_server.db.session import CONNECT_TIMEOUT_S, Database, application_name
from fleet_server.errors import ResourceExhausted

_LOGGER = logging.getLogger(__name__)

STREAM_LOCK_NAMESPACE = 0x464C5453  # "FLTS"; partitions use another namespace
_INT4_SPAN = 2**31


class TokenBucket:
    """`rate` tokens per second up to `burst`; starts full."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = now

    def take(self, amount: int, now: float) -> int | None:
        """Take `amount` tokens and return None, or return the milliseconds until they would be there."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(self.burst), self.tokens + elapsed * self.rate)
        self.updated = now
        if amount <= self.tokens:
            self.tokens -= amount
            return None
        return max(1, math.ceil((amount - self.tokens) / self.rate * 1000))


class RowBudget:
    """Per-customer measurement rows per second (`ingest_rows_per_s`, `ingest_burst_rows`).

    A rate of 0 or less switches the budget off.
    """

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._buckets: dict[int, TokenBucket] = {}

    def admit(self, customer_id: int, rows: int) -> None:
        """Spend `rows` of the customer's budget, or raise RESOURCE_EXHAUSTED with a retry hint."""
        if self._rate <= 0 or rows <= 0:
            return
        if rows > self._burst:
            raise ResourceExhausted(
                f"a batch of {rows} rows exceeds the per-customer burst of {self._burst} rows; "
                "send smaller batches",
                reason="BATCH_OVER_BURST",
            )
        now = self._clock.monotonic()
        bucket = self._buckets.get(customer_id)
        if bucket is None:
            bucket = self._buckets[customer_id] = TokenBucket(self._rate, self._burst, now)
        wait_ms = bucket.take(rows, now)
        if wait_ms is not None:
            raise ResourceExhausted(
                f"measurement row budget exhausted ({self._rate:g} rows/s, burst {self._burst}); "
                f"retry in {wait_ms} ms",
                retry_after_ms=wait_ms,
                reason="ROW_BUDGET_EXHAUSTED",
            )


class StreamLocks:
    """At most one measurement stream per customer, across every process on the database."""

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
                row = conn.execute(sql, (STREAM_LOCK_NAMESPACE, customer_id % _INT4_SPAN)).fetchone()
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
        cparams.setdefault("fallback_application_name", application_name())
        conn: psycopg.Connection[Any] = psycopg.connect(*cargs, **cparams, autocommit=True)
        self._connection = conn
        # A lost connection took the locks of the streams still running here: take them back.
        for customer_id in sorted(self._held):
            row = conn.execute(_TRY_LOCK, (STREAM_LOCK_NAMESPACE, customer_id % _INT4_SPAN)).fetchone()
            if not (row and row[0]):
                self._held.discard(customer_id)
                _LOGGER.warning("customer %d: stream lock taken elsewhere during a reconnect", customer_id)
        return conn

    def _discard_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(psycopg.Error):
                self._connection.close()
        self._connection = None


_TRY_LOCK = "SELECT pg_try_advisory_lock(%s, %s)"
_UNLOCK = "SELECT pg_advisory_unlock(%s, %s)"


@dataclass
class IngestGate:
    """The fairness state of one server process (one per `Database`)."""

    locks: StreamLocks
    budget: RowBudget

    @contextlib.asynccontextmanager
    async def exclusive_stream(self, db: Database, customer_id: int) -> AsyncIterator[None]:
        """Own the customer's measurement stream for the `async with` body, or raise RESOURCE_EXHAUSTED."""
        if not await db.offload(self.locks.try_acquire, customer_id):
            raise ResourceExhausted(
                "another PushMeasurements stream of this customer is open; one stream per customer at a time",
                reason="STREAM_ALREADY_OPEN",
            )
        try:
            yield
        finally:
            try:
                # Shielded: grpc.aio cancels the handler of a client that went away even while it
                # gives the lock back, and a cancelled release never ran, locking the customer out.
                await asyncio.shield(db.offload(self.locks.release, customer_id))
            except Exception:  # shutting down: the closing connection releases the lock
                _LOGGER.info("stream lock of customer %d not released explicitly", customer_id, exc_info=True)


_gates: weakref.WeakKeyDictionary[Database, IngestGate] = weakref.WeakKeyDictionary()
_gates_lock = threading.Lock()


def gate_for(db: Database, settings: Settings, clock: Clock) -> IngestGate:
    """The process's gate for `db`, built on first use."""
    with _gates_lock:
        gate = _gates.get(db)
        if gate is None:
            gate = IngestGate(
                locks=StreamLocks(db.engine),
                budget=RowBudget(settings.ingest_rows_per_s, settings.ingest_burst_rows, clock),
            )
            _gates[db] = gate
        return gate
