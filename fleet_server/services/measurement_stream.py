"""One PushMeasurements stream's read-ahead: the next request is read while earlier ones are written.

Kept apart from the wire conversions and from the domain's write queue
(`domain.ingest.OrderedWrites`): this is only the request stream's concurrency — results go out
in request order the moment they are there. See docs/DESIGN.md, "The stream pipeline".
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

_LOGGER = logging.getLogger(__name__)

Req = TypeVar("Req")
Res = TypeVar("Res")
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


async def _succeeded(
    queue: collections.deque[tuple[Req, asyncio.Future[Res]]],
) -> AsyncIterator[tuple[Req, Res]]:
    """The queued requests' results, in order, up to the first that failed.

    What succeeded before a refused request (or before the request stream failed) still goes
    out, so every batch written is acknowledged; what follows a failure is never written.
    """
    while queue:
        earlier, work = queue.popleft()
        try:
            result = await work
        except Exception:
            break
        yield earlier, result


async def pipelined(
    requests: AsyncIterator[Req],
    accept: Callable[[Req], asyncio.Future[Res]],
    *,
    max_queued: int = MAX_QUEUED_BATCHES,
) -> AsyncIterator[tuple[Req, Res]]:
    """Each request with its result, in request order, as soon as the result is there.

    `accept` checks a request (raising refuses it) and starts its work, returning a future.
    The next request is read while earlier ones are worked on (at most `max_queued` at once),
    and a finished result goes out at once even while the client is still sending. When a
    request is refused, the results of the requests before it that succeeded go out first,
    then the error; likewise when reading the next request fails (the stream idled out).
    """
    iterator = aiter(requests)
    reading: asyncio.Future[Req] | None = asyncio.ensure_future(anext(iterator))
    queue: collections.deque[tuple[Req, asyncio.Future[Res]]] = collections.deque()
    try:
        while reading is not None or queue:
            waiting: set[asyncio.Future[Any]] = {queue[0][1]} if queue else set()
            if reading is not None and len(queue) < max_queued:
                waiting.add(reading)
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
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
            except Exception:  # the request stream failed (it idled out): it ends as after a refusal
                reading = None
                async for settled in _succeeded(queue):
                    yield settled
                raise
            reading = asyncio.ensure_future(anext(iterator))
            try:
                queue.append((request, accept(request)))
            except Exception:
                async for settled in _succeeded(queue):
                    yield settled
                raise
    finally:
        if reading is not None:
            reading.add_done_callback(_retrieve)
            reading.cancel()
        for _, work in queue:  # the caller went away: the work goes on, unacknowledged
            work.add_done_callback(log_orphaned_write)
