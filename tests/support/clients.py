"""Client-side helpers for tests: stubs, bearer metadata, rich-status decoding."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from fleet.v1 import (
    admin_service_pb2_grpc,
    ingest_service_pb2_grpc,
    query_service_pb2,
    query_service_pb2_grpc,
)
from google.rpc import error_details_pb2, status_pb2


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Stubs:
    channel: grpc.Channel
    ingest: ingest_service_pb2_grpc.FleetIngestServiceStub
    query: query_service_pb2_grpc.FleetQueryServiceStub
    admin: admin_service_pb2_grpc.FleetAdminServiceStub

    @classmethod
    def connect(cls, target: str, *, own_connection: bool = False) -> Stubs:
        """Stubs on a channel to `target`; `own_connection` gives it an HTTP/2 connection of its
        own (channels of one process to one target otherwise share one)."""
        options = [("grpc.use_local_subchannel_pool", 1)] if own_connection else []
        channel = grpc.insecure_channel(target, options=options)
        return cls(
            channel=channel,
            ingest=ingest_service_pb2_grpc.FleetIngestServiceStub(channel),
            query=query_service_pb2_grpc.FleetQueryServiceStub(channel),
            admin=admin_service_pb2_grpc.FleetAdminServiceStub(channel),
        )

    def close(self) -> None:
        self.channel.close()


def rejected(call: Callable[[], Any]) -> grpc.RpcError:
    """The error `call` must fail with (the test fails when it succeeds)."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def customer_detail(stubs: Stubs, token: str, code: str) -> query_service_pb2.GetCustomerDetailResponse:
    reply: query_service_pb2.GetCustomerDetailResponse = stubs.query.GetCustomerDetail(
        query_service_pb2.GetCustomerDetailRequest(code=code), metadata=bearer(token), timeout=10
    )
    return reply


def rich_status(error: grpc.RpcError) -> status_pb2.Status | None:
    """The `google.rpc.Status` a server attached to `error`, if any."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status()
            status.ParseFromString(value)
            return status
    return None


def bad_request_fields(error: grpc.RpcError) -> list[str]:
    """Field paths of the `BadRequest` detail attached to `error`."""
    status = rich_status(error)
    fields: list[str] = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields.extend(v.field for v in bad.field_violations)
    return fields


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    """The `ErrorInfo` detail attached to `error` (empty when there is none)."""
    status = rich_status(error)
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return error_details_pb2.ErrorInfo()


def error_reason(error: grpc.RpcError) -> str | None:
    """`ErrorInfo.reason` of the status attached to `error`."""
    return error_info(error).reason or None
