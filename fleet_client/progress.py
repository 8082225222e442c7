"""The back-fill lane's rate in this process, for its progress line, ETA and `fleet-push status`.

Rows sent and rows left come from the lanes (`fleet_client.lanes`): the back-fill is counted
once, when it begins, and acknowledgements are added up from there, so a long back-fill does not
ask the portal for a count every tick. The rate is what this process has achieved since it began
working on the back-fill (a restart starts it afresh, so hours spent stopped do not dilute it).
"""

from __future__ import annotations

from fleet_client.clock import Clock


class BackfillRate:
    """Back-fill rows acknowledged over the time since this process's first back-fill tick."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._started: float | None = None
        self._rows = 0

    def add(self, rows: int, started: float) -> float:
        """Add a tick's back-fill rows (`started` = the tick's start, monotonic); the rate so far."""
        if self._started is None:
            self._started = started
        self._rows += rows
        return self.current or 0.0

    @property
    def current(self) -> float | None:
        if self._started is None:
            return None
        return self._rows / max(self.clock.monotonic() - self._started, 1e-6)

    def reset(self) -> None:
        """The back-fill ended; the next one starts its own rate."""
        self._started, self._rows = None, 0
