"""Reading a reference-data snapshot stream to its end — and telling a complete snapshot from a broken one.

grpc.aio ends a server's request iterator the same way whether the client half-closed the
stream or the stream broke (client cancel, deadline, connection loss, a message over the size
limit): the iterator simply stops. For a snapshot that difference is everything — applying the
messages that did arrive would delete every row the client had not sent yet. So:

- after the last message the handler yields to the event loop once: a broken stream has
  already been marked for cancellation by then, and the handler is cancelled before it writes;
- the apply transaction calls `confirm_open()` just before it commits, which rolls it back if
  the call ended meanwhile (the done-callback of a call fires only after our response, or when
  it failed).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterable, Callable, Sequence
from typing import TypeVar

from fleet.v1 import ingest_service_pb2 as pb
from fleet.v1 import resources_pb2

from fleet_server.auth.call_context import CallContext
from fleet_server.domain.reference_validation import DeviceItem, MunicipalityItem, SiteItem, TariffItem
from fleet_server.errors import Reason, ResourceExhausted, StreamBroken
from fleet_server.services import ingest_wire

_LOGGER = logging.getLogger(__name__)

M = TypeVar("M")
P = TypeVar("P")


def _one_row(_: object) -> int:
    return 1


def _tariff_rows(tariff: resources_pb2.Tariff) -> int:
    return 1 + len(tariff.periods)


class SnapshotStream:
    """One push call's snapshot: read whole (up to `limit` rows), then committed only while the call lives."""

    def __init__(self, context: CallContext, limit: int) -> None:
        self._limit = limit
        self._ended = threading.Event()
        context.add_done_callback(lambda _call: self._ended.set())

    def confirm_open(self) -> None:
        """Raise StreamBroken when the call has ended; called on the database thread before commit."""
        if self._ended.is_set():
            _LOGGER.warning("snapshot stream ended before commit; rolled back")
            raise StreamBroken("the stream ended before the snapshot was applied; nothing was written")

    async def _read(
        self, messages: AsyncIterable[M], items_of: Callable[[M], Sequence[P]], weight: Callable[[P], int]
    ) -> list[P]:
        """Every item of every message, in order; RESOURCE_EXHAUSTED past the row limit.

        A snapshot is validated whole, so it is held in memory whole; the limit (a tariff weighs
        one row plus its periods) keeps one stream from exhausting the server's memory.
        """
        items: list[P] = []
        rows = 0
        async for message in messages:
            batch = items_of(message)
            rows += sum(weight(item) for item in batch)
            if rows > self._limit:
                raise ResourceExhausted(
                    f"snapshot exceeds {self._limit} rows (the server's --max-snapshot-rows)",
                    reason=Reason.SNAPSHOT_TOO_LARGE,
                )
            items.extend(batch)
        await asyncio.sleep(0)  # a broken stream's cancellation lands here, before any write
        return items

    async def sites(self, messages: AsyncIterable[pb.PushSitesRequest]) -> list[SiteItem]:
        collected = await self._read(messages, lambda m: m.sites, _one_row)
        return [ingest_wire.site_item(s) for s in collected]

    async def devices(self, messages: AsyncIterable[pb.PushDevicesRequest]) -> list[DeviceItem]:
        collected = await self._read(messages, lambda m: m.devices, _one_row)
        return [ingest_wire.device_item(d) for d in collected]

    async def municipalities(
        self, messages: AsyncIterable[pb.PushMunicipalitiesRequest]
    ) -> list[MunicipalityItem]:
        collected = await self._read(messages, lambda m: m.municipalities, _one_row)
        return [ingest_wire.municipality_item(m) for m in collected]

    async def tariffs(self, messages: AsyncIterable[pb.PushTariffsRequest]) -> list[TariffItem]:
        collected = await self._read(messages, lambda m: m.tariffs, _tariff_rows)
        return [ingest_wire.tariff_item(t) for t in collected]
