"""`fleetctl costs`: each customer's bill for a range, per site and TOU period, from ComputeCosts."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from fleet.v1 import query_service_pb2 as pb

from fleet_server.fleetctl.connection import Connection
from fleet_server.fleetctl.render import message_dict, print_json, table, time_argument
from fleet_server.rpc.wellknown import to_timestamp

_LOGGER = logging.getLogger(__name__)

_PERIOD_HEADERS = ("Site", "Name", "Tariff", "Period", "kWh", "Rate", "Cost")
_SITE_HEADERS = ("Site", "Name", "Currency", "kWh", "Energy", "Fixed", "VAT", "Total", "Unpriced kWh")


def _fmt(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S%z").replace("+0000", "Z")


def _period_rows(site: pb.SiteCost) -> list[Sequence[Any]]:
    """One row per period line; the site's columns only on its first line, to read as a group."""
    tariff = site.tariff_id if site.HasField("tariff_id") else "-"
    if not site.periods:
        return [(site.site_id, site.site_name, tariff, "-", "", "", "")]
    rows: list[Sequence[Any]] = []
    for index, line in enumerate(site.periods):
        head = (site.site_id, site.site_name, tariff) if index == 0 else ("", "", "")
        rows.append((*head, line.period_name, line.kwh, line.rate, line.cost))
    return rows


def render_costs(reply: pb.ComputeCostsResponse, start: datetime, end: datetime) -> str:
    """A block per customer: period lines, then site totals, then totals per currency."""
    blocks = []
    for customer in reply.customers:
        lines = [f"{customer.code}  [{_fmt(start)}, {_fmt(end)})", ""]
        if not customer.sites:
            lines.append("no sites")
        else:
            period_rows = [row for site in customer.sites for row in _period_rows(site)]
            lines += [table(_PERIOD_HEADERS, period_rows), ""]
            site_rows = [
                (
                    s.site_id,
                    s.site_name,
                    s.currency or "-",
                    s.energy_kwh,
                    s.energy_cost,
                    s.fixed_charge,
                    s.vat,
                    s.total,
                    s.unpriced_kwh,
                )
                for s in customer.sites
            ]
            lines.append(table(_SITE_HEADERS, site_rows))
        totals = ", ".join(f"{t.currency} {t.total}" for t in customer.totals) or "nothing billed"
        lines += ["", f"Total: {totals}"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) if blocks else "no customers"


def _run(args: argparse.Namespace, connection: Connection) -> int:
    request = pb.ComputeCostsRequest(
        codes=args.customers, start=to_timestamp(args.start), end=to_timestamp(args.end)
    )
    reply = connection.query.ComputeCosts(request, metadata=connection.metadata, timeout=connection.timeout)
    if getattr(args, "json", False):
        print_json(message_dict(reply))
    else:
        print(render_costs(reply, args.start, args.end))
    return 0


def register(cli: Any) -> None:
    parser: argparse.ArgumentParser = cli.commands.add_parser(
        "costs",
        help="energy cost per customer, site and TOU period over [--from, --to)",
        description="Price every site's energy_kwh readings with its tariff (SPEC §9).",
    )
    parser.add_argument(
        "--customer",
        dest="customers",
        action="append",
        default=[],
        metavar="CODE",
        help="a customer to include (repeatable); default: every customer",
    )
    parser.add_argument(
        "--from", dest="start", required=True, type=time_argument, help="start of the range, inclusive"
    )
    parser.add_argument(
        "--to", dest="end", required=True, type=time_argument, help="end of the range, exclusive"
    )
    # Also accepted after the subcommand; SUPPRESS keeps a root-level `fleetctl --json …` intact.
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON instead of tables"
    )
    parser.set_defaults(run=_run)
