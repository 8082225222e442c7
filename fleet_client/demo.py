"""`fleet-push demo-portal PATH`: a small, deterministic portal database to try the whole loop on.

Two sites, three devices, one municipality, one time-of-use tariff (Peak on weekdays 17:00-20:00,
Off-Peak all weekend) and a week of 15-minute `energy_kwh` and `power_w` readings per device.
The same arguments always produce the same rows, so the README tour and the tests can state
exact numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import create_engine, insert

from fleet_client import portal_schema as t

DEMO_START = date(2025, 3, 3)
"""A Monday; the week is fixed so the demo is reproducible (and never 'in the future')."""
INTERVAL = timedelta(minutes=15)
RECEIVE_DELAY = timedelta(minutes=15, seconds=20)
"""A reading for [t, t+15 min) reaches the portal 20 s after its interval ends, all devices together."""

_DEVICES = (
    # id, site_id, name, serial, kind, base load (W)
    (1, 1, "Main meter", "DM-0001", "meter", 1800.0),
    (2, 1, "HVAC", "DM-0002", "submeter", 900.0),
    (3, 2, "Warehouse meter", "DM-0003", "meter", 3200.0),
)


@dataclass(frozen=True)
class DemoPortal:
    path: Path
    url: str
    sites: int
    devices: int
    municipalities: int
    tariffs: int
    periods: int
    measurements: int


def _power_w(base: float, device_id: int, when: datetime) -> float:
    """A plausible daily load curve in local time (UTC+2): low at night, peaking in the evening."""
    local = when + timedelta(hours=2)
    hour = local.hour + local.minute / 60
    daily = 0.35 + 0.65 * math.sin(math.pi * ((hour - 5) % 24) / 24) ** 2
    weekend = 0.7 if local.weekday() >= 5 else 1.0
    return round(base * daily * weekend + 10 * device_id, 1)


def create_demo_portal(
    path: Path, *, start: date = DEMO_START, days: int = 7, force: bool = False
) -> DemoPortal:
    """Write the demo portal to the SQLite file `path` (refuses to overwrite unless `force`)."""
    if days < 1:
        raise ValueError("days must be at least 1")
    path = Path(path)
    if path.exists():
        if not force:
            raise FileExistsError(f"{path} exists; pass --force to replace it")
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    try:
        t.create_portal_schema(engine)
        with engine.begin() as conn:
            conn.execute(insert(t.municipalities), [{"id": 1, "name": "Demo City", "region": "Gauteng"}])
            conn.execute(
                insert(t.sites),
                [
                    {
                        "id": 1,
                        "name": "Head Office",
                        "address": "12 Main Road, Demo City",
                        "timezone": "Africa/Johannesburg",
                        "municipality_id": 1,
                        "tariff_id": 1,
                    },
                    {
                        "id": 2,
                        "name": "Warehouse",
                        "address": "4 Depot Street, Demo City",
                        "timezone": "Africa/Johannesburg",
                        "municipality_id": 1,
                        "tariff_id": 1,
                    },
                ],
            )
            conn.execute(
                insert(t.devices),
                [
                    {"id": d, "site_id": s, "name": n, "serial_number": sn, "kind": k}
                    for d, s, n, sn, k, _ in _DEVICES
                ],
            )
            conn.execute(
                insert(t.tariffs),
                [
                    {
                        "id": 1,
                        "municipality_id": 1,
                        "name": "Domestic TOU",
                        "is_active": True,
                        "effective_from": datetime(2025, 1, 1, tzinfo=UTC),
                        "effective_to": None,
                        "default_rate": Decimal("2.10"),
                        "fixed_charge": Decimal("250.00"),
                        "vat_percent": Decimal("15"),
                        "currency": "ZAR",
                    }
                ],
            )
            conn.execute(
                insert(t.tariff_periods),
                [
                    {
                        "tariff_id": 1,
                        "id": 1,
                        "name": "Peak",
                        "days_of_week": 0b0011111,
                        "start_time": "17:00",
                        "end_time": "20:00",
                        "rate": Decimal("3.75"),
                    },
                    {
                        "tariff_id": 1,
                        "id": 2,
                        "name": "Off-Peak",
                        "days_of_week": 0b1100000,
                        "start_time": "00:00",
                        "end_time": "23:59",
                        "rate": Decimal("1.20"),
                    },
                ],
            )
            rows = []
            first = datetime(start.year, start.month, start.day, tzinfo=UTC)
            for step in range(days * 96):
                when = first + step * INTERVAL
                received = when + RECEIVE_DELAY
                for device_id, _, _, _, _, base in _DEVICES:
                    power = _power_w(base, device_id, when)
                    rows.append(
                        {
                            "device_id": device_id,
                            "metric": "power_w",
                            "time": when,
                            "value": power,
                            "received_at": received,
                        }
                    )
                    rows.append(
                        {
                            "device_id": device_id,
                            "metric": "energy_kwh",
                            "time": when,
                            "value": round(power * 0.25 / 1000, 4),
                            "received_at": received,
                        }
                    )
            conn.execute(insert(t.measurements), rows)
    finally:
        engine.dispose()
    return DemoPortal(path, url, 2, len(_DEVICES), 1, 1, 2, len(rows))
