"""The idle limit of a request stream, on real asyncio time with limits far from the test's waits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from fleet_server.errors import Reason, StreamIdle
from fleet_server.rpc.idle import IdleLimit


async def _messages(*items: int, then: asyncio.Event | None = None) -> AsyncIterator[int]:
    for item in items:
        yield item
    if then is not None:
        await then.wait()  # the client stops sending but keeps the stream open
        yield -1


def test_messages_in_time_pass_and_the_end_of_the_stream_is_the_end():
    async def main() -> list[int]:
        return [m async for m in IdleLimit(_messages(1, 2, 3), limit_s=30.0)]

    assert asyncio.run(main()) == [1, 2, 3]


def test_a_stream_that_sends_nothing_for_the_limit_is_ended_as_idle():
    async def main() -> tuple[list[int], StreamIdle]:
        seen: list[int] = []
        try:
            async for message in IdleLimit(_messages(1, 2, then=asyncio.Event()), limit_s=0.05):
                seen.append(message)
        except StreamIdle as idle:
            return seen, idle
        raise AssertionError("the stream was not ended")

    seen, idle = asyncio.run(main())
    assert seen == [1, 2]
    assert idle.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert idle.reason is Reason.STREAM_IDLE
    assert idle.metadata == {"idle_s": "0.05"}
    assert "sent nothing for 0.05 s" in idle.message


def test_a_response_sent_restarts_the_clock():
    """The stream would idle out after 2 s; touching it every 0.2 s for 3 s keeps it alive."""

    async def main() -> list[int]:
        go_on = asyncio.Event()
        stream = IdleLimit(_messages(1, then=go_on), limit_s=2.0)
        assert await anext(stream) == 1
        waiting = asyncio.ensure_future(anext(stream))
        for _ in range(15):
            await asyncio.sleep(0.2)
            stream.touch()
        assert not waiting.done()
        go_on.set()
        return [await waiting]

    assert asyncio.run(main()) == [-1]


def test_a_cancelled_read_is_a_cancellation_not_idleness():
    async def main() -> None:
        stream = IdleLimit(_messages(then=asyncio.Event()), limit_s=30.0)
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(main())


def test_a_timeout_of_the_source_itself_is_not_taken_for_idleness():
    class TimingOut:
        """A source whose own wait timed out."""

        def __aiter__(self) -> TimingOut:
            return self

        async def __anext__(self) -> int:
            raise TimeoutError("the source's own")

    async def main() -> None:
        with pytest.raises(TimeoutError, match="the source's own"):
            await anext(IdleLimit(TimingOut(), limit_s=30.0))

    asyncio.run(main())
