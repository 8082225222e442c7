"""The server interceptor, the door of every call: authenticate, admit, bound idleness, log.

Authentication happens in `intercept_service`, before the handler is started, so a refused
streaming call never has a request message consumed and nothing is written. The refusal handler
keeps the method's streaming shape (a unary refusal for a client-streaming RPC breaks the
call). Every call then gets a handler that first takes a slot of its caller's budget
(`rpc.admission`: the customer's, the operators', or the anonymous callers') for as long as it
runs — refused with RESOURCE_EXHAUSTED when the budget is full — and reads its request stream,
if it has one, through the idle limit (`rpc.idle`). Calls with a token hand their servicer a
`CallContext` carrying the identity and write one access-log line when they end (method,
customer, rows, status, duration; never the token). Health and reflection need no token and
are not logged, but are admitted and idle-limited like every other call.

The slot is taken in the handler, not in `intercept_service`: gRPC does not start the handler
of a unary call cancelled before its request arrived, and a slot taken there would never be
given back.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc
import grpc.aio

from fleet_server.auth.call_context import CallContext
from fleet_server.auth.policy import Requirement, requirement_for
from fleet_server.domain.authentication import AdminIdentity, CustomerIdentity, Identity, TokenStore
from fleet_server.errors import FleetError, PermissionDenied, Reason, Unauthenticated, Unavailable
from fleet_server.rpc.admission import Admission
from fleet_server.rpc.idle import IdleLimit
from fleet_server.rpc.malformed import guard as guard_malformed
from fleet_server.rpc.translate import abort_with

_LOGGER = logging.getLogger(__name__)
ACCESS_LOGGER = logging.getLogger("fleet_server.access")

_BEARER = "bearer "


def _bearer_token(metadata: tuple[Any, ...] | None) -> str:
    values = [v for k, v in (metadata or ()) if k == "authorization"]
    if not values:
        raise Unauthenticated("missing authorization metadata", reason=Reason.TOKEN_MISSING)
    value = values[0] if isinstance(values[0], str) else values[0].decode("latin-1")
    if len(values) > 1 or not value.lower().startswith(_BEARER):
        raise Unauthenticated("authorization must be 'Bearer <token>'", reason=Reason.TOKEN_MALFORMED)
    return value[len(_BEARER) :].strip()


def _check_kind(identity: Identity, requirement: Requirement, method: str) -> None:
    if requirement is Requirement.CUSTOMER and not isinstance(identity, CustomerIdentity):
        raise PermissionDenied(f"{method} needs a customer token, not an admin token")
    if requirement is Requirement.ADMIN and not isinstance(identity, AdminIdentity):
        raise PermissionDenied(f"{method} needs an admin token, not a customer token")


def _who(identity: Identity) -> str:
    return identity.code if isinstance(identity, CustomerIdentity) else f"admin:{identity.name}"


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Per-method policy (see `policy.py`), tokens resolved through an injected `TokenStore`,
    slots from the process's `Admission`, request streams idle-limited to `stream_idle_s`."""

    def __init__(
        self,
        tokens: TokenStore,
        admission: Admission,
        stream_idle_s: float,
        refusals: Mapping[str, Callable[[], FleetError | None]] | None = None,
    ) -> None:
        self._tokens = tokens
        self._admission = admission
        self._idle_s = stream_idle_s
        # Per method: why an authenticated call should not start now (the database is busy).
        self._refusals = dict(refusals or {})

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method
        handler = guard_malformed(await continuation(handler_call_details))
        if handler is None:
            return None
        requirement = requirement_for(method)
        if requirement is Requirement.PUBLIC:
            streaming = bool(handler.request_streaming or handler.response_streaming)
            return _guarded(handler, lambda: self._admission.anonymous(streaming), _as_is, self._idle_s)
        started = time.perf_counter()
        try:
            if requirement is None:
                raise PermissionDenied(f"{method} is not open to any caller")
            token = _bearer_token(handler_call_details.invocation_metadata)
            identity = await self._tokens.authenticate(token)
            _check_kind(identity, requirement, method)
            busy = self._refusals.get(method)
            if busy is not None and (refused := busy()) is not None:
                raise refused
        except FleetError as refusal:
            _log_access(method, "-", 0, refusal.code, started)
            return _refusal(handler, refusal)
        except Exception:
            _LOGGER.exception("authentication failed unexpectedly for %s", method)
            unavailable = Unavailable("authentication is unavailable", reason=Reason.AUTH_UNAVAILABLE)
            _log_access(method, "-", 0, unavailable.code, started)
            return _refusal(handler, unavailable)
        return _authenticated(handler, identity, method, started, self._slot_for(identity), self._idle_s)

    def _slot_for(self, identity: Identity) -> Callable[[], contextlib.AbstractContextManager[None]]:
        if isinstance(identity, CustomerIdentity):
            customer_id = identity.customer_id
            return lambda: self._admission.customer(customer_id)
        return self._admission.operator


