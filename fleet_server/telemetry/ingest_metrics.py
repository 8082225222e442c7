"""Ingest metrics per customer: rows by outcome, the last push, and who still uses an old token.

`IngestMetricsInterceptor` goes after the auth interceptor, so its handler receives the
`CallContext` with the proven identity (the customer's code is the only customer label; a token
never is). It reads what the caller is told — each request's rows, each PushMeasurements
acknowledgement, each snapshot's `SyncSummary` — so the counters move exactly as the pushes
do, without the servicers or the use cases knowing about metrics:

- a snapshot that commits adds its inserted, updated, unchanged and deleted counts; one that
  fails adds every row it carried as `rejected` (a snapshot is all or nothing);
- each acknowledged measurement batch adds `accepted` and `duplicate`; when the stream fails,
  the rows received but never acknowledged are `rejected` (the portal sends them again).

So for every call, rows received = inserted + updated + unchanged + rejected (snapshots) or
accepted + duplicate + rejected (measurements); `deleted` counts rows the snapshot removed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
import grpc.aio
from fleet.v1 import ingest_service_pb2
from prometheus_client import CollectorRegistry, Counter, Gauge

from fleet_server.clock import Clock
from fleet_server.domain.authentication import CustomerIdentity
from fleet_server.resources import Resource

SNAPSHOT_OUTCOMES = ("inserted", "updated", "unchanged", "deleted", "rejected")
MEASUREMENT_OUTCOMES = ("accepted", "duplicate", "rejected")

_SERVICE = ingest_service_pb2.DESCRIPTOR.services_by_name["FleetIngestService"].full_name
# Push method → (resource, the repeated field of its request that holds the rows).
PUSHES: dict[str, tuple[Resource, str]] = {
    f"/{_SERVICE}/PushSites": (Resource.SITES, "sites"),
    f"/{_SERVICE}/PushDevices": (Resource.DEVICES, "devices"),
    f"/{_SERVICE}/PushMunicipalities": (Resource.MUNICIPALITIES, "municipalities"),
    f"/{_SERVICE}/PushTariffs": (Resource.TARIFFS, "tariffs"),
    f"/{_SERVICE}/PushMeasurements": (Resource.MEASUREMENTS, "measurements"),
}


class IngestMetrics:
    """The per-customer families. Cardinality: customers x 23 row series (4 reference resources x 5
    outcomes + measurements x 3) + 5 last-push gauges; about 140,000 series for 5,000 customers."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.rows = Counter(
            "fleet_ingest_rows",
            "Rows pushed by customers, by what became of them: inserted, updated, unchanged, deleted "
            "(snapshots), accepted, duplicate (measurements), rejected (refused or never acknowledged).",
            ("customer", "resource", "outcome"),
            registry=registry,
        )
        self.last_push = Gauge(
            "fleet_last_push_timestamp_seconds",
            "When the customer's last successful push of the resource ended (Unix time); also re-read "
            "from the database every minute, so a portal that went quiet before a restart, or pushes "
            "to another server, still shows.",
            ("customer", "resource"),
            multiprocess_mode="max",
            registry=registry,
        )
        self.previous_token_calls = Counter(
            "fleet_previous_token_calls",
            "Calls authenticated with a customer's previous token, in its rotation grace window: the "
            "portal has not switched to its new token yet.",
            ("customer",),
            registry=registry,
        )
        self.previous_token_expiry = Gauge(
            "fleet_previous_token_expiry_timestamp_seconds",
            "When the previous token of a customer that still uses it stops being accepted (Unix time).",
            ("customer",),
            multiprocess_mode="max",
            registry=registry,
        )
        self.active = Gauge(
            "fleet_customer_active",
            "1 for an active customer, 0 for a deactivated or erased one (alerts on a customer's pushes "
            "join on it, so a customer switched off on purpose does not page anyone).",
            ("customer",),
            multiprocess_mode="livemax",
            registry=registry,
        )
        self._children: dict[tuple[str, Resource], _CustomerResource] = {}
        self._known: set[str] = set()

    def of(self, customer: str, resource: Resource) -> _CustomerResource:
        """The children of one customer and resource; every outcome starts at zero, so `increase()`
        sees the first rejection too."""
        key = (customer, resource)
        found = self._children.get(key)
        if found is None:
            outcomes = MEASUREMENT_OUTCOMES if resource is Resource.MEASUREMENTS else SNAPSHOT_OUTCOMES
            found = _CustomerResource(
                rows={outcome: self.rows.labels(customer, resource.value, outcome) for outcome in outcomes},
                last_push=self.last_push.labels(customer, resource.value),
            )
            self._children[key] = found
        return found

    def seed_last_push(self, customer: str, resource: Resource, when: datetime) -> None:
        """A push recorded in the database: before this process started, or through another server
        (never moves the gauge back)."""
        self.of(customer, resource).pushed_at(when.timestamp())

    def customers(self, active: dict[str, bool]) -> None:
        """Every customer's active flag; one erased since the last call is 0 (a series cannot be
        removed in multiprocess mode)."""
        for code in self._known - active.keys():
            self.active.labels(code).set(0)
        for code, is_active in active.items():
            self.active.labels(code).set(1 if is_active else 0)
        self._known |= active.keys()

    def token_use(self, identity: CustomerIdentity) -> None:
        if identity.previous_token:
            self.previous_token_calls.labels(identity.code).inc()
            if identity.previous_token_expires_at is not None:
                self.previous_token_expiry.labels(identity.code).set(
                    identity.previous_token_expires_at.timestamp()
                )


