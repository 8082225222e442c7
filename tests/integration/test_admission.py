"""Slots over the wire: a flood of one kind of caller is refused by its own budget only.

Issue 12's failures at small scale: 260 anonymous health `Watch` streams took all 256 of gRPC's
RPC slots, and one customer's 300 idle `PushSites` streams did the same, until every other call
— other customers' pushes, operators' calls, even `Health/Check` — was RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

import grpc
from fleet.v1 import admin_service_pb2
from fleet.v1 import ingest_service_pb2 as ipb
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.clients import Stubs, bearer, error_reason
from tests.support.reference_data import site, table_rows
from tests.support.waiting import wait_for

SERVING = health_pb2.HealthCheckResponse.SERVING
_OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


def everyone_else_is_served(client: Stubs, admin_token: str, token: str, site_id: int) -> None:
    """A health check, a customer's snapshot push and an operator's call, each within 5 s."""
    check = health_pb2_grpc.HealthStub(client.channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert check.status == SERVING
    pushed = client.ingest.PushSites(
        iter([ipb.PushSitesRequest(sites=[site(site_id)])]), metadata=bearer(token), timeout=5
    )
    assert pushed.summary.inserted == 1
    listed = client.admin.ListCustomers(
        admin_service_pb2.ListCustomersRequest(), metadata=bearer(admin_token), timeout=5
    )
    assert listed.customers


class SilentPushes:
    """`count` PushSites streams of one token that send nothing until `release`."""

    def __init__(self, client: Stubs, token: str, count: int) -> None:
        self._release = threading.Event()
        self.calls = [
            client.ingest.PushSites.future(self._nothing(), metadata=bearer(token), timeout=60)
            for _ in range(count)
        ]

    def _nothing(self) -> Iterator[ipb.PushSitesRequest]:
        self._release.wait(60)
        yield from ()

    def refused(self) -> list[grpc.Future]:
        return [call for call in self.calls if call.done()]

    def release(self) -> None:
        """Cancel every stream first (an ended generator would push an empty snapshot), then free
        the threads that feed them."""
        for call in self.calls:
            call.cancel()
        self._release.set()


def test_300_anonymous_watch_streams_get_their_32_slots_and_everyone_else_is_served(
    make_server, new_customer, admin_token
):
    server = make_server(max_anonymous_streams=32)
    customer = new_customer("ACME")
    client = Stubs.connect(server.target)
    # Three connections of 100 streams: one connection carries at most 100 (the transport refuses
    # more with REFUSED_STREAM, before any handler; see docs/operations.md). Channels of one
    # process share a connection unless told otherwise.
    hostile = [grpc.insecure_channel(server.target, options=_OWN_CONNECTION) for _ in range(3)]
    health = [health_pb2_grpc.HealthStub(channel) for channel in hostile]
    watches = [h.Watch(health_pb2.HealthCheckRequest(), timeout=60) for h in health for _ in range(100)]
    try:
        held, refused = [], []
        for watch in watches:  # each answers at once: a first status, or the refusal
            try:
                assert next(watch).status == SERVING
                held.append(watch)
            except grpc.RpcError as error:
                refused.append(error)

        assert len(held) == 32
        assert len(refused) == 268
        assert {error.code() for error in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert {error_reason(error) for error in refused} == {"ANONYMOUS_STREAM_LIMIT"}
        assert all(("retry-after-ms", "1000") in error.trailing_metadata() for error in refused)
        assert "use Health/Check" in refused[0].details()
        everyone_else_is_served(client, admin_token, customer.token, site_id=1)
        late = health[0].Watch(health_pb2.HealthCheckRequest(), timeout=5)
        assert error_reason(_failure(lambda: next(late))) == "ANONYMOUS_STREAM_LIMIT"
    finally:
        for watch in watches:
            watch.cancel()
    wait_for(lambda: server.app.admission.in_use()["anonymous_streams"] == 0, "the Watch slots to free")
    again = health[0].Watch(health_pb2.HealthCheckRequest(), timeout=5)
    assert next(again).status == SERVING
    again.cancel()
    for channel in hostile:
        channel.close()
    client.close()


def test_one_customer_holding_idle_pushes_is_refused_at_its_own_limit_only(
    make_server, new_customer, admin_token, engine, caplog
):
    caplog.set_level(logging.INFO, logger="fleet_server.access")
    server = make_server(max_calls_per_customer=4)
    acme, bravo = new_customer("ACME"), new_customer("BRAVO")
    client = Stubs.connect(server.target)
    silent = SilentPushes(Stubs.connect(server.target), acme.token, 40)
    try:
        wait_for(lambda: len(silent.refused()) == 36, "36 of ACME's 40 streams to be refused")
        refusals = [call.exception() for call in silent.refused()]
        assert {error.code() for error in refusals} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert {error_reason(error) for error in refusals} == {"CUSTOMER_CALL_LIMIT"}
        assert all(("retry-after-ms", "1000") in error.trailing_metadata() for error in refusals)
        assert server.app.admission.calls_of(acme.id) == 4
        refused_lines = [
            r.getMessage()
            for r in caplog.records
            if r.name == "fleet_server.access" and "status=RESOURCE_EXHAUSTED" in r.getMessage()
        ]
        assert len(refused_lines) == 36
        assert all(" customer=ACME " in line for line in refused_lines)

        everyone_else_is_served(client, admin_token, bravo.token, site_id=2)
    finally:
        silent.release()
    wait_for(lambda: server.app.admission.calls_of(acme.id) == 0, "ACME's slots to free")
    everyone_else_is_served(client, admin_token, acme.token, site_id=3)
    assert [row[0] for row in table_rows(engine, "sites", acme.id)] == [3]
    assert [row[0] for row in table_rows(engine, "sites", bravo.id)] == [2]
    client.close()


def test_customers_filling_their_share_never_refuse_an_operator(make_server, new_customer, admin_token):
    server = make_server(max_calls_per_customer=2, max_customer_calls=4)
    alpha, bravo, charlie = new_customer("ALPHA"), new_customer("BRAVO"), new_customer("CHARLIE")
    client = Stubs.connect(server.target)
    holders = [SilentPushes(client, alpha.token, 2), SilentPushes(client, bravo.token, 2)]
    try:
        wait_for(lambda: server.app.admission.in_use()["customers"] == 4, "the customers' share to fill")

        refused = _failure(
            lambda: client.ingest.PushSites(
                iter([ipb.PushSitesRequest(sites=[site(1)])]), metadata=bearer(charlie.token), timeout=5
            )
        )
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_reason(refused) == "CUSTOMERS_CALL_LIMIT"

        listed = client.admin.ListCustomers(
            admin_service_pb2.ListCustomersRequest(), metadata=bearer(admin_token), timeout=5
        )
        assert {c.code for c in listed.customers} == {"ALPHA", "BRAVO", "CHARLIE"}
        check = health_pb2_grpc.HealthStub(client.channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert check.status == SERVING
    finally:
        for holder in holders:
            holder.release()
    wait_for(lambda: server.app.admission.in_use()["customers"] == 0, "the customers' slots to free")
    client.close()


def _failure(call: Callable[[], object]) -> grpc.RpcError:
    try:
        call()
    except grpc.RpcError as error:
        return error
    raise AssertionError("the call succeeded")
