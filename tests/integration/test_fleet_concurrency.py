"""A fleet at once, at small scale: many customers on a tiny connection pool, nobody stalls or fails.

The first version deadlocked here: streams kept their pooled connection between batches and
gave it back through the same threads that the streams waiting for a connection had filled.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import grpc
from fleet.v1 import admin_service_pb2 as apb
from fleet.v1 import ingest_service_pb2 as ipb
from fleet.v1 import query_service_pb2 as qpb

from tests.support.clients import Stubs, bearer, error_reason
from tests.support.measurements import HeldStream, count_rows, push_until_error, reading, request

T0 = datetime(2025, 11, 3, 0, 0, tzinfo=UTC)
STEP = timedelta(minutes=1)


def _batches(customer: int, count: int, size: int) -> list[ipb.PushMeasurementsRequest]:
    """`count` batches of new rows for one customer (a device per batch, a minute per row)."""
    return [
        request(b + 1, [reading(b + 1, T0 + i * STEP, float(customer + i)) for i in range(size)])
        for b in range(count)
    ]


def test_twenty_customers_at_once_on_a_pool_of_two(make_server, new_customer, engine, admin_token):
    server = make_server(db_pool_size=2)
    customers = [new_customer(f"C{i:02d}") for i in range(20)]
    stubs = [Stubs.connect(server.target, own_connection=True) for _ in range(4)]
    batches = [_batches(i, 10, 500) for i in range(len(customers))]  # built before the start
    start = threading.Barrier(len(customers) + 1)

    def stream(index: int):
        """Push as fleet-push does: a refused stream is retried after its hint with what is left."""
        start.wait()
        began = time.monotonic()
        acks: list[ipb.PushMeasurementsResponse] = []
        refusals: list[grpc.RpcError] = []
        while True:
            more, error = push_until_error(
                stubs[index % 4], customers[index].token, batches[index][len(acks) :]
            )
            acks += more
            if error is None:
                return acks, refusals, time.monotonic() - began
            refusals.append(error)
            hint = dict(error.trailing_metadata() or ()).get("retry-after-ms")
            if hint is None or len(refusals) > 5:
                return acks, refusals, time.monotonic() - began
            time.sleep(int(hint) / 1000)

    try:
        with ThreadPoolExecutor(len(customers)) as pool:
            futures = [pool.submit(stream, i) for i in range(len(customers))]
            start.wait()
            time.sleep(0.2)  # the streams are in full swing: an operator call now
            began = time.monotonic()
            listed = stubs[0].admin.ListCustomers(
                apb.ListCustomersRequest(page_size=50), metadata=bearer(admin_token), timeout=10
            )
            operator_s = time.monotonic() - began
            results = [f.result(timeout=60) for f in futures]
    finally:
        for s in stubs:
            s.close()

    assert len(listed.customers) == 20
    assert operator_s < 3, f"an operator call waited {operator_s:.1f} s behind ingest"
    accepted = 0
    for acks, refusals, seconds in results:
        for error in refusals:  # saturation may refuse, but only as a retryable status
            assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED), error
            assert error_reason(error) is not None
            assert dict(error.trailing_metadata() or ()).get("retry-after-ms")
        assert seconds < 20
        accepted += sum(a.accepted for a in acks)
    assert accepted == count_rows(engine)  # every acknowledged row stored once, nothing else
    assert accepted == 20 * 10 * 500, "a refused stream retried after its hint gets everything in"


def test_idle_open_streams_hold_no_connection(make_server, new_customer, engine, admin_token):
    """Streams that sent a batch and then wait (more of them than connections) block nobody."""
    server = make_server(db_pool_size=2)
    holders = [new_customer(f"H{i}") for i in range(4)]
    late = new_customer("LATE")
    client = Stubs.connect(server.target)
    held: list[HeldStream] = []
    try:
        for index, customer in enumerate(holders):
            stream = HeldStream(client, customer.token, _batches(index, 1, 10)[0])
            assert stream.first_ack().accepted == 10
            held.append(stream)
        began = time.monotonic()
        acks, error = push_until_error(client, late.token, _batches(99, 2, 100))
        assert error is None
        assert [a.accepted for a in acks] == [100, 100]
        detail = client.query.GetCustomerDetail(
            qpb.GetCustomerDetailRequest(code="LATE"), metadata=bearer(admin_token), timeout=10
        )
        assert detail.customer.code == "LATE"
        assert time.monotonic() - began < 5
        for stream in held:
            more, failure = stream.finish()
            assert failure is None
            assert more == []
    finally:
        client.close()
    assert count_rows(engine) == 4 * 10 + 200
