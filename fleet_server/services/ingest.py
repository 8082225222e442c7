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
from fleet_server.services.snapshot_stream import SnapshotStream
from fleet_server.services.status import translate_errors

_LOGGER = logging.getLogger(__name__)


class FleetIngestServicer(ingest_service_pb2_grpc.FleetIngestServiceServicer):
    def __init__(self, app: App) -> None:
        self._app = app

    @translate_errors
    async def PushSites(
        self, request_iterator: AsyncIterator[pb.PushSitesRequest], context: CallContext
    ) -> pb.PushSitesResponse:
        customer_id = context.customer().customer_id
        stream = SnapshotStream(context, self._app.settings.max_snapshot_rows)
        snapshot = await stream.sites(request_iterator)
        context.add_rows(len(snapshot))
        now = self._app.clock.now()
        summary = await self._app.db.run(
            reference.apply_sites, customer_id, snapshot, now, stream.confirm_open
        )
        return pb.PushSitesResponse(summary=reference_wire.summary_message(summary))

    @translate_errors
    async def PushDevices(
        self, request_iterator: AsyncIterator[pb.PushDevicesRequest], context: CallContext
    ) -> pb.PushDevicesResponse:
        customer_id = context.customer().customer_id
        stream = SnapshotStream(context, self._app.settings.max_snapshot_rows)
        snapshot = await stream.devices(request_iterator)
        context.add_rows(len(snapshot))
        now = self._app.clock.now()
        summary = await self._app.db.run(
            reference.apply_devices, customer_id, snapshot, now, stream.confirm_open
        )
        return pb.PushDevicesResponse(summary=reference_wire.summary_message(summary))

    @translate_errors
    async def PushMunicipalities(
        self, request_iterator: AsyncIterator[pb.PushMunicipalitiesRequest], context: CallContext
    ) -> pb.PushMunicipalitiesResponse:
        customer_id = context.customer().customer_id
        stream = SnapshotStream(context, self._app.settings.max_snapshot_rows)
        snapshot = await stream.municipalities(request_iterator)
        context.add_rows(len(snapshot))
        now = self._app.clock.now()
        summary = await self._app.db.run(
            reference.apply_municipalities, customer_id, snapshot, now, stream.confirm_open
        )
        return pb.PushMunicipalitiesResponse(summary=reference_wire.summary_message(summary))

    @translate_errors
    async def PushTariffs(
        self, request_iterator: AsyncIterator[pb.PushTariffsRequest], context: CallContext
    ) -> pb.PushTariffsResponse:
        customer_id = context.customer().customer_id
        stream = SnapshotStream(context, self._app.settings.max_snapshot_rows)
        snapshot = await stream.tariffs(request_iterator)
        context.add_rows(len(snapshot))
        now = self._app.clock.now()
        summary = await self._app.db.run(
            reference.apply_tariffs, customer_id, snapshot, now, stream.confirm_open
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
