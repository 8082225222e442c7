"""SnapshotStream: a broken stream's snapshot is never applied, a complete one always is."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fleet.v1 import ingest_service_pb2 as ingest_pb
from fleet.v1 import resources_pb2 as res

from fleet_server.domain.memory import ByteBudget, resident_cost
from fleet_server.errors import Reason, ResourceExhausted, StreamBroken
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


def _stream(
    limit: int = 100, max_bytes: int = 1_000_000, memory: ByteBudget | None = None
) -> tuple[SnapshotStream, _Call]:
    call = _Call()
    budget = memory or ByteBudget("snapshots", 0, retry_after_ms=1)
    stream = SnapshotStream(
        call,  # type: ignore[arg-type]
        max_rows=limit,
        max_bytes=max_bytes,
        memory=budget,
        customer_id=1,
    )
    return stream, call


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


def _site_messages(count: int, address: str = "A" * 100) -> AsyncIterator[ingest_pb.PushSitesRequest]:
    async def messages() -> AsyncIterator[ingest_pb.PushSitesRequest]:
        for i in range(count):
            yield ingest_pb.PushSitesRequest(sites=[res.Site(id=i + 1, name="s", address=address)])

    return messages()


ONE_MESSAGE = ingest_pb.PushSitesRequest(sites=[res.Site(id=1, name="s", address="A" * 100)]).ByteSize()


def test_bytes_over_the_limit_are_refused_while_reading_and_the_rest_is_never_read() -> None:
    stream, _ = _stream(max_bytes=3 * ONE_MESSAGE)
    read = 0

    async def endless() -> AsyncIterator[ingest_pb.PushSitesRequest]:
        nonlocal read
        while True:
            read += 1
            yield ingest_pb.PushSitesRequest(sites=[res.Site(id=read, name="s", address="A" * 100)])

    with pytest.raises(ResourceExhausted) as refused:
        asyncio.run(stream.sites(endless()))
    assert refused.value.reason == Reason.SNAPSHOT_TOO_LARGE
    assert refused.value.metadata == {"limit": "bytes", "max": str(3 * ONE_MESSAGE)}
    assert read == 4


def test_a_snapshot_of_exactly_the_byte_limit_is_read() -> None:
    stream, _ = _stream(max_bytes=3 * ONE_MESSAGE)
    assert len(asyncio.run(stream.sites(_site_messages(3)))) == 3


def test_every_message_is_charged_what_it_costs_decoded_and_given_back_on_close() -> None:
    memory = ByteBudget("snapshots", 10**9, per_holder=10**9, retry_after_ms=1)
    with _stream(memory=memory)[0] as stream:
        asyncio.run(stream.sites(_site_messages(2)))
        assert memory.held == 2 * resident_cost(ONE_MESSAGE, 1)
    assert memory.held == 0


def test_a_stream_the_process_cannot_hold_is_refused_with_a_hint_and_holds_nothing() -> None:
    memory = ByteBudget("snapshots", 3 * resident_cost(ONE_MESSAGE, 1), retry_after_ms=1234)
    memory.take("another customer", 2 * resident_cost(ONE_MESSAGE, 1))
    with _stream(memory=memory)[0] as stream, pytest.raises(ResourceExhausted) as refused:
        asyncio.run(stream.sites(_site_messages(2)))
    assert refused.value.reason == Reason.MEMORY_BUSY
    assert refused.value.retry_after_ms == 1234
    assert memory.held == 2 * resident_cost(ONE_MESSAGE, 1)
