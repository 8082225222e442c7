"""FleetQueryService: operator reads across customers; each method decodes, calls one use case, encodes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fleet.v1 import query_service_pb2 as pb
from fleet.v1 import query_service_pb2_grpc

from fleet_server.app import App
from fleet_server.auth.call_context import CallContext
from fleet_server.domain import fleet_health, listings, measurement_queries, storage
from fleet_server.domain.costs import compute_costs
from fleet_server.domain.detail import load_customer_detail
from fleet_server.rpc.translate import translate_errors
from fleet_server.services import cost_wire, health_wire, query_wire, storage_wire
from fleet_server.services.paging_wire import Listing, decode_id_token


class FleetQueryServicer(query_service_pb2_grpc.FleetQueryServiceServicer):
    def __init__(self, app: App) -> None:
        self._app = app

    @translate_errors
    async def GetCustomerDetail(
        self, request: pb.GetCustomerDetailRequest, context: CallContext
    ) -> pb.GetCustomerDetailResponse:
        context.admin()
        detail = await self._app.reader.run(
            context.turn, load_customer_detail, request.code, self._app.clock.now()
        )
        return query_wire.detail_message(detail)

    @translate_errors
    async def ListSites(self, request: pb.ListSitesRequest, context: CallContext) -> pb.ListSitesResponse:
        context.admin()
        after = decode_id_token(request.page_token, Listing.SITES, request.code)
        page = await self._app.reader.run(
            context.turn, listings.list_sites, request.code, request.page_size, after
        )
        response = query_wire.sites_response(request.code, page)
        context.add_rows(len(response.sites))
        return response

    @translate_errors
    async def ListDevices(
        self, request: pb.ListDevicesRequest, context: CallContext
    ) -> pb.ListDevicesResponse:
        context.admin()
        after = decode_id_token(request.page_token, Listing.DEVICES, request.code)
        page = await self._app.reader.run(
            context.turn, listings.list_devices, request.code, request.page_size, after
        )
        response = query_wire.devices_response(request.code, page)
        context.add_rows(len(response.devices))
        return response

    @translate_errors
    async def ListMunicipalities(
        self, request: pb.ListMunicipalitiesRequest, context: CallContext
    ) -> pb.ListMunicipalitiesResponse:
        context.admin()
        after = decode_id_token(request.page_token, Listing.MUNICIPALITIES, request.code)
        page = await self._app.reader.run(
            context.turn, listings.list_municipalities, request.code, request.page_size, after
        )
        response = query_wire.municipalities_response(request.code, page)
        context.add_rows(len(response.municipalities))
        return response

    @translate_errors
    async def ListTariffs(
        self, request: pb.ListTariffsRequest, context: CallContext
    ) -> pb.ListTariffsResponse:
        context.admin()
        after = decode_id_token(request.page_token, Listing.TARIFFS, request.code)
        page = await self._app.reader.run(
            context.turn, listings.list_tariffs, request.code, request.page_size, after
        )
        response = query_wire.tariffs_response(request.code, page)
        context.add_rows(len(response.tariffs))
        return response

    @translate_errors
    async def QueryMeasurements(
        self, request: pb.QueryMeasurementsRequest, context: CallContext
    ) -> AsyncIterator[pb.QueryMeasurementsResponse]:
        context.admin()
        chunks = measurement_queries.stream_points(
            self._app.reader, context.turn, query_wire.points_request(request), query_wire.POINTS_PER_CHUNK
        )
        async with contextlib.aclosing(chunks):
            async for points in chunks:
                context.add_rows(len(points))
                yield query_wire.points_response(points)

    @translate_errors
    async def SummarizeFleet(
        self, request: pb.SummarizeFleetRequest, context: CallContext
    ) -> pb.SummarizeFleetResponse:
        context.admin()
        summaries = await measurement_queries.summarize(
            self._app.reader, context.turn, query_wire.summary_request(request)
        )
        context.add_rows(len(summaries))
        return query_wire.summary_response(summaries)

    @translate_errors
    async def ComputeCosts(
        self, request: pb.ComputeCostsRequest, context: CallContext
    ) -> pb.ComputeCostsResponse:
        context.admin()
        settings = self._app.settings
        report = await self._app.reader.run(
            context.turn,
            compute_costs,
            cost_wire.to_query(request),
            settings.max_cost_span_days,
            settings.cost_statement_timeout_s,
        )
        context.add_rows(report.readings)
        return cost_wire.to_response(report)

    @translate_errors
    async def GetFleetHealth(
        self, request: pb.GetFleetHealthRequest, context: CallContext
    ) -> pb.GetFleetHealthResponse:
        context.admin()
        health = await self._app.reader.run(
            context.turn, fleet_health.fleet_health, health_wire.health_query(request), self._app.clock.now()
        )
        context.add_rows(len(health.customers.items))
        return health_wire.health_response(health)

    @translate_errors
    async def ListSilentDevices(
        self, request: pb.ListSilentDevicesRequest, context: CallContext
    ) -> pb.ListSilentDevicesResponse:
        context.admin()
        after = decode_id_token(request.page_token, Listing.SILENT_DEVICES, request.code)
        page = await self._app.reader.run(
            context.turn,
            fleet_health.list_silent_devices,
            request.code,
            health_wire.window(request, "silent_after"),
            request.page_size,
            after,
            self._app.clock.now(),
        )
        response = health_wire.silent_devices_response(request.code, page)
        context.add_rows(len(response.devices))
        return response

    @translate_errors
    async def GetFleetStorage(
        self, request: pb.GetFleetStorageRequest, context: CallContext
    ) -> pb.GetFleetStorageResponse:
        context.admin()
        after = storage_wire.after_code(request)
        report = await self._app.reader.run(
            context.turn,
            storage.fleet_storage,
            request.code,
            request.page_size,
            after,
            self._app.clock.now(),
        )
        context.add_rows(len(report.customers.items))
        return storage_wire.storage_response(report)
