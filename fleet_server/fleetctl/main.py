"""`fleetctl`: operators' view of the fleet; a client of the admin and query services.

Each command module plugs in through `register(cli)`: it adds top-level commands with
`cli.commands.add_parser(...)` or joins a shared group (`cli.group("customers")`), so several
modules can contribute to `fleetctl customers …`. A command is a function
`(args, connection) -> int` stored as the parser's `run` default.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

import grpc

from fleet_client.console import print_error, until_reader_leaves
from fleet_server.fleetctl import connection as conn
from fleet_server.fleetctl.errors import UsageError, describe_rpc_error, error_detail

# Command modules under fleet_server/fleetctl/, each exposing register(cli: Cli).
_MODULES: tuple[str, ...] = ("customers", "detail", "listings", "costs", "measurements", "health", "storage")

_GROUP_HELP = {
    "customers": "customers, their tokens and their mirrored data",
    "fleet": "views across every customer",
}


class Cli:
    """The parser under construction, handed to each command module."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser
        self.commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
        self._groups: dict[str, Any] = {}

    def group(self, name: str) -> Any:
        """The subcommands of group `name` (`fleetctl NAME …`), created on first use."""
        if name not in self._groups:
            group = self.commands.add_parser(name, help=_GROUP_HELP.get(name, name))
            self._groups[name] = group.add_subparsers(
                dest=f"{name}_command", required=True, metavar="COMMAND"
            )
        return self._groups[name]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fleetctl", description="Operate a Fleet sync server.")
    conn.add_connection_arguments(parser)
    cli = Cli(parser)
    for name in _MODULES:
        importlib.import_module(f"fleet_server.fleetctl.{name}").register(cli)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # `fleetctl … | head` ends quietly: the reader leaving is not an error.
    return until_reader_leaves(lambda: _command(args))


def _command(args: argparse.Namespace) -> int:
    """Run the parsed command: an error is one line on stderr, or JSON on stdout under `--json`."""
    as_json = bool(getattr(args, "json", False))
    try:
        connection = conn.connect(args)
    except conn.MissingToken as exc:
        print_error("fleetctl", str(exc), as_json=as_json, kind="settings")
        return 2
    try:
        return int(args.run(args, connection))
    except UsageError as exc:
        print_error("fleetctl", str(exc), as_json=as_json, kind="usage")
        return 2
    except grpc.RpcError as exc:
        message = describe_rpc_error(exc, args.server, with_code=not as_json)
        print_error("fleetctl", message, as_json=as_json, **error_detail(exc))
        return 1
    finally:
        connection.close()


if __name__ == "__main__":
    sys.exit(main())
