"""`fleetctl customers list|create|rotate-token|activate|deactivate|delete`: the customer lifecycle."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from fleet.v1 import admin_service_pb2 as pb
from fleet.v1 import resources_pb2
from google.protobuf import duration_pb2

from fleet_server.fleetctl.connection import Connection
from fleet_server.fleetctl.render import message_dict, print_json, table, when

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_LIST_PAGE_SIZE = 1000


def parse_duration(text: str) -> duration_pb2.Duration:
    """`24h`, `30m`, `90s`, `0s`, `1h30m`, `2d` → a Duration (argparse type)."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: use a whole number with d, h, m or s (24h, 30m, 90s, 0s)"
        )
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return duration_pb2.Duration(seconds=((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def _human_duration(duration: duration_pb2.Duration) -> str:
    seconds = duration.seconds
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def token_cell(customer: resources_pb2.Customer) -> str:
    """The Token column: when the current token was issued, and the old one's deadline if any."""
    issued = f"issued {when(customer.token_issued_at)}"
    if customer.HasField("previous_token_expires_at"):
        return f"{issued}; old token valid until {when(customer.previous_token_expires_at)}"
    return issued


def _wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def _list(args: argparse.Namespace, connection: Connection) -> int:
    customers: list[resources_pb2.Customer] = []
    page_token = ""
    while True:
        reply = connection.admin.ListCustomers(
            pb.ListCustomersRequest(page_size=_LIST_PAGE_SIZE, page_token=page_token),
            metadata=connection.metadata,
            timeout=connection.timeout,
        )
        customers.extend(reply.customers)
        page_token = reply.next_page_token
        if not page_token:
            break
    if _wants_json(args):
        print_json({"customers": [message_dict(c) for c in customers]})
        return 0
    rows = [
        (c.code, c.name, "yes" if c.is_active else "no", when(c.created_at), token_cell(c)) for c in customers
    ]
    print(table(("Code", "Name", "Active", "Created", "Token"), rows))
    return 0


def _print_new_token(token: str, headline: str) -> None:
    print(headline)
    print("Token (shown only this once; hand it to the customer as FLEET_TOKEN):")
    print(token)


def _create(args: argparse.Namespace, connection: Connection) -> int:
    reply = connection.admin.CreateCustomer(
        pb.CreateCustomerRequest(code=args.code, name=args.name),
        metadata=connection.metadata,
        timeout=connection.timeout,
    )
    if _wants_json(args):
        print_json(message_dict(reply))
        return 0
    _print_new_token(reply.token, f"Customer {reply.customer.code} ({reply.customer.name}) created.")
    return 0


def _rotate(args: argparse.Namespace, connection: Connection) -> int:
    request = pb.RotateCustomerTokenRequest(code=args.code)
    if args.grace is not None:
        request.grace_period.CopyFrom(args.grace)
    reply = connection.admin.RotateCustomerToken(
        request, metadata=connection.metadata, timeout=connection.timeout
    )
    if _wants_json(args):
        print_json(message_dict(reply))
        return 0
    customer = reply.customer
    if customer.HasField("previous_token_expires_at"):
        grace = f" (grace {_human_duration(args.grace)})" if args.grace is not None else ""
        old = f"The old token stays valid until {when(customer.previous_token_expires_at)}{grace}."
    else:
        old = "The old token is no longer accepted (immediate cutover)."
    _print_new_token(reply.token, f"Token of {customer.code} rotated. {old}")
    return 0


def _set_active(active: bool) -> Any:
    def run(args: argparse.Namespace, connection: Connection) -> int:
        reply: Any
        if active:
            reply = connection.admin.ActivateCustomer(
                pb.ActivateCustomerRequest(code=args.code),
                metadata=connection.metadata,
                timeout=connection.timeout,
            )
        else:
            reply = connection.admin.DeactivateCustomer(
                pb.DeactivateCustomerRequest(code=args.code),
                metadata=connection.metadata,
                timeout=connection.timeout,
            )
        if _wants_json(args):
            print_json(message_dict(reply))
        elif active:
            print(f"Customer {reply.customer.code} is active: its tokens are accepted.")
        else:
            print(
                f"Customer {reply.customer.code} is deactivated: its tokens are refused until "
                f"`fleetctl customers activate {reply.customer.code}`; its data is kept."
            )
        return 0

    return run


def _delete(args: argparse.Namespace, connection: Connection) -> int:
    if not args.yes:
        print(
            f"fleetctl: deleting {args.code} erases the customer and every row of its data; "
            "pass --yes to confirm",
            file=sys.stderr,
        )
        return 2
    reply = connection.admin.DeleteCustomer(
        pb.DeleteCustomerRequest(code=args.code), metadata=connection.metadata, timeout=connection.timeout
    )
    if _wants_json(args):
        print_json(message_dict(reply))
        return 0
    rows = sorted(reply.deleted_rows.items())
    print(table(("Table", "Rows deleted"), rows))
    print(f"Customer {args.code} and all its data erased ({sum(n for _, n in rows)} rows).")
    return 0


def _command(group: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(name, help=help_text)
    # Also accepted after the subcommand; SUPPRESS keeps a root-level `fleetctl --json …` intact.
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON instead of a table"
    )
    return parser


def register(cli: Any) -> None:
    group = cli.group("customers")

    listing = _command(group, "list", "every customer, with its token state")
    listing.set_defaults(run=_list)

    create = _command(group, "create", "register a customer and print its first token (once)")
    create.add_argument("code", help="unique code, [A-Z0-9_-]{2,32}")
    create.add_argument("--name", required=True, help="display name")
    create.set_defaults(run=_create)

    rotate = _command(group, "rotate-token", "issue a new token; the old one works for a grace window")
    rotate.add_argument("code", help="the customer's code")
    rotate.add_argument(
        "--grace",
        type=parse_duration,
        default=None,
        help="how long the old token stays valid: 24h, 30m, 90s; 0s = immediate cutover "
        "(default: the server's, 24h)",
    )
    rotate.set_defaults(run=_rotate)

    activate = _command(group, "activate", "accept the customer's tokens again")
    activate.add_argument("code", help="the customer's code")
    activate.set_defaults(run=_set_active(True))

    deactivate = _command(group, "deactivate", "refuse the customer's tokens; data is kept")
    deactivate.add_argument("code", help="the customer's code")
    deactivate.set_defaults(run=_set_active(False))

    delete = _command(group, "delete", "erase the customer and every row of its data (GDPR)")
    delete.add_argument("code", help="the customer's code")
    delete.add_argument(
        "--yes", action="store_true", help="confirm the erasure; nothing is deleted without it"
    )
    delete.set_defaults(run=_delete)
