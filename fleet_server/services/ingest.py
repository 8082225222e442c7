"""FleetIngestService: customer pushes; each method decodes, calls one use case, encodes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from fleet.v1 import ingest_service_pb2 as pb
from fleet.v1 import ingest_service_pb2_grpc

from fleet_server.app import App
from fleet_server.auth.call_context import CallContext
from fleet_server.domain import reference
from fleet_server.domain.reference import SyncSummary
from fleet_server.rpc.translate import translate_errors
from fleet_server.services import decode_helper, ingest_wire, measurement_stream
from fleet_server.services.snapshot_stream import SnapshotStream
from fleet_server.store.measurements import BatchResult


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
        call still lives (see `SnapshotStream`) and its token is still valid."""
        customer = context.customer()
        settings = self._app.settings
        with SnapshotStream(
            context,
            max_rows=settings.max_snapshot_rows,
            max_bytes=settings.max_snapshot_bytes,
            memory=self._app.snapshot_memory,
            customer_id=customer.customer_id,
        ) as stream:
            snapshot = await read(stream)
            context.add_rows(len(snapshot))
            now = self._app.clock.now()
            turn = context.turn.for_rows(len(snapshot))
            return await self._app.db.run(
                turn,
                apply,
                customer.customer_id,
                snapshot,
                now,
                stream.confirm_open,
                token_hash=customer.token_hash,
            )

    @translate_errors
    async def PushSites(
        self, request_iterator: AsyncIterator[pb.PushSitesRequest], context: CallContext
    ) -> pb.PushSitesResponse:
        summary = await self._push_snapshot(
            context, lambda stream: stream.sites(request_iterator), reference.apply_sites
        )
        return pb.PushSitesResponse(summary=ingest_wire.summary_message(summary))

    @translate_errors
    async def PushDevices(
        self, request_iterator: AsyncIterator[pb.PushDevicesRequest], context: CallContext
    ) -> pb.PushDevicesResponse:
        summary = await self._push_snapshot(
            context, lambda stream: stream.devices(request_iterator), reference.apply_devices
        )
        return pb.PushDevicesResponse(summary=ingest_wire.summary_message(summary))

    @translate_errors
    async def PushMunicipalities(
        self, request_iterator: AsyncIterator[pb.PushMunicipalitiesRequest], context: CallContext
    ) -> pb.PushMunicipalitiesResponse:
        summary = await self._push_snapshot(
            context, lambda stream: stream.municipalities(request_iterator), reference.apply_municipalities
        )
        return pb.PushMunicipalitiesResponse(summary=ingest_wire.summary_message(summary))

    @translate_errors
    async def PushTariffs(
        self, request_iterator: AsyncIterator[pb.PushTariffsRequest], context: CallContext
    ) -> pb.PushTariffsResponse:
        summary = await self._push_snapshot(
            context, lambda stream: stream.tariffs(request_iterator), reference.apply_tariffs
        )
        return pb.PushTariffsResponse(
            summary=ingest_wire.summary_message(summary), periods_written=summary.periods_written
        )

    @translate_errors
    async def PushMeasurements(
        self, request_iterator: AsyncIterator[pb.PushMeasurementsRequest], context: CallContext
    ) -> AsyncIterator[pb.PushMeasurementsResponse]:
        """Each request is one batch: validated, committed on its own, acknowledged in order.

        While batch N is in the database, the next batch is read, decoded and validated, so this
        process's Python work overlaps PostgreSQL's; the stream's write queue starts N+1 the
        moment N committed (never if N failed), and N's acknowledgement goes out at once. A bad
        or over-budget batch is refused after the acknowledgements of the batches before it.
        """
        customer = context.customer()
        async with self._app.ingest.stream(customer.customer_id, customer.token_hash) as stream:

            async def accept(request: pb.PushMeasurementsRequest) -> tuple[int, asyncio.Future[BatchResult]]:
                rows = len(request.measurements)
                written = await stream.accept(
                    request.ByteSize(), rows, lambda: decode_helper.decode_batch(request)
                )
                context.add_rows(rows)
                return request.batch_id, written

            async for batch_id, result in measurement_stream.pipelined(request_iterator, accept):
                yield ingest_wire.ack(batch_id, result)
