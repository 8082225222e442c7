"""Concurrent snapshots: one tariff replaced from two sides, one customer never blocking another."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from fleet_server.domain.reference import apply_devices
from fleet_server.domain.reference_validation import DeviceItem
from tests.support.clients import Stubs, error_reason
from tests.support.reference_data import (
    WEEKDAYS,
    WEEKENDS,
    counts,
    device,
    municipality,
    period,
    push,
    reference_tariff,
    site,
    table_rows,
)

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
ROUNDS = 25


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


def _version(label: str, rate: str, count: int) -> Any:
    """A version of tariff 10 with its own, recognisable period set."""
    tariff = reference_tariff()
    del tariff.periods[:]
    tariff.periods.extend(
        period(i, f"{label}{i}", WEEKDAYS if i % 2 else WEEKENDS, f"{i:02d}:00", f"{i:02d}:30", rate)
        for i in range(1, count + 1)
    )
    return tariff


def test_concurrent_replaces_of_one_tariff_end_with_exactly_one_pushed_set(
    server, new_customer, engine, pool
):
    acme = new_customer("ACME")
    setup = Stubs.connect(server.target)
    push(setup, acme.token, "municipalities", [municipality(5)])
    versions = {"A": _version("A", "1.11", 3), "B": _version("B", "2.22", 5)}
    expected = {
        label: [(10, p.id, p.name, p.days_of_week) for p in version.periods]
        for label, version in versions.items()
    }
    clients = {label: Stubs.connect(server.target) for label in versions}
    try:
        for _ in range(ROUNDS):
            start = threading.Barrier(2)

            def replace(label: str, start: threading.Barrier = start) -> Any:
                start.wait()
                return push(clients[label], acme.token, "tariffs", [versions[label]])

            replies = [pool.submit(replace, label) for label in versions]
            for reply in replies:
                assert reply.result().summary.received == 1
            stored = [row[:4] for row in table_rows(engine, "tariff_periods", acme.id)]
            assert stored in (expected["A"], expected["B"])
    finally:
        for client in (setup, *clients.values()):
            client.close()


def test_concurrent_snapshots_of_one_customer_never_leave_a_union(server, new_customer, engine, pool):
    """Each snapshot deletes what it does not name; interleaved, they would keep each other's rows."""
    acme = new_customer("ACME")
    snapshots = {"A": [site(i, name="A") for i in range(1, 6)], "B": [site(i, name="B") for i in range(4, 9)]}
    clients = {label: Stubs.connect(server.target) for label in snapshots}
    try:
        for _ in range(ROUNDS):
            start = threading.Barrier(2)

            def replace(label: str, start: threading.Barrier = start) -> Any:
                start.wait()
                return push(clients[label], acme.token, "sites", snapshots[label])

            for reply in [pool.submit(replace, label) for label in snapshots]:
                assert reply.result().summary.received == 5
            stored = [(row[0], row[1]) for row in table_rows(engine, "sites", acme.id)]
            assert stored in ([(s.id, s.name) for s in snapshots[label]] for label in snapshots)
    finally:
        for client in clients.values():
            client.close()


def test_the_later_of_two_serialised_replaces_wins_and_reports_the_change(server, new_customer, engine):
    acme = new_customer("ACME")
    stubs = Stubs.connect(server.target)
    try:
        push(stubs, acme.token, "municipalities", [municipality(5)])
        assert push(stubs, acme.token, "tariffs", [_version("A", "1", 2)]).periods_written == 2
        reply = push(stubs, acme.token, "tariffs", [_version("B", "1", 2)])
        assert counts(reply) == (1, 0, 1, 0, 0)
        assert [row[2] for row in table_rows(engine, "tariff_periods", acme.id)] == ["B1", "B2"]
    finally:
        stubs.close()


def _hold_open(db: Any, customer_id: int, devices: list[DeviceItem]) -> tuple[threading.Event, Future[None]]:
    """A devices snapshot of `customer_id` applied but not committed until the event is set."""
    release = threading.Event()
    applied = threading.Event()

    def hold(session: Any) -> None:
        apply_devices(session, customer_id, devices, NOW)
        applied.set()
        release.wait(30)

    executor = ThreadPoolExecutor(max_workers=1)
    held: Future[None] = executor.submit(db.transaction, hold)
    executor.shutdown(wait=False)
    assert applied.wait(10)
    return release, held


