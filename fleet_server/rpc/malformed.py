"""Malformed request bytes (bad UTF-8, truncated fields) are INVALID_ARGUMENT, never UNKNOWN or INTERNAL.

grpc decodes a request before any handler code runs. A `DecodeError` there used to become
UNKNOWN ("Unexpected <class 'DecodeError'>: Error parsing message with type …") for a unary
call, and INTERNAL with a traceback in the log for a streaming one. `guard` gives a handler a
deserializer that returns a `Malformed` marker instead of raising, and a behaviour that refuses
the call when it meets one: a unary call before the servicer runs, a request stream at the bad
message. The servicer sees that message's refusal as it sees any other raised `FleetError`, so
a measurement stream still acknowledges the batches before it, and a snapshot writes nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio

from fleet_server.errors import FleetError, Reason
from fleet_server.rpc.translate import abort_with


class MalformedRequest(FleetError):
    """A request message that is not a valid encoding of its type; resending it fails again."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = Reason.MALFORMED_REQUEST


class Malformed:
    """What the guarded deserializer returns for bytes that do not parse as the request type."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def refusal(self, index: int | None = None) -> MalformedRequest:
        which = "the request" if index is None else f"message {index} of the request stream"
        return MalformedRequest(
            f"{which} is not a valid {self.type_name} (malformed protobuf: bad UTF-8 in a string, "
            "truncated or invalid bytes); nothing was written",
            metadata={"message_type": self.type_name},
        )


def _type_name(deserializer: Callable[[bytes], Any]) -> str:
    message_class = getattr(deserializer, "__self__", None)
    descriptor = getattr(message_class, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "request message"))


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None
    marker = Malformed(_type_name(deserializer))

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # any bytes that do not parse are the caller's mistake, not ours
            return marker

    return deserialize


async def _checked(requests: AsyncIterable[Any]) -> AsyncIterator[Any]:
    """The request stream, raising `MalformedRequest` at the first message that did not parse."""
    index = 0
    async for message in requests:
        if isinstance(message, Malformed):
            raise message.refusal(index)
        yield message
        index += 1


def guard(handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler | None:
    """`handler` with the tolerant deserializer and a behaviour that refuses malformed messages."""
    if handler is None:
        return None
    behavior = handler.stream_stream or handler.stream_unary or handler.unary_stream or handler.unary_unary
    streamed_response = inspect.isasyncgenfunction(behavior)

    def request_of(request: Any) -> Any:
        if handler.request_streaming:
            return _checked(request)
        if isinstance(request, Malformed):
            raise request.refusal()
        return request

    async def respond(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await behavior(request_of(request), context)
        except MalformedRequest as refused:  # a servicer that does not translate errors itself
            await abort_with(context, refused)

    async def respond_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for response in behavior(request_of(request), context):
                yield response
        except MalformedRequest as refused:
            await abort_with(context, refused)

    kwargs = {
        "request_deserializer": _tolerant(handler.request_deserializer),
        "response_serializer": handler.response_serializer,
    }
    chosen = respond_stream if streamed_response else respond
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(chosen, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(respond, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(chosen, **kwargs)
    return grpc.unary_unary_rpc_method_handler(respond, **kwargs)
