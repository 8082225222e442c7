"""What one tick did: each resource's outcome and the back-fill's progress (`fleet-push once` prints it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum

from fleet_client.resources import MEASUREMENTS


class Outcome(Enum):
    """How a resource ended the tick; the value is what `fleet-push once` prints."""

    PUSHED = "pushed"
    UNCHANGED = "unchanged"
    UP_TO_DATE = "up to date"
    BACKING_OFF = "backing off"
    SKIPPED = "skipped: parent not in sync"
    FAILED = "failed"
    BLOCKED = "blocked: token refused"
    STOPPED = "stopped"
    QUARANTINED = "rows quarantined"

    @property
    def in_sync(self) -> bool:
        """Whether the server holds what the portal holds: only then may dependants be pushed."""
        return self in (Outcome.PUSHED, Outcome.UNCHANGED, Outcome.UP_TO_DATE)


@dataclass
class ResourceResult:
    """One resource's part of a tick; a failed measurement push still counts what was acknowledged."""

    resource: str
    outcome: Outcome
    streams: int = 0
    rows: int = 0
    accepted: int = 0
    duplicates: int = 0
    error: str | None = None
    detail: str = ""

    def describe(self, width: int = 0) -> str:
        """`resource outcome (detail)`, the resource padded to `width` for a column of lines."""
        text = f"{self.resource:<{width}} {self.outcome.value}"
        return f"{text} ({self.detail})" if self.detail else text


@dataclass(frozen=True)
class Progress:
    """A back-fill's progress after a tick: rows sent so far, rows left, rate and ETA, and the live
    lane's lag (the newest reading at the portal minus the newest acknowledged one)."""

    rows_sent: int
    rows_left: int | None
    rows_per_s: float
    eta_s: float | None
    live_lag_s: float | None = None

    def __str__(self) -> str:
        left = f"{self.rows_left:,}" if self.rows_left is not None else "?"
        eta = str(timedelta(seconds=round(self.eta_s))) if self.eta_s is not None else "?"
        line = (
            f"back-fill: {self.rows_sent:,} rows sent, {left} left, {self.rows_per_s:,.0f} rows/s, ETA {eta}"
        )
        if self.live_lag_s is not None:
            line += f"; live lag {lag_text(self.live_lag_s)}"
        return line


def lag_text(seconds: float) -> str:
    """A lag as people read it: `0.4s`, `42s`, `1:02:03`."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    return str(timedelta(seconds=round(seconds)))


@dataclass
class TickReport:
    """Every resource's result in push order. `backlog` tells `fleet-push run` to tick again at
    once instead of waiting out the interval: the cap ended the tick, not the data."""

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
        return sum(r.rows for r in self.results if r.resource == MEASUREMENTS)

    @property
    def ok(self) -> bool:
        return all(r.outcome.in_sync or r.outcome is Outcome.STOPPED for r in self.results)

    @property
    def blocked(self) -> bool:
        return any(r.outcome is Outcome.BLOCKED for r in self.results)

    def summary(self) -> str:
        """Every result on one line, for the tick's log line."""
        return "; ".join(r.describe() for r in self.results)
