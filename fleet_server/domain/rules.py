"""Validation rules shared by every kind of pushed data (§10)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fleet_server.errors import Violations

# Readings and tariff windows before this are certainly a portal bug (an unset clock, epoch 0).
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
# Clocks drift; more than a day ahead is a wrong timezone or a wrong clock, not drift.
MAX_FUTURE = timedelta(days=1)


def check_time(
    value: datetime | None,
    now: datetime,
    path: str,
    problems: Violations,
    *,
    allow_future: bool = False,
) -> None:
    """Record a violation when `value` is unset, before 2000-01-01 or more than a day ahead of `now`.

    `allow_future` drops the upper bound for dates that are legitimately ahead of the clock,
    such as a tariff's effective window (published before it applies, ending at a year end).
    """
    if value is None:
        problems.add(path, "must be set")
    elif value < EARLIEST_TIME:
        problems.add(path, "must not be before 2000-01-01T00:00:00Z")
    elif not allow_future and value > now + MAX_FUTURE:
        problems.add(path, "must not be more than 1 day in the future")
