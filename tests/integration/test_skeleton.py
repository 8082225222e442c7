"""The serving skeleton: health, auth on every fleet service, rich errors."""

from __future__ import annotations

import grpc
import pytest
from fleet.v1 import admin_service_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.clients import bearer, error_reason


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


def test_customer_token_on_admin_service_is_permission_denied(stubs, new_customer):
    customer = new_customer("ACME")
    with pytest.raises(grpc.RpcError) as err:
        stubs.admin.GetCustomer(
            admin_service_pb2.GetCustomerRequest(code="ACME"),
            metadata=bearer(customer.token),
            timeout=5,
        )
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(err.value) is None  # refused by the interceptor, before any handler
