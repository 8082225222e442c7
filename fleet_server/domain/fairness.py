"""Ingest fairness: one measurement stream per customer, per-customer row and partition budgets.

Exclusivity must hold across every server process behind the load balancer, so it is a
PostgreSQL advisory lock held for the stream's life (`store.locks.StreamLocks`, which also says
how a crash never leaves a customer locked out).

The row budget is a token bucket per customer, on the injected monotonic clock (tests move it
without sleeping). It lives in the process: since a customer's only stream lives in one
process, that process's bucket is the customer's budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fleet_server.clock import Clock
from fleet_server.config import Settings
from fleet_server.db.session import Database
from fleet_server.errors import Reason, ResourceExhausted
from fleet_server.store.locks import StreamLocks

_LOGGER = logging.getLogger(__name__)


class TokenBucket:
    """`rate` tokens per second up to `burst`; starts full."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.updated = now

    def take(self, amount: int, now: float) -> int | None:
        """Take `amount` tokens and return None, or return the milliseconds until they would be there."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(self.burst), self.tokens + elapsed * self.rate)
        self.updated = now
        if amount <= self.tokens:
            self.tokens -= amount
            return None
        return max(1, math.ceil((amount - self.tokens) / self.rate * 1000))


class RowBudget:
    """Per-customer measurement rows per second (`ingest_rows_per_s`, `ingest_burst_rows`).

    A rate of 0 or less switches the budget off.
    """

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._buckets: dict[int, TokenBucket] = {}

    def admit(self, customer_id: int, rows: int) -> None:
        """Spend `rows` of the customer's budget, or raise RESOURCE_EXHAUSTED with a retry hint."""
        if self._rate <= 0 or rows <= 0:
            return
        if rows > self._burst:
            raise ResourceExhausted(
                f"a batch of {rows} rows exceeds the per-customer burst of {self._burst} rows; "
                "send smaller batches",
                reason=Reason.BATCH_OVER_BURST,
            )
        now = self._clock.monotonic()
        bucket = self._buckets.get(customer_id)
        if bucket is None:
            bucket = self._buckets[customer_id] = TokenBucket(self._rate, self._burst, now)
        wait_ms = bucket.take(rows, now)
        if wait_ms is not None:
            raise ResourceExhausted(
                f"measurement row budget exhausted ({self._rate:g} rows/s, burst {self._burst}); "
                f"retry in {wait_ms} ms",
                retry_after_ms=wait_ms,
                reason=Reason.ROW_BUDGET_EXHAUSTED,
            )


class PartitionBudget:
    """Per-customer monthly partitions its batches may create (`new_partitions_burst`, `…_per_hour`).

    Partitions are shared by every customer, and the time rules bound how many can ever exist
    (one per month since 2000), but nothing bounded how fast one customer made them appear: one
    batch of 323 readings, one a month since 2000, made 300 tables in a second. A token bucket
    per customer, on the monotonic clock, bounds it. A batch that needs more months than its
    customer may open still opens what the budget allows (oldest first) and is refused with a
    retry hint: the months it opened stay, so a legitimate back-fill across decades goes
    through after a few retries instead of never. A rate of 0 or less switches the budget off.

    Used from database threads (each batch checks it just before it is written), hence the lock.
    """

    def __init__(self, per_hour: float, burst: int, clock: Clock) -> None:
        self._rate = per_hour / 3600.0
        self._burst = max(1, burst)
        self._clock = clock
        self._buckets: dict[int, TokenBucket] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._rate > 0

    def _bucket(self, customer_id: int, now: float) -> TokenBucket:
        bucket = self._buckets.get(customer_id)
        if bucket is None:
            bucket = self._buckets[customer_id] = TokenBucket(self._rate, self._burst, now)
        bucket.take(0, now)  # refill
        return bucket

    def allowance(self, customer_id: int) -> int | None:
        """How many partitions the customer may create now; None when the budget is off."""
        if not self.enabled:
            return None
        with self._lock:
            return int(self._bucket(customer_id, self._clock.monotonic()).tokens)

    def spend(self, customer_id: int, created: int) -> None:
        if self.enabled and created > 0:
            with self._lock:
                bucket = self._bucket(customer_id, self._clock.monotonic())
                bucket.tokens = max(0.0, bucket.tokens - created)

    def refusal(self, customer_id: int, refused: int, opened: int) -> ResourceExhausted:
        """RESOURCE_EXHAUSTED for a batch whose months past the budget still have no partition."""
        with self._lock:
            bucket = self._bucket(customer_id, self._clock.monotonic())
            wanted = min(refused, self._burst)
            wait_ms = max(1, math.ceil((wanted - bucket.tokens) / self._rate * 1000))
        return ResourceExhausted(
            f"the batch reaches {refused} more months without a measurement partition than this "
            f"customer may open now ({self._burst} at once, {self._rate * 3600:g} per hour; "
            f"{opened} opened for this batch); nothing of it was written, retry in {wait_ms} ms",
            reason=Reason.PARTITION_BUDGET_EXHAUSTED,
            retry_after_ms=wait_ms,
            metadata={"months_without_partition": str(refused)},
        )


@dataclass
class IngestGate:
    """The fairness state of one server process and database; the app builds one."""

    locks: StreamLocks
    budget: RowBudget
    partition_budget: PartitionBudget

    @classmethod
    def build(cls, db: Database, settings: Settings, clock: Clock) -> IngestGate:
        return cls(
            locks=StreamLocks(db.engine),
            budget=RowBudget(settings.ingest_rows_per_s, settings.ingest_burst_rows, clock),
            partition_budget=PartitionBudget(
                settings.new_partitions_per_hour, settings.new_partitions_burst, clock
            ),
        )

    @contextlib.asynccontextmanager
    async def exclusive_stream(self, customer_id: int) -> AsyncIterator[None]:
        """Own the customer's measurement stream for the `async with` body, or raise RESOURCE_EXHAUSTED."""
        if not await self.locks.try_acquire(customer_id):
            raise ResourceExhausted(
                "another PushMeasurements stream of this customer is open; one stream per customer at a time",
                reason=Reason.STREAM_ALREADY_OPEN,
            )
        try:
            yield
        finally:
            try:
                await asyncio.shield(self.locks.release(customer_id))
            except Exception:  # shutting down: the closing connection releases the lock
                _LOGGER.info("stream lock of customer %d not released explicitly", customer_id, exc_info=True)
