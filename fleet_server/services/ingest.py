"""FleetIngestService: customer pushes, wire ⇄ domain."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from fleet.v1 import ingest_service_pb2 as pb
from fleet.v1 import ingest_service_pb2_grpc

from fleet_server.app import App
from fleet_server.auth.identity import CallContext
from fleet_server.domain import reference
from fleet_server.errors import Unimplemented
from fleet_server.services import reference_wire
from fleet_server.services.status import translate_errors

_LOGGER = logging.getLogger(__name__)


class FleetIngestServicer(ingest_service_pb2_grpc.FleetIngestServiceServicer):
    def __init__(self, app: App) -> None:
        self._app = app

    @translate_errors
    async def PushSites(
        self, request_iterator: AsyncIterator[pb.PushSitesRequest], context: CallContext
    ) -> pb.PushSitesResponse:
        customer = context.customer()
        limit = self._app.settings.max_snapshot_rows
        snapshot = await reference_wire.site_snapshot(request_iterator, limit)
        context.add_rows(len(snapshot))
        summary = await self._app.db.run(
            reference.apply_sites, customer.customer_id, snapshot, self._app.clock.now()
        )
        return pb.PushSitesResponse(summary=reference_wire.summary_message(summary))

    @translate_errors
    async def PushDevices(
        self, request_iterator: AsyncIterator[pb.PushDevicesRequest], context: CallContext
    ) -> pb.PushDevicesResponse:
        customer = context.customer()
        limit = self._app.settings.max_snapshot_rows
        snapshot = await reference_wire.device_snapshot(request_iterator, limit)
        context.add_rows(len(snapshot))
        summary = await self._app.db.run(
            reference.apply_devices, customer.customer_id, snapshot, self._app.clock.now()
        )
        return pb.PushDevicesResponse(summary=reference_wire.summary_message(summary))

    @translate_errors
    async def PushMunicipalities(
        self, request_iterator: AsyncIterator[pb.PushMunicipalitiesRequest], context: CallContext
    ) -> pb.PushMunicipalitiesResponse:
        customer = context.customer()
        limit = self._app.settings.max_snapshot_rows
        snapshot = await reference_wire.municipality_snapshot(request_iterator, limit)
        context.add_rows(len(snapshot))
        summary = await self._app.db.run(
            reference.apply_municipalities, customer.customer_id, snapshot, self._app.clock.now()
        )
        return pb.PushMunicipalitiesResponse(summary=reference_wire.summary_message(summary))

    @translate_errors
    async def PushTariffs(
        self, request_iterator: AsyncIterator[pb.PushTariffsRequest], context: CallContext
    ) -> pb.PushTariffsResponse:
        customer = context.customer()
        limit = self._app.settings.max_snapshot_rows
        snapshot = await reference_wire.tariff_snapshot(request_iterator, limit)
        context.add_rows(len(snapshot))
        summary = await self._app.db.run(
            reference.apply_tariffs, customer.customer_id, snapshot, self._app.clock.now()
        )
        return pb.PushTariffsResponse(
            summary=reference_wire.summary_message(summary), periods_written=summary.periods_written
        )

    @translate_errors
    async def PushMeasurements(
        self, request_iterator: AsyncIterator[pb.PushMeasurementsRequest], context: CallContext
    ) -> AsyncIterator[pb.PushMeasurementsResponse]:
        raise Unimplemented("PushMeasurements is not available on this server yet")
        yield  # type: ignore[unreachable]  # makes this an async generator (bidi shape)
