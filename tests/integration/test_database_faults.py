"""Database faults after authentication are statuses: UNAVAILABLE with a retry hint, never INTERNAL.

Staged on a PostgreSQL of the module's own (`PrivatePostgres`): stopped while a stream is open or
before a snapshot is applied, frozen with SIGSTOP (health must notice within seconds), and a
statement held past the statement timeout (the call is UNAVAILABLE, the connection comes back
clean).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from fleet.v1 import ingest_service_pb2 as ipb
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import create_engine, text

from fleet_server.app import App
from fleet_server.clock import SystemClock
from fleet_server.config import Settings
from fleet_server.db.session import Database
from fleet_server.domain.customers import create_customer
from tests.support.clients import Stubs, bearer, error_reason, rejected, rich_status
from tests.support.inprocess import InProcessServer
from tests.support.measurements import HeldStream, count_rows, push, reading, request
from tests.support.private_pg import PrivatePostgres
from tests.support.reference_data import site

T0 = datetime(2025, 1, 1, tzinfo=UTC)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres()
    yield pg
    pg.close()


def _start(url: str, **overrides: Any) -> InProcessServer:
    settings = Settings(database_url=url, listen="127.0.0.1:0", shutdown_grace_s=0.5, **overrides)
    db = Database.from_url(url, pool_size=2, statement_timeout_s=settings.statement_timeout_s)
    return InProcessServer(App(settings=settings, db=db)).start()


@pytest.fixture
def faulty(private_pg: PrivatePostgres) -> Iterator[tuple[PrivatePostgres, Stubs, str, InProcessServer]]:
    """A server on the private database, a customer's token; the database is running again afterwards."""
    server = _start(private_pg.url, health_poll_s=0.1, health_timeout_s=1.0)
    stubs = Stubs.connect(server.target)
    code = f"C{time.monotonic_ns() % 10**9}"
    token = server.app.db.transaction(create_customer, code, "Faulty", SystemClock().now()).token
    try:
        yield private_pg, stubs, token, server
    finally:
        private_pg.thaw()
        if not private_pg.processes_running():
            private_pg.start()
        stubs.close()
        server.stop()
        server.app.close()


def _unavailable(error: grpc.RpcError, reason: str) -> None:
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error_reason(error) == reason
    assert "retry later" in (error.details() or "")
    status = rich_status(error)
    assert status is not None
    assert any(d.type_url.endswith("google.rpc.RetryInfo") for d in status.details)
    assert ("retry-after-ms", "2000") in tuple(error.trailing_metadata() or ())


def _eventually_pushes(stubs: Stubs, token: str, batch: ipb.PushMeasurementsRequest) -> None:
    """The server recovers by itself once the database is back (the first try may meet a dead connection)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            push(stubs, token, [batch])
            return
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_a_stream_open_when_the_database_stops_ends_unavailable(faulty):
    pg, stubs, token, server = faulty
    engine = server.app.db.engine
    held = HeldStream(stubs, token, request(1, [reading(1, T0, 1.0)]))
    assert held.first_ack().accepted == 1

    pg.stop()
    acks, error = held.finish([request(2, [reading(1, T0 + timedelta(hours=1), 2.0)])])

    assert acks == []
    assert error is not None
    _unavailable(error, "DATABASE_UNAVAILABLE")
    pg.start()
    _eventually_pushes(stubs, token, request(3, [reading(1, T0 + timedelta(hours=2), 3.0)]))
    assert count_rows(engine) == 2  # batch 2 was never written


def test_a_snapshot_whose_database_stops_before_it_is_applied_is_unavailable(faulty):
    pg, stubs, token, server = faulty

    def messages() -> Iterator[ipb.PushSitesRequest]:
        yield ipb.PushSitesRequest(sites=[site(1)])
        pg.stop()

    error = rejected(lambda: stubs.ingest.PushSites(messages(), metadata=bearer(token), timeout=15))

    _unavailable(error, "DATABASE_UNAVAILABLE")
    pg.start()
    assert count_rows(server.app.db.engine, "fleet.sites") == 0


def _health(stubs: Stubs) -> int:
    reply = health_pb2_grpc.HealthStub(stubs.channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return int(reply.status)


def _wait_for(stubs: Stubs, wanted: int, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if _health(stubs) == wanted:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"health did not become {wanted} within {timeout}s")


def test_a_frozen_database_turns_health_not_serving_within_seconds(faulty):
    pg, stubs, _, _ = faulty
    assert _health(stubs) == SERVING

    pg.freeze()
    try:
        noticed = _wait_for(stubs, NOT_SERVING, timeout=5.0)
        assert _health(stubs) == NOT_SERVING  # and stays so while frozen
    finally:
        pg.thaw()
    assert noticed < 3.0  # poll 0.1 s + probe timeout 1 s, with room for a slow machine
    _wait_for(stubs, SERVING, timeout=10.0)


def test_a_statement_that_times_out_is_unavailable_and_its_connection_comes_back_clean(
    database_url, engine, new_customer
):
    customer = new_customer("ACME")
    server = _start(database_url, statement_timeout_s=0.5)
    stubs = Stubs.connect(server.target)
    blocker = create_engine(database_url)
    try:
        with blocker.connect() as conn, conn.begin():
            # An erasure-shaped lock on the customer row: every write of the customer waits for it.
            conn.execute(text("SELECT 1 FROM fleet.customers WHERE id = :c FOR UPDATE"), {"c": customer.id})
            started = time.monotonic()
            measurements = rejected(lambda: push(stubs, customer.token, [request(1, [reading(1, T0, 1.0)])]))
            snapshot = rejected(
                lambda: stubs.ingest.PushSites(
                    iter([ipb.PushSitesRequest(sites=[site(1)])]), metadata=bearer(customer.token), timeout=10
                )
            )
            waited = time.monotonic() - started
        _unavailable(measurements, "DATABASE_TIMEOUT")
        _unavailable(snapshot, "DATABASE_TIMEOUT")
        assert waited < 5

        # The same pool serves the next calls; no connection is left in a failed transaction.
        (ack,) = push(stubs, customer.token, [request(2, [reading(1, T0, 1.0)])])
        assert ack.accepted == 1
        stubs.ingest.PushSites(
            iter([ipb.PushSitesRequest(sites=[site(1)])]), metadata=bearer(customer.token), timeout=10
        )
        with engine.connect() as conn:
            states = conn.execute(
                text("SELECT state FROM pg_stat_activity WHERE application_name LIKE 'fleet-server-%'")
            ).scalars()
            assert "idle in transaction (aborted)" not in set(states)
    finally:
        blocker.dispose()
        stubs.close()
        server.stop()
        server.app.close()


def test_the_statement_timeout_is_set_on_every_pooled_connection(database_url):
    db = Database.from_url(database_url, pool_size=1, statement_timeout_s=12.5)
    try:
        with db.engine.connect() as conn:
            assert conn.scalar(text("SHOW statement_timeout")) == "12500ms"
    finally:
        db.close()
