"""Fairness over the wire: one stream per customer (across processes), the row budget, size limits."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from fleet.v1 import resources_pb2 as rpb
from sqlalchemy import Engine, text

from fleet_server.clock import FakeClock
from fleet_server.db.session import Database, application_name
from fleet_server.domain.fairness import IngestGate
from fleet_server.store.locks import StreamLocks
from tests.support.clients import Stubs, error_reason
from tests.support.measurements import (
    HeldStream,
    count_rows,
    push,
    push_until_error,
    reading,
    request,
    stored_rows,
)

T0 = datetime(2025, 11, 3, 8, 0, tzinfo=UTC)
Q = timedelta(minutes=15)


def _rows(count: int, device_id: int = 1, start: datetime = T0) -> list[rpb.Measurement]:
    return [reading(device_id, start + i * Q, 1.0) for i in range(count)]


def test_a_second_stream_of_a_customer_is_refused_while_others_push(stubs, new_customer, engine):
    alpha, bravo = new_customer("ALPHA"), new_customer("BRAVO")
    held = HeldStream(stubs, alpha.token, request(1, _rows(3)))
    assert held.first_ack().accepted == 3

    acks, error = push_until_error(stubs, alpha.token, [request(2, _rows(2, device_id=2))])
    assert acks == []
    assert error is not None
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_reason(error) == "STREAM_ALREADY_OPEN"
    assert "one stream per customer" in error.details()
    assert [a.accepted for a in push(stubs, bravo.token, [request(1, _rows(4))])] == [4]

    more, failure = held.finish([request(3, _rows(2, device_id=3))])
    assert failure is None
    assert [a.accepted for a in more] == [2]
    assert [a.accepted for a in push(stubs, alpha.token, [request(4, _rows(1, device_id=4))])] == [1]
    assert len(stored_rows(engine, alpha.id)) == 6  # nothing of the refused stream


def test_server_connections_are_named_after_the_process(stubs, new_customer, engine, database_url):
    """pg_stat_activity tells whose a backend is: the pool's and the stream lock's connections alike."""
    customer = new_customer("ACME")
    held = HeldStream(stubs, customer.token, request(1, _rows(1)))
    assert held.first_ack().accepted == 1
    with engine.connect() as conn:
        lock_holders = conn.scalars(
            text(
                "SELECT DISTINCT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.objid = :customer "
                "AND a.datname = current_database()"
            ),
            {"customer": customer.id},
        ).all()
    held.finish()
    pooled = Database.from_url(database_url, pool_size=1)
    with pooled.engine.connect() as conn:
        pooled_name = conn.scalar(text("SHOW application_name"))
    pooled.close()
    assert lock_holders == [application_name()] == [pooled_name]


def test_exclusivity_holds_across_server_processes(make_server, new_customer):
    first, second = make_server(), make_server()  # two servers on one database, as behind a balancer
    customer = new_customer("ACME")
    one, two = Stubs.connect(first.target), Stubs.connect(second.target)
    try:
        held = HeldStream(one, customer.token, request(1, _rows(1)))
        assert held.first_ack().accepted == 1
        _, error = push_until_error(two, customer.token, [request(2, _rows(1, device_id=2))])
        assert error is not None
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        held.finish()
        assert [a.accepted for a in push(two, customer.token, [request(3, _rows(1, device_id=3))])] == [1]
    finally:
        one.close()
        two.close()


def test_the_stream_is_free_again_after_a_refused_batch_or_a_cancelled_call(stubs, new_customer):
    customer = new_customer("ACME")
    _, error = push_until_error(stubs, customer.token, [request(1, [reading(0, T0, 1.0)])])
    assert error is not None
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT

    held = HeldStream(stubs, customer.token, request(2, _rows(1)))
    held.first_ack()
    held.call.cancel()
    deadline = time.monotonic() + 10
    while True:  # the server notices the cancellation asynchronously
        acks, error = push_until_error(stubs, customer.token, [request(3, _rows(1, device_id=2))])
        if error is None or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert error is None
    assert [a.accepted for a in acks] == [1]


def test_a_call_cancelled_while_it_gives_the_stream_lock_back_still_gives_it_back(
    database_url, settings, new_customer, engine
):
    """grpc.aio cancels the handler of a client that went away even when the handler has ended and
    is giving the lock back; if that cancelled the release, the customer stayed locked out."""
    customer = new_customer("ACME")
    database = Database.from_url(database_url, pool_size=1)
    # Without lingering: the lock must be given back by the unlock the cancellation lands on.
    gate = dataclasses.replace(
        IngestGate.build(database, settings, FakeClock()), locks=StreamLocks(database.engine, linger_s=0)
    )

    async def call() -> None:
        this = asyncio.current_task()
        assert this is not None
        async with gate.exclusive_stream(customer.id):
            # As grpc does: the cancellation lands while leaving the block awaits the release.
            asyncio.get_running_loop().call_soon(this.cancel)
        await asyncio.sleep(10)  # not reached: the call is cancelled on its way out

    async def cancelled_call() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await call()
        deadline = time.monotonic() + 10
        while gate.locks.active() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    try:
        asyncio.run(cancelled_call())
        assert gate.locks.active() == set()
        assert _stream_locks_held(engine, customer.id) == 0
    finally:
        database.close()


def _stream_locks_held(engine, customer_id: int) -> int:
    """Sessions holding the customer's stream lock in this database."""
    with engine.connect() as conn:
        held = conn.scalar(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 "
                "AND objid = :customer AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            {"customer": customer_id},
        )
    return int(held)


