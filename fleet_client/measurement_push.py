"""Pushing measurements: keyset pages in two lanes, batches on one stream, cursors moved by acks only.

Rows are read in key order `(received_at, device_id, metric, time)`, never newer than
`now - safety_lag` (a row committed late with a slightly older `received_at` is still ahead of
the cursor when it becomes visible), at most `max_rows_per_tick` per tick, in batches of
`batch_size` on one bidirectional stream with up to `window` batches unacknowledged, so reading
the next batch overlaps the server committing the previous one. A cursor moves, and is
persisted, only when a batch is acknowledged: whatever was in flight when a tick failed is read
and sent again next time, and the server counts it as duplicates.

While a back-fill runs there are two lanes (`fleet_client.lanes`): each tick reads the live lane
first, until it runs dry, then the back-fill lane up to the split, both on the same stream and
within the same cap. A tick that stops at the cap with readings left, with one lane, begins a
back-fill: the newest key at the portal becomes the split.

A row the server will never take (INVALID_ARGUMENT naming `measurements[i]` of a batch) is
quarantined: set aside in the push state with the server's status, reason and message, and
left out of every batch from then on, so the rows behind it flow; the tick ends and the next
one starts at once. Pages are still read and cursors still moved as if it were there (a batch
whose rows were all quarantined goes out empty, and its acknowledgement moves the cursor past
them). Why not back off until the source is fixed: one meter's glitch (a NaN, a reading past
the documented bound) stopped every later reading of the portal, for as long as nobody edited
the portal's database, which its owner often cannot. Why not drop it silently: a refused
reading is data the operator must be able to see (`fleet-push status`) and send again after a
fix (`fleet-push release-quarantine`). See docs/client.md.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fleet_client import wire
from fleet_client.client import IngestClient
from fleet_client.clock import Clock
from fleet_client.errors import FleetRpcError, InvalidArgument, ProtocolError
from fleet_client.failures import FailurePolicy, SourceError
from fleet_client.lanes import Lane, LaneFigures, LaneState
from fleet_client.progress import BackfillRate
from fleet_client.push_options import PushOptions
from fleet_client.report import Outcome, Progress, ResourceResult, TickReport
from fleet_client.resources import MEASUREMENTS
from fleet_client.rows import Cursor, MeasurementRow
from fleet_client.source import Source
from fleet_client.state import PushState, ResourceState

_LOGGER = logging.getLogger(__name__)

_ROW_FIELD = re.compile(r"^measurements\[(\d+)\]")

AckHook = Callable[[int, Cursor, Any], None]
"""`(batch_id, cursor, ack)`, called after an acknowledged batch's cursor is saved."""

_Read = Callable[[Cursor | None, int, datetime], Sequence[MeasurementRow]]


@dataclass
class _Page:
    """Rows of one lane, in key order; `last_of_backfill` when the back-fill lane has nothing after them."""

    lane: Lane
    rows: Sequence[MeasurementRow]
    last_of_backfill: bool = False


@dataclass
class _InFlight:
    """A batch sent and not acknowledged yet: the rows sent (`measurements[i]` of a refusal is
    `rows[i]`), and `cursor`, the last row read for it — past any quarantined rows left out."""

    batch_id: int
    lane: Lane
    rows: Sequence[MeasurementRow]
    ends_backfill: bool
    cursor: Cursor


class RowsRefused(Exception):
    """The server refused rows of a batch as invalid; they are to be quarantined."""

    def __init__(self, error: FleetRpcError, rows: list[MeasurementRow]) -> None:
        super().__init__(str(error))
        self.error = error
        self.rows = rows


@dataclass
class _Tick:
    """What one tick sent per lane, and whether its back-fill ended."""

    rows: dict[Lane, int] = field(default_factory=lambda: dict.fromkeys(Lane, 0))
    merged: bool = False


class _Pages:
    """The tick's pages, live lane first; each lane is read until it runs dry, back-fill up to the split."""

    def __init__(self, read: _Read, lanes: LaneState, cursor: Cursor | None, horizon: datetime) -> None:
        self._read = read
        self._split = lanes.split
        self._horizon = horizon
        self._open = [Lane.LIVE, Lane.BACKFILL] if lanes.apart else [Lane.LIVE]
        self._after = {lane: lanes.after(lane, cursor) for lane in self._open}

    @property
    def exhausted(self) -> bool:
        """Every lane ran dry: the data, not the cap, ended the tick."""
        return not self._open

    def next(self, limit: int) -> _Page | None:
        """The next page of at most `limit` rows; None when every lane ran dry. A back-fill page is
        empty when the lane ended exactly where its previous page did: it still has to say so."""
        while self._open:
            lane = self._open[0]
            if lane is Lane.BACKFILL:
                assert self._split is not None
                page = self._read(self._after[lane], limit, self._split.received_at)
                rows, reached = _up_to(page, self._split)
            else:
                rows, reached = self._read(self._after[lane], limit, self._horizon), False
            dry = reached or len(rows) < limit
            if dry:
                self._open.pop(0)
            if rows:
                self._after[lane] = Cursor.of(rows[-1])
            if lane is Lane.BACKFILL:
                return _Page(lane, rows, last_of_backfill=dry)
            if rows:
                return _Page(lane, rows)
        return None


