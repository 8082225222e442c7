"""One PushMeasurements stream: batches decoded ahead while earlier ones write, acknowledged in order.

Kept apart from `measurement_wire` (pure conversions): this is the stream's concurrency — a
read-ahead of the next request, a per-stream write queue on a database thread, and the rule
that nothing is written after a failed batch. See docs/DESIGN.md, "The stream pipeline".
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from fleet_server.db.session import Database
from fleet_server.domain.measurements import BatchResult, BatchWriter, MeasurementBatch

_LOGGER = logging.getLogger(__name__)

Req = TypeVar("Req")
Res = TypeVar("Res")
# A stream that waits this long for its next batch gives its database connection back.
IDLE_RELEASE_S = 0.05
# Batches of one stream accepted ahead of their acknowledgement: one writing, one waiting.
MAX_QUEUED_BATCHES = 2


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a read we no longer wait for as handled (the stream ended or was refused)."""
    if not task.cancelled():
        task.exception()


def log_orphaned_write(future: asyncio.Future[Any]) -> None:
    """A batch whose stream ended before its acknowledgement: committed or not, say which."""
    if future.cancelled():
        return
    error = future.exception()
    if error is not None:
        _LOGGER.warning("unacknowledged batch failed after its stream ended: %r", error)
    else:
        _LOGGER.info("unacknowledged batch committed after its stream ended: %s", future.result())


async def pipelined(
    requests: AsyncIterator[Req],
    accept: Callable[[Req], asyncio.Future[Res]],
    on_idle: Callable[[], Awaitable[None]],
    *,
    max_queued: int = MAX_QUEUED_BATCHES,
    idle_after_s: float = IDLE_RELEASE_S,
) -> AsyncIterator[tuple[Req, Res]]:
    """Each request with its result, in request order, as soon as the result is there.

    `accept` checks a request (raising refuses it) and starts its work, returning a future.
    The next request is read while earlier ones are worked on (at most `max_queued` at once),
    and a finished result goes out at once even while the client is still sending. When a
    request is refused, the results of the requests before it that succeeded go out first,
    then the error. `on_idle` runs when nothing is in progress and the client has sent nothing
    for `idle_after_s` (PushMeasurements gives its database connection back then).
    """
    iterator = aiter(requests)
    reading: asyncio.Future[Req] | None = asyncio.ensure_future(anext(iterator))
    queue: collections.deque[tuple[Req, asyncio.Future[Res]]] = collections.deque()
    idle = True
    try:
        while reading is not None or queue:
            waiting: set[asyncio.Future[Any]] = {queue[0][1]} if queue else set()
            if reading is not None and len(queue) < max_queued:
                waiting.add(reading)
            done, _ = await asyncio.wait(waiting, timeout=idle_after_s, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                if not queue and not idle:
                    idle = True
                    await on_idle()
                continue
            if queue and queue[0][1].done():
                request, work = queue.popleft()
                yield request, work.result()
                continue
            assert reading is not None
            try:
                request = reading.result()
            except StopAsyncIteration:
                reading = None
                continue
            reading = asyncio.ensure_future(anext(iterator))
            idle = False
            try:
                queue.append((request, accept(request)))
            except Exception:
                while queue:  # what succeeded before the refused request still goes out
                    earlier, work = queue.popleft()
                    try:
                        result = await work
                    except Exception:
                        break
                    yield earlier, result
                raise
    finally:
        if reading is not None:
            reading.add_done_callback(_retrieve)
            reading.cancel()
        for _, work in queue:  # the caller went away: the work goes on, unacknowledged
            work.add_done_callback(log_orphaned_write)


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

    def __init__(self, db: Database, customer_id: int) -> None:
        self._db = db
        self._customer_id = customer_id
        self._writer = BatchWriter(db)
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
