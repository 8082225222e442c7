"""The measurement push's two lanes: a live lane for what arrives during a back-fill, and the back-fill.

A back-fill begins with the first tick that stops at `max_rows_per_tick` with readings still
waiting. The newest key at the portal then becomes the *split*: the back-fill lane walks
`(cursor, split]`, the live lane walks `(split, …)` with a cursor of its own. Both are keyset
ranges in the one key order `(received_at, device_id, metric, time)` that the portal's database
compares, so they are disjoint and together hold every reading after the cursor; each lane moves
its cursor only on acknowledgements, as a single lane does. The live lane reads first in every
tick and takes only what is there, so when nothing new arrives the back-fill has the whole cap.
When the back-fill lane has sent its last reading (the split, or the last one before it) and
that batch is acknowledged, the lanes merge: the live cursor becomes the one cursor again.

The measurement state's own `cursor` is always the back-fill lane's while the lanes are apart:
every reading at or before it is acknowledged, whatever the live lane did. A pusher that knows
nothing of lanes resumes from it and sends the live lane's readings again as duplicates, never
skipping one.

`LaneState` is what is persisted (with the cursor, in one transaction per acknowledgement);
`LaneFigures` is the read-only view that `fleet-push status`, the tick's progress line and
metrics show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from fleet_client.rows import Cursor


class Lane(Enum):
    """Which range of keys a batch came from."""

    LIVE = "live"
    BACKFILL = "back-fill"


@dataclass
class LaneState:
    """The lanes' part of the measurement push state.

    `split` is set while a back-fill runs: the back-fill lane ends at it (inclusive) and the live
    lane starts after it, at `live_cursor`. The back-fill bookkeeping (`backfill_*`) stays after
    the lanes merge, so an operator can see when the last back-fill ended and how big it was.
    `newest_acked`, `newest_at_portal`, `live_waiting` and `checked_at` are the live lag's
    inputs as the last tick saw them.
    """

    split: Cursor | None = None
    live_cursor: Cursor | None = None
    backfill_started: datetime | None = None
    backfill_finished: datetime | None = None
    backfill_rows: int = 0
    backfill_total: int | None = None
    backfill_rate: float | None = None
    newest_acked: datetime | None = None
    newest_at_portal: datetime | None = None
    live_waiting: int | None = None
    checked_at: datetime | None = None

    @property
    def apart(self) -> bool:
        """Whether a back-fill runs, i.e. two lanes exist."""
        return self.split is not None

    def after(self, lane: Lane, cursor: Cursor | None) -> Cursor | None:
        """Where `lane` reads next, given the measurement cursor (the back-fill lane's, or the only one)."""
        if lane is Lane.LIVE and self.split is not None:
            return self.live_cursor
        return cursor

    def begin_backfill(self, split: Cursor, now: datetime, *, rows_sent: int, rows_left: int | None) -> None:
        """Split the lanes at `split`, the newest key at the portal (after the cursor); `rows_sent`
        went out in this tick already, as the one lane; `rows_left` wait up to the split."""
        self.split = self.live_cursor = split
        self.backfill_started, self.backfill_finished = now, None
        self.backfill_rows = rows_sent
        self.backfill_total = rows_sent + rows_left if rows_left is not None else None
        self.backfill_rate = None

    def acknowledged(self, lane: Lane, cursor: Cursor | None, last: Cursor, rows: int) -> Cursor | None:
        """Record an acknowledged batch of `rows` ending at `last`; returns the measurement cursor."""
        if self.newest_acked is None or last.received_at > self.newest_acked:
            self.newest_acked = last.received_at
        if lane is Lane.BACKFILL:
            self.backfill_rows += rows
            return last
        if self.split is not None:
            self.live_cursor = last
            return cursor
        return last

    def merge(self, now: datetime) -> Cursor | None:
        """The back-fill lane is done and acknowledged: the live cursor becomes the one cursor."""
        merged = self.live_cursor
        self.split = self.live_cursor = None
        self.backfill_finished = now
        if self.backfill_total is not None:
            self.backfill_total = self.backfill_rows
        return merged

    def observe(
        self,
        now: datetime,
        *,
        newest_at_portal: datetime | None,
        live_waiting: int | None,
        backfill_rate: float | None,
    ) -> None:
        """What the end of a tick saw at the portal."""
        self.newest_at_portal = newest_at_portal
        self.live_waiting = live_waiting
        if backfill_rate is not None:
            self.backfill_rate = backfill_rate
        self.checked_at = now

    def figures(self, cursor: Cursor | None) -> LaneFigures:
        """The read-only view of both lanes, given the measurement cursor."""
        newest_acked = self.newest_acked
        if newest_acked is None and cursor is not None:
            newest_acked = cursor.received_at  # a state written before lanes existed
        lag: float | None = None
        if self.newest_at_portal is not None:
            if newest_acked is None:
                lag = None
            else:
                lag = max(0.0, (self.newest_at_portal - newest_acked).total_seconds())
        elif self.checked_at is not None:
            lag = 0.0  # the portal holds no reading at all: nothing can wait
        running = self.split is not None
        left: int | None = None
        if self.backfill_total is not None and self.backfill_started is not None:
            left = max(0, self.backfill_total - self.backfill_rows) if running else 0
        rate = self.backfill_rate if running else None
        eta = left / rate if running and left is not None and rate else None
        return LaneFigures(
            backfilling=running,
            backfill_cursor=cursor if running else None,
            split=self.split,
            backfill_started=self.backfill_started,
            backfill_finished=self.backfill_finished,
            backfill_rows_sent=self.backfill_rows if self.backfill_started is not None else 0,
            backfill_rows_left=left,
            backfill_rows_per_s=rate,
            backfill_eta_s=eta,
            live_cursor=self.live_cursor if running else cursor,
            live_waiting=self.live_waiting,
            newest_at_portal=self.newest_at_portal,
            newest_acked=newest_acked,
            live_lag_s=lag,
            checked_at=self.checked_at,
        )


@dataclass(frozen=True)
class LaneFigures:
    """Both lanes as `fleet-push status` and metrics show them.

    With one lane, `live_*` describe it and `backfilling` is False. `live_lag_s` is the newest
    reading at the portal minus the newest acknowledged one, both by `received_at`, as the last
    tick saw them (`checked_at`); None when unknown. Counts are None where the portal cannot
    count. `backfill_rows_left` is 0 after a finished back-fill, None before any.
    """

    backfilling: bool
    backfill_cursor: Cursor | None
    split: Cursor | None
    backfill_started: datetime | None
    backfill_finished: datetime | None
    backfill_rows_sent: int
    backfill_rows_left: int | None
    backfill_rows_per_s: float | None
    backfill_eta_s: float | None
    live_cursor: Cursor | None
    live_waiting: int | None
    newest_at_portal: datetime | None
    newest_acked: datetime | None
    live_lag_s: float | None
    checked_at: datetime | None

    @property
    def lanes(self) -> int:
        return 2 if self.backfilling else 1

    @property
    def backlog_rows(self) -> dict[str, int | None]:
        """Readings waiting per lane (`live`, `back-fill`); None where unknown."""
        return {
            Lane.LIVE.value: self.live_waiting,
            Lane.BACKFILL.value: self.backfill_rows_left if self.backfilling else 0,
        }

    def to_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        def key(value: Cursor | None) -> dict[str, object] | None:
            return value.to_json() if value else None

        return {
            "lanes": self.lanes,
            "backfill": {
                "running": self.backfilling,
                "cursor": key(self.backfill_cursor),
                "split": key(self.split),
                "started": iso(self.backfill_started),
                "finished": iso(self.backfill_finished),
                "rows_sent": self.backfill_rows_sent,
                "rows_left": self.backfill_rows_left,
                "rows_per_s": self.backfill_rows_per_s,
                "eta_s": self.backfill_eta_s,
            },
            "live": {
                "cursor": key(self.live_cursor),
                "waiting": self.live_waiting,
                "newest_at_portal": iso(self.newest_at_portal),
                "newest_acknowledged": iso(self.newest_acked),
                "lag_s": self.live_lag_s,
                "checked_at": iso(self.checked_at),
            },
        }


def describe_duration(seconds: float | None) -> str:
    """`0:26:25`-style, or `?` when unknown."""
    return str(timedelta(seconds=round(seconds))) if seconds is not None else "?"
