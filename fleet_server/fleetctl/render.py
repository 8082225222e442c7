"""Output for people (aligned tables) and for scripts (`--json`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from fleet_server.fleetctl.errors import UsageError


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with a header rule; every cell rendered with `str`."""
    cells = [[str(c) for c in headers], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_table_pages(headers: Sequence[str], pages: Iterable[Sequence[Sequence[Any]]], empty: str) -> int:
    """Print a table page by page as the pages arrive; the rows printed.

    Column widths come from the header and the first page (a later, longer cell widens only its
    own line), so the first rows show before the last page is fetched and a list of 120,000
    rows is never held in memory. `empty` is printed instead when there are no rows at all.
    """
    widths: list[int] | None = None
    printed = 0
    for page in pages:
        rows = [["" if c is None else str(c) for c in row] for row in page]
        if widths is None:
            if not rows:
                continue
            widths = [max(len(r[i]) for r in [list(headers), *rows]) for i in range(len(headers))]
            print(_line(list(headers), widths))
            print("  ".join("-" * w for w in widths))
        for row in rows:
            print(_line(row, widths))
        printed += len(rows)
        sys.stdout.flush()
    if widths is None:
        print(empty)
    return printed


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def print_json_list(name: str, items: Iterable[Any]) -> int:
    """Print `{"<name>": [item, …]}` item by item, as `print_json` would print it whole; the items.

    Scripts get one JSON document, like every other `--json`, without the list being collected
    first. A failure half-way leaves the document unterminated, and the exit status says so.
    """
    count = 0
    sys.stdout.write("{\n" + f"  {json.dumps(name)}: [")
    for item in items:
        text = json.dumps(item, indent=2, sort_keys=False, default=str).replace("\n", "\n    ")
        sys.stdout.write(("," if count else "") + "\n    " + text)
        count += 1
        if count % 1000 == 0:
            sys.stdout.flush()
    sys.stdout.write("\n  ]\n}\n" if count else "]\n}\n")
    sys.stdout.flush()
    return count


def message_dict(message: Message) -> dict[str, Any]:
    """A protobuf message as the JSON-ready dict scripts get: field names and order as in the
    proto, every field present (a zero too), 64-bit integers as JSON numbers and doubles without
    binary noise (`621.7931`, not `621.7930999999996`).

    protobuf's own JSON mapping writes 64-bit integers as strings, for JavaScript, whose numbers
    lose integers above 2^53; the ids and counts here are far below that, and scripts (jq,
    Python) compare numbers, not strings. grpcurl and `buf curl` keep the protobuf mapping.
    """
    raw = MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    return _shaped(raw, message.DESCRIPTOR)


_INT64 = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
# Significant digits kept of a double: more than any meter measures, fewer than the noise of a
# sum of thousands of readings.
_DOUBLE_DIGITS = 12


def _shaped(raw: dict[str, Any], descriptor: Any) -> dict[str, Any]:
    return {f.name: _field_value(raw[f.name], f) for f in descriptor.fields if f.name in raw}


def _field_value(value: Any, f: FieldDescriptor) -> Any:
    entry = f.message_type
    if entry is not None and entry.GetOptions().map_entry:
        inner = entry.fields_by_name["value"]
        return {key: _one_value(item, inner) for key, item in value.items()}
    if f.is_repeated:
        return [_one_value(item, f) for item in value]
    return _one_value(value, f)


def _one_value(value: Any, f: FieldDescriptor) -> Any:
    if f.message_type is not None:
        if f.message_type.full_name.startswith("google.protobuf."):
            return value  # Timestamp, Duration…: their JSON form is already the readable one
        return _shaped(value, f.message_type)
    if f.type in _INT64 and isinstance(value, str):
        return int(value)
    if f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT) and isinstance(value, float):
        return clean_float(value)
    return value


def clean_float(value: float) -> float:
    """`value` without the binary noise of float arithmetic (12 significant digits)."""
    return float(f"{value:.{_DOUBLE_DIGITS}g}")


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def when(ts: timestamp_pb2.Timestamp | None) -> str:
    """A timestamp as `2026-01-05 12:00:00Z`, or '-' when unset."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return "-"
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def span(start: datetime, end: datetime) -> str:
    """`[start, end)` as `2025-03-03 00:00Z to 2025-03-10 00:00Z` (UTC; end excluded)."""
    return f"{_utc_minute(start)} to {_utc_minute(end)} (end excluded)"


def _utc_minute(moment: datetime) -> str:
    text = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    return text + (f":{moment.second:02d}" if moment.second else "") + "Z"


def check_range(start: datetime, end: datetime) -> None:
    """Refuse `--to` at or before `--from` here, naming the flags (the server would name fields)."""
    if end <= start:
        raise UsageError(
            f"--to ({_utc_minute(end)}) must be after --from ({_utc_minute(start)}): the range is "
            "[--from, --to)"
        )


def time_argument(text: str) -> datetime:
    """argparse type of every `--from`/`--to`: `2026-03-01`, `2026-03-01T06:00`, `…Z` or with an
    offset; naive means UTC, the zone the server reports in."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a timestamp: use 2026-03-01, 2026-03-01T06:00Z or 2026-03-01T08:00+02:00"
        ) from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)
