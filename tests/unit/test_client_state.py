"""PushState: persistence across restarts, the lock row, takeover of abandoned locks, fencing."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text, update

from fleet_client.lanes import LaneState
from fleet_client.rows import Cursor
from fleet_client.state import PushLocked, PushState, ResourceState, lock_table
from fleet_server.clock import FakeClock

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'nested' / 'state.db'}"


def test_state_survives_a_restart(url: str) -> None:
    clock = FakeClock(T0)
    state = PushState.open(url, clock)
    state.acquire()
    cursor = Cursor(T0, 3, "power_w", T0 - timedelta(minutes=15))
    state.save(
        ResourceState(
            "measurements",
            cursor=cursor,
            last_attempt=T0,
            last_success=T0,
            failures=2,
            next_attempt=T0 + timedelta(seconds=40),
            last_error="UNAVAILABLE: down",
            rows_sent=1500,
        )
    )
    state.save(ResourceState("sites", snapshot_hash="ab" * 32, last_success=T0))
    state.release()
    state.close()

    reopened = PushState.open(url, clock)
    rows = {r.resource: r for r in reopened.load_all()}
    assert list(rows) == ["sites", "devices", "municipalities", "tariffs", "measurements"]
    m = rows["measurements"]
    assert m.cursor == cursor
    assert (m.failures, m.next_attempt, m.last_error, m.rows_sent) == (
        2,
        T0 + timedelta(seconds=40),
        "UNAVAILABLE: down",
        1500,
    )
    assert rows["sites"].snapshot_hash == "ab" * 32
    assert rows["devices"] == ResourceState("devices")
    reopened.close()


def test_a_second_pusher_refuses_to_run(url: str) -> None:
    first, second = PushState.open(url, FakeClock(T0)), PushState.open(url, FakeClock(T0))
    first.acquire()
    with pytest.raises(
        PushLocked, match=r"another fleet-push is already pushing from this state \(pid \d+ on "
    ):
        second.acquire()
    with pytest.raises(PushLocked, match="written only by the pusher holding its lock"):
        second.save(ResourceState("sites"))
    first.release()
    second.acquire()  # free again once the first let go
    second.release()


def test_a_stale_lock_is_taken_over_and_the_old_holder_is_fenced_off(url: str) -> None:
    clock = FakeClock(T0)
    old, new = PushState.open(url, clock, stale_after_s=300), PushState.open(url, clock, stale_after_s=300)
    old.acquire()
    clock.advance(299)
    with pytest.raises(PushLocked):
        new.acquire()
    clock.advance(2)
    new.acquire()
    with pytest.raises(PushLocked, match="took over"):
        old.save(ResourceState("sites", snapshot_hash="x"))
    assert new.load("sites").snapshot_hash is None
    new.save(ResourceState("sites", snapshot_hash="y"))
    assert new.load("sites").snapshot_hash == "y"


def test_a_lock_of_a_dead_process_on_this_host_is_taken_over(url: str) -> None:
    clock = FakeClock(T0)
    holder = PushState.open(url, clock)
    holder.acquire()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    with holder.engine.begin() as conn:
        conn.execute(update(lock_table).values(pid=int(gone.stdout)))
    successor = PushState.open(url, clock)
    successor.acquire()
    assert successor.lock_holder() is not None


def test_auth_block_round_trip(url: str) -> None:
    state = PushState.open(url, FakeClock(T0))
    state.acquire()
    assert state.auth_block() is None
    state.block_auth("sha256:0123456789ab", "UNAUTHENTICATED: unknown token")
    block = state.auth_block()
    assert block is not None
    assert (block.fingerprint, block.message, block.at) == (
        "sha256:0123456789ab",
        "UNAUTHENTICATED: unknown token",
        T0,
    )
    state.clear_auth_block()
    assert state.auth_block() is None


def test_lanes_are_saved_with_the_cursor_and_survive_a_restart(url: str) -> None:
    clock = FakeClock(T0)
    state = PushState.open(url, clock)
    state.acquire()
    assert state.load_lanes() == LaneState()  # never saved: one lane
    split = Cursor(T0, 7, "energy_kwh", T0 - timedelta(minutes=15))
    lanes = LaneState(
        split=split,
        live_cursor=Cursor(T0 + timedelta(seconds=30), 2, "power_w", T0),
        backfill_started=T0 - timedelta(hours=1),
        backfill_rows=123_456,
        backfill_total=35_000_000,
        backfill_rate=21_300.5,
        newest_acked=T0 + timedelta(seconds=30),
        newest_at_portal=T0 + timedelta(seconds=45),
        live_waiting=12,
        checked_at=T0 + timedelta(seconds=50),
    )
    backfill = ResourceState("measurements", cursor=Cursor(T0 - timedelta(days=400), 1, "energy_kwh", T0))
    state.save(backfill, lanes)
    state.release()
    state.close()
    reopened = PushState.open(url, clock)
    assert reopened.load_lanes() == lanes
    assert reopened.load("measurements").cursor == backfill.cursor
    reopened.close()


def test_a_state_written_before_lanes_existed_opens_with_one_lane(url: str) -> None:
    state = PushState.open(url, FakeClock(T0))
    state.acquire()
    cursor = Cursor(T0, 3, "power_w", T0)
    state.save(ResourceState("measurements", cursor=cursor, rows_sent=10))
    state.release()
    with state.engine.begin() as conn:
        conn.execute(text("DROP TABLE fleet_push_lanes"))
    state.close()
    reopened = PushState.open(url, FakeClock(T0))  # creates the missing table, keeps the rest
    assert reopened.load_lanes() == LaneState()
    assert reopened.load("measurements").cursor == cursor
    assert reopened.load_lanes().figures(cursor).live_cursor == cursor
    reopened.close()
