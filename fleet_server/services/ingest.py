"""FleetIngestService: customer pushes, wire ⇄ domain."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from fleet.v1 import ingest_service_pb2 as pb
from fleet.v1 import ingest_service_pb2_grpc

from fleet_server.app import App
from fleet_server.auth.identity import CallContext
from fleet_server.errors import Unimplemented
from fleet_server.services.status import translate_errors

_LOGGER = logging.getLogger(__name__)


class FleetIngestServicer(ingest_service_pb2_grpc.FleetIngestServiceServicer):
    def __init__(self, app: App) -> None:
        self._app = app

    @translate_errors
    async def PushSites(
        self, request_iterator: AsyncIterator[pb.PushSitesRequest], context: CallContext
    ) -> pb.PushSitesResponse:
        raise Unimplemented("PushSites is not available on this server yet")

    @translate_errors
    async def PushDevices(
        self, request_iterator: AsyncIterator[pb.PushDevicesRequest], context: CallContext
    ) -> pb.PushDevicesResponse:
        raise Unimplemented("PushDevices is not available on this server yet")

    @translate_errors
    async def PushMunicipalities(
        self, request_iterator: AsyncIterator[pb.PushMunicipalitiesRequest], context: CallContext
    ) -> pb.PushMunicipalitiesResponse:
        raise Unimplemented("PushMunicipalities is not available on this server yet")

    @translate_errors
    async def PushTariffs(
        self, request_iterator: AsyncIterator[pb.PushTariffsRequest], context: CallContext
    ) -> pb.PushTariffsResponse:
        raise Unimplemented("PushTariffs is not available on this server yet")

    @translate_errors
    async def PushMeasurements(
        self, request_iterator: AsyncIterator[pb.PushMeasurementsRequest], context: CallContext
    ) -> AsyncIterator[pb.PushMeasurementsResponse]:
        raise Unimplemented("PushMeasurements is not available on this server yet")
        yield  # type: ignore[unreachable]  # makes this an async generator (bidi shape)
