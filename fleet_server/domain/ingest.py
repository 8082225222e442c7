"""Measurement ingest, the use case: one customer's PushMeasurements stream, batch by batch.

A stream owns the customer's ingest (one stream per customer, `fairness.IngestGate`); each
batch is validated, charged to the customer's row budget and queued for writing, and the queue
writes the stream's batches in order, back to back on one connection (`store.measurements`).
The servicer only decodes requests and encodes the results.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from datetime import datetime

from fleet_server.clock import Clock
from fleet_server.db.session import Database
from fleet_server.domain.fairness import IngestGate
from fleet_server.domain.measurements import validate_batch
from fleet_server.store.measurements import BatchResult, BatchWriter, MeasurementBatch
from fleet_server.store.partitions import Partitions

_LOGGER = logging.getLogger(__name__)


class MeasurementIngest:
    """What every measurement stream of this process shares: the database, the gate, the partitions."""

    def __init__(self, db: Database, gate: IngestGate, partitions: Partitions, clock: Clock) -> None:
        self._db = db
        self._gate = gate
        self._partitions = partitions
        self._clock = clock

    @contextlib.asynccontextmanager
    async def stream(self, customer_id: int) -> AsyncIterator[MeasurementStreamSession]:
        """The customer's stream for the `async with` body; RESOURCE_EXHAUSTED if one is open already.

        On the way out the stream's connection goes back to the pool, after any running write.
        """
        async with self._gate.exclusive_stream(self._db, customer_id):
            writes = OrderedWrites(self._db, self._partitions, customer_id)
            try:
                yield MeasurementStreamSession(writes, self._gate, self._clock, customer_id)
            finally:
                await writes.offload_release()


class MeasurementStreamSession:
    """One open stream: `accept` each decoded batch, `idle` when the client is slow to send."""

    def __init__(self, writes: OrderedWrites, gate: IngestGate, clock: Clock, customer_id: int) -> None:
        self._writes = writes
        self._gate = gate
        self._clock = clock
        self._customer_id = customer_id

    def accept(self, batch: MeasurementBatch) -> asyncio.Future[BatchResult]:
        """Validate the batch and spend its rows of the budget (raising refuses it), then queue it.

        The future settles when the batch is committed, or with the error that stopped it
        (`NotWritten` when an earlier batch of the stream failed).
        """
        now = self._clock.now()
        validate_batch(batch, now)
        self._gate.budget.admit(self._customer_id, len(batch))
        return self._writes.submit(batch, now)

    async def idle(self) -> None:
        """Nothing is queued and the client sends nothing: give the connection back meanwhile."""
        await self._writes.offload_release()


class NotWritten(Exception):
    """A queued batch that was not written because an earlier batch of its stream failed."""


class OrderedWrites:
    """One stream's batch writes, in request order, back to back on one connection.

    `submit` queues a validated batch and returns a future for its result. One executor job
    drains the queue while it is not empty, so the next batch starts the moment the previous
    one committed, without a round trip through the event loop (that hop cost about a tenth of
    a batch). After a failure nothing further is written: the failed batch's future carries its
    error, the later ones `NotWritten`.

    Rejected: writing two batches of a stream at once on two connections. Measured on two
    cores it gained nothing (the statements contend for the boundary hour's rollup rows and the
    sync-status row, and for the CPUs), and it would let a later batch win a key over an
    earlier one.
    """

    def __init__(self, db: Database, partitions: Partitions, customer_id: int) -> None:
        self._db = db
        self._customer_id = customer_id
        self._writer = BatchWriter(db, partitions)
        self._loop = asyncio.get_running_loop()
        self._lock = threading.Lock()
        self._queue: collections.deque[tuple[MeasurementBatch, datetime, asyncio.Future[BatchResult]]] = (
            collections.deque()
        )
        self._draining = False
        self._failed = False

    def submit(self, batch: MeasurementBatch, now: datetime) -> asyncio.Future[BatchResult]:
        future: asyncio.Future[BatchResult] = self._loop.create_future()
        with self._lock:
            self._queue.append((batch, now, future))
            start, self._draining = not self._draining, True
        if start:
            drain = asyncio.ensure_future(self._db.offload(self._drain))
            drain.add_done_callback(_log_drain_failure)
        return future

    def release(self) -> None:
        """Blocking: give the connection back (waits for a running write)."""
        self._writer.release()

    async def offload_release(self) -> None:
        """`release` on a database thread."""
        await self._db.offload(self.release)

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._draining = False
                    return
                batch, now, future = self._queue.popleft()
                failed = self._failed
            if failed:
                self._settle(future, error=NotWritten("an earlier batch of this stream failed"))
                continue
            try:
                result = self._writer.write(self._customer_id, batch, now)
            except Exception as exc:
                with self._lock:
                    self._failed = True
                self._settle(future, error=exc)
            else:
                self._settle(future, result=result)

    def _settle(
        self,
        future: asyncio.Future[BatchResult],
        result: BatchResult | None = None,
        error: BaseException | None = None,
    ) -> None:
        def settle() -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                assert result is not None
                future.set_result(result)

        self._loop.call_soon_threadsafe(settle)


def _log_drain_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _LOGGER.error("measurement write queue failed", exc_info=task.exception())
