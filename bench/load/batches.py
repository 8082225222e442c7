"""Measurement batches with keys no other batch uses, assembled as bytes from per-row parts.

A batch is serialised without a protobuf object: each row's fixed fields (device, metric, value)
are encoded once per shape, each step's two timestamps once per batch, and a row is the two
concatenated (protobuf merges a message's fields in any order, so the server parses exactly the
request a `SerializeToString` would have made). Rewriting the shared template's 100-5,000 rows
per batch cost the live clients about as much CPU per call as gRPC itself, on the cores the
server is measured on. The bytes go out through a stream whose request serialiser is the
identity, and a batch that must be resent is resent byte for byte.

Keys: a customer is driven by exactly one sender, and batch `uid` of that customer covers its own
time slice, so (device, metric, time) never repeats across batches. Every row of a batch carries
`received_at = received_base + uid µs`: the final count groups the stored rows by `received_at`
and so knows, per batch, how many of its rows the database holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from fleet.v1 import resources_pb2
from google.protobuf import timestamp_pb2

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


def _varint(value: int) -> bytes:
    """`value` (not negative) as a protobuf varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_MEASUREMENTS_TAG = b"\x12"  # PushMeasurementsRequest.measurements: field 2, length-delimited
_BATCH_ID_TAG = b"\x08"  # PushMeasurementsRequest.batch_id: field 1, varint


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
    _fixed: list[bytes] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._fixed = []
        for step in range(self.steps):
            for device in range(1, self.devices + 1):
                value = (
                    0.2 + ((device * 7 + step) % 13) / 40 if self.metric == "energy_kwh" else 100.0 + device
                )
                row = resources_pb2.Measurement(device_id=device, metric=self.metric, value=value)
                self._fixed.append(row.SerializeToString())

    @property
    def rows(self) -> int:
        return self.devices * self.steps

    def make(self, code: str, uid: int) -> Batch:
        start = self.t0_s + (uid - 1) * self.steps * self.step_s
        received = timestamp_pb2.Timestamp(
            seconds=self.received_base_s + uid // 1_000_000, nanos=(uid % 1_000_000) * 1000
        )
        parts = [_BATCH_ID_TAG, _varint(uid)]
        fixed = iter(self._fixed)
        for step in range(self.steps):
            stamps = resources_pb2.Measurement(
                time=timestamp_pb2.Timestamp(seconds=start + step * self.step_s), received_at=received
            ).SerializeToString()
            for _ in range(self.devices):
                row = next(fixed) + stamps
                parts += (_MEASUREMENTS_TAG, _varint(len(row)), row)
        return Batch(code=code, uid=uid, rows=self.rows, payload=b"".join(parts))


def live_shape(rows: int, received_base_s: int) -> Shape:
    """A live portal's batch: `rows` meters read at one moment; batch `uid` is second `uid` of the run."""
    return Shape(rows, 1, 1, "power_w", received_base_s, received_base_s)


def series_shape(devices: int, steps: int, t0_s: int, received_base_s: int) -> Shape:
    """A back-fill's batch: `steps` quarter hours of `energy_kwh` for `devices` meters."""
    return Shape(devices, steps, QUARTER_HOUR_S, "energy_kwh", t0_s, received_base_s)
