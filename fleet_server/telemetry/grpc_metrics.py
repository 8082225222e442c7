"""gRPC server metrics under go-grpc-prometheus's names and labels, so existing dashboards work unchanged.

`GrpcMetricsInterceptor` is the outermost interceptor: it wraps whatever the auth interceptor
returns — the servicer's handler or a refusal — in all four stream shapes, so a refused call is
counted like any other. Per call it counts started and handled (`grpc_code` from the final
status, spelled as Go spells it: `OK`, `Unauthenticated`, `Canceled`…), each message received
and sent, and the handling time. A call that ends in an error also counts its `ErrorInfo`
reason (`fleet_rpc_failures_total`), and an authentication refusal its reason alone
(`fleet_auth_refusals_total`): the reason is read back from the status the caller was sent, so
the counters say exactly what callers were told. Nothing is parsed on the success path; the
labelled children of a method are looked up once and kept.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from fleet.v1 import admin_service_pb2, ingest_service_pb2, query_service_pb2
from google.protobuf.descriptor import ServiceDescriptor
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from prometheus_client import CollectorRegistry, Counter, Histogram

from fleet_server.errors import Reason

# prometheus/client_golang's DefBuckets, which go-grpc-prometheus uses, plus three for the long
# streams (a back-fill's PushMeasurements, a Watch) that would all land in +Inf otherwise.
HANDLING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

# grpc-go's `codes.Code.String()`: the values dashboards filter on (note "Canceled").
GO_CODE_NAMES: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.OK: "OK",
    grpc.StatusCode.CANCELLED: "Canceled",
    grpc.StatusCode.UNKNOWN: "Unknown",
    grpc.StatusCode.INVALID_ARGUMENT: "InvalidArgument",
    grpc.StatusCode.DEADLINE_EXCEEDED: "DeadlineExceeded",
    grpc.StatusCode.NOT_FOUND: "NotFound",
    grpc.StatusCode.ALREADY_EXISTS: "AlreadyExists",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "ResourceExhausted",
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.ABORTED: "Aborted",
    grpc.StatusCode.OUT_OF_RANGE: "OutOfRange",
    grpc.StatusCode.UNIMPLEMENTED: "Unimplemented",
    grpc.StatusCode.INTERNAL: "Internal",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
    grpc.StatusCode.DATA_LOSS: "DataLoss",
    grpc.StatusCode.UNAUTHENTICATED: "Unauthenticated",
}
# The reasons an authentication refusal can carry; each is a `fleet_auth_refusals_total` series
# from the start, so `increase()` sees the first refusal of a kind too.
AUTH_REFUSAL_REASONS = (
    Reason.TOKEN_MISSING,
    Reason.TOKEN_MALFORMED,
    Reason.TOKEN_UNKNOWN,
    Reason.CUSTOMER_INACTIVE,
    Reason.PERMISSION_DENIED,
    Reason.AUTH_UNAVAILABLE,
)
_REFUSAL_CODES = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})
NO_REASON = "NONE"
_DETAILS_KEY = "grpc-status-details-bin"


def grpc_type(request_streaming: bool, response_streaming: bool) -> str:
    """go-grpc-prometheus's `grpc_type`: unary, client_stream, server_stream or bidi_stream."""
    if request_streaming and response_streaming:
        return "bidi_stream"
    if request_streaming:
        return "client_stream"
    if response_streaming:
        return "server_stream"
    return "unary"


def served_methods() -> Iterable[tuple[str, str, str]]:
    """(grpc_type, service, method) of every RPC this server answers, for series that start at zero."""
    services: list[ServiceDescriptor] = [
        ingest_service_pb2.DESCRIPTOR.services_by_name["FleetIngestService"],
        query_service_pb2.DESCRIPTOR.services_by_name["FleetQueryService"],
        admin_service_pb2.DESCRIPTOR.services_by_name["FleetAdminService"],
        health_pb2.DESCRIPTOR.services_by_name["Health"],
        reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
    ]
    for service in services:
        for method in service.methods:
            yield grpc_type(method.client_streaming, method.server_streaming), service.full_name, method.name
    yield "bidi_stream", "grpc.reflection.v1.ServerReflection", "ServerReflectionInfo"


