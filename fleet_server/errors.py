"""Domain errors and the one catalog of their reasons: what went wrong, in the caller's terms.

The domain raises these; `fleet_server.rpc.translate` turns them into a `google.rpc.Status`
with an `ErrorInfo` (and a `BadRequest` for field violations). Anything else that escapes a
handler becomes a sanitised INTERNAL with a correlation id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import grpc

ERROR_DOMAIN = "fleet.v1"
# The BadRequest detail travels in trailing metadata, which clients cap (8 KiB by default): a
# request with many bad fields lists the first ones and counts the rest in the message. Twenty
# name everything wrong with one tariff and its periods, and stay far below the cap even with
# long paths (`tariffs[12345].periods[7].start_time`) and descriptions.
MAX_LISTED_VIOLATIONS = 20


class Reason(StrEnum):
    """Every `ErrorInfo.reason` the server sends; clients branch on these, so they never change."""

    # The default of each error class, when nothing more specific applies.
    UNKNOWN = "UNKNOWN"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAVAILABLE = "UNAVAILABLE"
    # A request message whose bytes do not parse as its type (bad UTF-8, truncated).
    MALFORMED_REQUEST = "MALFORMED_REQUEST"
    # Authentication.
    TOKEN_MISSING = "TOKEN_MISSING"
    TOKEN_MALFORMED = "TOKEN_MALFORMED"
    TOKEN_UNKNOWN = "TOKEN_UNKNOWN"
    CUSTOMER_INACTIVE = "CUSTOMER_INACTIVE"
    # The token an open stream was authenticated with stopped being valid (rotated, expired, erased).
    TOKEN_REVOKED = "TOKEN_REVOKED"
    AUTH_UNAVAILABLE = "AUTH_UNAVAILABLE"
    # Customers and operator tokens.
    CUSTOMER_NOT_FOUND = "CUSTOMER_NOT_FOUND"
    CUSTOMER_CODE_TAKEN = "CUSTOMER_CODE_TAKEN"
    ADMIN_TOKEN_NOT_FOUND = "ADMIN_TOKEN_NOT_FOUND"
    # Lists: a page token the server did not issue for this listing; start again without one.
    PAGE_TOKEN_INVALID = "PAGE_TOKEN_INVALID"
    # Pushes.
    SITE_NOT_FOUND = "SITE_NOT_FOUND"
    MUNICIPALITY_NOT_FOUND = "MUNICIPALITY_NOT_FOUND"
    SNAPSHOT_TOO_LARGE = "SNAPSHOT_TOO_LARGE"
    STREAM_BROKEN = "STREAM_BROKEN"
    STREAM_ALREADY_OPEN = "STREAM_ALREADY_OPEN"
    BATCH_OVER_BURST = "BATCH_OVER_BURST"
    ROW_BUDGET_EXHAUSTED = "ROW_BUDGET_EXHAUSTED"
    PARTITION_BUDGET_EXHAUSTED = "PARTITION_BUDGET_EXHAUSTED"
    # Admission: a budget of calls in progress in one server process is full.
    CUSTOMER_CALL_LIMIT = "CUSTOMER_CALL_LIMIT"
    CUSTOMERS_CALL_LIMIT = "CUSTOMERS_CALL_LIMIT"
    OPERATOR_CALL_LIMIT = "OPERATOR_CALL_LIMIT"
    ANONYMOUS_STREAM_LIMIT = "ANONYMOUS_STREAM_LIMIT"
    ANONYMOUS_CALL_LIMIT = "ANONYMOUS_CALL_LIMIT"
    # A request stream that sent nothing for the idle limit.
    STREAM_IDLE = "STREAM_IDLE"
    # The process (or the customer) holds as many pushed bytes as it may; retry after the hint.
    MEMORY_BUSY = "MEMORY_BUSY"
    # Costs.
    UNKNOWN_TIMEZONE = "UNKNOWN_TIMEZONE"
    # Measurement queries: the customer has no reading of that metric at all (a typo, most likely).
    METRIC_UNKNOWN = "METRIC_UNKNOWN"
    # The database: busy (no turn in time), gone, or too slow; always with a retry hint.
    DATABASE_BUSY = "DATABASE_BUSY"
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
    DATABASE_TIMEOUT = "DATABASE_TIMEOUT"
    SHUTTING_DOWN = "SHUTTING_DOWN"


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
    reason: Reason = Reason.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        reason: Reason | None = None,
        metadata: Mapping[str, str] | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})
        # When set, the same call may succeed after this long: sent as RetryInfo and `retry-after-ms`.
        self.retry_after_ms = retry_after_ms


class InvalidArgument(FleetError):
    """The request itself is wrong; resending it unchanged will fail again.

    The one rule for long lists: at most `MAX_LISTED_VIOLATIONS` are listed (they become the
    `BadRequest`), and the message names the first and counts all the others. `total` is for a
    caller that stopped collecting early (a batch of a million bad rows): the number of
    violations it found in all, when that is more than it passes.
    """

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = Reason.INVALID_ARGUMENT

    def __init__(
        self, violations: Iterable[FieldViolation], *, total: int | None = None, reason: Reason | None = None
    ) -> None:
        found = list(violations)
        if not found:
            raise ValueError("InvalidArgument needs at least one violation")
        self.violations = found[:MAX_LISTED_VIOLATIONS]
        self.total = max(len(found), total or 0)
        more = self.total - 1
        message = str(found[0]) if more == 0 else f"{found[0]} (and {more} more)"
        super().__init__(message, reason=reason)

    @classmethod
    def single(cls, field_path: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field_path, description)])


class NotFound(FleetError):
    code = grpc.StatusCode.NOT_FOUND
    reason = Reason.NOT_FOUND


class AlreadyExists(FleetError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = Reason.ALREADY_EXISTS


class FailedPrecondition(FleetError):
    """The request is well-formed but refers to state the server does not have (a missing parent)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = Reason.FAILED_PRECONDITION


class ResourceExhausted(FleetError):
    """A limit was hit; `retry_after_ms`, when known, says when the caller may come back."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = Reason.RESOURCE_EXHAUSTED


class Unauthenticated(FleetError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = Reason.UNAUTHENTICATED


class PermissionDenied(FleetError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = Reason.PERMISSION_DENIED


class Unavailable(FleetError):
    """A dependency (the database) did not answer; the same call may succeed later."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = Reason.UNAVAILABLE


class StreamIdle(FleetError):
    """A request stream sent nothing for the idle limit and was ended; nothing unacknowledged is written."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = Reason.STREAM_IDLE


class StreamBroken(FleetError):
    """A push call ended before its snapshot was committed; the transaction is rolled back."""

    code = grpc.StatusCode.CANCELLED
    reason = Reason.STREAM_BROKEN


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
