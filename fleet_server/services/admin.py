"""FleetAdminService: customers and their tokens, wire ⇄ domain."""

from __future__ import annotations

import logging
from datetime import timedelta

from fleet.v1 import admin_service_pb2 as pb
from fleet.v1 import admin_service_pb2_grpc

from fleet_server.app import App
from fleet_server.auth.call_context import CallContext
from fleet_server.domain import customers
from fleet_server.rpc.translate import translate_errors
from fleet_server.services import admin_wire as wire
from fleet_server.services import paging_wire
from fleet_server.services.paging_wire import Listing

_LOGGER = logging.getLogger(__name__)


class FleetAdminServicer(admin_service_pb2_grpc.FleetAdminServiceServicer):
    def __init__(self, app: App) -> None:
        self._app = app

    @translate_errors
    async def CreateCustomer(
        self, request: pb.CreateCustomerRequest, context: CallContext
    ) -> pb.CreateCustomerResponse:
        issued = await self._app.db.run(
            context.turn, customers.create_customer, request.code, request.name, self._app.clock.now()
        )
        _audit(context, "created", issued.customer.code)
        context.add_rows(1)
        return pb.CreateCustomerResponse(customer=wire.customer_message(issued.customer), token=issued.token)

    @translate_errors
    async def ListCustomers(
        self, request: pb.ListCustomersRequest, context: CallContext
    ) -> pb.ListCustomersResponse:
        after = paging_wire.decode_code_token(request.page_token, Listing.CUSTOMERS)
        page = await self._app.db.run(
            context.turn, customers.list_customers, request.page_size, after, self._app.clock.now()
        )
        listed, next_token = paging_wire.encode_page(page, wire.customer_message, _code, Listing.CUSTOMERS)
        context.add_rows(len(listed))
        return pb.ListCustomersResponse(customers=listed, next_page_token=next_token)

    @translate_errors
    async def GetCustomer(
        self, request: pb.GetCustomerRequest, context: CallContext
    ) -> pb.GetCustomerResponse:
        record = await self._app.db.run(
            context.turn, customers.get_customer, request.code, self._app.clock.now()
        )
        context.add_rows(1)
        return pb.GetCustomerResponse(customer=wire.customer_message(record))

    def _credentials_changed(self) -> None:
        """The change committed: this process's next call must see it, before the database's
        notice of it reaches the token cache (other processes wait for that notice)."""
        self._app.token_cache.invalidate()

    @translate_errors
    async def RotateCustomerToken(
        self, request: pb.RotateCustomerTokenRequest, context: CallContext
    ) -> pb.RotateCustomerTokenResponse:
        grace = wire.requested_grace(request)
        issued = await self._app.db.run(
            context.turn,
            customers.rotate_token,
            request.code,
            grace,
            timedelta(seconds=self._app.settings.token_grace_s),
            self._app.clock.now(),
        )
        self._credentials_changed()
        expires = issued.customer.previous_token_expires_at
        window = f"old token valid until {expires.isoformat()}" if expires else "immediate cutover"
        _audit(context, "rotated the token of", issued.customer.code, f" ({window})")
        context.add_rows(1)
        return pb.RotateCustomerTokenResponse(
            customer=wire.customer_message(issued.customer), token=issued.token
        )

    @translate_errors
    async def ActivateCustomer(
        self, request: pb.ActivateCustomerRequest, context: CallContext
    ) -> pb.ActivateCustomerResponse:
        record = await self._app.db.run(
            context.turn, customers.set_active, request.code, True, self._app.clock.now()
        )
        self._credentials_changed()
        _audit(context, "activated", record.code)
        context.add_rows(1)
        return pb.ActivateCustomerResponse(customer=wire.customer_message(record))

    @translate_errors
    async def DeactivateCustomer(
        self, request: pb.DeactivateCustomerRequest, context: CallContext
    ) -> pb.DeactivateCustomerResponse:
        record = await self._app.db.run(
            context.turn, customers.set_active, request.code, False, self._app.clock.now()
        )
        self._credentials_changed()
        _audit(context, "deactivated", record.code)
        context.add_rows(1)
        return pb.DeactivateCustomerResponse(customer=wire.customer_message(record))

    @translate_errors
    async def DeleteCustomer(
        self, request: pb.DeleteCustomerRequest, context: CallContext
    ) -> pb.DeleteCustomerResponse:
        counts = await self._app.db.run(context.turn, customers.delete_customer, request.code)
        self._credentials_changed()
        _audit(context, "erased", request.code, f" ({_summary(counts)})")
        context.add_rows(sum(counts.values()))
        return wire.deleted_rows_message(counts)


def _code(record: customers.CustomerRecord) -> str:
    return record.code


def _audit(context: CallContext, action: str, code: str, detail: str = "") -> None:
    """One line per change, naming the operator's token (never a token): the audit trail."""
    _LOGGER.info("admin %s %s customer %s%s", context.admin().name, action, code, detail)


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{table}={rows}" for table, rows in counts.items())
