"""Measurement batches with keys no other batch uses, built cheaply from one template per shape.

A client process shares one `PushMeasurementsRequest` per shape and, per batch, only rewrites the
times and `received_at` and serialises it (a few milliseconds for 5,000 rows), so the generator's
CPU stays with the server. The bytes go out through a stream whose request serialiser is the
identity, and a batch that must be resent is resent byte for byte.

Keys: a customer is driven by exactly one sender, and batch `uid` of that customer covers its own
time slice, so (device, metric, time) never repeats across batches. Every row of a batch carries
`received_at = received_base + uid µs`: the final count groups the stored rows by `received_at`
and so knows, per batch, how many of its rows the database holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from fleet.v1 import ingest_service_pb2, resources_pb2

BACKFILL_T0 = int(datetime(2025, 1, 6, tzinfo=UTC).timestamp())  # a Monday
BASELINE_T0 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
QUARTER_HOUR_S = 900


@dataclass
class Batch:
    """One batch of one customer and what became of it (kept for the final count)."""

    code: str
    uid: int
    rows: int
    payload: bytes
    attempts: int = 0
    acked: bool = False
    accepted: int = 0
    duplicates: int = 0

    def ledger_entry(self) -> tuple[str, int, int, int, bool, int, int]:
        return (self.code, self.uid, self.rows, self.attempts, self.acked, self.accepted, self.duplicates)


@dataclass
class Shape:
    """`devices` x `steps` readings per batch: step-major rows, `step_s` apart, from `t0_s` on.

    Batch `uid` starts at `t0_s + (uid - 1) * steps * step_s`, so consecutive batches of a
    customer tile time without overlap.
    """

    devices: int
    steps: int
    step_s: int
    metric: str
    t0_s: int
    received_base_s: int
    _request: ingest_service_pb2.PushMeasurementsRequest = field(init=False, repr=False)
    _offsets: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rows = []
        self._offsets = []
        for step in range(self.steps):
            for device in range(1, self.devices + 1):
                value = (
                    0.2 + ((device * 7 + step) % 13) / 40 if self.metric == "energy_kwh" else 100.0 + device
                )
                rows.append(resources_pb2.Measurement(device_id=device, metric=self.metric, value=value))
                self._offsets.append(step * self.step_s)
        self._request = ingest_service_pb2.PushMeasurementsRequest(measurements=rows)

    @property
    def rows(self) -> int:
        return self.devices * self.steps

    def make(self, code: str, uid: int) -> Batch:
        start = self.t0_s + (uid - 1) * self.steps * self.step_s
        received_s = self.received_base_s + uid // 1_000_000
        received_ns = (uid % 1_000_000) * 1000
        request = self._request
        request.batch_id = uid
        for row, offset in zip(request.measurements, self._offsets, strict=True):
            row.time.seconds = start + offset
            row.received_at.seconds = received_s
            row.received_at.nanos = received_ns
        return Batch(code=code, uid=uid, rows=len(self._offsets), payload=request.SerializeToString())


def live_shape(rows: int, received_base_s: int) -> Shape:
    """A live portal's batch: `rows` meters read at one moment; batch `uid` is second `uid` of the run."""
    return Shape(rows, 1, 1, "power_w", received_base_s, received_base_s)


def series_shape(devices: int, steps: int, t0_s: int, received_base_s: int) -> Shape:
    """A back-fill's batch: `steps` quarter hours of `energy_kwh` for `devices` meters."""
    return Shape(devices, steps, QUARTER_HOUR_S, "energy_kwh", t0_s, received_base_s)