def _log_access(method: str, who: str, rows: int, code: Any, started: float, note: str = "") -> None:
    name = code.name if isinstance(code, grpc.StatusCode) else str(code or "OK")
    ACCESS_LOGGER.info(
        "rpc method=%s customer=%s rows=%d status=%s duration_ms=%.1f%s",
        method,
        who,
        rows,
        name,
        (time.perf_counter() - started) * 1000,
        note,
    )


def _note(identity: Identity) -> str:
    """Extra access-log fields, appended so the fixed ones keep their places for parsers."""
    if isinstance(identity, CustomerIdentity) and identity.previous_token:
        return " token=previous"  # still on the old token: this portal has not switched yet
    return ""


def _refusal(handler: grpc.RpcMethodHandler, error: FleetError) -> grpc.RpcMethodHandler:
    """A handler that answers `error` (with its `ErrorInfo` reason, like every other error)."""

    async def deny_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await abort_with(context, error)

    async def deny_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await abort_with(context, error)
        yield  # pragma: no cover - abort raises; this makes the function an async generator

    return _same_shape(handler, deny_unary, deny_stream)


def _same_shape(
    handler: grpc.RpcMethodHandler,
    unary_response: Callable[..., Any],
    stream_response: Callable[..., Any],
) -> grpc.RpcMethodHandler:
    """A handler with `handler`'s streaming shape and serializers but other behaviours."""
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


def _as_is(context: grpc.aio.ServicerContext) -> Any:
    return context


def _authenticated(
    handler: grpc.RpcMethodHandler,
    identity: Identity,
    method: str,
    started: float,
    slot: Callable[[], contextlib.AbstractContextManager[None]],
    idle_s: float,
) -> grpc.RpcMethodHandler:
    """The handler, admitted to its caller's budget, given a `CallContext`, and logged when it ends.

    A call with a request stream gets its (empty) initial metadata as soon as it is admitted:
    that is the client's sign that the credential was accepted and a slot is its own, so it can
    wait for it before the first write. The grpc.aio client otherwise races a refusal with its
    own writes and may report a refused stream as INTERNAL (grpc/grpc#36066); a refusal arrives
    as trailers instead.
    """
    who = _who(identity)
    note = _note(identity)

    def context_of(context: grpc.aio.ServicerContext) -> CallContext:
        return CallContext(context, identity, method)

    def finished(call: Any, context: grpc.aio.ServicerContext) -> None:
        _log_access(method, who, call.rows, context.code(), started, note)

    return _guarded(
        handler, slot, context_of, idle_s, confirm=bool(handler.request_streaming), finished=finished
    )


def _unlogged(call: Any, context: grpc.aio.ServicerContext) -> None:
    return None


def _guarded(
    handler: grpc.RpcMethodHandler,
    slot: Callable[[], contextlib.AbstractContextManager[None]],
    context_of: Callable[[grpc.aio.ServicerContext], Any],
    idle_s: float,
    *,
    confirm: bool = False,
    finished: Callable[[Any, grpc.aio.ServicerContext], None] = _unlogged,
) -> grpc.RpcMethodHandler:
    """`handler`, run while it holds a `slot()`, its request stream behind the idle limit.

    A `FleetError` that reaches this wrapper (a full budget, an idle stream under a handler that
    does not translate errors, such as reflection's) ends the call with its status and reason.
    Streaming handlers come in two kinds — async generators, and coroutines that write through
    the context (health `Watch`) — and each keeps its kind. The idle clock restarts with every
    response sent: a client reading what the server sent it is not idle.
    """
    behavior = handler.stream_stream or handler.stream_unary or handler.unary_stream or handler.unary_unary
    request_streaming = bool(handler.request_streaming)

    def requests_of(request: Any) -> Any:
        return IdleLimit(request, idle_s) if request_streaming else request

    async def call_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        call = context_of(context)
        try:
            with slot():
                if confirm:
                    await context.send_initial_metadata(())
                return await behavior(requests_of(request), call)
        except FleetError as error:
            await abort_with(context, error)
        finally:
            finished(call, context)

    async def call_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        call = context_of(context)
        try:
            with slot():
                if confirm:
                    await context.send_initial_metadata(())
                requests = requests_of(request)
                async for response in behavior(requests, call):
                    yield response
                    if isinstance(requests, IdleLimit):
                        requests.touch()  # the client now reads what we sent; it is not idle
        except FleetError as error:
            await abort_with(context, error)
        finally:
            finished(call, context)

    writes_through_context = bool(handler.response_streaming) and inspect.iscoroutinefunction(behavior)
    return _same_shape(handler, call_unary, call_unary if writes_through_context else call_stream)
