"""The measurement stream's read-ahead when its request stream fails: what was written is acknowledged."""

from __future__ import annotations

import asyncio
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

        def accept(batch: int) -> asyncio.Future[str]:
            written: asyncio.Future[str] = loop.create_future()
            writes.append(written)
            return written

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

        def accept(batch: int) -> asyncio.Future[int]:
            if batch == 3:
                raise ValueError("batch 3 is bad")
            done: asyncio.Future[int] = loop.create_future()
            loop.call_soon(done.set_result, batch)
            return done

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
