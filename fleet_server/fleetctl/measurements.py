"""`fleetctl measurements CODE …` (one customer's readings or buckets) and `fleetctl fleet summary`.

Each table opens with a line saying what it shows (customer, metric and unit, granularity, the
range), and devices are named. `--chart` draws each device's series as a sparkline instead.
The unit is read from the metric name's last part (`energy_kwh` → kWh, `power_w` → W); a metric
without a known suffix shows none.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from datetime import UTC, datetime, timedelta
from typing import Any

from fleet.v1 import query_service_pb2 as pb

from fleet_server.fleetctl.charts import fold, sparkline
from fleet_server.fleetctl.connection import Connection
from fleet_server.fleetctl.detail import labelled
from fleet_server.fleetctl.listings import device_names
from fleet_server.fleetctl.render import check_range, message_dict, print_json, span, table, time_argument
from fleet_server.rpc.wellknown import to_timestamp

_LOGGER = logging.getLogger(__name__)

BUCKETS = {"raw": pb.BUCKET_RAW, "hour": pb.BUCKET_HOUR, "day": pb.BUCKET_DAY}
_STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
_GRANULARITY = {"raw": "raw readings", "hour": "hourly buckets (UTC)", "day": "daily buckets (UTC)"}

# Metric-name suffix → (unit, whether readings add up over time). Energy and volume add up, so a
# bucket's sum is its amount; power, voltage or temperature do not, so a chart shows the mean.
_UNITS = {
    "wh": ("Wh", True),
    "kwh": ("kWh", True),
    "mwh": ("MWh", True),
    "varh": ("varh", True),
    "kvarh": ("kvarh", True),
    "m3": ("m³", True),
    "l": ("L", True),
    "w": ("W", False),
    "kw": ("kW", False),
    "mw": ("MW", False),
    "var": ("var", False),
    "kvar": ("kvar", False),
    "v": ("V", False),
    "a": ("A", False),
    "hz": ("Hz", False),
    "c": ("°C", False),
    "pct": ("%", False),
    "percent": ("%", False),
    "pf": ("", False),
}


def unit_of(metric: str) -> tuple[str, bool]:
    """The unit the metric's name ends in ('' when none is known), and whether it adds up."""
    suffix = metric.rsplit("_", 1)[-1] if "_" in metric else ""
    return _UNITS.get(suffix, ("", False))


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


def headline(code: str, metric: str, bucket: str, start: datetime, end: datetime) -> str:
    """What the table below shows: `ACME · energy_kwh (kWh) · daily buckets (UTC) · 2025-… to …`."""
    unit, _ = unit_of(metric)
    named = f"{metric} ({unit})" if unit else metric
    return f"{code} · {named} · {_GRANULARITY[bucket]} · {span(start, end)}"


def render_points(points: list[pb.MeasurementPoint], bucket: str, names: dict[int, str] | None = None) -> str:
    """Raw readings as Device | Time | Value; buckets as Device | Hour/Day | Readings | Sum | Min | Max."""
    if not points:
        return "no readings in range"
    names = names or {}
    if bucket == "raw":
        return table(
            ("Device", "Time", "Value"),
            [(labelled(names, p.device_id), _when(p, bucket), _number(p.sum)) for p in points],
        )
    headers = ("Device", bucket.capitalize(), "Readings", "Sum", "Min", "Max")
    rows = [
        (
            labelled(names, p.device_id),
            _when(p, bucket),
            p.count,
            _number(p.sum),
            _number(p.min),
            _number(p.max),
        )
        for p in points
    ]
    return table(headers, rows)


