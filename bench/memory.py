"""Server memory under the worst streams the limits allow: the RSS of a real `fleet-server`, printed.

`python -m bench.memory` starts a fresh server process for every scenario, so each peak
(`VmHWM` of /proc/<pid>/status) belongs to that scenario alone, and prints one table: RSS at
rest, the peak while the scenario ran, RSS once it was over, and how the calls ended. The
server runs with its default limits except the per-customer measurement row budget, which is
lifted (for memory the worst customer is one nothing slows down). Refused pushes are retried
after the server's hint, as fleet-push does. Not part of `make bench`: it takes a few minutes.

Scenarios:
- `issue`: one customer sends 150 site messages of 3.9 MB (a 3.9 MB address in each) and never
  closes the stream: the report that started this;
- `worst`: one customer's snapshot at both budgets at once (as many rows as allowed, as many
  bytes as allowed), applied: the most one stream can make the server hold;
- `snapshots`: N customers send the `worst` snapshot at the same time;
- `batches`: N customers each stream measurement batches of the largest message size, of the
  smallest rows (the most rows per byte);
- `fleet`: 300 portals each sending a live batch of 100 rows every 1-5 s while 10 back-fill in
  5,000-row batches.
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from fleet.v1 import ingest_service_pb2 as ipb
from fleet.v1 import resources_pb2 as res
from google.protobuf import timestamp_pb2

from bench.environment import BenchEnvironment
from fleet_client.status_details import status_details
from fleet_server.config import Settings
from fleet_server.domain.rules import MAX_TEXT_LENGTH
from fleet_server.fleetctl.render import table

MIB = 1024 * 1024
DEFAULTS = Settings()
# The largest message the server takes, less room for the request's own framing.
MESSAGE_BYTES = DEFAULTS.max_message_bytes - 64 * 1024
ISSUE_MESSAGES = 150
ISSUE_ADDRESS_BYTES = 3_900_000
SERVER_ENV = {
    "FLEET_INGEST_ROWS_PER_S": "100000000",
    "FLEET_INGEST_BURST_ROWS": "100000000",
    "FLEET_MAX_MESSAGE_BYTES": str(DEFAULTS.max_message_bytes),
    "FLEET_LOG_LEVEL": "INFO",
}
# A batch of the smallest rows takes a second per row: this apart, the batches' times never meet.
BATCH_SPAN = timedelta(days=2)
# Each stream is a portal of its own, on a connection of its own (gRPC would otherwise share
# one connection among channels to the same address).
CLIENT_OPTIONS = [("grpc.max_send_message_length", 64 * MIB), ("grpc.use_local_subchannel_pool", 1)]
SITES = "/fleet.v1.FleetIngestService/PushSites"
MEASUREMENTS = "/fleet.v1.FleetIngestService/PushMeasurements"


def memory_kib(pid: int) -> dict[str, int]:
    """`VmRSS` and `VmHWM` (the peak RSS) of process `pid`, in KiB."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
    return found


def _mb(kib: int) -> str:
    return f"{kib / 1024:,.0f}"


