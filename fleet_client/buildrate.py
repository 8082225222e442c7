"""How fast the client turns portal rows into request batches, with no server in the way.

`build_rate` reads a `Source` in keyset pages exactly as the pusher does and builds each page into
a `PushMeasurementsRequest` (serialised, so the figure includes encoding); `measure_build_rate`
does so over a fresh SQLite back-fill portal. The benchmark suite calls these; from a shell:
`python -m fleet_client.buildrate [ROWS]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert

from fleet_client import portal_schema as t
from fleet_client import wire
from fleet_client.rows import Cursor
from fleet_client.source import Source, SqlSource


@dataclass(frozen=True)
class BuildRate:
    rows: int
    batches: int
    bytes: int
    read_s: float
    build_s: float

    @property
    def seconds(self) -> float:
        return self.read_s + self.build_s

    @property
    def rows_per_s(self) -> float:
        """End to end: reading the portal and building the batches."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def build_rows_per_s(self) -> float:
        """Building (and serialising) the batches alone."""
        return self.rows / self.build_s if self.build_s > 0 else 0.0

    def __str__(self) -> str:
        return (
            f"{self.rows:,} rows in {self.batches:,} batches ({self.bytes / 1e6:.1f} MB): "
            f"{self.rows_per_s:,.0f} rows/s read+build, {self.build_rows_per_s:,.0f} rows/s build only"
        )


def build_rate(source: Source, *, batch_size: int = 500, until: datetime | None = None) -> BuildRate:
    """Read every row of `source` up to `until` in pages of `batch_size` and build each page."""
    horizon = until or datetime.now(UTC)
    cursor: Cursor | None = None
    rows = batches = size = 0
    read_s = build_s = 0.0
    while True:
        began = time.perf_counter()
        page = source.measurements_after(cursor, batch_size, until=horizon)
        read_s += time.perf_counter() - began
        if not page:
            break
        began = time.perf_counter()
        batches += 1
        size += len(wire.measurement_batch(batches, page).SerializeToString())
        build_s += time.perf_counter() - began
        rows += len(page)
        cursor = Cursor.of(page[-1])
    return BuildRate(rows, batches, size, read_s, build_s)


def write_backlog(url: str, rows: int, *, devices: int = 50, start: datetime | None = None) -> None:
    """Fill the portal at `url` with `rows` 15-minute `energy_kwh` readings over `devices` devices."""
    first = start or datetime(2025, 1, 1, tzinfo=UTC)
    engine = create_engine(url)
    try:
        t.create_portal_schema(engine)
        chunk: list[dict[str, object]] = []
        with engine.begin() as conn:
            for i in range(rows):
                step, device = divmod(i, devices)
                when = first + timedelta(minutes=15 * step)
                chunk.append(
                    {
                        "device_id": device + 1,
                        "metric": "energy_kwh",
                        "time": when,
                        "value": 0.25 + (i % 97) / 1000,
                        "received_at": when + timedelta(minutes=15),
                    }
                )
                if len(chunk) == 10_000:
                    conn.execute(insert(t.measurements), chunk)
                    chunk = []
            if chunk:
                conn.execute(insert(t.measurements), chunk)
    finally:
        engine.dispose()


def measure_build_rate(
    rows: int = 200_000, *, batch_size: int = 500, folder: Path | None = None
) -> BuildRate:
    """The client build rate over a fresh SQLite portal of `rows` readings (created in `folder`)."""
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        url = f"sqlite:///{Path(scratch) / 'portal.db'}"
        write_backlog(url, rows)
        source = SqlSource(url)
        try:
            return build_rate(source, batch_size=batch_size)
        finally:
            source.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="client build rate: SQLite portal → request batches")
    parser.add_argument("rows", type=int, nargs="?", default=200_000)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    print(measure_build_rate(args.rows, batch_size=args.batch_size))


if __name__ == "__main__":
    main()
