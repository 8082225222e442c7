"""`fleetctl customers show CODE`: counts, first pages of sites and devices, tariff cards, sync status.

The detail carries the first page of each list (however large the customer); each section says
how many more there are and which command lists them all (`fleetctl/listings.py`).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
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


SITE_COLUMNS = ("ID", "Name", "Timezone", "Municipality", "Tariff", "Address")
DEVICE_COLUMNS = ("ID", "Site", "Name", "Serial", "Kind")
MUNICIPALITY_COLUMNS = ("ID", "Name", "Region")


Names = Mapping[int, str]
_NONE: Names = {}


def labelled(names: Names, item_id: int) -> str:
    """A referenced item as `Name (id N)`; the bare id when its name is not at hand."""
    name = names.get(item_id)
    return f"{name} (id {item_id})" if name else f"id {item_id}"


def site_row(s: resources_pb2.Site, municipalities: Names = _NONE, tariffs: Names = _NONE) -> tuple[Any, ...]:
    return (
        s.id,
        s.name,
        s.timezone,
        labelled(municipalities, s.municipality_id) if s.HasField("municipality_id") else "-",
        labelled(tariffs, s.tariff_id) if s.HasField("tariff_id") else "-",
        s.address,
    )


def device_row(d: resources_pb2.Device, sites: Names = _NONE) -> tuple[Any, ...]:
    return (d.id, labelled(sites, d.site_id), d.name, d.serial_number, d.kind)


def municipality_row(m: resources_pb2.Municipality) -> tuple[Any, ...]:
    return (m.id, m.name, m.region)


def _section(title: str, count: int, body: str, empty: str) -> str:
    return f"{title} ({count:,})\n{body if count else empty}"


def _paged_section(code: str, noun: str, count: int, shown: int, body: str) -> str:
    """A section of the detail: the total in the title, the first page, then how many more and where.

    An older server sends no counts; the items it sent are then all there is.
    """
    total = max(count, shown)
    text = _section(noun.capitalize(), total, body, f"No {noun} synced yet.")
    if total > shown:
        text += f"\n… and {total - shown:,} more {noun} (fleetctl customers {noun} {code})"
    return text


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
    """The detail view as plain text: counts, first pages, tariff cards, sync status."""
    c = detail.customer
    header = (
        f"Customer {c.code}: {c.name} (id {c.id})\n"
        f"Active: {_yes_no(c.is_active)}   Created: {when(c.created_at)}   "
        f"Token issued: {when(c.token_issued_at)}"
    )
    # Names of what the rows refer to, from the first pages this detail carries (a reference
    # beyond them shows its id).
    municipality_names = {m.id: m.name for m in detail.municipalities}
    tariff_names = {view.tariff.id: view.tariff.name for view in detail.tariffs}
    site_names = {s.id: s.name for s in detail.sites}
    sites = table(SITE_COLUMNS, [site_row(s, municipality_names, tariff_names) for s in detail.sites])
    devices = table(DEVICE_COLUMNS, [device_row(d, site_names) for d in detail.devices])
    municipalities = table(MUNICIPALITY_COLUMNS, [municipality_row(m) for m in detail.municipalities])
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
        _paged_section(c.code, "sites", detail.site_count, len(detail.sites), sites),
        _paged_section(c.code, "devices", detail.device_count, len(detail.devices), devices),
        _paged_section(
            c.code, "municipalities", detail.municipality_count, len(detail.municipalities), municipalities
        ),
        _paged_section(c.code, "tariffs", detail.tariff_count, len(detail.tariffs), tariffs),
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
        "show",
        help="one customer's counts, first pages of sites, devices, tariffs (as cards), sync status",
    )
    show.add_argument("code", help="the customer's code")
    # Also accepted after the subcommand; SUPPRESS keeps a root-level `fleetctl --json …` intact.
    show.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON instead of tables"
    )
    show.set_defaults(run=_show)
