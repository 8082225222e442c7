"""Every PostgreSQL advisory lock the server takes: one namespace per purpose, one customer-key fold.

Advisory locks use the two-key form `(namespace, key)`. Namespaces are chosen far from small
integers ("FLT" in ASCII), so a single-key lock taken elsewhere cannot collide with them; the
second key is the customer (or 0 for process-wide work), folded into int4 by `customer_key`.

- `PARTITIONS`: transaction-level; creators of monthly measurement partitions, across processes.
- `MEASUREMENT_STREAM`: session-level, held for a PushMeasurements stream's life (`StreamLocks`).
- one per reference resource: transaction-level; snapshots of one customer's resource serialise,
  and a child's snapshot holds its parent's lock shared (see `lock_snapshot`).
- `COLD`: transaction-level, per (customer, UTC month) (`cold_key`): a compression transaction
  holds it exclusive (`store/cold.py`), a measurement batch shared for every month it writes
  (`store/measurements.py`), in `cold_keys` order.
- `COMPRESS_JOB`: session-level, (space, 0): at most one background compression job per fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from enum import IntEnum
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from fleet_server.db.session import CONNECT_TIMEOUT_S, application_name
from fleet_server.errors import Reason, Unavailable
from fleet_server.resources import Resource

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")


class LockSpace(IntEnum):
    """The first key of every advisory lock the server takes."""

    PARTITIONS = 0x464C5450  # "FLTP"
    MEASUREMENT_STREAM = 0x464C5453  # "FLTS"
    SITES = 0x464C5301
    DEVICES = 0x464C5302
    MUNICIPALITIES = 0x464C5303
    TARIFFS = 0x464C5304
    COLD = 0x464C5443  # "FLTC"
    COMPRESS_JOB = 0x464C544A  # "FLTJ"


_SNAPSHOT_SPACES = {
    Resource.SITES: LockSpace.SITES,
    Resource.DEVICES: LockSpace.DEVICES,
    Resource.MUNICIPALITIES: LockSpace.MUNICIPALITIES,
    Resource.TARIFFS: LockSpace.TARIFFS,
}


def customer_key(customer_id: int) -> int:
    """The customer id as the lock's int4 second key; ids past 2**31 wrap (locks only get coarser)."""
    return (customer_id + 2**31) % 2**32 - 2**31


def cold_key(customer_id: int, month: int) -> int:
    """(customer, month) as one int4 key; `month` is `year * 12 + month - 1` (`partitions.month_of`).

    The customer goes to the high bits and the month to the low 16 (65,536 months: 5,000 years),
    folded like `customer_key`: two customers far apart may share a key, which only makes the
    lock coarser, never wrong.
    """
    return customer_key(customer_id * 65_536 + month % 65_536)


def cold_keys(customer_id: int, months: Iterable[int]) -> list[int]:
    """The sorted, distinct keys of a customer's months: the order every multi-month locker uses."""
    return sorted({cold_key(customer_id, month) for month in months})


def lock_partition_creation(session: Session) -> None:
    """Serialise with every other partition creator until the transaction ends."""
    session.execute(text("SELECT pg_advisory_xact_lock(:space, 0)"), {"space": int(LockSpace.PARTITIONS)})


def lock_snapshot(session: Session, customer_id: int, resource: Resource, *, shared: bool = False) -> None:
    """Serialise with other snapshots of `resource` for this customer until the transaction ends.

    Two interleaved snapshots would otherwise each delete only what *they* saw, leaving a union
    of both. `shared` is for a child's snapshot holding its parent's lock: the parents it was
    checked against cannot be deleted under it, while other children's snapshots still run.
    """
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    session.execute(
        text(f"SELECT {function}(:space, :key)"),
        {"space": int(_SNAPSHOT_SPACES[resource]), "key": customer_key(customer_id)},
    )


