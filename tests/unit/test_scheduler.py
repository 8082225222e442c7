"""The database turn scheduler: fair turns, reserved lanes, refusals instead of stalls."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import replace
from typing import Any

import grpc
import pytest

from fleet_server.db.scheduler import Lane, Scheduler, Turn, TurnPolicy
from fleet_server.errors import Reason, Unavailable


class Gate:
    """Blocks jobs until released, and records the order in which they ran."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self._lock = threading.Lock()
        self.open = threading.Event()

    def job(self, name: str, *, wait: bool = True) -> str:
        with self._lock:
            self.order.append(name)
        if wait:
            assert self.open.wait(10)
        return name


@pytest.fixture
def gate() -> Iterator[Gate]:
    g = Gate()
    yield g
    g.open.set()


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """A plain test around an async body (each test gets a fresh event loop)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


def _scheduler(threads: int, **overrides: Any) -> Scheduler:
    """No reserves, one job per customer at a time, unless overridden."""
    policy = TurnPolicy(threads, control_reserve=0, operator_reserve=0, ingest_reserve=0, per_tenant=1)
    return Scheduler(replace(policy, **overrides))


async def _warm(scheduler: Scheduler, seconds: float) -> None:
    """Runs enough ingest jobs of `seconds` for the scheduler to trust that mean run time."""
    for _ in range(5):
        await scheduler.run(Turn(Lane.INGEST, "warm"), time.sleep, seconds)


async def _until(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.005)


@run_async
async def test_customers_take_turns_round_robin(gate: Gate) -> None:
    """A customer with many queued jobs does not go before others that queued later."""
    scheduler = _scheduler(1)
    try:
        first = asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, "busy"), gate.job, "busy-0"))
        await _until(lambda: gate.order == ["busy-0"])
        backlog = [
            asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, "busy"), gate.job, f"busy-{i}", wait=False))
            for i in (1, 2, 3)
        ]
        await _until(lambda: scheduler.load()["ingest"][1] == 3)
        live = [
            asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, name), gate.job, name, wait=False))
            for name in ("a", "b")
        ]
        await _until(lambda: scheduler.load()["ingest"][1] == 5)
        gate.open.set()
        await asyncio.gather(first, *backlog, *live)
        # The busy customer had its turn first (it queued first); then each other customer
        # before its second job.
        assert gate.order == ["busy-0", "busy-1", "a", "b", "busy-2", "busy-3"]
    finally:
        scheduler.close()


@run_async
async def test_one_customer_runs_at_most_its_share_of_threads(gate: Gate) -> None:
    scheduler = _scheduler(4)  # per_tenant=1
    try:
        jobs = [
            asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, "c"), gate.job, f"c-{i}")) for i in range(3)
        ]
        other = asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, "d"), gate.job, "d-0"))
        await _until(lambda: len(gate.order) == 2)
        await asyncio.sleep(0.05)
        assert sorted(gate.order) == ["c-0", "d-0"]
        assert scheduler.load()["ingest"] == (2, 2)
        gate.open.set()
        assert list(await asyncio.gather(*jobs, other)) == ["c-0", "c-1", "c-2", "d-0"]
    finally:
        scheduler.close()


@run_async
async def test_a_serial_key_runs_one_job_at_a_time_in_order(gate: Gate) -> None:
    """A stream's batches wait for each other; the same customer's other work does not."""
    scheduler = _scheduler(4, per_tenant=3)
    stream = Turn(Lane.INGEST, "c").serialised("stream-1")
    try:
        batches = [asyncio.ensure_future(scheduler.run(stream, gate.job, f"batch-{i}")) for i in range(3)]
        await _until(lambda: gate.order == ["batch-0"])
        snapshot = await asyncio.wait_for(
            scheduler.run(Turn(Lane.INGEST, "c"), gate.job, "snapshot", wait=False), 5
        )
        assert snapshot == "snapshot"
        await asyncio.sleep(0.05)
        assert gate.order == ["batch-0", "snapshot"]  # batch-1 waits for batch-0
        gate.open.set()
        assert list(await asyncio.gather(*batches)) == ["batch-0", "batch-1", "batch-2"]
        assert gate.order == ["batch-0", "snapshot", "batch-1", "batch-2"]
    finally:
        scheduler.close()


@run_async
async def test_ingest_cannot_take_the_operator_and_control_threads(gate: Gate) -> None:
    scheduler = Scheduler(TurnPolicy(4, control_reserve=1, operator_reserve=1, ingest_reserve=1))
    try:
        pushes = [
            asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, f"c{i}"), gate.job, f"push-{i}"))
            for i in range(4)
        ]
        await _until(lambda: len(gate.order) == 2)
        admin = await asyncio.wait_for(
            scheduler.run(Turn(Lane.OPERATOR, "admin"), gate.job, "admin", wait=False), 5
        )
        token = await asyncio.wait_for(
            scheduler.run(Turn(Lane.CONTROL, "auth"), gate.job, "auth", wait=False), 5
        )
        assert (admin, token) == ("admin", "auth")
        assert scheduler.load()["ingest"] == (2, 2)
        gate.open.set()
        await asyncio.gather(*pushes)
    finally:
        scheduler.close()


@run_async
async def test_no_turn_in_time_is_unavailable_with_a_retry_hint(gate: Gate) -> None:
    scheduler = _scheduler(1, queue_timeout_s=0.1)
    try:
        holder = asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, "a"), gate.job, "holder"))
        await _until(lambda: gate.order == ["holder"])
        with pytest.raises(Unavailable) as refused:
            await scheduler.run(Turn(Lane.INGEST, "b"), gate.job, "late")
        assert refused.value.code is grpc.StatusCode.UNAVAILABLE
        assert refused.value.reason is Reason.DATABASE_BUSY
        assert refused.value.retry_after_ms is not None
        assert refused.value.retry_after_ms > 0
        assert "no database turn within 0.1 s" in refused.value.message
        gate.open.set()
        await holder
        assert gate.order == ["holder"]  # the refused job never ran
        await _until(lambda: scheduler.load()["ingest"] == (0, 0))
    finally:
        scheduler.close()


@run_async
async def test_a_full_queue_refuses_at_once(gate: Gate) -> None:
    scheduler = _scheduler(1, max_queued=1)
    try:
        holder = asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, "a"), gate.job, "holder"))
        await _until(lambda: gate.order == ["holder"])
        queued = asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, "b"), gate.job, "queued", wait=False))
        await _until(lambda: scheduler.load()["ingest"][1] == 1)
        with pytest.raises(Unavailable, match="1 database jobs are already waiting"):
            await scheduler.run(Turn(Lane.INGEST, "c"), gate.job, "refused")
        gate.open.set()
        assert list(await asyncio.gather(holder, queued)) == ["holder", "queued"]
    finally:
        scheduler.close()


@run_async
async def test_a_caller_that_leaves_takes_its_queued_job_along(gate: Gate) -> None:
    scheduler = _scheduler(1)
    try:
        holder = asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, "a"), gate.job, "holder"))
        await _until(lambda: gate.order == ["holder"])
        leaving = asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, "b"), gate.job, "gone"))
        await _until(lambda: scheduler.load()["ingest"][1] == 1)
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        assert scheduler.load()["ingest"] == (1, 0)
        gate.open.set()
        await holder
        assert gate.order == ["holder"]
    finally:
        scheduler.close()


@run_async
async def test_faults_are_mapped_and_other_errors_pass_through() -> None:
    def fault(exc: BaseException) -> Unavailable | None:
        return (
            Unavailable("database gone", reason=Reason.DATABASE_UNAVAILABLE)
            if isinstance(exc, OSError)
            else None
        )

    scheduler = Scheduler(TurnPolicy(2), fault=fault)

    def boom(exc: BaseException) -> None:
        raise exc

    try:
        with pytest.raises(Unavailable, match="database gone"):
            await scheduler.run(Turn(Lane.OPERATOR, "admin"), boom, OSError("socket closed"))
        with pytest.raises(KeyError):
            await scheduler.run(Turn(Lane.OPERATOR, "admin"), boom, KeyError("bug"))
        assert await scheduler.run(Turn(Lane.OPERATOR, "admin"), lambda: 7) == 7
    finally:
        scheduler.close()


@run_async
async def test_close_refuses_queued_work(gate: Gate) -> None:
    scheduler = _scheduler(1)
    holder = asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, "a"), gate.job, "holder"))
    await _until(lambda: gate.order == ["holder"])
    queued = asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, "a"), gate.job, "queued"))
    await _until(lambda: scheduler.load()["ingest"][1] == 1)
    scheduler.close()
    with pytest.raises(Unavailable, match="shutting down"):
        await queued
    gate.open.set()
    assert await holder == "holder"
    with pytest.raises(Unavailable, match="shutting down"):
        await scheduler.run(Turn(Lane.INGEST, "a"), gate.job, "after")


def test_policy_reserves_fit_the_thread_count() -> None:
    small = TurnPolicy.for_threads(2)
    assert (small.cap(Lane.INGEST), small.cap(Lane.OPERATOR)) == (2, 2)
    ten = TurnPolicy.for_threads(10)
    assert (ten.cap(Lane.INGEST), ten.cap(Lane.OPERATOR), ten.cap(Lane.CONTROL)) == (7, 7, 10)


@run_async
async def test_bulk_work_leaves_threads_for_small_batches(gate: Gate) -> None:
    """Back-fills' big batches run on at most `bulk_threads` threads; a live batch never waits for them."""
    scheduler = _scheduler(4, bulk_threads=1)
    try:
        backfills = [
            asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, f"b{i}", bulk=True), gate.job, f"bulk-{i}"))
            for i in range(3)
        ]
        await _until(lambda: gate.order == ["bulk-0"])
        live = await asyncio.wait_for(
            scheduler.run(Turn(Lane.INGEST, "live"), gate.job, "live", wait=False), 5
        )
        assert live == "live"
        assert gate.order == ["bulk-0", "live"]  # the other two bulk jobs wait for the bulk thread
        gate.open.set()
        assert list(await asyncio.gather(*backfills)) == ["bulk-0", "bulk-1", "bulk-2"]
    finally:
        scheduler.close()


