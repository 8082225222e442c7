"""Process-wide memory budgets: how much pushed data this process holds at once, over all calls.

Each call's own limits (rows and bytes of one snapshot, the size of one message, two
measurement batches ahead per stream) bound what one call holds; these bound what all of them
hold together, so that many customers at their limits at once cannot take the process's
memory. A message is charged what it costs once decoded (`resident_cost`): the server holds
Python objects, not the bytes that came over the wire, and a row costs the same few hundred
bytes of objects whether its text is long or empty. The estimate is measured by
`python -m bench.memory`; docs/operations.md has the figures.

A call that would go over is refused at once with RESOURCE_EXHAUSTED and a retry hint rather
than made to wait: a waiting call would hold its connection, its slot and what it already read
for as long as others hold theirs. A holder alone in the process is never refused by the total
(only by its own share), so a small setting slows the server down but never locks a push out.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable

from fleet_server import collector
from fleet_server.errors import Reason, ResourceExhausted

# Decoded, pushed data costs the process up to about 2.5 times its serialized size plus 400
# bytes per row (the objects of a site or a measurement row, and the copies made to write
# them), measured with `python -m bench.memory` on CPython 3.11 and upb. Charged: 3 and 400.
COST_PER_BYTE = 3
COST_PER_ROW = 400
# Retry hints of a refusal for memory: about how long the holders take to be done — a large
# snapshot is read, validated and applied in seconds, a measurement batch written in about one.
SNAPSHOT_RETRY_MS = 5_000
BATCH_RETRY_MS = 1_000


def resident_cost(serialized_bytes: int, rows: int) -> int:
    """About what `rows` rows that arrived as `serialized_bytes` of protobuf cost once decoded."""
    return COST_PER_BYTE * serialized_bytes + COST_PER_ROW * rows


class ByteBudget:
    """At most `limit` bytes held at once in all, and at most `per_holder` by one holder (a customer).

    A `limit` of 0 or less switches the budget off (and the per-holder share with it).
    `retry_after_ms` is the hint a refused call gets: about how long a holder keeps its bytes.
    """

    def __init__(self, what: str, limit: int, *, per_holder: int | None = None, retry_after_ms: int) -> None:
        self.what = what
        self.limit = limit
        self.per_holder = per_holder
        self.retry_after_ms = retry_after_ms
        self._lock = threading.Lock()
        self._held = 0
        self._by_holder: dict[Hashable, int] = {}

    @property
    def held(self) -> int:
        """Bytes held right now, over all holders."""
        return self._held

    def take(self, holder: Hashable, size: int) -> None:
        """Hold `size` more bytes for `holder`, or raise RESOURCE_EXHAUSTED (nothing taken).

        A refusal first sets off a full garbage collection (at most one a second, see
        `collector.collect_under_pressure`): what refused calls left in reference cycles is
        memory this budget does not count.
        """
        if self.limit <= 0 or size <= 0:
            return
        refusal = self._take(holder, size)
        if refusal is not None:
            collector.collect_under_pressure()
            raise refusal

    def _take(self, holder: Hashable, size: int) -> ResourceExhausted | None:
        with self._lock:
            mine = self._by_holder.get(holder, 0)
            if self.per_holder is not None and mine + size > self.per_holder:
                return self._refusal(
                    f"this customer's {self.what} in progress already hold {mine:,} bytes "
                    f"of its {self.per_holder:,}",
                    "customer",
                )
            if self._held + size > self.limit and self._held > mine:
                return self._refusal(
                    f"the server holds {self._held:,} bytes of {self.what} of its {self.limit:,}", "server"
                )
            self._held += size
            self._by_holder[holder] = mine + size
            return None

    def give_back(self, holder: Hashable, size: int) -> None:
        """Return `size` bytes `holder` took (never more than it holds)."""
        if self.limit <= 0 or size <= 0:
            return
        with self._lock:
            mine = self._by_holder.get(holder, 0)
            size = min(size, mine)
            self._held -= size
            if mine - size > 0:
                self._by_holder[holder] = mine - size
            else:
                self._by_holder.pop(holder, None)

    def _refusal(self, why: str, scope: str) -> ResourceExhausted:
        return ResourceExhausted(
            f"{why}; retry in {self.retry_after_ms} ms",
            reason=Reason.MEMORY_BUSY,
            metadata={"budget": self.what, "scope": scope},
            retry_after_ms=self.retry_after_ms,
        )


class Holding:
    """One call's share of a `ByteBudget`: what it took, given back whole by `release` (idempotent)."""

    def __init__(self, budget: ByteBudget, holder: Hashable) -> None:
        self._budget = budget
        self._holder = holder
        self.size = 0

    def take(self, size: int) -> None:
        self._budget.take(self._holder, size)
        self.size += size

    def release(self) -> None:
        size, self.size = self.size, 0
        self._budget.give_back(self._holder, size)