class GrpcMetrics:
    """The go-grpc-prometheus families, plus why calls fail and why callers are refused."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("grpc_type", "grpc_service", "grpc_method")
        self.started = Counter(
            "grpc_server_started", "Total number of RPCs started on the server.", labels, registry=registry
        )
        self.handled = Counter(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            (*labels, "grpc_code"),
            registry=registry,
        )
        self.received = Counter(
            "grpc_server_msg_received",
            "Total number of RPC stream messages received on the server.",
            labels,
            registry=registry,
        )
        self.sent = Counter(
            "grpc_server_msg_sent",
            "Total number of gRPC stream messages sent by the server.",
            labels,
            registry=registry,
        )
        self.handling = Histogram(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled "
            "by the server.",
            labels,
            buckets=HANDLING_BUCKETS,
            registry=registry,
        )
        self.failures = Counter(
            "fleet_rpc_failures",
            "RPCs that ended in an error, by method, status code and the ErrorInfo reason the caller "
            f"was sent ({NO_REASON} when there was none, e.g. a call the client cancelled).",
            ("grpc_service", "grpc_method", "grpc_code", "reason"),
            registry=registry,
        )
        self.refusals = Counter(
            "fleet_auth_refusals",
            "Calls refused by authentication (no, malformed, unknown or expired token, deactivated "
            "customer, wrong kind of token, token lookup failed), by ErrorInfo reason. Never a token.",
            ("reason",),
            registry=registry,
        )
        self._methods: dict[str, _MethodMetrics] = {}
        for kind, service, method in served_methods():
            self.method(f"/{service}/{method}", kind).handled_child(grpc.StatusCode.OK)
        for reason in AUTH_REFUSAL_REASONS:
            self.refusals.labels(reason.value)

    def method(self, full_method: str, kind: str) -> _MethodMetrics:
        """The children of `/package.Service/Method`, created once."""
        found = self._methods.get(full_method)
        if found is None or found.kind != kind:
            service, _, name = full_method.lstrip("/").rpartition("/")
            found = _MethodMetrics(
                metrics=self,
                kind=kind,
                service=service,
                name=name,
                started=self.started.labels(kind, service, name),
                received=self.received.labels(kind, service, name),
                sent=self.sent.labels(kind, service, name),
                handling=self.handling.labels(kind, service, name),
            )
            self._methods[full_method] = found
        return found


@dataclass
class _MethodMetrics:
    """One method's labelled children: looking labels up per message would cost more than counting."""

    metrics: GrpcMetrics
    kind: str
    service: str
    name: str
    started: Any
    received: Any
    sent: Any
    handling: Any
    _handled: dict[grpc.StatusCode, Any] = field(default_factory=dict)

    def handled_child(self, code: grpc.StatusCode) -> Any:
        child = self._handled.get(code)
        if child is None:
            name = GO_CODE_NAMES.get(code, "Unknown")
            child = self._handled[code] = self.metrics.handled.labels(
                self.kind, self.service, self.name, name
            )
        return child

    def finish(self, context: grpc.aio.ServicerContext, error: BaseException | None, started: float) -> None:
        """Count the call's end with the status the caller got."""
        self.handling.observe(time.perf_counter() - started)
        code = final_code(context, error)
        self.handled_child(code).inc()
        if code is grpc.StatusCode.OK:
            return
        reason = sent_reason(context)
        self.metrics.failures.labels(
            self.service, self.name, GO_CODE_NAMES.get(code, "Unknown"), reason
        ).inc()
        if code in _REFUSAL_CODES or reason == Reason.AUTH_UNAVAILABLE:
            self.metrics.refusals.labels(reason if reason != NO_REASON else code.name).inc()


def final_code(context: grpc.aio.ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    """The status the call ended with: what the handler set or aborted with, else what grpc makes of
    how the handler ended (OK, CANCELLED or DEADLINE_EXCEEDED for a cancelled call, UNKNOWN for an
    exception nobody translated)."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, asyncio.CancelledError):
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            return grpc.StatusCode.DEADLINE_EXCEEDED
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


def sent_reason(context: grpc.aio.ServicerContext) -> str:
    """The `ErrorInfo.reason` of the rich status in the call's trailers, or NO_REASON."""
    try:
        trailers = context.trailing_metadata() or ()
    except Exception:  # not every context can tell; the count matters more than the reason
        return NO_REASON
    for key, value in trailers:
        if key != _DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except Exception:
            return NO_REASON
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return info.reason or NO_REASON
    return NO_REASON


class _CountingContext:
    """The servicer context of a handler that reads and writes through it (health's Watch does)."""

    def __init__(self, inner: grpc.aio.ServicerContext, metrics: _MethodMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    async def write(self, message: Any) -> None:
        await self._inner.write(message)
        self._metrics.sent.inc()

    async def read(self) -> Any:
        message = await self._inner.read()
        if message is not grpc.aio.EOF:
            self._metrics.received.inc()
        return message

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def _counted(requests: AsyncIterator[Any], received: Any) -> AsyncIterator[Any]:
    async for request in requests:
        received.inc()
        yield request


def _same_shape(
    handler: grpc.RpcMethodHandler, unary_response: Callable[..., Any], stream_response: Callable[..., Any]
) -> grpc.RpcMethodHandler:
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(stream_response, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(unary_response, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(stream_response, **kwargs)
    return grpc.unary_unary_rpc_method_handler(unary_response, **kwargs)


def observe(handler: grpc.RpcMethodHandler, metrics: _MethodMetrics) -> grpc.RpcMethodHandler:
    """`handler` in its own stream shape, counted."""
    behavior = handler.stream_stream or handler.stream_unary or handler.unary_stream or handler.unary_unary
    request_streaming = bool(handler.request_streaming)
    # A streaming handler written as a coroutine sends with context.write() instead of yielding.
    writes_through_context = bool(handler.response_streaming) and inspect.iscoroutinefunction(behavior)

    def begin(request: Any, context: grpc.aio.ServicerContext) -> tuple[Any, Any]:
        metrics.started.inc()
        if request_streaming:
            return _counted(request, metrics.received), context
        metrics.received.inc()
        return request, context

    async def call_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        request, inner = begin(request, context)
        error: BaseException | None = None
        try:
            response = await behavior(request, inner)
            metrics.sent.inc()
            return response
        except BaseException as exc:
            error = exc
            raise
        finally:
            metrics.finish(context, error, started)

    async def call_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        started = time.perf_counter()
        request, inner = begin(request, context)
        error: BaseException | None = None
        try:
            if writes_through_context:
                await behavior(request, _CountingContext(context, metrics))
            else:
                async for response in behavior(request, inner):
                    metrics.sent.inc()
                    yield response
        except BaseException as exc:
            error = exc
            raise
        finally:
            metrics.finish(context, error, started)

    return _same_shape(handler, call_unary, call_stream)


class GrpcMetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts every call in go-grpc-prometheus's terms; goes first, so refusals are counted too."""

    def __init__(self, metrics: GrpcMetrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        kind = grpc_type(bool(handler.request_streaming), bool(handler.response_streaming))
        return observe(handler, self._metrics.method(handler_call_details.method, kind))
