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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from fleet_server.db.session import STATEMENT_TIMEOUT_S, Database
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

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.seconds if self.seconds > 0 else 0.0


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
) -> CompressReport:
    """Compress every settled series-month (of one customer, or all); see the module docstring.

    `db` gives the URL only: the run opens its own connection (or uses `connection`, which the
    background job opens to hold its fleet-wide lock on). After the units, month partitions
    wholly before the cutoff that are now empty are truncated, once their newest unit is older
    than `truncate_grace` (default twice the longest statement timeout; see
    `ColdConnection.truncate_emptied`). `progress` is called every `PROGRESS_EVERY_S`.
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
        if not dry_run:
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