def _run_with_locks(database_url: str, scenario: Callable[[Engine], Coroutine[Any, Any, None]]) -> None:
    """`scenario` on its own event loop, given the engine of a one-connection pool (as the
    server's stream locks have), which is closed whatever happens."""
    database = Database.from_url(database_url, pool_size=1)
    try:
        asyncio.run(scenario(database.engine))
    finally:
        database.close()


def test_a_stream_lock_lingers_for_the_next_stream_and_is_given_up_when_another_process_asks(
    database_url, new_customer, engine
):
    customer = new_customer("ACME")

    async def scenario(locks_engine: Engine) -> None:
        here, there = StreamLocks(locks_engine, linger_s=60), StreamLocks(locks_engine, linger_s=60)
        assert await here.try_acquire(customer.id)
        await here.release(customer.id)
        assert here.lingering() == {customer.id}
        assert await asyncio.to_thread(_stream_locks_held, engine, customer.id) == 1  # still held
        sent = here.statements_sent
        assert await here.try_acquire(customer.id)  # the customer's next stream here
        assert here.statements_sent == sent  # took the lingering lock: no round trip
        assert not await there.try_acquire(customer.id)  # a stream really open here: refused there
        await here.release(customer.id)
        started = time.monotonic()
        assert await there.try_acquire(customer.id)  # lingering here: asked for and given up
        assert time.monotonic() - started < 2.0
        assert here.lingering() == set()
        await there.release(customer.id)
        await there.close()
        await here.close()

    _run_with_locks(database_url, scenario)
    assert _stream_locks_held(engine, customer.id) == 0


def test_a_lingering_stream_lock_is_given_up_while_other_streams_keep_ending(
    database_url, new_customer, engine
):
    """Streams ending every few milliseconds (each adds a lingering lock, none needs a statement)
    must not put off the poll that reads another process's request."""
    wanted, *busy = [new_customer(f"C{i}") for i in range(4)]

    async def churn(here: StreamLocks, stop: asyncio.Event) -> None:
        while not stop.is_set():
            for customer in busy:
                assert await here.try_acquire(customer.id)
                await here.release(customer.id)
                await asyncio.sleep(0.01)

    async def scenario(locks_engine: Engine) -> None:
        here, there = StreamLocks(locks_engine, linger_s=60), StreamLocks(locks_engine, linger_s=60)
        for customer in (wanted, *busy):
            assert await here.try_acquire(customer.id)
            await here.release(customer.id)
        stop = asyncio.Event()
        churning = asyncio.create_task(churn(here, stop))
        try:
            started = time.monotonic()
            assert await there.try_acquire(wanted.id)
            assert time.monotonic() - started < 2.0
        finally:
            stop.set()
            await churning
        assert here.lingering() == {c.id for c in busy}
        await there.release(wanted.id)
        await there.close()
        await here.close()

    _run_with_locks(database_url, scenario)
    assert [_stream_locks_held(engine, c.id) for c in (wanted, *busy)] == [0, 0, 0, 0]


