"""`fleetctl fleet storage`: per customer, readings hot and compressed, the disk they take, bytes per reading.

The figure an operator plans disk with: how many readings sit in rows (the hot window, late
readings not yet folded in) and how many in compressed units, and what each costs a reading.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from fleet.v1 import query_service_pb2 as pb

from fleet_server.fleetctl.connection import Connection
from fleet_server.fleetctl.render import message_dict, print_json, table, when

PAGE_SIZE = 1000
HEADERS = (
    "CUSTOMER",
    "HOT READINGS",
    "COMPRESSED READINGS",
    "HOT BYTES",
    "COMPRESSED BYTES",
    "B/READING HOT",
    "B/READING COMPRESSED",
    "B/READING ALL",
)
DESCRIPTION = (
    "Per customer: readings kept hot (rows, counted from the hourly rollups) and compressed (cold "
    "storage units), the bytes each takes, and bytes per reading. Hot bytes are the real size on "
    "disk of the measurement partitions and the hourly rollup table (heap, indexes, TOAST, free "
    "space) shared out by hot readings; compressed bytes are the customer's unit payloads as stored "
    "plus a share, by units, of the rest of fleet.measurements_compressed (row headers, TOAST "
    "chunk headers, primary key index). The customers add up to the FLEET line, which is what the "
    "relations take on disk. Sizes are as PostgreSQL reports them: space freed by deleted rows "
    "counts until VACUUM makes it reusable."
)


def size(value: int) -> str:
    """Bytes the way people read them: `812 B`, `4.2 MB`, `1.31 GB` (powers of 1000, like df -H)."""
    amount = float(value)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if amount < 1000 or unit == "TB":
            return f"{value} B" if unit == "B" else f"{amount:.3g} {unit}"
        amount /= 1000
    raise AssertionError("unreachable")


def per_reading(bytes_: int, readings: int) -> str:
    return f"{bytes_ / readings:.2f}" if readings else "-"


def row(name: str, use: pb.StorageUse) -> tuple[str, ...]:
    readings = use.hot_readings + use.compressed_readings
    return (
        name,
        f"{use.hot_readings:,}",
        f"{use.compressed_readings:,}",
        size(use.hot_bytes),
        size(use.compressed_bytes),
        per_reading(use.hot_bytes, use.hot_readings),
        per_reading(use.compressed_bytes, use.compressed_readings),
        per_reading(use.hot_bytes + use.compressed_bytes, readings),
    )


def storage_pages(connection: Connection, code: str | None) -> Iterator[pb.GetFleetStorageResponse]:
    page_token = ""
    while True:
        reply: pb.GetFleetStorageResponse = connection.query.GetFleetStorage(
            pb.GetFleetStorageRequest(code=code or "", page_size=PAGE_SIZE, page_token=page_token),
            metadata=connection.metadata,
            timeout=connection.timeout,
        )
        yield reply
        page_token = reply.next_page_token
        if not page_token:
            return


def _storage(args: argparse.Namespace, connection: Connection) -> int:
    replies = list(storage_pages(connection, args.customer))
    customers = [c for reply in replies for c in reply.customers]
    fleet = replies[-1].fleet
    if getattr(args, "json", False):
        print_json(
            {
                "measured_at": when(replies[-1].measured_at),
                "customers": [message_dict(c) for c in customers],
                "fleet": message_dict(fleet),
            }
        )
        return 0
    rows = [row(c.code, c.use) for c in customers]
    rows.append(row("FLEET", fleet))
    print(table(HEADERS, rows))
    print(f"measured at {when(replies[-1].measured_at)}; what the bytes count: fleetctl fleet storage -h")
    return 0


def register(cli: Any) -> None:
    group = cli.group("fleet")
    storage: argparse.ArgumentParser = group.add_parser(
        "storage",
        help="per customer: readings hot and compressed, bytes on disk, bytes per reading",
        description=DESCRIPTION,
    )
    storage.add_argument("--customer", metavar="CODE", default=None, help="only this customer")
    # Also accepted after the subcommand; SUPPRESS keeps a root-level `fleetctl --json …` intact.
    storage.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON instead of a table"
    )
    storage.set_defaults(run=_storage)