@run_async
async def test_a_stream_keeps_its_order_when_its_bulk_batch_waits(gate: Gate) -> None:
    """A small batch queued behind its stream's waiting bulk batch does not overtake it."""
    scheduler = _scheduler(4, bulk_threads=1, per_tenant=3)
    stream = Turn(Lane.INGEST, "s").serialised("stream")
    try:
        other = asyncio.ensure_future(
            scheduler.run(Turn(Lane.INGEST, "o", bulk=True), gate.job, "other-bulk")
        )
        await _until(lambda: gate.order == ["other-bulk"])
        big = asyncio.ensure_future(scheduler.run(stream.for_rows(5_000), gate.job, "big", wait=False))
        small = asyncio.ensure_future(scheduler.run(stream.for_rows(10), gate.job, "small", wait=False))
        await _until(lambda: scheduler.load()["ingest"][1] == 2)
        await asyncio.sleep(0.05)
        assert gate.order == ["other-bulk"]  # the small batch waits for its stream's big one
        gate.open.set()
        await asyncio.gather(other, big, small)
        assert gate.order == ["other-bulk", "big", "small"]
    finally:
        scheduler.close()


@run_async
async def test_a_hopeless_wait_is_refused_at_once_and_new_streams_are_not_admitted(gate: Gate) -> None:
    """Jobs of 0.2 s on one thread: with three queued, a fourth would wait 0.6 s, past a 0.5 s
    queue timeout, so it is refused at once; past 0.3 s queued, new work is not admitted."""
    scheduler = _scheduler(1, queue_timeout_s=0.5, admit_wait_s=0.3)
    try:
        assert scheduler.admits(Lane.INGEST) is None
        await _warm(scheduler, 0.2)
        holder = asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, "a"), gate.job, "holder"))
        await _until(lambda: gate.order == ["holder"])
        queued = [
            asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, name), gate.job, name, wait=False))
            for name in ("b", "c", "d")
        ]
        await _until(lambda: scheduler.load()["ingest"][1] == 3)
        wait = scheduler.admits(Lane.INGEST)
        assert wait is not None
        assert wait > 0.3
        began = time.monotonic()
        with pytest.raises(Unavailable, match="queued ahead of this job") as refused:
            await scheduler.run(Turn(Lane.INGEST, "e"), gate.job, "e")
        assert time.monotonic() - began < 0.3  # at once, not after the queue timeout
        assert refused.value.reason is Reason.DATABASE_BUSY
        gate.open.set()
        await asyncio.gather(holder, *queued, return_exceptions=True)
        await _until(lambda: scheduler.load()["ingest"] == (0, 0))
        assert scheduler.admits(Lane.INGEST) is None
    finally:
        scheduler.close()


