"""The per-customer row budget: a token bucket on the injected monotonic clock."""

from __future__ import annotations

import pytest

from fleet_server.clock import FakeClock
from fleet_server.domain.fairness import RowBudget, TokenBucket
from fleet_server.errors import ResourceExhausted


def test_bucket_starts_full_and_refills_at_its_rate_up_to_the_burst():
    bucket = TokenBucket(rate=100.0, burst=1000, now=0.0)
    assert bucket.take(1000, now=0.0) is None
    assert bucket.take(1, now=0.0) == 10  # one token at 100/s: 10 ms
    assert bucket.take(500, now=5.0) is None  # 5 s refill 500
    assert bucket.take(1000, now=1000.0) is None  # refill is capped at the burst
    assert bucket.take(1, now=1000.0) == 10


def test_retry_hint_is_the_time_until_enough_tokens_are_back():
    bucket = TokenBucket(rate=200.0, burst=500, now=0.0)
    assert bucket.take(400, now=0.0) is None
    assert bucket.take(500, now=0.0) == 2000  # 400 missing at 200/s
    assert bucket.take(500, now=1.9) == 100  # 20 missing; a refused take spends nothing
    assert bucket.take(500, now=2.0) is None


def test_budget_is_per_customer_and_raises_with_the_hint():
    clock = FakeClock()
    budget = RowBudget(rate=100.0, burst=1000, clock=clock)
    budget.admit(1, 1000)
    budget.admit(2, 1000)  # another customer has its own bucket
    with pytest.raises(ResourceExhausted) as refused:
        budget.admit(1, 250)
    assert refused.value.retry_after_ms == 2500
    assert refused.value.reason == "ROW_BUDGET_EXHAUSTED"
    clock.advance(2.5)
    budget.admit(1, 250)


def test_a_batch_larger_than_the_burst_can_never_pass_and_says_so():
    budget = RowBudget(rate=100.0, burst=10, clock=FakeClock())
    with pytest.raises(ResourceExhausted) as refused:
        budget.admit(1, 11)
    assert refused.value.retry_after_ms is None
    assert refused.value.reason == "BATCH_OVER_BURST"
    assert "exceeds the per-customer burst of 10 rows" in refused.value.message


def test_a_rate_of_zero_switches_the_budget_off():
    budget = RowBudget(rate=0.0, burst=1, clock=FakeClock())
    budget.admit(1, 10_000_000)
