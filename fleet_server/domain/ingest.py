"""Measurement ingest, the use case: one customer's PushMeasurements stream, batch by batch.

A stream owns the customer's ingest (one stream per customer, `fairness.IngestGate`); each
batch is validated, charged to the customer's row budget and queued for writing, each write a
database turn of the customer, in order (`OrderedWrites`, `store.measurements`). The servicer
only decodes requests and encodes the results.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

from fleet_server.clock import Clock
from fleet_server.db.scheduler import BUSY_RETRY_MS, Lane, Turn
from fleet_server.db.session import Database
from fleet_server.domain.fairness import IngestGate, PartitionBudget
from fleet_server.domain.measurements import validate_batch
from fleet_server.domain.memory import ByteBudget, Holding, resident_cost
from fleet_server.errors import Reason, Unavailable
from fleet_server.store.measurements import BatchResult, BatchWriter, MeasurementBatch, months_of
from fleet_server.store.partitions import Partitions

_LOGGER = logging.getLogger(__name__)


class MeasurementIngest:
    """What every measurement stream of this process shares: the database, the gate, the partitions."""

    def __init__(
        self, db: Database, gate: IngestGate, partitions: Partitions, clock: Clock, memory: ByteBudget
    ) -> None:
        self._db = db
        self._gate = gate
        self._partitions = partitions
        self._clock = clock
        self._memory = memory
        self._open = 0  # measurement streams open in this process

    def refusal(self) -> Unavailable | None:
        """Why a new stream should not start now, if it should not.

        While the database's ingest work already queued would take more than `admit_wait_s`
        (a second) to start (`Scheduler.admits`; each open stream counts as a job on its way), a
        new stream is refused at once as UNAVAILABLE
        (DATABASE_BUSY) with a retry hint: it would only add to the queue its batches, and
        everyone else's, wait in. The interceptor asks before it admits the call, so the refusal
        reaches the client before it sends anything (a grpc.aio client writing into a stream the
        server ends may report INTERNAL instead of the status, grpc/grpc#36066).
        """
        wait = self._db.turns.admits(Lane.INGEST, coming=self._open)
        if wait is None:
            return None
        return Unavailable(
            f"the database is busy (about {wait:.1f} s of measurement writes queued); retry later",
            reason=Reason.DATABASE_BUSY,
            retry_after_ms=BUSY_RETRY_MS,
        )

    @contextlib.asynccontextmanager
    async def stream(
        self, customer_id: int, token_hash: str | None = None
    ) -> AsyncIterator[MeasurementStreamSession]:
        """The customer's stream for the `async with` body; RESOURCE_EXHAUSTED if one is open already.

        `token_hash` is the stream's token: each batch is written only while it is still valid.
        """
        self._open += 1
        try:
            async with self._gate.exclusive_stream(customer_id):
                writes = OrderedWrites(
                    self._db, self._partitions, customer_id, token_hash, self._gate.partition_budget
                )
                yield MeasurementStreamSession(writes, self._gate, self._clock, self._memory, customer_id)
        finally:
            self._open -= 1


class MeasurementStreamSession:
    """One open stream: `accept` each decoded batch."""

    def __init__(
        self,
        writes: OrderedWrites,
        gate: IngestGate,
        clock: Clock,
        memory: ByteBudget,
        customer_id: int,
    ) -> None:
        self._writes = writes
        self._gate = gate
        self._clock = clock
        self._memory = memory
        self._customer_id = customer_id

    async def accept(
        self, serialized_bytes: int, rows: int, decode: Callable[[], Awaitable[MeasurementBatch]]
    ) -> asyncio.Future[BatchResult]:
        """Hold what the batch will cost in the process's batch memory, `decode` and validate it
        (`decode` gives the event loop turns while it works through a big batch), spend its
        rows of the customer's row budget (raising refuses it), then queue it.

        The memory is taken first, from the request's size and row count, so a batch the process
        cannot hold is refused before it is decoded. The future settles when the batch is
        committed, or with the error that stopped it (`NotWritten` when an earlier batch of the
        stream failed); the memory is given back then.
        """
        held = Holding(self._memory, self._customer_id)
        held.take(resident_cost(serialized_bytes, rows))
        try:
            batch = await decode()
            now = self._clock.now()
            validate_batch(batch, now)
            self._gate.budget.admit(self._customer_id, len(batch))
            written = self._writes.submit(batch, now)
        except BaseException:
            held.release()
            raise
        written.add_done_callback(lambda _: held.release())
        return written


class NotWritten(Exception):
    """A queued batch that was not written because an earlier batch of its stream failed."""


class OrderedWrites:
    """One stream's batch writes, in request order, each a database job in its customer's turn.

    The stream's jobs share a serial key (`Turn.serialised`), so they run one at a time, oldest
    first, and a thread that finishes batch N picks N+1 itself when it is queued, without a
    round trip through the event loop (that hop cost about a tenth of a batch). Nothing is held
    between batches. A batch is written only when every batch before it was (`_written` counts
    them, changed only by the jobs, which never overlap): after a failure, or a batch refused a
    turn, the later ones fail with `NotWritten`.

    Rejected: writing two batches of a stream at once on two connections. Measured on two
    cores it gained nothing (the statements contend for the boundary hour's rollup rows and the
    sync-status row, and for the CPUs), and it would let a later batch win a key over an
    earlier one.
    """

    def __init__(
        self,
        db: Database,
        partitions: Partitions,
        customer_id: int,
        token_hash: str | None = None,
        partition_budget: PartitionBudget | None = None,
    ) -> None:
        self._db = db
        self._customer_id = customer_id
        self._token_hash = token_hash
        self._partitions = partitions
        self._partition_budget = partition_budget
        self._turn = Turn.ingest(customer_id).serialised(self)
        self._writer = BatchWriter(db, partitions)
        self._submitted = 0
        self._written = 0

    def submit(self, batch: MeasurementBatch, now: datetime) -> asyncio.Future[BatchResult]:
        index, self._submitted = self._submitted, self._submitted + 1
        turn = self._turn.for_rows(len(batch))
        return asyncio.ensure_future(self._db.run_blocking(turn, self._write, index, batch, now))

    def _write(self, index: int, batch: MeasurementBatch, now: datetime) -> BatchResult:
        if index != self._written:
            raise NotWritten("an earlier batch of this stream failed")
        self._open_partitions(batch)
        result = self._writer.write(self._customer_id, batch, now, self._token_hash)
        self._written += 1
        return result

    def _open_partitions(self, batch: MeasurementBatch) -> None:
        """Create the batch's missing monthly partitions within the customer's budget, or refuse it."""
        budget = self._partition_budget
        if budget is None or not budget.enabled or not len(batch):
            return
        opened = self._partitions.ensure(months_of(batch), budget.allowance(self._customer_id))
        budget.spend(self._customer_id, opened.created)
        if opened.refused:
            raise budget.refusal(self._customer_id, len(opened.refused), opened.created)
