"""Database turns: a fixed set of threads shared fairly between lanes of work and the customers in them.

Why this exists (the fleet deadlock): database work is blocking SQLAlchemy/psycopg code, so it
runs on threads. The first version let a measurement stream keep its pooled connection between
batches and hand it back through the same thread pool that the streams waiting for a connection
had filled: twenty portals at once waited 30 s for each other and failed as INTERNAL. The rules
that make that impossible, by construction:

1. Only these threads check connections out of the pool, each at most one at a time, and each
   gives its connection back before its job ends. The pool has as many connections as there
   are threads, so a checkout never waits: nothing waits for a connection while holding one,
   and giving one back needs no thread at all.
2. Work that is not running waits in the event loop, in a queue per lane and customer, never
   in a thread. A job that cannot start within `queue_timeout_s` is refused as UNAVAILABLE
   with a retry hint (the caller backs off), so saturation is a status, never a stall.
3. Turns are fair: within a lane, customers take turns round robin, and a customer runs at
   most `per_tenant` jobs at once (a stream's batches one at a time, in order), so one
   customer's back-fill delays another's live batch by at most about one batch. The control
   lane (token lookups) and the operator lane (admin and query calls) have threads that
   ingest can never take, so an operator is never starved by a fleet pushing, and
   authentication never waits behind bulk work.
4. Bulk work has a cap of its own. An ingest job of `BULK_ROWS` rows or more (a back-fill's big
   batch, a large snapshot) runs on at most `bulk_threads` threads at once; the other ingest
   threads stay free for small batches. Turns count jobs, not rows, so without this ten
   back-fills of 5,000-row batches would hold every ingest thread and make both cores thrash
   between them, and a live batch of 100 rows would wait behind them and then run at a tenth
   of its speed.

5. Hopeless waits are refused at once. The scheduler keeps the mean run time of each kind of
   job (lane, bulk or not) and so knows about how long a new job would wait: the jobs of its
   kind queued ahead (as the turns go: round robin) times that mean, over the threads that kind
   may use, once the mean is of a few runs. An ingest job that
   would not get a turn within `queue_timeout_s` is refused at once instead of after waiting
   for it, and a new measurement stream is not started while the small ingest jobs already
   queued would take more than `admit_wait_s` to start (`admits`): under a flood (`make load`'s
   1,000 streams at once) the streams that get in are served and the others are told at once
   to come back, instead of every stream queueing until the client's deadline.

A thread that picks the next job itself (no hop through the event loop) keeps a stream's
back-to-back batches as fast as a connection held for the whole stream was.

Wake-ups follow the work: a queued job wakes one thread, a thread that takes a job wakes one
more while jobs are still queued, and a thread that finishes a job looks for the next itself.
The first version woke every thread at every finished job; with a fleet's few hundred jobs a
second, ten threads then fought for the interpreter lock after each, and `Condition.notify`
took 11 % of the server's interpreter time in `make load` (2 % after).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import enum
import functools
import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar

from fleet_server.errors import FleetError, Reason, Unavailable

P = ParamSpec("P")
T = TypeVar("T")

_LOGGER = logging.getLogger(__name__)

# What a refused caller is told to wait before trying again.
BUSY_RETRY_MS = 1_000
# Weight of the newest run time in each kind of job's moving average (`Scheduler._mean_run`).
_MEAN_WEIGHT = 0.1
# Runs of a kind of job before its mean is trusted to refuse work: a new process's first batches
# create partitions and warm caches, and a mean seeded by one of them (0.33 s against 0.015 s
# after) refused streams that would have waited a second.
_TRUSTED_RUNS = 5
# A job of this many rows is bulk work (a live batch is ~100 rows; a back-fill's may be 5,000).
BULK_ROWS = 1_000


class Lane(enum.Enum):
    """What kind of work a job is; each lane has its own queue and its own share of threads."""

    CONTROL = "control"  # token lookups: tiny, and every other call waits for them
    OPERATOR = "operator"  # admin and query calls
    INGEST = "ingest"  # customer pushes: snapshots and measurement batches


@dataclass(frozen=True)
class Turn:
    """Whose work a job is: its lane, the tenant (customer id, admin name) it is fair among, and
    optionally a `serial` key: jobs sharing one run one at a time, oldest first (a stream's
    batches, which must be written in order)."""

    lane: Lane
    tenant: Hashable
    serial: Hashable | None = None
    bulk: bool = False

    def serialised(self, key: Hashable) -> Turn:
        return dataclasses.replace(self, serial=key)

    def for_rows(self, rows: int) -> Turn:
        """This turn for a job of `rows` rows: bulk from `BULK_ROWS` on."""
        return dataclasses.replace(self, bulk=rows >= BULK_ROWS)

    @classmethod
    def ingest(cls, customer_id: int) -> Turn:
        return cls(Lane.INGEST, customer_id)

    @classmethod
    def operator(cls, name: str) -> Turn:
        return cls(Lane.OPERATOR, name)


# Token lookups: every call's first database work, tiny, from no customer in particular.
CONTROL = Turn(Lane.CONTROL, "control")


@dataclass(frozen=True)
class TurnPolicy:
    """How the threads are shared.

    `threads` is also the connection pool's size. Ingest may use at most `threads -
    control_reserve - operator_reserve` threads at once and the operator lane at most
    `threads - control_reserve - ingest_reserve`, so each lane always finds a thread the
    others cannot hold.
    """

    threads: int
    control_reserve: int = 1
    operator_reserve: int = 1
    ingest_reserve: int = 1
    per_tenant: int = 2
    bulk_threads: int = 1
    queue_timeout_s: float = 5.0
    max_queued: int = 10_000
    admit_wait_s: float = 1.0

    @classmethod
    def for_threads(cls, threads: int, **overrides: Any) -> TurnPolicy:
        """Reserves that fit `threads`; fewer than four threads share without reserves."""
        bulk = max(1, threads // 4)
        if threads < 4:
            return cls(
                threads,
                control_reserve=0,
                operator_reserve=0,
                ingest_reserve=0,
                bulk_threads=bulk,
                **overrides,
            )
        reserve = max(1, threads // 5)
        return cls(threads, operator_reserve=reserve, ingest_reserve=reserve, bulk_threads=bulk, **overrides)

    def cap(self, lane: Lane) -> int:
        if lane is Lane.INGEST:
            return max(1, self.threads - self.control_reserve - self.operator_reserve)
        if lane is Lane.OPERATOR:
            return max(1, self.threads - self.control_reserve - self.ingest_reserve)
        return self.threads


class _Job(Generic[T]):
    """One unit of database work and the future its caller awaits."""

    __slots__ = ("bulk", "call", "future", "lane", "loop", "serial", "started", "tenant")

    def __init__(
        self,
        turn: Turn,
        call: Callable[[], T],
        future: asyncio.Future[T],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.lane = turn.lane
        self.tenant = turn.tenant
        self.serial = turn.serial
        self.bulk = turn.bulk
        self.call = call
        self.future = future
        self.loop = loop
        self.started = False


class _FairQueue:
    """Queued jobs of one lane: FIFO per tenant, tenants served round robin, each under a cap.

    A job whose serial key has a running job is passed over (the tenant's next job that may
    run goes instead), so a stream's next batch waits for its previous one without holding up
    the same customer's other work.
    """

    def __init__(self, per_tenant: int, bulk_threads: int) -> None:
        self._per_tenant = per_tenant
        self._bulk_threads = bulk_threads
        self.bulk_running = 0
        self._queues: dict[Hashable, collections.deque[_Job[Any]]] = {}
        self._ring: list[Hashable] = []  # tenants with queued jobs, in turn order
        self.running: collections.Counter[Hashable] = collections.Counter()
        self._serials: set[Hashable] = set()  # serial keys with a running job
        self.queued = 0
        self.queued_bulk = 0
        self.running_total = 0

    def push(self, job: _Job[Any]) -> None:
        queue = self._queues.get(job.tenant)
        if queue is None:
            queue = self._queues[job.tenant] = collections.deque()
            self._ring.append(job.tenant)
        queue.append(job)
        self.queued += 1
        self.queued_bulk += job.bulk

    def pop(self) -> _Job[Any] | None:
        """The next tenant's oldest job, skipping tenants already at their cap; None if none may run."""
        for index, tenant in enumerate(self._ring):
            if self.running[tenant] >= self._per_tenant:
                continue
            job = self._first_runnable(self._queues[tenant])
            if job is None:
                continue
            queue = self._queues[tenant]
            queue.remove(job)
            if job.serial is not None:
                self._serials.add(job.serial)
            del self._ring[index]
            if queue:
                self._ring.append(tenant)  # its next job waits for everyone else's turn
            else:
                del self._queues[tenant]
            self.queued -= 1
            self.queued_bulk -= job.bulk
            self.running[tenant] += 1
            self.running_total += 1
            self.bulk_running += job.bulk
            return job
        return None

    def _first_runnable(self, queue: collections.deque[_Job[Any]]) -> _Job[Any] | None:
        """The tenant's oldest job that may start now.

        Passed over: a job whose serial key has a running job, a bulk job while bulk work is at
        its cap, and every later job of a serial key passed over (a stream's order holds).
        """
        held: set[Hashable] = set()
        bulk_full = self.bulk_running >= self._bulk_threads
        for job in queue:
            blocked = job.serial is not None and (job.serial in self._serials or job.serial in held)
            if blocked or (job.bulk and bulk_full):
                if job.serial is not None:
                    held.add(job.serial)
                continue
            return job
        return None

    def rounds_before(self, tenant: Hashable) -> int:
        """The rounds of turns until a job the tenant queues now gets its turn: one more than
        the tenant's jobs already queued."""
        queue = self._queues.get(tenant)
        return 1 + (len(queue) if queue else 0)

    def tenants_queued(self) -> int:
        return len(self._ring)

    def withdraw(self, job: _Job[Any]) -> bool:
        """Take a job that has not started out of the queue; False if it already started."""
        queue = self._queues.get(job.tenant)
        if job.started or queue is None:
            return False
        try:
            queue.remove(job)
        except ValueError:
            return False
        self.queued -= 1
        self.queued_bulk -= job.bulk
        if not queue:
            del self._queues[job.tenant]
            self._ring.remove(job.tenant)
        return True

    def drain(self) -> list[_Job[Any]]:
        """Every queued job, taken out of the queue (shutdown)."""
        jobs = [job for queue in self._queues.values() for job in queue]
        self._queues.clear()
        self._ring.clear()
        self.queued = 0
        self.queued_bulk = 0
        return jobs

    def finished(self, job: _Job[Any]) -> None:
        self._serials.discard(job.serial)
        self.bulk_running -= job.bulk
        self.running[job.tenant] -= 1
        if self.running[job.tenant] <= 0:
            del self.running[job.tenant]
        self.running_total -= 1


class Scheduler:
    """Runs blocking database work on `policy.threads` threads, fairly, and never stalls a caller.

    `fault` maps an exception raised by a job to the `FleetError` its caller should see instead
    (a lost or timed-out database becomes UNAVAILABLE); None keeps the exception.
    """

    def __init__(
        self,
        policy: TurnPolicy,
        *,
        name: str = "fleet-db",
        fault: Callable[[BaseException], FleetError | None] = lambda exc: None,
    ) -> None:
        self.policy = policy
        self._fault = fault
        self._cond = threading.Condition()
        # Control jobs come from no customer in particular: only the lane's share limits them.
        self._lanes = {
            lane: _FairQueue(
                policy.threads if lane is Lane.CONTROL else policy.per_tenant,
                policy.bulk_threads if lane is Lane.INGEST else policy.threads,
            )
            for lane in Lane
        }
        self._prefer_operator = True
        self._closed = False
        # Mean run time in seconds of each kind of job (lane, bulk), a moving average.
        self._mean_run: dict[tuple[Lane, bool], float] = {}
        self._runs: collections.Counter[tuple[Lane, bool]] = collections.Counter()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(policy.threads)
        ]
        for thread in self._threads:
            thread.start()

    async def run(self, turn: Turn, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args, **kwargs)` on a database thread when `turn` comes.

        Raises UNAVAILABLE (with a retry hint) when the turn does not come within the queue
        timeout or the queue is full. A caller that goes away before its job started takes the
        job with it; a started job runs to its end (its result is dropped).
        """
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args, **kwargs)
        job: _Job[T] = _Job(turn, call, loop.create_future(), loop)
        queue = self._lanes[turn.lane]
        with self._cond:
            if self._closed:
                raise Unavailable(
                    "the server is shutting down", reason=Reason.SHUTTING_DOWN, retry_after_ms=BUSY_RETRY_MS
                )
            if queue.queued >= self.policy.max_queued:
                raise _busy(f"{queue.queued} database jobs are already waiting")
            if turn.lane is Lane.INGEST:
                wait = self._expected_wait(turn.lane, turn.bulk, tenant=turn.tenant)
                if wait > self.policy.queue_timeout_s:
                    raise _busy(
                        f"about {wait:.1f} s of database work is queued ahead of this job, past the "
                        f"{self.policy.queue_timeout_s:g} s a job may wait"
                    )
            queue.push(job)
            self._cond.notify()
        try:
            await asyncio.wait({job.future}, timeout=self.policy.queue_timeout_s)
        except asyncio.CancelledError:
            self._withdraw(job)
            raise
        if not job.future.done() and self._withdraw(job):
            raise _busy(f"no database turn within {self.policy.queue_timeout_s:g} s")
        return await job.future

    def _withdraw(self, job: _Job[Any]) -> bool:
        with self._cond:
            return self._lanes[job.lane].withdraw(job)

    def admits(self, lane: Lane, coming: int = 0) -> float | None:
        """None when new work of `lane` may start, else about how many seconds the small jobs
        ahead would take to start (over `admit_wait_s`): a new stream is refused then. `coming`
        is how many small jobs the caller knows are about to arrive (one per stream already
        admitted): when more than are queued, they count instead, so a burst of streams is not
        all admitted before its first batches reach the queue."""
        with self._cond:
            wait = self._expected_wait(lane, False, coming)
        return None if wait <= self.policy.admit_wait_s else wait

    def _expected_wait(
        self, lane: Lane, bulk: bool, coming: int = 0, tenant: Hashable | None = None
    ) -> float:
        """About how long a new job of this kind would wait for a thread (under `_cond`): the jobs
        of its kind queued ahead times their mean run time, over the threads the kind may use.

        With a `tenant`, "ahead" follows the turns: tenants go round robin, so the job waits for
        its tenant's jobs queued before it and for about as many rounds of every other tenant's,
        not for the whole queue. Counting the whole queue refused the twentieth of twenty
        streams starting together on two threads (`test_twenty_customers_at_once_on_a_pool_of_two`:
        40 batches queued, but each stream's next batch had 19 ahead of it).
        """
        mean = self._mean_run.get((lane, bulk))
        if self._runs[lane, bulk] < _TRUSTED_RUNS:
            return 0.0
        queue = self._lanes[lane]
        ahead = queue.queued_bulk if bulk else max(queue.queued - queue.queued_bulk, coming)
        if tenant is not None:
            ahead = min(ahead, queue.rounds_before(tenant) * queue.tenants_queued())
        if mean is None or ahead == 0:
            return 0.0
        if lane is Lane.INGEST and bulk:
            threads = self.policy.bulk_threads
        elif lane is Lane.INGEST:
            threads = self.policy.cap(lane) - min(queue.bulk_running, self.policy.bulk_threads)
        else:
            threads = self.policy.cap(lane)
        return ahead * mean / max(1, threads)

    def load(self) -> dict[str, tuple[int, int]]:
        """(running, queued) per lane, for logs and metrics."""
        with self._cond:
            return {lane.value: (q.running_total, q.queued) for lane, q in self._lanes.items()}

    def close(self) -> None:
        """Stop taking work; queued jobs fail as UNAVAILABLE, running ones finish."""
        with self._cond:
            self._closed = True
            leftovers = [job for queue in self._lanes.values() for job in queue.drain()]
            self._cond.notify_all()
        for job in leftovers:
            _settle(job, error=Unavailable("the server is shutting down", reason=Reason.SHUTTING_DOWN))

    # --- the threads -------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                job = self._pick()
                while job is None:
                    if self._closed:
                        return
                    self._cond.wait()
                    job = self._pick()
                job.started = True
                if self._queued():
                    # Maybe another queued job may run too: wake one thread to look. It wakes the
                    # next in turn if it finds one, so wake-ups follow the work.
                    self._cond.notify()
            began = time.perf_counter()
            result: Any = None
            error: BaseException | None = None
            try:
                result = job.call()
            except BaseException as exc:
                error = self._fault(exc) or exc
            # The run time is counted and the thread's slot freed before the caller is woken, so
            # whatever the caller does next (admit a stream, queue another batch) sees this run.
            took = time.perf_counter() - began
            with self._cond:
                kind = (job.lane, job.bulk)
                mean = self._mean_run.get(kind)
                self._mean_run[kind] = took if mean is None else mean + _MEAN_WEIGHT * (took - mean)
                self._runs[kind] += 1
                self._lanes[job.lane].finished(job)
                # No wake-up here: this thread looks for the next job itself at the top of the
                # loop, and wakes one more if more are queued (see `_work`).
            if error is not None:
                _settle(job, error=error)
            else:
                _settle(job, result=result)

    def _queued(self) -> bool:
        return any(queue.queued for queue in self._lanes.values())

    def _pick(self) -> _Job[Any] | None:
        """The next job a free thread should run: control first, then operator and ingest in turn."""
        control = self._lanes[Lane.CONTROL]
        if control.queued and (job := control.pop()) is not None:
            return job
        lanes = (Lane.OPERATOR, Lane.INGEST) if self._prefer_operator else (Lane.INGEST, Lane.OPERATOR)
        for lane in lanes:
            queue = self._lanes[lane]
            if queue.queued and queue.running_total < self.policy.cap(lane):
                job = queue.pop()
                if job is not None:
                    self._prefer_operator = lane is Lane.INGEST
                    return job
        return None


def _busy(detail: str) -> Unavailable:
    return Unavailable(
        f"the database is busy ({detail}); retry later",
        reason=Reason.DATABASE_BUSY,
        retry_after_ms=BUSY_RETRY_MS,
    )


def _settle(job: _Job[Any], result: Any = None, error: BaseException | None = None) -> None:
    """Hand a job's outcome to its event loop (from any thread); a gone caller is fine."""

    def settle() -> None:
        if job.future.done():
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)

    try:
        job.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        _LOGGER.debug("dropped the outcome of a job whose event loop is closed")
