"""The portal's data as plain values, independent of any database or of the wire format.

A `Source` returns these; `fleet_client.wire` turns them into `fleet.v1` messages and
`fleet_client.snapshot` hashes those. `Cursor` is the measurement keyset position.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class SiteRow:
    id: int
    name: str
    address: str = ""
    timezone: str = ""
    municipality_id: int | None = None
    tariff_id: int | None = None


@dataclass(frozen=True, slots=True)
class DeviceRow:
    id: int
    site_id: int
    name: str
    serial_number: str = ""
    kind: str = ""


@dataclass(frozen=True, slots=True)
class MunicipalityRow:
    id: int
    name: str
    region: str = ""


@dataclass(frozen=True, slots=True)
class PeriodRow:
    """A TOU window: `days_of_week` bit 0 = Monday … bit 6 = Sunday; times are local `HH:MM`."""

    id: int
    name: str
    days_of_week: int
    start_time: str
    end_time: str
    rate: Decimal


@dataclass(frozen=True, slots=True)
class TariffRow:
    id: int
    municipality_id: int
    name: str
    is_active: bool
    effective_from: datetime
    effective_to: datetime | None
    default_rate: Decimal
    fixed_charge: Decimal
    vat_percent: Decimal
    currency: str
    periods: tuple[PeriodRow, ...] = ()


class MeasurementRow(NamedTuple):
    """One reading; a NamedTuple because a back-fill builds hundreds of thousands per second."""

    device_id: int
    metric: str
    time: datetime
    value: float
    received_at: datetime


class Cursor(NamedTuple):
    """Position after the last acknowledged reading, in key order `(received_at, device_id, metric, time)`.

    Never a bare timestamp: many readings share one `received_at`, and a batch may end in the
    middle of them. The full key makes "after" exact, so none is skipped and none resent forever.
    """

    received_at: datetime
    device_id: int
    metric: str
    time: datetime

    @classmethod
    def of(cls, row: MeasurementRow) -> Cursor:
        return cls(row.received_at, row.device_id, row.metric, row.time)

    def to_json(self) -> dict[str, object]:
        return {
            "received_at": self.received_at.isoformat(),
            "device_id": self.device_id,
            "metric": self.metric,
            "time": self.time.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Cursor:
        return cls(
            datetime.fromisoformat(str(data["received_at"])),
            int(str(data["device_id"])),
            str(data["metric"]),
            datetime.fromisoformat(str(data["time"])),
        )

    def describe(self) -> str:
        """Short form for the status table."""
        return f"{self.received_at.isoformat(timespec='seconds')} d{self.device_id} {self.metric}"
