"""One client process: its own asyncio loop and gRPC channels, driving its share of the fleet.

One Python process cannot drive 300 portals, 10 back-fills, an operator and 1,000 ramp streams
without its own event loop becoming the bottleneck on two cores, so the fleet is split across
processes by role: process 0 back-fills (and runs the single-stream baseline), process 1 is the
operator, processes 2.. are the live portals; every process takes a share of each ramp step.
Each process answers commands from the orchestrator over a pipe, one phase at a time.

Channels are opened with a local subchannel pool, so each one is its own HTTP/2 connection (gRPC
otherwise shares one connection between channels to the same target): the server sees many
connections, and `--workers N` spreads them as it would spread real portals.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
import traceback
from collections.abc import Coroutine
from multiprocessing.connection import Connection
from typing import Any

import grpc
import grpc.aio
from fleet.v1 import ingest_service_pb2, ingest_service_pb2_grpc, resources_pb2

from bench import dataset
from bench.load import batches
from bench.load.plan import Plan
from bench.load.recorder import Recorder
from bench.load.roles import (
    Operator,
    Sender,
    live_portal,
    push_callable,
    push_once,
    ramp_stream,
    sleep_until,
    stream_batches,
    watch_loop_lag,
    window_after,
)
from bench.load.stats import describe_error

_LOGGER = logging.getLogger(__name__)

BACKFILL, OPERATOR = 0, 1
_CHANNEL_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]
# Reference snapshots are set-up: a few at a time, so set-up does not become a load test of its own.
_SETUP_CONCURRENCY = 4
_HARNESS_ERROR = "HARNESS_ERROR"
_SEED_ATTEMPTS = 5


def _channel(target: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


class ClientProcess:
    """The state of one client process across phases."""

    def __init__(
        self,
        index: int,
        plan: Plan,
        target: str,
        admin_token: str,
        tokens: dict[str, str],
        received_base: int,
    ) -> None:
        self.index = index
        self.plan = plan
        self.target = target
        self.admin_token = admin_token
        self.recorder = Recorder(plan.stall_s)
        self.sender = Sender(plan, tokens, self.recorder)
        self.live = batches.live_shape(plan.live_rows, received_base)
        self.ramp_shape = batches.live_shape(plan.ramp_rows, received_base)
        self.backfill = batches.series_shape(
            plan.backfill_devices, plan.backfill_steps, batches.BACKFILL_T0, received_base
        )
        self.baseline_shape = batches.series_shape(
            plan.baseline_devices, plan.baseline_steps, batches.BASELINE_T0, received_base
        )
        self.channels: list[grpc.aio.Channel] = []
        self.live_codes = plan.live_share(index) if index >= 2 else []

    def _new_channel(self) -> grpc.aio.Channel:
        channel = _channel(self.target)
        self.channels.append(channel)
        return channel

    def _retarget(self, target: str | None) -> None:
        """A server restarted between phases listens on a new port: later channels go there."""
        if target is not None:
            self.target = target

    async def _bounded(
        self,
        coros: list[Coroutine[Any, Any, None]],
        hard_end: float,
        background: Coroutine[Any, Any, None] | None = None,
    ) -> None:
        """Run `coros` until they finish or `hard_end`; whatever is still running then is cut.
        `background` (the loop-lag watch) runs alongside and stops with them."""
        watcher = asyncio.ensure_future(background) if background is not None else None
        tasks = [asyncio.ensure_future(c) for c in coros]
        pending: set[asyncio.Future[None]] = set()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(0.0, hard_end - time.time()))
        if watcher is not None:
            pending.add(watcher)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                error = task.exception()
                _LOGGER.error("client %d: %s", self.index, "".join(traceback.format_exception(error)))
                self.recorder.status("harness", f"{_HARNESS_ERROR}: {type(error).__name__}")

    async def _result(self, started_cpu: float, started: float) -> dict[str, Any]:
        """What the phase recorded; its channels are closed, so no connection outlives its phase."""
        await self.close()
        return {
            "groups": self.recorder.take(),
            "cpu_s": _cpu_seconds() - started_cpu,
            "wall_s": time.time() - started,
        }

    # --- set-up ------------------------------------------------------------------------------

    async def setup(self) -> dict[str, Any]:
        """Reference data, pushed once per portal, so detail and costs have something to show."""
        started, cpu = time.time(), _cpu_seconds()
        if self.index == BACKFILL:
            for code in [*self.plan.backfill_codes(), self.plan.baseline_code()]:
                await self._setup_call(
                    asyncio.to_thread(
                        dataset.push_tou_fleet,
                        self.target,
                        self.sender.tokens[code],
                        devices=self.plan.backfill_devices,
                    )
                )
            push = push_callable(self._new_channel())
            for code in self.plan.backfill_codes():
                await self._seed(push, code)
        elif self.live_codes:
            gate = asyncio.Semaphore(_SETUP_CONCURRENCY)
            channel = self._new_channel()
            stub = ingest_service_pb2_grpc.FleetIngestServiceStub(channel)

            async def push_reference(code: str) -> None:
                async with gate:
                    await self._setup_call(self._live_reference(stub, code))

            await asyncio.gather(*(push_reference(code) for code in self.live_codes))
        return await self._result(cpu, started)

    async def _seed(self, push: Any, code: str) -> None:
        """The back-fill's first batch, written in set-up, so the operator's QueryMeasurements and
        ComputeCosts of every back-filling customer find readings from the fleet phase's first
        second: a customer without any reading of the metric is NOT_FOUND (METRIC_UNKNOWN) by
        design, and the operator used to ask about customers whose back-fill had not started."""
        batch = self.sender.new_batch(self.backfill, code)
        for _ in range(_SEED_ATTEMPTS):
            retry_ms = await push_once(self.sender, push, code, batch, "setup")
            if batch.acked:
                return
            await asyncio.sleep((retry_ms or 500) / 1000)

    async def _setup_call(self, call: Any) -> None:
        try:
            await call
            self.recorder.status("setup", "OK")
        except grpc.RpcError as error:
            self.recorder.status("setup", describe_error(error)[0])

    async def _live_reference(self, stub: Any, code: str) -> None:
        meta = self.sender.metadata(code)
        site = resources_pb2.Site(id=1, name=f"{code} site", timezone="Africa/Johannesburg")
        await stub.PushSites(
            iter([ingest_service_pb2.PushSitesRequest(sites=[site])]), metadata=meta, timeout=60
        )
        devices = [
            resources_pb2.Device(id=d, site_id=1, name=f"Meter {d}", kind="power")
            for d in range(1, self.plan.live_rows + 1)
        ]
        await stub.PushDevices(
            iter([ingest_service_pb2.PushDevicesRequest(devices=devices)]), metadata=meta, timeout=60
        )

    # --- phases ------------------------------------------------------------------------------

    async def baseline(self) -> dict[str, Any]:
        """One portal alone, 500-row batches back to back: the run's own yardstick for rows/s."""
        started, cpu = time.time(), _cpu_seconds()
        until = started + self.plan.baseline_s
        push = push_callable(self._new_channel())
        await self._bounded(
            [
                stream_batches(
                    self.sender, push, self.plan.baseline_code(), self.baseline_shape, "baseline", until
                )
            ],
            until + self.plan.deadline_s,
        )
        return await self._result(cpu, started)

    async def quiet_operator(self, cycles: int, seconds: float, target: str | None = None) -> dict[str, Any]:
        """A few operator rounds with nothing else running: what the calls cost on a quiet server."""
        self._retarget(target)
        started, cpu = time.time(), _cpu_seconds()
        until = started + seconds
        await self._bounded([self._operator().run(self.recorder, "quiet", until, cycles)], until)
        return await self._result(cpu, started)

    def _operator(self) -> Operator:
        return Operator(
            channel=self._new_channel(),
            admin_token=self.admin_token,
            detail_codes=[*self.plan.backfill_codes(), *self.plan.live_codes()],
            data_codes=self.plan.backfill_codes(),
            window=window_after(batches.BACKFILL_T0, self.plan.operator_days),
            deadline_s=self.plan.deadline_s,
        )

    async def fleet(self, start_at: float, backfill_at: float, end_at: float) -> dict[str, Any]:
        """The fleet phase: live portals and the operator from `start_at`, back-fills from `backfill_at`."""
        started, cpu = time.time(), _cpu_seconds()
        work: list[Coroutine[Any, Any, None]] = []
        if self.index == BACKFILL:
            for code in self.plan.backfill_codes():
                work.append(self._backfill(code, backfill_at, end_at))
        elif self.index == OPERATOR:
            work.append(self._operated(start_at, end_at))
        else:
            per = self.plan.portals_per_channel
            channels = [self._new_channel() for _ in range(math.ceil(len(self.live_codes) / per))]
            for i, code in enumerate(self.live_codes):
                push = push_callable(channels[i // per])
                work.append(live_portal(self.sender, push, code, self.live, start_at, backfill_at, end_at))
        lag = watch_loop_lag(self.recorder, "lag/fleet", end_at)
        await self._bounded(work, end_at + self.plan.grace_s, background=lag)
        return await self._result(cpu, started)

    async def _backfill(self, code: str, backfill_at: float, end_at: float) -> None:
        push = push_callable(self._new_channel())
        await sleep_until(backfill_at)
        await stream_batches(self.sender, push, code, self.backfill, "fleet/backfill", end_at)

    async def _operated(self, start_at: float, end_at: float) -> None:
        operator = self._operator()
        await sleep_until(start_at)
        await operator.run(self.recorder, "fleet/operator", end_at)

    async def ramp(
        self, step: int, codes: list[str], start_at: float, target: str | None = None
    ) -> dict[str, Any]:
        """This process's share of a ramp step: `codes` streams opened together at `start_at`, on
        connections of their own (new portals connecting), closed when the step ends."""
        self._retarget(target)
        started, cpu = time.time(), _cpu_seconds()
        per = self.plan.portals_per_channel
        channels = [_channel(self.target) for _ in range(math.ceil(len(codes) / per))]
        group = f"ramp/{step}"
        work: list[Coroutine[Any, Any, None]] = []
        for i, code in enumerate(codes):
            push = push_callable(channels[i // per])
            work.append(ramp_stream(self.sender, push, code, self.ramp_shape, group, start_at))
        try:
            lag = watch_loop_lag(self.recorder, f"lag/{group}", start_at + self.plan.deadline_s)
            await self._bounded(work, start_at + self.plan.deadline_s + self.plan.grace_s, background=lag)
        finally:
            for channel in channels:
                await channel.close()
        return await self._result(cpu, started)

    async def ledger(self) -> dict[str, Any]:
        return {"batches": [b.ledger_entry() for b in self.sender.ledger]}

    async def close(self) -> None:
        channels, self.channels = self.channels, []
        for channel in channels:
            await channel.close()


async def _serve(conn: Connection, process: ClientProcess) -> None:
    loop = asyncio.get_running_loop()
    try:
        while True:
            command: dict[str, Any] = await loop.run_in_executor(None, conn.recv)
            op = command.pop("op")
            if op == "stop":
                break
            try:
                result = await getattr(process, op)(**command)
            except Exception as error:
                result = {"error": "".join(traceback.format_exception(error))}
            conn.send(result)
    finally:
        await process.close()


def main(
    index: int,
    plan: Plan,
    target: str,
    admin_token: str,
    tokens: dict[str, str],
    received_base: int,
    conn: Connection,
) -> None:
    """Entry point of a spawned client process."""
    logging.basicConfig(level=logging.WARNING, format=f"client {index}: %(levelname)s %(message)s")
    asyncio.run(_serve(conn, ClientProcess(index, plan, target, admin_token, tokens, received_base)))
