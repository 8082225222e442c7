"""`fleetctl costs`: each customer's bill for a range, per site and TOU period, from ComputeCosts.

`--chart` adds a bar per period line after the tables: the energy cost of each (site, period),
on one scale per customer, so where the money goes shows at a glance.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from fleet.v1 import query_service_pb2 as pb

from fleet_server.fleetctl.charts import bar
from fleet_server.fleetctl.connection import Connection
from fleet_server.fleetctl.render import check_range, message_dict, print_json, span, table, time_argument
from fleet_server.rpc.wellknown import to_timestamp

_LOGGER = logging.getLogger(__name__)

_PERIOD_HEADERS = ("Site", "Name", "Tariff", "Period", "kWh", "Rate", "Cost")
_SITE_HEADERS = ("Site", "Name", "Currency", "kWh", "Energy", "Fixed", "VAT", "Total", "Unpriced kWh")


_BAR_WIDTH = 30


def _tariff_cell(site: pb.SiteCost) -> str:
    if not site.HasField("tariff_id"):
        return "-"
    return f"{site.tariff_name} (id {site.tariff_id})" if site.tariff_name else f"id {site.tariff_id}"


def _period_rows(site: pb.SiteCost) -> list[Sequence[Any]]:
    """One row per period line; the site's columns only on its first line, to read as a group."""
    tariff = _tariff_cell(site)
    if not site.periods:
        return [(site.site_id, site.site_name, tariff, "-", "", "", "")]
    rows: list[Sequence[Any]] = []
    for index, line in enumerate(site.periods):
        head = (site.site_id, site.site_name, tariff) if index == 0 else ("", "", "")
        rows.append((*head, line.period_name, line.kwh, line.rate, line.cost))
    return rows


def render_chart(customer: pb.CustomerCost) -> str:
    """A bar per (site, period) line, proportional to its energy cost, largest = `_BAR_WIDTH` cells."""
    lines = [
        (s.site_name or f"site {s.site_id}", p.period_name, Decimal(p.cost), s.currency)
        for s in customer.sites
        for p in s.periods
    ]
    if not lines:
        return "nothing priced to chart"
    largest = float(max(cost for *_, cost, _ in lines))
    site_width = max(len(site) for site, *_ in lines)
    period_width = max(len(period) for _, period, *_ in lines)
    rows = []
    previous = None
    for site, period, cost, currency in lines:
        label = site if site != previous else ""
        previous = site
        drawn = bar(float(cost), largest, _BAR_WIDTH)
        rows.append(
            f"{label:<{site_width}}  {period:<{period_width}}  {drawn:<{_BAR_WIDTH + 1}} {cost} {currency}"
        )
    return "Energy cost per period\n" + "\n".join(rows)


def render_costs(
    reply: pb.ComputeCostsResponse, start: datetime, end: datetime, *, chart: bool = False
) -> str:
    """A block per customer: period lines, then site totals, then totals per currency (and a
    bar chart of the period lines with `chart`)."""
    blocks = []
    for customer in reply.customers:
        lines = [f"{customer.code} · energy costs · {span(start, end)}", ""]
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
        if chart and customer.sites:
            lines += ["", render_chart(customer)]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) if blocks else "no customers"


def _run(args: argparse.Namespace, connection: Connection) -> int:
    check_range(args.start, args.end)
    request = pb.ComputeCostsRequest(
        codes=args.customers, start=to_timestamp(args.start), end=to_timestamp(args.end)
    )
    reply = connection.query.ComputeCosts(request, metadata=connection.metadata, timeout=connection.timeout)
    if getattr(args, "json", False):
        print_json(message_dict(reply))
    else:
        print(render_costs(reply, args.start, args.end, chart=args.chart))
    return 0


def register(cli: Any) -> None:
    parser: argparse.ArgumentParser = cli.commands.add_parser(
        "costs",
        help="energy cost per customer, site and TOU period over [--from, --to)",
        description="Price every site's energy_kwh readings with its tariff's time-of-use periods: "
        "kWh per period times its rate, the fixed charge pro-rated over the range, VAT on both "
        "(docs/DESIGN.md, 'Pricing rules').",
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
    parser.add_argument("--chart", action="store_true", help="add a bar per period line after the tables")
    parser.set_defaults(run=_run)
