"""Turning a failed call into one readable line: status, the server's message, the bad fields."""

from __future__ import annotations

from typing import Any

import grpc

from fleet_client.errors import from_rpc_error, unreachable_reason


class UsageError(Exception):
    """The command line asks for something no server call could answer (`--to` before `--from`)."""


def describe_rpc_error(error: grpc.RpcError, server: str | None = None, *, with_code: bool = True) -> str:
    """`CODE: message`, then every field violation on its own line when there are several
    (without `CODE: ` for a JSON error, which carries the code apart).

    The status details are decoded by `fleet_client` (the same reader fleet-push uses), so the
    operator and the portal see a server's refusal the same way. A call that never reached a
    server says where fleetctl looked and how to point it elsewhere.
    """
    failure = from_rpc_error(error)
    why = unreachable_reason(failure.message)
    if why is not None and server is not None:
        return (
            f"cannot reach fleet-server at {server} ({why}): is it running there? Point fleetctl at "
            "it with --server HOST:PORT or FLEET_SERVER (the address `make run` was given as FLEET_LISTEN)"
        )
    text = str(failure) if with_code else failure.message
    if len(failure.field_violations) > 1 and with_code:
        text += "\n" + "\n".join(f"  - {path}: {why}" for path, why in failure.field_violations)
    return text


def error_detail(error: grpc.RpcError) -> dict[str, Any]:
    """What a script branches on, for `--json` errors: the status code, the reason, the bad fields."""
    failure = from_rpc_error(error)
    return {
        "code": failure.status_name,
        "reason": failure.reason,
        "field_violations": [{"field": path, "description": why} for path, why in failure.field_violations]
        or None,
    }
