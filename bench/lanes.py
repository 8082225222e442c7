"""The live lane: how late live readings arrive during a back-fill, and what it costs the back-fill.

A SQLite portal holds a back-fill of 2 million readings (500 meters of 15-minute data). The
pusher (in this process, against the real server, ticking as `fleet-push run` does) back-fills
it; after its first tick has split the lanes, a live source is switched off and on in windows of
equal length, starting and ending off: the back-fill alone and beside the live lane, interleaved
finely enough that the drift of a shared machine falls on both alike.

Time is compressed 10x: a tick interval of 2 s stands for fleet-push's 20 s, the safety lag is
0.5 s for 5 s, and the 500 meters report every 1.5 s for every 15 s, staggered as meters are
(50 readings every 0.15 s, each write its own transaction and its own `received_at`), written
by a process of their own as a portal's software would. The live source adds 333 rows/s, not
33: ten times its real share of the stream, so the back-fill ratio is a conservative figure.
The back-fill's own ticks are not compressed (they run as fast as the server takes rows),
which makes the lag in ticks conservative too.

- live lag: for every write of 50 readings, from its insert at the portal (its `received_at`)
  to the acknowledgement of the batch holding its last reading; in ticks (of 2 s).
- back-fill ratio: back-fill rows/s acknowledged in the windows with the live source on ÷ in
  the windows with it off.
"""

from __future__ import annotations

import math
import multiprocessing
import queue
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert

from fleet_client import portal_schema as t
from fleet_client.client import FleetClient
from fleet_client.pusher import Pusher, PushOptions
from fleet_client.rows import Cursor
from fleet_client.source import SqlSource
from fleet_client.state import PushState

COMPRESSION = 10
TICK_S = 20.0 / COMPRESSION
LIVE_EVERY_S = 15.0 / COMPRESSION
SAFETY_LAG_S = 5.0 / COMPRESSION
METERS = 500
WRITES_PER_ROUND = 10  # the 500 meters report in 10 writes of 50 spread over LIVE_EVERY_S
LIVE_DEVICE = 100_001  # live meters 100001..100500
HISTORY_START = datetime(2023, 1, 1)
_TEXT = "%Y-%m-%d %H:%M:%S.%f"  # the portal schema's SQLite timestamp form


def build_portal(path: Path, rows: int) -> None:
    """`rows` 15-minute readings of 500 meters, loaded unindexed, then the push-key index built once.

    The portal's primary key is left out: the pusher never uses it, and maintaining two indexes
    row by row would make building 2 million rows take minutes.
    """
    engine = create_engine(f"sqlite:///{path}")
    t.metadata.create_all(
        engine, tables=[tbl for tbl in t.metadata.sorted_tables if tbl is not t.measurements]
    )
    engine.dispose()
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE measurements (device_id BIGINT NOT NULL, metric VARCHAR(63) NOT NULL, "
            "time VARCHAR(26) NOT NULL, value FLOAT NOT NULL, received_at VARCHAR(26) NOT NULL)"
        )

        def readings() -> Any:
            for step in range(rows // METERS):
                when = HISTORY_START + timedelta(minutes=15 * step)
                at, received = when.strftime(_TEXT), (when + timedelta(seconds=20)).strftime(_TEXT)
                for meter in range(1, METERS + 1):
                    yield meter, "energy_kwh", at, 0.25 + (meter + step) % 97 / 1000, received

        conn.executemany("INSERT INTO measurements VALUES (?, ?, ?, ?, ?)", readings())
        conn.execute(
            "CREATE INDEX ix_measurements_push_key ON measurements (received_at, device_id, metric, time)"
        )
        conn.commit()
    finally:
        conn.close()


@dataclass
class _Group:
    """One write at the portal: readings of meters up to `last_device`, all stamped `received_at`."""

    received_at: datetime
    last_device: int
    acked_s: float | None = None


@dataclass
class _Phase:
    """One back-fill run: acknowledged back-fill rows over time, and the live groups' lags."""

    live_from: datetime
    acks: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, back-fill rows)
    live_rows: int = 0
    groups: list[_Group] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    written: Any = None  # the live writer's queue of (received_at, last device)

    def collect(self) -> None:
        """Take in the writes the live source reported so far."""
        while self.written is not None:
            try:
                received, last = self.written.get_nowait()
            except queue.Empty:
                return
            with self.lock:
                self.groups.append(_Group(received, last))

    def on_ack(self, _batch_id: int, cursor: Cursor, ack: Any) -> None:
        rows = ack.accepted + ack.duplicates
        if cursor.received_at < self.live_from:
            self.acks.append((time.monotonic(), rows))
            return
        self.live_rows += rows
        now = time.time()
        self.collect()  # a write is reported within milliseconds; it is readable only after the safety lag
        with self.lock:
            for group in self.groups:
                done = group.received_at < cursor.received_at or (
                    group.received_at == cursor.received_at and cursor.device_id >= group.last_device
                )
                if done and group.acked_s is None:
                    group.acked_s = now - group.received_at.timestamp()

    def backfill_rate(self, start: float, end: float) -> float:
        rows = sum(n for at, n in self.acks if start < at <= end)
        return rows / (end - start)

    def lags(self) -> list[float | None]:
        with self.lock:
            return [g.acked_s for g in self.groups]