def _identity(data: bytes) -> bytes:
    return data


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _stamp(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def sized_site(site_id: int, size: int) -> res.Site:
    """A valid site of about `size` serialized bytes (at most three text fields at their limit)."""
    site = res.Site(
        id=site_id,
        name="N" * min(MAX_TEXT_LENGTH, size // 2),
        timezone="Africa/Johannesburg",
        municipality_id=site_id,
        tariff_id=site_id,
    )
    site.address = "A" * max(0, min(MAX_TEXT_LENGTH, size - site.ByteSize() - 3))
    return site


def site_messages(count: int, build: Callable[[int], res.Site]) -> list[bytes]:
    """`count` sites (ids 1..count) as PushSitesRequest messages of at most MESSAGE_BYTES each."""
    one = ipb.PushSitesRequest(sites=[build(count)]).ByteSize()  # the largest id: the largest site
    per_message = max(1, MESSAGE_BYTES // one)
    return [
        ipb.PushSitesRequest(
            sites=[build(i) for i in range(start, min(start + per_message, count + 1))]
        ).SerializeToString()
        for start in range(1, count + 1, per_message)
    ]


def worst_snapshot() -> list[bytes]:
    """As many sites as a snapshot may have, as large as leaves the snapshot just under its bytes."""
    rows = DEFAULTS.max_snapshot_rows
    # Room for each site's share of the message framing.
    size = int(DEFAULTS.max_snapshot_bytes * 0.995) // rows - 3
    return site_messages(rows, lambda i: sized_site(i, size))


@dataclass
class Outcome:
    """How a scenario's calls ended (status, and the ErrorInfo reason when there is one), and how
    many refusals were retried."""

    statuses: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    examples: dict[str, str] = field(default_factory=dict)

    def ok(self) -> None:
        self.statuses["OK"] += 1

    def failed(self, error: grpc.RpcError) -> None:
        reason = status_details(error.trailing_metadata()).reason
        key = f"{error.code().name}/{reason}" if reason else error.code().name
        self.statuses[key] += 1
        self.examples.setdefault(key, str(error.details()))

    def __str__(self) -> str:
        ended = ", ".join(f"{n} {code}" for code, n in sorted(self.statuses.items()))
        return f"{ended}; {self.retries} retried" if self.retries else ended


def _retry_after_s(error: grpc.RpcError) -> float | None:
    """The server's retry hint, when the refusal is one to retry (a busy server, not a bad push)."""
    if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    for key, value in error.trailing_metadata() or ():
        if key == "retry-after-ms":
            return int(value) / 1000
    return None


def _push_snapshot(
    target: str, token: str, messages: list[bytes], outcome: Outcome, *, hold_open: bool = False
) -> None:
    """One PushSites snapshot of pre-serialised `messages`, retried after a hint; with
    `hold_open`, the stream is never half-closed (it ends when the server ends it, or in 30 s).

    A blocking client on purpose: when a server ends a client stream early, the asyncio client
    may report INTERNAL instead of the server's status (grpc/grpc#36066), which would hide the
    refusals this measures.
    """
    channel = grpc.insecure_channel(target, options=CLIENT_OPTIONS)
    push = channel.stream_unary(SITES, request_serializer=_identity, response_deserializer=_identity)
    give_up = threading.Event()

    def requests() -> Iterator[bytes]:
        yield from messages
        if hold_open:
            give_up.wait(30)

    try:
        for _ in range(100):
            try:
                push(requests(), metadata=_bearer(token), timeout=600)
            except grpc.RpcError as error:
                delay = _retry_after_s(error)
                if delay is None:
                    outcome.failed(error)
                    return
                outcome.retries += 1
                time.sleep(delay)
            else:
                outcome.ok()
                return
    finally:
        give_up.set()
        channel.close()


def _batch(batch_id: int, rows: int, start: datetime, device: int, value: float = 0.0) -> bytes:
    """A measurement batch; a value of 0.0 is not even sent (proto3), making the smallest rows."""
    received = _stamp(datetime.now(UTC))
    return ipb.PushMeasurementsRequest(
        batch_id=batch_id,
        measurements=[
            res.Measurement(
                device_id=device,
                metric="e",
                time=_stamp(start + timedelta(seconds=i)),
                value=value,
                received_at=received,
            )
            for i in range(rows)
        ],
    ).SerializeToString()


def rows_per_message() -> int:
    """How many of the smallest measurement rows fill a message of MESSAGE_BYTES (the latest
    times of a batch take the most bytes, so they set the size)."""
    sample = _batch(1, 1000, datetime(2025, 1, 1, tzinfo=UTC) + BATCH_SPAN * 8, 1)
    return int(MESSAGE_BYTES // len(sample) * 1000 * 0.98)


def _stream_batches(
    target: str,
    token: str,
    batches: list[bytes],
    until: float,
    outcome: Outcome,
    pause: Callable[[], float] = lambda: 0.0,
) -> None:
    """PushMeasurements sending `batches` round and round until `until`, then closing; a stream
    refused with a hint starts again after it."""
    channel = grpc.insecure_channel(target, options=CLIENT_OPTIONS)
    push = channel.stream_stream(MEASUREMENTS, request_serializer=_identity, response_deserializer=_identity)

    def requests() -> Iterator[bytes]:
        index = 0
        while time.monotonic() < until:
            yield batches[index % len(batches)]
            index += 1
            delay = pause()
            if delay:
                time.sleep(delay)

    try:
        while True:
            try:
                for _ack in push(requests(), metadata=_bearer(token), timeout=600):
                    pass
            except grpc.RpcError as error:
                delay = _retry_after_s(error)
                if delay is None or time.monotonic() + delay >= until:
                    outcome.failed(error)
                    return
                outcome.retries += 1
                time.sleep(delay)
            else:
                outcome.ok()
                return
    finally:
        channel.close()


def _at_once(calls: Sequence[Callable[[], object]]) -> None:
    """Run `calls` each on a thread of its own, all at the same time; wait for every one."""
    threads = [threading.Thread(target=call, daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@dataclass
class Row:
    scenario: str
    rest_kib: int
    peak_kib: int
    after_kib: int
    seconds: float
    outcome: str


class Scenarios:
    """Each scenario on a server of its own; `run` returns its row of the table."""

    def __init__(self, env: BenchEnvironment, customers: int, seconds: float, log: Path) -> None:
        self.env = env
        self.log = log
        self.customers = customers
        self.seconds = seconds
        self._serial = 0

    def _token(self) -> str:
        self._serial += 1
        return self.env.customer(f"MEM_{self._serial}")

    def run(self, name: str, scenario: Callable[[Outcome], None]) -> Row:
        print(f"… {name}", file=sys.stderr, flush=True)
        self.env.start_server(SERVER_ENV, log=self.log)
        try:
            pid = self.env.pid
            rest = memory_kib(pid)["VmRSS"]
            outcome = Outcome()
            started = time.monotonic()

            scenario(outcome)
            elapsed = time.monotonic() - started
            time.sleep(1.0)
            after = memory_kib(pid)
            for key, example in outcome.examples.items():
                print(f"  {key}: {example}", file=sys.stderr, flush=True)
            return Row(name, rest, after["VmHWM"], after["VmRSS"], elapsed, str(outcome))
        finally:
            self.env.stop_server()

    def issue(self, outcome: Outcome) -> None:
        message = ipb.PushSitesRequest(
            sites=[res.Site(id=1, name="Site", address="A" * ISSUE_ADDRESS_BYTES)]
        ).SerializeToString()
        token = self._token()
        _push_snapshot(self.env.target, token, [message] * ISSUE_MESSAGES, outcome, hold_open=True)

    def worst(self, outcome: Outcome) -> None:
        _push_snapshot(self.env.target, self._token(), worst_snapshot(), outcome)

    def snapshots(self, outcome: Outcome) -> None:
        messages = worst_snapshot()
        tokens = [self._token() for _ in range(self.customers)]
        target = self.env.target
        _at_once([functools.partial(_push_snapshot, target, t, messages, outcome) for t in tokens])

    def batches(self, outcome: Outcome) -> None:
        rows = rows_per_message()
        start = datetime(2025, 1, 1, tzinfo=UTC)
        # Distinct rows for the first rounds, so the database does real inserts, not duplicates.
        batches = [_batch(i + 1, rows, start + BATCH_SPAN * i, 1) for i in range(4)]
        tokens = [self._token() for _ in range(self.customers)]
        until = time.monotonic() + self.seconds
        target = self.env.target
        _at_once([functools.partial(_stream_batches, target, t, batches, until, outcome) for t in tokens])

    def fleet(self, outcome: Outcome) -> None:
        now = datetime.now(UTC).replace(microsecond=0)
        live = [_batch(1, 100, now - timedelta(hours=1), d, 1.0) for d in range(1, 6)]
        backfill = [_batch(i + 1, 5_000, now - timedelta(days=30 + i), 1, 1.0) for i in range(4)]
        live_tokens = [self._token() for _ in range(300)]
        backfill_tokens = [self._token() for _ in range(10)]
        until = time.monotonic() + self.seconds
        target = self.env.target

        def jitter() -> float:
            return random.uniform(1.0, 5.0)

        _at_once(
            [functools.partial(_stream_batches, target, t, live, until, outcome, jitter) for t in live_tokens]
            + [
                functools.partial(_stream_batches, target, t, backfill, until, outcome)
                for t in backfill_tokens
            ]
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=8, help="customers at once in the xN scenarios")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the streaming scenarios")
    parser.add_argument(
        "--only",
        action="append",
        default=None,
        help="run only these scenarios (issue, bytes, rows, snapshots, batches, fleet)",
    )
    args = parser.parse_args(argv)
    env = BenchEnvironment.create()
    log = Path(tempfile.mkstemp(prefix="fleet-memory-", suffix=".log")[1])
    scenarios = Scenarios(env, args.customers, args.seconds, log)
    n = args.customers
    plan: list[tuple[str, str, Callable[[Outcome], None]]] = [
        ("issue", f"issue: {ISSUE_MESSAGES} x 3.9 MB, never closed", scenarios.issue),
        ("worst", "one snapshot at both budgets", scenarios.worst),
        ("snapshots", f"{n} such snapshots at once", scenarios.snapshots),
        ("batches", f"{n} streams of 4 MiB batches", scenarios.batches),
        ("fleet", "fleet: 300 live + 10 back-fills", scenarios.fleet),
    ]
    rows: list[Row] = []
    try:
        for key, name, scenario in plan:
            if args.only is None or key in args.only:
                rows.append(scenarios.run(name, scenario))
    finally:
        env.close()
    print(
        f"max_snapshot_bytes {DEFAULTS.max_snapshot_bytes / MIB:g} MiB, "
        f"max_snapshot_rows {DEFAULTS.max_snapshot_rows:,}, "
        f"max_snapshot_memory_bytes {DEFAULTS.max_snapshot_memory_bytes / MIB:g} MiB, "
        f"max_batch_memory_bytes {DEFAULTS.max_batch_memory_bytes / MIB:g} MiB, "
        f"max_message_bytes {DEFAULTS.max_message_bytes / MIB:g} MiB"
    )
    print(
        table(
            ["scenario", "RSS at rest MB", "peak RSS MB", "RSS after MB", "seconds", "calls"],
            [
                [
                    r.scenario,
                    _mb(r.rest_kib),
                    _mb(r.peak_kib),
                    _mb(r.after_kib),
                    f"{r.seconds:.1f}",
                    r.outcome,
                ]
                for r in rows
            ],
        )
    )
    print(f"server log: {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
