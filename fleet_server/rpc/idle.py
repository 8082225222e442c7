"""The idle limit of a request stream: a client that sends nothing for too long loses the call.

A push stream that sends nothing holds a slot of its customer's budget, a task and its buffers
for as long as the client likes; one that died behind a NAT that never sends a reset holds them
until TCP gives up. The interceptor wraps the request iterator of every request-streaming call
in `IdleLimit`: waiting longer than the limit for the next message raises `StreamIdle`
(`DEADLINE_EXCEEDED`, reason `STREAM_IDLE`) in the handler, where the request stream is read, so
the handler's own error path decides what happens to what it holds — a snapshot is not applied,
a measurement stream acknowledges what it committed and writes nothing more.

The clock restarts whenever the server sends a response (`touch`): a client waiting for its
acknowledgement is not idle.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from typing import Generic, TypeVar

from fleet_server.errors import StreamIdle

T = TypeVar("T")


class IdleLimit(Generic[T]):
    """`requests`, but a wait of more than `limit_s` for the next one raises `StreamIdle`."""

    def __init__(self, requests: AsyncIterable[T], limit_s: float) -> None:
        self._source = requests
        self._requests: AsyncIterator[T] | None = None  # taken on the first read, as the handler would
        self._limit_s = limit_s
        self._waiting: asyncio.Timeout | None = None

    def __aiter__(self) -> IdleLimit[T]:
        return self

    async def __anext__(self) -> T:
        try:
            if self._requests is None:
                self._requests = aiter(self._source)
            async with asyncio.timeout(self._limit_s) as waiting:
                self._waiting = waiting
                return await anext(self._requests)
        except TimeoutError:
            # Only our own expiry is idleness; `asyncio.timeout` leaves a cancellation by anyone
            # else (the client went away, the server stops) a CancelledError.
            if waiting.expired():
                raise self._idle() from None
            raise
        finally:
            self._waiting = None

    def touch(self) -> None:
        """The server sent something: the client gets `limit_s` from now for its next message."""
        if self._waiting is not None:
            self._waiting.reschedule(asyncio.get_running_loop().time() + self._limit_s)

    def _idle(self) -> StreamIdle:
        return StreamIdle(
            f"the stream sent nothing for {self._limit_s:g} s and was ended (the server's "
            "--stream-idle-s); nothing it had not had acknowledged was written",
            metadata={"idle_s": f"{self._limit_s:g}"},
        )