@dataclass
class _CustomerResource:
    rows: dict[str, Any]
    last_push: Any
    _last: float = 0.0

    def pushed_at(self, timestamp: float) -> None:
        """Move the last-push gauge forward (a seed read from the database may arrive late)."""
        if timestamp > self._last:
            self._last = timestamp
            self.last_push.set(timestamp)


class _Tally:
    """One push call's rows: received, and those whose fate the caller was told."""

    __slots__ = ("acknowledged", "received")

    def __init__(self) -> None:
        self.received = 0
        self.acknowledged = 0


async def _rows_of(requests: AsyncIterator[Any], field: str, tally: _Tally) -> AsyncIterator[Any]:
    async for request in requests:
        tally.received += len(getattr(request, field))
        yield request


def _observe_snapshot(
    behavior: Callable[..., Awaitable[Any]],
    field: str,
    resource: Resource,
    metrics: IngestMetrics,
    clock: Clock,
) -> Callable[..., Awaitable[Any]]:
    async def push(requests: AsyncIterator[Any], context: Any) -> Any:
        identity = getattr(context, "identity", None)
        if not isinstance(identity, CustomerIdentity):
            return await behavior(requests, context)
        metrics.token_use(identity)
        counters = metrics.of(identity.code, resource)
        tally = _Tally()
        try:
            response = await behavior(_rows_of(requests, field, tally), context)
        except BaseException:
            if tally.received:
                counters.rows["rejected"].inc(tally.received)
            raise
        summary = response.summary
        for outcome in ("inserted", "updated", "unchanged", "deleted"):
            value = getattr(summary, outcome)
            if value:
                counters.rows[outcome].inc(value)
        counters.pushed_at(clock.now().timestamp())
        return response

    return push


def _observe_measurements(
    behavior: Callable[..., AsyncIterator[Any]], field: str, metrics: IngestMetrics, clock: Clock
) -> Callable[..., AsyncIterator[Any]]:
    async def push(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        identity = getattr(context, "identity", None)
        if not isinstance(identity, CustomerIdentity):
            async for response in behavior(requests, context):
                yield response
            return
        metrics.token_use(identity)
        counters = metrics.of(identity.code, Resource.MEASUREMENTS)
        accepted, duplicate, rejected = (
            counters.rows["accepted"],
            counters.rows["duplicate"],
            counters.rows["rejected"],
        )
        tally = _Tally()
        try:
            async for ack in behavior(_rows_of(requests, field, tally), context):
                if ack.accepted:
                    accepted.inc(ack.accepted)
                if ack.duplicates:
                    duplicate.inc(ack.duplicates)
                tally.acknowledged += ack.accepted + ack.duplicates
                counters.pushed_at(clock.now().timestamp())
                yield ack
        finally:
            unacknowledged = tally.received - tally.acknowledged
            if unacknowledged > 0:
                rejected.inc(unacknowledged)

    return push


class IngestMetricsInterceptor(grpc.aio.ServerInterceptor):
    """Observes the five push RPCs of authenticated customers; every other method passes untouched."""

    def __init__(self, metrics: IngestMetrics, clock: Clock) -> None:
        self._metrics = metrics
        self._clock = clock

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        push = PUSHES.get(handler_call_details.method)
        if handler is None or push is None:
            return handler
        resource, field = push
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _observe_measurements(handler.stream_stream, field, self._metrics, self._clock), **kwargs
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                _observe_snapshot(handler.stream_unary, field, resource, self._metrics, self._clock), **kwargs
            )
        return handler