# A stream lock statement is instant on a live database; this long means it is not answering.
LOCK_TIMEOUT_S = 5.0
LOCK_RETRY_MS = 2_000
# A stream's lock is kept this long after the stream ends, for the customer's next stream here:
# longer than a live portal's push interval plus its call under load (`make load`: 1-5 s, and
# seconds more while back-fills run; with 10 s, slow cycles fell out of the window and the
# lock statements came back just when the server was busiest).
LINGER_S = 30.0
# At most this many locks linger per process (the oldest go first): each holds a slot of
# PostgreSQL's shared lock table (max_locks_per_transaction x max_connections, 6,400 by default).
MAX_LINGERING = 1_000
# While locks linger, the lock connection reads other processes' requests for them this often.
POLL_S = 0.2
# A lock another process holds is asked for and tried again this many times, this far apart:
# a lingering holder gives it up within about `POLL_S`, a stream still open there keeps it.
CLAIM_ATTEMPTS = 4
CLAIM_RETRY_S = 0.3
# The channel on which a process asks the others to give up a lingering lock (payload: the key).
RELEASE_CHANNEL = "fleet_stream_lock_wanted"
# Every lock (or unlock) waiting for the next round trip goes in one statement; the keys keep
# their order (`WITH ORDINALITY`), so each caller gets its own key's answer. A key held elsewhere
# is asked for on `RELEASE_CHANNEL` in the same statement (delivered when it commits).
_KEYS = "unnest(%s::int4[]) WITH ORDINALITY AS k(key, n)"
_TRY_LOCKS = (
    f"WITH tried AS MATERIALIZED (SELECT k.n, k.key, pg_try_advisory_lock(%s, k.key) AS got FROM {_KEYS}) "
    f"SELECT got, CASE WHEN NOT got THEN pg_notify('{RELEASE_CHANNEL}', key::text) END FROM tried ORDER BY n"
)
_UNLOCKS = f"SELECT pg_advisory_unlock(%s, k.key) FROM {_KEYS} ORDER BY k.n"
_POLL = "SELECT 1"


