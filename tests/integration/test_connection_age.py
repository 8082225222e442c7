"""Connections are recycled (max_connection_age) under the real clients without failing a call.

The server asks each connection to go away after `max_connection_age_s` so that long-lived
portal connections re-spread over workers and load balancers; the clients must not notice: new
calls go on a new connection, and a stream in progress finishes on the old one.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import grpc
from fleet.v1 import admin_service_pb2, admin_service_pb2_grpc
from fleet.v1 import resources_pb2 as rpb

from fleet_client.client import FleetClient
from tests.support.clients import bearer
from tests.support.measurements import reading, request, stored_rows

T0 = datetime(2025, 11, 3, 8, 0, tzinfo=UTC)


def test_recycled_connections_fail_no_call_of_fleet_push_or_an_operator(
    make_server, new_customer, admin_token, engine
):
    server = make_server(max_connection_age_s=0.3)
    customer = new_customer("ACME")
    portal = FleetClient(server.target, customer.token)
    operator = grpc.insecure_channel(server.target, options=[("grpc.use_local_subchannel_pool", 1)])
    states: list[grpc.ChannelConnectivity] = []
    lock = threading.Lock()

    def seen(state: grpc.ChannelConnectivity) -> None:
        with lock:
            states.append(state)

    operator.subscribe(seen, try_to_connect=True)
    admin = admin_service_pb2_grpc.FleetAdminServiceStub(operator)
    try:
        with portal.measurement_stream() as stream:  # spans many connection ages
            stream.send(request(1, [reading(1, T0, 1.0)]))
            assert stream.next_ack().batch_id == 1
            calls = 0
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                assert portal.push_sites([rpb.Site(id=1, name="Main", timezone="UTC")]).summary.received == 1
                listed = admin.ListCustomers(
                    admin_service_pb2.ListCustomersRequest(), metadata=bearer(admin_token), timeout=5
                )
                assert [c.code for c in listed.customers] == ["ACME"]
                calls += 1
                with lock:
                    reconnected = states.count(grpc.ChannelConnectivity.READY) >= 3
                if reconnected and calls >= 10:
                    break
            stream.send(request(2, [reading(2, T0, 2.0)]))
            assert stream.next_ack().batch_id == 2
        assert reconnected, f"the operator's connection was never recycled: {states}"
        assert len(stored_rows(engine, customer.id)) == 2
    finally:
        operator.unsubscribe(seen)
        operator.close()
        portal.close()
