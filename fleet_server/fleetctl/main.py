"""`fleetctl`: operators' view of the fleet; a client of the admin and query services.

Each command group lives in its own module and plugs in through `register(subparsers)`;
a command is a function `(args, connection) -> int` stored as the parser's `run` default.
"""

from __future__ import annotations

import argparse
import sys

import grpc

from fleet_server.fleetctl import connection as conn
from fleet_server.fleetctl.errors import describe_rpc_error

# Command modules: each exposes register(commands) and adds its own subcommands.
_GROUPS: tuple[str, ...] = ()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleetctl", description="Operate a Fleet sync server.")
    conn.add_connection_arguments(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    import importlib

    for name in _GROUPS:
        importlib.import_module(f"fleet_server.fleetctl.{name}").register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        connection = conn.connect(args)
    except conn.MissingToken as exc:
        print(f"fleetctl: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.run(args, connection))
    except grpc.RpcError as exc:
        print(f"fleetctl: {describe_rpc_error(exc)}", file=sys.stderr)
        return 1
    finally:
        connection.close()


if __name__ == "__main__":
    sys.exit(main())
