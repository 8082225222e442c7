"""Pushing measurements: keyset-paged reads, batches on one stream, and a cursor that moves on acks only.

Rows are read in key order `(received_at, device_id, metric, time)`, never newer than
`now - safety_lag` (a row committed late with a slightly older `received_at` is still ahead of
the cursor when it becomes visible), at most `max_rows_per_tick` per tick, in batches of
`batch_size` on one bidirectional stream with up to `window` batches unacknowledged, so reading
the next batch overlaps the server committing the previous one. The cursor moves, and is
persisted, only when a batch is acknowledged: whatever was in flight when a tick failed is read
and sent again next time, and the server counts it as duplicates.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fleet_client import wire
from fleet_client.client import IngestClient
from fleet_client.clock import Clock
from fleet_client.errors import FleetRpcError, ProtocolError
from fleet_client.failures import FailurePolicy, SourceError
from fleet_client.progress import BackfillProgress
from fleet_client.push_options import PushOptions
from fleet_client.report import Outcome, ResourceResult, TickReport
from fleet_client.resources import MEASUREMENTS
from fleet_client.rows import Cursor, MeasurementRow
from fleet_client.source import Source
from fleet_client.state import PushState, ResourceState

_LOGGER = logging.getLogger(__name__)

_ROW_FIELD = re.compile(r"^measurements\[(\d+)\]")

AckHook = Callable[[int, Cursor, Any], None]
"""`(batch_id, cursor, ack)`, called after an acknowledged batch's cursor is saved."""


@dataclass
class _InFlight:
    batch_id: int
    rows: Sequence[MeasurementRow]

    @property
    def cursor(self) -> Cursor:
        return Cursor.of(self.rows[-1])


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
        self.progress = BackfillProgress(source, clock)

    def push(self, report: TickReport) -> ResourceResult:
        """Send what is waiting, up to the tick's cap; the back-fill's progress goes into `report`."""
        st = self.state.load(MEASUREMENTS)
        now = self.clock.now()
        waiting = self.failures.waiting(st, now)
        if waiting is not None:
            return waiting
        opts = self.options
        horizon = now - timedelta(seconds=opts.safety_lag_s)
        try:
            rows = self._read(st.cursor, min(opts.batch_size, opts.max_rows_per_tick), horizon)
        except SourceError as exc:
            return self.failures.failed(st, exc, now)
        if not rows:
            if st.failures or st.last_error:
                self.failures.succeeded(st, now)
                self.state.save(st)
            self.progress.record(
                report, st.cursor, horizon, rows=0, started=self.clock.monotonic(), capped=False
            )
            return ResourceResult(MEASUREMENTS, Outcome.UP_TO_DATE)
        st.last_attempt = now
        result = ResourceResult(MEASUREMENTS, Outcome.PUSHED, streams=1)
        started = self.clock.monotonic()
        try:
            capped = self._stream(st, rows, horizon, result)
        except (FleetRpcError, SourceError) as exc:
            failed = self.failures.failed(st, exc, now)
            failed.streams, failed.rows = 1, result.rows
            failed.accepted, failed.duplicates = result.accepted, result.duplicates
            return failed
        self.failures.succeeded(st, now)
        self.state.save(st)
        elapsed = max(self.clock.monotonic() - started, 1e-9)
        result.detail = (
            f"{result.rows:,} rows, {result.accepted:,} accepted, {result.duplicates:,} duplicates, "
            f"{result.rows / elapsed:,.0f} rows/s"
        )
        if result.outcome is not Outcome.STOPPED:
            self.progress.record(report, st.cursor, horizon, rows=result.rows, started=started, capped=capped)
        return result

    def _stream(
        self, st: ResourceState, first: Sequence[MeasurementRow], horizon: datetime, result: ResourceResult
    ) -> bool:
        """Send up to the tick's cap on one stream; True when the cap (not the data) ended it."""
        opts = self.options
        budget = opts.max_rows_per_tick
        pending: Sequence[MeasurementRow] = first
        asked = min(opts.batch_size, budget)
        exhausted = False
        in_flight: deque[_InFlight] = deque()
        batch_id = 0
        with self.client.measurement_stream() as stream:
            while True:
                while pending and len(in_flight) < opts.window and not self.stop.is_set():
                    batch_id += 1
                    stream.send(wire.measurement_batch(batch_id, pending))
                    sent = _InFlight(batch_id, pending)
                    in_flight.append(sent)
                    budget -= len(pending)
                    if len(pending) < asked:
                        exhausted, pending = True, ()
                    elif budget <= 0:
                        pending = ()
                    else:
                        asked = min(opts.batch_size, budget)
                        pending = self._read(sent.cursor, asked, horizon)
                if not in_flight:
                    break
                try:
                    ack = stream.next_ack()
                except FleetRpcError as exc:
                    _explain_rejected_row(exc, in_flight[0])
                    raise
                done = in_flight.popleft()
                if ack.batch_id != done.batch_id:
                    raise ProtocolError(f"acknowledgement for batch {ack.batch_id}, expected {done.batch_id}")
                st.cursor = done.cursor
                st.rows_sent += len(done.rows)
                self.state.save(st)
                result.rows += len(done.rows)
                result.accepted += ack.accepted
                result.duplicates += ack.duplicates
                if self.on_batch_acked is not None:
                    self.on_batch_acked(done.batch_id, done.cursor, ack)
        if self.stop.is_set() and pending:
            result.outcome = Outcome.STOPPED
        return not exhausted and budget <= 0

    def _read(self, cursor: Cursor | None, limit: int, horizon: datetime) -> Sequence[MeasurementRow]:
        try:
            return self.source.measurements_after(cursor, limit, until=horizon)
        except Exception as exc:
            _LOGGER.debug("reading measurements from the portal failed", exc_info=exc)
            raise SourceError(MEASUREMENTS, exc) from exc


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
