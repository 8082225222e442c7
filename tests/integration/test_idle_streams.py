"""Idle request streams end with DEADLINE_EXCEEDED (reason STREAM_IDLE) and write nothing unacknowledged.

The servers here idle streams out after one second (`stream_idle_s`); production's is a minute.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
from fleet.v1 import ingest_service_pb2 as ipb
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support.clients import Stubs, bearer, error_reason
from tests.support.measurements import push, reading, request, stored_rows
from tests.support.reference_data import db_state, site
from tests.support.reference_data import push as push_snapshot
from tests.support.waiting import wait_for

IDLE_S = 1.0
T0 = datetime(2025, 11, 3, 8, 0, tzinfo=UTC)
Q = timedelta(minutes=15)


class Script:
    """A request iterator that sends `first`, then each later message when the test says so, then
    falls silent (until `hang_up`, which ends it without sending anything more)."""

    def __init__(self, first: object) -> None:
        self._first = first
        self._next: list[object] = []
        self._go = threading.Semaphore(0)
        self._hung_up = False

    def __iter__(self) -> Iterator[object]:
        yield self._first
        while True:
            self._go.acquire(timeout=60)
            if self._hung_up or not self._next:
                return
            yield self._next.pop(0)

    def send(self, message: object) -> None:
        self._next.append(message)
        self._go.release()

    def hang_up(self) -> None:
        self._hung_up = True
        self._go.release()


def assert_idled_out(error: grpc.RpcError) -> None:
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert error_reason(error) == "STREAM_IDLE"
    assert f"sent nothing for {IDLE_S:g} s" in error.details()


def test_an_idle_snapshot_stream_is_ended_and_changes_nothing(make_server, new_customer, engine):
    server = make_server(stream_idle_s=IDLE_S)
    client = Stubs.connect(server.target)
    customer = new_customer("ACME")
    push_snapshot(client, customer.token, "sites", [site(1), site(2)])
    before = db_state(engine)

    script = Script(ipb.PushSitesRequest(sites=[site(7), site(8), site(9)]))
    try:
        client.ingest.PushSites(iter(script), metadata=bearer(customer.token), timeout=30)
        raise AssertionError("the idle stream was applied")
    except grpc.RpcError as error:
        assert_idled_out(error)
    finally:
        script.hang_up()

    assert db_state(engine) == before  # sites 1 and 2 still there, 7 to 9 never written
    wait_for(lambda: server.app.admission.calls_of(customer.id) == 0, "the stream's slot to free")
    client.close()


def test_an_idle_measurement_stream_keeps_its_acknowledged_batches_and_writes_nothing_more(
    make_server, new_customer, engine
):
    server = make_server(stream_idle_s=IDLE_S)
    client = Stubs.connect(server.target)
    customer = new_customer("ACME")
    batches = [request(i, [reading(i, T0 + n * Q, float(i)) for n in range(3)]) for i in (1, 2, 3)]

    script = Script(batches[0])
    call = client.ingest.PushMeasurements(iter(script), metadata=bearer(customer.token), timeout=30)
    try:
        assert next(call).batch_id == 1
        script.send(batches[1])
        assert next(call).batch_id == 2
        try:
            next(call)  # the client now says nothing: the server ends the stream
            raise AssertionError("the idle stream went on")
        except grpc.RpcError as error:
            assert_idled_out(error)
    finally:
        script.send(batches[2])  # too late: the call is over, and batch 3 goes nowhere
        script.hang_up()

    wait_for(lambda: server.app.admission.calls_of(customer.id) == 0, "the stream's slot to free")
    assert [a.batch_id for a in push(client, customer.token, [request(4, [reading(4, T0, 4.0)])])] == [4]
    assert {row[0] for row in stored_rows(engine, customer.id)} == {1, 2, 4}  # devices = batch ids
    assert len(stored_rows(engine, customer.id)) == 7
    client.close()


def test_a_stream_that_keeps_sending_is_never_idle(make_server, new_customer, engine):
    server = make_server(stream_idle_s=IDLE_S)
    client = Stubs.connect(server.target)
    customer = new_customer("ACME")

    def steady() -> Iterator[ipb.PushMeasurementsRequest]:
        for i in range(1, 7):  # 1.8 s in all, never 1 s without a message
            time.sleep(0.3)
            yield request(i, [reading(i, T0, float(i))])

    acks = list(client.ingest.PushMeasurements(steady(), metadata=bearer(customer.token), timeout=30))
    assert [a.batch_id for a in acks] == [1, 2, 3, 4, 5, 6]
    assert len(stored_rows(engine, customer.id)) == 6
    assert server.app.admission.calls_of(customer.id) == 0
    client.close()


def test_an_idle_reflection_stream_is_ended_too(make_server):
    server = make_server(stream_idle_s=IDLE_S)
    channel = grpc.insecure_channel(server.target)
    script = Script(reflection_pb2.ServerReflectionRequest(list_services=""))
    call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter(script), timeout=30)
    try:
        listed = next(call).list_services_response.service
        assert "fleet.v1.FleetIngestService" in {s.name for s in listed}
        try:
            next(call)
            raise AssertionError("the idle reflection stream went on")
        except grpc.RpcError as error:
            assert_idled_out(error)
    finally:
        script.hang_up()
    wait_for(lambda: server.app.admission.in_use()["anonymous_streams"] == 0, "the stream's slot to free")
    channel.close()
