"""The serving skeleton: health, auth on every fleet service, rich errors."""

from __future__ import annotations

import grpc
import pytest
from fleet.v1 import admin_service_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fleet_server.app import App
from tests.support.clients import Stubs, bearer, error_reason
from tests.support.inprocess import InProcessServer


def test_health_serving_overall_and_per_service(server, stubs):
    health = health_pb2_grpc.HealthStub(stubs.channel)
    for service in ("", "fleet.v1.FleetIngestService", "fleet.v1.FleetAdminService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_admin_call_without_token_is_unauthenticated(stubs):
    with pytest.raises(grpc.RpcError) as err:
        stubs.admin.GetCustomer(admin_service_pb2.GetCustomerRequest(code="X"), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "missing authorization" in err.value.details()
    assert error_reason(err.value) == "TOKEN_MISSING"


def test_customer_token_on_admin_service_is_permission_denied(stubs, new_customer):
    customer = new_customer("ACME")
    with pytest.raises(grpc.RpcError) as err:
        stubs.admin.GetCustomer(
            admin_service_pb2.GetCustomerRequest(code="ACME"),
            metadata=bearer(customer.token),
            timeout=5,
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Refused by the interceptor, before any handler, with the same rich status as other errors.
    assert error_reason(err.value) == "PERMISSION_DENIED"


class _BrokenTokenStore:
    async def authenticate(self, token: str):
        raise OSError("database connection refused")


def test_failing_token_lookup_is_unavailable_without_internals(settings, db):
    app = App(settings=settings, db=db, tokens=_BrokenTokenStore())
    server = InProcessServer(app).start()
    client = Stubs.connect(server.target)
    try:
        with pytest.raises(grpc.RpcError) as err:
            client.admin.GetCustomer(
                admin_service_pb2.GetCustomerRequest(code="ACME"), metadata=bearer("fleetadm_x"), timeout=5
            )
    finally:
        client.close()
        server.stop()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert err.value.details() == "authentication is unavailable"
    assert error_reason(err.value) == "AUTH_UNAVAILABLE"
