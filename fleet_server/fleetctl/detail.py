"""`fleetctl customers show CODE`: a customer's sites, devices, tariff cards and sync status."""

from __future__ import annotations

import argparse
from typing import Any

from fleet.v1 import query_service_pb2 as pb
from fleet.v1 import resources_pb2

from fleet_server.fleetctl.connection import Connection
from fleet_server.fleetctl.render import message_dict, print_json, table, when

DAY_LETTERS = "MTWTFSS"
_INDENT = "  "


def day_mask(days_of_week: int) -> str:
    """The weekday bitmask (bit 0 = Monday) as `MTWTFSS` with `-` for off days, e.g. `MTWTF--`."""
    return "".join(letter if days_of_week >> bit & 1 else "-" for bit, letter in enumerate(DAY_LETTERS))


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def _section(title: str, count: int, body: str, empty: str) -> str:
    return f"{title} ({count})\n{body if count else empty}"


def _effective(tariff: resources_pb2.Tariff) -> str:
    start = when(tariff.effective_from)
    if tariff.HasField("effective_to"):
        return f"from {start} until {when(tariff.effective_to)}"
    return f"from {start}, open-ended"


def tariff_card(view: pb.TariffView) -> str:
    """One tariff as a card: its terms, then its periods as a table."""
    t = view.tariff
    municipality = (
        f"{view.municipality_name} (id {t.municipality_id})"
        if view.municipality_name
        else f"id {t.municipality_id}"
    )
    terms = [
        ("Municipality", municipality),
        ("Active", _yes_no(t.is_active)),
        ("Effective", _effective(t)),
        ("Default rate", f"{t.default_rate} {t.currency}/kWh"),
        ("Fixed charge", f"{t.fixed_charge} {t.currency}/month"),
        ("VAT", f"{t.vat_percent}%"),
    ]
    width = max(len(label) for label, _ in terms) + 1
    lines = [f"Tariff {t.id}: {t.name}"]
    lines += [f"{_INDENT}{label + ':':<{width}}  {value}" for label, value in terms]
    if t.periods:
        rows = [(p.name, day_mask(p.days_of_week), p.start_time, p.end_time, p.rate) for p in t.periods]
        periods = table(("Period", "Days", "Start", "End", "Rate"), rows)
        lines += [f"{_INDENT}{line}" for line in periods.splitlines()]
    else:
        lines.append(f"{_INDENT}No periods: every reading is billed at the default rate.")
    return "\n".join(lines)


def render_detail(detail: pb.GetCustomerDetailResponse) -> str:
    """The whole detail view as plain text."""
    c = detail.customer
    header = (
        f"Customer {c.code}: {c.name} (id {c.id})\n"
        f"Active: {_yes_no(c.is_active)}   Created: {when(c.created_at)}   "
        f"Token issued: {when(c.token_issued_at)}"
    )
    sites = table(
        ("ID", "Name", "Timezone", "Municipality", "Tariff", "Address"),
        [
            (
                s.id,
                s.name,
                s.timezone,
                s.municipality_id if s.HasField("municipality_id") else "-",
                s.tariff_id if s.HasField("tariff_id") else "-",
                s.address,
            )
            for s in detail.sites
        ],
    )
    devices = table(
        ("ID", "Site", "Name", "Serial", "Kind"),
        [(d.id, d.site_id, d.name, d.serial_number, d.kind) for d in detail.devices],
    )
    municipalities = table(
        ("ID", "Name", "Region"), [(m.id, m.name, m.region) for m in detail.municipalities]
    )
    tariffs = "\n\n".join(tariff_card(view) for view in detail.tariffs)
    sync = table(
        ("Resource", "Last push", "Received", "High-water received_at"),
        [
            (
                s.resource,
                when(s.last_push_at),
                s.last_received,
                when(s.high_water_received_at) if s.HasField("high_water_received_at") else "-",
            )
            for s in detail.sync
        ],
    )
    parts = [
        header,
        _section("Sites", len(detail.sites), sites, "No sites synced yet."),
        _section("Devices", len(detail.devices), devices, "No devices synced yet."),
        _section(
            "Municipalities", len(detail.municipalities), municipalities, "No municipalities synced yet."
        ),
        _section("Tariffs", len(detail.tariffs), tariffs, "No tariffs synced yet."),
        _section("Sync status", len(detail.sync), sync, "Nothing pushed yet."),
    ]
    return "\n\n".join(parts)


def _show(args: argparse.Namespace, connection: Connection) -> int:
    reply = connection.query.GetCustomerDetail(
        pb.GetCustomerDetailRequest(code=args.code), metadata=connection.metadata, timeout=connection.timeout
    )
    if getattr(args, "json", False):
        print_json(message_dict(reply))
    else:
        print(render_detail(reply))
    return 0


def register(cli: Any) -> None:
    show: argparse.ArgumentParser = cli.group("customers").add_parser(
        "show", help="one customer's sites, devices, tariffs (as cards) and sync status"
    )
    show.add_argument("code", help="the customer's code")
    # Also accepted after the subcommand; SUPPRESS keeps a root-level `fleetctl --json …` intact.
    show.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON instead of tables"
    )
    show.set_defaults(run=_show)
