"""`fleetctl fleet health` (one verdict per customer, exit 1 when any is not OK) and `fleet silent-devices`.

Made for cron and CI as much as for people: the exit status says whether everything is OK, and
each customer that is not gets the details an on-call engineer needs right under its line —
which push is late and by how much, which devices went quiet and since when, and whose old
token is about to stop working while the portal still uses it.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from fleet.v1 import query_service_pb2 as pb
from google.protobuf import duration_pb2

from fleet_server.fleetctl.connection import Connection
from fleet_server.fleetctl.customers import parse_duration
from fleet_server.fleetctl.render import message_dict, print_json, print_table_pages, when

PAGE_SIZE = 500
SILENT_PAGE_SIZE = 1000
# Silent devices named under a customer's line; the rest are counted.
NAMED_SILENT = 5

VERDICTS = {
    pb.HEALTH_PROBLEM_STALE: "STALE",
    pb.HEALTH_PROBLEM_SILENT_DEVICES: "SILENT DEVICES",
    pb.HEALTH_PROBLEM_TOKEN_EXPIRING: "TOKEN EXPIRING",
}
HEADERS = ("CUSTOMER", "VERDICT", "LAST PUSH", "NEWEST READING", "DEVICES", "SILENT", "TOKEN")


def verdict(customer: pb.CustomerHealth) -> str:
    """OK, INACTIVE, or what is wrong (`STALE, SILENT DEVICES`)."""
    if not customer.is_active:
        return "INACTIVE"
    if not customer.problems:
        return "OK"
    return ", ".join(VERDICTS.get(problem, "UNKNOWN PROBLEM") for problem in customer.problems)


def is_bad(customer: pb.CustomerHealth) -> bool:
    return customer.is_active and bool(customer.problems)


def span(delta: timedelta) -> str:
    """A duration the way people say it: `42s`, `5m`, `3h05m`, `2d4h`."""
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "-" + span(-delta)
    if seconds < 60:
        return f"{seconds}s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h"


def _moment(ts: Any) -> datetime:
    moment: datetime = ts.ToDatetime(tzinfo=UTC)
    return moment


def _ago(ts: Any, now: datetime, field: str, message: Any) -> str:
    if not message.HasField(field):
        return "never"
    return f"{span(now - _moment(ts))} ago"


def _token_cell(customer: pb.CustomerHealth) -> str:
    token = customer.token
    if not token.HasField("previous_expires_at"):
        return "current"
    used = "old one in use" if token.previous_used_recently else "old one unused"
    return f"old valid until {when(token.previous_expires_at)} ({used})"


def row(customer: pb.CustomerHealth, now: datetime) -> tuple[str, ...]:
    return (
        customer.code,
        verdict(customer),
        _ago(customer.last_push_at, now, "last_push_at", customer),
        _ago(customer.newest_reading_at, now, "newest_reading_at", customer),
        str(customer.device_count),
        str(customer.silent_device_count),
        _token_cell(customer),
    )


def details(customer: pb.CustomerHealth, now: datetime, reply: pb.GetFleetHealthResponse) -> list[str]:
    """What is wrong with a customer that is not OK, one line per problem, ready to act on."""
    lines: list[str] = []
    problems = set(customer.problems)
    if pb.HEALTH_PROBLEM_STALE in problems:
        stale_after = span(reply.stale_after.ToTimedelta())
        if customer.HasField("last_push_at"):
            pushes = ", ".join(f"{s.resource} {when(s.last_push_at)}" for s in customer.sync)
            lines.append(
                f"no push for {span(now - _moment(customer.last_push_at))} (stale after {stale_after}); "
                f"last pushes: {pushes}"
            )
        else:
            lines.append(f"never pushed (stale after {stale_after}): is fleet-push running with its token?")
    if pb.HEALTH_PROBLEM_SILENT_DEVICES in problems:
        named = []
        for device in customer.silent_devices[:NAMED_SILENT]:
            last = (
                f"last reading {when(device.last_reading_at)}"
                if device.HasField("last_reading_at")
                else "never reported"
            )
            named.append(f"{device.device_id} {device.name} ({last})")
        more = customer.silent_device_count - len(named)
        listing = "; ".join(named) + (f"; and {more} more" if more > 0 else "")
        lines.append(
            f"{customer.silent_device_count} of {customer.device_count} devices silent for over "
            f"{span(reply.silent_after.ToTimedelta())}: {listing}"
        )
        if more > 0:
            lines.append(f"all of them: fleetctl fleet silent-devices {customer.code}")
    if pb.HEALTH_PROBLEM_TOKEN_EXPIRING in problems:
        token = customer.token
        left = span(_moment(token.previous_expires_at) - now)
        used = span(now - _moment(token.previous_last_used_at))
        lines.append(
            f"the old token was used {used} ago and stops working in {left} "
            f"({when(token.previous_expires_at)}): the portal must switch to its new FLEET_TOKEN"
        )
    return lines


def health_pages(
    connection: Connection,
    code: str | None,
    silent_after: duration_pb2.Duration | None,
    stale_after: duration_pb2.Duration | None,
) -> Iterator[pb.GetFleetHealthResponse]:
    page_token = ""
    while True:
        request = pb.GetFleetHealthRequest(code=code or "", page_size=PAGE_SIZE, page_token=page_token)
        if silent_after is not None:
            request.silent_after.CopyFrom(silent_after)
        if stale_after is not None:
            request.stale_after.CopyFrom(stale_after)
        reply: pb.GetFleetHealthResponse = connection.query.GetFleetHealth(
            request, metadata=connection.metadata, timeout=connection.timeout
        )
        yield reply
        page_token = reply.next_page_token
        if not page_token:
            return


def _summary(total: int, bad: int, inactive: int) -> str:
    ok = total - bad - inactive
    parts = [f"{ok} OK"]
    if inactive:
        parts.append(f"{inactive} inactive")
    parts.append(f"{bad} not OK")
    return f"{total} customer{'s' if total != 1 else ''}: " + ", ".join(parts)


def render(replies: Sequence[pb.GetFleetHealthResponse]) -> tuple[str, int]:
    """The health table with each bad customer's details under its line, and how many are not OK."""
    lines: list[tuple[str, ...] | str] = []
    total = bad = inactive = 0
    for reply in replies:
        now = _moment(reply.checked_at)
        for customer in reply.customers:
            total += 1
            bad += is_bad(customer)
            inactive += not customer.is_active
            lines.append(row(customer, now))
            if is_bad(customer):
                lines.extend("  " + line for line in details(customer, now, reply))
    if not total:
        return "no customers", 0
    rows = [line for line in lines if isinstance(line, tuple)]
    widths = [max(len(r[i]) for r in [HEADERS, *rows]) for i in range(len(HEADERS))]

    def aligned(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [aligned(HEADERS), "  ".join("-" * w for w in widths)]
    out.extend(aligned(line) if isinstance(line, tuple) else line for line in lines)
    out.append(_summary(total, bad, inactive))
    return "\n".join(out), bad


def _health(args: argparse.Namespace, connection: Connection) -> int:
    pages = health_pages(connection, args.customer, args.silent_after, args.stale_after)
    if getattr(args, "json", False):
        customers: list[dict[str, Any]] = []
        first: pb.GetFleetHealthResponse | None = None
        bad = 0
        for reply in pages:
            first = first or reply
            for customer in reply.customers:
                bad += is_bad(customer)
                customers.append({"verdict": verdict(customer), **message_dict(customer)})
        document: dict[str, Any] = {"customers": customers, "not_ok": bad}
        if first is not None:
            document = {
                "checked_at": when(first.checked_at),
                "silent_after_s": first.silent_after.ToTimedelta().total_seconds(),
                "stale_after_s": first.stale_after.ToTimedelta().total_seconds(),
                **document,
            }
        print_json(document)
        return 1 if bad else 0
    text, bad = render(list(pages))
    print(text)
    return 1 if bad else 0


def _silent_devices(args: argparse.Namespace, connection: Connection) -> int:
    page_token = ""
    found: list[pb.SilentDevice] = []
    now = datetime.now(UTC)
    while True:
        request = pb.ListSilentDevicesRequest(
            code=args.code, page_size=SILENT_PAGE_SIZE, page_token=page_token
        )
        if args.silent_after is not None:
            request.silent_after.CopyFrom(args.silent_after)
        reply = connection.query.ListSilentDevices(
            request, metadata=connection.metadata, timeout=connection.timeout
        )
        found.extend(reply.devices)
        page_token = reply.next_page_token
        if not page_token:
            break
    if getattr(args, "json", False):
        print_json({"devices": [message_dict(d) for d in found]})
        return 1 if found else 0
    rows = [
        (
            d.device_id,
            d.name,
            d.site_id,
            when(d.last_reading_at) if d.HasField("last_reading_at") else "never",
            span(now - _moment(d.last_reading_at)) if d.HasField("last_reading_at") else "-",
        )
        for d in found
    ]
    print_table_pages(
        ("DEVICE", "NAME", "SITE", "LAST READING", "SILENT FOR"), [rows], f"no silent devices at {args.code}"
    )
    return 1 if found else 0


def _windows(parser: argparse.ArgumentParser, *, stale: bool) -> None:
    parser.add_argument(
        "--silent-after",
        type=parse_duration,
        default=None,
        metavar="DURATION",
        help="a device is silent after this long without a reading (6h, 30m, 2d; default 6h)",
    )
    if stale:
        parser.add_argument(
            "--stale-after",
            type=parse_duration,
            default=None,
            metavar="DURATION",
            help="a customer is stale after this long without any push (default 1h)",
        )
    # Also accepted after the subcommand; SUPPRESS keeps a root-level `fleetctl --json …` intact.
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON instead of a table"
    )


def register(cli: Any) -> None:
    group = cli.group("fleet")
    health: argparse.ArgumentParser = group.add_parser(
        "health",
        help="one line per customer: OK, STALE, SILENT DEVICES, TOKEN EXPIRING; exit 1 when any is not OK",
        description="Every customer's health, with the details under each one that is not OK. Exits 1 "
        "when any active customer is not OK (for cron and CI), 0 otherwise; deactivated customers "
        "are shown as INACTIVE and never fail the check.",
    )
    health.add_argument("--customer", metavar="CODE", default=None, help="only this customer")
    _windows(health, stale=True)
    health.set_defaults(run=_health, stale_after=None)

    silent: argparse.ArgumentParser = group.add_parser(
        "silent-devices",
        help="every device of a customer without a reading for longer than --silent-after; exit 1 if any",
    )
    silent.add_argument("code", metavar="CODE", help="the customer's code")
    _windows(silent, stale=False)
    silent.set_defaults(run=_silent_devices)
