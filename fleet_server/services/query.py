"""FleetQueryService: operator reads across customers, wire ⇄ domain."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from fleet.v1 import query_service_pb2 as pb
from fleet.v1 import query_service_pb2_grpc

from fleet_server.app import App
from fleet_server.auth.identity import CallContext
from fleet_server.domain import customers, measurement_queries
from fleet_server.domain.costs import compute_costs
from fleet_server.domain.detail import load_customer_detail
from fleet_server.rpc.translate import translate_errors
from fleet_server.services import cost_wire, measurement_wire
from fleet_server.services.reference_wire import detail_message

_LOGGER = logging.getLogger(__name__)


class FleetQueryServicer(query_service_pb2_grpc.FleetQueryServiceServicer):
    def __init__(self, app: App) -> None:
        self._app = app

    @translate_errors
    async def GetCustomerDetail(
        self, request: pb.GetCustomerDetailRequest, context: CallContext
    ) -> pb.GetCustomerDetailResponse:
        context.admin()
        detail = await self._app.reader.run(load_customer_detail, request.code, self._app.clock.now())
        return detail_message(detail)

    @translate_errors
    async def QueryMeasurements(
        self, request: pb.QueryMeasurementsRequest, context: CallContext
    ) -> AsyncIterator[pb.QueryMeasurementsResponse]:
        context.admin()
        reader = self._app.reader
        code, args = measurement_wire.decode_query(request)
        customer_id = await reader.run(customers.customer_id_for, code)
        cursor = measurement_queries.PointCursor(reader, args.for_customer(customer_id))
        try:
            await reader.offload(cursor.open)
            while points := await reader.offload(cursor.fetch, measurement_wire.POINTS_PER_CHUNK):
                context.add_rows(len(points))
                yield measurement_wire.points_response(points)
        finally:
            await reader.offload(cursor.close)

    @translate_errors
    async def SummarizeFleet(
        self, request: pb.SummarizeFleetRequest, context: CallContext
    ) -> pb.SummarizeFleetResponse:
        context.admin()
        metric, start, end = measurement_wire.decode_summary(request)
        summaries = await self._app.reader.run(measurement_queries.summarize_fleet, metric, start, end)
        context.add_rows(len(summaries))
        return measurement_wire.summary_response(summaries)

    @translate_errors
    async def ComputeCosts(
        self, request: pb.ComputeCostsRequest, context: CallContext
    ) -> pb.ComputeCostsResponse:
        context.admin()
        report = await self._app.reader.run(
            compute_costs, cost_wire.to_query(request), self._app.settings.max_cost_span_days
        )
        context.add_rows(report.readings)
        return cost_wire.to_response(report)
