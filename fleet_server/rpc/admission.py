"""Admission: how many calls of each kind one server process serves at once, and who is refused.

gRPC's own `maximum_concurrent_rpcs` counts every call alike, so 260 anonymous health `Watch`
streams, or one customer's 300 idle pushes, took every slot and every other caller was refused
until they closed. Here each kind of caller has a budget of its own, and a full budget refuses
only its own kind:

- customers: at most `per_customer` calls of one customer (streams of every kind), and at most
  `customers` of all customers together;
- operators (admin and query calls): `operators`, apart from the customers' share, so a fleet
  of portals at their limits never refuses an operator;
- callers without a token: `anonymous_streams` for calls that can stay open (health `Watch`,
  reflection) and `anonymous_calls` for unary ones (health `Check`), so a flood of `Watch`
  streams never takes a slot of an authenticated call, nor the `Check` a load balancer probes.

A refusal is `RESOURCE_EXHAUSTED` with an `ErrorInfo` reason naming the budget and a retry hint.
The counters belong to one process (the slots they protect are that process's), are built by
the `App`, and are touched only on the server's event loop, so they need no lock.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from fleet_server.clock import Clock
from fleet_server.config import Settings
from fleet_server.errors import Reason, ResourceExhausted

_LOGGER = logging.getLogger(__name__)

# A slot frees when a call ends, and most calls end within a second. The hint is a floor: the
# callers add their own jitter (fleet-push draws its delay below an exponential ceiling).
RETRY_AFTER_MS = 1000
# A full budget is logged at its first refusal and then at most once per this many seconds,
# with the number refused meanwhile: a line per refusal would turn a flood into a log flood.
WARN_EVERY_S = 60.0


@dataclass(frozen=True)
class Limits:
    """The size of each budget (see the module docstring)."""

    per_customer: int
    customers: int
    operators: int
    anonymous_streams: int
    anonymous_calls: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            per_customer=settings.max_calls_per_customer,
            customers=settings.max_customer_calls,
            operators=settings.max_operator_calls,
            anonymous_streams=settings.max_anonymous_streams,
            anonymous_calls=settings.max_anonymous_calls,
        )

    def total(self) -> int:
        """Every call the budgets together admit at once (gRPC's ceiling must be above it)."""
        return self.customers + self.operators + self.anonymous_streams + self.anonymous_calls


class _Budget:
    """One counter of calls in progress, its limit, and the refusal it answers when full."""

    def __init__(self, name: str, limit: int, reason: Reason, message: str, clock: Clock) -> None:
        self.name = name
        self.limit = limit
        self.in_use = 0
        self._reason = reason
        self._message = message
        self._clock = clock
        self._refused = 0
        self._warned_at: float | None = None

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        if self.in_use >= self.limit:
            raise self.refusal()
        self.in_use += 1
        try:
            yield
        finally:
            self.in_use -= 1

    def refusal(self, detail: str = "") -> ResourceExhausted:
        self._refused += 1
        now = self._clock.monotonic()
        if self._warned_at is None or now - self._warned_at >= WARN_EVERY_S:
            _LOGGER.warning(
                "%s: all %d slots in use, %d call(s) refused%s%s",
                self.name,
                self.limit,
                self._refused,
                "" if self._warned_at is None else f" in the last {now - self._warned_at:.0f} s",
                detail,
            )
            self._warned_at = now
            self._refused = 0
        return ResourceExhausted(
            self._message.format(limit=self.limit),
            retry_after_ms=RETRY_AFTER_MS,
            reason=self._reason,
            metadata={"limit": str(self.limit)},
        )


class Admission:
    """The call budgets of one server process; each method holds a slot for its `with` body."""

    def __init__(self, limits: Limits, clock: Clock) -> None:
        self.limits = limits
        self._per_customer: dict[int, int] = {}
        self._one_customer = _Budget(
            "calls of one customer",
            limits.per_customer,
            Reason.CUSTOMER_CALL_LIMIT,
            "this customer already has {limit} calls in progress on this server (its limit); "
            "retry when one of them has ended",
            clock,
        )
        self._customers = _Budget(
            "customer calls",
            limits.customers,
            Reason.CUSTOMERS_CALL_LIMIT,
            "the server is serving as many customer calls as it admits ({limit}); retry shortly",
            clock,
        )
        self._operators = _Budget(
            "operator calls",
            limits.operators,
            Reason.OPERATOR_CALL_LIMIT,
            "{limit} operator calls are in progress on this server (the operators' limit); "
            "retry when one of them has ended",
            clock,
        )
        self._anonymous_streams = _Budget(
            "streams without a token",
            limits.anonymous_streams,
            Reason.ANONYMOUS_STREAM_LIMIT,
            "{limit} streams without a token (health Watch, reflection) are open on this server; "
            "use Health/Check, or retry later",
            clock,
        )
        self._anonymous_calls = _Budget(
            "calls without a token",
            limits.anonymous_calls,
            Reason.ANONYMOUS_CALL_LIMIT,
            "{limit} calls without a token are in progress on this server; retry shortly",
            clock,
        )

    @contextlib.contextmanager
    def customer(self, customer_id: int) -> Iterator[None]:
        """A slot of the customer's own and one of all customers', or RESOURCE_EXHAUSTED.

        The customer's own limit is checked first: a portal over it is told that it is the one
        holding the slots, not that the server is busy.
        """
        held = self._per_customer.get(customer_id, 0)
        if held >= self.limits.per_customer:
            raise self._one_customer.refusal(f" (last: customer id {customer_id})")
        with self._customers.hold():
            self._per_customer[customer_id] = held + 1
            try:
                yield
            finally:
                left = self._per_customer[customer_id] - 1
                if left:
                    self._per_customer[customer_id] = left
                else:  # thousands of customers come and go: keep only those with calls
                    del self._per_customer[customer_id]

    def operator(self) -> contextlib.AbstractContextManager[None]:
        """A slot of the operators' share, or RESOURCE_EXHAUSTED."""
        return self._operators.hold()

    def anonymous(self, streaming: bool) -> contextlib.AbstractContextManager[None]:
        """A slot for a caller without a token: a stream's (it may stay open) or a unary call's."""
        return (self._anonymous_streams if streaming else self._anonymous_calls).hold()

    def calls_of(self, customer_id: int) -> int:
        """Calls of this customer in progress in this process."""
        return self._per_customer.get(customer_id, 0)

    def in_use(self) -> dict[str, int]:
        """Slots in use per budget (for tests and `fleet_calls_in_progress`)."""
        return {
            "customers": self._customers.in_use,
            "operators": self._operators.in_use,
            "anonymous_streams": self._anonymous_streams.in_use,
            "anonymous_calls": self._anonymous_calls.in_use,
        }
