"""SnapshotStream: a broken stream's snapshot is never applied, a complete one always is."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fleet.v1 import ingest_service_pb2 as ingest_pb
from fleet.v1 import resources_pb2 as res

from fleet_server.errors import ResourceExhausted, StreamBroken
from fleet_server.services.snapshot_stream import SnapshotStream


class _Call:
    """The part of a servicer context SnapshotStream uses."""

    def __init__(self) -> None:
        self.callbacks: list[Callable[[Any], None]] = []

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        self.callbacks.append(callback)

    def end(self) -> None:
        for callback in self.callbacks:
            callback(self)


def _stream(limit: int = 100) -> tuple[SnapshotStream, _Call]:
    call = _Call()
    return SnapshotStream(call, limit), call  # type: ignore[arg-type]


async def _messages(*batches: list[res.Site], cancel_at_end: bool = False) -> AsyncIterator[Any]:
    for batch in batches:
        yield ingest_pb.PushSitesRequest(sites=batch)
    if cancel_at_end:
        # What grpc.aio does on a broken stream: the iterator just ends, and the handler's
        # task is cancelled in the same breath.
        task = asyncio.current_task()
        assert task is not None
        task.cancel()


def test_a_complete_stream_yields_every_item_in_order() -> None:
    stream, _ = _stream()
    items = asyncio.run(stream.sites(_messages([res.Site(id=1)], [res.Site(id=2), res.Site(id=3)])))
    assert [s.id for s in items] == [1, 2, 3]
    stream.confirm_open()  # the call is alive: no objection


def test_an_iterator_ending_with_the_call_cancelled_never_reaches_a_write() -> None:
    stream, _ = _stream()
    writes: list[object] = []

    async def handler() -> None:
        snapshot = await stream.sites(_messages([res.Site(id=1)], cancel_at_end=True))
        writes.append(snapshot)  # as the servicer hands the snapshot to the database thread
        await asyncio.sleep(0)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(handler())
    assert writes == []


def test_confirm_open_objects_once_the_call_has_ended() -> None:
    stream, call = _stream()
    stream.confirm_open()
    call.end()
    with pytest.raises(StreamBroken):
        stream.confirm_open()


def test_rows_over_the_limit_are_refused_while_reading() -> None:
    stream, _ = _stream(limit=2)
    with pytest.raises(ResourceExhausted):
        asyncio.run(stream.sites(_messages([res.Site(id=1)], [res.Site(id=2), res.Site(id=3)])))


def test_a_tariff_weighs_one_row_plus_its_periods() -> None:
    stream, _ = _stream(limit=3)
    tariff = res.Tariff(id=1, periods=[res.TariffPeriod(id=1), res.TariffPeriod(id=2)])

    async def messages() -> AsyncIterator[ingest_pb.PushTariffsRequest]:
        yield ingest_pb.PushTariffsRequest(tariffs=[tariff])
        yield ingest_pb.PushTariffsRequest(tariffs=[res.Tariff(id=2)])

    with pytest.raises(ResourceExhausted):
        asyncio.run(stream.tariffs(messages()))
