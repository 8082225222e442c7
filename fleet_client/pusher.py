"""`Pusher.tick()`: one pass of fleet sync — reference snapshots, then a capped measurement push.

Order: sites → devices → municipalities → tariffs → measurements. A reference set is streamed
only when its canonical hash differs from the last one the server acknowledged, or when the
resync interval has passed since that acknowledgement. A parent that did not end the tick in
sync (failed now, or still backing off from a failure) skips its dependants: devices need their
sites, tariffs their municipalities.

Measurements are read in keyset order `(received_at, device_id, metric, time)`, never newer
than `now - safety_lag` (a row committed late with a slightly older `received_at` is still
ahead of the cursor when it becomes visible), at most `max_rows_per_tick` per tick, in batches
of `batch_size` on one bidirectional stream with up to `window` batches unacknowledged. The
cursor moves, and is persisted, only when a batch is acknowledged: whatever was in flight when
a tick failed is read and sent again next time, and the server counts it as duplicates.

Failures back off per resource (`fleet_client.backoff`); UNAUTHENTICATED or PERMISSION_DENIED
stop all pushing until the token changes (the state keeps the refused token's fingerprint).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from fleet_client import wire
from fleet_client.backoff import Backoff
from fleet_client.client import IngestClient
from fleet_client.clock import Clock, SystemClock
from fleet_client.errors import FleetRpcError, PermissionDenied, ProtocolError, Unauthenticated
from fleet_client.resources import MEASUREMENTS, REFERENCE_SETS, RESOURCES, ReferenceSet
from fleet_client.rows import Cursor, MeasurementRow
from fleet_client.snapshot import snapshot_hash
from fleet_client.source import Source
from fleet_client.state import PushState, ResourceState

_LOGGER = logging.getLogger(__name__)

_ROW_FIELD = re.compile(r"^measurements\[(\d+)\]")


class Outcome(Enum):
    PUSHED = "pushed"
    UNCHANGED = "unchanged"
    UP_TO_DATE = "up to date"
    BACKING_OFF = "backing off"
    SKIPPED = "skipped: parent not in sync"
    FAILED = "failed"
    BLOCKED = "blocked: token refused"
    STOPPED = "stopped"

    @property
    def in_sync(self) -> bool:
        return self in (Outcome.PUSHED, Outcome.UNCHANGED, Outcome.UP_TO_DATE)


@dataclass(frozen=True)
class PushOptions:
    """The pusher's knobs (defaults per SPEC §7)."""

    batch_size: int = 500
    max_rows_per_tick: int = 5_000
    safety_lag_s: float = 5.0
    resync_interval_s: float = 24 * 3600.0
    window: int = 4

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_rows_per_tick < 1 or self.window < 1:
            raise ValueError("batch_size, max_rows_per_tick and window must be at least 1")
        if self.safety_lag_s < 0 or self.resync_interval_s <= 0:
            raise ValueError("safety_lag_s must be >= 0 and resync_interval_s > 0")


@dataclass
class ResourceResult:
    resource: str
    outcome: Outcome
    streams: int = 0
    rows: int = 0
    accepted: int = 0
    duplicates: int = 0
    error: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class Progress:
    """A back-fill's progress after a tick: rows sent so far, rows left, rate and ETA."""

    rows_sent: int
    rows_left: int | None
    rows_per_s: float
    eta_s: float | None

    def __str__(self) -> str:
        left = f"{self.rows_left:,}" if self.rows_left is not None else "?"
        eta = str(timedelta(seconds=round(self.eta_s))) if self.eta_s is not None else "?"
        return (
            f"back-fill: {self.rows_sent:,} rows sent, {left} left, {self.rows_per_s:,.0f} rows/s, ETA {eta}"
        )


