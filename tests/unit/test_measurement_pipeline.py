"""pipelined: reads ahead only while its queue has room, keeps only tags, acknowledges what it wrote."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator

from fleet_server.errors import StreamIdle
from fleet_server.services.measurement_stream import pipelined


def test_when_the_request_stream_idles_out_the_batches_in_flight_are_acknowledged_first():
    async def main() -> tuple[list[tuple[int, str]], BaseException | None]:
        loop = asyncio.get_running_loop()
        writes: list[asyncio.Future[str]] = []
        idled = asyncio.Event()

        async def requests() -> AsyncIterator[int]:
            yield 1
            yield 2
            idled.set()
            raise StreamIdle("the stream sent nothing")

        def accept(batch: int) -> tuple[int, asyncio.Future[str]]:
            written: asyncio.Future[str] = loop.create_future()
            writes.append(written)
            return batch, written

        async def finish_writes_late() -> None:
            """The two writes end only well after the pipeline saw the request stream fail."""
            await idled.wait()
            for _ in range(20):
                await asyncio.sleep(0)
            writes[0].set_result("first")
            writes[1].set_result("second")

        late = asyncio.ensure_future(finish_writes_late())
        acks: list[tuple[int, str]] = []
        failure: BaseException | None = None
        try:
            async for batch, result in pipelined(requests(), accept, max_queued=3):
                acks.append((batch, result))
        except StreamIdle as error:
            failure = error
        await late
        return acks, failure

    acks, failure = asyncio.run(main())
    assert acks == [(1, "first"), (2, "second")]
    assert isinstance(failure, StreamIdle)


def test_a_refused_batch_still_ends_the_stream_after_the_earlier_acknowledgements():
    async def main() -> tuple[list[int], BaseException | None]:
        loop = asyncio.get_running_loop()

        async def requests() -> AsyncIterator[int]:
            for batch in (1, 2, 3):
                yield batch

        def accept(batch: int) -> tuple[int, asyncio.Future[int]]:
            if batch == 3:
                raise ValueError("batch 3 is bad")
            done: asyncio.Future[int] = loop.create_future()
            loop.call_soon(done.set_result, batch)
            return batch, done

        acks: list[int] = []
        try:
            async for _, result in pipelined(requests(), accept):
                acks.append(result)
        except ValueError as refusal:
            return acks, refusal
        return acks, None

    acks, failure = asyncio.run(main())
    assert acks == [1, 2]
    assert isinstance(failure, ValueError)
    assert str(failure) == "batch 3 is bad"


class _Request:
    def __init__(self, number: int) -> None:
        self.number = number


def test_a_full_queue_reads_nothing_more_until_a_result_is_done() -> None:
    async def scenario() -> tuple[int, list[int]]:
        read = 0
        works: list[asyncio.Future[int]] = []

        async def requests() -> AsyncIterator[_Request]:
            nonlocal read
            for number in range(10):
                read += 1
                yield _Request(number)

        def accept(request: _Request) -> tuple[int, asyncio.Future[int]]:
            work: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            works.append(work)
            return request.number, work

        results: list[int] = []

        async def consume() -> None:
            async for tag, _ in pipelined(requests(), accept, max_queued=2):
                results.append(tag)

        consumer = asyncio.ensure_future(consume())
        for _ in range(20):
            await asyncio.sleep(0)
        read_while_full = read
        for number, work in enumerate(works):
            work.set_result(number)
        while len(works) < 10 or not all(w.done() for w in works):
            await asyncio.sleep(0)
            for number, work in enumerate(works):
                if not work.done():
                    work.set_result(number)
        await consumer
        return read_while_full, results

    read_while_full, results = asyncio.run(scenario())
    assert read_while_full == 2
    assert results == list(range(10))


def test_a_queued_request_is_not_kept_once_accepted() -> None:
    async def scenario() -> bool:
        kept: list[weakref.ref[_Request]] = []
        work: asyncio.Future[int] | None = None

        async def requests() -> AsyncIterator[_Request]:
            pending = [_Request(1)]
            kept.append(weakref.ref(pending[0]))
            while pending:
                yield pending.pop()  # held by nothing here once handed over

        def accept(request: _Request) -> tuple[int, asyncio.Future[int]]:
            nonlocal work
            work = asyncio.get_running_loop().create_future()
            return request.number, work

        stream = pipelined(requests(), accept)
        waiting = asyncio.ensure_future(anext(stream))
        while work is None:
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        gc.collect()
        gone = kept[0]() is None
        work.set_result(0)
        await waiting
        async for _ in stream:
            pass
        return gone

    assert asyncio.run(scenario())
