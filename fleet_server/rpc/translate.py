"""The one error translator: domain errors → `google.rpc.Status`, everything else → sanitised INTERNAL.

It sits below both the servicers and the auth interceptor, so neither imports the other. Every
servicer method is wrapped in `@translate_errors`; the interceptor's refusals go through
`abort_with`. A `FleetError` becomes its status code with the public message, an
`ErrorInfo{reason, domain, metadata}` detail and, for invalid arguments, a `BadRequest` listing
the field violations. An aborted call (`context.abort`) is re-raised untouched. Anything else is
logged with a correlation id and answered as INTERNAL carrying only that id: no stack trace or
SQL reaches the caller.
"""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar, cast

import grpc
import grpc.aio
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from fleet_server.errors import ERROR_DOMAIN, FleetError, InvalidArgument

_LOGGER = logging.getLogger(__name__)

RETRY_AFTER_KEY = "retry-after-ms"
F = TypeVar("F", bound=Callable[..., Any])


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status(error: FleetError) -> status_pb2.Status:
    """The rich status for a domain error."""
    status = status_pb2.Status(code=error.code.value[0], message=error.message)
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata)
    status.details.append(_pack(info))
    if isinstance(error, InvalidArgument):
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.violations
            ]
        )
        status.details.append(_pack(bad))
    if error.retry_after_ms is not None:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(error.retry_after_ms)
        status.details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status


async def abort_with(context: grpc.aio.ServicerContext, error: FleetError) -> None:
    """End the call with `error`'s status; raises (as `context.abort` does).

    `error` loses its traceback first, which nothing reads once it is a status. Callers abort
    from inside their `except` block, so gRPC's own frames hold the abort, the abort holds
    `error` (its context), and the traceback would hold the frames `error` came through: the
    servicer's, with the request they were reading — megabytes held until a full garbage
    collection (docs/DESIGN.md, "Less CPU per row").
    """
    error.with_traceback(None)
    status = to_status(error)
    trailing: list[tuple[str, str | bytes]] = [("grpc-status-details-bin", status.SerializeToString())]
    if error.retry_after_ms is not None:
        trailing.append((RETRY_AFTER_KEY, str(error.retry_after_ms)))
    await context.abort(error.code, error.message, trailing_metadata=tuple(trailing))


async def _internal(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    correlation_id = uuid.uuid4().hex[:16]
    method = getattr(context, "method", "?")
    _LOGGER.error("internal error correlation_id=%s method=%s", correlation_id, method, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (correlation id {correlation_id})")


def _is_abort(exc: BaseException) -> bool:
    return isinstance(exc, grpc.aio.AbortError)


def translate_errors(fn: F) -> F:
    """Wrap a servicer method (coroutine or async generator) with the error translation."""
    if inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def stream_wrapper(
            self: Any, request: Any, context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            try:
                async for item in fn(self, request, context):
                    yield item
            except FleetError as error:
                await abort_with(context, error)
            except Exception as exc:
                if _is_abort(exc):
                    raise
                await _internal(context, exc)

        return cast(F, stream_wrapper)

    @functools.wraps(fn)
    async def unary_wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await fn(self, request, context)
        except FleetError as error:
            await abort_with(context, error)
        except Exception as exc:
            if _is_abort(exc):
                raise
            await _internal(context, exc)

    return cast(F, unary_wrapper)
