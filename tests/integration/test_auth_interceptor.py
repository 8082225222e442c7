"""The interceptor itself, in front of recording servicers: refused calls never reach a handler.

The servicers here count every request message they pull and keep every context they get, so
"no request message was consumed" is observed on the server side, where it happens. Tokens are
resolved by the real `SqlTokenStore` against the test database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
import pytest
from fleet.v1 import admin_service_pb2, ingest_service_pb2, ingest_service_pb2_grpc, query_service_pb2

from fleet_server.auth.call_context import CallContext
from fleet_server.auth.interceptor import AuthInterceptor
from fleet_server.auth.policy import POLICY, Requirement, requirement_for
from fleet_server.clock import SystemClock
from fleet_server.config import Settings
from fleet_server.domain.authentication import CustomerIdentity, SqlTokenStore
from fleet_server.rpc.admission import Admission, Limits
from tests.support.clients import bearer


class RecordingIngest(ingest_service_pb2_grpc.FleetIngestServiceServicer):
    def __init__(self) -> None:
        self.pulled = 0
        self.contexts: list[Any] = []

    async def PushSites(self, request_iterator: AsyncIterator[Any], context: Any) -> Any:
        self.contexts.append(context)
        async for _ in request_iterator:
            self.pulled += 1
        return ingest_service_pb2.PushSitesResponse()

    async def PushMeasurements(
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[Any]:
        self.contexts.append(context)
        async for request in request_iterator:
            self.pulled += 1
            yield ingest_service_pb2.PushMeasurementsResponse(batch_id=request.batch_id)


def _serve(
    db, scenario: Callable[[str, grpc.aio.Channel, RecordingIngest], Awaitable[None]]
) -> RecordingIngest:
    """Run `scenario` against an aio server with the real interceptor and a recording servicer."""
    servicer = RecordingIngest()

    async def main() -> None:
        clock = SystemClock()
        admission = Admission(Limits.from_settings(Settings()), clock)
        interceptor = AuthInterceptor(SqlTokenStore(db, clock), admission, stream_idle_s=60.0)
        server = grpc.aio.server(interceptors=[interceptor])
        ingest_service_pb2_grpc.add_FleetIngestServiceServicer_to_server(servicer, server)
        server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    "test.Unlisted", {"Call": grpc.unary_unary_rpc_method_handler(_echo)}
                )
            ]
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            target = f"127.0.0.1:{port}"
            async with grpc.aio.insecure_channel(target) as channel:
                await scenario(target, channel, servicer)
        finally:
            await server.stop(0)

    asyncio.run(main())
    return servicer


async def _echo(request: bytes, context: Any) -> bytes:
    return request


def _requests(count: int) -> list[Any]:
    return [ingest_service_pb2.PushMeasurementsRequest(batch_id=i) for i in range(1, count + 1)]


@pytest.mark.parametrize("credential", ["none", "unknown", "admin"])
def test_a_refused_stream_never_reaches_the_handler_nor_pulls_a_message(db, admin_token, credential):
    metadata = {"none": (), "unknown": bearer("fleet_nope"), "admin": bearer(admin_token)}[credential]
    expected = grpc.StatusCode.PERMISSION_DENIED if credential == "admin" else grpc.StatusCode.UNAUTHENTICATED

    def push_both(target: str) -> list[grpc.StatusCode]:
        # The sync client: it reports the server's status even when its writes race the refusal.
        codes = []
        with grpc.insecure_channel(target) as channel:
            stub = ingest_service_pb2_grpc.FleetIngestServiceStub(channel)
            try:
                list(stub.PushMeasurements(iter(_requests(3)), metadata=metadata, timeout=10))
            except grpc.RpcError as err:
                codes.append(err.code())
            sites = [ingest_service_pb2.PushSitesRequest() for _ in range(3)]
            try:
                stub.PushSites(iter(sites), metadata=metadata, timeout=10)
            except grpc.RpcError as err:
                codes.append(err.code())
        return codes

    async def scenario(target: str, channel: grpc.aio.Channel, servicer: RecordingIngest) -> None:
        assert await asyncio.to_thread(push_both, target) == [expected, expected]

    servicer = _serve(db, scenario)
    assert servicer.contexts == []
    assert servicer.pulled == 0


def test_an_aio_client_can_wait_for_the_verdict_before_its_first_write(db, new_customer):
    """Accepted request streams get initial metadata at once; refused ones end with a status."""
    customer = new_customer("ACME")

    async def scenario(target: str, channel: grpc.aio.Channel, servicer: RecordingIngest) -> None:
        stub = ingest_service_pb2_grpc.FleetIngestServiceStub(channel)
        refused = stub.PushMeasurements(metadata=bearer("fleet_nope"), timeout=10)
        await asyncio.wait_for(refused.initial_metadata(), 5)
        assert await refused.code() == grpc.StatusCode.UNAUTHENTICATED

        accepted = stub.PushMeasurements(metadata=bearer(customer.token), timeout=10)
        await asyncio.wait_for(accepted.initial_metadata(), 5)  # nothing written yet
        assert not accepted.done()
        await accepted.write(ingest_service_pb2.PushMeasurementsRequest(batch_id=7))
        assert (await accepted.read()).batch_id == 7
        await accepted.done_writing()
        assert await accepted.code() == grpc.StatusCode.OK

    servicer = _serve(db, scenario)
    assert servicer.pulled == 1


def test_an_accepted_stream_gets_the_identity_from_the_token(db, new_customer):
    customer = new_customer("ACME")

    async def scenario(target: str, channel: grpc.aio.Channel, servicer: RecordingIngest) -> None:
        stub = ingest_service_pb2_grpc.FleetIngestServiceStub(channel)
        acks = [
            r.batch_id
            async for r in stub.PushMeasurements(iter(_requests(3)), metadata=bearer(customer.token))
        ]
        assert acks == [1, 2, 3]

    servicer = _serve(db, scenario)
    assert servicer.pulled == 3
    (context,) = servicer.contexts
    assert isinstance(context, CallContext)
    assert context.customer() == CustomerIdentity(customer_id=customer.id, code="ACME")


def test_a_method_missing_from_the_policy_is_denied_even_with_a_valid_token(db, admin_token):
    async def scenario(target: str, channel: grpc.aio.Channel, servicer: RecordingIngest) -> None:
        call = channel.unary_unary("/test.Unlisted/Call")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(b"hello", metadata=bearer(admin_token), timeout=10)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert err.value.details() == "/test.Unlisted/Call is not open to any caller"

    _serve(db, scenario)


def test_every_fleet_rpc_has_a_rule_and_only_health_and_reflection_are_public():
    services = [
        (ingest_service_pb2, "FleetIngestService", Requirement.CUSTOMER),
        (admin_service_pb2, "FleetAdminService", Requirement.ADMIN),
        (query_service_pb2, "FleetQueryService", Requirement.ADMIN),
    ]
    for module, name, requirement in services:
        service = module.DESCRIPTOR.services_by_name[name]
        assert service.methods
        for method in service.methods:
            assert requirement_for(f"/{service.full_name}/{method.name}") is requirement
    public = {m for m, r in POLICY.items() if r is Requirement.PUBLIC}
    assert all(m.startswith(("/grpc.health.v1.", "/grpc.reflection.")) for m in public)
    assert requirement_for("/fleet.v1.FleetAdminService/NoSuchMethod") is None