def _write_live(url: str, ready: Any, on: Any, stop: Any, written: Any) -> None:
    """The portal's own writer, in a process of its own as a portal's software is: 500 meters
    every LIVE_EVERY_S, staggered (50 readings per write, `received_at = now`), while `on` is set.
    Each write's `(received_at, last device)` goes to `written`."""
    engine = create_engine(url, connect_args={"timeout": 30})
    slot = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=1)
    per_write = METERS // WRITES_PER_ROUND
    every = LIVE_EVERY_S / WRITES_PER_ROUND
    write = 0
    ready.set()
    try:
        while not stop.is_set():
            if not on.wait(0.05):
                continue
            began = time.monotonic()
            first = LIVE_DEVICE + (write % WRITES_PER_ROUND) * per_write
            received = datetime.now(UTC)
            with engine.begin() as conn:
                conn.execute(
                    insert(t.measurements),
                    [
                        {
                            "device_id": first + i,
                            "metric": "energy_kwh",
                            "time": slot,
                            "value": 1.0,
                            "received_at": received,
                        }
                        for i in range(per_write)
                    ],
                )
            written.put((received, first + per_write - 1))
            write += 1
            if write % WRITES_PER_ROUND == 0:
                slot += timedelta(minutes=15)
            stop.wait(max(0.0, every - (time.monotonic() - began)))
    finally:
        engine.dispose()


