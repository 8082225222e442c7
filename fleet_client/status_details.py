"""Reading what a server attached to a failed call: the rich `google.rpc.Status` and the retry hint.

The server (AIP-193) sends a `google.rpc.Status` in the `grpc-status-details-bin` trailer with an
`ErrorInfo` (the machine-readable reason), a `BadRequest` (the field paths at fault) and, when a
limit was hit, a `RetryInfo`; a row budget also sends a plain `retry-after-ms` trailer. fleet-push
and fleetctl both decode through `status_details`, so a detail the server adds is understood by
both tools or by neither, never by one copy only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from google.rpc import error_details_pb2, status_pb2

RETRY_AFTER_KEY = "retry-after-ms"
DETAILS_KEY = "grpc-status-details-bin"

TrailingMetadata = Iterable[tuple[str, str | bytes]]


@dataclass(frozen=True)
class StatusDetails:
    """What the trailers said: `reason` from `ErrorInfo`, `(path, description)` pairs from
    `BadRequest`, and the server's retry hint in milliseconds (None when it gave none)."""

    reason: str | None = None
    field_violations: tuple[tuple[str, str], ...] = ()
    retry_after_ms: int | None = None


def status_details(trailing_metadata: TrailingMetadata | None) -> StatusDetails:
    """Decode the trailers of a failed call; anything missing or garbled is simply absent.

    A detail that cannot be parsed must never hide the status code and message the caller
    already has, so decoding errors are swallowed rather than raised.
    """
    trailing = tuple(trailing_metadata or ())
    status = _rich_status(trailing)
    reason: str | None = None
    violations: list[tuple[str, str]] = []
    retry_info: int | None = None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend((v.field, v.description) for v in bad.field_violations)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR) and retry_info is None:
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            delay = retry.retry_delay
            retry_info = max(0, int(delay.seconds) * 1000 + int(delay.nanos) // 1_000_000)
    hinted = _retry_after_trailer(trailing)
    return StatusDetails(
        reason=reason,
        field_violations=tuple(violations),
        retry_after_ms=hinted if hinted is not None else retry_info,
    )


def _rich_status(trailing: tuple[tuple[str, str | bytes], ...]) -> status_pb2.Status | None:
    for key, value in trailing:
        if key == DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status()
            try:
                status.ParseFromString(value)
            except Exception:  # a garbled detail must not hide the status itself
                return None
            return status
    return None


def _retry_after_trailer(trailing: tuple[tuple[str, str | bytes], ...]) -> int | None:
    """The plain `retry-after-ms` trailer. It is preferred to a `RetryInfo` (our server sends the
    same figure in both) because a gateway or another server may send only the plain trailer."""
    for key, value in trailing:
        if key == RETRY_AFTER_KEY:
            try:
                return max(0, int(value if isinstance(value, str) else value.decode()))
            except ValueError:
                return None
    return None