@dataclass
class TickReport:
    results: list[ResourceResult] = field(default_factory=list)
    backlog: bool = False
    progress: Progress | None = None

    def result(self, resource: str) -> ResourceResult:
        return next(r for r in self.results if r.resource == resource)

    @property
    def streams_opened(self) -> int:
        return sum(r.streams for r in self.results)

    @property
    def reference_streams(self) -> int:
        return sum(r.streams for r in self.results if r.resource != MEASUREMENTS)

    @property
    def rows_sent(self) -> int:
        return self.result(MEASUREMENTS).rows if any(r.resource == MEASUREMENTS for r in self.results) else 0

    @property
    def ok(self) -> bool:
        return all(r.outcome.in_sync or r.outcome is Outcome.STOPPED for r in self.results)

    @property
    def blocked(self) -> bool:
        return any(r.outcome is Outcome.BLOCKED for r in self.results)

    def summary(self) -> str:
        parts = []
        for r in self.results:
            text = f"{r.resource} {r.outcome.value}"
            if r.detail:
                text += f" ({r.detail})"
            parts.append(text)
        return "; ".join(parts)


@dataclass
class _InFlight:
    batch_id: int
    rows: Sequence[MeasurementRow]

    @property
    def cursor(self) -> Cursor:
        return Cursor.of(self.rows[-1])


class _Blocked(Exception):
    def __init__(self, error: FleetRpcError) -> None:
        super().__init__(str(error))
        self.error = error


AckHook = Callable[[int, Cursor, Any], None]