class _LiveSource:
    """The live writer's process, switched on and off from here."""

    def __init__(self, url: str) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process that runs gRPC threads
        self.on = context.Event()
        self.ready = context.Event()
        self._stop = context.Event()
        self.written: Any = context.Queue()
        self._process = context.Process(
            target=_write_live, args=(url, self.ready, self.on, self._stop, self.written), daemon=True
        )

    def __enter__(self) -> _LiveSource:
        self._process.start()
        if not self.ready.wait(60):
            raise RuntimeError("the live writer process did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._process.join(15)
        if self._process.is_alive():
            self._process.kill()


def _backfill(env: Any, portal: Path, scratch: Path, windows: int, window_s: float) -> dict[str, Any]:
    """Back-fill the portal as a new customer, `fleet-push run`-style, with the live source off in
    the even windows and on in the odd ones; the per-window back-fill rates and the live lags."""
    token = env.customer("BENCH_LANES")
    url = f"sqlite:///{portal}"
    source = SqlSource(url)
    state = PushState.open(f"sqlite:///{scratch / 'state.db'}")
    state.acquire()
    client = FleetClient(env.target, token)
    phase = _Phase(live_from=datetime.now(UTC) - timedelta(seconds=1))
    pusher = Pusher(
        source,
        client,
        state,
        options=PushOptions(safety_lag_s=SAFETY_LAG_S),
        on_batch_acked=phase.on_ack,
    )
    stop = threading.Event()

    def drive() -> None:
        while not stop.is_set():
            report = pusher.tick()
            if not report.backlog:
                stop.wait(TICK_S)

    driver = threading.Thread(target=drive, daemon=True)
    alone: list[float] = []
    beside: list[float] = []
    try:
        with _LiveSource(url) as live:
            phase.written = live.written
            driver.start()
            while pusher.lanes is None or not pusher.lanes.backfilling:  # the first tick splits the lanes
                time.sleep(0.01)
            for window in range(windows):
                if window % 2:
                    live.on.set()
                else:
                    live.on.clear()
                began = time.monotonic()
                time.sleep(window_s)
                (beside if window % 2 else alone).append(phase.backfill_rate(began, time.monotonic()))
            live.on.clear()
            deadline = time.monotonic() + 2 * TICK_S  # the last writes still get their acknowledgement
            time.sleep(0.1)
            phase.collect()
            while any(lag is None for lag in phase.lags()) and time.monotonic() < deadline:
                time.sleep(0.02)
    finally:
        stop.set()
        pusher.request_stop()
        if driver.ident is not None:
            driver.join(60)
        state.release()
        state.close()
        client.close()
        source.close()
    live_s = window_s * len(beside)
    return {
        "alone": alone,
        "beside": beside,
        "live_rows_per_s": phase.live_rows / live_s,
        "lags": phase.lags(),
    }


def _nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def measure(env: Any, *, rows: int = 2_000_000, windows: int = 9, window_s: float = 2.0) -> dict[str, Any]:
    """A back-fill of `rows`, the live source off and on in `windows` (odd: off first and last)."""
    with tempfile.TemporaryDirectory(prefix="fleet-bench-lanes-") as folder:
        scratch = Path(folder)
        portal = scratch / "portal.sqlite"
        began = time.perf_counter()
        build_portal(portal, rows)
        built_s = time.perf_counter() - began
        run = _backfill(env, portal, scratch, windows, window_s)
    alone = sum(run["alone"]) / len(run["alone"])
    beside = sum(run["beside"]) / len(run["beside"])
    lags = run["lags"]
    unacked = sum(1 for lag in lags if lag is None)
    seconds_ = [lag for lag in lags if lag is not None]
    ticks = [lag / TICK_S for lag in seconds_]
    return {
        "live_lag_ticks": {
            "p50": _nearest_rank(ticks, 0.50) if ticks else None,
            "p99": _nearest_rank(ticks, 0.99) if ticks else None,
            "max": max(ticks) if ticks else None,
            "groups": len(lags),
            "unacknowledged": unacked,
            "tick_s": TICK_S,
            "seconds_p50": _nearest_rank(seconds_, 0.50) if seconds_ else None,
            "seconds_p99": _nearest_rank(seconds_, 0.99) if seconds_ else None,
            "one_lane_ticks": rows / alone / TICK_S if alone else None,
            "what": (
                f"{METERS} meters every {LIVE_EVERY_S:g}s (writes of {METERS // WRITES_PER_ROUND}) during a "
                f"{rows:,}-reading back-fill, time compressed {COMPRESSION}x (tick {TICK_S:g}s, safety lag "
                f"{SAFETY_LAG_S:g}s); portal insert to acknowledgement"
            ),
        },
        "backfill_beside_live_ratio": {
            "ratio": beside / alone if alone else None,
            "alone_rows_per_s": alone,
            "beside_rows_per_s": beside,
            "alone_windows": run["alone"],
            "beside_windows": run["beside"],
            "live_rows_per_s": run["live_rows_per_s"],
            "total_ratio": (beside + run["live_rows_per_s"]) / alone if alone else None,
            "portal_build_s": built_s,
            "what": (
                f"back-fill rows/s with the live source on ÷ off, {windows} alternating windows of "
                f"{window_s:g}s in one back-fill (off first and last)"
            ),
        },
    }