def _up_to(rows: Sequence[MeasurementRow], split: Cursor) -> tuple[Sequence[MeasurementRow], bool]:
    """`rows` cut after the split row, and whether it was among them.

    The back-fill reads `received_at <= split.received_at`; rows after the split within that
    same instant belong to the live lane. Only equality is tested here: the order is the
    database's, never Python's (a collation may sort metric names differently).
    """
    if not rows or rows[-1].received_at < split.received_at:
        return rows, False
    for i, row in enumerate(rows):
        if row.received_at == split.received_at and Cursor.of(row) == split:
            return rows[: i + 1], True
    return rows, False


class MeasurementPush:
    """One tick's measurement push for one portal; `stop` (set from a signal handler) ends it after
    the batches in flight are acknowledged, so nothing is left half-sent."""

    def __init__(
        self,
        source: Source,
        client: IngestClient,
        state: PushState,
        failures: FailurePolicy,
        clock: Clock,
        options: PushOptions,
        stop: threading.Event,
        on_batch_acked: AckHook | None = None,
    ) -> None:
        self.source = source
        self.client = client
        self.state = state
        self.failures = failures
        self.clock = clock
        self.options = options
        self.stop = stop
        self.on_batch_acked = on_batch_acked
        self.rate = BackfillRate(clock)
        self._figures: LaneFigures | None = None
        self._quarantined: set[Cursor] = set()

    @property
    def figures(self) -> LaneFigures | None:
        """Both lanes as the last tick left them (None before the first tick)."""
        return self._figures

    def push(self, report: TickReport) -> ResourceResult:
        """Send what is waiting, up to the tick's cap; the back-fill's progress goes into `report`."""
        st = self.state.load(MEASUREMENTS)
        lanes = self.state.load_lanes()
        now = self.clock.now()
        tick = _Tick()
        waiting = self.failures.waiting(st, now)
        if waiting is not None:
            self._finish(report, st, lanes, tick, now, count_live=lanes.apart)
            return waiting
        opts = self.options
        horizon = now - timedelta(seconds=opts.safety_lag_s)
        pages = _Pages(self._read, lanes, st.cursor, horizon)
        started = self.clock.monotonic()
        try:
            self._quarantined = self.state.quarantined_keys(st.cursor)
            first = self._first_page(st, lanes, pages, tick)
        except SourceError as exc:
            return self.failures.failed(st, exc, now)
        if first is None:
            if st.failures or st.last_error:
                self.failures.succeeded(st, now)
            self._finish(report, st, lanes, tick, now, started=started)
            return ResourceResult(MEASUREMENTS, Outcome.UP_TO_DATE)
        st.last_attempt = now
        result = ResourceResult(MEASUREMENTS, Outcome.PUSHED, streams=1)
        one_lane = not lanes.apart
        try:
            capped = self._stream(st, lanes, pages, first, result, tick)
        except RowsRefused as refused:
            self._quarantine(st, lanes, refused, result)
            self._finish(report, st, lanes, tick, now, count_live=lanes.apart)
            report.backlog = True  # nothing to wait for: the rows behind them go next
            return result
        except (FleetRpcError, SourceError) as exc:
            failed = self.failures.failed(st, exc, now)
            failed.streams, failed.rows = 1, result.rows
            failed.accepted, failed.duplicates = result.accepted, result.duplicates
            self._finish(report, st, lanes, tick, now, count_live=lanes.apart)
            return failed
        self.failures.succeeded(st, now)
        if capped and one_lane:
            self._begin_backfill(st, lanes, horizon, tick)
        elapsed = max(self.clock.monotonic() - started, 1e-9)
        result.detail = (
            f"{result.rows:,} rows, {result.accepted:,} accepted, {result.duplicates:,} duplicates, "
            f"{result.rows / elapsed:,.0f} rows/s"
        )
        if not one_lane or tick.merged:
            result.detail += f"; live {tick.rows[Lane.LIVE]:,}, back-fill {tick.rows[Lane.BACKFILL]:,}"
        stopped = result.outcome is Outcome.STOPPED
        self._finish(
            report,
            st,
            lanes,
            tick,
            now,
            started=None if stopped else started,
            capped=capped,
            count_live=lanes.apart or not capped,
        )
        return result

    def _quarantine(
        self, st: ResourceState, lanes: LaneState, refused: RowsRefused, result: ResourceResult
    ) -> None:
        """Set the refused rows aside and end the tick; the next one starts at once without them."""
        error = refused.error
        self.state.quarantine(
            refused.rows, status=error.status_name, reason=error.reason, message=error.message
        )
        st.last_error = error.detailed()
        st.next_attempt = None
        self.state.save(st, lanes)
        _LOGGER.error(
            "measurements: the server refused %d row(s), quarantined (fleet-push status lists them): %s",
            len(refused.rows),
            st.last_error,
        )
        result.outcome = Outcome.QUARANTINED
        result.error = st.last_error
        result.detail = f"{len(refused.rows)} row(s) refused by the server set aside; {st.last_error}"

    def _sendable(self, rows: Sequence[MeasurementRow]) -> Sequence[MeasurementRow]:
        """`rows` without the quarantined ones (as they are, when nothing is quarantined)."""
        if not self._quarantined:
            return rows
        return [row for row in rows if Cursor.of(row) not in self._quarantined]

    def _finish(
        self,
        report: TickReport,
        st: ResourceState,
        lanes: LaneState,
        tick: _Tick,
        now: datetime,
        *,
        started: float | None = None,
        capped: bool = False,
        count_live: bool = True,
    ) -> None:
        """Save what the tick saw of both lanes; with `started` (a tick that ran to its end) also
        the back-fill's progress, and `backlog` when the cap, not the data, ended the tick."""
        backfilling = lanes.apart or tick.merged
        rate = None
        if backfilling and started is not None:
            rate = self.rate.add(tick.rows[Lane.BACKFILL], started)
        self._observe(st, lanes, now, count_live=count_live, rate=rate if lanes.apart else None)
        figures = self._figures
        if started is None or figures is None:
            return
        report.backlog = capped
        if backfilling and rate is not None:
            left = figures.backfill_rows_left
            eta = left / rate if left is not None and rate > 0 else None
            report.progress = Progress(figures.backfill_rows_sent, left, rate, eta, figures.live_lag_s)
        if tick.merged:
            self.rate.reset()

    def _first_page(self, st: ResourceState, lanes: LaneState, pages: _Pages, tick: _Tick) -> _Page | None:
        """The first page with rows, or None; opens no stream. A back-fill found empty here merges at once."""
        asked = min(self.options.batch_size, self.options.max_rows_per_tick)
        page = pages.next(asked)
        while page is not None and not page.rows:
            self._merge(st, lanes, tick)
            page = pages.next(asked)
        return page

    def _stream(
        self,
        st: ResourceState,
        lanes: LaneState,
        pages: _Pages,
        first: _Page,
        result: ResourceResult,
        tick: _Tick,
    ) -> bool:
        """Send up to the tick's cap on one stream; True when the cap (not the data) ended it."""
        opts = self.options
        budget = opts.max_rows_per_tick
        pending: _Page | None = first
        in_flight: deque[_InFlight] = deque()
        batch_id = 0
        with self.client.measurement_stream() as stream:
            while True:
                while pending is not None and len(in_flight) < opts.window and not self.stop.is_set():
                    if pending.rows:
                        batch_id += 1
                        rows = self._sendable(pending.rows)
                        stream.send(wire.measurement_batch(batch_id, rows))
                        in_flight.append(
                            _InFlight(
                                batch_id,
                                pending.lane,
                                rows,
                                pending.last_of_backfill,
                                Cursor.of(pending.rows[-1]),
                            )
                        )
                        budget -= len(pending.rows)
                    else:
                        _end_backfill_with(in_flight, lambda: self._merge(st, lanes, tick))
                    pending = pages.next(min(opts.batch_size, budget)) if budget > 0 else None
                if not in_flight:
                    break
                try:
                    ack = stream.next_ack()
                except FleetRpcError as exc:
                    _explain_rejected_row(exc, in_flight[0])
                    refused = _refused_rows(exc, in_flight[0])
                    if refused:
                        raise RowsRefused(exc, refused) from exc
                    raise
                done = in_flight.popleft()
                if ack.batch_id != done.batch_id:
                    raise ProtocolError(f"acknowledgement for batch {ack.batch_id}, expected {done.batch_id}")
                st.cursor = lanes.acknowledged(done.lane, st.cursor, done.cursor, len(done.rows))
                tick.rows[done.lane] += len(done.rows)
                st.rows_sent += len(done.rows)
                if done.ends_backfill:
                    self._merge(st, lanes, tick, save=False)
                self.state.save(st, lanes)
                result.rows += len(done.rows)
                result.accepted += ack.accepted
                result.duplicates += ack.duplicates
                if self.on_batch_acked is not None:
                    self.on_batch_acked(done.batch_id, done.cursor, ack)
        if self.stop.is_set() and pending is not None:
            result.outcome = Outcome.STOPPED
        return not pages.exhausted and budget <= 0

    def _merge(self, st: ResourceState, lanes: LaneState, tick: _Tick, *, save: bool = True) -> None:
        """The back-fill lane is done and every batch of it acknowledged: one lane again."""
        if not lanes.apart:
            return
        st.cursor = lanes.merge(self.clock.now())
        tick.merged = True
        _LOGGER.info("back-fill done: %s rows; one lane again", f"{lanes.backfill_rows:,}")
        if save:
            self.state.save(st, lanes)

    def _begin_backfill(self, st: ResourceState, lanes: LaneState, horizon: datetime, tick: _Tick) -> None:
        """Split off a live lane after the newest key at the portal; the rest is the back-fill."""
        try:
            split = self.source.newest_measurement(until=horizon)
        except Exception as exc:
            _LOGGER.warning("could not split the back-fill from the live lane (%s); one lane for now", exc)
            return
        if split is None or split == st.cursor:
            return
        try:
            left = self.source.count_measurements_after(st.cursor, until=split.received_at)
        except Exception as exc:
            _LOGGER.debug("counting the back-fill failed", exc_info=exc)
            left = None
        # The one lane was back-filling all along.
        tick.rows[Lane.BACKFILL], tick.rows[Lane.LIVE] = tick.rows[Lane.LIVE], 0
        lanes.begin_backfill(split, self.clock.now(), rows_sent=tick.rows[Lane.BACKFILL], rows_left=left)
        _LOGGER.info(
            "back-fill of %s readings up to %s; newer ones go in the live lane first",
            f"{left:,}" if left is not None else "an unknown number of",
            split.describe(),
        )

    def _observe(
        self, st: ResourceState, lanes: LaneState, now: datetime, *, count_live: bool, rate: float | None
    ) -> None:
        """Record the newest reading at the portal (the live lag's other end) and what waits in the
        live lane, then save. Counting is skipped unless it is known to be a short range: one lane
        that did not run dry may have a whole back-fill behind its cursor. The live lane's range is
        short while a back-fill runs (at worst, the readings of a server outage)."""
        try:
            newest = self.source.newest_measurement(until=now)
            waiting = (
                self.source.count_measurements_after(lanes.after(Lane.LIVE, st.cursor), until=now)
                if count_live
                else None
            )
        except Exception as exc:  # the last observation stands, with its time
            _LOGGER.debug("reading the live lane's figures failed", exc_info=exc)
        else:
            lanes.observe(
                now,
                newest_at_portal=newest.received_at if newest is not None else None,
                live_waiting=waiting,
                backfill_rate=rate,
            )
        self.state.save(st, lanes)
        self._figures = lanes.figures(st.cursor)

    def _read(self, cursor: Cursor | None, limit: int, until: datetime) -> Sequence[MeasurementRow]:
        try:
            return self.source.measurements_after(cursor, limit, until=until)
        except Exception as exc:
            _LOGGER.debug("reading measurements from the portal failed", exc_info=exc)
            raise SourceError(MEASUREMENTS, exc) from exc


