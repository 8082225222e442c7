"""FleetIngestService: customer pushes, wire ⇄ domain."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator

from fleet.v1 import ingest_service_pb2 as pb
from fleet.v1 import ingest_service_pb2_grpc

from fleet_server.app import App
from fleet_server.auth.identity import CallContext
from fleet_server.domain import fairness, measurements, reference
from fleet_server.domain.measurements import BatchResult
from fleet_server.errors import FleetError
from fleet_server.services import measurement_wire, reference_wire
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
        """Each request is one batch: validated, committed on its own, acknowledged in order.

        While batch N is in the database, the next batches are read, decoded and validated, so
        this process's Python work overlaps PostgreSQL's; a write queue starts N+1 the moment N
        committed (never if N failed). A bad or over-budget batch is refused after the
        acknowledgements of the batches before it that committed.
        """
        app = self._app
        customer_id = context.customer().customer_id
        gate = fairness.gate_for(app.db, app.settings, app.clock)
        async with gate.exclusive_stream(app.db, customer_id):
            writer = measurements.BatchWriter(app.db)

            async def release_connection() -> None:
                await app.db.offload(writer.release)

            requests = measurement_wire.requests_with_idle_hook(
                request_iterator, measurement_wire.IDLE_RELEASE_S, release_connection
            )
            writes = measurement_wire.OrderedWrites(app.db, writer, customer_id)
            pending: collections.deque[tuple[pb.PushMeasurementsRequest, asyncio.Future[BatchResult]]]
            pending = collections.deque()
            try:
                async for request in requests:
                    batch = measurement_wire.decode_batch(request)
                    now = app.clock.now()
                    measurements.validate_batch(batch, now)
                    gate.budget.admit(customer_id, len(batch))
                    if len(pending) >= measurement_wire.MAX_QUEUED_BATCHES:
                        head, written = pending.popleft()
                        yield measurement_wire.ack(head, await written)
                    context.add_rows(len(batch))
                    pending.append((request, writes.submit(batch, now)))
                    while pending and pending[0][1].done():
                        head, written = pending.popleft()
                        yield measurement_wire.ack(head, written.result())
                while pending:
                    head, written = pending.popleft()
                    yield measurement_wire.ack(head, await written)
            except FleetError:
                # Acknowledge what committed before the refused batch; stop at the first that did not.
                while pending:
                    head, written = pending.popleft()
                    try:
                        result = await written
                    except Exception:
                        break
                    yield measurement_wire.ack(head, result)
                raise
            finally:
                for _, written in pending:  # the caller went away: these commit unacknowledged
                    written.add_done_callback(measurement_wire.log_orphaned_write)
                await app.db.offload(writer.release)

            requests = measurement_wire.requests_with_idle_hook(
                request_iterator, measurement_wire.IDLE_RELEASE_S, release_connection
            )
            in_flight: tuple[pb.PushMeasurementsRequest, asyncio.Future[BatchResult]] | None = None
            try:
                async for request in requests:
                    batch = measurement_wire.decode_batch(request)
                    measurements.validate_batch(batch, app.clock.now())
                    gate.budget.admit(customer_id, len(batch))
                    previous, in_flight = in_flight, None
                    done = await previous[1] if previous is not None else None
                    context.add_rows(len(batch))
                    write = app.db.offload(writer.write, customer_id, batch, app.clock.now())
                    in_flight = (request, asyncio.ensure_future(write))
                    if previous is not None and done is not None:  # N+1 is on its way: now ack N
                        yield measurement_wire.ack(previous[0], done)
                if in_flight is not None:
                    previous, in_flight = in_flight, None
                    yield measurement_wire.ack(previous[0], await previous[1])
            except FleetError:
                if in_flight is not None:
                    previous, in_flight = in_flight, None
                    yield measurement_wire.ack(previous[0], await previous[1])
                raise
            finally:
                if in_flight is not None:  # the caller went away: the batch commits unacknowledged
                    in_flight[1].add_done_callback(measurement_wire.log_orphaned_write)
                await app.db.offload(writer.release)
