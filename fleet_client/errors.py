"""Typed errors of the client: a server refusal keeps its status, message and retry hint.

`from_rpc_error` turns a `grpc.RpcError` into one `FleetRpcError` subclass per status code the
pusher reacts to differently, carrying what the server said (`message`, the `ErrorInfo` reason,
`BadRequest` field paths) and its `retry-after-ms` hint, so callers never parse grpc objects.
fleetctl reports its failures through it too (decoding lives in `fleet_client.status_details`).
"""

from __future__ import annotations

import grpc

from fleet_client.status_details import status_details


class FleetClientError(Exception):
    """Base of every error `fleet_client` raises on purpose."""


class ConfigurationError(FleetClientError):
    """A setting is missing or wrong; the message names it."""


class FleetRpcError(FleetClientError):
    """A call failed with a gRPC status.

    `retry_after_ms` is the server's hint (trailing metadata `retry-after-ms`, or a
    `google.rpc.RetryInfo` detail) when it gave one; `field_violations` are the `BadRequest`
    paths and descriptions for an invalid argument.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        retry_after_ms: int | None = None,
        reason: str | None = None,
        field_violations: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms
        self.reason = reason
        self.field_violations = field_violations

    @property
    def status_name(self) -> str:
        return str(self.code.name)

    def __str__(self) -> str:
        return f"{self.status_name}: {self.message}"

    def detailed(self) -> str:
        """`str(self)` with the server's `ErrorInfo` reason when it says more than the status
        (`UNAUTHENTICATED [TOKEN_REVOKED]: …`, `RESOURCE_EXHAUSTED [ROW_BUDGET_EXHAUSTED]: …`):
        what the push state keeps as a resource's last error."""
        if self.reason and self.reason != self.status_name:
            return f"{self.status_name} [{self.reason}]: {self.message}"
        return str(self)


class Unauthenticated(FleetRpcError):
    """The token was refused (missing, unknown, expired or the customer is inactive)."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(FleetRpcError):
    """The token is of the wrong kind for the service (an admin token on ingest)."""

    code = grpc.StatusCode.PERMISSION_DENIED


class InvalidArgument(FleetRpcError):
    """The data itself is wrong; sending it again unchanged fails again."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class FailedPrecondition(FleetRpcError):
    """The data names a parent the server does not have (a device's site, a tariff's municipality)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(FleetRpcError):
    """A server limit was hit; `retry_after_ms` says when to come back, when known."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(FleetRpcError):
    """The server could not be reached or went away mid-call."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(FleetRpcError):
    """The call did not finish within its deadline."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unimplemented(FleetRpcError):
    """The server does not serve this RPC (an older server)."""

    code = grpc.StatusCode.UNIMPLEMENTED


class ProtocolError(FleetRpcError):
    """The server answered something the contract does not allow (e.g. an ack for an unknown batch)."""

    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[FleetRpcError]] = {
    cls.code: cls
    for cls in (
        Unauthenticated,
        PermissionDenied,
        InvalidArgument,
        FailedPrecondition,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        Unimplemented,
    )
}


# How gRPC words a call that never reached a server (nothing listening, no such host).
_NEVER_ARRIVED = ("failed to connect to all addresses", "DNS resolution failed")


def unreachable_reason(message: str) -> str | None:
    """For a status message saying the server was never reached, its last words (`Connection
    refused`, `Domain name not found`); None for anything a server said itself."""
    first = message.strip().splitlines()[0] if message.strip() else ""
    first = first.removeprefix("UNAVAILABLE: ")
    if not first.startswith(_NEVER_ARRIVED):
        return None
    return first.rsplit(": ", 1)[-1]


def from_rpc_error(error: grpc.RpcError) -> FleetRpcError:
    """The typed error for a failed call; anything without a status becomes UNKNOWN."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = error.details() if hasattr(error, "details") else None
    details = status_details(error.trailing_metadata() if hasattr(error, "trailing_metadata") else None)
    cls = _BY_CODE.get(code, FleetRpcError)
    return cls(
        message or (code.name if code is not None else "UNKNOWN"),
        code=code,
        retry_after_ms=details.retry_after_ms,
        reason=details.reason,
        field_violations=details.field_violations,
    )
