"""FleetIngestService: customer pushes, wire ⇄ domain."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from fleet.v1 import ingest_service_pb2 as pb
from fleet.v1 import ingest_service_pb2_grpc

from fleet_server.app import App
from fleet_server.auth.identity import CallContext
from fleet_server.domain import fairness, measurements, reference
from fleet_server.domain.measurements import BatchResult
from fleet_server.domain.reference import SyncSummary
from fleet_server.services import measurement_stream, measurement_wire, reference_wire
from fleet_server.services.snapshot_stream import SnapshotStream
from fleet_server.services.status import translate_errors

_LOGGER = logging.getLogger(__name__)


class FleetIngestServicer(ingest_service_pb2_grpc.FleetIngestServiceServicer):
    def __init__(self, app: App) -> None:
        self._app = app

    async def _push_snapshot(
        self,
        context: CallContext,
        read: Callable[[SnapshotStream], Awaitable[Sequence[Any]]],
        apply: Callable[..., SyncSummary],
    ) -> SyncSummary:
        """The one shape of every reference push: the whole stream read first, then applied as
        the authenticated customer's snapshot in one transaction that commits only while the
        call still lives (see `SnapshotStream`)."""
        customer_id = context.customer().customer_id
        stream = SnapshotStream(context, self._app.settings.max_snapshot_rows)
        snapshot = await read(stream)
        context.add_rows(len(snapshot))
        now = self._app.clock.now()
        return await self._app.db.run(apply, customer_id, snapshot, now, stream.confirm_open)

    @translate_errors
    async def PushSites(
        self, request_iterator: AsyncIterator[pb.PushSitesRequest], context: CallContext
    ) -> pb.PushSitesResponse:
        summary = await self._push_snapshot(
            context, lambda stream: stream.sites(request_iterator), reference.apply_sites
        )
        return pb.PushSitesResponse(summary=reference_wire.summary_message(summary))

    @translate_errors
    async def PushDevices(
        self, request_iterator: AsyncIterator[pb.PushDevicesRequest], context: CallContext
    ) -> pb.PushDevicesResponse:
        summary = await self._push_snapshot(
            context, lambda stream: stream.devices(request_iterator), reference.apply_devices
        )
        return pb.PushDevicesResponse(summary=reference_wire.summary_message(summary))

    @translate_errors
    async def PushMunicipalities(
        self, request_iterator: AsyncIterator[pb.PushMunicipalitiesRequest], context: CallContext
    ) -> pb.PushMunicipalitiesResponse:
        summary = await self._push_snapshot(
            context, lambda stream: stream.municipalities(request_iterator), reference.apply_municipalities
        )
        return pb.PushMunicipalitiesResponse(summary=reference_wire.summary_message(summary))

    @translate_errors
    async def PushTariffs(
        self, request_iterator: AsyncIterator[pb.PushTariffsRequest], context: CallContext
    ) -> pb.PushTariffsResponse:
        summary = await self._push_snapshot(
            context, lambda stream: stream.tariffs(request_iterator), reference.apply_tariffs
        )
        return pb.PushTariffsResponse(
            summary=reference_wire.summary_message(summary), periods_written=summary.periods_written
        )

    @translate_errors
    async def PushMeasurements(
        self, request_iterator: AsyncIterator[pb.PushMeasurementsRequest], context: CallContext
    ) -> AsyncIterator[pb.PushMeasurementsResponse]:
        """Each request is one batch: validated, committed on its own, acknowledged in order.

        While batch N is in the database, the next batch is read, decoded and validated, so this
        process's Python work overlaps PostgreSQL's; a write queue starts N+1 the moment N
        committed (never if N failed), and N's acknowledgement goes out at once. A bad or
        over-budget batch is refused after the acknowledgements of the batches before it.
        """
        app = self._app
        customer_id = context.customer().customer_id
        gate = fairness.gate_for(app.db, app.settings, app.clock)
        async with gate.exclusive_stream(app.db, customer_id):
            writes = measurement_stream.OrderedWrites(app.db, customer_id)

            async def release_connections() -> None:
                await app.db.offload(writes.release)

            def accept(request: pb.PushMeasurementsRequest) -> asyncio.Future[BatchResult]:
                batch = measurement_wire.decode_batch(request)
                now = app.clock.now()
                measurements.validate_batch(batch, now)
                gate.budget.admit(customer_id, len(batch))
                context.add_rows(len(batch))
                return writes.submit(batch, now)

            try:
                async for request, result in measurement_stream.pipelined(
                    request_iterator, accept, release_connections
                ):
                    yield measurement_wire.ack(request, result)
            finally:
                # Shielded like the stream lock's release: a cancelled call must not keep its connection.
                await asyncio.shield(app.db.offload(writes.release))
