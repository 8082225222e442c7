"""Backoff arithmetic: exponential ceiling, cap, full jitter from the injected source, server hint."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from fleet_client.backoff import Backoff


def test_ceiling_doubles_from_base_to_cap() -> None:
    backoff = Backoff(20.0, 600.0, lambda: 1.0)
    assert [backoff.delay(n) for n in range(1, 8)] == [20, 40, 80, 160, 320, 600, 600]
    assert backoff.delay(10_000) == 600  # no overflow for a very long outage


def test_full_jitter_scales_the_ceiling() -> None:
    assert Backoff(20.0, 600.0, lambda: 0.5).delay(3) == 40
    assert Backoff(20.0, 600.0, lambda: 0.0).delay(3) == 0


def test_server_hint_wins_when_longer() -> None:
    backoff = Backoff(20.0, 600.0, lambda: 0.5)
    assert backoff.delay(1, retry_after_ms=30_000) == 30
    assert backoff.delay(1, retry_after_ms=3_000) == 10
    assert backoff.delay(1, retry_after_ms=900_000) == 900  # honoured even past the cap


@settings(max_examples=50, deadline=None)
@given(failures=st.integers(1, 200), seed=st.integers(0, 2**32), hint=st.none() | st.integers(0, 10**7))
def test_delay_stays_within_bounds(failures: int, seed: int, hint: int | None) -> None:
    backoff = Backoff(20.0, 600.0, random.Random(seed).random)
    delay = backoff.delay(failures, hint)
    assert (hint or 0) / 1000 <= delay <= max(600.0, (hint or 0) / 1000)
    assert delay <= max(backoff.ceiling(failures), (hint or 0) / 1000)