class Pusher:
    """Pushes one portal (`source`) through one `client`, remembering progress in `state`.

    `state` must be locked (`state.acquire()`) by the caller. `on_batch_acked(batch_id, cursor,
    ack)` runs after each acknowledged batch's cursor is saved (progress displays, fault tests).
    """

    def __init__(
        self,
        source: Source,
        client: IngestClient,
        state: PushState,
        *,
        options: PushOptions | None = None,
        backoff: Backoff | None = None,
        clock: Clock | None = None,
        on_batch_acked: AckHook | None = None,
    ) -> None:
        self.source = source
        self.client = client
        self.state = state
        self.options = options or PushOptions()
        self.backoff = backoff or Backoff()
        self.clock = clock or SystemClock()
        self.on_batch_acked = on_batch_acked
        self._stop = threading.Event()
        self._block_logged: str | None = None
        self._backfill_started: float | None = None
        self._backfill_rows = 0

    # -- control -------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the batches in flight, then end the tick (safe from a signal handler)."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    # -- the tick ------------------------------------------------------------------------------

    def tick(self) -> TickReport:
        """One pass over every resource; never raises for server or source failures (see the report)."""
        report = TickReport()
        self.state.heartbeat()
        if self._token_refused():
            report.results = [ResourceResult(name, Outcome.BLOCKED) for name in RESOURCES]
            return report
        try:
            for reference in REFERENCE_SETS:
                if self.stop_requested:
                    report.results.append(ResourceResult(reference.name, Outcome.STOPPED))
                    continue
                parent = reference.parent
                if parent is not None and not report.result(parent.name).outcome.in_sync:
                    report.results.append(
                        ResourceResult(reference.name, Outcome.SKIPPED, detail=f"{parent.name} not in sync")
                    )
                    continue
                report.results.append(self._push_reference(reference))
            if self.stop_requested:
                report.results.append(ResourceResult(MEASUREMENTS, Outcome.STOPPED))
            else:
                report.results.append(self._push_measurements(report))
        except _Blocked as blocked:
            self._record_block(blocked.error)
            done = {r.resource for r in report.results}
            report.results.extend(
                ResourceResult(name, Outcome.BLOCKED, error=str(blocked.error))
                for name in RESOURCES
                if name not in done
            )
        quiet = all(r.outcome in (Outcome.UNCHANGED, Outcome.UP_TO_DATE) for r in report.results)
        _LOGGER.log(logging.DEBUG if quiet else logging.INFO, "tick: %s", report.summary())
        if report.progress is not None:
            _LOGGER.info("%s", report.progress)
        return report

    # -- token refusal -------------------------------------------------------------------------

    def _token_refused(self) -> bool:
        block = self.state.auth_block()
        if block is None:
            return False
        fingerprint = self.client.token_fingerprint
        if block.fingerprint != fingerprint:
            _LOGGER.info("the token changed since the server refused %s: pushing resumes", block.fingerprint)
            self.state.clear_auth_block()
            self._block_logged = None
            return False
        if self._block_logged != fingerprint:
            _LOGGER.error(
                "pushing is stopped: the server refused token %s at %s (%s). Set FLEET_TOKEN to the "
                "customer's current token (ask the operator) and pushing resumes by itself.",
                fingerprint,
                block.at.isoformat(timespec="seconds"),
                block.message,
            )
            self._block_logged = fingerprint
        return True

    def _record_block(self, error: FleetRpcError) -> None:
        fingerprint = self.client.token_fingerprint
        self.state.block_auth(fingerprint, str(error))
        _LOGGER.error(
            "the server refused token %s (%s): pushing is stopped until FLEET_TOKEN is changed",
            fingerprint,
            error,
        )
        self._block_logged = fingerprint

    # -- failure bookkeeping -------------------------------------------------------------------

    def _fail(self, st: ResourceState, error: BaseException, now: datetime) -> ResourceResult:
        if isinstance(error, Unauthenticated | PermissionDenied):
            st.last_error = str(error)
            self.state.save(st)
            raise _Blocked(error)
        st.failures += 1
        retry_after = error.retry_after_ms if isinstance(error, FleetRpcError) else None
        delay = self.backoff.delay(st.failures, retry_after)
        st.next_attempt = now + timedelta(seconds=delay)
        st.last_error = _describe(error)
        self.state.save(st)
        log = (
            _LOGGER.error
            if isinstance(error, FleetRpcError) and error.code.name in _DATA_ERRORS
            else _LOGGER.warning
        )
        log(
            "%s: %s; failure %d in a row, next attempt in %.0fs",
            st.resource,
            st.last_error,
            st.failures,
            delay,
        )
        return ResourceResult(st.resource, Outcome.FAILED, error=st.last_error, detail=st.last_error)

    def _succeed(self, st: ResourceState, now: datetime) -> None:
        st.last_success = now
        st.failures = 0
        st.next_attempt = None
        st.last_error = None

    def _backing_off(self, st: ResourceState, now: datetime) -> ResourceResult | None:
        if st.next_attempt is not None and now < st.next_attempt:
            wait = (st.next_attempt - now).total_seconds()
            return ResourceResult(
                st.resource, Outcome.BACKING_OFF, error=st.last_error, detail=f"next in {wait:.0f}s"
            )
        return None

    # -- reference data ------------------------------------------------------------------------

    def _push_reference(self, reference: ReferenceSet[Any, Any]) -> ResourceResult:
        resource = reference.name
        st = self.state.load(resource)
        now = self.clock.now()
        waiting = self._backing_off(st, now)
        if waiting is not None:
            return waiting
        try:
            messages = reference.messages(self.source)
        except Exception as exc:
            _LOGGER.debug("reading %s from the portal failed", resource, exc_info=exc)
            return self._fail(st, _SourceError(resource, exc), now)
        digest = snapshot_hash(messages)
        fresh = (
            st.last_success is not None
            and (now - st.last_success).total_seconds() < self.options.resync_interval_s
        )
        if digest == st.snapshot_hash and fresh:
            return ResourceResult(resource, Outcome.UNCHANGED)
        st.last_attempt = now
        try:
            response = reference.push(self.client, messages)
        except FleetRpcError as exc:
            return self._fail(st, exc, now)
        self._succeed(st, now)
        st.snapshot_hash = digest
        st.rows_sent += len(messages)
        self.state.save(st)
        summary = response.summary
        detail = (
            f"{summary.received} received: {summary.inserted} inserted, {summary.updated} updated, "
            f"{summary.deleted} deleted, {summary.unchanged} unchanged"
        )
        return ResourceResult(resource, Outcome.PUSHED, streams=1, rows=len(messages), detail=detail)

    # -- measurements --------------------------------------------------------------------------

    def _push_measurements(self, report: TickReport) -> ResourceResult:
        st = self.state.load(MEASUREMENTS)
        now = self.clock.now()
        waiting = self._backing_off(st, now)
        if waiting is not None:
            return waiting
        opts = self.options
        horizon = now - timedelta(seconds=opts.safety_lag_s)
        try:
            rows = self.source.measurements_after(
                st.cursor, min(opts.batch_size, opts.max_rows_per_tick), until=horizon
            )
        except Exception as exc:
            _LOGGER.debug("reading measurements from the portal failed", exc_info=exc)
            return self._fail(st, _SourceError(MEASUREMENTS, exc), now)
        if not rows:
            if st.failures or st.last_error:
                self._succeed(st, now)
                self.state.save(st)
            self._progress(report, st.cursor, horizon, rows=0, started=self.clock.monotonic(), capped=False)
            return ResourceResult(MEASUREMENTS, Outcome.UP_TO_DATE)
        st.last_attempt = now
        result = ResourceResult(MEASUREMENTS, Outcome.PUSHED, streams=1)
        started = self.clock.monotonic()
        try:
            capped = self._stream(st, rows, horizon, result)
        except (FleetRpcError, _SourceError) as exc:
            failed = self._fail(st, exc, now)
            failed.streams, failed.rows = 1, result.rows
            failed.accepted, failed.duplicates = result.accepted, result.duplicates
            return failed
        self._succeed(st, now)
        self.state.save(st)
        elapsed = max(self.clock.monotonic() - started, 1e-9)
        result.detail = (
            f"{result.rows:,} rows, {result.accepted:,} accepted, {result.duplicates:,} duplicates, "
            f"{result.rows / elapsed:,.0f} rows/s"
        )
        if result.outcome is not Outcome.STOPPED:
            self._progress(report, st.cursor, horizon, rows=result.rows, started=started, capped=capped)
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
                while pending and len(in_flight) < opts.window and not self.stop_requested:
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
        if self.stop_requested and pending:
            result.outcome = Outcome.STOPPED
        return not exhausted and budget <= 0

    def _read(self, cursor: Cursor, limit: int, horizon: datetime) -> Sequence[MeasurementRow]:
        try:
            return self.source.measurements_after(cursor, limit, until=horizon)
        except Exception as exc:
            _LOGGER.debug("reading measurements from the portal failed", exc_info=exc)
            raise _SourceError(MEASUREMENTS, exc) from exc

    # -- back-fill progress --------------------------------------------------------------------

    def _progress(
        self,
        report: TickReport,
        cursor: Cursor | None,
        horizon: datetime,
        *,
        rows: int,
        started: float,
        capped: bool,
    ) -> None:
        """Track a back-fill: it starts with the first tick that hits the cap and ends when none is left."""
        left: int | None = None
        if capped:
            try:
                left = self.source.count_measurements_after(cursor, until=horizon)
            except Exception as exc:
                _LOGGER.debug("counting the measurements left failed", exc_info=exc)
        backlog = capped and (left is None or left > 0)
        if not backlog and self._backfill_started is None:
            return
        if self._backfill_started is None:
            self._backfill_started, self._backfill_rows = started, 0
        self._backfill_rows += rows
        elapsed = max(self.clock.monotonic() - self._backfill_started, 1e-6)
        rate = self._backfill_rows / elapsed
        remaining = left if backlog else 0
        eta = remaining / rate if remaining is not None and rate > 0 else None
        report.progress = Progress(self._backfill_rows, remaining, rate, eta)
        report.backlog = backlog
        if not backlog:
            _LOGGER.info("back-fill done: %s rows in %.1fs", f"{self._backfill_rows:,}", elapsed)
            self._backfill_started, self._backfill_rows = None, 0


_DATA_ERRORS = ("INVALID_ARGUMENT", "FAILED_PRECONDITION")


class _SourceError(Exception):
    """Reading the portal failed (its database is down, a column is missing…)."""

    def __init__(self, resource: str, cause: BaseException) -> None:
        super().__init__(f"reading {resource} from the portal failed: {type(cause).__name__}: {cause}")


def _describe(error: BaseException) -> str:
    return str(error)


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