def test_no_more_than_the_cap_of_stream_locks_linger(database_url, new_customer, engine):
    customers = [new_customer(f"C{i}") for i in range(3)]

    async def scenario(locks_engine: Engine) -> None:
        locks = StreamLocks(locks_engine, linger_s=60, max_lingering=2)
        for customer in customers:
            assert await locks.try_acquire(customer.id)
        for customer in customers:
            await locks.release(customer.id)
        deadline = time.monotonic() + 10
        # A lock given up is "active" until its unlock statement is done.
        while (len(locks.lingering()) > 2 or locks.active()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert locks.lingering() == {customers[1].id, customers[2].id}  # the oldest went first
        held = [await asyncio.to_thread(_stream_locks_held, engine, c.id) for c in customers]
        assert held == [0, 1, 1]
        await locks.close()

    _run_with_locks(database_url, scenario)
    assert [_stream_locks_held(engine, c.id) for c in customers] == [0, 0, 0]


def test_a_lingering_stream_lock_is_given_back_after_its_time_and_the_connection_closed(
    database_url, new_customer, engine
):
    customer = new_customer("ACME")

    async def scenario(locks_engine: Engine) -> None:
        locks = StreamLocks(locks_engine, linger_s=0.3)
        assert await locks.try_acquire(customer.id)
        await locks.release(customer.id)
        assert locks.lingering() == {customer.id}
        deadline = time.monotonic() + 10
        while (locks.lingering() or locks.connected) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert locks.lingering() == set()
        assert not locks.connected  # nothing held: an idle server keeps no extra connection

    _run_with_locks(database_url, scenario)
    assert _stream_locks_held(engine, customer.id) == 0


def test_the_row_budget_refuses_with_a_retry_after_hint_and_keeps_earlier_batches(
    make_server, new_customer, engine
):
    clock = FakeClock(datetime(2026, 1, 5, 12, 0, tzinfo=UTC))
    server = make_server(clock=clock, ingest_rows_per_s=100.0, ingest_burst_rows=1000)
    client = Stubs.connect(server.target)
    customer = new_customer("ACME")
    batches = [
        request(1, _rows(500)),
        request(2, _rows(500, device_id=2)),
        request(3, _rows(250, device_id=3)),
    ]

    acks, error = push_until_error(client, customer.token, batches)

    assert [a.batch_id for a in acks] == [1, 2]
    assert error is not None
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_reason(error) == "ROW_BUDGET_EXHAUSTED"
    assert ("retry-after-ms", "2500") in list(error.trailing_metadata() or ())
    assert count_rows(engine) == 1000

    clock.advance(2.5)
    assert [a.accepted for a in push(client, customer.token, [batches[2]])] == [250]
    client.close()


def test_a_batch_over_the_burst_is_refused_without_a_hint(make_server, new_customer, engine):
    server = make_server(clock=FakeClock(), ingest_rows_per_s=100.0, ingest_burst_rows=10)
    client = Stubs.connect(server.target)
    customer = new_customer("ACME")

    _, error = push_until_error(client, customer.token, [request(1, _rows(11))])
    client.close()

    assert error is not None
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_reason(error) == "BATCH_OVER_BURST"
    assert not [k for k, _ in error.trailing_metadata() or () if k == "retry-after-ms"]
    assert count_rows(engine) == 0


def test_an_oversized_message_is_refused_by_the_transport_and_writes_nothing(
    make_server, new_customer, engine
):
    server = make_server(max_message_bytes=20_000)
    client = Stubs.connect(server.target)
    customer = new_customer("ACME")
    small = request(1, _rows(10))
    big = request(2, _rows(1000, device_id=2))
    assert big.ByteSize() > 20_000 > small.ByteSize()

    held = HeldStream(client, customer.token, small)
    assert held.first_ack().batch_id == 1  # acknowledged before the big one is sent
    acks, error = held.finish([big])
    client.close()

    assert acks == []
    assert error is not None
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stored_rows(engine, customer.id) == {(1, "energy_kwh", T0 + i * Q, 1.0) for i in range(10)}
