"""`fleetctl customers sites|devices|municipalities|tariffs CODE`: every row of one list, page by page.

`customers show` carries the first page of each list; these commands walk the rest with the
AIP-158 List RPCs, printing each page as it arrives, so 120,000 devices start scrolling at
once and are never all held in memory (the table's column widths come from the first page;
`--json` writes one document item by item).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fleet.v1 import query_service_pb2 as pb
from google.protobuf.message import Message

from fleet_server.fleetctl.connection import Connection
from fleet_server.fleetctl.detail import (
    DEVICE_COLUMNS,
    MUNICIPALITY_COLUMNS,
    SITE_COLUMNS,
    Names,
    device_row,
    municipality_row,
    site_row,
    tariff_card,
)
from fleet_server.fleetctl.render import message_dict, print_json_list, print_table_pages

# The server's largest page: the fewest round trips (120 calls for 120,000 devices).
PAGE_SIZE = 1000


# The names a row needs, by list: {"sites": {1: "Head office"}, …}.
NamesByList = Mapping[str, Names]


@dataclass(frozen=True)
class _List:
    """One list RPC: how to call it, which field holds the items, how a row of its table reads.

    A list without `row` prints its items as cards (tariffs). `refers_to` names the lists whose
    names its rows show instead of bare ids (read whole, before the first row is printed).
    """

    method: str
    request: Callable[..., Message]
    field: str
    columns: tuple[str, ...] = ()
    row: Callable[[Any, NamesByList], tuple[Any, ...]] | None = None
    refers_to: tuple[str, ...] = ()


_LISTS = {
    "sites": _List(
        "ListSites",
        pb.ListSitesRequest,
        "sites",
        SITE_COLUMNS,
        lambda s, names: site_row(s, names["municipalities"], names["tariffs"]),
        ("municipalities", "tariffs"),
    ),
    "devices": _List(
        "ListDevices",
        pb.ListDevicesRequest,
        "devices",
        DEVICE_COLUMNS,
        lambda d, names: device_row(d, names["sites"]),
        ("sites",),
    ),
    "municipalities": _List(
        "ListMunicipalities",
        pb.ListMunicipalitiesRequest,
        "municipalities",
        MUNICIPALITY_COLUMNS,
        lambda m, _names: municipality_row(m),
    ),
    "tariffs": _List("ListTariffs", pb.ListTariffsRequest, "tariffs"),
}


def pages(connection: Connection, noun: str, code: str) -> Iterator[list[Any]]:
    """The items of list `noun` of customer `code`, one page at a time, until an empty token ends it."""
    listing = _LISTS[noun]
    call = getattr(connection.query, listing.method)
    page_token = ""
    while True:
        reply = call(
            listing.request(code=code, page_size=PAGE_SIZE, page_token=page_token),
            metadata=connection.metadata,
            timeout=connection.timeout,
        )
        yield list(getattr(reply, listing.field))
        page_token = reply.next_page_token
        if not page_token:
            return


def names_of(connection: Connection, noun: str, code: str) -> dict[int, str]:
    """Every item of list `noun` of customer `code` by id, as its name."""
    names: dict[int, str] = {}
    for page in pages(connection, noun, code):
        for item in page:
            record = item.tariff if noun == "tariffs" else item
            names[record.id] = record.name
    return names


def device_names(connection: Connection, code: str, wanted: set[int]) -> dict[int, str]:
    """The names of the devices in `wanted`, reading the device list in id order only as far as
    the largest of them (a query of a few devices of a large customer reads a page or two)."""
    names: dict[int, str] = {}
    if not wanted:
        return names
    last = max(wanted)
    for page in pages(connection, "devices", code):
        names.update((d.id, d.name) for d in page if d.id in wanted)
        if len(names) == len(wanted) or (page and page[-1].id >= last):
            break
    return names


def _print_tariffs(views: Iterator[list[pb.TariffView]]) -> None:
    shown = 0
    for page in views:
        for view in page:
            print(("\n" if shown else "") + tariff_card(view), flush=True)
            shown += 1
    if not shown:
        print("No tariffs synced yet.")


def _run(noun: str) -> Callable[[argparse.Namespace, Connection], int]:
    listing = _LISTS[noun]

    def run(args: argparse.Namespace, connection: Connection) -> int:
        row = listing.row
        if getattr(args, "json", False):
            found = pages(connection, noun, args.code)
            print_json_list(noun, (message_dict(item) for page in found for item in page))
        elif row is None:
            _print_tariffs(pages(connection, noun, args.code))
        else:
            names = {other: names_of(connection, other, args.code) for other in listing.refers_to}
            found = pages(connection, noun, args.code)
            rows = ([row(item, names) for item in page] for page in found)
            print_table_pages(listing.columns, rows, f"No {noun} synced yet.")
        return 0

    return run


_HELP = {
    "sites": "every site of a customer, page by page",
    "devices": "every device of a customer, page by page",
    "municipalities": "every municipality of a customer, page by page",
    "tariffs": "every tariff of a customer as a card with its periods, page by page",
}


def register(cli: Any) -> None:
    group = cli.group("customers")
    for noun, help_text in _HELP.items():
        parser: argparse.ArgumentParser = group.add_parser(noun, help=help_text)
        parser.add_argument("code", help="the customer's code")
        # Also accepted after the subcommand; SUPPRESS keeps a root-level `fleetctl --json …` intact.
        parser.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON instead of a table"
        )
        parser.set_defaults(run=_run(noun))
