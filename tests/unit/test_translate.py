"""Error translation: a refusal becomes a status, and keeps nothing of the call that raised it."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from fleet_server.errors import InvalidArgument
from fleet_server.rpc.translate import abort_with, translate_errors


class Payload:
    """Stands for the request a servicer was reading when it refused it."""


class Context:
    """Aborts as grpc.aio's servicer context does: by raising `AbortError` from inside `abort`."""

    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    async def abort(self, code: grpc.StatusCode, message: str, trailing_metadata: Any = ()) -> None:
        self.aborted = (code, message)
        raise grpc.aio.AbortError()


class Servicer:
    def __init__(self) -> None:
        self.read: weakref.ref[Payload] | None = None

    def _read_and_refuse(self) -> None:
        payload = Payload()
        self.read = weakref.ref(payload)
        raise InvalidArgument.single("measurements[0].value", "must be finite")

    @translate_errors
    async def Unary(self, request: Any, context: Any) -> None:
        self._read_and_refuse()

    @translate_errors
    async def Stream(self, request: Any, context: Any) -> AsyncIterator[None]:
        self._read_and_refuse()
        yield None


async def _abort_of(call: Any) -> BaseException:
    try:
        await call
    except grpc.aio.AbortError as abort:
        error: BaseException = abort
        return error
    raise AssertionError("the call was not aborted")


async def _drain(stream: AsyncIterator[None]) -> None:
    async for _ in stream:
        pass


@pytest.mark.parametrize("kind", ["unary", "stream"])
def test_a_refusal_keeps_nothing_the_servicer_was_reading(kind: str) -> None:
    """The abort (which gRPC's frames hold, in a cycle) must not reach the servicer's frames:
    through the refusal's traceback they held the request until a full collection."""
    servicer, context = Servicer(), Context()
    call = servicer.Unary(None, context) if kind == "unary" else _drain(servicer.Stream(None, context))
    gc.disable()  # only reference counting may free the payload
    try:
        abort = asyncio.run(_abort_of(call))
        del call
        refusal = abort.__context__
        assert isinstance(refusal, InvalidArgument)
        assert context.aborted == (grpc.StatusCode.INVALID_ARGUMENT, refusal.message)
        assert servicer.read is not None
        assert servicer.read() is None  # the abort is still alive; what the servicer read is not
    finally:
        gc.enable()


def test_abort_with_drops_the_traceback_every_caller_would_keep() -> None:
    """The interceptor aborts with `abort_with` too (idle streams, full budgets): the same cut."""
    context = Context()
    had_frames: list[bool] = []

    async def refuse() -> BaseException:
        try:
            Servicer()._read_and_refuse()
        except InvalidArgument as error:
            had_frames.append(error.__traceback__ is not None)
            return await _abort_of(abort_with(context, error))
        raise AssertionError("nothing was refused")

    abort = asyncio.run(refuse())
    assert had_frames == [True]
    assert isinstance(abort.__context__, InvalidArgument)
    assert abort.__context__.__traceback__ is None
