"""Turning a failed call into one readable line: status, the server's message, the bad fields."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2


def describe_rpc_error(error: grpc.RpcError) -> str:
    code = error.code()
    message = error.details()
    text = f"{code.name}: {message}"
    fields: list[str] = []
    for key, value in error.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status()
        status.ParseFromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                fields.extend(f"{v.field}: {v.description}" for v in bad.field_violations)
    if len(fields) > 1:
        text += "\n" + "\n".join(f"  - {f}" for f in fields)
    return text
