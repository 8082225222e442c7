"""`fleetctl measurements CODE …` (one customer's readings or buckets) and `fleetctl fleet summary`."""

from __future__ import annotations

import argparse
import logging
from datetime import UTC
from typing import Any

from fleet.v1 import query_service_pb2 as pb

from fleet_server.fleetctl.connection import Connection
from fleet_server.fleetctl.render import message_dict, print_json, table, time_argument
from fleet_server.rpc.wellknown import to_timestamp

_LOGGER = logging.getLogger(__name__)

BUCKETS = {"raw": pb.BUCKET_RAW, "hour": pb.BUCKET_HOUR, "day": pb.BUCKET_DAY}


def _when(point: pb.MeasurementPoint, bucket: str) -> str:
    moment = point.bucket_start.ToDatetime(tzinfo=UTC)
    if bucket == "day":
        return moment.strftime("%Y-%m-%d")
    if bucket == "hour":
        return moment.strftime("%Y-%m-%d %H:%MZ")
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return (text + f".{moment.microsecond:06d}" if moment.microsecond else text) + "Z"


def _number(value: float) -> str:
    return f"{value:.6g}"


def render_points(points: list[pb.MeasurementPoint], bucket: str) -> str:
    """Raw readings as Device | Time | Value; buckets as Device | Hour/Day | Count | Sum | Min | Max."""
    if not points:
        return "no readings in range"
    if bucket == "raw":
        return table(
            ("Device", "Time", "Value"), [(p.device_id, _when(p, bucket), _number(p.sum)) for p in points]
        )
    headers = ("Device", bucket.capitalize(), "Count", "Sum", "Min", "Max")
    rows = [
        (p.device_id, _when(p, bucket), p.count, _number(p.sum), _number(p.min), _number(p.max))
        for p in points
    ]
    return table(headers, rows)


def _measurements(args: argparse.Namespace, connection: Connection) -> int:
    request = pb.QueryMeasurementsRequest(
        code=args.code,
        device_ids=args.devices,
        metric=args.metric,
        start=to_timestamp(args.start),
        end=to_timestamp(args.end),
        bucket=BUCKETS[args.bucket],
    )
    chunks = connection.query.QueryMeasurements(
        request, metadata=connection.metadata, timeout=connection.timeout
    )
    points = [point for chunk in chunks for point in chunk.points]
    if getattr(args, "json", False):
        print_json({"points": [message_dict(p) for p in points]})
    else:
        print(render_points(points, args.bucket))
    return 0


def render_summary(reply: pb.SummarizeFleetResponse) -> str:
    rows = [(c.code, c.devices, c.devices_seen, c.rows, _number(c.sum)) for c in reply.customers]
    return table(("Customer", "Devices", "Seen", "Rows", "Sum"), rows) if rows else "no customers"


def _summary(args: argparse.Namespace, connection: Connection) -> int:
    request = pb.SummarizeFleetRequest(
        metric=args.metric, start=to_timestamp(args.start), end=to_timestamp(args.end)
    )
    reply = connection.query.SummarizeFleet(request, metadata=connection.metadata, timeout=connection.timeout)
    if getattr(args, "json", False):
        print_json(message_dict(reply))
    else:
        print(render_summary(reply))
    return 0


def _range_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metric", required=True, help="metric name, e.g. energy_kwh")
    parser.add_argument(
        "--from", dest="start", required=True, type=time_argument, help="start of the range, inclusive"
    )
    parser.add_argument(
        "--to", dest="end", required=True, type=time_argument, help="end of the range, exclusive"
    )
    # Also accepted after the subcommand; SUPPRESS keeps a root-level `fleetctl --json …` intact.
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON instead of a table"
    )


def register(cli: Any) -> None:
    parser: argparse.ArgumentParser = cli.commands.add_parser(
        "measurements",
        help="one customer's readings, or hour/day buckets, over [--from, --to)",
        description="Raw readings, or hour/day buckets (UTC) from the hourly rollups. Bucket queries "
        "return whole buckets: every bucket that overlaps [--from, --to).",
    )
    parser.add_argument("code", metavar="CODE", help="the customer's code")
    _range_arguments(parser)
    parser.add_argument(
        "--device",
        dest="devices",
        type=int,
        nargs="+",
        action="extend",
        default=[],
        metavar="ID",
        help="only these devices (repeatable); default: every device",
    )
    parser.add_argument(
        "--bucket", choices=sorted(BUCKETS), default="hour", help="granularity (default: hour)"
    )
    parser.set_defaults(run=_measurements)

    summary: argparse.ArgumentParser = cli.group("fleet").add_parser(
        "summary",
        help="one metric per customer over [--from, --to): devices, devices seen, rows, sum",
    )
    _range_arguments(summary)
    summary.set_defaults(run=_summary)
