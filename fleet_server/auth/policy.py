"""Which kind of credential each method needs; a method not listed here is denied.

The table is built from the generated descriptors, so an RPC added to a service inherits its
service's rule, and a service added to the server without a rule is unreachable until one is
written here.
"""

from __future__ import annotations

from enum import Enum

from fleet.v1 import admin_service_pb2, ingest_service_pb2, query_service_pb2
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2


class Requirement(Enum):
    PUBLIC = "public"
    CUSTOMER = "customer token"
    ADMIN = "admin token"


def _methods(service: ServiceDescriptor) -> list[str]:
    return [f"/{service.full_name}/{m.name}" for m in service.methods]


def _build() -> dict[str, Requirement]:
    table: dict[str, Requirement] = {}
    rules = [
        (
            ingest_service_pb2.DESCRIPTOR.services_by_name["FleetIngestService"],
            Requirement.CUSTOMER,
        ),
        (admin_service_pb2.DESCRIPTOR.services_by_name["FleetAdminService"], Requirement.ADMIN),
        (query_service_pb2.DESCRIPTOR.services_by_name["FleetQueryService"], Requirement.ADMIN),
        (health_pb2.DESCRIPTOR.services_by_name["Health"], Requirement.PUBLIC),
        (
            reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
            Requirement.PUBLIC,
        ),
    ]
    for service, requirement in rules:
        for method in _methods(service):
            table[method] = requirement
    # The v1 reflection service has the same shape; buf curl asks for it first.
    table["/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"] = Requirement.PUBLIC
    return table


POLICY: dict[str, Requirement] = _build()


def requirement_for(method: str) -> Requirement | None:
    """The rule for a full method name (`/fleet.v1.FleetAdminService/GetCustomer`); None = denied."""
    return POLICY.get(method)
