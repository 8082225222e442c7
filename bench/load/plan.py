"""The shape of one `make load` run: how many portals of each kind, how long each phase lasts, the bars.

Everything the run does is bounded by these numbers (counts and seconds), so a server that stalls
makes the run report stalls, never makes it hang. `--quick` shrinks the fleet for a smoke run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

# Bars of the issue (fleet rows/s is a ratio to one stream alone measured in the same run).
BAR_LIVE_P99_S = 1.0
BAR_OPERATOR_P99_S = 1.0
BAR_FLEET_RATIO = 1.0

OPERATOR_CALLS = ("GetCustomerDetail", "QueryMeasurements", "ComputeCosts", "ListCustomers")


@dataclass(frozen=True)
class Plan:
    """One run's sizes and time bounds (seconds are wall time on the client side)."""

    workers: int = 1  # `fleet-server serve --workers N`
    clients: int = 4  # client processes: back-fill + baseline, operator, and the rest live portals
    portals: int = 300  # live portals, one customer each
    live_rows: int = 100
    live_interval_s: tuple[float, float] = (1.0, 5.0)
    backfills: int = 10  # back-filling portals, one customer each
    backfill_devices: int = 50
    backfill_steps: int = 100  # 15-minute steps per batch: devices x steps = 5,000 rows
    baseline_s: float = 8.0  # one stream alone, 500-row batches back to back
    baseline_devices: int = 50
    baseline_steps: int = 10
    fleet_s: float = 40.0  # live portals and the operator for all of it ...
    live_alone_s: float = 10.0  # ... back-fills join after this much
    ramp: tuple[int, ...] = (20, 100, 300, 1000)
    ramp_batches: int = 3
    ramp_rows: int = 100
    ramp_gap_s: float = 1.0  # between a ramp stream's batches, so the step's streams overlap
    stall_s: float = 10.0  # a call with no answer after this long is a stall
    deadline_s: float = 12.0  # client deadline of every call: a stall ends as DEADLINE_EXCEEDED
    grace_s: float = 5.0  # calls still open at the end of a phase get this long, then are cut
    portals_per_channel: int = 10  # portals (or ramp streams) per channel, i.e. per HTTP/2 connection
    operator_days: int = 7  # window of QueryMeasurements (hour buckets) and ComputeCosts
    quick: bool = False

    @classmethod
    def quick_plan(cls, **overrides: Any) -> Plan:
        """A smoke run (under a minute): a tenth of the fleet, short phases, the first ramp step."""
        values: dict[str, Any] = {
            "clients": 3,
            "portals": 30,
            "backfills": 2,
            "baseline_s": 3.0,
            "fleet_s": 10.0,
            "live_alone_s": 3.0,
            "ramp": (20,),
            "ramp_batches": 2,
            "ramp_gap_s": 0.5,
            "deadline_s": 7.0,
            "stall_s": 5.0,
            "grace_s": 3.0,
            "quick": True,
        }
        values.update(overrides)
        return cls(**values)

    def __post_init__(self) -> None:
        if self.clients < 3:
            raise ValueError("--clients must be at least 3 (back-fill, operator, live portals)")
        if not 0 <= self.live_alone_s < self.fleet_s:
            raise ValueError("the live-alone part must be shorter than the fleet phase")

    @property
    def backfill_rows(self) -> int:
        return self.backfill_devices * self.backfill_steps

    @property
    def baseline_rows(self) -> int:
        return self.baseline_devices * self.baseline_steps

    @property
    def live_clients(self) -> int:
        return self.clients - 2

    def live_codes(self) -> list[str]:
        return [f"LIVE_{i:04d}" for i in range(1, self.portals + 1)]

    def backfill_codes(self) -> list[str]:
        return [f"BACKFILL_{i:02d}" for i in range(1, self.backfills + 1)]

    def ramp_codes(self, step: int) -> list[str]:
        """Customers of one ramp step; every step has its own, so a stream of an earlier step that
        the server has not finished yet cannot refuse a later one (one stream per customer)."""
        return [f"RAMP{step}_{i:04d}" for i in range(1, step + 1)]

    @staticmethod
    def baseline_code() -> str:
        return "BASELINE"

    def all_codes(self) -> list[str]:
        ramp = [code for step in self.ramp for code in self.ramp_codes(step)]
        return [self.baseline_code(), *self.backfill_codes(), *self.live_codes(), *ramp]

    def live_share(self, client: int) -> list[str]:
        """The live portals driven by client process `client` (processes 2.. drive them)."""
        codes = self.live_codes()
        per = math.ceil(len(codes) / self.live_clients)
        index = client - 2
        return codes[index * per : (index + 1) * per]

    def scheduled_live_batches(self) -> float:
        """Live batches the fleet phase should send if every portal keeps its pace."""
        low, high = self.live_interval_s
        return self.portals * self.fleet_s / ((low + high) / 2)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
