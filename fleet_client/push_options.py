"""The pusher's knobs: batch and tick caps, the safety lag, the resync interval, the ack window."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PushOptions:
    """The pusher's knobs (defaults in docs/client.md); `fleet-push` fills them from its settings."""

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