def _wait_until_a_snapshot_waits(engine: Any) -> None:
    """Block until some transaction is queued on a snapshot lock (an ungranted advisory lock)."""
    deadline = time.monotonic() + 10
    query = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    while True:
        with engine.connect() as conn:
            if conn.scalar(query):
                return
        assert time.monotonic() < deadline, "no snapshot ever waited for the lock"
        time.sleep(0.01)


def test_two_customers_snapshots_do_not_wait_for_each_other(server, db, new_customer, engine, pool):
    acme, globex = new_customer("ACME"), new_customer("GLOBEX")
    stubs = Stubs.connect(server.target)
    try:
        for customer in (acme, globex):
            push(stubs, customer.token, "sites", [site(1)])
        release, held = _hold_open(db, acme.id, [DeviceItem(1, 1, "held", "", "meter")])
        try:
            blocked = pool.submit(push, stubs, acme.token, "devices", [device(2, 1)])
            _wait_until_a_snapshot_waits(engine)
            # GLOBEX's snapshot goes through while ACME's is held open …
            assert counts(push(stubs, globex.token, "devices", [device(1, 1)])) == (1, 1, 0, 0, 0)
            assert counts(push(stubs, globex.token, "sites", [site(1), site(2)])) == (2, 1, 0, 1, 0)
            # … while ACME's second snapshot of the same resource waits its turn.
            assert not blocked.done()
        finally:
            release.set()
        held.result(10)
        assert counts(blocked.result(10)) == (1, 1, 0, 0, 1)
        assert [r[0] for r in table_rows(engine, "devices", acme.id)] == [2]
    finally:
        stubs.close()


def test_a_site_cannot_be_deleted_under_a_devices_snapshot_that_checked_it(
    server, db, new_customer, engine, pool
):
    acme = new_customer("ACME")
    stubs = Stubs.connect(server.target)
    try:
        push(stubs, acme.token, "sites", [site(1), site(2)])
        release, held = _hold_open(db, acme.id, [DeviceItem(7, 2, "on site 2", "", "meter")])
        try:
            removal = pool.submit(push, stubs, acme.token, "sites", [site(1)])
            _wait_until_a_snapshot_waits(engine)
            assert counts(push(stubs, acme.token, "municipalities", [municipality(5)]))[1] == 1
            assert not removal.done()  # the devices snapshot holds the sites it relies on
        finally:
            release.set()
        held.result(10)
        assert counts(removal.result(10)) == (1, 0, 0, 1, 1)
        assert table_rows(engine, "devices", acme.id) == []  # the cascade took the device along
    finally:
        stubs.close()


def test_a_snapshot_queued_behind_an_erasure_fails_cleanly_and_writes_nothing(stubs, new_customer, engine):
    """The erasure holds the customer row; the push waits on it, then finds no customer.

    Without the snapshot taking the customer row first, the two could deadlock (INTERNAL).
    """
    customer = new_customer("ACME")
    push(stubs, customer.token, "sites", [site(1), site(2)])
    outcome: dict[str, Any] = {}

    with engine.connect() as erasure:
        erasure.execute(text("SELECT 1 FROM fleet.customers WHERE id = :c FOR UPDATE"), {"c": customer.id})

        def pusher() -> None:
            try:
                push(stubs, customer.token, "sites", [site(1, "renamed"), site(3)])
            except grpc.RpcError as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=pusher)
        thread.start()
        _wait_for_lock_waiter(engine)  # the push authenticated and now queues on the customer row
        assert thread.is_alive()
        erasure.execute(text("DELETE FROM fleet.sites WHERE customer_id = :c"), {"c": customer.id})
        erasure.execute(text("DELETE FROM fleet.customers WHERE id = :c"), {"c": customer.id})
        erasure.commit()
        thread.join(30)

    error = outcome["error"]
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details().startswith("the token this call was authenticated with is no longer valid")
    assert error_reason(error) == "TOKEN_REVOKED"
    assert table_rows(engine, "sites", customer.id) == []


def _wait_for_lock_waiter(engine: Any, timeout: float = 20.0) -> None:
    """Block until some backend waits on a lock (polling pg_stat_activity, bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            waiting = conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            )
        if waiting:
            return
        time.sleep(0.02)
    raise AssertionError("no backend started waiting on a lock")