def render_chart(
    points: list[pb.MeasurementPoint],
    metric: str,
    bucket: str,
    start: datetime,
    end: datetime,
    names: dict[int, str] | None = None,
    width: int | None = None,
) -> str:
    """A sparkline row per device over every bucket of the range (a gap where a bucket is empty),
    on one scale for all devices, each row ending with its lowest, highest and total."""
    if not points:
        return "no readings in range"
    if bucket == "raw":
        return "--chart draws hour or day buckets: add --bucket hour or --bucket day"
    names = names or {}
    unit, additive = unit_of(metric)
    step = _STEP[bucket]
    first = _floor(start, bucket)
    slots = max(1, -(-(end - first) // step))
    series: dict[int, list[float | None]] = {}
    for p in points:
        index = int((p.bucket_start.ToDatetime(tzinfo=UTC) - first) // step)
        values = series.setdefault(p.device_id, [None] * slots)
        if 0 <= index < slots and p.count:
            values[index] = p.sum if additive else p.sum / p.count
    labels = {device: labelled(names, device) for device in series}
    label_width = max(len(label) for label in labels.values())
    room = (width or shutil.get_terminal_size((100, 24)).columns) - label_width - 34
    folded = {device: fold(values, max(room, 8), additive=additive) for device, values in series.items()}
    per = next(iter(folded.values()))[1]
    present = [v for cells, _ in folded.values() for v in cells if v is not None]
    low, high = min(present), max(present)
    suffix = f" {unit}" if unit else ""
    what = "sum" if additive else "mean"
    cell = f"{per} {bucket}s" if per > 1 else f"one {bucket}"
    lines = [f"each character: the {what} of {cell}; scale {_number(low)} to {_number(high)}{suffix}"]
    for device, (cells, _) in folded.items():
        shown = [v for v in cells if v is not None]
        total = (
            f"total {_number(sum(shown))}{suffix}"
            if additive
            else f"mean {_number(sum(shown) / len(shown))}{suffix}"
        )
        lines.append(
            f"{labels[device]:<{label_width}}  {sparkline(cells, low, high)}  "
            f"{_number(min(shown))} to {_number(max(shown))}{suffix}, {total}"
        )
    return "\n".join(lines)


def _floor(moment: datetime, bucket: str) -> datetime:
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if bucket == "day" else moment


def _measurements(args: argparse.Namespace, connection: Connection) -> int:
    check_range(args.start, args.end)
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
        return 0
    names = device_names(connection, args.code, {p.device_id for p in points})
    print(headline(args.code, args.metric, args.bucket, args.start, args.end))
    if args.chart:
        print(render_chart(points, args.metric, args.bucket, args.start, args.end, names))
    else:
        print(render_points(points, args.bucket, names))
    return 0


SUMMARY_COLUMNS = ("Customer", "Devices", "Reporting", "Readings", "Sum")


def render_summary(reply: pb.SummarizeFleetResponse, metric: str, start: datetime, end: datetime) -> str:
    """One line per customer, under a line saying what is summed over which range."""
    unit, _ = unit_of(metric)
    named = f"{metric} ({unit})" if unit else metric
    lines = [f"{named} per customer · {span(start, end)}"]
    rows = [(c.code, c.devices, c.devices_seen, c.rows, _number(c.sum)) for c in reply.customers]
    if not rows:
        lines.append("no customers")
        return "\n".join(lines)
    headers = (*SUMMARY_COLUMNS[:-1], f"Sum ({unit})" if unit else "Sum")
    lines.append(table(headers, rows))
    lines.append("Devices: devices the customer has pushed; Reporting: devices with readings in the range.")
    if not any(c.rows for c in reply.customers):
        lines.append(f"No customer has readings of {metric} in this range: is the metric spelt right?")
    return "\n".join(lines)


def _summary(args: argparse.Namespace, connection: Connection) -> int:
    check_range(args.start, args.end)
    request = pb.SummarizeFleetRequest(
        metric=args.metric, start=to_timestamp(args.start), end=to_timestamp(args.end)
    )
    reply = connection.query.SummarizeFleet(request, metadata=connection.metadata, timeout=connection.timeout)
    if getattr(args, "json", False):
        print_json(message_dict(reply))
    else:
        print(render_summary(reply, args.metric, args.start, args.end))
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
        "return whole buckets: every bucket that overlaps [--from, --to). A metric the customer has "
        "no reading of at all is an error naming the metrics it has.",
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
    parser.add_argument(
        "--chart",
        action="store_true",
        help="draw each device's hour or day buckets as a sparkline instead of the table",
    )
    parser.set_defaults(run=_measurements)

    summary: argparse.ArgumentParser = cli.group("fleet").add_parser(
        "summary",
        help="one metric per customer over [--from, --to): devices, devices reporting, readings, sum",
    )
    _range_arguments(summary)
    summary.set_defaults(run=_summary)