@run_async
async def test_the_wait_of_a_new_job_follows_the_turns_not_the_whole_queue(gate: Gate) -> None:
    """Jobs of 0.2 s on one thread, two of one customer queued: that customer's third would wait
    0.4 s, past the 0.3 s timeout; another customer's job waits for one of them (turns go round
    robin), not two, so it is taken, and runs second."""
    scheduler = _scheduler(1, queue_timeout_s=0.3, per_tenant=1)
    try:
        await _warm(scheduler, 0.2)
        holder = asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, "x"), gate.job, "holder"))
        await _until(lambda: gate.order == ["holder"])
        backlog = [
            asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, "a"), gate.job, f"a{i}", wait=False))
            for i in range(2)
        ]
        await _until(lambda: scheduler.load()["ingest"][1] == 2)
        with pytest.raises(Unavailable, match="queued ahead of this job"):
            await scheduler.run(Turn(Lane.INGEST, "a"), gate.job, "a2")
        other = asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, "b"), gate.job, "b", wait=False))
        await _until(lambda: scheduler.load()["ingest"][1] == 3)
        gate.open.set()
        await asyncio.gather(holder, *backlog, other)
        assert gate.order[-4:] == ["holder", "a0", "b", "a1"]
    finally:
        scheduler.close()


@run_async
async def test_a_mean_of_too_few_runs_refuses_nothing(gate: Gate) -> None:
    """One slow first job (a new process creating partitions) does not make the queue look hopeless."""
    scheduler = _scheduler(1, queue_timeout_s=0.5, admit_wait_s=0.3)
    try:
        await scheduler.run(Turn(Lane.INGEST, "first"), time.sleep, 0.4)
        holder = asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, "a"), gate.job, "holder"))
        await _until(lambda: gate.order == ["holder"])
        queued = [
            asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, name), gate.job, name, wait=False))
            for name in ("b", "c")
        ]
        await _until(lambda: scheduler.load()["ingest"][1] == 2)
        assert scheduler.admits(Lane.INGEST, coming=5) is None
        late = asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, "d"), gate.job, "d", wait=False))
        await _until(lambda: scheduler.load()["ingest"][1] == 3)  # queued, not refused
        gate.open.set()
        assert await asyncio.gather(holder, *queued, late) == ["holder", "b", "c", "d"]
    finally:
        scheduler.close()


