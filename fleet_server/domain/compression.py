"""Cold storage, the use case: compress every settled series-month, one unit per transaction.

A UTC day is *settled* when it ends at or before the UTC-day floor of `now - older_than`: no
live portal writes there any more (a late reading still may; it stays hot until the next run
folds it in). For every (customer, device, metric, UTC month) with hot readings on settled days,
one transaction folds those readings and their hourly rollups into the month's unit and deletes
them (`store/cold.py`); a unit's `through_day` is the last settled day of its month.

A run is safe to kill at any moment and to run twice at once (each unit is locked exclusively
and re-read under the lock: what another run already folded is no longer hot). It runs on its
own connection, outside the server's pool and turn scheduler (docs/DESIGN.md, "Cold storage").
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from fleet_server.clock import Clock
from fleet_server.db.session import STATEMENT_TIMEOUT_S, Database
from fleet_server.domain.customers import customer_id_for
from fleet_server.errors import InvalidArgument
from fleet_server.store import cold
from fleet_server.store.cold_codec import InconsistentRollups

_LOGGER = logging.getLogger(__name__)

# One unit's transaction may read, encode and delete a dense month: longer than an RPC may take.
COMPRESS_STATEMENT_TIMEOUT_S = 300.0
# How often a run logs its progress.
PROGRESS_EVERY_S = 10.0


@dataclass
class CompressReport:
    """What a run did (a dry run: what it would do). Bytes are before → after for the units touched."""

    units: int = 0  # units written (or that would be)
    readings: int = 0  # hot readings folded into units
    bytes_before: int = 0
    bytes_after: int = 0
    seconds: float = 0.0
    skipped: int = 0  # units whose rows and rollups disagree (logged as ERROR, left hot)
    failed: int = 0  # units that timed out or lost their customer meanwhile (retried next run)
    truncated: list[str] = field(default_factory=list)  # month partitions given back
    dry_run: bool = False
    cutoff: datetime | None = None
    stopped: bool = False  # asked to stop before every unit was done

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.seconds if self.seconds > 0 else 0.0


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def parse_duration(text: str, what: str = "--older-than") -> timedelta:
    """`7d`, `36h`, `90m`, `3600s`, `2w` (or plain seconds) as a timedelta; InvalidArgument if not."""
    match = _DURATION.match(text)
    if match is None:
        raise InvalidArgument.single(
            what, f"{text!r} is not a duration; give a number and a unit, like 7d, 36h, 90m or 3600s"
        )
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def customer_id_of(db: Database | str, code: str) -> int:
    """The id of the customer `code`, refused as every lookup by code is (NOT_FOUND, did you mean)."""
    database = Database.from_url(db, 1) if isinstance(db, str) else db
    try:
        return database.transaction(customer_id_for, code)
    finally:
        if database is not db:
            database.close()


def settled_cutoff(now: datetime, older_than: timedelta) -> datetime:
    """The first instant that is not settled: the UTC-day floor of `now - older_than`."""
    moment = (now - older_than).astimezone(UTC)
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)


def compress(
    db: Database | str,
    now: datetime,
    older_than: timedelta,
    customer_id: int | None = None,
    dry_run: bool = False,
    *,
    statement_timeout_s: float = COMPRESS_STATEMENT_TIMEOUT_S,
    truncate_grace: timedelta | None = None,
    connection: cold.ColdConnection | None = None,
    progress: Callable[[CompressReport], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> CompressReport:
    """Compress every settled series-month (of one customer, or all); see the module docstring.

    `db` gives the URL only: the run opens its own connection (or uses `connection`, which the
    background job opens to hold its fleet-wide lock on). After the units, month partitions
    wholly before the cutoff that are now empty are truncated, once their newest unit is older
    than `truncate_grace` (default twice the longest statement timeout; see
    `ColdConnection.truncate_emptied`). `progress` is called every `PROGRESS_EVERY_S`; a run
    whose `should_stop` turns true stops between two units (what it did stays done).
    """
    if older_than < timedelta(0):
        raise ValueError("older_than must not be negative")
    url = db if isinstance(db, str) else db.engine.url
    cutoff = settled_cutoff(now, older_than)
    grace = truncate_grace
    if grace is None:
        grace = timedelta(seconds=2 * max(statement_timeout_s, STATEMENT_TIMEOUT_S))
    report = CompressReport(dry_run=dry_run, cutoff=cutoff)
    started = time.perf_counter()
    own = connection is None
    conn = connection if connection is not None else cold.ColdConnection(url, statement_timeout_s)
    try:
        last_note = started
        for unit in conn.candidates(cutoff, customer_id):
            if should_stop is not None and should_stop():
                report.stopped = True
                break
            _compress_one(conn, unit, cutoff, dry_run, report)
            if time.perf_counter() - last_note >= PROGRESS_EVERY_S:
                last_note = time.perf_counter()
                report.seconds = last_note - started
                _LOGGER.info(
                    "compression: %d units, %d readings so far (%.0f readings/s)",
                    report.units,
                    report.readings,
                    report.readings_per_s,
                )
                if progress is not None:
                    progress(report)
        if not dry_run and not report.stopped:
            report.truncated = conn.truncate_emptied(cutoff, grace)
    finally:
        if own:
            conn.close()
    report.seconds = time.perf_counter() - started
    return report


def _compress_one(
    conn: cold.ColdConnection, unit: cold.Candidate, cutoff: datetime, dry_run: bool, report: CompressReport
) -> None:
    try:
        outcome = conn.compress_unit(unit, cutoff, dry_run=dry_run)
    except InconsistentRollups as exc:
        report.skipped += 1
        _LOGGER.error("%s: not compressed, its rows and hourly rollups disagree: %s", _name(unit), exc)
        return
    except cold.UnitFailed as exc:
        report.failed += 1
        _LOGGER.warning("%s: not compressed this run: %s", _name(unit), exc)
        return
    if outcome is None:
        return  # another run folded it first
    report.units += 1
    report.readings += outcome.readings
    report.bytes_before += outcome.bytes_before
    report.bytes_after += outcome.bytes_after


def _name(unit: cold.Candidate) -> str:
    month: date = unit.month
    return f"customer {unit.customer_id} device {unit.device_id} {unit.metric} {month:%Y-%m}"


class CompressionObserver(Protocol):
    """What the background job reports each run to (the telemetry hook, `CompressionMetrics`)."""

    def run_finished(
        self, *, ok: bool, units: int, readings: int, bytes_before: int, bytes_after: int, at: float
    ) -> None: ...


class CompressionJob:
    """The server's background compression: a run every `interval_s`, one process of a fleet at a time.

    Its own thread and its own database connection: a run never takes a thread or a connection
    of the turn scheduler (`db/scheduler.py`), so ingest and operators never wait behind it.
    Each round opens the connection and try-locks the fleet's job lock on it (session level,
    `LockSpace.COMPRESS_JOB`): the process that gets it runs, the others log that they skip the
    round. Closing the connection at the end of the round releases the lock, and a killed
    process's lock goes with its connection. The first run comes one interval after start.
    """

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        interval_s: float,
        older_than: timedelta,
        statement_timeout_s: float = STATEMENT_TIMEOUT_S,
        observer: CompressionObserver | None = None,
    ) -> None:
        self._url = db.engine.url
        self._clock = clock
        self._interval_s = interval_s
        self._older_than = older_than
        self._statement_timeout_s = statement_timeout_s
        self._observer = observer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rounds = 0  # rounds this process ran (skipped ones not counted)

    def start(self) -> CompressionJob:
        self._thread = threading.Thread(target=self._loop, name="fleet-compress", daemon=True)
        self._thread.start()
        _LOGGER.info(
            "background compression every %.0fs of days older than %s", self._interval_s, self._older_than
        )
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the unit in progress (a unit is one transaction: nothing is half done)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.run_once()
            except Exception:
                _LOGGER.exception("compression run failed; next try in %.0fs", self._interval_s)
                self._report(None)

    def run_once(self) -> CompressReport | None:
        """One round: None when another process of the fleet holds the job."""
        with cold.ColdConnection(self._url, COMPRESS_STATEMENT_TIMEOUT_S) as conn:
            if not conn.try_lock_job():
                _LOGGER.info("compression: another process of the fleet is running it; skipping this round")
                return None
            _LOGGER.info("compression run started")
            report = compress(
                self._url.render_as_string(hide_password=False),
                self._clock.now(),
                self._older_than,
                connection=conn,
                should_stop=self._stop.is_set,
                truncate_grace=timedelta(
                    seconds=2 * max(COMPRESS_STATEMENT_TIMEOUT_S, self._statement_timeout_s)
                ),
            )
        self.rounds += 1
        _LOGGER.info("compression run finished: %s", describe(report))
        self._report(report)
        return report

    def _report(self, report: CompressReport | None) -> None:
        if self._observer is None:
            return
        self._observer.run_finished(
            ok=report is not None and report.failed == 0 and report.skipped == 0,
            units=0 if report is None else report.units,
            readings=0 if report is None else report.readings,
            bytes_before=0 if report is None else report.bytes_before,
            bytes_after=0 if report is None else report.bytes_after,
            at=time.time(),
        )


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def describe(report: CompressReport) -> str:
    """One line: units, readings, bytes before → after, seconds, readings/s (what the CLI prints)."""
    verb = "would compress" if report.dry_run else "compressed"
    ratio = f" ({report.bytes_before / report.bytes_after:,.1f}x smaller)" if report.bytes_after else ""
    text = (
        f"{verb} {report.units:,} units: {report.readings:,} readings, "
        f"{_size(report.bytes_before)} -> {_size(report.bytes_after)}{ratio}, "
        f"{report.seconds:,.1f}s, {report.readings_per_s:,.0f} readings/s"
    )
    if report.skipped:
        text += f"; {report.skipped} units skipped (rows and rollups disagree, see the log)"
    if report.failed:
        text += f"; {report.failed} units failed (retried next run, see the log)"
    if report.stopped:
        text += "; stopped before the end"
    return text
