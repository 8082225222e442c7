"""gRPC errors → typed client errors, keeping status, message, reason, field paths and retry hint;
fleetctl describes failures from the same decoding."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from fleet_client.errors import (
    FleetRpcError,
    InvalidArgument,
    ResourceExhausted,
    Unauthenticated,
    from_rpc_error,
)
from fleet_server.fleetctl.errors import describe_rpc_error


class _Error(grpc.RpcError):
    def __init__(
        self, code: grpc.StatusCode, details: str, trailing: tuple[tuple[str, object], ...] = ()
    ) -> None:
        self._code, self._details, self._trailing = code, details, trailing

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, object], ...]:
        return self._trailing


def _packed(*details) -> bytes:
    status = status_pb2.Status(code=3, message="m")
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    serialized: bytes = status.SerializeToString()
    return serialized


def test_invalid_argument_keeps_fields_and_reason() -> None:
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field="sites[0].name", description="must not be empty"
            )
        ]
    )
    info = error_details_pb2.ErrorInfo(reason="INVALID_ARGUMENT", domain="fleet.v1")
    error = from_rpc_error(
        _Error(
            grpc.StatusCode.INVALID_ARGUMENT,
            "sites[0].name: must not be empty",
            (("grpc-status-details-bin", _packed(info, bad)),),
        )
    )
    assert isinstance(error, InvalidArgument)
    assert error.message == "sites[0].name: must not be empty"
    assert error.field_violations == (("sites[0].name", "must not be empty"),)
    assert error.reason == "INVALID_ARGUMENT"
    assert str(error) == "INVALID_ARGUMENT: sites[0].name: must not be empty"


def test_retry_after_from_trailer_or_retry_info() -> None:
    error = from_rpc_error(
        _Error(grpc.StatusCode.RESOURCE_EXHAUSTED, "budget", (("retry-after-ms", "1500"),))
    )
    assert isinstance(error, ResourceExhausted)
    assert error.retry_after_ms == 1500
    delay = duration_pb2.Duration(seconds=2, nanos=500_000_000)
    info = error_details_pb2.RetryInfo(retry_delay=delay)
    error = from_rpc_error(
        _Error(grpc.StatusCode.RESOURCE_EXHAUSTED, "budget", (("grpc-status-details-bin", _packed(info)),))
    )
    assert error.retry_after_ms == 2500


def test_codes_without_a_class_keep_their_code() -> None:
    error = from_rpc_error(_Error(grpc.StatusCode.INTERNAL, "internal error (correlation id 42)"))
    assert type(error) is FleetRpcError
    assert error.code is grpc.StatusCode.INTERNAL
    assert str(error) == "INTERNAL: internal error (correlation id 42)"
    assert isinstance(from_rpc_error(_Error(grpc.StatusCode.UNAUTHENTICATED, "x")), Unauthenticated)


def test_a_garbled_detail_or_hint_keeps_the_status() -> None:
    error = from_rpc_error(
        _Error(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "budget",
            (("retry-after-ms", "soon"), ("grpc-status-details-bin", b"\xff\xff not a status")),
        )
    )
    assert isinstance(error, ResourceExhausted)
    assert (error.message, error.retry_after_ms, error.reason, error.field_violations) == (
        "budget",
        None,
        None,
        (),
    )
    # An unreadable trailer falls back to the RetryInfo detail.
    info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=3))
    error = from_rpc_error(
        _Error(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "budget",
            (("retry-after-ms", "soon"), ("grpc-status-details-bin", _packed(info))),
        )
    )
    assert error.retry_after_ms == 3000


def test_fleetctl_reads_the_same_details() -> None:
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="codes[0]", description="unknown customer"),
            error_details_pb2.BadRequest.FieldViolation(field="end", description="must be after start"),
        ]
    )
    error = _Error(
        grpc.StatusCode.INVALID_ARGUMENT,
        "2 invalid fields",
        (("grpc-status-details-bin", _packed(bad)),),
    )
    assert describe_rpc_error(error) == (
        "INVALID_ARGUMENT: 2 invalid fields\n  - codes[0]: unknown customer\n  - end: must be after start"
    )
    one = _Error(grpc.StatusCode.NOT_FOUND, "no customer 'X'")
    assert describe_rpc_error(one) == "NOT_FOUND: no customer 'X'"