@run_async
async def test_streams_on_their_way_count_before_their_jobs_are_queued() -> None:
    scheduler = _scheduler(1, admit_wait_s=0.3)
    try:
        await _warm(scheduler, 0.1)
        assert scheduler.admits(Lane.INGEST, coming=2) is None  # about 0.2 s: still in
        wait = scheduler.admits(Lane.INGEST, coming=5)
        assert wait is not None
        assert wait == pytest.approx(0.5, rel=0.5)
    finally:
        scheduler.close()


@run_async
async def test_a_finished_job_that_unblocks_two_lets_both_run_at_once() -> None:
    """The thread that finishes a job picks the next itself and wakes another for the second.

    A bulk job of customer X ends: that frees the bulk slot (customer Y's bulk job waits for
    it) and X's own turn (X's next job waits for it). Both must start together on the two
    free threads, without waiting for each other or for new work to arrive.
    """
    scheduler = _scheduler(3, bulk_threads=1)
    first_done, later_done = threading.Event(), threading.Event()
    started: list[str] = []

    def job(name: str, release: threading.Event) -> str:
        started.append(name)
        assert release.wait(10)
        return name

    try:
        x1 = asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, "X", bulk=True), job, "x1", first_done))
        await _until(lambda: started == ["x1"])
        y1 = asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, "Y", bulk=True), job, "y1", later_done))
        x2 = asyncio.ensure_future(scheduler.run(Turn(Lane.INGEST, "X"), job, "x2", later_done))
        await _until(lambda: scheduler.load()["ingest"][1] == 2)
        assert started == ["x1"]  # Y waits for the bulk slot, X's next job for X's turn
        first_done.set()
        await _until(lambda: sorted(started) == ["x1", "x2", "y1"])
        later_done.set()
        assert list(await asyncio.gather(x1, y1, x2)) == ["x1", "y1", "x2"]
    finally:
        later_done.set()
        scheduler.close()


@run_async
async def test_a_crowd_of_short_jobs_all_run_within_every_cap() -> None:
    """Hundreds of short jobs of many customers, streams and sizes: every one runs, none waits
    forever for a wake-up, and no cap is ever exceeded while they do."""
    scheduler = _scheduler(4, per_tenant=2, bulk_threads=1, queue_timeout_s=30)
    lock = threading.Lock()
    running: dict[str, int] = {}
    bulk_running = [0]
    worst = {"tenant": 0, "bulk": 0, "all": 0}

    def job(tenant: str, bulk: bool, index: int) -> int:
        with lock:
            running[tenant] = running.get(tenant, 0) + 1
            bulk_running[0] += bulk
            worst["tenant"] = max(worst["tenant"], running[tenant])
            worst["bulk"] = max(worst["bulk"], bulk_running[0])
            worst["all"] = max(worst["all"], sum(running.values()))
        time.sleep(0.0005 * (index % 3))
        with lock:
            running[tenant] -= 1
            bulk_running[0] -= bulk
        return index

    try:
        calls = []
        for index in range(600):
            tenant = f"c{index % 3}"
            turn = Turn(Lane.INGEST, tenant, bulk=index % 7 == 0)
            if index % 2:
                turn = turn.serialised(f"{tenant}-stream")
            calls.append(scheduler.run(turn, job, tenant, turn.bulk, index))
        results = await asyncio.wait_for(asyncio.gather(*calls), 30)
        assert results == list(range(600))
        # The caps held; how close the crowd came to them depends on timing, only that it ran
        # jobs side by side does not.
        assert worst["tenant"] <= 2
        assert worst["bulk"] <= 1
        assert 2 <= worst["all"] <= 4
    finally:
        scheduler.close()
