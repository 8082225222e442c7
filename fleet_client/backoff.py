"""Per-resource retry pacing: exponential backoff with full jitter, capped, never sooner than asked.

The server's `retry-after-ms` hint is a floor: a delay is never shorter than the server asked.

Full jitter (a uniformly random delay between 0 and the exponential ceiling) spreads the retries
of many portals that failed together, so a recovering server is not hit by all of them at once.
The random source is injected, so tests pin the delay exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    """`delay(failures)` after the n-th consecutive failure (n ≥ 1)."""

    base_s: float = 20.0
    cap_s: float = 600.0
    rand: Callable[[], float] = field(default=random.random, compare=False)

    def ceiling(self, failures: int) -> float:
        """The exponential ceiling: base * 2^(n-1), capped."""
        exponent = min(max(failures, 1) - 1, 62)  # 2**62 · base is far past any cap
        return float(min(self.cap_s, self.base_s * (2**exponent)))

    def delay(self, failures: int, retry_after_ms: int | None = None) -> float:
        """Seconds to wait: a uniform draw in [0, ceiling], raised to the server's hint when it asks more."""
        jittered = self.rand() * self.ceiling(failures)
        hinted = (retry_after_ms or 0) / 1000.0
        return max(jittered, hinted)
