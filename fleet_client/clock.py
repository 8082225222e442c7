"""Injectable time for the pusher, so backoff, safety lags and locks are tested without sleeping.

The shape matches `fleet_server.clock.Clock` on purpose (a test may hand either side the same
fake clock), but `fleet_client` depends on nothing in `fleet_server`: a portal installs the
pusher without the server.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Where the pusher reads the time from."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for rates and durations."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()