class StreamLocks:
    """At most one measurement stream per customer, across every process on the database.

    A session-level lock `(MEASUREMENT_STREAM, customer)` is held for the stream's life. All
    streams of one process share one lock connection (advisory locks are per session and
    re-entrant within it), so an in-process registry refuses a second stream of the same
    customer in this process, and the advisory lock refuses it in any other. A killed process
    loses its connection and with it its locks, so a crash never leaves a customer locked out.
    The connection is opened for the first stream and closed when no lock is left, so an idle
    server holds no extra connection.

    The connection is an async one, used on the event loop: taking or giving back a stream
    lock never needs a database thread, so it can neither wait behind database work nor hold
    a thread that database work waits for (see `db/scheduler.py`). Each statement is bounded
    by `LOCK_TIMEOUT_S`: a database that stops answering refuses new streams as UNAVAILABLE.

    Locks and unlocks are batched: whatever arrived while a round trip was under way goes in the
    next one, unlocks first, then locks, each kind one statement over an array of keys. One
    statement per stream, one at a time, was the fleet's bottleneck: 300 portals open and close
    about a hundred streams a second, and once back-fills loaded PostgreSQL each round trip took
    tens of milliseconds, so streams queued for their lock for seconds (`make load`: lock waits
    p50 up to 12 s, the whole of the live acknowledgement's p99). Batched, the wait is at most
    about two round trips whatever the number of streams.

    A lock lingers: when a stream ends, its lock is kept `linger_s` for the customer's next
    stream in this process, which then takes it without a round trip. A live portal opens a
    stream every few seconds, and the lock and unlock statements were a sixth of the event
    loop's time per call and two of the four statements a live batch costs PostgreSQL. Another
    process (a second worker, another server) that finds the lock taken asks for it on
    `RELEASE_CHANNEL` in the same statement and tries again `CLAIM_ATTEMPTS` times; a process
    with lingering locks reads those requests every `POLL_S` and gives a lingering lock up at
    once. So a portal whose connection moved to another worker waits a fraction of a second,
    while a second stream of a customer whose stream is really open elsewhere is still refused.
    """

    def __init__(
        self, engine: Engine, *, linger_s: float = LINGER_S, max_lingering: int = MAX_LINGERING
    ) -> None:
        self._engine = engine
        self._linger_s = linger_s
        self._max_lingering = max_lingering
        self._active: set[int] = set()  # streams running (or being locked) in this process
        self._held: set[int] = set()  # advisory locks held on the current connection
        self._lingering: dict[int, float] = {}  # held locks of ended streams: since when (loop time)
        self._wanted: set[int] = set()  # keys other processes asked for
        self._releasing: dict[int, asyncio.Future[None]] = {}  # unlocks not done yet
        self._locks: list[tuple[int, asyncio.Future[bool]]] = []  # waiting for the next round trip
        self._unlocks: list[tuple[int, asyncio.Future[None]]] = []
        self._worker: asyncio.Task[None] | None = None
        self._kick: asyncio.Event | None = None  # set when work arrives for a worker that listens
        self._heard_at = 0.0  # loop time of the last statement (each delivers the notifications)
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._statements_sent = 0

    @property
    def statements_sent(self) -> int:
        """Statements sent so far: what lingering saves is seen here (a stream that takes a
        lingering lock sends none), in tests and when probing the cost of a call."""
        return self._statements_sent

    @property
    def connected(self) -> bool:
        """Whether this process holds its lock connection now (an idle one closes it)."""
        return self._connection is not None

    async def try_acquire(self, customer_id: int) -> bool:
        """True when the caller now owns the customer's stream."""
        releasing = self._releasing.get(customer_id)
        if releasing is not None:  # the customer's previous stream here is still giving its lock back
            await asyncio.wait({releasing})
        if customer_id in self._active:
            return False
        self._active.add(customer_id)  # claimed at once: a second stream here is refused without a query
        if self._lingering.pop(customer_id, None) is not None:
            return True  # this process still holds it: no round trip
        for attempt in range(CLAIM_ATTEMPTS):
            if attempt:
                try:
                    await asyncio.sleep(CLAIM_RETRY_S)
                except BaseException:
                    self._active.discard(customer_id)
                    self._wake()
                    raise
            if await self._claim(customer_id):
                return True
        self._active.discard(customer_id)
        self._wake()  # the last stream gone: the connection is closed
        return False

    async def _claim(self, customer_id: int) -> bool:
        """One try of the customer's lock (the customer is in `_active`) in the next round trip."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._locks.append((customer_id, future))
        self._wake()
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:  # the caller went away; a lock its round trip took is given back
            future.add_done_callback(lambda done: self._abandoned(customer_id, done))
            raise
        except BaseException:
            self._active.discard(customer_id)
            self._wake()
            raise

    async def release(self, customer_id: int) -> None:
        """Give the stream up: its lock lingers (see the class), or is given back at once."""
        if customer_id not in self._held:  # never locked, or the lock went with a lost connection
            self._active.discard(customer_id)
            self._wake()
            return
        if self._linger_s > 0:
            self._active.discard(customer_id)
            self._lingering[customer_id] = asyncio.get_running_loop().time()
            self._wake(kick=False)  # nothing to do now: a listening worker keeps its poll time
            return
        try:
            await asyncio.shield(self._queue_unlock(customer_id))
        except Unavailable as exc:  # the connection is gone, and the lock with it
            _LOGGER.info("stream lock of customer %d went with its connection: %s", customer_id, exc)

    def active(self) -> set[int]:
        return set(self._active)

    def lingering(self) -> set[int]:
        return set(self._lingering)

    def _abandoned(self, customer_id: int, done: asyncio.Future[bool]) -> None:
        if not done.cancelled() and done.exception() is None and done.result():
            self._queue_unlock(customer_id)
        else:
            self._active.discard(customer_id)
            self._wake()

    def _queue_unlock(self, customer_id: int) -> asyncio.Future[None]:
        """The unlock of a held lock, for the next round trip; `_active` keeps the customer until
        it is done, so a new stream of the customer here waits for it (`try_acquire`)."""
        self._held.discard(customer_id)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._releasing[customer_id] = future
        self._unlocks.append((customer_id, future))
        self._wake()
        return future

    def _wake(self, *, kick: bool = True) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._round_trips())
        elif kick and self._kick is not None:
            self._kick.set()

    async def _round_trips(self) -> None:
        """Run the waiting unlocks, then the waiting locks, a statement each, until none are left;
        give up lingering locks that are old or wanted elsewhere, listening while any linger;
        then close the connection when no lock is left. Ends only with nothing to do (no await
        between the last check and the end, so no request is ever left without a worker)."""
        while True:
            if self._unlocks:
                unlocks, self._unlocks = self._unlocks, []
                await self._unlock(unlocks)
            elif self._locks:
                locks, self._locks = self._locks, []
                await self._lock(locks)
            elif self._lingering and (done := self._done_lingering()):
                for customer_id in done:
                    del self._lingering[customer_id]
                    self._active.add(customer_id)  # until the unlock is done (`_queue_unlock`)
                    self._queue_unlock(customer_id)
            elif self._lingering:
                await self._listen()
            elif not self._active and self._connection is not None:
                await self._discard_connection()
            else:
                return

    def _done_lingering(self) -> list[int]:
        """Lingering locks to give up now: held `linger_s`, asked for by another process, or the
        oldest past `max_lingering` (`_lingering` is in the order the streams ended)."""
        wanted, self._wanted = self._wanted, set()
        oldest = asyncio.get_running_loop().time() - self._linger_s
        surplus = len(self._lingering) - self._max_lingering
        return [
            customer_id
            for index, (customer_id, since) in enumerate(self._lingering.items())
            if index < surplus or since <= oldest or customer_key(customer_id) in wanted
        ]

    async def _listen(self) -> None:
        """Wait for work until `POLL_S` after the last statement; with none by then, a round trip
        reads what other processes asked for (notifications arrive with a statement's results).

        The poll is due `POLL_S` after the last statement whatever else happens, so streams
        ending every few milliseconds (each adds a lingering lock) never put it off.
        """
        if self._kick is None:
            self._kick = asyncio.Event()
        self._kick.clear()
        wait = self._heard_at + POLL_S - asyncio.get_running_loop().time()
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._kick.wait()
                    return
            if self._kick.is_set():
                return
        try:
            await self._execute(_POLL, None)
        except Unavailable as exc:  # the connection is gone, and the lingering locks with it
            _LOGGER.info("lingering stream locks went with their connection: %s", exc)
            self._held.difference_update(self._lingering)
            self._lingering.clear()

    def _on_notify(self, notify: psycopg.Notify) -> None:
        """Another process wants a lock: noted here, given up by the worker if it only lingers."""
        if self._lingering:  # nothing lingers: nothing to give up, nothing to remember
            with contextlib.suppress(ValueError):
                self._wanted.add(int(notify.payload))

    async def _unlock(self, unlocks: list[tuple[int, asyncio.Future[None]]]) -> None:
        error: Exception | None = None
        try:
            await self._run(_UNLOCKS, [customer_id for customer_id, _ in unlocks], reconnect=False)
        except Exception as exc:  # Unavailable, or a bug: every waiter gets it, none hangs
            error = exc
        for customer_id, future in unlocks:
            if self._releasing.get(customer_id) is future:
                del self._releasing[customer_id]
                self._active.discard(customer_id)
            _settle(future, None, error)

    async def _lock(self, locks: list[tuple[int, asyncio.Future[bool]]]) -> None:
        try:
            answers = await self._run(_TRY_LOCKS, [customer_id for customer_id, _ in locks])
        except Exception as exc:
            for _, future in locks:
                _settle(future, False, exc)
            return
        for (customer_id, future), locked in zip(locks, answers, strict=True):
            if locked:
                self._held.add(customer_id)
            _settle(future, locked, None)

    async def _run(self, sql: str, customer_ids: list[int], *, reconnect: bool = True) -> list[bool]:
        params = (int(LockSpace.MEASUREMENT_STREAM), [customer_key(c) for c in customer_ids])
        for attempt in (1, 2):
            try:
                return await self._execute(sql, params)
            except Unavailable:
                if not reconnect or attempt == 2:
                    raise
                _LOGGER.warning("stream lock connection lost; reconnecting")
        raise AssertionError("unreachable")

    async def _execute(self, sql: str, params: tuple[Any, ...] | None) -> list[bool]:
        """The statement's first column, within `LOCK_TIMEOUT_S`; a lost connection is dropped."""
        self._statements_sent += 1
        try:
            async with asyncio.timeout(LOCK_TIMEOUT_S):
                conn = await self._open()
                cursor = await conn.execute(sql, params)
                rows = await cursor.fetchall()
            self._heard_at = asyncio.get_running_loop().time()
            return [bool(row[0]) for row in rows]
        except (psycopg.OperationalError, TimeoutError) as exc:
            await self._discard_connection()
            raise Unavailable(
                "the database did not answer the stream lock; retry later",
                reason=Reason.DATABASE_UNAVAILABLE,
                retry_after_ms=LOCK_RETRY_MS,
            ) from exc

    async def close(self) -> None:
        """The server has stopped: lingering locks, and any a stream cut off still held, go with
        the connection (as when the process exits)."""
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._lingering.clear()
        self._held.clear()
        await self._discard_connection()

    async def _open(self) -> psycopg.AsyncConnection[Any]:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        cargs, cparams = self._engine.dialect.create_connect_args(self._engine.url)
        cparams.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        cparams.setdefault("fallback_application_name", application_name())
        conn: psycopg.AsyncConnection[Any] = await psycopg.AsyncConnection.connect(
            *cargs, **cparams, autocommit=True
        )
        self._connection = conn
        if self._linger_s > 0:  # other processes ask for lingering locks here (`_on_notify`)
            conn.add_notify_handler(self._on_notify)
            await conn.execute(f"LISTEN {RELEASE_CHANNEL}")
        # A lost connection took the locks of the streams still running here: take them back.
        held = sorted(self._held)
        if held:
            cursor = await conn.execute(
                _TRY_LOCKS, (int(LockSpace.MEASUREMENT_STREAM), [customer_key(c) for c in held])
            )
            for customer_id, row in zip(held, await cursor.fetchall(), strict=True):
                if not row[0]:
                    self._held.discard(customer_id)
                    self._lingering.pop(customer_id, None)
                    _LOGGER.warning("customer %d: stream lock taken elsewhere on reconnecting", customer_id)
        return conn

    async def _discard_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(psycopg.Error):
                await connection.close()


def _settle(future: asyncio.Future[T], result: T, error: Exception | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
        future.exception()  # retrieved: a waiter that went away must not make asyncio log it
