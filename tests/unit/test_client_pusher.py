"""Pusher.tick() against a scripted ingest double: order, hash skip, caps, cursor, backoff, token refusal.

The portal and the push state are real SQLite databases; only the network side is a double here
(tests/integration/test_client_* run the same pusher against the real server).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from fleet.v1 import ingest_service_pb2 as pb
from fleet.v1 import resources_pb2 as res
from sqlalchemy import Engine, create_engine, insert, update

from fleet_client import portal_schema as t
from fleet_client.backoff import Backoff
from fleet_client.client import token_fingerprint
from fleet_client.errors import (
    FailedPrecondition,
    FleetRpcError,
    InvalidArgument,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from fleet_client.pusher import Outcome, Pusher, PushOptions
from fleet_client.rows import Cursor
from fleet_client.source import SqlSource
from fleet_client.state import PushState
from fleet_server.clock import FakeClock

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


# -- the ingest double ---------------------------------------------------------------------------


@dataclass
class FakeIngest:
    """Records every call; `fail[resource]` queues errors to raise; measurements dedup by key."""

    token: str = "fleet_token_one"
    calls: list[str] = field(default_factory=list)
    snapshots: dict[str, list[Any]] = field(default_factory=dict)
    fail: dict[str, deque[FleetRpcError]] = field(default_factory=dict)
    stored: dict[tuple[int, str, datetime], float] = field(default_factory=dict)
    batches: list[int] = field(default_factory=list)  # sizes of every batch received
    fail_ack_after: int | None = None  # fail the stream after this many acks
    reject_row: int | None = None  # INVALID_ARGUMENT naming measurements[reject_row] of the next batch
    refuse_values: set[float] = field(default_factory=set)  # rows with these values are always refused
    refused_tokens: set[str] = field(default_factory=set)

    @property
    def token_fingerprint(self) -> str:
        return token_fingerprint(self.token)

    def set_token(self, token: str) -> None:
        self.token = token

    def _call(self, resource: str) -> None:
        self.calls.append(resource)
        if self.token in self.refused_tokens:
            raise Unauthenticated("unknown token")
        queued = self.fail.get(resource)
        if queued:
            raise queued.popleft()

    def _snapshot(self, resource: str, items: Any) -> Any:
        self._call(resource)
        self.snapshots[resource] = list(items)
        return pb.PushSitesResponse(summary=res.SyncSummary(received=len(items)))

    def push_sites(self, sites: Any) -> Any:
        return self._snapshot("sites", sites)

    def push_devices(self, devices: Any) -> Any:
        return self._snapshot("devices", devices)

    def push_municipalities(self, municipalities: Any) -> Any:
        return self._snapshot("municipalities", municipalities)

    def push_tariffs(self, tariffs: Any) -> Any:
        return pb.PushTariffsResponse(summary=self._snapshot("tariffs", tariffs).summary)

    def measurement_stream(self) -> FakeStream:
        self._call("measurements")
        return FakeStream(self)


class FakeStream:
    def __init__(self, ingest: FakeIngest) -> None:
        self.ingest = ingest
        self.pending: deque[pb.PushMeasurementsRequest] = deque()
        self.acks = 0
        self.max_pending = 0

    def send(self, request: pb.PushMeasurementsRequest) -> None:
        self.pending.append(request)
        self.max_pending = max(self.max_pending, len(self.pending))

    def next_ack(self) -> pb.PushMeasurementsResponse:
        ingest = self.ingest
        if ingest.fail_ack_after is not None and self.acks >= ingest.fail_ack_after:
            raise Unavailable("server went away")
        request = self.pending.popleft()
        if ingest.reject_row is not None:
            row = ingest.reject_row
            ingest.reject_row = None
            raise InvalidArgument(
                f"measurements[{row}].value: must be finite",
                field_violations=((f"measurements[{row}].value", "must be finite"),),
            )
        bad = [i for i, m in enumerate(request.measurements) if m.value in ingest.refuse_values]
        if bad:
            raise InvalidArgument(
                f"measurements[{bad[0]}].value: must be finite and within ±1e15"
                + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""),
                reason="INVALID_ARGUMENT",
                field_violations=tuple(
                    (f"measurements[{i}].value", "must be finite and within ±1e15") for i in bad[:20]
                ),
            )
        accepted = duplicates = 0
        for m in request.measurements:
            key = (m.device_id, m.metric, m.time.ToDatetime(tzinfo=UTC))
            if key in ingest.stored:
                duplicates += 1
            else:
                ingest.stored[key] = m.value
                accepted += 1
        ingest.batches.append(len(request.measurements))
        self.acks += 1
        return pb.PushMeasurementsResponse(
            batch_id=request.batch_id, accepted=accepted, duplicates=duplicates
        )

    def close(self) -> None:
        assert not self.pending

    def cancel(self) -> None:
        self.pending.clear()

    def __enter__(self) -> FakeStream:
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.cancel()


# -- portal helpers ------------------------------------------------------------------------------


def reference_data(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(insert(t.municipalities), [{"id": 1, "name": "Phase23 Test City", "region": "GP"}])
        conn.execute(
            insert(t.sites),
            [
                {
                    "id": 1,
                    "name": "Plant",
                    "timezone": "Africa/Johannesburg",
                    "municipality_id": 1,
                    "tariff_id": 7,
                },
                {"id": 2, "name": "Office", "timezone": "", "municipality_id": None, "tariff_id": None},
            ],
        )
        conn.execute(insert(t.devices), [{"id": 10, "site_id": 1, "name": "Meter"}])
        conn.execute(
            insert(t.tariffs),
            [
                {
                    "id": 7,
                    "municipality_id": 1,
                    "name": "Domestic TOU",
                    "is_active": True,
                    "effective_from": datetime(2025, 1, 1, tzinfo=UTC),
                    "default_rate": Decimal("2.10"),
                    "fixed_charge": Decimal("100"),
                    "vat_percent": Decimal("15"),
                    "currency": "ZAR",
                }
            ],
        )
        conn.execute(
            insert(t.tariff_periods),
            [
                {
                    "tariff_id": 7,
                    "id": 2,
                    "name": "Off-Peak",
                    "days_of_week": 96,
                    "start_time": "00:00",
                    "end_time": "23:59",
                    "rate": Decimal("1.20"),
                },
                {
                    "tariff_id": 7,
                    "id": 1,
                    "name": "Peak",
                    "days_of_week": 31,
                    "start_time": "17:00",
                    "end_time": "20:00",
                    "rate": Decimal("3.75"),
                },
            ],
        )


def add_readings(engine: Engine, count: int, received_at: datetime | None = None, *, start: int = 0) -> None:
    """`count` readings of device 10; each its own received_at (1 s apart) unless one is given."""
    base = datetime(2025, 6, 1, tzinfo=UTC)
    rows = [
        {
            "device_id": 10,
            "metric": "energy_kwh",
            "time": base + timedelta(minutes=15 * i),
            "value": float(i),
            "received_at": received_at or (T0 - timedelta(days=1) + timedelta(seconds=i)),
        }
        for i in range(start, start + count)
    ]
    with engine.begin() as conn:
        conn.execute(insert(t.measurements), rows)


@dataclass
class Rig:
    engine: Engine
    ingest: FakeIngest
    state: PushState
    clock: FakeClock
    pusher: Pusher


@pytest.fixture
def rig_factory(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(rand: float = 1.0, **options: Any) -> Rig:
        engine = create_engine(f"sqlite:///{tmp_path / 'portal.db'}")
        t.create_portal_schema(engine)
        clock = FakeClock(T0)
        state = PushState.open(f"sqlite:///{tmp_path / 'state.db'}", clock)
        state.acquire()
        ingest = FakeIngest()
        pusher = Pusher(
            SqlSource(engine),
            ingest,
            state,
            options=PushOptions(**options),
            backoff=Backoff(20.0, 600.0, lambda: rand),
            clock=clock,
        )
        rig = Rig(engine, ingest, state, clock, pusher)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.state.release()
        rig.state.close()
        rig.engine.dispose()


@pytest.fixture
def rig(rig_factory: Callable[..., Rig]) -> Rig:
    return rig_factory()


# -- reference data ------------------------------------------------------------------------------


def test_first_tick_pushes_in_dependency_order_then_measurements(rig: Rig) -> None:
    reference_data(rig.engine)
    add_readings(rig.engine, 3)
    report = rig.pusher.tick()
    assert rig.ingest.calls == ["sites", "devices", "municipalities", "tariffs", "measurements"]
    assert report.ok
    assert [s.id for s in rig.ingest.snapshots["sites"]] == [1, 2]
    tariff = rig.ingest.snapshots["tariffs"][0]
    assert [p.id for p in tariff.periods] == [1, 2]  # periods in id order
    assert tariff.default_rate == "2.10"
    assert rig.ingest.snapshots["sites"][1].HasField("municipality_id") is False
    assert len(rig.ingest.stored) == 3


def test_unchanged_second_tick_opens_no_stream(rig: Rig) -> None:
    reference_data(rig.engine)
    add_readings(rig.engine, 3)
    rig.pusher.tick()
    rig.ingest.calls.clear()
    rig.clock.advance(20)
    report = rig.pusher.tick()
    assert rig.ingest.calls == []
    assert report.streams_opened == 0
    assert report.rows_sent == 0
    assert {r.outcome for r in report.results} == {Outcome.UNCHANGED, Outcome.UP_TO_DATE}


def test_a_changed_set_alone_is_pushed_again(rig: Rig) -> None:
    reference_data(rig.engine)
    rig.pusher.tick()
    rig.ingest.calls.clear()
    with rig.engine.begin() as conn:
        conn.execute(update(t.tariff_periods).where(t.tariff_periods.c.id == 1).values(rate=Decimal("3.80")))
    rig.pusher.tick()
    assert rig.ingest.calls == ["tariffs"]
    assert rig.ingest.snapshots["tariffs"][0].periods[0].rate == "3.80"


def test_resync_interval_forces_a_snapshot(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory(resync_interval_s=3600)
    reference_data(rig.engine)
    rig.pusher.tick()
    rig.ingest.calls.clear()
    rig.clock.advance(3599)
    rig.pusher.tick()
    assert rig.ingest.calls == []
    rig.clock.advance(1)
    rig.pusher.tick()
    assert rig.ingest.calls == ["sites", "devices", "municipalities", "tariffs"]


def test_failed_sites_skip_devices_and_failed_municipalities_skip_tariffs(rig: Rig) -> None:
    reference_data(rig.engine)
    rig.ingest.fail["sites"] = deque([InvalidArgument("sites[1].timezone: unknown time zone")])
    rig.ingest.fail["municipalities"] = deque([FailedPrecondition("nope")])
    report = rig.pusher.tick()
    assert rig.ingest.calls == ["sites", "municipalities"]
    assert report.result("devices").outcome is Outcome.SKIPPED
    assert report.result("tariffs").outcome is Outcome.SKIPPED
    assert not report.ok
    sites = rig.state.load("sites")
    assert sites.last_error == "INVALID_ARGUMENT: sites[1].timezone: unknown time zone"
    assert sites.failures == 1
    assert sites.snapshot_hash is None
    # While sites back off, devices stay skipped; once sites succeed, devices follow in the same tick.
    rig.ingest.calls.clear()
    rig.clock.advance(5)
    report = rig.pusher.tick()
    assert rig.ingest.calls == []
    assert report.result("sites").outcome is Outcome.BACKING_OFF
    assert report.result("devices").outcome is Outcome.SKIPPED
    rig.clock.advance(600)
    report = rig.pusher.tick()
    assert rig.ingest.calls == ["sites", "devices", "municipalities", "tariffs"]
    assert report.ok
    assert rig.state.load("sites").failures == 0
    assert rig.state.load("sites").last_error is None


def _wait(rig: Rig, resource: str = "sites") -> float:
    """Seconds until `resource` may be attempted again."""
    next_attempt = rig.state.load(resource).next_attempt
    assert next_attempt is not None
    return (next_attempt - rig.clock.now()).total_seconds()


# -- backoff -------------------------------------------------------------------------------------


def test_backoff_grows_to_the_cap_and_resets_on_success(rig: Rig) -> None:
    reference_data(rig.engine)
    rig.ingest.fail["sites"] = deque(Unavailable("connection refused") for _ in range(7))
    delays = []
    for _ in range(7):
        rig.pusher.tick()
        sites = rig.state.load("sites")
        assert sites.next_attempt is not None
        delay = (sites.next_attempt - rig.clock.now()).total_seconds()
        delays.append(delay)
        # Not a moment before the next attempt is due:
        rig.clock.advance(delay - 1)
        calls = len(rig.ingest.calls)
        rig.pusher.tick()
        assert rig.ingest.calls[calls:].count("sites") == 0
        rig.clock.advance(1)
    assert delays == [20, 40, 80, 160, 320, 600, 600]
    rig.pusher.tick()
    sites = rig.state.load("sites")
    assert (sites.failures, sites.next_attempt, sites.last_error) == (0, None, None)
    rig.ingest.fail["sites"] = deque([Unavailable("again")])
    rig.clock.advance(3 * 86400)  # past the resync interval, so the unchanged set is pushed
    rig.pusher.tick()
    assert _wait(rig) == 20


def test_full_jitter_draws_below_the_ceiling(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory(rand=0.25)
    reference_data(rig.engine)
    rig.ingest.fail["sites"] = deque([Unavailable("down"), Unavailable("down")])
    rig.pusher.tick()
    assert _wait(rig) == 5
    rig.clock.advance(5)
    rig.pusher.tick()
    assert _wait(rig) == 10


def test_server_retry_after_is_honoured(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory(rand=0.0)
    add_readings(rig.engine, 3)
    rig.ingest.fail["measurements"] = deque([ResourceExhausted("row budget", retry_after_ms=90_000)])
    report = rig.pusher.tick()
    assert report.result("measurements").outcome is Outcome.FAILED
    state = rig.state.load("measurements")
    assert state.next_attempt == rig.clock.now() + timedelta(seconds=90)
    assert state.last_error == "RESOURCE_EXHAUSTED: row budget"


# -- measurements --------------------------------------------------------------------------------


def test_backlog_of_20000_rows_takes_four_capped_ticks(rig: Rig) -> None:
    add_readings(rig.engine, 20_000)
    sent = []
    for _ in range(4):
        report = rig.pusher.tick()
        sent.append(report.rows_sent)
        rig.clock.advance(20)
    assert sent == [5_000] * 4
    assert set(rig.ingest.batches) == {500}
    assert len(rig.ingest.stored) == 20_000
    assert report.backlog is False
    assert report.progress is not None
    assert (report.progress.rows_sent, report.progress.rows_left) == (20_000, 0)
    calls = len(rig.ingest.calls)
    report = rig.pusher.tick()
    assert report.rows_sent == 0
    assert len(rig.ingest.calls) == calls  # no stream opened


def test_backlog_progress_reports_rows_left(rig: Rig) -> None:
    add_readings(rig.engine, 12_000)
    report = rig.pusher.tick()
    assert report.backlog is True
    assert report.progress is not None
    assert (report.progress.rows_sent, report.progress.rows_left) == (5_000, 7_000)
    assert "5,000 rows sent, 7,000 left" in str(report.progress)


def test_rows_sharing_one_received_at_across_batch_boundaries(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory(batch_size=500, max_rows_per_tick=700)
    add_readings(rig.engine, 1_234, received_at=T0 - timedelta(minutes=1))
    rig.pusher.tick()
    assert rig.ingest.batches == [500, 200]
    rig.pusher.tick()
    assert rig.ingest.batches == [500, 200, 500, 34]
    assert len(rig.ingest.stored) == 1_234
    report = rig.pusher.tick()
    assert report.rows_sent == 0
    assert sum(rig.ingest.batches) == 1_234  # nothing resent


def test_safety_lag_keeps_a_late_commit_from_being_skipped(rig: Rig) -> None:
    now = rig.clock.now()
    with rig.engine.begin() as conn:  # visible now: received 1 s ago (inside the 5 s lag)
        conn.execute(
            insert(t.measurements),
            [
                {
                    "device_id": 10,
                    "metric": "m",
                    "time": now,
                    "value": 1.0,
                    "received_at": now - timedelta(seconds=1),
                }
            ],
        )
    report = rig.pusher.tick()
    assert report.rows_sent == 0  # not read yet: it is inside the safety lag
    # A transaction that started earlier commits now, with an older received_at.
    with rig.engine.begin() as conn:
        conn.execute(
            insert(t.measurements),
            [
                {
                    "device_id": 10,
                    "metric": "m",
                    "time": now - timedelta(minutes=15),
                    "value": 2.0,
                    "received_at": now - timedelta(seconds=3),
                }
            ],
        )
    rig.clock.advance(5)
    report = rig.pusher.tick()
    assert report.rows_sent == 2
    assert sorted(rig.ingest.stored.values()) == [1.0, 2.0]


def test_rows_exactly_at_the_lag_edge_are_read(rig: Rig) -> None:
    now = rig.clock.now()
    with rig.engine.begin() as conn:
        conn.execute(
            insert(t.measurements),
            [
                {
                    "device_id": 1,
                    "metric": "m",
                    "time": now,
                    "value": 1.0,
                    "received_at": now - timedelta(seconds=5),
                },
                {
                    "device_id": 2,
                    "metric": "m",
                    "time": now,
                    "value": 1.0,
                    "received_at": now - timedelta(seconds=4.999),
                },
            ],
        )
    assert rig.pusher.tick().rows_sent == 1


def test_cursor_moves_only_on_acknowledgement(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory(batch_size=100, max_rows_per_tick=1_000, window=3)
    add_readings(rig.engine, 1_000)
    acked: list[Cursor] = []
    rig.pusher.on_batch_acked = lambda batch_id, cursor, ack: acked.append(cursor)
    rig.ingest.fail_ack_after = 4
    report = rig.pusher.tick()
    assert report.result("measurements").outcome is Outcome.FAILED
    assert report.result("measurements").rows == 400
    state = rig.state.load("measurements")
    assert state.cursor == acked[-1]
    assert state.cursor is not None
    assert state.cursor.time == datetime(2025, 6, 1, tzinfo=UTC) + timedelta(minutes=15 * 399)
    assert state.rows_sent == 400
    assert state.last_error == "UNAVAILABLE: server went away"
    # Next tick resumes after the last acknowledged row: the unacknowledged batches are sent again.
    rig.ingest.fail_ack_after = None
    rig.clock.advance(600)
    report = rig.pusher.tick()
    assert report.rows_sent == 600
    assert report.result("measurements").duplicates == 0
    assert len(rig.ingest.stored) == 1_000


def test_no_more_than_window_batches_are_unacknowledged(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory(batch_size=10, max_rows_per_tick=200, window=3)
    add_readings(rig.engine, 200)
    streams: list[FakeStream] = []
    original = rig.ingest.measurement_stream

    def spy() -> FakeStream:
        stream = original()
        streams.append(stream)
        return stream

    rig.ingest.measurement_stream = spy  # type: ignore[method-assign]
    rig.pusher.tick()
    assert streams[0].max_pending == 3
    assert len(rig.ingest.batches) == 20


def test_rejected_row_is_named_in_the_last_error(rig: Rig) -> None:
    add_readings(rig.engine, 10)
    rig.ingest.reject_row = 3
    rig.pusher.tick()
    error = rig.state.load("measurements").last_error
    assert error is not None
    assert error.startswith("INVALID_ARGUMENT: measurements[3].value: must be finite")
    assert "device_id=10 metric=energy_kwh time=2025-06-01T00:45:00+00:00" in error
    assert rig.state.load("measurements").cursor is None


def test_a_refused_row_is_quarantined_and_the_rows_behind_it_flow(rig: Rig) -> None:
    add_readings(rig.engine, 10)
    rig.ingest.refuse_values = {3.0}

    report = rig.pusher.tick()

    result = report.result("measurements")
    assert result.outcome is Outcome.QUARANTINED
    assert report.backlog is True  # `run` ticks again at once: nothing to wait for
    assert not report.ok  # `once` says something was refused
    state = rig.state.load("measurements")
    assert state.last_error is not None
    assert state.last_error.startswith(
        "INVALID_ARGUMENT: measurements[3].value: must be finite and within ±1e15"
    )
    assert (state.failures, state.next_attempt) == (0, None)
    (quarantined,) = rig.state.quarantined()
    assert (quarantined.row.value, quarantined.status, quarantined.reason) == (
        3.0,
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
    )
    assert "device_id=10 metric=energy_kwh time=2025-06-01T00:45:00+00:00" in quarantined.message

    report = rig.pusher.tick()

    assert report.ok
    assert report.result("measurements").rows == 9
    assert sorted(rig.ingest.stored.values()) == [float(i) for i in range(10) if i != 3]
    assert rig.state.load("measurements").last_error is None
    assert rig.state.quarantine_count() == 1  # kept, for the operator to see


def test_more_refused_rows_than_one_refusal_names_are_all_set_aside(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory(batch_size=100)
    add_readings(rig.engine, 100)
    rig.ingest.refuse_values = {float(i) for i in range(0, 100, 2)}  # 50 bad rows, 20 named per refusal

    outcomes = [rig.pusher.tick().result("measurements").outcome for _ in range(4)]

    assert outcomes == [Outcome.QUARANTINED] * 3 + [Outcome.PUSHED]
    assert rig.state.quarantine_count() == 50
    assert len(rig.ingest.stored) == 50


def test_quarantined_rows_at_the_end_of_the_data_are_passed_by_the_cursor(rig: Rig) -> None:
    add_readings(rig.engine, 10)
    rig.ingest.refuse_values = {8.0, 9.0}
    assert rig.pusher.tick().result("measurements").outcome is Outcome.QUARANTINED
    assert rig.pusher.tick().result("measurements").rows == 8

    report = rig.pusher.tick()

    assert report.result("measurements").outcome is Outcome.UP_TO_DATE
    cursor = rig.state.load("measurements").cursor
    assert cursor is not None
    assert cursor.time == datetime(2025, 6, 1, tzinfo=UTC) + timedelta(minutes=15 * 9)  # past them
    calls = len(rig.ingest.calls)
    rig.pusher.tick()
    assert len(rig.ingest.calls) == calls  # nothing is read or sent again


def test_released_rows_are_sent_again(rig: Rig) -> None:
    add_readings(rig.engine, 10)
    rig.ingest.refuse_values = {3.0}
    rig.pusher.tick()
    rig.pusher.tick()
    assert len(rig.ingest.stored) == 9
    rig.ingest.refuse_values = set()  # fixed (here: the server changed its mind)

    assert rig.state.release_quarantine() == 1
    report = rig.pusher.tick()

    assert report.result("measurements").accepted == 1
    assert len(rig.ingest.stored) == 10
    assert rig.state.quarantine_count() == 0


def test_stop_request_finishes_in_flight_batches_then_stops(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory(batch_size=100, max_rows_per_tick=5_000, window=2)
    add_readings(rig.engine, 1_000)
    rig.pusher.on_batch_acked = lambda batch_id, cursor, ack: rig.pusher.request_stop()
    report = rig.pusher.tick()
    assert report.result("measurements").outcome is Outcome.STOPPED
    # The first ack asked to stop; the second batch was already in flight and is acknowledged too.
    assert report.rows_sent == 200
    assert rig.state.load("measurements").rows_sent == 200


# -- token refusal -------------------------------------------------------------------------------


def test_unauthenticated_stops_everything_until_the_token_changes(rig: Rig, caplog) -> None:
    reference_data(rig.engine)
    add_readings(rig.engine, 5)
    rig.ingest.refused_tokens.add("fleet_token_one")
    report = rig.pusher.tick()
    assert report.blocked
    assert rig.ingest.calls == ["sites"]
    block = rig.state.auth_block()
    assert block is not None
    assert block.fingerprint == token_fingerprint("fleet_token_one")
    assert "fleet_token_one" not in caplog.text
    assert "FLEET_TOKEN" in caplog.text
    # Nothing at all is attempted while the token is the refused one, however long we wait.
    rig.ingest.calls.clear()
    rig.clock.advance(7 * 86400)
    report = rig.pusher.tick()
    assert report.blocked
    assert rig.ingest.calls == []
    # A new token resumes at once.
    rig.ingest.set_token("fleet_token_two")
    report = rig.pusher.tick()
    assert report.ok
    assert rig.ingest.calls == ["sites", "devices", "municipalities", "tariffs", "measurements"]
    assert rig.state.auth_block() is None
    assert len(rig.ingest.stored) == 5


def test_source_failure_backs_off_with_the_reason(rig: Rig) -> None:
    with rig.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE devices")
    reference_data_rows = rig.pusher.tick()
    assert reference_data_rows.result("devices").outcome is Outcome.FAILED
    error = rig.state.load("devices").last_error
    assert error is not None
    assert error.startswith("reading devices from the portal failed: OperationalError")


def test_status_code_names_are_kept() -> None:
    error = InvalidArgument("x", code=grpc.StatusCode.INVALID_ARGUMENT)
    assert str(error) == "INVALID_ARGUMENT: x"


def test_the_last_error_keeps_the_servers_reason_when_it_says_more_than_the_status(rig: Rig) -> None:
    assert (
        Unauthenticated("gone", reason="TOKEN_REVOKED").detailed() == "UNAUTHENTICATED [TOKEN_REVOKED]: gone"
    )
    assert InvalidArgument("bad", reason="INVALID_ARGUMENT").detailed() == "INVALID_ARGUMENT: bad"
    add_readings(rig.engine, 3)
    rig.ingest.fail["measurements"] = deque(
        [
            ResourceExhausted(
                "row budget exhausted; retry in 5 ms", reason="ROW_BUDGET_EXHAUSTED", retry_after_ms=5
            )
        ]
    )
    rig.pusher.tick()
    assert rig.state.load("measurements").last_error == (
        "RESOURCE_EXHAUSTED [ROW_BUDGET_EXHAUSTED]: row budget exhausted; retry in 5 ms"
    )
