"""Turning a failed call into one readable line: status, the server's message, the bad fields."""

from __future__ import annotations

import grpc

from fleet_client.errors import from_rpc_error


def describe_rpc_error(error: grpc.RpcError) -> str:
    """`CODE: message`, then every field violation on its own line when there are several.

    The status details are decoded by `fleet_client` (the same reader fleet-push uses), so the
    operator and the portal see a server's refusal the same way.
    """
    failure = from_rpc_error(error)
    text = str(failure)
    if len(failure.field_violations) > 1:
        text += "\n" + "\n".join(f"  - {path}: {why}" for path, why in failure.field_violations)
    return text
