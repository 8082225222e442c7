"""Domain errors: what went wrong in the caller's terms, mapped to gRPC status codes in one place.

The domain raises these; `fleet_server.services.status` turns them into a `google.rpc.Status`
with an `ErrorInfo` (and a `BadRequest` for field violations). Anything else that escapes a
handler becomes a sanitised INTERNAL with a correlation id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import grpc

ERROR_DOMAIN = "fleet.v1"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: `field` is the path as the caller sent it (`tariffs[3].periods[1].rate`)."""

    field: str
    description: str

    def __str__(self) -> str:
        return f"{self.field}: {self.description}"


class FleetError(Exception):
    """Base of every error the caller is meant to see; `message` is safe to show."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    reason: str = "UNKNOWN"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(FleetError):
    """The request itself is wrong; resending it unchanged will fail again."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: Iterable[FieldViolation], *, reason: str | None = None) -> None:
        self.violations = list(violations)
        if not self.violations:
            raise ValueError("InvalidArgument needs at least one violation")
        first = str(self.violations[0])
        more = len(self.violations) - 1
        message = first if more == 0 else f"{first} (and {more} more)"
        super().__init__(message, reason=reason)

    @classmethod
    def single(cls, field_path: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field_path, description)])


class NotFound(FleetError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class AlreadyExists(FleetError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class FailedPrecondition(FleetError):
    """The request is well-formed but refers to state the server does not have (a missing parent)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class ResourceExhausted(FleetError):
    """A limit was hit; `retry_after_ms`, when known, goes out as trailing metadata."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, retry_after_ms: int | None = None, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.retry_after_ms = retry_after_ms


class Unauthenticated(FleetError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDenied(FleetError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


@dataclass
class Violations:
    """Collects every violation of a request so the caller sees them all, not one per retry."""

    items: list[FieldViolation] = field(default_factory=list)

    def add(self, field_path: str, description: str) -> None:
        self.items.append(FieldViolation(field_path, description))

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(self.items)


class Unavailable(FleetError):
    """A dependency (the database) did not answer; the same call may succeed later."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"
