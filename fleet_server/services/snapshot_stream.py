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
import itertools
import logging
import threading
from collections.abc import AsyncIterable, Callable, Sequence
from types import TracebackType
from typing import TypeVar

from fleet.v1 import ingest_service_pb2 as pb
from fleet.v1 import resources_pb2
from google.protobuf.message import Message

from fleet_server.auth.call_context import CallContext
from fleet_server.domain.memory import ByteBudget, Holding, resident_cost
from fleet_server.domain.reference_validation import DeviceItem, MunicipalityItem, SiteItem, TariffItem
from fleet_server.errors import Reason, ResourceExhausted, StreamBroken
from fleet_server.services import ingest_wire

_LOGGER = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)
P = TypeVar("P")
D = TypeVar("D")


def _one_row(_: object) -> int:
    return 1


def _tariff_rows(tariff: resources_pb2.Tariff) -> int:
    return 1 + len(tariff.periods)


class SnapshotStream:
    """One push call's snapshot: read whole within its budgets, then committed only while the call lives.

    A snapshot is validated whole, so it is held in memory whole. Three limits keep that
    bounded: `max_rows` (a tariff weighs one row plus its periods) and `max_bytes` (the
    serialized size of the messages) for this stream, and the process's `memory` budget, which
    every message is charged to as it arrives at what it costs decoded (with a per-customer
    share, so one customer's snapshot streams together hold no more than one full snapshot).
    Each message is turned into domain items at once and the protobuf dropped, so the stream
    never holds both forms of more than one message. A stream over a limit is refused before
    its next message is read; its memory is given back when the stream is closed (`with`).
    """

    def __init__(
        self, context: CallContext, *, max_rows: int, max_bytes: int, memory: ByteBudget, customer_id: int
    ) -> None:
        self._max_rows = max_rows
        self._max_bytes = max_bytes
        self._held = Holding(memory, customer_id)
        self._ended = threading.Event()
        context.add_done_callback(lambda _call: self._ended.set())

    def __enter__(self) -> SnapshotStream:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Give the snapshot's bytes back to the process budget."""
        self._held.release()

    def confirm_open(self) -> None:
        """Raise StreamBroken when the call has ended; called on the database thread before commit."""
        if self._ended.is_set():
            _LOGGER.warning("snapshot stream ended before commit; rolled back")
            raise StreamBroken("the stream ended before the snapshot was applied; nothing was written")

    def _too_large(self, limit: str, maximum: int, setting: str) -> ResourceExhausted:
        return ResourceExhausted(
            f"snapshot exceeds {maximum:,} {limit} (the server's {setting})",
            reason=Reason.SNAPSHOT_TOO_LARGE,
            metadata={"limit": limit, "max": str(maximum)},
        )

    async def _read(
        self,
        messages: AsyncIterable[M],
        items_of: Callable[[M], Sequence[P]],
        weight: Callable[[P], int],
        item: Callable[[P], D],
    ) -> list[D]:
        """Every item of every message as a domain item, in order; RESOURCE_EXHAUSTED past a limit."""
        items: list[D] = []
        rows = size = 0
        async for message in messages:
            message_bytes = message.ByteSize()
            size += message_bytes
            if size > self._max_bytes:
                raise self._too_large("bytes", self._max_bytes, "--max-snapshot-bytes")
            batch = items_of(message)
            message_rows = sum(weight(p) for p in batch)
            rows += message_rows
            if rows > self._max_rows:
                raise self._too_large("rows", self._max_rows, "--max-snapshot-rows")
            self._held.take(resident_cost(message_bytes, message_rows))
            items.extend(item(p) for p in batch)
        await asyncio.sleep(0)  # a broken stream's cancellation lands here, before any write
        return items

    async def sites(self, messages: AsyncIterable[pb.PushSitesRequest]) -> list[SiteItem]:
        return await self._read(messages, lambda m: m.sites, _one_row, ingest_wire.site_item)

    async def devices(self, messages: AsyncIterable[pb.PushDevicesRequest]) -> list[DeviceItem]:
        return await self._read(messages, lambda m: m.devices, _one_row, ingest_wire.device_item)

    async def municipalities(
        self, messages: AsyncIterable[pb.PushMunicipalitiesRequest]
    ) -> list[MunicipalityItem]:
        return await self._read(messages, lambda m: m.municipalities, _one_row, ingest_wire.municipality_item)

    async def tariffs(self, messages: AsyncIterable[pb.PushTariffsRequest]) -> list[TariffItem]:
        numbered = itertools.count()  # the tariff's index across the whole stream, for error paths
        return await self._read(
            messages,
            lambda m: m.tariffs,
            _tariff_rows,
            lambda tariff: ingest_wire.tariff_item(tariff, f"tariffs[{next(numbered)}]"),
        )
