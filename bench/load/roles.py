"""What the simulated callers do: live portals, back-filling portals, the operator, ramp streams.

Every loop ends at a wall-clock time it is given, every call carries a deadline, and a call the
phase has to cut is cancelled and counted (`CUT_AT_PHASE_END`), so a stalled server makes these
coroutines report stalls rather than wait for it. A refusal is counted by status and handled as
the real pusher handles it: the batch stays unacknowledged and is sent again (after the server's
`retry-after-ms` hint when it gave one).
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from fleet.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    ingest_service_pb2,
    query_service_pb2,
    query_service_pb2_grpc,
)
from google.protobuf import timestamp_pb2

from bench.load.batches import Batch, Shape
from bench.load.plan import Plan
from bench.load.recorder import Recorder
from bench.load.stats import CUT_AT_PHASE_END, describe_error

PUSH_METHOD = "/fleet.v1.FleetIngestService/PushMeasurements"
OK = "OK"
# A back-fill whose stream was refused without a hint waits this long (doubling, jittered, capped):
# far shorter than the pusher's 20 s base, so a two-minute run still shows what comes next.
_BACKOFF_BASE_S = 0.5
_BACKOFF_CAP_S = 5.0
_OPERATOR_PAUSE_S = 0.2
_LAG_TICK_S = 0.1


def push_callable(channel: grpc.aio.Channel) -> Any:
    """PushMeasurements on `channel`, sending already-serialised batches as they are."""
    return channel.stream_stream(
        PUSH_METHOD,
        request_serializer=None,
        response_deserializer=ingest_service_pb2.PushMeasurementsResponse.FromString,
    )


async def opened(call: Any) -> None:
    """Wait until the server admitted the stream (its initial metadata) before the first write.

    A stream the server refuses at its door (authentication, a full budget) ends with trailers
    only; writing into it raced the refusal: the grpc.aio client raised `InvalidStateError: RPC
    already finished` or reported INTERNAL (grpc/grpc#36066) instead of the server's status. The
    refusal now surfaces as the `AioRpcError` it is. Admission costs no extra round trip: the
    server sends its initial metadata the moment it admits the call.
    """
    await call.initial_metadata()
    if call.done():
        await raise_status(call)


async def write(call: Any, payload: bytes) -> None:
    """`call.write`, but a stream the server already ended raises its status, not InvalidStateError."""
    try:
        await call.write(payload)
    except asyncio.InvalidStateError:
        await raise_status(call)
        raise


async def done_writing(call: Any) -> None:
    """`call.done_writing`, but a stream the server already ended raises its status: the grpc.aio
    client otherwise raised its internal `ExecuteBatchError` (SendCloseFromClientOperation)."""
    try:
        await call.done_writing()
    except Exception:
        if not call.done():
            raise
        await raise_status(call)


async def raise_status(call: Any) -> None:
    """Raise the finished `call`'s status as an `AioRpcError` (code OK included: the stream ended
    without taking our batch, which `describe_error` names OK_WITHOUT_ACK)."""
    raise grpc.aio.AioRpcError(
        await call.code(),
        await call.initial_metadata(),
        await call.trailing_metadata(),
        await call.details(),
    )


async def sleep_until(moment: float) -> None:
    delay = moment - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


@dataclass
class Sender:
    """What the coroutines of one client process share: plan, tokens, recorder, the batches sent."""

    plan: Plan
    tokens: dict[str, str]
    recorder: Recorder
    ledger: list[Batch] = field(default_factory=list)
    _next_uid: dict[str, int] = field(default_factory=dict)

    def new_batch(self, shape: Shape, code: str) -> Batch:
        uid = self._next_uid.get(code, 0) + 1
        self._next_uid[code] = uid
        batch = shape.make(code, uid)
        self.ledger.append(batch)
        return batch

    def metadata(self, code: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.tokens[code]}"),)

    def settle(self, group: str, batch: Batch, ack: ingest_service_pb2.PushMeasurementsResponse) -> None:
        if ack.batch_id != batch.uid:
            self.recorder.count(group, "acks_for_another_batch")
        batch.acked = True
        batch.accepted += ack.accepted
        batch.duplicates += ack.duplicates
        self.recorder.ack(group, ack.accepted)


async def push_once(sender: Sender, push: Any, code: str, batch: Batch, group: str) -> int | None:
    """One stream carrying one batch, as a portal's tick opens one; the retry hint (ms) of a refusal.

    The latency runs from opening the stream to the acknowledgement: stream set-up, authentication
    and the customer's stream lock are part of what a portal waits for. Every attempt ends with
    exactly one status recorded.
    """
    recorder = sender.recorder
    started = time.perf_counter()
    answered = False
    call = push(metadata=sender.metadata(code), timeout=sender.plan.deadline_s)
    batch.attempts += 1
    try:
        await opened(call)
        await write(call, batch.payload)
        await done_writing(call)
        ack = await call.read()
        waited = time.perf_counter() - started
        recorder.answered(group, waited)
        answered = True
        if ack is grpc.aio.EOF:
            status = await call.code()
            recorder.status(group, "OK_WITHOUT_ACK" if status == grpc.StatusCode.OK else status.name)
            return None
        sender.settle(group, batch, ack)
        recorder.latency(group, waited)
        await call.read()  # the end of the stream, with its status
        recorder.status(group, OK)
        return None
    except grpc.aio.AioRpcError as error:
        if not answered:
            recorder.answered(group, time.perf_counter() - started)
        key, retry_ms = describe_error(error)
        recorder.status(group, key)
        return retry_ms
    except asyncio.CancelledError:
        call.cancel()
        if not answered:
            recorder.answered(group, time.perf_counter() - started)
        recorder.status(group, CUT_AT_PHASE_END)
        raise


async def live_portal(
    sender: Sender, push: Any, code: str, shape: Shape, start_at: float, backfill_at: float, end_at: float
) -> None:
    """A batch of live readings every 1-5 s (jittered), one stream per batch, until `end_at`.

    A batch that got no acknowledgement is sent again at the next tick (the portal's cursor did
    not move), after the server's retry hint if that is later. Acknowledgement latencies go to
    `fleet/live-alone` or `fleet/live-backfill` by whether back-fills were running at the send.
    """
    low, high = sender.plan.live_interval_s
    rng = random.Random(code)
    next_at = start_at + rng.uniform(0, high)  # portals do not tick in step
    pending: Batch | None = None
    while next_at < end_at:
        await sleep_until(next_at)
        now = time.time()
        sender.recorder.latency("lateness/live", now - next_at)
        group = "fleet/live-backfill" if now >= backfill_at else "fleet/live-alone"
        batch = pending or sender.new_batch(shape, code)
        retry_ms = await push_once(sender, push, code, batch, group)
        pending = None if batch.acked else batch
        next_at += rng.uniform(low, high)
        if retry_ms:
            next_at = max(next_at, time.time() + retry_ms / 1000)
        next_at = max(next_at, time.time())  # behind schedule: next batch at once, no burst


async def stream_batches(
    sender: Sender, push: Any, code: str, shape: Shape, group: str, until: float, in_flight: int = 3
) -> None:
    """A back-filling portal: batches back to back on one long stream, at most `in_flight` unacknowledged.

    A refused or broken stream is reopened after the server's retry hint (RESOURCE_EXHAUSTED with
    `retry-after-ms`) or a short jittered backoff, and its unacknowledged batches go first, in
    order, as the pusher's cursor would resend them.
    """
    resend: collections.deque[Batch] = collections.deque()
    failures = 0
    rng = random.Random(code)
    while time.time() < until:
        ok, retry_ms = await _one_stream(sender, push, code, shape, group, until, in_flight, resend)
        if ok:
            failures = 0
            continue
        failures += 1
        if retry_ms is not None:
            pause = retry_ms / 1000
            sender.recorder.count(group, "retry_hints_honoured")
        else:
            pause = rng.uniform(0, min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2 ** (failures - 1)))
        await asyncio.sleep(max(0.0, min(pause, until - time.time())))


async def _one_stream(
    sender: Sender,
    push: Any,
    code: str,
    shape: Shape,
    group: str,
    until: float,
    in_flight: int,
    resend: collections.deque[Batch],
) -> tuple[bool, int | None]:
    recorder = sender.recorder
    # The stream lives as long as the phase; a stall is seen per batch, and the phase cuts the rest.
    call = push(metadata=sender.metadata(code), timeout=until - time.time() + sender.plan.deadline_s)
    inflight: collections.deque[tuple[Batch, float]] = collections.deque()
    stopping = False
    try:
        await opened(call)
        while True:
            while not stopping and len(inflight) < in_flight:
                batch = resend.popleft() if resend else sender.new_batch(shape, code)
                batch.attempts += 1
                inflight.append((batch, time.perf_counter()))
                await write(call, batch.payload)
            if not inflight:
                break
            ack = await call.read()
            if ack is grpc.aio.EOF:
                status = await call.code()
                recorder.status(group, "OK_WITHOUT_ACK" if status == grpc.StatusCode.OK else status.name)
                _requeue(resend, inflight)
                return False, None
            batch, sent = inflight.popleft()
            waited = time.perf_counter() - sent
            recorder.answered(group, waited)
            recorder.latency(group, waited)
            sender.settle(group, batch, ack)
            stopping = stopping or time.time() >= until
        await done_writing(call)
        await call.read()
        recorder.status(group, OK)
        return True, None
    except grpc.aio.AioRpcError as error:
        if inflight:
            recorder.answered(group, time.perf_counter() - inflight[0][1])
        key, retry_ms = describe_error(error)
        recorder.status(group, key)
        _requeue(resend, inflight)
        return False, retry_ms
    except asyncio.CancelledError:
        call.cancel()
        if inflight:
            recorder.answered(group, time.perf_counter() - inflight[0][1])
            recorder.status(group, CUT_AT_PHASE_END)
        raise


def _requeue(resend: collections.deque[Batch], inflight: collections.deque[tuple[Batch, float]]) -> None:
    """Unacknowledged batches go back to the front of the queue, oldest first."""
    for batch, _ in reversed(inflight):
        resend.appendleft(batch)
    inflight.clear()


def _ts(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds)


@dataclass
class Operator:
    """The operator's loop: detail, hourly measurements, one customer's costs, the customer list."""

    channel: grpc.aio.Channel
    admin_token: str
    detail_codes: list[str]
    data_codes: list[str]
    window: tuple[int, int]  # [start, end) in Unix seconds, over back-filled data
    deadline_s: float
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def _calls(self) -> dict[str, Callable[[], Any]]:
        query = query_service_pb2_grpc.FleetQueryServiceStub(self.channel)
        admin = admin_service_pb2_grpc.FleetAdminServiceStub(self.channel)
        meta = (("authorization", f"Bearer {self.admin_token}"),)
        start, end = _ts(self.window[0]), _ts(self.window[1])

        async def detail() -> Any:
            code = self.rng.choice(self.detail_codes)
            request = query_service_pb2.GetCustomerDetailRequest(code=code)
            return await query.GetCustomerDetail(request, metadata=meta, timeout=self.deadline_s)

        async def measurements() -> Any:
            request = query_service_pb2.QueryMeasurementsRequest(
                code=self.rng.choice(self.data_codes),
                metric="energy_kwh",
                start=start,
                end=end,
                bucket=query_service_pb2.BUCKET_HOUR,
            )
            points = 0
            async for reply in query.QueryMeasurements(request, metadata=meta, timeout=self.deadline_s):
                points += len(reply.points)
            return points

        async def costs() -> Any:
            request = query_service_pb2.ComputeCostsRequest(
                codes=[self.rng.choice(self.data_codes)], start=start, end=end
            )
            return await query.ComputeCosts(request, metadata=meta, timeout=self.deadline_s)

        async def customers() -> Any:
            request = admin_service_pb2.ListCustomersRequest(page_size=100)
            return await admin.ListCustomers(request, metadata=meta, timeout=self.deadline_s)

        return {
            "GetCustomerDetail": detail,
            "QueryMeasurements": measurements,
            "ComputeCosts": costs,
            "ListCustomers": customers,
        }

    async def run(self, recorder: Recorder, prefix: str, until: float, cycles: int | None = None) -> None:
        """Call each kind in turn until `until` (or for `cycles` rounds); latency per kind."""
        calls = self._calls()
        done = 0
        while time.time() < until and (cycles is None or done < cycles):
            for kind, call in calls.items():
                if time.time() >= until:
                    break
                group = f"{prefix}/{kind}"
                started = time.perf_counter()
                try:
                    await call()
                except grpc.aio.AioRpcError as error:
                    recorder.answered(group, time.perf_counter() - started)
                    recorder.status(group, describe_error(error)[0])
                except asyncio.CancelledError:
                    recorder.answered(group, time.perf_counter() - started)
                    recorder.status(group, CUT_AT_PHASE_END)
                    raise
                else:
                    waited = time.perf_counter() - started
                    recorder.answered(group, waited)
                    recorder.latency(group, waited)
                    recorder.status(group, OK)
                await asyncio.sleep(_OPERATOR_PAUSE_S)
            done += 1


async def ramp_stream(
    sender: Sender, push: Any, code: str, shape: Shape, group: str, start_at: float
) -> None:
    """One stream of a ramp step: opened with the others at `start_at`, a few batches, then closed.

    Every batch's wait for its answer counts (the first one from the stream's opening), so a
    stream that answered once and then hung is a stall too.
    """
    recorder = sender.recorder
    plan = sender.plan
    await sleep_until(start_at)
    waiting_since = time.perf_counter()
    call = push(metadata=sender.metadata(code), timeout=plan.deadline_s)
    try:
        await opened(call)
        for index in range(plan.ramp_batches):
            if index:
                await asyncio.sleep(plan.ramp_gap_s)
                waiting_since = time.perf_counter()
            batch = sender.new_batch(shape, code)
            batch.attempts += 1
            await write(call, batch.payload)
            ack = await call.read()
            waited = time.perf_counter() - waiting_since
            recorder.answered(group, waited)
            if ack is grpc.aio.EOF:
                status = await call.code()
                recorder.status(group, "OK_WITHOUT_ACK" if status == grpc.StatusCode.OK else status.name)
                return
            recorder.latency(group, waited)
            sender.settle(group, batch, ack)
            waiting_since = time.perf_counter()
        await done_writing(call)
        await call.read()
        recorder.status(group, OK)
    except grpc.aio.AioRpcError as error:
        recorder.answered(group, time.perf_counter() - waiting_since)
        recorder.status(group, describe_error(error)[0])
    except asyncio.CancelledError:
        call.cancel()
        recorder.answered(group, time.perf_counter() - waiting_since)
        recorder.status(group, CUT_AT_PHASE_END)
        raise


async def watch_loop_lag(recorder: Recorder, group: str, until: float) -> None:
    """How late this process's event loop wakes up: the generator's own saturation, not the server's."""
    while time.time() < until:
        before = time.perf_counter()
        await asyncio.sleep(_LAG_TICK_S)
        recorder.latency(group, max(0.0, time.perf_counter() - before - _LAG_TICK_S))


def window_after(t0_s: int, days: int) -> tuple[int, int]:
    return t0_s, t0_s + days * 86_400
