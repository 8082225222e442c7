"""One PushMeasurements stream's read-ahead: the next request is read while earlier ones are written.

Kept apart from the wire conversions and from the domain's write queue
(`domain.ingest.OrderedWrites`): this is only the request stream's concurrency — results go out
in request order the moment they are there. See docs/DESIGN.md, "The stream pipeline".
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

_LOGGER = logging.getLogger(__name__)

Req = TypeVar("Req")
Res = TypeVar("Res")
Tag = TypeVar("Tag")
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
    queue: collections.deque[tuple[Tag, asyncio.Future[Res]]],
) -> AsyncIterator[tuple[Tag, Res]]:
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


Accepted = tuple[Tag, asyncio.Future[Res]]


async def pipelined(
    requests: AsyncIterator[Req],
    accept: Callable[[Req], Accepted[Tag, Res] | Awaitable[Accepted[Tag, Res]]],
    *,
    max_queued: int = MAX_QUEUED_BATCHES,
) -> AsyncIterator[tuple[Tag, Res]]:
    """Each request's tag with its result, in request order, as soon as the result is there.

    `accept` checks a request (raising refuses it) and starts its work, returning the tag the
    result goes out with (a batch id) and a future; it may be a coroutine (a big batch is decoded
    off the event loop), and is awaited before the next request is read, so requests are still
    accepted one at a time, in order. Only the tag is kept: a request may be
    megabytes of protobuf that nothing needs once its work has started. The next request is
    read while earlier ones are worked on, but only while fewer than `max_queued` are: a
    stream whose queue is full reads nothing, so what it holds is its queue, and HTTP/2 flow
    control holds the client back. A finished result goes out at once even while the client is
    still sending. When a request is refused, the results of the requests before it that
    succeeded go out first, then the error; likewise when reading the next request fails (the
    stream idled out, or the message is malformed).
    """
    iterator = aiter(requests)
    reading: asyncio.Future[Req] | None = None
    ended = False
    queue: collections.deque[tuple[Tag, asyncio.Future[Res]]] = collections.deque()
    try:
        while True:
            if reading is None and not ended and len(queue) < max_queued:
                reading = asyncio.ensure_future(anext(iterator))
            if reading is None and not queue:
                return
            waiting: set[asyncio.Future[Any]] = {queue[0][1]} if queue else set()
            if reading is not None:
                waiting.add(reading)
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if queue and queue[0][1].done():
                tag, work = queue.popleft()
                yield tag, work.result()
                continue
            assert reading is not None
            try:
                request = reading.result()
            except StopAsyncIteration:
                ended = True
                continue
            except Exception:  # the request stream failed (it idled out): it ends as after a refusal
                async for settled in _succeeded(queue):
                    yield settled
                raise
            finally:
                reading = None  # a done future holds its result: the whole request
            try:
                accepted = accept(request)
                if inspect.isawaitable(accepted):
                    accepted = await accepted
                queue.append(accepted)
            except Exception:
                async for settled in _succeeded(queue):
                    yield settled
                raise
            finally:
                del request
    finally:
        if reading is not None:
            reading.add_done_callback(_retrieve)
            reading.cancel()
        for _, work in queue:  # the caller went away: the work goes on, unacknowledged
            work.add_done_callback(log_orphaned_write)