def _end_backfill_with(in_flight: deque[_InFlight], merge: Callable[[], None]) -> None:
    """The back-fill lane ran dry with no row left to send: its last batch in flight ends it on its
    acknowledgement, or, when none is in flight, every back-fill batch is acknowledged and it ends now."""
    for batch in reversed(in_flight):
        if batch.lane is Lane.BACKFILL:
            batch.ends_backfill = True
            return
    merge()


def _refused_rows(error: FleetRpcError, batch: _InFlight) -> list[MeasurementRow]:
    """The rows of `batch` an INVALID_ARGUMENT names (`measurements[i].…`): the server never takes them."""
    if not isinstance(error, InvalidArgument):
        return []
    indexes = {int(m.group(1)) for path, _ in error.field_violations if (m := _ROW_FIELD.match(path))}
    return [batch.rows[i] for i in sorted(indexes) if i < len(batch.rows)]


def _explain_rejected_row(error: FleetRpcError, batch: _InFlight) -> None:
    """Name the portal row behind `measurements[i]` in a rejected batch, so it can be fixed at the source."""
    for path, _ in error.field_violations:
        match = _ROW_FIELD.match(path)
        if match and int(match.group(1)) < len(batch.rows):
            row = batch.rows[int(match.group(1))]
            error.message += (
                f" [portal row: device_id={row.device_id} metric={row.metric} "
                f"time={row.time.isoformat()} received_at={row.received_at.isoformat()}]"
            )
            return
