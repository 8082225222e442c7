"""FleetAdminService: customers and their tokens, wire ⇄ domain."""

from __future__ import annotations

import logging

from fleet.v1 import admin_service_pb2 as pb
from fleet.v1 import admin_service_pb2_grpc

from fleet_server.app import App
from fleet_server.auth.identity import CallContext
from fleet_server.errors import Unimplemented
from fleet_server.services.status import translate_errors

_LOGGER = logging.getLogger(__name__)


class FleetAdminServicer(admin_service_pb2_grpc.FleetAdminServiceServicer):
    def __init__(self, app: App) -> None:
        self._app = app

    @translate_errors
    async def CreateCustomer(
        self, request: pb.CreateCustomerRequest, context: CallContext
    ) -> pb.CreateCustomerResponse:
        raise Unimplemented("CreateCustomer is not available on this server yet")

    @translate_errors
    async def ListCustomers(
        self, request: pb.ListCustomersRequest, context: CallContext
    ) -> pb.ListCustomersResponse:
        raise Unimplemented("ListCustomers is not available on this server yet")

    @translate_errors
    async def GetCustomer(
        self, request: pb.GetCustomerRequest, context: CallContext
    ) -> pb.GetCustomerResponse:
        raise Unimplemented("GetCustomer is not available on this server yet")

    @translate_errors
    async def RotateCustomerToken(
        self, request: pb.RotateCustomerTokenRequest, context: CallContext
    ) -> pb.RotateCustomerTokenResponse:
        raise Unimplemented("RotateCustomerToken is not available on this server yet")

    @translate_errors
    async def ActivateCustomer(
        self, request: pb.ActivateCustomerRequest, context: CallContext
    ) -> pb.ActivateCustomerResponse:
        raise Unimplemented("ActivateCustomer is not available on this server yet")

    @translate_errors
    async def DeactivateCustomer(
        self, request: pb.DeactivateCustomerRequest, context: CallContext
    ) -> pb.DeactivateCustomerResponse:
        raise Unimplemented("DeactivateCustomer is not available on this server yet")

    @translate_errors
    async def DeleteCustomer(
        self, request: pb.DeleteCustomerRequest, context: CallContext
    ) -> pb.DeleteCustomerResponse:
        raise Unimplemented("DeleteCustomer is not available on this server yet")
