"""A back-fill's progress across ticks: rows sent, rows left, rate and ETA for `fleet-push run`.

A back-fill starts with the first tick that stops at `max_rows_per_tick` with rows still waiting,
and ends with the first tick that finds none left. Counting the rows left asks the portal for a
count, so it is done only while a back-fill runs; a source that cannot count still gets a rate.
"""

from __future__ import annotations

import logging
from datetime import datetime

from fleet_client.clock import Clock
from fleet_client.report import Progress, TickReport
from fleet_client.rows import Cursor
from fleet_client.source import Source

_LOGGER = logging.getLogger(__name__)


class BackfillProgress:
    """Accumulates one back-fill's rows and elapsed time over the ticks it takes."""

    def __init__(self, source: Source, clock: Clock) -> None:
        self.source = source
        self.clock = clock
        self._started: float | None = None
        self._rows = 0

    def record(
        self,
        report: TickReport,
        cursor: Cursor | None,
        horizon: datetime,
        *,
        rows: int,
        started: float,
        capped: bool,
    ) -> None:
        """Add a tick's measurement push (`capped` when the cap, not the data, ended it) to the report."""
        left: int | None = None
        if capped:
            try:
                left = self.source.count_measurements_after(cursor, until=horizon)
            except Exception as exc:
                _LOGGER.debug("counting the measurements left failed", exc_info=exc)
        backlog = capped and (left is None or left > 0)
        if not backlog and self._started is None:
            return
        if self._started is None:
            self._started, self._rows = started, 0
        self._rows += rows
        elapsed = max(self.clock.monotonic() - self._started, 1e-6)
        rate = self._rows / elapsed
        remaining = left if backlog else 0
        eta = remaining / rate if remaining is not None and rate > 0 else None
        report.progress = Progress(self._rows, remaining, rate, eta)
        report.backlog = backlog
        if not backlog:
            _LOGGER.info("back-fill done: %s rows in %.1fs", f"{self._rows:,}", elapsed)
            self._started, self._rows = None, 0
