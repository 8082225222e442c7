"""The live lane and the back-fill lane against the ingest double: the split, live first, the shared
cap, the merge, restarts, and a randomised run that checks every reading arrives exactly once.

The portal and the push state are real SQLite databases (tests/e2e/test_push_lanes_kill.py does
the same with real processes killed at random points).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, delete, insert

from fleet_client import portal_schema as t
from fleet_client.backoff import Backoff
from fleet_client.errors import Unavailable
from fleet_client.lanes import LaneState
from fleet_client.pusher import Outcome, Pusher, PushOptions
from fleet_client.rows import Cursor
from fleet_client.source import SqlSource
from fleet_client.state import PushState
from fleet_server.clock import FakeClock
from tests.unit.test_client_pusher import FakeIngest

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
HISTORY_START = T0 - timedelta(days=30)


@dataclass
class Portal:
    engine: Engine
    clock: FakeClock
    next_time: int = 0

    def history(self, count: int, *, devices: int = 10) -> None:
        """`count` old readings, received over the last month (received_at ascending with the time)."""
        rows = []
        for i in range(count):
            step, device = divmod(i, devices)
            when = HISTORY_START + timedelta(minutes=15 * step)
            rows.append(_row(device + 1, when, float(i), when + timedelta(minutes=1)))
        self._insert(rows)

    def live(self, count: int, *, ago: float = 0.0, device: int = 900) -> list[tuple[int, str, datetime]]:
        """`count` readings received `ago` seconds before now, as a portal stamps them: never behind a
        horizon the pusher has already read up to (so `ago` stays under the 5 s safety lag)."""
        assert ago < 5
        received = self.clock.now() - timedelta(seconds=ago)
        rows = []
        for _ in range(count):
            self.next_time += 1
            rows.append(_row(device, T0 - timedelta(minutes=self.next_time), 1.0, received))
        self._insert(rows)
        return [(r["device_id"], r["metric"], r["time"]) for r in rows]

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(t.measurements), rows)

    def keys(self) -> dict[tuple[int, str, datetime], float]:
        source = SqlSource(self.engine)
        rows = source.measurements_after(None, 10**9, until=datetime(2100, 1, 1, tzinfo=UTC))
        return {(r.device_id, r.metric, r.time): r.value for r in rows}


def _row(device: int, when: datetime, value: float, received: datetime) -> dict[str, Any]:
    return {
        "device_id": device,
        "metric": "energy_kwh",
        "time": when,
        "value": value,
        "received_at": received,
    }


@dataclass
class Rig:
    portal: Portal
    ingest: FakeIngest
    clock: FakeClock
    state_url: str
    options: PushOptions
    state: PushState
    pusher: Pusher

    def restart(self) -> None:
        """A new process: the state reopened from its file, nothing kept in memory."""
        self.state.release()
        self.state.close()
        self.state = PushState.open(self.state_url, self.clock)
        self.state.acquire()
        self.pusher = _pusher(self.portal.engine, self.ingest, self.state, self.clock, self.options)

    def tick(self, wait: float = 6.0) -> Any:
        """Tick `wait` seconds later (by default past the safety lag: what arrived before is read)."""
        self.clock.advance(wait)
        return self.pusher.tick()

    def lanes(self) -> LaneState:
        return self.state.load_lanes()

    def cursor(self) -> Cursor | None:
        return self.state.load("measurements").cursor


def _pusher(
    engine: Engine, ingest: FakeIngest, state: PushState, clock: FakeClock, options: PushOptions
) -> Pusher:
    return Pusher(
        SqlSource(engine), ingest, state, options=options, backoff=Backoff(1.0, 1.0, lambda: 0.0), clock=clock
    )


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(**options: Any) -> Rig:
        engine = create_engine(f"sqlite:///{tmp_path / 'portal.db'}")
        t.create_portal_schema(engine)
        clock = FakeClock(T0)
        url = f"sqlite:///{tmp_path / 'state.db'}"
        state = PushState.open(url, clock)
        state.acquire()
        ingest = FakeIngest()
        opts = PushOptions(**options)
        rig = Rig(
            Portal(engine, clock),
            ingest,
            clock,
            url,
            opts,
            state,
            _pusher(engine, ingest, state, clock, opts),
        )
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.state.release()
        rig.state.close()
        rig.portal.engine.dispose()


# -- the split -----------------------------------------------------------------------------------


def test_a_one_lane_tick_that_hits_the_cap_splits_off_a_live_lane_at_the_newest_key(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    rig.portal.history(20_000)
    newest = SqlSource(rig.portal.engine).newest_measurement(until=T0)
    report = rig.tick()
    assert report.rows_sent == 5_000
    assert report.backlog is True
    lanes = rig.lanes()
    assert lanes.split == newest
    assert lanes.live_cursor == newest
    assert (lanes.backfill_rows, lanes.backfill_total) == (5_000, 20_000)
    assert report.progress is not None
    assert (report.progress.rows_sent, report.progress.rows_left) == (5_000, 15_000)
    # The measurement cursor is the back-fill lane's: everything up to it is acknowledged.
    cursor = rig.cursor()
    assert cursor is not None
    assert cursor.time == HISTORY_START + timedelta(minutes=15 * 499)


def test_a_tick_that_ends_with_the_data_splits_nothing(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.portal.history(4_000)
    report = rig.tick()
    assert report.rows_sent == 4_000
    assert report.backlog is False
    assert report.progress is None
    assert rig.lanes().split is None


# -- live first, one cap -------------------------------------------------------------------------


def test_live_readings_go_first_and_the_backfill_gets_the_rest_of_the_cap(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    rig.portal.history(20_000)
    rig.tick()
    received = rig.clock.now()
    live = rig.portal.live(30)
    before = len(rig.ingest.batches)
    report = rig.tick()
    assert rig.ingest.batches[before:] == [30, 500, 500, 500, 500, 500, 500, 500, 500, 500, 470]
    assert report.rows_sent == 5_000  # the cap is for both lanes together
    assert all(key in rig.ingest.stored for key in live)
    assert report.result("measurements").detail.endswith("; live 30, back-fill 4,970")
    lanes = rig.lanes()
    assert lanes.split is not None
    assert lanes.live_cursor is not None
    assert lanes.live_cursor.received_at == received
    assert lanes.backfill_rows == 9_970
    assert report.progress is not None
    assert (report.progress.rows_sent, report.progress.rows_left) == (9_970, 10_030)
    assert report.progress.live_lag_s == 0.0  # the newest reading at the portal is acknowledged


def test_with_nothing_new_the_backfill_has_the_whole_cap(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.portal.history(20_000)
    rig.tick()
    before = len(rig.ingest.batches)
    report = rig.tick()
    assert rig.ingest.batches[before:] == [500] * 10
    assert report.result("measurements").detail.endswith("; live 0, back-fill 5,000")


def test_live_readings_inside_the_safety_lag_wait_for_the_next_tick(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.portal.history(20_000)
    rig.tick()
    fresh = rig.portal.live(5)
    report = rig.tick(wait=4.9)
    assert not any(key in rig.ingest.stored for key in fresh)
    assert report.progress is not None
    assert report.progress.live_lag_s is not None
    assert report.progress.live_lag_s > 0  # newer readings wait at the portal
    rig.tick(wait=0.1)
    assert all(key in rig.ingest.stored for key in fresh)


def test_a_busy_live_lane_may_take_the_whole_cap(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(max_rows_per_tick=1_000)
    rig.portal.history(5_000)
    rig.tick()
    rig.portal.live(1_500)
    backfill_before = rig.cursor()
    rig.tick()
    assert rig.cursor() == backfill_before  # the live lane took all 1,000
    rig.tick()
    cursor = rig.cursor()
    assert cursor is not None
    assert backfill_before is not None
    assert cursor > backfill_before  # 500 live left, so 500 for the back-fill


def test_while_the_server_is_away_the_live_lag_and_backlog_grow_and_the_live_lane_catches_up_first(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(max_rows_per_tick=1_000)
    rig.portal.history(6_000)
    rig.tick()
    rig.ingest.fail["measurements"] = deque(Unavailable("server went away") for _ in range(3))
    for _ in range(3):
        rig.portal.live(400)
        report = rig.tick(wait=60.0)
        assert report.result("measurements").outcome is Outcome.FAILED
    figures = rig.pusher.lanes
    assert figures is not None
    assert figures.backfilling
    assert figures.live_waiting == 1_200
    assert figures.backlog_rows == {"live": 1_200, "back-fill": 5_000}
    assert figures.live_lag_s is not None
    assert figures.live_lag_s >= 180  # the newest reading is three minutes younger than any acknowledged
    backfill = rig.cursor()
    rig.tick()  # back: the live lane's 1,000 first
    assert rig.cursor() == backfill
    rig.tick()  # its last 200, then the back-fill again
    figures = rig.pusher.lanes
    assert figures is not None
    assert (figures.live_lag_s, figures.live_waiting, figures.backfill_rows_left) == (0.0, 0, 4_200)


# -- the merge -----------------------------------------------------------------------------------


def test_the_lanes_merge_when_the_backfill_reaches_the_split(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.portal.history(12_000)
    rig.tick()
    rig.portal.live(7)
    rig.tick()
    rig.portal.live(3)
    report = rig.tick()  # the back-fill's last 2,000 after 3 live
    assert report.backlog is False
    assert report.progress is not None
    assert (report.progress.rows_sent, report.progress.rows_left) == (12_000, 0)
    lanes = rig.lanes()
    assert lanes.split is None
    assert lanes.live_cursor is None
    assert lanes.backfill_finished == rig.clock.now()
    assert rig.cursor() == Cursor(*_newest(rig))  # the live cursor became the one cursor
    assert rig.ingest.stored == rig.portal.keys()
    # One lane again: new readings go straight out, nothing else.
    rig.portal.live(4)
    before = len(rig.ingest.batches)
    report = rig.tick()
    assert rig.ingest.batches[before:] == [4]
    assert report.progress is None
    assert rig.state.load("measurements").rows_sent == len(rig.portal.keys())


def _newest(rig: Rig) -> Cursor:
    newest = SqlSource(rig.portal.engine).newest_measurement(until=rig.clock.now())
    assert newest is not None
    return newest


def test_a_backfill_ending_on_the_last_row_of_a_tick_merges_in_that_tick(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig()
    rig.portal.history(10_000)
    rig.tick()
    report = rig.tick()  # the back-fill's last 5,000, ending exactly on the split
    assert report.backlog is False
    assert rig.lanes().split is None
    calls = len(rig.ingest.calls)
    assert rig.tick().rows_sent == 0
    assert len(rig.ingest.calls) == calls  # no stream opened


def test_a_split_row_deleted_at_the_portal_ends_the_backfill_when_it_runs_dry(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(batch_size=100, max_rows_per_tick=500, window=2)
    rig.portal.history(1_301)
    rig.tick()
    split = rig.lanes().split
    assert split is not None
    _delete(rig.portal.engine, split)
    # 800 back-fill rows are left: a full tick, then a tick whose first read finds 300 and the
    # next none; the empty read hands the merge to the last back-fill batch in flight.
    rig.tick()
    assert rig.lanes().split is not None
    rig.portal.live(2)
    report = rig.tick()
    assert rig.lanes().split is None
    assert report.rows_sent == 302
    assert rig.ingest.stored == rig.portal.keys()
    assert rig.state.load("measurements").rows_sent == 1_302


def test_a_backfill_that_runs_dry_merges_only_once_its_batches_in_flight_are_acknowledged(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(batch_size=100, max_rows_per_tick=500, window=3)
    rig.portal.history(701)
    rig.tick()
    split = rig.lanes().split
    assert split is not None
    _delete(rig.portal.engine, split)
    # 200 back-fill rows are left: two batches go out, the third read finds nothing while both
    # are unacknowledged, and then the stream fails.
    rig.ingest.fail_ack_after = 0
    assert rig.tick().result("measurements").outcome is Outcome.FAILED
    assert rig.lanes().split is not None  # not merged: its last batches were never acknowledged
    rig.ingest.fail_ack_after = None
    rig.clock.advance(60)
    rig.tick()
    assert rig.lanes().split is None
    assert rig.ingest.stored == rig.portal.keys()


def _delete(engine: Engine, key: Cursor) -> None:
    m = t.measurements.c
    with engine.begin() as conn:
        conn.execute(delete(t.measurements).where(m.device_id == key.device_id, m.time == key.time))


def test_rows_committed_late_within_the_splits_instant_go_in_the_live_lane_only(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(batch_size=100, max_rows_per_tick=300)
    rig.portal.history(1_000)
    rig.tick()
    split = rig.lanes().split
    assert split is not None
    # Same received_at as the split, keys after it (a device with a higher id).
    with rig.portal.engine.begin() as conn:
        conn.execute(
            insert(t.measurements),
            [_row(split.device_id + 50, split.time, 9.0, split.received_at) for _ in range(1)],
        )
    while rig.lanes().split is not None:
        rig.tick()
    assert rig.ingest.stored == rig.portal.keys()
    assert sum(rig.ingest.batches) == 1_001  # nothing sent twice


# -- restarts and failures -----------------------------------------------------------------------


def test_both_lanes_survive_a_restart_mid_backfill(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    rig.portal.history(15_000)
    rig.tick()
    rig.portal.live(10)
    rig.tick()
    saved = rig.lanes()
    cursor = rig.cursor()
    rig.restart()
    assert rig.lanes() == saved
    assert rig.cursor() == cursor
    rig.portal.live(5)
    before = len(rig.ingest.batches)
    rig.tick()
    assert rig.ingest.batches[before] == 5  # the live lane resumed after its own cursor
    while rig.lanes().split is not None:
        rig.tick()
    assert rig.ingest.stored == rig.portal.keys()
    assert sum(rig.ingest.batches) == 15_015


def test_a_failed_stream_leaves_each_lane_at_its_last_acknowledged_batch(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(batch_size=100, max_rows_per_tick=1_000, window=3)
    rig.portal.history(3_000)
    rig.tick()
    received = rig.clock.now()
    rig.portal.live(150)  # two live batches (100 + 50), then the back-fill
    rig.ingest.fail_ack_after = 3
    report = rig.tick()
    assert report.result("measurements").outcome is Outcome.FAILED
    assert report.result("measurements").rows == 250
    lanes = rig.lanes()
    assert lanes.live_cursor is not None
    assert lanes.live_cursor.received_at == received
    cursor = rig.cursor()
    assert cursor is not None
    assert cursor.time == HISTORY_START + timedelta(minutes=15 * 109)  # 1,000 + 100 back-fill rows
    rig.ingest.fail_ack_after = None
    rig.clock.advance(600)
    while rig.lanes().split is not None:
        rig.tick()
    assert rig.ingest.stored == rig.portal.keys()
    assert sum(rig.ingest.batches) == 3_150  # the fake stores on acknowledgement: nothing twice


@pytest.mark.parametrize("seed", range(4))
def test_random_arrivals_failures_and_restarts_deliver_every_reading_once(
    make_rig: Callable[..., Rig], seed: int
) -> None:
    rand = random.Random(seed)
    cap = rand.choice([300, 500, 900])
    rig = make_rig(batch_size=rand.choice([50, 100, 170]), max_rows_per_tick=cap, window=3)
    rig.portal.history(cap * rand.randrange(4, 8) + rand.randrange(100))  # a back-fill of several ticks
    live_during_backfill = 0
    for _ in range(80):
        if rand.random() < 0.6:
            rig.portal.live(
                rand.randrange(1, 120), ago=rand.choice([0.0, 1.0, 4.0]), device=rand.randrange(500, 520)
            )
        if rand.random() < 0.15:
            rig.ingest.fail_ack_after = rand.randrange(0, 5)
        if rand.random() < 0.1:
            rig.restart()
        rig.tick(wait=rand.choice([0.5, 2.0, 6.0]))
        if rig.lanes().split is not None:  # live readings already stored while the back-fill runs
            live_during_backfill = max(
                live_during_backfill, sum(1 for key in rig.ingest.stored if key[0] >= 500)
            )
        rig.ingest.fail_ack_after = None
        if rand.random() < 0.2:
            rig.clock.advance(60)  # past any backoff
    rig.clock.advance(600)
    for _ in range(100):
        report = rig.tick()
        if not report.rows_sent and rig.lanes().split is None:
            break
        rig.clock.advance(60)
    assert live_during_backfill > 0  # the live lane did run beside the back-fill
    assert rig.ingest.stored == rig.portal.keys()
    assert sum(rig.ingest.batches) == len(rig.ingest.stored)  # no acknowledged reading sent again
    assert rig.state.load("measurements").rows_sent == len(rig.ingest.stored)
