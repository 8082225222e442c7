"""`fleet-push run` back-filling while new readings keep arriving, killed with SIGKILL at random points.

The portal (SQLite) holds a history; a writer thread keeps adding readings stamped with the
current time, as a portal does. The pusher is killed with SIGKILL several times — mostly while
the back-fill and the live lane both run, once just after it started — and restarted each time.
At the end the server holds exactly the portal's readings, row by row with their values (nothing
skipped), and the push state counts exactly as many acknowledged rows as the portal holds
(nothing acknowledged was sent again; only unacknowledged batches are resent, and those the
server counted as duplicates without storing them twice).
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, event, insert, text

from fleet_client import portal_schema as t
from fleet_client.buildrate import write_backlog
from fleet_client.source import SqlSource
from fleet_client.state import PushState
from tests.support.client_sync import assert_mirrored, central_count
from tests.support.process import ServerProcess, cli

pytestmark = pytest.mark.e2e

HISTORY = 40_000
KILLS = 5
LIVE_DEVICE = 10_000


class LiveSource:
    """Adds a few readings every 50 ms, each stamped `received_at = now` in its own transaction."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, connect_args={"timeout": 30})
        self.rows = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, daemon=True)
        self._start = datetime.now(UTC) - timedelta(days=3)

    def _write(self) -> None:
        while not self._stop.wait(0.05):
            now = datetime.now(UTC)
            with self.engine.begin() as conn:
                conn.execute(
                    insert(t.measurements),
                    [
                        {
                            "device_id": LIVE_DEVICE + (self.rows + i) % 7,
                            "metric": "power_w",
                            "time": self._start + timedelta(seconds=self.rows + i),
                            "value": float(self.rows + i),
                            "received_at": now,
                        }
                        for i in range(20)
                    ],
                )
            self.rows += 20

    def __enter__(self) -> LiveSource:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.engine.dispose()


def _wal(url: str) -> None:
    """The portal in WAL mode, so the pusher reads while the writer writes (as a busy portal would)."""
    engine = create_engine(url)
    event.listen(engine, "connect", lambda conn, _: conn.execute("PRAGMA journal_mode=WAL"))
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    engine.dispose()


def _state(url: str) -> tuple[int, bool]:
    """Rows acknowledged so far, and whether the back-fill and live lanes are apart."""
    state = PushState.open(url)
    try:
        return state.load("measurements").rows_sent, state.load_lanes().split is not None
    finally:
        state.close()


def _progressed(url: str, acked: int) -> Callable[[], bool]:
    return lambda: _state(url)[0] > acked


def _live_on_server(engine: Engine, customer_id: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.scalar(
                text("SELECT count(*) FROM fleet.measurements WHERE customer_id = :c AND device_id >= :d"),
                {"c": customer_id, "d": LIVE_DEVICE},
            )
        )


def _wait(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_backfill_with_live_arrivals_survives_sigkill_at_random_points(
    database_url: str, new_customer, engine: Engine, tmp_path: Path
) -> None:
    seed = int(os.environ.get("FLEET_TEST_SEED", random.randrange(1 << 30)))
    rand = random.Random(seed)
    portal_url = f"sqlite:///{tmp_path / 'portal.db'}"
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    write_backlog(portal_url, HISTORY, devices=40)
    _wal(portal_url)
    customer = new_customer("LANEKILL")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    with ServerProcess(database_url, data_dir=tmp_path / "server") as server:
        env.update(
            FLEET_INGEST_ENABLED="true",
            FLEET_SERVER=server.target,
            FLEET_TOKEN=customer.token,
            FLEET_SOURCE_URL=portal_url,
            FLEET_STATE_URL=state_url,
            FLEET_MAX_ROWS_PER_TICK="1000",
            FLEET_BATCH_SIZE="200",
            FLEET_SAFETY_LAG_S="0.3",
            FLEET_INTERVAL_S="0.2",
            FLEET_BACKOFF_BASE_S="0.2",
            FLEET_BACKOFF_CAP_S="0.5",
            FLEET_LOG_LEVEL="WARNING",
        )
        kills: list[tuple[bool, int]] = []  # (lanes apart, live readings on the server) at each kill

        def run() -> subprocess.Popen[str]:
            return subprocess.Popen(
                [cli("fleet-push"), "run"],
                env=env,
                cwd=tmp_path,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )

        with LiveSource(portal_url) as live:
            for k in range(KILLS):
                acked, _ = _state(state_url) if k else (0, False)
                proc = run()
                try:
                    if k == 1:
                        time.sleep(rand.uniform(0.0, 0.5))  # somewhere in its start-up
                    else:
                        _wait(_progressed(state_url, acked), f"progress after restart {k} (seed {seed})")
                        time.sleep(rand.uniform(0.0, 0.8))
                finally:
                    proc.kill()
                    _, err = proc.communicate(timeout=30)
                assert proc.returncode == -9, err
                _, apart = _state(state_url)
                kills.append((apart, _live_on_server(engine, customer.id)))
            live.stop()
            portal_rows = HISTORY + live.rows

            proc = run()
            try:
                _wait(
                    lambda: central_count(engine, customer.id) == portal_rows and not _state(state_url)[1],
                    f"the back-fill to finish (seed {seed})",
                )
                proc.terminate()
                _, err = proc.communicate(timeout=30)
            finally:
                if proc.poll() is None:
                    proc.kill()
            assert proc.returncode == 0, err

    assert any(apart and on_server for apart, on_server in kills), (kills, seed)
    source = SqlSource(portal_url)
    try:
        assert_mirrored(source, engine, customer.id)  # row by row, values and received_at too
    finally:
        source.close()
    rows_sent, apart = _state(state_url)
    assert (rows_sent, apart) == (portal_rows, False), seed
